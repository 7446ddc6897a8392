//! When a certificate Kexin holds for one of its own services (an OCSP
//! responder, the TSA, the HTTPS server) is renewed.
//!
//! A running server checks these certificates every minute, so an instance
//! left running for years keeps answering with valid ones. A renewal
//! certifies the same key again: the key never leaves the key store, and
//! replacing it is a decision for an officer, not for a timer.

use std::time::{Duration, SystemTime};

use x509_cert::time::Validity;

/// Renewal starts this long before expiry at the latest.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86400);

/// How long a node's claim to renew a certificate lasts: longer than a
/// renewal takes, short enough for another node to take over from one
/// that stopped midway.
const CLAIM: Duration = Duration::from_secs(300);

/// Claims the renewal of the service certificate `name` for this node
/// among the nodes sharing `db`; whether it holds the claim. Nodes check
/// at the same minutes, and the claim keeps them from each issuing one.
/// The holder looks at the stored certificate again before it issues,
/// since another node may have renewed it in between.
pub async fn claim(db: &crate::storage::Database, name: &str) -> Result<bool, crate::Error> {
    let now = crate::issuance::now();
    db.claim_renewal(name, now, now + CLAIM.as_secs() as i64)
        .await
}

/// Whether a certificate valid for `validity`, issued by a CA valid for
/// `issuer`, is due for renewal at `now`: less than 30 days, or less than a
/// third of its lifetime, left (the smaller, so a certificate made
/// short-lived by its profile is not renewed as soon as it is issued); and
/// its CA outlives it, since a certificate never outlives its CA, so that
/// a renewal could not end any later (and would be made again at every
/// check until the CA expires). Nor when the CA has ended: nothing can
/// be issued under it (until its certificate is renewed).
pub fn due(validity: &Validity, issuer: &Validity, now: SystemTime) -> bool {
    let issuer_end = SystemTime::UNIX_EPOCH + issuer.not_after.to_unix_duration();
    if issuer.not_after.to_unix_duration() <= validity.not_after.to_unix_duration()
        || issuer_end <= now
    {
        return false;
    }
    let start = SystemTime::UNIX_EPOCH + validity.not_before.to_unix_duration();
    let end = SystemTime::UNIX_EPOCH + validity.not_after.to_unix_duration();
    let lifetime = end.duration_since(start).unwrap_or_default();
    let margin = RENEW_BEFORE.min(lifetime / 3);
    match end.duration_since(now) {
        Ok(left) => left < margin,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::UtcTime;
    use x509_cert::time::Time;

    fn valid_for(days: u64) -> Validity {
        let start = Duration::from_secs(1_800_000_000);
        Validity {
            not_before: Time::UtcTime(UtcTime::from_unix_duration(start).unwrap()),
            not_after: Time::UtcTime(
                UtcTime::from_unix_duration(start + Duration::from_secs(days * 86400)).unwrap(),
            ),
        }
    }

    /// A CA that outlives every certificate here.
    fn ca() -> Validity {
        valid_for(3650)
    }

    fn at_day(day: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + day * 86400)
    }

    #[test]
    fn long_lived_certificates_are_renewed_thirty_days_before_expiry() {
        let cert = valid_for(397);
        assert!(!due(&cert, &ca(), at_day(0)));
        assert!(!due(&cert, &ca(), at_day(366)));
        assert!(due(&cert, &ca(), at_day(368)));
        assert!(
            due(&cert, &ca(), at_day(500)),
            "an expired one is renewed too"
        );
    }

    #[test]
    fn certificates_that_end_with_their_ca_are_not_renewed() {
        let cert = valid_for(397);
        assert!(!due(&cert, &valid_for(397), at_day(380)));
        assert!(!due(&cert, &valid_for(390), at_day(380)));
        assert!(due(&cert, &valid_for(398), at_day(380)));
    }

    #[test]
    fn nothing_is_renewed_under_a_ca_that_has_ended() {
        let cert = valid_for(90);
        let ca = valid_for(100);
        assert!(due(&cert, &ca, at_day(95)));
        assert!(!due(&cert, &ca, at_day(100)));
        assert!(!due(&cert, &ca, at_day(120)));
    }

    #[test]
    fn short_lived_certificates_are_renewed_with_a_third_left() {
        let cert = valid_for(30);
        assert!(!due(&cert, &ca(), at_day(0)));
        assert!(!due(&cert, &ca(), at_day(19)));
        assert!(due(&cert, &ca(), at_day(21)));
    }
}
