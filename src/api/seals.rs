//! `/api/v1/seals/…` and `/api/v1/verify`: applying seals for systems and
//! officers who were granted them, and verifying signed artifacts.
//!
//! Documents travel as request bodies (a PDF as `application/pdf`), so
//! these routes have their own, larger body limit.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kexin_ca::cms::DigestAlgorithm;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use kexin_seal::pades::{Placement, ReceivedDigest};
use kexin_seal::Level;
use serde::Deserialize;

use super::Caller;
use crate::problem::Problem;
use crate::serve::AppState;

/// Largest document the API accepts.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// The routes whose bodies the caller reads whole first (see
/// `read_body_first`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/seals", get(list).post(request_seal))
        .route("/seals/{name}", get(fetch))
        .route("/seals/{name}/users", post(grant))
        .route("/seals/{name}/sign", post(sign_batch))
        .route("/verify", post(verify))
        .layer(DefaultBodyLimit::max(MAX_DOCUMENT_BYTES))
}

/// The routes that read their bodies themselves, whole and before any
/// check, hashing them as they arrive.
pub fn receiving_router() -> Router<AppState> {
    Router::new().route("/seals/{name}/sign-pdf", post(sign_pdf))
}

pub fn seal_problem(e: kexin_seal::Error) -> Problem {
    use kexin_seal::Error as E;
    match e {
        E::Ca(e) => super::ca_problem(e),
        E::InvalidInput(m) | E::UnsupportedPdf(m) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, &m)
        }
        E::SealUnusable(name, why) => {
            Problem::new(StatusCode::CONFLICT, &format!("seal {name:?} is {why}"))
        }
        E::NotFound(m) => Problem::new(StatusCode::NOT_FOUND, &m),
        E::Forbidden(m) => Problem::new(StatusCode::FORBIDDEN, &m),
        other => super::internal(other),
    }
}

#[derive(serde::Serialize)]
struct SealView {
    name: String,
    organization: String,
    uscc: Option<String>,
    kind: String,
    status: String,
    certificate_serial: String,
    certificate_status: String,
    certificate_pem: String,
    /// Base64 PNG.
    image: String,
}

fn seal_view(seal: kexin_seal::Seal) -> Result<SealView, Problem> {
    use der::Encode;
    Ok(SealView {
        certificate_pem: kexin_ca::certificate::certificate_pem(
            &seal.certificate.to_der().map_err(super::internal)?,
        ),
        image: B64.encode(&seal.row.image),
        name: seal.row.name,
        organization: seal.row.organization,
        uscc: seal.row.uscc,
        kind: seal.row.kind,
        status: seal.row.status,
        certificate_serial: seal.row.certificate_serial,
        certificate_status: seal.certificate_status,
    })
}

/// Every seal (any principal: seals are applied in the open).
async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<serde_json::Value>, Problem> {
    let registry = state.seals.registry();
    let mut items = Vec::new();
    for row in registry.db().seals().await.map_err(super::ca_problem)? {
        let seal = registry.get(&row.name).await.map_err(seal_problem)?;
        let mut view = seal_view(seal)?;
        view.image = String::new();
        items.push(view);
    }
    Ok(Json(serde_json::json!({ "items": items })))
}

/// Asks for a new seal: a `seal-create` request (the same as
/// `POST /api/v1/requests` with that kind), carried out once two
/// registration officers approve it. 202 with the request.
async fn request_seal(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<kexin_ca::request::SealSpec>, JsonRejection>,
) -> Result<Response, Problem> {
    use kexin_ca::request::Submission;
    let Json(spec) = body.map_err(super::json_problem)?;
    let id = state
        .requests
        .submit(caller.officer(), Submission::create_seal(spec))
        .await
        .map_err(super::ca_problem)?;
    let view = state.requests.view(id).await.map_err(super::ca_problem)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/requests/{id}"))],
        Json(view),
    )
        .into_response())
}

async fn fetch(
    State(state): State<AppState>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<SealView>, Problem> {
    let seal = state
        .seals
        .registry()
        .get(&name)
        .await
        .map_err(seal_problem)?;
    Ok(Json(seal_view(seal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    /// The principal (officer or system) name.
    principal: String,
}

/// A seal administrator grants a principal the use of a seal.
async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Grant>, JsonRejection>,
) -> Result<Response, Problem> {
    if caller.role != Role::SealAdmin {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "only a seal-admin grants the use of seals",
        ));
    }
    let Json(grant) = body.map_err(super::json_problem)?;
    let actor = caller.actor();
    state
        .seals
        .registry()
        .grant(
            &name,
            &grant.principal,
            Requester {
                actor: &actor,
                source: &caller.source,
            },
        )
        .await
        .map_err(seal_problem)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchDocument {
    name: String,
    /// Base64.
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    /// b-b, b-t (default) or b-lt.
    level: Option<String>,
    documents: Vec<BatchDocument>,
}

async fn sign_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Batch>, JsonRejection>,
) -> Result<Json<serde_json::Value>, Problem> {
    let Json(batch) = body.map_err(super::json_problem)?;
    state
        .seals
        .may_use(&name, &caller.name, caller.role)
        .await
        .map_err(seal_problem)?;
    if batch.documents.is_empty() || batch.documents.len() > 1000 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a batch holds 1 to 1000 documents",
        ));
    }
    let level: Level = batch
        .level
        .as_deref()
        .unwrap_or("b-t")
        .parse()
        .map_err(seal_problem)?;
    let documents = batch
        .documents
        .into_iter()
        .map(|d| {
            B64.decode(d.content.as_bytes())
                .map(|c| (d.name.clone(), c))
                .map_err(|_| {
                    Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("{}: content is not base64", d.name),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let actor = caller.actor();
    let signed = state
        .seals
        .sign_batch(
            &name,
            &documents,
            level,
            Requester {
                actor: &actor,
                source: &caller.source,
            },
        )
        .await
        .map_err(seal_problem)?;
    let items: Vec<_> = documents
        .iter()
        .zip(signed)
        .map(|((doc, _), (digest, signature))| {
            serde_json::json!({ "name": doc, "digest": hex::encode(digest), "signature": B64.encode(signature) })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "seal": name, "level": level.as_str(), "signatures": items }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PdfParams {
    level: Option<String>,
    page: Option<u32>,
    x: Option<f64>,
    y: Option<f64>,
    size: Option<f64>,
    certify: Option<bool>,
    output: Option<String>,
}

/// What `sign-pdf` answers with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PdfOutput {
    /// The sealed document: the original bytes followed by the update.
    Document,
    /// The update alone, for a caller that keeps the original: appended to
    /// the bytes it sent, it makes the sealed document. Half the traffic
    /// for any document, and for a large one nearly all of the reply.
    Update,
}

impl PdfOutput {
    fn parse(value: Option<&str>) -> Result<Self, Problem> {
        match value {
            None | Some("document") => Ok(Self::Document),
            Some("update") => Ok(Self::Update),
            Some(_) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "output is document (the default) or update",
            )),
        }
    }
}

/// Response header on an `output=update` answer: the length of the
/// original the update must be appended to (its ByteRange counts on it).
const UPDATE_OFFSET_HEADER: &str = "kexin-update-offset";

/// Reads a PDF to seal whole, as `read_body_first` does for the other
/// routes, hashing it as it arrives with the digest its seal is likely to
/// sign with: PAdES covers the original bytes whole, so by the last byte
/// the seal's hash is done but for the few kilobytes the seal appends,
/// and it no longer waits between receiving and signing. Without a
/// digest (a caller about to be refused) the body is read and dropped.
async fn receive_pdf(
    digest: Option<DigestAlgorithm>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(Bytes, Option<ReceivedDigest>), Problem> {
    use futures_util::StreamExt;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {} KiB", MAX_DOCUMENT_BYTES / 1024),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if announced > MAX_DOCUMENT_BYTES {
        return Err(too_large());
    }
    let mut received = digest.map(ReceivedDigest::new);
    let mut pdf = Vec::with_capacity(if received.is_some() { announced } else { 0 });
    let mut length = 0;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "the request body was cut short"))?;
        length += chunk.len();
        if length > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        if let Some(r) = &mut received {
            r.update(&chunk);
            pdf.extend_from_slice(&chunk);
        }
    }
    Ok((Bytes::from(pdf), received))
}

async fn sign_pdf(
    State(state): State<AppState>,
    caller: Result<Caller, Problem>,
    Path(name): Path<String>,
    params: Result<Query<PdfParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    // A caller about to be refused gets its body read, not kept.
    let digest = caller.is_ok().then(|| state.seals.digest_hint(&name));
    let (body, received) = receive_pdf(digest, &headers, body).await?;
    let caller = caller?;
    let Query(p) = params.map_err(|r| Problem::new(StatusCode::BAD_REQUEST, &r.body_text()))?;
    let output = PdfOutput::parse(p.output.as_deref())?;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/pdf")
    {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the PDF as application/pdf",
        ));
    }
    state
        .seals
        .may_use(&name, &caller.name, caller.role)
        .await
        .map_err(seal_problem)?;
    let level: Level = p
        .level
        .as_deref()
        .unwrap_or("b-t")
        .parse()
        .map_err(seal_problem)?;
    let placement = Placement {
        page: p.page,
        x: p.x.unwrap_or(400.0),
        y: p.y.unwrap_or(80.0),
        size: p.size.unwrap_or(120.0),
    };
    let actor = caller.actor();
    let sealed = state
        .seals
        .seal_pdf(
            &name,
            &body,
            received,
            &placement,
            p.certify.unwrap_or(false),
            level,
            Requester {
                actor: &actor,
                source: &caller.source,
            },
        )
        .await
        .map_err(seal_problem)?;
    if output == PdfOutput::Update {
        return Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::HeaderName::from_static(UPDATE_OFFSET_HEADER),
                    body.len().to_string(),
                ),
            ],
            sealed.appended,
        )
            .into_response());
    }
    // The original bytes go back as they came, followed by the update.
    let length = body.len() + sealed.appended.len();
    let chunks = [body, Bytes::from(sealed.appended)].map(Ok::<_, std::convert::Infallible>);
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response())
}

/// A detached signature with its file, or a license QR payload.
#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum VerifyBody {
    Detached {
        /// Base64 DER CMS.
        signature: String,
        /// Base64 of the signed file.
        content: String,
    },
    License {
        /// The JWS, or the verify URL that carries it.
        license: String,
    },
    Certificate {
        /// PEM: its chain to our root and its revocation status now.
        certificate: String,
    },
}

/// A PDF (`application/pdf`), or as JSON a detached signature with its
/// file, a license QR payload, or a certificate.
async fn verify(
    State(state): State<AppState>,
    _caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, Problem> {
    let authorities = state.authorities();
    let trust = authorities.trust();
    let db = Some(&state.instance.db);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let report = match content_type {
        "application/pdf" => to_json(kexin_seal::verify::verify_pdf(&body, trust, db).await)?,
        "application/json" => match serde_json::from_slice(&body)
            .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?
        {
            VerifyBody::Detached { signature, content } => {
                let decode = |s: &str, what: &str| {
                    B64.decode(s.as_bytes()).map_err(|_| {
                        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, &format!("{what} is not base64"))
                    })
                };
                let signature = decode(&signature, "signature")?;
                let content = decode(&content, "content")?;
                to_json(
                    kexin_seal::verify::verify_detached(&signature, &mut content.as_slice(), trust, db)
                        .await,
                )?
            }
            VerifyBody::License { license } => {
                to_json(kexin_seal::verify::verify_license(&license, trust, &state.instance.db).await)?
            }
            VerifyBody::Certificate { certificate } => {
                let cert = kexin_ca::certificate::first_certificate_from_pem(certificate.as_bytes())
                    .ok_or_else(|| {
                        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "certificate is not PEM")
                    })?;
                crate::verify::certificate_report(
                    &cert,
                    Some(&state.instance.db),
                    &trust.intermediates,
                    &trust.roots,
                )
                .await
            }
        },
        _ => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send a PDF as application/pdf, or {signature, content}, {license} or {certificate} as application/json",
            ))
        }
    };
    Ok(Json(report))
}

fn to_json(report: impl serde::Serialize) -> Result<serde_json::Value, Problem> {
    serde_json::to_value(report).map_err(super::internal)
}
