//! The certificate authority of Kexin: certificate building, RFC 5280 lint,
//! issuance that records before it signs, the default hierarchy, storage and
//! the hash-chained audit log.
#![forbid(unsafe_code)]

pub mod audit;
pub mod certificate;
pub mod cms;
pub mod crl;
pub mod csr;
pub mod hierarchy;
pub mod issuance;
pub mod kmc;
pub mod lint;
pub mod ocsp;
pub mod principal;
pub mod profile;
pub mod registration;
pub mod renewal;
pub mod request;
pub mod revocation;
pub mod secrets;
pub mod storage;
pub mod verify;

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
    #[error("profile: {0}")]
    Profile(String),
    #[error("request refused by profile: {}", .0.join("; "))]
    Policy(Vec<String>),
    #[error(transparent)]
    Csr(#[from] csr::CsrError),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller's role does not allow the action.
    #[error("{0}")]
    Forbidden(String),
}
