//! ES256 JSON Web Tokens signed by a key in the key store, and the JWKS
//! that publishes its public half.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use kexin_hsm::{KeyAlgorithm, KeyStore, SignatureAlgorithm};

use crate::{oauth, Error};

/// What a token is, as its JOSE header's `typ` says. Access tokens are
/// `at+jwt` (RFC 9068 §2.1), ID and logout tokens `JWT`, and each is
/// verified as the one kind it must be: an ID token (which a system may
/// pass on, or send back in a URL) is not a bearer credential, and an
/// access token is not an ID token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// An ID token or a back-channel logout token.
    Jwt,
    /// An access token (RFC 9068).
    Access,
}

impl TokenType {
    pub fn typ(self) -> &'static str {
        match self {
            Self::Jwt => "JWT",
            Self::Access => "at+jwt",
        }
    }
}

/// The signing key: its label in the key store, its key id and public key.
#[derive(Clone)]
pub struct SigningKey {
    store: Arc<dyn KeyStore>,
    label: String,
    pub kid: String,
    /// P-256 (ES256) or SM2 (JWS alg `SM2`: SM2 with SM3, user ID
    /// 1234567812345678, signature r‖s).
    algorithm: KeyAlgorithm,
    /// Uncompressed point.
    point: Vec<u8>,
}

impl SigningKey {
    /// The P-256 key under `label`, generated on first use.
    pub fn open(store: Arc<dyn KeyStore>, label: &str) -> Result<Self, Error> {
        Self::open_with(store, label, KeyAlgorithm::EcdsaP256)
    }

    /// The key under `label` (P-256 or SM2), generated on first use.
    pub fn open_with(
        store: Arc<dyn KeyStore>,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<Self, Error> {
        if !matches!(algorithm, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Sm2) {
            return Err(oauth("server_error", "a token key is P-256 or SM2"));
        }
        let public = match store.public_key(label) {
            Err(kexin_hsm::Error::KeyNotFound(_)) => match store.generate(label, algorithm) {
                // Another node starting on the same key store made it
                // meanwhile: every node signs with that one.
                Err(kexin_hsm::Error::KeyExists(_)) => store.public_key(label)?,
                generated => generated?,
            },
            other => other?,
        };
        if public.algorithm != algorithm {
            return Err(oauth("server_error", "the token key has another algorithm"));
        }
        let spki = kexin_ca::certificate::parse_spki(&public.spki_der)?;
        let point = spki.subject_public_key.raw_bytes().to_vec();
        let kid = hex::encode(
            &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &point).as_ref()[..8],
        );
        Ok(Self {
            store,
            label: label.to_owned(),
            kid,
            algorithm,
            point,
        })
    }

    /// The JWS `alg` of this key.
    pub fn alg(&self) -> &'static str {
        if self.algorithm == KeyAlgorithm::Sm2 {
            "SM2"
        } else {
            "ES256"
        }
    }

    pub fn jwks(&self) -> serde_json::Value {
        let crv = if self.algorithm == KeyAlgorithm::Sm2 {
            "SM2"
        } else {
            "P-256"
        };
        serde_json::json!({ "keys": [{
            "kty": "EC", "crv": crv, "use": "sig", "alg": self.alg(), "kid": self.kid,
            "x": B64URL.encode(&self.point[1..33]), "y": B64URL.encode(&self.point[33..65]),
        }]})
    }

    pub async fn sign(&self, claims: &serde_json::Value, typ: TokenType) -> Result<String, Error> {
        let header = serde_json::json!({ "alg": self.alg(), "kid": self.kid, "typ": typ.typ() });
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let scheme = if self.algorithm == KeyAlgorithm::Sm2 {
            SignatureAlgorithm::Sm2Sm3
        } else {
            SignatureAlgorithm::EcdsaSha256
        };
        let der =
            kexin_hsm::sign_async(&self.store, &self.label, scheme, input.clone().into_bytes())
                .await?;
        let raw = kexin_hsm::algorithm::ecdsa_der_to_raw(&der, 32)?;
        Ok(format!("{input}.{}", B64URL.encode(raw)))
    }

    /// The claims of a token of type `typ` this key signed, if its
    /// signature holds and it has not expired.
    pub fn verify(&self, token: &str, typ: TokenType) -> Result<serde_json::Value, Error> {
        let invalid = |m: &str| oauth("invalid_token", m.to_owned());
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(h).map_err(|_| invalid("header"))?)
                .map_err(|_| invalid("header"))?;
        if header["alg"] != "ES256" || header["kid"] != self.kid.as_str() {
            return Err(invalid("not signed with the current key"));
        }
        if header["typ"] != typ.typ() {
            return Err(invalid("another kind of token"));
        }
        let sig = B64URL.decode(s).map_err(|_| invalid("signature"))?;
        let key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &self.point,
        );
        key.verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| invalid("bad signature"))?;
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(c).map_err(|_| invalid("claims"))?)
                .map_err(|_| invalid("claims"))?;
        if claims["exp"].as_i64().unwrap_or(0) <= crate::now() {
            return Err(invalid("expired"));
        }
        Ok(claims)
    }
}

/// Every token key of the provider: the newest signs, all are published in
/// the JWKS so that tokens signed before a rotation still verify.
///
/// When the token keys sign, and how long a replaced key stays published.
#[derive(Clone, Copy, Debug)]
pub struct KeySchedule<'a> {
    /// (label, unix seconds) of keys that sign only from then; a key not
    /// listed signs at once.
    pub starts: &'a [(String, i64)],
    pub now: i64,
    /// Seconds a key stays published once the next key signs: as long as
    /// a token it signed may be live.
    pub keep_replaced_for: i64,
}

/// Keys are `{base}` (generation 1) and `{base}-g{N}` in the key store;
/// rotation adds the next generation, which is published at once and signs
/// from the time its schedule says.
#[derive(Clone)]
pub struct KeySet {
    /// Newest first.
    keys: Vec<SigningKey>,
    /// The index in `keys` of the key that signs.
    signing: usize,
    /// For clients that asked for SM2 ID tokens; absent when the key store
    /// cannot hold SM2 keys (PKCS#11 tokens without SM2).
    sm2: Option<SigningKey>,
}

fn generation(base: &str, label: &str) -> Option<u32> {
    if label == base {
        return Some(1);
    }
    label.strip_prefix(base)?.strip_prefix("-g")?.parse().ok()
}

impl KeySet {
    /// The keys under `base`, the first generated if there is none; the
    /// newest signs.
    pub fn open(store: Arc<dyn KeyStore>, base: &str) -> Result<Self, Error> {
        let everything = KeySchedule {
            starts: &[],
            now: 0,
            keep_replaced_for: i64::MAX,
        };
        Self::open_scheduled(store, base, &everything)
    }

    /// The keys under `base`, the first generated if there is none, as
    /// `schedule` has them at its `now`: the newest whose time has come
    /// signs (if none's has, the oldest); it and every newer key are
    /// published, and an older key while a token it signed may be live.
    pub fn open_scheduled(
        store: Arc<dyn KeyStore>,
        base: &str,
        schedule: &KeySchedule<'_>,
    ) -> Result<Self, Error> {
        let mut labels: Vec<(u32, String)> = store
            .list()?
            .into_iter()
            .filter_map(|e| generation(base, &e.label).map(|g| (g, e.label)))
            .collect();
        if labels.is_empty() {
            labels.push((1, base.to_owned()));
        }
        labels.sort_by_key(|l| std::cmp::Reverse(l.0));
        let start = |label: &str| {
            schedule
                .starts
                .iter()
                .find(|(l, _)| l == label)
                .map_or(0, |(_, from)| *from)
        };
        let signing = labels
            .iter()
            .position(|(_, l)| start(l) <= schedule.now)
            .unwrap_or(labels.len() - 1);
        // An older key is published until the key after it has signed for
        // as long as a token lives; the keys older than a retired one are
        // retired too.
        let mut published = signing + 1;
        while published < labels.len() {
            let successor = &labels[published - 1].1;
            if schedule.now >= start(successor).saturating_add(schedule.keep_replaced_for) {
                break;
            }
            published += 1;
        }
        let keys = labels[..published]
            .iter()
            .map(|(_, l)| SigningKey::open(store.clone(), l))
            .collect::<Result<Vec<_>, _>>()?;
        let sm2 = SigningKey::open_with(store, &format!("{base}-sm2"), KeyAlgorithm::Sm2).ok();
        Ok(Self { keys, signing, sm2 })
    }

    /// The label of the next generation, for the caller to schedule
    /// before it generates the key ([`SigningKey::open`]): a node that
    /// found the key before its schedule would sign with it at once.
    pub fn next_label(store: Arc<dyn KeyStore>, base: &str) -> Result<String, Error> {
        // Opening first makes sure generation 1 exists.
        Self::open(store.clone(), base)?;
        let next = store
            .list()?
            .iter()
            .filter_map(|e| generation(base, &e.label))
            .max()
            .unwrap_or(1)
            + 1;
        Ok(format!("{base}-g{next}"))
    }

    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        &self.keys[self.signing]
    }

    /// The key ids published (ES256), newest first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    pub fn sm2(&self) -> Option<&SigningKey> {
        self.sm2.as_ref()
    }

    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .chain(self.sm2.as_ref())
            .flat_map(|k| k.jwks()["keys"].as_array().cloned().unwrap_or_default())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Verifies, as a token of type `typ`, with the key the token names.
    pub fn verify(&self, token: &str, typ: TokenType) -> Result<serde_json::Value, Error> {
        let kid = token
            .split('.')
            .next()
            .and_then(|h| B64URL.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
            .and_then(|h| h["kid"].as_str().map(str::to_owned))
            .ok_or_else(|| oauth("invalid_token", "no key id"))?;
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.algorithm == KeyAlgorithm::EcdsaP256)
            .ok_or_else(|| oauth("invalid_token", "unknown key id"))?
            .verify(token, typ)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kexin_hsm::{KdfParams, SoftKeyStore};

    const PASSPHRASE: &[u8] = b"correct horse battery";

    /// A directory holding a new software key store, cheap to open.
    fn store_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let cheap = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        SoftKeyStore::create(dir.path(), PASSPHRASE, cheap).unwrap();
        dir
    }

    /// Nodes started at once on one key store each find the token key
    /// missing; one generates it, and every one signs with that key.
    #[test]
    fn nodes_starting_at_once_share_one_token_key() {
        let dir = store_dir();
        let nodes: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || {
                    let store = SoftKeyStore::open(&dir, PASSPHRASE).unwrap();
                    KeySet::open(Arc::new(store), "kx-oidc-es256").map(|k| k.current().kid.clone())
                })
            })
            .collect();
        let kids: Vec<String> = nodes
            .into_iter()
            .map(|n| n.join().unwrap().unwrap())
            .collect();
        assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
    }

    /// The newest key whose time has come signs, and a key without a
    /// schedule at once (when no key's time has come, the oldest); the
    /// newer keys are published, and an older one until the key after it
    /// has signed for the keep time.
    #[test]
    fn the_newest_key_whose_time_has_come_signs() {
        let dir = store_dir();
        let store: Arc<dyn KeyStore> =
            Arc::new(SoftKeyStore::open(dir.path(), PASSPHRASE).unwrap());
        let base = "kx-oidc-es256";
        let mut labels = vec![base.to_owned()];
        for _ in 0..2 {
            let label = KeySet::next_label(store.clone(), base).unwrap();
            SigningKey::open(store.clone(), &label).unwrap();
            labels.push(label);
        }
        assert_eq!(labels[1..], ["kx-oidc-es256-g2", "kx-oidc-es256-g3"]);
        let kid = |label: &str| SigningKey::open(store.clone(), label).unwrap().kid;
        // The key signing, and the keys published, newest first.
        let keys = |starts: &[(&str, i64)], now: i64| {
            let starts: Vec<(String, i64)> =
                starts.iter().map(|(l, t)| ((*l).to_owned(), *t)).collect();
            let schedule = KeySchedule {
                starts: &starts,
                now,
                keep_replaced_for: 1000,
            };
            let keys = KeySet::open_scheduled(store.clone(), base, &schedule).unwrap();
            let published: Vec<String> = keys.kids().iter().map(|k| (*k).to_owned()).collect();
            (keys.current().kid.clone(), published)
        };
        let (g1, g2, g3) = (base, labels[1].as_str(), labels[2].as_str());
        let all = vec![kid(g3), kid(g2), kid(g1)];
        // Unscheduled keys sign at once; the keys they replaced are
        // retired once the keep time has passed.
        assert_eq!(keys(&[], 0), (kid(g3), all.clone()));
        assert_eq!(keys(&[], 1000), (kid(g3), vec![kid(g3)]));
        let starts = [(g2, 100), (g3, 2000)];
        assert_eq!(keys(&starts, 99), (kid(g1), all.clone()), "none due yet");
        assert_eq!(keys(&starts, 150), (kid(g2), all.clone()));
        assert_eq!(
            keys(&starts, 1100),
            (kid(g2), vec![kid(g3), kid(g2)]),
            "g1 retired 1000 s after g2 began to sign"
        );
        assert_eq!(keys(&starts, 2000), (kid(g3), vec![kid(g3), kid(g2)]));
        assert_eq!(keys(&starts, 3000), (kid(g3), vec![kid(g3)]));
        assert_eq!(
            keys(&[(g1, 50), (g2, 100), (g3, 200)], 10),
            (kid(g1), all),
            "none due: the oldest"
        );
    }
}
