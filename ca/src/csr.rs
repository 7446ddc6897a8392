//! PKCS#10 certificate signing requests: parsed, and their proof of
//! possession (the CSR's own signature) checked. Only the subject, the key
//! and the requested names are taken from a CSR; the profile decides every
//! extension.

use const_oid::db::rfc5912::ID_EXTENSION_REQ;
use const_oid::AssociatedOid;
use der::asn1::{AnyRef, Ia5StringRef, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Reader, SliceReader};
use kexin_hsm::{KeyAlgorithm, SM2_DEFAULT_ID};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::Extensions;
use x509_cert::name::Name;
use x509_cert::request::CertReq;

use crate::verify::{verify_signature, VerifyError};

/// Largest CSR accepted, in bytes (an RSA-4096 CSR with many names is ~2 KiB).
pub const MAX_CSR_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("CSR is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("CSR is not valid DER or PEM: {0}")]
    Malformed(String),
    #[error("CSR signature (proof of possession) does not verify: {0}")]
    ProofOfPossession(VerifyError),
    #[error("CSR subject attribute {0} has a string type Kexin does not accept")]
    SubjectEncoding(String),
}

/// The to-be-signed part of a CSR for `public_key`, naming `subject` and
/// asking for `names` (DNS names, IP addresses) in a subjectAltName; its
/// DER is what the key signs ([`assemble`]). For a key in the key store,
/// which Kexin presents to another CA to be certified by it.
pub fn request_info(
    subject: Name,
    public_key: SubjectPublicKeyInfoOwned,
    names: &[String],
) -> Result<(x509_cert::request::CertReqInfo, Vec<u8>), crate::Error> {
    use x509_cert::request::{CertReqInfo, ExtensionReq, Version};
    let mut attributes = der::asn1::SetOfVec::new();
    if !names.is_empty() {
        let wanted = ExtensionReq(vec![crate::certificate::subject_alt_name(names, false)?]);
        attributes
            .insert(wanted.try_into().map_err(crate::certificate::der_err)?)
            .map_err(crate::certificate::der_err)?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject,
        public_key,
        attributes,
    };
    let tbs = info.to_der().map_err(crate::certificate::der_err)?;
    Ok((info, tbs))
}

/// The DER CSR of `info` signed with `signature` by `algorithm`.
pub fn assemble(
    info: x509_cert::request::CertReqInfo,
    algorithm: kexin_hsm::SignatureAlgorithm,
    signature: &[u8],
) -> Result<Vec<u8>, crate::Error> {
    CertReq {
        info,
        algorithm: algorithm.algorithm_identifier(),
        signature: der::asn1::BitString::from_bytes(signature)
            .map_err(crate::certificate::der_err)?,
    }
    .to_der()
    .map_err(crate::certificate::der_err)
}

/// A CSR whose signature verified.
#[derive(Clone, Debug)]
pub struct VerifiedCsr {
    pub subject: Vec<(const_oid::ObjectIdentifier, String)>,
    pub public_key: SubjectPublicKeyInfoOwned,
    pub key_algorithm: KeyAlgorithm,
    /// Names from a subjectAltName in the extensionRequest attribute.
    pub requested_names: Vec<GeneralName>,
}

/// Parses a DER or PEM CSR and verifies its signature. SM2 CSRs are
/// accepted with the GM/T default ID, or with the empty ID that OpenSSL 3.0
/// signs with.
pub fn parse_and_verify(bytes: &[u8]) -> Result<VerifiedCsr, CsrError> {
    if bytes.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge);
    }
    let der_bytes;
    let der: &[u8] = if bytes.starts_with(b"-----BEGIN") {
        // Decode the armour first and parse DER from a slice: der 0.7's
        // streaming PEM reader loops forever on a body shorter than the
        // length it declares (found by the csr fuzz target).
        let (label, decoded) =
            der::pem::decode_vec(bytes).map_err(|e| CsrError::Malformed(e.to_string()))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(CsrError::Malformed(format!(
                "PEM label {label:?} is not a certificate request"
            )));
        }
        der_bytes = decoded;
        &der_bytes
    } else {
        bytes
    };
    let req = CertReq::from_der(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    let info = raw_first_element(der).map_err(|e| CsrError::Malformed(e.to_string()))?;
    let key_algorithm = verify_signature(
        &req.info.public_key,
        &req.algorithm,
        &info,
        req.signature.raw_bytes(),
        &[SM2_DEFAULT_ID, ""],
    )
    .map_err(CsrError::ProofOfPossession)?;
    let mut requested_names = Vec::new();
    for attr in req.info.attributes.iter() {
        if attr.oid != ID_EXTENSION_REQ {
            continue;
        }
        for value in attr.values.iter() {
            let exts = Extensions::from_der(
                &value
                    .to_der()
                    .map_err(|e| CsrError::Malformed(e.to_string()))?,
            )
            .map_err(|e| CsrError::Malformed(format!("extensionRequest: {e}")))?;
            for ext in exts.iter().filter(|e| e.extn_id == SubjectAltName::OID) {
                let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                    .map_err(|e| CsrError::Malformed(format!("subjectAltName: {e}")))?;
                requested_names.extend(san.0);
            }
        }
    }
    Ok(VerifiedCsr {
        subject: name_attributes(&req.info.subject)?,
        public_key: req.info.public_key,
        key_algorithm,
        requested_names,
    })
}

/// The exact bytes of the first element of a DER SEQUENCE: what a CSR's
/// signature covers, whatever our re-encoding would produce.
pub fn raw_first_element(der: &[u8]) -> der::Result<Vec<u8>> {
    let outer = AnyRef::from_der(der)?;
    let mut reader = SliceReader::new(outer.value())?;
    let first: AnyRef<'_> = reader.decode()?;
    first.to_der()
}

/// A name's attributes in order, as (type, string value).
pub fn name_attributes(
    name: &Name,
) -> Result<Vec<(const_oid::ObjectIdentifier, String)>, CsrError> {
    let mut out = Vec::new();
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            let v = &atv.value;
            let s = Utf8StringRef::try_from(v)
                .map(|s| s.as_str().to_owned())
                .or_else(|_| PrintableStringRef::try_from(v).map(|s| s.as_str().to_owned()))
                .or_else(|_| Ia5StringRef::try_from(v).map(|s| s.as_str().to_owned()))
                .map_err(|_| CsrError::SubjectEncoding(atv.oid.to_string()))?;
            out.push((atv.oid, s));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input that made der's PEM reader spin forever.
    #[test]
    fn truncated_pem_body_is_an_error_not_a_hang() {
        let input =
            b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(
            parse_and_verify(input),
            Err(CsrError::Malformed(_))
        ));
    }

    /// A CSR built for a key-store key passes Kexin's own proof-of-
    /// possession check with its subject and names; altered, it fails.
    #[test]
    fn built_requests_verify_and_carry_their_names() {
        use kexin_hsm::{KdfParams, KeyStore, SoftKeyStore};
        let dir = tempfile::tempdir().unwrap();
        let params = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let store = SoftKeyStore::create(dir.path(), b"passphrase for tests", params).unwrap();
        let public = store.generate("https", KeyAlgorithm::EcdsaP256).unwrap();
        let subject = crate::certificate::DistinguishedName::new()
            .common_name("kexin.example.gov.cn")
            .to_name()
            .unwrap();
        let names = ["kexin.example.gov.cn".to_owned(), "10.0.0.8".to_owned()];
        let spki = SubjectPublicKeyInfoOwned::from_der(&public.spki_der).unwrap();
        let (info, tbs) = request_info(subject, spki, &names).unwrap();
        let alg = kexin_hsm::SignatureAlgorithm::EcdsaSha256;
        let signature = store.sign("https", alg, &tbs).unwrap();
        let csr = assemble(info, alg, &signature).unwrap();
        let verified = parse_and_verify(&csr).unwrap();
        assert_eq!(verified.requested_names.len(), 2);
        assert_eq!(verified.subject[0].1, "kexin.example.gov.cn");
        let mut altered = csr.clone();
        let at = altered.len() / 3;
        altered[at] ^= 1;
        assert!(parse_and_verify(&altered).is_err());
    }

    #[test]
    fn other_pem_labels_are_refused() {
        let input = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let err = parse_and_verify(input).unwrap_err().to_string();
        assert!(err.contains("not a certificate request"), "{err}");
    }
}
