//! Protecting axum routes with Kexin single sign-on.
//!
//! [`Sso`] keeps signed-in sessions in a [`SessionStore`], keyed by a
//! random cookie, and forgets one unused for [`SESSION_IDLE`]. A sign-in in
//! progress is kept nowhere: its state is stamped with the time under a
//! state key, its nonce and PKCE verifier are derived from the state, and
//! the state is also set in a cookie of the browser that started it. So an
//! anonymous `/login` costs no memory, and only the browser that started a
//! sign-in can finish it (a callback URL sent to someone else signs them in
//! as nobody). [`SignedIn`] is an extractor: a handler that takes it runs
//! only for a signed-in official whose SSO session still stands (checked
//! with the provider at most every few seconds; an access token near its
//! end is renewed by the check, with the refresh token); anyone else is
//! redirected to `/login`. [`BearerToken`] protects API routes instead: it takes the
//! caller's access token from `Authorization: Bearer` (RFC 6750) and
//! verifies it here; anyone else gets 401 with a `WWW-Authenticate`
//! challenge.
//!
//! [`Sso::new`] serves one process: a random state key, sessions in
//! memory. Replicas behind a load balancer that sends a browser to any of
//! them use [`Sso::shared`] with one state key and one store, so that a
//! sign-in started at one replica finishes at another and a session made
//! at one is good at all.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use crate::sessions::{MemorySessionStore, Session, SessionStore, StoreError};
use crate::{unix_now, Error, LoginRequest, RelyingParty};

const COOKIE: &str = "kexin_rp";
const LOGIN_COOKIE: &str = "kexin_rp_login";
const RECHECK: Duration = Duration::from_secs(5);

/// An access token with less than this left is renewed at the next check,
/// so that a session in use never finds its token expired (which the
/// provider would take for a session that ended).
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// How long the right to check a session lasts: longer than the provider
/// may take to answer (the SDK's HTTP timeout is 10 s), so that it never
/// lapses while its holder still waits for a refresh grant.
const CHECK_CLAIM: Duration = Duration::from_secs(30);

/// How often a request waits to see another's check of its session end.
const CHECK_POLL: Duration = Duration::from_millis(100);

/// How long a browser has to come back from the provider with its code.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// A local session unused this long is forgotten, as the provider forgets
/// an idle SSO session; the official's next request signs in again, without
/// a prompt while the SSO session stands.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// The shortest state key [`Sso::shared`] takes.
pub const STATE_KEY_MIN: usize = 32;

/// Sign-in states stamped under one key, and the secrets derived from
/// them.
struct StateStamp(hmac::Key);

/// What a state is made of: issue time (seconds, 8 bytes) and 16 random
/// bytes, then their HMAC-SHA256.
const STATE_BODY: usize = 24;

impl StateStamp {
    fn new() -> Result<Self, Error> {
        hmac::Key::generate(hmac::HMAC_SHA256, &aws_lc_rs::rand::SystemRandom::new())
            .map(Self)
            .map_err(|_| Error::Refused("no system randomness".into()))
    }

    fn from_key(key: &[u8]) -> Result<Self, Error> {
        if key.len() < STATE_KEY_MIN {
            return Err(Error::Refused(format!(
                "a state key has at least {STATE_KEY_MIN} bytes, this one {}",
                key.len()
            )));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, key)))
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, &labelled(label, data))
    }

    fn issue(&self, now: u64) -> Result<String, Error> {
        let mut body = [0u8; STATE_BODY];
        body[..8].copy_from_slice(&now.to_be_bytes());
        aws_lc_rs::rand::fill(&mut body[8..])
            .map_err(|_| Error::Refused("no system randomness".into()))?;
        let tag = self.mac(b"kexin-rp-state", &body);
        Ok(B64URL.encode([&body[..], tag.as_ref()].concat()))
    }

    /// Whether `state` was stamped under this key less than
    /// [`LOGIN_LIFETIME`] before `now` (or up to a minute after, if the
    /// clock was set back or another replica's runs ahead).
    fn is_fresh(&self, state: &str, now: u64) -> bool {
        let Ok(bytes) = B64URL.decode(state) else {
            return false;
        };
        let Some((body, tag)) = bytes.split_at_checked(STATE_BODY) else {
            return false;
        };
        if hmac::verify(&self.0, &labelled(b"kexin-rp-state", body), tag).is_err() {
            return false;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&body[..8]);
        let issued = u64::from_be_bytes(issued);
        issued <= now.saturating_add(60) && now.saturating_sub(issued) < LOGIN_LIFETIME.as_secs()
    }

    /// The sign-in's nonce and PKCE verifier (43 characters).
    fn secrets(&self, state: &str) -> (String, String) {
        let derive = |label: &[u8]| B64URL.encode(self.mac(label, state.as_bytes()));
        (derive(b"kexin-rp-nonce"), derive(b"kexin-rp-pkce"))
    }
}

/// Labels end in a NUL so that no label is a prefix of another.
fn labelled(label: &[u8], data: &[u8]) -> Vec<u8> {
    [label, b"\0", data].concat()
}

/// Where a session is stored: the SHA-256 of its cookie, so that a reader
/// of the store cannot present it.
fn store_key(cookie: &str) -> String {
    B64URL.encode(digest::digest(&digest::SHA256, cookie.as_bytes()))
}

fn unavailable(e: StoreError) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

/// The SSO state of a relying system.
pub struct Sso {
    pub rp: RelyingParty,
    stamp: StateStamp,
    sessions: Arc<dyn SessionStore>,
}

impl Sso {
    /// One process: a random state key, sessions in memory.
    pub fn new(rp: RelyingParty) -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Self {
            rp,
            stamp: StateStamp::new()?,
            sessions: Arc::new(MemorySessionStore::default()),
        }))
    }

    /// One of several replicas: every replica has the same `state_key`
    /// (at least [`STATE_KEY_MIN`] random bytes, kept as secret as the
    /// client secret) and reaches the same `sessions`. Their clocks agree
    /// within a minute.
    pub fn shared(
        rp: RelyingParty,
        state_key: &[u8],
        sessions: Arc<dyn SessionStore>,
    ) -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Self {
            rp,
            stamp: StateStamp::from_key(state_key)?,
            sessions,
        }))
    }

    fn login_for(&self, state: &str) -> LoginRequest {
        let (nonce, verifier) = self.stamp.secrets(state);
        self.rp.login_for(state.to_owned(), nonce, verifier)
    }

    /// A `Set-Cookie` value; `Secure` when the system is served over HTTPS.
    fn cookie(&self, name: &str, value: &str, max_age: Option<Duration>) -> Option<HeaderValue> {
        let max_age = max_age
            .map(|a| format!("; Max-Age={}", a.as_secs()))
            .unwrap_or_default();
        let secure = if self.rp.redirect_uri.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Lax{max_age}{secure}"
        ))
        .ok()
    }

    /// `/login`: redirect to Kexin.
    pub fn begin(&self) -> Response {
        let state = match self.stamp.issue(unix_now()) {
            Ok(s) => s,
            Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        };
        let mut res = Redirect::to(&self.login_for(&state).url).into_response();
        if let Some(v) = self.cookie(LOGIN_COOKIE, &state, Some(LOGIN_LIFETIME)) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    }

    /// `/callback`: finish the sign-in that this browser started (its
    /// request's `headers` carry the cookie `/login` set), set the session
    /// cookie, go `home`.
    pub async fn finish(&self, headers: &HeaderMap, query: &str, home: &str) -> Response {
        let state = reqwest::Url::parse(&format!("https://x/?{query}"))
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        let started_here = cookie_value(headers, LOGIN_COOKIE).is_some_and(|c| {
            aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), state.as_bytes())
                .is_ok()
        });
        let outcome = if !started_here {
            Err((
                StatusCode::BAD_REQUEST,
                "this sign-in was not started in this browser: sign in again".to_owned(),
            ))
        } else if !self.stamp.is_fresh(&state, unix_now()) {
            Err((
                StatusCode::BAD_REQUEST,
                "unknown or expired sign-in: sign in again".to_owned(),
            ))
        } else {
            self.signed_in(&self.login_for(&state), query, home).await
        };
        let mut res = outcome.unwrap_or_else(|e| e.into_response());
        if let Some(v) = self.cookie(LOGIN_COOKIE, "", Some(Duration::ZERO)) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    }

    async fn signed_in(
        &self,
        login: &LoginRequest,
        query: &str,
        home: &str,
    ) -> Result<Response, (StatusCode, String)> {
        let signed_in = self
            .rp
            .complete(login, query)
            .await
            .map_err(|e| (StatusCode::FORBIDDEN, e.to_string()))?;
        let id = crate::random().map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let now = unix_now();
        let session = Session {
            claims: signed_in.claims,
            access_token: signed_in.access_token,
            refresh_token: signed_in.refresh_token,
            expires_at: now.saturating_add(signed_in.expires_in),
            checked_at: now,
        };
        self.sessions
            .save(&store_key(&id), &session)
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let mut res = Redirect::to(home).into_response();
        if let Some(v) = self.cookie(COOKIE, &id, None) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        Ok(res)
    }

    /// `POST /backchannel-logout` (OpenID Connect Back-Channel Logout): the
    /// provider says a session ended; every local session of it ends now.
    pub async fn backchannel_logout(&self, form_body: &str) -> StatusCode {
        let token = form_body
            .split('&')
            .find_map(|kv| kv.strip_prefix("logout_token="))
            .unwrap_or_default();
        match self.rp.verify_logout_token(token).await {
            Ok(sid) => match self.sessions.remove_sso_session(&sid).await {
                Ok(()) => StatusCode::OK,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            Err(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// `/logout`: forget the local session of the request with `headers`
    /// and end the SSO session; the provider then sends the browser to
    /// `after`.
    pub async fn logout(&self, headers: &HeaderMap, after: &str) -> Response {
        if let Some(id) = session_cookie(headers) {
            if let Err(e) = self.sessions.remove(&store_key(&id)).await {
                return unavailable(e);
            }
        }
        Redirect::to(&self.rp.logout_url(after)).into_response()
    }

    /// The session under `key`, unless it has been unused too long.
    async fn live(&self, key: &str, now: u64) -> Result<Option<Session>, Response> {
        let session = self.sessions.load(key).await.map_err(unavailable)?;
        Ok(session.filter(|s| now.saturating_sub(s.checked_at) < SESSION_IDLE.as_secs()))
    }

    /// The claims of the session under the cookie `id`, once the provider
    /// has said, at most [`RECHECK`] ago, that its SSO session stands.
    async fn claims(&self, id: &str) -> Result<serde_json::Value, Response> {
        let key = store_key(id);
        let now = unix_now();
        let session = self.live(&key, now).await?.ok_or_else(to_login)?;
        if now.saturating_sub(session.checked_at) < RECHECK.as_secs() {
            return Ok(session.claims);
        }
        let claimed = self
            .sessions
            .claim_check(&key, now, now + CHECK_CLAIM.as_secs())
            .await
            .map_err(unavailable)?;
        if !claimed {
            return self.checked_elsewhere(&key, session).await;
        }
        // Read again: a check may have ended between the read and the claim.
        let mut session = self.live(&key, now).await?.ok_or_else(to_login)?;
        if now.saturating_sub(session.checked_at) >= RECHECK.as_secs() {
            // An access token about to expire is renewed (which also says
            // the SSO session stands); otherwise the provider is asked
            // whether the session stands with the token as it is.
            let stands = match session.refresh_token.clone() {
                Some(r) if session.expires_at.saturating_sub(now) < RENEW_BEFORE.as_secs() => {
                    match self.rp.refresh(&r).await {
                        Ok(renewed) => {
                            session.expires_at = unix_now().saturating_add(renewed.expires_in);
                            session.access_token = renewed.access_token;
                            session.refresh_token = Some(renewed.refresh_token);
                            true
                        }
                        Err(_) => false,
                    }
                }
                _ => self.rp.still_signed_in(&session.access_token).await,
            };
            if !stands {
                self.sessions.remove(&key).await.map_err(unavailable)?;
                return Err(to_login());
            }
            session.checked_at = unix_now();
        }
        self.sessions
            .save(&key, &session)
            .await
            .map_err(unavailable)?;
        Ok(session.claims)
    }

    /// Another request, here or at another replica, is checking the
    /// session: with its access token still good the request goes on as
    /// the last check left it; otherwise it waits for the check's outcome.
    async fn checked_elsewhere(
        &self,
        key: &str,
        session: Session,
    ) -> Result<serde_json::Value, Response> {
        if session.expires_at > unix_now() {
            return Ok(session.claims);
        }
        let polls = CHECK_CLAIM.as_millis() / CHECK_POLL.as_millis();
        for _ in 0..polls {
            tokio::time::sleep(CHECK_POLL).await;
            let now = unix_now();
            match self.live(key, now).await? {
                Some(s) if s.checked_at > session.checked_at => return Ok(s.claims),
                Some(_) => {}
                None => return Err(to_login()),
            }
        }
        Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "the sign-in is being checked with the identity provider: try again",
        )
            .into_response())
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE)
}

/// A signed-in official; handlers that take it are protected.
pub struct SignedIn {
    pub claims: serde_json::Value,
}

impl<S> FromRequestParts<S> for SignedIn
where
    Arc<Sso>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let sso = Arc::<Sso>::from_ref(state);
        let id = session_cookie(&parts.headers).ok_or_else(to_login)?;
        Ok(Self {
            claims: sso.claims(&id).await?,
        })
    }
}

/// An API caller holding an access token the provider issued to this
/// system, verified here (see [`RelyingParty::verify_access_token`]: a
/// logout since the token was issued is not seen). Certificate-bound
/// tokens are refused: the caller's certificate is not visible here.
pub struct BearerToken {
    pub claims: serde_json::Value,
}

/// 401 with RFC 6750's challenge: no error code when no token came.
fn bearer_challenge(error: Option<&str>) -> Response {
    let mut challenge = String::from("Bearer realm=\"kexin\"");
    if let Some(description) = error {
        // A quoted-string may not hold quotes, backslashes or controls.
        let description: String = description
            .chars()
            .filter(|c| (' '..='~').contains(c) && !matches!(c, '"' | '\\'))
            .collect();
        challenge.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{description}\""
        ));
    }
    let mut res = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

impl<S> FromRequestParts<S> for BearerToken
where
    Arc<Sso>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let sso = Arc::<Sso>::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| bearer_challenge(None))?;
        let claims = sso
            .rp
            .verify_access_token(token)
            .await
            .map_err(|e| match e {
                // The provider's keys could not be fetched: not the
                // caller's fault, and worth a retry.
                Error::Http(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                e => bearer_challenge(Some(&e.to_string())),
            })?;
        if !claims["cnf"].is_null() {
            return Err(bearer_challenge(Some(
                "a certificate-bound token needs its certificate",
            )));
        }
        Ok(Self { claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_process_fresh_states_pass() {
        let (stamp, other) = (StateStamp::new().unwrap(), StateStamp::new().unwrap());
        let now = 1_800_000_000;
        let state = stamp.issue(now).unwrap();
        assert!(stamp.is_fresh(&state, now));
        assert!(stamp.is_fresh(&state, now + LOGIN_LIFETIME.as_secs() - 1));
        assert!(stamp.is_fresh(&state, now - 60), "clock set back a minute");
        assert!(!stamp.is_fresh(&state, now + LOGIN_LIFETIME.as_secs()));
        assert!(!stamp.is_fresh(&state, now - 61));
        assert!(!other.is_fresh(&state, now), "another process's key");
        let mut bytes = B64URL.decode(&state).unwrap();
        bytes[0] ^= 1;
        assert!(!stamp.is_fresh(&B64URL.encode(&bytes), now), "time edited");
        for garbage in ["", "!!", "AAAA", &state[..state.len() - 1]] {
            assert!(!stamp.is_fresh(garbage, now), "{garbage}");
        }
        let (nonce, verifier) = stamp.secrets(&state);
        assert_eq!(stamp.secrets(&state), (nonce.clone(), verifier.clone()));
        assert_ne!(nonce, verifier);
        assert_ne!(other.secrets(&state).1, verifier);
        assert_eq!(verifier.len(), 43, "RFC 7636's shortest verifier");
        assert_ne!(stamp.secrets(&stamp.issue(now).unwrap()).1, verifier);
    }

    #[test]
    fn bearer_challenges_quote_only_what_a_quoted_string_may_hold() {
        let challenge = |error| {
            let res = bearer_challenge(error);
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(challenge(None), r#"Bearer realm="kexin""#);
        assert_eq!(
            challenge(Some("invalid token: a \"quote\" \\ and\r\nnewline 签")),
            r#"Bearer realm="kexin", error="invalid_token", error_description="invalid token: a quote  andnewline ""#
        );
    }

    #[test]
    fn replicas_with_one_state_key_accept_each_others_states() {
        let key = [7u8; STATE_KEY_MIN];
        let (here, there) = (
            StateStamp::from_key(&key).unwrap(),
            StateStamp::from_key(&key).unwrap(),
        );
        let now = 1_800_000_000;
        let state = here.issue(now).unwrap();
        assert!(there.is_fresh(&state, now));
        assert_eq!(there.secrets(&state), here.secrets(&state));
        let mut other_key = key;
        other_key[0] ^= 1;
        assert!(!StateStamp::from_key(&other_key)
            .unwrap()
            .is_fresh(&state, now));
        assert!(StateStamp::from_key(&key[1..]).is_err(), "a short key");
    }

    #[test]
    fn stores_never_see_the_cookie() {
        let key = store_key("cookie-value");
        assert_ne!(key, "cookie-value");
        assert_eq!(key, store_key("cookie-value"));
        assert_ne!(key, store_key("cookie-valuf"));
    }
}
