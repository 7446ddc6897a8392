#!/usr/bin/env bash
# Certificates issued per second over HTTP: Kexin's REST API (HTTPS with a
# client certificate, every certificate stored durably in SQLite with its
# audit entry) vs `cfssl serve` twice: as it comes (plain HTTP, stores
# nothing), and set up as Kexin is (HTTPS with a client certificate, every
# certificate stored in its SQLite certdb). Same machine, same run, same
# client (curl --parallel, keep-alive), same P-256 CSR.
set -Eeuo pipefail
# Name the command that stopped a run, which would otherwise end silently.
trap 'echo "$0: line $LINENO: $BASH_COMMAND failed" >&2' ERR
cd "$(dirname "$0")/.."
KEXIN=${KEXIN:-target/release/kexin}
# 20,000: 2,000 took half a second a side, too short to measure steadily.
N=${N:-20000}
PARALLEL=${PARALLEL:-16}
[ -x "$KEXIN" ] || cargo build --release --bin kexin
WORK=$(mktemp -d)
# Wait for the servers to exit before removing what they may still write.
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$WORK"' EXIT
HTTP=$((20000 + RANDOM % 10000)); HTTPS=$((HTTP + 1)); CF=$((HTTP + 2)); CFDB=$((HTTP + 3))

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
CFPID=$!
python3 -c "import json,sys;print(json.dumps({'certificate_request':open(sys.argv[1]).read()}))" "$WORK/leaf.csr" > "$WORK/c.json"

# The second cfssl: mutual TLS (a server and a client certificate from a
# CA of their own) and its certdb, cfssl 1.2's SQLite schema, where it
# stores every certificate it signs, one transaction each.
tls_pair() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/$1.key" \
    -subj "/CN=$2" -out "$WORK/$1.csr" 2>/dev/null
  openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -out "$WORK/$1.pem" -extfile <(printf '%s\n' "$3") 2>/dev/null
}
tls_pair cf-server localhost $'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth'
tls_pair cf-client bench 'extendedKeyUsage=clientAuth'
python3 - "$WORK/certdb.sqlite" <<'PY'
import sqlite3, sys
sqlite3.connect(sys.argv[1]).executescript("""
CREATE TABLE certificates (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
  ca_label blob, status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp,
  pem blob NOT NULL, PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (serial_number blob NOT NULL, authority_key_identifier blob NOT NULL,
  body blob NOT NULL, expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier)
    REFERENCES certificates(serial_number, authority_key_identifier));
""")
PY
echo "{\"driver\":\"sqlite3\",\"data_source\":\"$WORK/certdb.sqlite\"}" > "$WORK/certdb.json"
cfssl serve -address 127.0.0.1 -port $CFDB -ca "$WORK/ca.pem" -ca-key "$WORK/ca.key" -config "$WORK/cfssl.json" \
  -db-config "$WORK/certdb.json" -tls-cert "$WORK/cf-server.pem" -tls-key "$WORK/cf-server.key" \
  -mutual-tls-ca "$WORK/ca.pem" >/dev/null 2>&1 &
CF_TLS=(--cacert "$WORK/ca.pem" --cert "$WORK/cf-client.pem" --key "$WORK/cf-client.key")

for _ in $(seq 50); do
  curl -fs -o /dev/null --cacert "$WORK/k/ca/root.pem" "https://localhost:$HTTPS/healthz" \
    && curl -s -o /dev/null "http://127.0.0.1:$CF/" \
    && curl -s -o /dev/null "${CF_TLS[@]}" "https://localhost:$CFDB/" && break
  sleep 0.2
done

# One curl process, N requests, PARALLEL at a time over reused connections.
config() { for _ in $(seq "$N"); do printf 'url = "%s"\noutput = "/dev/null"\n' "$1"; done > "$2"; }
config "https://localhost:$HTTPS/api/v1/certificates" "$WORK/k.cfg"
config "http://127.0.0.1:$CF/api/v1/cfssl/sign" "$WORK/c.cfg"
config "https://localhost:$CFDB/api/v1/cfssl/sign" "$WORK/cdb.cfg"
timed() { local s e; s=$(date +%s.%N); "$@" > "$WORK/codes"; e=$(date +%s.%N); echo "$s $e"; }
T0=$(cpu_ticks $KPID)
read -r KS KE < <(timed curl -s -Z --parallel-max "$PARALLEL" --cacert "$WORK/k/ca/root.pem" \
  --cert-type P12 --cert "$WORK/bench.p12:benchmark-pass" -H 'Content-Type: application/json' \
  -d @"$WORK/k.json" -w '%{http_code}\n' -K "$WORK/k.cfg")
KOK=$(grep -c '^201$' "$WORK/codes" || true)
T1=$(cpu_ticks $KPID)
T2=$(cpu_ticks $CFPID)
read -r CS CE < <(timed curl -s -Z --parallel-max "$PARALLEL" -d @"$WORK/c.json" -w '%{http_code}\n' -K "$WORK/c.cfg")
COK=$(grep -c '^200$' "$WORK/codes" || true)
T3=$(cpu_ticks $CFPID)
read -r DS DE < <(timed curl -s -Z --parallel-max "$PARALLEL" "${CF_TLS[@]}" -d @"$WORK/c.json" \
  -w '%{http_code}\n' -K "$WORK/cdb.cfg")
DOK=$(grep -c '^200$' "$WORK/codes" || true)
DSTORED=$(python3 -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute('select count(*) from certificates').fetchone()[0])" "$WORK/certdb.sqlite")
STORED=$(python3 -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from certificates where profile='tls-server' and status='issued'\").fetchone()[0])" "$WORK/k/kexin.db")
python3 - "$N" "$KS" "$KE" "$KOK" "$CS" "$CE" "$COK" "$STORED" "$((T1 - T0))" "$(getconf CLK_TCK)" \
  "$DS" "$DE" "$DOK" "$DSTORED" "$((T3 - T2))" <<'PY'
import json, sys
n, ks, ke, kok, cs, ce, cok, stored, ticks, hz, ds, de, dok, dstored, cfticks = sys.argv[1:]
k = int(kok) / (float(ke) - float(ks)); c = int(cok) / (float(ce) - float(cs))
d = int(dok) / (float(de) - float(ds))
print(json.dumps({"requests": int(n), "kexin_issued": int(kok), "kexin_stored": int(stored),
  "kexin_per_s": round(k, 1),
  "kexin_server_cores_busy": round(int(ticks) / int(hz) / (float(ke) - float(ks)), 2),
  "kexin_server_cpu_us_per_cert": round(int(ticks) / int(hz) / int(kok) * 1e6),
  "cfssl_issued": int(cok), "cfssl_per_s": round(c, 1),
  "cfssl_server_cores_busy": round(int(cfticks) / int(hz) / (float(ce) - float(cs)), 2),
  "cfssl_server_cpu_us_per_cert": round(int(cfticks) / int(hz) / int(cok) * 1e6),
  "ratio_kexin_to_cfssl": round(k / c, 2),
  "cfssl_mtls_certdb_issued": int(dok), "cfssl_mtls_certdb_stored": int(dstored),
  "cfssl_mtls_certdb_per_s": round(d, 1), "ratio_kexin_to_cfssl_mtls_certdb": round(k / d, 2)}, indent=2))
PY
