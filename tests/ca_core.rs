//! The CA core, end to end with independent clients: CSRs made by the
//! openssl CLI, certificates, CRLs and OCSP answers checked by openssl,
//! the REST API called with curl and PKCS#12 client certificates.

mod common;

use common::*;
use kexin_test_support::openssl;
use std::process::Command;
use std::time::{Duration, Instant};

/// `openssl ocsp` against the running server; returns its output.
fn ocsp(ca: &Ca, issuer: &str, cert_args: &[&str]) -> String {
    ocsp_at(ca, ca.http, issuer, cert_args)
}

/// `openssl ocsp` against the server of `ca`'s hierarchy on `http`.
fn ocsp_at(ca: &Ca, http: u16, issuer: &str, cert_args: &[&str]) -> String {
    let mut args = vec![
        "ocsp".to_owned(),
        "-issuer".into(),
        ca.ca_pem(issuer),
        "-url".into(),
        format!("http://127.0.0.1:{http}/ocsp"),
        "-CAfile".into(),
        ca.ca_pem("root"),
    ];
    args.extend(cert_args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out) = openssl(&refs);
    out
}

#[test]
fn csrs_of_every_algorithm_become_verifiable_certificates() {
    let ca = Ca::init(&[]);
    for (name, key_args) in [
        (
            "p256",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
        ),
        (
            "p384",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        ),
        ("rsa3072", &["-newkey", "rsa:3072"][..]),
        ("ed25519", &["-newkey", "ed25519"][..]),
    ] {
        let host = format!("{name}.example.gov.cn");
        let csr = ca.csr(
            name,
            key_args,
            &format!("/CN={host}/O=Example Bureau"),
            Some(&format!("DNS:{host},IP:10.0.0.7")),
        );
        let (pem, _) = ca.issue(name, "tls-server", &csr);
        let (ok, out) = openssl(&[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            &ca.ca_pem("root"),
            "-untrusted",
            &ca.ca_pem("systems"),
            "-verify_hostname",
            &host,
            &pem,
        ]);
        assert!(ok, "{name}: {out}");
        let (_, text) = openssl(&["x509", "-in", &pem, "-noout", "-text"]);
        assert!(text.contains("TLS Web Server Authentication"), "{name}");
        assert!(text.contains("IP Address:10.0.0.7"), "{name}");
        if name == "rsa3072" {
            assert!(
                text.contains("Digital Signature, Key Encipherment"),
                "{name}: {text}"
            );
        } else {
            assert!(!text.contains("Key Encipherment"), "{name}: {text}");
        }
    }
    // An official's signing certificate from the officials CA.
    let csr = ca.csr(
        "official",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/C=CN/O=省政府办公厅/CN=张三",
        Some("email:zhangsan@example.gov.cn"),
    );
    let (pem, _) = ca.issue("official", "official-sign", &csr);
    let (ok, out) = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &ca.ca_pem("root"),
        "-untrusted",
        &ca.ca_pem("officials"),
        &pem,
    ]);
    assert!(ok, "{out}");
    let (_, text) = openssl(&[
        "x509", "-in", &pem, "-noout", "-subject", "-nameopt", "utf8",
    ]);
    assert!(text.contains("张三"), "{text}");
}

#[test]
fn a_name_constrained_ca_does_not_sign_outside_its_names() {
    let tmp = tempfile::tempdir().unwrap();
    run_ok(
        kexin(tmp.path())
            .args(["init", "--data", "data"])
            .env("KEXIN_CA__SYSTEMS_PERMITTED_DNS", "[\"example.gov.cn\"]")
            .env(
                "KEXIN_HTTPS__NAMES",
                "[\"trust.example.gov.cn\", \"127.0.0.1\"]",
            ),
    );
    let ca = Ca {
        dir: tmp.path().to_owned(),
        data: data_dir(tmp.path()),
        _tmp: tmp,
        http: 0,
        https: 0,
    };
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let inside = ca.csr(
        "in",
        &p256,
        "/CN=www.example.gov.cn",
        Some("DNS:www.example.gov.cn"),
    );
    let (pem, _) = ca.issue("in", "tls-server", &inside);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &ca.ca_pem("root"),
        "-untrusted",
        &ca.ca_pem("systems"),
        &pem,
    ]);
    assert!(ok, "{out}");
    let outside = ca.csr(
        "out",
        &p256,
        "/CN=www.example.com",
        Some("DNS:www.example.com"),
    );
    let out = ca.kexin(&[
        "cert",
        "issue",
        "--profile",
        "tls-server",
        "--csr",
        &outside,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the issuer's permitted names"));
    // A look-alike suffix is not inside either.
    let lookalike = ca.csr("look", &p256, "/CN=x", Some("DNS:evilexample.gov.cn"));
    assert!(!ca
        .kexin(&[
            "cert",
            "issue",
            "--profile",
            "tls-server",
            "--csr",
            &lookalike
        ])
        .status
        .success());
}

#[test]
fn profiles_refuse_what_they_do_not_allow() {
    let ca = Ca::init(&[]);
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let refused = |profile: &str, csr: &str| {
        let out = ca.kexin(&["cert", "issue", "--profile", profile, "--csr", csr]);
        assert!(!out.status.success(), "{profile} accepted {csr}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let email = ca.csr("email", &p256, "/CN=web", Some("email:a@example.gov.cn"));
    assert!(refused("tls-server", &email).contains("Email subjectAltName entries are not allowed"));
    let no_san = ca.csr("nosan", &p256, "/CN=web", None);
    assert!(refused("tls-server", &no_san).contains("requires subjectAltName"));
    let bad_attr = ca.csr(
        "badattr",
        &p256,
        "/CN=x/emailAddress=x@example.gov.cn",
        Some("DNS:x.example.gov.cn"),
    );
    assert!(refused("tls-server", &bad_attr).contains("is not allowed"));
    let seal = ca.csr(
        "seal",
        &p256,
        "/CN=某某局公章/O=某某局/2.5.4.97=91350100M000100Y44",
        None,
    );
    assert!(refused("seal", &seal).contains("not a valid unified social credit code"));
    let good_seal = ca.csr(
        "goodseal",
        &p256,
        "/CN=某某局公章/O=某某局/2.5.4.97=91350100M000100Y43",
        None,
    );
    ca.issue("goodseal", "seal", &good_seal);
    assert!(refused("no-such-profile", &no_san).contains("no profile named"));

    // A CSR whose signature does not match its content: no proof of possession.
    let der = ca.file("tampered.der");
    let (ok, _) = openssl(&["req", "-in", &email, "-outform", "DER", "-out", &der]);
    assert!(ok);
    let mut bytes = std::fs::read(&der).unwrap();
    let pos = bytes.windows(3).position(|w| w == b"web").unwrap();
    bytes[pos] = b'W';
    std::fs::write(&der, bytes).unwrap();
    assert!(refused("tls-client", &der).contains("proof of possession"));
    std::fs::write(&der, b"not a CSR at all").unwrap();
    assert!(refused("tls-client", &der).contains("not valid DER or PEM"));
}

fn revocation_crl_and_ocsp_agree(ca: Ca) {
    let server = ca.serve();
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let mut certs = Vec::new();
    for name in ["a", "b", "c"] {
        let csr = ca.csr(
            name,
            &p256,
            &format!("/CN={name}.example.gov.cn"),
            Some(&format!("DNS:{name}.example.gov.cn")),
        );
        certs.push(ca.issue(name, "tls-server", &csr));
    }
    let [(a_pem, a), (b_pem, b), (c_pem, _)] =
        [certs[0].clone(), certs[1].clone(), certs[2].clone()];
    let out = ocsp(&ca, "systems", &["-cert", &a_pem]);
    assert!(
        out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
    assert!(!out.contains("WARNING"), "nonce must be echoed: {out}");

    // A cacheable (nonce-free) answer for C, served from the responder's cache.
    let c_req = ca.file("c.req");
    assert!(
        openssl(&[
            "ocsp",
            "-issuer",
            &ca.ca_pem("systems"),
            "-cert",
            &c_pem,
            "-no_nonce",
            "-reqout",
            &c_req
        ])
        .0
    );
    let c_get = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&c_req).unwrap());
        format!(
            "http://127.0.0.1:{}/ocsp/{}",
            ca.http,
            b64.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        )
    };
    let c_status = |ca: &Ca| {
        let (_, body) = curl(&[&c_get]);
        std::fs::write(ca.file("c.resp"), body).unwrap();
        openssl(&[
            "ocsp",
            "-respin",
            &ca.file("c.resp"),
            "-resp_text",
            "-noverify",
        ])
        .1
    };
    assert!(c_status(&ca).contains("Cert Status: good"));

    let out = ca.kexin(&[
        "cert",
        "revoke",
        "--serial",
        &a,
        "--reason",
        "keyCompromise",
        "--invalidity-date",
        "2026-01-02T03:04:05Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ca.kexin(&[
        "cert",
        "revoke",
        "--serial",
        &b,
        "--reason",
        "certificateHold",
    ]);
    assert!(out.status.success());

    let out = ocsp(
        &ca,
        "systems",
        &["-cert", &a_pem, "-cert", &b_pem, "-cert", &c_pem],
    );
    assert!(out.contains("Response verify OK"), "{out}");
    let status_of = |pem: &str, text: &str| {
        let start = text.find(&format!("{pem}: ")).unwrap();
        text[start..].lines().take(5).collect::<Vec<_>>().join("\n")
    };
    assert!(
        status_of(&a_pem, &out).contains("revoked")
            && status_of(&a_pem, &out).contains("keyCompromise"),
        "{out}"
    );
    assert!(
        status_of(&b_pem, &out).contains("revoked")
            && status_of(&b_pem, &out).contains("certificateHold"),
        "{out}"
    );
    assert!(status_of(&c_pem, &out).contains(": good"), "{out}");
    let out = ocsp(&ca, "systems", &["-serial", "0x0102030405060708090a"]);
    assert!(out.contains(": unknown"), "{out}");

    let crl = ca.file("systems.crl");
    let (code, body) = curl(&[&format!("http://127.0.0.1:{}/pki/crl/systems.crl", ca.http)]);
    assert_eq!(code, 200);
    std::fs::write(&crl, body).unwrap();
    let (ok, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &crl,
        "-noout",
        "-text",
        "-CAfile",
        &ca.ca_pem("systems"),
    ]);
    assert!(ok && text.contains("verify OK"), "{text}");
    assert!(
        text.contains(&a.to_ascii_uppercase()) && text.contains("Key Compromise"),
        "{text}"
    );
    assert!(
        text.contains("Invalidity Date") && text.contains("Jan  2 03:04:05 2026 GMT"),
        "{text}"
    );
    assert!(
        text.contains(&b.to_ascii_uppercase()) && text.contains("Certificate Hold"),
        "{text}"
    );
    let crl_pem = ca.file("systems-crl.pem");
    assert!(openssl(&["crl", "-inform", "DER", "-in", &crl, "-out", &crl_pem]).0);
    let chain = ca.file("chain.pem");
    std::fs::write(
        &chain,
        [
            std::fs::read(ca.ca_pem("systems")).unwrap(),
            std::fs::read(ca.ca_pem("root")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        &crl_pem,
        "-CAfile",
        &chain,
        &a_pem,
    ]);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        &crl_pem,
        "-CAfile",
        &chain,
        &c_pem,
    ]);
    assert!(ok, "{out}");

    // A revocation by another process (the CLI) reaches cached answers
    // within the responder's two-second recheck.
    let (_, c_serial) = certs[2].clone();
    assert!(ca
        .kexin(&[
            "cert",
            "revoke",
            "--serial",
            &c_serial,
            "--reason",
            "superseded"
        ])
        .status
        .success());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let text = c_status(&ca);
    assert!(
        text.contains("Cert Status: revoked") && text.contains("superseded"),
        "{text}"
    );

    // Revoked stays revoked; held can be released.
    let out = ca.kexin(&["cert", "release", "--serial", &a]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not on hold"));
    let out = ca.kexin(&["cert", "revoke", "--serial", &a, "--reason", "superseded"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot be revoked")
    );
    assert!(ca
        .kexin(&["cert", "release", "--serial", &b])
        .status
        .success());
    let out = ocsp(&ca, "systems", &["-cert", &b_pem]);
    assert!(out.contains(&format!("{b_pem}: good")), "{out}");
    let (_, body) = curl(&[&format!("http://127.0.0.1:{}/pki/crl/systems.crl", ca.http)]);
    std::fs::write(&crl, body).unwrap();
    let (_, text) = openssl(&["crl", "-inform", "DER", "-in", &crl, "-noout", "-text"]);
    assert!(
        !text.contains(&b.to_ascii_uppercase()),
        "released certificate still listed: {text}"
    );
    assert!(text.contains(&a.to_ascii_uppercase()));
    let out = ca.kexin(&["crl", "--ca", "systems", "--out", &ca.file("cli.crl")]);
    assert!(out.status.success());
    let (ok, _) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &ca.file("cli.crl"),
        "-noout",
        "-CAfile",
        &ca.ca_pem("systems"),
    ]);
    assert!(ok);

    let (status, output) = server.stop();
    assert!(status.success(), "{output}");
    ca.assert_audit_intact();
}

#[test]
fn revocation_crl_and_ocsp_agree_on_sqlite() {
    revocation_crl_and_ocsp_agree(Ca::init(&[]));
}

#[test]
fn revocation_crl_and_ocsp_agree_on_postgres() {
    let url = fresh_postgres_url();
    revocation_crl_and_ocsp_agree(Ca::init(&["--db", &url, "--alg", "ecdsa-p384"]));
}

#[test]
fn ocsp_answers_garbage_with_protocol_errors() {
    let ca = Ca::init(&["--alg", "rsa-3072"]);
    let server = ca.serve();
    let url = format!("http://127.0.0.1:{}/ocsp", ca.http);
    let parse = |body: &[u8]| {
        let f = ca.file("resp.der");
        std::fs::write(&f, body).unwrap();
        let (_, text) = openssl(&["ocsp", "-respin", &f, "-resp_text", "-noverify"]);
        text
    };
    let (code, body) = curl(&[
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
        "garbage",
        &url,
    ]);
    assert_eq!(code, 200);
    assert!(
        parse(&body).contains("malformedrequest"),
        "{}",
        parse(&body)
    );
    let (code, body) = curl(&["-H", "Content-Type: text/plain", "--data-binary", "x", &url]);
    assert_eq!(code, 200);
    assert!(parse(&body).contains("malformedrequest"));
    let big = ca.file("big.bin");
    std::fs::write(&big, vec![0x30u8; 1 << 20]).unwrap();
    // Refused early: either an OCSP error, or the connection closed before
    // the megabyte was read. Never a 500, and the server keeps serving.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            &ca.file("big.resp"),
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/ocsp-request",
        ])
        .args(["--data-binary", &format!("@{big}"), &url])
        .output()
        .unwrap();
    if out.status.success() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        assert!(parse(&std::fs::read(ca.file("big.resp")).unwrap()).contains("malformedrequest"));
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Send failure") || err.contains("Recv failure"),
            "{err}"
        );
    }
    let (code, body) = curl(&[&format!("{url}/not-base64!!")]);
    assert_eq!(code, 200);
    assert!(parse(&body).contains("malformedrequest"));

    // A CA we do not serve.
    let foreign = self_signed_ca(&ca.dir, "Foreign CA");
    let req = ca.file("req.der");
    assert!(
        openssl(&[
            "ocsp",
            "-issuer",
            &foreign,
            "-serial",
            "0x01",
            "-reqout",
            &req,
            "-no_nonce"
        ])
        .0
    );
    let (code, body) = curl_post_file(&url, "application/ocsp-request", &req);
    assert_eq!(code, 200);
    assert!(parse(&body).contains("unauthorized"), "{}", parse(&body));

    // RFC 5019 GET with caching headers, signed by the delegated responder.
    let csr = ca.csr(
        "g",
        &["-newkey", "rsa:2048"],
        "/CN=g.example.gov.cn",
        Some("DNS:g.example.gov.cn"),
    );
    let (pem, _) = ca.issue("g", "tls-server", &csr);
    assert!(
        openssl(&[
            "ocsp",
            "-issuer",
            &ca.ca_pem("systems"),
            "-cert",
            &pem,
            "-reqout",
            &req,
            "-no_nonce"
        ])
        .0
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let encoded: String = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let headers = ca.file("headers.txt");
    let (code, body) = curl(&["-D", &headers, &format!("{url}/{encoded}")]);
    assert_eq!(code, 200);
    let h = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(h.contains("content-type: application/ocsp-response"), "{h}");
    assert!(
        h.contains("cache-control: max-age=") && h.contains("public"),
        "{h}"
    );
    assert!(
        h.contains("expires:") && h.contains("last-modified:") && h.contains("etag:"),
        "{h}"
    );
    let f = ca.file("get.der");
    std::fs::write(&f, &body).unwrap();
    let (ok, text) = openssl(&[
        "ocsp",
        "-respin",
        &f,
        "-issuer",
        &ca.ca_pem("systems"),
        "-CAfile",
        &ca.ca_pem("root"),
        "-resp_text",
    ]);
    assert!(ok && text.contains("Response verify OK"), "{text}");
    assert!(
        text.contains("OCSP No Check"),
        "delegated responder certificate included: {text}"
    );
    assert!(text.contains("Cert Status: good"));
    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

#[test]
fn api_authenticates_by_client_certificate_and_authorizes_by_role() {
    let ca = Ca::init(&[]);
    let alice = ca.officer("alice", "ra-officer");
    let bob = ca.officer("bob", "auditor");
    let mallory = ca.officer("mallory", "ra-admin");
    let (ok, out) = openssl(&[
        "pkcs12",
        "-in",
        &alice,
        "-passin",
        &format!("pass:{P12_PASSWORD}"),
        "-info",
        "-nokeys",
    ]);
    assert!(
        ok && out.contains("AES-256-CBC") && out.contains("CN = alice"),
        "{out}"
    );
    let server = ca.serve();

    // Metrics: anonymous callers and roles without the permission are
    // refused; an auditor reads them, this request's own route counted.
    let metrics = |p12: Option<&str>| {
        let url = format!("https://localhost:{}/metrics", ca.https);
        let (code, body) = curl_as(&ca, p12, &[], &url);
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(metrics(None).0, 401);
    assert_eq!(metrics(Some(&alice)).0, 403);
    assert_eq!(metrics(Some(&bob)).0, 200);
    let (code, text) = metrics(Some(&bob));
    assert!(
        code == 200
            && text.contains(
                "kexin_http_requests_total{listener=\"https\",route=\"/metrics\",status=\"200\"} 1"
            ),
        "{text}"
    );

    let csr = ca.csr(
        "svc",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=svc.example.gov.cn",
        Some("DNS:svc.example.gov.cn"),
    );
    let body = serde_json::json!({ "profile": "tls-server", "csr": std::fs::read_to_string(&csr).unwrap() }).to_string();
    let (code, json) = api(&ca, None, "POST", "/api/v1/certificates", Some(&body));
    assert_eq!(code, 401, "{json}");
    assert_eq!(json["status"], 401);
    let (code, json) = api(&ca, Some(&bob), "POST", "/api/v1/certificates", Some(&body));
    assert_eq!(code, 403, "{json}");
    let (code, json) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/certificates",
        Some(&body),
    );
    assert_eq!(code, 201, "{json}");
    assert_eq!(json["status"], "issued");
    let serial = json["serial"].as_str().unwrap().to_owned();
    let pem = ca.file("svc.pem");
    std::fs::write(&pem, json["certificate_pem"].as_str().unwrap()).unwrap();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &ca.ca_pem("root"),
        "-untrusted",
        &ca.ca_pem("systems"),
        &pem,
    ]);
    assert!(ok, "{out}");

    let (code, json) = api(
        &ca,
        Some(&bob),
        "GET",
        "/api/v1/certificates?subject=svc.example&status=issued",
        None,
    );
    assert_eq!(code, 200, "{json}");
    assert_eq!(json["items"].as_array().unwrap().len(), 1);
    assert_eq!(json["items"][0]["serial"], serial.as_str());
    let (code, json) = api(
        &ca,
        Some(&bob),
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        None,
    );
    assert_eq!(
        (code, json["serial"].as_str()),
        (200, Some(serial.as_str()))
    );
    let (code, _) = api(
        &ca,
        Some(&bob),
        "GET",
        "/api/v1/certificates/00ff00ff",
        None,
    );
    assert_eq!(code, 404);
    let (code, _) = api(
        &ca,
        Some(&bob),
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some("{}"),
    );
    assert_eq!(code, 403, "auditors cannot revoke");

    // Bad requests are problem documents, not 500s.
    for (body, expect) in [
        ("{not json", 400),
        ("{\"profile\":\"tls-server\"}", 422),
        ("{\"profile\":\"tls-server\",\"csr\":\"x\",\"extra\":1}", 422),
        ("{\"profile\":\"tls-server\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n-----END CERTIFICATE REQUEST-----\\n\"}", 400),
    ] {
        let (code, json) = api(&ca, Some(&alice), "POST", "/api/v1/certificates", Some(body));
        assert_eq!(code, expect, "{body}: {json}");
        assert_eq!(json["status"], expect, "{body}: {json}");
    }
    let email = ca.csr(
        "mail",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=m",
        Some("email:m@example.gov.cn,DNS:m.example.gov.cn"),
    );
    let body = serde_json::json!({ "profile": "tls-server", "csr": std::fs::read_to_string(&email).unwrap() }).to_string();
    let (code, json) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/certificates",
        Some(&body),
    );
    assert_eq!(code, 400);
    assert!(
        json["errors"][0].as_str().unwrap().contains("Email"),
        "{json}"
    );

    // Revocation through the API is visible over OCSP at once.
    let (code, json) = api(
        &ca,
        Some(&alice),
        "POST",
        &format!("/api/v1/certificates/{serial}/hold"),
        None,
    );
    assert_eq!(
        (code, json["status"].as_str()),
        (200, Some("hold")),
        "{json}"
    );
    let (code, json) = api(
        &ca,
        Some(&alice),
        "POST",
        &format!("/api/v1/certificates/{serial}/release"),
        None,
    );
    assert_eq!(
        (code, json["status"].as_str()),
        (200, Some("issued")),
        "{json}"
    );
    let (code, json) = api(
        &ca,
        Some(&alice),
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some("{\"reason\":\"superseded\"}"),
    );
    assert_eq!(
        (code, json["revocation_reason"].as_str()),
        (200, Some("superseded")),
        "{json}"
    );
    let out = ocsp(&ca, "systems", &["-cert", &pem]);
    assert!(
        out.contains("revoked") && out.contains("superseded"),
        "{out}"
    );
    let (code, _) = api(
        &ca,
        Some(&alice),
        "POST",
        &format!("/api/v1/certificates/{serial}/release"),
        None,
    );
    assert_eq!(code, 409);

    // A revoked officer certificate gets nothing.
    let mallory_serial = {
        let (_, json) = api(
            &ca,
            Some(&mallory),
            "GET",
            "/api/v1/certificates?subject=mallory",
            None,
        );
        json["items"][0]["serial"].as_str().unwrap().to_owned()
    };
    let (code, _) = api(
        &ca,
        Some(&alice),
        "POST",
        &format!("/api/v1/certificates/{mallory_serial}/revoke"),
        Some("{\"reason\":\"keyCompromise\"}"),
    );
    assert_eq!(code, 200);
    let (code, json) = api(&ca, Some(&mallory), "GET", "/api/v1/certificates", None);
    assert_eq!(code, 403);
    assert!(
        json["detail"].as_str().unwrap().contains("revoked"),
        "{json}"
    );

    let (code, doc) = api(&ca, None, "GET", "/api/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/certificates/{serial}/revoke"]["post"].is_object());
    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

#[test]
fn sm2_csrs_are_issued_under_an_sm2_hierarchy() {
    let ca = Ca::init(&["--alg", "sm2"]);
    let key = ca.file("sm2.key");
    assert!(openssl(&["genpkey", "-algorithm", "SM2", "-out", &key]).0);
    let csr = ca.file("sm2.csr");
    let (ok, out) = openssl(&[
        "req",
        "-new",
        "-utf8",
        "-key",
        &key,
        "-sm3",
        "-out",
        &csr,
        "-subj",
        "/C=CN/O=某某局/CN=李四",
    ]);
    assert!(ok, "{out}");
    let (pem, _) = ca.issue("sm2", "official-sign", &csr);
    let (_, text) = openssl(&["x509", "-in", &pem, "-noout", "-text"]);
    assert!(text.contains("Signature Algorithm: SM2-with-SM3"), "{text}");
    use der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(std::fs::read(&pem).unwrap()).unwrap();
    let officials =
        x509_cert::Certificate::from_pem(std::fs::read(ca.ca_pem("officials")).unwrap()).unwrap();
    assert!(gmssl_verifies(
        &cert.tbs_certificate.to_der().unwrap(),
        cert.signature.raw_bytes(),
        &officials
    ));
    assert_eq!(
        cert.tbs_certificate
            .subject_public_key_info
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .to_der()
            .unwrap(),
        der::asn1::ObjectIdentifier::new_unwrap("1.2.156.10197.1.301")
            .to_der()
            .unwrap(),
        "SM2 public key certified on the SM2 curve"
    );
}

#[test]
fn an_issuance_interrupted_before_completion_is_abandoned_not_lost() {
    let ca = Ca::init(&[]);
    // What a crash between "recorded" and "signed" leaves behind.
    let db = ca.data.join("kexin.db");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1])\n\
             c.execute(\"INSERT INTO certificates (serial, issuer, profile, subject, status, not_before, not_after, tbs, requested_at) \
             VALUES ('7f00000000000000000000000000abcd', 'systems', 'tls-server', 'CN=x', 'pending', 0, 1, x'00', ?)\", (int(time.time()) - 3600,))\n\
             c.commit()",
            &path_str(&db),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let server = ca.serve();
    let (code, _) = curl(&[&format!("http://127.0.0.1:{}/pki/ca/root.crt", ca.http)]);
    assert_eq!(code, 200);
    server.stop();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
             print(c.execute(\"select status from certificates where serial = '7f00000000000000000000000000abcd'\").fetchone()[0])\n\
             print(c.execute(\"select count(*) from audit_log where action = 'certificate.abandon'\").fetchone()[0])",
            &path_str(&db),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "failed\n1\n");
    // The serial stays burnt: the same serial can never be recorded again.
    ca.assert_audit_intact();
}

/// The signed part and signature of a DER CRL or BasicOCSPResponse: both
/// are `SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }`.
fn signed_parts(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use der::{Decode, Encode, Reader};
    let outer = der::asn1::AnyRef::from_der(der).unwrap();
    let mut r = der::SliceReader::new(outer.value()).unwrap();
    let tbs: der::asn1::AnyRef<'_> = r.decode().unwrap();
    let _alg: der::asn1::AnyRef<'_> = r.decode().unwrap();
    let sig: der::asn1::BitString = r.decode().unwrap();
    (tbs.to_der().unwrap(), sig.raw_bytes().to_vec())
}

#[test]
fn crls_and_ocsp_responses_verify_for_ed25519_and_sm2() {
    use der::{Decode, DecodePem, Encode};
    for alg in ["ed25519", "sm2"] {
        let ca = Ca::init(&["--alg", alg]);
        let server = ca.serve();
        let csr = ca.csr(
            "leaf",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "/CN=l.example.gov.cn",
            Some("DNS:l.example.gov.cn"),
        );
        let (pem, serial) = ca.issue("leaf", "tls-server", &csr);
        assert!(ca
            .kexin(&[
                "cert",
                "revoke",
                "--serial",
                &serial,
                "--reason",
                "keyCompromise"
            ])
            .status
            .success());
        let (code, crl) = curl(&[&format!("http://127.0.0.1:{}/pki/crl/systems.crl", ca.http)]);
        assert_eq!(code, 200);
        let req = ca.file("req.der");
        assert!(
            openssl(&[
                "ocsp",
                "-issuer",
                &ca.ca_pem("systems"),
                "-cert",
                &pem,
                "-no_nonce",
                "-reqout",
                &req
            ])
            .0
        );
        let (code, resp) = curl_post_file(
            &format!("http://127.0.0.1:{}/ocsp", ca.http),
            "application/ocsp-request",
            &req,
        );
        assert_eq!(code, 200);
        std::fs::write(ca.file("crl.der"), &crl).unwrap();
        std::fs::write(ca.file("resp.der"), &resp).unwrap();
        if alg == "ed25519" {
            let (ok, text) = openssl(&[
                "crl",
                "-inform",
                "DER",
                "-in",
                &ca.file("crl.der"),
                "-noout",
                "-text",
                "-CAfile",
                &ca.ca_pem("systems"),
            ]);
            assert!(
                ok && text.contains("verify OK") && text.contains(&serial.to_ascii_uppercase()),
                "{text}"
            );
            let (ok, text) = openssl(&[
                "ocsp",
                "-respin",
                &ca.file("resp.der"),
                "-issuer",
                &ca.ca_pem("systems"),
                "-CAfile",
                &ca.ca_pem("root"),
                "-cert",
                &pem,
            ]);
            assert!(
                ok && text.contains("Response verify OK") && text.contains("revoked"),
                "{text}"
            );
        } else {
            // OpenSSL 3.0 verifies SM2 with an empty ID: check with gmssl.
            let systems =
                x509_cert::Certificate::from_pem(std::fs::read(ca.ca_pem("systems")).unwrap())
                    .unwrap();
            let (tbs, sig) = signed_parts(&crl);
            assert!(gmssl_verifies(&tbs, &sig, &systems), "SM2 CRL signature");
            let (_, text) = openssl(&[
                "crl",
                "-inform",
                "DER",
                "-in",
                &ca.file("crl.der"),
                "-noout",
                "-text",
            ]);
            assert!(
                text.contains(&serial.to_ascii_uppercase()) && text.contains("Key Compromise"),
                "{text}"
            );
            let ocsp = x509_ocsp::OcspResponse::from_der(&resp).unwrap();
            let basic = ocsp.response_bytes.unwrap().response.into_bytes();
            let basic_parsed = x509_ocsp::BasicOcspResponse::from_der(&basic).unwrap();
            let responder = basic_parsed.certs.as_ref().unwrap()[0].clone();
            assert!(
                gmssl_verifies(
                    &basic_parsed.tbs_response_data.to_der().unwrap(),
                    basic_parsed.signature.raw_bytes(),
                    &responder
                ),
                "SM2 OCSP signature"
            );
            assert!(
                gmssl_verifies(
                    &responder.tbs_certificate.to_der().unwrap(),
                    responder.signature.raw_bytes(),
                    &systems
                ),
                "responder certificate issued by systems"
            );
            let (_, text) = openssl(&[
                "ocsp",
                "-respin",
                &ca.file("resp.der"),
                "-resp_text",
                "-noverify",
            ]);
            assert!(
                text.contains("Cert Status: revoked") && text.contains("keyCompromise"),
                "{text}"
            );
        }
        server.stop();
    }
}

#[test]
fn an_operator_profile_change_is_audited_and_applied() {
    let ca = Ca::init(&[]);
    let profiles = ca.data.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let builtin = include_str!("../ca/profiles/tls-server.toml");
    std::fs::write(
        profiles.join("tls-server.toml"),
        builtin.replace("validity_days = 199", "validity_days = 90"),
    )
    .unwrap();
    let db = ca.data.join("kexin.db");
    let recorded = || {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys, json\nc = sqlite3.connect(sys.argv[1])\n\
                 rows = c.execute(\"select detail from audit_log where action = 'profile.change' and target = 'tls-server' order by seq\").fetchall()\n\
                 print(len(rows)); print(json.loads(rows[-1][0])['origin'])",
                &path_str(&db),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ca.serve().stop();
    let text = recorded();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("2"),
        "built-in at init, then the operator's file: {text}"
    );
    assert!(
        lines.next().unwrap().ends_with("profiles/tls-server.toml"),
        "{text}"
    );
    // A second start with nothing changed records nothing new.
    ca.serve().stop();
    assert!(recorded().starts_with("2\n"), "{}", recorded());
    let csr = ca.csr(
        "short",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=s.example.gov.cn",
        Some("DNS:s.example.gov.cn"),
    );
    let (pem, _) = ca.issue("short", "tls-server", &csr);
    let (_, dates) = openssl(&["x509", "-in", &pem, "-noout", "-startdate", "-enddate"]);
    let days = {
        let get = |k: &str| {
            dates
                .lines()
                .find(|l| l.starts_with(k))
                .unwrap()
                .split('=')
                .nth(1)
                .unwrap()
                .to_owned()
        };
        let parse = |s: String| {
            let out = std::process::Command::new("date")
                .args(["-d", &s, "+%s"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<i64>()
                .unwrap()
        };
        (parse(get("notAfter")) - parse(get("notBefore"))) / 86400
    };
    assert_eq!(days, 90, "{dates}");
    ca.assert_audit_intact();
}

#[test]
fn kexin_verify_reports_chain_and_status_of_a_certificate() {
    for alg in ["ecdsa-p256", "sm2"] {
        let ca = Ca::init(&["--alg", alg]);
        let csr = ca.csr(
            "v",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "/CN=v.example.gov.cn",
            Some("DNS:v.example.gov.cn"),
        );
        let (pem, serial) = ca.issue("v", "tls-server", &csr);
        let report = |ca: &Ca, file: &str| {
            let out = ca.kexin(&["verify", file, "--json"]);
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            (out.status.success(), json)
        };
        let (ok, json) = report(&ca, &pem);
        assert!(ok, "{alg}: {json}");
        assert_eq!(
            (json["verdict"].as_str(), json["status"].as_str()),
            (Some("valid"), Some("good")),
            "{json}"
        );
        assert_eq!(json["chain"].as_array().unwrap().len(), 3);
        assert!(ca
            .kexin(&[
                "cert",
                "revoke",
                "--serial",
                &serial,
                "--reason",
                "superseded"
            ])
            .status
            .success());
        let (ok, json) = report(&ca, &pem);
        assert!(!ok);
        assert_eq!(
            (json["verdict"].as_str(), json["revocation_reason"].as_str()),
            (Some("invalid"), Some("superseded")),
            "{json}"
        );
        // A certificate from elsewhere does not chain to our root.
        let foreign = self_signed_ca(&ca.dir, "Elsewhere");
        let (ok, json) = report(&ca, &foreign);
        assert!(
            !ok && json["reason"]
                .as_str()
                .unwrap()
                .contains("no trusted issuer"),
            "{json}"
        );
    }
}

/// `kexin backup` while the server runs: the copy is a data directory that
/// serves what was there when it was taken and not what came after (a
/// later revocation), with its audit chain and checkpoints intact and its
/// own backup recorded in it; the key store's passphrase file is not in
/// it (the restored node gets the passphrase as an operator gives it); a
/// backup over an existing directory, one inside the data directory
/// (left without a trace) and one of an SQLite file outside the data
/// directory are refused with what to do instead.
#[test]
fn a_backup_taken_while_serving_restores_to_a_working_instance() {
    let ca = Ca::init(&[]);
    let server = ca.serve();
    let BackedUp {
        restored,
        copy,
        pem,
        serial,
        stdout,
    } = issue_then_back_up(&ca);
    assert!(
        stdout.contains("the copy's audit chain is intact"),
        "{stdout}"
    );
    assert!(
        stdout.contains("left out:") && stdout.contains("keystore.pass"),
        "{stdout}"
    );
    assert!(!copy.join("keystore.pass").exists());
    assert!(copy.join("keystore/keystore.json").exists());
    ca.revoke(&serial, "keyCompromise");

    let again = ca.kexin(&["backup", "--out", &path_str(&copy)]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("new directory"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let inside = ca.data.join("backups");
    let nested = ca.kexin(&["backup", "--out", &path_str(&inside)]);
    assert!(
        String::from_utf8_lossy(&nested.stderr).contains("outside the data directory"),
        "{}",
        String::from_utf8_lossy(&nested.stderr)
    );
    assert!(
        !nested.status.success() && !inside.exists(),
        "no half backup"
    );

    restored_copy_serves_the_past(&ca, restored.path(), &pem);
    let backups = sqlite_value(
        &copy.join("kexin.db"),
        "select count(*) from audit_log where action = 'instance.backup'",
    );
    assert_eq!(backups, "1");
    server.stop();

    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("kexin.db");
    let outside = Ca::init(&["--db", &format!("sqlite://{}?mode=rwc", file.display())]);
    let out = outside.kexin(&["backup", "--out", &outside.file("copy")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the data directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kexin backup` of an instance on PostgreSQL (reached over TLS, which
/// `pg_dump` is given as libpq's environment): the database goes in
/// `pg_dump`'s custom format beside the files; restored with `pg_restore`
/// into a new database that the copy's configuration names, it serves what
/// was there when the backup was taken, and its audit chain is intact.
#[test]
fn a_postgresql_instance_is_backed_up_and_restored_from_its_dump() {
    let url = fresh_postgres_url();
    let ca = Ca::init(&["--db", &over_tls(&url, None)]);
    let server = ca.serve();
    let BackedUp {
        restored,
        copy,
        pem,
        serial,
        stdout,
    } = issue_then_back_up(&ca);
    assert!(stdout.contains("pg_restore reads it"), "{stdout}");
    assert!(copy.join("kexin.pgdump").exists() && !copy.join("kexin.db").exists());
    ca.revoke(&serial, "keyCompromise");

    let new_url = fresh_postgres_url();
    run_ok(
        std::process::Command::new("pg_restore")
            .args(["--no-owner", "--dbname", &new_url])
            .arg(copy.join("kexin.pgdump")),
    );
    let config = copy.join("kexin.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let named = over_tls(&url, None);
    assert!(text.contains(&named), "{text}");
    std::fs::write(&config, text.replace(&named, &new_url)).unwrap();

    restored_copy_serves_the_past(&ca, restored.path(), &pem);
    server.stop();
}

/// A certificate issued, then `kexin backup` into a new directory.
struct BackedUp {
    restored: tempfile::TempDir,
    /// `restored/data`.
    copy: std::path::PathBuf,
    pem: String,
    serial: String,
    stdout: String,
}

fn issue_then_back_up(ca: &Ca) -> BackedUp {
    let p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let csr = ca.csr(
        "web",
        &p256,
        "/CN=web.example.gov.cn",
        Some("DNS:web.example.gov.cn"),
    );
    let (pem, serial) = ca.issue("web", "tls-server", &csr);
    let restored = tempfile::tempdir().unwrap();
    let copy = restored.path().join("data");
    let out = ca.kexin(&["backup", "--out", &path_str(&copy)]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    BackedUp {
        restored,
        copy,
        pem,
        serial,
        stdout,
    }
}

/// The copy of `ca`'s data directory restored as `restored/data`, given the
/// passphrase as an operator gives it: its audit chain (checkpoints
/// included) is intact, and served, it answers OCSP `good` for `pem`, which
/// the original has revoked since the copy was taken.
fn restored_copy_serves_the_past(ca: &Ca, restored: &std::path::Path, pem: &str) {
    let passphrase = ca.data.join("keystore.pass");
    let audit = run_ok(
        kexin(restored)
            .args(["audit", "verify", "--data", "data"])
            .env("KEXIN_KEYSTORE_PASSPHRASE_FILE", &passphrase),
    );
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(audit.contains("audit log intact"), "{audit}");
    let (http, https) = (free_port(), free_port());
    let mut serve = serve_command(restored, http, https);
    serve.env("KEXIN_KEYSTORE_PASSPHRASE_FILE", &passphrase);
    let restored_server = Server::start(serve, http, https);
    let then = ocsp_at(ca, http, "systems", &["-cert", pem]);
    assert!(
        then.contains("Response verify OK") && then.contains(": good"),
        "{then}"
    );
    let now = ocsp(ca, "systems", &["-cert", pem]);
    assert!(now.contains(": revoked"), "{now}");
    let (status, output) = restored_server.stop();
    assert!(status.success(), "{output}");
}

/// `openssl s_client` to the HTTPS side, trusting `ca_file`, with `extra`
/// options, at the time of `clock` if given (libfaketime): whether it
/// verified the server, and all it printed.
fn tls_handshake(ca: &Ca, clock: Option<&str>, ca_file: &str, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    if let Some(clock) = clock {
        at_faked_time(&mut cmd, clock);
    }
    let out = cmd
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", ca.https)])
        .args(["-CAfile", ca_file, "-verify_return_error"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text.contains("Verify return code: 0 (ok)"), text)
}

/// Asserts that `openssl ocsp`, run at the faked time of `clock` against
/// the server of `ca` and trusting its root, finds `cert` (issued by the
/// CA of `issuer`) good in a response it verifies.
fn assert_good_at_faked_time(ca: &Ca, clock: &str, issuer: &str, cert: &str) {
    let mut ocsp = Command::new("openssl");
    at_faked_time(&mut ocsp, clock).args([
        "ocsp",
        "-issuer",
        issuer,
        "-cert",
        cert,
        "-url",
        &format!("http://127.0.0.1:{}/ocsp", ca.http),
        "-CAfile",
        &ca.ca_pem("root"),
    ]);
    let out = ocsp.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Response verify OK") && text.contains(": good"),
        "{text}"
    );
}

#[test]
fn a_server_left_running_for_years_renews_its_own_certificates() {
    let ca = Ca::init(&[]);
    let clock = ca.file("faketime");
    set_faked_clock(&clock, "+0d");
    let chain_file = path_str(&ca.data.join("tls/server-chain.pem"));
    let tsa_file = path_str(&ca.data.join("tsa/tsa.pem"));
    let (https_before, tsa_before) = (serial_of(&chain_file), serial_of(&tsa_file));
    let auditor = ca.officer("jian-cha", "auditor");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock);
    let _server = Server::start(serve, ca.http, ca.https);

    // When each certificate expires is in the metrics, for alerts.
    let expiry = |kind: &str, name: &str| -> u64 {
        let url = format!("https://localhost:{}/metrics", ca.https);
        let (code, body) = curl_as(&ca, Some(&auditor), &[], &url);
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(code, 200, "{text}");
        let series = format!(
            "kexin_certificate_expiry_timestamp_seconds{{kind=\"{kind}\",name=\"{name}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series}in {text}"))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let days = |d: u64| d * 86400;
    let within = |at: u64, from: u64, to: u64| (now + days(from)..now + days(to)).contains(&at);
    assert!(within(expiry("ca", "root"), 7290, 7310), "20 years");
    assert!(within(expiry("ca", "officials"), 3640, 3660), "10 years");
    assert!(within(expiry("https", ""), 395, 398));
    assert!(within(expiry("tsa", ""), 1823, 1826));
    let responder = expiry("ocsp-responder", "officials");
    assert!(within(responder, 88, 91));

    // Seventy days on, the responders' certificates (90 days) are renewed,
    // and the metrics say so; the others are not due.
    set_faked_clock(&clock, "+70d");
    let deadline = Instant::now() + Duration::from_secs(150);
    while expiry("ocsp-responder", "officials") == responder {
        assert!(Instant::now() < deadline, "no responder renewed 70 days on");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(within(expiry("ocsp-responder", "officials"), 158, 161));
    assert!(within(expiry("ocsp-responder", "root"), 158, 161));
    assert!(within(expiry("https", ""), 395, 398));

    // Five years and a few days on, every certificate Kexin made for its
    // own services has expired: the OCSP responders' (90 days), the HTTPS
    // server's (397 days) and the TSA's (1,825 days). The CAs (10 and 20
    // years) have not.
    set_faked_clock(&clock, "+1830d");
    let presented = || tls_handshake(&ca, Some(&clock), &ca.ca_pem("root"), &[]).1;
    let deadline = Instant::now() + Duration::from_secs(150);
    while !presented().contains("Verify return code: 0 (ok)") {
        assert!(
            Instant::now() < deadline,
            "the HTTPS certificate was not renewed while serving: {}",
            presented()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let https_after = serial_of(&chain_file);
    assert_ne!(
        https_after, https_before,
        "the chain file holds the renewal"
    );

    // OCSP answers are signed under a renewed responder certificate, which
    // OpenSSL checks at the faked time.
    assert_good_at_faked_time(&ca, &clock, &ca.ca_pem("systems"), &tsa_file);

    // Tokens carry the renewed TSA certificate and verify at that time.
    let tsa_after = serial_of(&tsa_file);
    assert_ne!(tsa_after, tsa_before, "tsa.pem holds the renewal");
    let (query, reply) = (ca.file("q.tsq"), ca.file("r.tsr"));
    let (ok, out) = openssl(&[
        "ts",
        "-query",
        "-data",
        &chain_file,
        "-sha256",
        "-cert",
        "-out",
        &query,
    ]);
    assert!(ok, "{out}");
    let (status, body) = curl_post_file(
        &format!("http://127.0.0.1:{}/tsa", ca.http),
        "application/timestamp-query",
        &query,
    );
    assert_eq!(status, 200);
    std::fs::write(&reply, body).unwrap();
    let mut verify = Command::new("openssl");
    at_faked_time(&mut verify, &clock).args([
        "ts",
        "-verify",
        "-in",
        &reply,
        "-data",
        &chain_file,
        "-CAfile",
        &ca.ca_pem("root"),
        "-untrusted",
        &ca.ca_pem("systems"),
    ]);
    let out = verify.output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each renewal is an issuance in the audit log, and the chain holds.
    let renewals = sqlite_value(
        &ca.data.join("kexin.db"),
        "SELECT count(*) FROM audit_log WHERE source = 'renewal'",
    );
    assert_eq!(renewals, "10", "4 responders twice, the TSA and HTTPS");
    ca.assert_audit_intact();
}

#[test]
fn crls_are_made_afresh_on_schedule_while_serving() {
    let ca = Ca::init(&[]);
    let csr = ca.csr(
        "app",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=app.example.gov.cn",
        Some("DNS:app.example.gov.cn"),
    );
    let (cert, _) = ca.issue("app", "tls-server", &csr);
    let clock = ca.file("faketime");
    set_faked_clock(&clock, "+0");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock);
    let _server = Server::start(serve, ca.http, ca.https);
    let fetch = |name: &str| {
        let (code, body) = curl(&[&format!("http://127.0.0.1:{}/pki/crl/systems.crl", ca.http)]);
        assert_eq!(code, 200);
        let der = ca.file(&format!("{name}.crl"));
        std::fs::write(&der, body).unwrap();
        let (ok, out) = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            &der,
            "-out",
            &ca.file(&format!("{name}.pem")),
        ]);
        assert!(ok, "{out}");
        let (ok, number) = openssl(&["crl", "-inform", "DER", "-in", &der, "-noout", "-crlnumber"]);
        assert!(ok, "{number}");
        number
    };
    let first = fetch("first");

    // CRLs are good for 48 hours and made afresh when half of that has
    // passed, without a revocation and without anyone asking for one
    // that has run out.
    set_faked_clock(&clock, "+90000");
    let deadline = Instant::now() + Duration::from_secs(90);
    let second = loop {
        // The refresher runs every minute of the monotonic clock, which
        // moves with the wall clock here; a request to the HTTPS side,
        // which shares its runtime, lets it see that at once.
        curl(&[
            "--cacert",
            &ca.ca_pem("root"),
            &format!("https://localhost:{}/healthz", ca.https),
        ]);
        let number = fetch("second");
        if number != first {
            break number;
        }
        assert!(
            Instant::now() < deadline,
            "no new CRL 25 hours on: {number}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(second > first, "{first} then {second}");

    // 60 hours on, the first CRL has run out and the second has not: its
    // nextUpdate counts from the time it was made.
    let chain = ca.file("chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(ca.ca_pem("root")).unwrap()
            + &std::fs::read_to_string(ca.ca_pem("systems")).unwrap(),
    )
    .unwrap();
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60 * 3600)
        .to_string();
    let verify = |crl: &str| {
        openssl(&[
            "verify",
            "-attime",
            &at,
            "-crl_check",
            "-CRLfile",
            &ca.file(crl),
            "-CAfile",
            &chain,
            &cert,
        ])
    };
    let (ok, out) = verify("second.pem");
    assert!(ok, "{out}");
    let (ok, out) = verify("first.pem");
    assert!(!ok && out.contains("CRL has expired"), "{out}");
}

#[test]
fn the_https_certificate_follows_the_configured_names_at_restart() {
    let ca = Ca::init(&[]);
    let chain_file = path_str(&ca.data.join("tls/server-chain.pem"));
    let key_of = |pem: &str| openssl(&["x509", "-in", pem, "-noout", "-pubkey"]).1;
    let (serial, key) = (serial_of(&chain_file), key_of(&chain_file));
    let name = "kexin.example.gov.cn";
    let verifies_for_name = || {
        let name_args = ["-servername", name, "-verify_hostname", name];
        tls_handshake(&ca, None, &ca.ca_pem("root"), &name_args).0
    };
    let server = ca.serve();
    assert!(!verifies_for_name(), "not a name of the instance yet");
    server.stop();

    // The operator adds the name the province's systems will use.
    let config = ca.data.join("kexin.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("names = [").unwrap();
    let end = start + text[start..].find(']').unwrap() + 1;
    let edited = format!(
        "{}names = [\"localhost\", \"127.0.0.1\", \"{name}\"]{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&config, edited).unwrap();
    let server = ca.serve();
    assert!(verifies_for_name());
    let renewed = serial_of(&chain_file);
    assert_ne!(renewed, serial);
    assert_eq!(key_of(&chain_file), key, "the same key, certified again");
    server.stop();

    // Names unchanged: a restart keeps the certificate.
    let _server = ca.serve();
    assert_eq!(serial_of(&chain_file), renewed);
    assert!(verifies_for_name());
}

#[test]
fn certificates_about_to_expire_are_found_soonest_first() {
    let ca = Ca::init(&[]);
    let tls_profile = std::fs::read_to_string("ca/profiles/tls-server.toml").unwrap();
    std::fs::create_dir_all(ca.data.join("profiles")).unwrap();
    for (name, days) in [("tls-20d", 20), ("tls-60d", 60)] {
        std::fs::write(
            ca.data.join(format!("profiles/{name}.toml")),
            tls_profile.replace("validity_days = 199", &format!("validity_days = {days}")),
        )
        .unwrap();
    }
    let issue = |name: &str, profile: &str| {
        let csr = ca.csr(
            name,
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &format!("/CN={name}.example.gov.cn"),
            Some(&format!("DNS:{name}.example.gov.cn")),
        );
        ca.issue(name, profile, &csr).1
    };
    // Issued shortest-lived first, so that the newest-first order of a
    // plain search is not the order asked for.
    let gone = issue("gone", "tls-20d");
    let twenty = issue("twenty", "tls-20d");
    let sixty = issue("sixty", "tls-60d");
    let later = issue("later", "tls-server");
    ca.revoke(&gone, "superseded");
    let auditor = ca.officer("shen-ji", "auditor");
    let _server = ca.serve();
    let serials = |query: &str| -> Vec<String> {
        let (code, json) = api(
            &ca,
            Some(&auditor),
            "GET",
            &format!("/api/v1/certificates?{query}"),
            None,
        );
        assert_eq!(code, 200, "{json}");
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["serial"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        serials("expiring_within_days=30&status=issued"),
        [twenty.as_str()]
    );
    let mut both = serials("expiring_within_days=30");
    both.sort();
    let mut expected = [twenty.clone(), gone];
    expected.sort();
    assert_eq!(both, expected, "a revoked one too, without a status");
    let within_75 = serials("expiring_within_days=75&status=issued&subject=example.gov.cn");
    assert_eq!(within_75, [twenty.as_str(), sixty.as_str()]);
    let all = serials("expiring_within_days=365&status=issued&subject=example.gov.cn");
    assert_eq!(all, [twenty.as_str(), sixty.as_str(), later.as_str()]);
    for bad in ["0", "3651", "soon"] {
        let (code, json) = api(
            &ca,
            Some(&auditor),
            "GET",
            &format!("/api/v1/certificates?expiring_within_days={bad}"),
            None,
        );
        assert_eq!(
            (code, json["status"].as_u64()),
            (400, Some(400)),
            "{bad}: {json}"
        );
    }

    // The console's search offers the same, for an officer at work.
    let jar = ca.file("auditor.jar");
    let console =
        |extra: &[&str], path: &str| console_at(&ca, ca.https, &auditor, &jar, extra, path);
    let (code, _) = console(&["-d", "next=/console"], "/console/login");
    assert_eq!(code, 303);
    let (code, page) = console(
        &[],
        "/console/certificates?q=example.gov.cn&status=issued&expiring=30",
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(&twenty[..20]), "{page}");
    assert!(
        !page.contains(&sixty[..20]) && !page.contains(&later[..20]),
        "{page}"
    );
}

/// The verify portal must be trusted by citizens' phones, which do not
/// know Kexin's root: another CA certifies the HTTPS key, which stays in
/// the key store, and the officers' client certificates still work.
#[test]
fn another_cas_certificate_serves_the_https_side() {
    let ca = Ca::init(&[]);
    let public_ca = self_signed_ca(&ca.dir, "Province Public CA");
    let public_key = public_ca.replace(".pem", ".key");
    let chain_file = path_str(&ca.data.join("tls/server-chain.pem"));
    let ours = std::fs::read_to_string(&chain_file).unwrap();

    let csr = ca.file("https.csr");
    let out = ca.kexin(&["https", "csr", "--out", &csr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, text) = openssl(&["req", "-in", &csr, "-verify", "-noout", "-text"]);
    assert!(ok && text.contains("verify OK"), "{text}");
    assert!(
        text.contains("DNS:localhost") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    let ext = ca.file("server.ext");
    std::fs::write(
        &ext,
        "extendedKeyUsage = serverAuth\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    let leaf = ca.file("public-leaf.pem");
    let (ok, out) = openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &public_ca,
        "-CAkey",
        &public_key,
        "-days",
        "1",
        "-copy_extensions",
        "copy",
        "-extfile",
        &ext,
        "-out",
        &leaf,
    ]);
    assert!(ok, "{out}");
    let chain = ca.file("public-chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(&leaf).unwrap() + &std::fs::read_to_string(&public_ca).unwrap(),
    )
    .unwrap();

    // A certificate for another key is refused, and nothing changes.
    let (ok, out) = openssl(&["x509", "-in", &public_ca, "-out", &ca.file("other.pem")]);
    assert!(ok, "{out}");
    let out = ca.kexin(&["https", "install", "--chain", &ca.file("other.pem")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not for this instance's HTTPS key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&chain_file).unwrap(), ours);

    // Installed while the server runs, it is presented within a minute
    // (the server's clock is moved two minutes on to see it at once).
    let clock = ca.file("faketime");
    set_faked_clock(&clock, "+0");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock);
    let _server = Server::start(serve, ca.http, ca.https);
    let trusted_by_public_ca =
        || tls_handshake(&ca, None, &public_ca, &["-verify_hostname", "localhost"]).0;
    assert!(!trusted_by_public_ca());
    let out = ca.kexin(&["https", "install", "--chain", &chain]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    set_faked_clock(&clock, "+120");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !trusted_by_public_ca() {
        assert!(
            Instant::now() < deadline,
            "the installed certificate is not presented"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let installs = sqlite_value(
        &ca.data.join("kexin.db"),
        "SELECT count(*) FROM audit_log WHERE action = 'https.install'",
    );
    assert_eq!(installs, "1");

    // Officers still sign in with their certificates of Kexin's CAs.
    let auditor = ca.officer("shen-ji", "auditor");
    let (code, _) = curl(&[
        "--cacert",
        &public_ca,
        "--cert-type",
        "P12",
        "--cert",
        &format!("{auditor}:{P12_PASSWORD}"),
        &format!("https://localhost:{}/metrics", ca.https),
    ]);
    assert_eq!(code, 200);

    // The console's service certificates page says whose it is to renew.
    let jar = ca.file("shen-ji.jar");
    let trust = ["--cacert", public_ca.as_str()];
    let login = [&trust[..], &["-d", "next=/console"]].concat();
    let (code, _) = console_at(&ca, ca.https, &auditor, &jar, &login, "/console/login");
    assert_eq!(code, 303);
    let (code, page) = console_at(&ca, ca.https, &auditor, &jar, &trust, "/console/services");
    assert_eq!(code, 200);
    let https_row = page.split("data-kind=\"https\"").nth(1).unwrap();
    let https_row = https_row.split("</tr>").next().unwrap();
    assert!(
        https_row.contains("kexin https install"),
        "it ends tomorrow: {https_row}"
    );
}

/// `kexin ca renew` at `offset` (libfaketime's "+Nd").
fn renew_ca_at(ca: &Ca, offset: &str, args: &[&str]) -> (bool, String) {
    ca.kexin_at(offset, &[&["ca", "renew"][..], args].concat())
}

/// `openssl x509` fields of a PEM certificate.
fn x509_field(pem: &str, field: &[&str]) -> String {
    let mut args = vec!["x509", "-in", pem, "-noout"];
    args.extend_from_slice(field);
    let (ok, out) = openssl(&args);
    assert!(ok, "{out}");
    out
}

#[test]
fn a_renewed_ca_outlives_its_old_certificate_with_everything_it_issued() {
    let ca = Ca::init(&[]);
    let csr = ca.csr(
        "before",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=before.example.gov.cn/O=Example Bureau",
        Some("DNS:before.example.gov.cn"),
    );
    let (issued_before, _) = ca.issue("before", "tls-server", &csr);
    let (root, systems) = (ca.ca_pem("root"), ca.ca_pem("systems"));
    let old_systems = ca.file("old-systems.pem");
    std::fs::copy(&systems, &old_systems).unwrap();
    let old_root = ca.file("old-root.pem");
    std::fs::copy(&root, &old_root).unwrap();

    // Ten days before the issuing CAs end (ten years after init): the root
    // renews itself, then systems is renewed under it. A renewal that
    // would not outlast the present certificate is refused, and changes
    // nothing.
    let (ok, out) = renew_ca_at(&ca, "+3640d", &["--name", "systems", "--days", "5"]);
    assert!(
        !ok && out.contains("would end no later") && out.contains("longer lifetime"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&systems).unwrap(),
        std::fs::read(&old_systems).unwrap()
    );
    for name in ["root", "systems"] {
        let (ok, out) = renew_ca_at(&ca, "+3640d", &["--name", name]);
        assert!(ok && out.contains(&format!("renewed CA {name}")), "{out}");
    }
    for (old, new) in [(&old_root, &root), (&old_systems, &systems)] {
        for field in [
            &["-subject"][..],
            &["-pubkey"],
            &["-ext", "subjectKeyIdentifier,authorityKeyIdentifier,basicConstraints,keyUsage,authorityInfoAccess,crlDistributionPoints"],
        ] {
            assert_eq!(x509_field(old, field), x509_field(new, field), "{field:?}");
        }
        assert_ne!(x509_field(old, &["-serial"]), x509_field(new, &["-serial"]));
    }
    // The root's new certificate is self-signed, and systems' chains to
    // either of the root's, the day after the renewal; what systems issued
    // before chains to its new certificate (whenever: that certificate
    // has ended by then).
    let day_after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3641 * 86400;
    let at = ["-attime".to_string(), day_after.to_string()];
    let at = [at[0].as_str(), at[1].as_str()];
    let verify = |extra: &[&str], target: &str| {
        let mut args = vec!["verify", "-x509_strict"];
        args.extend_from_slice(extra);
        args.push(target);
        let (ok, out) = openssl(&args);
        assert!(ok, "{out}");
    };
    verify(&[&at[..], &["-CAfile", &root]].concat(), &root);
    for anchor in [&root, &old_root] {
        verify(&[&at[..], &["-CAfile", anchor]].concat(), &systems);
    }
    verify(
        &["-no_check_time", "-CAfile", &root, "-untrusted", &systems],
        &issued_before,
    );

    // Another node's data directory still holds the old certificate: its
    // server brings it up to date at start.
    let new_systems = std::fs::read_to_string(&systems).unwrap();
    std::fs::copy(&old_systems, &systems).unwrap();

    // The server starts (at the true time: see above), then its clock is
    // moved five days past the end of systems' old certificate: the
    // HTTPS, responder and TSA certificates it had issued have all ended,
    // and are renewed under systems' new certificate, which the chain
    // file now carries.
    let clock = ca.file("faketime");
    set_faked_clock(&clock, "+0");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock).env("KEXIN_CA__CERTIFICATE_CHECK_SECS", "1");
    let server = Server::start(serve, ca.http, ca.https);
    assert_eq!(std::fs::read_to_string(&systems).unwrap(), new_systems);
    set_faked_clock(&clock, "+3655d");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, text) = tls_handshake(&ca, Some(&clock), &root, &[]);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no valid HTTPS chain past the old end: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let chain_file = path_str(&ca.data.join("tls/server-chain.pem"));
    let chain = std::fs::read_to_string(&chain_file).unwrap();
    assert!(chain.contains(new_systems.trim()), "{chain}");

    // OCSP answers for the TSA's certificate (renewed under systems) are
    // signed by a renewed responder, which OpenSSL accepts at that time;
    // systems' CRL verifies with its new certificate.
    let tsa_file = path_str(&ca.data.join("tsa/tsa.pem"));
    assert_good_at_faked_time(&ca, &clock, &systems, &tsa_file);
    let crl = ca.file("systems.crl");
    let (status, body) = curl(&[&format!("http://127.0.0.1:{}/pki/crl/systems.crl", ca.http)]);
    assert_eq!(status, 200);
    std::fs::write(&crl, body).unwrap();
    let (ok, out) = openssl(&[
        "crl", "-inform", "DER", "-in", &crl, "-CAfile", &systems, "-noout",
    ]);
    assert!(ok && out.contains("verify OK"), "{out}");

    let renewals = sqlite_value(
        &ca.data.join("kexin.db"),
        "SELECT group_concat(target, ',') FROM audit_log WHERE action = 'ca.renew'",
    );
    assert_eq!(renewals, "root,systems");

    // officials, which has ended by now, and systems once more, renewed
    // while the node runs: from its next check the node serves them, sends
    // systems' in its HTTPS chain and in time-stamp tokens, without a
    // restart.
    for name in ["officials", "systems"] {
        let (ok, out) = renew_ca_at(&ca, "+3655d", &["--name", name]);
        assert!(ok, "{out}");
    }
    let (officials, systems_again) = (
        std::fs::read_to_string(ca.ca_pem("officials")).unwrap(),
        std::fs::read_to_string(&systems).unwrap(),
    );
    assert_ne!(systems_again, new_systems);
    let served = ca.file("officials-served.der");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = curl(&[&format!(
            "http://127.0.0.1:{}/pki/ca/officials.crt",
            ca.http
        )]);
        assert_eq!(status, 200);
        std::fs::write(&served, body).unwrap();
        let (ok, pem) = openssl(&["x509", "-inform", "DER", "-in", &served]);
        assert!(ok, "{pem}");
        if pem.trim() == officials.trim() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewal of officials is not served"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The same check presents them, each in its turn.
    let presented = |what: &str, certificates: &dyn Fn() -> String| loop {
        let text = certificates();
        if text.contains(systems_again.trim()) {
            assert!(!text.contains(new_systems.trim()), "{what}: {text}");
            break;
        }
        assert!(Instant::now() < deadline, "{what}: {text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    presented("the HTTPS chain", &|| {
        let (ok, text) = tls_handshake(&ca, Some(&clock), &root, &["-showcerts"]);
        assert!(ok, "{text}");
        text
    });
    let data = ca.file("stamped.txt");
    std::fs::write(&data, "stamped after the renewal").unwrap();
    let query = ca.file("renewed.tsq");
    let (ok, out) = openssl(&[
        "ts", "-query", "-data", &data, "-sha256", "-cert", "-out", &query,
    ]);
    assert!(ok, "{out}");
    presented("a time-stamp token", &|| {
        let (status, reply) = curl_post_file(
            &format!("http://127.0.0.1:{}/tsa", ca.http),
            "application/timestamp-query",
            &query,
        );
        assert_eq!(status, 200);
        let (reply_file, token) = (ca.file("renewed.tsr"), ca.file("renewed.token"));
        std::fs::write(&reply_file, reply).unwrap();
        let (ok, out) = openssl(&[
            "ts",
            "-reply",
            "-in",
            &reply_file,
            "-token_out",
            "-out",
            &token,
        ]);
        assert!(ok, "{out}");
        let (ok, certs) = openssl(&["pkcs7", "-inform", "DER", "-in", &token, "-print_certs"]);
        assert!(ok, "{certs}");
        certs
    });
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    ca.assert_audit_intact();
}

/// A CA renewed while the server runs issues past the end of its old
/// certificate from the server's next check: the server does not go on
/// cutting what it issues short to the end of the CA certificate it had
/// loaded.
#[test]
fn a_ca_renewed_while_serving_issues_past_its_old_end() {
    let ca = Ca::init_with_env(&[], &[("KEXIN_CA__ISSUING_VALIDITY_DAYS", "30")]);
    let alice = ca.officer("alice", "ra-officer");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    serve.env("KEXIN_CA__CERTIFICATE_CHECK_SECS", "1");
    let server = Server::start(serve, ca.http, ca.https);
    let csr = ca.csr(
        "svc",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=svc.example.gov.cn",
        Some("DNS:svc.example.gov.cn"),
    );
    let body = serde_json::json!({ "profile": "tls-server", "csr": std::fs::read_to_string(&csr).unwrap() }).to_string();
    // Whether a certificate issued now over the API (tls-server: 199 days)
    // is good for `days` more days.
    let issued_lasts = |days: u32| {
        let (code, json) = api(
            &ca,
            Some(&alice),
            "POST",
            "/api/v1/certificates",
            Some(&body),
        );
        assert_eq!(code, 201, "{json}");
        let pem = ca.file("svc.pem");
        std::fs::write(&pem, json["certificate_pem"].as_str().unwrap()).unwrap();
        let (ok, _) = openssl(&[
            "x509",
            "-in",
            &pem,
            "-noout",
            "-checkend",
            &(u64::from(days) * 86400).to_string(),
        ]);
        ok
    };
    assert!(!issued_lasts(31), "cut short to the CA's end");

    let out = ca.kexin(&["ca", "renew", "--name", "systems", "--days", "3650"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let renewed = std::fs::read(ca.ca_pem("systems")).unwrap();
    let served = ca.file("systems-served.der");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = curl(&[&format!("http://127.0.0.1:{}/pki/ca/systems.crt", ca.http)]);
        assert_eq!(status, 200);
        std::fs::write(&served, body).unwrap();
        let (ok, pem) = openssl(&["x509", "-inform", "DER", "-in", &served]);
        assert!(ok, "{pem}");
        if pem.trim().as_bytes() == String::from_utf8_lossy(&renewed).trim().as_bytes() {
            break;
        }
        assert!(Instant::now() < deadline, "the renewal is not served");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(issued_lasts(198), "issued under the renewed certificate");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// In the last minutes of an issuing CA's ten years, the certificates it
/// issues end when it does: renewing them gains nothing, and they are not
/// renewed again at every check.
#[test]
fn certificates_ending_with_their_ca_are_not_renewed_at_every_check() {
    let ca = Ca::init(&[]);
    let clock = ca.file("faketime");
    // The server starts at the true time: libfaketime can miss its offset
    // in a process's first clock readings, and tokio and sqlx then saw the
    // monotonic clock leap ten years during start-up.
    set_faked_clock(&clock, "+0");
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    at_faked_time(&mut serve, &clock);
    let server = Server::start(serve, ca.http, ca.https);
    // 20 minutes before the issuing CAs end (ten years after they began,
    // an hour before init): the responders', the TSA's and the HTTPS
    // certificates have run out and are renewed, to end with their CA;
    // with less than a third of their lifetime left (they begin an hour
    // back), they would be due again at once.
    let offset = 3650 * 86400 - 3600 - 1200;
    set_faked_clock(&clock, &format!("+{offset}"));
    let verified_at_the_time = || tls_handshake(&ca, Some(&clock), &ca.ca_pem("root"), &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while let (false, text) = verified_at_the_time() {
        assert!(Instant::now() < deadline, "not renewed: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let renewals = || {
        sqlite_value(
            &ca.data.join("kexin.db"),
            "SELECT count(*) FROM audit_log WHERE source = 'renewal'",
        )
    };
    let renewed = renewals();
    assert!(renewed.parse::<u32>().unwrap() >= 6, "{renewed}");
    // Three checks a minute apart find nothing to renew.
    for minutes in [2, 3, 4] {
        set_faked_clock(&clock, &format!("+{}", offset + minutes * 60));
        let (ok, text) = verified_at_the_time();
        assert!(ok, "{text}");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(renewals(), renewed);
    server.stop();
}
