//! Seals on the console: every seal with its image, owner, status and
//! grantees; a `seal-admin` grants the use of a seal to a principal and
//! asks for new seals, which two registration officers approve.

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use base64::Engine;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use kexin_ca::request::{SealSpec, Submission};
use kexin_seal::SealKind;
use maud::html;
use serde::Deserialize;

use super::{CsrfOnly, Officer, PageResult};
use crate::serve::AppState;

fn may_see(role: Role) -> bool {
    matches!(role, Role::SealAdmin | Role::RaAdmin | Role::Auditor)
}

fn may_request(role: Role) -> bool {
    matches!(role, Role::SealAdmin | Role::RaAdmin)
}

/// A seal whose certificate has less than this left is flagged: its
/// renewal takes two officers' approval, to be asked for in time.
const SEAL_RENEWAL_NOTICE_DAYS: i64 = 60;

/// Largest form the new-seal page accepts: the seal image and a few fields.
pub const MAX_NEW_SEAL_FORM: usize = 512 * 1024;

pub async fn list(State(state): State<AppState>, officer: Officer) -> PageResult {
    officer.require(may_see(officer.caller.role))?;
    let registry = state.seals.registry();
    let rows = registry.db().seals().await.map_err(|e| officer.err(e))?;
    let mut seals = Vec::new();
    for row in rows {
        let seal = registry
            .get(&row.name)
            .await
            .map_err(|e| officer.err(crate::api::seal_problem(e)))?;
        let users = registry
            .db()
            .seal_users(&row.name)
            .await
            .map_err(|e| officer.err(e))?;
        seals.push((seal, users));
    }
    let admin = officer.caller.role == Role::SealAdmin;
    let now = kexin_ca::issuance::now();
    let body = html! {
        main {
            h1 { (officer.t("seals")) }
            @if may_request(officer.caller.role) {
                details class="new-seal" {
                    summary { (officer.t("new-seal")) }
                    p class="muted" { (officer.t("new-seal-note")) }
                    form method="post" action="/console/seals" enctype="multipart/form-data" class="grid" {
                        (officer.csrf_field())
                        label { (officer.t("seal-name")) input type="text" name="name" id="seal-name" required maxlength="64"; }
                        label { (officer.t("sealed-by")) input type="text" name="organization" id="seal-organization" required maxlength="64"; }
                        label { (officer.t("uscc")) input type="text" name="uscc" id="seal-uscc" class="mono" maxlength="18"; }
                        label { (officer.t("kind"))
                            select name="kind" id="seal-kind" {
                                @for k in SealKind::ALL { option value=(k.as_str()) { (k.chinese()) " (" (k.as_str()) ")" } }
                            }
                        }
                        label class="wide" { (officer.t("seal-image-upload")) input type="file" name="image" accept="image/png"; }
                        button type="submit" id="request-seal" { (officer.t("submit")) }
                    }
                }
            }
            @if seals.is_empty() { p class="muted" { (officer.t("none")) } }
            @for (seal, users) in &seals {
                section class="seal" {
                    img class="seal-image" alt=(seal.row.name) width="96" height="96"
                        src={"data:image/png;base64," (base64::engine::general_purpose::STANDARD.encode(&seal.row.image))};
                    dl class="facts" {
                        dt { (officer.t("seal-name")) } dd class="seal-name" { (seal.row.name) }
                        dt { (officer.t("sealed-by")) } dd { (seal.row.organization) }
                        @if let Some(u) = &seal.row.uscc { dt { (officer.t("uscc")) } dd class="mono" { (u) } }
                        dt { (officer.t("kind")) } dd { (seal.row.kind) }
                        dt { (officer.t("status")) } dd { span class={"badge " (seal.certificate_status)} { (seal.row.status) " · " (seal.certificate_status) } }
                        dt { (officer.t("serial")) } dd class="mono" { a href={"/console/certificates/" (seal.row.certificate_serial)} { (seal.row.certificate_serial) } }
                        @let end = seal.certificate.tbs_certificate.validity.not_after.to_unix_duration().as_secs() as i64;
                        @let left = (end - now).div_euclid(86400);
                        dt { (officer.t("valid-until")) }
                        dd class="seal-end" {
                            (super::when(end)) " · " (left.max(0)) " " (officer.t("days"))
                            @if left < SEAL_RENEWAL_NOTICE_DAYS {
                                " " span class="badge attention" { (officer.t("seal-renew-soon")) }
                            }
                        }
                        dt { (officer.t("grantees")) } dd class="grantees" { @if users.is_empty() { "—" } @else { (users.join(", ")) } }
                    }
                    @if may_request(officer.caller.role) && seal.check_renewable().is_ok() {
                        form method="post" action={"/console/seals/" (seal.row.name) "/renew"} class="actions" {
                            (officer.csrf_field())
                            button type="submit" class="renew" { (officer.t("ask-renewal")) }
                        }
                    }
                    @if admin {
                        form method="post" action={"/console/seals/" (seal.row.name) "/users"} class="actions" {
                            (officer.csrf_field())
                            label { (officer.t("grant-to")) input type="text" name="principal" required maxlength="64"; }
                            button type="submit" class="grant" { (officer.t("grant")) }
                        }
                    }
                }
            }
        }
    };
    Ok(officer.page(officer.t("seals"), body))
}

#[derive(Deserialize)]
pub struct GrantForm {
    csrf: String,
    principal: String,
}

pub async fn grant(
    State(state): State<AppState>,
    officer: Officer,
    Path(name): Path<String>,
    Form(f): Form<GrantForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    officer.require(officer.caller.role == Role::SealAdmin)?;
    let actor = officer.caller.actor();
    state
        .seals
        .registry()
        .grant(
            &name,
            &f.principal,
            Requester {
                actor: &actor,
                source: &officer.caller.source,
            },
        )
        .await
        .map_err(|e| officer.err(crate::api::seal_problem(e)))?;
    Ok(Redirect::to("/console/seals").into_response())
}

/// Submits a `renew` request for the seal's present certificate; it is
/// renewed once two registration officers have approved it.
pub async fn request_renewal(
    State(state): State<AppState>,
    officer: Officer,
    Path(name): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    officer.require(may_request(officer.caller.role))?;
    let seal = state
        .seals
        .registry()
        .get(&name)
        .await
        .map_err(|e| officer.err(crate::api::seal_problem(e)))?;
    let id = state
        .requests
        .submit(
            officer.caller.officer(),
            Submission::renew_seal(&seal.row.certificate_serial),
        )
        .await
        .map_err(|e| officer.err(e))?;
    Ok(Redirect::to(&format!("/console/requests/{id}")).into_response())
}

/// Reads the new-seal form: text fields and an optional PNG.
async fn new_seal_form(mut form: Multipart) -> Result<(String, SealSpec), (StatusCode, String)> {
    use base64::engine::general_purpose::STANDARD;
    let mut fields = std::collections::HashMap::new();
    let mut image = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| (e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| (e.status(), e.body_text()))?;
        if name == "image" {
            image = (!bytes.is_empty()).then(|| STANDARD.encode(&bytes));
        } else if ["csrf", "name", "organization", "uscc", "kind"].contains(&name.as_str()) {
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("field {name} is not UTF-8"),
                )
            })?;
            fields.insert(name, text.trim().to_owned());
        }
    }
    let mut take = |k: &str| fields.remove(k).unwrap_or_default();
    let csrf = take("csrf");
    let uscc = take("uscc");
    let kind = take("kind");
    let spec = SealSpec {
        name: take("name"),
        organization: take("organization"),
        uscc: (!uscc.is_empty()).then_some(uscc),
        kind: if kind.is_empty() {
            "official".into()
        } else {
            kind
        },
        image,
        algorithm: None,
    };
    Ok((csrf, spec))
}

/// Submits a `seal-create` request; the seal exists once two registration
/// officers have approved it.
pub async fn request_new(
    State(state): State<AppState>,
    officer: Officer,
    form: Multipart,
) -> PageResult {
    let (csrf, spec) = new_seal_form(form)
        .await
        .map_err(|(status, m)| officer.err(super::ConsoleError::new(status, &m)))?;
    officer.check_csrf(&csrf)?;
    officer.require(may_request(officer.caller.role))?;
    let id = state
        .requests
        .submit(officer.caller.officer(), Submission::create_seal(spec))
        .await
        .map_err(|e| officer.err(e))?;
    Ok(Redirect::to(&format!("/console/requests/{id}")).into_response())
}
