//! The time-stamp token: a TSTInfo in a CMS SignedData signed with the TSA
//! key, carrying signingCertificateV2 (RFC 5816) so the token is bound to
//! the exact TSA certificate.
//!
//! Everything in a token but the TSTInfo's time, serial, imprint, policy
//! and nonce, the message digest and the signature depends on the TSA
//! alone, so it is DER-encoded once ([`Template`]) and each token is
//! spliced together from those bytes. Encoding the whole structure per
//! token cost about as much as a third of the ECDSA signature.

use std::time::{Duration, SystemTime};

use cms::cert::IssuerAndSerialNumber;
use const_oid::ObjectIdentifier;
use der::asn1::GeneralizedTime;
use der::Encode;
use kexin_ca::cms::{
    DigestAlgorithm, OID_CONTENT_TYPE, OID_MESSAGE_DIGEST, OID_SIGNING_CERTIFICATE_V2,
};
use kexin_hsm::SignatureAlgorithm;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::Certificate;

use crate::log::LogEntry;
use crate::request::ValidatedRequest;
use crate::{Error, TimeStampAuthority};

pub use kexin_ca::cms::OID_SIGNED_DATA;
pub const OID_TST_INFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");

pub(crate) const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OBJECT_IDENTIFIER: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;

fn enc(e: der::Error) -> Error {
    Error::Encoding(e.to_string())
}

/// Appends a DER TLV whose content is `parts`, one after the other.
fn tlv(out: &mut Vec<u8>, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    for part in parts {
        out.extend_from_slice(part);
    }
}

pub(crate) fn wrap(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 6);
    tlv(&mut out, tag, parts);
    out
}

fn oid(oid: &ObjectIdentifier) -> Vec<u8> {
    wrap(OBJECT_IDENTIFIER, &[oid.as_bytes()])
}

/// An Attribute with one value, already DER-encoded.
fn attribute(oid_: &ObjectIdentifier, value: &[u8]) -> Vec<u8> {
    wrap(SEQUENCE, &[&oid(oid_), &wrap(SET, &[value])])
}

/// The DER of every part of a token that only the TSA decides.
#[derive(Debug)]
pub(crate) struct Template {
    digest: DigestAlgorithm,
    /// TSTInfo `accuracy` (an Accuracy SEQUENCE).
    accuracy: Vec<u8>,
    /// TSTInfo `tsa`: `[0] EXPLICIT GeneralName`, the TSA's subject.
    tsa_name: Vec<u8>,
    /// SignedData `digestAlgorithms`: the SET with the one digest algorithm.
    digest_algorithms: Vec<u8>,
    /// SignedData `certificates`: `[0] IMPLICIT CertificateSet`, sent when
    /// a request asks for them.
    certificates: Vec<u8>,
    /// SignerInfo `version`, `sid` and `digestAlgorithm`.
    signer_head: Vec<u8>,
    /// SignerInfo `signatureAlgorithm`.
    signature_algorithm: Vec<u8>,
    /// The content-type and signingCertificateV2 signed attributes.
    content_type_attribute: Vec<u8>,
    signing_certificate_attribute: Vec<u8>,
    /// The OBJECT IDENTIFIERs id-ct-TSTInfo and id-signedData.
    tst_info_type: Vec<u8>,
    signed_data_type: Vec<u8>,
}

impl Template {
    /// `chain` is the TSA certificate followed by its CAs below the root.
    pub(crate) fn new(
        signature: SignatureAlgorithm,
        chain: &[Certificate],
        accuracy_seconds: u64,
    ) -> Result<Self, Error> {
        let certificate = chain
            .first()
            .ok_or_else(|| Error::Encoding("no TSA certificate".into()))?;
        let tbs = &certificate.tbs_certificate;
        let digest = DigestAlgorithm::for_signature(signature);
        let digest_algorithm = spki::AlgorithmIdentifierOwned {
            oid: digest.oid(),
            parameters: None,
        }
        .to_der()
        .map_err(enc)?;
        let accuracy = x509_tsp::Accuracy {
            seconds: Some(accuracy_seconds),
            millis: None,
            micros: None,
        }
        .to_der()
        .map_err(enc)?;
        let tsa_name = GeneralName::DirectoryName(tbs.subject.clone())
            .to_der()
            .map_err(enc)?;
        let mut certificates = kexin_ca::cms::certificate_set(chain)
            .and_then(|set| {
                set.to_der()
                    .map_err(|e| kexin_ca::Error::Encoding(e.to_string()))
            })
            .map_err(|e| Error::Encoding(e.to_string()))?;
        // IMPLICIT [0]: the SET's own encoding under a context tag.
        certificates[0] = CONTEXT_0;
        let sid = IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        }
        .to_der()
        .map_err(enc)?;
        let signing_certificate = kexin_ca::cms::SigningCertificateV2::for_certificate(certificate)
            .and_then(|c| {
                c.to_der()
                    .map_err(|e| kexin_ca::Error::Encoding(e.to_string()))
            })
            .map_err(|e| Error::Encoding(e.to_string()))?;
        let tst_info_type = oid(&OID_TST_INFO);
        Ok(Self {
            digest,
            accuracy,
            tsa_name: wrap(CONTEXT_0, &[&tsa_name]),
            digest_algorithms: wrap(SET, &[&digest_algorithm]),
            certificates,
            signer_head: [&[INTEGER, 1, 1][..], &sid, &digest_algorithm].concat(),
            signature_algorithm: signature.algorithm_identifier().to_der().map_err(enc)?,
            content_type_attribute: attribute(&OID_CONTENT_TYPE, &tst_info_type),
            signing_certificate_attribute: attribute(
                &OID_SIGNING_CERTIFICATE_V2,
                &signing_certificate,
            ),
            tst_info_type,
            signed_data_type: oid(&OID_SIGNED_DATA),
        })
    }

    /// The TSTInfo for a request, stamped `since_epoch` with `serial`.
    fn tst_info(
        &self,
        v: &ValidatedRequest,
        policy: &ObjectIdentifier,
        serial: &[u8],
        since_epoch: Duration,
    ) -> Result<Vec<u8>, Error> {
        let req = &v.request;
        let gen_time =
            GeneralizedTime::from_unix_duration(Duration::from_secs(since_epoch.as_secs()))
                .and_then(|t| t.to_der())
                .map_err(enc)?;
        let nonce = match &req.nonce {
            Some(n) => n.to_der().map_err(enc)?,
            None => Vec::new(),
        };
        Ok(wrap(
            SEQUENCE,
            &[
                &[INTEGER, 1, 1],
                &oid(policy),
                &req.message_imprint.to_der().map_err(enc)?,
                &wrap(INTEGER, &[serial]),
                &gen_time,
                &self.accuracy,
                // ordering: DEFAULT FALSE, so absent.
                &nonce,
                &self.tsa_name,
            ],
        ))
    }

    /// The signed attributes' content, in DER SET OF order.
    fn signed_attributes(&self, tst_info: &[u8]) -> Vec<u8> {
        let message_digest = attribute(
            &OID_MESSAGE_DIGEST,
            &wrap(OCTET_STRING, &[&self.digest.digest(tst_info)]),
        );
        let mut attributes = [
            &self.content_type_attribute[..],
            &message_digest,
            &self.signing_certificate_attribute,
        ];
        attributes.sort_unstable();
        attributes.concat()
    }

    /// The ContentInfo of the token.
    fn token(
        &self,
        tst_info: &[u8],
        attributes: &[u8],
        signature: &[u8],
        with_certificates: bool,
    ) -> Vec<u8> {
        let signer_info = wrap(
            SEQUENCE,
            &[
                &self.signer_head,
                &wrap(CONTEXT_0, &[attributes]),
                &self.signature_algorithm,
                &wrap(OCTET_STRING, &[signature]),
            ],
        );
        let content = wrap(
            SEQUENCE,
            &[
                &self.tst_info_type,
                &wrap(CONTEXT_0, &[&wrap(OCTET_STRING, &[tst_info])]),
            ],
        );
        let certificates: &[u8] = if with_certificates {
            &self.certificates
        } else {
            &[]
        };
        let signed_data = wrap(
            SEQUENCE,
            &[
                &[INTEGER, 1, 3],
                &self.digest_algorithms,
                &content,
                certificates,
                &wrap(SET, &[&signer_info]),
            ],
        );
        wrap(
            SEQUENCE,
            &[&self.signed_data_type, &wrap(CONTEXT_0, &[&signed_data])],
        )
    }
}

/// Signs a token for `v` and logs it; returns the DER ContentInfo.
pub async fn issue(
    tsa: &TimeStampAuthority,
    v: &ValidatedRequest,
    requester: &str,
) -> Result<Vec<u8>, Error> {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let serial = kexin_ca::certificate::serial_at(since_epoch)
        .map_err(|e| Error::Encoding(e.to_string()))?;
    let policy = v.request.req_policy.unwrap_or(tsa.policy);
    let template = &tsa.template;
    let tst_info = template.tst_info(v, &policy, &serial, since_epoch)?;
    let attributes = template.signed_attributes(&tst_info);
    let signature = kexin_hsm::sign_async(
        &tsa.store,
        &tsa.key_label,
        tsa.signature,
        wrap(SET, &[&attributes]),
    )
    .await?;
    let token = template.token(&tst_info, &attributes, &signature, v.request.cert_req);

    tsa.log
        .record(LogEntry {
            serial: hex::encode(serial),
            gen_time_ms: since_epoch.as_millis() as i64,
            policy: policy.to_string(),
            hash_algorithm: v.digest_name.to_owned(),
            message_imprint: hex::encode(v.request.message_imprint.hashed_message.as_bytes()),
            requester: requester.to_owned(),
        })
        .await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::OctetString;

    #[test]
    fn lengths_are_minimal_definite_forms() {
        for (len, header) in [
            (0usize, vec![0x04, 0x00]),
            (127, vec![0x04, 0x7f]),
            (128, vec![0x04, 0x81, 0x80]),
            (255, vec![0x04, 0x81, 0xff]),
            (256, vec![0x04, 0x82, 0x01, 0x00]),
            (70_000, vec![0x04, 0x83, 0x01, 0x11, 0x70]),
        ] {
            let content = vec![0u8; len];
            let encoded = wrap(OCTET_STRING, &[&content]);
            assert_eq!(encoded[..header.len()], header[..], "length {len}");
            let decoded: OctetString = der::Decode::from_der(&encoded).unwrap();
            assert_eq!(decoded.as_bytes().len(), len);
        }
    }
}
