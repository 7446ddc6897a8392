//! Client systems of single sign-on: an `ra-admin` registers them, an
//! `ra-admin` or auditor lists them. Secrets are returned once, at
//! registration.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;

use super::Caller;
use crate::problem::Problem;
use crate::serve::AppState;
use crate::sso_client::ClientRegistration;

pub fn router() -> Router<AppState> {
    Router::new().route("/clients", get(list).post(register))
}

/// Registration errors are the registrant's to fix; the rest are ours.
pub fn client_problem(e: kexin_identity::Error) -> Problem {
    match e {
        kexin_identity::Error::OAuth(code, description) => {
            Problem::new(StatusCode::BAD_REQUEST, &format!("{code}: {description}"))
        }
        other => super::internal(other),
    }
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, Problem> {
    if !matches!(caller.role, Role::RaAdmin | Role::Auditor) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only an ra-admin or an auditor lists client systems",
        ));
    }
    let clients = kexin_identity::clients::list(&state.instance.db)
        .await
        .map_err(client_problem)?;
    Ok(Json(serde_json::json!({ "items": clients })))
}

async fn register(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<ClientRegistration>, JsonRejection>,
) -> Result<Response, Problem> {
    if caller.role != Role::RaAdmin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only an ra-admin registers client systems",
        ));
    }
    let Json(registration) = body.map_err(super::json_problem)?;
    let actor = caller.actor();
    let (client, secret) = crate::sso_client::register(
        &state.instance,
        &registration,
        Requester {
            actor: &actor,
            source: &caller.source,
        },
    )
    .await
    .map_err(client_problem)?;
    let body = serde_json::json!({
        "client": client,
        "client_id": client.client_id,
        "client_secret": secret,
        "issuer": state.instance.config.https.public_base(),
    });
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response())
}
