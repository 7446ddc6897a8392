//! ACME (RFC 8555): certbot, an independent client, gets, renews and
//! revokes a certificate with http-01; a small client of our own sends
//! what certbot never would, and each gets its ACME problem type.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// `kexin serve` fetching http-01 responses from `http01_port`, for
/// names under localhost; new accounts need an external account key from
/// the RA when `binding_required`.
fn serve_acme(ca: &Ca, http01_port: u16, binding_required: bool) -> Server {
    serve_acme_with(ca, http01_port, binding_required, &[])
}

fn serve_acme_with(
    ca: &Ca,
    http01_port: u16,
    binding_required: bool,
    env: &[(&str, &str)],
) -> Server {
    let mut cmd = kexin(&ca.dir);
    cmd.envs(env.iter().copied());
    cmd.args(["serve", "--data", "data"])
        .args(["--http", &format!("127.0.0.1:{}", ca.http)])
        .args(["--https", &format!("127.0.0.1:{}", ca.https)])
        .env("KEXIN_ACME__HTTP01_PORT", http01_port.to_string())
        .env("KEXIN_ACME__ALLOW_LOCALHOST_NAMES", "true")
        .env(
            "KEXIN_ACME__EXTERNAL_ACCOUNT_REQUIRED",
            binding_required.to_string(),
        );
    Server::start(cmd, ca.http, ca.https)
}

/// An external account key from `kexin acme eab`: (kid, HMAC key).
fn external_account(ca: &Ca, name: &str) -> (String, String) {
    let out = ca.kexin(&["acme", "eab", "--name", name, "--json"]);
    assert_ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["eab_kid"].as_str().unwrap().to_owned(),
        v["eab_hmac_key"].as_str().unwrap().to_owned(),
    )
}

fn certbot(ca: &Ca, args: &[&str]) -> std::process::Output {
    let dir = ca.file("certbot");
    Command::new("certbot")
        .args(args)
        .args([
            "--non-interactive",
            "--config-dir",
            &format!("{dir}/config"),
        ])
        .args(["--work-dir", &format!("{dir}/work"), "--logs-dir"])
        .arg(format!("{dir}/logs"))
        .env("REQUESTS_CA_BUNDLE", ca.ca_pem("root"))
        .output()
        .expect("certbot runs (pip install certbot)")
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl verify` accepts `cert` as a TLS server certificate, through
/// `chain` to our root.
fn assert_tls_server_chain(ca: &Ca, cert: &str, chain: &str) {
    let root = ca.ca_pem("root");
    let (ok, verified) = kexin_test_support::openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        &root,
        "-untrusted",
        chain,
        cert,
    ]);
    assert!(ok, "{verified}");
}

fn ocsp_status(ca: &Ca, cert: &str, chain: &str) -> String {
    let url = format!("http://127.0.0.1:{}/ocsp", ca.http);
    let root = ca.ca_pem("root");
    let (ok, out) = kexin_test_support::openssl(&[
        "ocsp", "-issuer", chain, "-cert", cert, "-url", &url, "-CAfile", &root,
    ]);
    assert!(ok && out.contains("Response verify OK"), "{out}");
    out
}

#[test]
fn certbot_gets_renews_and_revokes_a_certificate_on_sqlite() {
    let ca = Ca::init(&[]);
    certbot_gets_renews_and_revokes_a_certificate(&ca);
    let db = ca.data.join("kexin.db");
    let actions = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print('\\n'.join(r[0] for r in sqlite3.connect(sys.argv[1]).execute(\"select action from audit_log where actor like 'acme:%' order by seq\")))",
        ])
        .arg(&db)
        .output()
        .unwrap();
    let actions = String::from_utf8_lossy(&actions.stdout);
    for action in [
        "acme.account",
        "acme.validation",
        "certificate.issue",
        "certificate.revoke",
    ] {
        assert!(actions.contains(action), "{action} not audited: {actions}");
    }
}

#[test]
fn certbot_gets_renews_and_revokes_a_certificate_on_postgres() {
    let url = fresh_postgres_url();
    certbot_gets_renews_and_revokes_a_certificate(&Ca::init(&["--db", &url]));
}

fn certbot_gets_renews_and_revokes_a_certificate(ca: &Ca) {
    let http01 = free_port();
    let (kid, hmac_key) = external_account(ca, "portal");
    let server = serve_acme(ca, http01, true);
    let directory = format!("{}/acme/directory", server.https);
    let port = http01.to_string();
    let out = certbot(
        ca,
        &[
            "certonly",
            "--standalone",
            "--http-01-port",
            &port,
            "--server",
            &directory,
            "-d",
            "app.localhost",
            "-d",
            "www.app.localhost",
            "--register-unsafely-without-email",
            "--agree-tos",
            "--eab-kid",
            &kid,
            "--eab-hmac-key",
            &hmac_key,
        ],
    );
    assert_ok(&out);
    let live = ca.file("certbot/config/live/app.localhost");
    let (cert, chain) = (format!("{live}/cert.pem"), format!("{live}/chain.pem"));
    assert_tls_server_chain(ca, &cert, &chain);
    let (_, text) = kexin_test_support::openssl(&["x509", "-in", &cert, "-noout", "-text"]);
    assert!(
        text.contains("DNS:app.localhost, DNS:www.app.localhost"),
        "{text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(ocsp_status(ca, &cert, &chain).contains(": good"));
    let first = serial_of(&cert);

    // Renewal is a second order by the same account.
    assert_ok(&certbot(
        ca,
        &[
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--http-01-port",
            &port,
        ],
    ));
    let renewed = serial_of(&cert);
    assert_ne!(first, renewed, "renewal did not replace the certificate");

    assert_ok(&certbot(
        ca,
        &[
            "revoke",
            "--cert-path",
            &cert,
            "--reason",
            "keycompromise",
            "--server",
            &directory,
            "--no-delete-after-revoke",
        ],
    ));
    let status = ocsp_status(ca, &cert, &chain);
    assert!(
        status.contains(": revoked") && status.contains("keyCompromise"),
        "{status}"
    );
    drop(server);
    ca.assert_audit_intact();
}

fn lego(ca: &Ca, args: &[&str]) -> std::process::Output {
    // Global options before the command (the last of `args`).
    Command::new("lego")
        .args(["--path", &ca.file("lego")])
        .args(args)
        .env("LEGO_CA_CERTIFICATES", ca.ca_pem("root"))
        .output()
        .expect("lego runs (apt-get install lego)")
}

/// lego, a second independent client (Go, ES256 account key, P-256
/// certificate key), gets a certificate and revokes it.
#[test]
fn lego_gets_and_revokes_a_certificate() {
    let ca = Ca::init(&[]);
    let http01 = free_port();
    let (kid, hmac_key) = external_account(&ca, "lego-system");
    let server = serve_acme(&ca, http01, true);
    let directory = format!("{}/acme/directory", server.https);
    let account = [
        "--server",
        &directory,
        "--email",
        "ops@example.gov.cn",
        "--accept-tos",
        "--domains",
        "lego.localhost",
    ];
    let port = format!(":{http01}");
    let mut run = account.to_vec();
    run.extend([
        "--eab",
        "--kid",
        &kid,
        "--hmac",
        &hmac_key,
        "--http",
        "--http.port",
        &port,
        "run",
    ]);
    assert_ok(&lego(&ca, &run));
    let issued = ca.file("lego/certificates/lego.localhost.crt");
    let (cert, chain) = (ca.file("lego.pem"), ca.file("lego-issuer.pem"));
    std::fs::copy(&issued, &cert).unwrap();
    std::fs::copy(
        ca.file("lego/certificates/lego.localhost.issuer.crt"),
        &chain,
    )
    .unwrap();
    assert_tls_server_chain(&ca, &cert, &chain);
    assert!(ocsp_status(&ca, &cert, &chain).contains(": good"));
    // lego refuses to talk to a server that requires a binding without
    // one on its command line, even to revoke with an existing account;
    // the account is bound already, so any values do.
    let mut revoke = account.to_vec();
    revoke.extend([
        "--eab", "--kid", "x", "--hmac", "x", "revoke", "--reason", "4",
    ]);
    assert_ok(&lego(&ca, &revoke));
    let status = ocsp_status(&ca, &cert, &chain);
    assert!(
        status.contains(": revoked") && status.contains("superseded"),
        "{status}"
    );
}

/// Answers `GET /.well-known/acme-challenge/{token}` from `responses`.
fn challenge_server(port: u16, responses: Arc<Mutex<HashMap<String, String>>>) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let head = String::from_utf8_lossy(&request[..n]);
            let token = head
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.strip_prefix("/.well-known/acme-challenge/"))
                .unwrap_or_default()
                .to_owned();
            let body = responses.lock().unwrap().get(&token).cloned();
            let reply = match body {
                Some(b) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                    b.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
}

fn new_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap()
}

fn jwk_of(key: &EcdsaKeyPair) -> Value {
    let point = key.public_key().as_ref();
    json!({
        "crv": "P-256", "kty": "EC",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    })
}

/// An ACME client with a P-256 account key.
struct Client {
    http: reqwest::Client,
    directory: Value,
    key: EcdsaKeyPair,
    kid: Option<String>,
}

struct Reply {
    status: u16,
    location: Option<String>,
    nonce: Option<String>,
    body: Value,
}

impl Client {
    async fn new(ca: &Ca, base: &str) -> Self {
        let root = std::fs::read(ca.ca_pem("root")).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
            .build()
            .unwrap();
        let directory = http
            .get(format!("{base}/acme/directory"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            directory,
            key: new_key(),
            kid: None,
        }
    }

    fn jwk(&self) -> Value {
        jwk_of(&self.key)
    }

    /// Rolls the account over to a new key (RFC 8555 §7.3.5): the inner
    /// JWS, signed by the new key, is the payload of one signed by the old.
    /// Returns the reply and, when the server took the new key, the old.
    async fn roll_key(&mut self) -> (Reply, Option<EcdsaKeyPair>) {
        let url = self.directory["keyChange"].as_str().unwrap().to_owned();
        let new_key = new_key();
        let protected = URL_SAFE_NO_PAD
            .encode(json!({ "alg": "ES256", "jwk": jwk_of(&new_key), "url": url }).to_string());
        let payload = URL_SAFE_NO_PAD
            .encode(json!({ "account": self.kid, "oldKey": self.jwk() }).to_string());
        let signature = new_key
            .sign(
                &SystemRandom::new(),
                format!("{protected}.{payload}").as_bytes(),
            )
            .unwrap();
        let inner = json!({ "protected": protected, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()) });
        let r = self.post(&url, Some(&inner)).await;
        let old = (r.status == 200).then(|| std::mem::replace(&mut self.key, new_key));
        (r, old)
    }

    fn thumbprint(&self) -> String {
        let canonical = serde_json::to_string(&self.jwk()).unwrap();
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ))
    }

    async fn nonce(&self) -> String {
        let url = self.directory["newNonce"].as_str().unwrap();
        let r = self.http.head(url).send().await.unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    /// The JWS body for `url`, signed with kid once there is an account.
    fn jws(&self, url: &str, nonce: &str, payload: Option<&Value>) -> Vec<u8> {
        let mut protected = json!({ "alg": "ES256", "nonce": nonce, "url": url });
        match &self.kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk(),
        }
        let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload = payload
            .map(|p| URL_SAFE_NO_PAD.encode(p.to_string()))
            .unwrap_or_default();
        let signature = self
            .key
            .sign(
                &SystemRandom::new(),
                format!("{protected}.{payload}").as_bytes(),
            )
            .unwrap();
        json!({ "protected": protected, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()) })
            .to_string()
            .into_bytes()
    }

    async fn send(&self, url: &str, body: Vec<u8>, content_type: &str) -> Reply {
        let r = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, nonce) = (header("location"), header("replay-nonce"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        Reply {
            status,
            location,
            nonce,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    async fn post(&self, url: &str, payload: Option<&Value>) -> Reply {
        let nonce = self.nonce().await;
        self.send(url, self.jws(url, &nonce, payload), "application/jose+json")
            .await
    }

    /// The externalAccountBinding for this account key: a JWS over the
    /// JWK, MACed with the RA's `hmac_key` (base64url).
    fn binding(&self, kid: &str, hmac_key: &str) -> Value {
        let url = self.directory["newAccount"].as_str().unwrap();
        let protected =
            URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256", "kid": kid, "url": url }).to_string());
        let payload = URL_SAFE_NO_PAD.encode(self.jwk().to_string());
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            &URL_SAFE_NO_PAD.decode(hmac_key).unwrap(),
        );
        let tag = aws_lc_rs::hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
        json!({ "protected": protected, "payload": payload, "signature": URL_SAFE_NO_PAD.encode(tag.as_ref()) })
    }

    async fn new_account(&self, binding: Option<Value>) -> Reply {
        let url = self.directory["newAccount"].as_str().unwrap().to_owned();
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let Some(b) = binding {
            payload["externalAccountBinding"] = b;
        }
        self.post(&url, Some(&payload)).await
    }

    async fn register(&mut self) {
        let r = self.new_account(None).await;
        // 200: the key already has an account.
        assert!([200, 201].contains(&r.status), "{}", r.body);
        self.kid = r.location;
    }

    async fn order(&self, names: &[&str]) -> Reply {
        let url = self.directory["newOrder"].as_str().unwrap();
        let identifiers: Vec<Value> = names
            .iter()
            .map(|n| json!({ "type": "dns", "value": n }))
            .collect();
        self.post(url, Some(&json!({ "identifiers": identifiers })))
            .await
    }

    /// Answers the order's one challenge and waits for its outcome.
    async fn validate(
        &self,
        order: &Value,
        responses: &Mutex<HashMap<String, String>>,
        serve: Option<&str>,
    ) -> Value {
        let authz_url = order["authorizations"][0].as_str().unwrap();
        let authz = self.post(authz_url, None).await.body;
        let challenge = &authz["challenges"][0];
        let token = challenge["token"].as_str().unwrap();
        let served = serve
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{token}.{}", self.thumbprint()));
        responses.lock().unwrap().insert(token.to_owned(), served);
        let r = self
            .post(challenge["url"].as_str().unwrap(), Some(&json!({})))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let authz = self.post(authz_url, None).await.body;
            if authz["status"] != "pending" {
                return authz;
            }
            assert!(Instant::now() < deadline, "validation never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn acme_type(r: &Reply) -> String {
    r.body["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:ietf:params:acme:error:")
        .to_owned()
}

fn csr_der(ca: &Ca, name: &str, san: &str) -> String {
    let pem = ca.csr(
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=ok.localhost",
        Some(san),
    );
    let der = ca.file(&format!("{name}.der"));
    let (ok, out) =
        kexin_test_support::openssl(&["req", "-in", &pem, "-outform", "DER", "-out", &der]);
    assert!(ok, "{out}");
    URL_SAFE_NO_PAD.encode(std::fs::read(der).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_acme_requests_get_their_problem_types() {
    let ca = Ca::init(&[]);
    let http01 = free_port();
    let responses = Arc::new(Mutex::new(HashMap::new()));
    challenge_server(http01, responses.clone());
    let server = serve_acme(&ca, http01, false);
    let mut client = Client::new(&ca, &server.https).await;
    let new_account = client.directory["newAccount"].as_str().unwrap().to_owned();

    // A nonce is good once; the refusal carries the next one.
    let nonce = client.nonce().await;
    let body = client.jws(&new_account, &nonce, Some(&json!({})));
    let first = client
        .send(&new_account, body.clone(), "application/jose+json")
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let replayed = client
        .send(&new_account, body, "application/jose+json")
        .await;
    assert_eq!(
        (replayed.status, acme_type(&replayed).as_str()),
        (400, "badNonce")
    );
    assert!(replayed.nonce.is_some(), "badNonce without a Replay-Nonce");

    let nonce = client.nonce().await;
    let wrong_type = client
        .send(
            &new_account,
            client.jws(&new_account, &nonce, Some(&json!({}))),
            "application/json",
        )
        .await;
    assert_eq!(wrong_type.status, 415);
    let nonce = client.nonce().await;
    let elsewhere = client
        .send(
            &new_account,
            client.jws(&format!("{new_account}x"), &nonce, Some(&json!({}))),
            "application/jose+json",
        )
        .await;
    assert_eq!(
        (elsewhere.status, acme_type(&elsewhere).as_str()),
        (403, "unauthorized")
    );

    client.register().await;
    assert!(client.kid.is_some());
    let wildcard = client.order(&["*.app.localhost"]).await;
    assert_eq!(
        acme_type(&wildcard),
        "rejectedIdentifier",
        "{}",
        wildcard.body
    );

    // A domain that serves something else is not validated.
    let bad = client.order(&["bad.localhost"]).await;
    assert_eq!(bad.status, 201, "{}", bad.body);
    let authz = client
        .validate(&bad.body, &responses, Some("not-the-key-authorization"))
        .await;
    assert_eq!(authz["status"], "invalid", "{authz}");
    assert_eq!(
        authz["challenges"][0]["error"]["type"],
        "urn:ietf:params:acme:error:incorrectResponse"
    );
    let bad_order = client.post(bad.location.as_deref().unwrap(), None).await;
    assert_eq!(bad_order.body["status"], "invalid");

    let ok = client.order(&["ok.localhost"]).await;
    let finalize = ok.body["finalize"].as_str().unwrap().to_owned();
    let csr = csr_der(&ca, "ok", "DNS:ok.localhost");
    let early = client.post(&finalize, Some(&json!({ "csr": csr }))).await;
    assert_eq!(
        (early.status, acme_type(&early).as_str()),
        (403, "orderNotReady")
    );
    let authz = client.validate(&ok.body, &responses, None).await;
    assert_eq!(authz["status"], "valid", "{authz}");

    // Another account may not read the order; a CSR for more names than
    // were validated is refused.
    let mut other = Client::new(&ca, &server.https).await;
    other.register().await;
    let foreign = other.post(ok.location.as_deref().unwrap(), None).await;
    assert_eq!(
        (foreign.status, acme_type(&foreign).as_str()),
        (403, "unauthorized")
    );
    let extra = csr_der(&ca, "extra", "DNS:ok.localhost,DNS:other.localhost");
    let refused = client.post(&finalize, Some(&json!({ "csr": extra }))).await;
    assert_eq!(acme_type(&refused), "badCSR", "{}", refused.body);

    let done = client.post(&finalize, Some(&json!({ "csr": csr }))).await;
    assert_eq!(done.body["status"], "valid", "{}", done.body);
    let chain = client
        .post(done.body["certificate"].as_str().unwrap(), None)
        .await;
    let pem = chain.body.as_str().unwrap_or_default().to_owned();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "{pem}");
    let cert_file = ca.file("ok.pem");
    std::fs::write(&cert_file, &pem).unwrap();
    let (_, text) = kexin_test_support::openssl(&["x509", "-in", &cert_file, "-noout", "-text"]);
    assert!(
        text.contains("DNS:ok.localhost") && !text.contains("other.localhost"),
        "{text}"
    );

    // Only the ordering account (or the certificate's key) revokes.
    let der = {
        let (ok, out) = kexin_test_support::openssl(&[
            "x509",
            "-in",
            &cert_file,
            "-outform",
            "DER",
            "-out",
            &ca.file("ok.crt"),
        ]);
        assert!(ok, "{out}");
        URL_SAFE_NO_PAD.encode(std::fs::read(ca.file("ok.crt")).unwrap())
    };
    let revoke = client.directory["revokeCert"].as_str().unwrap().to_owned();
    let stranger = other
        .post(&revoke, Some(&json!({ "certificate": der })))
        .await;
    assert_eq!(
        (stranger.status, acme_type(&stranger).as_str()),
        (403, "unauthorized")
    );
    let bad_reason = client
        .post(&revoke, Some(&json!({ "certificate": der, "reason": 7 })))
        .await;
    assert_eq!(acme_type(&bad_reason), "badRevocationReason");
    let revoked = client
        .post(&revoke, Some(&json!({ "certificate": der, "reason": 1 })))
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let again = client
        .post(&revoke, Some(&json!({ "certificate": der })))
        .await;
    assert_eq!(acme_type(&again), "alreadyRevoked");

    // A key without an account is told so when it asks only for an
    // existing one; a deactivated account can do nothing more.
    let stranger = Client::new(&ca, &server.https).await;
    let url = stranger.directory["newAccount"]
        .as_str()
        .unwrap()
        .to_owned();
    let lookup = stranger
        .post(&url, Some(&json!({ "onlyReturnExisting": true })))
        .await;
    assert_eq!(acme_type(&lookup), "accountDoesNotExist", "{}", lookup.body);
    let account_url = other.kid.clone().unwrap();
    let deactivated = other
        .post(&account_url, Some(&json!({ "status": "deactivated" })))
        .await;
    assert_eq!(
        deactivated.body["status"], "deactivated",
        "{}",
        deactivated.body
    );
    let after = other.order(&["late.localhost"]).await;
    assert_eq!(
        (after.status, acme_type(&after).as_str()),
        (403, "unauthorized")
    );
}

/// A validation cut off by a stop is pending again after the restart, and
/// the client's second request for it succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_validation_can_be_asked_again() {
    let ca = Ca::init(&[]);
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = serve_acme(&ca, silent.local_addr().unwrap().port(), false);
    let mut client = Client::new(&ca, &server.https).await;
    client.register().await;
    let order = client.order(&["slow.localhost"]).await;
    let authz_url = order.body["authorizations"][0].as_str().unwrap().to_owned();
    let authz = client.post(&authz_url, None).await.body;
    let challenge_url = authz["challenges"][0]["url"].as_str().unwrap().to_owned();
    let token = authz["challenges"][0]["token"].as_str().unwrap().to_owned();
    let asked = client.post(&challenge_url, Some(&json!({}))).await;
    assert_eq!(asked.body["status"], "processing", "{}", asked.body);
    let (status, _) = server.stop();
    assert!(status.success());

    let http01 = free_port();
    let responses = Arc::new(Mutex::new(HashMap::new()));
    responses
        .lock()
        .unwrap()
        .insert(token.clone(), format!("{token}.{}", client.thumbprint()));
    challenge_server(http01, responses.clone());
    let _server = serve_acme(&ca, http01, false);
    let authz = client.post(&authz_url, None).await.body;
    assert_eq!(authz["challenges"][0]["status"], "pending", "{authz}");
    let authz = client.validate(&order.body, &responses, None).await;
    assert_eq!(authz["status"], "valid", "{authz}");
}

/// With bindings required (the default), an account opens only with an
/// unused key the RA issued, MACed correctly.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_needs_an_unused_key_from_the_ra() {
    let ca = Ca::init(&[]);
    let (admin, clerk, auditor) = (
        ca.officer("admin", "ra-admin"),
        ca.officer("clerk", "ra-officer"),
        ca.officer("audit", "auditor"),
    );
    let server = serve_acme(&ca, free_port(), true);
    // The API issues keys to an ra-admin only, and lists them without keys.
    let path = "/api/v1/acme/external-accounts";
    let body = Some(r#"{"name":"portal"}"#);
    let (code, _) = api(&ca, Some(&clerk), "POST", path, body);
    assert_eq!(code, 403);
    let (code, issued) = api(&ca, Some(&admin), "POST", path, body);
    assert_eq!(code, 201, "{issued}");
    let kid = issued["eab_kid"].as_str().unwrap().to_owned();
    let hmac_key = issued["eab_hmac_key"].as_str().unwrap().to_owned();
    let client = Client::new(&ca, &server.https).await;
    assert_eq!(client.directory["meta"]["externalAccountRequired"], true);

    let none = client.new_account(None).await;
    assert_eq!(
        (none.status, acme_type(&none).as_str()),
        (400, "externalAccountRequired")
    );
    let forged = client
        .new_account(Some(
            client.binding(&kid, &URL_SAFE_NO_PAD.encode([7u8; 32])),
        ))
        .await;
    assert_eq!(
        (forged.status, acme_type(&forged).as_str()),
        (403, "unauthorized")
    );
    let bound = client
        .new_account(Some(client.binding(&kid, &hmac_key)))
        .await;
    assert_eq!(bound.status, 201, "{}", bound.body);
    let (code, listed) = api(&ca, Some(&auditor), "GET", path, None);
    assert_eq!(code, 200);
    assert_eq!(listed["items"][0]["name"], "portal");
    assert_eq!(
        listed["items"][0]["account"].as_str(),
        bound.location.as_deref()
    );
    assert!(
        !listed.to_string().contains(&hmac_key),
        "the key was listed"
    );

    let other = Client::new(&ca, &server.https).await;
    let reused = other
        .new_account(Some(other.binding(&kid, &hmac_key)))
        .await;
    assert_eq!(
        (reused.status, acme_type(&reused).as_str()),
        (403, "unauthorized")
    );
    // A binding made for one key does not open an account for another.
    let borrowed = other
        .new_account(Some(client.binding(&kid, &hmac_key)))
        .await;
    assert_eq!(acme_type(&borrowed), "malformed", "{}", borrowed.body);
}

/// After a key rollover the account answers to the new key only.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_rolls_over_to_a_new_key() {
    let ca = Ca::init(&[]);
    let server = serve_acme(&ca, free_port(), false);
    let mut client = Client::new(&ca, &server.https).await;
    client.register().await;
    let account = client.kid.clone().unwrap();
    let nonce = client.nonce().await;
    let signed_by_old_key = client.jws(&account, &nonce, None);
    let (rolled, old_key) = client.roll_key().await;
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    let old = client
        .send(&account, signed_by_old_key, "application/jose+json")
        .await;
    assert_eq!(acme_type(&old), "malformed", "{}", old.body);
    let now = client.post(&account, None).await;
    assert_eq!(now.status, 200, "{}", now.body);
    // The old key no longer finds the account; the new one does.
    let mut old_holder = Client::new(&ca, &server.https).await;
    old_holder.key = old_key.unwrap();
    let lookup = old_holder
        .post(
            old_holder.directory["newAccount"].as_str().unwrap(),
            Some(&json!({ "onlyReturnExisting": true })),
        )
        .await;
    assert_eq!(acme_type(&lookup), "accountDoesNotExist", "{}", lookup.body);
    client.kid = None;
    let found = client
        .post(
            client.directory["newAccount"].as_str().unwrap(),
            Some(&json!({ "onlyReturnExisting": true })),
        )
        .await;
    assert_eq!(found.location.as_deref(), Some(account.as_str()));
}

/// A client gone wrong is stopped at `acme.orders_per_hour`, with a
/// Retry-After.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_opens_a_limited_number_of_orders_an_hour() {
    let ca = Ca::init(&[]);
    let server = serve_acme_with(
        &ca,
        free_port(),
        false,
        &[("KEXIN_ACME__ORDERS_PER_HOUR", "2")],
    );
    let mut client = Client::new(&ca, &server.https).await;
    client.register().await;
    for name in ["one.localhost", "two.localhost"] {
        assert_eq!(client.order(&[name]).await.status, 201);
    }
    let third = client.order(&["three.localhost"]).await;
    assert_eq!(
        (third.status, acme_type(&third).as_str()),
        (429, "rateLimited")
    );
    assert!(third.nonce.is_some());
}
