//! Verification of signatures made outside Kexin: CSRs, client
//! certificates, signed requests. Every algorithm of the key stores is
//! accepted, SM2 with the GM/T default user ID included.

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use kexin_hsm::algorithm::{
    OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_ED25519, OID_RSASSA_PSS, OID_SHA256_RSA, OID_SM2_SM3,
};
use kexin_hsm::{KeyAlgorithm, SM2_DEFAULT_ID};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("signature algorithm {signature} does not fit a {key} key")]
    KeyMismatch { signature: String, key: String },
    #[error("malformed public key: {0}")]
    BadKey(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// Verifies `signature` over `message` made by the key `spki` with `alg`.
/// SM2 signatures are tried with each ID in `sm2_ids`, in order.
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    message: &[u8],
    signature: &[u8],
    sm2_ids: &[&str],
) -> Result<KeyAlgorithm, VerifyError> {
    use aws_lc_rs::signature as sig;
    let key = KeyAlgorithm::from_spki(spki).map_err(|e| VerifyError::BadKey(e.to_string()))?;
    let mismatch = || VerifyError::KeyMismatch {
        signature: alg.oid.to_string(),
        key: key.to_string(),
    };
    let raw_key = spki.subject_public_key.raw_bytes();
    let params: &'static dyn sig::VerificationAlgorithm = match (key, alg.oid) {
        (KeyAlgorithm::EcdsaP256, o) if o == OID_ECDSA_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        (KeyAlgorithm::EcdsaP256, o) if o == OID_ECDSA_SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
        (KeyAlgorithm::EcdsaP256, o) if o == OID_ECDSA_SHA512 => &sig::ECDSA_P256_SHA512_ASN1,
        (KeyAlgorithm::EcdsaP384, o) if o == OID_ECDSA_SHA256 => &sig::ECDSA_P384_SHA256_ASN1,
        (KeyAlgorithm::EcdsaP384, o) if o == OID_ECDSA_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        (KeyAlgorithm::EcdsaP384, o) if o == OID_ECDSA_SHA512 => &sig::ECDSA_P384_SHA512_ASN1,
        (KeyAlgorithm::Ed25519, o) if o == OID_ED25519 => &sig::ED25519,
        (k, o) if k.is_rsa() && o == OID_SHA256_RSA => &sig::RSA_PKCS1_2048_8192_SHA256,
        (k, o) if k.is_rsa() && o == OID_SHA384_RSA => &sig::RSA_PKCS1_2048_8192_SHA384,
        (k, o) if k.is_rsa() && o == OID_SHA512_RSA => &sig::RSA_PKCS1_2048_8192_SHA512,
        (k, o) if k.is_rsa() && o == OID_RSASSA_PSS => pss_algorithm(alg)?,
        (KeyAlgorithm::Sm2, o) if o == OID_SM2_SM3 => {
            return verify_sm2(raw_key, message, signature, sm2_ids).map(|()| key)
        }
        (_, o)
            if [
                OID_ECDSA_SHA256,
                OID_ECDSA_SHA384,
                OID_ECDSA_SHA512,
                OID_ED25519,
                OID_SHA256_RSA,
                OID_SHA384_RSA,
                OID_SHA512_RSA,
                OID_RSASSA_PSS,
                OID_SM2_SM3,
            ]
            .contains(&o) =>
        {
            return Err(mismatch())
        }
        (_, o) => return Err(VerifyError::UnsupportedAlgorithm(o.to_string())),
    };
    sig::UnparsedPublicKey::new(params, raw_key)
        .verify(message, signature)
        .map(|()| key)
        .map_err(|_| VerifyError::BadSignature)
}

/// RSASSA-PSS with MGF1 over the same hash and a salt as long as the hash,
/// which is what every mainstream signer produces.
fn pss_algorithm(
    alg: &AlgorithmIdentifierOwned,
) -> Result<&'static dyn aws_lc_rs::signature::VerificationAlgorithm, VerifyError> {
    use aws_lc_rs::signature as sig;
    let unsupported = || VerifyError::UnsupportedAlgorithm("RSASSA-PSS parameters".into());
    let params = alg.parameters.as_ref().ok_or_else(unsupported)?;
    let params = PssParams::from_der(&params.to_der().map_err(|_| unsupported())?)
        .map_err(|_| unsupported())?;
    let hash = params
        .hash
        .map(|h| h.oid)
        .unwrap_or(ObjectIdentifier::new_unwrap("1.3.14.3.2.26"));
    let salt = params.salt_length.unwrap_or(20);
    match (hash, salt) {
        (h, 32) if h == OID_SHA256 => Ok(&sig::RSA_PSS_2048_8192_SHA256),
        (h, 48) if h == OID_SHA384 => Ok(&sig::RSA_PSS_2048_8192_SHA384),
        (h, 64) if h == OID_SHA512 => Ok(&sig::RSA_PSS_2048_8192_SHA512),
        _ => Err(unsupported()),
    }
}

#[derive(der::Sequence)]
struct PssParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    hash: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    mask_gen: Option<AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    salt_length: Option<u32>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    trailer_field: Option<u32>,
}

fn verify_sm2(
    point: &[u8],
    message: &[u8],
    signature: &[u8],
    ids: &[&str],
) -> Result<(), VerifyError> {
    use sm2::dsa::signature::Verifier;
    let public =
        sm2::PublicKey::from_sec1_bytes(point).map_err(|e| VerifyError::BadKey(e.to_string()))?;
    let raw = kexin_hsm::algorithm::ecdsa_der_to_raw(signature, 32)
        .map_err(|_| VerifyError::BadSignature)?;
    let sig = sm2::dsa::Signature::from_slice(&raw).map_err(|_| VerifyError::BadSignature)?;
    let ids: &[&str] = if ids.is_empty() {
        &[SM2_DEFAULT_ID]
    } else {
        ids
    };
    for id in ids {
        let Ok(vk) = sm2::dsa::VerifyingKey::new(id, public) else {
            continue;
        };
        if vk.verify(message, &sig).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::BadSignature)
}

/// Unix seconds, both ends included, in which a chain's certificates
/// are all valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidityWindow {
    pub not_before: u64,
    pub not_after: u64,
}

impl ValidityWindow {
    pub fn contains(&self, at: u64) -> bool {
        self.not_before <= at && at <= self.not_after
    }
}

/// Certificate signatures already found good, so that a certificate
/// presented again (an official's next sign-in) costs a hash, not a
/// signature verification.
///
/// A verification is a function of the issuer's key, the algorithm, the
/// signed bytes and the signature alone, and the key covers all four, so a
/// remembered success cannot let a different or altered certificate pass.
/// Only successes are remembered, so bad signatures cannot fill it; the set
/// is bounded and starts over when full. Validity dates are not part of it:
/// they are checked on every use.
#[derive(Debug, Default)]
pub struct VerifiedSignatures(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

const MAX_REMEMBERED_SIGNATURES: usize = 65_536;

impl VerifiedSignatures {
    /// [`verify_signature`], answered from memory for a signature that
    /// verified before.
    pub fn verify(
        &self,
        spki: &SubjectPublicKeyInfoOwned,
        algorithm: &AlgorithmIdentifierOwned,
        message: &[u8],
        signature: &[u8],
        sm2_ids: &[&str],
    ) -> Result<(), VerifyError> {
        let key = Self::key(spki, algorithm, message, signature, sm2_ids)?;
        if self.remembered().contains(&key) {
            return Ok(());
        }
        verify_signature(spki, algorithm, message, signature, sm2_ids)?;
        let mut remembered = self.remembered();
        if remembered.len() >= MAX_REMEMBERED_SIGNATURES {
            remembered.clear();
        }
        remembered.insert(key);
        Ok(())
    }

    /// [`build_chain`], with every signature on the way remembered, for a
    /// caller that needs only the verdict and the span of time in which
    /// every certificate of the chain is valid (it holds `at`).
    pub fn check_chain(
        &self,
        leaf: &x509_cert::Certificate,
        pool: &[x509_cert::Certificate],
        roots: &[x509_cert::Certificate],
        at: u64,
    ) -> Result<ValidityWindow, String> {
        let chain = chain(leaf, pool, roots, at, Some(self))?;
        Ok(chain.iter().fold(
            ValidityWindow {
                not_before: 0,
                not_after: u64::MAX,
            },
            |w, c| {
                let v = &c.tbs_certificate.validity;
                ValidityWindow {
                    not_before: w.not_before.max(v.not_before.to_unix_duration().as_secs()),
                    not_after: w.not_after.min(v.not_after.to_unix_duration().as_secs()),
                }
            },
        ))
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(
        spki: &SubjectPublicKeyInfoOwned,
        algorithm: &AlgorithmIdentifierOwned,
        message: &[u8],
        signature: &[u8],
        sm2_ids: &[&str],
    ) -> Result<[u8; 32], VerifyError> {
        let encoded = |e: der::Error| VerifyError::BadKey(e.to_string());
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let spki = spki.to_der().map_err(encoded)?;
        let algorithm = algorithm.to_der().map_err(encoded)?;
        let ids = sm2_ids.iter().map(|id| id.as_bytes());
        for part in [&spki[..], &algorithm, message, signature]
            .into_iter()
            .chain(ids)
        {
            digest.update(&(part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.finish().as_ref());
        Ok(key)
    }
}

/// Walks issuer links from `leaf` up to one of `roots`, through `pool`,
/// checking each signature (SM2 with the default ID) and that every
/// certificate was valid at `at` (unix seconds). Returns the subjects, leaf
/// first, or why no trusted chain exists.
pub fn build_chain(
    leaf: &x509_cert::Certificate,
    pool: &[x509_cert::Certificate],
    roots: &[x509_cert::Certificate],
    at: u64,
) -> Result<Vec<String>, String> {
    Ok(chain(leaf, pool, roots, at, None)?
        .into_iter()
        .map(|c| c.tbs_certificate.subject.to_string())
        .collect())
}

fn chain<'a>(
    leaf: &'a x509_cert::Certificate,
    pool: &'a [x509_cert::Certificate],
    roots: &'a [x509_cert::Certificate],
    at: u64,
    remembered: Option<&VerifiedSignatures>,
) -> Result<Vec<&'a x509_cert::Certificate>, String> {
    let valid = |c: &x509_cert::Certificate| {
        let v = &c.tbs_certificate.validity;
        v.not_before.to_unix_duration().as_secs() <= at
            && at <= v.not_after.to_unix_duration().as_secs()
    };
    let mut chain = vec![leaf];
    let mut current = leaf;
    for _ in 0..8 {
        if !valid(current) {
            return Err(format!(
                "{} was not valid at the time checked",
                current.tbs_certificate.subject
            ));
        }
        let signed = current
            .tbs_certificate
            .to_der()
            .map_err(|e| e.to_string())?;
        let verifies = |issuer: &x509_cert::Certificate| {
            let spki = &issuer.tbs_certificate.subject_public_key_info;
            let (algorithm, signature) =
                (&current.signature_algorithm, current.signature.raw_bytes());
            issuer.tbs_certificate.subject == current.tbs_certificate.issuer
                && match remembered {
                    Some(r) => r.verify(spki, algorithm, &signed, signature, &[SM2_DEFAULT_ID]),
                    None => {
                        verify_signature(spki, algorithm, &signed, signature, &[SM2_DEFAULT_ID])
                            .map(|_| ())
                    }
                }
                .is_ok()
        };
        if let Some(root) = roots.iter().find(|r| verifies(r)) {
            if !valid(root) {
                return Err("the root was not valid at the time checked".into());
            }
            chain.push(root);
            return Ok(chain);
        }
        let next = pool
            .iter()
            .find(|c| c.tbs_certificate.subject != current.tbs_certificate.subject && verifies(c))
            .ok_or_else(|| {
                format!(
                    "no trusted issuer found for {}",
                    current.tbs_certificate.subject
                )
            })?;
        chain.push(next);
        current = next;
    }
    Err("chain too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kexin_hsm::{KdfParams, KeyStore, SignatureAlgorithm, SoftKeyStore};

    fn soft_store(dir: &tempfile::TempDir) -> SoftKeyStore {
        SoftKeyStore::create(
            dir.path(),
            b"passphrase for tests",
            KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
        )
        .unwrap()
    }

    #[test]
    fn every_key_store_algorithm_verifies_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = soft_store(&dir);
        for (key, sig) in [
            (KeyAlgorithm::EcdsaP256, SignatureAlgorithm::EcdsaSha256),
            (KeyAlgorithm::EcdsaP384, SignatureAlgorithm::EcdsaSha384),
            (KeyAlgorithm::Rsa2048, SignatureAlgorithm::RsaPkcs1Sha256),
            (KeyAlgorithm::Rsa2048, SignatureAlgorithm::RsaPssSha256),
            (KeyAlgorithm::Ed25519, SignatureAlgorithm::Ed25519),
            (KeyAlgorithm::Sm2, SignatureAlgorithm::Sm2Sm3),
        ] {
            let label = format!("{key}-{sig}");
            let public = store.generate(&label, key).unwrap();
            let spki = SubjectPublicKeyInfoOwned::from_der(&public.spki_der).unwrap();
            let signature = store.sign(&label, sig, b"message").unwrap();
            let alg = sig.algorithm_identifier();
            assert_eq!(
                verify_signature(&spki, &alg, b"message", &signature, &[]),
                Ok(key)
            );
            assert_eq!(
                verify_signature(&spki, &alg, b"massage", &signature, &[]),
                Err(VerifyError::BadSignature),
                "{sig}"
            );
        }
    }

    #[test]
    fn a_remembered_signature_lets_nothing_else_pass() {
        let dir = tempfile::tempdir().unwrap();
        let store = soft_store(&dir);
        let spki = |label: &str| {
            let public = store.generate(label, KeyAlgorithm::EcdsaP256).unwrap();
            SubjectPublicKeyInfoOwned::from_der(&public.spki_der).unwrap()
        };
        let (ours, other) = (spki("ours"), spki("other"));
        let alg = SignatureAlgorithm::EcdsaSha256.algorithm_identifier();
        let signature = store
            .sign("ours", SignatureAlgorithm::EcdsaSha256, b"message")
            .unwrap();
        let mut forged = signature.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let remembered = VerifiedSignatures::default();
        for _ in 0..2 {
            assert_eq!(
                remembered.verify(&ours, &alg, b"message", &signature, &[]),
                Ok(())
            );
            for (key, message, sig) in [
                (&ours, &b"massage"[..], &signature),
                (&ours, &b"message"[..], &forged),
                (&other, &b"message"[..], &signature),
            ] {
                assert!(remembered.verify(key, &alg, message, sig, &[]).is_err());
            }
        }
        assert_eq!(remembered.remembered().len(), 1);
    }
}
