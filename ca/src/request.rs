//! The registration workflow: an officer records a request (enroll an
//! official or a system, a seal certificate, a new seal with its key in the
//! key store, renew, rekey, revoke, recover an escrowed key) with the identity evidence checked; other officers
//! approve or reject it; when the profile's number of approvals is reached
//! the request is carried out, exactly once.
//!
//! Invariants: an officer never decides on a request they submitted; each
//! officer (by name, whatever certificate they hold) decides at most once
//! per request, which the database enforces; one rejection ends a request;
//! the state moves submitted → approved → issued|failed, or submitted →
//! rejected, by conditional updates so that concurrent approvals carry a
//! request out once. A full ID number is stored only sealed under the key
//! store's RA wrapping key; lists show a masked form.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use der::{Decode, Encode};
use kexin_hsm::KeyStore;
use serde::{Deserialize, Serialize};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use crate::audit::{AuditEvent, AuditLog};
use crate::certificate::{der_err, general_name};
use crate::csr::{name_attributes, parse_and_verify};
use crate::issuance::{now, Requester};
use crate::kmc::{one_time_secret, pkcs12, KeyManagementCenter};
use crate::principal::Role;
use crate::profile::{attribute_oid, SubjectRequest};
use crate::registration::Registration;
use crate::revocation::{normalize_serial, RevocationReason, Revocations};
use crate::storage::{Database, DecisionRow, NewRequest, RequestRow};
use crate::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestKind {
    EnrollOfficial,
    EnrollSystem,
    SealCertificate,
    /// A seal whose key the key store generates (see [`SealFactory`]).
    CreateSeal,
    Renew,
    Rekey,
    Revoke,
    KeyRecovery,
}

impl RequestKind {
    pub const ALL: [RequestKind; 8] = [
        Self::EnrollOfficial,
        Self::EnrollSystem,
        Self::SealCertificate,
        Self::CreateSeal,
        Self::Renew,
        Self::Rekey,
        Self::Revoke,
        Self::KeyRecovery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnrollOfficial => "enroll-official",
            Self::EnrollSystem => "enroll-system",
            Self::SealCertificate => "seal-certificate",
            Self::CreateSeal => "seal-create",
            Self::Renew => "renew",
            Self::Rekey => "rekey",
            Self::Revoke => "revoke",
            Self::KeyRecovery => "key-recovery",
        }
    }

    /// Profiles a new certificate of this kind may use; the first is the default.
    fn profiles(self) -> &'static [&'static str] {
        match self {
            Self::EnrollOfficial => &["official-sign"],
            Self::EnrollSystem => &["tls-server", "tls-client"],
            Self::SealCertificate | Self::CreateSeal => &["seal"],
            _ => &[],
        }
    }

    fn may_submit(self, role: Role) -> bool {
        match self {
            Self::KeyRecovery => matches!(role, Role::RaOfficer | Role::RaAdmin | Role::KmcOfficer),
            Self::SealCertificate => {
                matches!(role, Role::RaOfficer | Role::RaAdmin | Role::SealAdmin)
            }
            Self::CreateSeal => matches!(role, Role::SealAdmin | Role::RaAdmin),
            _ => matches!(role, Role::RaOfficer | Role::RaAdmin),
        }
    }

    /// The role whose officers decide: KMC officers for key recovery,
    /// registration officers (or their admin) for everything else.
    fn approver(self) -> Role {
        match self {
            Self::KeyRecovery => Role::KmcOfficer,
            _ => Role::RaOfficer,
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::InvalidRequest(format!("unknown request kind {s:?}")))
    }
}

/// Whether `role` may decide requests that need `approver`.
fn may_decide(role: Role, approver: Role) -> bool {
    role == approver || (approver == Role::RaOfficer && role == Role::RaAdmin)
}

/// How the officer checked who the applicant is.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceInput {
    /// `resident-id` (居民身份证, checked against GB 11643), `passport`,
    /// `business-license` or `other`.
    pub document: String,
    pub id_number: Option<String>,
    #[serde(default)]
    pub note: String,
}

/// Evidence as stored and shown: the ID number only masked.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub document: String,
    pub id_number_masked: Option<String>,
    pub note: String,
}

/// The seal a `seal-create` request asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealSpec {
    pub name: String,
    /// The owning organization.
    pub organization: String,
    /// Its unified social credit code (统一社会信用代码).
    #[serde(default)]
    pub uscc: Option<String>,
    /// `official`, `contract`, `license`, `finance` or `invoice`.
    #[serde(default = "official_seal")]
    pub kind: String,
    /// Base64 PNG of the seal; a round red seal is drawn when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// Key algorithm; the CA's when absent.
    #[serde(default)]
    pub algorithm: Option<String>,
}

fn official_seal() -> String {
    "official".into()
}

/// A boxed future, so that [`SealFactory`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Creates the seals of approved `seal-create` requests. The registration
/// workflow records and decides requests; the seal service, which owns the
/// seal registry and the seals' keys, makes them.
pub trait SealFactory: Send + Sync + fmt::Debug {
    /// Whether `spec` could be carried out now (valid fields, free name),
    /// so that officers approve something that can be done.
    fn check<'a>(&'a self, spec: &'a SealSpec) -> BoxFuture<'a, Result<(), Error>>;
    /// Generates the key in the key store, issues its certificate from the
    /// `seal` profile and registers the seal; returns the certificate serial.
    fn create<'a>(
        &'a self,
        spec: &'a SealSpec,
        requester: Requester<'a>,
    ) -> BoxFuture<'a, Result<String, Error>>;
    /// Whether the seal whose present certificate is `serial` could be
    /// renewed now (it is active, its certificate issued).
    fn check_renewal<'a>(&'a self, serial: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// Renews the certificate `serial` of a seal, for the key in the key
    /// store; returns the new certificate's serial.
    fn renew<'a>(
        &'a self,
        serial: &'a str,
        requester: Requester<'a>,
    ) -> BoxFuture<'a, Result<String, Error>>;
}

/// What an officer submits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub kind: RequestKind,
    pub profile: Option<String>,
    /// Subject attributes in order, e.g. `[["O", "…"], ["CN", "张三"]]`.
    #[serde(default)]
    pub subject: Vec<(String, String)>,
    /// Email addresses, DNS names or IP addresses for subjectAltName.
    #[serde(default)]
    pub names: Vec<String>,
    /// PEM PKCS#10: the applicant's proof of possession of the signing key.
    pub csr: Option<String>,
    /// Serial of the certificate a renew, rekey, revoke or key recovery is about.
    pub target: Option<String>,
    /// Revocation reason (RFC 5280 name) or why a key is recovered.
    pub reason: Option<String>,
    pub evidence: Option<EvidenceInput>,
    /// The seal of a `seal-create` request.
    pub seal: Option<SealSpec>,
}

impl Submission {
    /// A `renew` request for the seal certificate `serial`, whose key is in
    /// the key store (no CSR).
    pub fn renew_seal(serial: &str) -> Self {
        Self {
            kind: RequestKind::Renew,
            profile: None,
            subject: vec![],
            names: vec![],
            csr: None,
            target: Some(serial.to_owned()),
            reason: None,
            evidence: None,
            seal: None,
        }
    }

    /// A `seal-create` request for `seal`.
    pub fn create_seal(seal: SealSpec) -> Self {
        Self {
            kind: RequestKind::CreateSeal,
            profile: None,
            subject: vec![],
            names: vec![],
            csr: None,
            target: None,
            reason: None,
            evidence: None,
            seal: Some(seal),
        }
    }
}

/// The stored form of a submission (no evidence, no ID number).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestBody {
    #[serde(default)]
    pub subject: Vec<(String, String)>,
    #[serde(default)]
    pub names: Vec<String>,
    pub csr: Option<String>,
    pub target: Option<String>,
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealSpec>,
}

/// A request with its decisions, for display.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    pub id: i64,
    pub kind: String,
    pub profile: Option<String>,
    pub status: String,
    pub subject: Vec<(String, String)>,
    pub names: Vec<String>,
    pub target: Option<String>,
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealSpec>,
    pub evidence: Evidence,
    pub approvals_required: i64,
    pub approver_role: String,
    pub submitted_by: String,
    pub submitted_at: i64,
    pub decided_at: Option<i64>,
    pub outcome: Option<serde_json::Value>,
    pub decisions: Vec<DecisionRow>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Approve,
    Reject,
}

/// A key handed over once: a PKCS#12 file and the one-time secret that
/// opens it. Neither is stored.
pub struct Delivery {
    pub certificate_serial: String,
    pub pkcs12: Vec<u8>,
    pub secret: String,
}

/// What a decision led to.
pub struct DecisionResult {
    pub view: RequestView,
    pub delivery: Option<Delivery>,
    /// The CA whose CRL must be republished (after a revocation).
    pub revoked: Option<(String, String)>,
}

/// An authenticated officer acting on requests.
#[derive(Clone, Copy, Debug)]
pub struct Officer<'a> {
    pub name: &'a str,
    pub role: Role,
    pub source: &'a str,
}

#[derive(Clone, Debug)]
pub struct Requests {
    db: Database,
    audit: AuditLog,
    registration: Registration,
    kmc: KeyManagementCenter,
    store: Arc<dyn KeyStore>,
    pii_key: String,
    seals: Option<Arc<dyn SealFactory>>,
}

impl Requests {
    pub fn new(
        db: Database,
        audit: AuditLog,
        registration: Registration,
        kmc: KeyManagementCenter,
        store: Arc<dyn KeyStore>,
        pii_key: String,
    ) -> Self {
        Self {
            db,
            audit,
            registration,
            kmc,
            store,
            pii_key,
            seals: None,
        }
    }

    /// Lets approved `seal-create` requests be carried out by `factory`;
    /// without one such requests are refused at submission.
    pub fn with_seal_factory(mut self, factory: Arc<dyn SealFactory>) -> Self {
        self.seals = Some(factory);
        self
    }

    fn seal_factory(&self) -> Result<&Arc<dyn SealFactory>, Error> {
        self.seals.as_ref().ok_or_else(|| {
            Error::InvalidRequest("this instance has no seal service to create seals".into())
        })
    }

    /// Checks and records a submission; returns the request id.
    pub async fn submit(&self, officer: Officer<'_>, s: Submission) -> Result<i64, Error> {
        // A seal's keeper asks for its renewal too: without a CSR only a
        // seal's certificate is renewed (check_submission).
        let seal_renewal = s.kind == RequestKind::Renew && s.csr.is_none();
        if !(s.kind.may_submit(officer.role) || seal_renewal && officer.role == Role::SealAdmin) {
            return Err(Error::Forbidden(format!(
                "role {} may not submit {} requests",
                officer.role, s.kind
            )));
        }
        let (profile, approvals) = self.check_submission(&s).await?;
        let evidence_input = s.evidence.clone().unwrap_or_default();
        if s.kind == RequestKind::EnrollOfficial && evidence_input.document.is_empty() {
            return Err(Error::InvalidRequest(
                "enrolling an official needs the identity document the officer checked".into(),
            ));
        }
        let (evidence, sealed) = self.evidence(evidence_input)?;
        // A seal's subject is its organization and name, and a request
        // about a certificate (renew, revoke, ...) shows its subject: the
        // approvers see whom they decide on, not only a serial.
        let subject = match (&s.seal, &s.target) {
            (Some(seal), _) if s.kind == RequestKind::CreateSeal => vec![
                ("O".to_owned(), seal.organization.trim().to_owned()),
                ("CN".to_owned(), seal.name.trim().to_owned()),
            ],
            (_, Some(target)) if s.subject.is_empty() => self.subject_of(target).await?,
            _ => s.subject,
        };
        let body = RequestBody {
            subject,
            names: s.names,
            csr: s.csr,
            target: s.target.as_deref().map(normalize_serial).transpose()?,
            reason: s.reason,
            seal: s.seal.filter(|_| s.kind == RequestKind::CreateSeal),
        };
        let body_json = serde_json::to_string(&body).map_err(|e| Error::Encoding(e.to_string()))?;
        let evidence_json =
            serde_json::to_string(&evidence).map_err(|e| Error::Encoding(e.to_string()))?;
        let id = self
            .db
            .insert_request(&NewRequest {
                kind: s.kind.as_str(),
                profile: profile.as_deref(),
                body: &body_json,
                evidence: &evidence_json,
                id_number_sealed: sealed.as_deref(),
                approvals_required: approvals,
                approver_role: s.kind.approver().as_str(),
                submitted_by: officer.name,
                submitted_at: now(),
            })
            .await?;
        self.audit
            .append(AuditEvent {
                actor: &actor(officer),
                action: "request.submit",
                target: &format!("request:{id}"),
                source: officer.source,
                detail: serde_json::json!({
                    "kind": s.kind.as_str(),
                    "profile": profile,
                    "subject": body.subject,
                    "target": body.target,
                    "approvals_required": approvals,
                    "evidence": evidence,
                }),
            })
            .await?;
        Ok(id)
    }

    /// Validates a submission as far as can be done before approval, so
    /// that officers approve something that can be carried out. Returns
    /// the profile and the number of approvals it needs.
    async fn check_submission(&self, s: &Submission) -> Result<(Option<String>, i64), Error> {
        use RequestKind::*;
        match s.kind {
            CreateSeal => {
                let spec = s.seal.as_ref().ok_or_else(|| {
                    Error::InvalidRequest("a seal-create request describes the seal".into())
                })?;
                if s.csr.is_some() {
                    return Err(Error::InvalidRequest(
                        "a seal-create request takes no CSR: the key store generates the seal's key (use seal-certificate for a key held elsewhere)".into(),
                    ));
                }
                self.seal_factory()?.check(spec).await?;
                let approvals = self.registration.profiles().get("seal")?.approvals;
                Ok((Some("seal".into()), i64::from(approvals)))
            }
            EnrollOfficial | EnrollSystem | SealCertificate => {
                let allowed = s.kind.profiles();
                let profile = s.profile.clone().unwrap_or_else(|| allowed[0].to_owned());
                if !allowed.contains(&profile.as_str()) {
                    return Err(Error::InvalidRequest(format!(
                        "a {} request uses profile {}",
                        s.kind,
                        allowed.join(" or ")
                    )));
                }
                let csr = s.csr.as_deref().ok_or_else(|| {
                    Error::InvalidRequest(
                        "a CSR (the applicant's proof of possession) is required".into(),
                    )
                })?;
                let request = subject_request(&s.subject, &s.names, csr.as_bytes())?;
                self.registration.check(&request, &profile, None).await?;
                // The encryption certificate must pass its profile too; the
                // signing key stands in for the KMC's key of the same kind.
                if s.kind == EnrollOfficial
                    && KeyManagementCenter::encryption_algorithm_for(request.key_algorithm)
                        == request.key_algorithm
                {
                    self.registration
                        .check(&request, "official-enc", None)
                        .await?;
                }
                let approvals = self.registration.profiles().get(&profile)?.approvals;
                Ok((Some(profile), i64::from(approvals)))
            }
            Renew | Rekey | Revoke | KeyRecovery => {
                let target = s.target.as_deref().ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "a {} request names the target certificate serial",
                        s.kind
                    ))
                })?;
                let record = self
                    .db
                    .certificate(&normalize_serial(target)?)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("certificate {target}")))?;
                let profile = self.registration.profiles().get(&record.profile)?;
                match s.kind {
                    Revoke => {
                        let reason: RevocationReason =
                            s.reason.as_deref().unwrap_or("unspecified").parse()?;
                        if reason == RevocationReason::CertificateHold {
                            return Err(Error::InvalidRequest(
                                "hold a certificate directly; a request revokes".into(),
                            ));
                        }
                        if !matches!(record.status.as_str(), "issued" | "hold") {
                            return Err(Error::Conflict(format!(
                                "certificate {} is {}",
                                record.serial, record.status
                            )));
                        }
                        Ok((Some(record.profile.clone()), i64::from(profile.approvals)))
                    }
                    KeyRecovery => {
                        if self.db.escrowed_key(&record.serial).await?.is_none() {
                            return Err(Error::NotFound(format!(
                                "certificate {} has no escrowed key",
                                record.serial
                            )));
                        }
                        Ok((Some(record.profile.clone()), 2))
                    }
                    _ => {
                        if record.status != "issued" {
                            return Err(Error::Conflict(format!(
                                "certificate {} is {}",
                                record.serial, record.status
                            )));
                        }
                        if record.profile == "official-enc" {
                            return Err(Error::InvalidRequest("encryption certificates are renewed with their signing certificate by a new enrollment".into()));
                        }
                        if s.kind == Renew && s.csr.is_none() && record.profile == "seal" {
                            // A seal's key is in the key store: no CSR.
                            self.seal_factory()?.check_renewal(&record.serial).await?;
                            return Ok((
                                Some(record.profile.clone()),
                                i64::from(profile.approvals),
                            ));
                        }
                        let csr = s
                            .csr
                            .as_deref()
                            .ok_or_else(|| Error::InvalidRequest("a CSR is required".into()))?;
                        let request =
                            self.renewal(&record.der.unwrap_or_default(), s.kind, csr.as_bytes())?;
                        self.registration
                            .check(&request, &record.profile, Some(&record.issuer))
                            .await?;
                        Ok((Some(record.profile.clone()), i64::from(profile.approvals)))
                    }
                }
            }
        }
    }

    /// The subject attributes of the certificate `serial`; none if it is
    /// not (yet) signed.
    async fn subject_of(&self, serial: &str) -> Result<Vec<(String, String)>, Error> {
        let record = self.db.certificate(&normalize_serial(serial)?).await?;
        match record.and_then(|r| r.der) {
            Some(der) => {
                let cert = Certificate::from_der(&der).map_err(der_err)?;
                Ok(name_attributes(&cert.tbs_certificate.subject)?
                    .into_iter()
                    .map(|(oid, value)| (crate::profile::attribute_name(oid), value))
                    .collect())
            }
            None => Ok(vec![]),
        }
    }

    /// The subject of a renewal or rekey: the old certificate's subject and
    /// names with the CSR's key, which must be the old key (renew) or a
    /// new one (rekey).
    fn renewal(
        &self,
        old_der: &[u8],
        kind: RequestKind,
        csr: &[u8],
    ) -> Result<SubjectRequest, Error> {
        let old = Certificate::from_der(old_der).map_err(der_err)?;
        let csr = parse_and_verify(csr)?;
        let same_key = csr.public_key == old.tbs_certificate.subject_public_key_info;
        match (kind, same_key) {
            (RequestKind::Renew, false) => {
                return Err(Error::InvalidRequest(
                    "a renewal keeps the key; the CSR has another key (use rekey)".into(),
                ))
            }
            (RequestKind::Rekey, true) => {
                return Err(Error::InvalidRequest(
                    "a rekey needs a new key; the CSR has the old one".into(),
                ))
            }
            _ => {}
        }
        let names = old
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
            .map(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).map(|s| s.0))
            .transpose()
            .map_err(der_err)?
            .unwrap_or_default();
        Ok(SubjectRequest {
            subject: name_attributes(&old.tbs_certificate.subject)?,
            names,
            public_key: csr.public_key,
            key_algorithm: csr.key_algorithm,
        })
    }

    fn evidence(&self, input: EvidenceInput) -> Result<(Evidence, Option<Vec<u8>>), Error> {
        if input.note.chars().count() > 500 {
            return Err(Error::InvalidRequest(
                "the evidence note is limited to 500 characters".into(),
            ));
        }
        let document = input.document.trim().to_owned();
        if !document.is_empty()
            && !["resident-id", "passport", "business-license", "other"]
                .contains(&document.as_str())
        {
            return Err(Error::InvalidRequest(format!(
                "unknown identity document {document:?}; use resident-id, passport, business-license or other"
            )));
        }
        let id_number = input
            .id_number
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty());
        let sealed = match &id_number {
            Some(n) => {
                check_id_number(&document, n)?;
                Some(crate::kmc::seal_creating(
                    self.store.as_ref(),
                    &self.pii_key,
                    n.as_bytes(),
                )?)
            }
            None => None,
        };
        Ok((
            Evidence {
                document,
                id_number_masked: id_number.as_deref().map(mask_id_number),
                note: input.note,
            },
            sealed,
        ))
    }

    pub async fn view(&self, id: i64) -> Result<RequestView, Error> {
        let row = self
            .db
            .request(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        let decisions = self.db.decisions(id).await?;
        view_of(row, decisions)
    }

    pub async fn list(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<RequestView>, Error> {
        let rows = self.db.requests(status, limit, offset).await?;
        rows.into_iter().map(|r| view_of(r, Vec::new())).collect()
    }

    /// The full ID number of a request's applicant, for an `ra-admin`
    /// only; every disclosure is audited.
    pub async fn reveal_id_number(&self, officer: Officer<'_>, id: i64) -> Result<String, Error> {
        if officer.role != Role::RaAdmin {
            return Err(Error::Forbidden(
                "only an ra-admin may see a full ID number".into(),
            ));
        }
        let row = self
            .db
            .request(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        let sealed = row
            .id_number_sealed
            .ok_or_else(|| Error::NotFound(format!("request {id} has no ID number")))?;
        let plain = self.store.unwrap(&self.pii_key, &sealed)?;
        let number = String::from_utf8(plain.to_vec())
            .map_err(|_| Error::Crypto("sealed ID number is not text".into()))?;
        self.audit
            .append(AuditEvent {
                actor: &actor(officer),
                action: "request.reveal-id-number",
                target: &format!("request:{id}"),
                source: officer.source,
                detail: serde_json::json!({}),
            })
            .await?;
        Ok(number)
    }

    /// An officer approves or rejects request `id`. The approval that
    /// completes the count carries the request out.
    pub async fn decide(
        &self,
        officer: Officer<'_>,
        id: i64,
        decision: Decision,
    ) -> Result<DecisionResult, Error> {
        let row = self
            .db
            .request(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("request {id}")))?;
        let approver: Role = row.approver_role.parse()?;
        if !may_decide(officer.role, approver) {
            return Err(Error::Forbidden(format!(
                "request {id} is decided by {approver} officers, not {}",
                officer.role
            )));
        }
        if row.status != "submitted" {
            return Err(Error::Conflict(format!(
                "request {id} is {}, not awaiting decisions",
                row.status
            )));
        }
        if row.submitted_by == officer.name {
            return Err(Error::Forbidden(format!(
                "request {id} was submitted by {}; another officer must decide it",
                officer.name
            )));
        }
        let verb = match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        };
        let at = now();
        if !self.db.insert_decision(id, officer.name, verb, at).await? {
            return Err(Error::Conflict(format!(
                "{} has already decided on request {id}; a second approval must come from another officer",
                officer.name
            )));
        }
        let target = format!("request:{id}");
        self.audit
            .append(AuditEvent {
                actor: &actor(officer),
                action: &format!("request.{verb}"),
                target: &target,
                source: officer.source,
                detail: serde_json::json!({ "kind": row.kind }),
            })
            .await?;
        let mut delivery = None;
        let mut revoked = None;
        match decision {
            Decision::Reject => {
                self.db
                    .transition_request(id, "submitted", "rejected", None, at)
                    .await?;
            }
            Decision::Approve => {
                let approvals = self
                    .db
                    .decisions(id)
                    .await?
                    .iter()
                    .filter(|d| d.decision == "approve")
                    .count() as i64;
                if approvals >= row.approvals_required
                    && self
                        .db
                        .transition_request(id, "submitted", "approved", None, at)
                        .await?
                {
                    let requester = Requester {
                        actor: &actor(officer),
                        source: officer.source,
                    };
                    match self.carry_out(&row, requester).await {
                        Ok(done) => {
                            let outcome = serde_json::json!({ "certificates": done.serials, "revoked": done.revoked.as_ref().map(|r| &r.1) });
                            self.db
                                .transition_request(
                                    id,
                                    "approved",
                                    "issued",
                                    Some(&outcome.to_string()),
                                    now(),
                                )
                                .await?;
                            self.audit
                                .append(AuditEvent {
                                    actor: requester.actor,
                                    action: "request.complete",
                                    target: &target,
                                    source: officer.source,
                                    detail: outcome,
                                })
                                .await?;
                            delivery = done.delivery;
                            revoked = done.revoked;
                        }
                        Err(e) => {
                            let outcome = serde_json::json!({ "error": e.to_string() });
                            self.db
                                .transition_request(
                                    id,
                                    "approved",
                                    "failed",
                                    Some(&outcome.to_string()),
                                    now(),
                                )
                                .await?;
                            self.audit
                                .append(AuditEvent {
                                    actor: requester.actor,
                                    action: "request.fail",
                                    target: &target,
                                    source: officer.source,
                                    detail: outcome,
                                })
                                .await?;
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(DecisionResult {
            view: self.view(id).await?,
            delivery,
            revoked,
        })
    }

    async fn carry_out(
        &self,
        row: &RequestRow,
        requester: Requester<'_>,
    ) -> Result<CarriedOut, Error> {
        let kind: RequestKind = row.kind.parse()?;
        let body: RequestBody =
            serde_json::from_str(&row.body).map_err(|e| Error::Encoding(e.to_string()))?;
        let profile = row.profile.as_deref().unwrap_or_default();
        let mut out = CarriedOut::default();
        match kind {
            RequestKind::EnrollOfficial
            | RequestKind::EnrollSystem
            | RequestKind::SealCertificate => {
                let csr = body.csr.as_deref().unwrap_or_default();
                let request = subject_request(&body.subject, &body.names, csr.as_bytes())?;
                let cert = self
                    .registration
                    .issue(&request, profile, None, requester)
                    .await?;
                out.serials.push(serial_of(&cert));
                if kind == RequestKind::EnrollOfficial {
                    let key = self
                        .kmc
                        .generate(KeyManagementCenter::encryption_algorithm_for(
                            request.key_algorithm,
                        ))?;
                    let enc_request = SubjectRequest {
                        public_key: key.public_key.clone(),
                        key_algorithm: key.algorithm,
                        ..request
                    };
                    let enc = self
                        .registration
                        .issue(&enc_request, "official-enc", None, requester)
                        .await?;
                    let enc_serial = serial_of(&enc);
                    self.kmc.escrow(&enc_serial, &key, now()).await?;
                    self.audit
                        .append(AuditEvent {
                            actor: requester.actor,
                            action: "kmc.escrow",
                            target: &enc_serial,
                            source: requester.source,
                            detail: serde_json::json!({ "algorithm": key.algorithm.as_str(), "request": row.id }),
                        })
                        .await?;
                    out.delivery = Some(self.deliver(&enc, &key.pkcs8).await?);
                    out.serials.push(enc_serial);
                }
            }
            RequestKind::CreateSeal => {
                let spec = body.seal.as_ref().ok_or_else(|| {
                    Error::InvalidRequest(format!("request {} describes no seal", row.id))
                })?;
                let serial = self.seal_factory()?.create(spec, requester).await?;
                out.serials.push(serial);
            }
            RequestKind::Renew if body.csr.is_none() => {
                let target = body.target.as_deref().unwrap_or_default();
                let serial = self.seal_factory()?.renew(target, requester).await?;
                out.serials.push(serial);
            }
            RequestKind::Renew | RequestKind::Rekey => {
                let target = body.target.as_deref().unwrap_or_default();
                let record = self
                    .db
                    .certificate(target)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("certificate {target}")))?;
                let request = self.renewal(
                    &record.der.unwrap_or_default(),
                    kind,
                    body.csr.as_deref().unwrap_or_default().as_bytes(),
                )?;
                let cert = self
                    .registration
                    .issue(&request, &record.profile, Some(&record.issuer), requester)
                    .await?;
                out.serials.push(serial_of(&cert));
            }
            RequestKind::Revoke => {
                let target = body.target.clone().unwrap_or_default();
                let reason: RevocationReason =
                    body.reason.as_deref().unwrap_or("unspecified").parse()?;
                let ca = Revocations::new(self.db.clone(), self.audit.clone())
                    .revoke(&target, reason, None, requester)
                    .await?;
                out.revoked = Some((ca, target));
            }
            RequestKind::KeyRecovery => {
                let target = body.target.as_deref().unwrap_or_default();
                let record = self
                    .db
                    .certificate(target)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("certificate {target}")))?;
                let cert =
                    Certificate::from_der(&record.der.unwrap_or_default()).map_err(der_err)?;
                let pkcs8 = self.kmc.recover(&cert).await?;
                self.audit
                    .append(AuditEvent {
                        actor: requester.actor,
                        action: "kmc.recover",
                        target,
                        source: requester.source,
                        detail: serde_json::json!({ "request": row.id, "reason": body.reason }),
                    })
                    .await?;
                out.delivery = Some(self.deliver(&cert, &pkcs8).await?);
            }
        }
        Ok(out)
    }

    async fn deliver(&self, cert: &Certificate, pkcs8: &[u8]) -> Result<Delivery, Error> {
        let issuer_name = cert.tbs_certificate.issuer.clone();
        let mut chain = vec![cert.to_der().map_err(der_err)?];
        for a in self.db.authorities().await? {
            let c = Certificate::from_der(&a.certificate).map_err(der_err)?;
            if c.tbs_certificate.subject == issuer_name {
                chain.push(a.certificate);
                break;
            }
        }
        let secret = one_time_secret()?;
        let serial = serial_of(cert);
        Ok(Delivery {
            pkcs12: pkcs12(&format!("kexin-{serial}"), pkcs8, &chain, &secret)?,
            certificate_serial: serial,
            secret,
        })
    }
}

#[derive(Default)]
struct CarriedOut {
    serials: Vec<String>,
    delivery: Option<Delivery>,
    revoked: Option<(String, String)>,
}

fn view_of(row: RequestRow, decisions: Vec<DecisionRow>) -> Result<RequestView, Error> {
    let body: RequestBody =
        serde_json::from_str(&row.body).map_err(|e| Error::Encoding(e.to_string()))?;
    let evidence: Evidence =
        serde_json::from_str(&row.evidence).map_err(|e| Error::Encoding(e.to_string()))?;
    Ok(RequestView {
        id: row.id,
        kind: row.kind,
        profile: row.profile,
        status: row.status,
        subject: body.subject,
        names: body.names,
        target: body.target,
        reason: body.reason,
        seal: body.seal,
        evidence,
        approvals_required: row.approvals_required,
        approver_role: row.approver_role,
        submitted_by: row.submitted_by,
        submitted_at: row.submitted_at,
        decided_at: row.decided_at,
        outcome: row
            .outcome
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok()),
        decisions,
    })
}

/// The officer-recorded subject with the CSR's (verified) key. The CSR's
/// own subject is ignored: the officer, not the applicant, vouches for it.
fn subject_request(
    subject: &[(String, String)],
    names: &[String],
    csr: &[u8],
) -> Result<SubjectRequest, Error> {
    let csr = parse_and_verify(csr)?;
    let subject = subject
        .iter()
        .map(|(k, v)| {
            let v = v.trim();
            if v.is_empty() {
                return Err(Error::InvalidRequest(format!(
                    "subject attribute {k} is empty"
                )));
            }
            Ok((
                attribute_oid(k).map_err(Error::InvalidRequest)?,
                v.to_owned(),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let names = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n.contains('@') {
                der::asn1::Ia5String::new(n)
                    .map(GeneralName::Rfc822Name)
                    .map_err(|_| Error::InvalidName(format!("{n:?} is not an email address")))
            } else {
                general_name(n)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SubjectRequest {
        subject,
        names,
        public_key: csr.public_key,
        key_algorithm: csr.key_algorithm,
    })
}

fn serial_of(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate.serial_number.as_bytes())
}

fn actor(officer: Officer<'_>) -> String {
    format!("principal:{}", officer.name)
}

/// Checks an ID number's form; a resident ID (GB 11643) must carry a
/// correct check digit, which catches almost every typing error.
fn check_id_number(document: &str, n: &str) -> Result<(), Error> {
    let ok = match document {
        "resident-id" => is_valid_resident_id(n),
        _ => {
            (4..=32).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "the {document} number is not valid"
        )))
    }
}

pub fn is_valid_resident_id(n: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let b = n.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize] == b[17]
}

/// Shows the first three and last two characters, enough for an officer
/// to match a document in hand and too little to reuse.
pub fn mask_id_number(n: &str) -> String {
    let chars: Vec<char> = n.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 3 || i >= chars.len() - 2 {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_id_check_digit() {
        assert!(is_valid_resident_id("11010519491231002X"));
        assert!(!is_valid_resident_id("110105194912310021"));
        assert!(!is_valid_resident_id("11010519491231002"));
        assert_eq!(mask_id_number("11010519491231002X"), "110*************2X");
    }

    #[test]
    fn who_decides() {
        assert!(may_decide(Role::RaAdmin, Role::RaOfficer));
        assert!(!may_decide(Role::RaAdmin, Role::KmcOfficer));
        assert!(!may_decide(Role::Auditor, Role::RaOfficer));
        assert!(!RequestKind::KeyRecovery.may_submit(Role::Auditor));
        assert!(!RequestKind::EnrollOfficial.may_submit(Role::KmcOfficer));
    }
}
