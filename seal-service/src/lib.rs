//! Electronic seals (电子印章): an organization's seal held in the key
//! store, applied to files (detached CAdES) and PDF documents (PAdES), and
//! the verification of both.
#![forbid(unsafe_code)]

pub mod cades;
mod fonts;
pub mod image;
pub mod license;
pub mod pades;
mod pdf;
pub mod registry;
pub mod service;
pub mod signer;
pub mod validation;
pub mod verify;

pub use registry::{Seal, SealKind, SealRegistry};
pub use signer::{Level, SealSigner};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ca(#[from] kexin_ca::Error),
    #[error(transparent)]
    KeyStore(#[from] kexin_hsm::Error),
    #[error(transparent)]
    TimeStamp(#[from] kexin_timestamp::Error),
    #[error("encoding: {0}")]
    Encoding(String),
    #[error("{0}")]
    InvalidInput(String),
    /// A PDF Kexin cannot sign, and why.
    #[error("cannot seal this PDF: {0}")]
    UnsupportedPdf(String),
    #[error("seal {0:?} is {1}")]
    SealUnusable(String, String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn der_err(e: der::Error) -> Error {
    Error::Encoding(e.to_string())
}
