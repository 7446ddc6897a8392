//! The registration workflow and the KMC through the API, with curl and
//! officers' PKCS#12 files; keys checked with the openssl CLI.

mod common;

use common::*;
use kexin_test_support::openssl;
use serde_json::{json, Value};

const P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn write(ca: &Ca, name: &str, bytes: &[u8]) -> String {
    let path = ca.file(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The public key (PEM SPKI) that `openssl <args>` prints.
fn public_key(args: &[&str]) -> String {
    let (ok, out) = openssl(args);
    assert!(ok, "{args:?}: {out}");
    out
}

fn pem_of(ca: &Ca, who: &str, serial: &str) -> String {
    let (code, v) = api(
        ca,
        Some(who),
        "GET",
        &format!("/api/v1/certificates/{serial}"),
        None,
    );
    assert_eq!(code, 200, "{v}");
    let pem = v["certificate_pem"].as_str().unwrap().to_owned();
    write(ca, &format!("{serial}.pem"), pem.as_bytes())
}

/// Opens a delivered PKCS#12 with its one-time secret and returns the
/// public key of the private key inside.
fn delivered_key(ca: &Ca, delivery: &Value, name: &str) -> String {
    use base64::Engine;
    let p12 = base64::engine::general_purpose::STANDARD
        .decode(delivery["pkcs12"].as_str().unwrap())
        .unwrap();
    let p12 = write(ca, name, &p12);
    let secret = delivery["one_time_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 20);
    let (ok, _) = openssl(&[
        "pkcs12",
        "-in",
        &p12,
        "-passin",
        "pass:wrong-secret",
        "-nodes",
        "-noout",
    ]);
    assert!(!ok, "a wrong secret opened the PKCS#12");
    let key = ca.file(&format!("{name}.key"));
    let (ok, out) = openssl(&[
        "pkcs12",
        "-in",
        &p12,
        "-passin",
        &format!("pass:{secret}"),
        "-nodes",
        "-nocerts",
        "-out",
        &key,
    ]);
    assert!(ok, "{out}");
    public_key(&["pkey", "-in", &key, "-pubout"])
}

#[test]
fn an_official_is_enrolled_with_an_escrowed_encryption_key_that_two_kmc_officers_recover() {
    let ca = Ca::init(&[]);
    let alice = ca.officer("alice", "ra-officer");
    let bob = ca.officer("bob", "ra-officer");
    let rita = ca.officer("rita", "ra-admin");
    let kim = ca.officer("kim", "kmc-officer");
    let ken = ca.officer("ken", "kmc-officer");
    let server = ca.serve();

    let csr_path = ca.csr("zhang", &P256, "/CN=whatever the applicant typed", None);
    let csr = std::fs::read_to_string(&csr_path).unwrap();
    let id_number = "11010519491231002X";
    let submission = |id: &str| {
        json!({
            "kind": "enroll-official",
            "subject": [["C", "CN"], ["O", "某省人民政府"], ["OU", "财政厅"], ["CN", "张三"]],
            "names": ["zhang.san@gov.example"],
            "csr": csr,
            "evidence": {"document": "resident-id", "id_number": id, "note": "居民身份证 checked at the counter"},
        })
        .to_string()
    };

    let (code, _) = api(
        &ca,
        None,
        "POST",
        "/api/v1/requests",
        Some(&submission(id_number)),
    );
    assert_eq!(code, 401, "no certificate must get nothing");
    let (code, v) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/requests",
        Some(&submission("110105194912310021")),
    );
    assert_eq!(code, 400, "a resident ID with a wrong check digit: {v}");
    let (code, v) = api(
        &ca,
        Some(&kim),
        "POST",
        "/api/v1/requests",
        Some(&submission(id_number)),
    );
    assert_eq!(code, 403, "a KMC officer does not enroll officials: {v}");

    let (code, v) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/requests",
        Some(&submission(id_number)),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["status"], "submitted");
    assert_eq!(v["evidence"]["id_number_masked"], "110*************2X");
    assert!(
        !v.to_string().contains(id_number),
        "the full ID number was shown: {v}"
    );

    let approve = |who: &str, id: i64| {
        api(
            &ca,
            Some(who),
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            None,
        )
    };
    let (code, v) = approve(&alice, id);
    assert_eq!(code, 403, "the submitter approved her own request: {v}");
    let (code, v) = approve(&kim, id);
    assert_eq!(code, 403, "a KMC officer approved an enrollment: {v}");
    let (code, v) = approve(&bob, id);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["request"]["status"], "issued", "{v}");
    let serials = v["request"]["outcome"]["certificates"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(serials.len(), 2);
    let (sign_serial, enc_serial) = (serials[0].as_str().unwrap(), serials[1].as_str().unwrap());
    let delivery = v["delivery"].clone();
    assert_eq!(delivery["certificate_serial"], enc_serial);
    let (code, v) = approve(&rita, id);
    assert_eq!(code, 409, "an issued request took another approval: {v}");

    // The signing certificate carries the applicant's key and the officer's subject.
    let sign_pem = pem_of(&ca, &bob, sign_serial);
    assert_eq!(
        public_key(&["x509", "-in", &sign_pem, "-noout", "-pubkey"]),
        public_key(&["req", "-in", &csr_path, "-noout", "-pubkey"])
    );
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        &sign_pem,
        "-noout",
        "-subject",
        "-nameopt",
        "utf8,sep_comma_plus",
        "-ext",
        "keyUsage,subjectAltName",
    ]);
    assert!(
        ok && text.contains("CN=张三")
            && text.contains("zhang.san@gov.example")
            && text.contains("Digital Signature"),
        "{text}"
    );
    // The encryption certificate is for a key the KMC made and delivered.
    let enc_pem = pem_of(&ca, &bob, enc_serial);
    let (ok, text) = openssl(&[
        "x509", "-in", &enc_pem, "-noout", "-ext", "keyUsage", "-subject", "-nameopt", "utf8",
    ]);
    assert!(
        ok && text.contains("Key Agreement") && text.contains("张三"),
        "{text}"
    );
    let enc_public = public_key(&["x509", "-in", &enc_pem, "-noout", "-pubkey"]);
    assert_eq!(delivered_key(&ca, &delivery, "delivered.p12"), enc_public);
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &ca.ca_pem("root"),
        "-untrusted",
        &ca.ca_pem("officials"),
        &enc_pem,
    ]);
    assert!(ok, "{out}");

    // Only an ra-admin sees the full ID number.
    let reveal = format!("/api/v1/requests/{id}/id-number");
    let (code, _) = api(&ca, Some(&bob), "GET", &reveal, None);
    assert_eq!(code, 403);
    let (code, v) = api(&ca, Some(&rita), "GET", &reveal, None);
    assert_eq!((code, v["id_number"].as_str()), (200, Some(id_number)));

    // Key recovery: two distinct KMC officers, neither of them the submitter.
    let recovery = json!({"kind": "key-recovery", "target": enc_serial, "reason": "official transferred; archived mail must be read"}).to_string();
    let (code, v) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/requests",
        Some(&recovery),
    );
    assert_eq!(code, 201, "{v}");
    let rid = v["id"].as_i64().unwrap();
    assert_eq!(v["approvals_required"], 2);
    let (code, v) = approve(&bob, rid);
    assert_eq!(code, 403, "an RA officer approved a key recovery: {v}");
    let (code, v) = approve(&kim, rid);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["request"]["status"], "submitted",
        "one approval recovered a key: {v}"
    );
    assert!(v["delivery"].is_null());
    let (code, v) = approve(&kim, rid);
    assert_eq!(code, 409, "one officer approved twice: {v}");
    let (code, v) = approve(&ken, rid);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["request"]["status"], "issued");
    let recovered = v["delivery"].clone();
    assert_ne!(recovered["one_time_secret"], delivery["one_time_secret"]);
    assert_eq!(delivered_key(&ca, &recovered, "recovered.p12"), enc_public);

    // A signing certificate has no escrowed key to recover.
    let bad = json!({"kind": "key-recovery", "target": sign_serial}).to_string();
    let (code, _) = api(&ca, Some(&kim), "POST", "/api/v1/requests", Some(&bad));
    assert_eq!(code, 404);

    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
    ca.assert_audit_intact();
}

#[test]
fn seal_certificates_take_two_officers_to_issue_and_to_revoke_on_sqlite() {
    seal_certificates_take_two_officers_to_issue_and_to_revoke(Ca::init(&[]));
}

#[test]
fn seal_certificates_take_two_officers_to_issue_and_to_revoke_on_postgres() {
    let url = fresh_postgres_url();
    seal_certificates_take_two_officers_to_issue_and_to_revoke(Ca::init(&["--db", &url]));
}

fn seal_certificates_take_two_officers_to_issue_and_to_revoke(ca: Ca) {
    let alice = ca.officer("alice", "ra-officer");
    let bob = ca.officer("bob", "ra-officer");
    let carol = ca.officer("carol", "ra-officer");
    let sam = ca.officer("sam", "seal-admin");
    let server = ca.serve();
    let csr = std::fs::read_to_string(ca.csr("seal", &P256, "/CN=x", None)).unwrap();

    let direct = json!({"profile": "seal", "csr": csr}).to_string();
    let (code, v) = api(
        &ca,
        Some(&alice),
        "POST",
        "/api/v1/certificates",
        Some(&direct),
    );
    assert_eq!(
        code, 403,
        "a seal certificate was issued by one officer: {v}"
    );

    let submission = json!({
        "kind": "seal-certificate",
        "subject": [["O", "某某局"], ["organizationIdentifier", "91350100M000100Y43"], ["CN", "某某局公章"]],
        "csr": csr,
        "evidence": {"document": "business-license", "note": "营业执照 original seen"},
    })
    .to_string();
    let (code, v) = api(
        &ca,
        Some(&sam),
        "POST",
        "/api/v1/requests",
        Some(&submission),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["approvals_required"], 2);
    let approve = |who: &str, id: i64| {
        api(
            &ca,
            Some(who),
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            None,
        )
    };
    let (code, v) = approve(&bob, id);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("submitted")),
        "{v}"
    );
    let (code, _) = approve(&bob, id);
    assert_eq!(code, 409, "bob approved twice");
    let (code, _) = approve(&sam, id);
    assert_eq!(code, 403, "the seal admin decided on an RA request");
    let (code, v) = approve(&carol, id);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("issued")),
        "{v}"
    );
    let serial = v["request"]["outcome"]["certificates"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = pem_of(&ca, &alice, &serial);

    let (code, v) = api(
        &ca,
        Some(&alice),
        "POST",
        &format!("/api/v1/certificates/{serial}/revoke"),
        Some(r#"{"reason":"keyCompromise"}"#),
    );
    assert_eq!(code, 403, "one officer revoked a seal: {v}");
    let revoke = json!({"kind": "revoke", "target": serial, "reason": "keyCompromise"}).to_string();
    let (code, v) = api(&ca, Some(&alice), "POST", "/api/v1/requests", Some(&revoke));
    assert_eq!(code, 201, "{v}");
    let rid = v["id"].as_i64().unwrap();
    let ocsp_status = || {
        let (_, out) = openssl(&[
            "ocsp",
            "-issuer",
            &ca.ca_pem("seals"),
            "-cert",
            &pem,
            "-url",
            &format!("http://127.0.0.1:{}/ocsp", ca.http),
            "-CAfile",
            &ca.ca_pem("root"),
        ]);
        out
    };
    let (code, _) = approve(&bob, rid);
    assert_eq!(code, 200);
    assert!(
        ocsp_status().contains(": good"),
        "revoked after one approval"
    );
    let (code, v) = approve(&carol, rid);
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("issued")),
        "{v}"
    );
    let out = ocsp_status();
    assert!(
        out.contains(": revoked") && out.contains("Reason: keyCompromise"),
        "{out}"
    );

    // One rejection ends a request; nobody can approve it afterwards.
    let (code, v) = api(
        &ca,
        Some(&sam),
        "POST",
        "/api/v1/requests",
        Some(&submission),
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (code, v) = api(
        &ca,
        Some(&bob),
        "POST",
        &format!("/api/v1/requests/{id}/reject"),
        None,
    );
    assert_eq!(
        (code, v["request"]["status"].as_str()),
        (200, Some("rejected")),
        "{v}"
    );
    let (code, _) = approve(&carol, id);
    assert_eq!(code, 409);
    let (code, v) = api(
        &ca,
        Some(&carol),
        "GET",
        "/api/v1/requests?status=rejected",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);

    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}

#[test]
fn renewals_keep_the_key_rekeys_change_it_and_racing_approvals_issue_once() {
    let ca = Ca::init(&[]);
    let alice = ca.officer("alice", "ra-officer");
    let bob = ca.officer("bob", "ra-officer");
    let carol = ca.officer("carol", "ra-officer");
    let dave = ca.officer("dave", "ra-admin");
    let server = ca.serve();
    let csr_path = ca.csr("www", &P256, "/CN=x", None);
    let csr = std::fs::read_to_string(&csr_path).unwrap();
    let submit = |body: Value| {
        let (code, v) = api(
            &ca,
            Some(&alice),
            "POST",
            "/api/v1/requests",
            Some(&body.to_string()),
        );
        (code, v)
    };
    let approve = |who: &str, id: &Value| {
        api(
            &ca,
            Some(who),
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            None,
        )
    };
    let (code, v) = submit(json!({
        "kind": "enroll-system", "subject": [["O", "某省大数据局"], ["CN", "www.example.gov.cn"]],
        "names": ["www.example.gov.cn"], "csr": csr,
    }));
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["profile"], "tls-server");
    let (_, v) = approve(&bob, &v["id"]);
    let old = v["request"]["outcome"]["certificates"][0]
        .as_str()
        .unwrap()
        .to_owned();

    // Renew: same key, same subject and names, new certificate.
    let (code, v) = submit(json!({"kind": "rekey", "target": old, "csr": csr}));
    assert_eq!(code, 400, "a rekey with the old key: {v}");
    let (code, v) = submit(json!({"kind": "renew", "target": old, "csr": csr}));
    assert_eq!(code, 201, "{v}");
    let (_, v) = approve(&bob, &v["id"]);
    let renewed = v["request"]["outcome"]["certificates"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(renewed, old);
    let renewed_pem = pem_of(&ca, &bob, &renewed);
    assert_eq!(
        public_key(&["x509", "-in", &renewed_pem, "-noout", "-pubkey"]),
        public_key(&["req", "-in", &csr_path, "-noout", "-pubkey"])
    );
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        &renewed_pem,
        "-noout",
        "-ext",
        "subjectAltName",
        "-subject",
    ]);
    assert!(
        ok && text.contains("DNS:www.example.gov.cn") && text.contains("www.example.gov.cn"),
        "{text}"
    );

    // Rekey: a new key is required.
    let new_csr = std::fs::read_to_string(ca.csr("www2", &P256, "/CN=x", None)).unwrap();
    let (code, v) = submit(json!({"kind": "renew", "target": renewed, "csr": new_csr}));
    assert_eq!(code, 400, "a renewal with a new key: {v}");
    let (code, v) = submit(json!({"kind": "rekey", "target": renewed, "csr": new_csr}));
    assert_eq!(code, 201, "{v}");

    // A two-approval request whose last two approvals arrive at once is
    // carried out once.
    let seal_csr = std::fs::read_to_string(ca.csr("seal", &P256, "/CN=x", None)).unwrap();
    let (code, v) = submit(json!({
        "kind": "seal-certificate",
        "subject": [["O", "某某局"], ["organizationIdentifier", "91350100M000100Y43"], ["CN", "某某局合同章"]],
        "csr": seal_csr,
    }));
    assert_eq!(code, 201, "{v}");
    let id = v["id"].clone();
    let (code, _) = approve(&bob, &id);
    assert_eq!(code, 200);
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = [&carol, &dave]
            .into_iter()
            .map(|who| {
                let id = id.clone();
                s.spawn(move || approve(who, &id))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (code, v) = api(
        &ca,
        Some(&bob),
        "GET",
        &format!("/api/v1/requests/{id}"),
        None,
    );
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("issued")),
        "{v} {results:?}"
    );
    let (_, found) = api(
        &ca,
        Some(&bob),
        "GET",
        "/api/v1/certificates?subject=%E5%90%88%E5%90%8C%E7%AB%A0",
        None,
    );
    assert_eq!(
        found["items"].as_array().unwrap().len(),
        1,
        "issued twice: {found} {results:?}"
    );

    let (status, output) = server.stop();
    assert!(status.success() && !output.contains("panicked"), "{output}");
}
