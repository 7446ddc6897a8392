//! Prometheus metrics: request counts and latencies per listener, route
//! and status; and when each certificate the instance serves under expires,
//! for an alert well before (the CA certificates are not renewed by
//! themselves, and an HTTPS certificate from another CA is not either).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    listener: &'static str,
    route: Cow<'static, str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    listener: &'static str,
    route: Cow<'static, str>,
}

/// A certificate the instance serves under: `kind` is `ca`,
/// `ocsp-responder` (`name` its CA), `tsa`, `https` or `seal` (`name` the
/// seal's). Make them with [`CertificateLabels::new`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    kind: &'static str,
    name: String,
}

impl CertificateLabels {
    /// `name` escaped as the text exposition format wants a label value
    /// (the encoder writes it as given): a seal's name is an operator's
    /// text, and a quote in it would end the value early.
    pub fn new(kind: &'static str, name: &str) -> Self {
        let mut escaped = String::with_capacity(name.len());
        for c in name.chars() {
            match c {
                '\\' => escaped.push_str("\\\\"),
                '"' => escaped.push_str("\\\""),
                '\n' => escaped.push_str("\\n"),
                c => escaped.push(c),
            }
        }
        Self {
            kind,
            name: escaped,
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    expiry: Family<CertificateLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("kexin");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to produce an HTTP response",
            latency.clone(),
        );
        let expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When a certificate the instance serves under expires (notAfter, Unix time)",
            expiry.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            latency,
            expiry,
        })
    }

    /// The certificate `labels` names now expires at `validity`'s end.
    /// Drops the series of a certificate no longer served under.
    pub fn forget_certificate(&self, labels: &CertificateLabels) {
        self.expiry.remove(labels);
    }

    pub fn certificate_expires(
        &self,
        labels: CertificateLabels,
        validity: &x509_cert::time::Validity,
    ) {
        let not_after = validity.not_after.to_unix_duration().as_secs();
        self.certificate_ends_at(labels, i64::try_from(not_after).unwrap_or(i64::MAX));
    }

    /// A certificate ends at `not_after` (Unix seconds).
    pub fn certificate_ends_at(&self, labels: CertificateLabels, not_after: i64) {
        self.expiry.get_or_create(&labels).set(not_after);
    }

    /// One request answered through `listener`, on `route`, in `seconds`.
    pub fn record(
        &self,
        listener: &'static str,
        route: Cow<'static, str>,
        status: u16,
        seconds: f64,
    ) {
        self.route(listener, route, status).record(seconds);
    }

    /// The metrics of one listener, route and status, to keep and reuse:
    /// finding them takes a lock and hashes the labels.
    pub fn route(
        &self,
        listener: &'static str,
        route: Cow<'static, str>,
        status: u16,
    ) -> RouteMetrics {
        RouteMetrics {
            requests: self
                .requests
                .get_or_create(&RequestLabels {
                    listener,
                    route: route.clone(),
                    status,
                })
                .clone(),
            latency: self
                .latency
                .get_or_create(&RouteLabels { listener, route })
                .clone(),
        }
    }

    pub fn render(&self) -> Response {
        let mut out = String::new();
        match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            Ok(()) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                out,
            )
                .into_response(),
            Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// The request counter and latency histogram of one route and status.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    requests: Counter,
    latency: Histogram,
}

impl RouteMetrics {
    pub fn record(&self, seconds: f64) {
        self.requests.inc();
        self.latency.observe(seconds);
    }
}

/// Middleware state: which listener a request came through.
#[derive(Clone)]
pub struct Observed {
    pub metrics: Arc<Metrics>,
    pub listener: &'static str,
}

pub async fn observe(State(o): State<Observed>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(Cow::Borrowed("unmatched"), |p| {
            Cow::Owned(p.as_str().to_owned())
        });
    let start = Instant::now();
    let response = next.run(req).await;
    o.metrics.record(
        o.listener,
        route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_for_the_text_format() {
        let labels = CertificateLabels::new("seal", "某局\"公章\"\\x");
        assert_eq!(labels.name, "某局\\\"公章\\\"\\\\x");
        let metrics = Metrics::new();
        let validity = x509_cert::time::Validity {
            not_before: x509_cert::time::Time::UtcTime(
                der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(0)).unwrap(),
            ),
            not_after: x509_cert::time::Time::UtcTime(
                der::asn1::UtcTime::from_unix_duration(std::time::Duration::from_secs(86400))
                    .unwrap(),
            ),
        };
        metrics.certificate_expires(labels, &validity);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains("{kind=\"seal\",name=\"某局\\\"公章\\\"\\\\x\"} 86400"),
            "{text}"
        );
    }
}
