//! Authorization codes between the sign-in and the token request.
//!
//! A code lives 60 seconds and belongs to an SSO session. Sessions are
//! stored (the sessions module); codes live in this process's memory, which
//! costs no database write on the sign-in path. A code dies with its
//! session at logout, and with the process at a restart: a code issued just
//! before one cannot be redeemed, and on several nodes a code is redeemed
//! at the node that issued it.
//! Codes are kept only as SHA-256 hashes and are removed on first
//! redemption, whatever the outcome, so a replayed code finds nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{oauth, sha256_hex, Error};

/// How long a code may be redeemed.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// Open codes above this many are refused rather than held (a flood of
/// sign-ins that never redeem their codes must not exhaust memory).
const MAX_OPEN: usize = 200_000;

/// What a code was issued for: checked and used when it is redeemed.
#[derive(Clone, Debug)]
pub struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub subject: String,
    pub claims: serde_json::Value,
    /// The [`crate::provider::sid`] of the SSO session.
    pub session: String,
}

#[derive(Default)]
pub struct CodeStore {
    open: Mutex<HashMap<String, (PendingCode, Instant)>>,
}

impl CodeStore {
    /// Keeps `pending` under `code` (stored as its hash).
    pub fn insert(&self, code: &str, pending: PendingCode) -> Result<(), Error> {
        let now = Instant::now();
        let mut open = self.lock();
        if open.len() >= MAX_OPEN {
            open.retain(|_, (_, issued)| now.duration_since(*issued) < CODE_TTL);
            if open.len() >= MAX_OPEN {
                return Err(oauth("temporarily_unavailable", "too many open codes"));
            }
        }
        open.insert(sha256_hex(code), (pending, now));
        Ok(())
    }

    /// Takes `code` out: it cannot be redeemed again, whether or not this
    /// redemption succeeds. `None` for an unknown, used or expired code.
    pub fn redeem(&self, code: &str) -> Option<PendingCode> {
        let (pending, issued) = self.lock().remove(&sha256_hex(code))?;
        (issued.elapsed() < CODE_TTL).then_some(pending)
    }

    /// Drops the open codes of an ended session.
    pub fn end_session(&self, session: &str) {
        self.lock().retain(|_, (p, _)| p.session != session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (PendingCode, Instant)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(session: &str) -> PendingCode {
        PendingCode {
            client_id: "kx-1".into(),
            redirect_uri: "https://rp.example/cb".into(),
            code_challenge: "c".repeat(43),
            nonce: None,
            scope: "openid".into(),
            subject: "s".into(),
            claims: serde_json::json!({}),
            session: session.into(),
        }
    }

    #[test]
    fn a_code_is_redeemed_once() {
        let store = CodeStore::default();
        store.insert("code-1", pending("a")).unwrap();
        assert!(store.redeem("code-2").is_none());
        assert_eq!(store.redeem("code-1").unwrap().client_id, "kx-1");
        assert!(
            store.redeem("code-1").is_none(),
            "a replayed code is refused"
        );
    }

    #[test]
    fn logout_drops_the_sessions_codes_only() {
        let store = CodeStore::default();
        store.insert("mine", pending("a")).unwrap();
        store.insert("theirs", pending("b")).unwrap();
        store.end_session("a");
        assert!(store.redeem("mine").is_none());
        assert!(store.redeem("theirs").is_some());
    }

    #[test]
    fn an_expired_code_is_refused() {
        let store = CodeStore::default();
        store.insert("old", pending("a")).unwrap();
        if let Some((_, issued)) = store.lock().values_mut().next() {
            *issued = issued
                .checked_sub(CODE_TTL)
                .expect("booted over a minute ago");
        }
        assert!(store.redeem("old").is_none());
    }

    #[test]
    fn a_full_store_refuses_new_codes_and_keeps_the_open_ones() {
        let store = CodeStore::default();
        let p = pending("s");
        for i in 0..MAX_OPEN {
            store.insert(&i.to_string(), p.clone()).unwrap();
        }
        assert!(matches!(
            store.insert("one more", p.clone()),
            Err(Error::OAuth("temporarily_unavailable", _))
        ));
        assert!(store.redeem("7").is_some(), "open codes stay redeemable");
        store.insert("one more", p).unwrap();
        assert!(store.redeem("one more").is_some());
    }
}
