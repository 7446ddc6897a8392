//! TimeStampReq (RFC 3161 §2.4.1): parsed and checked before anything is signed.

use const_oid::ObjectIdentifier;
use der::Decode;
use x509_tsp::TimeStampReq;

/// Digest algorithms accepted in a message imprint, with their lengths.
/// SHA-1 is refused (ETSI EN 319 422 §5.2.1 relies on collision resistance).
pub const ACCEPTED_DIGESTS: [(ObjectIdentifier, &str, usize); 4] = [
    (
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1"),
        "sha256",
        32,
    ),
    (
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2"),
        "sha384",
        48,
    ),
    (
        ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3"),
        "sha512",
        64,
    ),
    (
        ObjectIdentifier::new_unwrap("1.2.156.10197.1.401"),
        "sm3",
        32,
    ),
];

/// PKIFailureInfo bits (RFC 3161 §2.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureInfo {
    BadAlg,
    BadRequest,
    BadDataFormat,
    TimeNotAvailable,
    UnacceptedPolicy,
    UnacceptedExtension,
    SystemFailure,
}

impl FailureInfo {
    pub fn bit(self) -> usize {
        match self {
            Self::BadAlg => 0,
            Self::BadRequest => 2,
            Self::BadDataFormat => 5,
            Self::TimeNotAvailable => 14,
            Self::UnacceptedPolicy => 15,
            Self::UnacceptedExtension => 16,
            Self::SystemFailure => 25,
        }
    }
}

/// Why a request gets no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub failure: FailureInfo,
    pub text: String,
}

impl Rejection {
    pub fn new(failure: FailureInfo, text: &str) -> Self {
        Self {
            failure,
            text: text.to_owned(),
        }
    }
}

/// A request that may be stamped.
#[derive(Clone, Debug)]
pub struct ValidatedRequest {
    pub request: TimeStampReq,
    pub digest_name: &'static str,
}

pub fn parse(
    bytes: &[u8],
    accepted_policies: &[ObjectIdentifier],
) -> Result<ValidatedRequest, Rejection> {
    if bytes.len() > crate::MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            FailureInfo::BadDataFormat,
            "request too large",
        ));
    }
    let request = TimeStampReq::from_der(bytes)
        .map_err(|_| Rejection::new(FailureInfo::BadDataFormat, "not a DER TimeStampReq"))?;
    let imprint = &request.message_imprint;
    let Some(&(_, digest_name, len)) = ACCEPTED_DIGESTS
        .iter()
        .find(|(oid, _, _)| *oid == imprint.hash_algorithm.oid)
    else {
        return Err(Rejection::new(
            FailureInfo::BadAlg,
            "unsupported hash algorithm; use SHA-256, SHA-384, SHA-512 or SM3",
        ));
    };
    if imprint.hashed_message.as_bytes().len() != len {
        return Err(Rejection::new(
            FailureInfo::BadDataFormat,
            "message imprint length does not match its hash algorithm",
        ));
    }
    if let Some(policy) = &request.req_policy {
        if !accepted_policies.contains(policy) {
            return Err(Rejection::new(
                FailureInfo::UnacceptedPolicy,
                "requested policy is not offered",
            ));
        }
    }
    if request.extensions.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(Rejection::new(
            FailureInfo::UnacceptedExtension,
            "no request extensions are supported",
        ));
    }
    if request
        .nonce
        .as_ref()
        .is_some_and(|n| n.as_bytes().len() > 64)
    {
        return Err(Rejection::new(
            FailureInfo::BadRequest,
            "nonce longer than 64 bytes",
        ));
    }
    Ok(ValidatedRequest {
        request,
        digest_name,
    })
}
