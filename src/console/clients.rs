//! Client systems of single sign-on on the console: an `ra-admin`
//! registers a system (its secret is shown once), an auditor may look.

use axum::extract::State;
use axum::Form;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use maud::html;
use serde::Deserialize;

use super::{Officer, PageResult};
use crate::serve::AppState;
use crate::sso_client::ClientRegistration;

pub async fn list(State(state): State<AppState>, officer: Officer) -> PageResult {
    render(&state, &officer, None).await
}

async fn render(
    state: &AppState,
    officer: &Officer,
    registered: Option<(&kexin_identity::clients::Client, &str)>,
) -> PageResult {
    officer.require(matches!(officer.caller.role, Role::RaAdmin | Role::Auditor))?;
    let clients = kexin_identity::clients::list(&state.instance.db)
        .await
        .map_err(|e| officer.err(crate::api::client_problem(e)))?;
    let admin = officer.caller.role == Role::RaAdmin;
    let body = html! {
        main {
            h1 { (officer.t("clients")) }
            @if let Some((client, secret)) = registered {
                section class="delivery" id="delivery" {
                    h2 { (client.name) }
                    p { (officer.t("client-secret-note")) }
                    dl class="facts" {
                        dt { "client_id" } dd { code id="client-id" { (client.client_id) } }
                        dt { "client_secret" } dd { code id="client-secret" { (secret) } }
                        dt { "issuer" } dd { code { (state.instance.config.https.public_base()) } }
                    }
                }
            }
            @if clients.is_empty() { p class="muted" { (officer.t("none")) } }
            @else {
                div class="scroll" {
                    table id="clients" {
                        thead { tr {
                            th { "client_id" } th { (officer.t("name")) } th { (officer.t("redirect-uri-list")) }
                            th { (officer.t("client-auth")) } th { (officer.t("id-token-alg")) }
                        } }
                        tbody {
                            @for c in &clients {
                                tr {
                                    td class="mono" { (c.client_id) }
                                    td { (c.name) }
                                    td class="mono" { @for u in &c.redirect_uris { (u) br; } }
                                    td { @match &c.tls_client_auth_subject_dn {
                                        Some(dn) => { "tls_client_auth: " span class="mono" { (dn) } }
                                        None => { "client_secret" }
                                    } }
                                    td { (c.id_token_alg) }
                                }
                            }
                        }
                    }
                }
            }
            @if admin {
                section {
                    h2 { (officer.t("register-client")) }
                    form method="post" action="/console/clients" class="grid" {
                        (officer.csrf_field())
                        label { (officer.t("name")) input type="text" name="name" required maxlength="128"; }
                        label { (officer.t("redirect-uris"))
                            textarea name="redirect_uris" required rows="3" placeholder="https://system.example.gov.cn/callback" {}
                        }
                        label { (officer.t("backchannel-uri")) input type="url" name="backchannel_logout_uri"; }
                        label { (officer.t("tls-subject")) input type="text" name="tls_client_auth_subject" placeholder="CN=…,O=…"; }
                        label { (officer.t("id-token-alg"))
                            select name="id_token_alg" { option value="ES256" { "ES256" } option value="SM2" { "SM2 (SM3)" } }
                        }
                        button type="submit" id="register-client" { (officer.t("register-client")) }
                    }
                }
            }
        }
    };
    Ok(officer.page(officer.t("clients"), body))
}

#[derive(Deserialize)]
pub struct RegisterForm {
    csrf: String,
    name: String,
    /// One URI per line.
    redirect_uris: String,
    #[serde(default)]
    backchannel_logout_uri: String,
    #[serde(default)]
    tls_client_auth_subject: String,
    #[serde(default)]
    id_token_alg: String,
}

fn optional(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub async fn register(
    State(state): State<AppState>,
    officer: Officer,
    Form(f): Form<RegisterForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    officer.require(officer.caller.role == Role::RaAdmin)?;
    let registration = ClientRegistration {
        name: f.name,
        redirect_uris: f
            .redirect_uris
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        backchannel_logout_uri: optional(&f.backchannel_logout_uri),
        tls_client_auth_subject: optional(&f.tls_client_auth_subject),
        id_token_alg: optional(&f.id_token_alg),
    };
    let actor = officer.caller.actor();
    let (client, secret) = crate::sso_client::register(
        &state.instance,
        &registration,
        Requester {
            actor: &actor,
            source: &officer.caller.source,
        },
    )
    .await
    .map_err(|e| officer.err(crate::api::client_problem(e)))?;
    render(&state, &officer, Some((&client, &secret))).await
}
