//! ACME external account keys on the console: an `ra-admin` issues one to
//! a system (the HMAC key is shown once), an auditor may look.

use axum::extract::State;
use axum::Form;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use maud::html;
use serde::Deserialize;

use super::{Officer, PageResult};
use crate::problem::Problem;
use crate::serve::AppState;

pub async fn list(State(state): State<AppState>, officer: Officer) -> PageResult {
    render(&state, &officer, None).await
}

async fn render(
    state: &AppState,
    officer: &Officer,
    issued: Option<(&str, &str, &str)>,
) -> PageResult {
    officer.require(matches!(officer.caller.role, Role::RaAdmin | Role::Auditor))?;
    let keys = crate::acme::list_external_accounts(state)
        .await
        .map_err(|e| officer.err(crate::api::internal(e)))?;
    let directory = format!(
        "{}/acme/directory",
        state.instance.config.https.public_base()
    );
    let body = html! {
        main {
            h1 { (officer.t("acme")) }
            p { (officer.t("acme-intro")) " " code { (directory) } }
            @if let Some((name, kid, hmac_key)) = issued {
                section class="delivery" id="delivery" {
                    h2 { (name) }
                    p { (officer.t("eab-note")) }
                    dl class="facts" {
                        dt { "eab-kid" } dd { code id="eab-kid" { (kid) } }
                        dt { "eab-hmac-key" } dd { code id="eab-hmac-key" { (hmac_key) } }
                    }
                }
            }
            @if keys.is_empty() { p class="muted" { (officer.t("none")) } }
            @else {
                div class="scroll" {
                    table id="eab-keys" {
                        thead { tr {
                            th { (officer.t("system-name")) } th { "kid" } th { (officer.t("acme-account")) } th { (officer.t("issued-at")) }
                        } }
                        tbody {
                            @for k in &keys {
                                tr {
                                    td { (k["name"].as_str().unwrap_or_default()) }
                                    td class="mono" { (k["kid"].as_str().unwrap_or_default()) }
                                    td class="mono" { @match k["account"].as_str() {
                                        Some(a) => { (a) }
                                        None => { span class="muted" { (officer.t("eab-unbound")) } }
                                    } }
                                    td { (k["created_at"].as_str().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
            @if officer.caller.role == Role::RaAdmin {
                section {
                    h2 { (officer.t("issue-eab")) }
                    form method="post" action="/console/acme" class="grid" {
                        (officer.csrf_field())
                        label { (officer.t("system-name")) input type="text" name="name" required maxlength="200"; }
                        button type="submit" id="issue-eab" { (officer.t("issue-eab")) }
                    }
                }
            }
        }
    };
    Ok(officer.page(officer.t("acme"), body))
}

#[derive(Deserialize)]
pub struct IssueForm {
    csrf: String,
    name: String,
}

pub async fn issue(
    State(state): State<AppState>,
    officer: Officer,
    Form(f): Form<IssueForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    officer.require(officer.caller.role == Role::RaAdmin)?;
    let actor = officer.caller.actor();
    let (kid, hmac_key) = crate::acme::issue_external_account(
        &state.instance,
        &f.name,
        Requester {
            actor: &actor,
            source: &officer.caller.source,
        },
    )
    .await
    .map_err(|e| officer.err(Problem::from(e)))?;
    render(&state, &officer, Some((f.name.trim(), &kid, &hmac_key))).await
}
