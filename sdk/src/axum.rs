//! Protecting axum routes with Kexin single sign-on.
//!
//! [`Sso`] keeps sign-ins in progress and signed-in sessions (in memory,
//! keyed by a random cookie). [`SignedIn`] is an extractor: a handler that
//! takes it runs only for a signed-in official whose SSO session still
//! stands (checked with the provider at most every few seconds); anyone
//! else is redirected to `/login`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};

use crate::{LoginRequest, RelyingParty};

const COOKIE: &str = "kexin_rp";
const RECHECK: Duration = Duration::from_secs(5);

struct Session {
    claims: serde_json::Value,
    access_token: String,
    checked: Instant,
}

/// The SSO state of a relying system.
pub struct Sso {
    pub rp: RelyingParty,
    pending: Mutex<HashMap<String, LoginRequest>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sso {
    pub fn new(rp: RelyingParty) -> Arc<Self> {
        Arc::new(Self {
            rp,
            pending: Mutex::default(),
            sessions: Mutex::default(),
        })
    }

    /// `/login`: redirect to Kexin.
    pub fn begin(&self) -> Response {
        let login = match self.rp.login() {
            Ok(l) => l,
            Err(e) => {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
            }
        };
        let url = login.url.clone();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(login.state.clone(), login);
        Redirect::to(&url).into_response()
    }

    /// `/callback`: finish the sign-in, set the session cookie, go `home`.
    pub async fn finish(&self, query: &str, home: &str) -> Response {
        let state = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("state="))
            .unwrap_or_default()
            .to_owned();
        let Some(login) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&state)
        else {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                "unknown or used sign-in",
            )
                .into_response();
        };
        match self.rp.complete(&login, query).await {
            Ok(signed_in) => {
                let Ok(id) = crate::random() else {
                    return (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "no system randomness",
                    )
                        .into_response();
                };
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        id.clone(),
                        Session {
                            claims: signed_in.claims,
                            access_token: signed_in.access_token,
                            checked: Instant::now(),
                        },
                    );
                let mut res = Redirect::to(home).into_response();
                if let Ok(v) =
                    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax"))
                {
                    res.headers_mut().insert(header::SET_COOKIE, v);
                }
                res
            }
            Err(e) => (axum::http::StatusCode::FORBIDDEN, e.to_string()).into_response(),
        }
    }

    /// `POST /backchannel-logout` (OpenID Connect Back-Channel Logout): the
    /// provider says a session ended; every local session of it ends now.
    pub async fn backchannel_logout(&self, form_body: &str) -> axum::http::StatusCode {
        let token = form_body
            .split('&')
            .find_map(|kv| kv.strip_prefix("logout_token="))
            .unwrap_or_default();
        match self.rp.verify_logout_token(token).await {
            Ok(sid) => {
                self.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|_, s| s.claims["sid"] != sid.as_str());
                axum::http::StatusCode::OK
            }
            Err(_) => axum::http::StatusCode::BAD_REQUEST,
        }
    }

    /// `/logout`: forget the local session and end the SSO session.
    pub fn logout(&self, parts_cookie: Option<&str>, after: &str) -> Response {
        if let Some(id) = parts_cookie {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
        Redirect::to(&self.rp.logout_url(after)).into_response()
    }
}

/// The session cookie of a request, for [`Sso::logout`].
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
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
        let to_login = || Redirect::to("/login").into_response();
        let id = session_cookie(&parts.headers).ok_or_else(to_login)?;
        let (claims, token, stale) = {
            let map = sso.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let s = map.get(&id).ok_or_else(to_login)?;
            (
                s.claims.clone(),
                s.access_token.clone(),
                s.checked.elapsed() >= RECHECK,
            )
        };
        if stale {
            if !sso.rp.still_signed_in(&token).await {
                sso.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return Err(to_login());
            }
            if let Some(s) = sso
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&id)
            {
                s.checked = Instant::now();
            }
        }
        Ok(Self { claims })
    }
}
