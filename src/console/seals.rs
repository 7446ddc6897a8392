//! Seals on the console: every seal with its image, owner, status and
//! grantees; a `seal-admin` grants the use of a seal to a principal.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use base64::Engine;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use maud::html;
use serde::Deserialize;

use super::{Officer, PageResult};
use crate::serve::AppState;

fn may_see(role: Role) -> bool {
    matches!(role, Role::SealAdmin | Role::RaAdmin | Role::Auditor)
}

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
    let body = html! {
        main {
            h1 { (officer.t("seals")) }
            @if seals.is_empty() { p class="muted" { (officer.t("none")) } }
            @for (seal, users) in &seals {
                section class="seal" {
                    img class="seal-image" alt=(seal.row.name) width="96" height="96"
                        src={"data:image/png;base64," (base64::engine::general_purpose::STANDARD.encode(&seal.row.image))};
                    dl class="facts" {
                        dt { (officer.t("name")) } dd class="seal-name" { (seal.row.name) }
                        dt { (officer.t("sealed-by")) } dd { (seal.row.organization) }
                        @if let Some(u) = &seal.row.uscc { dt { (officer.t("uscc")) } dd class="mono" { (u) } }
                        dt { (officer.t("kind")) } dd { (seal.row.kind) }
                        dt { (officer.t("status")) } dd { span class={"badge " (seal.certificate_status)} { (seal.row.status) " · " (seal.certificate_status) } }
                        dt { (officer.t("serial")) } dd class="mono" { a href={"/console/certificates/" (seal.row.certificate_serial)} { (seal.row.certificate_serial) } }
                        dt { (officer.t("grantees")) } dd class="grantees" { @if users.is_empty() { "—" } @else { (users.join(", ")) } }
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
