//! Single sign-on with certificates, checked by an independent OpenID
//! Connect client (Python authlib, tests/validators/oidc_flow.py).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kexin_test_support::openssl;
use serde_json::Value;

fn client_add(ca: &Ca, name: &str, redirect: &str) -> Value {
    let out = ca.kexin(&[
        "client",
        "add",
        "--name",
        name,
        "--redirect-uri",
        redirect,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["redirect_uri"] = redirect.into();
    v
}

/// Redeems `code` at `token_url` as `client` (client_secret_basic) with
/// RFC 7636's example verifier: the status and the JSON answer.
fn redeem_code(
    root: &str,
    client: &Value,
    code: &str,
    redirect: &str,
    token_url: &str,
) -> (u16, Value) {
    let (status, body) = curl(&[
        "--cacert",
        root,
        "-u",
        &format!(
            "{}:{}",
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str().unwrap()
        ),
        "-d",
        "grant_type=authorization_code",
        "-d",
        &format!("code={code}"),
        "-d",
        &format!("redirect_uri={redirect}"),
        "-d",
        "code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        token_url,
    ]);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// An official (`name`, with an auditor's certificate as PEM files) and a
/// system registered with `redirect`: the client, its ID, and the
/// official's certificate and key files.
fn official_and_system(
    ca: &Ca,
    name: &str,
    system: &str,
    redirect: &str,
) -> (Value, String, String, String) {
    let official = ca.officer(name, "auditor");
    let client = client_add(ca, system, redirect);
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let (cert, key) = pem_pair(ca, &official, name);
    (client, client_id, cert, key)
}

/// The PEM certificate and key inside an officer's PKCS#12.
fn pem_pair(ca: &Ca, p12: &str, name: &str) -> (String, String) {
    let (cert, key) = (
        ca.file(&format!("{name}.crt.pem")),
        ca.file(&format!("{name}.key.pem")),
    );
    let pass = format!("pass:{P12_PASSWORD}");
    assert!(
        openssl(&["pkcs12", "-in", p12, "-passin", &pass, "-nokeys", "-clcerts", "-out", &cert]).0
    );
    assert!(
        openssl(&["pkcs12", "-in", p12, "-passin", &pass, "-nocerts", "-nodes", "-out", &key]).0
    );
    (cert, key)
}

#[test]
fn officials_sign_in_once_with_their_certificate_and_authlib_validates_the_tokens() {
    let ca = Ca::init(&[]);
    let official = ca.officer("zhang-san", "auditor");
    let revoked = ca.officer("li-si", "auditor");
    let admin = ca.officer("wang-admin", "ra-admin");
    let ra_officer = ca.officer("zhao-ra", "ra-officer");
    let archive = client_add(&ca, "档案系统", "https://archive.example.gov.cn/callback");
    let server = ca.serve();
    // The second system is registered over the API by an ra-admin, as an
    // operator would, and must then work like one added on the command line.
    let registration = serde_json::json!({
        "name": "审批系统",
        "redirect_uris": ["http://127.0.0.1:9/cb"],
    })
    .to_string();
    assert_eq!(
        api(&ca, None, "POST", "/api/v1/clients", Some(&registration)).0,
        401
    );
    assert_eq!(
        api(
            &ca,
            Some(&ra_officer),
            "POST",
            "/api/v1/clients",
            Some(&registration)
        )
        .0,
        403
    );
    let (code, problem) = api(
        &ca,
        Some(&admin),
        "POST",
        "/api/v1/clients",
        Some(r#"{"name":"x","redirect_uris":["http://evil.example/cb"]}"#),
    );
    assert_eq!(code, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_redirect_uri"),
        "{problem}"
    );
    let (code, mut approval_system) = api(
        &ca,
        Some(&admin),
        "POST",
        "/api/v1/clients",
        Some(&registration),
    );
    assert_eq!(code, 201, "{approval_system}");
    assert!(approval_system["client_secret"].as_str().unwrap().len() >= 32);
    approval_system["redirect_uri"] = "http://127.0.0.1:9/cb".into();
    let (code, listed) = api(&ca, Some(&official), "GET", "/api/v1/clients", None);
    assert_eq!(code, 200, "{listed}");
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    assert!(items
        .iter()
        .any(|c| c["client_id"] == approval_system["client_id"] && c["name"] == "审批系统"));
    assert!(!listed
        .to_string()
        .contains(approval_system["client_secret"].as_str().unwrap()));
    let clients = serde_json::json!([archive, approval_system]);
    let clients_file = ca.file("clients.json");
    std::fs::write(&clients_file, clients.to_string()).unwrap();
    let issuer = format!("https://localhost:{}", ca.https);
    // The configured issuer follows --https; tests reach it the same way.
    let (cert, key) = pem_pair(&ca, &official, "official");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validators/oidc_flow.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&issuer, &ca.ca_pem("root"), &cert, &key, &clients_file])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["first_login_asked_to_sign_in"], true, "{r}");
    assert_eq!(r["name"], "zhang-san");
    assert_eq!(r["id_token_alg"], "ES256");
    assert_eq!(r["userinfo"]["sub"], r["sub"]);
    assert_eq!(r["token_types"], serde_json::json!(["at+jwt", "JWT"]));
    assert_eq!(r["userinfo_with_id_token"], 401);
    assert_eq!(r["id_token_active"], false);
    assert_eq!(r["reused_code"], "invalid_grant");
    assert_eq!(r["refresh_rotated"], true);
    assert_eq!(r["refresh_replayed"], "invalid_grant");
    assert_eq!(
        r["rotated_token_after_replay_active"], false,
        "reuse did not revoke the family"
    );
    assert_eq!(r["access_token_active"], true);
    assert_eq!(r["access_token_active_after_revocation"], false);
    assert_eq!(
        r["second_system_asked_to_sign_in"], false,
        "no single sign-on: {r}"
    );
    assert_eq!(r["same_account_on_second_system"], true);
    assert_eq!(r["wrong_redirect_status"], 400);
    assert_eq!(r["no_pkce_error"], "invalid_request");
    assert_eq!(r["userinfo_after_logout"], 401);
    assert_eq!(r["after_logout_asked_to_sign_in"], true);

    // A revoked certificate is refused with a clear message.
    let (_, v) = api(
        &ca,
        Some(&official),
        "GET",
        "/api/v1/certificates?subject=li-si",
        None,
    );
    let serial = v["items"][0]["serial"].as_str().unwrap().to_owned();
    ca.revoke(&serial, "keyCompromise");
    let (rcert, rkey) = pem_pair(&ca, &revoked, "revoked");
    let client_id = clients[0]["client_id"].as_str().unwrap();
    let url = format!(
        "{issuer}/oidc/authorize?response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Farchive.example.gov.cn%2Fcallback&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    let (code, body) = curl(&[
        "--cacert",
        &ca.ca_pem("root"),
        "--cert",
        &rcert,
        "--key",
        &rkey,
        &url,
    ]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("revoked"), "{body}");
    let (code, body) = curl(&["--cacert", &ca.ca_pem("root"), &url]);
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));

    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

/// A relying system: the SDK's example application.
struct System(std::process::Child);

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_system(ca: &Ca, name: &str, port: u16, client: &Value) -> System {
    start_replica(ca, name, port, client, &[])
}

/// The example system on `port`, with more of its environment: a replica
/// behind a balancer has its public URL, a session store and a state key.
fn start_replica(ca: &Ca, name: &str, port: u16, client: &Value, env: &[(&str, &str)]) -> System {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Beside this test binary: target/<profile>/deps/identity-… → target/<profile>/examples.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/relying_system");
    if !example.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "kexin-sdk", "--features", "postgres"])
            .args(["--example", "relying_system"])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let child = Command::new(example)
        .env("KEXIN_ISSUER", format!("https://localhost:{}", ca.https))
        .env("KEXIN_CLIENT_ID", client["client_id"].as_str().unwrap())
        .env(
            "KEXIN_CLIENT_SECRET",
            client["client_secret"].as_str().unwrap(),
        )
        .env("KEXIN_ROOT", ca.ca_pem("root"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("SYSTEM_NAME", name)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    System(child)
}

/// Registers the example system that will listen on `port`: its
/// callback, where it says goodbye and its back-channel logout endpoint.
fn register_system(ca: &Ca, name: &str, port: u16) -> Value {
    let out = ca.kexin(&[
        "client",
        "add",
        "--name",
        name,
        "--json",
        "--redirect-uri",
        &format!("http://127.0.0.1:{port}/callback"),
        "--redirect-uri",
        &format!("http://127.0.0.1:{port}/bye"),
        "--backchannel-logout-uri",
        &format!("http://127.0.0.1:{port}/backchannel-logout"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()
}

#[test]
fn single_sign_on_and_single_logout_across_two_systems_in_chromium() {
    let ca = Ca::init(&[]);
    let official = ca.officer("zhang-san", "auditor");
    let (pa, pb) = (free_port(), free_port());
    let (ca_client, cb_client) = (
        register_system(&ca, "档案系统", pa),
        register_system(&ca, "审批系统", pb),
    );
    let server = ca.serve();
    let _a = start_system(&ca, "档案系统", pa, &ca_client);
    let _b = start_system(&ca, "审批系统", pb, &cb_client);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/sso.mjs"))
        .env("KEXIN_URL", format!("https://localhost:{}", ca.https))
        .env("SYSTEM_A", format!("http://127.0.0.1:{pa}"))
        .env("SYSTEM_B", format!("http://127.0.0.1:{pb}"))
        .env("OFFICIAL_P12", &official)
        .env("P12_PASSWORD", P12_PASSWORD)
        .env("SHOTS", root.join("target/browser-screenshots"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
    // Both systems got a logout token and accepted it (HTTP 200).
    let accepted = sqlite(
        &ca,
        r#"select count(*) from audit_log where action='sso.backchannel-logout' and detail like '%"status":200%'"#,
    );
    assert_eq!(accepted, "2");
}

#[test]
fn a_signed_challenge_signs_in_once_and_refuses_replays_and_revoked_certificates() {
    let ca = Ca::init(&[]);
    let official = ca.officer("wang-wu", "auditor");
    let client = client_add(&ca, "网关后的系统", "https://gateway.example.gov.cn/cb");
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let (cert, key) = pem_pair(&ca, &official, "wang");
    let server = ca.serve();
    let base = format!("https://localhost:{}", ca.https);
    let root = ca.ca_pem("root");
    let challenge = || {
        let (code, body) = curl(&[
            "--cacert",
            &root,
            "-d",
            &format!("client_id={client_id}"),
            &format!("{base}/oidc/challenge"),
        ]);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<Value>(&body).unwrap()
    };
    let sign = |message: &str| {
        let (msg, sig) = (ca.file("msg.bin"), ca.file("sig.der"));
        std::fs::write(&msg, message).unwrap();
        assert!(openssl(&["dgst", "-sha256", "-sign", &key, "-out", &sig, &msg]).0);
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&sig).unwrap())
    };
    let jar = ca.file("cookies.txt");
    let answer_with = |id: &str, signature: &str, authorization: Option<Value>| {
        let mut body = serde_json::json!({
            "challenge_id": id,
            "certificate": std::fs::read_to_string(&cert).unwrap(),
            "signature": signature,
        });
        if let Some(a) = authorization {
            body["authorization"] = a;
        }
        let body = body.to_string();
        let (code, out) = curl(&[
            "--cacert",
            &root,
            "-b",
            &jar,
            "-c",
            &jar,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
            &format!("{base}/oidc/challenge/answer"),
        ]);
        (
            code,
            serde_json::from_slice::<Value>(&out).unwrap_or(Value::Null),
        )
    };
    let answer = |id: &str, signature: &str| answer_with(id, signature, None);
    // A certificate whose PEM body is shorter than it declares is refused
    // at once (der's streaming PEM reader would loop on it forever).
    let post_answer = |body: &Value| {
        let (code, out) = curl(&[
            "--cacert",
            &root,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
            &format!("{base}/oidc/challenge/answer"),
        ]);
        (
            code,
            serde_json::from_slice::<Value>(&out).unwrap_or(Value::Null),
        )
    };
    let (code, v) = post_answer(&serde_json::json!({
        "challenge_id": challenge()["challenge_id"],
        "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "signature": "AA==",
    }));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("unreadable certificate"),
        "{v}"
    );
    // A malformed challenge request or answer gets an OAuth error
    // document, as every refusal here.
    let (code, out) = curl(&[
        "--cacert",
        &root,
        "-d",
        "client=x",
        &format!("{base}/oidc/challenge"),
    ]);
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let (code, v) = post_answer(&serde_json::json!({ "challenge_id": 1, "authorization": "nope" }));
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );

    let c = challenge();
    let message = format!(
        "kexin-sso-challenge\n{}\n{client_id}",
        c["nonce"].as_str().unwrap()
    );
    let signature = sign(&message);
    let (code, v) = answer(c["challenge_id"].as_str().unwrap(), &signature);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["name"], "wang-wu");
    // The same answer again: the challenge is spent.
    let (code, v) = answer(c["challenge_id"].as_str().unwrap(), &signature);
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // Six answers to one challenge at once: one signs in.
    let c = challenge();
    let body = serde_json::json!({
        "challenge_id": c["challenge_id"],
        "certificate": std::fs::read_to_string(&cert).unwrap(),
        "signature": sign(&format!(
            "kexin-sso-challenge\n{}\n{client_id}",
            c["nonce"].as_str().unwrap()
        )),
    });
    let mut outcomes: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let answers: Vec<_> = (0..6).map(|_| s.spawn(|| post_answer(&body))).collect();
        answers
            .into_iter()
            .map(|a| {
                let (code, v) = a.join().unwrap();
                (code, v["error"].as_str().map(str::to_owned))
            })
            .collect()
    });
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            vec![(200, None)],
            vec![(400, Some("invalid_grant".to_owned())); 5]
        ]
        .concat()
    );

    // The session the challenge started gives a code without a client certificate.
    let authorize = format!(
        "{base}/oidc/authorize?response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Fgateway.example.gov.cn%2Fcb&scope=openid&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    // Status and redirect of an authorization request with the session cookie only.
    let authorize_with_session = || {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                &root,
                "-b",
                &jar,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                &authorize,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.into_owned()
    };
    let text = authorize_with_session();
    assert!(
        text.starts_with("303 https://gateway.example.gov.cn/cb?code="),
        "{text} jar: {}",
        std::fs::read_to_string(&jar).unwrap_or_default()
    );
    // Tokens from that session, with a refresh token, before any revocation.
    let code_value = text
        .split("code=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .to_owned();
    let token = |form: &[&str]| {
        let mut args = vec![
            "--cacert".to_owned(),
            root.clone(),
            "-u".to_owned(),
            format!("{client_id}:{}", client["client_secret"].as_str().unwrap()),
        ];
        for f in form {
            args.extend(["-d".to_owned(), (*f).to_owned()]);
        }
        args.push(format!("{base}/oidc/token"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body) = curl(&refs);
        (
            status,
            serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let (status, tokens) = token(&[
        "grant_type=authorization_code",
        &format!("code={code_value}"),
        "redirect_uri=https://gateway.example.gov.cn/cb",
        "code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ]);
    assert_eq!(status, 200, "{tokens}");
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The session outlives a restart of the server: it is stored, not
    // held in memory.
    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
    let server = ca.serve();
    let text = authorize_with_session();
    assert!(
        text.starts_with("303 https://gateway.example.gov.cn/cb?code="),
        "after a restart: {text}"
    );

    // An answer may carry the authorization request and get its redirect,
    // with a code, back at once.
    let authorization = |client: &str, redirect: &str| {
        serde_json::json!({
            "response_type": "code", "client_id": client, "redirect_uri": redirect,
            "scope": "openid", "state": "s2",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
        })
    };
    // A fresh challenge, answered with the official's key.
    let answer_for = |a: Option<Value>| {
        let c = challenge();
        let message = format!(
            "kexin-sso-challenge\n{}\n{client_id}",
            c["nonce"].as_str().unwrap()
        );
        answer_with(c["challenge_id"].as_str().unwrap(), &sign(&message), a)
    };
    let (code, v) = answer_for(Some(authorization(
        &client_id,
        "https://gateway.example.gov.cn/cb",
    )));
    assert_eq!(code, 200, "{v}");
    let location = v["location"].as_str().unwrap();
    assert!(
        location.starts_with("https://gateway.example.gov.cn/cb?code=")
            && location.ends_with("&state=s2"),
        "{v}"
    );
    let code_value = location
        .split("code=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .unwrap();
    let (status, tokens) = token(&[
        "grant_type=authorization_code",
        &format!("code={code_value}"),
        "redirect_uri=https://gateway.example.gov.cn/cb",
        "code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ]);
    assert_eq!(
        (status, tokens["id_token"].is_string()),
        (200, true),
        "{tokens}"
    );
    // Not to a redirect URI the client did not register, nor for another
    // client than the challenge's; neither signs in.
    let jar_before = std::fs::read_to_string(&jar).unwrap();
    let (code, v) = answer_for(Some(authorization(&client_id, "https://evil.example/cb")));
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let other = client_add(&ca, "另一个系统", "https://other.example.gov.cn/cb");
    let (code, v) = answer_for(Some(authorization(
        other["client_id"].as_str().unwrap(),
        "https://other.example.gov.cn/cb",
    )));
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("another client"),
        "{v}"
    );
    assert_eq!(std::fs::read_to_string(&jar).unwrap(), jar_before);

    // A signature over something else, and a nonce for another client, fail.
    let c = challenge();
    let (code, v) = answer(
        c["challenge_id"].as_str().unwrap(),
        &sign("kexin-sso-challenge\nforged\nx"),
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{v}"
    );

    let answer_fresh = || answer_for(None);

    // A sign-in the audit trail cannot record opens no session: with
    // every insert into the trail refused, a good answer gets a server
    // error and no cookie; once the trail takes writes again, so do
    // sign-ins.
    let sql = |statement: &str| {
        sqlite(&ca, statement);
    };
    sql("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END");
    let jar_before = std::fs::read_to_string(&jar).unwrap();
    let (code, v) = answer_fresh();
    assert_eq!(
        (code, v["error"].as_str()),
        (500, Some("server_error")),
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(&jar).unwrap(),
        jar_before,
        "an unaudited sign-in set a session cookie"
    );
    sql("DROP TRIGGER refuse_audit");
    let (code, v) = answer_fresh();
    assert_eq!(code, 200, "{v}");

    // A revoked certificate is refused, with the reason.
    let (_, found) = api(
        &ca,
        Some(&official),
        "GET",
        "/api/v1/certificates?subject=wang-wu",
        None,
    );
    let serial = found["items"][0]["serial"].as_str().unwrap().to_owned();
    ca.revoke(&serial, "keyCompromise");
    let (code, v) = answer_fresh();
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error_description"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    // Its refresh token no longer works: the grant ends with the certificate.
    let (status, v) = token(&[
        "grant_type=refresh_token",
        &format!("refresh_token={refresh_token}"),
    ]);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked or held"),
        "{v}"
    );

    // Nor does the session opened before the revocation give codes.
    let text = authorize_with_session();
    assert!(
        text.starts_with("403"),
        "a revoked certificate's session still gives codes: {text}"
    );
    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

/// An authorization code for `client_id`, signing in with the official's
/// PEM certificate and key over mutual TLS (sign-in page, then confirm).
/// The PKCE verifier is RFC 7636's example, `dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk`.
fn code_by_certificate(ca: &Ca, cert: &str, key: &str, client_id: &str, redirect: &str) -> String {
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&scope=openid&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        redirect.replace(':', "%3A").replace('/', "%2F")
    );
    sign_in_by_certificate(ca, cert, key, &query)
        .split("code=")
        .nth(1)
        .expect("a code")
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

/// Where the provider sends the browser back to after the official signs
/// in with the PEM certificate and key over mutual TLS (sign-in page, then
/// confirm) for the authorization request `query`.
fn sign_in_by_certificate(ca: &Ca, cert: &str, key: &str, query: &str) -> String {
    let (root, base) = (ca.ca_pem("root"), format!("https://localhost:{}", ca.https));
    let jar = ca.file("code-jar.txt");
    let (code, _) = curl(&[
        "--cacert",
        &root,
        "--cert",
        cert,
        "--key",
        key,
        "-c",
        &jar,
        &format!("{base}/oidc/authorize?{query}"),
    ]);
    assert_eq!(code, 200, "the sign-in page");
    let out = Command::new("curl")
        .args([
            "-sS", "--cacert", &root, "--cert", cert, "--key", key, "-b", &jar, "-c", &jar,
        ])
        .args([
            "-H",
            &format!("Origin: {base}"),
            "-d",
            query,
            "-o",
            "/dev/null",
            "-w",
            "%{redirect_url}",
        ])
        .arg(format!("{base}/oidc/authorize"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request to a relying system from the browser whose cookies are in
/// `jar` (none: `None`): status, where it redirects and the body.
fn browse(url: &str, jar: Option<&str>) -> (u16, String, String) {
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code} %{redirect_url}",
    ];
    if let Some(jar) = jar {
        args.extend(["-b", jar, "-c", jar]);
    }
    let out = Command::new("curl").args(&args).arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = out.rsplit_once('\n').unwrap();
    let (code, location) = last.split_once(' ').unwrap();
    (code.parse().unwrap(), location.to_owned(), body.to_owned())
}

/// The example system, registered and running on a port of its own, with
/// the server and an official's PEM certificate and key.
struct ExampleSystem {
    cert: String,
    key: String,
    port: u16,
    base: String,
    client: Value,
    server: Server,
    _system: System,
}

impl ExampleSystem {
    fn start(ca: &Ca, official: &str) -> Self {
        let p12 = ca.officer(official, "auditor");
        let (cert, key) = pem_pair(ca, &p12, official);
        let port = free_port();
        let client = register_system(ca, "档案系统", port);
        let server = ca.serve();
        let system = start_system(ca, "档案系统", port, &client);
        Self {
            cert,
            key,
            port,
            base: format!("http://127.0.0.1:{port}"),
            client,
            server,
            _system: system,
        }
    }

    /// The callback URL of a sign-in that the browser of `jar` starts at
    /// the system and the official completes at the provider.
    fn signed_in_callback(&self, ca: &Ca, jar: &str) -> String {
        let (code, authorize, _) = browse(&format!("{}/login", self.base), Some(jar));
        assert_eq!(code, 303);
        let query = authorize.split_once('?').unwrap().1;
        sign_in_by_certificate(ca, &self.cert, &self.key, query)
    }

    fn stop(self) {
        let (status, output) = self.server.stop();
        assert!(status.success() && !output.contains("panicked"), "{output}");
    }
}

/// The SDK finishes a sign-in only in the browser that started it, once,
/// and keeps nothing for sign-ins started and never finished.
#[test]
fn a_relying_system_finishes_only_the_sign_in_its_browser_started() {
    let ca = Ca::init(&[]);
    let system = ExampleSystem::start(&ca, "li-si");
    let base = system.base.clone();
    let (browser, other) = (ca.file("browser-jar.txt"), ca.file("other-jar.txt"));

    let (code, _, _) = browse(&format!("{base}/"), Some(&browser));
    assert_eq!(code, 303, "not signed in yet");
    let callback = system.signed_in_callback(&ca, &browser);
    assert!(
        callback.starts_with(&format!("{base}/callback?code=")),
        "{callback}"
    );

    // The callback URL, sent to someone else or opened by another browser
    // that started a sign-in of its own, signs nobody in.
    let (code, _, body) = browse(&callback, None);
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            "this sign-in was not started in this browser: sign in again"
        )
    );
    browse(&format!("{base}/login"), Some(&other));
    let (code, _, _) = browse(&callback, Some(&other));
    assert_eq!(code, 400);
    let (code, _, _) = browse(&format!("{base}/"), Some(&other));
    assert_eq!(code, 303);

    // The browser that started it is signed in; the code was not spent by
    // the refusals.
    let (code, home, body) = browse(&callback, Some(&browser));
    assert_eq!(
        (code, home.as_str()),
        (303, format!("{base}/").as_str()),
        "{body}"
    );
    let (code, _, body) = browse(&format!("{base}/"), Some(&browser));
    assert_eq!(code, 200);
    assert!(body.contains("欢迎 li-si"), "{body}");

    // Replayed, even by that browser, the callback is refused.
    let (code, _, _) = browse(&callback, Some(&browser));
    assert_eq!(code, 400);
    // A state the system never stamped is refused before the provider is
    // asked.
    let forged = ca.file("forged-jar.txt");
    std::fs::write(
        &forged,
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tkexin_rp_login\tAAAA\n",
    )
    .unwrap();
    let (code, _, body) = browse(&format!("{base}/callback?code=x&state=AAAA"), Some(&forged));
    assert_eq!(
        (code, body.as_str()),
        (400, "unknown or expired sign-in: sign in again")
    );

    system.stop();
}

/// Runs `statement` on the instance's SQLite database.
fn sqlite(ca: &Ca, statement: &str) -> String {
    sqlite_value(&ca.data.join("kexin.db"), statement)
}

/// The HTTP statuses of GETs of `urls`, all sent at once by the browser
/// of `jar`.
fn statuses_at_once(jar: &str, urls: &[String]) -> Vec<String> {
    let requests: Vec<_> = urls
        .iter()
        .map(|url| {
            let (jar, url) = (jar.to_owned(), url.clone());
            std::thread::spawn(move || {
                let out = Command::new("curl")
                    .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
                    .args(["-b", &jar, &url])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    requests.into_iter().map(|r| r.join().unwrap()).collect()
}

/// Sets the provider's access-token lifetime to 62 s: at a session's first
/// check, 5 s after sign-in, less than the SDK's 60 s margin is left, so
/// every check renews.
fn short_access_tokens(ca: &Ca) {
    let config = ca.data.join("kexin.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("access_token_lifetime_secs = 300"), "{text}");
    let text = text.replace(
        "access_token_lifetime_secs = 300",
        "access_token_lifetime_secs = 62",
    );
    std::fs::write(&config, text).unwrap();
}

/// An official who keeps using a system past the access token's lifetime
/// stays signed in: the SDK renews the token with the refresh token before
/// it expires, once however many requests arrive at once, and again with
/// the rotated token; once the SSO session has ended (here as its idle
/// timeout would end it), or the official's certificate is revoked, the
/// renewal is refused and the official is sent to sign in.
#[test]
fn a_relying_system_renews_the_access_tokens_of_sessions_in_use() {
    let ca = Ca::init(&[]);
    short_access_tokens(&ca);
    let system = ExampleSystem::start(&ca, "zhao-liu");
    let base = system.base.clone();
    let browser = ca.file("browser-jar.txt");
    let callback = system.signed_in_callback(&ca, &browser);
    assert_eq!(browse(&callback, Some(&browser)).0, 303);
    let rotated = || {
        sqlite(
            &ca,
            "select count(*) from oidc_refresh_tokens where state = 'rotated'",
        )
    };
    assert_eq!(rotated(), "0");
    let home = vec![format!("{base}/"); 8];
    for renewals in ["1", "2"] {
        std::thread::sleep(std::time::Duration::from_secs(6));
        assert_eq!(statuses_at_once(&browser, &home), vec!["200"; 8]);
        assert_eq!(rotated(), renewals, "one renewal per check");
    }

    let to_sign_in = |jar: &str| {
        std::thread::sleep(std::time::Duration::from_secs(6));
        let (code, location, _) = browse(&format!("{base}/"), Some(jar));
        assert_eq!(
            (code, location.as_str()),
            (303, format!("{base}/login").as_str())
        );
    };
    // The SSO session idles out (its end moved into the past).
    let ended = "update oidc_sessions set expires_at = expires_at - 100000";
    sqlite(&ca, ended);
    to_sign_in(&browser);
    assert_eq!(
        sqlite(
            &ca,
            "select count(*) from oidc_refresh_tokens where state = 'active'"
        ),
        "0",
        "the family of an ended session's token is revoked"
    );

    // A new session, then the certificate revoked.
    let again = ca.file("again-jar.txt");
    let callback = system.signed_in_callback(&ca, &again);
    assert_eq!(browse(&callback, Some(&again)).0, 303);
    ca.revoke(&serial_of(&system.cert), "keyCompromise");
    to_sign_in(&again);
    system.stop();
}

/// Two replicas of the example system behind one public address (the
/// first's), sharing a state key and a session store in PostgreSQL
/// (reached over TLS, the server's certificate checked), as a
/// balancer that sends each request anywhere needs: a sign-in started at
/// the second finishes at the first; the session is good at both; when
/// both check it at once, its refresh token is presented once (twice would
/// end the official's sign-in, the provider taking the second for a
/// theft), also once its access token has expired, when the others wait
/// for the renewal; signing out at one ends it at both.
#[test]
fn replicas_of_a_relying_system_share_sign_ins_and_sessions() {
    let ca = Ca::init(&[]);
    short_access_tokens(&ca);
    let p12 = ca.officer("qian-qi", "auditor");
    let (cert, key) = pem_pair(&ca, &p12, "qian-qi");
    let (first, second) = (free_port(), free_port());
    let client = register_system(&ca, "档案系统", first);
    let _server = ca.serve();
    let sessions_db = over_tls(&fresh_postgres_url(), None);
    let state_key = ca.file("state-key.bin");
    assert!(openssl(&["rand", "-out", &state_key, "32"]).0);
    let public = format!("http://127.0.0.1:{first}");
    let replica = |port| {
        let env = [
            ("PUBLIC_URL", public.as_str()),
            ("SESSIONS_DB", sessions_db.as_str()),
            ("STATE_KEY_FILE", state_key.as_str()),
        ];
        start_replica(&ca, "档案系统", port, &client, &env)
    };
    let (_a, _b) = (replica(first), replica(second));
    let at = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    let browser = ca.file("browser-jar.txt");

    let (code, authorize, _) = browse(&at(second, "/login"), Some(&browser));
    assert_eq!(code, 303);
    let query = authorize.split_once('?').unwrap().1;
    let callback = sign_in_by_certificate(&ca, &cert, &key, query);
    assert!(
        callback.starts_with(&at(first, "/callback?code=")),
        "{callback}"
    );
    let (code, home, body) = browse(&callback, Some(&browser));
    assert_eq!((code, home), (303, at(first, "/")), "{body}");
    for port in [first, second] {
        let (code, _, body) = browse(&at(port, "/"), Some(&browser));
        assert_eq!(code, 200, "replica on {port}");
        assert!(body.contains("欢迎 qian-qi"), "{body}");
    }

    let rotated = || {
        sqlite(
            &ca,
            "select count(*) from oidc_refresh_tokens where state = 'rotated'",
        )
    };
    let homes: Vec<String> = [first, second]
        .iter()
        .flat_map(|&port| vec![at(port, "/"); 6])
        .collect();
    for renewals in ["1", "2"] {
        std::thread::sleep(std::time::Duration::from_secs(6));
        assert_eq!(statuses_at_once(&browser, &homes), vec!["200"; 12]);
        assert_eq!(rotated(), renewals, "one renewal per check, at either");
    }
    // Back after the access token has expired: the requests that find the
    // session being renewed elsewhere wait for the renewal, and none is
    // sent to sign in.
    std::thread::sleep(std::time::Duration::from_secs(64));
    assert_eq!(statuses_at_once(&browser, &homes), vec!["200"; 12]);
    assert_eq!(rotated(), "3");

    let (code, _, _) = browse(&at(second, "/logout"), Some(&browser));
    assert_eq!(code, 303);
    let (code, location, _) = browse(&at(first, "/"), Some(&browser));
    assert_eq!((code, location), (303, at(first, "/login")));
}

/// The SDK's PostgreSQL session store keeps its invariants across
/// replicas (two stores on one database, as two processes have them): one
/// holder at a time may check a session, and saving gives the right up, as
/// does time; a back-channel logout ends every session of its SSO session;
/// idle sessions are swept; replicas starting together both find the table;
/// a database whose certificate another CA issued is refused, not panicked
/// over.
#[test]
fn sessions_in_postgresql_are_checked_by_one_replica_at_a_time() {
    use kexin_sdk::sessions::{PgSessionStore, Session, SessionStore};
    let db = fresh_postgres_url();
    let session = |sid: &str, checked_at: u64| Session {
        claims: serde_json::json!({ "sid": sid, "name": "孙八" }),
        access_token: "at".into(),
        refresh_token: Some("rt".into()),
        expires_at: checked_at + 300,
        checked_at,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = self_signed_ca(other.path(), "not the database's CA");
    let wrong = over_tls(&db, Some(&wrong_ca)).replace("verify-full", "verify-ca");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let refused = PgSessionStore::connect(&wrong).await.err().unwrap();
        assert!(
            refused.to_string().contains("invalid peer certificate"),
            "{refused}"
        );
        let (a, b) = tokio::join!(PgSessionStore::connect(&db), PgSessionStore::connect(&db));
        let (a, b) = (a.unwrap(), b.unwrap());
        a.save("k", &session("s1", now)).await.unwrap();
        assert_eq!(b.load("k").await.unwrap(), Some(session("s1", now)));
        assert!(a.claim_check("k", now, now + 30).await.unwrap());
        assert!(!b.claim_check("k", now + 29, now + 59).await.unwrap());
        assert!(
            b.claim_check("k", now + 30, now + 60).await.unwrap(),
            "lapsed"
        );
        b.save("k", &session("s1", now + 31)).await.unwrap();
        assert!(
            a.claim_check("k", now + 31, now + 61).await.unwrap(),
            "given up"
        );
        assert!(!a.claim_check("nothing", now, now + 30).await.unwrap());

        a.save("many", &session("s1", now)).await.unwrap();
        let claims = (0..16).map(|i| {
            let store = if i % 2 == 0 { &a } else { &b };
            store.claim_check("many", now, now + 30)
        });
        let taken = futures_util::future::join_all(claims).await;
        let taken = taken.into_iter().filter(|t| *t.as_ref().unwrap()).count();
        assert_eq!(taken, 1, "one of 16 claims at once");

        b.save("other", &session("s2", now)).await.unwrap();
        b.remove_sso_session("s1").await.unwrap();
        assert_eq!(a.load("k").await.unwrap(), None);
        assert_eq!(a.load("many").await.unwrap(), None);
        a.remove("other").await.unwrap();
        assert_eq!(b.load("other").await.unwrap(), None);

        let idle = kexin_sdk::axum::SESSION_IDLE.as_secs();
        a.save("idle", &session("s3", now - idle)).await.unwrap();
        a.save("used", &session("s3", now - idle / 2))
            .await
            .unwrap();
        let starting = PgSessionStore::connect(&db).await.unwrap();
        starting.save("new", &session("s3", now)).await.unwrap();
        assert_eq!(a.load("idle").await.unwrap(), None, "swept");
        assert!(a.load("used").await.unwrap().is_some());
    });
}

/// The SDK's `BearerToken` extractor on the example system's `/api/me`:
/// its own access token passes; no token, an ID token, another system's
/// access token and an altered one get 401 with RFC 6750's challenge.
#[test]
fn a_relying_system_api_takes_only_its_own_access_tokens() {
    let ca = Ca::init(&[]);
    let system = ExampleSystem::start(&ca, "wang-wu");
    let (cert, key, port) = (&system.cert, &system.key, system.port);
    let other = client_add(&ca, "审批系统", "https://approval.example.gov.cn/cb");
    let (root, base) = (ca.ca_pem("root"), format!("https://localhost:{}", ca.https));
    let tokens = |client: &Value, redirect: &str| {
        let client_id = client["client_id"].as_str().unwrap();
        let code = code_by_certificate(&ca, cert, key, client_id, redirect);
        let (status, tokens) = redeem_code(
            &root,
            client,
            &code,
            redirect,
            &format!("{base}/oidc/token"),
        );
        assert_eq!(status, 200, "{tokens}");
        tokens
    };
    let callback = format!("http://127.0.0.1:{port}/callback");
    let mut client = system.client.clone();
    client["redirect_uri"] = callback.as_str().into();
    let ours = tokens(&client, &callback);
    let theirs = tokens(&other, "https://approval.example.gov.cn/cb");
    let api = |authorization: Option<String>| {
        let mut args = vec![
            "-sS".to_owned(),
            "-w".to_owned(),
            "\n%{http_code} %header{www-authenticate}".to_owned(),
        ];
        if let Some(a) = authorization {
            args.extend(["-H".to_owned(), format!("Authorization: {a}")]);
        }
        let out = Command::new("curl")
            .args(&args)
            .arg(format!("http://127.0.0.1:{port}/api/me"))
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, last) = out.rsplit_once('\n').unwrap();
        let (code, challenge) = last.split_once(' ').unwrap();
        (
            code.parse::<u16>().unwrap(),
            challenge.to_owned(),
            body.to_owned(),
        )
    };
    let bearer = |t: &Value| Some(format!("Bearer {}", t.as_str().unwrap()));

    let (code, _, body) = api(bearer(&ours["access_token"]));
    assert_eq!(code, 200, "{body}");
    let payload = ours["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)
    };
    let claims: Value = serde_json::from_slice(&payload.unwrap()).unwrap();
    assert_eq!(body, claims["sub"].to_string());
    let lower = format!("bearer {}", ours["access_token"].as_str().unwrap());
    assert_eq!(api(Some(lower)).0, 200, "the scheme is case-insensitive");

    assert_eq!(
        api(None),
        (401, r#"Bearer realm="kexin""#.to_owned(), String::new())
    );
    for (token, why) in [
        (bearer(&ours["id_token"]), "another kind of token"),
        (bearer(&theirs["access_token"]), "issued to another system"),
        (
            Some(format!(
                "Bearer {}x",
                ours["access_token"].as_str().unwrap()
            )),
            "signature",
        ),
        (Some("Bearer a.b.c.d".to_owned()), "not a JWT"),
    ] {
        let (code, challenge, _) = api(token);
        assert_eq!(code, 401, "{why}");
        assert!(
            challenge.starts_with(
                r#"Bearer realm="kexin", error="invalid_token", error_description="invalid token: "#
            ) && challenge.contains(why),
            "{challenge}"
        );
    }
    system.stop();
}

/// A TSA on loopback that answers every request with `reply`.
async fn canned_tsa(reply: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                // The whole request (headers and body) before answering.
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut chunk).await {
                    request.extend_from_slice(&chunk[..n]);
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let length = String::from_utf8_lossy(&request[..end])
                        .to_lowercase()
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(str::to_owned))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() - end - 4 >= length {
                        break;
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/timestamp-reply\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    reply.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&reply).await;
            });
        }
    });
    base
}

/// A token key rotated in while the server runs is published at the
/// server's next check, and signs only once every server publishes it and
/// JWKS cached before have expired (the server's clock is moved on, by
/// libfaketime); the earlier key stays published while a token it signed
/// can be live, then is retired.
#[test]
fn token_keys_rotate_and_earlier_keys_stay_published() {
    let ca = Ca::init(&[]);
    let official = ca.officer("zhao-liu", "auditor");
    let client = client_add(&ca, "系统", "https://sys.example.gov.cn/cb");
    let (cert, key) = pem_pair(&ca, &official, "zhao");
    let root = ca.ca_pem("root");
    let base = format!("https://localhost:{}", ca.https);
    let kids = || {
        let (code, body) = curl(&["--cacert", &root, &format!("{base}/oidc/jwks")]);
        assert_eq!(code, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        // The ES256 keys, in the JWKS's order (the SM2 key is apart).
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["alg"] == "ES256")
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // The key id of a sign-in's ID token.
    let client_id = client["client_id"].as_str().unwrap();
    let id_token_kid = || {
        let code_value =
            code_by_certificate(&ca, &cert, &key, client_id, "https://sys.example.gov.cn/cb");
        let (status, tokens) = redeem_code(
            &root,
            &client,
            &code_value,
            "https://sys.example.gov.cn/cb",
            &format!("{base}/oidc/token"),
        );
        assert_eq!(status, 200, "{tokens}");
        let header = tokens["id_token"]
            .as_str()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        use base64::Engine;
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .unwrap(),
        )
        .unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let clock = ca.file("faketime");
    set_faked_clock(&clock, "+0");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock).env("KEXIN_CA__CERTIFICATE_CHECK_SECS", "1");
    let server = Server::start(serve, ca.http, ca.https);
    let before = kids();
    assert_eq!(before.len(), 1);
    assert_eq!(id_token_kid(), before[0]);

    let out = ca.kexin(&["oidc", "rotate-key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_kid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    until("the new key is not published", &|| kids().len() == 2);
    assert_eq!(
        kids(),
        vec![new_kid.clone(), before[0].clone()],
        "newest first, the earlier key still published"
    );
    assert_eq!(
        id_token_kid(),
        before[0],
        "the new key does not sign before its time"
    );

    // Past its time (2 checks of the configuration's 60 s, and the JWKS's
    // 300 s of caching, after the rotation): the new key signs.
    set_faked_clock(&clock, "+600");
    until("the new key does not sign", &|| id_token_kid() == new_kid);
    assert_eq!(kids(), vec![new_kid.clone(), before[0].clone()]);
    // Once no token the earlier key signed can be live (the new key has
    // signed for two checks and the 300 s of an access token), the earlier
    // key is retired from the JWKS.
    set_faked_clock(&clock, "+900");
    until("the earlier key is not retired", &|| kids().len() == 1);
    assert_eq!(kids(), vec![new_kid.clone()]);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn the_sdk_signs_in_by_challenge_from_a_pkcs12_and_uses_the_trust_services() {
    let ca = Ca::init(&[]);
    let official = ca.officer("zhou-qi", "ra-officer");
    let seal_admin = ca.officer("seal-keeper", "seal-admin");
    let revoked = ca.officer("wu-jiu", "auditor");
    let client = client_add(&ca, "系统", "https://sys.example.gov.cn/cb");
    let out = ca.kexin(&[
        "seal",
        "create",
        "--name",
        "档案章",
        "--org",
        "某某局",
        "--uscc",
        "91350100M000100Y43",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (revoked_pem, _) = pem_pair(&ca, &revoked, "wu");
    ca.revoke(&serial_of(&revoked_pem), "keyCompromise");
    // A one-page PDF, its cross-reference table rebuilt by qpdf.
    let (raw, plain) = (ca.file("raw.pdf"), ca.file("plain.pdf"));
    std::fs::write(&raw, "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >> endobj\ntrailer << /Size 4 /Root 1 0 R >>\n%%EOF\n").unwrap();
    let repaired = Command::new("qpdf")
        .args([raw.as_str(), plain.as_str()])
        .status()
        .unwrap();
    assert!(
        matches!(repaired.code(), Some(0 | 3)),
        "qpdf rebuilt the PDF"
    );
    let server = ca.serve();
    let (code, _) = api(
        &ca,
        Some(&seal_admin),
        "POST",
        "/api/v1/seals/%E6%A1%A3%E6%A1%88%E7%AB%A0/users",
        Some(r#"{"principal":"zhou-qi"}"#),
    );
    assert_eq!(code, 204);
    let base = format!("https://localhost:{}", ca.https);
    let root = std::fs::read(ca.ca_pem("root")).unwrap();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use kexin_sdk::client::{challenge_authorize, challenge_login, timestamp, Pkcs12Identity, TrustServices};
        let identity = Pkcs12Identity::from_pkcs12(&std::fs::read(&official).unwrap(), P12_PASSWORD).unwrap();
        assert!(Pkcs12Identity::from_pkcs12(&std::fs::read(&official).unwrap(), "wrong").is_err());
        let session = challenge_login(&base, &client_id, &identity, Some(&root)).await.unwrap();
        assert_eq!(session.name.as_deref(), Some("zhou-qi"));
        let r = session
            .http
            .get(format!(
                "{base}/oidc/authorize?response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Fsys.example.gov.cn%2Fcb&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert!(r.headers()["location"].to_str().unwrap().contains("code="));
        // The sign-in and the authorization in one answer.
        let authorization_url = format!(
            "{base}/oidc/authorize?response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Fsys.example.gov.cn%2Fcb&scope=openid&state=%E7%8A%B6&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        );
        let session = challenge_authorize(&base, &authorization_url, &identity, Some(&root)).await.unwrap();
        let location = session.location.unwrap();
        assert!(location.starts_with("https://sys.example.gov.cn/cb?code="), "{location}");
        assert!(location.ends_with("&state=%E7%8A%B6"), "{location}");
        let elsewhere = authorization_url.replace("sys.example", "elsewhere.example");
        assert!(challenge_authorize(&base, &elsewhere, &identity, Some(&root)).await.is_err());

        let reply = timestamp(&format!("http://127.0.0.1:{}", ca.http), b"minutes of the meeting").await.unwrap();
        std::fs::write(ca.file("reply.tsr"), &reply).unwrap();
        // A genuine reply replayed (by a man in the middle, say) answers
        // neither the same data asked again (fresh nonce) nor other data;
        // a rejection is an error, not a token.
        let replaying = canned_tsa(reply).await;
        let replayed = timestamp(&replaying, b"minutes of the meeting").await.unwrap_err();
        assert!(replayed.to_string().contains("its nonce differs"), "{replayed}");
        let other = timestamp(&replaying, b"other minutes").await.unwrap_err();
        assert!(other.to_string().contains("for other data"), "{other}");
        // PKIStatusInfo { rejection, failInfo badAlg }
        let rejecting = canned_tsa(vec![0x30, 0x09, 0x30, 0x07, 0x02, 0x01, 0x02, 0x03, 0x02, 0x07, 0x80]).await;
        let rejected = timestamp(&rejecting, b"minutes of the meeting").await.unwrap_err();
        assert!(rejected.to_string().contains("Rejection"), "{rejected}");
        std::fs::write(ca.file("minutes.txt"), b"minutes of the meeting").unwrap();

        let services = TrustServices::new(&base, &identity, &root).unwrap();
        let report = services.verify_pdf(b"%PDF-1.4\nnot signed".to_vec()).await.unwrap();
        assert_eq!(report["verdict"], "indeterminate", "{report}");

        // A seal the official was granted, applied through the SDK, and the
        // sealed PDF verified; pyHanko checks it independently below.
        let sealed = services
            .seal_pdf("档案章", std::fs::read(&plain).unwrap(), "b-t")
            .await
            .unwrap();
        std::fs::write(ca.file("sealed.pdf"), &sealed).unwrap();
        let report = services.verify_pdf(sealed).await.unwrap();
        assert_eq!(report["verdict"], "valid", "{report}");
        let refused = services.seal_pdf("no-such-seal", std::fs::read(&plain).unwrap(), "b-b").await;
        assert!(refused.is_err(), "an unknown seal is refused");

        let good = services
            .check_certificate(&std::fs::read_to_string(pem_pair(&ca, &official, "zq").0).unwrap())
            .await
            .unwrap();
        assert_eq!((good["status"].as_str(), good["verdict"].as_str()), (Some("good"), Some("valid")), "{good}");
        let bad = services.check_certificate(&std::fs::read_to_string(&revoked_pem).unwrap()).await.unwrap();
        assert_eq!((bad["status"].as_str(), bad["verdict"].as_str()), (Some("revoked"), Some("invalid")), "{bad}");
        assert_eq!(bad["revocation_reason"], "keyCompromise", "{bad}");
        // A PEM body shorter than it declares is refused, not spun on.
        let short = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let refused = tokio::time::timeout(std::time::Duration::from_secs(20), services.check_certificate(short)).await;
        assert!(matches!(refused, Ok(Err(_))), "a short PEM body was not refused in time");
    });
    let out = ca.kexin(&[
        "verify",
        &ca.file("reply.tsr"),
        "--content",
        &ca.file("minutes.txt"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let validated = Command::new("pyhanko")
        .args([
            "sign",
            "validate",
            "--pretty-print",
            "--trust",
            &ca.ca_pem("root"),
            &ca.file("sealed.pdf"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&validated.stdout);
    assert!(
        text.contains("The signer's certificate is trusted.")
            && text.contains("The signature is cryptographically sound."),
        "pyHanko: {text}{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    server.stop();
}

/// The official's key and certificate on a USB key (a SoftHSM2 token,
/// written with OpenSC's pkcs11-tool as a key is personalized): the SDK
/// signs the challenge on the token and the official is signed in.
#[test]
fn the_sdk_signs_in_by_challenge_with_a_key_on_a_pkcs11_token() {
    use kexin_test_support::{SoftHsm, SOFTHSM_MODULE, TOKEN_PIN};
    let ca = Ca::init(&[]);
    let official = ca.officer("qian-er", "auditor");
    let client = client_add(&ca, "系统", "https://sys.example.gov.cn/cb");
    let (cert_pem, key_pem) = pem_pair(&ca, &official, "qian");
    let (cert_der, key_der) = (ca.file("qian.crt.der"), ca.file("qian.key.der"));
    assert!(openssl(&["x509", "-in", &cert_pem, "-outform", "DER", "-out", &cert_der]).0);
    assert!(
        openssl(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key_pem, "-outform", "DER", "-out", &key_der
        ])
        .0
    );
    let token = SoftHsm::new("usb-key");
    for (file, kind) in [(&key_der, "privkey"), (&cert_der, "cert")] {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.args([
            "--module",
            SOFTHSM_MODULE,
            "--token-label",
            "usb-key",
            "--login",
            "--pin",
            TOKEN_PIN,
        ])
        .args([
            "--write-object",
            file,
            "--type",
            kind,
            "--label",
            "qian-er",
            "--id",
            "01",
        ])
        .env("SOFTHSM2_CONF", &token.conf);
        run_ok(&mut cmd);
    }
    std::fs::remove_file(&key_der).unwrap();
    // This test runs in a process of its own (nextest): the module reads
    // its configuration from the environment when it is loaded.
    std::env::set_var("SOFTHSM2_CONF", &token.conf);
    let server = ca.serve();
    let base = format!("https://localhost:{}", ca.https);
    let root = std::fs::read(ca.ca_pem("root")).unwrap();
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let module = Path::new(SOFTHSM_MODULE);
    use kexin_sdk::client::{challenge_login, Pkcs11Identity};
    let wrong = Pkcs11Identity::open(module, "usb-key", "000000", "qian-er");
    assert!(wrong.err().unwrap().to_string().contains("wrong PIN"));
    assert!(Pkcs11Identity::open(module, "usb-key", TOKEN_PIN, "nobody").is_err());
    let identity = Pkcs11Identity::open(module, "usb-key", TOKEN_PIN, "qian-er").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let session = challenge_login(&base, &client_id, &identity, Some(&root))
            .await
            .unwrap();
        assert_eq!(session.name.as_deref(), Some("qian-er"));
    });
    server.stop();
}

#[test]
fn a_system_authenticates_to_the_token_endpoint_with_its_certificate() {
    let ca = Ca::init(&[]);
    let official = ca.officer("sun-ba", "auditor");
    let (cert, key) = pem_pair(&ca, &official, "sun");
    // The system's TLS client certificate, from the systems CA.
    let csr = ca.csr(
        "rp",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=rp.example.gov.cn",
        None,
    );
    let out = ca.kexin(&[
        "cert",
        "issue",
        "--profile",
        "tls-client",
        "--ca",
        "systems",
        "--csr",
        &csr,
        "--out",
        &ca.file("rp.pem"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = ca.kexin(&["verify", &ca.file("rp.pem"), "--json"]);
    let subject = serde_json::from_slice::<Value>(&verified.stdout).unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = ca.kexin(&[
        "client",
        "add",
        "--name",
        "rp",
        "--redirect-uri",
        "https://rp.example.gov.cn/cb",
        "--tls-client-auth-subject",
        &subject,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client_id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = ca.serve();
    let base = format!("https://localhost:{}", ca.https);
    let exchange = |cert: &str, key: &str, code: &str| {
        curl(&[
            "--cacert",
            &ca.ca_pem("root"),
            "--cert",
            cert,
            "--key",
            key,
            "-d",
            "grant_type=authorization_code",
            "-d",
            &format!("client_id={client_id}"),
            "-d",
            &format!("code={code}"),
            "-d",
            "redirect_uri=https://rp.example.gov.cn/cb",
            "-d",
            "code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            &format!("{base}/oidc/token"),
        ])
    };
    // Another certificate (the official's, from another CA) is not the client's.
    let code = code_by_certificate(&ca, &cert, &key, &client_id, "https://rp.example.gov.cn/cb");
    let (status, body) = exchange(&cert, &key, &code);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let code = code_by_certificate(&ca, &cert, &key, &client_id, "https://rp.example.gov.cn/cb");
    let (status, body) = exchange(&ca.file("rp.pem"), &ca.file("rp.key"), &code);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let tokens: Value = serde_json::from_slice(&body).unwrap();
    assert!(tokens["id_token"].is_string());
    // The access token is bound to the system's certificate (RFC 8705 §3).
    let access = tokens["access_token"].as_str().unwrap();
    let userinfo = |extra: &[&str]| {
        let mut args = vec![
            "--cacert".to_owned(),
            ca.ca_pem("root"),
            "-H".into(),
            format!("Authorization: Bearer {access}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("{base}/oidc/userinfo"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs).0
    };
    assert_eq!(
        userinfo(&[]),
        401,
        "a bound token was used without its certificate"
    );
    assert_eq!(
        userinfo(&["--cert", &cert, "--key", &key]),
        401,
        "a bound token was used with another certificate"
    );
    assert_eq!(
        userinfo(&["--cert", &ca.file("rp.pem"), "--key", &ca.file("rp.key")]),
        200
    );
    server.stop();
}

#[test]
fn a_system_may_ask_for_sm2_id_tokens_that_gmssl_verifies() {
    let ca = Ca::init(&[]);
    let official = ca.officer("wu-jiu", "auditor");
    let (cert, key) = pem_pair(&ca, &official, "wu");
    let out = ca.kexin(&[
        "client",
        "add",
        "--name",
        "国密系统",
        "--redirect-uri",
        "https://sm.example.gov.cn/cb",
        "--id-token-alg",
        "sm2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client: Value = serde_json::from_slice(&out.stdout).unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    let server = ca.serve();
    let base = format!("https://localhost:{}", ca.https);
    let (_, discovery) = curl(&[
        "--cacert",
        &ca.ca_pem("root"),
        &format!("{base}/.well-known/openid-configuration"),
    ]);
    let discovery: Value = serde_json::from_slice(&discovery).unwrap();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "SM2"])
    );
    let code = code_by_certificate(&ca, &cert, &key, client_id, "https://sm.example.gov.cn/cb");
    let (status, tokens) = redeem_code(
        &ca.ca_pem("root"),
        &client,
        &code,
        "https://sm.example.gov.cn/cb",
        &format!("{base}/oidc/token"),
    );
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = id_token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "SM2");
    let (_, jwks) = curl(&["--cacert", &ca.ca_pem("root"), &format!("{base}/oidc/jwks")]);
    let jwks: Value = serde_json::from_slice(&jwks).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap()
        .clone();
    assert_eq!(jwk["crv"], "SM2");
    let public = [
        b64.decode(jwk["x"].as_str().unwrap()).unwrap(),
        b64.decode(jwk["y"].as_str().unwrap()).unwrap(),
    ]
    .concat();
    let verify = |signed: &str, signature: &[u8]| {
        gmssl_sm2_verifies(&public, signature, false, signed.as_bytes())
    };
    let signature = b64.decode(parts[2]).unwrap();
    assert_eq!(signature.len(), 64, "r‖s");
    assert!(
        verify(&format!("{}.{}", parts[0], parts[1]), &signature),
        "gmssl rejects the SM2 ID token"
    );
    assert!(
        !verify(&format!("{}.{}x", parts[0], parts[1]), &signature),
        "gmssl accepts anything"
    );
    // The SDK verifies SM2 ID tokens too, and refuses an altered one.
    let root = std::fs::read(ca.ca_pem("root")).unwrap();
    let secret = client["client_secret"].as_str().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let rp = kexin_sdk::RelyingParty::discover(
            &base,
            client_id,
            secret,
            "https://sm.example.gov.cn/cb",
            Some(&root),
        )
        .await
        .unwrap();
        let claims = rp.verify_id_token(&id_token, None).await.unwrap();
        assert_eq!(claims["name"], "wu-jiu");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(br#"{"sub":"x"}"#),
            parts[2]
        );
        assert!(rp.verify_id_token(&forged, None).await.is_err());
    });
    server.stop();
}

/// Two nodes on one PostgreSQL database (one data directory, two servers):
/// an official who signs in by challenge at one gets a code at the other
/// without signing in again; the system redeems it at the first (as a load
/// balancer may send it), once; logging out at the second ends the session
/// at the first too, and voids the session's code not yet redeemed.
#[test]
fn two_nodes_on_postgresql_share_sso_sessions() {
    let url = fresh_postgres_url();
    let ca = Ca::init(&["--db", &url]);
    let (client, client_id, cert, key) = official_and_system(
        &ca,
        "zhao-liu",
        "两个节点后的系统",
        "https://rp.example.gov.cn/cb",
    );
    let first = ca.serve();
    let (second, https) = ca.serve_another_node();
    let (root, jar) = (ca.ca_pem("root"), ca.file("cookies.txt"));
    let node = |port: u16, path: &str| format!("https://localhost:{port}{path}");

    let answer = signed_challenge(&ca, https, &client_id, &cert, &key);
    let (code, body) = curl(&[
        "--cacert",
        &root,
        "-c",
        &jar,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &answer.to_string(),
        &node(ca.https, "/oidc/challenge/answer"),
    ]);
    // The challenge came from the second node and is answered at the
    // first; the same answer at the second is a replay.
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, body) = curl(&[
        "--cacert",
        &root,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &answer.to_string(),
        &node(https, "/oidc/challenge/answer"),
    ]);
    let replayed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(
        (code, replayed["error"].as_str()),
        (400, Some("invalid_grant")),
        "{replayed}"
    );

    let authorize = |port: u16| authorize_in(&ca, port, &jar, &client_id);
    let code_from = |text: &str| code_in(text).unwrap_or_else(|| panic!("no code: {text}"));
    let redeem_at = |port: u16, code: &str| {
        redeem_code(
            &root,
            &client,
            code,
            "https://rp.example.gov.cn/cb",
            &node(port, "/oidc/token"),
        )
    };
    let code = code_from(&authorize(https));
    let (status, tokens) = redeem_at(ca.https, &code);
    assert_eq!(
        (status, tokens["id_token"].is_string()),
        (200, true),
        "{tokens}"
    );
    let (status, again) = redeem_at(https, &code);
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant")),
        "{again}"
    );

    // A code not yet redeemed when its session logs out gives nothing.
    let unredeemed = code_from(&authorize(https));
    let (status, _) = curl(&["--cacert", &root, "-b", &jar, &node(https, "/oidc/logout")]);
    assert_eq!(status, 200);
    let (status, after) = redeem_at(ca.https, &unredeemed);
    assert_eq!(
        (status, after["error"].as_str()),
        (400, Some("invalid_grant")),
        "{after}"
    );
    let text = authorize(ca.https);
    assert!(
        text.starts_with("403"),
        "the first node after logout at the second: {text}"
    );
    for server in [first, second] {
        let (status, output) = server.stop();
        assert!(status.success() && !output.contains("panicked"), "{output}");
    }
}

/// The answer to a challenge from the node at `port` for `client_id`,
/// signed by `openssl dgst` with the official's key.
fn signed_challenge(ca: &Ca, port: u16, client_id: &str, cert: &str, key: &str) -> Value {
    let (code, body) = curl(&[
        "--cacert",
        &ca.ca_pem("root"),
        "-d",
        &format!("client_id={client_id}"),
        &format!("https://localhost:{port}/oidc/challenge"),
    ]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let c: Value = serde_json::from_slice(&body).unwrap();
    let (msg, sig) = (ca.file("msg.bin"), ca.file("sig.der"));
    let message = format!(
        "kexin-sso-challenge\n{}\n{client_id}",
        c["nonce"].as_str().unwrap()
    );
    std::fs::write(&msg, message).unwrap();
    assert!(openssl(&["dgst", "-sha256", "-sign", key, "-out", &sig, &msg]).0);
    use base64::Engine;
    serde_json::json!({
        "challenge_id": c["challenge_id"],
        "certificate": std::fs::read_to_string(cert).unwrap(),
        "signature": base64::engine::general_purpose::STANDARD.encode(std::fs::read(&sig).unwrap()),
    })
}

/// An authorization request for `client_id` (redirect URI
/// `https://rp.example.gov.cn/cb`) at the node at `port`, with the cookies
/// of `jar`: the status and where it redirects.
fn authorize_in(ca: &Ca, port: u16, jar: &str, client_id: &str) -> String {
    let url = format!("https://localhost:{port}/oidc/authorize?response_type=code&client_id={client_id}&redirect_uri=https%3A%2F%2Frp.example.gov.cn%2Fcb&scope=openid&state=s&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &ca.ca_pem("root"),
            "-b",
            jar,
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{redirect_url}", &url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The code an [`authorize_in`] outcome gives back without a sign-in.
fn code_in(outcome: &str) -> Option<String> {
    let query = outcome.strip_prefix("303 https://rp.example.gov.cn/cb?")?;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("code="))
        .map(str::to_owned)
}

#[test]
fn an_sso_session_ends_after_its_configured_idle_time_and_lifetime() {
    let ca = Ca::init(&[]);
    let (_, client_id, cert, key) = official_and_system(
        &ca,
        "qian-shi",
        "限时会话的系统",
        "https://rp.example.gov.cn/cb",
    );
    let clock = ca.file("faketime");
    set_faked_clock(&clock, "+0");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock)
        .env("KEXIN_OIDC__SESSION_IDLE_SECS", "600")
        .env("KEXIN_OIDC__SESSION_ABSOLUTE_SECS", "3600");
    let _server = Server::start(serve, ca.http, ca.https);
    let jar = ca.file("cookies.txt");
    let sign_in = || {
        let answer = signed_challenge(&ca, ca.https, &client_id, &cert, &key);
        let (code, body) = curl(&[
            "--cacert",
            &ca.ca_pem("root"),
            "-c",
            &jar,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &answer.to_string(),
            &format!("https://localhost:{}/oidc/challenge/answer", ca.https),
        ]);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    };
    // At `seconds` after the server started: whether the session still
    // gives a code without the official signing in.
    let signed_in_at = |seconds: u32| {
        set_faked_clock(&clock, &format!("+{seconds}"));
        code_in(&authorize_in(&ca, ca.https, &jar, &client_id)).is_some()
    };

    // Idle: every use gives it ten minutes more; eleven minutes unused end it.
    sign_in();
    assert!(signed_in_at(0));
    assert!(signed_in_at(540));
    assert!(signed_in_at(1080), "nine minutes after its last use");
    assert!(!signed_in_at(1740), "eleven minutes after its last use");

    // Absolute: in steady use, an hour after sign-in it ends all the same.
    sign_in();
    for t in [1740, 2280, 2820, 3360, 3900, 4440, 4980, 5300] {
        assert!(signed_in_at(t), "{}s after sign-in", t - 1740);
    }
    assert!(!signed_in_at(5400), "an hour and a minute after sign-in");
    // The browser keeps the session's cookie no longer than the session.
    let jar = std::fs::read_to_string(&jar).unwrap();
    let expires: u64 = jar
        .lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|fields| fields.get(5) == Some(&"kexin_sso"))
        .and_then(|fields| fields[4].parse().ok())
        .unwrap_or_else(|| panic!("no session cookie: {jar}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3400..now + 3700).contains(&expires),
        "Max-Age {}",
        expires as i64 - now as i64
    );
}
