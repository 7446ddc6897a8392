//! The plain-HTTP listener's HTTP/1.1 server: OCSP, the TSA, CRLs and CA
//! certificates.
//!
//! These are small requests in volume from clients that speak plain
//! HTTP/1.x (OpenSSL, NSS, CryptoAPI, Java's and Python's HTTP stacks).
//! Served by hyper behind axum's router and middleware, HTTP handling cost
//! ~40% of the server's CPU per OCSP response and ~23% per time-stamp
//! token (perf, `bench/ocsp.sh`, `bench/tsa.sh`). Here a request head is
//! parsed by httparse (hyper's own parser), routed by plain string
//! matching, and answered with one write.
//!
//! What it speaks: HTTP/1.0 and 1.1, keep-alive and pipelining, bodies by
//! Content-Length or chunked, `Expect: 100-continue`, HEAD. What it
//! refuses, with the status RFC 9110/9112 give, closing the connection:
//! a malformed head (400), a head over 8 KiB or with too many headers
//! (431), a transfer coding other than chunked
//! (501), an expectation other than 100-continue (417), and framing that
//! two parsers could read differently, the request-smuggling cases:
//! Content-Length beside Transfer-Encoding, two different Content-Lengths,
//! Transfer-Encoding in HTTP/1.0 (400). A connection idle for 60 s, or
//! taking more than 10 s to send one request, is closed. A body over
//! `http.max_body_bytes` (64 KiB by default) is not read: the request is answered as one without a body, in
//! its protocol's terms (OCSP `malformedRequest`, TSA `badDataFormat`),
//! and the connection closed.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;

use crate::metrics::{Metrics, RouteMetrics};

const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;
/// Chunk framing may take a few bytes per byte of body; beyond this many
/// times the body limit buffered, a chunked body is taken as too large.
const CHUNK_FRAMING_FACTOR: usize = 4;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// A request whose head and body have both arrived.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// The path as sent (percent-encoded), without the query.
    pub path: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub peer: SocketAddr,
}

/// A response: always a complete body, sent with its Content-Length.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = axum::http::HeaderValue::from_str(self.content_type) {
            headers.insert(axum::http::header::CONTENT_TYPE, v);
        }
        for (name, value) in self.headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        response
    }
}

/// What answers requests: the route label for metrics, and the reply.
pub trait Routes: Clone + Send + Sync + 'static {
    fn route<'a>(
        &'a self,
        request: &'a Request<'a>,
    ) -> impl Future<Output = (&'static str, Reply)> + Send + 'a;
}

/// Serves `listener` until `shutdown` turns true, then waits for the
/// requests in flight: a connection ends when it is next idle.
pub async fn serve<R: Routes>(
    listener: TcpListener,
    routes: R,
    metrics: Arc<Metrics>,
    max_body: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    // Each connection holds a sender; `recv` returns None once all are gone.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    // Connections wait on a signal of this listener's own: idle ones
    // register with it between every two requests, and a channel shared
    // with the other serving threads would bounce between their caches.
    let (stop_tx, stop_rx) = watch::channel(false);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        };
        // Responses are written whole; Nagle's algorithm would only hold
        // back their last segment until the client's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let connection = Connection {
            routes: routes.clone(),
            metrics: metrics.clone(),
            max_body,
            shutdown: stop_rx.clone(),
            peer,
            last_route: None,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
        };
        let open = open_tx.clone();
        tokio::spawn(async move {
            connection.run(tcp).await;
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

struct Connection<R> {
    routes: R,
    metrics: Arc<Metrics>,
    /// Largest body read (`http.max_body_bytes`).
    max_body: usize,
    shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
    /// A keep-alive client mostly asks the same route again.
    last_route: Option<(&'static str, StatusCode, RouteMetrics)>,
    /// Ends the connection when no request begins before it fires. Moved
    /// forward at most once a second: a timer per read would be entered
    /// into and taken out of the runtime's timer wheel on every request.
    idle: Pin<Box<Sleep>>,
}

/// Why a request is refused and its connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    detail: &'static str,
}

const MALFORMED: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    detail: "malformed HTTP request",
};
const AMBIGUOUS_LENGTH: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    detail: "the request's length is ambiguous",
};
const HEAD_TOO_LARGE: Refusal = Refusal {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    detail: "the request head is too large",
};
const UNKNOWN_CODING: Refusal = Refusal {
    status: StatusCode::NOT_IMPLEMENTED,
    detail: "only the chunked transfer coding is understood",
};
const UNKNOWN_EXPECTATION: Refusal = Refusal {
    status: StatusCode::EXPECTATION_FAILED,
    detail: "only 100-continue is understood",
};
const TIMED_OUT: Refusal = Refusal {
    status: StatusCode::REQUEST_TIMEOUT,
    detail: "the request took too long to arrive",
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// A request head, as ranges of the connection's buffer.
#[derive(Debug)]
struct Head {
    len: usize,
    method: Method,
    http10: bool,
    target: Range<usize>,
    content_type: Range<usize>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// Ok(None): the head has not fully arrived yet.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HEAD_TOO_LARGE)
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Err(HEAD_TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(MALFORMED),
    };
    let base = buf.as_ptr() as usize;
    let range = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let http10 = request.version == Some(0);
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = range(request.path.ok_or(MALFORMED)?.as_bytes());
    let mut keep_alive = !http10;
    let mut content_length = None;
    let mut chunked = false;
    let mut content_type = 0..0;
    let mut expect_continue = false;
    for h in request.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| MALFORMED)?.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(MALFORMED);
            }
            // Beyond usize is over the limit too.
            let n: usize = value.parse().unwrap_or(usize::MAX);
            if content_length.is_some_and(|c| c != n) {
                return Err(AMBIGUOUS_LENGTH);
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(UNKNOWN_CODING);
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = range(h.value);
        } else if h.name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(UNKNOWN_EXPECTATION);
            }
            expect_continue = !http10;
        }
    }
    let framing = match (chunked, content_length) {
        (true, Some(_)) => return Err(AMBIGUOUS_LENGTH),
        (true, None) if http10 => return Err(AMBIGUOUS_LENGTH),
        (true, None) => Framing::Chunked,
        (false, n) => Framing::Length(n.unwrap_or(0)),
    };
    Ok(Some(Head {
        len,
        method,
        http10,
        target,
        content_type,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// How a chunked body stands.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
    /// Decoded whole; this many bytes of the input used, trailers included.
    Complete(usize),
    Incomplete,
    TooLarge,
}

/// Decodes a chunked body from the start of `input` into `out`.
fn decode_chunked(input: &[u8], max_body: usize, out: &mut Vec<u8>) -> Result<Chunked, Refusal> {
    out.clear();
    let mut pos = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&input[pos..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(Chunked::Incomplete),
            Err(_) => return Err(MALFORMED),
        };
        pos += size_len;
        if size == 0 {
            // Trailer fields, ignored, up to an empty line.
            loop {
                let Some(end) = input[pos..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(Chunked::Incomplete);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Chunked::Complete(pos));
                }
            }
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max_body.saturating_sub(out.len()) {
            return Ok(Chunked::TooLarge);
        }
        let Some(chunk) = input.get(pos..pos + size + 2) else {
            return Ok(Chunked::Incomplete);
        };
        if &chunk[size..] != b"\r\n" {
            return Err(MALFORMED);
        }
        out.extend_from_slice(&chunk[..size]);
        pos += size + 2;
    }
}

impl<R: Routes> Connection<R> {
    async fn run(mut self, mut stream: TcpStream) {
        let mut buf = BytesMut::with_capacity(4096);
        let mut out = Vec::with_capacity(1024);
        let mut chunked_body = Vec::new();
        loop {
            let head = match self.read_head(&mut stream, &mut buf).await {
                Ok(Some(head)) => head,
                Ok(None) => return,
                Err(refusal) => return refuse(&mut stream, refusal).await,
            };
            let continued = if head.expect_continue && !body_arrived(&head, &buf, self.max_body) {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await
            } else {
                Ok(())
            };
            if continued.is_err() {
                return;
            }
            let (body, used) = match read_body(
                &mut stream,
                &mut buf,
                &head,
                self.max_body,
                &mut chunked_body,
            )
            .await
            {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(refusal) => return refuse(&mut stream, refusal).await,
            };
            let request = Request {
                method: head.method,
                path: target_path(text(&buf, head.target.clone())),
                content_type: text(&buf, head.content_type.clone()),
                body: match &body {
                    Body::Buffered(range) => &buf[range.clone()],
                    Body::Decoded => &chunked_body,
                    Body::TooLarge => &[],
                },
                peer: self.peer,
            };
            let start = Instant::now();
            let (route, reply) = self.routes.route(&request).await;
            self.route_metrics(route, reply.status)
                .record(start.elapsed().as_secs_f64());
            buf.advance(used);
            out.clear();
            let keep_alive =
                head.keep_alive && !matches!(body, Body::TooLarge) && !*self.shutdown.borrow();
            encode_head(&mut out, &reply, keep_alive, head.http10);
            let send_body = head.method != Method::Head;
            let written = if send_body && reply.body.len() <= COALESCE_BYTES {
                out.extend_from_slice(&reply.body);
                stream.write_all(&out).await
            } else {
                match stream.write_all(&out).await {
                    Ok(()) if send_body => stream.write_all(&reply.body).await,
                    other => other,
                }
            };
            if written.is_err() || !keep_alive {
                let _ = stream.shutdown().await;
                if matches!(body, Body::TooLarge) {
                    drain(&mut stream).await;
                }
                return;
            }
            let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
            if deadline > self.idle.deadline() + Duration::from_secs(1) {
                self.idle.as_mut().reset(deadline);
            }
        }
    }

    fn route_metrics(&mut self, route: &'static str, status: StatusCode) -> &RouteMetrics {
        let metrics = &self.metrics;
        let cached = self
            .last_route
            .take()
            .filter(|(r, s, _)| *r == route && *s == status);
        let (_, _, handles) = self.last_route.insert(cached.unwrap_or_else(|| {
            (
                route,
                status,
                metrics.route("http", Cow::Borrowed(route), status.as_u16()),
            )
        }));
        handles
    }

    /// Ok(None): the client went away, fell idle past the timeout, or the
    /// server is shutting down between requests.
    async fn read_head(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut BytesMut,
    ) -> Result<Option<Head>, Refusal> {
        loop {
            if let Some(head) = parse_head(buf)? {
                return Ok(Some(head));
            }
            let read = if buf.is_empty() {
                tokio::select! {
                    read = read_more(stream, buf) => read,
                    _ = &mut self.idle => return Ok(None),
                    _ = async { let _ = self.shutdown.wait_for(|s| *s).await; } => return Ok(None),
                }
            } else {
                tokio::time::timeout(REQUEST_TIMEOUT, read_more(stream, buf))
                    .await
                    .map_err(|_| TIMED_OUT)?
            };
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }
}

fn body_arrived(head: &Head, buf: &[u8], max_body: usize) -> bool {
    match head.framing {
        Framing::Length(n) if n > max_body => true,
        Framing::Length(n) => buf.len() >= head.len + n,
        Framing::Chunked => buf.len() > head.len,
    }
}

/// Where a request's body is.
enum Body {
    /// In the connection's buffer.
    Buffered(Range<usize>),
    /// Decoded from chunks into a buffer of its own.
    Decoded,
    /// Over the limit, and not read: the request is answered as if it had
    /// none (an OCSP `malformedRequest`, a TSA `badDataFormat` rejection),
    /// then the connection is closed with the rest unread.
    TooLarge,
}

/// The body and how many bytes of `buf` the request used.
/// Ok(None): the client went away.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    head: &Head,
    max_body: usize,
    chunked: &mut Vec<u8>,
) -> Result<Option<(Body, usize)>, Refusal> {
    loop {
        match head.framing {
            Framing::Length(n) if n > max_body => return Ok(Some((Body::TooLarge, 0))),
            Framing::Length(n) if buf.len() >= head.len + n => {
                return Ok(Some((Body::Buffered(head.len..head.len + n), head.len + n)))
            }
            Framing::Length(_) => {}
            Framing::Chunked => match decode_chunked(&buf[head.len..], max_body, chunked)? {
                Chunked::Complete(used) => return Ok(Some((Body::Decoded, head.len + used))),
                Chunked::TooLarge => return Ok(Some((Body::TooLarge, 0))),
                Chunked::Incomplete
                    if buf.len() - head.len > max_body.saturating_mul(CHUNK_FRAMING_FACTOR) =>
                {
                    return Ok(Some((Body::TooLarge, 0)))
                }
                Chunked::Incomplete => {}
            },
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, read_more(stream, buf)).await {
            Err(_) => return Err(TIMED_OUT),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads and drops what the client still sends, for a while: closing with
/// its body unread would reset the connection, and a reset can destroy
/// the answer before the client has read it.
async fn drain(stream: &mut TcpStream) {
    const MAX_DRAINED: usize = 2 << 20;
    let mut sink = vec![0u8; 16 * 1024];
    let mut drained = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while drained < MAX_DRAINED {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// Reads what has arrived, with room for a whole request of the usual size.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(4096);
    stream.read_buf(buf).await
}

/// The path of a request target without its query: origin-form as sent,
/// or the path of an absolute-form target, which a server must accept too
/// (RFC 9112, section 3.2.2).
fn target_path(target: &str) -> &str {
    let path = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest.find('/').map_or("/", |at| &rest[at..])
        }
        _ => target,
    };
    path.split('?').next().unwrap_or_default()
}

fn text(buf: &[u8], range: Range<usize>) -> &str {
    buf.get(range)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or_default()
}

/// Answers a refused request with its status and closes the connection:
/// after a framing error, nothing more on it can be trusted.
async fn refuse(stream: &mut TcpStream, refusal: Refusal) {
    let reply = Reply::from(crate::problem::Problem::new(refusal.status, refusal.detail));
    let mut out = Vec::with_capacity(256);
    encode_head(&mut out, &reply, false, false);
    out.extend_from_slice(&reply.body);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

fn encode_head(out: &mut Vec<u8>, reply: &Reply, keep_alive: bool, http10: bool) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(reply.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        reply
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\ndate: ");
    DATE.with_borrow_mut(|date| out.extend_from_slice(date.now().as_bytes()));
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(reply.content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(reply.body.len().to_string().as_bytes());
    for (name, value) in &reply.headers {
        // Values are ours, but a line break in one would split the response.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"\r\nconnection: close");
    } else if http10 {
        out.extend_from_slice(b"\r\nconnection: keep-alive");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// The Date header, formatted once a second per thread.
struct CachedDate {
    second: u64,
    text: String,
}

impl CachedDate {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

thread_local! {
    static DATE: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { second: 0, text: String::new() })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_BODY: usize = 64 * 1024;

    fn head(raw: &str) -> Result<Option<Head>, Refusal> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn heads_are_read_with_their_framing() {
        let raw = "POST /tsa?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/timestamp-query\r\nContent-Length: 5\r\n\r\nhello";
        let h = head(raw).unwrap().unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(&raw[h.target.clone()], "/tsa?x=1");
        assert_eq!(&raw[h.content_type.clone()], "application/timestamp-query");
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(h.len, raw.len() - 5);
        assert!(h.keep_alive && !h.expect_continue);

        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let h = head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive && h.http10);
        let h = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = head("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h =
            head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.expect_continue);
    }

    /// The request-smuggling cases and the limits.
    #[test]
    fn ambiguous_or_oversized_requests_are_refused() {
        let refused = |raw: &str| head(raw).unwrap_err().status.as_u16();
        let length = |raw: &str| head(raw).unwrap().unwrap().framing;
        assert_eq!(
            length("POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"),
            Framing::Length(65537)
        );
        assert_eq!(
            length("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Framing::Length(usize::MAX)
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
        assert_eq!(refused("POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n"), 417);
        assert_eq!(refused("GET /\0 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            refused(&format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000))),
            431
        );
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
        // The same request with a repeated, equal Content-Length is fine.
        assert!(head("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").is_ok());
    }

    #[test]
    fn chunked_bodies_are_decoded_whatever_the_split() {
        let raw = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut out = Vec::new();
        for cut in 0..raw.len() - 4 {
            assert_eq!(
                decode_chunked(&raw[..cut], MAX_BODY, &mut out),
                Ok(Chunked::Incomplete),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode_chunked(raw, MAX_BODY, &mut out),
            Ok(Chunked::Complete(raw.len() - 4))
        );
        assert_eq!(out, b"hello!");
        assert_eq!(
            decode_chunked(b"5\r\nhelloXY0\r\n\r\n", MAX_BODY, &mut out),
            Err(MALFORMED)
        );
        assert_eq!(
            decode_chunked(b"zz\r\n", MAX_BODY, &mut out),
            Err(MALFORMED)
        );
        assert_eq!(
            decode_chunked(b"10001\r\n", MAX_BODY, &mut out),
            Ok(Chunked::TooLarge)
        );
        assert_eq!(
            decode_chunked(b"ffffffffffffffff\r\n", MAX_BODY, &mut out),
            Ok(Chunked::TooLarge)
        );
    }

    #[test]
    fn absolute_targets_are_routed_by_their_path() {
        assert_eq!(target_path("/ocsp/MEI%2B?x=1"), "/ocsp/MEI%2B");
        assert_eq!(
            target_path("http://ca.example:8080/pki/crl/systems.crl"),
            "/pki/crl/systems.crl"
        );
        assert_eq!(target_path("HTTP://ca.example"), "/");
        assert_eq!(target_path("/ocsp/http://x"), "/ocsp/http://x");
    }

    /// Random mutations of well-formed requests: the parsers answer each
    /// without a panic, and what they accept lies inside the input.
    #[test]
    fn mutated_requests_never_panic_the_parsers() {
        let seeds: [&[u8]; 4] = [
            b"POST /tsa HTTP/1.1\r\nContent-Type: a/b\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /ocsp/MEIwQDA%2B HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"POST /ocsp HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for _ in 0..50_000 {
            let mut input = seeds[(next() % 4) as usize].to_vec();
            for _ in 0..next() % 4 + 1 {
                let at = next() as usize % (input.len() + 1);
                match next() % 3 {
                    0 if at < input.len() => input[at] = next() as u8,
                    1 => input.insert(at, next() as u8),
                    _ => input.truncate(at),
                }
            }
            if let Ok(Some(h)) = parse_head(&input) {
                assert!(h.len <= input.len());
                assert!(h.target.end <= h.len && h.content_type.end <= h.len);
            }
            if let Ok(Chunked::Complete(used)) = decode_chunked(&input, MAX_BODY, &mut out) {
                assert!(used <= input.len() && out.len() < used);
            }
        }
    }

    #[derive(Clone)]
    struct Echo;

    impl Routes for Echo {
        async fn route<'a>(&'a self, request: &'a Request<'a>) -> (&'static str, Reply) {
            let body = format!(
                "{:?} {} [{}] {}",
                request.method,
                request.path,
                request.content_type,
                String::from_utf8_lossy(request.body)
            );
            ("/echo", Reply::new(StatusCode::OK, "text/plain", body))
        }
    }

    async fn server() -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Echo, Metrics::new(), MAX_BODY, rx));
        (addr, tx, task)
    }

    /// Sends `raw` and reads until the server closes the connection.
    async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("the server closed the connection");
            match read {
                Ok(n) if n > 0 => got.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        String::from_utf8(got).unwrap()
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let (addr, _tx, _task) = server().await;
        let got = exchange(
            addr,
            b"POST /a HTTP/1.1\r\nContent-Type: t/1\r\nContent-Length: 3\r\n\r\nonePOST /b?q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\nHEAD /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        let bodies: Vec<&str> = got
            .split("HTTP/1.1 200 OK\r\n")
            .skip(1)
            .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or_default())
            .collect();
        assert_eq!(
            bodies,
            ["Post /a [t/1] one", "Post /b [] two", "", "Get /d [] "],
            "{got}"
        );
        assert!(
            got.contains("content-length: 11\r\n\r\nHTTP/1.1"),
            "HEAD has its length and no body: {got}"
        );
        assert!(
            got.ends_with("connection: close\r\n\r\nGet /d [] "),
            "{got}"
        );
    }

    #[tokio::test]
    async fn expect_continue_is_answered_before_the_body() {
        let (addr, _tx, _task) = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            .await
            .unwrap();
        let mut got = [0u8; 25];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"hi").await.unwrap();
        let mut rest = vec![0u8; 256];
        let n = s.read(&mut rest).await.unwrap();
        assert!(String::from_utf8_lossy(&rest[..n]).ends_with("Post /e [] hi"));
    }

    #[tokio::test]
    async fn a_refused_request_gets_its_status_and_the_connection_closes() {
        let (addr, _tx, _task) = server().await;
        let got = exchange(
            addr,
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        )
        .await;
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
        assert!(got.contains("application/problem+json") && got.contains("connection: close"));
        assert!(!got.contains("smuggled"));
        let got = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("connection: close"));
    }

    /// Answered without its body, which is never read, and closed.
    #[tokio::test]
    async fn an_oversized_body_is_answered_as_none_and_the_connection_closes() {
        let (addr, _tx, _task) = server().await;
        let got = exchange(
            addr,
            b"POST /big HTTP/1.1\r\nContent-Length: 70000\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
        assert!(!got.contains("100 Continue"), "{got}");
        assert!(
            got.contains("connection: close") && got.ends_with("Post /big [] "),
            "{got}"
        );
        let chunks = "8000\r\n".to_owned() + &"a".repeat(0x8000) + "\r\n";
        let raw = format!(
            "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{chunks}{chunks}"
        );
        let got = exchange(addr, raw.as_bytes()).await;
        assert!(
            got.contains("connection: close") && got.ends_with("Post /big [] "),
            "{got}"
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_connections_to_go_idle() {
        let (addr, tx, task) = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /late HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "a request in flight was cut off");
        s.write_all(b"cd").await.unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert!(
            got.contains("connection: close") && got.ends_with("Post /late [] abcd"),
            "{got}"
        );
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
