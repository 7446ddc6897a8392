//! The authorization server: authorization requests, certificate-backed
//! single sign-on sessions, codes, tokens, refresh with rotation,
//! userinfo, introspection (RFC 7662), revocation (RFC 7009), logout.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use kexin_ca::storage::rows::NewRow;
use kexin_ca::storage::Database;
use serde::Deserialize;
use sqlx::Row;

use crate::challenges::{Challenge, ChallengeKey, FreshChallenge};
use crate::clients::{Client, Directory};
use crate::codes::{code_key, new_code, PendingCode};
use crate::jwt::{KeySet, TokenType};
use crate::refresh::{Redemption, RefreshJournal};
use crate::sessions::Sessions;
use crate::{now, oauth, random_token, sha256_hex, storage, Error};

/// How long access and ID tokens are good for unless configured.
pub const ACCESS_TOKEN_LIFETIME: i64 = 300;
pub use crate::sessions::SessionLifetimes;

/// A signed-in official: the account (`sub`) a certificate subject maps to,
/// and the claims shown to client systems.
#[derive(Clone, Debug)]
pub struct Official {
    pub subject: String,
    pub claims: serde_json::Value,
}

impl Official {
    /// One account per certificate subject: the same DN (renewed or
    /// rekeyed certificate) is the same account.
    pub fn from_certificate(
        subject_dn: &str,
        common_name: Option<&str>,
        organization: Option<&str>,
        serial: &str,
    ) -> Self {
        let subject = sha256_hex(subject_dn)[..32].to_owned();
        Self {
            subject,
            claims: serde_json::json!({
                "name": common_name,
                "org": organization,
                "x5t_serial": serial,
                "subject_dn": subject_dn,
            }),
        }
    }
}

/// A logout token to deliver (OpenID Connect Back-Channel Logout 1.0).
pub struct LogoutNotice {
    pub uri: String,
    pub client_id: String,
    pub logout_token: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuthorizationRequest {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// Why an authorization request fails: before the redirect URI is known
/// good the user sees the error; after, the client gets it.
pub enum AuthorizationError {
    Show(String),
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

pub struct Provider {
    db: Database,
    /// Replaced whole when a key is rotated in or begins to sign.
    keys: std::sync::RwLock<Arc<KeySet>>,
    issuer: String,
    sessions: Sessions,
    challenges: ChallengeKey,
    clients: Directory,
    refresh_tokens: RefreshJournal,
    /// Seconds an access or ID token is good for.
    access_lifetime: i64,
}

impl Provider {
    /// `challenges` must be made from a secret every node of the instance
    /// shares (`kexin_ca::secrets::shared_secret`).
    pub fn new(db: Database, keys: KeySet, challenges: ChallengeKey, issuer: String) -> Self {
        Self {
            clients: Directory::new(db.clone()),
            refresh_tokens: RefreshJournal::new(&db),
            sessions: Sessions::new(db.clone(), SessionLifetimes::default()),
            db,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            issuer,
            challenges,
            access_lifetime: ACCESS_TOKEN_LIFETIME,
        }
    }

    /// The token keys now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Publishes and signs with `keys` from now on; tokens being signed
    /// finish with the key they started with.
    pub fn replace_keys(&self, keys: KeySet) {
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }

    /// Access and ID tokens good for `seconds` rather than
    /// [`ACCESS_TOKEN_LIFETIME`].
    pub fn with_access_token_lifetime(mut self, seconds: u32) -> Self {
        self.access_lifetime = i64::from(seconds);
        self
    }

    /// SSO sessions that last `lifetimes` rather than the default.
    pub fn with_session_lifetimes(mut self, lifetimes: SessionLifetimes) -> Self {
        self.sessions = Sessions::new(self.db.clone(), lifetimes);
        self
    }

    pub fn session_lifetimes(&self) -> SessionLifetimes {
        self.sessions.lifetimes()
    }

    /// The registered client systems.
    pub fn clients(&self) -> &Directory {
        &self.clients
    }

    /// A new challenge for `client_id`, which must be registered.
    pub async fn challenge(&self, client_id: &str) -> Result<Challenge, Error> {
        if self.clients.find(client_id).await?.is_none() {
            return Err(oauth("invalid_client", "unknown client"));
        }
        self.challenges.issue(client_id)
    }

    /// The challenge under `id` if it is genuine and fresh; the answer
    /// claims it with [`FreshChallenge::claim`] in its sign-in's
    /// transaction, which a replayed answer's claim fails.
    pub fn check_challenge(&self, id: &str) -> Result<FreshChallenge, Error> {
        self.challenges.check(id)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn discovery(&self) -> serde_json::Value {
        let i = &self.issuer;
        serde_json::json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oidc/authorize"),
            "token_endpoint": format!("{i}/oidc/token"),
            "userinfo_endpoint": format!("{i}/oidc/userinfo"),
            "jwks_uri": format!("{i}/oidc/jwks"),
            "introspection_endpoint": format!("{i}/oidc/introspect"),
            "revocation_endpoint": format!("{i}/oidc/revoke"),
            "end_session_endpoint": format!("{i}/oidc/logout"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": if self.keys().sm2().is_some() { serde_json::json!(["ES256", "SM2"]) } else { serde_json::json!(["ES256"]) },
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "tls_client_auth"],
            "scopes_supported": ["openid", "profile"],
            "claims_supported": ["sub", "name", "org", "x5t_serial", "subject_dn", "sid", "auth_time", "nonce"],
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        })
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys().jwks()
    }

    /// Checks an authorization request before anyone signs in.
    pub async fn check_authorization(
        &self,
        r: &AuthorizationRequest,
    ) -> Result<Client, AuthorizationError> {
        let show = |m: &str| AuthorizationError::Show(m.to_owned());
        let client_id = r
            .client_id
            .as_deref()
            .ok_or_else(|| show("the request names no client_id"))?;
        let (client, _) = self
            .clients
            .find(client_id)
            .await
            .map_err(|e| show(&e.to_string()))?
            .ok_or_else(|| show("unknown client"))?;
        let redirect_uri = r
            .redirect_uri
            .as_deref()
            .ok_or_else(|| show("the request has no redirect_uri"))?;
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(show("the redirect_uri is not registered for this client"));
        }
        let fail = |error, description: &str| AuthorizationError::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            state: r.state.clone(),
            error,
            description: description.to_owned(),
        };
        if r.response_type.as_deref() != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "only the code flow is supported",
            ));
        }
        if !r
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .any(|s| s == "openid")
        {
            return Err(fail("invalid_scope", "scope must include openid"));
        }
        if r.code_challenge_method.as_deref() != Some("S256")
            || r.code_challenge
                .as_deref()
                .map(|c| c.len() != 43)
                .unwrap_or(true)
        {
            return Err(fail(
                "invalid_request",
                "PKCE with code_challenge_method S256 is required",
            ));
        }
        Ok(client)
    }

    /// The official of a live SSO session; marks it used.
    pub async fn session(&self, id: &str) -> Result<Option<Official>, Error> {
        Ok(self.sessions.use_live(&sid(id)).await?.map(|l| l.official))
    }

    /// A new SSO session for `official`, for `client` (a system that takes
    /// part from the start) if known: its id (the cookie's value), and its
    /// row, which the caller inserts in the transaction of the sign-in's
    /// audit entry ([`kexin_ca::audit::AuditLog::append_unflushed_with`]).
    pub fn new_session(
        &self,
        official: &Official,
        client: Option<&str>,
    ) -> Result<(String, NewRow), Error> {
        let id = crate::time_ordered_token()?;
        let row = self.sessions.start(sid(&id), official, client);
        Ok((id, row))
    }

    /// Counts `client_id` among the systems of a session, which logout
    /// tells; false if the session is gone.
    pub async fn join_session(&self, session_id: &str, client_id: &str) -> Result<bool, Error> {
        self.sessions.join(&sid(session_id), client_id).await
    }

    /// Ends the SSO session everywhere: no system gets a code from it again,
    /// its refresh tokens stop working, and every system that took part and
    /// registered a back-channel logout URI gets a signed logout token
    /// (returned here for delivery).
    pub async fn logout(&self, session_id: &str) -> Result<Vec<LogoutNotice>, Error> {
        let Some(session) = self.sessions.end(&sid(session_id)).await? else {
            return Ok(Vec::new());
        };
        sqlx::query("DELETE FROM oidc_codes WHERE sid = $1")
            .bind(sid(session_id))
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        sqlx::query("UPDATE oidc_refresh_tokens SET state = 'revoked' WHERE family LIKE $1")
            .bind(format!("{}:%", sid(session_id)))
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        let mut notices = Vec::new();
        for client_id in &session.clients {
            let Some((client, _)) = self.clients.find(client_id).await? else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri else {
                continue;
            };
            let t = now();
            let logout_token = self
                .keys()
                .current()
                .sign(&serde_json::json!({
                    "iss": self.issuer, "aud": client_id, "iat": t, "exp": t + 120, "jti": random_token()?,
                    "sub": session.subject, "sid": sid(session_id),
                    "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
                }), TokenType::Jwt)
                .await?;
            notices.push(LogoutNotice {
                uri,
                client_id: client_id.to_owned(),
                logout_token,
            });
        }
        Ok(notices)
    }

    /// A new code for `r`'s client from the session `session_id`, and the
    /// row that stores it, for the caller to insert (in a sign-in's audit
    /// transaction, beside the session's row).
    pub fn new_code(
        &self,
        r: &AuthorizationRequest,
        session_id: &str,
        official: &Official,
    ) -> Result<(String, NewRow), Error> {
        new_code(&PendingCode {
            client_id: r.client_id.clone().unwrap_or_default(),
            redirect_uri: r.redirect_uri.clone().unwrap_or_default(),
            code_challenge: r.code_challenge.clone().unwrap_or_default(),
            nonce: r.nonce.clone(),
            scope: r.scope.clone().unwrap_or_else(|| "openid".into()),
            subject: official.subject.clone(),
            claims: official.claims.clone(),
            session: sid(session_id),
        })
    }

    /// A code for `r`'s client from the live session `session_id`, stored
    /// now. The client must already take part in the session
    /// ([`Self::join_session`]) for logout to tell it.
    pub async fn issue_code(
        &self,
        r: &AuthorizationRequest,
        session_id: &str,
        official: &Official,
    ) -> Result<String, Error> {
        let (code, row) = self.new_code(r, session_id, official)?;
        let mut connection = self.db.pool().acquire().await.map_err(storage)?;
        kexin_ca::storage::rows::insert(&mut connection, &[&row]).await?;
        Ok(code)
    }

    /// Redeems a code once, for the client it was issued to, with the PKCE
    /// verifier that matches its challenge; the code is spent whatever the
    /// outcome, in the transaction that stores the refresh token it gives.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<serde_json::Value, Error> {
        let verifier_ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        let verifier_challenge = if verifier_ok {
            B64URL.encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                verifier.as_bytes(),
            ))
        } else {
            String::new()
        };
        let refresh = random_token()?;
        let family_suffix = random_token()?;
        let redeemed = self
            .refresh_tokens
            .redeem(Redemption {
                code_key: code_key(code),
                client_id: client.client_id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                verifier_challenge,
                refresh_sha256: sha256_hex(&refresh),
                family_suffix: family_suffix.clone(),
            })
            .await?;
        let pending = redeemed.map_err(|why| oauth("invalid_grant", why))?;
        let family = format!("{}:{family_suffix}", pending.session);
        self.tokens(
            client,
            &pending.subject,
            &pending.claims,
            &pending.scope,
            &family,
            pending.nonce.as_deref(),
            true,
            refresh,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn tokens(
        &self,
        client: &Client,
        subject: &str,
        claims: &serde_json::Value,
        scope: &str,
        family: &str,
        nonce: Option<&str>,
        with_id_token: bool,
        refresh: String,
    ) -> Result<serde_json::Value, Error> {
        let t = now();
        let session = family.split(':').next().unwrap_or_default();
        let mut access_claims = serde_json::json!({
            "iss": self.issuer, "sub": subject, "aud": client.client_id, "client_id": client.client_id,
            "scope": scope, "iat": t, "exp": t + self.access_lifetime, "jti": random_token()?, "sid": session,
            "profile": claims,
        });
        if let Some(thumbprint) = &client.certificate_thumbprint {
            access_claims["cnf"] = serde_json::json!({ "x5t#S256": thumbprint });
        }
        let keys = self.keys();
        let access = keys
            .current()
            .sign(&access_claims, TokenType::Access)
            .await?;
        let mut out = serde_json::json!({
            "access_token": access, "token_type": "Bearer", "expires_in": self.access_lifetime,
            "refresh_token": refresh, "scope": scope,
        });
        if with_id_token {
            let mut id = serde_json::json!({
                "iss": self.issuer, "sub": subject, "aud": client.client_id, "iat": t, "exp": t + self.access_lifetime,
                "auth_time": t, "sid": session, "amr": ["mtls"],
            });
            if let Some(n) = nonce {
                id["nonce"] = n.into();
            }
            for (k, v) in claims.as_object().into_iter().flatten() {
                id[k] = v.clone();
            }
            let key = if client.id_token_alg == "SM2" {
                keys.sm2().ok_or_else(|| {
                    oauth(
                        "server_error",
                        "SM2 ID tokens need a key store that holds SM2 keys",
                    )
                })?
            } else {
                keys.current()
            };
            out["id_token"] = key.sign(&id, TokenType::Jwt).await?.into();
        }
        Ok(out)
    }

    /// Rotates a refresh token: the old one is spent; a spent one presented
    /// again revokes its whole family (it was stolen or replayed).
    pub async fn refresh(&self, client: &Client, token: &str) -> Result<serde_json::Value, Error> {
        let grant = |m: &str| oauth("invalid_grant", m.to_owned());
        let hash = sha256_hex(token);
        let successor = random_token()?;
        let rotated = self
            .refresh_tokens
            .rotate(
                hash.clone(),
                client.client_id.clone(),
                sha256_hex(&successor),
            )
            .await?;
        let Some(rotated) = rotated else {
            return Err(self.not_rotated(&hash, client).await);
        };
        let claims: serde_json::Value = serde_json::from_str(&rotated.claims).unwrap_or_default();
        // A grant lives no longer than the certificate it was signed in with.
        if let Some(serial) = claims["x5t_serial"].as_str() {
            let issued = matches!(
                self.db.certificate(serial).await?,
                Some(c) if c.status == "issued"
            );
            if !issued {
                self.revoke_family(&rotated.family).await?;
                return Err(grant(
                    "the certificate of this sign-in is revoked or held: sign in again",
                ));
            }
        }
        // A grant lives no longer than its SSO session (idle and absolute
        // timeouts), and is a use of it: an official at work in one system
        // keeps the session from idling out, as a visit to another would.
        let session_key = rotated.family.split(':').next().unwrap_or_default();
        if self.sessions.use_live(session_key).await?.is_none() {
            self.revoke_family(&rotated.family).await?;
            return Err(grant("the single sign-on session has ended: sign in again"));
        }
        self.tokens(
            client,
            &rotated.subject,
            &claims,
            &rotated.scope,
            &rotated.family,
            None,
            false,
            successor,
        )
        .await
    }

    /// Why a refresh token did not rotate; a spent one presented again
    /// revokes its family (it was stolen or replayed).
    async fn not_rotated(&self, hash: &str, client: &Client) -> Error {
        let grant = |m: &str| oauth("invalid_grant", m.to_owned());
        let row = match sqlx::query(
            "SELECT family, client_id, state FROM oidc_refresh_tokens WHERE token_sha256 = $1",
        )
        .bind(hash)
        .fetch_optional(self.db.pool())
        .await
        {
            Ok(Some(row)) => row,
            Ok(None) => return grant("unknown refresh token"),
            Err(e) => return storage(e),
        };
        let get = |i: usize| row.try_get::<String, _>(i).unwrap_or_default();
        if get(1) != client.client_id {
            return grant("the refresh token belongs to another client");
        }
        if get(2) == "rotated" {
            if let Err(e) = self.revoke_family(&get(0)).await {
                return e;
            }
            return grant("refresh token reused: every token of this grant is revoked");
        }
        grant("the refresh token is revoked or expired")
    }

    async fn revoke_family(&self, family: &str) -> Result<(), Error> {
        sqlx::query("UPDATE oidc_refresh_tokens SET state = 'revoked' WHERE family = $1")
            .bind(family)
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// The claims of a live access token.
    pub async fn access(&self, token: &str) -> Result<serde_json::Value, Error> {
        let claims = self.keys().verify(token, TokenType::Access)?;
        let jti = claims["jti"].as_str().unwrap_or_default();
        let revoked = sqlx::query("SELECT 1 FROM oidc_revoked_access WHERE jti = $1")
            .bind(jti)
            .fetch_optional(self.db.pool())
            .await
            .map_err(storage)?
            .is_some();
        let session_live = match claims["sid"].as_str() {
            Some(s) => self.sessions.find(s).await?.is_some(),
            None => false,
        };
        if revoked || !session_live {
            return Err(oauth(
                "invalid_token",
                "the token was revoked or its session ended",
            ));
        }
        Ok(claims)
    }

    /// The official's claims, for the holder of a live access token; a
    /// certificate-bound token (RFC 8705 §3) only with that certificate
    /// (`presented`: the SHA-256 thumbprint of the request's TLS client
    /// certificate).
    pub async fn userinfo(
        &self,
        token: &str,
        presented: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let claims = self.access(token).await?;
        if let Some(bound) = claims["cnf"]["x5t#S256"].as_str() {
            let ok = presented.is_some_and(|p| {
                aws_lc_rs::constant_time::verify_slices_are_equal(p.as_bytes(), bound.as_bytes())
                    .is_ok()
            });
            if !ok {
                return Err(oauth(
                    "invalid_token",
                    "the token is bound to another client certificate",
                ));
            }
        }
        let mut info = claims["profile"].clone();
        if !info.is_object() {
            info = serde_json::json!({});
        }
        info["sub"] = claims["sub"].clone();
        Ok(info)
    }

    /// RFC 7662: active or not, and for whom.
    pub async fn introspect(
        &self,
        client: &Client,
        token: &str,
    ) -> Result<serde_json::Value, Error> {
        if let Ok(claims) = self.access(token).await {
            if claims["client_id"] == client.client_id.as_str() {
                return Ok(serde_json::json!({
                    "active": true, "token_type": "access_token", "sub": claims["sub"], "client_id": claims["client_id"],
                    "scope": claims["scope"], "exp": claims["exp"], "iat": claims["iat"], "iss": self.issuer,
                }));
            }
        }
        let row = sqlx::query("SELECT client_id, subject, scope, expires_at FROM oidc_refresh_tokens WHERE token_sha256 = $1 AND state = 'active' AND expires_at > $2")
            .bind(sha256_hex(token))
            .bind(now())
            .fetch_optional(self.db.pool())
            .await
            .map_err(storage)?;
        Ok(match row {
            Some(r)
                if r.try_get::<String, _>(0).ok().as_deref() == Some(client.client_id.as_str()) =>
            {
                serde_json::json!({
                    "active": true, "token_type": "refresh_token", "client_id": client.client_id,
                    "sub": r.try_get::<String, _>(1).unwrap_or_default(), "scope": r.try_get::<String, _>(2).unwrap_or_default(),
                    "exp": r.try_get::<i64, _>(3).unwrap_or_default(),
                })
            }
            _ => serde_json::json!({ "active": false }),
        })
    }

    /// RFC 7009: revokes an access token (until it expires) or a refresh
    /// token's family; unknown tokens are not an error.
    pub async fn revoke(&self, client: &Client, token: &str) -> Result<(), Error> {
        if let Ok(claims) = self.keys().verify(token, TokenType::Access) {
            if claims["client_id"] == client.client_id.as_str() {
                sqlx::query("INSERT INTO oidc_revoked_access (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                    .bind(claims["jti"].as_str().unwrap_or_default())
                    .bind(claims["exp"].as_i64().unwrap_or_default())
                    .execute(self.db.pool())
                    .await
                    .map_err(storage)?;
            }
            return Ok(());
        }
        let row = sqlx::query(
            "SELECT family, client_id FROM oidc_refresh_tokens WHERE token_sha256 = $1",
        )
        .bind(sha256_hex(token))
        .fetch_optional(self.db.pool())
        .await
        .map_err(storage)?;
        if let Some(r) = row {
            if r.try_get::<String, _>(1).ok().as_deref() == Some(client.client_id.as_str()) {
                self.revoke_family(&r.try_get::<String, _>(0).map_err(storage)?)
                    .await?;
            }
        }
        Ok(())
    }
}

/// What tokens carry of a session, and its key in storage, never the
/// cookie value: the start time the id begins with (so that sessions are
/// stored in the order they start), then 80 bits of the id's hash.
pub fn sid(session_id: &str) -> String {
    crate::time_ordered_key(session_id)
}
