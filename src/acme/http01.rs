//! The http-01 challenge (RFC 8555 §8.3): fetch
//! `http://{domain}/.well-known/acme-challenge/{token}` and compare the
//! body with the key authorization.
//!
//! Redirects are not followed: a system that wants a certificate answers
//! the challenge itself. Names under `localhost` (which orders name only
//! where `acme.allow_localhost_names` is set) are fetched from the
//! loopback address, as RFC 6761 §6.3 says resolvers should treat them.

use std::time::Duration;

/// Longest response read: a key authorization is ~90 bytes.
const MAX_BODY: usize = 8 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Ok(()) when the domain serves `key_authorization` for `token`, else
/// the ACME error type (`connection`, `incorrectResponse`) and why, in
/// words for the error document.
pub async fn validate(
    domain: &str,
    port: u16,
    token: &str,
    key_authorization: &str,
) -> Result<(), (&'static str, String)> {
    let path = format!("/.well-known/acme-challenge/{token}");
    let is_localhost = domain == "localhost" || domain.ends_with(".localhost");
    let host = if is_localhost { "127.0.0.1" } else { domain };
    let url = format!("http://{host}:{port}{path}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| ("connection", format!("no HTTP client: {e}")))?;
    let mut response = client
        .get(&url)
        .header(reqwest::header::HOST, format!("{domain}:{port}"))
        .send()
        .await
        .map_err(|e| {
            (
                "connection",
                format!("fetching http://{domain}{path}: {}", connection_error(&e)),
            )
        })?;
    if !response.status().is_success() {
        return Err((
            "incorrectResponse",
            format!("http://{domain}{path} answered {}", response.status()),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ("connection", format!("reading http://{domain}{path}: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err((
                "incorrectResponse",
                format!("http://{domain}{path} sent more than {MAX_BODY} bytes"),
            ));
        }
    }
    let got = String::from_utf8_lossy(&body);
    if got.trim() == key_authorization {
        Ok(())
    } else {
        Err((
            "incorrectResponse",
            format!("http://{domain}{path} did not serve the key authorization"),
        ))
    }
}

fn connection_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        e.to_string()
    }
}
