//! Electronic seals end to end: `kexin seal create / sign / sign-pdf`,
//! checked by independent validators — `openssl cms -verify` for detached
//! CAdES, pyHanko (tests/validators/pyhanko_validate.py) and poppler's
//! `pdfsig` (NSS) for PAdES — on PDFs with classic cross-reference tables
//! and with object and cross-reference streams (made by qpdf), and on
//! PDFs printed by Chromium, linearized, or declared PDF 2.0.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kexin_test_support::openssl;
use serde_json::Value;

const SEAL: &str = "某某局公章";

fn qpdf(args: &[&str]) {
    let out = Command::new("qpdf").args(args).output().expect("qpdf runs");
    // 3 = warnings only.
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "qpdf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pyHanko's report on every signature of `pdf`.
fn pyhanko(ca: &Ca, pdf: &str, ltv: bool) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validators/pyhanko_validate.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(pdf).arg(ca.ca_pem("root"));
    if ltv {
        cmd.arg("--ltv");
    }
    let out = cmd.output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pyhanko: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("[]")).unwrap()
}

fn seal_pdf(ca: &Ca, input: &str, output: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "seal", "sign-pdf", "--seal", SEAL, "--in", input, "--out", output,
    ];
    args.extend_from_slice(extra);
    ca.kexin(&args)
}

/// `openssl cms -verify` of a detached DER signature over `content`,
/// trusting only our root, for OpenSSL's default purpose (S/MIME signing:
/// seal certificates carry emailProtection).
fn cms_verifies(ca: &Ca, signature: &str, content: &str) -> (bool, String) {
    openssl(&[
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        signature,
        "-content",
        content,
        "-CAfile",
        &ca.ca_pem("root"),
        "-out",
        "/dev/null",
    ])
}

/// `seal_admin` grants `principal` the use of the seal at `seal_url`.
fn grant_seal(ca: &Ca, seal_admin: &str, seal_url: &str, principal: &str) {
    let grant = serde_json::json!({ "principal": principal }).to_string();
    let (code, v) = api(
        ca,
        Some(seal_admin),
        "POST",
        &format!("{seal_url}/users"),
        Some(&grant),
    );
    assert_eq!(code, 204, "{v}");
}

/// A B-B CAdES signature of `contract.txt` ("合同") that `signer` makes
/// over the API with the seal at `seal_url`, written to `name` and
/// verified by `openssl cms`; the signature's path and the content's.
fn cades_over_api(ca: &Ca, signer: &str, seal_url: &str, name: &str) -> (String, String) {
    let batch = serde_json::json!({
        "level": "b-b",
        "documents": [{"name": "contract.txt", "content": "5ZCI5ZCM"}],
    })
    .to_string();
    let (code, v) = api(
        ca,
        Some(signer),
        "POST",
        &format!("{seal_url}/sign"),
        Some(&batch),
    );
    assert_eq!(code, 200, "{v}");
    let der = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(v["signatures"][0]["signature"].as_str().unwrap())
            .unwrap()
    };
    let (sig, content) = (ca.file(name), ca.file("contract.txt"));
    std::fs::write(&sig, der).unwrap();
    std::fs::write(&content, "合同").unwrap();
    let (ok, out) = cms_verifies(ca, &sig, &content);
    assert!(ok, "{out}");
    (sig, content)
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_valid(report: &Value, timestamped: bool) {
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["trusted"], true, "{report}");
    if timestamped {
        assert_eq!(report["timestamp_trusted"], true, "{report}");
    }
}

/// Creates the seal; returns its certificate serial.
fn create_seal(ca: &Ca) -> String {
    let out = ca.kexin(&[
        "seal",
        "create",
        "--name",
        SEAL,
        "--org",
        "某某局",
        "--uscc",
        "91350100M000100Y43",
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.trim().rsplit(' ').next().unwrap().to_owned()
}

#[test]
fn pdfs_sealed_at_every_level_validate_in_pyhanko() {
    let ca = Ca::init(&[]);
    create_seal(&ca);
    let plain = ca.file("plain.pdf");
    make_pdf(&plain, 2);
    let streams = ca.file("streams.pdf");
    qpdf(&["--object-streams=generate", &plain, &streams]);
    assert!(std::fs::read(&streams)
        .unwrap()
        .windows(7)
        .any(|w| w == b"/ObjStm"));

    for (input, name) in [(&plain, "plain"), (&streams, "streams")] {
        for level in ["b-b", "b-t", "b-lt", "b-lta"] {
            let out = ca.file(&format!("{name}-{level}.pdf"));
            ok(&seal_pdf(&ca, input, &out, &["--level", level]));
            let original = std::fs::read(input).unwrap();
            assert!(
                std::fs::read(&out).unwrap().starts_with(&original),
                "the original bytes changed"
            );
            let ltv = matches!(level, "b-lt" | "b-lta");
            let reports = pyhanko(&ca, &out, ltv);
            assert_eq!(
                reports.len(),
                if level == "b-lta" { 2 } else { 1 },
                "{reports:?}"
            );
            assert_valid(&reports[0], level != "b-b");
            assert!(reports[0]["signer"].as_str().unwrap().contains(SEAL));
            if ltv {
                // Revocation checked in hard-fail mode from the DSS alone.
                assert!(
                    reports[0]["summary"].as_str().unwrap().contains("TRUSTED"),
                    "{reports:?}"
                );
            } else {
                assert_eq!(reports[0]["coverage"], "SignatureCoverageLevel.ENTIRE_FILE");
            }
            if level == "b-lta" {
                assert_eq!(reports[1]["type"], "/DocTimeStamp");
                assert_valid(&reports[1], false);
            }
        }
    }

    // Countersigning keeps the first seal valid.
    let twice = ca.file("twice.pdf");
    ok(&seal_pdf(
        &ca,
        &ca.file("streams-b-t.pdf"),
        &twice,
        &["--page", "1", "--x", "100"],
    ));
    let reports = pyhanko(&ca, &twice, false);
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_valid(r, true);
    }
    assert_eq!(
        reports[0]["modification_level"], "ModificationLevel.FORM_FILLING",
        "{reports:?}"
    );

    // A certification signature stays valid under a later seal.
    let certified = ca.file("certified.pdf");
    ok(&seal_pdf(&ca, &plain, &certified, &["--certify"]));
    let sealed_again = ca.file("certified-2.pdf");
    ok(&seal_pdf(&ca, &certified, &sealed_again, &[]));
    let reports = pyhanko(&ca, &sealed_again, false);
    assert_valid(&reports[0], true);
    assert_eq!(reports[0]["docmdp_ok"], true, "{reports:?}");
    let out = seal_pdf(&ca, &sealed_again, &ca.file("x.pdf"), &["--certify"]);
    assert!(
        !out.status.success(),
        "a second certification signature was made"
    );

    // A byte changed inside the signed range is caught.
    let mut tampered = std::fs::read(ca.file("plain-b-t.pdf")).unwrap();
    let at = tampered.windows(6).position(|w| w == b"page 1").unwrap();
    tampered[at + 5] = b'7';
    let tampered_path = ca.file("tampered.pdf");
    std::fs::write(&tampered_path, tampered).unwrap();
    let reports = pyhanko(&ca, &tampered_path, false);
    assert_ne!(reports[0]["intact"], true, "{reports:?}");

    // PDFs Kexin cannot seal get a clear error and no output.
    let encrypted = ca.file("encrypted.pdf");
    qpdf(&[
        "--encrypt",
        "user",
        "owner",
        "256",
        "--",
        &plain,
        &encrypted,
    ]);
    let not_pdf = ca.file("not.pdf");
    std::fs::write(&not_pdf, b"hello, not a pdf").unwrap();
    for (input, expected) in [
        (encrypted.as_str(), "encrypted"),
        (not_pdf.as_str(), "does not start with %PDF-"),
    ] {
        let out_path = ca.file("refused.pdf");
        let out = seal_pdf(&ca, input, &out_path, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{stderr}"
        );
        assert!(!Path::new(&out_path).exists());
    }
    let out = seal_pdf(&ca, &plain, &ca.file("p9.pdf"), &["--page", "9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("page 9 does not exist"));
}

/// A two-page PDF printed by headless Chromium (Skia's PDF writer, with
/// an embedded CJK font subset and an image): a document as users make
/// them, not as the tests write them.
fn chromium_pdf(ca: &Ca) -> String {
    let html = ca.file("letter.html");
    std::fs::write(
        &html,
        "<!doctype html><meta charset=utf-8><body style=\"font-family:'WenQuanYi Zen Hei'\">\
         <h1>关于开展电子证照试点的通知</h1><p>统一社会信用代码 91350100M000100Y43</p>\
         <svg width=120 height=120><circle cx=60 cy=60 r=50 fill=red /></svg>\
         <p style=\"break-before:page\">第二页 Page two</p>",
    )
    .unwrap();
    let pdf = ca.file("chromium.pdf");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            &format!("--print-to-pdf={pdf}"),
            &format!("file://{html}"),
        ])
        .output()
        .expect("chromium runs");
    assert!(Path::new(&pdf).exists(), "{out:?}");
    pdf
}

#[test]
fn pdfs_from_other_producers_are_sealed_at_b_lt_and_validate() {
    let ca = Ca::init(&[]);
    create_seal(&ca);
    let printed = chromium_pdf(&ca);
    let linearized = ca.file("linearized.pdf");
    qpdf(&["--linearize", &printed, &linearized]);
    let pdf20 = ca.file("pdf20.pdf");
    qpdf(&[
        "--object-streams=generate",
        "--force-version=2.0",
        &printed,
        &pdf20,
    ]);
    assert!(std::fs::read(&pdf20).unwrap().starts_with(b"%PDF-2.0"));
    // Mail gateways and upload forms leave bytes after %%EOF.
    let trailing = ca.file("trailing.pdf");
    let mut bytes = std::fs::read(&printed).unwrap();
    bytes.extend_from_slice(b"\r\n\0\0\r\n");
    std::fs::write(&trailing, bytes).unwrap();

    for input in [&printed, &linearized, &pdf20, &trailing] {
        let out = ca.file("sealed.pdf");
        ok(&seal_pdf(
            &ca,
            input,
            &out,
            &["--level", "b-lt", "--page", "2"],
        ));
        let reports = pyhanko(&ca, &out, true);
        assert_eq!(reports.len(), 1, "{input}: {reports:?}");
        assert_valid(&reports[0], true);
        assert!(
            reports[0]["summary"].as_str().unwrap().contains("TRUSTED"),
            "{input}: {reports:?}"
        );
        let report = kexin_verify(&ca, &out, None);
        assert_eq!(report["verdict"], "valid", "{input}: {report}");
    }
}

/// An NSS certificate database (`sql:` directory) that trusts only our
/// root, made on first use.
fn nss_db(ca: &Ca) -> String {
    let nss = ca.file("nss");
    if !Path::new(&nss).exists() {
        std::fs::create_dir(&nss).unwrap();
        let db = format!("sql:{nss}");
        for args in [
            vec!["-N", "-d", &db, "--empty-password"],
            vec!["-A", "-d", &db, "-n", "kexin-root", "-t", "CT,C,C"],
        ] {
            let mut cmd = Command::new("certutil");
            cmd.args(&args);
            if args[0] == "-A" {
                cmd.args(["-i", &ca.ca_pem("root")]);
            }
            ok(&cmd.output().expect("certutil (libnss3-tools) runs"));
        }
    }
    format!("sql:{nss}")
}

/// What poppler's `pdfsig` says of each signature in `pdf`, trusting only
/// our root; revocation is checked online, by OCSP to the responder the
/// certificate names.
fn pdfsig(ca: &Ca, pdf: &str) -> String {
    let out = Command::new("pdfsig")
        .args(["-nssdir", &nss_db(ca), pdf])
        .output()
        .expect("pdfsig (poppler-utils) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sealed_pdfs_validate_in_poppler_pdfsig_until_the_seal_is_revoked() {
    let ca = Ca::init(&[]);
    let serial = create_seal(&ca);
    let input = ca.file("in.pdf");
    make_pdf(&input, 1);
    let _server = ca.serve();
    for level in ["b-t", "b-lt"] {
        let out = ca.file(&format!("{level}.pdf"));
        ok(&seal_pdf(&ca, &input, &out, &["--level", level]));
        let report = pdfsig(&ca, &out);
        assert!(
            report.contains("Signature Type: ETSI.CAdES.detached"),
            "{report}"
        );
        assert!(
            report.contains("Signature Validation: Signature is Valid."),
            "{report}"
        );
        assert!(
            report.contains("Certificate Validation: Certificate is Trusted."),
            "{report}"
        );
    }

    // The visible seal names its organization under the image, in a CJK
    // font the viewer supplies (poppler maps it through poppler-data).
    let out = Command::new("pdftotext")
        .args([&ca.file("b-t.pdf"), "-"])
        .output()
        .expect("pdftotext (poppler-utils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("某某局\nSealed 20"),
        "no signer line on the seal: {text}"
    );

    // One byte of the signed original changed: the digest no longer matches.
    let mut pdf = std::fs::read(ca.file("b-t.pdf")).unwrap();
    let at = pdf.windows(9).position(|w| w == b"/MediaBox").unwrap();
    pdf[at + 11] ^= 1;
    let changed = ca.file("changed.pdf");
    std::fs::write(&changed, pdf).unwrap();
    let report = pdfsig(&ca, &changed);
    assert!(
        report.contains("Signature Validation: Digest Mismatch."),
        "{report}"
    );

    ca.revoke(&serial, "keyCompromise");
    // The CLI revoked in another process: the server's OCSP responder sees
    // it within its recheck time (2 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = pdfsig(&ca, &ca.file("b-t.pdf"));
        if report.contains("Certificate Validation: Certificate has been Revoked.") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn files_sealed_with_cades_verify_with_openssl_and_nss_and_revoked_seals_refuse() {
    let ca = Ca::init(&[]);
    let serial = create_seal(&ca);
    let content = ca.file("archive.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&content, &data).unwrap();
    for level in ["b-b", "b-t", "b-lt"] {
        let sig = ca.file(&format!("archive-{level}.p7s"));
        ok(&ca.kexin(&[
            "seal", "sign", "--seal", SEAL, "--in", &content, "--out", &sig, "--level", level,
        ]));
        let (ok_, out) = cms_verifies(&ca, &sig, &content);
        assert!(ok_, "{level}: {out}");
        assert_eq!(
            nss_cms_status(&ca, &sig, &content),
            "GoodSignature",
            "{level}"
        );
        let (_, printed) = openssl(&["cms", "-cmsout", "-print", "-inform", "DER", "-in", &sig]);
        assert!(printed.contains("signingCertificateV2"), "{printed}");
        assert_eq!(
            printed.contains("id-smime-aa-timeStampToken"),
            level != "b-b",
            "{level}"
        );
        assert_eq!(
            printed.contains("tbsCertList")
                || printed.contains("crls:\n") && !printed.contains("crls:\n      <ABSENT>"),
            level == "b-lt",
            "{level}"
        );
    }
    // The signature covers the content: one changed byte fails.
    let mut changed = data.clone();
    changed[1_234_567] ^= 1;
    let changed_path = ca.file("changed.bin");
    std::fs::write(&changed_path, changed).unwrap();
    let (ok_, _) = cms_verifies(&ca, &ca.file("archive-b-t.p7s"), &changed_path);
    assert!(!ok_, "a changed file verified");
    assert_eq!(
        nss_cms_status(&ca, &ca.file("archive-b-t.p7s"), &changed_path),
        "DigestMismatch"
    );

    // Revoking the seal's certificate makes the seal unusable.
    let out = ca.kexin(&[
        "seal",
        "sign",
        "--seal",
        "no such seal",
        "--in",
        &content,
        "--out",
        &ca.file("x.p7s"),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    ca.revoke(&serial, "keyCompromise");
    let out = ca.kexin(&[
        "seal",
        "sign",
        "--seal",
        SEAL,
        "--in",
        &content,
        "--out",
        &ca.file("late.p7s"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("certificate revoked"),
        "{stderr}"
    );
    ca.assert_audit_intact();
}

/// The status NSS's `cmsutil` gives the one signer of the detached CMS
/// `signature` over `content`, trusting only our root, for its default
/// usage (e-mail signer): `GoodSignature`, `DigestMismatch`, ...
fn nss_cms_status(ca: &Ca, signature: &str, content: &str) -> String {
    let out = Command::new("cmsutil")
        .args(["-D", "-n", "-h", "3", "-d", &nss_db(ca)])
        .args(["-i", signature, "-c", content])
        .output()
        .expect("cmsutil (libnss3-tools) runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    printed
        .split("signer0.status=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no signer status: {printed}"))
        .to_owned()
}

/// `kexin verify --json` on `file` (with `content` for detached signatures).
fn kexin_verify(ca: &Ca, file: &str, content: Option<&str>) -> Value {
    let mut args = vec!["verify", file, "--json"];
    if let Some(c) = content {
        args.extend(["--content", c]);
    }
    let out = ca.kexin(&args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Appends a revision that replaces page 1's content stream (object 4):
/// what a forger who cannot re-sign would do.
fn append_content_change(pdf: &[u8]) -> Vec<u8> {
    let tail = String::from_utf8_lossy(&pdf[pdf.len() - 64..]).into_owned();
    let prev: usize = tail
        .split("startxref")
        .last()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut out = pdf.to_vec();
    let offset = out.len();
    let content = "BT /F1 24 Tf 72 760 Td (Forged content) Tj ET";
    out.extend_from_slice(
        format!(
            "4 0 obj\n<< /Length {} >>\nstream\n{content}\nendstream\nendobj\n",
            content.len()
        )
        .as_bytes(),
    );
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n4 1\n{offset:010} 00000 n \ntrailer\n<< /Size 200 /Root 1 0 R /Prev {prev} >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

#[test]
fn kexin_verify_reports_on_our_and_other_tools_signatures() {
    let ca = Ca::init(&[]);
    let serial = create_seal(&ca);
    let plain = ca.file("plain.pdf");
    make_pdf(&plain, 1);
    let sealed = ca.file("sealed.pdf");
    ok(&seal_pdf(&ca, &plain, &sealed, &["--level", "b-lta"]));
    let r = kexin_verify(&ca, &sealed, None);
    assert_eq!(r["verdict"], "valid", "{r}");
    let seal = &r["signatures"][0];
    assert_eq!(seal["seal"]["name"], SEAL);
    assert_eq!(seal["seal"]["uscc"], "91350100M000100Y43");
    assert_eq!(
        seal["signer"],
        format!("CN={SEAL}, organizationIdentifier=91350100M000100Y43, O=某某局"),
        "the signer reads as text, the USCC too"
    );
    assert_eq!(seal["timestamp"]["valid"], true);
    assert_eq!(seal["status_now"], "good");
    assert_eq!(
        seal["changes_after"],
        serde_json::json!(["validation data (DSS)", "a document time-stamp"])
    );
    assert_eq!(r["signatures"][1]["kind"], "document-timestamp");

    // Changed after sealing, by a revision that is not a signature.
    let forged = ca.file("forged.pdf");
    std::fs::write(
        &forged,
        append_content_change(&std::fs::read(ca.file("sealed.pdf")).unwrap()),
    )
    .unwrap();
    let r = kexin_verify(&ca, &forged, None);
    assert_eq!(r["verdict"], "indeterminate", "{r}");
    assert!(r["signatures"][0]["changes_after"]
        .as_array()
        .unwrap()
        .contains(&"other changes".into()));
    assert_eq!(r["signatures"][0]["covers_whole_document"], false);
    // A byte flipped inside the signed range.
    let mut flipped = std::fs::read(&sealed).unwrap();
    let at = flipped.windows(6).position(|w| w == b"page 1").unwrap();
    flipped[at + 5] = b'2';
    let flipped_path = ca.file("flipped.pdf");
    std::fs::write(&flipped_path, flipped).unwrap();
    let r = kexin_verify(&ca, &flipped_path, None);
    assert_eq!(r["verdict"], "invalid", "{r}");

    // A PDF signed by another tool (pyHanko) with a certificate of our CA.
    let (key, csr) = (ca.file("ext.key"), ca.file("ext.csr"));
    let (ok_, out) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=x",
    ]);
    assert!(ok_, "{out}");
    let (cert, _) = ca.issue("ext", "tls-client", &csr);
    let other = ca.file("pyhanko-signed.pdf");
    run_ok(
        Command::new("python3")
            .args([
                "-c",
                "import sys; from pyhanko.cli import cli_root; sys.argv[0]='pyhanko'; cli_root()",
            ])
            .args([
                "sign",
                "addsig",
                "--field",
                "Sig1",
                "pemder",
                "--key",
                &key,
                "--cert",
                &cert,
                "--chain",
                &ca.ca_pem("officials"),
                "--no-pass",
                &plain,
                &other,
            ]),
    );
    let r = kexin_verify(&ca, &other, None);
    assert_eq!(r["verdict"], "valid", "{r}");
    assert_eq!(r["signatures"][0]["format"], "adbe.pkcs7.detached");

    // Our seal after the other tool's signature keeps it valid, in
    // pyHanko's eyes (which wrote it) and ours.
    let countersigned = ca.file("pyhanko-then-sealed.pdf");
    ok(&seal_pdf(&ca, &other, &countersigned, &[]));
    let reports = pyhanko(&ca, &countersigned, false);
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(reports[0]["field"], "Sig1");
    assert_eq!(reports[0]["intact"], true, "{reports:?}");
    assert_eq!(reports[0]["valid"], true, "{reports:?}");
    assert_eq!(
        reports[0]["modification_level"], "ModificationLevel.FORM_FILLING",
        "{reports:?}"
    );
    assert_valid(&reports[1], true);
    let r = kexin_verify(&ca, &countersigned, None);
    assert_eq!(r["verdict"], "valid", "{r}");
    assert_eq!(
        r["signatures"][0]["changes_after"],
        serde_json::json!(["a later signature"])
    );

    // Detached CAdES, then the seal is revoked: the time-stamp proves the
    // signature came first, so it stays valid; a new one is refused.
    let file = ca.file("minutes.txt");
    std::fs::write(&file, "会议纪要").unwrap();
    let sig = ca.file("minutes.p7s");
    ok(&ca.kexin(&["seal", "sign", "--seal", SEAL, "--in", &file, "--out", &sig]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ca.revoke(&serial, "keyCompromise");
    let r = kexin_verify(&ca, &sig, Some(&file));
    assert_eq!(r["verdict"], "valid", "{r}");
    assert!(
        r["signatures"][0]["status_now"]
            .as_str()
            .unwrap()
            .starts_with("revoked"),
        "{r}"
    );
    assert_eq!(r["signatures"][0]["good_at_signing_time"], true);
    std::fs::write(&file, "会议纪要（改）").unwrap();
    let r = kexin_verify(&ca, &sig, Some(&file));
    assert_eq!(r["verdict"], "invalid", "{r}");
}

/// POSTs `data` (curl's `--data-binary`: `@file` or the bytes themselves)
/// as `application/pdf` to `url` with the client certificate `officer`.
fn post_pdf(ca: &Ca, officer: &str, data: &str, url: &str) -> (u16, Vec<u8>) {
    post_pdf_with(ca, officer, data, url, &[])
}

/// [`post_pdf`] with more curl options before the URL.
fn post_pdf_with(ca: &Ca, officer: &str, data: &str, url: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let mut args = vec!["-H", "Content-Type: application/pdf", "--data-binary", data];
    args.extend_from_slice(extra);
    curl_as(ca, Some(officer), &args, url)
}

/// A problem document (RFC 9457) with `status`, as the HTTP status too.
fn assert_problem(code: u16, body: &[u8], status: u16) {
    let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    assert_eq!(
        (code, problem["status"].as_u64()),
        (status, Some(u64::from(status))),
        "{problem}"
    );
}

/// The report of `POST /api/v1/verify` on the PDF at `path`, as `officer`.
fn verify_over_api(ca: &Ca, officer: &str, path: &str) -> Value {
    let (code, body) = post_pdf(
        ca,
        officer,
        &format!("@{path}"),
        &format!("https://localhost:{}/api/v1/verify", ca.https),
    );
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn seals_are_applied_and_verified_over_the_api_and_on_the_citizen_portal() {
    let ca = Ca::init(&[]);
    create_seal(&ca);
    let sam = ca.officer("sam", "seal-admin");
    let sys = ca.officer("clerk", "ra-officer");
    let other = ca.officer("other", "ra-officer");
    let server = ca.serve();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let seal_path = |rest: &str| {
        format!(
            "/api/v1/seals/{}/{rest}",
            "%E6%9F%90%E6%9F%90%E5%B1%80%E5%85%AC%E7%AB%A0"
        )
    };

    let (code, v) = api(&ca, Some(&other), "GET", "/api/v1/seals", None);
    assert_eq!(code, 200);
    assert_eq!(v["items"][0]["name"], SEAL, "{v}");
    let (code, v) = api(
        &ca,
        Some(&other),
        "GET",
        seal_path("").trim_end_matches('/'),
        None,
    );
    assert_eq!(
        (code, v["organization"].as_str()),
        (200, Some("某某局")),
        "{v}"
    );
    assert!(
        v["image"].as_str().unwrap().starts_with("iVBOR"),
        "a PNG image"
    );

    // Only a seal-admin grants; only grantees apply.
    let grant = r#"{"principal":"clerk"}"#;
    let (code, _) = api(&ca, Some(&sys), "POST", &seal_path("users"), Some(grant));
    assert_eq!(code, 403);
    let (code, _) = api(&ca, Some(&sam), "POST", &seal_path("users"), Some(grant));
    assert_eq!(code, 204);
    let batch = serde_json::json!({
        "level": "b-t",
        "documents": [
            {"name": "a.txt", "content": b64(b"first archive record")},
            {"name": "b.txt", "content": b64("第二份档案".as_bytes())},
        ],
    })
    .to_string();
    let (code, _) = api(&ca, None, "POST", &seal_path("sign"), Some(&batch));
    assert_eq!(code, 401);
    let (code, v) = api(&ca, Some(&other), "POST", &seal_path("sign"), Some(&batch));
    assert_eq!(code, 403, "{v}");
    let (code, v) = api(&ca, Some(&sys), "POST", &seal_path("sign"), Some(&batch));
    assert_eq!(code, 200, "{v}");
    let sigs = v["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    for (sig, content) in sigs
        .iter()
        .zip([&b"first archive record"[..], "第二份档案".as_bytes()])
    {
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig["signature"].as_str().unwrap())
            .unwrap();
        let (sig_path, content_path) = (ca.file("api.p7s"), ca.file("api.txt"));
        std::fs::write(&sig_path, der).unwrap();
        std::fs::write(&content_path, content).unwrap();
        let (ok_, out) = cms_verifies(&ca, &sig_path, &content_path);
        assert!(ok_, "{out}");
    }

    // A PDF sealed over the API validates in pyHanko and in /api/v1/verify.
    let plain = ca.file("plain.pdf");
    make_pdf(&plain, 1);
    let sealed = ca.file("api-sealed.pdf");
    let url = format!(
        "https://localhost:{}{}?level=b-lt&page=1&x=300&y=500",
        ca.https,
        seal_path("sign-pdf")
    );
    let (code, body) = post_pdf(&ca, &sys, &format!("@{plain}"), &url);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    std::fs::write(&sealed, &body).unwrap();
    let reports = pyhanko(&ca, &sealed, true);
    assert_valid(&reports[0], true);

    // With output=update only the update comes back, with the length it
    // is to be appended at; appended to the PDF sent it is the sealed
    // document, which pyHanko validates.
    let update_url = format!(
        "https://localhost:{}{}?level=b-t&output=update",
        ca.https,
        seal_path("sign-pdf")
    );
    let headers = ca.file("update-headers.txt");
    let (code, update) = post_pdf_with(
        &ca,
        &sys,
        &format!("@{plain}"),
        &update_url,
        &["-D", &headers],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&update));
    let mut joined = std::fs::read(&plain).unwrap();
    let headers = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains(&format!("kexin-update-offset: {}\r\n", joined.len())),
        "{headers}"
    );
    assert!(!update.starts_with(b"%PDF"), "the update alone comes back");
    joined.extend_from_slice(&update);
    let joined_path = ca.file("api-sealed-joined.pdf");
    std::fs::write(&joined_path, &joined).unwrap();
    assert_valid(&pyhanko(&ca, &joined_path, false)[0], true);
    let (code, body) = post_pdf(
        &ca,
        &sys,
        &format!("@{plain}"),
        &update_url.replace("output=update", "output=pages"),
    );
    assert_problem(code, &body, 400);

    // From 4 MiB on, the server parses and hashes a document off the
    // executor: at B-LTA for the signature, the DSS and the document
    // time-stamp, and in verification. A 5 MiB document sealed that way
    // validates in pyHanko and in /api/v1/verify.
    let large = ca.file("large.pdf");
    make_padded_pdf(&large, 1, 5 << 20);
    let lta_url = format!(
        "https://localhost:{}{}?level=b-lta&page=1&x=300&y=500",
        ca.https,
        seal_path("sign-pdf")
    );
    let (code, body) = post_pdf(&ca, &sys, &format!("@{large}"), &lta_url);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(body.len() > 5 << 20);
    let sealed_large = ca.file("api-sealed-large.pdf");
    std::fs::write(&sealed_large, &body).unwrap();
    let reports = pyhanko(&ca, &sealed_large, true);
    assert_valid(&reports[0], true);
    let report = verify_over_api(&ca, &other, &sealed_large);
    assert_eq!(report["verdict"], "valid", "{report}");
    assert_eq!(
        report["signatures"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    let report = verify_over_api(&ca, &other, &sealed);
    assert_eq!(report["verdict"], "valid", "{report}");
    assert_eq!(report["signatures"][0]["seal"]["organization"], "某某局");
    let (code, _) = post_pdf(&ca, &sys, "not a pdf", &url);
    assert_eq!(code, 422);
    // The document is read whole before any refusal: without a client
    // certificate, over HTTP/2, a 5 MiB PDF gets the 401 problem, not a
    // reset stream; one announced over the 64 MiB limit gets a 413 at once
    // (over HTTP/1.1 here: curl reports an HTTP/2 stream that a server
    // ends early as an error, whatever its response).
    let (code, body) = curl(&[
        "--http2",
        "--cacert",
        &ca.ca_pem("root"),
        "-H",
        "Content-Type: application/pdf",
        "--data-binary",
        &format!("@{large}"),
        &url,
    ]);
    assert_problem(code, &body, 401);
    let oversized = ca.file("oversized.pdf");
    std::fs::write(&oversized, vec![b' '; (64 << 20) + 1]).unwrap();
    let (code, body) = post_pdf_with(&ca, &sys, &format!("@{oversized}"), &url, &["--http1.1"]);
    assert_problem(code, &body, 413);

    // The citizen portal in Chromium at phone size, no certificate.
    let mut tampered = std::fs::read(&sealed).unwrap();
    let at = tampered.windows(6).position(|w| w == b"page 1").unwrap();
    tampered[at + 5] = b'9';
    let tampered_path = ca.file("tampered.pdf");
    std::fs::write(&tampered_path, tampered).unwrap();
    let (file, sig) = (ca.file("notice.txt"), ca.file("notice.p7s"));
    std::fs::write(&file, "公告").unwrap();
    ok(&ca.kexin(&["seal", "sign", "--seal", SEAL, "--in", &file, "--out", &sig]));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/portal.mjs"))
        .env("KEXIN_URL", format!("https://localhost:{}", ca.https))
        .env("SHOTS", root.join("target/browser-screenshots"))
        .env("SEALED_PDF", &sealed)
        .env("TAMPERED_PDF", &tampered_path)
        .env("SIGNED_FILE", &file)
        .env("SIGNATURE_FILE", &sig)
        .env("ORGANIZATION", "某某局")
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Uploads are limited per address.
    let mut last = 0;
    for _ in 0..25 {
        let (code, _) = curl(&[
            "--cacert",
            &ca.ca_pem("root"),
            "-F",
            &format!("pdf=@{sealed}"),
            &format!("https://localhost:{}/verify", ca.https),
        ]);
        last = code;
    }
    assert_eq!(last, 429);

    // The console's seal page: the seal-admin sees the seal and grants it.
    let console = |p12: &str, jar: &str, extra: &[&str], path: &str| {
        console_at(&ca, ca.https, p12, jar, extra, path)
    };
    let jar = ca.file("sam.jar");
    console(&sam, &jar, &["-d", "next=/console/seals"], "/console/login");
    let (code, page) = console(&sam, &jar, &[], "/console/seals");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(SEAL)
            && page.contains("data:image/png;base64,iVBOR")
            && page.contains("clerk"),
        "{page}"
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (code, _) = console(
        &sam,
        &jar,
        &["-d", &format!("csrf={csrf}&principal=registry-office")],
        &format!(
            "{}/users",
            seal_path("")
                .replace("/api/v1/seals", "/console/seals")
                .trim_end_matches('/')
        ),
    );
    assert_eq!(code, 303);
    let (_, page) = console(&sam, &jar, &[], "/console/seals");
    assert!(page.contains("registry-office"), "{page}");
    let other_jar = ca.file("other.jar");
    console(
        &other,
        &other_jar,
        &["-d", "next=/console"],
        "/console/login",
    );
    let (code, _) = console(&other, &other_jar, &[], "/console/seals");
    assert_eq!(code, 403, "an ra-officer saw the seal page");

    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

/// The seals CA renewed while the server runs: what seals sign after the
/// server's next check of its certificates carries the new CA certificate
/// (the chain a relying party is given), not the one the server had read
/// for its first signature.
#[test]
fn what_seals_sign_after_their_ca_is_renewed_carries_the_renewed_ca() {
    let ca = Ca::init(&[]);
    create_seal(&ca);
    let (sam, clerk) = (
        ca.officer("sam", "seal-admin"),
        ca.officer("clerk", "ra-officer"),
    );
    let mut serve = serve_command(&ca.dir, ca.http, ca.https);
    serve.env("KEXIN_CA__CERTIFICATE_CHECK_SECS", "1");
    let server = Server::start(serve, ca.http, ca.https);
    let seal_url = format!("/api/v1/seals/{}", path_segment(SEAL));
    grant_seal(&ca, &sam, &seal_url, "clerk");
    // The certificates a signature made now carries.
    let sign = |name: &str| -> String {
        let (sig, _) = cades_over_api(&ca, &clerk, &seal_url, name);
        let (ok, certs) = openssl(&["pkcs7", "-inform", "DER", "-in", &sig, "-print_certs"]);
        assert!(ok, "{certs}");
        certs
    };
    let seals_ca = ca.ca_pem("seals");
    let old = std::fs::read_to_string(&seals_ca).unwrap();
    let certs = sign("before.p7s");
    assert!(certs.contains(old.trim()), "{certs}");

    let out = ca.kexin(&["ca", "renew", "--name", "seals", "--days", "4000"]);
    ok(&out);
    let renewed = std::fs::read_to_string(&seals_ca).unwrap();
    assert_ne!(renewed, old);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let certs = sign("after.p7s");
        if certs.contains(renewed.trim()) {
            assert!(!certs.contains(old.trim()), "{certs}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still the old seals CA: {certs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (status, output) = server.stop();
    assert!(status.success(), "{output}");
}

#[test]
fn e_licenses_carry_a_qr_code_that_verifies_until_the_license_is_revoked() {
    let ca = Ca::init(&[]);
    create_seal(&ca);
    let json = ca.file("license.json");
    std::fs::write(
        &json,
        serde_json::json!({
            "number": "91350100M000100Y43-0001",
            "holder": "某某科技有限公司",
            "authority": "某市市场监督管理局",
            "valid_from": "2026-01-01",
            "valid_until": "2046-12-31",
            "fields": [["法定代表人", "张三"], ["注册资本", "壹佰万元整"]],
        })
        .to_string(),
    )
    .unwrap();
    let pdf = ca.file("license.pdf");
    let issue = [
        "license",
        "issue",
        "--seal",
        SEAL,
        "--type",
        "营业执照",
        "--json",
        &json,
        "--out",
        &pdf,
    ];
    let out = ca.kexin(&issue);
    ok(&out);
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        url.starts_with("https://localhost:") && url.contains("/verify/license?t=eyJ"),
        "{url}"
    );
    let out = ca.kexin(&issue);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "a number was issued twice"
    );

    // The PDF is certified by the seal, and its QR code says the URL.
    let reports = pyhanko(&ca, &pdf, false);
    assert_valid(&reports[0], true);
    assert_eq!(reports[0]["docmdp_ok"], true);
    let png = ca.file("license");
    let status = Command::new("pdftoppm")
        .args(["-r", "100", "-png", "-singlefile", &pdf, &png])
        .status()
        .unwrap();
    assert!(status.success());
    let scanned = Command::new("zbarimg")
        .args(["-q", "--raw", &format!("{png}.png")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&scanned.stdout).trim(),
        url,
        "the QR code does not carry the verify URL"
    );

    let url_file = ca.file("qr.txt");
    std::fs::write(&url_file, &url).unwrap();
    let r = kexin_verify(&ca, &url_file, None);
    assert_eq!(r["verdict"], "valid", "{r}");
    assert_eq!(r["license"]["h"], "某某科技有限公司");
    assert_eq!(r["seal"]["organization"], "某某局");
    // A payload changed by one character is not genuine.
    let jws = url.split("t=").nth(1).unwrap().to_owned();
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let claims = String::from_utf8({
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap()
    })
    .unwrap()
    .replace("某某科技有限公司", "别的公司");
    parts[1] = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims)
    };
    std::fs::write(&url_file, parts.join(".")).unwrap();
    let r = kexin_verify(&ca, &url_file, None);
    assert_eq!(r["verdict"], "invalid", "{r}");

    // Online: the QR code's page, and the API.
    let server = ca.serve();
    let portal = |lang: &str| {
        let (code, body) = curl(&[
            "--cacert",
            &ca.ca_pem("root"),
            "-H",
            &format!("Accept-Language: {lang}"),
            &url.replace(
                "https://localhost:8443",
                &format!("https://localhost:{}", ca.https),
            ),
        ]);
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    let (code, page) = portal("zh-CN");
    assert_eq!(code, 200);
    assert!(
        page.contains("证照真实有效")
            && page.contains("某某科技有限公司")
            && page.contains("证照真实、已登记且在有效期内")
            && page.contains(r#"id="registry-status">有效<"#),
        "the reason and status in Chinese: {page}"
    );
    let officer = ca.officer("clerk", "ra-officer");
    let body = serde_json::json!({ "license": url }).to_string();
    let (code, v) = api(&ca, Some(&officer), "POST", "/api/v1/verify", Some(&body));
    assert_eq!((code, v["verdict"].as_str()), (200, Some("valid")), "{v}");

    ok(&ca.kexin(&[
        "license",
        "revoke",
        "--number",
        "91350100M000100Y43-0001",
        "--reason",
        "吊销",
    ]));
    let (_, page) = portal("en");
    assert!(
        page.contains("This license is not valid")
            && page.contains("This license has been revoked.")
            && page.contains(r#"id="registry-status">revoked 20"#),
        "{page}"
    );
    let (_, page) = portal("zh-CN");
    assert!(
        page.contains("此证照已被注销") && page.contains(r#"id="registry-status">已吊销 20"#),
        "{page}"
    );
    let (_, v) = api(&ca, Some(&officer), "POST", "/api/v1/verify", Some(&body));
    assert_eq!(v["verdict"], "invalid", "{v}");
    assert_eq!(v["reason_code"], "license-revoked", "{v}");
    assert!(v["registry_status"]
        .as_str()
        .unwrap()
        .starts_with("revoked"));
    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

/// Percent-encodes a path segment (seal names are usually Chinese).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_seal_asked_for_over_the_api_exists_only_after_two_officers_approve() {
    let ca = Ca::init(&[]);
    let sam = ca.officer("sam", "seal-admin");
    let ann = ca.officer("ann", "ra-officer");
    let bob = ca.officer("bob", "ra-officer");
    let clerk = ca.officer("clerk", "ra-officer");
    let _server = ca.serve();
    let name = "某某局合同专用章";
    let seal_url = format!("/api/v1/seals/{}", path_segment(name));

    let png = std::fs::read(seal_image(&ca)).unwrap();
    let image = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&png)
    };
    let spec = serde_json::json!({
        "name": name, "organization": "某某局", "uscc": "91350100M000100Y43",
        "kind": "contract", "image": image,
    })
    .to_string();

    // Who may ask, and what is refused before any officer sees it.
    let (code, _) = api(&ca, Some(&clerk), "POST", "/api/v1/seals", Some(&spec));
    assert_eq!(code, 403, "a registration officer does not ask for seals");
    for (bad, why) in [
        (
            r#"{"name":"x","organization":"某某局","uscc":"91350100M000100Y44"}"#,
            "check digit",
        ),
        (
            r#"{"name":"x","organization":"某某局","image":"bm90IGEgcG5n"}"#,
            "not a PNG",
        ),
        (
            r#"{"name":"x","organization":"某某局","kind":"personal"}"#,
            "unknown kind",
        ),
        (r#"{"name":"","organization":"某某局"}"#, "empty name"),
    ] {
        let (code, v) = api(&ca, Some(&sam), "POST", "/api/v1/seals", Some(bad));
        assert_eq!(code, 400, "{why}: {v}");
        assert!(v["detail"].as_str().is_some(), "{why}: a problem document");
    }
    let (code, v) = api(
        &ca,
        Some(&sam),
        "GET",
        "/api/v1/requests?status=submitted",
        None,
    );
    assert_eq!(
        (code, v["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );

    // Asked for: a request awaiting two approvals, and no seal yet.
    let (code, request) = api(&ca, Some(&sam), "POST", "/api/v1/seals", Some(&spec));
    assert_eq!(code, 202, "{request}");
    assert_eq!(request["kind"], "seal-create");
    assert_eq!(request["status"], "submitted");
    assert_eq!(request["approvals_required"], 2);
    assert_eq!(request["seal"]["name"], name);
    let id = request["id"].as_i64().unwrap();
    let (code, _) = api(&ca, Some(&sam), "GET", &seal_url, None);
    assert_eq!(code, 404, "no seal before approval");
    let approve = format!("/api/v1/requests/{id}/approve");
    let (code, _) = api(&ca, Some(&sam), "POST", &approve, None);
    assert_eq!(code, 403, "a seal-admin does not approve");
    let (code, v) = api(&ca, Some(&ann), "POST", &approve, None);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("submitted")),
        "{v}"
    );
    let (code, _) = api(&ca, Some(&ann), "POST", &approve, None);
    assert_eq!(code, 409, "one officer approves once");
    let (code, _) = api(&ca, Some(&sam), "GET", &seal_url, None);
    assert_eq!(code, 404, "one approval is not enough");
    let (code, v) = api(&ca, Some(&bob), "POST", &approve, None);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("issued")),
        "{v}"
    );
    let serial = v["request"]["outcome"]["certificates"][0]
        .as_str()
        .unwrap()
        .to_owned();

    // The seal exists, with the image given and a certificate from the
    // seals CA that OpenSSL chains to the root.
    let (code, seal) = api(&ca, Some(&clerk), "GET", &seal_url, None);
    assert_eq!(code, 200, "{seal}");
    assert_eq!(seal["kind"], "contract");
    assert_eq!(seal["status"], "active");
    assert_eq!(seal["certificate_serial"], serial.as_str());
    assert_eq!(seal["image"], image.as_str());
    let cert = ca.file("contract-seal.pem");
    std::fs::write(&cert, seal["certificate_pem"].as_str().unwrap()).unwrap();
    let (ok_, out) = openssl(&[
        "verify",
        "-CAfile",
        &ca.ca_pem("root"),
        "-untrusted",
        &ca.ca_pem("seals"),
        &cert,
    ]);
    assert!(ok_, "{out}");
    let (_, subject) = openssl(&[
        "x509", "-in", &cert, "-noout", "-subject", "-nameopt", "utf8",
    ]);
    assert!(
        subject.contains(name) && subject.contains("91350100M000100Y43"),
        "{subject}"
    );

    // The same name again is refused; a rejected request makes no seal.
    let (code, _) = api(&ca, Some(&sam), "POST", "/api/v1/seals", Some(&spec));
    assert_eq!(code, 409);
    let other = r#"{"name":"某某局财务专用章","organization":"某某局","kind":"finance"}"#;
    let (code, request) = api(&ca, Some(&sam), "POST", "/api/v1/seals", Some(other));
    assert_eq!(code, 202, "{request}");
    let reject = format!("/api/v1/requests/{}/reject", request["id"]);
    let (code, v) = api(&ca, Some(&ann), "POST", &reject, None);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("rejected"))
    );
    let (code, _) = api(
        &ca,
        Some(&sam),
        "GET",
        &format!("/api/v1/seals/{}", path_segment("某某局财务专用章")),
        None,
    );
    assert_eq!(code, 404);

    // The new seal's key is in the key store and signs: a grantee's CAdES
    // signature verifies with openssl.
    grant_seal(&ca, &sam, &seal_url, "clerk");
    cades_over_api(&ca, &clerk, &seal_url, "contract.p7s");

    // Every step is in the audit trail, which still verifies.
    drop(_server);
    ca.assert_audit_intact();
}

/// A seal outlives its first certificate: renewed through a request two
/// RA officers approve, and by the operator once the certificate has
/// ended, it seals again; what it sealed before still verifies and names
/// it; and since every certificate of a seal is for its one key, revoking
/// one revokes them all.
#[test]
fn a_seal_renewed_seals_past_its_first_certificate_and_one_revocation_ends_them_all() {
    let ca = Ca::init(&[]);
    let first = create_seal(&ca);
    let (ann, bob, cai) = (
        ca.officer("ann", "ra-officer"),
        ca.officer("bob", "ra-officer"),
        ca.officer("cai", "ra-officer"),
    );
    let server = ca.serve();
    let plain = ca.file("plain.pdf");
    make_pdf(&plain, 1);
    let before = ca.file("before.pdf");
    ok(&seal_pdf(&ca, &plain, &before, &["--level", "b-t"]));

    // Renewal asked for without a CSR (the key is in the key store), and
    // carried out on the second approval.
    let sam = ca.officer("sam", "seal-admin");
    let with_csr = serde_json::json!({"kind": "renew", "target": first, "csr": "-"}).to_string();
    let (code, v) = api(&ca, Some(&sam), "POST", "/api/v1/requests", Some(&with_csr));
    assert_eq!(
        code, 403,
        "a seal-admin renews no certificate with a CSR: {v}"
    );
    let ask = serde_json::json!({"kind": "renew", "target": first}).to_string();
    let (code, request) = api(&ca, Some(&sam), "POST", "/api/v1/requests", Some(&ask));
    assert_eq!(code, 201, "{request}");
    assert_eq!(request["approvals_required"], 2, "{request}");
    let approve = format!("/api/v1/requests/{}/approve", request["id"]);
    let (code, v) = api(&ca, Some(&bob), "POST", &approve, None);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("submitted")),
        "{v}"
    );
    let (code, v) = api(&ca, Some(&cai), "POST", &approve, None);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("issued")),
        "{v}"
    );
    let second = v["request"]["outcome"]["certificates"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second, first);
    let (code, seal) = api(
        &ca,
        Some(&ann),
        "GET",
        &format!("/api/v1/seals/{}", path_segment(SEAL)),
        None,
    );
    assert_eq!(
        (code, seal["certificate_serial"].as_str()),
        (200, Some(second.as_str())),
        "{seal}"
    );
    // Same key, and the earlier certificate stays good for what it sealed.
    let pem = |serial: &str| {
        let (_, v) = api(
            &ca,
            Some(&ann),
            "GET",
            &format!("/api/v1/certificates/{serial}"),
            None,
        );
        assert_eq!(v["status"], "issued", "{v}");
        let path = ca.file(&format!("{serial}.pem"));
        std::fs::write(&path, v["certificate_pem"].as_str().unwrap()).unwrap();
        let (ok, key) = openssl(&["x509", "-in", &path, "-noout", "-pubkey"]);
        assert!(ok, "{key}");
        key
    };
    assert_eq!(pem(&first), pem(&second));
    let report = kexin_verify(&ca, &before, None);
    assert_eq!(report["verdict"], "valid", "{report}");
    assert_eq!(report["signatures"][0]["seal"]["name"], SEAL, "{report}");
    // The console's seals page gives the present certificate's end.
    let jar = ca.file("sam.jar");
    let (code, _) = console_at(
        &ca,
        ca.https,
        &sam,
        &jar,
        &["-d", "next=/console"],
        "/console/login",
    );
    assert_eq!(code, 303);
    let (code, page) = console_at(&ca, ca.https, &sam, &jar, &[], "/console/seals");
    assert_eq!(code, 200);
    let end = page
        .split("class=\"seal-end\">")
        .nth(1)
        .unwrap()
        .split("</dd>")
        .next()
        .unwrap();
    assert!(
        end.contains("1094 days") || end.contains("1095 days"),
        "{end}"
    );
    assert!(!end.contains("attention"), "{end}");
    // The page asks for a renewal: a renew request for the present
    // certificate, which awaits two approvals.
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let renew = format!("/console/seals/{}/renew", path_segment(SEAL));
    let (code, _) = console_at(
        &ca,
        ca.https,
        &sam,
        &jar,
        &[
            "-d",
            &format!("csrf={csrf}"),
            "-D",
            &ca.file("renew.headers"),
        ],
        &renew,
    );
    assert_eq!(code, 303);
    let headers = std::fs::read_to_string(ca.file("renew.headers")).unwrap();
    let id = headers
        .lines()
        .find_map(|l| l.strip_prefix("location: /console/requests/"))
        .unwrap_or_else(|| panic!("{headers}"))
        .trim()
        .to_owned();
    let (code, v) = api(
        &ca,
        Some(&ann),
        "GET",
        &format!("/api/v1/requests/{id}"),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["kind"].as_str(), v["status"].as_str()),
        (Some("renew"), Some("submitted")),
        "{v}"
    );
    assert_eq!(v["target"].as_str(), Some(second.as_str()), "{v}");
    assert!(
        v["subject"]
            .to_string()
            .contains(&format!("[\"CN\",\"{SEAL}\"]")),
        "approvers see whose certificate it is: {v}"
    );
    let (code, _) = console_at(&ca, ca.https, &sam, &jar, &["-d", "csrf=forged"], &renew);
    assert_eq!(code, 403, "a forged CSRF token");
    // The metrics give the seal's certificate end, for alerts.
    let auditor = ca.officer("shen", "auditor");
    let (code, body) = curl_as(
        &ca,
        Some(&auditor),
        &[],
        &format!("https://localhost:{}/metrics", ca.https),
    );
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 200, "{text}");
    let series =
        format!("kexin_certificate_expiry_timestamp_seconds{{kind=\"seal\",name=\"{SEAL}\"}} ");
    let end: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in {text}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 1093 * 86400..now + 1096 * 86400).contains(&end),
        "{end}"
    );
    // A renewal asked for from a certificate already renewed is refused.
    let again = serde_json::json!({"kind": "renew", "target": first}).to_string();
    let (code, v) = api(&ca, Some(&ann), "POST", "/api/v1/requests", Some(&again));
    assert_eq!(code, 409, "{v}");
    server.stop();

    // Three years and a week on, both certificates have ended: the seal
    // refuses to seal until the operator renews it.
    let later = "+1102d";
    let after = ca.file("after.pdf");
    let sign_later = |out: &str| {
        ca.kexin_at(
            later,
            &[
                "seal", "sign-pdf", "--seal", SEAL, "--in", &plain, "--out", out, "--level", "b-b",
            ],
        )
    };
    let (sealed, text) = sign_later(&after);
    assert!(
        !sealed && text.contains("outside its certificate's validity"),
        "{text}"
    );
    let (renewed, text) = ca.kexin_at(later, &["seal", "renew", "--name", SEAL]);
    assert!(renewed && text.contains("renewed"), "{text}");
    let third = text
        .split("serial ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let (sealed, text) = sign_later(&after);
    assert!(sealed, "{text}");
    let (_, text) = ca.kexin_at(later, &["verify", &after, "--json"]);
    let report: Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    assert_eq!(report["signatures"][0]["intact"], true, "{report}");
    assert_eq!(report["signatures"][0]["trusted"], true, "{report}");
    assert_eq!(report["signatures"][0]["seal"]["name"], SEAL, "{report}");

    // The seal's key compromised: revoking its present certificate
    // revokes the earlier ones, under which the key could go on sealing.
    ca.revoke(&third, "keyCompromise");
    let db = ca.data.join("kexin.db");
    for serial in [&first, &second, &third] {
        let status = sqlite_value(&db, &format!("SELECT status || ' ' || revocation_reason FROM certificates WHERE serial = '{serial}'"));
        assert_eq!(status, "revoked 1", "{serial}");
    }
    let (renewed, text) = ca.kexin_at(later, &["seal", "renew", "--name", SEAL]);
    assert!(!renewed && text.contains("revoked"), "{text}");
    ca.assert_audit_intact();
}
