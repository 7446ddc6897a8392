//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that
//! passes TCP through, TLS included, names the client it accepted in a
//! header before the client's own bytes. Read only on connections from
//! the proxies `http.proxy_protocol_from` / `https.proxy_protocol_from`
//! trust; anyone else could name any address.

pub mod header;

use std::net::SocketAddr;
use std::time::Duration;

use kexin_config::IpNetwork;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use header::{Header, ParseError, V2_MAX_BODY};

/// How long a trusted proxy has to send the header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum HeaderError {
    Parse(ParseError),
    TimedOut,
    Io(String),
}

impl From<ParseError> for HeaderError {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parse(e) => e.fmt(f),
            Self::TimedOut => write!(
                f,
                "no PROXY protocol header within {} s",
                HEADER_TIMEOUT.as_secs()
            ),
            Self::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
        }
    }
}

/// Whether `peer` is one of the `trusted` proxies.
pub fn is_trusted(trusted: &[IpNetwork], peer: SocketAddr) -> bool {
    trusted.iter().any(|n| n.contains(peer.ip()))
}

/// The client of a connection accepted from `peer`: `peer` itself unless
/// it is one of the `trusted` proxies, whose header is then read (and
/// consumed, so the connection goes on with the client's first byte).
pub async fn client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNetwork],
) -> Result<SocketAddr, HeaderError> {
    if !is_trusted(trusted, peer) {
        return Ok(peer);
    }
    announced_client(tcp, peer).await
}

/// The client a trusted proxy's header names, read from the start of
/// `tcp`; `peer` (the proxy) for a header that names none.
pub async fn announced_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, HeaderError> {
    tokio::time::timeout(HEADER_TIMEOUT, read_header(tcp, peer))
        .await
        .map_err(|_| HeaderError::TimedOut)?
}

async fn read_header(tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, HeaderError> {
    let io = |e: std::io::Error| HeaderError::Io(e.to_string());
    // Peeked, not read: what follows the header is the client's, and goes
    // to TLS or HTTP untouched.
    let mut buf = vec![0u8; 16 + V2_MAX_BODY];
    loop {
        let n = tcp.peek(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(HeaderError::Io("closed before the header".into()));
        }
        match header::parse(&buf[..n])? {
            Header::Complete { len, client } => {
                tcp.read_exact(&mut buf[..len]).await.map_err(io)?;
                return Ok(client.unwrap_or(peer));
            }
            // Proxies send the header in one segment; a header split
            // across several is waited for briefly instead of peeked at
            // in a busy loop.
            Header::Incomplete => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
