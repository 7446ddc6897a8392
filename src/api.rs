//! The REST API under `/api/v1`, for officers and registered systems.
//!
//! Every request is authenticated by the TLS client certificate: it must
//! chain to `officials` or `systems` (checked in the handshake), be issued
//! and not revoked or held (checked here, against the database; a caller
//! confirmed less than a second ago and not affected by a status change
//! since is not looked up again, see `callers`), and belong to a registered
//! principal whose role allows the action. Errors are RFC
//! 9457 problem documents.

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use der::{Decode, Encode};
use kexin_ca::certificate::{certificate_pem, unix_seconds};
use kexin_ca::issuance::Requester;
use kexin_ca::principal::{Permission, Role};
use kexin_ca::revocation::{normalize_serial, RevocationReason, Revocations};
use kexin_ca::storage::{CertificateQuery, CertificateRecord};
use serde::Deserialize;

use crate::problem::Problem;
use crate::serve::AppState;
use crate::tls::PeerCertificates;

mod acme_accounts;
mod callers;
mod clients;
mod requests;
mod seals;
pub use callers::ConfirmedCallers;
pub use clients::client_problem;
pub use requests::after_decision;
pub use seals::seal_problem;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(requests::router())
        .merge(clients::router())
        .merge(acme_accounts::router())
        .route("/certificates", post(issue).get(search))
        .route("/certificates/{serial}", get(fetch))
        .route("/certificates/{serial}/revoke", post(revoke))
        .route("/certificates/{serial}/hold", post(hold))
        .route("/certificates/{serial}/release", post(release))
        .layer(axum::middleware::from_fn_with_state(
            BodyLimit(64 * 1024),
            read_body_first,
        ))
        .merge(seals::router().layer(axum::middleware::from_fn_with_state(
            BodyLimit(seals::MAX_DOCUMENT_BYTES),
            read_body_first,
        )))
        .merge(seals::receiving_router())
}

/// Reads the whole (small, size-limited) request body before any check
/// runs, so a refusal never leaves an unread body behind: over HTTP/2 that
/// would reset the stream and clients would see an error instead of the 401.
#[derive(Clone, Copy)]
struct BodyLimit(usize);

async fn read_body_first(
    State(BodyLimit(limit)): State<BodyLimit>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(_) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {} KiB", limit / 1024),
        )
        .into_response(),
    }
}

/// The authenticated caller of a request.
pub struct Caller {
    /// Serial of the client certificate.
    pub serial: String,
    pub name: String,
    pub role: Role,
    pub source: String,
}

impl Caller {
    pub fn require(&self, p: Permission) -> Result<(), Problem> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                &format!("role {} may not do this", self.role),
            ))
        }
    }

    pub fn officer(&self) -> kexin_ca::request::Officer<'_> {
        kexin_ca::request::Officer {
            name: &self.name,
            role: self.role,
            source: &self.source,
        }
    }

    pub fn actor(&self) -> String {
        format!("principal:{}", self.name)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        authenticate(parts, state).await
    }
}

/// Who the client certificate of this request belongs to. Refusals of a
/// certificate of our CAs are audited.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, Problem> {
    {
        let source = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cert = parts
            .extensions
            .get::<PeerCertificates>()
            .and_then(|p| p.0.first())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "present a client certificate issued by the officials or systems CA",
                )
            })?;
        let cert = x509_cert::Certificate::from_der(cert)
            .map_err(|_| Problem::new(StatusCode::UNAUTHORIZED, "unreadable client certificate"))?;
        let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        let db = &state.instance.db;
        let generation = db.status_generation();
        if let Some(known) = state.callers.get(&serial, generation) {
            return Ok(Caller {
                serial,
                name: known.name,
                role: known.role,
                source,
            });
        }
        let holder = db.certificate_holder(&serial).await.map_err(internal)?;
        let (refusal, principal) = match holder {
            Some((status, principal)) if status == "issued" => (None, principal),
            Some((status, _)) => (Some(format!("client certificate is {status}")), None),
            None => (
                Some("client certificate unknown to this CA".to_owned()),
                None,
            ),
        };
        let Some((name, role)) = principal else {
            // A certificate of our CAs that may not log in: record the attempt.
            let reason = refusal
                .unwrap_or_else(|| "client certificate is not a registered principal".into());
            state
                .instance
                .audit
                .append(kexin_ca::audit::AuditEvent {
                    actor: &format!("certificate:{serial}"),
                    action: "api.login-refused",
                    target: parts.uri.path(),
                    source: &source,
                    detail: serde_json::json!({
                        "reason": reason,
                        "subject": cert.tbs_certificate.subject.to_string(),
                    }),
                })
                .await
                .map_err(internal)?;
            return Err(Problem::new(StatusCode::FORBIDDEN, &reason));
        };
        let role = role.parse().map_err(internal)?;
        state.callers.confirm(
            &serial,
            generation,
            callers::Principal {
                name: name.clone(),
                role,
            },
        );
        Ok(Caller {
            serial,
            name,
            role,
            source,
        })
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "API request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

/// Maps CA errors to problem documents without leaking internals.
pub(crate) fn ca_problem(e: kexin_ca::Error) -> Problem {
    use kexin_ca::Error as E;
    match e {
        E::Policy(list) | E::Lint(list) => {
            Problem::new(StatusCode::BAD_REQUEST, "the request violates the profile")
                .with_errors(list)
        }
        E::Csr(e) => Problem::new(StatusCode::BAD_REQUEST, &e.to_string()),
        E::InvalidRequest(m) | E::Profile(m) => Problem::new(StatusCode::BAD_REQUEST, &m),
        E::UnknownAuthority(ca) => {
            Problem::new(StatusCode::BAD_REQUEST, &format!("no CA named {ca:?}"))
        }
        E::NotFound(m) => Problem::new(StatusCode::NOT_FOUND, &m),
        E::Conflict(m) => Problem::new(StatusCode::CONFLICT, &m),
        E::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, &m),
        other => internal(other),
    }
}

pub(crate) fn json_problem(r: JsonRejection) -> Problem {
    Problem::new(r.status(), &r.body_text())
}

#[derive(serde::Serialize)]
struct CertificateView {
    serial: String,
    issuer: String,
    profile: String,
    subject: String,
    status: String,
    not_before: String,
    not_after: String,
    revoked_at: Option<String>,
    revocation_reason: Option<&'static str>,
    invalidity_date: Option<String>,
    certificate_pem: Option<String>,
}

pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl From<CertificateRecord> for CertificateView {
    fn from(r: CertificateRecord) -> Self {
        Self {
            certificate_pem: r.der.as_deref().map(certificate_pem),
            serial: r.serial,
            issuer: r.issuer,
            profile: r.profile,
            subject: r.subject,
            status: r.status,
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            revoked_at: r.revoked_at.map(rfc3339),
            revocation_reason: r
                .revocation_reason
                .and_then(RevocationReason::from_code)
                .map(RevocationReason::as_str),
            invalidity_date: r.invalidity_date.map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    profile: String,
    /// PEM PKCS#10 request.
    csr: String,
    ca: Option<String>,
}

async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<IssueBody>, JsonRejection>,
) -> Result<Response, Problem> {
    caller.require(Permission::IssueCertificate)?;
    let Json(body) = body.map_err(json_problem)?;
    let profile = state
        .registration
        .profiles()
        .get(&body.profile)
        .map_err(ca_problem)?;
    if profile.approvals > 1 {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            &format!(
                "profile {} needs {} approvals; submit a request to /api/v1/requests",
                profile.name, profile.approvals
            ),
        ));
    }
    let actor = caller.actor();
    let requester = Requester {
        actor: &actor,
        source: &caller.source,
    };
    let ca = body.ca.as_deref().unwrap_or(&profile.issuers[0]);
    let cert = state
        .registration
        .issue_from_csr(body.csr.as_bytes(), &body.profile, Some(ca), requester)
        .await
        .map_err(ca_problem)?;
    // What was just stored, without reading it back.
    let tbs = &cert.tbs_certificate;
    let record = CertificateRecord {
        serial: hex::encode(tbs.serial_number.as_bytes()),
        issuer: ca.to_owned(),
        profile: profile.name.clone(),
        subject: tbs.subject.to_string(),
        status: "issued".into(),
        not_before: unix_seconds(&tbs.validity.not_before),
        not_after: unix_seconds(&tbs.validity.not_after),
        der: Some(cert.to_der().map_err(internal)?),
        revoked_at: None,
        revocation_reason: None,
        invalidity_date: None,
    };
    Ok((StatusCode::CREATED, Json(CertificateView::from(record))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    subject: Option<String>,
    serial: Option<String>,
    status: Option<String>,
    issuer: Option<String>,
    /// Only certificates valid now that expire within this many days.
    expiring_within_days: Option<u32>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn search(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    caller.require(Permission::ReadCertificates)?;
    let Query(p) = params.map_err(|r| Problem::new(StatusCode::BAD_REQUEST, &r.body_text()))?;
    if let Some(s) = &p.status {
        if !["pending", "issued", "failed", "revoked", "hold"].contains(&s.as_str()) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                &format!("unknown status {s:?}"),
            ));
        }
    }
    let serial_prefix = p
        .serial
        .as_deref()
        .map(|s| {
            let hex: String = s.chars().filter(|c| *c != ':').collect();
            if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(hex.to_ascii_lowercase())
            } else {
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "serial must be hexadecimal",
                ))
            }
        })
        .transpose()?;
    let expiring = p
        .expiring_within_days
        .map(|days| {
            if (1..=3650).contains(&days) {
                let now = kexin_ca::issuance::now();
                Ok((now, now + i64::from(days) * 86400))
            } else {
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "expiring_within_days must be 1 to 3650",
                ))
            }
        })
        .transpose()?;
    let q = CertificateQuery {
        issuer: p.issuer,
        status: p.status,
        subject: p.subject,
        serial_prefix,
        expiring,
        limit: p.limit.unwrap_or(50),
        offset: p.offset.unwrap_or(0),
    };
    let found = state.instance.db.search(&q).await.map_err(internal)?;
    let items: Vec<CertificateView> = found
        .into_iter()
        .map(|mut r| {
            r.der = None;
            r.into()
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
) -> Result<Json<CertificateView>, Problem> {
    caller.require(Permission::ReadCertificates)?;
    let serial = normalize_serial(&serial).map_err(ca_problem)?;
    let record = state
        .instance
        .db
        .certificate(&serial)
        .await
        .map_err(internal)?
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, &format!("no certificate {serial}")))?;
    Ok(Json(record.into()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: Option<String>,
    /// RFC 3339.
    invalidity_date: Option<String>,
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
    body: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<Json<CertificateView>, Problem> {
    let Json(body) = body.map_err(json_problem)?;
    let reason: RevocationReason = body
        .reason
        .as_deref()
        .unwrap_or("unspecified")
        .parse()
        .map_err(ca_problem)?;
    if reason == RevocationReason::CertificateHold {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "use the hold endpoint to suspend a certificate",
        ));
    }
    let invalidity = body
        .invalidity_date
        .as_deref()
        .map(|d| {
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| {
                    Problem::new(StatusCode::BAD_REQUEST, &format!("invalidity_date: {e}"))
                })
        })
        .transpose()?;
    change_status(&state, &caller, &serial, Some((reason, invalidity))).await
}

async fn hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
) -> Result<Json<CertificateView>, Problem> {
    change_status(
        &state,
        &caller,
        &serial,
        Some((RevocationReason::CertificateHold, None)),
    )
    .await
}

async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(serial): Path<String>,
) -> Result<Json<CertificateView>, Problem> {
    change_status(&state, &caller, &serial, None).await
}

/// Certificates whose profile needs two approvals (seals) are revoked
/// only through a request that two officers approve; a hold, which can be
/// released, stays a one-officer emergency measure.
async fn two_person_check(state: &AppState, serial: &str) -> Result<(), Problem> {
    let Some(record) = state
        .instance
        .db
        .certificate(serial)
        .await
        .map_err(internal)?
    else {
        return Ok(());
    };
    match state.registration.profiles().get(&record.profile) {
        Ok(p) if p.approvals > 1 => Err(Problem::new(
            StatusCode::FORBIDDEN,
            &format!(
                "revoking a {} certificate needs {} officers; submit a revoke request",
                p.name, p.approvals
            ),
        )),
        _ => Ok(()),
    }
}

/// Revokes, holds (`Some`) or releases (`None`), then republishes the CRL
/// and drops cached OCSP answers.
async fn change_status(
    state: &AppState,
    caller: &Caller,
    serial: &str,
    revocation: Option<(RevocationReason, Option<i64>)>,
) -> Result<Json<CertificateView>, Problem> {
    Ok(Json(
        change_certificate_status(state, caller, serial, revocation)
            .await?
            .into(),
    ))
}

/// What the API and the console share.
pub(crate) async fn change_certificate_status(
    state: &AppState,
    caller: &Caller,
    serial: &str,
    revocation: Option<(RevocationReason, Option<i64>)>,
) -> Result<CertificateRecord, Problem> {
    caller.require(Permission::RevokeCertificate)?;
    let serial = normalize_serial(serial).map_err(ca_problem)?;
    if matches!(revocation, Some((r, _)) if r != RevocationReason::CertificateHold) {
        two_person_check(state, &serial).await?;
    }
    let actor = caller.actor();
    let requester = Requester {
        actor: &actor,
        source: &caller.source,
    };
    let revocations = Revocations::new(state.instance.db.clone(), state.instance.audit.clone());
    let ca = match revocation {
        Some((reason, invalidity)) => {
            revocations
                .revoke(&serial, reason, invalidity, requester)
                .await
        }
        None => revocations.release(&serial, requester).await,
    }
    .map_err(ca_problem)?;
    state.ocsp.invalidate(&serial);
    if let Err(e) = state.instance.regenerate_crl(&ca).await {
        // The revocation is recorded; the scheduled refresh retries the CRL.
        tracing::error!(ca, error = %e, "CRL regeneration after a status change failed");
    }
    let record = state
        .instance
        .db
        .certificate(&serial)
        .await
        .map_err(internal)?
        .ok_or_else(|| internal("certificate vanished"))?;
    Ok(record)
}
