//! RFC 9457 problem documents: every HTTP error Kexin returns is one.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, serde::Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
}

impl Problem {
    pub fn not_found(detail: &str) -> Self {
        Self {
            kind: "about:blank",
            title: "Not Found",
            status: StatusCode::NOT_FOUND.as_u16(),
            detail: detail.to_owned(),
        }
    }
}

impl Problem {
    pub fn unavailable(detail: &str) -> Self {
        Self {
            kind: "about:blank",
            title: "Service Unavailable",
            status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            detail: detail.to_owned(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}
