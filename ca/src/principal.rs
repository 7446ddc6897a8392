//! Who may call Kexin's API, and what each role may do.
//!
//! A principal is identified by the serial of its client certificate; its
//! role is stored beside it, never read from the certificate, so changing a
//! role needs no reissuance and a forged certificate field grants nothing.

use std::fmt;
use std::str::FromStr;

use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    RaOfficer,
    RaAdmin,
    KmcOfficer,
    SealAdmin,
    Auditor,
}

/// The actions the API authorizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    IssueCertificate,
    ReadCertificates,
    RevokeCertificate,
    ReadAudit,
    /// The server's operational figures (`/metrics`).
    ReadMetrics,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Self::RaOfficer,
        Self::RaAdmin,
        Self::KmcOfficer,
        Self::SealAdmin,
        Self::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RaOfficer => "ra-officer",
            Self::RaAdmin => "ra-admin",
            Self::KmcOfficer => "kmc-officer",
            Self::SealAdmin => "seal-admin",
            Self::Auditor => "auditor",
        }
    }

    /// Least privilege: each role gets what its job needs and nothing else.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Self::RaOfficer => matches!(p, IssueCertificate | ReadCertificates | RevokeCertificate),
            Self::RaAdmin => matches!(
                p,
                IssueCertificate | ReadCertificates | RevokeCertificate | ReadAudit | ReadMetrics
            ),
            Self::Auditor => matches!(p, ReadCertificates | ReadAudit | ReadMetrics),
            Self::KmcOfficer | Self::SealAdmin => false,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "unknown role {s:?}; use one of {}",
                    Self::ALL.map(|r| r.as_str()).join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege() {
        assert!(!Role::Auditor.allows(Permission::RevokeCertificate));
        assert!(!Role::Auditor.allows(Permission::IssueCertificate));
        assert!(!Role::RaOfficer.allows(Permission::ReadAudit));
        assert!(!Role::RaOfficer.allows(Permission::ReadMetrics));
        assert!(!Role::SealAdmin.allows(Permission::ReadMetrics));
        assert!(!Role::SealAdmin.allows(Permission::IssueCertificate));
        assert!(Role::RaOfficer.allows(Permission::RevokeCertificate));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
    }
}
