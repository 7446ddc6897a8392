//! The software key store: private keys as PKCS#8, each sealed with
//! AES-256-GCM under a master key that Argon2id derives from a passphrase.
//!
//! Layout of the store directory:
//! - `keystore.json`: KDF parameters, salt and a sealed check value that
//!   tells a wrong passphrase from a corrupt key file;
//! - `keys/<label>.json`: one sealed key each. The label and kind are bound
//!   into the AEAD's associated data, so a key file renamed to another label
//!   or kind fails to open instead of being used in the wrong place.
//!
//! Files are written 0600 through a temporary file and a hard link, so a
//! crash never leaves half a key under its label and a label is never
//! silently overwritten.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{self as lc, KeyPair};
use serde::{Deserialize, Serialize};
use sm2::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use crate::algorithm::ecdsa_raw_to_der;
use crate::{
    check_label, check_pair, Error, KeyAlgorithm, KeyEntry, KeyKind, KeyStore, PublicKeyInfo,
    Result, SignatureAlgorithm, SM2_DEFAULT_ID,
};

const META_FILE: &str = "keystore.json";
const KEYS_DIR: &str = "keys";
const CHECK_PLAINTEXT: &[u8] = b"kexin soft key store v1";

/// Argon2id cost parameters, stored with the key store.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes: RFC 9106's second recommended option.
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    kdf: String,
    params: KdfParams,
    salt: String,
    check: String,
}

#[derive(Serialize, Deserialize)]
struct SealedKey {
    label: String,
    kind: StoredKind,
    algorithm: Option<KeyAlgorithm>,
    /// Public key, kept in the clear so listing and SPKI lookups need no decryption.
    spki: Option<String>,
    sealed: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
enum StoredKind {
    KeyPair,
    WrappingKey,
}

enum PrivateKey {
    Ecdsa(lc::EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ed25519(lc::Ed25519KeyPair),
    Sm2(Box<sm2::dsa::SigningKey>),
    Wrapping(LessSafeKey),
}

type LoadedKey = (Arc<PrivateKey>, Option<KeyAlgorithm>);

/// A key store in a directory, encrypted at rest.
pub struct SoftKeyStore {
    dir: PathBuf,
    master: LessSafeKey,
    rng: SystemRandom,
    /// Decrypted keys with their algorithm: a signature costs no file read.
    loaded: RwLock<HashMap<String, LoadedKey>>,
}

impl std::fmt::Debug for SoftKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SoftKeyStore {
    /// Creates a new, empty store in `dir` (which may exist but must not hold a store).
    pub fn create(dir: &Path, passphrase: &[u8], params: KdfParams) -> Result<Self> {
        if passphrase.len() < 12 {
            return Err(Error::Backend(
                "key store passphrase must be at least 12 bytes".into(),
            ));
        }
        fs::create_dir_all(dir.join(KEYS_DIR))?;
        let rng = SystemRandom::new();
        let mut salt = [0u8; 16];
        rng.fill(&mut salt)
            .map_err(|_| Error::Backend("system RNG failed".into()))?;
        let master = derive_master(passphrase, &salt, params)?;
        let check = seal(&master, &rng, b"check", CHECK_PLAINTEXT)?;
        let meta = Meta {
            format: 1,
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            check: hex::encode(check),
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Backend(e.to_string()))?;
        write_new(&dir.join(META_FILE), &json).map_err(|e| match e {
            Error::KeyExists(_) => {
                Error::Backend(format!("{} already holds a key store", dir.display()))
            }
            e => e,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            master,
            rng,
            loaded: RwLock::default(),
        })
    }

    /// Opens an existing store; fails with [`Error::BadPassphrase`] if the
    /// passphrase does not match.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Self> {
        let raw = fs::read(dir.join(META_FILE))?;
        let meta: Meta = serde_json::from_slice(&raw)
            .map_err(|e| Error::Backend(format!("{}: {e}", dir.join(META_FILE).display())))?;
        if meta.format != 1 || meta.kdf != "argon2id" {
            return Err(Error::Backend(format!(
                "unknown key store format {} / {}",
                meta.format, meta.kdf
            )));
        }
        let salt = hex::decode(&meta.salt).map_err(|e| Error::Backend(e.to_string()))?;
        let master = derive_master(passphrase, &salt, meta.params)?;
        let check = hex::decode(&meta.check).map_err(|e| Error::Backend(e.to_string()))?;
        match open_sealed(&master, b"check", &check) {
            Ok(p) if p.as_slice() == CHECK_PLAINTEXT => {}
            _ => return Err(Error::BadPassphrase),
        }
        Ok(Self {
            dir: dir.to_owned(),
            master,
            rng: SystemRandom::new(),
            loaded: RwLock::default(),
        })
    }

    fn key_path(&self, label: &str) -> PathBuf {
        self.dir.join(KEYS_DIR).join(format!("{label}.json"))
    }

    fn read_sealed(&self, label: &str) -> Result<SealedKey> {
        check_label(label)?;
        let raw = match fs::read(self.key_path(label)) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::KeyNotFound(label.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let sealed: SealedKey = serde_json::from_slice(&raw)
            .map_err(|e| Error::Backend(format!("key file for {label:?}: {e}")))?;
        if sealed.label != label {
            return Err(Error::Backend(format!(
                "key file for {label:?} names {:?}",
                sealed.label
            )));
        }
        Ok(sealed)
    }

    fn store(
        &self,
        label: &str,
        kind: StoredKind,
        algorithm: Option<KeyAlgorithm>,
        spki: Option<&[u8]>,
        secret: &[u8],
    ) -> Result<()> {
        let sealed = seal(&self.master, &self.rng, &aad(label, kind), secret)?;
        let record = SealedKey {
            label: label.to_owned(),
            kind,
            algorithm,
            spki: spki.map(hex::encode),
            sealed: hex::encode(sealed),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::Backend(e.to_string()))?;
        write_new(&self.key_path(label), &json).map_err(|e| match e {
            Error::KeyExists(_) => Error::KeyExists(label.to_owned()),
            e => e,
        })
    }

    fn ensure_absent(&self, label: &str) -> Result<()> {
        check_label(label)?;
        if self.key_path(label).exists() {
            return Err(Error::KeyExists(label.to_owned()));
        }
        Ok(())
    }

    fn load(&self, label: &str) -> Result<LoadedKey> {
        if let Some(k) = self
            .loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(label)
        {
            return Ok(k.clone());
        }
        let sealed = self.read_sealed(label)?;
        let blob = hex::decode(&sealed.sealed).map_err(|e| Error::Backend(e.to_string()))?;
        let secret = open_sealed(&self.master, &aad(label, sealed.kind), &blob)
            .map_err(|_| Error::Backend(format!("key {label:?} fails its integrity check")))?;
        let bad = |e: &dyn std::fmt::Display| Error::InvalidKey(format!("{label:?}: {e}"));
        let key = match (sealed.kind, sealed.algorithm) {
            (StoredKind::WrappingKey, _) => PrivateKey::Wrapping(aes_key(&secret)?),
            (StoredKind::KeyPair, Some(KeyAlgorithm::EcdsaP256)) => PrivateKey::Ecdsa(
                lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_ASN1_SIGNING, &secret)
                    .map_err(|e| bad(&e))?,
            ),
            (StoredKind::KeyPair, Some(KeyAlgorithm::EcdsaP384)) => PrivateKey::Ecdsa(
                lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P384_SHA384_ASN1_SIGNING, &secret)
                    .map_err(|e| bad(&e))?,
            ),
            (StoredKind::KeyPair, Some(a)) if a.is_rsa() => {
                PrivateKey::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(&secret).map_err(|e| bad(&e))?)
            }
            (StoredKind::KeyPair, Some(KeyAlgorithm::Ed25519)) => {
                PrivateKey::Ed25519(lc::Ed25519KeyPair::from_pkcs8(&secret).map_err(|e| bad(&e))?)
            }
            (StoredKind::KeyPair, Some(KeyAlgorithm::Sm2)) => {
                let sk = sm2::SecretKey::from_pkcs8_der(&secret).map_err(|e| bad(&e))?;
                PrivateKey::Sm2(Box::new(
                    sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &sk).map_err(|e| bad(&e))?,
                ))
            }
            (StoredKind::KeyPair, _) => return Err(bad(&"no algorithm recorded")),
        };
        let key = Arc::new(key);
        self.loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(label.to_owned(), (key.clone(), sealed.algorithm));
        Ok((key, sealed.algorithm))
    }
}

impl KeyStore for SoftKeyStore {
    fn backend(&self) -> &'static str {
        "soft"
    }

    fn generate(&self, label: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo> {
        self.ensure_absent(label)?;
        let failed = |what: &str| Error::Backend(format!("{what} key generation failed"));
        let (pkcs8, spki): (Zeroizing<Vec<u8>>, Vec<u8>) = match algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let alg = if algorithm == KeyAlgorithm::EcdsaP256 {
                    &lc::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &lc::ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let kp = lc::EcdsaKeyPair::generate(alg).map_err(|_| failed("ECDSA"))?;
                let doc = kp.to_pkcs8v1().map_err(|_| failed("ECDSA"))?;
                let spki = kp.public_key().as_der().map_err(|_| failed("ECDSA"))?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                use aws_lc_rs::rsa::KeySize;
                let size = match algorithm {
                    KeyAlgorithm::Rsa2048 => KeySize::Rsa2048,
                    KeyAlgorithm::Rsa3072 => KeySize::Rsa3072,
                    _ => KeySize::Rsa4096,
                };
                let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| failed("RSA"))?;
                let doc: Pkcs8V1Der = kp.as_der().map_err(|_| failed("RSA"))?;
                let spki: PublicKeyX509Der = kp.public_key().as_der().map_err(|_| failed("RSA"))?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            KeyAlgorithm::Ed25519 => {
                let kp = lc::Ed25519KeyPair::generate().map_err(|_| failed("Ed25519"))?;
                let doc = kp.to_pkcs8v1().map_err(|_| failed("Ed25519"))?;
                let spki = kp.public_key().as_der().map_err(|_| failed("Ed25519"))?;
                (
                    Zeroizing::new(doc.as_ref().to_vec()),
                    spki.as_ref().to_vec(),
                )
            }
            KeyAlgorithm::Sm2 => {
                let sk = sm2::SecretKey::random(&mut rand_core::OsRng);
                let doc = sk.to_pkcs8_der().map_err(|_| failed("SM2"))?;
                let spki = sk
                    .public_key()
                    .to_public_key_der()
                    .map_err(|_| failed("SM2"))?;
                (
                    Zeroizing::new(doc.as_bytes().to_vec()),
                    spki.as_bytes().to_vec(),
                )
            }
        };
        self.store(
            label,
            StoredKind::KeyPair,
            Some(algorithm),
            Some(&spki),
            &pkcs8,
        )?;
        tracing::info!(label, %algorithm, backend = "soft", "generated key pair");
        Ok(PublicKeyInfo {
            algorithm,
            spki_der: spki,
        })
    }

    fn public_key(&self, label: &str) -> Result<PublicKeyInfo> {
        let sealed = self.read_sealed(label)?;
        match (sealed.kind, sealed.algorithm, sealed.spki) {
            (StoredKind::KeyPair, Some(algorithm), Some(spki)) => Ok(PublicKeyInfo {
                algorithm,
                spki_der: hex::decode(spki).map_err(|e| Error::Backend(e.to_string()))?,
            }),
            _ => Err(Error::KeyNotFound(label.to_owned())),
        }
    }

    fn sign(&self, label: &str, algorithm: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>> {
        let (key, key_alg) = self.load(label)?;
        let key_alg = key_alg.ok_or_else(|| Error::KeyNotFound(label.to_owned()))?;
        check_pair(label, key_alg, algorithm)?;
        let failed = || Error::Backend(format!("signing with {label:?} failed"));
        match (&*key, algorithm) {
            (PrivateKey::Ecdsa(k), _) => Ok(k
                .sign(&self.rng, message)
                .map_err(|_| failed())?
                .as_ref()
                .to_vec()),
            (
                PrivateKey::Rsa(k),
                SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::RsaPssSha256,
            ) => {
                let padding: &'static dyn lc::RsaEncoding =
                    if algorithm == SignatureAlgorithm::RsaPssSha256 {
                        &lc::RSA_PSS_SHA256
                    } else {
                        &lc::RSA_PKCS1_SHA256
                    };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &self.rng, message, &mut sig)
                    .map_err(|_| failed())?;
                Ok(sig)
            }
            (PrivateKey::Ed25519(k), _) => Ok(k.sign(message).as_ref().to_vec()),
            (PrivateKey::Sm2(k), _) => {
                let sig: sm2::dsa::Signature =
                    sm2::dsa::signature::Signer::try_sign(k.as_ref(), message)
                        .map_err(|_| failed())?;
                ecdsa_raw_to_der(&sig.to_bytes())
            }
            _ => Err(Error::KeyNotFound(label.to_owned())),
        }
    }

    /// Elliptic-curve and EdDSA signatures take tens of microseconds from
    /// the in-memory key; RSA takes a millisecond or more.
    fn signs_quickly(&self, algorithm: SignatureAlgorithm) -> bool {
        !matches!(
            algorithm,
            SignatureAlgorithm::RsaPkcs1Sha256 | SignatureAlgorithm::RsaPssSha256
        )
    }

    fn list(&self) -> Result<Vec<KeyEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir.join(KEYS_DIR))? {
            let name = entry?.file_name();
            let Some(label) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if check_label(label).is_err() {
                continue;
            }
            let sealed = self.read_sealed(label)?;
            let kind = match (sealed.kind, sealed.algorithm) {
                (StoredKind::WrappingKey, _) => KeyKind::WrappingKey,
                (StoredKind::KeyPair, Some(a)) => KeyKind::KeyPair(a),
                (StoredKind::KeyPair, None) => continue,
            };
            out.push(KeyEntry {
                label: label.to_owned(),
                kind,
            });
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    fn generate_wrapping_key(&self, label: &str) -> Result<()> {
        self.ensure_absent(label)?;
        let mut key = Zeroizing::new([0u8; 32]);
        self.rng
            .fill(key.as_mut())
            .map_err(|_| Error::Backend("system RNG failed".into()))?;
        self.store(label, StoredKind::WrappingKey, None, None, key.as_ref())
    }

    fn wrap(&self, label: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let (key, _) = self.load(label)?;
        let PrivateKey::Wrapping(k) = &*key else {
            return Err(Error::KeyNotFound(label.to_owned()));
        };
        seal(k, &self.rng, label.as_bytes(), secret)
    }

    fn unwrap(&self, label: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (key, _) = self.load(label)?;
        let PrivateKey::Wrapping(k) = &*key else {
            return Err(Error::KeyNotFound(label.to_owned()));
        };
        open_sealed(k, label.as_bytes(), wrapped)
    }
}

fn aad(label: &str, kind: StoredKind) -> Vec<u8> {
    format!("kexin-soft-v1|{kind:?}|{label}").into_bytes()
}

fn derive_master(passphrase: &[u8], salt: &[u8], p: KdfParams) -> Result<LessSafeKey> {
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| Error::Backend(format!("Argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| Error::Backend(format!("Argon2: {e}")))?;
    aes_key(out.as_ref())
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| Error::InvalidKey("AES-256 key of the wrong length".into()))?;
    Ok(LessSafeKey::new(unbound))
}

/// AES-256-GCM with a random nonce; output is `nonce || ciphertext || tag`.
fn seal(key: &LessSafeKey, rng: &SystemRandom, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| Error::Backend("system RNG failed".into()))?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| Error::Backend("AES-GCM seal failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(out)
}

fn open_sealed(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(Error::UnwrapFailed);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::UnwrapFailed)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
        .map_err(|_| Error::UnwrapFailed)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// Writes `bytes` to `path` with mode 0600, atomically, refusing to replace
/// an existing file.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    let linked = fs::hard_link(&tmp.0, path);
    let _ = fs::remove_file(&tmp.0);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::KeyExists(path.display().to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, fs::File)> {
    let rng = SystemRandom::new();
    let mut n = [0u8; 8];
    rng.fill(&mut n)
        .map_err(|_| Error::Backend("system RNG failed".into()))?;
    let path = dir.join(format!(".tmp-{}", hex::encode(n)));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    Ok((path.clone(), opts.open(&path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn wrong_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SoftKeyStore::create(dir.path(), b"correct horse battery", FAST).unwrap();
        let err = SoftKeyStore::open(dir.path(), b"wrong horse battery").unwrap_err();
        assert!(matches!(err, Error::BadPassphrase), "{err}");
    }

    #[test]
    fn key_files_are_private_and_not_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftKeyStore::create(dir.path(), b"correct horse battery", FAST).unwrap();
        store.generate("k", KeyAlgorithm::EcdsaP256).unwrap();
        let path = dir.path().join("keys/k.json");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("PRIVATE"));
        assert!(matches!(
            store.generate("k", KeyAlgorithm::EcdsaP256),
            Err(Error::KeyExists(_))
        ));
    }

    #[test]
    fn key_file_moved_to_another_label_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftKeyStore::create(dir.path(), b"correct horse battery", FAST).unwrap();
        store.generate("a", KeyAlgorithm::Ed25519).unwrap();
        let text = fs::read_to_string(dir.path().join("keys/a.json")).unwrap();
        fs::write(
            dir.path().join("keys/b.json"),
            text.replace("\"label\": \"a\"", "\"label\": \"b\""),
        )
        .unwrap();
        assert!(store.sign("b", SignatureAlgorithm::Ed25519, b"x").is_err());
    }

    #[test]
    fn wrap_round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let store = SoftKeyStore::create(dir.path(), b"correct horse battery", FAST).unwrap();
        store.generate_wrapping_key("kek").unwrap();
        let wrapped = store.wrap("kek", b"0123456789abcdef").unwrap();
        assert_eq!(
            store.unwrap("kek", &wrapped).unwrap().as_slice(),
            b"0123456789abcdef"
        );
        let mut bad = wrapped.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            store.unwrap("kek", &bad),
            Err(Error::UnwrapFailed)
        ));
        let reopened = SoftKeyStore::open(dir.path(), b"correct horse battery").unwrap();
        assert_eq!(
            reopened.unwrap("kek", &wrapped).unwrap().as_slice(),
            b"0123456789abcdef"
        );
    }
}
