//! The citizen verify portal at `/verify`: public, no sign-in, phone
//! friendly, zh-CN and English. A citizen uploads a sealed PDF (or a file
//! and its detached signature) and sees a verdict and who sealed it, when.
//!
//! It shows only what the document's own signatures carry (seal,
//! organization, time, status), escapes everything it echoes (maud), keeps
//! nothing, limits uploads to 20 MiB and each client (IPv4 address,
//! IPv6 /64) to 20 checks a minute, across every node of the instance.

use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kexin_seal::verify::{Reason, Report, Verdict};
use maud::{html, Markup, DOCTYPE};

use crate::console::i18n::Lang;
use crate::serve::AppState;

mod limit;
pub use limit::RateLimit;

pub const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

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
    if !state.portal_limit.allow(peer.ip()).await {
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
                    Err(e) => return upload_failed(lang, &e),
                }
            }
            Ok(None) => break,
            Err(e) => return upload_failed(lang, &e),
        }
    }
    let authorities = state.authorities();
    let trust = authorities.trust();
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
    if !state.portal_limit.allow(peer.ip()).await {
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
        return bad_upload(lang, StatusCode::BAD_REQUEST, lang.t("no-license-payload"));
    };
    let report =
        kexin_seal::verify::verify_license(&token, state.authorities().trust(), &state.instance.db)
            .await;
    let (class, headline) = match report.verdict {
        Verdict::Valid => ("valid", lang.t("license-valid")),
        Verdict::Invalid => ("invalid", lang.t("license-invalid")),
        Verdict::Indeterminate => ("indeterminate", lang.t("verdict-indeterminate")),
    };
    let body = html! {
        section class={"verdict " (class)} id="verdict" data-verdict=(class) {
            h1 { (headline) }
            p id="reason" { (reason_text(lang, report.reason_code)) }
            (technical_detail(lang, &report.reason))
        }
        @if let Some(l) = &report.license {
            dl class="facts" {
                dt { (lang.t("license-type")) } dd { (l.t) }
                dt { (lang.t("license-number")) } dd class="mono" id="license-number" { (l.no) }
                dt { (lang.t("holder")) } dd id="holder" { (l.h) }
                dt { (lang.t("authority")) } dd { (l.a) }
                dt { (lang.t("validity")) } dd { (l.f) " — " (l.u.as_deref().unwrap_or(lang.t("no-end-date"))) }
                @if let Some(seal) = &report.seal {
                    dt { (lang.t("sealed-by")) } dd { (seal.organization) " · " (seal.name) }
                }
                dt { (lang.t("status")) } dd id="registry-status" { (status_text(lang, &report.registry_status)) }
            }
        }
        p { a href="/verify" { (lang.t("verify-another")) } }
    };
    page(lang, body).into_response()
}

/// An upload that could not be read: too large, or not a form.
fn upload_failed(lang: Lang, e: &axum::extract::multipart::MultipartError) -> Response {
    let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        lang.t("upload-too-large")
    } else {
        lang.t("upload-unreadable")
    };
    bad_upload(lang, e.status(), message)
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
            p id="reason" { (reason_text(lang, report.reason_code)) }
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
                    dt { (lang.t("cert-status")) } dd { (status_text(lang, &s.status_now)) }
                    @if !s.changes_after.is_empty() {
                        dt { (lang.t("later-changes")) }
                        dd { (s.changes_after.iter().map(|c| change_text(lang, c)).collect::<Vec<_>>().join(lang.t("list-separator"))) }
                    }
                    dt { (lang.t("detail")) }
                    dd { (reason_text(lang, s.reason_code)) (technical_detail(lang, &s.reason)) }
                }
            }
        }
        p { a href="/verify" { (lang.t("verify-another")) } }
    }
}

/// The verification engine's reason in the reader's language.
fn reason_text(lang: Lang, reason: Reason) -> &'static str {
    let (en, zh) = match reason {
        Reason::Valid => ("Intact, signed by a trusted seal whose certificate is not revoked.", "文件完整，印章可信，印章证书未被吊销。"),
        Reason::ValidRevokedLater => ("Valid: the seal's certificate was revoked only after the time-stamped sealing time.", "有效：印章证书在经时间戳证明的盖章时间之后才被吊销。"),
        Reason::Revoked => ("The seal's certificate is revoked, and no time-stamp proves the seal was applied before.", "印章证书已被吊销，且没有时间戳证明盖章发生在吊销之前。"),
        Reason::OnHold => ("The seal's certificate is suspended (on hold).", "印章证书已被暂停使用。"),
        Reason::StatusUnknown => ("Intact and from a trusted authority, but whether the certificate is revoked is unknown here.", "文件完整且签发机构可信，但无法确认证书是否已被吊销。"),
        Reason::Untrusted => ("The signer's certificate does not lead to a trusted authority.", "签章者的证书无法验证到受信任的签发机构。"),
        Reason::ContentChanged => ("The file was changed after it was sealed.", "文件在盖章后被修改过。"),
        Reason::SignatureInvalid => ("The signature is not valid for this file.", "签名值验证失败。"),
        Reason::Malformed => ("The signature is damaged or incomplete.", "签名已损坏或不完整。"),
        Reason::ByteRangeIncomplete => ("The signature does not cover the whole file around it.", "签名未覆盖其所在的整个文件。"),
        Reason::ChangedAfterSigning => ("Content was added after sealing that is neither a seal, a time-stamp nor validation data.", "盖章后文件中追加了其他内容（不是印章、时间戳或验证数据）。"),
        Reason::TimestampValid => ("The document time-stamp is intact and trusted.", "文档时间戳完整可信。"),
        Reason::ChangedAfterTimestamp => ("The file was changed after its time-stamp.", "文件在加盖时间戳后被修改过。"),
        Reason::TimestampUntrusted => ("The time-stamp does not come from a trusted time-stamp authority.", "时间戳并非来自受信任的时间戳服务。"),
        Reason::NoSignature => ("The file carries no seal or signature.", "文件中没有印章或签名。"),
        Reason::Unreadable => ("The file cannot be read as a sealed document.", "无法将该文件作为盖章文件读取。"),
        Reason::NotALicense => ("This is not an e-license code.", "这不是电子证照二维码。"),
        Reason::UnknownSeal => ("The seal that signed this license is not known here.", "签发此证照的印章在本系统中未登记。"),
        Reason::LicenseForged => ("The license data is not genuine.", "证照数据不是真实的。"),
        Reason::NotRegistered => ("This license is not in the registry.", "证照库中没有这份证照。"),
        Reason::LicenseRevoked => ("This license has been revoked.", "此证照已被注销。"),
        Reason::PayloadMismatch => ("The data is not what the registry holds for this license number.", "数据与证照库中该编号的登记内容不一致。"),
        Reason::SealCertificateNotIssued => ("The seal's certificate is no longer in force; rely on the sealed PDF and its time-stamp.", "印章证书已失效，请以加盖时间戳的证照 PDF 为准。"),
        Reason::OutsideValidity => ("The license is outside its validity period.", "证照不在有效期内。"),
        Reason::LicenseValid => ("Genuine, registered and in force.", "证照真实、已登记且在有效期内。"),
    };
    if lang == Lang::Zh {
        zh
    } else {
        en
    }
}

/// The engine's own sentence (English, with technical detail), folded away.
fn technical_detail(lang: Lang, detail: &str) -> Markup {
    html! {
        @if !detail.is_empty() {
            details class="technical" { summary { (lang.t("technical-detail")) } span lang="en" { (detail) } }
        }
    }
}

/// A certificate's or license's status (`good`, `revoked at … (reason)`,
/// `on hold`, `unknown …`, `active`) in the reader's language; the time
/// and RFC 5280 reason stay as they are.
fn status_text(lang: Lang, status: &str) -> String {
    let known = [
        ("good", "status-good"),
        ("active", "status-good"),
        ("revoked", "status-revoked"),
        ("on hold", "hold-status"),
        ("not checked", "status-not-checked"),
        ("not registered", "status-not-registered"),
        ("unknown", "status-unknown"),
        ("untrusted", "status-untrusted"),
    ];
    match known.iter().find(|(prefix, _)| status.starts_with(prefix)) {
        Some((prefix, key)) => {
            let rest = status[prefix.len()..].trim().trim_start_matches("at ");
            if rest.is_empty() {
                lang.t(key).to_owned()
            } else {
                format!("{} {rest}", lang.t(key))
            }
        }
        None => status.to_owned(),
    }
}

/// What a later PDF revision is, in the reader's language.
fn change_text(lang: Lang, change: &str) -> &str {
    match change {
        "a later signature" => lang.t("change-signature"),
        "a document time-stamp" => lang.t("change-timestamp"),
        "validation data (DSS)" => lang.t("change-dss"),
        "other changes" => lang.t("change-other"),
        other => other,
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
