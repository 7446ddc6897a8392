//! Revocation: RFC 5280 reason codes, hold and release.
//!
//! A revoked certificate never returns to good; only a certificate on hold
//! (certificateHold) can be released, or revoked for good.

use std::fmt;
use std::str::FromStr;

use crate::audit::{AuditEvent, AuditLog};
use crate::issuance::{now, Requester};
use crate::storage::Database;
use crate::Error;

/// CRLReason (RFC 5280 §5.3.1). removeFromCRL is not a reason one revokes
/// with; releasing a hold is [`Revocations::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 9] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::CertificateHold,
        Self::PrivilegeWithdrawn,
        Self::AaCompromise,
    ];

    pub fn code(self) -> i64 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The same reason as the ASN.1 CRLReason of CRL entries and OCSP.
    pub fn crl_reason(self) -> x509_cert::ext::pkix::CrlReason {
        use x509_cert::ext::pkix::CrlReason as C;
        match self {
            Self::Unspecified => C::Unspecified,
            Self::KeyCompromise => C::KeyCompromise,
            Self::CaCompromise => C::CaCompromise,
            Self::AffiliationChanged => C::AffiliationChanged,
            Self::Superseded => C::Superseded,
            Self::CessationOfOperation => C::CessationOfOperation,
            Self::CertificateHold => C::CertificateHold,
            Self::PrivilegeWithdrawn => C::PrivilegeWithdrawn,
            Self::AaCompromise => C::AaCompromise,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
            Self::AaCompromise => "aACompromise",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;

    /// Accepts the RFC 5280 names case-insensitively, with or without dashes
    /// (`keyCompromise`, `key-compromise`).
    fn from_str(s: &str) -> Result<Self, Error> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == norm)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "unknown revocation reason {s:?}; use one of {}",
                    Self::ALL.map(|r| r.as_str()).join(", ")
                ))
            })
    }
}

#[derive(Clone, Debug)]
pub struct Revocations {
    db: Database,
    audit: AuditLog,
}

impl Revocations {
    pub fn new(db: Database, audit: AuditLog) -> Self {
        Self { db, audit }
    }

    /// Revokes (or, with certificateHold, suspends) `serial`. Returns the CA
    /// that issued it, whose CRL must be regenerated.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: RevocationReason,
        invalidity_date: Option<i64>,
        requester: Requester<'_>,
    ) -> Result<String, Error> {
        let serial = normalize_serial(serial)?;
        let cert = self
            .db
            .certificate(&serial)
            .await?
            .ok_or_else(|| Error::NotFound(format!("certificate {serial}")))?;
        if !self
            .db
            .revoke(&serial, reason.code(), now(), invalidity_date)
            .await?
        {
            return Err(Error::Conflict(format!(
                "certificate {serial} is {} and cannot be {}",
                cert.status,
                if reason == RevocationReason::CertificateHold {
                    "put on hold"
                } else {
                    "revoked"
                }
            )));
        }
        self.audit
            .append(AuditEvent {
                actor: requester.actor,
                action: if reason == RevocationReason::CertificateHold {
                    "certificate.hold"
                } else {
                    "certificate.revoke"
                },
                target: &serial,
                source: requester.source,
                detail: serde_json::json!({
                    "issuer": cert.issuer,
                    "reason": reason.as_str(),
                    "invalidity_date": invalidity_date,
                    "previous_status": cert.status,
                }),
            })
            .await?;
        if reason != RevocationReason::CertificateHold {
            self.revoke_same_seal(&serial, reason, invalidity_date, requester)
                .await?;
        }
        Ok(cert.issuer)
    }

    /// A seal renewed keeps its key under a new certificate, and the
    /// earlier ones stay valid for what they sealed; so revoking any of
    /// them revokes them all, or the key would go on sealing under
    /// another. Each is audited as revoked with `serial`.
    async fn revoke_same_seal(
        &self,
        serial: &str,
        reason: RevocationReason,
        invalidity_date: Option<i64>,
        requester: Requester<'_>,
    ) -> Result<(), Error> {
        for other in self.db.other_certificates_of_seal(serial).await? {
            if !self
                .db
                .revoke(&other, reason.code(), now(), invalidity_date)
                .await?
            {
                continue;
            }
            self.audit
                .append(AuditEvent {
                    actor: requester.actor,
                    action: "certificate.revoke",
                    target: &other,
                    source: requester.source,
                    detail: serde_json::json!({
                        "reason": reason.as_str(),
                        "invalidity_date": invalidity_date,
                        "with": serial,
                        "because": "a certificate of the same seal (same key)",
                    }),
                })
                .await?;
        }
        Ok(())
    }

    /// Returns a certificate on hold to good. Returns its CA.
    pub async fn release(&self, serial: &str, requester: Requester<'_>) -> Result<String, Error> {
        let serial = normalize_serial(serial)?;
        let cert = self
            .db
            .certificate(&serial)
            .await?
            .ok_or_else(|| Error::NotFound(format!("certificate {serial}")))?;
        if !self.db.release(&serial).await? {
            return Err(Error::Conflict(format!(
                "certificate {serial} is {}, not on hold",
                cert.status
            )));
        }
        self.audit
            .append(AuditEvent {
                actor: requester.actor,
                action: "certificate.release",
                target: &serial,
                source: requester.source,
                detail: serde_json::json!({ "issuer": cert.issuer }),
            })
            .await?;
        Ok(cert.issuer)
    }
}

/// Serials are stored as lowercase hex without separators; accept what
/// people paste (`0A:1B`, `0x0a1b`, upper case).
pub fn normalize_serial(s: &str) -> Result<String, Error> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || hex.len() > 42 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidRequest(format!(
            "{s:?} is not a hexadecimal serial number"
        )));
    }
    let trimmed = hex.trim_start_matches('0');
    let mut out = if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed.to_owned()
    };
    if out.is_empty() {
        out = "00".into();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_name_and_code() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
        }
        assert_eq!(
            "key-compromise".parse::<RevocationReason>().unwrap(),
            RevocationReason::KeyCompromise
        );
        assert!("removeFromCRL".parse::<RevocationReason>().is_err());
    }

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("0A:1B").unwrap(), "0a1b");
        assert_eq!(normalize_serial("0x00a1b").unwrap(), "0a1b");
        assert!(normalize_serial("xyz").is_err());
    }
}
