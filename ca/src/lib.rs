//! The certificate authority of Kexin: certificate building, RFC 5280 lint,
//! issuance that records before it signs, the default hierarchy, storage and
//! the hash-chained audit log.
#![forbid(unsafe_code)]

pub mod audit;
pub mod certificate;
pub mod hierarchy;
pub mod issuance;
pub mod lint;
pub mod storage;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    KeyStore(#[from] kexin_hsm::Error),
    #[error("storage: {0}")]
    Storage(String),
    #[error("serial {0} already exists")]
    DuplicateSerial(String),
    #[error("no CA named {0:?}")]
    UnknownAuthority(String),
    #[error("invalid name: {0}")]
    InvalidName(String),
    #[error("encoding: {0}")]
    Encoding(String),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("certificate fails lint: {}", .0.join("; "))]
    Lint(Vec<String>),
}
