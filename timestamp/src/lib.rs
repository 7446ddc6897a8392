//! The time-stamp authority of Kexin: RFC 3161 tokens with RFC 5816
//! ESSCertIDv2, in the ETSI EN 319 422 profile.
//!
//! Invariants:
//! - every answer is a well-formed TimeStampResp; bad requests are
//!   `rejection`s with the matching PKIFailureInfo, never an error upward;
//! - a token is handed out only after its serial, time and message imprint
//!   are committed to the token log (group commit, see [`log`]), and
//!   flushed to disk, by the TSA or by the in-process caller's next commit;
//! - no token is made while the clock is not trusted ([`clock`]).
#![forbid(unsafe_code)]

pub mod clock;
pub mod log;
pub mod request;
pub mod response;
pub mod token;
pub mod verify;

use std::sync::{Arc, RwLock};

use kexin_hsm::{KeyAlgorithm, KeyStore, SignatureAlgorithm};
use x509_cert::Certificate;

pub use request::{FailureInfo, Rejection};

/// Largest request accepted, in bytes (a request is ~100 bytes).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    KeyStore(#[from] kexin_hsm::Error),
    #[error("encoding: {0}")]
    Encoding(String),
    #[error("token log: {0}")]
    Log(String),
    /// The TSA refused to stamp (its clock, an unsupported digest).
    #[error("time-stamp refused: {0}")]
    Refused(String),
}

/// A configured TSA: its certificate, key and policy.
pub struct TimeStampAuthority {
    pub(crate) store: Arc<dyn KeyStore>,
    /// Replaced when the TSA certificate is renewed while serving.
    signer: RwLock<Arc<Signer>>,
    accuracy_seconds: u64,
    pub(crate) policy: const_oid::ObjectIdentifier,
    pub(crate) accepted_policies: Vec<const_oid::ObjectIdentifier>,
    pub(crate) clock: clock::ClockGuard,
    pub(crate) log: log::TokenLog,
}

impl std::fmt::Debug for TimeStampAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeStampAuthority")
            .field("key_label", &self.signer().key_label)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What a TSA needs to be built.
pub struct TsaSettings {
    pub store: Arc<dyn KeyStore>,
    pub key_label: String,
    pub signature: SignatureAlgorithm,
    pub certificate: Certificate,
    /// The CA certificates above the TSA's up to (not including) the root,
    /// sent with the TSA certificate when a request asks for it, so that
    /// a relying party needs only the root.
    pub issuers: Vec<Certificate>,
    /// The policy of every token, and the default when a request names none.
    pub policy: const_oid::ObjectIdentifier,
    /// Further policies a request may ask for (the tokens still carry `policy`
    /// only if the request asks for it; others are refused).
    pub accepted_policies: Vec<const_oid::ObjectIdentifier>,
    pub accuracy_seconds: u64,
    pub clock: clock::ClockGuard,
    pub log: log::TokenLog,
}

/// The key and certificate that sign tokens, with what every token holds
/// because of them.
pub(crate) struct Signer {
    pub(crate) key_label: String,
    pub(crate) signature: SignatureAlgorithm,
    pub(crate) certificate: Certificate,
    /// The CAs above `certificate`, sent with it when a token is asked
    /// to carry certificates.
    pub(crate) issuers: Vec<Certificate>,
    /// What every token holds regardless of the request, encoded once.
    pub(crate) template: token::Template,
}

impl Signer {
    fn new(
        key_label: String,
        signature: SignatureAlgorithm,
        certificate: Certificate,
        issuers: &[Certificate],
        accuracy_seconds: u64,
    ) -> Result<Self, Error> {
        let mut chain = vec![certificate.clone()];
        chain.extend(issuers.iter().cloned());
        Ok(Self {
            template: token::Template::new(signature, &chain, accuracy_seconds)?,
            key_label,
            signature,
            certificate,
            issuers: issuers.to_vec(),
        })
    }
}

impl TimeStampAuthority {
    pub fn new(s: TsaSettings) -> Result<Self, Error> {
        let signer = Signer::new(
            s.key_label,
            s.signature,
            s.certificate,
            &s.issuers,
            s.accuracy_seconds,
        )?;
        let mut accepted = s.accepted_policies;
        if !accepted.contains(&s.policy) {
            accepted.push(s.policy);
        }
        Ok(Self {
            store: s.store,
            signer: RwLock::new(Arc::new(signer)),
            accuracy_seconds: s.accuracy_seconds,
            policy: s.policy,
            accepted_policies: accepted,
            clock: s.clock,
            log: s.log,
        })
    }

    /// Answers a DER TimeStampReq with a DER TimeStampResp. `requester`
    /// (an address, a principal) goes into the token log.
    pub async fn respond(&self, request: &[u8], requester: &str) -> Vec<u8> {
        let validated = match request::parse(request, &self.accepted_policies) {
            Ok(v) => v,
            Err(r) => return response::rejection(&r),
        };
        if let Err(r) = self.clock.check() {
            return response::rejection(&r);
        }
        match token::issue(self, &validated, requester, log::Durability::Flushed).await {
            Ok(token) => response::granted(&token),
            Err(e) => {
                tracing::error!(error = %e, "time-stamp token could not be issued");
                response::rejection(&Rejection::new(
                    FailureInfo::SystemFailure,
                    "the time-stamp authority could not sign",
                ))
            }
        }
    }

    /// A token for a digest computed by another part of Kexin (a seal's
    /// signature value, a PDF's byte range), with the TSA certificate
    /// included; the same checks and log as a request over HTTP, the log
    /// entry flushed as `durability` says.
    pub async fn stamp(
        &self,
        digest_algorithm: const_oid::ObjectIdentifier,
        digest: &[u8],
        requester: &str,
        durability: log::Durability,
    ) -> Result<Vec<u8>, Error> {
        use der::Encode;
        let enc = |e: der::Error| Error::Encoding(e.to_string());
        let request = x509_tsp::TimeStampReq {
            version: x509_tsp::TspVersion::V1,
            message_imprint: x509_tsp::MessageImprint {
                hash_algorithm: spki::AlgorithmIdentifierOwned {
                    oid: digest_algorithm,
                    parameters: None,
                },
                hashed_message: der::asn1::OctetString::new(digest).map_err(enc)?,
            },
            req_policy: None,
            nonce: None,
            cert_req: true,
            extensions: None,
        }
        .to_der()
        .map_err(enc)?;
        let validated = request::parse(&request, &self.accepted_policies)
            .map_err(|r| Error::Refused(r.text))?;
        self.clock.check().map_err(|r| Error::Refused(r.text))?;
        token::issue(self, &validated, requester, durability).await
    }

    /// The certificate that signs tokens now.
    pub fn certificate(&self) -> Certificate {
        self.signer().certificate.clone()
    }

    /// The CA certificates that tokens carry above the TSA's.
    pub fn issuers(&self) -> Vec<Certificate> {
        self.signer().issuers.clone()
    }

    /// Signs the tokens from now on with `certificate` (a renewal of the TSA
    /// certificate, or of a CA above it: `issuers`) and the key
    /// `key_label`; tokens being signed finish with the certificates they
    /// started with.
    pub fn replace_certificate(
        &self,
        key_label: String,
        certificate: Certificate,
        issuers: &[Certificate],
    ) -> Result<(), Error> {
        let signature =
            KeyAlgorithm::from_spki(&certificate.tbs_certificate.subject_public_key_info)?
                .default_signature();
        let renewed = Signer::new(
            key_label,
            signature,
            certificate,
            issuers,
            self.accuracy_seconds,
        )?;
        *self
            .signer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(renewed);
        Ok(())
    }

    pub(crate) fn signer(&self) -> Arc<Signer> {
        self.signer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
