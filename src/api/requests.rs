//! `/api/v1/requests`: the registration workflow over the API.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use kexin_ca::request::{Decision, DecisionResult, RequestView, Submission};
use serde::Deserialize;

use super::{ca_problem, json_problem, Caller};
use crate::problem::Problem;
use crate::serve::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/requests", post(submit).get(list))
        .route("/requests/{id}", get(fetch))
        .route("/requests/{id}/approve", post(approve))
        .route("/requests/{id}/reject", post(reject))
        .route("/requests/{id}/id-number", get(id_number))
}

async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<Submission>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(submission) = body.map_err(json_problem)?;
    let requests = &state.requests;
    let id = requests
        .submit(caller.officer(), submission)
        .await
        .map_err(ca_problem)?;
    let view = requests.view(id).await.map_err(ca_problem)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Query(p) = params.map_err(|r| Problem::new(StatusCode::BAD_REQUEST, &r.body_text()))?;
    let items = state
        .requests
        .list(
            p.status.as_deref(),
            p.limit.unwrap_or(50),
            p.offset.unwrap_or(0),
        )
        .await
        .map_err(ca_problem)?;
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn fetch(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<RequestView>, Problem> {
    Ok(Json(state.requests.view(id).await.map_err(ca_problem)?))
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    decide(&state, &caller, id, Decision::Approve).await
}

async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    decide(&state, &caller, id, Decision::Reject).await
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    id: i64,
    decision: Decision,
) -> Result<Json<serde_json::Value>, Problem> {
    let result = state
        .requests
        .decide(caller.officer(), id, decision)
        .await
        .map_err(ca_problem)?;
    after_decision(state, &result).await;
    let delivery = result.delivery.as_ref().map(|d| {
        serde_json::json!({
            "certificate_serial": d.certificate_serial,
            "pkcs12": base64::engine::general_purpose::STANDARD.encode(&d.pkcs12),
            "one_time_secret": d.secret,
        })
    });
    Ok(Json(
        serde_json::json!({ "request": result.view, "delivery": delivery }),
    ))
}

/// A revocation carried out by a request changes what CRL and OCSP say.
pub async fn after_decision(state: &AppState, result: &DecisionResult) {
    if let Some((ca, serial)) = &result.revoked {
        state.ocsp.invalidate(serial);
        if let Err(e) = state.instance.regenerate_crl(ca).await {
            tracing::error!(ca, error = %e, "CRL regeneration after a revocation failed");
        }
    }
}

async fn id_number(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    let number = state
        .requests
        .reveal_id_number(caller.officer(), id)
        .await
        .map_err(ca_problem)?;
    Ok(Json(serde_json::json!({ "id_number": number })))
}
