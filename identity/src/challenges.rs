//! Signed-challenge nonces that any node checks without storing them.
//!
//! A challenge id carries its issue time, a random nonce and its client,
//! with an HMAC-SHA256 over them under a secret that every node of the
//! instance shares (`kexin_ca::secrets`). A node therefore checks the
//! answer to a challenge that another node issued, and issuing one stores
//! nothing: no number of unanswered challenges fills anything up.
//!
//! An answer claims its challenge with a row (`oidc_spent_challenges`)
//! inserted in the transaction of the sign-in's audit entry; a second
//! answer, at any node, conflicts with that row and is refused. The row's
//! key begins with the issue time, so spent challenges are deleted by the
//! key's order once they have expired (`crate::sessions`' sweep).
//!
//! Invariants: a challenge is answered at most once, and only within
//! [`CHALLENGE_TTL`] of its issue by the clock of the node that checks the
//! answer. The nodes' clocks must agree within [`CLOCK_SKEW`]: a claim
//! is kept until no node's clock could still find its challenge fresh.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use kexin_ca::storage::rows::{NewRow, SqlValue};

use crate::{oauth, Error};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);

/// How far the clocks of an instance's nodes may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// How long after its issue a challenge's claim is kept.
pub(crate) const CLAIM_KEPT: Duration =
    Duration::from_secs(CHALLENGE_TTL.as_secs() + 2 * CLOCK_SKEW.as_secs());

const TIME_LEN: usize = 8;
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Longer ids are refused before they are decoded.
const MAX_ID_LEN: usize = 1024;

const INSERT_CLAIM: &str = "INSERT INTO oidc_spent_challenges (challenge_key)";

/// The bytes a client signs for a challenge: bound to the nonce and to
/// the client system it was issued for.
pub fn challenge_message(nonce: &str, client_id: &str) -> Vec<u8> {
    format!("kexin-sso-challenge\n{nonce}\n{client_id}").into_bytes()
}

/// The key that authenticates challenge ids: the same on every node.
pub struct ChallengeKey(hmac::Key);

/// A new challenge: its id, and the nonce the client signs.
pub struct Challenge {
    pub id: String,
    pub nonce: String,
}

/// A challenge found genuine and fresh: the message its answer must sign,
/// the client system it was issued for, and the key of its claim.
pub struct FreshChallenge {
    pub message: Vec<u8>,
    pub client_id: String,
    claim_key: String,
}

impl ChallengeKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A new challenge for `client_id`.
    pub fn issue(&self, client_id: &str) -> Result<Challenge, Error> {
        self.issue_at(client_id, now_ms())
    }

    fn issue_at(&self, client_id: &str, issued_ms: u64) -> Result<Challenge, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| Error::Storage("no randomness".into()))?;
        let tag = hmac::sign(&self.0, &authenticated(issued_ms, &nonce, client_id));
        let mut id = Vec::with_capacity(TIME_LEN + NONCE_LEN + TAG_LEN + client_id.len());
        id.extend_from_slice(&issued_ms.to_be_bytes());
        id.extend_from_slice(&nonce);
        id.extend_from_slice(tag.as_ref());
        id.extend_from_slice(client_id.as_bytes());
        Ok(Challenge {
            id: B64URL.encode(id),
            nonce: B64URL.encode(nonce),
        })
    }

    /// The challenge under `id` if this instance issued it and it may be
    /// answered now. Whether it was answered already shows only when its
    /// claim is inserted ([`FreshChallenge::claim`]).
    pub fn check(&self, id: &str) -> Result<FreshChallenge, Error> {
        self.check_at(id, now_ms())
    }

    fn check_at(&self, id: &str, now_ms: u64) -> Result<FreshChallenge, Error> {
        let unknown = || oauth("invalid_grant", "unknown, used or expired challenge");
        if id.len() > MAX_ID_LEN {
            return Err(unknown());
        }
        let raw = B64URL.decode(id).map_err(|_| unknown())?;
        if raw.len() < TIME_LEN + NONCE_LEN + TAG_LEN {
            return Err(unknown());
        }
        let (time, rest) = raw.split_at(TIME_LEN);
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (tag, client) = rest.split_at(TAG_LEN);
        let issued_ms = u64::from_be_bytes(time.try_into().map_err(|_| unknown())?);
        let client_id = std::str::from_utf8(client).map_err(|_| unknown())?;
        hmac::verify(&self.0, &authenticated(issued_ms, nonce, client_id), tag)
            .map_err(|_| unknown())?;
        if issued_ms > now_ms.saturating_add(millis(CLOCK_SKEW)) {
            return Err(unknown());
        }
        if now_ms.saturating_sub(issued_ms) >= millis(CHALLENGE_TTL) {
            return Err(oauth("invalid_grant", "the challenge expired"));
        }
        Ok(FreshChallenge {
            message: challenge_message(&B64URL.encode(nonce), client_id),
            client_id: client_id.to_owned(),
            claim_key: format!("{issued_ms:012x}{}", hex::encode(nonce)),
        })
    }
}

impl FreshChallenge {
    /// The row that claims the challenge, for the transaction of the
    /// sign-in's audit entry: a second claim fails that transaction with
    /// `kexin_ca::Error::Conflict`.
    pub fn claim(&self) -> NewRow {
        NewRow {
            insert: INSERT_CLAIM,
            values: vec![SqlValue::Text(self.claim_key.clone())],
        }
    }
}

/// What the tag covers: a label, so that no other MAC under the same
/// secret can pass for one, then the id's fields.
fn authenticated(issued_ms: u64, nonce: &[u8], client_id: &str) -> Vec<u8> {
    let mut bytes = b"kexin-sso-challenge-id\n".to_vec();
    bytes.extend_from_slice(&issued_ms.to_be_bytes());
    bytes.extend_from_slice(nonce);
    bytes.extend_from_slice(client_id.as_bytes());
    bytes
}

/// The claims of challenges issued before this (12 hex digits of
/// milliseconds, which their keys begin with) may be deleted.
pub(crate) fn claims_expired_before() -> String {
    format!("{:012x}", now_ms().saturating_sub(millis(CLAIM_KEPT)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    fn key() -> ChallengeKey {
        ChallengeKey::new(&[7u8; 32])
    }

    fn refused(r: Result<FreshChallenge, Error>) -> String {
        match r {
            Err(Error::OAuth("invalid_grant", m)) => m,
            Err(e) => panic!("refused otherwise: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_challenge_is_checked_by_any_holder_of_the_secret_for_its_lifetime() {
        let c = key().issue_at("系统-1", T).unwrap();
        // Another node: another ChallengeKey from the same secret.
        let fresh = key().check_at(&c.id, T + 119_999).unwrap();
        assert_eq!(fresh.client_id, "系统-1");
        assert_eq!(
            fresh.message,
            challenge_message(&c.nonce, "系统-1"),
            "the answer signs the nonce that was handed out"
        );
        // A node whose clock is behind the issuer's, within the skew.
        assert!(key().check_at(&c.id, T - 29_000).is_ok());
        assert_eq!(
            refused(key().check_at(&c.id, T + 120_000)),
            "the challenge expired"
        );
        assert_eq!(
            refused(key().check_at(&c.id, T - 31_000)),
            "unknown, used or expired challenge"
        );
    }

    #[test]
    fn a_forged_or_altered_challenge_is_refused() {
        let c = key().issue_at("client-a", T).unwrap();
        let other = ChallengeKey::new(&[8u8; 32]);
        assert!(refused(other.check_at(&c.id, T)).starts_with("unknown"));
        let raw = B64URL.decode(&c.id).unwrap();
        // Each field altered: the time (to extend a challenge's life), the
        // nonce, the tag, the client (to use another system's challenge).
        for at in [7, TIME_LEN, TIME_LEN + NONCE_LEN, raw.len() - 1] {
            let mut altered = raw.clone();
            altered[at] ^= 1;
            assert!(refused(key().check_at(&B64URL.encode(altered), T)).starts_with("unknown"));
        }
        let mut other_client = raw[..TIME_LEN + NONCE_LEN + TAG_LEN].to_vec();
        other_client.extend_from_slice(b"client-b");
        assert!(refused(key().check_at(&B64URL.encode(other_client), T)).starts_with("unknown"));
        for junk in ["", "not base64!", "AAAA", &"A".repeat(MAX_ID_LEN + 4)] {
            assert!(refused(key().check_at(junk, T)).starts_with("unknown"));
        }
    }

    #[test]
    fn a_claim_is_keyed_by_issue_time_and_nonce() {
        let (a, b) = (
            key().issue_at("c", T).unwrap(),
            key().issue_at("c", T).unwrap(),
        );
        let claim = |id: &str| key().check_at(id, T).unwrap().claim().values;
        assert_eq!(claim(&a.id), claim(&a.id), "two answers claim the same row");
        assert_ne!(claim(&a.id), claim(&b.id));
        let SqlValue::Text(k) = &claim(&a.id)[0] else {
            panic!("a text key")
        };
        assert_eq!(k[..12], format!("{T:012x}"));
        assert_eq!(k.len(), 12 + 2 * NONCE_LEN);
    }
}
