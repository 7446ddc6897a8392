//! Reading a request head and a chunked body: what the plain-HTTP
//! listener takes from the network before anything else looks at it.
//! Self-contained (httparse and `http` only) so that the fuzz target
//! `http_request` compiles this very file.
//!
//! Refused: a malformed head (400); a head over 8 KiB or 32 fields (431);
//! a transfer coding other than chunked (501); an expectation other than
//! 100-continue (417); and framing two parsers could read differently,
//! the request-smuggling cases (400): Content-Length beside
//! Transfer-Encoding, two different Content-Lengths, Transfer-Encoding in
//! HTTP/1.0.

use std::ops::Range;

use http::StatusCode;

const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// Why a request is refused and its connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub detail: &'static str,
}

pub const MALFORMED: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    detail: "malformed HTTP request",
};
pub const AMBIGUOUS_LENGTH: Refusal = Refusal {
    status: StatusCode::BAD_REQUEST,
    detail: "the request's length is ambiguous",
};
pub const HEAD_TOO_LARGE: Refusal = Refusal {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    detail: "the request head is too large",
};
pub const UNKNOWN_CODING: Refusal = Refusal {
    status: StatusCode::NOT_IMPLEMENTED,
    detail: "only the chunked transfer coding is understood",
};
pub const UNKNOWN_EXPECTATION: Refusal = Refusal {
    status: StatusCode::EXPECTATION_FAILED,
    detail: "only 100-continue is understood",
};
pub const TIMED_OUT: Refusal = Refusal {
    status: StatusCode::REQUEST_TIMEOUT,
    detail: "the request took too long to arrive",
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// A request head, as ranges of the connection's buffer.
#[derive(Debug)]
pub struct Head {
    pub len: usize,
    pub method: Method,
    pub http10: bool,
    pub target: Range<usize>,
    pub content_type: Range<usize>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Ok(None): the head has not fully arrived yet.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Refusal> {
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
pub enum Chunked {
    /// Decoded whole; this many bytes of the input used, trailers included.
    Complete(usize),
    Incomplete,
    TooLarge,
}

/// Decodes a chunked body from the start of `input` into `out`.
pub fn decode_chunked(
    input: &[u8],
    max_body: usize,
    out: &mut Vec<u8>,
) -> Result<Chunked, Refusal> {
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
        // Checked: with a limit configured near usize::MAX, a declared size
        // could overflow the end of the chunk.
        let Some(end) = pos.checked_add(size).and_then(|e| e.checked_add(2)) else {
            return Ok(Chunked::TooLarge);
        };
        let Some(chunk) = input.get(pos..end) else {
            return Ok(Chunked::Incomplete);
        };
        if &chunk[size..] != b"\r\n" {
            return Err(MALFORMED);
        }
        out.extend_from_slice(&chunk[..size]);
        pos += size + 2;
    }
}

/// The path of a request target without its query: origin-form as sent,
/// or the path of an absolute-form target, which a server must accept too
/// (RFC 9112, section 3.2.2).
pub fn target_path(target: &str) -> &str {
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
        assert_eq!(
            decode_chunked(b"ffffffffffffffff\r\n", usize::MAX, &mut out),
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
}
