//! Replay nonces (RFC 8555 §6.5) that any node issues and checks. A nonce
//! is a [`StampKey`] token (its issue time and 16 random bytes under an
//! HMAC of the instance's shared secret): issuing one stores nothing, so a
//! flood of new-nonce requests evicts no client's nonce, and a nonce from
//! one node is good at another. A request spends its nonce by inserting
//! the nonce's claim (`acme_spent_nonces`) before it is handled; a second
//! use, at any node, conflicts with the claim and gets `badNonce`. Claims
//! are deleted in the background once their nonces have expired.

use std::time::Duration;

use kexin_ca::secrets::{claims_expired_before, now_ms, StampKey};
use kexin_ca::storage::rows::{NewRow, SqlValue};
use kexin_ca::storage::sweep::{delete_keys_before, SweepSchedule};
use kexin_ca::storage::Database;

/// How long a nonce may be spent.
const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// How often spent nonces' claims are swept at most.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Claims deleted per sweep at most.
const SWEEP_AT_MOST: i64 = 25_000;

pub struct Nonces {
    key: StampKey,
    db: Database,
    /// When expired claims are next deleted.
    next_sweep: SweepSchedule,
}

impl Nonces {
    /// Nonces under a key from `secret`, shared by every node.
    pub fn new(secret: &[u8], db: Database) -> Self {
        Self {
            key: StampKey::new(secret, "acme-nonce"),
            db,
            next_sweep: SweepSchedule::new(SWEEP_EVERY),
        }
    }

    /// A fresh nonce; `None` if the system has no randomness to give.
    pub fn issue(&self) -> Option<String> {
        self.key.issue(&[], now_ms()).ok().map(|(nonce, _)| nonce)
    }

    /// Spends `nonce`: true once, for a fresh nonce of this instance.
    pub async fn spend(&self, nonce: &str) -> Result<bool, kexin_ca::Error> {
        let Ok(token) = self.key.check(nonce, now_ms(), NONCE_LIFETIME) else {
            return Ok(false);
        };
        self.sweep_if_due();
        let claim = NewRow {
            insert: "INSERT INTO acme_spent_nonces (nonce_key)",
            values: vec![SqlValue::Text(token.claim_key())],
        };
        let mut connection = self
            .db
            .pool()
            .acquire()
            .await
            .map_err(kexin_ca::storage::storage)?;
        match kexin_ca::storage::rows::insert(&mut connection, &[&claim]).await {
            Ok(()) => Ok(true),
            Err(kexin_ca::Error::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes claims of expired nonces in the background, once in
    /// [`SWEEP_EVERY`] at most.
    fn sweep_if_due(&self) {
        if !self.next_sweep.due() {
            return;
        }
        let db = self.db.clone();
        tokio::spawn(async move {
            if let Err(e) = sweep(&db).await {
                tracing::warn!(error = %e, "spent ACME nonces could not be deleted");
            }
        });
    }
}

/// Deletes claims of expired nonces, by the key's order, as many as
/// [`SWEEP_AT_MOST`].
pub async fn sweep(db: &Database) -> Result<(), kexin_ca::Error> {
    let before = claims_expired_before(NONCE_LIFETIME);
    delete_keys_before(db, "acme_spent_nonces", "nonce_key", &before, SWEEP_AT_MOST).await
}

#[cfg(test)]
mod tests {
    use kexin_test_support::{on_both_backends, BackendFixture};

    use super::*;

    on_both_backends!(a_nonce_is_spent_once_at_any_node);

    async fn a_nonce_is_spent_once_at_any_node(f: BackendFixture) {
        let secret = [5u8; 32];
        // Two nodes on one database.
        let (a, b) = (
            Nonces::new(&secret, f.db.clone()),
            Nonces::new(&secret, f.db.clone()),
        );
        let n = a.issue().unwrap();
        assert!(
            b.spend(&n).await.unwrap(),
            "issued at one, spent at the other"
        );
        assert!(!a.spend(&n).await.unwrap());
        assert!(!b.spend(&n).await.unwrap());
        // Two uses at once: one is good.
        let n = b.issue().unwrap();
        let (x, y) = tokio::join!(a.spend(&n), b.spend(&n));
        assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|ok| **ok).count(), 1);
        let foreign = Nonces::new(&[6u8; 32], f.db.clone()).issue().unwrap();
        assert!(!a.spend(&foreign).await.unwrap());
        assert!(!a.spend("never-issued").await.unwrap());
        // Claims are kept for the nonce's hour and the clocks' margin.
        let key = |age_ms: u64| format!("{:012x}{}", now_ms() - age_ms, "0".repeat(32));
        for age in [3_661_000, 3_600_000] {
            sqlx::query("INSERT INTO acme_spent_nonces (nonce_key) VALUES ($1)")
                .bind(key(age))
                .execute(f.db.pool())
                .await
                .unwrap();
        }
        sweep(&f.db).await.unwrap();
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM acme_spent_nonces")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
        assert_eq!(kept, 3, "the two spent above and the one an hour old");
    }
}
