//! Conformance of everything Kexin signs, judged by an independent linter:
//! DigiCert's pkilint (RFC 5280 certificates and CRLs, RFC 6960 responses).
//! Any finding of NOTICE level or above fails the test, for every key
//! algorithm `kexin init` offers; for SM2, of WARNING level or above, since
//! pkilint does not know SM2 keys and says so in a NOTICE (it cannot tell
//! whether a self-signed root may omit its authorityKeyIdentifier).

mod common;

use std::process::Command;

use common::*;
use kexin_test_support::openssl;

fn pkilint(tool: &str, args: &[&str], floor: &str, file: &str) {
    let out = Command::new(tool)
        .arg("lint")
        .args(args)
        .args(["-s", floor, file])
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (pip install pkilint): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "{tool} on {file}:\n{text}"
    );
}

#[test]
fn certificates_crls_and_ocsp_responses_pass_pkilint() {
    for alg in ["ecdsa-p256", "rsa-3072", "ecdsa-p384", "ed25519", "sm2"] {
        let floor = if alg == "sm2" { "WARNING" } else { "NOTICE" };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (http, https) = (free_port(), free_port());
        run_ok(
            kexin(dir)
                .args(["init", "--data", "data", "--alg", alg])
                .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}")),
        );
        let f = |n: &str| path_str(&dir.join(n));
        let issue = |name: &str, profile: &str, subject: &str, san: Option<&str>| {
            let (key, csr, pem) = (
                f(&format!("{name}.key")),
                f(&format!("{name}.csr")),
                f(&format!("{name}.pem")),
            );
            let mut args = vec![
                "req",
                "-new",
                "-utf8",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ];
            args.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
            let san_arg = san.map(|s| format!("subjectAltName={s}"));
            if let Some(s) = &san_arg {
                args.extend(["-addext", s]);
            }
            assert!(openssl(&args).0);
            run_ok(kexin(dir).args([
                "cert",
                "issue",
                "--data",
                "data",
                "--profile",
                profile,
                "--csr",
                &csr,
                "--out",
                &pem,
            ]));
            pem
        };
        let mut files = vec![
            f("data/ca/root.pem"),
            f("data/ca/officials.pem"),
            f("data/ca/systems.pem"),
            f("data/ca/seals.pem"),
            f("data/tsa/tsa.pem"),
        ];
        files.push(issue(
            "tls",
            "tls-server",
            "/CN=www.example.gov.cn",
            Some("DNS:www.example.gov.cn,IP:10.0.0.1"),
        ));
        files.push(issue(
            "client",
            "tls-client",
            "/CN=app-01/O=某局",
            Some("URI:https://app.example.gov.cn/"),
        ));
        files.push(issue(
            "sign",
            "official-sign",
            "/C=CN/O=某局/CN=张三",
            Some("email:zs@example.gov.cn"),
        ));
        files.push(issue(
            "enc",
            "official-enc",
            "/C=CN/O=某局/CN=张三",
            Some("email:zs@example.gov.cn"),
        ));
        files.push(issue(
            "seal",
            "seal",
            "/CN=某局公章/O=某局/2.5.4.97=91350100M000100Y43",
            None,
        ));
        for file in &files {
            pkilint("lint_pkix_cert", &[], floor, file);
        }
        let crl = f("systems.crl");
        let serial = {
            let (_, out) = openssl(&["x509", "-in", &f("tls.pem"), "-noout", "-serial"]);
            out.trim().trim_start_matches("serial=").to_owned()
        };
        run_ok(kexin(dir).args([
            "cert",
            "revoke",
            "--data",
            "data",
            "--serial",
            &serial,
            "--reason",
            "keyCompromise",
        ]));
        run_ok(kexin(dir).args(["crl", "--data", "data", "--ca", "systems", "--out", &crl]));
        pkilint("lint_crl", &["-t", "CRL", "-p", "PKIX"], floor, &crl);

        let server = serve_data(dir, http, https);
        for (name, cert) in [("revoked", f("tls.pem")), ("good", f("client.pem"))] {
            let resp = f(&format!("{name}.ocsp"));
            let issuer = f("data/ca/systems.pem");
            let (ok, out) = openssl(&[
                "ocsp",
                "-issuer",
                &issuer,
                "-cert",
                &cert,
                "-url",
                &format!("http://127.0.0.1:{http}/ocsp"),
                "-respout",
                &resp,
                "-noverify",
            ]);
            assert!(ok, "{out}");
            pkilint("lint_ocsp_response", &[], floor, &resp);
        }
        server.stop();
    }
}
