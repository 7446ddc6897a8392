//! The CMS SignedData of a seal, over a digest computed elsewhere (a file
//! hashed as it streams, a PDF's byte range): the CAdES/PAdES baseline
//! signed attributes, the signature made by the key store, and for B-T
//! and above a signature time-stamp from Kexin's TSA.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, GeneralizedTime, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode};
use kexin_ca::cms::{
    attribute, certificate_set, DigestAlgorithm, SigningCertificateV2, OID_CONTENT_TYPE, OID_DATA,
    OID_MESSAGE_DIGEST, OID_SIGNATURE_TIME_STAMP, OID_SIGNED_DATA, OID_SIGNING_CERTIFICATE_V2,
    OID_SIGNING_TIME,
};
use kexin_hsm::{KeyAlgorithm, KeyStore, SignatureAlgorithm};
use kexin_timestamp::log::Durability;
use kexin_timestamp::TimeStampAuthority;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use kexin_ca::hierarchy::chain_of;

use crate::registry::Seal;
use crate::validation::ValidationData;
use crate::{der_err, Error};

/// ETSI baseline levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Basic: signed attributes bind the signing certificate.
    BB,
    /// With a signature time-stamp.
    BT,
    /// With the certificates and revocation data needed to validate later.
    BLT,
    /// With a document or archive time-stamp over all of it (PDF only).
    BLTA,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BB => "b-b",
            Self::BT => "b-t",
            Self::BLT => "b-lt",
            Self::BLTA => "b-lta",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "b-b" => Ok(Self::BB),
            "b-t" => Ok(Self::BT),
            "b-lt" => Ok(Self::BLT),
            "b-lta" => Ok(Self::BLTA),
            _ => Err(Error::InvalidInput(format!(
                "unknown level {s:?}; use b-b, b-t, b-lt or b-lta"
            ))),
        }
    }
}

/// A seal ready to sign: its key in the store and its certificate chain.
pub struct SealSigner {
    store: Arc<dyn KeyStore>,
    key_label: String,
    pub signature: SignatureAlgorithm,
    pub certificate: Certificate,
    /// Issuing CA first, root last.
    pub chain: Vec<Certificate>,
    /// Every CA certificate, to embed the TSA's chain beside its token.
    authorities: Vec<Certificate>,
}

/// How the SignedData is to be made.
pub struct SignOptions<'a> {
    /// CAdES carries signing-time; PAdES must not (the time is in /M).
    pub signing_time: bool,
    pub level: Level,
    pub tsa: Option<&'a TimeStampAuthority>,
    /// When the tokens' log entries are flushed: with the caller's audit
    /// entry, where it writes one before releasing what it signed.
    pub token_durability: Durability,
    /// For B-LT CAdES: certificates and CRLs to embed in the SignedData.
    pub validation: Option<&'a ValidationData>,
    /// Who asked, for the TSA's token log.
    pub requester: &'a str,
}

impl SealSigner {
    pub fn new(
        store: Arc<dyn KeyStore>,
        seal: &Seal,
        authorities: &[Certificate],
    ) -> Result<Self, Error> {
        let key =
            KeyAlgorithm::from_spki(&seal.certificate.tbs_certificate.subject_public_key_info)?;
        Ok(Self {
            store,
            key_label: seal.row.key_label.clone(),
            signature: key.default_signature(),
            chain: chain_of(&seal.certificate, authorities),
            certificate: seal.certificate.clone(),
            authorities: authorities.to_vec(),
        })
    }

    pub fn digest_algorithm(&self) -> DigestAlgorithm {
        DigestAlgorithm::for_signature(self.signature)
    }

    /// A detached SignedData (DER ContentInfo) over content whose digest
    /// (with [`Self::digest_algorithm`]) is `content_digest`.
    pub async fn sign_digest(
        &self,
        content_digest: &[u8],
        opts: &SignOptions<'_>,
    ) -> Result<Vec<u8>, Error> {
        let digest = self.digest_algorithm();
        let digest_alg = AlgorithmIdentifierOwned {
            oid: digest.oid(),
            parameters: None,
        };
        let mut attrs = vec![
            attribute(OID_CONTENT_TYPE, Any::from(&OID_DATA))?,
            attribute(
                OID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(content_digest).map_err(der_err)?)
                    .map_err(der_err)?,
            )?,
            attribute(
                OID_SIGNING_CERTIFICATE_V2,
                Any::encode_from(&SigningCertificateV2::for_certificate(&self.certificate)?)
                    .map_err(der_err)?,
            )?,
        ];
        if opts.signing_time {
            attrs.push(attribute(OID_SIGNING_TIME, signing_time()?)?);
        }
        let signed_attrs = SetOfVec::try_from(attrs).map_err(der_err)?;
        let to_sign = signed_attrs.to_der().map_err(der_err)?;
        let signature =
            kexin_hsm::sign_async(&self.store, &self.key_label, self.signature, to_sign).await?;
        let unsigned_attrs = if opts.level >= Level::BT {
            let tsa = opts
                .tsa
                .ok_or_else(|| Error::InvalidInput("a time-stamped level needs the TSA".into()))?;
            let imprint = DigestAlgorithm::Sha256.digest(&signature);
            let token = tsa
                .stamp(
                    DigestAlgorithm::Sha256.oid(),
                    &imprint,
                    opts.requester,
                    opts.token_durability,
                )
                .await?;
            let token = Any::from_der(&token).map_err(der_err)?;
            Some(
                SetOfVec::try_from(vec![attribute(OID_SIGNATURE_TIME_STAMP, token)?])
                    .map_err(der_err)?,
            )
        } else {
            None
        };
        let tbs = &self.certificate.tbs_certificate;
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer.clone(),
                serial_number: tbs.serial_number.clone(),
            }),
            digest_alg: digest_alg.clone(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm: self.signature.algorithm_identifier(),
            signature: OctetString::new(signature).map_err(der_err)?,
            unsigned_attrs,
        };
        let mut certs = vec![self.certificate.clone()];
        certs.extend(self.chain.iter().cloned());
        // The token carries the TSA certificate; its CAs come with the
        // signature so that a relying party needs only the root.
        if let (true, Some(tsa)) = (opts.level >= Level::BT, opts.tsa) {
            for c in chain_of(&tsa.certificate(), &self.authorities) {
                if !certs.contains(&c) {
                    certs.push(c);
                }
            }
        }
        let mut crls = None;
        if let Some(v) = opts.validation {
            for c in &v.certificates {
                if !certs.contains(c) {
                    certs.push(c.clone());
                }
            }
            crls = Some(v.crl_choices()?);
        }
        let signed_data = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(der_err)?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: OID_DATA,
                econtent: None,
            },
            certificates: Some(certificate_set(&certs)?),
            crls,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(der_err)?),
        };
        ContentInfo {
            content_type: OID_SIGNED_DATA,
            content: Any::encode_from(&signed_data).map_err(der_err)?,
        }
        .to_der()
        .map_err(der_err)
    }
}

/// signing-time: UTCTime until 2049, GeneralizedTime after (RFC 5652 §11.3).
fn signing_time() -> Result<Any, Error> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = Duration::from_secs(now.as_secs());
    match UtcTime::from_unix_duration(secs) {
        Ok(t) => Any::encode_from(&t).map_err(der_err),
        Err(_) => Any::encode_from(&GeneralizedTime::from_unix_duration(secs).map_err(der_err)?)
            .map_err(der_err),
    }
}
