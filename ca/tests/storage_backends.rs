//! The storage, audit and issuance suite, run once on SQLite and once on
//! PostgreSQL (a fresh database on 127.0.0.1:5432 per test).

use std::sync::Arc;
use std::time::Duration;

use der::asn1::Ia5String;
use der::Encode;
use kexin_ca::audit::{AuditEvent, AuditLog, ChainStatus, CheckpointKey};
use kexin_ca::certificate::certificate_pem;
use kexin_ca::hierarchy::{create_default_hierarchy, renew_authority, HierarchySettings};
use kexin_ca::issuance::{Issuer, Requester, Signer};
use kexin_ca::profile::{Profiles, RepositoryUrls, SubjectRequest};
use kexin_ca::storage::{Database, PendingCertificate, SignedCertificate};
use kexin_ca::Error;
use kexin_hsm::{KdfParams, KeyAlgorithm, KeyStore, SoftKeyStore};
use kexin_test_support::{on_both_backends, openssl, BackendFixture};
use x509_cert::ext::pkix::name::GeneralName;

on_both_backends!(
    serials_are_recorded_before_signing_and_never_reused,
    audit_chain_detects_tampering,
    concurrent_audit_appends_keep_the_chain,
    concurrent_issuances_are_all_recorded_and_audited,
    signed_checkpoints_catch_a_rewritten_or_truncated_chain,
    default_hierarchy_verifies_with_openssl,
    nodes_share_one_sealed_secret,
    a_row_claimed_twice_fails_the_second_audit_entry,
    certificates_about_to_expire_are_searched_soonest_first,
    one_node_at_a_time_renews_a_service_certificate,
    a_ca_certificate_is_replaced_only_if_it_is_still_the_one_renewed,
    a_token_key_is_scheduled_once_and_rescheduled,
);

fn pending(serial: &str, tbs: &[u8]) -> PendingCertificate {
    PendingCertificate {
        serial: serial.to_owned(),
        issuer: "systems".into(),
        profile: "tls-server".into(),
        subject: "CN=example".into(),
        not_before: 1,
        not_after: 2,
        tbs: tbs.to_vec(),
        requested_at: 1,
    }
}

fn signed(serial: &str, der: &[u8]) -> SignedCertificate {
    SignedCertificate::new(serial, der, 5, issued(serial))
}

async fn serials_are_recorded_before_signing_and_never_reused(f: BackendFixture) {
    let db = f.db;
    let journal = db.issuance_journal();
    let mut round = journal.open().await.unwrap();
    round
        .record_pending(vec![pending("0a01", b"tbs")])
        .await
        .unwrap();
    // Committed, though not yet flushed: another connection sees it.
    assert_eq!(
        db.pending_serials(i64::MAX).await.unwrap(),
        vec!["0a01".to_owned()]
    );
    assert!(matches!(
        round
            .record_pending(vec![pending("0a03", b"tbs"), pending("0a01", b"other")])
            .await,
        Err(Error::DuplicateSerial(_))
    ));
    round.discard();
    assert!(
        db.certificate("0a03").await.unwrap().is_none(),
        "a round's pending records are written all or none"
    );
    let mut round = journal.open().await.unwrap();
    round
        .record_outcomes(vec![signed("0a01", b"der")], vec![])
        .await
        .unwrap();
    let rec = db.certificate("0a01").await.unwrap().unwrap();
    assert_eq!(rec.status, "issued");
    assert_eq!(rec.der.as_deref(), Some(&b"der"[..]));
    // Completing twice, or completing what was never pending, is refused.
    assert!(round
        .record_outcomes(vec![signed("0a01", b"again")], vec![])
        .await
        .is_err());
    round.discard();
    let mut round = journal.open().await.unwrap();
    assert!(round
        .record_outcomes(vec![signed("ffff", b"der")], vec![])
        .await
        .is_err());
    round.discard();
    assert_eq!(
        db.certificate("0a01")
            .await
            .unwrap()
            .unwrap()
            .der
            .as_deref(),
        Some(&b"der"[..])
    );
    // Only the completion that happened is in the audit trail.
    let audit = AuditLog::new(db.clone());
    let trail = audit.entries(0, 10).await.unwrap();
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(
        (trail[0].action.as_str(), trail[0].target.as_str()),
        ("certificate.issue", "0a01")
    );
    // A failed signature burns the serial for good.
    let mut round = journal.open().await.unwrap();
    round
        .record_pending(vec![pending("0a02", b"tbs")])
        .await
        .unwrap();
    round
        .record_outcomes(vec![], vec!["0a02".into()])
        .await
        .unwrap();
    assert_eq!(
        db.certificate("0a02").await.unwrap().unwrap().status,
        "failed"
    );
    assert!(round
        .record_pending(vec![pending("0a02", b"tbs")])
        .await
        .is_err());
    assert!(db.pending_serials(i64::MAX).await.unwrap().is_empty());
}

async fn certificates_about_to_expire_are_searched_soonest_first(f: BackendFixture) {
    let journal = f.db.issuance_journal();
    let mut round = journal.open().await.unwrap();
    // Serials and when they expire, in another order; "0b00" has expired.
    let expiring = [
        ("0b00", 900),
        ("0b10", 1030),
        ("0b30", 1010),
        ("0b99", 1099),
    ];
    let records = expiring
        .iter()
        .map(|&(serial, not_after)| PendingCertificate {
            not_after,
            ..pending(serial, b"tbs")
        })
        .collect();
    round.record_pending(records).await.unwrap();
    round
        .record_outcomes(
            expiring.iter().map(|(s, _)| signed(s, b"der")).collect(),
            vec![],
        )
        .await
        .unwrap();
    let db = &f.db;
    let found = |expiring| async move {
        let q = kexin_ca::storage::CertificateQuery {
            expiring,
            limit: 10,
            ..Default::default()
        };
        let records = db.search(&q).await.unwrap();
        records.into_iter().map(|r| r.serial).collect::<Vec<_>>()
    };
    assert_eq!(found(Some((1000, 1050))).await, ["0b30", "0b10"]);
    assert_eq!(found(Some((1000, 1099))).await, ["0b30", "0b10", "0b99"]);
    assert_eq!(found(None).await.len(), 4);
}

async fn one_node_at_a_time_renews_a_service_certificate(f: BackendFixture) {
    let db = &f.db;
    assert!(db.claim_renewal("tsa", 1000, 1300).await.unwrap());
    assert!(!db.claim_renewal("tsa", 1000, 1300).await.unwrap(), "held");
    assert!(!db.claim_renewal("tsa", 1299, 1599).await.unwrap(), "held");
    assert!(
        db.claim_renewal("ocsp-responder:officials", 1000, 1300)
            .await
            .unwrap(),
        "another certificate"
    );
    assert!(db.claim_renewal("tsa", 1300, 1600).await.unwrap(), "lapsed");
    // Sixteen nodes at once: one claim.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.claim_renewal("https", 2000, 2300).await.unwrap() })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        taken += usize::from(t.await.unwrap());
    }
    assert_eq!(taken, 1);
}

async fn a_token_key_is_scheduled_once_and_rescheduled(f: BackendFixture) {
    let db = &f.db;
    assert!(db.token_key_schedule().await.unwrap().is_empty());
    db.schedule_token_key("kx-oidc-es256-g2", 1420)
        .await
        .unwrap();
    db.schedule_token_key("kx-oidc-es256-g3", 1900)
        .await
        .unwrap();
    db.schedule_token_key("kx-oidc-es256-g2", 1500)
        .await
        .unwrap();
    assert_eq!(
        db.token_key_schedule().await.unwrap(),
        [
            ("kx-oidc-es256-g2".to_owned(), 1500),
            ("kx-oidc-es256-g3".to_owned(), 1900)
        ]
    );
}

fn issued(serial: &str) -> AuditEvent<'_> {
    AuditEvent {
        actor: "officer:alice",
        action: "certificate.issue",
        target: serial,
        source: "127.0.0.1",
        detail: serde_json::json!({}),
    }
}

/// Many issuances at once, signed by a CA key and each recorded, completed
/// and audited in shared rounds, beside ordinary audit appends.
async fn concurrent_issuances_are_all_recorded_and_audited(f: BackendFixture) {
    let keys = tempfile::tempdir().unwrap();
    let store = soft_store(keys.path());
    let audit = AuditLog::new(f.db.clone());
    let h = create_default_hierarchy(&f.db, store.clone(), &audit, &settings(), requester())
        .await
        .unwrap();
    let before = issue_entries(&audit).await;
    let systems = Arc::new(
        h.issuing
            .into_iter()
            .find(|ca| ca.name == "systems")
            .unwrap(),
    );
    let profile = Arc::new(
        Profiles::load(None)
            .unwrap()
            .get("tls-server")
            .unwrap()
            .clone(),
    );
    let issuer = Issuer::new(f.db.clone(), store.clone());
    let leaf_key = h.tls_chain[0]
        .tbs_certificate
        .subject_public_key_info
        .clone();
    let mut tasks = Vec::new();
    for n in 0..40u32 {
        let (issuer, audit, systems, profile, key) = (
            issuer.clone(),
            audit.clone(),
            systems.clone(),
            profile.clone(),
            leaf_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let request = SubjectRequest {
                subject: vec![(
                    const_oid::db::rfc4519::CN,
                    format!("host{n}.example.gov.cn"),
                )],
                names: vec![GeneralName::DnsName(
                    Ia5String::new(&format!("host{n}.example.gov.cn")).unwrap(),
                )],
                public_key: key,
                key_algorithm: KeyAlgorithm::EcdsaP384,
            };
            let urls = RepositoryUrls {
                base: "http://pki.example.gov.cn".into(),
            };
            let template = profile
                .template(&request, &systems, &urls, std::time::SystemTime::now())
                .unwrap();
            let cert = issuer
                .issue(
                    Signer::Authority(&systems),
                    "tls-server",
                    &template,
                    requester(),
                )
                .await?;
            audit.append(event(n as usize)).await?;
            Ok::<_, Error>(cert)
        }));
    }
    let mut serials = Vec::new();
    for t in tasks {
        let cert = t.await.unwrap().unwrap();
        serials.push(hex::encode(cert.tbs_certificate.serial_number.as_bytes()));
        let rec =
            f.db.certificate(serials.last().unwrap())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(rec.status, "issued");
        assert_eq!(rec.der.unwrap(), cert.to_der().unwrap());
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 40);
    assert!(f.db.pending_serials(i64::MAX).await.unwrap().is_empty());
    assert!(matches!(
        audit.verify().await.unwrap(),
        ChainStatus::Intact { .. }
    ));
    assert_eq!(issue_entries(&audit).await, before + 40);
}

async fn issue_entries(audit: &AuditLog) -> usize {
    audit
        .entries(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "certificate.issue")
        .count()
}

fn requester() -> Requester<'static> {
    Requester {
        actor: "test",
        source: "test",
    }
}

fn event(n: usize) -> AuditEvent<'static> {
    AuditEvent {
        actor: "officer:alice",
        action: "certificate.revoke",
        target: "0a01",
        source: "127.0.0.1",
        detail: serde_json::json!({ "n": n }),
    }
}

async fn audit_chain_detects_tampering(f: BackendFixture) {
    let audit = AuditLog::new(f.db.clone());
    for n in 0..5 {
        audit.append(event(n)).await.unwrap();
    }
    let ChainStatus::Intact { entries, head, .. } = audit.verify().await.unwrap() else {
        panic!("fresh chain reported broken");
    };
    assert_eq!(entries, 5);
    assert_eq!(audit.head().await.unwrap().unwrap(), (5, head));

    sqlx::query("UPDATE audit_log SET actor = 'officer:mallory' WHERE seq = 3")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit.verify().await.unwrap(),
        ChainStatus::Broken { seq: 3, .. }
    ));
    sqlx::query("UPDATE audit_log SET actor = 'officer:alice' WHERE seq = 3")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit.verify().await.unwrap(),
        ChainStatus::Intact { .. }
    ));
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit.verify().await.unwrap(),
        ChainStatus::Broken { seq: 2, .. }
    ));
}

fn soft_store(dir: &std::path::Path) -> Arc<dyn KeyStore> {
    Arc::new(
        SoftKeyStore::create(
            dir,
            b"test passphrase 123",
            KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
        )
        .unwrap(),
    )
}

async fn signed_checkpoints_catch_a_rewritten_or_truncated_chain(f: BackendFixture) {
    let keys = tempfile::tempdir().unwrap();
    let store = soft_store(keys.path());
    store.generate("audit", KeyAlgorithm::Sm2).unwrap();
    let key = CheckpointKey {
        label: "audit".into(),
        signature: kexin_hsm::SignatureAlgorithm::Sm2Sm3,
    };
    let audit = AuditLog::new(f.db.clone());
    for n in 0..3 {
        audit.append(event(n)).await.unwrap();
    }
    assert_eq!(audit.checkpoint(&store, &key).await.unwrap(), Some(3));
    assert_eq!(
        audit.checkpoint(&store, &key).await.unwrap(),
        None,
        "head already signed"
    );
    for n in 3..5 {
        audit.append(event(n)).await.unwrap();
    }
    assert_eq!(audit.checkpoint(&store, &key).await.unwrap(), Some(5));
    assert!(matches!(
        audit.verify_with_checkpoints(store.as_ref()).await.unwrap(),
        ChainStatus::Intact {
            entries: 5,
            checkpoints: 2,
            ..
        }
    ));

    // Truncation leaves a consistent chain, but not the signed head.
    sqlx::query("DELETE FROM audit_log WHERE seq > 4")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        audit.verify().await.unwrap(),
        ChainStatus::Intact { entries: 4, .. }
    ));
    assert!(matches!(
        audit.verify_with_checkpoints(store.as_ref()).await.unwrap(),
        ChainStatus::Broken { seq: 5, .. }
    ));

    // Someone who rewrites history and recomputes every hash still cannot
    // forge the checkpoint signatures.
    sqlx::query("DELETE FROM audit_log")
        .execute(f.db.pool())
        .await
        .unwrap();
    for n in 10..15 {
        audit.append(event(n)).await.unwrap();
    }
    assert!(matches!(
        audit.verify().await.unwrap(),
        ChainStatus::Intact { entries: 5, .. }
    ));
    assert!(matches!(
        audit.verify_with_checkpoints(store.as_ref()).await.unwrap(),
        ChainStatus::Broken { seq: 3, .. }
    ));
    sqlx::query("UPDATE audit_checkpoints SET hash = 'forged'")
        .execute(f.db.pool())
        .await
        .unwrap();
    let status = audit.verify_with_checkpoints(store.as_ref()).await.unwrap();
    assert!(
        matches!(&status, ChainStatus::Broken { reason, .. } if reason.contains("signature")),
        "{status:?}"
    );
}

async fn nodes_share_one_sealed_secret(f: BackendFixture) {
    let dir = tempfile::tempdir().unwrap();
    let store = soft_store(dir.path());
    // Four nodes starting at once on one database and key store.
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let (db, store) = (f.db.clone(), store.clone());
            tokio::spawn(async move {
                kexin_ca::secrets::shared_secret(&db, store.as_ref(), "mac", "t-secrets").await
            })
        })
        .collect();
    let mut secrets = Vec::new();
    for node in nodes {
        secrets.push(node.await.unwrap().unwrap().to_vec());
    }
    assert_eq!(secrets[0].len(), 32);
    assert!(
        secrets.iter().all(|s| *s == secrets[0]),
        "one secret for all"
    );
    let later = kexin_ca::secrets::shared_secret(&f.db, store.as_ref(), "mac", "t-secrets")
        .await
        .unwrap();
    assert_eq!(*later, secrets[0]);
    let other = kexin_ca::secrets::shared_secret(&f.db, store.as_ref(), "other", "t-secrets")
        .await
        .unwrap();
    assert_ne!(*other, secrets[0]);
    // Stored sealed: the row does not hold the secret.
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM service_secrets WHERE name = 'mac'")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert!(!sealed.windows(32).any(|w| w == secrets[0].as_slice()));
    // Another key store cannot open it.
    let foreign = tempfile::tempdir().unwrap();
    assert!(kexin_ca::secrets::shared_secret(
        &f.db,
        soft_store(foreign.path()).as_ref(),
        "mac",
        "t-secrets"
    )
    .await
    .is_err());
}

async fn a_row_claimed_twice_fails_the_second_audit_entry(f: BackendFixture) {
    use kexin_ca::storage::rows::{NewRow, SqlValue};
    let log = AuditLog::new(f.db.clone());
    let claim = || NewRow {
        insert: "INSERT INTO oidc_spent_challenges (challenge_key)",
        values: vec![SqlValue::Text("0190000000000abc".into())],
    };
    log.append_unflushed_with(event(1), vec![claim()])
        .await
        .unwrap();
    // Twice at once, and once more: the row is taken each time.
    let (a, b) = tokio::join!(
        log.append_unflushed_with(event(2), vec![claim()]),
        log.append_unflushed_with(event(3), vec![claim()]),
    );
    for outcome in [a, b] {
        assert!(matches!(outcome, Err(Error::Conflict(_))), "{outcome:?}");
    }
    assert!(matches!(
        log.verify().await.unwrap(),
        ChainStatus::Intact { entries: 1, .. }
    ));
}

async fn concurrent_audit_appends_keep_the_chain(f: BackendFixture) {
    // Two logs on one database stand for two processes appending at once.
    let a = AuditLog::new(f.db.clone());
    let b = AuditLog::new(f.db.clone());
    let mut tasks = Vec::new();
    for n in 0..20 {
        let log = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            log.append(event(n)).await.map(|e| e.seq)
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    assert!(matches!(
        a.verify().await.unwrap(),
        ChainStatus::Intact { entries: 20, .. }
    ));
}

async fn default_hierarchy_verifies_with_openssl(f: BackendFixture) {
    let keys = tempfile::tempdir().unwrap();
    let store: Arc<dyn KeyStore> = Arc::new(
        SoftKeyStore::create(
            keys.path(),
            b"test passphrase 123",
            KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
        )
        .unwrap(),
    );
    let audit = AuditLog::new(f.db.clone());
    let settings = settings();
    let h = create_default_hierarchy(&f.db, store, &audit, &settings, requester())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, certs: &[&x509_cert::Certificate]| {
        let path = dir.path().join(name);
        let pem: String = certs
            .iter()
            .map(|c| certificate_pem(&c.to_der().unwrap()))
            .collect();
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let root = write("root.pem", &[&h.root.certificate]);
    for ca in &h.issuing {
        let path = write(&format!("{}.pem", ca.name), &[&ca.certificate]);
        let (ok, out) = openssl(&[
            "verify",
            "-x509_strict",
            "-check_ss_sig",
            "-CAfile",
            &root,
            &path,
        ]);
        assert!(ok, "{}: {out}", ca.name);
    }
    let systems = write("systems-only.pem", &[&h.tls_chain[1]]);
    let leaf = write("leaf.pem", &[&h.tls_chain[0]]);
    let (ok, out) = openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        &root,
        "-untrusted",
        &systems,
        "-verify_hostname",
        "trust.example.gov.cn",
        &leaf,
    ]);
    assert!(ok, "{out}");
    // The name constraint on `systems` is enforced by an independent verifier.
    let (ok, _) = openssl(&["x509", "-in", &systems, "-noout", "-ext", "nameConstraints"]);
    assert!(ok);
    let (_, text) = openssl(&["x509", "-in", &systems, "-noout", "-text"]);
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    assert!(
        text.contains("Permitted:") && text.contains("DNS:example.gov.cn"),
        "{text}"
    );

    // Everything was recorded and audited.
    assert_eq!(f.db.authorities().await.unwrap().len(), 4);
    assert!(f.db.pending_serials(i64::MAX).await.unwrap().is_empty());
    let ChainStatus::Intact { entries, .. } = audit.verify().await.unwrap() else {
        panic!("audit chain broken");
    };
    assert_eq!(entries, 4 + 5, "4 CA creations and 5 certificate issuances");
}

/// `kexin ca renew` on each backend: the renewal keeps the name, key and
/// extensions, chains what the CA issued before, and of two renewals of
/// one certificate only the first is stored.
async fn a_ca_certificate_is_replaced_only_if_it_is_still_the_one_renewed(f: BackendFixture) {
    let keys = tempfile::tempdir().unwrap();
    let store = soft_store(keys.path());
    let audit = AuditLog::new(f.db.clone());
    let h = create_default_hierarchy(&f.db, store.clone(), &audit, &settings(), requester())
        .await
        .unwrap();
    let issuer = Issuer::new(f.db.clone(), store.clone());
    let eleven_years = Some(Duration::from_secs(11 * 365 * 86400));
    let renewed = renew_authority(
        &f.db,
        &issuer,
        &store,
        &audit,
        "systems",
        eleven_years,
        requester(),
    )
    .await
    .unwrap();
    let (old, new) = (
        &renewed.previous.tbs_certificate,
        &renewed.authority.certificate.tbs_certificate,
    );
    assert_eq!(old.subject, new.subject);
    assert_eq!(old.subject_public_key_info, new.subject_public_key_info);
    assert_eq!(old.extensions, new.extensions);
    assert!(new.validity.not_after.to_unix_duration() > old.validity.not_after.to_unix_duration());
    let stored =
        f.db.authority("systems")
            .await
            .unwrap()
            .unwrap()
            .certificate;
    assert_eq!(stored, renewed.authority.certificate.to_der().unwrap());

    // The HTTPS certificate systems issued at init chains to the renewal.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, cert: &x509_cert::Certificate| {
        let path = dir.path().join(name);
        std::fs::write(&path, certificate_pem(&cert.to_der().unwrap())).unwrap();
        path.display().to_string()
    };
    let root = write("root.pem", &h.root.certificate);
    let systems = write("systems.pem", &renewed.authority.certificate);
    let leaf = write("leaf.pem", &h.tls_chain[0]);
    let (ok, out) = openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        &root,
        "-untrusted",
        &systems,
        &leaf,
    ]);
    assert!(ok, "{out}");

    // A renewal that would end sooner than the present certificate:
    // refused, nothing stored.
    let before = f.db.authority("officials").await.unwrap().unwrap();
    let one_day = Some(Duration::from_secs(86400));
    let refused = renew_authority(
        &f.db,
        &issuer,
        &store,
        &audit,
        "officials",
        one_day,
        requester(),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::InvalidRequest(_))),
        "{refused:?}"
    );
    let after = f.db.authority("officials").await.unwrap().unwrap();
    assert_eq!(after.certificate, before.certificate);

    // A second renewal made from the certificate the first replaced is
    // not stored.
    let previous = renewed.previous.to_der().unwrap();
    assert!(!f
        .db
        .replace_authority_certificate("systems", &previous, b"overtaken")
        .await
        .unwrap());
    assert_eq!(
        f.db.authority("systems")
            .await
            .unwrap()
            .unwrap()
            .certificate,
        stored
    );
    let ChainStatus::Intact { .. } = audit.verify().await.unwrap() else {
        panic!("audit chain broken");
    };
}

fn settings() -> HierarchySettings {
    HierarchySettings {
        key_algorithm: KeyAlgorithm::EcdsaP384,
        country: "CN".into(),
        organization: "浙江省数据局".into(),
        public_url: "http://pki.example.gov.cn".into(),
        root_validity: Duration::from_secs(20 * 365 * 86400),
        issuing_validity: Duration::from_secs(10 * 365 * 86400),
        tls_names: vec!["trust.example.gov.cn".into(), "10.0.0.1".into()],
        systems_permitted_dns: vec!["example.gov.cn".into()],
        key_prefix: "t".into(),
    }
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    use sqlx::Row;
    let f = BackendFixture::sqlite().await;
    let row = sqlx::query("PRAGMA journal_mode")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(row.try_get::<String, _>(0).unwrap(), "wal");
}

#[tokio::test]
async fn unknown_database_scheme_is_a_clear_error() {
    let err = Database::connect("mysql://root:hunter2@localhost/x")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unsupported database URL"), "{text}");
    assert!(!text.contains("hunter2"), "password leaked: {text}");
}

/// The batch writers take `direct_sqlite()` each; SQLite has one writer at
/// a time, and writers on connections of their own waited for each other
/// in its busy handler. A TEMP table is seen only by the connection that
/// made it, so seeing it through another handle proves they share one.
#[tokio::test]
async fn sqlite_batch_writers_share_one_connection() {
    let f = BackendFixture::sqlite().await;
    let (first, second) = (
        f.db.direct_sqlite().unwrap(),
        f.db.clone().direct_sqlite().unwrap(),
    );
    first
        .run(|c| {
            c.execute_batch("CREATE TEMP TABLE only_here (x); INSERT INTO only_here VALUES (7)")
                .map_err(kexin_ca::storage::direct::failed)
        })
        .await
        .unwrap();
    let seen: i64 = second
        .run(|c| {
            c.query_row("SELECT x FROM only_here", [], |r| r.get(0))
                .map_err(kexin_ca::storage::direct::failed)
        })
        .await
        .unwrap();
    assert_eq!(seen, 7);
}
