//! The time-stamp token: a TSTInfo in a CMS SignedData signed with the TSA
//! key, carrying signingCertificateV2 (RFC 5816) so the token is bound to
//! the exact TSA certificate.

use std::time::{Duration, SystemTime};

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, GeneralizedTime, Int, OctetString, SetOfVec};
use der::Encode;
use kexin_ca::cms::{
    DigestAlgorithm, OID_CONTENT_TYPE, OID_MESSAGE_DIGEST, OID_SIGNING_CERTIFICATE_V2,
};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_tsp::{Accuracy, TspVersion, TstInfo};

use crate::log::LogEntry;
use crate::request::ValidatedRequest;
use crate::{Error, TimeStampAuthority};

pub use kexin_ca::cms::OID_SIGNED_DATA;
pub const OID_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

fn enc(e: der::Error) -> Error {
    Error::Encoding(e.to_string())
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
    kexin_ca::cms::attribute(oid, value).map_err(|e| Error::Encoding(e.to_string()))
}

/// A 16-byte serial: the issue time in milliseconds (6 bytes, big-endian)
/// then 80 random bits. Unique across restarts and nodes like a fully random
/// one, but in time order, so the token log's primary-key index grows at
/// its right edge instead of dirtying a random page for every token.
fn serial_at(since_epoch: Duration) -> Result<Vec<u8>, Error> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = vec![0u8; 16];
    b[..6].copy_from_slice(&(since_epoch.as_millis() as u64).to_be_bytes()[2..]);
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b[6..])
        .map_err(|_| Error::Encoding("system RNG failed".into()))?;
    // Positive, and a leading byte that DER keeps.
    b[0] = (b[0] & 0x7f).max(1);
    Ok(b)
}

/// Signs a token for `v` and logs it; returns the DER ContentInfo.
pub async fn issue(
    tsa: &TimeStampAuthority,
    v: &ValidatedRequest,
    requester: &str,
) -> Result<Vec<u8>, Error> {
    let req = &v.request;
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let serial = serial_at(since_epoch)?;
    let gen_time = GeneralizedTime::from_unix_duration(Duration::from_secs(since_epoch.as_secs()))
        .map_err(enc)?;
    let cert_tbs = &tsa.certificate.tbs_certificate;
    let tst = TstInfo {
        version: TspVersion::V1,
        policy: req.req_policy.unwrap_or(tsa.policy),
        message_imprint: req.message_imprint.clone(),
        serial_number: Int::new(&serial).map_err(enc)?,
        gen_time,
        accuracy: Some(Accuracy {
            seconds: Some(tsa.accuracy_seconds),
            millis: None,
            micros: None,
        }),
        ordering: false,
        nonce: req.nonce.clone(),
        tsa: Some(GeneralName::DirectoryName(cert_tbs.subject.clone())),
        extensions: None,
    };
    let tst_der = tst.to_der().map_err(enc)?;

    let digest = DigestAlgorithm::for_signature(tsa.signature);
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: None,
    };
    let signed_attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![
        attribute(OID_CONTENT_TYPE, Any::from(&OID_TST_INFO))?,
        attribute(
            OID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest.digest(&tst_der)).map_err(enc)?)
                .map_err(enc)?,
        )?,
        attribute(OID_SIGNING_CERTIFICATE_V2, tsa.signing_certificate.clone())?,
    ])
    .map_err(enc)?;
    let to_sign = signed_attrs.to_der().map_err(enc)?;
    let signature =
        kexin_hsm::sign_async(&tsa.store, &tsa.key_label, tsa.signature, to_sign).await?;

    let signer = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert_tbs.issuer.clone(),
            serial_number: cert_tbs.serial_number.clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: tsa.signature.algorithm_identifier(),
        signature: OctetString::new(signature).map_err(enc)?,
        unsigned_attrs: None,
    };
    let certificates = req.cert_req.then(|| tsa.certificate_set.clone());
    let signed_data = SignedData {
        version: CmsVersion::V3,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: OID_TST_INFO,
            econtent: Some(
                Any::encode_from(&OctetString::new(tst_der).map_err(enc)?).map_err(enc)?,
            ),
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(enc)?),
    };
    let token = ContentInfo {
        content_type: OID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(enc)?,
    }
    .to_der()
    .map_err(enc)?;

    tsa.log
        .record(LogEntry {
            serial: hex::encode(&serial),
            gen_time_ms: since_epoch.as_millis() as i64,
            policy: tst.policy.to_string(),
            hash_algorithm: v.digest_name.to_owned(),
            message_imprint: hex::encode(req.message_imprint.hashed_message.as_bytes()),
            requester: requester.to_owned(),
        })
        .await?;
    Ok(token)
}
