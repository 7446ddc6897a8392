//! The PROXY protocol header's parser (versions 1 and 2), on bytes alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's signature, its first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Version 1's longest line, CRLF included (the specification's figure).
const V1_MAX: usize = 107;

/// Most bytes of addresses and TLVs a version 2 header may carry here: the
/// addresses take 36 at most, and load balancers add a few TLVs (an
/// endpoint id, TLS facts) far below this.
pub const V2_MAX_BODY: usize = 1024;

/// What the bytes at the start of a connection hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not yet a whole header; more bytes may complete it.
    Incomplete,
    /// A header of `len` bytes. `client` is None for a proxy's own
    /// connection (a health check: v2 LOCAL, v1 UNKNOWN) or an address
    /// family without an IP address; the connection's peer stands then.
    Complete {
        len: usize,
        client: Option<SocketAddr>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The connection begins with something else.
    Missing,
    Malformed(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => {
                f.write_str("the connection does not begin with a PROXY protocol header")
            }
            Self::Malformed(why) => write!(f, "malformed PROXY protocol header: {why}"),
        }
    }
}

/// Reads `bytes`, the start of a connection, as a PROXY protocol header.
pub fn parse(bytes: &[u8]) -> Result<Header, ParseError> {
    if starts_like(bytes, V2_SIGNATURE) {
        parse_v2(bytes)
    } else if starts_like(bytes, b"PROXY ") {
        parse_v1(bytes)
    } else {
        Err(ParseError::Missing)
    }
}

/// Whether `bytes` begins with `prefix`, or is a beginning of it.
fn starts_like(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn parse_v2(bytes: &[u8]) -> Result<Header, ParseError> {
    let Some(fixed) = bytes.get(..16) else {
        return Ok(Header::Incomplete);
    };
    if fixed[12] >> 4 != 2 {
        return Err(ParseError::Malformed("version 2 signature, other version"));
    }
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if body_len > V2_MAX_BODY {
        return Err(ParseError::Malformed("longer than a load balancer's"));
    }
    let Some(body) = bytes.get(16..16 + body_len) else {
        return Ok(Header::Incomplete);
    };
    let len = 16 + body_len;
    let client = match fixed[12] & 0x0f {
        0 => None,
        1 => match fixed[13] {
            0x11 | 0x12 => {
                let a = body
                    .get(..12)
                    .ok_or(ParseError::Malformed("IPv4 addresses cut short"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            0x21 | 0x22 => {
                let a = body
                    .get(..36)
                    .ok_or(ParseError::Malformed("IPv6 addresses cut short"))?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                let ip = Ipv6Addr::from(octets);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([a[32], a[33]]),
                ))
            }
            _ => None,
        },
        _ => return Err(ParseError::Malformed("unknown command")),
    };
    Ok(Header::Complete { len, client })
}

fn parse_v1(bytes: &[u8]) -> Result<Header, ParseError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(ParseError::Malformed("no CRLF within 107 bytes"))
        } else {
            Ok(Header::Incomplete)
        };
    };
    let line =
        std::str::from_utf8(&window[..end]).map_err(|_| ParseError::Malformed("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    let client = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", family @ ("TCP4" | "TCP6"), source, _destination, source_port, _destination_port] =>
        {
            let ip: IpAddr = source
                .parse()
                .map_err(|_| ParseError::Malformed("source address"))?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(ParseError::Malformed("address of the other family"));
            }
            let port: u16 = source_port
                .parse()
                .map_err(|_| ParseError::Malformed("source port"))?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(ParseError::Malformed("version 1 line")),
    };
    Ok(Header::Complete { len, client })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn complete(len: usize, client: &str) -> Result<Header, ParseError> {
        Ok(Header::Complete {
            len,
            client: Some(client.parse().unwrap()),
        })
    }

    #[test]
    fn version_1_names_the_client() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n\x16\x03\x01";
        assert_eq!(parse(line), complete(43, "203.0.113.7:51234"));
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\nGET";
        assert_eq!(parse(line), complete(45, "[2001:db8::7]:4000"));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Header::Complete {
                len: 15,
                client: None
            })
        );
        for partial in [&b"PROX"[..], b"PROXY TCP4 203.0.113.7 10.0"] {
            assert_eq!(parse(partial), Ok(Header::Incomplete));
        }
    }

    #[test]
    fn version_2_names_the_client_and_skips_its_tlvs() {
        let mut body = vec![203, 0, 113, 7, 10, 0, 0, 1, 0xc8, 0x22, 0x01, 0xbb];
        body.extend_from_slice(&[0x04, 0x00, 0x03, b'v', b'p', b'c']);
        let mut header = v2(1, 0x11, &body);
        let len = header.len();
        header.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(parse(&header), complete(len, "203.0.113.7:51234"));
        assert_eq!(parse(&header[..len - 1]), Ok(Header::Incomplete));
        assert_eq!(parse(&header[..10]), Ok(Header::Incomplete));

        let mut body = vec![0u8; 36];
        body[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body[32..34].copy_from_slice(&4000u16.to_be_bytes());
        assert_eq!(
            parse(&v2(1, 0x21, &body)),
            complete(52, "[2001:db8::7]:4000")
        );

        let health_check = v2(0, 0x00, &[]);
        assert_eq!(
            parse(&health_check),
            Ok(Header::Complete {
                len: 16,
                client: None
            })
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let too_long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        let mut other_version = v2(1, 0x11, &[0; 12]);
        other_version[12] = 0x11;
        for (bytes, why) in [
            (&b"GET / HTTP/1.1\r\n"[..], ParseError::Missing),
            (b"\x16\x03\x01\x02\x00", ParseError::Missing),
            (&too_long, ParseError::Malformed("no CRLF within 107 bytes")),
            (
                b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
                ParseError::Malformed("address of the other family"),
            ),
            (
                b"PROXY TCP4 203.0.113.7 10.0.0.1 70000 443\r\n",
                ParseError::Malformed("source port"),
            ),
            (
                b"PROXY TCP4 203.0.113.7\r\n",
                ParseError::Malformed("version 1 line"),
            ),
            (
                &other_version,
                ParseError::Malformed("version 2 signature, other version"),
            ),
            (
                &v2(1, 0x11, &[0; 8]),
                ParseError::Malformed("IPv4 addresses cut short"),
            ),
            (
                &v2(2, 0x11, &[0; 12]),
                ParseError::Malformed("unknown command"),
            ),
            (
                &v2(1, 0x11, &[0; 2000]),
                ParseError::Malformed("longer than a load balancer's"),
            ),
        ] {
            assert_eq!(
                parse(bytes),
                Err(why),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
