#!/usr/bin/env bash
# Time-stamp tokens per second over HTTP with keep-alive (wrk, POST of one
# RFC 3161 request), with the token log on, for ECDSA P-256 and RSA-3072 TSA
# keys; reported beside the raw single-core signing rate `openssl speed`
# measures for the same key type in the same run.
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
echo "benchmark document" > "$WORK/doc.txt"
openssl ts -query -data "$WORK/doc.txt" -sha256 -no_nonce -out "$WORK/req.tsq" 2>/dev/null
# Every request stamps another document: the request's last 32 bytes (its
# SHA-256 imprint; no nonce) are random, as a TSA's imprints are.
cat > "$WORK/post.lua" <<LUA
local f = io.open("$WORK/req.tsq", "rb"); local body = f:read("*all"); f:close()
local prefix = body:sub(1, #body - 32)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/timestamp-query"
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) math.randomseed(os.time() * 64 + id) end
request = function()
  local imprint = {}
  for i = 1, 32 do imprint[i] = string.char(math.random(0, 255)) end
  return wrk.format(nil, nil, nil, prefix .. table.concat(imprint))
end
LUA
SPEED_P256=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $7}')
SPEED_RSA=$(openssl speed -seconds 3 rsa3072 2>/dev/null | awk '/^rsa 3072 bits/ {print $6}')
for alg in ecdsa-p256 rsa-3072; do
  HTTP=$((20000 + RANDOM % 10000)); HTTPS=$((HTTP + 1))
  KEXIN_HTTP__LISTEN=127.0.0.1:$HTTP "$KEXIN" init --data "$WORK/$alg" --alg $alg >/dev/null 2>&1
  RUST_LOG=warn "$KEXIN" serve --data "$WORK/$alg" --http 127.0.0.1:$HTTP --https 127.0.0.1:$HTTPS >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$HTTP/pki/ca/root.crt" && break; sleep 0.2; done
  curl -fs -H 'Content-Type: application/timestamp-query' --data-binary @"$WORK/req.tsq" "http://127.0.0.1:$HTTP/tsa" -o "$WORK/r.tsr"
  openssl ts -verify -data "$WORK/doc.txt" -in "$WORK/r.tsr" -CAfile "$WORK/$alg/ca/root.pem" \
    -untrusted <(cat "$WORK/$alg/ca/systems.pem" "$WORK/$alg/tsa/tsa.pem") 2>/dev/null | grep -q OK
  # CPU time the server itself used during the run (utime + stime, in ticks).
  cpu_ticks() { awk '{print $14 + $15}' /proc/$PID/stat; }
  T0=$(cpu_ticks)
  OUT=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$HTTP/tsa")
  T1=$(cpu_ticks)
  LOGGED=$(python3 -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute('select count(distinct message_imprint) from timestamp_tokens').fetchone()[0])" "$WORK/$alg/kexin.db")
  RATE=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')
  P50=$(echo "$OUT" | awk '$1=="50%" {print $2}'); P99=$(echo "$OUT" | awk '$1=="99%" {print $2}')
  SPEED=$SPEED_P256; [ $alg = rsa-3072 ] && SPEED=$SPEED_RSA
  python3 -c "import json,sys; r,s=float(sys.argv[2]),float(sys.argv[5]); cores=(int(sys.argv[7])-int(sys.argv[8]))/$(getconf CLK_TCK)/float(sys.argv[9]); print(json.dumps({'alg':sys.argv[1],'tokens_per_s':r,'p50':sys.argv[3],'p99':sys.argv[4],'distinct_imprints_logged':int(sys.argv[6]),'openssl_speed_sign_per_s_one_core':s,'server_cores_busy':round(cores,2),'ratio_per_server_core':round(r/cores/s,2),'ratio_per_core_used_2':round(r/2/s,2),'ratio_to_one_core':round(r/s,2)}))" \
    $alg "$RATE" "$P50" "$P99" "$SPEED" "$LOGGED" "$T1" "$T0" "$DURATION"
  kill $PID; wait $PID 2>/dev/null || true
done
