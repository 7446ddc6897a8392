#!/usr/bin/env bash
# OCSP responses per second: Kexin vs `openssl ocsp -index … -port`, same
# machine, same run: RFC 5019 GET requests for one good certificate. Kexin's
# peak with keep-alive (wrk), and both servers under the same new-connection
# load (ab, since openssl's responder closes every connection). Also the raw
# ECDSA P-256 signing rate of `openssl speed` as a reference.
# Needs: wrk, ab (apache2-utils), openssl, a release build.
set -Eeuo pipefail
# Name the command that stopped a run, which would otherwise end silently.
trap 'echo "$0: line $LINENO: $BASH_COMMAND failed" >&2' ERR
cd "$(dirname "$0")/.."
KEXIN=${KEXIN:-target/release/kexin}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
[ -x "$KEXIN" ] || cargo build --release --bin kexin
WORK=$(mktemp -d)
# Wait for the servers to exit before removing what they may still write.
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$WORK"' EXIT
HTTP=$((20000 + RANDOM % 10000)); HTTPS=$((HTTP + 1)); OSSL=$((HTTP + 2))

# Kexin: a fresh instance with one issued certificate.
KEXIN_HTTP__LISTEN=127.0.0.1:$HTTP "$KEXIN" init --data "$WORK/k" >/dev/null 2>&1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/leaf.key" \
  -subj /CN=bench.example -addext subjectAltName=DNS:bench.example -out "$WORK/leaf.csr" 2>/dev/null
"$KEXIN" cert issue --data "$WORK/k" --profile tls-server --csr "$WORK/leaf.csr" --out "$WORK/leaf.pem" 2>/dev/null
RUST_LOG=warn "$KEXIN" serve --data "$WORK/k" --http 127.0.0.1:$HTTP --https 127.0.0.1:$HTTPS >/dev/null 2>&1 &
KPID=$!
openssl ocsp -issuer "$WORK/k/ca/systems.pem" -cert "$WORK/leaf.pem" -no_nonce -reqout "$WORK/k.req" 2>/dev/null
KREQ=$(base64 -w0 "$WORK/k.req" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')

# OpenSSL: its own P-256 CA, the CA key signing responses, an index with the leaf.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/ca.key" \
  -out "$WORK/ca.pem" -subj /CN=OpenSSL-CA -days 2 2>/dev/null
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -set_serial 0x1234 \
  -days 1 -out "$WORK/oleaf.pem" 2>/dev/null
printf 'V\t301231000000Z\t\t1234\tunknown\t/CN=bench.example\n' > "$WORK/index.txt"
openssl ocsp -index "$WORK/index.txt" -port $OSSL -rsigner "$WORK/ca.pem" -rkey "$WORK/ca.key" \
  -CA "$WORK/ca.pem" -ndays 1 >/dev/null 2>&1 &
OPID=$!
openssl ocsp -issuer "$WORK/ca.pem" -cert "$WORK/oleaf.pem" -no_nonce -reqout "$WORK/o.req" 2>/dev/null
OREQ=$(base64 -w0 "$WORK/o.req" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')

for _ in $(seq 50); do
  curl -fs -o /dev/null "http://127.0.0.1:$HTTP/ocsp/$KREQ" && curl -fs -o /dev/null "http://127.0.0.1:$OSSL/$OREQ" && break
  sleep 0.2
done
# Both must answer "good" with a verifiable signature before they are timed.
curl -fs "http://127.0.0.1:$HTTP/ocsp/$KREQ" -o "$WORK/k.resp"
openssl ocsp -respin "$WORK/k.resp" -issuer "$WORK/k/ca/systems.pem" -CAfile "$WORK/k/ca/root.pem" -cert "$WORK/leaf.pem" 2>&1 | grep -q ": good"
curl -fs "http://127.0.0.1:$OSSL/$OREQ" -o "$WORK/o.resp"
openssl ocsp -respin "$WORK/o.resp" -issuer "$WORK/ca.pem" -CAfile "$WORK/ca.pem" -cert "$WORK/oleaf.pem" 2>&1 | grep -q ": good"

run_wrk() { local t=2; [ "$2" -lt 2 ] && t=1; wrk -t$t -c"$2" -d"${DURATION}s" --latency "$1" 2>&1; }
rate() { awk '/Requests\/sec/ {print $2}'; }
# CPU time a server used (utime + stime, in ticks): the load generator
# shares the machine, so peaks are also given per core the server used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
p99() { awk '$1=="99%" {print $2}'; }

KT0=$(cpu_ticks $KPID)
K=$(run_wrk "http://127.0.0.1:$HTTP/ocsp/$KREQ" "$CONNECTIONS")
KCORES=$(python3 -c "import sys; print(($(cpu_ticks $KPID) - $KT0) / $(getconf CLK_TCK) / $DURATION)")
KRATE=$(echo "$K" | rate)
# openssl's responder answers one connection at a time and closes it, which
# wrk cannot drive: ApacheBench measures both like for like, a new
# connection per request, 4 at a time. (ab counts responses whose length
# differs from the first as "failed"; ECDSA signatures vary by a byte, so
# only non-2xx answers are errors here.)
ab_json() { awk '/Requests per second/ {r=$4} /Non-2xx/ {e=$3} $1=="99%" {p=$2} END {printf "{\"requests_per_s\": %s, \"non_2xx\": %s, \"p99_ms\": %s}", r, (e==""?0:e), p}'; }
ab_json_rate() { awk '/Requests per second/ {print $4}'; }
# 4 at a time, and 16: with few clients the kernel may hand most new
# connections to one of Kexin's HTTP threads while another sleeps.
# A failed run names ab's own complaint (a reset, a timeout) instead of
# stopping the script silently.
ab_run() {
  ab -n "$2" -c "${3:-4}" "$1" > "$WORK/ab.out" 2>&1 || { echo "ab $*:" >&2; tail -3 "$WORK/ab.out" >&2; return 1; }
  cat "$WORK/ab.out"
}
OT0=$(cpu_ticks $OPID); OS0=$(date +%s.%N)
O=$(ab_run "http://127.0.0.1:$OSSL/$OREQ" 20000)
OCORES=$(python3 -c "import sys; print(($(cpu_ticks $OPID) - $OT0) / $(getconf CLK_TCK) / ($(date +%s.%N) - $OS0))")
KP=$(ab_run "http://127.0.0.1:$HTTP/ocsp/$KREQ" 20000)
O16=$(ab_run "http://127.0.0.1:$OSSL/$OREQ" 20000 16 | ab_json_rate)
KP16=$(ab_run "http://127.0.0.1:$HTTP/ocsp/$KREQ" 20000 16 | ab_json_rate)
O=$(echo "$O" | ab_json); KP=$(echo "$KP" | ab_json)
# Half of Kexin's peak: fewer connections bring the offered load down.
KH=$(run_wrk "http://127.0.0.1:$HTTP/ocsp/$KREQ" $((CONNECTIONS / 8 > 0 ? CONNECTIONS / 8 : 1)))
SIGN=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $7}')
python3 - "$KRATE" "$O" "$KP" "$(echo "$K" | p99)" "$(echo "$KH" | rate)" "$(echo "$KH" | p99)" "$SIGN" "$O16" "$KP16" "$KCORES" "$OCORES" <<'PY'
import json, sys
k, o, kp, kp99, khalf, khalf_p99, sign, o16, kp16, kcores, ocores = sys.argv[1:]
o, kp = json.loads(o), json.loads(kp)
print(json.dumps({
    "kexin_wrk_keepalive_per_s": float(k), "kexin_wrk_p99": kp99,
    "kexin_wrk_reduced_load_per_s": float(khalf), "kexin_wrk_reduced_load_p99": khalf_p99,
    "kexin_same_client_per_s": kp["requests_per_s"], "kexin_same_client_p99_ms": kp["p99_ms"],
    "openssl_same_client_per_s": o["requests_per_s"], "openssl_same_client_p99_ms": o["p99_ms"],
    "ratio_same_client": round(kp["requests_per_s"] / o["requests_per_s"], 1),
    "kexin_same_client_16_per_s": float(kp16), "openssl_same_client_16_per_s": float(o16),
    "ratio_same_client_16": round(float(kp16) / float(o16), 1),
    "ratio_kexin_peak_to_openssl": round(float(k) / o["requests_per_s"], 1),
    "kexin_peak_server_cores_busy": round(float(kcores), 2),
    "openssl_server_cores_busy": round(float(ocores), 2),
    "ratio_per_server_core": round(float(k) / float(kcores) / (o["requests_per_s"] / float(ocores)), 1),
    "openssl_speed_ecdsa_p256_sign_per_s": float(sign),
}, indent=2))
PY
