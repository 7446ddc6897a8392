//! Key stores for Kexin: one interface, several places a key can live.
//!
//! The CA, the TSA and the seal service sign through [`KeyStore`] and never
//! learn whether the private key is a file encrypted at rest ([`SoftKeyStore`])
//! or an object on a PKCS#11 token ([`Pkcs11KeyStore`]). Private keys never
//! leave a store in the clear: the interface has no export operation.
//!
//! Every method is synchronous and the stores are `Send + Sync`; async
//! callers run them on a blocking thread.
#![forbid(unsafe_code)]

pub mod algorithm;
mod pkcs11;
mod soft;

pub use algorithm::{KeyAlgorithm, SignatureAlgorithm, SM2_DEFAULT_ID};
pub use pkcs11::{Pkcs11KeyStore, Pkcs11Settings};
pub use soft::{KdfParams, SoftKeyStore};
pub use zeroize::Zeroizing;

/// What can go wrong in a key store. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no key labelled {0:?} in the key store")]
    KeyNotFound(String),
    #[error("a key labelled {0:?} already exists")]
    KeyExists(String),
    #[error("invalid key label {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ -")]
    InvalidLabel(String),
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("key {label:?} is {key}, which cannot make {signature} signatures")]
    AlgorithmMismatch {
        label: String,
        key: KeyAlgorithm,
        signature: SignatureAlgorithm,
    },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("wrong key store passphrase, or the key store was tampered with")]
    BadPassphrase,
    #[error("wrapped key is corrupt or was wrapped under another key")]
    UnwrapFailed,
    #[error("key store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("key store backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A public key as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub algorithm: KeyAlgorithm,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// An entry of [`KeyStore::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub label: String,
    pub kind: KeyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A signing key pair.
    KeyPair(KeyAlgorithm),
    /// An AES-256 key-encryption key for [`KeyStore::wrap`].
    WrappingKey,
}

/// The one key-management interface of Kexin.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// A short name of the backend for logs and status pages ("soft", "pkcs11").
    fn backend(&self) -> &'static str;

    /// Generates a key pair inside the store under `label`.
    /// Fails with [`Error::KeyExists`] rather than replace a key.
    fn generate(&self, label: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo>;

    /// The public half of the key pair under `label`.
    fn public_key(&self, label: &str) -> Result<PublicKeyInfo>;

    /// Signs `message` (not a digest: the store hashes as `algorithm` says).
    fn sign(&self, label: &str, algorithm: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>>;

    /// Whether a [`KeyStore::sign`] with `algorithm` returns within tens of
    /// microseconds, so that an async caller may run it in place instead of
    /// paying two thread hand-overs for it. False unless the backend knows:
    /// a token or a network HSM can take milliseconds.
    fn signs_quickly(&self, _algorithm: SignatureAlgorithm) -> bool {
        false
    }

    /// Every key in the store.
    fn list(&self) -> Result<Vec<KeyEntry>>;

    /// Generates an AES-256 key-encryption key under `label`.
    fn generate_wrapping_key(&self, label: &str) -> Result<()>;

    /// Encrypts `secret` (typically a symmetric key) under the wrapping key
    /// `label` with AES-256-GCM; the output carries its own nonce.
    fn wrap(&self, label: &str, secret: &[u8]) -> Result<Vec<u8>>;

    /// Reverses [`KeyStore::wrap`]; fails with [`Error::UnwrapFailed`] if the
    /// blob was altered or wrapped under another key.
    fn unwrap(&self, label: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// Signs from async code: in place when the store says the signature is
/// quick, otherwise on the blocking pool, so that a slow token never stalls
/// the executor.
pub async fn sign_async(
    store: &std::sync::Arc<dyn KeyStore>,
    label: &str,
    algorithm: SignatureAlgorithm,
    message: Vec<u8>,
) -> Result<Vec<u8>> {
    if store.signs_quickly(algorithm) {
        return store.sign(label, algorithm, &message);
    }
    let (store, label) = (store.clone(), label.to_owned());
    tokio::task::spawn_blocking(move || store.sign(&label, algorithm, &message))
        .await
        .map_err(|e| Error::Backend(format!("signing task: {e}")))?
}

/// Labels become file names and token attributes; keep them boring.
pub(crate) fn check_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && !label.starts_with('.')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidLabel(label.to_owned()))
    }
}

pub(crate) fn check_pair(label: &str, key: KeyAlgorithm, sig: SignatureAlgorithm) -> Result<()> {
    if key.supports(sig) {
        Ok(())
    } else {
        Err(Error::AlgorithmMismatch {
            label: label.to_owned(),
            key,
            signature: sig,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cannot_escape_the_store() {
        for bad in ["", "../x", "a/b", ".hidden", "with space", &"x".repeat(65)] {
            assert!(check_label(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["root", "ca.officials-2026", "tsa_1"] {
            check_label(good).unwrap();
        }
    }
}
