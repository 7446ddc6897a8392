//! ACME external account keys over the API: an `ra-admin` issues one to a
//! system (the HMAC key is returned once); an `ra-admin` or auditor lists
//! them, with the account each is bound to, never the keys.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use serde::Deserialize;

use super::Caller;
use crate::problem::Problem;
use crate::serve::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/acme/external-accounts", get(list).post(issue))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, Problem> {
    if !matches!(caller.role, Role::RaAdmin | Role::Auditor) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only an ra-admin or an auditor lists ACME external accounts",
        ));
    }
    let items = crate::acme::list_external_accounts(&state)
        .await
        .map_err(super::internal)?;
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewExternalAccount {
    /// The system the key is for, as the audit log names it.
    name: String,
}

async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewExternalAccount>, JsonRejection>,
) -> Result<Response, Problem> {
    if caller.role != Role::RaAdmin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only an ra-admin issues ACME external account keys",
        ));
    }
    let Json(request) = body.map_err(super::json_problem)?;
    let actor = caller.actor();
    let (kid, hmac_key) = crate::acme::issue_external_account(
        &state.instance,
        &request.name,
        Requester {
            actor: &actor,
            source: &caller.source,
        },
    )
    .await?;
    let body = serde_json::json!({
        "eab_kid": kid,
        "eab_hmac_key": hmac_key,
        "directory": format!("{}/acme/directory", state.instance.config.https.public_base()),
    });
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}
