//! Issuance: lint, record, sign, complete — in that order.
//!
//! A certificate is recorded as pending (with the exact bytes to be signed)
//! before its signature exists, and completed after. A crash between the two
//! leaves a pending row: the serial is burnt and can never be reused, and
//! nothing signed is lost without a trace.

use std::sync::Arc;
use std::time::SystemTime;

use der::Encode;
use kexin_hsm::{KeyStore, SignatureAlgorithm};
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::audit::AuditEvent;
use crate::certificate::{
    assemble_certificate, der_err, random_serial, serial_hex, tbs_certificate, unix_seconds,
    CertificateTemplate,
};
use crate::lint::{lint, IssuerView};
use crate::storage::{Database, PendingCertificate};
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

#[derive(Clone, Debug)]
pub struct Issuer {
    db: Database,
    store: Arc<dyn KeyStore>,
}

impl Issuer {
    pub fn new(db: Database, store: Arc<dyn KeyStore>) -> Self {
        Self { db, store }
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
        let (serial, tbs, tbs_der) = loop {
            attempt += 1;
            let serial = random_serial()?;
            let tbs = tbs_certificate(template, &serial, &issuer_name, signature)?;
            let problems = lint(&tbs, issuer_tbs.map(|tbs| IssuerView { tbs }));
            if !problems.is_empty() {
                return Err(Error::Lint(problems));
            }
            let serial = hex::encode(&serial);
            let tbs_der = tbs.to_der().map_err(der_err)?;
            let pending = PendingCertificate {
                serial: &serial,
                issuer: ca_name,
                profile,
                subject: &tbs.subject.to_string(),
                not_before: unix_seconds(&tbs.validity.not_before),
                not_after: unix_seconds(&tbs.validity.not_after),
                tbs: &tbs_der,
                requested_at: now(),
            };
            match self.db.insert_pending(&pending).await {
                Ok(()) => break (serial, tbs, tbs_der),
                Err(Error::DuplicateSerial(_)) if attempt < 3 => continue,
                Err(e) => return Err(e),
            }
        };
        let signed = kexin_hsm::sign_async(&self.store, key_label, signature, tbs_der)
            .await
            .map_err(Error::from)
            .and_then(|value| assemble_certificate(tbs, signature, &value));
        let cert = match signed {
            Ok(cert) => cert,
            Err(e) => {
                self.db.mark_failed(&serial).await?;
                return Err(e);
            }
        };
        let der = cert.to_der().map_err(der_err)?;
        debug_assert_eq!(serial, serial_hex(&cert.tbs_certificate.serial_number));
        let event = AuditEvent {
            actor: requester.actor,
            action: "certificate.issue",
            target: &serial,
            source: requester.source,
            detail: serde_json::json!({
                    "issuer": ca_name,
                    "profile": profile,
                    "subject": cert.tbs_certificate.subject.to_string(),
            }),
        };
        self.db.complete_issued(&serial, &der, now(), event).await?;
        Ok(cert)
    }
}

/// Unix seconds now, the time unit of every stored timestamp.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
