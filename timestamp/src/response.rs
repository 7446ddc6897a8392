//! TimeStampResp encoding (RFC 3161 §2.4.2).

use der::asn1::{Any, BitString, Utf8StringRef};
use der::{Encode, Sequence};

use crate::request::Rejection;

#[derive(Sequence)]
struct PkiStatusInfo<'a> {
    status: u8,
    #[asn1(optional = "true")]
    status_string: Option<Vec<Utf8StringRef<'a>>>,
    #[asn1(optional = "true")]
    fail_info: Option<BitString>,
}

#[derive(Sequence)]
struct TimeStampResp<'a> {
    status: PkiStatusInfo<'a>,
    #[asn1(optional = "true")]
    time_stamp_token: Option<Any>,
}

const GRANTED: u8 = 0;
const REJECTION: u8 = 2;

/// A DER BIT STRING with the one named bit `n` set, trailing zeros trimmed
/// as DER requires.
fn named_bit(n: usize) -> BitString {
    let mut bytes = vec![0u8; n / 8 + 1];
    bytes[n / 8] = 0x80 >> (n % 8);
    BitString::new((7 - n % 8) as u8, bytes).expect("unused bits below 8")
}

/// The fixed bytes used if encoding itself ever failed: a bare systemFailure rejection.
const FALLBACK: [u8; 14] = [
    0x30, 0x0c, 0x30, 0x0a, 0x02, 0x01, 0x02, 0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40,
];

pub fn rejection(r: &Rejection) -> Vec<u8> {
    let text = Utf8StringRef::new(&r.text).ok();
    TimeStampResp {
        status: PkiStatusInfo {
            status: REJECTION,
            status_string: text.map(|t| vec![t]),
            fail_info: Some(named_bit(r.failure.bit())),
        },
        time_stamp_token: None,
    }
    .to_der()
    .unwrap_or_else(|_| FALLBACK.to_vec())
}

/// A granted TimeStampResp around `token` (a DER ContentInfo): written
/// directly, since the token is already encoded.
pub fn granted(token: &[u8]) -> Vec<u8> {
    use crate::token::{wrap, INTEGER, SEQUENCE};
    wrap(SEQUENCE, &[&[SEQUENCE, 3, INTEGER, 1, GRANTED], token])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_bits_are_minimal() {
        assert_eq!(named_bit(0).to_der().unwrap(), [0x03, 0x02, 0x07, 0x80]);
        assert_eq!(named_bit(5).to_der().unwrap(), [0x03, 0x02, 0x02, 0x04]);
        assert_eq!(
            named_bit(15).to_der().unwrap(),
            [0x03, 0x03, 0x00, 0x00, 0x01]
        );
        assert_eq!(
            named_bit(25).to_der().unwrap(),
            [0x03, 0x05, 0x06, 0x00, 0x00, 0x00, 0x40]
        );
    }

    #[test]
    fn fallback_is_a_systemfailure_rejection() {
        let expected = TimeStampResp {
            status: PkiStatusInfo {
                status: REJECTION,
                status_string: None,
                fail_info: Some(named_bit(25)),
            },
            time_stamp_token: None,
        }
        .to_der()
        .unwrap();
        assert_eq!(FALLBACK.to_vec(), expected);
    }

    #[test]
    fn granted_reply_decodes_with_its_token() {
        let token = cms::content_info::ContentInfo {
            content_type: crate::token::OID_SIGNED_DATA,
            content: Any::null(),
        };
        let reply = granted(&token.to_der().unwrap());
        let decoded: x509_tsp::TimeStampResp = der::Decode::from_der(&reply).unwrap();
        assert_eq!(decoded.status.to_der().unwrap(), [0x30, 3, 2, 1, GRANTED]);
        assert_eq!(decoded.time_stamp_token, Some(token));
    }
}
