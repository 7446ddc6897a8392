//! Kexin's OpenID Connect provider: officials sign in with the certificate
//! of the `officials` CA, once, and every registered system receives an
//! authorization code (PKCE S256 required) to exchange for ES256-signed ID
//! and access tokens and a rotating refresh token.
//!
//! Invariants: refresh tokens and client secrets are kept only as SHA-256
//! hashes, codes and SSO sessions only under their issue time and a hash;
//! a session, and the code of its sign-in, are stored in the transaction
//! of the sign-in's audit entry, with the claim of the challenge it
//! answered, so a challenge signs in at most once, at whichever node; a
//! code is redeemed at most once (deleted on first use, in the
//! transaction that stores its refresh token); a refresh token is
//! redeemed at most once, and presenting a rotated one revokes its whole
//! family; redirect URIs match exactly.
#![forbid(unsafe_code)]

pub mod challenges;
pub mod clients;
pub mod codes;
pub mod jwt;
pub mod provider;
pub mod refresh;
pub mod sessions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ca(#[from] kexin_ca::Error),
    #[error(transparent)]
    KeyStore(#[from] kexin_hsm::Error),
    #[error("storage: {0}")]
    Storage(String),
    /// An OAuth error: its code (RFC 6749 §5.2) and description.
    #[error("{0}: {1}")]
    OAuth(&'static str, String),
}

pub(crate) fn storage(e: sqlx::Error) -> Error {
    Error::Storage(e.to_string())
}

pub(crate) fn oauth(code: &'static str, description: impl Into<String>) -> Error {
    Error::OAuth(code, description.into())
}

pub(crate) use kexin_ca::issuance::now;

/// 32 random bytes, base64url: codes, tokens, secrets, session ids.
pub fn random_token() -> Result<String, Error> {
    use base64::Engine;
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Storage("no randomness".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// A token that begins with its issue time (milliseconds, 12 hex digits)
/// before 32 random bytes: stored under [`time_ordered_key`], tokens of
/// one moment go to one end of their index rather than each to a random
/// page.
pub(crate) fn time_ordered_token() -> Result<String, Error> {
    let ms = kexin_ca::secrets::now_ms();
    Ok(format!("{ms:012x}{}", random_token()?))
}

/// Where a [`time_ordered_token`] is stored, never the token itself: the
/// issue time it begins with, then 80 bits of its hash.
pub(crate) fn time_ordered_key(token: &str) -> String {
    let issued = token.get(..12).unwrap_or_default();
    format!("{issued}{}", &sha256_hex(token)[..20])
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s.as_bytes(),
    ))
}
