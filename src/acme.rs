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

mod http01;
mod jws;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use der::{Decode, Encode};
use kexin_ca::issuance::Requester;
use kexin_ca::profile::SubjectRequest;
use kexin_ca::revocation::{RevocationReason, Revocations};
use serde_json::json;

use crate::api::rfc3339;
use crate::serve::AppState;
use jws::AccountKey;
use store::{Account, Authorization, Order};

const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// Nonces held at most; past it, expired ones are dropped, and if all are
/// live the oldest generation goes (its holders get `badNonce` and retry).
const MAX_NONCES: usize = 100_000;
const ORDER_LIFETIME_SECS: i64 = 7 * 24 * 3600;
const MAX_IDENTIFIERS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/acme/directory", get(directory))
        .route("/acme/new-nonce", get(new_nonce).head(new_nonce))
        .route("/acme/new-account", post(new_account))
        .route("/acme/account/{id}", post(account))
        .route("/acme/account/{id}/orders", post(account_orders))
        .route("/acme/new-order", post(new_order))
        .route("/acme/order/{id}", post(order))
        .route("/acme/order/{id}/finalize", post(finalize))
        .route("/acme/authz/{id}", post(authorization))
        .route("/acme/chall/{id}", post(challenge))
        .route("/acme/cert/{id}", post(certificate))
        .route("/acme/revoke-cert", post(revoke_certificate))
}

/// At startup: validations a stop cut off (their task died with the
/// process) go back to pending, so that a client's retry starts them again.
pub async fn reopen_interrupted_validations(
    db: &kexin_ca::storage::Database,
) -> anyhow::Result<()> {
    let reopened = store::reopen_interrupted(db)
        .await
        .map_err(|e| anyhow::anyhow!("ACME: {}", e.detail))?;
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

    fn malformed(detail: &str) -> Self {
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

/// Nonces handed out and not yet spent.
#[derive(Default)]
pub struct Nonces {
    issued: Mutex<HashMap<String, Instant>>,
}

impl Nonces {
    /// A fresh nonce; empty (which no request can spend) if the system
    /// has no randomness to give.
    fn issue(&self) -> String {
        let Ok(nonce) = kexin_identity::random_token() else {
            return String::new();
        };
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.len() >= MAX_NONCES {
            issued.retain(|_, at| at.elapsed() < NONCE_LIFETIME);
            if issued.len() >= MAX_NONCES {
                let cutoff = Instant::now() - NONCE_LIFETIME / 2;
                issued.retain(|_, at| *at > cutoff);
            }
        }
        issued.insert(nonce.clone(), Instant::now());
        nonce
    }

    /// Spends `nonce`: true once, for a nonce this server issued.
    fn spend(&self, nonce: &str) -> bool {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        matches!(issued.remove(nonce), Some(at) if at.elapsed() < NONCE_LIFETIME)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn base(state: &AppState) -> String {
    format!("{}/acme", state.instance.config.https.public_base())
}

/// Adds what every ACME response carries: a fresh nonce, the directory
/// link, and no caching.
fn finish(state: &AppState, mut res: Response) -> Response {
    let headers = res.headers_mut();
    let nonce = state.acme_nonces.issue();
    if !nonce.is_empty() {
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

fn respond(state: &AppState, result: Result<Response, AcmeError>) -> Response {
    let res = match result {
        Ok(r) => r,
        Err(e) => {
            let mut res = (e.status, axum::Json(e.document())).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            res
        }
    };
    finish(state, res)
}

async fn directory(State(state): State<AppState>) -> Response {
    let b = base(&state);
    let body = json!({
        "newNonce": format!("{b}/new-nonce"),
        "newAccount": format!("{b}/new-account"),
        "newOrder": format!("{b}/new-order"),
        "revokeCert": format!("{b}/revoke-cert"),
        "meta": {
            "website": state.instance.config.https.public_base(),
            "externalAccountRequired": state.instance.config.acme.external_account_required,
        },
    });
    let mut res = axum::Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn new_nonce(State(state): State<AppState>, method: axum::http::Method) -> Response {
    let status = if method == axum::http::Method::HEAD {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    finish(&state, status.into_response())
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
    let nonce_ok = header
        .nonce
        .as_deref()
        .is_some_and(|n| state.acme_nonces.spend(n));
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

fn account_json(state: &AppState, a: &Account) -> serde_json::Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "orders": format!("{}/account/{}/orders", base(state), a.id),
    })
}

/// Contacts must be mailto: URLs with one address and no header fields.
fn check_contacts(contact: &[String]) -> Result<(), AcmeError> {
    for c in contact {
        let address = c.strip_prefix("mailto:").ok_or_else(|| {
            AcmeError::new(
                "unsupportedContact",
                StatusCode::BAD_REQUEST,
                "contacts are mailto: URLs",
            )
        })?;
        let well_formed = address.split('@').count() == 2
            && !address.contains([',', '?', ' ', '<', '>'])
            && address.len() <= 254;
        if !well_formed {
            return Err(AcmeError::new(
                "invalidContact",
                StatusCode::BAD_REQUEST,
                &format!("{c} is not one e-mail address"),
            ));
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccount {
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    only_return_existing: bool,
    external_account_binding: Option<serde_json::Value>,
}

/// The external account a new account binds to: checked against the key
/// the RA issued under its kid, which must not be bound yet. None when
/// the request has no binding and none is required.
async fn external_binding(
    state: &AppState,
    request: &NewAccount,
    account_key: &AccountKey,
) -> Result<Option<(String, String)>, AcmeError> {
    let Some(binding) = &request.external_account_binding else {
        if state.instance.config.acme.external_account_required {
            return Err(AcmeError::new(
                "externalAccountRequired",
                StatusCode::BAD_REQUEST,
                "accounts are bound to a key from the registration authority (kexin acme eab); send externalAccountBinding",
            ));
        }
        return Ok(None);
    };
    let url = format!("{}/new-account", base(state));
    let binding = jws::ExternalBinding::parse(binding, &url, account_key)?;
    let unknown = || AcmeError::unauthorized("no unbound external account key has this kid");
    let external = store::external_account(&state.instance.db, &binding.kid)
        .await?
        .ok_or_else(unknown)?;
    if external.account_id.is_some() {
        return Err(unknown());
    }
    binding.verify(&external.hmac_key)?;
    Ok(Some((binding.kid, external.name)))
}

/// The external account keys, for the API: kid, name, the account bound
/// (its URL) and when the key was issued.
pub async fn list_external_accounts(state: &AppState) -> anyhow::Result<Vec<serde_json::Value>> {
    let b = base(state);
    Ok(store::external_accounts(&state.instance.db)
        .await
        .map_err(|e| anyhow::anyhow!("ACME: {}", e.detail))?
        .into_iter()
        .map(|(kid, name, account, created_at)| {
            json!({
                "kid": kid,
                "name": name,
                "account": account.map(|a| format!("{b}/account/{a}")),
                "created_at": rfc3339(created_at),
            })
        })
        .collect())
}

/// Issues an external account key for `name` (a system the RA knows):
/// returns (kid, base64url HMAC key), the key shown this once.
pub async fn issue_external_account(
    instance: &crate::instance::Instance,
    name: &str,
    requester: Requester<'_>,
) -> anyhow::Result<(String, String)> {
    let kid = kexin_identity::random_token()?;
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let hmac_key = URL_SAFE_NO_PAD.encode(key);
    store::insert_external_account(&instance.db, &kid, name, &hmac_key, now())
        .await
        .map_err(|e| anyhow::anyhow!("storing the external account key: {}", e.detail))?;
    instance
        .audit
        .append(kexin_ca::audit::AuditEvent {
            actor: requester.actor,
            action: "acme.external_account",
            target: &kid,
            source: requester.source,
            detail: json!({ "name": name }),
        })
        .await?;
    Ok((kid, hmac_key))
}

async fn new_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, "/new-account", &body, true).await?;
        let request: NewAccount = signed.payload()?;
        let thumbprint = signed.key.thumbprint();
        let db = &state.instance.db;
        if let Some(existing) = store::account_by_thumbprint(db, &thumbprint).await? {
            let url = format!("{}/account/{}", base(&state), existing.id);
            return Ok(json_response(
                StatusCode::OK,
                account_json(&state, &existing),
                Some(&url),
            ));
        }
        if request.only_return_existing {
            return Err(AcmeError::new(
                "accountDoesNotExist",
                StatusCode::BAD_REQUEST,
                "no account has this key",
            ));
        }
        check_contacts(&request.contact)?;
        let binding = external_binding(&state, &request, &signed.key).await?;
        let account = Account {
            id: kexin_identity::random_token().map_err(|_| AcmeError::server_internal())?,
            jwk: signed.key.canonical_json(),
            contact: request.contact,
            status: "valid".into(),
        };
        let bound_kid = binding.as_ref().map(|(kid, _)| kid.as_str());
        if !store::insert_account(db, &account, &thumbprint, bound_kid, now()).await? {
            // The same key registered concurrently: answer with that account.
            let existing = store::account_by_thumbprint(db, &thumbprint)
                .await?
                .ok_or_else(AcmeError::server_internal)?;
            let url = format!("{}/account/{}", base(&state), existing.id);
            return Ok(json_response(
                StatusCode::OK,
                account_json(&state, &existing),
                Some(&url),
            ));
        }
        audit(
            &state,
            &account.id,
            "acme.account",
            &account.id,
            peer,
            json!({
                "thumbprint": thumbprint,
                "contact": account.contact,
                "external_account": binding.map(|(kid, name)| json!({ "kid": kid, "name": name })),
            }),
        )
        .await?;
        let url = format!("{}/account/{}", base(&state), account.id);
        Ok(json_response(
            StatusCode::CREATED,
            account_json(&state, &account),
            Some(&url),
        ))
    }
    .await;
    respond(&state, result)
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

#[derive(serde::Deserialize)]
struct AccountUpdate {
    contact: Option<Vec<String>>,
    status: Option<String>,
}

async fn account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed =
            authenticate(&state, &headers, &format!("/account/{id}"), &body, false).await?;
        let mut account = signed.account()?.clone();
        if account.id != id {
            return Err(AcmeError::unauthorized("this is another account"));
        }
        if !signed.is_post_as_get() {
            let update: AccountUpdate = signed.payload()?;
            if let Some(contact) = update.contact {
                check_contacts(&contact)?;
                account.contact = contact;
            }
            match update.status.as_deref() {
                None => {}
                Some("deactivated") => account.status = "deactivated".into(),
                Some(other) => {
                    return Err(AcmeError::malformed(&format!(
                        "an account can only be deactivated, not made {other}"
                    )))
                }
            }
            store::update_account(&state.instance.db, &id, &account.contact, &account.status)
                .await?;
            audit(
                &state,
                &id,
                "acme.account.update",
                &id,
                peer,
                json!({ "contact": account.contact, "status": account.status }),
            )
            .await?;
        }
        Ok(json_response(
            StatusCode::OK,
            account_json(&state, &account),
            None,
        ))
    }
    .await;
    respond(&state, result)
}

async fn account_orders(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(
            &state,
            &headers,
            &format!("/account/{id}/orders"),
            &body,
            false,
        )
        .await?;
        if signed.account()?.id != id {
            return Err(AcmeError::unauthorized("this is another account"));
        }
        let b = base(&state);
        let urls: Vec<String> = store::order_ids(&state.instance.db, &id)
            .await?
            .into_iter()
            .map(|o| format!("{b}/order/{o}"))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "orders": urls }),
            None,
        ))
    }
    .await;
    respond(&state, result)
}

/// A DNS name an ACME order may ask for: LDH labels, at least two of them,
/// no wildcard (that needs dns-01, which is not offered), under
/// `localhost` only where `acme.allow_localhost_names` says so.
fn check_dns_name(
    name: &str,
    permitted: &[String],
    allow_localhost: bool,
) -> Result<String, AcmeError> {
    let rejected = |why: &str| {
        AcmeError::new(
            "rejectedIdentifier",
            StatusCode::BAD_REQUEST,
            &format!("{name}: {why}"),
        )
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(rejected(
            "wildcards need the dns-01 challenge, which this server does not offer",
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let ldh = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !ldh || labels.len() < 2 || name.len() > 253 {
        return Err(rejected("not a fully qualified DNS name"));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(rejected("IP addresses are not DNS names"));
    }
    if labels.last() == Some(&"localhost") && !allow_localhost {
        return Err(rejected(
            "names under localhost are refused (acme.allow_localhost_names)",
        ));
    }
    let inside = |p: &String| {
        let p = p.trim_start_matches('.').to_ascii_lowercase();
        name == p || name.ends_with(&format!(".{p}"))
    };
    if !permitted.is_empty() && !permitted.iter().any(inside) {
        return Err(rejected(&format!(
            "outside the names this CA may certify ({})",
            permitted.join(", ")
        )));
    }
    Ok(name)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    identifiers: Vec<Identifier>,
    not_before: Option<String>,
    not_after: Option<String>,
}

#[derive(serde::Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// What an order's status is now (RFC 8555 §7.1.6).
fn order_status(order: &Order, authorizations: &[Authorization], now: i64) -> &'static str {
    if order.certificate_serial.is_some() {
        "valid"
    } else if now > order.expires_at || authorizations.iter().any(|a| a.status == "invalid") {
        "invalid"
    } else if authorizations.iter().all(|a| a.status == "valid") {
        "ready"
    } else {
        "pending"
    }
}

fn order_json(
    state: &AppState,
    order: &Order,
    authorizations: &[Authorization],
) -> serde_json::Value {
    let b = base(state);
    let mut body = json!({
        "status": order_status(order, authorizations, now()),
        "expires": rfc3339(order.expires_at),
        "identifiers": order.identifiers.iter().map(|v| json!({ "type": "dns", "value": v })).collect::<Vec<_>>(),
        "authorizations": authorizations.iter().map(|a| format!("{b}/authz/{}", a.id)).collect::<Vec<_>>(),
        "finalize": format!("{b}/order/{}/finalize", order.id),
    });
    if order.certificate_serial.is_some() {
        body["certificate"] = json!(format!("{b}/cert/{}", order.id));
    }
    if let Some(failed) = authorizations.iter().find(|a| a.status == "invalid") {
        body["error"] = json!({
            "type": "urn:ietf:params:acme:error:unauthorized",
            "detail": format!("the authorization for {} failed", failed.identifier),
        });
    }
    body
}

async fn new_order(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, "/new-order", &body, false).await?;
        let account = signed.account()?;
        let request: NewOrder = signed.payload()?;
        if request.not_before.is_some() || request.not_after.is_some() {
            return Err(AcmeError::malformed(
                "notBefore and notAfter are not supported: the profile sets the validity",
            ));
        }
        if request.identifiers.is_empty() || request.identifiers.len() > MAX_IDENTIFIERS {
            return Err(AcmeError::new(
                "rejectedIdentifier",
                StatusCode::BAD_REQUEST,
                &format!("an order names 1 to {MAX_IDENTIFIERS} identifiers"),
            ));
        }
        let permitted = &state.instance.config.ca.systems_permitted_dns;
        let allow_localhost = state.instance.config.acme.allow_localhost_names;
        let mut names = Vec::with_capacity(request.identifiers.len());
        for i in &request.identifiers {
            if i.kind != "dns" {
                return Err(AcmeError::new(
                    "unsupportedIdentifier",
                    StatusCode::BAD_REQUEST,
                    &format!("identifiers of type {} are not supported; use dns", i.kind),
                ));
            }
            names.push(check_dns_name(&i.value, permitted, allow_localhost)?);
        }
        names.sort();
        names.dedup();
        let now = now();
        let token = || kexin_identity::random_token().map_err(|_| AcmeError::server_internal());
        let order = Order {
            id: token()?,
            account_id: account.id.clone(),
            identifiers: names.clone(),
            expires_at: now + ORDER_LIFETIME_SECS,
            certificate_serial: None,
        };
        let mut authorizations = Vec::with_capacity(names.len());
        for name in names {
            authorizations.push(Authorization {
                id: token()?,
                order_id: order.id.clone(),
                identifier: name,
                token: token()?,
                status: "pending".into(),
                validated_at: None,
                error: None,
                expires_at: order.expires_at,
            });
        }
        store::insert_order(&state.instance.db, &order, &authorizations, now).await?;
        let url = format!("{}/order/{}", base(&state), order.id);
        Ok(json_response(
            StatusCode::CREATED,
            order_json(&state, &order, &authorizations),
            Some(&url),
        ))
    }
    .await;
    respond(&state, result)
}

/// The order `id`, which must be `account`'s.
async fn owned_order(state: &AppState, account: &Account, id: &str) -> Result<Order, AcmeError> {
    let order = store::order(&state.instance.db, id)
        .await?
        .ok_or_else(|| AcmeError::not_found("order"))?;
    if order.account_id != account.id {
        return Err(AcmeError::unauthorized(
            "this order belongs to another account",
        ));
    }
    Ok(order)
}

async fn order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, &format!("/order/{id}"), &body, false).await?;
        let order = owned_order(&state, signed.account()?, &id).await?;
        let authorizations = store::authorizations(&state.instance.db, &id).await?;
        Ok(json_response(
            StatusCode::OK,
            order_json(&state, &order, &authorizations),
            None,
        ))
    }
    .await;
    respond(&state, result)
}

/// The authorization `id` and its order, which must be `account`'s.
async fn owned_authorization(
    state: &AppState,
    account: &Account,
    id: &str,
) -> Result<Authorization, AcmeError> {
    let authorization = store::authorization(&state.instance.db, id)
        .await?
        .ok_or_else(|| AcmeError::not_found("authorization"))?;
    owned_order(state, account, &authorization.order_id).await?;
    Ok(authorization)
}

fn challenge_json(state: &AppState, a: &Authorization) -> serde_json::Value {
    let mut body = json!({
        "type": "http-01",
        "url": format!("{}/chall/{}", base(state), a.id),
        "token": a.token,
        "status": a.status,
    });
    if let Some(at) = a.validated_at {
        body["validated"] = json!(rfc3339(at));
    }
    if let Some(error) = a.error.as_deref() {
        body["error"] = serde_json::from_str(error).unwrap_or(json!({ "detail": error }));
    }
    body
}

fn authorization_json(state: &AppState, a: &Authorization) -> serde_json::Value {
    let status = match a.status.as_str() {
        "valid" => "valid",
        "invalid" => "invalid",
        _ if now() > a.expires_at => "expired",
        _ => "pending",
    };
    json!({
        "status": status,
        "expires": rfc3339(a.expires_at),
        "identifier": { "type": "dns", "value": a.identifier },
        "challenges": [challenge_json(state, a)],
    })
}

async fn authorization(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, &format!("/authz/{id}"), &body, false).await?;
        let a = owned_authorization(&state, signed.account()?, &id).await?;
        if !signed.is_post_as_get() {
            return Err(AcmeError::malformed(
                "authorizations are read with POST-as-GET; deactivation is not supported",
            ));
        }
        Ok(json_response(
            StatusCode::OK,
            authorization_json(&state, &a),
            None,
        ))
    }
    .await;
    respond(&state, result)
}

/// A POST of `{}` asks for validation, once; POST-as-GET reads.
async fn challenge(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, &format!("/chall/{id}"), &body, false).await?;
        let account = signed.account()?;
        let mut a = owned_authorization(&state, account, &id).await?;
        let respond_to = !signed.is_post_as_get();
        if respond_to {
            let _: serde_json::Map<String, serde_json::Value> = signed.payload()?;
        }
        let db = &state.instance.db;
        if respond_to
            && a.status == "pending"
            && now() <= a.expires_at
            && store::move_authorization(db, &id, "pending", "processing", None, None).await?
        {
            a.status = "processing".into();
            let key_authorization = format!("{}.{}", a.token, signed.key.thumbprint());
            tokio::spawn(validate(
                state.clone(),
                a.clone(),
                account.id.clone(),
                key_authorization,
                peer,
            ));
        }
        let mut res = json_response(StatusCode::OK, challenge_json(&state, &a), None);
        if let Ok(v) =
            HeaderValue::from_str(&format!("<{}/authz/{}>;rel=\"up\"", base(&state), a.id))
        {
            res.headers_mut().append(header::LINK, v);
        }
        Ok(res)
    }
    .await;
    respond(&state, result)
}

/// Fetches the http-01 response and records the outcome, audited: who
/// proved control of which name, when, and how it went.
async fn validate(
    state: AppState,
    a: Authorization,
    account_id: String,
    key_authorization: String,
    peer: SocketAddr,
) {
    let port = state.instance.config.acme.http01_port;
    let outcome = http01::validate(&a.identifier, port, &a.token, &key_authorization).await;
    let db = &state.instance.db;
    let recorded = match &outcome {
        Ok(()) => {
            store::move_authorization(db, &a.id, "processing", "valid", Some(now()), None).await
        }
        Err((kind, detail)) => {
            let error = json!({
                "type": format!("urn:ietf:params:acme:error:{kind}"),
                "detail": detail,
                "status": 403,
            })
            .to_string();
            store::move_authorization(db, &a.id, "processing", "invalid", None, Some(&error)).await
        }
    };
    if recorded.is_err() {
        tracing::error!(authorization = %a.id, "ACME validation outcome not recorded");
        return;
    }
    let detail = json!({
        "authorization": a.id,
        "challenge": "http-01",
        "port": port,
        "outcome": match &outcome { Ok(()) => "valid".to_owned(), Err((_, d)) => d.clone() },
    });
    if audit(
        &state,
        &account_id,
        "acme.validation",
        &a.identifier,
        peer,
        detail,
    )
    .await
    .is_err()
    {
        tracing::error!(authorization = %a.id, "ACME validation not audited");
    }
}

#[derive(serde::Deserialize)]
struct Finalize {
    csr: String,
}

async fn finalize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(
            &state,
            &headers,
            &format!("/order/{id}/finalize"),
            &body,
            false,
        )
        .await?;
        let account = signed.account()?;
        let order = owned_order(&state, account, &id).await?;
        let db = &state.instance.db;
        let authorizations = store::authorizations(db, &id).await?;
        let status = order_status(&order, &authorizations, now());
        if status != "ready" {
            return Err(AcmeError::new(
                "orderNotReady",
                StatusCode::FORBIDDEN,
                &format!("the order is {status}, not ready"),
            ));
        }
        let request: Finalize = signed.payload()?;
        let bad_csr = |d: &str| AcmeError::new("badCSR", StatusCode::BAD_REQUEST, d);
        let csr_der = URL_SAFE_NO_PAD
            .decode(request.csr.trim_end_matches('='))
            .map_err(|_| bad_csr("the csr is not base64url DER"))?;
        let csr = kexin_ca::csr::parse_and_verify(&csr_der).map_err(|e| bad_csr(&e.to_string()))?;
        let subject_request =
            subject_request(csr, &order.identifiers, &signed.key).map_err(|d| bad_csr(&d))?;
        let profile_name = &state.instance.config.acme.profile;
        let profile = state
            .registration
            .profiles()
            .get(profile_name)
            .map_err(|_| AcmeError::server_internal())?;
        if profile.approvals > 1 {
            tracing::error!(profile = %profile_name, "acme.profile needs more than one approval");
            return Err(AcmeError::server_internal());
        }
        let actor = format!("acme:{}", account.id);
        let source = peer.ip().to_string();
        let cert = state
            .registration
            .issue(
                &subject_request,
                profile_name,
                None,
                Requester {
                    actor: &actor,
                    source: &source,
                },
            )
            .await
            .map_err(|e| match e {
                kexin_ca::Error::Policy(_)
                | kexin_ca::Error::InvalidName(_)
                | kexin_ca::Error::InvalidRequest(_)
                | kexin_ca::Error::Csr(_) => bad_csr(&e.to_string()),
                other => {
                    tracing::error!(error = %other, "ACME issuance");
                    AcmeError::server_internal()
                }
            })?;
        let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        if !store::set_certificate(db, &id, &serial).await? {
            return Err(AcmeError::new(
                "orderNotReady",
                StatusCode::FORBIDDEN,
                "the order was finalized by another request",
            ));
        }
        let order = Order {
            certificate_serial: Some(serial),
            ..order
        };
        let url = format!("{}/order/{}", base(&state), order.id);
        Ok(json_response(
            StatusCode::OK,
            order_json(&state, &order, &authorizations),
            Some(&url),
        ))
    }
    .await;
    respond(&state, result)
}

/// The request the CA is asked to certify: the CSR's key, the order's
/// names and nothing else. The CSR's names must be exactly the order's; its
/// other subject attributes were not validated and are dropped.
fn subject_request(
    csr: kexin_ca::csr::VerifiedCsr,
    identifiers: &[String],
    account_key: &AccountKey,
) -> Result<SubjectRequest, String> {
    use x509_cert::ext::pkix::name::GeneralName;
    let common_name = csr
        .subject
        .iter()
        .find(|(oid, _)| *oid == const_oid::db::rfc4519::CN)
        .map(|(_, v)| v.to_ascii_lowercase());
    let mut names = Vec::new();
    for n in &csr.requested_names {
        match n {
            GeneralName::DnsName(d) => names.push(d.as_str().to_ascii_lowercase()),
            _ => return Err("the CSR asks for names other than DNS names".into()),
        }
    }
    names.extend(common_name.clone());
    names.sort();
    names.dedup();
    if names != identifiers {
        return Err(format!(
            "the CSR names {}, the order {}",
            names.join(", "),
            identifiers.join(", ")
        ));
    }
    let key_bytes = csr.public_key.subject_public_key.raw_bytes();
    if key_bytes == account_key.public_key_bytes() {
        return Err("the certificate's key must not be the account key".into());
    }
    let cn = common_name.unwrap_or_else(|| identifiers[0].clone());
    let names = identifiers
        .iter()
        .map(|n| {
            der::asn1::Ia5String::new(n)
                .map(GeneralName::DnsName)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SubjectRequest {
        subject: vec![(const_oid::db::rfc4519::CN, cn)],
        names,
        public_key: csr.public_key,
        key_algorithm: csr.key_algorithm,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

async fn certificate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, &format!("/cert/{id}"), &body, false).await?;
        let order = owned_order(&state, signed.account()?, &id).await?;
        let serial = order
            .certificate_serial
            .ok_or_else(|| AcmeError::not_found("certificate"))?;
        let record = state
            .instance
            .db
            .certificate(&serial)
            .await
            .map_err(|_| AcmeError::server_internal())?
            .ok_or_else(AcmeError::server_internal)?;
        let leaf = record.der.ok_or_else(AcmeError::server_internal)?;
        let mut chain = pem("CERTIFICATE", &leaf);
        if let Some(issuer) = state.ca_certificate(&record.issuer) {
            let der = issuer.to_der().map_err(|_| AcmeError::server_internal())?;
            chain.push_str(&pem("CERTIFICATE", &der));
        }
        let mut res = (StatusCode::OK, chain).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        Ok(res)
    }
    .await;
    respond(&state, result)
}

#[derive(serde::Deserialize)]
struct Revoke {
    certificate: String,
    reason: Option<i64>,
}

/// By the account that ordered the certificate, or signed with the
/// certificate's own key; only certificates of the ACME profile.
async fn revoke_certificate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let signed = authenticate(&state, &headers, "/revoke-cert", &body, true).await?;
        let request: Revoke = signed.payload()?;
        let der = URL_SAFE_NO_PAD
            .decode(request.certificate.trim_end_matches('='))
            .map_err(|_| AcmeError::malformed("the certificate is not base64url DER"))?;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|_| AcmeError::malformed("the certificate does not parse"))?;
        let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        let db = &state.instance.db;
        let record = db
            .certificate(&serial)
            .await
            .map_err(|_| AcmeError::server_internal())?
            .filter(|r| r.der.as_deref() == Some(&der[..]))
            .ok_or_else(|| AcmeError::not_found("certificate issued by this CA"))?;
        if record.profile != state.instance.config.acme.profile {
            return Err(AcmeError::unauthorized(
                "only certificates issued through ACME are revoked through ACME",
            ));
        }
        let (actor, allowed) = match &signed.account {
            Some(account) => (
                format!("acme:{}", account.id),
                store::ordered_certificate(db, &account.id, &serial).await?,
            ),
            None => (
                format!("acme:key:{}", signed.key.thumbprint()),
                cert.tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes()
                    == signed.key.public_key_bytes(),
            ),
        };
        if !allowed {
            return Err(AcmeError::unauthorized(
                "sign with the account that ordered the certificate, or with its key",
            ));
        }
        let reason = match request.reason.unwrap_or(0) {
            code @ (0 | 1 | 3 | 4 | 5 | 9) => RevocationReason::from_code(code),
            _ => None,
        }
        .ok_or_else(|| {
            AcmeError::new(
                "badRevocationReason",
                StatusCode::BAD_REQUEST,
                "reasons are 0, 1, 3, 4, 5 or 9 (RFC 5280)",
            )
        })?;
        if record.status != "issued" {
            return Err(AcmeError::new(
                "alreadyRevoked",
                StatusCode::BAD_REQUEST,
                &format!("the certificate is {}", record.status),
            ));
        }
        let source = peer.ip().to_string();
        let ca = Revocations::new(db.clone(), state.instance.audit.clone())
            .revoke(
                &serial,
                reason,
                None,
                Requester {
                    actor: &actor,
                    source: &source,
                },
            )
            .await
            .map_err(|e| match e {
                kexin_ca::Error::Conflict(d) => {
                    AcmeError::new("alreadyRevoked", StatusCode::BAD_REQUEST, &d)
                }
                other => {
                    tracing::error!(error = %other, "ACME revocation");
                    AcmeError::server_internal()
                }
            })?;
        state.ocsp.invalidate(&serial);
        if let Err(e) = state.instance.regenerate_crl(&ca).await {
            tracing::error!(ca, error = %e, "CRL regeneration after an ACME revocation failed");
        }
        Ok(StatusCode::OK.into_response())
    }
    .await;
    respond(&state, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_normalized() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            check_dns_name("App.Example.", &none, false).unwrap(),
            "app.example"
        );
        for bad in [
            "*.example.org",
            "localhost",
            "a..b",
            "-a.example",
            "10.0.0.1",
            "a_b.example",
            "app.localhost",
        ] {
            assert!(
                check_dns_name(bad, &none, false).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(check_dns_name("app.localhost", &none, true).is_ok());
        let permitted = vec!["gov.example".to_owned()];
        assert!(check_dns_name("portal.gov.example", &permitted, false).is_ok());
        assert!(check_dns_name("gov.example", &permitted, false).is_ok());
        assert!(check_dns_name("evilgov.example", &permitted, false).is_err());
    }

    #[test]
    fn a_nonce_is_spent_once() {
        let nonces = Nonces::default();
        let n = nonces.issue();
        assert!(nonces.spend(&n));
        assert!(!nonces.spend(&n));
        assert!(!nonces.spend("never-issued"));
    }
}
