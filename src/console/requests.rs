//! Dashboard, request queues, the submission form, decisions and the KMC
//! recovery queue.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use base64::Engine;
use kexin_ca::principal::Role;
use kexin_ca::request::{Decision, Delivery, EvidenceInput, RequestKind, RequestView, Submission};
use maud::{html, Markup};
use serde::Deserialize;

use super::{when, CsrfOnly, Officer, PageResult};
use crate::serve::AppState;
use kexin_ca::issuance::now;

/// Whether `officer` may approve or reject `r` now.
fn may_decide(officer: &Officer, r: &RequestView) -> bool {
    let role = officer.caller.role;
    let right_role = match r.approver_role.as_str() {
        "kmc-officer" => role == Role::KmcOfficer,
        _ => matches!(role, Role::RaOfficer | Role::RaAdmin),
    };
    r.status == "submitted"
        && right_role
        && r.submitted_by != officer.caller.name
        && !r.decisions.iter().any(|d| d.officer == officer.caller.name)
}

fn status_badge(officer: &Officer, status: &str) -> Markup {
    let label = match status {
        "submitted" | "approved" | "rejected" | "issued" | "failed" | "revoked" => {
            officer.t(match status {
                "submitted" => "submitted",
                "approved" => "approved",
                "rejected" => "rejected",
                "issued" => "issued",
                "revoked" => "revoked",
                _ => "failed",
            })
        }
        "hold" => officer.t("hold-status"),
        _ => "",
    };
    let label = if label.is_empty() { status } else { label };
    html! { span class={"badge " (status)} { (label) } }
}

fn kind_label(officer: &Officer, kind: &str) -> &'static str {
    match kind {
        "enroll-official" => officer.t("enroll-official"),
        "enroll-system" => officer.t("enroll-system"),
        "seal-certificate" => officer.t("seal-certificate"),
        "seal-create" => officer.t("seal-create"),
        "renew" => officer.t("renew"),
        "rekey" => officer.t("rekey"),
        "revoke" => officer.t("revoke"),
        "key-recovery" => officer.t("key-recovery"),
        _ => "",
    }
}

fn subject_text(r: &RequestView) -> String {
    if r.subject.is_empty() {
        return r.target.clone().unwrap_or_default();
    }
    r.subject
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn request_table(officer: &Officer, items: &[RequestView]) -> Markup {
    html! {
        @if items.is_empty() { p class="muted" { (officer.t("none")) } }
        @else {
            div class="scroll" {
                table {
                    thead { tr {
                        th { "#" } th { (officer.t("kind")) } th { (officer.t("subject")) }
                        th { (officer.t("status")) } th { (officer.t("approvals")) }
                        th { (officer.t("submitted-by")) } th { (officer.t("submitted-at")) }
                    } }
                    tbody {
                        @for r in items {
                            tr {
                                td { a href={"/console/requests/" (r.id)} { (r.id) } }
                                td { (kind_label(officer, &r.kind)) }
                                td class="wrap" { (subject_text(r)) }
                                td { (status_badge(officer, &r.status)) }
                                td { (r.approvals_required) }
                                td { (r.submitted_by) }
                                td class="nowrap" { (when(r.submitted_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub async fn dashboard(State(state): State<AppState>, officer: Officer) -> PageResult {
    let db = &state.instance.db;
    let counts = db.request_counts().await.map_err(|e| officer.err(e))?;
    let pending = state
        .requests
        .list(Some("submitted"), 200, 0)
        .await
        .map_err(|e| officer.err(e))?;
    let mut mine = Vec::new();
    for r in pending {
        if r.submitted_by == officer.caller.name {
            continue;
        }
        let full = state
            .requests
            .view(r.id)
            .await
            .map_err(|e| officer.err(e))?;
        if may_decide(&officer, &full) {
            mine.push(full);
        }
    }
    let today = now() / 86400;
    let activity = db
        .daily_activity((today - 13) * 86400)
        .await
        .map_err(|e| officer.err(e))?;
    let days: Vec<(i64, i64, i64)> = (today - 13..=today)
        .map(|d| {
            activity
                .iter()
                .find(|a| a.0 == d)
                .copied()
                .unwrap_or((d, 0, 0))
        })
        .collect();
    let body = html! {
        main {
            h1 { (officer.t("dashboard")) }
            section class="cards" {
                @for (status, n) in &counts {
                    a class="card" href={"/console/requests?status=" (status)} {
                        span class="count" { (n) }
                        (status_badge(&officer, status))
                    }
                }
            }
            section {
                h2 { (officer.t("pending-you")) }
                (request_table(&officer, &mine))
            }
            section {
                h2 { (officer.t("activity")) }
                (activity_chart(&officer, &days))
            }
        }
    };
    Ok(officer.page(officer.t("dashboard"), body))
}

/// A bar chart in inline SVG: no script, readable at any width.
fn activity_chart(officer: &Officer, days: &[(i64, i64, i64)]) -> Markup {
    let max = days.iter().map(|d| d.1.max(d.2)).max().unwrap_or(0).max(1);
    let (w, h, pad) = (700.0_f64, 220.0_f64, 24.0_f64);
    let slot = (w - pad) / days.len().max(1) as f64;
    let bar = slot * 0.38;
    let scale = |n: i64| (h - 2.0 * pad) * n as f64 / max as f64;
    html! {
        figure class="chart" {
            svg viewBox={"0 0 " (w) " " (h)} role="img" aria-label=(officer.t("activity")) {
                line x1=(pad) y1=(h - pad) x2=(w) y2=(h - pad) class="axis" {}
                text x="2" y=(pad) class="tick" { (max) }
                @for (i, (day, issued, revoked)) in days.iter().enumerate() {
                    @let x = pad + i as f64 * slot;
                    rect x=(x) y=(h - pad - scale(*issued)) width=(bar) height=(scale(*issued)) class="issued" {
                        title { (day_label(*day)) ": " (issued) " " (officer.t("issued")) }
                    }
                    rect x=(x + bar) y=(h - pad - scale(*revoked)) width=(bar) height=(scale(*revoked)) class="revoked" {
                        title { (day_label(*day)) ": " (revoked) " " (officer.t("revoked")) }
                    }
                    @if i % 2 == 0 {
                        text x=(x) y=(h - 6.0) class="tick" { (day_label(*day)) }
                    }
                }
            }
            figcaption {
                span class="key issued" {} (officer.t("issued")) " "
                span class="key revoked" {} (officer.t("revoked"))
            }
        }
    }
}

fn day_label(day: i64) -> String {
    super::when(day * 86400)
        .get(5..10)
        .unwrap_or_default()
        .to_owned()
}

#[derive(Deserialize)]
pub struct ListParams {
    status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    officer: Officer,
    Query(q): Query<ListParams>,
) -> PageResult {
    let status = q.status.filter(|s| !s.is_empty());
    let items = state
        .requests
        .list(status.as_deref(), 100, 0)
        .await
        .map_err(|e| officer.err(e))?;
    let body = html! {
        main {
            h1 { (officer.t("requests")) }
            nav class="filters" {
                a href="/console/requests" { (officer.t("all")) }
                @for s in ["submitted", "issued", "rejected", "failed"] {
                    a href={"/console/requests?status=" (s)} { (status_badge(&officer, s)) }
                }
            }
            (request_table(&officer, &items))
        }
    };
    Ok(officer.page(officer.t("requests"), body))
}

pub async fn new_form(State(state): State<AppState>, officer: Officer) -> PageResult {
    let profiles: Vec<String> = state
        .registration
        .profiles()
        .names()
        .map(str::to_owned)
        .collect();
    Ok(officer.page(
        officer.t("new-request"),
        submission_form(&officer, &profiles, None),
    ))
}

fn submission_form(officer: &Officer, profiles: &[String], preset_kind: Option<&str>) -> Markup {
    let kinds = [
        "enroll-official",
        "enroll-system",
        "seal-certificate",
        "renew",
        "rekey",
        "revoke",
        "key-recovery",
    ];
    html! {
        main {
            h1 { (officer.t("new-request")) }
            form method="post" action="/console/requests" class="grid" {
                (officer.csrf_field())
                label { (officer.t("kind"))
                    select name="kind" id="kind" {
                        @for k in kinds {
                            option value=(k) selected[preset_kind == Some(k)] { (kind_label(officer, k)) }
                        }
                    }
                }
                label { (officer.t("profile"))
                    select name="profile" {
                        option value="" { "—" }
                        @for p in profiles { option value=(p) { (p) } }
                    }
                }
                fieldset {
                    legend { (officer.t("subject")) }
                    @for (attr, hint) in [("CN", "张三"), ("O", ""), ("OU", ""), ("C", "CN"), ("ST", ""), ("L", ""), ("organizationIdentifier", "")] {
                        label { (attr) input type="text" name={"subject_" (attr)} placeholder=(hint); }
                    }
                }
                label class="wide" { (officer.t("names")) textarea name="names" rows="2" {} }
                label class="wide" { (officer.t("csr")) textarea name="csr" rows="6" class="mono" {} }
                label { (officer.t("target")) input type="text" name="target" class="mono"; }
                label { (officer.t("reason")) input type="text" name="reason" placeholder="keyCompromise"; }
                fieldset {
                    legend { (officer.t("evidence")) }
                    label { (officer.t("document"))
                        select name="document" {
                            option value="" { "—" }
                            @for d in ["resident-id", "passport", "business-license", "other"] { option value=(d) { (d) } }
                        }
                    }
                    label { (officer.t("id-number")) input type="text" name="id_number" autocomplete="off"; }
                    label class="wide" { (officer.t("note")) input type="text" name="note" maxlength="500"; }
                }
                button type="submit" id="submit-request" { (officer.t("submit")) }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct SubmissionForm {
    csrf: String,
    kind: String,
    #[serde(default)]
    profile: String,
    #[serde(default, rename = "subject_CN")]
    cn: String,
    #[serde(default, rename = "subject_O")]
    o: String,
    #[serde(default, rename = "subject_OU")]
    ou: String,
    #[serde(default, rename = "subject_C")]
    c: String,
    #[serde(default, rename = "subject_ST")]
    st: String,
    #[serde(default, rename = "subject_L")]
    l: String,
    #[serde(default, rename = "subject_organizationIdentifier")]
    org_id: String,
    #[serde(default)]
    names: String,
    #[serde(default)]
    csr: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    document: String,
    #[serde(default)]
    id_number: String,
    #[serde(default)]
    note: String,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub async fn submit(
    State(state): State<AppState>,
    officer: Officer,
    Form(f): Form<SubmissionForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    let kind: RequestKind = f.kind.parse().map_err(|e| officer.err(e))?;
    // Directory order: country first, common name last.
    let subject = [
        ("C", &f.c),
        ("ST", &f.st),
        ("L", &f.l),
        ("O", &f.o),
        ("organizationIdentifier", &f.org_id),
        ("OU", &f.ou),
        ("CN", &f.cn),
    ]
    .into_iter()
    .filter_map(|(k, v)| non_empty(v).map(|v| (k.to_owned(), v)))
    .collect();
    let submission = Submission {
        kind,
        profile: non_empty(&f.profile),
        subject,
        names: f.names.lines().filter_map(non_empty).collect(),
        csr: non_empty(&f.csr),
        target: non_empty(&f.target),
        reason: non_empty(&f.reason),
        seal: None,
        evidence: non_empty(&f.document).map(|document| EvidenceInput {
            document,
            id_number: non_empty(&f.id_number),
            note: f.note.trim().to_owned(),
        }),
    };
    let id = state
        .requests
        .submit(officer.caller.officer(), submission)
        .await
        .map_err(|e| officer.err(e))?;
    Ok(Redirect::to(&format!("/console/requests/{id}")).into_response())
}

pub async fn detail(
    State(state): State<AppState>,
    officer: Officer,
    Path(id): Path<i64>,
) -> PageResult {
    let r = state.requests.view(id).await.map_err(|e| officer.err(e))?;
    Ok(officer.page(&format!("#{id}"), request_page(&officer, &r, None, None)))
}

fn request_page(
    officer: &Officer,
    r: &RequestView,
    full_id: Option<&str>,
    delivery: Option<&Delivery>,
) -> Markup {
    let certificates: Vec<String> = r
        .outcome
        .as_ref()
        .and_then(|o| o.get("certificates"))
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let error = r
        .outcome
        .as_ref()
        .and_then(|o| o.get("error"))
        .and_then(|e| e.as_str());
    html! {
        main {
            h1 { (kind_label(officer, &r.kind)) " #" (r.id) " " (status_badge(officer, &r.status)) }
            @if let Some(d) = delivery { (delivery_box(officer, d)) }
            dl class="facts" {
                dt { (officer.t("profile")) } dd { (r.profile.as_deref().unwrap_or("—")) }
                dt { (officer.t("subject")) } dd class="wrap" { (subject_text(r)) }
                @if !r.names.is_empty() { dt { "SAN" } dd { (r.names.join(", ")) } }
                @if let Some(t) = &r.target { dt { (officer.t("target")) } dd class="mono" { a href={"/console/certificates/" (t)} { (t) } } }
                @if let Some(reason) = &r.reason { dt { (officer.t("reason")) } dd { (reason) } }
                @if let Some(seal) = &r.seal {
                    dt { (officer.t("kind")) } dd { (seal.kind) }
                    @if let Some(u) = &seal.uscc { dt { (officer.t("uscc")) } dd class="mono" { (u) } }
                    @if let Some(a) = &seal.algorithm { dt { (officer.t("algorithm")) } dd { (a) } }
                    dt { (officer.t("seal-image")) }
                    dd {
                        @match &seal.image {
                            Some(png) => img class="seal-image" alt=(seal.name) width="96" height="96" src={"data:image/png;base64," (png)};,
                            None => span class="muted" { (officer.t("default-seal-image")) },
                        }
                    }
                }
                dt { (officer.t("submitted-by")) } dd { (r.submitted_by) " · " (when(r.submitted_at)) }
                dt { (officer.t("approvals")) } dd { (r.approvals_required) " × " (r.approver_role) }
                @for c in &certificates {
                    dt { (officer.t("outcome")) } dd class="mono" { a href={"/console/certificates/" (c)} { (c) } }
                }
                @if let Some(e) = error { dt { (officer.t("error")) } dd class="error" { (e) } }
            }
            @if !r.evidence.document.is_empty() {
                h2 { (officer.t("evidence")) }
                dl class="facts" {
                    dt { (officer.t("document")) } dd { (r.evidence.document) }
                    @if let Some(m) = &r.evidence.id_number_masked {
                        dt { (officer.t("id-number")) }
                        dd class="mono" id="id-number" { (full_id.unwrap_or(m)) }
                    }
                    dt { (officer.t("note")) } dd { (r.evidence.note) }
                }
                @if officer.caller.role == Role::RaAdmin && r.evidence.id_number_masked.is_some() && full_id.is_none() {
                    form method="post" action={"/console/requests/" (r.id) "/id-number"} {
                        (officer.csrf_field())
                        button type="submit" class="secondary" { (officer.t("show-id")) }
                    }
                }
            }
            h2 { (officer.t("decisions")) }
            @if r.decisions.is_empty() { p class="muted" { (officer.t("none")) } }
            ul {
                @for d in &r.decisions {
                    li { (d.officer) ": " strong { (d.decision) } " · " (when(d.decided_at)) }
                }
            }
            @if may_decide(officer, r) {
                form method="post" action={"/console/requests/" (r.id) "/decide"} class="actions" {
                    (officer.csrf_field())
                    button type="submit" name="decision" value="approve" id="approve" { (officer.t("approve")) }
                    button type="submit" name="decision" value="reject" id="reject" class="danger" { (officer.t("reject")) }
                }
            }
        }
    }
}

/// The PKCS#12 as a link target: the file exists only in this page.
pub fn p12_data_url(d: &Delivery) -> String {
    format!(
        "data:application/x-pkcs12;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&d.pkcs12)
    )
}

fn delivery_box(officer: &Officer, d: &Delivery) -> Markup {
    let href = p12_data_url(d);
    html! {
        section class="delivery" id="delivery" {
            h2 { (officer.t("delivery")) }
            p { (officer.t("delivery-note")) }
            p { (officer.t("one-time-secret")) ": " code id="one-time-secret" { (d.secret) } }
            p { a href=(href) download={(d.certificate_serial) ".p12"} { (officer.t("download")) } }
        }
    }
}

#[derive(Deserialize)]
pub struct DecisionForm {
    csrf: String,
    decision: String,
}

pub async fn decide(
    State(state): State<AppState>,
    officer: Officer,
    Path(id): Path<i64>,
    Form(f): Form<DecisionForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    let decision = match f.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => {
            return Err(officer.err(super::ConsoleError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "decision must be approve or reject",
            )))
        }
    };
    let result = state
        .requests
        .decide(officer.caller.officer(), id, decision)
        .await
        .map_err(|e| officer.err(e))?;
    crate::api::after_decision(&state, &result).await;
    match &result.delivery {
        // The key is handed over in this response and nowhere else.
        Some(d) => Ok(officer.page(
            &format!("#{id}"),
            request_page(&officer, &result.view, None, Some(d)),
        )),
        None => Ok(Redirect::to(&format!("/console/requests/{id}")).into_response()),
    }
}

pub async fn reveal(
    State(state): State<AppState>,
    officer: Officer,
    Path(id): Path<i64>,
    Form(f): Form<CsrfOnly>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    let number = state
        .requests
        .reveal_id_number(officer.caller.officer(), id)
        .await
        .map_err(|e| officer.err(e))?;
    let r = state.requests.view(id).await.map_err(|e| officer.err(e))?;
    Ok(officer.page(
        &format!("#{id}"),
        request_page(&officer, &r, Some(&number), None),
    ))
}

pub async fn kmc_queue(State(state): State<AppState>, officer: Officer) -> PageResult {
    officer.require(matches!(
        officer.caller.role,
        Role::KmcOfficer | Role::RaAdmin
    ))?;
    let items: Vec<RequestView> = state
        .requests
        .list(None, 200, 0)
        .await
        .map_err(|e| officer.err(e))?
        .into_iter()
        .filter(|r| r.kind == "key-recovery")
        .collect();
    let body = html! {
        main {
            h1 { (officer.t("kmc")) }
            section {
                h2 { (officer.t("recovery-queue")) }
                (request_table(&officer, &items))
            }
            section {
                h2 { (officer.t("recover-key")) }
                form method="post" action="/console/requests" class="grid" {
                    (officer.csrf_field())
                    input type="hidden" name="kind" value="key-recovery";
                    label { (officer.t("target")) input type="text" name="target" class="mono" required; }
                    label class="wide" { (officer.t("reason")) input type="text" name="reason" required; }
                    button type="submit" { (officer.t("submit")) }
                }
            }
        }
    };
    Ok(officer.page(officer.t("kmc"), body))
}
