//! ACME's JSON Web Signatures (RFC 8555 §6.2, RFC 7515 flattened JSON):
//! the account key as a JWK, its RFC 7638 thumbprint, and the check of a
//! request's signature. Only what ACME allows: one signature, a protected
//! header with `alg`, `nonce`, `url` and exactly one of `jwk` or `kid`, and
//! no MAC algorithms.
//!
//! Takes outside bytes, so it stands alone (its own error type, no web
//! framework) for the `acme_jws` fuzz target to compile it.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// Why a request's JWS is refused: an ACME error type (all answered 400)
/// and the detail.
#[derive(Debug)]
pub struct JwsError {
    pub kind: &'static str,
    pub detail: String,
}

impl JwsError {
    fn malformed(detail: &str) -> Self {
        Self {
            kind: "malformed",
            detail: detail.to_owned(),
        }
    }

    fn bad_public_key(detail: &str) -> Self {
        Self {
            kind: "badPublicKey",
            detail: detail.to_owned(),
        }
    }

    fn bad_signature_algorithm(detail: &str) -> Self {
        Self {
            kind: "badSignatureAlgorithm",
            detail: detail.to_owned(),
        }
    }
}

/// A request body: the flattened JWS JSON serialization.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenedJws {
    pub protected: String,
    pub payload: String,
    pub signature: String,
}

/// The protected header of an ACME request.
#[derive(Deserialize)]
pub struct Protected {
    pub alg: String,
    pub nonce: Option<String>,
    pub url: String,
    pub jwk: Option<serde_json::Value>,
    pub kid: Option<String>,
}

/// An account public key, as RFC 7638 orders its required members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

fn b64(field: &str, v: &serde_json::Value) -> Result<Vec<u8>, JwsError> {
    let text = v
        .get(field)
        .and_then(|f| f.as_str())
        .ok_or_else(|| JwsError::malformed(&format!("the JWK has no {field}")))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwsError::malformed(&format!("the JWK's {field} is not base64url")))
}

impl AccountKey {
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, JwsError> {
        let kty = jwk.get("kty").and_then(|k| k.as_str()).unwrap_or_default();
        let crv = jwk.get("crv").and_then(|k| k.as_str()).unwrap_or_default();
        let key = match (kty, crv) {
            ("RSA", _) => {
                let n = b64("n", jwk)?;
                let e = b64("e", jwk)?;
                // Leading zero bytes would give one key two thumbprints.
                if n.first() == Some(&0) || e.first() == Some(&0) || n.len() < 256 {
                    return Err(JwsError::bad_public_key(
                        "RSA account keys must be 2048 bits or more, in minimal encoding",
                    ));
                }
                AccountKey::Rsa { n, e }
            }
            ("EC", "P-256" | "P-384") => {
                let curve = if crv == "P-256" {
                    Curve::P256
                } else {
                    Curve::P384
                };
                let x = b64("x", jwk)?;
                let y = b64("y", jwk)?;
                if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                    return Err(JwsError::bad_public_key(
                        "the EC key's coordinates have the wrong length",
                    ));
                }
                AccountKey::Ec { curve, x, y }
            }
            ("OKP", "Ed25519") => {
                let x = b64("x", jwk)?;
                if x.len() != 32 {
                    return Err(JwsError::bad_public_key("an Ed25519 key is 32 bytes"));
                }
                AccountKey::Ed25519 { x }
            }
            _ => {
                return Err(JwsError::bad_public_key(
                    "account keys are RSA, EC P-256 or P-384, or Ed25519",
                ))
            }
        };
        Ok(key)
    }

    /// The RFC 7638 form: required members only, in lexicographic order,
    /// no whitespace. Its SHA-256 is the thumbprint; it is also how the
    /// key is stored.
    pub fn canonical_json(&self) -> String {
        let e = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match self {
            AccountKey::Rsa { n, e: exp } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, e(exp), e(n))
            }
            AccountKey::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                e(x),
                e(y)
            ),
            AccountKey::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, e(x))
            }
        }
    }

    /// RFC 7638 thumbprint, base64url: the account's identity, and the
    /// second half of every key authorization.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.canonical_json().as_bytes(),
        ))
    }

    /// The key as DER SubjectPublicKeyInfo bytes would carry it, to compare
    /// with a certificate's key (revocation by certificate key, and the
    /// rule that a certificate may not certify the account key).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match self {
            AccountKey::Ec { x, y, .. } => [&[4u8][..], x, y].concat(),
            AccountKey::Ed25519 { x } => x.clone(),
            AccountKey::Rsa { n, e } => rsa_public_key_der(n, e),
        }
    }

    /// Verifies `signature` over `message` with algorithm `alg`, which must
    /// suit the key.
    pub fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        let bad_alg = || {
            JwsError::bad_signature_algorithm(&format!(
                "{alg} does not go with this key; use RS256, ES256, ES384 or EdDSA"
            ))
        };
        let outcome = match (self, alg) {
            (AccountKey::Rsa { n, e }, "RS256") => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig),
            (AccountKey::Ec { curve, .. }, _) => {
                let verification: &'static signature::EcdsaVerificationAlgorithm =
                    match (curve, alg) {
                        (Curve::P256, "ES256") => &signature::ECDSA_P256_SHA256_FIXED,
                        (Curve::P384, "ES384") => &signature::ECDSA_P384_SHA384_FIXED,
                        _ => return Err(bad_alg()),
                    };
                UnparsedPublicKey::new(verification, self.public_key_bytes()).verify(message, sig)
            }
            (AccountKey::Ed25519 { x }, "EdDSA") => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, sig)
            }
            _ => return Err(bad_alg()),
        };
        outcome.map_err(|_| JwsError::malformed("the JWS signature does not verify"))
    }
}

/// RSAPublicKey (RFC 8017 A.1.1), the bit string content of an RSA
/// SubjectPublicKeyInfo.
#[derive(der::Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

/// The DER RSAPublicKey; empty if the integers cannot be encoded (which a
/// key that parsed as a JWK never gives).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    use der::Encode;
    der::asn1::UintRef::new(n)
        .and_then(|modulus| {
            Ok(RsaPublicKey {
                modulus,
                public_exponent: der::asn1::UintRef::new(e)?,
            })
        })
        .and_then(|k| k.to_der())
        .unwrap_or_default()
}

/// A request whose signature has been checked; what it was signed with is
/// the caller's to compare against the account it names.
pub struct Verified {
    pub key: AccountKey,
    /// Empty for POST-as-GET.
    pub payload: Vec<u8>,
}

/// Parses `body` and its protected header, refusing what ACME forbids
/// before any key is looked up.
pub fn parse(body: &[u8]) -> Result<(FlattenedJws, Protected), JwsError> {
    let jws: FlattenedJws = serde_json::from_slice(body)
        .map_err(|_| JwsError::malformed("the body is not a flattened JWS"))?;
    let header = URL_SAFE_NO_PAD
        .decode(&jws.protected)
        .ok()
        .and_then(|h| serde_json::from_slice::<Protected>(&h).ok())
        .ok_or_else(|| JwsError::malformed("the protected header is not base64url JSON"))?;
    if header.jwk.is_some() == header.kid.is_some() {
        return Err(JwsError::malformed(
            "the protected header must carry exactly one of jwk and kid",
        ));
    }
    if header.alg == "none" || header.alg.starts_with("HS") {
        return Err(JwsError::bad_signature_algorithm(
            "ACME requests are signed with an asymmetric key",
        ));
    }
    Ok((jws, header))
}

/// Checks the signature of `jws` with `key` and decodes the payload.
pub fn verify(
    jws: &FlattenedJws,
    header: &Protected,
    key: AccountKey,
) -> Result<Verified, JwsError> {
    let signature = URL_SAFE_NO_PAD
        .decode(&jws.signature)
        .map_err(|_| JwsError::malformed("the signature is not base64url"))?;
    let signing_input = format!("{}.{}", jws.protected, jws.payload);
    key.verify(&header.alg, signing_input.as_bytes(), &signature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(&jws.payload)
        .map_err(|_| JwsError::malformed("the payload is not base64url"))?;
    Ok(Verified { key, payload })
}

/// An external account binding (RFC 8555 §7.3.4): a JWS over the account
/// key, MACed with the key the RA issued under `kid`.
pub struct ExternalBinding {
    pub kid: String,
    algorithm: aws_lc_rs::hmac::Algorithm,
    signing_input: String,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct BindingHeader {
    alg: String,
    kid: String,
    url: String,
    nonce: Option<String>,
}

impl ExternalBinding {
    /// Checks the binding's form: a MAC algorithm, the newAccount `url`,
    /// no nonce, and the account key as its payload.
    pub fn parse(
        binding: &serde_json::Value,
        url: &str,
        account_key: &AccountKey,
    ) -> Result<Self, JwsError> {
        let malformed = |d: &str| JwsError::malformed(&format!("externalAccountBinding: {d}"));
        let jws: FlattenedJws = serde_json::from_value(binding.clone())
            .map_err(|_| malformed("not a flattened JWS"))?;
        let header: BindingHeader = URL_SAFE_NO_PAD
            .decode(&jws.protected)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| {
                malformed("the protected header is not base64url JSON with alg, kid and url")
            })?;
        let algorithm = match header.alg.as_str() {
            "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
            "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
            "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
            _ => return Err(malformed("alg must be HS256, HS384 or HS512")),
        };
        if header.url != url || header.nonce.is_some() {
            return Err(malformed("url must be the newAccount URL, and no nonce"));
        }
        let bound_key = URL_SAFE_NO_PAD
            .decode(&jws.payload)
            .ok()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
            .and_then(|jwk| AccountKey::from_jwk(&jwk).ok())
            .ok_or_else(|| malformed("the payload is not a JWK"))?;
        if &bound_key != account_key {
            return Err(malformed("the payload is not the account key"));
        }
        Ok(Self {
            kid: header.kid,
            algorithm,
            signing_input: format!("{}.{}", jws.protected, jws.payload),
            signature: URL_SAFE_NO_PAD
                .decode(&jws.signature)
                .map_err(|_| malformed("the signature is not base64url"))?,
        })
    }

    /// Checks the MAC with the RA's key (base64url, as issued); the
    /// comparison is constant-time.
    pub fn verify(&self, hmac_key: &str) -> Result<(), JwsError> {
        let key = URL_SAFE_NO_PAD
            .decode(hmac_key)
            .map_err(|_| JwsError::malformed("the external account key is unusable"))?;
        aws_lc_rs::hmac::verify(
            &aws_lc_rs::hmac::Key::new(self.algorithm, &key),
            self.signing_input.as_bytes(),
            &self.signature,
        )
        .map_err(|_| JwsError {
            kind: "unauthorized",
            detail: "the external account binding's MAC does not verify".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and thumbprint.
    #[test]
    fn thumbprint_matches_rfc_7638() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = AccountKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// Revocation by certificate key compares these bytes with the
    /// certificate's: for RSA, the DER RSAPublicKey.
    #[test]
    fn an_rsa_key_gives_its_der_public_key() {
        use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let key = AccountKey::Rsa {
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        };
        assert_eq!(key.public_key_bytes(), public.as_ref());
    }

    #[test]
    fn an_es256_signature_verifies_and_a_changed_message_does_not() {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let key = AccountKey::from_jwk(&jwk).unwrap();
        let sig = pair.sign(&rng, b"protected.payload").unwrap();
        key.verify("ES256", b"protected.payload", sig.as_ref())
            .unwrap();
        assert!(key
            .verify("ES256", b"protected.payloae", sig.as_ref())
            .is_err());
        let wrong_alg = key.verify("RS256", b"protected.payload", sig.as_ref());
        assert!(matches!(wrong_alg, Err(e) if e.kind == "badSignatureAlgorithm"));
    }
}
