#!/usr/bin/env bash
# Single sign-on load: certificate logins per second (signed challenge with
# the revocation check, SSO session, code, PKCE token exchange, ES256 ID
# token; the authorization request rides on the challenge's answer, three
# requests a login, or SSO_AUTHORIZE=separate for four), each on a new TLS connection (a full handshake, as a desktop
# client's first request) and then over kept-alive connections (as a
# gateway or an integrating system holds them), refresh grants per second, ID-token verifications per second in
# the SDK, p50/p99, and the server's resident memory afterwards. For scale,
# Keycloak's sizing guide allots one vCPU per 15 password logins/s and per
# 120 refresh grants/s, and 1,250 MB per node.
set -Eeuo pipefail
# Name the command that stopped a run, which would otherwise end silently.
trap 'echo "$0: line $LINENO: $BASH_COMMAND failed" >&2' ERR
cd "$(dirname "$0")/.."
KEXIN=${KEXIN:-target/release/kexin}
SECONDS_EACH=${SECONDS_EACH:-10}
# The clients speak HTTP/1.1, as the SDK's challenge_login does;
# SSO_HTTP=2 makes them offer h2 first, as browsers do.
# SSO_ONLY=certificate-login-keepalive,refresh-grant (bench names, comma
# separated) runs only those, for quick A/B comparisons of two builds.
# Clients at once: each level is a run of its own, on the same server.
CONCURRENCY=${CONCURRENCY:-16 64}
[ -x "$KEXIN" ] || cargo build --release --bin kexin
cargo build --release -p kexin-bench --bin sso_load 2>/dev/null
WORK=$(mktemp -d)
# Wait for the servers to exit before removing what they may still write.
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$WORK"' EXIT
export KEXIN_KEYSTORE_PASSPHRASE="bench passphrase" KEXIN_P12_PASSWORD="bench-p12-secret"
HTTP=$((20000 + RANDOM % 10000)); HTTPS=$((HTTP + 1))
D="$WORK/data"
KEXIN_HTTP__LISTEN=127.0.0.1:$HTTP KEXIN_HTTPS__LISTEN=127.0.0.1:$HTTPS "$KEXIN" init --data "$D" >/dev/null 2>&1
"$KEXIN" officer add --data "$D" --name official --role auditor --out "$WORK/o.p12" >/dev/null 2>&1
openssl pkcs12 -in "$WORK/o.p12" -passin "pass:$KEXIN_P12_PASSWORD" -nokeys -clcerts -out "$WORK/o.crt" 2>/dev/null
openssl pkcs12 -in "$WORK/o.p12" -passin "pass:$KEXIN_P12_PASSWORD" -nocerts -nodes 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -outform DER -out "$WORK/o.key.der"
CLIENT=$("$KEXIN" client add --data "$D" --name bench --redirect-uri https://rp.example/cb --json 2>/dev/null)
ID=$(echo "$CLIENT" | python3 -c "import json,sys; print(json.load(sys.stdin)['client_id'])")
SECRET=$(echo "$CLIENT" | python3 -c "import json,sys; print(json.load(sys.stdin)['client_secret'])")
RUST_LOG=warn "$KEXIN" serve --data "$D" --http 127.0.0.1:$HTTP --https 127.0.0.1:$HTTPS >/dev/null 2>&1 &
PID=$!
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$HTTP/pki/ca/root.crt" && break; sleep 0.2; done
for C in $CONCURRENCY; do
  target/release/sso_load "https://localhost:$HTTPS" "$D/ca/root.pem" "$WORK/o.crt" "$WORK/o.key.der" "$ID" "$SECRET" https://rp.example/cb "$SECONDS_EACH" "$C" "$PID"
done
RSS=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
python3 -c "import json,sys; print(json.dumps({'bench':'server-memory','rss_mib':round(int(sys.argv[1])/1024,1),'peak_rss_mib':round(int(sys.argv[2])/1024,1)}))" "$RSS" "$HWM"
