//! `kexin serve`: plain HTTP for the public PKI repository and HTTPS for
//! everything else, with graceful shutdown on SIGTERM or Ctrl-C.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::authority_renewal::{AuthorityCertificates, ServedAuthorities};
use crate::instance::Instance;
use crate::metrics::{observe, Metrics, Observed};
use crate::plain_http::{Reply, Request as PlainRequest};
use crate::problem::Problem;
use crate::tls::{ClientCertificates, PeerCertificates};
use kexin_ca::hierarchy::load_authority;
use kexin_ca::ocsp::{OcspAnswer, OcspResponder};
use kexin_ca::registration::Registration;

#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

/// What handlers share: one reference count per request, however many
/// services there are.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub instance: Arc<Instance>,
    pub tsa: Arc<kexin_timestamp::TimeStampAuthority>,
    pub ocsp: Arc<OcspResponder>,
    pub registration: Arc<Registration>,
    pub requests: Arc<kexin_ca::request::Requests>,
    pub console_sessions: crate::console::Sessions,
    pub seals: Arc<kexin_seal::service::SealService>,
    pub portal_limit: crate::portal::RateLimit,
    /// API callers confirmed within the last second.
    pub callers: crate::api::ConfirmedCallers,
    pub oidc: Arc<kexin_identity::provider::Provider>,
    pub acme_nonces: crate::acme::Nonces,
    /// The CA certificates served and checked against, swapped when a CA
    /// is renewed.
    authorities: Arc<AuthorityCertificates>,
    /// Certificate signatures checked before: a returning official's chain
    /// is not verified again at every sign-in.
    pub verified_signatures: kexin_ca::verify::VerifiedSignatures,
    /// Officials' certificates found good before: a returning official's
    /// certificate is recognised by its bytes (its status is still read).
    pub official_certificates: crate::official_certificates::OfficialCertificates,
    metrics: Arc<Metrics>,
}

impl Services {
    /// The CA certificates as served now: one renewal replaces them whole.
    pub fn authorities(&self) -> Arc<ServedAuthorities> {
        self.authorities.current()
    }
}

pub async fn serve(data_dir: &Path, opts: ServeOptions) -> anyhow::Result<()> {
    let mut instance = Instance::open(data_dir).await?;
    if let Some(a) = opts.http {
        instance.config.http.listen = a;
    }
    if let Some(a) = opts.https {
        instance.config.https.listen = a;
    }
    instance.ensure_ocsp_responders("startup").await?;
    abandon_pending(&instance).await?;
    crate::acme::reopen_interrupted_validations(&instance.db).await?;
    let changed = instance
        .profiles()?
        .audit_changes(
            &instance.audit,
            kexin_ca::issuance::Requester {
                actor: "system:kexin",
                source: "startup",
            },
        )
        .await?;
    if !changed.is_empty() {
        tracing::info!(profiles = ?changed, "profiles new or changed since last start; recorded in the audit log");
    }
    let ocsp = Arc::new(OcspResponder::load(instance.db.clone(), instance.store.clone()).await?);
    let registration = Arc::new(instance.registration()?);
    let requests = Arc::new(instance.requests().await?);
    let tsa = Arc::new(instance.time_stamp_authority().await?);
    let seals = Arc::new(kexin_seal::service::SealService::new(
        instance.seal_registry().await?,
        tsa.clone(),
        ocsp.clone(),
        instance.authority_cache.clone(),
    ));
    let stamp_secret = instance.stamp_secret().await?;
    let oidc = Arc::new(
        kexin_identity::provider::Provider::new(
            instance.db.clone(),
            instance.token_keys().await?,
            kexin_identity::challenges::ChallengeKey::new(&stamp_secret),
            instance.config.https.public_base(),
        )
        .with_access_token_lifetime(instance.config.oidc.access_token_lifetime_secs)
        .with_session_lifetimes(kexin_identity::provider::SessionLifetimes {
            idle: Duration::from_secs(instance.config.oidc.session_idle_secs.into()),
            absolute: Duration::from_secs(instance.config.oidc.session_absolute_secs.into()),
        }),
    );
    let instance = Arc::new(instance);
    let authorities = Arc::new(AuthorityCertificates::new(ServedAuthorities::new(
        instance.db.authorities().await?,
    )));
    let state = AppState(Arc::new(Services {
        instance: instance.clone(),
        tsa,
        ocsp,
        registration,
        requests,
        console_sessions: crate::console::Sessions::new(instance.db.clone()),
        seals,
        portal_limit: crate::portal::RateLimit::new(&instance.db),
        callers: Default::default(),
        oidc,
        acme_nonces: crate::acme::Nonces::new(&stamp_secret, instance.db.clone()),
        authorities: authorities.clone(),
        verified_signatures: Default::default(),
        official_certificates: Default::default(),
        metrics: Metrics::new(),
    }));

    for file in crate::authority_renewal::take_up(&instance).await? {
        tracing::info!(file = %file.display(), "a CA certificate renewed since: file brought up to date");
    }
    let chain = crate::https_certificate::read_chain(&instance)?;
    let chain = match crate::https_certificate::renew(&instance, &chain, "startup").await? {
        crate::https_certificate::HttpsRenewal::Renewed(renewed) => {
            tracing::info!("HTTPS certificate issued afresh: it was due, or https.names changed");
            renewed
        }
        other => {
            other.warn_if_due_elsewhere();
            chain
        }
    };
    let key_label = instance
        .config
        .https
        .key_label
        .clone()
        .context("https.key_label is not set; was this data directory made by `kexin init`?")?;
    let mut client_cas = Vec::new();
    for ca in ["officials", "systems"] {
        client_cas.push(load_authority(&instance.db, ca).await?.certificate);
    }
    let (tls, https_certificate) = crate::tls::server_config(
        instance.store.clone(),
        &key_label,
        chain,
        ClientCertificates::new(client_cas)?,
    )?;

    let http_threads = match instance.config.http.threads {
        Some(0) => anyhow::bail!("http.threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let http_listeners = bind_shared(instance.config.http.listen, http_threads)
        .with_context(|| format!("binding HTTP to {}", instance.config.http.listen))?;
    let https_listener = TcpListener::bind(instance.config.https.listen)
        .await
        .with_context(|| format!("binding HTTPS to {}", instance.config.https.listen))?;
    let http_addr = http_listeners
        .first()
        .context("no HTTP listener")?
        .local_addr()?;
    let https_addr = https_listener.local_addr()?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let crl_refresher = tokio::spawn(refresh_crls(instance.clone(), shutdown_rx.clone()));
    let checkpointer = tokio::spawn(checkpoint_audit(instance.clone(), shutdown_rx.clone()));
    let renewer = tokio::spawn(
        crate::service_certificates::ServiceCertificates::new(
            instance.clone(),
            state.ocsp.clone(),
            state.tsa.clone(),
            https_certificate,
            state.metrics.clone(),
            authorities,
        )?
        .keep_current(shutdown_rx.clone()),
    );
    let token_keys = tokio::spawn(crate::oidc::keep_token_keys_current(
        instance.clone(),
        state.oidc.clone(),
        instance.certificate_check_every()?,
        shutdown_rx.clone(),
    ));
    let http = serve_http_on_threads(http_listeners, state.clone(), shutdown_rx.clone())?;
    let https = tokio::spawn(serve_https(
        https_listener,
        https_router(state.clone()),
        Arc::new(tls),
        instance.config.https.proxy_protocol_from.clone().into(),
        shutdown_rx,
    ));
    println!("Kexin is serving {}", data_dir.display());
    println!("  PKI repository  http://{http_addr}/pki/ca/root.crt");
    println!("  OCSP            http://{http_addr}/ocsp");
    println!("  time-stamping   http://{http_addr}/tsa");
    println!("  health          https://{https_addr}/healthz");
    println!("  readiness       https://{https_addr}/readyz");
    println!("  metrics         https://{https_addr}/metrics (auditor or ra-admin certificate)");
    println!("  ACME            https://{https_addr}/acme/directory");
    println!(
        "  trust anchor    {}",
        instance.path(Path::new("ca/root.pem")).display()
    );
    tracing::info!(%http_addr, %https_addr, keystore = instance.store.backend(), "serving");

    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = shutdown_tx.send(true);
    let drain = async {
        let _ = tokio::task::spawn_blocking(move || {
            for thread in http {
                if thread.join().is_err() {
                    tracing::error!("an HTTP serving thread panicked");
                }
            }
        })
        .await;
        let _ = https.await;
        let _ = crl_refresher.await;
        let _ = checkpointer.await;
        let _ = renewer.await;
        let _ = token_keys.await;
    };
    if tokio::time::timeout(Duration::from_secs(20), drain)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 20 s; closing them");
    }
    instance.db.pool().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// What a plain-HTTP request asks for.
enum Endpoint<'a> {
    CaCertificate(&'a str),
    Crl(&'a str),
    OcspPost,
    OcspGet(&'a str),
    Tsa,
    Health,
}

const READ: &str = "GET, HEAD";
const SUBMIT: &str = "POST";

impl crate::plain_http::Routes for AppState {
    async fn route<'a>(&'a self, request: &'a PlainRequest<'a>) -> (&'static str, Reply) {
        use crate::plain_http::Method::{Get, Head, Post};
        let path = request.path;
        let (route, allow, endpoint) = if let Some(file) = path.strip_prefix("/pki/ca/") {
            ("/pki/ca/{file}", READ, Endpoint::CaCertificate(file))
        } else if let Some(file) = path.strip_prefix("/pki/crl/") {
            ("/pki/crl/{file}", READ, Endpoint::Crl(file))
        } else if path == "/ocsp" {
            ("/ocsp", SUBMIT, Endpoint::OcspPost)
        } else if let Some(encoded) = path.strip_prefix("/ocsp/") {
            ("/ocsp/{*request}", READ, Endpoint::OcspGet(encoded))
        } else if path == "/tsa" {
            ("/tsa", SUBMIT, Endpoint::Tsa)
        } else if path == "/healthz" {
            ("/healthz", READ, Endpoint::Health)
        } else {
            return ("unmatched", Problem::not_found("no such resource").into());
        };
        let allowed = match allow {
            READ => matches!(request.method, Get | Head),
            _ => request.method == Post,
        };
        if !allowed {
            let refusal = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("this resource answers {allow}"),
            );
            return (
                route,
                Reply::from(refusal).header(header::ALLOW, allow.to_owned()),
            );
        }
        let reply = match endpoint {
            Endpoint::CaCertificate(file) => ca_certificate_reply(self, &percent_decode(file)),
            Endpoint::Crl(file) => crl_reply(self, &percent_decode(file)).await,
            Endpoint::OcspPost => ocsp_post(self, request).await,
            Endpoint::OcspGet(encoded) => ocsp_get(self, &percent_decode(encoded)).await,
            Endpoint::Tsa => tsa(self, request).await,
            Endpoint::Health => Reply::new(
                StatusCode::OK,
                "application/json",
                &br#"{"status":"ok"}"#[..],
            ),
        };
        (route, reply)
    }
}

/// Percent-decoding of a path segment. Unlike form data (`oidc`), a `+`
/// stays a `+`: it is a base64 character in OCSP GET URLs.
fn percent_decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

fn https_router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/pki/ca/{file}", get(ca_certificate))
        .route("/api/openapi.json", get(openapi))
        .nest("/api/v1", crate::api::router())
        .merge(crate::console::router())
        .merge(crate::portal::router())
        .merge(crate::oidc::router())
        .merge(crate::acme::router(state.clone()));
    finish(routes, state, "https")
}

/// What every listener shares: problem-document 404s, the body limit and
/// request metrics labelled with the listener.
fn finish(routes: Router<AppState>, state: AppState, listener: &'static str) -> Router {
    let observed = Observed {
        metrics: state.metrics.clone(),
        listener,
    };
    let max_body = state.instance.config.http.max_body_bytes;
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(observed, observe))
        .with_state(state)
}

/// A TCP socket for `addr` that may bind over connections in TIME_WAIT.
fn new_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

/// `count` listening sockets on one address (SO_REUSEPORT): the kernel
/// spreads new connections across them. A port of 0 is chosen by the
/// first socket and shared by the others. A port that something already
/// listens on is refused, as a plain bind would: SO_REUSEPORT alone would
/// let a second Kexin started by mistake quietly take a share of the
/// connections.
fn bind_shared(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        new_socket(addr)?.bind(addr)?;
    }
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = new_socket(addr)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(1024)?;
        addr = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// The plain-HTTP listener (OCSP, the TSA, CRLs, CA certificates: small,
/// quick requests in volume) is served by one thread per socket, each
/// with a single-threaded runtime, so that a connection, its tasks and
/// its I/O stay on one thread. On the work-stealing runtime, tasks
/// moved between threads and every move woke a parked one: on a 2-core
/// VM that cost 10-15% of the server's CPU per OCSP response or token
/// (`bench/ocsp.sh`, `bench/tsa.sh`). HTTPS (the API, the console, sign-ins,
/// sealing whole documents) keeps the work-stealing runtime, where a
/// long request cannot hold up the connections that share its thread.
/// The price is at low concurrency: with a few clients opening a new
/// connection per request, one thread may get most of them while
/// another sleeps (README, Benchmarks).
fn serve_http_on_threads(
    listeners: Vec<std::net::TcpListener>,
    state: AppState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting an HTTP serving runtime")?;
        let thread = std::thread::Builder::new()
            .name(format!("kexin-http-{i}"))
            .spawn(move || {
                let served = runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let metrics = state.metrics.clone();
                    let http = &state.instance.config.http;
                    let (max_body, proxies) =
                        (http.max_body_bytes, http.proxy_protocol_from.clone());
                    crate::plain_http::serve(
                        listener,
                        state,
                        metrics,
                        max_body,
                        proxies.into(),
                        shutdown,
                    )
                    .await;
                    std::io::Result::Ok(())
                });
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTP listener stopped");
                }
            })
            .context("starting an HTTP serving thread")?;
        threads.push(thread);
    }
    Ok(threads)
}

async fn serve_https(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    proxies: Arc<[kexin_config::IpNetwork]>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    while let Some((mut tcp, peer)) = crate::plain_http::accept(&listener, &mut shutdown).await {
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        let proxies = proxies.clone();
        tokio::spawn(async move {
            let peer = match crate::proxy_protocol::client(&mut tcp, peer, &proxies).await {
                Ok(client) => client,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection closed");
                    return;
                }
            };
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let certs = PeerCertificates(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default(),
            );
            // Per request, not `Router::layer` per connection: layering
            // rebuilds every route, a cost paid again by every new client.
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(certs.clone());
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    tower::Service::call(&mut router.clone(), request)
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn ca_certificate(State(state): State<AppState>, UrlPath(file): UrlPath<String>) -> Response {
    ca_certificate_reply(&state, &file).into_response()
}

fn ca_certificate_reply(state: &AppState, file: &str) -> Reply {
    let Some(name) = file.strip_suffix(".crt") else {
        return Problem::not_found("CA certificates are served as /pki/ca/{name}.crt").into();
    };
    match state.authorities().der(name) {
        Some(der) => Reply::new(StatusCode::OK, "application/pkix-cert", der.to_vec())
            .header(header::CACHE_CONTROL, "public, max-age=86400".to_owned()),
        None => Problem::not_found(&format!("no CA named {name:?}")).into(),
    }
}

/// A certificate left pending by a crash was never handed to anyone (the
/// requester gets it only after completion), so its serial is burnt.
async fn abandon_pending(instance: &Instance) -> anyhow::Result<()> {
    // Another process may be signing right now; only abandon what is old.
    for serial in instance.db.pending_serials(now_secs() - 300).await? {
        instance.db.mark_failed(&serial).await?;
        instance
            .audit
            .append(kexin_ca::audit::AuditEvent {
                actor: "system:kexin",
                action: "certificate.abandon",
                target: &serial,
                source: "startup",
                detail: serde_json::json!({ "reason": "pending at startup: signing was interrupted" }),
            })
            .await?;
        tracing::warn!(
            serial,
            "abandoned a certificate left pending by an interrupted issuance"
        );
    }
    Ok(())
}

/// Signs the audit head every five minutes, and once more at shutdown.
async fn checkpoint_audit(instance: Arc<Instance>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = shutting_down_within(Duration::from_secs(300), &mut shutdown).await;
        if let Err(e) = instance.checkpoint_audit().await {
            tracing::error!(error = %e, "audit checkpoint failed");
        }
        if stop {
            return;
        }
    }
}

/// Regenerates each CA's CRL when half of its validity has passed.
async fn refresh_crls(instance: Arc<Instance>, mut shutdown: watch::Receiver<bool>) {
    let half = i64::from(instance.config.ca.crl_validity_hours) * 1800;
    loop {
        match instance.db.authorities().await {
            Ok(cas) => {
                for ca in cas {
                    let stale = match instance.db.crl(&ca.name).await {
                        Ok(Some(crl)) => now_secs() >= crl.this_update + half,
                        Ok(None) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading CRL state");
                            false
                        }
                    };
                    if stale {
                        if let Err(e) = instance.regenerate_crl(&ca.name).await {
                            tracing::error!(ca = %ca.name, error = %e, "scheduled CRL generation failed");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing CAs for CRL refresh"),
        }
        if shutting_down_within(Duration::from_secs(60), &mut shutdown).await {
            return;
        }
    }
}

/// Waits `period`, or less if the server begins to shut down meanwhile:
/// whether it is shutting down.
pub(crate) async fn shutting_down_within(
    period: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(period) => false,
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => true,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn crl_reply(state: &AppState, file: &str) -> Reply {
    let Some(name) = file.strip_suffix(".crl") else {
        return Problem::not_found("CRLs are served as /pki/crl/{name}.crl").into();
    };
    if state.authorities().der(name).is_none() {
        return Problem::not_found(&format!("no CA named {name:?}")).into();
    }
    let record = match state.instance.db.crl(name).await {
        Ok(Some(c)) if c.next_update > now_secs() => Ok(c),
        Ok(_) => state.instance.regenerate_crl(name).await,
        Err(e) => Err(e.into()),
    };
    match record {
        Ok(c) => {
            let max_age = ((c.next_update - now_secs()) / 2).max(0);
            Reply::new(StatusCode::OK, "application/pkix-crl", c.der)
                .header(header::CACHE_CONTROL, format!("public, max-age={max_age}"))
                .header(header::LAST_MODIFIED, http_date(c.this_update))
                .header(header::EXPIRES, http_date(c.next_update))
        }
        Err(e) => {
            tracing::error!(ca = name, error = %e, "serving CRL");
            Problem::unavailable("the CRL cannot be produced right now").into()
        }
    }
}

fn http_date(secs: i64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// A body of another type is answered as the garbage it is to an OCSP
/// responder: `malformedRequest`. The responder refuses oversized
/// requests itself.
async fn ocsp_post(state: &AppState, request: &PlainRequest<'_>) -> Reply {
    let der = request.body_of_type("application/ocsp-request");
    ocsp_reply(state.ocsp.respond(der).await)
}

async fn ocsp_get(state: &AppState, request: &str) -> Reply {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let der = engines
        .iter()
        .find_map(|e| e.decode(request.trim()).ok())
        .unwrap_or_default();
    ocsp_reply(state.ocsp.respond(&der).await)
}

/// An OCSP answer with RFC 5019 caching headers when it is a signed response.
fn ocsp_reply(answer: OcspAnswer) -> Reply {
    let reply = Reply::new(StatusCode::OK, "application/ocsp-response", answer.der);
    match (answer.this_update, answer.next_update, answer.etag) {
        (Some(this), Some(next), Some(etag)) => {
            let max_age = (next - now_secs()).max(0);
            reply
                .header(
                    header::CACHE_CONTROL,
                    format!("max-age={max_age}, public, no-transform, must-revalidate"),
                )
                .header(header::LAST_MODIFIED, http_date(this))
                .header(header::EXPIRES, http_date(next))
                .header(header::ETAG, format!("\"{}\"", hex::encode(etag)))
        }
        _ => reply.header(header::CACHE_CONTROL, "no-store".to_owned()),
    }
}

/// RFC 3161 over HTTP: `application/timestamp-query` in,
/// `application/timestamp-reply` out, rejections included.
async fn tsa(state: &AppState, request: &PlainRequest<'_>) -> Reply {
    // The request parser refuses oversized queries (badDataFormat).
    let query = request.body_of_type("application/timestamp-query");
    let reply = state
        .tsa
        .respond(query, &request.peer.ip().to_string())
        .await;
    Reply::new(StatusCode::OK, "application/timestamp-reply", reply)
        .header(header::CACHE_CONTROL, "no-store".to_owned())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers and the key store can reach the HTTPS key.
async fn readyz(State(state): State<AppState>) -> Response {
    let db = state.instance.db.ping().await;
    let store = state.instance.store.clone();
    let label = state
        .instance
        .config
        .https
        .key_label
        .clone()
        .unwrap_or_default();
    let keystore = tokio::task::spawn_blocking(move || store.public_key(&label).map(|_| ()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let ok = db.is_ok() && keystore.is_ok();
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not ready" },
        "database": db.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "keystore": keystore.map(|_| "ok".to_owned()).unwrap_or_else(|e| e),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Operational figures, for an officer whose role may read them (a
/// monitoring system scrapes as such an officer, with its certificate):
/// only the public PKI repository and the health probes are anonymous.
async fn metrics(
    State(state): State<AppState>,
    caller: crate::api::Caller,
) -> Result<Response, Problem> {
    caller.require(kexin_ca::principal::Permission::ReadMetrics)?;
    Ok(state.metrics.render())
}

async fn not_found() -> Response {
    Problem::not_found("no such resource").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket listens on the one port, and the kernel hands
    /// connections to each of them, not only to the first.
    #[tokio::test]
    async fn shared_listeners_all_take_connections() {
        let listeners = bind_shared(SocketAddr::from(([127, 0, 0, 1], 0)), 3).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr));
        let mut clients = Vec::new();
        for _ in 0..64 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        for listener in &listeners {
            listener.set_nonblocking(true).unwrap();
            let mut taken = 0;
            while listener.accept().is_ok() {
                taken += 1;
            }
            assert!(taken > 0, "a listener took none of 64 connections");
        }
    }

    /// A second server on a port in use fails, as a plain bind does,
    /// instead of joining the first one's sockets.
    #[tokio::test]
    async fn a_port_in_use_is_refused() {
        let first = bind_shared(SocketAddr::from(([127, 0, 0, 1], 0)), 2).unwrap();
        let taken = first[0].local_addr().unwrap();
        let err = bind_shared(taken, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind_shared(plain.local_addr().unwrap(), 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    }
}
