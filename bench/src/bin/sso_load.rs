//! Load for `bench/sso.sh`: certificate logins (signed challenge → SSO
//! session → authorization code → tokens, with the revocation check), refresh
//! grants, and ID-token verifications in the SDK; reports rates and p99.
//!
//! usage: sso_load ISSUER ROOT.pem CERT.pem KEY.pkcs8.der CLIENT_ID SECRET REDIRECT SECONDS CONCURRENCY [SERVER_PID]
//! HTTP/1.1 by default, as the SDK signs in; `SSO_HTTP=2` for HTTP/2.
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kexin_bench::server_cpu_seconds;

struct Setup {
    issuer: String,
    /// Built once; every client made from it is a fresh client all the
    /// same: no session to resume, so each login is a full TLS handshake.
    tls: rustls::ClientConfig,
    root_pem: Vec<u8>,
    cert_pem: String,
    key: EcdsaKeyPair,
    client_id: String,
    secret: String,
    redirect: String,
    /// The authorization request rides on the challenge's answer (three
    /// requests a login, as the SDK's `challenge_authorize`), unless
    /// `SSO_AUTHORIZE=separate`: then the login follows `/oidc/authorize`
    /// with the SSO cookie afterwards (four).
    authorize_in_answer: bool,
}

fn tls_config(root_pem: &[u8]) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // HTTP/1.1 as the SDK's challenge_login speaks it; SSO_HTTP=2 offers
    // h2 first, as a browser does.
    tls.alpn_protocols = match std::env::var("SSO_HTTP").as_deref() {
        Ok("2") => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    tls.resumption = rustls::client::Resumption::disabled();
    tls
}

fn client(tls: &rustls::ClientConfig, cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One full certificate login; returns the token response. `carry_cookie`
/// when `http` has no cookie store (a client shared by many logins, as a
/// gateway's): the SSO cookie is carried from the answer to the
/// authorization here, so that each login is still a sign-in of its own.
async fn login(s: &Setup, http: &reqwest::Client, carry_cookie: bool) -> serde_json::Value {
    let c: serde_json::Value = http
        .post(format!("{}/oidc/challenge", s.issuer))
        .form(&[("client_id", &s.client_id)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = format!(
        "kexin-sso-challenge\n{}\n{}",
        c["nonce"].as_str().unwrap(),
        s.client_id
    );
    let sig = s
        .key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), message.as_bytes())
        .unwrap();
    let verifier = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    let authorization = [
        ("response_type", "code"),
        ("client_id", &s.client_id),
        ("redirect_uri", &s.redirect),
        ("scope", "openid"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let mut body = serde_json::json!({ "challenge_id": c["challenge_id"], "certificate": s.cert_pem, "signature": STANDARD.encode(sig.as_ref()) });
    if s.authorize_in_answer {
        body["authorization"] = authorization
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let answer = http
        .post(format!("{}/oidc/challenge/answer", s.issuer))
        .json(&body)
        .send()
        .await
        .unwrap();
    let sso_cookie = answer
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .filter(|_| carry_cookie)
        .map(str::to_owned);
    assert!(answer.status().is_success());
    let answer: serde_json::Value = answer.json().await.unwrap();
    let location = if s.authorize_in_answer {
        answer["location"].as_str().expect("a location").to_owned()
    } else {
        let mut authorize = http.get(format!("{}/oidc/authorize", s.issuer));
        if let Some(c) = &sso_cookie {
            authorize = authorize.header(reqwest::header::COOKIE, c);
        }
        let r = authorize.query(&authorization).send().await.unwrap();
        r.headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    http.post(format!("{}/oidc/token", s.issuer))
        .basic_auth(&s.client_id, Some(&s.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Whether the bench `name` is to run: all are, unless SSO_ONLY names some.
fn wanted(name: &str) -> bool {
    std::env::var("SSO_ONLY").map_or(true, |only| only.split(',').any(|n| n == name))
}

async fn run<F, Fut>(name: &str, seconds: u64, concurrency: usize, server: Option<u32>, f: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    if !wanted(name) {
        return;
    }
    let f = Arc::new(f);
    let cpu_before = server_cpu_seconds(server);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                f(w).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let cpu = server_cpu_seconds(server)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    all.sort();
    let p = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": name, "count": all.len(), "per_s": (all.len() as f64 / seconds as f64).round(),
            "p50_ms": (p(0.5) * 10.0).round() / 10.0, "p99_ms": (p(0.99) * 10.0).round() / 10.0,
            "concurrency": concurrency,
            "server_cores_busy": cpu.map(|c| (c / seconds as f64 * 100.0).round() / 100.0),
            "per_server_core_s": cpu.filter(|c| *c > 0.0).map(|c| (all.len() as f64 / c).round()),
        })
    );
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let setup = Arc::new(Setup {
        issuer: a[1].clone(),
        tls: tls_config(&std::fs::read(&a[2]).unwrap()),
        root_pem: std::fs::read(&a[2]).unwrap(),
        cert_pem: std::fs::read_to_string(&a[3]).unwrap(),
        key: EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &std::fs::read(&a[4]).unwrap(),
        )
        .unwrap(),
        client_id: a[5].clone(),
        secret: a[6].clone(),
        redirect: a[7].clone(),
        authorize_in_answer: std::env::var("SSO_AUTHORIZE").as_deref() != Ok("separate"),
    });
    let (seconds, concurrency): (u64, usize) = (a[8].parse().unwrap(), a[9].parse().unwrap());
    let server: Option<u32> = a.get(10).and_then(|p| p.parse().ok());

    // Certificate logins: each worker is a fresh client (its own cookies).
    let s = setup.clone();
    run(
        "certificate-login",
        seconds,
        concurrency,
        server,
        move |_| {
            let s = s.clone();
            async move {
                let http = client(&s.tls, true);
                let tokens = login(&s, &http, false).await;
                assert!(tokens["id_token"].is_string(), "{tokens}");
            }
        },
    )
    .await;

    // The same logins over kept-alive connections: each worker one client
    // (one TLS connection) for all its logins, as a gateway or an
    // integrating system signing officials in through the SDK would hold.
    let s = setup.clone();
    let kept: Arc<Vec<reqwest::Client>> =
        Arc::new((0..concurrency).map(|_| client(&s.tls, false)).collect());
    run(
        "certificate-login-keepalive",
        seconds,
        concurrency,
        server,
        move |w| {
            let (s, kept) = (s.clone(), kept.clone());
            async move {
                let tokens = login(&s, &kept[w], true).await;
                assert!(tokens["id_token"].is_string(), "{tokens}");
            }
        },
    )
    .await;

    // Refresh grants: each worker rotates its own refresh token.
    if !wanted("refresh-grant") && !wanted("sdk-id-token-verify") {
        return;
    }
    let http = client(&setup.tls, true);
    let mut chains = Vec::new();
    for _ in 0..concurrency {
        let t = login(&setup, &client(&setup.tls, true), false).await;
        chains.push(Arc::new(tokio::sync::Mutex::new(
            t["refresh_token"].as_str().unwrap().to_owned(),
        )));
    }
    let (s, chains) = (setup.clone(), Arc::new(chains));
    run("refresh-grant", seconds, concurrency, server, move |w| {
        let (s, http, chains) = (s.clone(), http.clone(), chains.clone());
        async move {
            let mut token = chains[w].lock().await;
            let r: serde_json::Value = http
                .post(format!("{}/oidc/token", s.issuer))
                .basic_auth(&s.client_id, Some(&s.secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            *token = r["refresh_token"].as_str().expect("rotated").to_owned();
        }
    })
    .await;

    // ID-token verification in the SDK (JWKS cached), one core.
    if !wanted("sdk-id-token-verify") {
        return;
    }
    let rp = kexin_sdk::RelyingParty::discover(
        &setup.issuer,
        &setup.client_id,
        &setup.secret,
        &setup.redirect,
        Some(&setup.root_pem),
    )
    .await
    .unwrap();
    let id_token = login(&setup, &client(&setup.tls, true), false).await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    rp.verify_id_token(&id_token, None).await.unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        rp.verify_id_token(&id_token, None).await.unwrap();
        n += 1;
    }
    println!(
        "{}",
        serde_json::json!({ "bench": "sdk-id-token-verify", "per_s": (n as f64 / start.elapsed().as_secs_f64()).round(), "cores": 1 })
    );
}
