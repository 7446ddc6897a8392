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
//! Content-Length or chunked, `Expect: 100-continue`, HEAD, absolute-form
//! targets. What it refuses, with the status RFC 9110/9112 give, closing
//! the connection: see `head` (400, 431, 501, 417), and 408 for a request
//! not whole 10 s after its first bytes. A connection idle for 60 s is
//! closed. A body over `http.max_body_bytes` (64 KiB by default) is not
//! read: the request is answered as one without a body, in its protocol's
//! terms (OCSP `malformedRequest`, TSA `badDataFormat`), and the
//! connection closed.

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
use kexin_config::IpNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;

use crate::metrics::{Metrics, RouteMetrics};

mod head;

pub use head::Method;
use head::{decode_chunked, parse_head, target_path, Chunked, Framing, Head, Refusal, TIMED_OUT};

/// Chunk framing may take a few bytes per byte of body; beyond this many
/// times the body limit buffered, a chunked body is taken as too large.
const CHUNK_FRAMING_FACTOR: usize = 4;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_BYTES: usize = 16 * 1024;

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

impl<'a> Request<'a> {
    /// The body if it was sent as `media_type`, else empty: the OCSP and
    /// TSA parsers answer an empty body as the garbage a body of another
    /// type is to them.
    pub fn body_of_type(&self, media_type: &str) -> &'a [u8] {
        if self.content_type.eq_ignore_ascii_case(media_type) {
            self.body
        } else {
            &[]
        }
    }
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
    proxies: Arc<[IpNetwork]>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Each connection holds a sender; `recv` returns None once all are gone.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    // Connections wait on a signal of this listener's own: idle ones
    // register with it between every two requests, and a channel shared
    // with the other serving threads would bounce between their caches.
    let (stop_tx, stop_rx) = watch::channel(false);
    while let Some((mut tcp, peer)) = accept(&listener, &mut shutdown).await {
        let mut connection = Connection {
            routes: routes.clone(),
            metrics: metrics.clone(),
            max_body,
            shutdown: stop_rx.clone(),
            peer,
            last_route: None,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
        };
        let open = open_tx.clone();
        if !crate::proxy_protocol::is_trusted(&proxies, peer) {
            tokio::spawn(async move {
                connection.run(tcp).await;
                drop(open);
            });
            continue;
        }
        tokio::spawn(async move {
            match crate::proxy_protocol::announced_client(&mut tcp, peer).await {
                Ok(client) => {
                    connection.peer = client;
                    connection.run(tcp).await;
                }
                Err(e) => tracing::debug!(%peer, error = %e, "connection closed"),
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// The next connection, with TCP_NODELAY set; None once `shutdown` turns
/// true. Both listeners accept this way. Responses are written whole, so
/// Nagle's algorithm would only hold back their last segment until the
/// client's delayed ACK.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
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
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return None,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        return Some((tcp, peer));
    }
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

impl<R: Routes> Connection<R> {
    async fn run(mut self, mut stream: TcpStream) {
        let mut buf = BytesMut::with_capacity(4096);
        let mut out = Vec::with_capacity(1024);
        let mut chunked_body = Vec::new();
        loop {
            // Set when a request's first bytes are in: the whole request,
            // not each read, must arrive in time, or a client trickling a
            // byte at a time could hold the connection for hours.
            let mut deadline = None;
            let head = match self.read_head(&mut stream, &mut buf, &mut deadline).await {
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
                &mut deadline,
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
            let idle_until = tokio::time::Instant::now() + IDLE_TIMEOUT;
            if idle_until > self.idle.deadline() + Duration::from_secs(1) {
                self.idle.as_mut().reset(idle_until);
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
        deadline: &mut Option<tokio::time::Instant>,
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
                tokio::time::timeout_at(request_deadline(deadline), read_more(stream, buf))
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
        Framing::Length(n) => buf.len() >= head.len.saturating_add(n),
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
    deadline: &mut Option<tokio::time::Instant>,
) -> Result<Option<(Body, usize)>, Refusal> {
    loop {
        match head.framing {
            Framing::Length(n) if n > max_body => return Ok(Some((Body::TooLarge, 0))),
            Framing::Length(n) if buf.len() >= head.len.saturating_add(n) => {
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
        match tokio::time::timeout_at(request_deadline(deadline), read_more(stream, buf)).await {
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

fn request_deadline(deadline: &mut Option<tokio::time::Instant>) -> tokio::time::Instant {
    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + REQUEST_TIMEOUT)
}

/// Reads what has arrived, with room for a whole request of the usual size.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(4096);
    stream.read_buf(buf).await
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
            let body = match request.path {
                "/peer" => request.peer.to_string(),
                _ => body,
            };
            ("/echo", Reply::new(StatusCode::OK, "text/plain", body))
        }
    }

    async fn server() -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        server_behind(&[]).await
    }

    /// A server that takes PROXY protocol headers from `proxies`.
    async fn server_behind(
        proxies: &[&str],
    ) -> (SocketAddr, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let proxies: Arc<[IpNetwork]> = proxies.iter().map(|p| p.parse().unwrap()).collect();
        let task = tokio::spawn(serve(listener, Echo, Metrics::new(), MAX_BODY, proxies, rx));
        (addr, tx, task)
    }

    /// A trusted proxy's header names the client, in either version, and
    /// only the header is taken from the connection; a trusted proxy's
    /// connection without one is closed unanswered, and an untrusted
    /// peer's header is no header (it is a bad request line).
    #[tokio::test]
    async fn trusted_proxies_name_the_client() {
        let request = "GET /peer HTTP/1.1\r\nConnection: close\r\n\r\n";
        let (addr, _tx, _task) = server_behind(&["127.0.0.0/8"]).await;
        let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 51234 80\r\n{request}");
        let got = exchange(addr, v1.as_bytes()).await;
        assert!(got.ends_with("\r\n\r\n203.0.113.7:51234"), "{got}");

        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
        v2.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v2.extend_from_slice(&[0; 16]);
        v2.extend_from_slice(&[0x0f, 0xa0, 0, 80]);
        v2.extend_from_slice(request.as_bytes());
        let got = exchange(addr, &v2).await;
        assert!(got.ends_with("\r\n\r\n[2001:db8::7]:4000"), "{got}");

        assert_eq!(
            exchange(addr, request.as_bytes()).await,
            "",
            "no header: closed"
        );

        let (addr, _tx, _task) = server_behind(&["192.0.2.0/24"]).await;
        let got = exchange(addr, v1.as_bytes()).await;
        assert!(
            got.starts_with("HTTP/1.1 400") && !got.contains("203.0.113.7"),
            "{got}"
        );
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

    /// A byte every 4 s keeps no request alive past 10 s from its start.
    #[tokio::test(start_paused = true)]
    async fn a_request_trickling_in_is_cut_off_ten_seconds_after_it_began() {
        let (addr, _tx, _task) = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let start = tokio::time::Instant::now();
        s.write_all(b"GET /slow HTTP/1.1\r\n").await.unwrap();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            s.write_all(b"X").await.unwrap();
        }
        let mut got = String::new();
        let _ = s.read_to_string(&mut got).await;
        assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
        let waited = start.elapsed();
        assert!(waited < Duration::from_secs(11), "cut off after {waited:?}");
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
