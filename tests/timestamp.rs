//! The time-stamp authority over HTTP, checked with `openssl ts`, Python's
//! rfc3161ng and Java's jarsigner (and with gmssl for SM2 tokens, which
//! OpenSSL 3.0 cannot verify).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kexin_test_support::openssl;

struct Tsa {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: Option<Server>,
    http: u16,
}

impl Tsa {
    fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        run_ok(
            kexin(tmp.path())
                .args(["init", "--data", "data"])
                .args(extra)
                .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}")),
        );
        let server = serve_data(tmp.path(), http, https);
        Self {
            dir: tmp.path().to_owned(),
            _tmp: tmp,
            server: Some(server),
            http,
        }
    }

    fn file(&self, name: &str) -> String {
        path_str(&self.dir.join(name))
    }

    /// POSTs a request file; returns the reply file.
    fn post(&self, request: &str, content_type: &str) -> String {
        let reply = format!("{request}.tsr");
        let (code, body) = curl(&[
            "-H",
            &format!("Content-Type: {content_type}"),
            "--data-binary",
            &format!("@{request}"),
            &format!("http://127.0.0.1:{}/tsa", self.http),
        ]);
        assert_eq!(code, 200);
        std::fs::write(&reply, body).unwrap();
        reply
    }

    fn query(&self, name: &str, args: &[&str]) -> String {
        let data = self.file(&format!("{name}.txt"));
        std::fs::write(&data, format!("document {name}")).unwrap();
        let req = self.file(&format!("{name}.tsq"));
        let mut a = vec!["ts", "-query", "-data", &data, "-out", &req];
        a.extend_from_slice(args);
        let (ok, out) = openssl(&a);
        assert!(ok, "{out}");
        req
    }

    fn reply_text(&self, reply: &str) -> String {
        openssl(&["ts", "-reply", "-in", reply, "-text"]).1
    }

    fn verify(&self, name: &str, reply: &str, with_untrusted_tsa: bool) -> (bool, String) {
        let data = self.file(&format!("{name}.txt"));
        let root = path_str(&self.dir.join("data/ca/root.pem"));
        let untrusted = self.file("untrusted.pem");
        let mut pems = std::fs::read(self.dir.join("data/ca/systems.pem")).unwrap();
        if with_untrusted_tsa {
            pems.extend(std::fs::read(self.dir.join("data/tsa/tsa.pem")).unwrap());
        }
        std::fs::write(&untrusted, pems).unwrap();
        openssl(&[
            "ts",
            "-verify",
            "-data",
            &data,
            "-in",
            reply,
            "-CAfile",
            &root,
            "-untrusted",
            &untrusted,
        ])
    }

    fn stop(mut self) -> String {
        let (status, output) = self.server.take().unwrap().stop();
        assert!(status.success() && !output.contains("panicked"), "{output}");
        output
    }
}

#[test]
fn openssl_verifies_tokens_for_each_algorithm() {
    for alg in ["ecdsa-p256", "ecdsa-p384", "rsa-3072", "ed25519"] {
        let tsa = Tsa::start(&["--alg", alg]);
        let req = tsa.query("doc", &["-sha256", "-cert"]);
        let reply = tsa.post(&req, "application/timestamp-query");
        let text = tsa.reply_text(&reply);
        assert!(text.contains("Status: Granted."), "{alg}: {text}");
        assert!(text.contains("Policy OID: 0.4.0.2023.1.1"), "{alg}: {text}");
        assert!(text.contains("Accuracy: 0x01 seconds"), "{alg}: {text}");
        assert!(text.contains("Ordering: no"), "{alg}: {text}");
        assert!(text.contains("Nonce: 0x"), "{alg}: nonce echoed: {text}");
        kexin_verify(&tsa, "doc", &reply, true);
        if alg == "rsa-3072" {
            rfc3161ng_accepts(&tsa);
        }
        if alg == "ed25519" {
            // OpenSSL 3.0 cannot verify Ed25519 CMS signatures over signed
            // attributes ("invalid digest", fixed in later releases): check
            // the signature with `openssl pkeyutl` and the imprint by hand.
            ed25519_token_checks(&tsa, &reply);
            tsa.stop();
            continue;
        }
        let (ok, out) = tsa.verify("doc", &reply, false);
        assert!(ok && out.contains("Verification: OK"), "{alg}: {out}");
        // Another document does not match the token.
        std::fs::write(tsa.file("doc.txt"), "a different document").unwrap();
        let (ok, _) = tsa.verify("doc", &reply, false);
        assert!(!ok, "{alg}: token verified for the wrong data");
        kexin_verify(&tsa, "doc", &reply, false);
        tsa.stop();
    }
}

/// Java's `jarsigner` is an RFC 3161 client of its own (the JDK's): it
/// time-stamps a JAR's signature through `POST /tsa`, and its verifier
/// checks the token and the TSA's chain, timeStamping EKU included, against
/// a trust store. The JAR's signer is a developer's self-signed key; only
/// the time-stamp is ours.
#[test]
fn java_jarsigner_time_stamps_through_the_tsa_and_trusts_it_through_our_root() {
    /// What `tool` printed. It must succeed, except that jarsigner's
    /// `-strict` exits with the sum of its warnings' codes (1 is a failure).
    fn jdk(tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} (a JDK) runs: {e}"));
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let strict = args.contains(&"-strict");
        assert!(
            out.status.success() || strict && out.status.code() != Some(1),
            "{tool} {args:?}: {printed}"
        );
        printed
    }
    const CHAIN_REFUSED: &str = "TSA certificate chain is invalid";
    for alg in ["ecdsa-p256", "rsa-3072"] {
        let tsa = Tsa::start(&["--alg", alg]);
        let (jar, developer, trust) = (
            tsa.file("app.jar"),
            tsa.file("dev.p12"),
            tsa.file("trust.p12"),
        );
        let store = ["-storetype", "PKCS12", "-storepass", "changeit"];
        std::fs::write(tsa.file("a.txt"), "kexin").unwrap();
        jdk("jar", &["cf", &jar, "-C", &path_str(&tsa.dir), "a.txt"]);
        let mut args = vec!["-genkeypair", "-keystore", &developer, "-alias", "dev"];
        args.extend(store);
        args.extend([
            "-keyalg",
            "EC",
            "-groupname",
            "secp256r1",
            "-dname",
            "CN=dev",
        ]);
        jdk("keytool", &args);
        let root = path_str(&tsa.dir.join("data/ca/root.pem"));
        let mut args = vec![
            "-importcert",
            "-noprompt",
            "-keystore",
            &trust,
            "-alias",
            "kexin",
        ];
        args.extend(store);
        args.extend(["-file", &root]);
        jdk("keytool", &args);

        let url = format!("http://127.0.0.1:{}/tsa", tsa.http);
        jdk(
            "jarsigner",
            &[
                "-keystore",
                &developer,
                "-storepass",
                "changeit",
                "-tsa",
                &url,
                &jar,
                "dev",
            ],
        );
        let printed = jdk("jarsigner", &["-verify", "-verbose", "-certs", &jar]);
        assert!(
            printed.contains("Timestamped by \"CN=Kexin Trust Service Time-Stamp Authority"),
            "{alg}: {printed}"
        );
        // Strict verification refuses the TSA's chain until our root is
        // trusted, and then accepts it.
        let printed = jdk("jarsigner", &["-verify", "-strict", &jar]);
        assert!(printed.contains(CHAIN_REFUSED), "{alg}: {printed}");
        let printed = jdk(
            "jarsigner",
            &[
                "-verify",
                "-strict",
                "-keystore",
                &trust,
                "-storepass",
                "changeit",
                &jar,
            ],
        );
        assert!(
            printed.contains("jar verified") && !printed.contains(CHAIN_REFUSED),
            "{alg}: {printed}"
        );
        tsa.stop();
    }
}

/// The plain-HTTP listener takes a query however curl frames it: chunked,
/// HTTP/1.0, with `Expect: 100-continue`; and a GET gets 405 with Allow.
#[test]
fn queries_in_every_http_framing_are_stamped() {
    let tsa = Tsa::start(&[]);
    let url = format!("http://127.0.0.1:{}/tsa", tsa.http);
    let framings: [&[&str]; 3] = [
        &["-H", "Transfer-Encoding: chunked"],
        &["--http1.0"],
        &["-H", "Expect: 100-continue"],
    ];
    for (i, framing) in framings.into_iter().enumerate() {
        let name = format!("framing{i}");
        let req = tsa.query(&name, &["-sha256", "-cert"]);
        let mut args = vec![
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
        ];
        let body = format!("@{req}");
        args.push(&body);
        args.extend_from_slice(framing);
        args.push(&url);
        let (code, reply) = curl(&args);
        assert_eq!(code, 200, "{framing:?}");
        let file = tsa.file(&format!("{name}.tsr"));
        std::fs::write(&file, reply).unwrap();
        let (ok, out) = tsa.verify(&name, &file, false);
        assert!(ok, "{framing:?}: {out}");
    }
    let headers = tsa.file("get.headers");
    let (code, _) = curl(&["-D", &headers, &url]);
    assert_eq!(code, 405);
    let headers = std::fs::read_to_string(headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("allow: post"), "{headers}");
    tsa.stop();
}

#[test]
fn tokens_follow_the_request() {
    let tsa = Tsa::start(&[]);
    // certReq false: no certificate in the token; a verifier supplies it.
    let req = tsa.query("nocert", &["-sha512"]);
    let reply = tsa.post(&req, "application/timestamp-query");
    let token = tsa.file("nocert.tok");
    assert!(openssl(&["ts", "-reply", "-in", &reply, "-token_out", "-out", &token]).0);
    let (_, cms) = openssl(&["cms", "-cmsout", "-print", "-inform", "DER", "-in", &token]);
    assert!(
        cms.contains("certificates:\n      <ABSENT>") || !cms.contains("cert_info"),
        "{cms}"
    );
    let (ok, out) = tsa.verify("nocert", &reply, false);
    assert!(!ok, "verified without the TSA certificate: {out}");
    let (ok, out) = tsa.verify("nocert", &reply, true);
    assert!(ok, "{out}");
    // The token carries signingCertificateV2 (RFC 5816).
    assert!(cms.contains("id-smime-aa-signingCertificateV2"), "{cms}");

    // SM3 imprints are accepted, SHA-1 is not.
    let req = tsa.query("sha1", &["-sha1"]);
    let text = tsa.reply_text(&tsa.post(&req, "application/timestamp-query"));
    assert!(
        text.contains("Status: Rejected.")
            && text.contains("unrecognized or unsupported algorithm"),
        "{text}"
    );
    let req = tsa.query("sm3", &["-sm3"]);
    let text = tsa.reply_text(&tsa.post(&req, "application/timestamp-query"));
    assert!(
        text.contains("Status: Granted.") && text.contains("Hash Algorithm: sm3"),
        "{text}"
    );

    // Policies: ours is honoured, others are refused.
    let req = tsa.query("ours", &["-sha256", "-tspolicy", "0.4.0.2023.1.1"]);
    assert!(tsa
        .reply_text(&tsa.post(&req, "application/timestamp-query"))
        .contains("Status: Granted."));
    let req = tsa.query("theirs", &["-sha256", "-tspolicy", "1.2.3.4.5"]);
    let text = tsa.reply_text(&tsa.post(&req, "application/timestamp-query"));
    assert!(
        text.contains("Status: Rejected.")
            && text.contains("requested TSA policy is not supported"),
        "{text}"
    );

    // Garbage, wrong content type, wrong digest length: well-formed rejections.
    let junk = tsa.file("junk.bin");
    std::fs::write(&junk, b"this is not DER").unwrap();
    let text = tsa.reply_text(&tsa.post(&junk, "application/timestamp-query"));
    assert!(
        text.contains("Status: Rejected.") && text.contains("has the wrong format"),
        "{text}"
    );
    let req = tsa.query("ctype", &["-sha256"]);
    let text = tsa.reply_text(&tsa.post(&req, "text/plain"));
    assert!(text.contains("has the wrong format"), "{text}");
    // A SHA-256 imprint of 31 bytes (openssl refuses to build one).
    use der::Encode;
    let short = tsa.file("short.tsq");
    let request = x509_tsp::TimeStampReq {
        version: x509_tsp::TspVersion::V1,
        message_imprint: x509_tsp::MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifierOwned {
                oid: der::asn1::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
                parameters: None,
            },
            hashed_message: der::asn1::OctetString::new(vec![7u8; 31]).unwrap(),
        },
        req_policy: None,
        nonce: None,
        cert_req: false,
        extensions: None,
    };
    std::fs::write(&short, request.to_der().unwrap()).unwrap();
    let text = tsa.reply_text(&tsa.post(&short, "application/timestamp-query"));
    assert!(
        text.contains("Status: Rejected.") && text.contains("has the wrong format"),
        "{text}"
    );

    // Every granted token is in the log, none of the rejections.
    let db = tsa.dir.join("data/kexin.db");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
             print(c.execute('select count(*), count(distinct serial) from timestamp_tokens').fetchone())",
            &path_str(&db),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "(3, 3)");
    tsa.stop();
}

#[test]
fn serials_are_unique_under_concurrency_on_postgres() {
    let url = fresh_postgres_url();
    let tsa = Tsa::start(&["--db", &url]);
    let req = tsa.query("many", &["-sha256", "-no_nonce"]);
    let cfg = tsa.file("many.cfg");
    let mut lines = String::new();
    for i in 0..60 {
        lines.push_str(&format!(
            "url = \"http://127.0.0.1:{}/tsa\"\noutput = \"{}\"\n",
            tsa.http,
            tsa.file(&format!("many-{i}.tsr"))
        ));
    }
    std::fs::write(&cfg, lines).unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-Z",
            "--parallel-max",
            "12",
            "-H",
            "Content-Type: application/timestamp-query",
        ])
        .args(["--data-binary", &format!("@{req}"), "-K", &cfg])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut serials = std::collections::HashSet::new();
    for i in 0..60 {
        let text = tsa.reply_text(&tsa.file(&format!("many-{i}.tsr")));
        assert!(text.contains("Status: Granted."), "{text}");
        let serial = text
            .lines()
            .find(|l| l.starts_with("Serial number:"))
            .unwrap()
            .to_owned();
        assert!(
            serial.len() > "Serial number: 0x".len() + 16,
            "64+ bit serial: {serial}"
        );
        serials.insert(serial);
    }
    assert_eq!(serials.len(), 60);
    tsa.stop();
}

#[test]
fn sm2_tokens_verify_with_gmssl() {
    let tsa = Tsa::start(&["--alg", "sm2"]);
    let req = tsa.query("sm2", &["-sm3", "-cert"]);
    let reply = tsa.post(&req, "application/timestamp-query");
    let text = tsa.reply_text(&reply);
    assert!(text.contains("Status: Granted."), "{text}");
    let token = tsa.file("sm2.tok");
    assert!(openssl(&["ts", "-reply", "-in", &reply, "-token_out", "-out", &token]).0);
    let (signed_attrs, signature) = signer_info_parts(Path::new(&token));
    use der::DecodePem;
    let cert =
        x509_cert::Certificate::from_pem(std::fs::read(tsa.dir.join("data/tsa/tsa.pem")).unwrap())
            .unwrap();
    assert!(
        gmssl_verifies(&signed_attrs, &signature, &cert),
        "gmssl rejects the SM2 token signature"
    );
    let mut tampered = signed_attrs.clone();
    let n = tampered.len() - 1;
    tampered[n] ^= 1;
    assert!(!gmssl_verifies(&tampered, &signature, &cert));
    kexin_verify(&tsa, "sm2", &reply, true);
    tsa.stop();
}

/// A second RFC 3161 client library (Python rfc3161ng: pyasn1 and
/// cryptography, RSA keys only) requests, checks nonce and signature, and
/// refuses the token for other data.
fn rfc3161ng_accepts(tsa: &Tsa) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, rfc3161ng\n\
             cert = open(sys.argv[2], 'rb').read()\n\
             t = rfc3161ng.RemoteTimestamper(sys.argv[1], certificate=cert, hashname='sha256')\n\
             tst = t.timestamp(data=b'kexin rfc3161ng', nonce=987654321)\n\
             assert rfc3161ng.check_timestamp(tst, certificate=cert, data=b'kexin rfc3161ng', hashname='sha256')\n\
             try:\n    rfc3161ng.check_timestamp(tst, certificate=cert, data=b'other', hashname='sha256'); print('ACCEPTED OTHER')\n\
             except Exception: print('ok')",
            &format!("http://127.0.0.1:{}/tsa", tsa.http),
            &path_str(&tsa.dir.join("data/tsa/tsa.pem")),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "rfc3161ng (pip install rfc3161ng): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kexin verify` on a token; `valid` is what the verdict must be.
fn kexin_verify(tsa: &Tsa, name: &str, reply: &str, valid: bool) {
    let out = kexin(&tsa.dir)
        .args([
            "verify",
            reply,
            "--content",
            &tsa.file(&format!("{name}.txt")),
            "--data",
            "data",
            "--json",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let expected = if valid { "valid" } else { "invalid" };
    assert_eq!(report["verdict"], expected, "{report}");
    assert_eq!(out.status.success(), valid);
    if valid {
        assert_eq!(report["chain"].as_array().unwrap().len(), 3, "{report}");
    } else {
        assert!(
            report["reason"].as_str().unwrap().contains("imprint"),
            "{report}"
        );
    }
}

fn ed25519_token_checks(tsa: &Tsa, reply: &str) {
    use der::{DecodePem, Encode};
    let token = tsa.file("doc.tok");
    assert!(openssl(&["ts", "-reply", "-in", reply, "-token_out", "-out", &token]).0);
    let (signed_attrs, signature) = signer_info_parts(Path::new(&token));
    let cert =
        x509_cert::Certificate::from_pem(std::fs::read(tsa.dir.join("data/tsa/tsa.pem")).unwrap())
            .unwrap();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let alg = kexin_hsm::SignatureAlgorithm::Ed25519;
    assert!(kexin_test_support::openssl_verifies(
        dir.path(),
        &spki,
        alg,
        &signed_attrs,
        &signature
    ));
    assert!(!kexin_test_support::openssl_verifies(
        dir.path(),
        &spki,
        alg,
        &signed_attrs[1..],
        &signature
    ));
    let (_, text) = openssl(&["ts", "-reply", "-in", reply, "-text"]);
    let (_, digest) = openssl(&["dgst", "-sha256", "-r", &tsa.file("doc.txt")]);
    let hex = digest.split_whitespace().next().unwrap();
    let shown: String = text
        .lines()
        .skip_while(|l| !l.starts_with("Message data:"))
        .skip(1)
        .take(2)
        .map(|l| {
            l.split(" - ")
                .nth(1)
                .unwrap()
                .split("  ")
                .next()
                .unwrap()
                .replace(['-', ' '], "")
        })
        .collect();
    assert_eq!(shown, hex, "message imprint is the SHA-256 of the document");
}

/// The DER of the signed attributes (as signed: a SET) and the signature of
/// the one SignerInfo of a CMS SignedData token.
fn signer_info_parts(token: &Path) -> (Vec<u8>, Vec<u8>) {
    use der::{Decode, Encode};
    let ci = cms::content_info::ContentInfo::from_der(&std::fs::read(token).unwrap()).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    let si = sd.signer_infos.0.iter().next().unwrap();
    (
        si.signed_attrs.as_ref().unwrap().to_der().unwrap(),
        si.signature.as_bytes().to_vec(),
    )
}

/// asn1crypto, under pyHanko, misreads a long-form length ending in 0x80
/// as indefinite and then spends 1-2 s re-encoding the token (see
/// `timestamp/src/token.rs`). Over nonces of 1 to 64 bytes, with and
/// without the certificate, no token has such a length once embedded as
/// a signer embeds it, except with a signature shorter than the three
/// usual ECDSA lengths, which is not guarded.
#[test]
fn no_token_has_a_length_asn1crypto_misreads() {
    let tsa = Tsa::start(&[]);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validators/asn1crypto_token_lengths.py");
    let out = run_ok(
        Command::new("python3")
            .arg(script)
            .arg(format!("http://127.0.0.1:{}/tsa", tsa.http)),
    );
    let report: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.len(), 128);
    let misread: Vec<_> = report
        .iter()
        .filter(|t| t["misread"] == true && t["signature_bytes"].as_u64() >= Some(70))
        .collect();
    assert!(misread.is_empty(), "{misread:?}");
}
