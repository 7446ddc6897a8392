//! Signed-challenge nonces that any node checks without storing them.
//!
//! A challenge id is a [`StampKey`] token whose payload is its client:
//! any node of the instance checks the answer to a challenge another node
//! issued, and issuing one stores nothing, so no number of unanswered
//! challenges fills anything up.
//!
//! An answer claims its challenge with a row (`oidc_spent_challenges`)
//! inserted in the transaction of the sign-in's audit entry; a second
//! answer, at any node, conflicts with that row and is refused. Claims are
//! deleted once their challenges have expired (`crate::sessions`' sweep).
//!
//! Invariants: a challenge is answered at most once, and only within
//! [`CHALLENGE_TTL`] of its issue by the clock of the node that checks the
//! answer; the nodes' clocks must agree within
//! [`kexin_ca::secrets::CLOCK_SKEW`].

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use kexin_ca::secrets::{now_ms, StampKey, StampRefused};
use kexin_ca::storage::rows::{NewRow, SqlValue};

use crate::{oauth, Error};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);

const INSERT_CLAIM: &str = "INSERT INTO oidc_spent_challenges (challenge_key)";

/// The bytes a client signs for a challenge: bound to the nonce and to
/// the client system it was issued for.
pub fn challenge_message(nonce: &str, client_id: &str) -> Vec<u8> {
    format!("kexin-sso-challenge\n{nonce}\n{client_id}").into_bytes()
}

/// The key that authenticates challenge ids: the same on every node.
pub struct ChallengeKey(StampKey);

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
        Self(StampKey::new(secret, "sso-challenge"))
    }

    /// A new challenge for `client_id`.
    pub fn issue(&self, client_id: &str) -> Result<Challenge, Error> {
        let (id, nonce) = self.0.issue(client_id.as_bytes(), now_ms())?;
        Ok(Challenge {
            id,
            nonce: B64URL.encode(nonce),
        })
    }

    /// The challenge under `id` if this instance issued it and it may be
    /// answered now. Whether it was answered already shows only when its
    /// claim is inserted ([`FreshChallenge::claim`]).
    pub fn check(&self, id: &str) -> Result<FreshChallenge, Error> {
        let token = self
            .0
            .check(id, now_ms(), CHALLENGE_TTL)
            .map_err(|refused| match refused {
                StampRefused::Expired => oauth("invalid_grant", "the challenge expired"),
                StampRefused::Unknown => oauth("invalid_grant", UNKNOWN_CHALLENGE),
            })?;
        let claim_key = token.claim_key();
        let client_id = String::from_utf8(token.payload)
            .map_err(|_| oauth("invalid_grant", UNKNOWN_CHALLENGE))?;
        Ok(FreshChallenge {
            message: challenge_message(&B64URL.encode(token.nonce), &client_id),
            client_id,
            claim_key,
        })
    }
}

/// The refusal of a challenge that is not ours, altered, or answered.
pub const UNKNOWN_CHALLENGE: &str = "unknown, used or expired challenge";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_signs_the_nonce_handed_out_for_the_challenges_client() {
        let key = ChallengeKey::new(&[7u8; 32]);
        let c = key.issue("系统-1").unwrap();
        let fresh = ChallengeKey::new(&[7u8; 32]).check(&c.id).unwrap();
        assert_eq!(fresh.client_id, "系统-1");
        assert_eq!(fresh.message, challenge_message(&c.nonce, "系统-1"));
        // A token of the same secret for another purpose is no challenge.
        let other = StampKey::new(&[7u8; 32], "acme-nonce");
        let (token, _) = other.issue("系统-1".as_bytes(), now_ms()).unwrap();
        assert!(matches!(
            key.check(&token),
            Err(Error::OAuth("invalid_grant", m)) if m == UNKNOWN_CHALLENGE
        ));
    }
}
