//! The OpenID Connect endpoints on the HTTPS listener: discovery, JWKS,
//! authorization (certificate sign-in and single sign-on), token,
//! userinfo, introspection, revocation and logout.
//!
//! Sign-in is the official's TLS client certificate of the `officials` CA,
//! checked against the database (revoked, held, unknown or expired
//! certificates are refused with a page that says so). The SSO session is
//! a cookie bound to the account; after it ends (idle, absolute, logout),
//! the official confirms the sign-in again.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use der::Decode;
use kexin_ca::storage::rows::NewRow;
use kexin_identity::provider::{AuthorizationError, AuthorizationRequest, Official};
use maud::html;
use serde::Deserialize;

use crate::instance::Instance;
use crate::official_certificates::OfficialCertificate;
use crate::serve::AppState;
use crate::tls::PeerCertificates;
use crate::web::{cookie, percent_encode};

const SSO_COOKIE: &str = "kexin_sso";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/authorize", get(authorize).post(sign_in))
        .route("/oidc/challenge", post(challenge))
        .route("/oidc/challenge/answer", post(answer))
        .route("/oidc/token", post(token))
        .route("/oidc/userinfo", get(userinfo).post(userinfo))
        .route("/oidc/introspect", post(introspect))
        .route("/oidc/revoke", post(revoke))
        .route("/oidc/logout", get(logout))
}

async fn discovery(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.oidc.discovery())
}

/// Seconds a relying party may cache the JWKS.
const JWKS_MAX_AGE_SECS: i64 = 300;

/// When a token key rotated in at `now` begins to sign: once every server
/// checking every `check_every_secs` publishes it, and a JWKS cached
/// before that has expired, so that a relying party finds the key of every
/// token it gets, whichever server it asks for the JWKS.
pub fn token_key_signs_from(now: i64, check_every_secs: u32) -> i64 {
    now + 2 * i64::from(check_every_secs) + JWKS_MAX_AGE_SECS
}

/// Seconds a replaced token key stays published: a server may sign with
/// it until its first check after the next key's start, and what it
/// signed lives as long as an access or ID token (a logout token, 120 s).
pub fn replaced_token_key_kept_for(config: &kexin_config::Config) -> i64 {
    2 * i64::from(config.ca.certificate_check_secs)
        + i64::from(config.oidc.access_token_lifetime_secs.max(120))
}

/// Publishes the token keys rotated in (`kexin oidc rotate-key`, on any
/// node) from this server's next check, every `check_every`, and signs
/// with one once its time has come, until `shutdown`.
pub async fn keep_token_keys_current(
    instance: Arc<Instance>,
    provider: Arc<kexin_identity::provider::Provider>,
    check_every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if crate::serve::shutting_down_within(check_every, &mut shutdown).await {
            return;
        }
        let keys = match instance.token_keys().await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!(error = %e, "reading the SSO token keys");
                continue;
            }
        };
        let before = provider.keys();
        let published = keys.kids() != before.kids();
        let signing = keys.current().kid != before.current().kid;
        if published {
            tracing::info!(kids = ?keys.kids(), "SSO token keys published");
        }
        if signing {
            tracing::info!(kid = %keys.current().kid, "SSO tokens are signed with another key");
        }
        if published || signing {
            provider.replace_keys(keys);
        }
    }
}

async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECS}"),
        )],
        Json(state.oidc.jwks()),
    )
        .into_response()
}

fn page(status: StatusCode, title: &str, body: maud::Markup) -> Response {
    page_to(status, title, body, None)
}

/// A page whose form, once signed in, redirects to `form_target` (its
/// origin must be allowed by form-action, which covers redirects).
fn page_to(
    status: StatusCode,
    title: &str,
    body: maud::Markup,
    form_target: Option<&str>,
) -> Response {
    let doc = html! {
        (maud::DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/console/console.css";
            }
            body { main class="narrow" { h1 { (title) } (body) } }
        }
    };
    let mut res = (status, Html(doc.into_string())).into_response();
    let target = form_target
        .and_then(origin_of)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'self'; form-action 'self'{target}; frame-ancestors 'none'"
    )) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The official behind the TLS client certificate, or why not.
async fn official(state: &AppState, peers: Option<&PeerCertificates>) -> Result<Official, String> {
    let der = peers.and_then(|p| p.0.first()).ok_or(
        "present the certificate of your USB key or soft certificate (请出示您的数字证书)",
    )?;
    Ok(official_certificate(state, der).await?.official.clone())
}

/// The official a certificate of the `officials` CA signs in: chained to
/// our root and valid now, and good in the database (not revoked, held or
/// unknown), which is read at every sign-in.
async fn official_certificate(
    state: &AppState,
    der: &[u8],
) -> Result<Arc<OfficialCertificate>, String> {
    let authorities = state.authorities();
    let officials = authorities
        .certificate("officials")
        .ok_or("no officials CA")?;
    let trust = authorities.trust();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let checked = state.official_certificates.check(
        der,
        &crate::official_certificates::Trust {
            officials,
            intermediates: &trust.intermediates,
            roots: &trust.roots,
            signatures: &state.verified_signatures,
        },
        now,
    )?;
    let record = state
        .instance
        .db
        .certificate(&checked.serial)
        .await
        .map_err(|e| e.to_string())?;
    match record.map(|r| r.status) {
        Some(s) if s == "issued" => Ok(checked),
        Some(s) => Err(format!(
            "this certificate is {s} (证书已{})",
            if s == "hold" { "挂起" } else { "撤销" }
        )),
        None => Err("this certificate is unknown to Kexin".into()),
    }
}

/// scheme://host[:port] of a URL, if it has a plain one (CSP source syntax).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then(|| format!("{scheme}://{host}"))
}

fn location_with(uri: &str, params: &[(&str, &str)]) -> String {
    let query: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{query}")
}

fn redirect_with(uri: &str, params: &[(&str, &str)]) -> Response {
    Redirect::to(&location_with(uri, params)).into_response()
}

async fn checked(state: &AppState, r: &AuthorizationRequest) -> Result<(), Response> {
    match state.oidc.check_authorization(r).await {
        Ok(_) => Ok(()),
        Err(AuthorizationError::Show(m)) => Err(page(
            StatusCode::BAD_REQUEST,
            "Sign-in request refused",
            html! { p class="error" { (m) } },
        )),
        Err(AuthorizationError::Redirect {
            redirect_uri,
            state: s,
            error,
            description,
        }) => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &s {
                params.push(("state", s));
            }
            Err(redirect_with(&redirect_uri, &params))
        }
    }
}

async fn code_redirect(
    state: &AppState,
    r: &AuthorizationRequest,
    session: &str,
    who: &Official,
) -> Response {
    Redirect::to(&code_location(state, r, session, who).await).into_response()
}

/// Where a checked authorization request continues once `who` is signed
/// in: its redirect URI with a code, or with the error that kept it from
/// getting one.
async fn code_location(
    state: &AppState,
    r: &AuthorizationRequest,
    session: &str,
    who: &Official,
) -> String {
    match state.oidc.issue_code(r, session, who).await {
        Ok(code) => location_with_code(r, &code),
        // The redirect URI is checked by now: the client learns of the
        // failure (RFC 6749 §4.1.2.1), and the details stay in the log.
        Err(e) => {
            tracing::warn!(error = %e, "no authorization code issued");
            let mut params = vec![
                ("error", "server_error"),
                ("error_description", "no code could be issued; try again"),
            ];
            if let Some(s) = &r.state {
                params.push(("state", s));
            }
            location_with(r.redirect_uri.as_deref().unwrap_or_default(), &params)
        }
    }
}

/// A checked authorization request's redirect URI with `code`.
fn location_with_code(r: &AuthorizationRequest, code: &str) -> String {
    let mut params = vec![("code", code)];
    if let Some(s) = &r.state {
        params.push(("state", s));
    }
    location_with(r.redirect_uri.as_deref().unwrap_or_default(), &params)
}

/// GET: with a live SSO session for this certificate's account, a code at
/// once; otherwise the sign-in page.
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    peers: Option<axum::Extension<PeerCertificates>>,
    Query(r): Query<AuthorizationRequest>,
) -> Response {
    if let Err(res) = checked(&state, &r).await {
        return res;
    }
    let presented = match peers.as_ref() {
        Some(p) if !p.0 .0.is_empty() => Some(official(&state, Some(&p.0)).await),
        _ => None,
    };
    // A live SSO session (from a certificate sign-in or a signed
    // challenge) gives a code at once, unless another certificate is
    // presented now.
    if let Some(session) = cookie(&headers, SSO_COOKIE) {
        if let Some(signed_in) = signed_in(&state, session).await {
            let same = match &presented {
                Some(Ok(o)) => o.subject == signed_in.subject,
                _ => true,
            };
            if same {
                if certificate_still_issued(&state, &signed_in).await {
                    // A system logout would not tell gets no code; a
                    // session that ended meanwhile gives none either.
                    let client_id = r.client_id.as_deref().unwrap_or_default();
                    match state.oidc.join_session(session, client_id).await {
                        Ok(true) => return code_redirect(&state, &r, session, &signed_in).await,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "a system could not join an SSO session");
                            return unrecorded_sign_in();
                        }
                    }
                } else {
                    // Revoked or held since sign-in: the session ends for
                    // every system, and the official must sign in again.
                    if let Ok(notices) = state.oidc.logout(session).await {
                        deliver_logout(&state, notices).await;
                    }
                }
            }
        }
    }
    let who = match presented {
        Some(Ok(o)) => o,
        Some(Err(m)) => {
            return page(
                StatusCode::FORBIDDEN,
                "Sign-in refused 登录被拒绝",
                html! { p class="error" id="refusal" { (m) } },
            )
        }
        None => {
            return page(
                StatusCode::FORBIDDEN,
                "Sign-in refused 登录被拒绝",
                html! { p class="error" id="refusal" { "present the certificate of your USB key or soft certificate (请出示您的数字证书)" } },
            )
        }
    };
    let name = who.claims["name"].as_str().unwrap_or("").to_owned();
    page_to(
        StatusCode::OK,
        "统一身份认证 Sign in",
        html! {
            form method="post" action="/oidc/authorize" {
                @for (k, v) in [("response_type", &r.response_type), ("client_id", &r.client_id), ("redirect_uri", &r.redirect_uri),
                                ("scope", &r.scope), ("state", &r.state), ("nonce", &r.nonce),
                                ("code_challenge", &r.code_challenge), ("code_challenge_method", &r.code_challenge_method)] {
                    @if let Some(v) = v { input type="hidden" name=(k) value=(v); }
                }
                p { "使用数字证书登录 Sign in with the certificate of " strong { (name) } }
                button type="submit" id="sign-in" { "登录 Sign in" }
            }
        },
        r.redirect_uri.as_deref(),
    )
}

/// The page for a sign-in that could not be stored (the details are logged).
fn unrecorded_sign_in() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable 暂时无法登录",
        html! { p class="error" { "The sign-in could not be recorded; try again later." } },
    )
}

/// The official of a live SSO session, or none when it ended or could not
/// be read (the official is then asked to sign in).
async fn signed_in(state: &AppState, session: &str) -> Option<Official> {
    state.oidc.session(session).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "an SSO session could not be read");
        None
    })
}

/// Whether the certificate a session was opened with is still issued (not
/// revoked or held since); a storage failure counts as no.
async fn certificate_still_issued(state: &AppState, official: &Official) -> bool {
    let Some(serial) = official.claims["x5t_serial"].as_str() else {
        return false;
    };
    matches!(
        state.instance.db.certificate(serial).await,
        Ok(Some(c)) if c.status == "issued"
    )
}

/// POST: the official confirms; an SSO session starts.
async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    peers: Option<axum::Extension<PeerCertificates>>,
    Form(r): Form<AuthorizationRequest>,
) -> Response {
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| {
            state.oidc.issuer().starts_with(o)
                || o.ends_with(&format!(":{}", state.instance.config.https.listen.port()))
        });
    if !origin_ok {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            html! { p { "cross-origin sign-in refused" } },
        );
    }
    if let Err(res) = checked(&state, &r).await {
        return res;
    }
    let who = match official(&state, peers.as_ref().map(|p| &p.0)).await {
        Ok(o) => o,
        Err(m) => {
            return page(
                StatusCode::FORBIDDEN,
                "Sign-in refused 登录被拒绝",
                html! { p class="error" { (m) } },
            )
        }
    };
    let started = start_sso(
        &state,
        &who,
        r.client_id.as_deref().unwrap_or_default(),
        Some(&r),
        None,
        peer.ip(),
    )
    .await;
    let (code, cookie) = match started {
        Ok((_, cookie, Some(code))) => (code, cookie),
        Ok((_, _, None)) => return unrecorded_sign_in(),
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed");
            return unrecorded_sign_in();
        }
    };
    let mut res = Redirect::to(&location_with_code(&r, &code)).into_response();
    if let Some(v) = cookie {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// Starts an SSO session for `who` (audited as `sso.login`, `via` the
/// client or the challenge) and, for a sign-in that continues an
/// authorization request, issues its code (its client takes part in the
/// session from the start). A sign-in by challenge claims the challenge
/// with `claim`; if another answer claimed it first, nothing is stored and
/// the error is `kexin_ca::Error::Conflict`. Returns the session's id, the
/// cookie that carries it, and the code.
async fn start_sso(
    state: &AppState,
    who: &Official,
    via: &str,
    authorization: Option<&AuthorizationRequest>,
    claim: Option<NewRow>,
    source: std::net::IpAddr,
) -> Result<(String, Option<HeaderValue>, Option<String>), kexin_identity::Error> {
    // The session and its code are stored in the record's transaction: a
    // sign-in the trail cannot record opens no session. Its flush waits
    // for the next flushing commit: what a sign-in lets out (an ID token,
    // at the token endpoint) goes out after its refresh token's flushing
    // commit to the same database. A crash in between loses the record
    // with the session.
    let client = authorization.and_then(|r| r.client_id.as_deref());
    let (session, session_row) = state.oidc.new_session(who, client)?;
    let mut rows = vec![session_row];
    rows.extend(claim);
    let code = match authorization {
        Some(r) => {
            let (code, code_row) = state.oidc.new_code(r, &session, who)?;
            rows.push(code_row);
            Some(code)
        }
        None => None,
    };
    state
        .instance
        .audit
        .append_unflushed_with(
            kexin_ca::audit::AuditEvent {
                actor: &format!("official:{}", who.subject),
                action: "sso.login",
                target: via,
                source: &source.to_string(),
                detail: serde_json::json!({ "certificate": who.claims["x5t_serial"], "name": who.claims["name"] }),
            },
            rows,
        )
        .await?;
    let cookie = HeaderValue::from_str(&format!(
        "{SSO_COOKIE}={session}; Path=/oidc; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
        state.oidc.session_lifetimes().absolute.as_secs()
    ))
    .ok();
    Ok((session, cookie, code))
}

#[derive(Deserialize)]
struct ChallengeForm {
    client_id: String,
}

/// A one-time nonce, bound to the client system, for a signed-challenge
/// sign-in.
async fn challenge(
    State(state): State<AppState>,
    form: Result<Form<ChallengeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => return malformed(e.body_text()),
    };
    match state.oidc.challenge(&f.client_id).await {
        Ok(c) => Json(serde_json::json!({
            "challenge_id": c.id,
            "nonce": c.nonce,
            "expires_in": kexin_identity::challenges::CHALLENGE_TTL.as_secs(),
            "sign": "the bytes \"kexin-sso-challenge\\n{nonce}\\n{client_id}\" with the certificate's key",
        }))
        .into_response(),
        Err(e) => oauth_error(e),
    }
}

#[derive(Deserialize)]
struct Answer {
    challenge_id: String,
    /// PEM certificate of the official.
    certificate: String,
    /// Base64 signature (DER for ECDSA and SM2) with the key's default scheme.
    signature: String,
    /// An authorization request (the parameters of `/oidc/authorize`, for
    /// the challenge's client) to continue once signed in: the answer then
    /// carries its redirect with the code, as the sign-in page's form
    /// would, and the caller need not come back to `/oidc/authorize`.
    authorization: Option<AuthorizationRequest>,
}

/// The signed answer: the challenge must be fresh and one this instance
/// issued, at any node; the certificate must chain to our root through
/// `officials` and be good now; the signature must verify. Then an SSO
/// session starts (the cookie is set) and the challenge is spent with it.
async fn answer(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    body: Result<Json<Answer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let a = match body {
        Ok(Json(a)) => a,
        Err(e) => return malformed(e.body_text()),
    };
    let refuse = |m: &str| oauth_error(kexin_identity::Error::OAuth("access_denied", m.to_owned()));
    if let Some(r) = &a.authorization {
        if let Err(e) = state.oidc.check_authorization(r).await {
            return oauth_error(match e {
                AuthorizationError::Show(m) => kexin_identity::Error::OAuth("invalid_request", m),
                AuthorizationError::Redirect {
                    error, description, ..
                } => kexin_identity::Error::OAuth(error, description),
            });
        }
    }
    let challenge = match state.oidc.check_challenge(&a.challenge_id) {
        Ok(c) => c,
        Err(e) => return oauth_error(e),
    };
    if let Some(r) = &a.authorization {
        if r.client_id.as_deref() != Some(challenge.client_id.as_str()) {
            return oauth_error(kexin_identity::Error::OAuth(
                "invalid_request",
                "the authorization request is for another client than the challenge".to_owned(),
            ));
        }
    }
    let Some(der) = kexin_ca::certificate::first_certificate_der_from_pem(a.certificate.as_bytes())
    else {
        return refuse("the certificate is not PEM");
    };
    let checked = match official_certificate(&state, &der).await {
        Ok(c) => c,
        Err(m) => return refuse(&m),
    };
    let who = &checked.official;
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(a.signature.trim()) else {
        return refuse("the signature is not base64");
    };
    let spki = &checked.public_key;
    let Ok(key) = kexin_hsm::KeyAlgorithm::from_spki(spki) else {
        return refuse("unsupported key");
    };
    if let Err(e) = kexin_ca::verify::verify_signature(
        spki,
        &key.default_signature().algorithm_identifier(),
        &challenge.message,
        &signature,
        &[kexin_hsm::SM2_DEFAULT_ID, ""],
    ) {
        return refuse(&format!("the challenge signature does not verify: {e}"));
    }
    let started = start_sso(
        &state,
        who,
        "signed-challenge",
        a.authorization.as_ref(),
        Some(challenge.claim()),
        peer.ip(),
    )
    .await;
    let (_, cookie, code) = match started {
        Ok(started) => started,
        // Another answer to this challenge, at this node or another,
        // claimed it first.
        Err(kexin_identity::Error::Ca(kexin_ca::Error::Conflict(_))) => {
            return oauth_error(kexin_identity::Error::OAuth(
                "invalid_grant",
                kexin_identity::challenges::UNKNOWN_CHALLENGE.to_owned(),
            ))
        }
        Err(e) => return oauth_error(e),
    };
    let mut signed_in =
        serde_json::json!({ "signed_in": true, "sub": who.subject, "name": who.claims["name"] });
    if let (Some(r), Some(code)) = (&a.authorization, code) {
        signed_in["location"] = location_with_code(r, &code).into();
    }
    let mut res = Json(signed_in).into_response();
    if let Some(v) = cookie {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// A request body that does not parse, refused as OAuth refuses.
fn malformed(why: String) -> Response {
    oauth_error(kexin_identity::Error::OAuth("invalid_request", why))
}

fn oauth_error(e: kexin_identity::Error) -> Response {
    let (code, description) = match e {
        kexin_identity::Error::OAuth(c, d) => (c, d),
        other => {
            tracing::error!(error = %other, "token endpoint failed");
            ("server_error", "internal error".to_owned())
        }
    };
    let status = match code {
        "invalid_client" => StatusCode::UNAUTHORIZED,
        "invalid_token" => StatusCode::UNAUTHORIZED,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut res = (
        status,
        Json(serde_json::json!({ "error": code, "error_description": description })),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"kexin\""),
        );
    }
    res
}

/// client_secret_basic or client_secret_post.
async fn client(
    state: &AppState,
    headers: &HeaderMap,
    peers: Option<&axum::Extension<PeerCertificates>>,
    f: &TokenForm,
) -> Result<kexin_identity::clients::Client, kexin_identity::Error> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (percent_decode(a), percent_decode(b)))
        });
    let (id, secret) = match (basic, &f.client_id, &f.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        (None, Some(id), None) if peers.is_some_and(|p| !p.0 .0.is_empty()) => {
            let (subject, thumbprint) = system_certificate_subject(state, peers).await?;
            return state
                .oidc
                .clients()
                .authenticate_by_certificate(id, &subject, &thumbprint)
                .await;
        }
        _ => {
            return Err(kexin_identity::Error::OAuth(
                "invalid_client",
                "client authentication is required".into(),
            ))
        }
    };
    state.oidc.clients().authenticate(&id, &secret).await
}

/// RFC 8705: the subject DN and thumbprint of a good TLS client
/// certificate of the systems CA (revocation checked against the database).
async fn system_certificate_subject(
    state: &AppState,
    peers: Option<&axum::Extension<PeerCertificates>>,
) -> Result<(String, String), kexin_identity::Error> {
    let refuse = |m: &str| kexin_identity::Error::OAuth("invalid_client", m.to_owned());
    let der = peers
        .and_then(|p| p.0 .0.first())
        .ok_or_else(|| refuse("no client certificate"))?;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|_| refuse("unreadable client certificate"))?;
    let authorities = state.authorities();
    let systems = authorities
        .certificate("systems")
        .ok_or_else(|| refuse("no systems CA"))?;
    if cert.tbs_certificate.issuer != systems.tbs_certificate.subject {
        return Err(refuse("the client certificate is not from the systems CA"));
    }
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    match state.instance.db.certificate(&serial).await {
        Ok(Some(r)) if r.status == "issued" => {
            Ok((cert.tbs_certificate.subject.to_string(), thumbprint(der)))
        }
        Ok(Some(r)) => Err(refuse(&format!("the client certificate is {}", r.status))),
        _ => Err(refuse("the client certificate is unknown to Kexin")),
    }
}

/// base64url(SHA-256(DER)): the x5t#S256 of RFC 8705.
fn thumbprint(der: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    peers: Option<axum::Extension<PeerCertificates>>,
    Form(f): Form<TokenForm>,
) -> Response {
    let client = match client(&state, &headers, peers.as_ref(), &f).await {
        Ok(c) => c,
        Err(e) => return oauth_error(e),
    };
    let result = match f.grant_type.as_deref() {
        Some("authorization_code") => {
            state
                .oidc
                .exchange_code(
                    &client,
                    f.code.as_deref().unwrap_or_default(),
                    f.redirect_uri.as_deref().unwrap_or_default(),
                    f.code_verifier.as_deref().unwrap_or_default(),
                )
                .await
        }
        Some("refresh_token") => {
            state
                .oidc
                .refresh(&client, f.refresh_token.as_deref().unwrap_or_default())
                .await
        }
        _ => Err(kexin_identity::Error::OAuth(
            "unsupported_grant_type",
            "use authorization_code or refresh_token".into(),
        )),
    };
    match result {
        Ok(tokens) => ([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response(),
        Err(e) => oauth_error(e),
    }
}

async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
    peers: Option<axum::Extension<PeerCertificates>>,
) -> Response {
    let presented = peers
        .as_ref()
        .and_then(|p| p.0 .0.first())
        .map(|der| thumbprint(der));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match state
        .oidc
        .userinfo(bearer.trim(), presented.as_deref())
        .await
    {
        Ok(info) => Json(info).into_response(),
        Err(e) => oauth_error(e),
    }
}

async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    peers: Option<axum::Extension<PeerCertificates>>,
    Form(f): Form<TokenForm>,
) -> Response {
    let client = match client(&state, &headers, peers.as_ref(), &f).await {
        Ok(c) => c,
        Err(e) => return oauth_error(e),
    };
    match state
        .oidc
        .introspect(&client, f.token.as_deref().unwrap_or_default())
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => oauth_error(e),
    }
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    peers: Option<axum::Extension<PeerCertificates>>,
    Form(f): Form<TokenForm>,
) -> Response {
    let client = match client(&state, &headers, peers.as_ref(), &f).await {
        Ok(c) => c,
        Err(e) => return oauth_error(e),
    };
    match state
        .oidc
        .revoke(&client, f.token.as_deref().unwrap_or_default())
        .await
    {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(e),
    }
}

/// Posts each logout token (OpenID Connect Back-Channel Logout) before
/// the browser moves on, so systems have ended their sessions by then;
/// a system that does not answer within 5 seconds is recorded and skipped.
async fn deliver_logout(state: &AppState, notices: Vec<kexin_identity::provider::LogoutNotice>) {
    if notices.is_empty() {
        return;
    }
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(root) = state.authorities().certificate("root") {
        use der::Encode;
        if let Ok(c) = root
            .to_der()
            .map_err(|_| ())
            .and_then(|d| reqwest::Certificate::from_der(&d).map_err(|_| ()))
        {
            builder = builder.add_root_certificate(c);
        }
    }
    let Ok(http) = builder.build() else {
        return;
    };
    let mut tasks = tokio::task::JoinSet::new();
    for n in notices {
        let http = http.clone();
        tasks.spawn(async move {
            let result = http
                .post(&n.uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("logout_token={}", n.logout_token))
                .send()
                .await
                .map(|r| r.status().as_u16());
            (n.client_id, result.map_err(|e| e.to_string()))
        });
    }
    while let Some(Ok((client_id, result))) = tasks.join_next().await {
        // The session has already ended everywhere; a delivery the trail
        // cannot record is still reported, in the server's log.
        if let Err(e) = state
            .instance
            .audit
            .append(kexin_ca::audit::AuditEvent {
                actor: "system:kexin",
                action: "sso.backchannel-logout",
                target: &client_id,
                source: "logout",
                detail: match &result {
                    Ok(status) => serde_json::json!({ "status": status }),
                    Err(e) => serde_json::json!({ "error": e }),
                },
            })
            .await
        {
            tracing::error!(error = %e, client_id, delivery = ?result, "back-channel logout not audited");
        }
    }
}

#[derive(Deserialize)]
struct LogoutParams {
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

/// RP-initiated logout: ends the SSO session for every system.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<LogoutParams>,
) -> Response {
    if let Some(session) = cookie(&headers, SSO_COOKIE) {
        match state.oidc.logout(session).await {
            Ok(notices) => deliver_logout(&state, notices).await,
            Err(e) => return oauth_error(e),
        }
    }
    let target = match (&p.client_id, &p.post_logout_redirect_uri) {
        (Some(id), Some(uri)) => match state.oidc.clients().find(id).await {
            Ok(Some((c, _))) if c.redirect_uris.iter().any(|u| u == uri) => Some(uri.clone()),
            _ => None,
        },
        _ => None,
    };
    let mut res = match target {
        Some(uri) => match &p.state {
            Some(s) => redirect_with(&uri, &[("state", s)]),
            None => Redirect::to(&uri).into_response(),
        },
        None => page(
            StatusCode::OK,
            "已退出 Signed out",
            html! { p id="signed-out" { "You are signed out of every system." } },
        ),
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "kexin_sso=; Path=/oidc; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
        ),
    );
    res
}
