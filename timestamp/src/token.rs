//! The time-stamp token: a TSTInfo in a CMS SignedData signed with the TSA
//! key, carrying signingCertificateV2 (RFC 5816) so the token is bound to
//! the exact TSA certificate.

use std::time::{Duration, SystemTime};

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{Any, GeneralizedTime, Int, OctetString, SetOfVec};
use der::{Encode, Sequence};
use kexin_hsm::SignatureAlgorithm;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_tsp::{Accuracy, TspVersion, TstInfo};

use crate::log::LogEntry;
use crate::request::ValidatedRequest;
use crate::{Error, TimeStampAuthority};

pub const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub const OID_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");

/// IssuerSerial (RFC 5035).
#[derive(Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial: SerialNumber,
}

/// ESSCertIDv2 with the default hash (SHA-256), so hashAlgorithm is omitted.
#[derive(Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
    issuer_serial: IssuerSerial,
}

#[derive(Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

fn enc(e: der::Error) -> Error {
    Error::Encoding(e.to_string())
}

/// The digest of the content and signed attributes that goes with each
/// signature scheme.
type DigestFn = fn(&[u8]) -> Vec<u8>;

fn digest_for(sig: SignatureAlgorithm) -> (ObjectIdentifier, DigestFn) {
    use aws_lc_rs::digest as d;
    match sig {
        SignatureAlgorithm::EcdsaSha384 => {
            (OID_SHA384, |m| d::digest(&d::SHA384, m).as_ref().to_vec())
        }
        SignatureAlgorithm::Ed25519 => (OID_SHA512, |m| d::digest(&d::SHA512, m).as_ref().to_vec()),
        SignatureAlgorithm::Sm2Sm3 => (OID_SM3, |m| {
            use sm3::Digest;
            sm3::Sm3::digest(m).to_vec()
        }),
        _ => (OID_SHA256, |m| d::digest(&d::SHA256, m).as_ref().to_vec()),
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(enc)?,
    })
}

fn random_serial() -> Result<Vec<u8>, Error> {
    use aws_lc_rs::rand::SecureRandom;
    let mut b = vec![0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Encoding("system RNG failed".into()))?;
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
    let serial = random_serial()?;
    let now = SystemTime::now();
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
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

    let (digest_oid, digest) = digest_for(tsa.signature);
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest_oid,
        parameters: None,
    };
    let cert_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &tsa.certificate_der);
    let signing_certificate = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            cert_hash: OctetString::new(cert_hash.as_ref()).map_err(enc)?,
            issuer_serial: IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(cert_tbs.issuer.clone())],
                serial: cert_tbs.serial_number.clone(),
            },
        }],
    };
    let signed_attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![
        attribute(OID_CONTENT_TYPE, Any::from(&OID_TST_INFO))?,
        attribute(
            OID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(digest(&tst_der)).map_err(enc)?).map_err(enc)?,
        )?,
        attribute(
            OID_SIGNING_CERTIFICATE_V2,
            Any::encode_from(&signing_certificate).map_err(enc)?,
        )?,
    ])
    .map_err(enc)?;
    let to_sign = signed_attrs.to_der().map_err(enc)?;
    let (store, label, alg) = (tsa.store.clone(), tsa.key_label.clone(), tsa.signature);
    let signature = tokio::task::spawn_blocking(move || store.sign(&label, alg, &to_sign))
        .await
        .map_err(|e| Error::Encoding(format!("signing task: {e}")))??;

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
    let certificates = if req.cert_req {
        Some(CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(
                tsa.certificate.clone(),
            )])
            .map_err(enc)?,
        ))
    } else {
        None
    };
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
