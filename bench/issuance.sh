#!/usr/bin/env bash
# Certificates issued per second over HTTP: Kexin's REST API (HTTPS with a
# client certificate, every certificate stored durably in SQLite with its
# audit entry) vs `cfssl serve` (plain HTTP, stores nothing), same machine,
# same run, same client (curl --parallel, keep-alive), same P-256 CSR.
set -euo pipefail
cd "$(dirname "$0")/.."
KEXIN=${KEXIN:-target/release/kexin}
# 20,000: 2,000 took half a second a side, too short to measure steadily.
N=${N:-20000}
PARALLEL=${PARALLEL:-16}
[ -x "$KEXIN" ] || cargo build --release --bin kexin
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
HTTP=$((20000 + RANDOM % 10000)); HTTPS=$((HTTP + 1)); CF=$((HTTP + 2))

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/leaf.key" \
  -subj /CN=bench.example -addext subjectAltName=DNS:bench.example -out "$WORK/leaf.csr" 2>/dev/null

KEXIN_HTTP__LISTEN=127.0.0.1:$HTTP "$KEXIN" init --data "$WORK/k" >/dev/null 2>&1
KEXIN_P12_PASSWORD=benchmark-pass "$KEXIN" officer add --data "$WORK/k" --name bench --role ra-officer --out "$WORK/bench.p12" 2>/dev/null
RUST_LOG=warn "$KEXIN" serve --data "$WORK/k" --http 127.0.0.1:$HTTP --https 127.0.0.1:$HTTPS >/dev/null 2>&1 &
KPID=$!
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
python3 -c "import json,sys;print(json.dumps({'profile':'tls-server','csr':open(sys.argv[1]).read()}))" "$WORK/leaf.csr" > "$WORK/k.json"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
  -out "$WORK/ca.pem" -subj /CN=cfssl-CA -days 2 2>/dev/null
echo '{"signing":{"default":{"expiry":"8760h","usages":["digital signature","server auth"]}}}' > "$WORK/cfssl.json"
cfssl serve -address 127.0.0.1 -port $CF -ca "$WORK/ca.pem" -ca-key "$WORK/ca.key" -config "$WORK/cfssl.json" >/dev/null 2>&1 &
python3 -c "import json,sys;print(json.dumps({'certificate_request':open(sys.argv[1]).read()}))" "$WORK/leaf.csr" > "$WORK/c.json"

for _ in $(seq 50); do
  curl -fs -o /dev/null --cacert "$WORK/k/ca/root.pem" "https://localhost:$HTTPS/healthz" \
    && curl -s -o /dev/null "http://127.0.0.1:$CF/" && break
  sleep 0.2
done

# One curl process, N requests, PARALLEL at a time over reused connections.
config() { for _ in $(seq "$N"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$1"; done > "$2"; }
config "https://localhost:$HTTPS/api/v1/certificates" "$WORK/k.cfg"
config "http://127.0.0.1:$CF/api/v1/cfssl/sign" "$WORK/c.cfg"
timed() { local s e; s=$(date +%s.%N); "$@" > "$WORK/codes"; e=$(date +%s.%N); echo "$s $e"; }
T0=$(cpu_ticks $KPID)
read -r KS KE < <(timed curl -s -Z --parallel-max "$PARALLEL" --cacert "$WORK/k/ca/root.pem" \
  --cert-type P12 --cert "$WORK/bench.p12:benchmark-pass" -H 'Content-Type: application/json' \
  -d @"$WORK/k.json" -w '%{http_code}\n' -K "$WORK/k.cfg")
KOK=$(grep -c '^201$' "$WORK/codes" || true)
T1=$(cpu_ticks $KPID)
read -r CS CE < <(timed curl -s -Z --parallel-max "$PARALLEL" -d @"$WORK/c.json" -w '%{http_code}\n' -K "$WORK/c.cfg")
COK=$(grep -c '^200$' "$WORK/codes" || true)
STORED=$(python3 -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from certificates where profile='tls-server' and status='issued'\").fetchone()[0])" "$WORK/k/kexin.db")
python3 - "$N" "$KS" "$KE" "$KOK" "$CS" "$CE" "$COK" "$STORED" "$((T1 - T0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
n, ks, ke, kok, cs, ce, cok, stored, ticks, hz = sys.argv[1:]
k = int(kok) / (float(ke) - float(ks)); c = int(cok) / (float(ce) - float(cs))
print(json.dumps({"requests": int(n), "kexin_issued": int(kok), "kexin_stored": int(stored),
  "kexin_per_s": round(k, 1),
  "kexin_server_cores_busy": round(int(ticks) / int(hz) / (float(ke) - float(ks)), 2), "cfssl_issued": int(cok), "cfssl_per_s": round(c, 1),
  "ratio_kexin_to_cfssl": round(k / c, 2)}, indent=2))
PY
