//! CRL generation time and peak memory for N revoked certificates.
//!
//! Usage: `crl_scale N OUT.crl`. Builds a throw-away instance (SQLite, soft
//! key store, ECDSA P-256), records N revoked certificates of the `systems`
//! CA, then times one CRL generation. Prints one JSON line. Peak memory is
//! the process high-water mark (VmHWM) measured before and after the CRL,
//! so the cost of filling the database is reported separately.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kexin_ca::audit::AuditLog;
use kexin_ca::crl::CrlIssuer;
use kexin_ca::hierarchy::{create_default_hierarchy, load_authority, HierarchySettings};
use kexin_ca::issuance::Requester;
use kexin_ca::storage::Database;
use kexin_hsm::{KdfParams, KeyAlgorithm, KeyStore, SoftKeyStore};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resets the high-water mark so the next reading covers only what follows.
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: crl_scale N OUT.crl");
    let out = args.get(2).expect("usage: crl_scale N OUT.crl");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn KeyStore> = Arc::new(
        SoftKeyStore::create(
            &dir.path().join("keys"),
            b"benchmark passphrase",
            KdfParams::default(),
        )
        .unwrap(),
    );
    let db = Database::connect(&Database::sqlite_url(&dir.path().join("bench.db")))
        .await
        .unwrap();
    let audit = AuditLog::new(db.clone());
    let settings = HierarchySettings {
        key_algorithm: KeyAlgorithm::EcdsaP256,
        country: "CN".into(),
        organization: "Bench".into(),
        public_url: "http://127.0.0.1:8080".into(),
        root_validity: Duration::from_secs(3650 * 86400),
        issuing_validity: Duration::from_secs(1825 * 86400),
        tls_names: vec!["localhost".into()],
        systems_permitted_dns: vec![],
        key_prefix: "bench".into(),
    };
    let requester = Requester {
        actor: "bench",
        source: "bench",
    };
    create_default_hierarchy(&db, store.clone(), &audit, &settings, requester)
        .await
        .unwrap();

    let fill = Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut tx = db.pool().begin().await.unwrap();
    let mut i = 0u64;
    while i < n {
        let batch = (n - i).min(500);
        // Generated numbers only: no outside input reaches this SQL text.
        let values: Vec<String> = (i..i + batch)
            .map(|k| {
                format!(
                    "('{:032x}', 'systems', 'tls-server', 'CN=bench', 'revoked', {}, {}, x'00', {}, {}, {}, {})",
                    0x4000_0000_0000_0000_0000_0000_0000_0000u128 + k as u128,
                    now - 86400,
                    now + 86400 * 365,
                    now - 3600,
                    now - 60,
                    now - 60,
                    [0, 1, 3, 4, 5][(k % 5) as usize]
                )
            })
            .collect();
        sqlx::query(&format!(
            "INSERT INTO certificates (serial, issuer, profile, subject, status, not_before, not_after, tbs, requested_at, issued_at, revoked_at, revocation_reason) VALUES {}",
            values.join(",")
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
        i += batch;
    }
    tx.commit().await.unwrap();
    let fill_s = fill.elapsed().as_secs_f64();

    let systems = load_authority(&db, "systems").await.unwrap();
    let issuer = CrlIssuer::new(db.clone(), store.clone(), Duration::from_secs(48 * 3600));
    let before_kib = vm_hwm_kib();
    reset_hwm();
    let base_kib = vm_hwm_kib();
    let start = Instant::now();
    let crl = issuer.generate(&systems).await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let peak_kib = vm_hwm_kib();
    std::fs::write(out, &crl.der).unwrap();
    println!(
        "{}",
        serde_json::json!({
            "entries": n,
            "crl_bytes": crl.der.len(),
            "generate_seconds": seconds,
            "entries_per_second": n as f64 / seconds,
            "rss_before_crl_mib": base_kib as f64 / 1024.0,
            "peak_rss_during_crl_mib": peak_kib as f64 / 1024.0,
            "crl_memory_mib": peak_kib.saturating_sub(base_kib) as f64 / 1024.0,
            "peak_rss_filling_mib": before_kib as f64 / 1024.0,
            "fill_seconds": fill_s,
        })
    );
}
