//! Where a relying system keeps its signed-in sessions.
//!
//! One process keeps them in memory ([`MemorySessionStore`], what
//! [`crate::axum::Sso::new`] uses). Replicas of a system behind a load
//! balancer that does not pin a browser to one replica share a store
//! (`PgSessionStore` with the `postgres` feature, `RedisSessionStore` with
//! the `redis` feature, or any [`SessionStore`] the system implements over
//! its own database or cache),
//! and a state key ([`crate::axum::Sso::shared`]).
//!
//! Invariants every store keeps:
//! - sessions are found by a key the SDK derives from the browser's cookie
//!   (its SHA-256), so the store never holds a cookie that would let its
//!   reader take over a session;
//! - at most one holder at a time has the right to check a session with the
//!   provider ([`SessionStore::claim_check`]), across every replica: a
//!   refresh token presented twice would be taken by the provider for a
//!   stolen one, and the official's whole sign-in would end;
//! - [`SessionStore::save`] gives up that right.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A signed-in official's session, as stored. Printed, its tokens are
/// redacted.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// The verified ID token's claims (`sub`, `name`, `sid`, …).
    pub claims: serde_json::Value,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds when the access token stops being good.
    pub expires_at: u64,
    /// Unix seconds when the provider last said the SSO session stands.
    pub checked_at: u64,
}

impl Session {
    /// The provider's SSO session this one belongs to (back-channel logout
    /// names it).
    pub fn sid(&self) -> &str {
        self.claims["sid"].as_str().unwrap_or_default()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("claims", &self.claims)
            .field("access_token", &crate::REDACTED)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| crate::REDACTED),
            )
            .field("expires_at", &self.expires_at)
            .field("checked_at", &self.checked_at)
            .finish()
    }
}

/// A store that could not be reached or answered nonsense.
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

/// What a store's methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A place for sessions that every replica of a system reaches.
pub trait SessionStore: Send + Sync {
    /// The session under `key`, if any.
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// Stores `session` under `key`, replacing any, and gives up the right
    /// to check it. A store may forget sessions whose `checked_at` is more
    /// than [`crate::axum::SESSION_IDLE`] ago.
    fn save<'a>(&'a self, key: &'a str, session: &'a Session) -> StoreFuture<'a, ()>;

    /// Forgets the session under `key`.
    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Forgets every session of the provider's SSO session `sid`.
    fn remove_sso_session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()>;

    /// Takes the right to check the session under `key` until `until`
    /// (unix seconds) if no one holds it at `now`; whether it was taken.
    /// The right lapses at `until` even if its holder never saves (a
    /// replica that stopped mid-check).
    fn claim_check<'a>(&'a self, key: &'a str, now: u64, until: u64) -> StoreFuture<'a, bool>;
}

/// How often a store looks for idle sessions to forget.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Sessions last checked at or before this are idle at `now`.
fn idle_since(now: u64) -> u64 {
    now.saturating_sub(crate::axum::SESSION_IDLE.as_secs())
}

/// Sessions in this process's memory.
pub struct MemorySessionStore {
    inner: Mutex<Memory>,
}

struct Memory {
    /// Each session with the end of the right to check it (0: no one).
    by_key: HashMap<String, (Session, u64)>,
    swept: Instant,
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Memory {
                by_key: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl MemorySessionStore {
    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn done<'a, T: Send + 'a>(value: T) -> StoreFuture<'a, T> {
        Box::pin(std::future::ready(Ok(value)))
    }
}

impl SessionStore for MemorySessionStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Session>> {
        Self::done(self.memory().by_key.get(key).map(|(s, _)| s.clone()))
    }

    fn save<'a>(&'a self, key: &'a str, session: &'a Session) -> StoreFuture<'a, ()> {
        let mut memory = self.memory();
        if memory.swept.elapsed() >= SWEEP_INTERVAL {
            let now = crate::unix_now();
            memory
                .by_key
                .retain(|_, (s, _)| s.checked_at > idle_since(now));
            memory.swept = Instant::now();
        }
        memory.by_key.insert(key.to_owned(), (session.clone(), 0));
        Self::done(())
    }

    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.memory().by_key.remove(key);
        Self::done(())
    }

    fn remove_sso_session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        self.memory().by_key.retain(|_, (s, _)| s.sid() != sid);
        Self::done(())
    }

    fn claim_check<'a>(&'a self, key: &'a str, now: u64, until: u64) -> StoreFuture<'a, bool> {
        let taken = match self.memory().by_key.get_mut(key) {
            Some((_, held_until)) if *held_until <= now => {
                *held_until = until;
                true
            }
            _ => false,
        };
        Self::done(taken)
    }
}

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::PgSessionStore;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::RedisSessionStore;

/// What every store must do; each store's tests run these.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    pub fn session(sid: &str, checked_at: u64) -> Session {
        Session {
            claims: serde_json::json!({ "sid": sid }),
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            expires_at: checked_at + 300,
            checked_at,
        }
    }

    /// One holder at a time has the right to check a session; the right
    /// lapses, and saving gives it up.
    pub async fn one_holder_at_a_time_checks_a_session(store: &dyn SessionStore) {
        let now = crate::unix_now();
        assert!(
            !store.claim_check("k", now, now + 30).await.unwrap(),
            "none"
        );
        store.save("k", &session("s1", now)).await.unwrap();
        assert!(store.claim_check("k", now, now + 30).await.unwrap());
        assert!(!store.claim_check("k", now + 29, now + 59).await.unwrap());
        assert!(
            store.claim_check("k", now + 30, now + 60).await.unwrap(),
            "lapsed"
        );
        store.save("k", &session("s1", now + 31)).await.unwrap();
        assert!(
            store.claim_check("k", now + 31, now + 61).await.unwrap(),
            "given up"
        );
        assert_eq!(store.load("k").await.unwrap().unwrap().checked_at, now + 31);
    }

    /// Saves "idle", last checked an idle time ago, and "used", half that
    /// (both of SSO session "s3"), for a store to forget the first.
    pub async fn save_one_idle_and_one_in_use(store: &dyn SessionStore) {
        let now = crate::unix_now();
        let idle_for = crate::axum::SESSION_IDLE.as_secs();
        store
            .save("idle", &session("s3", now - idle_for))
            .await
            .unwrap();
        store
            .save("used", &session("s3", now - idle_for / 2))
            .await
            .unwrap();
    }

    /// Sessions end one by one, and all those of an SSO session at once.
    pub async fn sessions_end_one_by_one_and_by_sso_session(store: &dyn SessionStore) {
        let now = crate::unix_now();
        store.save("a", &session("s1", now)).await.unwrap();
        store.save("b", &session("s1", now)).await.unwrap();
        store.save("c", &session("s2", now)).await.unwrap();
        store.remove_sso_session("s1").await.unwrap();
        assert!(store.load("a").await.unwrap().is_none());
        assert!(store.load("b").await.unwrap().is_none());
        assert!(
            store.load("c").await.unwrap().is_some(),
            "another SSO session"
        );
        store.remove("c").await.unwrap();
        assert!(store.load("c").await.unwrap().is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::contract::*;
    use super::*;

    #[test]
    fn printed_sessions_keep_their_tokens_to_themselves() {
        let mut s = session("s1", 0);
        s.access_token = "eyJ-access-secret".into();
        s.refresh_token = Some("refresh-secret".into());
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("secret") && printed.contains("s1"),
            "{printed}"
        );
    }

    #[tokio::test]
    async fn one_holder_at_a_time_checks_a_session_in_memory() {
        one_holder_at_a_time_checks_a_session(&MemorySessionStore::default()).await;
    }

    #[tokio::test]
    async fn sessions_in_memory_end_one_by_one_by_sso_session_and_when_idle() {
        let store = MemorySessionStore::default();
        sessions_end_one_by_one_and_by_sso_session(&store).await;
        save_one_idle_and_one_in_use(&store).await;
        let now = crate::unix_now();
        store.memory().swept = Instant::now().checked_sub(SWEEP_INTERVAL).unwrap();
        store.save("new", &session("s3", now)).await.unwrap();
        let mut left: Vec<_> = store.memory().by_key.keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["new", "used"]);
    }
}
