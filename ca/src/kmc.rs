//! The key management center (密钥管理中心): it generates officials'
//! encryption key pairs, escrows each private key sealed under a wrapping
//! key that never leaves the key store, and hands keys out only as
//! password-protected PKCS#12 files.
//!
//! Why the pair is generated in memory and not as a token object: an
//! escrowed key must be exportable by definition, and a key store key is
//! not. The plaintext exists only while the PKCS#12 and the sealed copy are
//! made, in a zeroized buffer; what is stored is the key store's AES-256-GCM
//! seal of it. Recovery is a separate, two-person decision (see
//! [`crate::request`]).

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use der::Encode;
use kexin_hsm::{KeyAlgorithm, KeyStore};
use sm2::pkcs8::{EncodePrivateKey, EncodePublicKey};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::certificate::parse_spki;
use crate::storage::Database;
use crate::Error;

/// A key pair the KMC made: the public half for the certificate, the
/// private half (PKCS#8) to escrow and deliver.
pub struct GeneratedKey {
    pub algorithm: KeyAlgorithm,
    pub public_key: SubjectPublicKeyInfoOwned,
    pub pkcs8: Zeroizing<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct KeyManagementCenter {
    db: Database,
    store: Arc<dyn KeyStore>,
    wrapping_key: String,
}

impl KeyManagementCenter {
    /// `wrapping_key` labels the AES key in the key store that seals every
    /// escrowed key; it is created on first use.
    pub fn new(db: Database, store: Arc<dyn KeyStore>, wrapping_key: String) -> Self {
        Self {
            db,
            store,
            wrapping_key,
        }
    }

    /// The encryption key algorithm that goes with a signing key: the same
    /// family and size, except Ed25519 (a signature-only key), which gets
    /// P-256.
    pub fn encryption_algorithm_for(signing: KeyAlgorithm) -> KeyAlgorithm {
        match signing {
            KeyAlgorithm::Ed25519 => KeyAlgorithm::EcdsaP256,
            other => other,
        }
    }

    pub fn generate(&self, algorithm: KeyAlgorithm) -> Result<GeneratedKey, Error> {
        let failed = || Error::Crypto(format!("generating a {algorithm} key failed"));
        let (pkcs8, spki): (Zeroizing<Vec<u8>>, Vec<u8>) = match algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let alg = if algorithm == KeyAlgorithm::EcdsaP256 {
                    &ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let kp = EcdsaKeyPair::generate(alg).map_err(|_| failed())?;
                let spki = kp.public_key().as_der().map_err(|_| failed())?;
                let doc = kp.to_pkcs8v1().map_err(|_| failed())?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let size = match algorithm {
                    KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
                    KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
                    _ => KeySize::Rsa4096,
                };
                let key = PrivateDecryptingKey::generate(size).map_err(|_| failed())?;
                let spki = key.public_key().as_der().map_err(|_| failed())?;
                let doc = key.as_der().map_err(|_| failed())?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            KeyAlgorithm::Sm2 => {
                let sk = sm2::SecretKey::random(&mut rand_core::OsRng);
                let doc = sk.to_pkcs8_der().map_err(|_| failed())?;
                let spki = sk.public_key().to_public_key_der().map_err(|_| failed())?;
                (
                    Zeroizing::new(doc.as_bytes().to_vec()),
                    spki.as_bytes().to_vec(),
                )
            }
            KeyAlgorithm::Ed25519 => {
                return Err(Error::InvalidRequest(
                    "Ed25519 keys cannot encrypt; the KMC issues P-256 instead".into(),
                ))
            }
        };
        Ok(GeneratedKey {
            algorithm,
            public_key: parse_spki(&spki)?,
            pkcs8,
        })
    }

    /// Seals `key` under the KMC wrapping key and stores it beside the
    /// encryption certificate `serial`.
    pub async fn escrow(&self, serial: &str, key: &GeneratedKey, at: i64) -> Result<(), Error> {
        let sealed = self.seal(&key.pkcs8)?;
        self.db
            .insert_escrow(
                serial,
                key.algorithm.as_str(),
                &self.wrapping_key,
                &sealed,
                at,
            )
            .await
    }

    fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, Error> {
        seal_creating(self.store.as_ref(), &self.wrapping_key, secret)
    }

    /// Unseals the escrowed key of `certificate` and checks that it is the
    /// private half of the certificate's public key before returning it.
    pub async fn recover(&self, certificate: &Certificate) -> Result<Zeroizing<Vec<u8>>, Error> {
        let serial = hex::encode(certificate.tbs_certificate.serial_number.as_bytes());
        let (_, label, sealed) =
            self.db.escrowed_key(&serial).await?.ok_or_else(|| {
                Error::NotFound(format!("no escrowed key for certificate {serial}"))
            })?;
        let pkcs8 = self.store.unwrap(&label, &sealed)?;
        let public = public_key_of(&pkcs8)?;
        let expected = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(crate::certificate::der_err)?;
        if public != expected {
            return Err(Error::Crypto(format!(
                "escrowed key of {serial} does not match its certificate"
            )));
        }
        Ok(pkcs8)
    }
}

/// Seals `secret` under the wrapping key `label`, creating that key on
/// first use (instances initialized before the key existed get it then).
pub(crate) fn seal_creating(
    store: &dyn KeyStore,
    label: &str,
    secret: &[u8],
) -> Result<Vec<u8>, Error> {
    match store.wrap(label, secret) {
        Err(kexin_hsm::Error::KeyNotFound(_)) => {
            match store.generate_wrapping_key(label) {
                Ok(()) | Err(kexin_hsm::Error::KeyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
            Ok(store.wrap(label, secret)?)
        }
        other => Ok(other?),
    }
}

/// The SPKI (DER) of a PKCS#8 private key of any algorithm the KMC makes.
pub fn public_key_of(pkcs8: &[u8]) -> Result<Vec<u8>, Error> {
    let bad = || Error::Crypto("unreadable PKCS#8 key".into());
    if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8) {
        return Ok(kp
            .public_key()
            .as_der()
            .map_err(|_| bad())?
            .as_ref()
            .to_vec());
    }
    if let Ok(kp) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8) {
        return Ok(kp
            .public_key()
            .as_der()
            .map_err(|_| bad())?
            .as_ref()
            .to_vec());
    }
    if let Ok(k) = PrivateDecryptingKey::from_pkcs8(pkcs8) {
        return Ok(k
            .public_key()
            .as_der()
            .map_err(|_| bad())?
            .as_ref()
            .to_vec());
    }
    use sm2::pkcs8::DecodePrivateKey;
    let sk = sm2::SecretKey::from_pkcs8_der(pkcs8).map_err(|_| bad())?;
    Ok(sk
        .public_key()
        .to_public_key_der()
        .map_err(|_| bad())?
        .as_bytes()
        .to_vec())
}

/// A PKCS#12 file (PBES2/AES-256-CBC, HMAC-SHA256 MAC) holding `pkcs8` and
/// its certificate chain, leaf first.
pub fn pkcs12(
    alias: &str,
    pkcs8: &[u8],
    chain: &[Vec<u8>],
    password: &str,
) -> Result<Vec<u8>, Error> {
    let chain = chain
        .iter()
        .map(|c| p12_keystore::Certificate::from_der(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Encoding(format!("PKCS#12 certificate: {e}")))?;
    let key_id = chain
        .first()
        .map(|c| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.as_der()))
        .ok_or_else(|| Error::Encoding("PKCS#12 needs a certificate".into()))?;
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        alias,
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            pkcs8,
            key_id.as_ref(),
            chain,
        )),
    );
    store
        .writer(password)
        .write()
        .map_err(|e| Error::Encoding(format!("writing PKCS#12: {e}")))
}

/// A one-time secret for a delivered PKCS#12: 20 characters from an
/// alphabet without look-alikes (about 100 bits), to be read out or typed.
pub fn one_time_secret() -> Result<String, Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto("no randomness".into()))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect())
}
