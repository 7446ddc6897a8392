//! The PKCS#11 key store (tested with SoftHSM2).
//!
//! Key pairs are generated on the token with CKA_SENSITIVE=true and
//! CKA_EXTRACTABLE=false; the private key never leaves it. The store keeps a
//! pool of logged-in read-write sessions: a PKCS#11 session serves one thread
//! at a time, so each signing call borrows one and returns it. The first
//! session is never closed, which keeps the application logged in.
//!
//! SoftHSM2 has no SM2 mechanism, so SM2 keys are refused here with
//! [`Error::UnsupportedAlgorithm`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{aead::GcmParams, Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::algorithm::{
    curve_from_params, curve_params_der, ec_spki, ecdsa_raw_to_der, ed25519_spki,
    maybe_octet_string, rsa_spki, OID_ED25519, OID_P256, OID_P384,
};
use crate::{
    check_label, check_pair, Error, KeyAlgorithm, KeyEntry, KeyKind, KeyStore, PublicKeyInfo,
    Result, SignatureAlgorithm,
};

/// Where the token is and how to log in to it.
#[derive(Clone)]
pub struct Pkcs11Settings {
    pub module: PathBuf,
    pub token_label: String,
    pub pin: Zeroizing<String>,
    /// Upper bound on concurrently open sessions (and so on parallel signers).
    pub max_sessions: usize,
}

impl std::fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

/// C_Initialize may run once per process per module; every store opened on
/// the same module shares the context.
fn context(module: &Path) -> Result<Pkcs11> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)
        .map_err(|e| Error::Backend(format!("loading {}: {e}", module.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck("C_Initialize", e)),
    }
    map.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

fn ck(what: &str, e: CkError) -> Error {
    Error::Backend(format!("PKCS#11 {what}: {e}"))
}

struct Pool {
    idle: Vec<Session>,
    open: usize,
}

/// A key store on a PKCS#11 token.
pub struct Pkcs11KeyStore {
    ctx: Pkcs11,
    slot: Slot,
    max_sessions: usize,
    pool: Mutex<Pool>,
    returned: Condvar,
    handles: RwLock<HashMap<String, (ObjectHandle, KeyAlgorithm)>>,
}

impl std::fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

struct Borrowed<'a> {
    store: &'a Pkcs11KeyStore,
    session: Option<Session>,
}

impl std::ops::Deref for Borrowed<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("session present until drop")
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.store
                .pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .idle
                .push(s);
            self.store.returned.notify_one();
        }
    }
}

impl Pkcs11KeyStore {
    /// Finds the token labelled `settings.token_label` and logs in as user.
    pub fn open(settings: &Pkcs11Settings) -> Result<Self> {
        let ctx = context(&settings.module)?;
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| ck("C_GetSlotList", e))?;
        let mut found = None;
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| ck("C_GetTokenInfo", e))?;
            if info.label().trim_end() == settings.token_label {
                found = Some(slot);
                break;
            }
        }
        let slot = found.ok_or_else(|| {
            Error::Backend(format!(
                "no initialized token labelled {:?} in {}",
                settings.token_label,
                settings.module.display()
            ))
        })?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| ck("C_OpenSession", e))?;
        let pin = AuthPin::from(settings.pin.as_str());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(Error::Backend(format!(
                    "PKCS#11 login to token {:?} failed: wrong PIN",
                    settings.token_label
                )))
            }
            Err(e) => return Err(ck("C_Login", e)),
        }
        Ok(Self {
            ctx,
            slot,
            max_sessions: settings.max_sessions.max(1),
            pool: Mutex::new(Pool {
                idle: vec![session],
                open: 1,
            }),
            returned: Condvar::new(),
            handles: RwLock::default(),
        })
    }

    fn session(&self) -> Result<Borrowed<'_>> {
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(Borrowed {
                    store: self,
                    session: Some(s),
                });
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                drop(pool);
                return match self.ctx.open_rw_session(self.slot) {
                    Ok(s) => Ok(Borrowed {
                        store: self,
                        session: Some(s),
                    }),
                    Err(e) => {
                        self.pool
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .open -= 1;
                        Err(ck("C_OpenSession", e))
                    }
                };
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn find(
        &self,
        session: &Session,
        class: ObjectClass,
        label: &str,
    ) -> Result<Option<ObjectHandle>> {
        let found = session
            .find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| ck("C_FindObjects", e))?;
        Ok(found.into_iter().next())
    }

    /// The DER certificate stored on the token under `label` (a USB key
    /// keeps its certificate beside its key), if there is one.
    pub fn certificate(&self, label: &str) -> Result<Option<Vec<u8>>> {
        check_label(label)?;
        let session = self.session()?;
        let Some(handle) = self.find(&session, ObjectClass::CERTIFICATE, label)? else {
            return Ok(None);
        };
        let attributes = session
            .get_attributes(handle, &[AttributeType::Value])
            .map_err(|e| ck("C_GetAttributeValue", e))?;
        Ok(attributes.into_iter().find_map(|a| match a {
            Attribute::Value(der) => Some(der),
            _ => None,
        }))
    }

    fn private_key(&self, label: &str) -> Result<(ObjectHandle, KeyAlgorithm)> {
        check_label(label)?;
        if let Some(h) = self
            .handles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(label)
        {
            return Ok(*h);
        }
        let session = self.session()?;
        let handle = self
            .find(&session, ObjectClass::PRIVATE_KEY, label)?
            .ok_or_else(|| Error::KeyNotFound(label.to_owned()))?;
        let alg = key_algorithm(&session, handle)?;
        self.handles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(label.to_owned(), (handle, alg));
        Ok((handle, alg))
    }

    fn secret_key(&self, session: &Session, label: &str) -> Result<ObjectHandle> {
        check_label(label)?;
        self.find(session, ObjectClass::SECRET_KEY, label)?
            .ok_or_else(|| Error::KeyNotFound(label.to_owned()))
    }

    fn ensure_absent(&self, session: &Session, label: &str) -> Result<()> {
        check_label(label)?;
        let found = session
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .map_err(|e| ck("C_FindObjects", e))?;
        if found.is_empty() {
            Ok(())
        } else {
            Err(Error::KeyExists(label.to_owned()))
        }
    }
}

fn key_algorithm(session: &Session, handle: ObjectHandle) -> Result<KeyAlgorithm> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::Modulus,
            ],
        )
        .map_err(|e| ck("C_GetAttributeValue", e))?;
    let mut key_type = None;
    let mut params = None;
    let mut modulus_len = 0;
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::Modulus(m) => modulus_len = m.len(),
            _ => {}
        }
    }
    let curve = params.as_deref().and_then(curve_from_params);
    match key_type {
        Some(t) if t == KeyType::EC => match curve {
            Some(c) if c == OID_P256 => Ok(KeyAlgorithm::EcdsaP256),
            Some(c) if c == OID_P384 => Ok(KeyAlgorithm::EcdsaP384),
            other => Err(Error::UnsupportedAlgorithm(format!("EC curve {other:?}"))),
        },
        Some(t) if t == KeyType::EC_EDWARDS => Ok(KeyAlgorithm::Ed25519),
        Some(t) if t == KeyType::RSA => match modulus_len {
            256 => Ok(KeyAlgorithm::Rsa2048),
            384 => Ok(KeyAlgorithm::Rsa3072),
            512 => Ok(KeyAlgorithm::Rsa4096),
            n => Err(Error::UnsupportedAlgorithm(format!("RSA-{}", n * 8))),
        },
        other => Err(Error::UnsupportedAlgorithm(format!("key type {other:?}"))),
    }
}

fn digest(alg: SignatureAlgorithm, message: &[u8]) -> Vec<u8> {
    let d = match alg {
        SignatureAlgorithm::EcdsaSha384 => &aws_lc_rs::digest::SHA384,
        _ => &aws_lc_rs::digest::SHA256,
    };
    aws_lc_rs::digest::digest(d, message).as_ref().to_vec()
}

impl KeyStore for Pkcs11KeyStore {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, label: &str, algorithm: KeyAlgorithm) -> Result<PublicKeyInfo> {
        let session = self.session()?;
        self.ensure_absent(&session, label)?;
        let id = label.as_bytes().to_vec();
        let common = |extra: Vec<Attribute>| {
            let mut v = vec![
                Attribute::Token(true),
                Attribute::Label(id.clone()),
                Attribute::Id(id.clone()),
            ];
            v.extend(extra);
            v
        };
        let private = common(vec![
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            // A signing key does nothing else (least privilege).
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let (mechanism, public) = match algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let curve = if algorithm == KeyAlgorithm::EcdsaP256 {
                    OID_P256
                } else {
                    OID_P384
                };
                (
                    Mechanism::EccKeyPairGen,
                    common(vec![
                        Attribute::Verify(true),
                        Attribute::EcParams(curve_params_der(curve)),
                    ]),
                )
            }
            KeyAlgorithm::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                common(vec![
                    Attribute::Verify(true),
                    Attribute::EcParams(curve_params_der(OID_ED25519)),
                ]),
            ),
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let bits: u64 = match algorithm {
                    KeyAlgorithm::Rsa2048 => 2048,
                    KeyAlgorithm::Rsa3072 => 3072,
                    _ => 4096,
                };
                (
                    Mechanism::RsaPkcsKeyPairGen,
                    common(vec![
                        Attribute::Verify(true),
                        Attribute::ModulusBits(bits.into()),
                        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    ]),
                )
            }
            KeyAlgorithm::Sm2 => return Err(Error::UnsupportedAlgorithm(
                "SM2 on this PKCS#11 token (SoftHSM2 has no SM2 mechanism); use the soft key store"
                    .into(),
            )),
        };
        let (_pub_handle, priv_handle) = session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| ck("C_GenerateKeyPair", e))?;
        drop(session);
        self.handles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(label.to_owned(), (priv_handle, algorithm));
        tracing::info!(label, %algorithm, backend = "pkcs11", "generated key pair on token");
        self.public_key(label)
    }

    fn public_key(&self, label: &str) -> Result<PublicKeyInfo> {
        check_label(label)?;
        let session = self.session()?;
        let handle = self
            .find(&session, ObjectClass::PUBLIC_KEY, label)?
            .ok_or_else(|| Error::KeyNotFound(label.to_owned()))?;
        let algorithm = key_algorithm(&session, handle)?;
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::EcPoint,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
            .map_err(|e| ck("C_GetAttributeValue", e))?;
        let (mut point, mut modulus, mut exponent) = (None, None, None);
        for a in attrs {
            match a {
                Attribute::EcPoint(p) => point = Some(p),
                Attribute::Modulus(m) => modulus = Some(m),
                Attribute::PublicExponent(e) => exponent = Some(e),
                _ => {}
            }
        }
        let missing = || Error::Backend(format!("public key {label:?} lacks its key attributes"));
        let spki_der = match algorithm {
            KeyAlgorithm::EcdsaP256 => ec_spki(
                OID_P256,
                &maybe_octet_string(&point.ok_or_else(missing)?, 65),
            )?,
            KeyAlgorithm::EcdsaP384 => ec_spki(
                OID_P384,
                &maybe_octet_string(&point.ok_or_else(missing)?, 97),
            )?,
            KeyAlgorithm::Ed25519 => {
                ed25519_spki(&maybe_octet_string(&point.ok_or_else(missing)?, 32))?
            }
            _ => rsa_spki(
                &modulus.ok_or_else(missing)?,
                &exponent.ok_or_else(missing)?,
            )?,
        };
        Ok(PublicKeyInfo {
            algorithm,
            spki_der,
        })
    }

    fn sign(&self, label: &str, algorithm: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>> {
        let (handle, key_alg) = self.private_key(label)?;
        check_pair(label, key_alg, algorithm)?;
        let pss = PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32u64.into(),
        };
        let session = self.session()?;
        let sign =
            |m: &Mechanism, data: &[u8]| session.sign(m, handle, data).map_err(|e| ck("C_Sign", e));
        match algorithm {
            SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::EcdsaSha384 => {
                ecdsa_raw_to_der(&sign(&Mechanism::Ecdsa, &digest(algorithm, message))?)
            }
            SignatureAlgorithm::RsaPkcs1Sha256 => sign(&Mechanism::Sha256RsaPkcs, message),
            SignatureAlgorithm::RsaPssSha256 => sign(&Mechanism::Sha256RsaPkcsPss(pss), message),
            SignatureAlgorithm::Ed25519 => sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                message,
            ),
            SignatureAlgorithm::Sm2Sm3 => Err(Error::UnsupportedAlgorithm(
                "SM2 on this PKCS#11 token".into(),
            )),
        }
    }

    fn list(&self) -> Result<Vec<KeyEntry>> {
        let session = self.session()?;
        let mut out = Vec::new();
        for (class, is_secret) in [
            (ObjectClass::PRIVATE_KEY, false),
            (ObjectClass::SECRET_KEY, true),
        ] {
            let handles = session
                .find_objects(&[Attribute::Class(class)])
                .map_err(|e| ck("C_FindObjects", e))?;
            for h in handles {
                let attrs = session
                    .get_attributes(h, &[AttributeType::Label])
                    .map_err(|e| ck("C_GetAttributeValue", e))?;
                let Some(label) = attrs.into_iter().find_map(|a| match a {
                    Attribute::Label(l) => String::from_utf8(l).ok(),
                    _ => None,
                }) else {
                    continue;
                };
                let kind = if is_secret {
                    KeyKind::WrappingKey
                } else {
                    match key_algorithm(&session, h) {
                        Ok(a) => KeyKind::KeyPair(a),
                        Err(_) => continue,
                    }
                };
                out.push(KeyEntry { label, kind });
            }
        }
        out.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(out)
    }

    fn generate_wrapping_key(&self, label: &str) -> Result<()> {
        let session = self.session()?;
        self.ensure_absent(&session, label)?;
        let template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::ValueLen(32u64.into()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(label.as_bytes().to_vec()),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| ck("C_GenerateKey", e))?;
        Ok(())
    }

    fn wrap(&self, label: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let session = self.session()?;
        let key = self.secret_key(&session, label)?;
        let mut iv = session
            .generate_random_vec(12)
            .map_err(|e| ck("C_GenerateRandom", e))?;
        let params = GcmParams::new(&mut iv, label.as_bytes(), 128u64.into())
            .map_err(|e| Error::Backend(format!("GCM parameters: {e}")))?;
        let ct = session
            .encrypt(&Mechanism::AesGcm(params), key, secret)
            .map_err(|e| ck("C_Encrypt", e))?;
        let mut out = iv;
        out.extend(ct);
        Ok(out)
    }

    fn unwrap(&self, label: &str, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if wrapped.len() < 12 + 16 {
            return Err(Error::UnwrapFailed);
        }
        let session = self.session()?;
        let key = self.secret_key(&session, label)?;
        let (iv, ct) = wrapped.split_at(12);
        let mut iv = iv.to_vec();
        let params = GcmParams::new(&mut iv, label.as_bytes(), 128u64.into())
            .map_err(|e| Error::Backend(format!("GCM parameters: {e}")))?;
        session
            .decrypt(&Mechanism::AesGcm(params), key, ct)
            .map(Zeroizing::new)
            .map_err(|_| Error::UnwrapFailed)
    }
}
