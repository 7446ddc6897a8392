//! Issuance: lint, record, sign, complete — in that order.
//!
//! A certificate is recorded as pending (with the exact bytes to be signed)
//! before its signature exists, and completed after; the requester gets it
//! only once the completion is on disk. A crash between the two leaves a
//! pending row: the serial is burnt and can never be reused, and nothing
//! signed is lost without a trace.
//!
//! Issuances that arrive together go through one round: one transaction
//! records them all as pending, the CA keys sign them, and one transaction
//! (one flush to disk) completes them with their audit entries. A
//! certificate so costs one round's latency instead of two flushes.

use std::sync::Arc;
use std::time::SystemTime;

use der::Encode;
use futures_util::future::join_all;
use kexin_hsm::{KeyStore, SignatureAlgorithm};
use x509_cert::certificate::TbsCertificate;
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::audit::{AuditEvent, NewEntry};
use crate::certificate::{
    assemble_certificate, der_err, serial_hex, tbs_certificate, time_ordered_serial, unix_seconds,
    CertificateTemplate,
};
use crate::lint::{lint, IssuerView};
use crate::storage::group_commit::{BatchWriter, GroupCommit};
use crate::storage::{Database, IssuanceJournal, PendingCertificate, SignedCertificate};
use crate::Error;

/// A CA that can sign: its certificate and where its key lives.
#[derive(Clone, Debug)]
pub struct SigningAuthority {
    pub name: String,
    pub key_label: String,
    pub signature: SignatureAlgorithm,
    pub certificate: Certificate,
}

/// Who signs a certificate being issued.
pub enum Signer<'a> {
    Authority(&'a SigningAuthority),
    /// A root signing its own certificate.
    SelfSigned {
        ca_name: &'a str,
        key_label: &'a str,
        signature: SignatureAlgorithm,
    },
}

/// Who asked, for the audit trail.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub actor: &'a str,
    pub source: &'a str,
}

/// Issues certificates. Clones share one journal: keep one `Issuer` per
/// process, so that all its issuances share rounds.
#[derive(Clone, Debug)]
pub struct Issuer {
    rounds: Arc<GroupCommit<IssuanceRounds>>,
}

impl Issuer {
    pub fn new(db: Database, store: Arc<dyn KeyStore>) -> Self {
        Self {
            rounds: Arc::new(GroupCommit::new(IssuanceRounds {
                journal: db.issuance_journal(),
                store,
            })),
        }
    }

    pub async fn issue(
        &self,
        signer: Signer<'_>,
        profile: &str,
        template: &CertificateTemplate,
        requester: Requester<'_>,
    ) -> Result<Certificate, Error> {
        let (ca_name, key_label, signature, issuer_name, issuer_tbs): (_, _, _, Name, _) =
            match &signer {
                Signer::Authority(a) => (
                    a.name.as_str(),
                    a.key_label.as_str(),
                    a.signature,
                    a.certificate.tbs_certificate.subject.clone(),
                    Some(&a.certificate.tbs_certificate),
                ),
                Signer::SelfSigned {
                    ca_name,
                    key_label,
                    signature,
                } => (
                    *ca_name,
                    *key_label,
                    *signature,
                    template.subject.clone(),
                    None,
                ),
            };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let serial = time_ordered_serial()?;
            let tbs = tbs_certificate(template, &serial, &issuer_name, signature)?;
            let problems = lint(&tbs, issuer_tbs.map(|tbs| IssuerView { tbs }));
            if !problems.is_empty() {
                return Err(Error::Lint(problems));
            }
            let serial = hex::encode(serial);
            let subject = tbs.subject.to_string();
            let job = IssuanceJob {
                pending: PendingCertificate {
                    serial: serial.clone(),
                    issuer: ca_name.to_owned(),
                    profile: profile.to_owned(),
                    subject: subject.clone(),
                    not_before: unix_seconds(&tbs.validity.not_before),
                    not_after: unix_seconds(&tbs.validity.not_after),
                    tbs: tbs.to_der().map_err(der_err)?,
                    requested_at: now(),
                },
                tbs,
                key_label: key_label.to_owned(),
                signature,
                audit: AuditEvent {
                    actor: requester.actor,
                    action: "certificate.issue",
                    target: &serial,
                    source: requester.source,
                    detail: serde_json::json!({
                        "issuer": ca_name,
                        "profile": profile,
                        "subject": subject,
                    }),
                }
                .into(),
            };
            match self.rounds.submit(job).await {
                Err(Error::DuplicateSerial(_)) if attempt < 3 => continue,
                outcome => return outcome,
            }
        }
    }
}

/// One certificate on its way through a round.
struct IssuanceJob {
    pending: PendingCertificate,
    tbs: TbsCertificate,
    key_label: String,
    signature: SignatureAlgorithm,
    audit: NewEntry,
}

/// Records, signs and completes the issuances that arrived together.
struct IssuanceRounds {
    journal: IssuanceJournal,
    store: Arc<dyn KeyStore>,
}

impl BatchWriter for IssuanceRounds {
    type Item = IssuanceJob;
    type Output = Certificate;

    async fn write(&self, jobs: &[IssuanceJob]) -> Result<Vec<Result<Certificate, Error>>, Error> {
        let mut session = self.journal.open().await?;
        let pending = jobs.iter().map(|j| j.pending.clone()).collect();
        if let Err(e) = session.record_pending(pending).await {
            // Nothing was recorded: the jobs may be tried again.
            session.discard();
            return Err(e);
        }
        let signatures = join_all(jobs.iter().map(|job| {
            kexin_hsm::sign_async(
                &self.store,
                &job.key_label,
                job.signature,
                job.pending.tbs.clone(),
            )
        }))
        .await;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut signed = Vec::with_capacity(jobs.len());
        let mut failed = Vec::new();
        for (job, signature) in jobs.iter().zip(signatures) {
            let certificate = signature
                .map_err(Error::from)
                .and_then(|value| assemble_certificate(job.tbs.clone(), job.signature, &value))
                .and_then(|cert| Ok((cert.to_der().map_err(der_err)?, cert)));
            match certificate {
                Ok((der, cert)) => {
                    debug_assert_eq!(
                        job.pending.serial,
                        serial_hex(&cert.tbs_certificate.serial_number)
                    );
                    signed.push(SignedCertificate {
                        serial: job.pending.serial.clone(),
                        der,
                        issued_at: now(),
                        audit: job.audit.clone(),
                    });
                    outcomes.push(Ok(cert));
                }
                Err(e) => {
                    failed.push(job.pending.serial.clone());
                    outcomes.push(Err(e));
                }
            }
        }
        if let Err(e) = session.record_outcomes(signed, failed).await {
            // The pending records stay, their serials burnt, as after a
            // crash; nothing signed is handed out. Not retried: the serials
            // are taken.
            session.discard();
            let message = format!("completing the issuance failed: {e}");
            return Ok(jobs
                .iter()
                .map(|_| Err(Error::Storage(message.clone())))
                .collect());
        }
        Ok(outcomes)
    }
}

/// Unix seconds now, the time unit of every stored timestamp.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
