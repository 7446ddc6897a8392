//! Pieces of CMS SignedData (RFC 5652) shared by every signer of Kexin:
//! time-stamp tokens, CAdES signatures, PDF seals. Signed attributes bind
//! the signature to the exact signing certificate (RFC 5035
//! signingCertificateV2, SHA-256).

use cms::cert::CertificateChoices;
use const_oid::ObjectIdentifier;
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Encode, Sequence};
use kexin_hsm::SignatureAlgorithm;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::Certificate;

use crate::certificate::der_err;
use crate::Error;

pub const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
pub const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
pub const OID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
pub const OID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
pub const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// id-aa-signatureTimeStampToken (RFC 3161 appendix A).
pub const OID_SIGNATURE_TIME_STAMP: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
/// id-ri-ocsp-response (RFC 5940): an OCSP response among a SignedData's CRLs.
pub const OID_RI_OCSP_RESPONSE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.16.2");
pub const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
pub const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
pub const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
pub const OID_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.401");

/// IssuerSerial (RFC 5035).
#[derive(Clone, Debug, Sequence)]
pub struct IssuerSerial {
    pub issuer: Vec<GeneralName>,
    pub serial: SerialNumber,
}

/// ESSCertIDv2 with the default hash (SHA-256), so hashAlgorithm is omitted.
#[derive(Clone, Debug, Sequence)]
pub struct EssCertIdV2 {
    pub cert_hash: OctetString,
    pub issuer_serial: IssuerSerial,
}

#[derive(Clone, Debug, Sequence)]
pub struct SigningCertificateV2 {
    pub certs: Vec<EssCertIdV2>,
}

impl SigningCertificateV2 {
    pub fn for_certificate(cert: &Certificate) -> Result<Self, Error> {
        let der = cert.to_der().map_err(der_err)?;
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        Ok(Self {
            certs: vec![EssCertIdV2 {
                cert_hash: OctetString::new(hash.as_ref()).map_err(der_err)?,
                issuer_serial: IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(
                        cert.tbs_certificate.issuer.clone(),
                    )],
                    serial: cert.tbs_certificate.serial_number.clone(),
                },
            }],
        })
    }
}

/// A single-valued attribute.
pub fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, Error> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(der_err)?,
    })
}

/// The message digest that goes with each signature scheme: what is
/// signed is hashed with the scheme's own hash (SM3 for SM2, SHA-512 for
/// Ed25519 as RFC 8419 says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha256,
    Sha384,
    Sha512,
    Sm3,
}

impl DigestAlgorithm {
    pub fn for_signature(sig: SignatureAlgorithm) -> Self {
        match sig {
            SignatureAlgorithm::EcdsaSha384 => Self::Sha384,
            SignatureAlgorithm::Ed25519 => Self::Sha512,
            SignatureAlgorithm::Sm2Sm3 => Self::Sm3,
            _ => Self::Sha256,
        }
    }

    pub fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha256 => OID_SHA256,
            Self::Sha384 => OID_SHA384,
            Self::Sha512 => OID_SHA512,
            Self::Sm3 => OID_SM3,
        }
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        [Self::Sha256, Self::Sha384, Self::Sha512, Self::Sm3]
            .into_iter()
            .find(|d| d.oid() == *oid)
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish()
    }

    /// The digest of everything `reader` yields, read in 256 KiB chunks so
    /// that memory does not grow with the content.
    pub fn digest_reader(self, reader: &mut dyn std::io::Read) -> std::io::Result<Vec<u8>> {
        let mut hasher = self.hasher();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher.finish());
            }
            hasher.update(&buf[..n]);
        }
    }

    /// An incremental hasher, for content too large to hold in memory.
    pub fn hasher(self) -> Hasher {
        use aws_lc_rs::digest as d;
        match self {
            Self::Sha256 => Hasher::Aws(d::Context::new(&d::SHA256)),
            Self::Sha384 => Hasher::Aws(d::Context::new(&d::SHA384)),
            Self::Sha512 => Hasher::Aws(d::Context::new(&d::SHA512)),
            Self::Sm3 => Hasher::Sm3(Box::default()),
        }
    }
}

pub enum Hasher {
    Aws(aws_lc_rs::digest::Context),
    Sm3(Box<sm3::Sm3>),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Aws(c) => c.update(data),
            Self::Sm3(h) => sm3::Digest::update(h.as_mut(), data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Aws(c) => c.finish().as_ref().to_vec(),
            Self::Sm3(h) => sm3::Digest::finalize(*h).to_vec(),
        }
    }
}

/// Certificates for a SignedData's `certificates` field.
pub fn certificate_set(certs: &[Certificate]) -> Result<cms::signed_data::CertificateSet, Error> {
    Ok(cms::signed_data::CertificateSet(
        SetOfVec::try_from(
            certs
                .iter()
                .cloned()
                .map(CertificateChoices::Certificate)
                .collect::<Vec<_>>(),
        )
        .map_err(der_err)?,
    ))
}
