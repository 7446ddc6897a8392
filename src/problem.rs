//! RFC 9457 problem documents: every HTTP error Kexin returns is one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, serde::Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    status: u16,
    detail: String,
    /// Every individual problem, when there are several (e.g. profile violations).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: &str) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.to_owned(),
            errors: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<String>) -> Self {
        self.errors = errors;
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// What went wrong, followed by each individual problem.
    pub fn detail(&self) -> String {
        std::iter::once(self.detail.as_str())
            .chain(self.errors.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn not_found(detail: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn unavailable(detail: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }
}

impl From<Problem> for crate::plain_http::Reply {
    fn from(problem: Problem) -> Self {
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        Self::new(problem.status(), "application/problem+json", body)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        crate::plain_http::Reply::from(self).into_response()
    }
}
