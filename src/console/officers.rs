//! Officer management, for `ra-admin` only: who holds which role, and new
//! officers' client certificates, handed over once as a PKCS#12 file with
//! a one-time secret.

use axum::extract::State;
use axum::Form;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use kexin_ca::request::Delivery;
use maud::html;
use serde::Deserialize;

use super::{when, Officer, PageResult};
use crate::serve::AppState;

pub async fn list(State(state): State<AppState>, officer: Officer) -> PageResult {
    render(&state, &officer, None).await
}

async fn render(
    state: &AppState,
    officer: &Officer,
    created: Option<(&str, Delivery)>,
) -> PageResult {
    officer.require(officer.caller.role == Role::RaAdmin)?;
    let db = &state.instance.db;
    let principals = db.principals().await.map_err(|e| officer.err(e))?;
    let mut rows = Vec::new();
    for (serial, name, role, created_at) in principals {
        let status = db
            .certificate(&serial)
            .await
            .map_err(|e| officer.err(e))?
            .map(|c| c.status)
            .unwrap_or_default();
        rows.push((serial, name, role, created_at, status));
    }
    let body = html! {
        main {
            h1 { (officer.t("officers")) }
            @if let Some((name, d)) = &created {
                section class="delivery" id="delivery" {
                    h2 { (name) }
                    p { (officer.t("delivery-note")) }
                    p { (officer.t("one-time-secret")) ": " code id="one-time-secret" { (d.secret) } }
                    p { a href=(super::requests::p12_data_url(d)) download={(name) ".p12"} { (officer.t("download")) } }
                }
            }
            div class="scroll" {
                table {
                    thead { tr {
                        th { (officer.t("name")) } th { (officer.t("role")) } th { (officer.t("serial")) }
                        th { (officer.t("status")) } th { (officer.t("created")) }
                    } }
                    tbody {
                        @for (serial, name, role, created_at, status) in &rows {
                            tr {
                                td { (name) } td { (role) }
                                td class="mono" { a href={"/console/certificates/" (serial)} { (serial.get(..16).unwrap_or(serial)) "…" } }
                                td { span class={"badge " (status)} { (status) } }
                                td class="nowrap" { (when(*created_at)) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (officer.t("add-officer")) }
                form method="post" action="/console/officers" class="grid" {
                    (officer.csrf_field())
                    label { (officer.t("name")) input type="text" name="name" required maxlength="64"; }
                    label { (officer.t("role"))
                        select name="role" {
                            @for r in Role::ALL { option value=(r.as_str()) { (r.as_str()) } }
                        }
                    }
                    button type="submit" id="add-officer" { (officer.t("add-officer")) }
                }
            }
        }
    };
    Ok(officer.page(officer.t("officers"), body))
}

#[derive(Deserialize)]
pub struct AddForm {
    csrf: String,
    name: String,
    role: String,
}

pub async fn add(
    State(state): State<AppState>,
    officer: Officer,
    Form(f): Form<AddForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    officer.require(officer.caller.role == Role::RaAdmin)?;
    let role: Role = f.role.parse().map_err(|e| officer.err(e))?;
    let secret = kexin_ca::kmc::one_time_secret().map_err(|e| officer.err(e))?;
    let actor = officer.caller.actor();
    let requester = Requester {
        actor: &actor,
        source: &officer.caller.source,
    };
    let (serial, pkcs12) = crate::officer::add(&state.instance, &f.name, role, &secret, requester)
        .await
        .map_err(|e| {
            officer.err(super::ConsoleError::new(
                axum::http::StatusCode::BAD_REQUEST,
                &e.to_string(),
            ))
        })?;
    let delivery = Delivery {
        certificate_serial: serial,
        pkcs12,
        secret,
    };
    render(&state, &officer, Some((f.name.trim(), delivery))).await
}
