//! The officers' console under `/console`: server-rendered HTML without
//! JavaScript, in zh-CN and English, on the HTTPS listener only.
//!
//! Every request is authenticated by the officer's client certificate,
//! exactly as the API is (revoked, held or unknown certificates get
//! nothing). A session on top of it gives the console an idle and an
//! absolute expiry and carries the CSRF token of its forms; the session is
//! bound to the certificate serial, so a stolen cookie without the same
//! certificate is worthless. Sessions are stored in the database, so
//! every node of an instance honours them (see [`session`]).

mod acme;
mod audit;
mod certificates;
mod clients;
pub(crate) mod i18n;
mod officers;
mod requests;
mod seals;
mod services;
mod session;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;

use crate::api::{authenticate, Caller};
use crate::problem::Problem;
use crate::serve::AppState;
use crate::web::{cookie, percent_encode};
use i18n::Lang;
pub use session::Sessions;

const SESSION_COOKIE: &str = "kexin_console";
const LANG_COOKIE: &str = "kexin_lang";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(requests::dashboard))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/lang/{lang}", get(set_lang))
        .route("/console/console.css", get(stylesheet))
        .route(
            "/console/requests",
            get(requests::list).post(requests::submit),
        )
        .route("/console/requests/new", get(requests::new_form))
        .route("/console/requests/{id}", get(requests::detail))
        .route("/console/requests/{id}/decide", post(requests::decide))
        .route("/console/requests/{id}/id-number", post(requests::reveal))
        .route("/console/certificates", get(certificates::search))
        .route("/console/certificates/{serial}", get(certificates::detail))
        .route(
            "/console/certificates/{serial}/status",
            post(certificates::change_status),
        )
        .route("/console/officers", get(officers::list).post(officers::add))
        .route(
            "/console/clients",
            get(clients::list).post(clients::register),
        )
        .route("/console/acme", get(acme::list).post(acme::issue))
        .route("/console/kmc", get(requests::kmc_queue))
        .route(
            "/console/seals",
            get(seals::list)
                .post(seals::request_new)
                .layer(axum::extract::DefaultBodyLimit::max(
                    seals::MAX_NEW_SEAL_FORM,
                )),
        )
        .route("/console/seals/{name}/users", post(seals::grant))
        .route("/console/seals/{name}/renew", post(seals::request_renewal))
        .route("/console/audit", get(audit::browse))
        .route("/console/services", get(services::overview))
        .layer(axum::middleware::from_fn(guard))
}

/// Headers every console page carries, and a same-origin check on every
/// form post (a second line behind the CSRF token and SameSite cookies).
async fn guard(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers(), req.uri()) {
        let lang = lang_of(req.headers());
        return ConsoleError::new(StatusCode::FORBIDDEN, "cross-origin form post refused")
            .render(lang);
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    res
}

/// A post is same-origin when its Origin (browsers send `null` under a
/// no-referrer policy, hence `same-origin` above) (or, lacking one, its Referer)
/// names the host it was sent to. Browsers send Origin on every POST.
/// Over HTTP/2 the host is the URI's authority, not a Host header.
fn same_origin(h: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return false;
    };
    let origin = h
        .get(header::ORIGIN)
        .or_else(|| h.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match origin {
        Some(o) => {
            let rest = o.strip_prefix("https://").unwrap_or("");
            rest == host || rest.starts_with(&format!("{host}/"))
        }
        None => false,
    }
}

pub(crate) fn lang_of(h: &HeaderMap) -> Lang {
    Lang::negotiate(
        cookie(h, LANG_COOKIE),
        h.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    )
}

/// An error page (or, for an expired session, a redirect to sign in).
pub struct ConsoleError {
    status: StatusCode,
    message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            message: message.to_owned(),
        }
    }

    fn render(self, lang: Lang) -> Response {
        let body = html! {
            main class="narrow" {
                h1 { (lang.t("error")) " " (self.status.as_u16()) }
                p class="error" { (self.message) }
                p { a href="/console" { (lang.t("dashboard")) } }
            }
        };
        (self.status, document(lang, lang.t("error"), None, body)).into_response()
    }
}

impl From<Problem> for ConsoleError {
    fn from(p: Problem) -> Self {
        Self {
            status: p.status(),
            message: p.detail(),
        }
    }
}

impl From<kexin_ca::Error> for ConsoleError {
    fn from(e: kexin_ca::Error) -> Self {
        crate::api::ca_problem(e).into()
    }
}

/// Errors of a page handler render in the officer's language.
pub struct PageError(Lang, ConsoleError);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.1.render(self.0)
    }
}

pub type PageResult = Result<Response, PageError>;

/// The officer behind a console request, with a live session.
pub struct Officer {
    pub caller: Caller,
    pub lang: Lang,
    csrf: String,
}

impl Officer {
    /// Wraps an error for rendering in this officer's language.
    pub fn err(&self, e: impl Into<ConsoleError>) -> PageError {
        PageError(self.lang, e.into())
    }

    pub fn t(&self, key: &'static str) -> &'static str {
        self.lang.t(key)
    }

    /// Checks a form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, token: &str) -> Result<(), PageError> {
        if aws_lc_rs::constant_time::verify_slices_are_equal(token.as_bytes(), self.csrf.as_bytes())
            .is_ok()
        {
            Ok(())
        } else {
            Err(self.err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "the form is stale or was not sent by this console; reload the page",
            )))
        }
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// Refuses unless `allowed`.
    pub fn require(&self, allowed: bool) -> Result<(), PageError> {
        if allowed {
            Ok(())
        } else {
            Err(self.err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                self.t("forbidden"),
            )))
        }
    }

    pub fn page(&self, title: &str, body: Markup) -> Response {
        document(self.lang, title, Some(self), body).into_response()
    }
}

impl FromRequestParts<AppState> for Officer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        let caller = authenticate(parts, state)
            .await
            .map_err(|p| ConsoleError::from(p).render(lang))?;
        let session = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(id) => state
                .console_sessions
                .touch(id, &caller.serial)
                .await
                .map_err(|e| ConsoleError::from(e).render(lang))?,
            None => None,
        };
        match session {
            Some(csrf) => Ok(Self { caller, lang, csrf }),
            None => {
                let next = if parts.method == Method::GET {
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default()
                } else {
                    "/console".to_owned()
                };
                let target = format!("/console/login?next={}", percent_encode(&next));
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

/// Only console paths are followed after sign-in: no open redirect.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/console",
    }
}

#[derive(Deserialize)]
struct NextParam {
    next: Option<String>,
}

async fn login_page(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextParam>,
    parts: Parts,
) -> Response {
    let lang = lang_of(&headers);
    let caller = match authenticate(&parts, &state).await {
        Ok(c) => c,
        Err(p) => return ConsoleError::from(p).render(lang),
    };
    let expired = cookie(&headers, SESSION_COOKIE).is_some();
    let body = html! {
        main class="narrow" {
            h1 { (lang.t("console")) }
            @if expired { p class="notice" { (lang.t("session-expired")) } }
            form method="post" action="/console/login" {
                input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
                p { (lang.t("login-as")) " " strong { (caller.name) } " (" (caller.role) ")" }
                button type="submit" id="login" { (lang.t("login")) }
            }
        }
    };
    document(lang, lang.t("login"), None, body).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    next: Option<String>,
}

async fn login(
    axum::extract::State(state): axum::extract::State<AppState>,
    parts: Parts,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let lang = lang_of(&parts.headers);
    let caller = match authenticate(&parts, &state).await {
        Ok(c) => c,
        Err(p) => return ConsoleError::from(p).render(lang),
    };
    let session = match state.console_sessions.start(&caller.serial) {
        Ok(session) => session,
        Err(e) => return ConsoleError::from(e).render(lang),
    };
    let audit = state
        .instance
        .audit
        .append_with(
            kexin_ca::audit::AuditEvent {
                actor: &caller.actor(),
                action: "console.login",
                target: &caller.serial,
                source: &caller.source,
                detail: serde_json::json!({ "role": caller.role.as_str() }),
            },
            vec![session.row],
        )
        .await;
    if let Err(e) = audit {
        return ConsoleError::from(e).render(lang);
    }
    let id = session.id;
    let mut res = Redirect::to(safe_next(form.next.as_deref())).into_response();
    set_cookie(
        &mut res,
        &format!(
            "{SESSION_COOKIE}={id}; Path=/console; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            session::ABSOLUTE.as_secs()
        ),
    );
    res
}

async fn logout(
    axum::extract::State(state): axum::extract::State<AppState>,
    officer: Officer,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> PageResult {
    officer.check_csrf(&form.csrf)?;
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state
            .console_sessions
            .end(id)
            .await
            .map_err(|e| officer.err(e))?;
    }
    // After the session ended: were this record lost, the officer would be
    // signed out unrecorded, never recorded as out while still signed in.
    state
        .instance
        .audit
        .append(kexin_ca::audit::AuditEvent {
            actor: &officer.caller.actor(),
            action: "console.logout",
            target: &officer.caller.serial,
            source: &officer.caller.source,
            detail: serde_json::json!({}),
        })
        .await
        .map_err(|e| officer.err(e))?;
    let mut res = Redirect::to("/console/login").into_response();
    set_cookie(
        &mut res,
        &format!("{SESSION_COOKIE}=; Path=/console; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    pub csrf: String,
}

async fn set_lang(Path(lang): Path<String>, Query(q): Query<NextParam>) -> Response {
    let code = if lang == "zh-CN" { "zh-CN" } else { "en" };
    let mut res = Redirect::to(safe_next(q.next.as_deref())).into_response();
    set_cookie(
        &mut res,
        &format!("{LANG_COOKIE}={code}; Path=/console; Secure; SameSite=Lax; Max-Age=31536000"),
    );
    res
}

fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

/// The page frame: navigation by role, language switch, sign-out.
fn document(lang: Lang, title: &str, officer: Option<&Officer>, body: Markup) -> Html<String> {
    Html(frame(lang, title, officer, body).into_string())
}

fn frame(lang: Lang, title: &str, officer: Option<&Officer>, body: Markup) -> Markup {
    use kexin_ca::principal::{Permission, Role};
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t("console")) }
                link rel="stylesheet" href="/console/console.css";
            }
            body {
                header {
                    a class="brand" href="/console" { "可信 Kexin" }
                    @if let Some(o) = officer {
                        nav {
                            a href="/console" { (lang.t("dashboard")) }
                            a href="/console/requests" { (lang.t("requests")) }
                            a href="/console/requests/new" { (lang.t("new-request")) }
                            @if o.caller.role.allows(Permission::ReadCertificates) {
                                a href="/console/certificates" { (lang.t("certificates")) }
                            }
                            @if matches!(o.caller.role, Role::KmcOfficer | Role::RaAdmin) {
                                a href="/console/kmc" { (lang.t("kmc")) }
                            }
                            @if matches!(o.caller.role, Role::SealAdmin | Role::RaAdmin | Role::Auditor) {
                                a href="/console/seals" { (lang.t("seals")) }
                            }
                            @if o.caller.role == Role::RaAdmin {
                                a href="/console/officers" { (lang.t("officers")) }
                            }
                            @if matches!(o.caller.role, Role::RaAdmin | Role::Auditor) {
                                a href="/console/clients" { (lang.t("clients")) }
                                a href="/console/acme" { (lang.t("acme")) }
                            }
                            @if o.caller.role.allows(Permission::ReadAudit) {
                                a href="/console/audit" { (lang.t("audit")) }
                            }
                            @if o.caller.role.allows(Permission::ReadMetrics) {
                                a href="/console/services" { (lang.t("services")) }
                            }
                        }
                        div class="me" {
                            span class="who" { (o.caller.name) " · " (o.caller.role) }
                            @if lang == Lang::Zh { a href="/console/lang/en?next=/console" { "English" } }
                            @else { a href="/console/lang/zh-CN?next=/console" { "中文" } }
                            form method="post" action="/console/logout" class="inline" {
                                (o.csrf_field())
                                button type="submit" class="link" { (lang.t("logout")) }
                            }
                        }
                    }
                }
                (body)
            }
        }
    }
}

/// Unix seconds as UTC date and time.
pub fn when(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}
