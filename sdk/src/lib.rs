//! The Kexin SDK for systems that accept Kexin's single sign-on.
//!
//! A relying system registers with `kexin client add` (an `ra-admin`'s
//! job), then:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use kexin_sdk::RelyingParty;
//! let rp = RelyingParty::discover(
//!     "https://sso.example.gov.cn",
//!     "kx-client-id",
//!     "client-secret",
//!     "https://archive.example.gov.cn/callback",
//!     Some(&std::fs::read("root.pem")?),
//! )
//! .await?;
//! let login = rp.login()?;                   // redirect the browser to login.url
//! // …the browser comes back to /callback?code=…&state=…
//! # let query = "";
//! let signed_in = rp.complete(&login, query).await?; // PKCE, ID token checked
//! println!("hello {}", signed_in.claims["name"]);
//! # Ok(()) }
//! ```
//!
//! [`axum::SignedIn`] protects the pages of an axum
//! application and [`axum::BearerToken`] its API
//! routes; `examples/relying_system.rs` is a whole system in under 100
//! lines.
//!
//! An official's program signs in with the key on a USB key (any PKCS#11
//! module) and uses the trust services:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use kexin_sdk::client::{challenge_login, Pkcs11Identity, Pkcs12Identity, TrustServices};
//! let root = std::fs::read("root.pem")?;
//! let usb_key = Pkcs11Identity::open(
//!     std::path::Path::new("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
//!     "ZHANG SAN",
//!     "123456",
//!     "signing",
//! )?;
//! let session = challenge_login("https://sso.example.gov.cn", "kx-client-id", &usb_key, Some(&root)).await?;
//! // session.http now gets codes from /oidc/authorize without signing in again.
//! // Or sign in and get a system's code in one answer, from the URL its
//! // RelyingParty::login() built:
//! let url = "https://sso.example.gov.cn/oidc/authorize?response_type=code&client_id=kx-client-id&…";
//! let signed_in = kexin_sdk::client::challenge_authorize("https://sso.example.gov.cn", url, &usb_key, Some(&root)).await?;
//! let callback = signed_in.location; // the system's redirect URI with ?code=…&state=…
//!
//! let p12 = Pkcs12Identity::from_pkcs12(&std::fs::read("clerk.p12")?, "secret")?;
//! let services = TrustServices::new("https://sso.example.gov.cn", &p12, &root)?;
//! let sealed = services.seal_pdf("证照专用章", std::fs::read("license.pdf")?, "b-lt").await?;
//! let report = services.verify_pdf(sealed).await?;
//! assert_eq!(report["verdict"], "valid");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod axum;
pub mod client;
mod jwks;
pub mod sessions;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the identity provider refused: {0}")]
    Refused(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

/// One sign-in in progress: where to send the browser and what to check
/// when it returns. Keep it server-side (never in the URL or a cookie).
#[derive(Clone)]
pub struct LoginRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    verifier: String,
}

/// A completed sign-in.
#[derive(Clone)]
pub struct SignedIn {
    /// The verified ID token's claims: `sub`, `name`, `org`, `sid`, …
    pub claims: serde_json::Value,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds the access token is good for.
    pub expires_in: u64,
}

/// What a refresh grant gives: a new access token, the refresh token that
/// replaces the one presented (rotation), and the access token's lifetime.
#[derive(Clone)]
pub struct Renewed {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// What stands for a secret (a token, a PKCE verifier) when a value is
/// printed for a log.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("url", &self.url)
            .field("state", &self.state)
            .field("nonce", &self.nonce)
            .field("verifier", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("claims", &self.claims)
            .field("access_token", &REDACTED)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| REDACTED),
            )
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl std::fmt::Debug for Renewed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewed")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

pub struct RelyingParty {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    discovery: serde_json::Value,
    http: reqwest::Client,
    jwks: jwks::JwksCache,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random() -> Result<String, Error> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Refused("no system randomness".into()))?;
    Ok(B64URL.encode(b))
}

impl RelyingParty {
    /// Reads the provider's discovery document; `root_pem` is the trust
    /// anchor of Kexin's HTTPS certificate when it is not a public one.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        root_pem: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(pem) = root_pem {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        let http = builder.build()?;
        let issuer = issuer.trim_end_matches('/').to_owned();
        let discovery: serde_json::Value = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if discovery["issuer"] != issuer.as_str() {
            return Err(Error::Refused(format!(
                "the discovery document is for {}",
                discovery["issuer"]
            )));
        }
        Ok(Self {
            issuer,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            discovery,
            http,
            jwks: jwks::JwksCache::default(),
        })
    }

    fn endpoint(&self, name: &str) -> String {
        self.discovery[name].as_str().unwrap_or_default().to_owned()
    }

    /// A new sign-in: state, nonce and a PKCE verifier, and the URL.
    pub fn login(&self) -> Result<LoginRequest, Error> {
        Ok(self.login_for(random()?, random()?, random()?))
    }

    /// The sign-in with these secrets. The verifier is 43 to 128 URL-safe
    /// characters (RFC 7636 §4.1).
    pub(crate) fn login_for(&self, state: String, nonce: String, verifier: String) -> LoginRequest {
        let challenge = B64URL.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            verifier.as_bytes(),
        ));
        let url = reqwest::Url::parse_with_params(
            &self.endpoint("authorization_endpoint"),
            &[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", "openid profile"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .map(|u| u.to_string())
        .unwrap_or_default();
        LoginRequest {
            url,
            state,
            nonce,
            verifier,
        }
    }

    /// Finishes a sign-in from the callback's query string: checks state,
    /// exchanges the code with the PKCE verifier, verifies the ID token.
    pub async fn complete(
        &self,
        login: &LoginRequest,
        callback_query: &str,
    ) -> Result<SignedIn, Error> {
        let params: Vec<(String, String)> =
            reqwest::Url::parse(&format!("https://x/?{callback_query}"))
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let Some(e) = get("error") {
            return Err(Error::Refused(format!(
                "{e}: {}",
                get("error_description").unwrap_or_default()
            )));
        }
        if get("state").as_deref() != Some(login.state.as_str()) {
            return Err(Error::Refused("state does not match this sign-in".into()));
        }
        let code = get("code").ok_or_else(|| Error::Refused("no code".into()))?;
        let tokens = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", &login.verifier),
            ])
            .await?;
        let claims = self
            .verify_id_token(
                tokens["id_token"].as_str().unwrap_or_default(),
                Some(&login.nonce),
            )
            .await?;
        Ok(SignedIn {
            claims,
            access_token: tokens["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            refresh_token: tokens["refresh_token"].as_str().map(str::to_owned),
            expires_in: tokens["expires_in"].as_u64().unwrap_or(0),
        })
    }

    /// A refresh grant: a new access token and the rotated refresh token.
    /// The provider refuses it once the SSO session has ended (logout, or
    /// the official's certificate revoked or held), so a renewal also says
    /// that the session stands. Present each refresh token once: a second
    /// presentation is taken for a stolen token and ends its whole family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Renewed, Error> {
        let tokens = self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .await?;
        let field = |name: &str| tokens[name].as_str().map(str::to_owned);
        match (field("access_token"), field("refresh_token")) {
            (Some(access_token), Some(refresh_token)) => Ok(Renewed {
                access_token,
                refresh_token,
                expires_in: tokens["expires_in"].as_u64().unwrap_or(0),
            }),
            _ => Err(Error::Refused(
                "the token endpoint answered no tokens".into(),
            )),
        }
    }

    /// A request to the token endpoint as this client (client_secret_basic):
    /// its JSON answer, or the OAuth error it gave.
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<serde_json::Value, Error> {
        let tokens: serde_json::Value = self
            .http
            .post(self.endpoint("token_endpoint"))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(form)
            .send()
            .await?
            .json()
            .await?;
        if let Some(e) = tokens["error"].as_str() {
            return Err(Error::Refused(format!(
                "{e}: {}",
                tokens["error_description"].as_str().unwrap_or_default()
            )));
        }
        Ok(tokens)
    }

    /// Verifies an ID token (ES256, our issuer, this client, not expired,
    /// the nonce if given) against the provider's JWKS, cached for five
    /// minutes and refetched for an unknown key id (rotation) when the
    /// cached one is at least 30 seconds old.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let claims = self.verify_jwt(token, "JWT").await?;
        if let Some(n) = nonce {
            if claims["nonce"] != n {
                return Err(Error::InvalidToken(
                    "nonce does not match this sign-in".into(),
                ));
            }
        }
        Ok(claims)
    }

    /// Verifies, here and without asking the provider, an access token the
    /// provider issued to this system: RFC 9068 (`typ` `at+jwt`, so an ID
    /// token cannot stand in for one), signature against the cached JWKS,
    /// issuer, audience and expiry. Access tokens live five minutes, and a
    /// logout or a revocation since the token was issued cannot be seen
    /// here: where that matters, ask [`Self::still_signed_in`]. A
    /// certificate-bound token (a `cnf` claim, RFC 8705) is only good from
    /// the holder of the certificate whose thumbprint it names, which the
    /// caller must check.
    pub async fn verify_access_token(&self, token: &str) -> Result<serde_json::Value, Error> {
        self.verify_jwt(token, "at+jwt").await
    }

    /// Signature (ES256 or SM2, JWKS), type (`typ`), issuer, audience and
    /// expiry of a JWT the provider issued to this system.
    async fn verify_jwt(&self, token: &str, typ: &str) -> Result<serde_json::Value, Error> {
        let bad = |m: &str| Error::InvalidToken(m.to_owned());
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a JWT"));
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(h).map_err(|_| bad("header"))?)
                .map_err(|_| bad("header"))?;
        let alg = header["alg"].as_str().unwrap_or_default().to_owned();
        if alg != "ES256" && alg != "SM2" {
            return Err(bad("only ES256 and SM2 are accepted"));
        }
        if header["typ"] != typ {
            return Err(bad("another kind of token"));
        }
        let key = self
            .jwks
            .key(&self.http, &self.endpoint("jwks_uri"), &header["kid"])
            .await?
            .ok_or_else(|| bad("unknown key id"))?;
        let coord = |n: &str| {
            B64URL
                .decode(key[n].as_str().unwrap_or_default())
                .map_err(|_| bad("key"))
        };
        let mut point = vec![4u8];
        point.extend(coord("x")?);
        point.extend(coord("y")?);
        let sig = B64URL.decode(s).map_err(|_| bad("signature"))?;
        if key["alg"] != alg.as_str() {
            return Err(bad("the key is for another algorithm"));
        }
        let signed = format!("{h}.{c}");
        if alg == "SM2" {
            use sm2::dsa::signature::Verifier;
            let public = sm2::PublicKey::from_sec1_bytes(&point).map_err(|_| bad("key"))?;
            let verifying =
                sm2::dsa::VerifyingKey::new("1234567812345678", public).map_err(|_| bad("key"))?;
            let sig = sm2::dsa::Signature::from_slice(&sig).map_err(|_| bad("signature"))?;
            verifying
                .verify(signed.as_bytes(), &sig)
                .map_err(|_| bad("signature does not verify"))?;
        } else {
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                &point,
            )
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| bad("signature does not verify"))?;
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(c).map_err(|_| bad("claims"))?)
                .map_err(|_| bad("claims"))?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        if claims["iss"] != self.issuer.as_str() {
            return Err(bad("issued by someone else"));
        }
        if claims["aud"] != self.client_id.as_str() {
            return Err(bad("issued to another system"));
        }
        if claims["exp"].as_i64().unwrap_or(0) <= now {
            return Err(bad("expired"));
        }
        Ok(claims)
    }

    /// Verifies an OpenID Connect Back-Channel Logout token: signed by the
    /// provider, for this system, carrying the logout event and a session
    /// id, no nonce. Returns the session id (`sid`) to end.
    pub async fn verify_logout_token(&self, token: &str) -> Result<String, Error> {
        let claims = self.verify_jwt(token, "JWT").await?;
        if !claims["nonce"].is_null() {
            return Err(Error::InvalidToken("a logout token has no nonce".into()));
        }
        if claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_null() {
            return Err(Error::InvalidToken("not a logout token".into()));
        }
        claims["sid"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::InvalidToken("no sid".into()))
    }

    /// Whether the official's SSO session still stands (logging out
    /// anywhere ends it everywhere): the provider answers userinfo only
    /// while it does.
    pub async fn still_signed_in(&self, access_token: &str) -> bool {
        match self
            .http
            .get(self.endpoint("userinfo_endpoint"))
            .bearer_auth(access_token)
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// Where to send the browser to sign out of every system.
    pub fn logout_url(&self, post_logout_redirect_uri: &str) -> String {
        reqwest::Url::parse_with_params(
            &self.endpoint("end_session_endpoint"),
            &[
                ("client_id", self.client_id.as_str()),
                ("post_logout_redirect_uri", post_logout_redirect_uri),
            ],
        )
        .map(|u| u.to_string())
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_sign_ins_keep_their_secrets_to_themselves() {
        let login = LoginRequest {
            url: "https://sso.example.gov.cn/oidc/authorize".into(),
            state: "state".into(),
            nonce: "nonce".into(),
            verifier: "pkce-secret".into(),
        };
        let signed_in = SignedIn {
            claims: serde_json::json!({ "sub": "zhang-san" }),
            access_token: "access-secret".into(),
            refresh_token: Some("refresh-secret".into()),
            expires_in: 300,
        };
        let renewed = Renewed {
            access_token: "access-secret".into(),
            refresh_token: "refresh-secret".into(),
            expires_in: 300,
        };
        for printed in [
            format!("{login:?}"),
            format!("{signed_in:?}"),
            format!("{renewed:?}"),
        ] {
            assert!(!printed.contains("secret"), "{printed}");
            assert!(printed.contains(REDACTED), "{printed}");
        }
    }
}
