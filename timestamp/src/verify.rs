//! Verification of a time-stamp token against the data it stamps: message
//! imprint, CMS signature (SM2 and Ed25519 included), signingCertificateV2,
//! the TSA certificate's EKU and its chain to a trust anchor at genTime.

use std::io::Read;

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::asn1::OctetString;
use der::{Decode, Encode};
use kexin_ca::verify::verify_signature;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;
use x509_tsp::TstInfo;

use crate::request::ACCEPTED_DIGESTS;
use crate::token::{OID_SIGNED_DATA, OID_TST_INFO};

const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const OID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");

/// Why a token does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a time-stamp token or reply: {0}")]
    Malformed(String),
    #[error("the time-stamp reply is a rejection")]
    Rejected,
    #[error("the message imprint does not match the data")]
    ImprintMismatch,
    #[error("unsupported hash algorithm {0}")]
    UnsupportedHash(String),
    #[error("the signed attributes do not match the token: {0}")]
    BadAttributes(String),
    #[error("the TSA certificate is not in the token and was not supplied")]
    NoCertificate,
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the TSA certificate is not for time-stamping: {0}")]
    NotATsa(String),
    #[error("the TSA certificate does not chain to a trusted root: {0}")]
    Untrusted(String),
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub gen_time_unix: u64,
    pub serial_hex: String,
    pub policy: String,
    pub hash_algorithm: &'static str,
    pub tsa_subject: String,
    pub chain: Vec<String>,
}

fn malformed(e: impl std::fmt::Display) -> TokenError {
    TokenError::Malformed(e.to_string())
}

/// Accepts a TimeStampResp or a bare token (ContentInfo) and returns the token.
pub fn token_from_reply_or_token(bytes: &[u8]) -> Result<ContentInfo, TokenError> {
    if let Ok(ci) = ContentInfo::from_der(bytes) {
        if ci.content_type == OID_SIGNED_DATA {
            return Ok(ci);
        }
    }
    #[derive(der::Sequence)]
    struct Reply {
        status: der::Any,
        #[asn1(optional = "true")]
        token: Option<ContentInfo>,
    }
    let reply = Reply::from_der(bytes).map_err(malformed)?;
    reply.token.ok_or(TokenError::Rejected)
}

/// Verifies `token` over the data read from `data`, with `extra` certificates
/// (TSA certificate, intermediates) and `roots` as trust anchors.
pub fn verify_token(
    token: &ContentInfo,
    data: &mut dyn Read,
    extra: &[Certificate],
    roots: &[Certificate],
) -> Result<VerifiedToken, TokenError> {
    if token.content_type != OID_SIGNED_DATA {
        return Err(malformed("not SignedData"));
    }
    let sd: SignedData = token.content.decode_as().map_err(malformed)?;
    if sd.encap_content_info.econtent_type != OID_TST_INFO {
        return Err(malformed("content is not a TSTInfo"));
    }
    let econtent = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| malformed("no TSTInfo"))?;
    let tst_der = OctetString::from_der(&econtent.to_der().map_err(malformed)?)
        .map_err(malformed)?
        .into_bytes();
    let tst = TstInfo::from_der(&tst_der).map_err(malformed)?;

    let imprint_alg = tst.message_imprint.hash_algorithm.oid;
    let (_, hash_name, _) = ACCEPTED_DIGESTS
        .iter()
        .find(|(oid, _, _)| *oid == imprint_alg)
        .ok_or_else(|| TokenError::UnsupportedHash(imprint_alg.to_string()))?;
    if hash_reader(imprint_alg, data)? != tst.message_imprint.hashed_message.as_bytes() {
        return Err(TokenError::ImprintMismatch);
    }

    let signer = sd
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or_else(|| malformed("no SignerInfo"))?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| TokenError::BadAttributes("no signed attributes".into()))?;
    let attr = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
            .ok_or_else(|| TokenError::BadAttributes(format!("missing {oid}")))
    };
    let content_type: ObjectIdentifier = attr(OID_CONTENT_TYPE)?.decode_as().map_err(malformed)?;
    if content_type != OID_TST_INFO {
        return Err(TokenError::BadAttributes(
            "contentType is not TSTInfo".into(),
        ));
    }
    let message_digest: OctetString = attr(OID_MESSAGE_DIGEST)?.decode_as().map_err(malformed)?;
    let content_digest = hash_reader(signer.digest_alg.oid, &mut tst_der.as_slice())?;
    if message_digest.as_bytes() != content_digest {
        return Err(TokenError::BadAttributes(
            "messageDigest does not match the TSTInfo".into(),
        ));
    }

    let mut candidates: Vec<Certificate> = extra.to_vec();
    if let Some(set) = &sd.certificates {
        for c in set.0.iter() {
            if let cms::cert::CertificateChoices::Certificate(c) = c {
                candidates.push(c.clone());
            }
        }
    }
    let tsa_cert = match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => candidates.iter().find(|c| {
            c.tbs_certificate.issuer == ias.issuer
                && c.tbs_certificate.serial_number == ias.serial_number
        }),
        SignerIdentifier::SubjectKeyIdentifier(_) => candidates.first(),
    }
    .ok_or(TokenError::NoCertificate)?
    .clone();

    // RFC 5816: the signing certificate the TSA names must be this one.
    let scv2 = attr(OID_SIGNING_CERTIFICATE_V2)
        .map_err(|_| TokenError::BadAttributes("no signingCertificateV2".into()))?;
    let cert_hash = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &tsa_cert.to_der().map_err(malformed)?,
    );
    let scv2_der = scv2.to_der().map_err(malformed)?;
    if !scv2_der.windows(32).any(|w| w == cert_hash.as_ref()) {
        return Err(TokenError::BadAttributes(
            "signingCertificateV2 names another certificate".into(),
        ));
    }

    let signed = attrs.to_der().map_err(malformed)?;
    verify_signature(
        &tsa_cert.tbs_certificate.subject_public_key_info,
        &signer.signature_algorithm,
        &signed,
        signer.signature.as_bytes(),
        &[kexin_hsm::SM2_DEFAULT_ID],
    )
    .map_err(|_| TokenError::BadSignature)?;

    check_tsa_eku(&tsa_cert)?;
    let gen_time = tst.gen_time.to_unix_duration().as_secs();
    let chain = kexin_ca::verify::build_chain(&tsa_cert, &candidates, roots, gen_time)
        .map_err(TokenError::Untrusted)?;
    Ok(VerifiedToken {
        gen_time_unix: gen_time,
        serial_hex: hex::encode(tst.serial_number.as_bytes()),
        policy: tst.policy.to_string(),
        hash_algorithm: hash_name,
        tsa_subject: tsa_cert.tbs_certificate.subject.to_string(),
        chain,
    })
}

fn hash_reader(alg: ObjectIdentifier, data: &mut dyn Read) -> Result<Vec<u8>, TokenError> {
    kexin_ca::cms::DigestAlgorithm::from_oid(&alg)
        .ok_or_else(|| TokenError::UnsupportedHash(alg.to_string()))?
        .digest_reader(data)
        .map_err(malformed)
}

/// RFC 3161 §2.3: extendedKeyUsage present, critical, timeStamping only.
fn check_tsa_eku(cert: &Certificate) -> Result<(), TokenError> {
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ExtendedKeyUsage::OID)
        .ok_or_else(|| TokenError::NotATsa("no extendedKeyUsage".into()))?;
    if !ext.critical {
        return Err(TokenError::NotATsa(
            "extendedKeyUsage is not critical".into(),
        ));
    }
    let eku = ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).map_err(malformed)?;
    if eku.0 != [OID_KP_TIME_STAMPING] {
        return Err(TokenError::NotATsa(
            "extendedKeyUsage is not timeStamping alone".into(),
        ));
    }
    Ok(())
}
