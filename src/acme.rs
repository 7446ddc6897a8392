//! ACME (RFC 8555) at `/acme/directory`: accounts by key, orders for DNS
//! names, http-01 validation, finalization from a CSR and revocation, so
//! that a government system's TLS certificate renews itself (certbot,
//! lego, acme.sh, Caddy, ...).
//!
//! The RA's part is here (who may have which name: the account proved
//! control of every name by http-01, and the names lie inside
//! `ca.systems_permitted_dns` when that is set); the certificate itself is
//! issued by the same path as the REST API's, under `acme.profile`, linted
//! and journaled like every other. Every response carries a fresh
//! `Replay-Nonce`; every POST must spend one.

mod account;
mod certificate;
mod http01;
mod jws;
mod nonce;
mod order;
mod store;

pub use account::{issue_external_account, list_external_accounts};
pub use nonce::Nonces;

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;

use crate::serve::AppState;
use jws::AccountKey;
use kexin_ca::issuance::now;
use store::Account;

/// The ACME resources; every response they give carries what RFC 8555
/// asks of all (`finish`).
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/acme/directory", get(directory))
        .route("/acme/new-nonce", get(new_nonce).head(new_nonce))
        .route("/acme/new-account", post(account::new_account))
        .route("/acme/account/{id}", post(account::account))
        .route("/acme/account/{id}/orders", post(account::account_orders))
        .route("/acme/key-change", post(account::key_change))
        .route("/acme/new-order", post(order::new_order))
        .route("/acme/order/{id}", post(order::order))
        .route("/acme/order/{id}/finalize", post(certificate::finalize))
        .route("/acme/authz/{id}", post(order::authorization))
        .route("/acme/chall/{id}", post(order::challenge))
        .route("/acme/cert/{id}", post(certificate::certificate))
        .route("/acme/revoke-cert", post(certificate::revoke_certificate))
        .layer(axum::middleware::from_fn_with_state(
            state,
            with_acme_headers,
        ))
}

async fn with_acme_headers(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let res = next.run(request).await;
    finish(&state, res)
}

/// At startup: validations a stop cut off (their task died with the
/// process) go back to pending, so that a client's retry starts them again.
pub async fn reopen_interrupted_validations(
    db: &kexin_ca::storage::Database,
) -> anyhow::Result<()> {
    let reopened = store::reopen_interrupted(db).await?;
    if reopened > 0 {
        tracing::info!(
            reopened,
            "ACME validations interrupted by the last stop are pending again"
        );
    }
    Ok(())
}

/// An ACME problem document (RFC 8555 §6.7).
#[derive(Debug)]
pub struct AcmeError {
    pub kind: &'static str,
    pub status: StatusCode,
    pub detail: String,
}

impl AcmeError {
    pub fn new(kind: &'static str, status: StatusCode, detail: &str) -> Self {
        Self {
            kind,
            status,
            detail: detail.to_owned(),
        }
    }

    pub(crate) fn malformed(detail: &str) -> Self {
        Self::new("malformed", StatusCode::BAD_REQUEST, detail)
    }

    pub(crate) fn unauthorized(detail: &str) -> Self {
        Self::new("unauthorized", StatusCode::FORBIDDEN, detail)
    }

    fn not_found(what: &str) -> Self {
        Self::new(
            "malformed",
            StatusCode::NOT_FOUND,
            &format!("no such {what}"),
        )
    }

    pub(crate) fn server_internal() -> Self {
        Self::new(
            "serverInternal",
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not complete the request; try again later",
        )
    }

    fn document(&self) -> serde_json::Value {
        json!({
            "type": format!("urn:ietf:params:acme:error:{}", self.kind),
            "detail": self.detail,
            "status": self.status.as_u16(),
        })
    }
}

impl std::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for AcmeError {}

/// For the API and the console, which answer in problem documents of
/// their own.
impl From<AcmeError> for crate::problem::Problem {
    fn from(e: AcmeError) -> Self {
        Self::new(e.status, &e.detail)
    }
}

impl From<jws::JwsError> for AcmeError {
    fn from(e: jws::JwsError) -> Self {
        let status = if e.kind == "unauthorized" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            kind: e.kind,
            status,
            detail: e.detail,
        }
    }
}

/// An account's URL: its `kid`.
fn account_url(state: &AppState, id: &str) -> String {
    format!("{}/account/{id}", base(state))
}

fn base(state: &AppState) -> String {
    format!("{}/acme", state.instance.config.https.public_base())
}

/// Adds what every ACME response carries: a fresh nonce, the directory
/// link, and no caching.
fn finish(state: &AppState, mut res: Response) -> Response {
    let headers = res.headers_mut();
    if let Some(nonce) = state.acme_nonces.issue() {
        if let Ok(v) = HeaderValue::from_str(&nonce) {
            headers.insert("replay-nonce", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("<{}/directory>;rel=\"index\"", base(state))) {
        headers.append(header::LINK, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn json_response(status: StatusCode, body: serde_json::Value, location: Option<&str>) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

impl IntoResponse for AcmeError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.document())).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

async fn directory(State(state): State<AppState>) -> Response {
    let b = base(&state);
    let body = json!({
        "newNonce": format!("{b}/new-nonce"),
        "newAccount": format!("{b}/new-account"),
        "newOrder": format!("{b}/new-order"),
        "revokeCert": format!("{b}/revoke-cert"),
        "keyChange": format!("{b}/key-change"),
        "meta": {
            "website": state.instance.config.https.public_base(),
            "externalAccountRequired": state.instance.config.acme.external_account_required,
        },
    });
    axum::Json(body).into_response()
}

/// The nonce itself is in the header every ACME response gets.
async fn new_nonce(method: axum::http::Method) -> StatusCode {
    if method == axum::http::Method::HEAD {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    }
}

/// A request whose JWS verified, with the account its `kid` names (None
/// when it was signed with a `jwk`).
struct Signed {
    account: Option<Account>,
    key: AccountKey,
    payload: Vec<u8>,
}

impl Signed {
    fn account(&self) -> Result<&Account, AcmeError> {
        self.account
            .as_ref()
            .ok_or_else(|| AcmeError::malformed("sign this request with the account's kid"))
    }

    fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| AcmeError::malformed(&format!("the payload does not parse: {e}")))
    }
}

impl axum::extract::FromRequest<AppState> for Signed {
    type Rejection = AcmeError;

    /// Authenticates a POST: new-account and revoke-cert may be signed
    /// with a `jwk`, every other resource with an account's `kid`.
    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, AcmeError> {
        let path = request
            .uri()
            .path()
            .strip_prefix("/acme")
            .unwrap_or_default()
            .to_owned();
        let headers = request.headers().clone();
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| AcmeError::malformed(&format!("the body could not be read: {e}")))?;
        let jwk_allowed = matches!(path.as_str(), "/new-account" | "/revoke-cert");
        authenticate(state, &headers, &path, &body, jwk_allowed).await
    }
}

/// Checks the media type, the URL, the nonce, the key and the signature
/// of a POST to `path` (below `/acme`). `jwk_allowed` only for new-account
/// and revoke-cert.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    jwk_allowed: bool,
) -> Result<Signed, AcmeError> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !media_type.eq_ignore_ascii_case("application/jose+json") {
        return Err(AcmeError::new(
            "malformed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ACME requests are application/jose+json",
        ));
    }
    let (jws, header) = jws::parse(body)?;
    let b = base(state);
    if header.url != format!("{b}{path}") {
        return Err(AcmeError::unauthorized(
            "the protected header's url is not the URL this request was sent to",
        ));
    }
    let nonce_ok = match header.nonce.as_deref() {
        Some(n) => state.acme_nonces.spend(n).await.map_err(|e| {
            tracing::error!(error = %e, "spending an ACME nonce");
            AcmeError::server_internal()
        })?,
        None => false,
    };
    if !nonce_ok {
        return Err(AcmeError::new(
            "badNonce",
            StatusCode::BAD_REQUEST,
            "the nonce is missing, spent or unknown; retry with the one in Replay-Nonce",
        ));
    }
    let (account, key) = match (&header.jwk, &header.kid) {
        (Some(jwk), None) if jwk_allowed => (None, AccountKey::from_jwk(jwk)?),
        (Some(_), None) => {
            return Err(AcmeError::malformed(
                "sign this request with the account's kid, not a jwk",
            ))
        }
        (None, Some(kid)) => {
            let id = kid
                .strip_prefix(&format!("{b}/account/"))
                .ok_or_else(|| AcmeError::malformed("the kid is not an account URL"))?;
            let account = store::account(&state.instance.db, id)
                .await?
                .ok_or_else(|| {
                    AcmeError::new(
                        "accountDoesNotExist",
                        StatusCode::BAD_REQUEST,
                        "no account has this kid",
                    )
                })?;
            if account.status != "valid" {
                return Err(AcmeError::unauthorized("the account is deactivated"));
            }
            let jwk: serde_json::Value =
                serde_json::from_str(&account.jwk).map_err(|_| AcmeError::server_internal())?;
            let key = AccountKey::from_jwk(&jwk)?;
            (Some(account), key)
        }
        _ => return Err(AcmeError::malformed("one of jwk and kid")),
    };
    let verified = jws::verify(&jws, &header, key)?;
    Ok(Signed {
        account,
        key: verified.key,
        payload: verified.payload,
    })
}

async fn audit(
    state: &AppState,
    account_id: &str,
    action: &str,
    target: &str,
    peer: SocketAddr,
    detail: serde_json::Value,
) -> Result<(), AcmeError> {
    state
        .instance
        .audit
        .append(kexin_ca::audit::AuditEvent {
            actor: &format!("acme:{account_id}"),
            action,
            target,
            source: &peer.ip().to_string(),
            detail,
        })
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(error = %e, "audit append for ACME");
            AcmeError::server_internal()
        })
}
