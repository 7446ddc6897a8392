//! The citizen verify portal at `/verify`: public, no sign-in, phone
//! friendly, zh-CN and English. A citizen uploads a sealed PDF (or a file
//! and its detached signature) and sees a verdict and who sealed it, when.
//!
//! It shows only what the document's own signatures carry (seal,
//! organization, time, status), escapes everything it echoes (maud), keeps
//! nothing, limits uploads to 20 MiB and each address to 20 checks a
//! minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kexin_seal::verify::{Report, Verdict};
use maud::{html, Markup, DOCTYPE};

use crate::console::i18n::Lang;
use crate::serve::AppState;

pub const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;
const PER_MINUTE: u32 = 20;

/// Verifications per address in the current minute.
#[derive(Default)]
pub struct RateLimit(Mutex<HashMap<IpAddr, (Instant, u32)>>);

impl RateLimit {
    fn allow(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= PER_MINUTE
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/verify", get(form).post(check))
        .route("/verify/license", get(license))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(axum::middleware::from_fn(headers))
}

async fn headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[derive(serde::Deserialize)]
struct LangParam {
    lang: Option<String>,
}

/// The upload form; `?lang=en|zh-CN` switches the language and keeps it.
async fn form(headers: HeaderMap, Query(q): Query<LangParam>) -> Response {
    let (lang, cookie) = match q.lang.as_deref() {
        Some("zh-CN") => (Lang::Zh, Some("zh-CN")),
        Some("en") => (Lang::En, Some("en")),
        _ => (crate::console::lang_of(&headers), None),
    };
    let mut res = page(lang, upload_form(lang)).into_response();
    if let Some(code) = cookie {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "kexin_lang={code}; Path=/; Secure; SameSite=Lax; Max-Age=31536000"
        )) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

fn upload_form(lang: Lang) -> Markup {
    html! {
        h1 { (lang.t("verify-title")) }
        p class="muted" { (lang.t("verify-intro")) }
        form method="post" action="/verify" enctype="multipart/form-data" class="grid" {
            label class="wide" { (lang.t("pdf-file")) input type="file" name="pdf" accept="application/pdf,.pdf"; }
            p class="wide muted" { "— " (lang.t("or")) " —" }
            label { (lang.t("signed-file")) input type="file" name="content"; }
            label { (lang.t("signature-file")) input type="file" name="signature" accept=".p7s"; }
            button type="submit" id="verify" { (lang.t("verify")) }
        }
    }
}

async fn check(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let lang = crate::console::lang_of(&headers);
    if !state.portal_limit.allow(peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page(
                lang,
                html! { p class="notice error" { (lang.t("too-many")) } },
            ),
        )
            .into_response();
    }
    let (mut pdf, mut content, mut signature) = (None, None, None);
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                match field.bytes().await {
                    Ok(b) if !b.is_empty() => match name.as_str() {
                        "pdf" => pdf = Some(b),
                        "content" => content = Some(b),
                        "signature" => signature = Some(b),
                        _ => {}
                    },
                    Ok(_) => {}
                    Err(e) => return bad_upload(lang, e.status(), &e.body_text()),
                }
            }
            Ok(None) => break,
            Err(e) => return bad_upload(lang, e.status(), &e.body_text()),
        }
    }
    let trust = state.trust();
    let db = Some(&state.instance.db);
    let report = match (pdf, content, signature) {
        (Some(pdf), _, _) => kexin_seal::verify::verify_pdf(&pdf, trust, db).await,
        (None, Some(content), Some(signature)) => {
            kexin_seal::verify::verify_detached(&signature, &mut content.as_ref(), trust, db).await
        }
        _ => {
            return bad_upload(
                lang,
                StatusCode::UNPROCESSABLE_ENTITY,
                lang.t("verify-intro"),
            )
        }
    };
    let status = StatusCode::OK;
    (status, page(lang, report_view(lang, &report))).into_response()
}

#[derive(serde::Deserialize)]
struct LicenseParam {
    t: Option<String>,
}

/// Where a license's QR code leads: the license's facts and whether it
/// stands, from the signed payload and the registry.
async fn license(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<LicenseParam>,
) -> Response {
    let lang = crate::console::lang_of(&headers);
    if !state.portal_limit.allow(peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            page(
                lang,
                html! { p class="notice error" { (lang.t("too-many")) } },
            ),
        )
            .into_response();
    }
    let Some(token) = q.t.filter(|t| t.len() < 4096) else {
        return bad_upload(lang, StatusCode::BAD_REQUEST, "no license payload");
    };
    let report =
        kexin_seal::verify::verify_license(&token, state.trust(), &state.instance.db).await;
    let (class, headline) = match report.verdict {
        Verdict::Valid => ("valid", lang.t("license-valid")),
        Verdict::Invalid => ("invalid", lang.t("license-invalid")),
        Verdict::Indeterminate => ("indeterminate", lang.t("verdict-indeterminate")),
    };
    let body = html! {
        section class={"verdict " (class)} id="verdict" data-verdict=(class) {
            h1 { (headline) }
            p { (report.reason) }
        }
        @if let Some(l) = &report.license {
            dl class="facts" {
                dt { (lang.t("license-type")) } dd { (l.t) }
                dt { (lang.t("license-number")) } dd class="mono" id="license-number" { (l.no) }
                dt { (lang.t("holder")) } dd id="holder" { (l.h) }
                dt { (lang.t("authority")) } dd { (l.a) }
                dt { (lang.t("validity")) } dd { (l.f) " — " (l.u.as_deref().unwrap_or("长期")) }
                @if let Some(seal) = &report.seal {
                    dt { (lang.t("sealed-by")) } dd { (seal.organization) " · " (seal.name) }
                }
                dt { (lang.t("status")) } dd id="registry-status" { (report.registry_status) }
            }
        }
        p { a href="/verify" { (lang.t("verify-another")) } }
    };
    page(lang, body).into_response()
}

fn bad_upload(lang: Lang, status: StatusCode, message: &str) -> Response {
    (
        status,
        page(
            lang,
            html! { p class="notice error" { (message) } (upload_form(lang)) },
        ),
    )
        .into_response()
}

fn report_view(lang: Lang, report: &Report) -> Markup {
    let (class, headline) = match report.verdict {
        Verdict::Valid => ("valid", lang.t("verdict-valid")),
        Verdict::Invalid => ("invalid", lang.t("verdict-invalid")),
        Verdict::Indeterminate => ("indeterminate", lang.t("verdict-indeterminate")),
    };
    html! {
        section class={"verdict " (class)} id="verdict" data-verdict=(class) {
            h1 { (headline) }
            p { (report.reason) }
        }
        @for s in &report.signatures {
            @if s.kind == "signature" {
                dl class="facts" {
                    @if let Some(seal) = &s.seal {
                        dt { (lang.t("sealed-by")) } dd id="sealed-by" { (seal.organization) }
                        dt { (lang.t("seal")) } dd { (seal.name) }
                        @if let Some(u) = &seal.uscc { dt { (lang.t("uscc")) } dd class="mono" { (u) } }
                    } @else if let Some(signer) = &s.signer {
                        dt { (lang.t("sealed-by")) } dd class="wrap" { (signer) }
                    }
                    @match (&s.timestamp, &s.claimed_time) {
                        (Some(ts), _) if ts.valid => {
                            dt { (lang.t("sealed-at")) } dd { (ts.time) " · " (lang.t("time-proven")) }
                        }
                        (_, Some(claimed)) => {
                            dt { (lang.t("sealed-at")) } dd { (claimed) " · " (lang.t("time-claimed")) }
                        }
                        _ => {}
                    }
                    dt { (lang.t("cert-status")) } dd { (s.status_now) }
                    @if !s.changes_after.is_empty() {
                        dt { (lang.t("later-changes")) } dd { (s.changes_after.join(", ")) }
                    }
                    dt { (lang.t("detail")) } dd { (format!("{:?}", s.verdict).to_lowercase()) ": " (s.reason) }
                }
            }
        }
        p { a href="/verify" { (lang.t("verify-another")) } }
    }
}

fn page(lang: Lang, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (lang.t("verify-title")) }
                    link rel="stylesheet" href="/console/console.css";
                }
                body {
                    header {
                        a class="brand" href="/verify" { "可信 Kexin" }
                        div class="me" {
                            @if lang == Lang::Zh { a href="/verify?lang=en" hreflang="en" { "English" } }
                            @else { a href="/verify?lang=zh-CN" hreflang="zh-CN" { "中文" } }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}
