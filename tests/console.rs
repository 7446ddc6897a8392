//! The officers' console in a real browser: Debian's Chromium driven by
//! Playwright (tests/browser/console.mjs) signs in with officers' PKCS#12
//! client certificates, approves an enrollment, revokes a certificate and
//! is refused where its role ends. Screenshots are kept in
//! target/browser-screenshots/.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kexin_test_support::openssl;
use serde_json::json;

#[test]
fn officers_approve_and_revoke_in_chromium_and_roles_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "needs Debian's chromium and `npm ci` in tests/browser (.ci/run does both)"
    );
    let ca = Ca::init(&[]);
    let alice = ca.officer("alice", "ra-officer");
    let bob = ca.officer("bob", "ra-officer");
    let rita = ca.officer("rita", "ra-admin");
    let sam = ca.officer("sam", "seal-admin");
    let server = ca.serve();
    let seal_png = seal_image(&ca);

    let csr = std::fs::read_to_string(ca.csr(
        "li",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=li",
        None,
    ))
    .unwrap();
    let submission = json!({
        "kind": "enroll-official",
        "subject": [["O", "某省人民政府"], ["CN", "李四"]],
        "csr": csr,
        "evidence": {"document": "resident-id", "id_number": "11010519491231002X", "note": "<script>alert(1)</script>"},
    })
    .to_string();
    let (code, v) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/requests",
        Some(&submission),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();

    let shots = root.join("target/browser-screenshots");
    let out = Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .env("KEXIN_URL", format!("https://localhost:{}", ca.https))
        .env("NODE_EXTRA_CA_CERTS", ca.ca_pem("root"))
        .env("P12_PASSWORD", P12_PASSWORD)
        .env("BOB_P12", &bob)
        .env("RITA_P12", &rita)
        .env("SAM_P12", &sam)
        .env("SEAL_PNG", &seal_png)
        .env("REQUEST_ID", id.to_string())
        .env("SHOTS", &shots)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed (screenshots in {}):\n{stdout}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();

    // What the browser did, seen by independent clients.
    let (code, v) = api(
        &ca,
        Some(&alice),
        "GET",
        &format!("/api/v1/requests/{id}"),
        None,
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("issued")), "{v}");
    assert_eq!(v["decisions"][0]["officer"], "bob");
    let sign = results["signSerial"].as_str().unwrap();
    let (code, v) = api(
        &ca,
        Some(&alice),
        "GET",
        &format!("/api/v1/certificates/{sign}"),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revocation_reason"], "keyCompromise");
    let pem = ca.file("sign.pem");
    std::fs::write(&pem, v["certificate_pem"].as_str().unwrap()).unwrap();
    let (_, text) = openssl(&[
        "ocsp",
        "-issuer",
        &ca.ca_pem("officials"),
        "-cert",
        &pem,
        "-url",
        &format!("http://127.0.0.1:{}/ocsp", ca.http),
        "-CAfile",
        &ca.ca_pem("root"),
    ]);
    assert!(text.contains(": revoked"), "{text}");
    // The officer the admin created in the browser exists with its role.
    let (code, v) = api(
        &ca,
        Some(&bob),
        "GET",
        "/api/v1/certificates?subject=dora",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");

    // The seal asked for in the browser, approved by bob and rita, exists
    // with the image uploaded.
    let seal_request = results["sealRequest"].as_str().unwrap();
    let (code, v) = api(
        &ca,
        Some(&sam),
        "GET",
        &format!("/api/v1/requests/{seal_request}"),
        None,
    );
    assert_eq!((code, v["status"].as_str()), (200, Some("issued")), "{v}");
    let deciders: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["officer"].as_str())
        .collect();
    assert_eq!(deciders, ["bob", "rita"]);
    let (code, seal) = api(
        &ca,
        Some(&sam),
        "GET",
        "/api/v1/seals/%E6%9F%90%E6%9F%90%E5%B1%80%E5%90%88%E5%90%8C%E4%B8%93%E7%94%A8%E7%AB%A0",
        None,
    );
    assert_eq!(code, 200, "{seal}");
    assert_eq!(
        (seal["kind"].as_str(), seal["uscc"].as_str()),
        (Some("contract"), Some("91350100M000100Y43"))
    );
    let uploaded = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&seal_png).unwrap())
    };
    assert_eq!(seal["image"].as_str(), Some(uploaded.as_str()));

    // An officer whose certificate is revoked gets nothing, session or not.
    let (_, v) = api(
        &ca,
        Some(&rita),
        "GET",
        "/api/v1/certificates?subject=CN%3Dbob",
        None,
    );
    let bob_serial = v["items"][0]["serial"].as_str().unwrap().to_owned();
    let (code, _) = api(
        &ca,
        Some(&rita),
        "POST",
        &format!("/api/v1/certificates/{bob_serial}/revoke"),
        Some(r#"{"reason":"affiliationChanged"}"#),
    );
    assert_eq!(code, 200);
    let (code, body) = curl_as(
        &ca,
        Some(&bob),
        &[],
        &format!("https://localhost:{}/console", ca.https),
    );
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("revoked"));

    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
    ca.assert_audit_intact();
}

/// Two nodes on one PostgreSQL database, as behind a load balancer: an
/// officer who signs in to the console at one is signed in at the other;
/// another officer's certificate cannot use the session's cookie; signing
/// out at the second node ends the session at the first.
#[test]
fn two_nodes_on_postgresql_share_console_sessions() {
    let url = fresh_postgres_url();
    let ca = Ca::init(&["--db", &url]);
    let alice = ca.officer("alice", "ra-officer");
    let bob = ca.officer("bob", "ra-officer");
    let first = ca.serve();
    let (second, https) = ca.serve_another_node();
    let jar = ca.file("alice.jar");
    let console = |p12: &str, port: u16, extra: &[&str], path: &str| {
        console_at(&ca, port, p12, &jar, extra, path)
    };

    let (code, _) = console(&alice, ca.https, &["-d", "next=/console"], "/console/login");
    assert_eq!(code, 303);
    let (code, page) = console(&alice, https, &[], "/console/requests");
    assert_eq!(
        code, 200,
        "the second node did not know the session: {page}"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a form with a CSRF token")
        .to_owned();
    let (code, _) = console(&bob, https, &[], "/console/requests");
    assert_eq!(code, 303, "another certificate used alice's session");

    // The cookie as it was: logging out clears it from the jar, and a
    // session must end for whoever still holds its cookie.
    let jar_text = std::fs::read_to_string(&jar).unwrap();
    let session = jar_text
        .lines()
        .find_map(|l| l.split('\t').skip_while(|f| *f != "kexin_console").nth(1))
        .expect("a session cookie")
        .to_owned();
    let (code, _) = console(
        &alice,
        https,
        &["-d", &format!("csrf={csrf}")],
        "/console/logout",
    );
    assert_eq!(code, 303);
    let cookie = format!("Cookie: kexin_console={session}");
    let (code, page) = console(&alice, ca.https, &["-H", &cookie], "/console/requests");
    assert_eq!(
        code, 303,
        "the session outlived its logout at the other node: {page}"
    );

    let actions: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query_scalar(
            "SELECT action FROM audit_log WHERE action LIKE 'console.%' ORDER BY seq",
        )
        .fetch_all(&db)
        .await
        .unwrap()
    });
    assert_eq!(actions, ["console.login", "console.logout"]);

    for server in [first, second] {
        let (status, output) = server.stop();
        assert!(status.success() && !output.contains("panicked"), "{output}");
    }
}

/// The service certificates page: an auditor sees every certificate the
/// trust service runs on, and a CA renewed while the server runs with its
/// new end once the server serves it; an RA officer may not look.
#[test]
fn auditors_see_when_the_service_certificates_end() {
    let ca = Ca::init(&[]);
    let auditor = ca.officer("shen", "auditor");
    let clerk = ca.officer("li", "ra-officer");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    serve.env("KEXIN_CA__CERTIFICATE_CHECK_SECS", "1");
    let server = Server::start(serve, ca.http, ca.https);
    let jar = ca.file("shen.jar");
    let console =
        |p12: &str, extra: &[&str], path: &str| console_at(&ca, ca.https, p12, &jar, extra, path);
    let (code, _) = console(&auditor, &["-d", "next=/console"], "/console/login");
    assert_eq!(code, 303);
    let rows = |page: &str| -> Vec<(String, String)> {
        page.split("<tr data-kind=\"")
            .skip(1)
            .map(|row| {
                let kind = row.split('"').next().unwrap().to_owned();
                let name = row
                    .split("data-name=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                let status = row
                    .split("class=\"badge ")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                (format!("{kind}:{name}"), status.to_owned())
            })
            .collect()
    };
    let (code, page) = console(&auditor, &[], "/console/services");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("href=\"/console/services\""),
        "in the navigation"
    );
    let before = rows(&page);
    let kinds: Vec<&str> = before.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ca:root",
            "ca:officials",
            "ca:seals",
            "ca:systems",
            "ocsp-responder:root",
            "ocsp-responder:officials",
            "ocsp-responder:seals",
            "ocsp-responder:systems",
            "tsa:",
            "https:",
        ]
    );
    assert!(
        before.iter().all(|(_, status)| status == "current"),
        "{before:?}"
    );
    assert!(
        page.contains("3649") || page.contains("3650"),
        "days left of the issuing CAs"
    );

    // Renewed while the server runs: served from the server's next check
    // of its certificates, without a restart, and the page shows the new
    // end.
    let out = ca.kexin(&["ca", "renew", "--name", "officials", "--days", "4000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let (_, page) = console(&auditor, &[], "/console/services");
        if page.contains("3999") || page.contains("4000") {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the renewal is not shown: {page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(
        rows(&page).iter().all(|(_, status)| status == "current"),
        "{page}"
    );
    let (_, body) = curl(&[&format!(
        "http://127.0.0.1:{}/pki/ca/officials.crt",
        ca.http
    )]);
    let served = ca.file("officials-served.der");
    std::fs::write(&served, body).unwrap();
    let (ok, out) = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        &served,
        "-noout",
        "-checkend",
        &(3700 * 86400).to_string(),
    ]);
    assert!(
        ok && out.contains("will not expire"),
        "the renewal is served: {out}"
    );
    let (_, page) = console(
        &auditor,
        &["-H", "Accept-Language: zh-CN", "-b", "kexin_lang=zh-CN"],
        "/console/services",
    );
    assert!(page.contains("服务证书") && page.contains("有效"), "{page}");

    let clerk_jar = ca.file("li.jar");
    let (code, _) = console_at(
        &ca,
        ca.https,
        &clerk,
        &clerk_jar,
        &["-d", "next=/console"],
        "/console/login",
    );
    assert_eq!(code, 303);
    let (code, page) = console_at(&ca, ca.https, &clerk, &clerk_jar, &[], "/console");
    assert_eq!(code, 200);
    assert!(
        !page.contains("/console/services"),
        "not in an RA officer's navigation"
    );
    let (code, _) = console_at(&ca, ca.https, &clerk, &clerk_jar, &[], "/console/services");
    assert_eq!(code, 403);

    let (status, output) = server.stop();
    assert!(status.success(), "{output}");
}
