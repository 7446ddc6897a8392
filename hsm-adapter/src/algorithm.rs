//! Key and signature algorithms, and how they appear on the wire.
//!
//! Signatures returned by a [`crate::KeyStore`] are always in the form that
//! X.509, CMS, OCSP and TLS carry: a DER `SEQUENCE { r, s }` for ECDSA and
//! SM2, the raw modulus-sized block for RSA, and 64 raw bytes for Ed25519.

use std::fmt;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, BitString, Int, ObjectIdentifier as Oid, OctetString, Uint};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::Error;

/// id-ecPublicKey (RFC 5480).
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1.
pub const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1.
pub const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// The SM2 curve (GM/T 0006).
pub const OID_SM2_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.301");
/// rsaEncryption (RFC 8017).
pub const OID_RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-Ed25519 (RFC 8410).
pub const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// ecdsa-with-SHA256.
pub const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// ecdsa-with-SHA384.
pub const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// sha256WithRSAEncryption.
pub const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
/// id-RSASSA-PSS.
pub const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-mgf1.
pub const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
/// id-sha256.
pub const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// SM2-with-SM3 signature (GM/T 0006).
pub const OID_SM2_SM3: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.156.10197.1.501");

/// The user ID that GM/T 0009 prescribes for SM2 signatures when none is agreed.
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// The kind of key pair a key store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
    Sm2,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 7] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
        Self::Ed25519,
        Self::Sm2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa4096 => "rsa-4096",
            Self::Ed25519 => "ed25519",
            Self::Sm2 => "sm2",
        }
    }

    /// The signature algorithm a CA uses with this key unless told otherwise.
    pub fn default_signature(self) -> SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => SignatureAlgorithm::EcdsaSha256,
            Self::EcdsaP384 => SignatureAlgorithm::EcdsaSha384,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => SignatureAlgorithm::RsaPkcs1Sha256,
            Self::Ed25519 => SignatureAlgorithm::Ed25519,
            Self::Sm2 => SignatureAlgorithm::Sm2Sm3,
        }
    }

    /// Whether `sig` can be made with a key of this kind.
    pub fn supports(self, sig: SignatureAlgorithm) -> bool {
        match sig {
            // Each curve is used with the hash of matching strength (RFC 5480 §4).
            SignatureAlgorithm::EcdsaSha256 => self == Self::EcdsaP256,
            SignatureAlgorithm::EcdsaSha384 => self == Self::EcdsaP384,
            SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::RsaPssSha256 => self.is_rsa(),
            SignatureAlgorithm::Ed25519 => self == Self::Ed25519,
            SignatureAlgorithm::Sm2Sm3 => self == Self::Sm2,
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    /// Recognises the key algorithm of a DER SubjectPublicKeyInfo.
    pub fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, Error> {
        let alg = &spki.algorithm;
        if alg.oid == OID_EC_PUBLIC_KEY {
            let curve: Oid = alg
                .parameters
                .as_ref()
                .ok_or_else(|| Error::InvalidKey("EC key without curve parameters".into()))?
                .decode_as()
                .map_err(|e| Error::InvalidKey(format!("EC curve parameters: {e}")))?;
            return match curve {
                c if c == OID_P256 => Ok(Self::EcdsaP256),
                c if c == OID_P384 => Ok(Self::EcdsaP384),
                c if c == OID_SM2_CURVE => Ok(Self::Sm2),
                c => Err(Error::UnsupportedAlgorithm(format!("EC curve {c}"))),
            };
        }
        if alg.oid == OID_ED25519 {
            return Ok(Self::Ed25519);
        }
        if alg.oid == OID_RSA_ENCRYPTION {
            let bits = rsa_modulus_bits(spki.subject_public_key.raw_bytes())?;
            return match bits {
                2048 => Ok(Self::Rsa2048),
                3072 => Ok(Self::Rsa3072),
                4096 => Ok(Self::Rsa4096),
                b => Err(Error::UnsupportedAlgorithm(format!("RSA-{b}"))),
            };
        }
        Err(Error::UnsupportedAlgorithm(format!(
            "public key algorithm {}",
            alg.oid
        )))
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::UnsupportedAlgorithm(s.to_owned()))
    }
}

/// A signature scheme: key type, hash and padding together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    EcdsaSha256,
    EcdsaSha384,
    RsaPkcs1Sha256,
    RsaPssSha256,
    Ed25519,
    /// SM2 with SM3 and the default user ID [`SM2_DEFAULT_ID`].
    Sm2Sm3,
}

impl SignatureAlgorithm {
    /// The AlgorithmIdentifier that names this scheme in a certificate, CRL,
    /// OCSP response or CMS SignerInfo.
    pub fn algorithm_identifier(self) -> AlgorithmIdentifierOwned {
        let bare = |oid| AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        };
        match self {
            Self::EcdsaSha256 => bare(OID_ECDSA_SHA256),
            Self::EcdsaSha384 => bare(OID_ECDSA_SHA384),
            Self::Ed25519 => bare(OID_ED25519),
            Self::Sm2Sm3 => bare(OID_SM2_SM3),
            Self::RsaPkcs1Sha256 => AlgorithmIdentifierOwned {
                oid: OID_SHA256_RSA,
                parameters: Some(der::asn1::Null.into()),
            },
            Self::RsaPssSha256 => AlgorithmIdentifierOwned {
                oid: OID_RSASSA_PSS,
                parameters: Some(
                    der::Any::from_der(&pss_sha256_params())
                        .expect("static PSS parameters are valid DER"),
                ),
            },
        }
    }
}

/// RSASSA-PSS-params for SHA-256, MGF1 with SHA-256, 32-byte salt (RFC 4055).
fn pss_sha256_params() -> Vec<u8> {
    // Built by hand because the structure is fixed and small; every field is
    // explicitly tagged, so the encoding is spelled out once here.
    let sha256 = AlgorithmIdentifierOwned {
        oid: OID_SHA256,
        parameters: Some(der::asn1::Null.into()),
    }
    .to_der()
    .expect("encode");
    let mgf1 = AlgorithmIdentifierOwned {
        oid: OID_MGF1,
        parameters: Some(der::Any::from_der(&sha256).expect("reparse")),
    }
    .to_der()
    .expect("encode");
    let explicit = |tag: u8, inner: &[u8]| {
        let mut v = vec![0xa0 | tag];
        v.extend(der_len(inner.len()));
        v.extend_from_slice(inner);
        v
    };
    let salt = Int::new(&[32]).expect("int").to_der().expect("encode");
    let mut body = explicit(0, &sha256);
    body.extend(explicit(1, &mgf1));
    body.extend(explicit(2, &salt));
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else if len < 0x100 {
        vec![0x81, len as u8]
    } else {
        vec![0x82, (len >> 8) as u8, len as u8]
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaSha256 => "ecdsa-sha256",
            Self::EcdsaSha384 => "ecdsa-sha384",
            Self::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
            Self::RsaPssSha256 => "rsa-pss-sha256",
            Self::Ed25519 => "ed25519",
            Self::Sm2Sm3 => "sm2-sm3",
        })
    }
}

#[derive(Sequence)]
struct EcdsaSigValue {
    r: Uint,
    s: Uint,
}

/// Converts a fixed-width `r || s` signature (PKCS#11 CKM_ECDSA, the `sm2`
/// crate) into the DER `SEQUENCE { INTEGER r, INTEGER s }` of X.509.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(Error::Backend(format!(
            "raw ECDSA signature of odd length {}",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let int = |b: &[u8]| Uint::new(b).map_err(|e| Error::Backend(e.to_string()));
    EcdsaSigValue {
        r: int(r)?,
        s: int(s)?,
    }
    .to_der()
    .map_err(|e| Error::Backend(e.to_string()))
}

/// The inverse of [`ecdsa_raw_to_der`]: DER `SEQUENCE { r, s }` to `r || s`,
/// each left-padded to `field_len` bytes.
pub fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Result<Vec<u8>, Error> {
    let sig =
        EcdsaSigValue::from_der(der).map_err(|e| Error::InvalidKey(format!("signature: {e}")))?;
    let mut out = vec![0u8; field_len * 2];
    for (i, v) in [sig.r.as_bytes(), sig.s.as_bytes()].into_iter().enumerate() {
        if v.len() > field_len {
            return Err(Error::InvalidKey("signature component too long".into()));
        }
        out[(i + 1) * field_len - v.len()..(i + 1) * field_len].copy_from_slice(v);
    }
    Ok(out)
}

/// Builds a SubjectPublicKeyInfo for an EC point on `curve`.
pub fn ec_spki(curve: ObjectIdentifier, point: &[u8]) -> Result<Vec<u8>, Error> {
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(der::Any::from(&curve)),
        },
        subject_public_key: BitString::from_bytes(point)
            .map_err(|e| Error::Backend(e.to_string()))?,
    }
    .to_der()
    .map_err(|e| Error::Backend(e.to_string()))
}

/// Builds a SubjectPublicKeyInfo for an Ed25519 public key.
pub fn ed25519_spki(key: &[u8]) -> Result<Vec<u8>, Error> {
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_ED25519,
            parameters: None,
        },
        subject_public_key: BitString::from_bytes(key)
            .map_err(|e| Error::Backend(e.to_string()))?,
    }
    .to_der()
    .map_err(|e| Error::Backend(e.to_string()))
}

#[derive(Sequence)]
struct RsaPublicKey {
    modulus: Uint,
    public_exponent: Uint,
}

/// Builds a SubjectPublicKeyInfo for an RSA key from its big-endian modulus
/// and exponent.
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, Error> {
    let key = RsaPublicKey {
        modulus: Uint::new(modulus).map_err(|e| Error::Backend(e.to_string()))?,
        public_exponent: Uint::new(exponent).map_err(|e| Error::Backend(e.to_string()))?,
    }
    .to_der()
    .map_err(|e| Error::Backend(e.to_string()))?;
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        subject_public_key: BitString::from_bytes(&key)
            .map_err(|e| Error::Backend(e.to_string()))?,
    }
    .to_der()
    .map_err(|e| Error::Backend(e.to_string()))
}

fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Result<usize, Error> {
    let key = RsaPublicKey::from_der(rsa_public_key)
        .map_err(|e| Error::InvalidKey(format!("RSA public key: {e}")))?;
    let bytes = key.modulus.as_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let mag = &bytes[first..];
    Ok(match mag.first() {
        Some(b) => mag.len() * 8 - b.leading_zeros() as usize,
        None => 0,
    })
}

/// Unwraps a DER OCTET STRING if `bytes` is one; PKCS#11 tokens disagree on
/// whether CKA_EC_POINT is wrapped.
pub(crate) fn maybe_octet_string(bytes: &[u8], expected_len: usize) -> Vec<u8> {
    if bytes.len() != expected_len {
        if let Ok(os) = OctetString::from_der(bytes) {
            return os.as_bytes().to_vec();
        }
    }
    bytes.to_vec()
}

/// DER encoding of a named-curve OID, as CKA_EC_PARAMS wants it.
pub(crate) fn curve_params_der(curve: ObjectIdentifier) -> Vec<u8> {
    curve.to_der().expect("OID encodes")
}

/// Parses CKA_EC_PARAMS into a curve OID.
pub(crate) fn curve_from_params(params: &[u8]) -> Option<ObjectIdentifier> {
    if let Ok(oid) = Oid::from_der(params) {
        return Some(oid);
    }
    // Some tokens return the curve name as a PrintableString for Edwards keys.
    AnyRef::from_der(params).ok().and_then(|any| {
        let s = std::str::from_utf8(any.value()).ok()?;
        (s == "edwards25519").then_some(OID_ED25519)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_to_der_adds_sign_padding() {
        let mut raw = vec![0x80; 32];
        raw.extend(vec![0x01; 32]);
        let der = ecdsa_raw_to_der(&raw).unwrap();
        let parsed = EcdsaSigValue::from_der(&der).unwrap();
        assert_eq!(parsed.r.as_bytes().len(), 32);
        assert_eq!(&der[2..5], &[0x02, 0x21, 0x00]);
        assert_eq!(parsed.s.as_bytes().len(), 32);
    }

    #[test]
    fn raw_to_der_strips_leading_zeros() {
        let mut raw = vec![0x00; 31];
        raw.push(0x05);
        raw.extend(vec![0x7f; 32]);
        let der = ecdsa_raw_to_der(&raw).unwrap();
        let parsed = EcdsaSigValue::from_der(&der).unwrap();
        assert_eq!(parsed.r.as_bytes(), &[0x05]);
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<KeyAlgorithm>().unwrap(), alg);
        }
        assert!("dsa-1024".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn pss_identifier_is_rfc4055() {
        let der = SignatureAlgorithm::RsaPssSha256
            .algorithm_identifier()
            .to_der()
            .unwrap();
        // Compare with the encoding OpenSSL produces for the same parameters.
        assert_eq!(
            hex::encode(der),
            "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120"
        );
    }
}
