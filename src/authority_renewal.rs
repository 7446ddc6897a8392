//! Renewing a CA's own certificate (`kexin ca renew`), and taking the
//! renewal up: the CA certificates a node serves and checks chains
//! against, and the files of a data directory that carry them.
//!
//! The renewed certificate is in the database at once. A running node
//! takes it up at its next check of its service certificates (within a
//! minute, [`crate::service_certificates`]) and at start, swapping its
//! [`AuthorityCertificates`]; [`take_up`] brings its files up to date:
//! `ca/{name}.pem`, for operators and relying parties, and the CA
//! certificates in `https.chain_file`. Until then a node serves the
//! previous certificate, which stays valid to its own end: both have the
//! same name and key, so either chains what the CA issued.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use der::{Decode, Encode};
use kexin_ca::certificate::certificate_pem;
use kexin_ca::hierarchy::RenewedAuthority;
use kexin_ca::storage::AuthorityRecord;
use x509_cert::Certificate;

use crate::instance::{replace_file, Instance};

/// Renews the certificate of the CA `name` for `days` (its present
/// lifetime if absent), then brings this node's files up to date.
pub async fn renew(
    instance: &Instance,
    name: &str,
    days: Option<u32>,
) -> anyhow::Result<RenewedAuthority> {
    let renewed = kexin_ca::hierarchy::renew_authority(
        &instance.db,
        &instance.issuer(),
        &instance.store,
        &instance.audit,
        name,
        days.map(|d| Duration::from_secs(u64::from(d) * 86400)),
        crate::CLI,
    )
    .await?;
    instance.checkpoint_audit().await?;
    take_up(instance).await?;
    Ok(renewed)
}

/// Writes the CA certificates of the database where this data directory
/// holds other ones: `ca/{name}.pem`, and in `https.chain_file` each CA
/// certificate with the name and key of one of ours (a chain from another
/// CA is left as it is). Returns the files replaced.
pub async fn take_up(instance: &Instance) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut authorities = Vec::new();
    for record in instance.db.authorities().await? {
        authorities.push((record.name, Certificate::from_der(&record.certificate)?));
    }
    let mut replaced = Vec::new();
    let ca_dir = instance.path("ca".as_ref());
    std::fs::create_dir_all(&ca_dir)?;
    for (name, certificate) in &authorities {
        let path = ca_dir.join(format!("{name}.pem"));
        let pem = certificate_pem(&certificate.to_der()?);
        if std::fs::read(&path).ok().as_deref() != Some(pem.as_bytes()) {
            replace_file(&path, pem.as_bytes())?;
            replaced.push(path);
        }
    }

    // A chain file that cannot be read is left for `kexin serve` to report.
    let Ok(chain) = crate::https_certificate::read_chain(instance) else {
        return Ok(replaced);
    };
    let path = instance.path(&instance.config.https.chain_file);
    let mut changed = false;
    let mut updated = Vec::with_capacity(chain.len());
    for der in chain {
        let cert = Certificate::from_der(&der)?;
        let ours = authorities.iter().find(|(_, a)| {
            a.tbs_certificate.subject == cert.tbs_certificate.subject
                && a.tbs_certificate.subject_public_key_info
                    == cert.tbs_certificate.subject_public_key_info
        });
        match ours {
            Some((_, a)) if *a != cert => {
                updated.push(a.to_der()?);
                changed = true;
            }
            _ => updated.push(der.to_vec()),
        }
    }
    if changed {
        let pem: String = updated.iter().map(|der| certificate_pem(der)).collect();
        replace_file(&path, pem.as_bytes())?;
        replaced.push(path);
    }
    Ok(replaced)
}

/// The CA certificates a node serves, as the database had them at one
/// moment: DER by name, the same parsed, and as a
/// [`kexin_seal::verify::Trust`] (self-signed ones are roots, the others
/// intermediates).
pub struct ServedAuthorities {
    ders: HashMap<String, Vec<u8>>,
    parsed: HashMap<String, Certificate>,
    trust: kexin_seal::verify::Trust,
}

impl ServedAuthorities {
    /// The CAs of `records`. One whose certificate does not parse is
    /// served as stored but checks nothing (every chain through it fails,
    /// as it should), and is not taken for a renewal at every check.
    pub fn new(records: Vec<AuthorityRecord>) -> Self {
        let mut ders = HashMap::new();
        let mut parsed = HashMap::new();
        let mut trust = kexin_seal::verify::Trust::default();
        for record in records {
            match Certificate::from_der(&record.certificate) {
                Ok(c) => {
                    if c.tbs_certificate.issuer == c.tbs_certificate.subject {
                        trust.roots.push(c.clone());
                    } else {
                        trust.intermediates.push(c.clone());
                    }
                    parsed.insert(record.name.clone(), c);
                }
                Err(e) => {
                    tracing::error!(ca = %record.name, error = %e, "a CA certificate in the database does not parse");
                }
            }
            ders.insert(record.name, record.certificate);
        }
        Self {
            ders,
            parsed,
            trust,
        }
    }

    pub fn certificate(&self, name: &str) -> Option<&Certificate> {
        self.parsed.get(name)
    }

    pub fn der(&self, name: &str) -> Option<&[u8]> {
        self.ders.get(name).map(Vec::as_slice)
    }

    /// Every CA, by name.
    pub fn certificates(&self) -> impl Iterator<Item = (&String, &Certificate)> {
        self.parsed.iter()
    }

    /// Our root as the trust anchor, our CAs as intermediates.
    pub fn trust(&self) -> &kexin_seal::verify::Trust {
        &self.trust
    }

    /// The CAs of `stored` whose certificate is not the one served (a
    /// renewal), or that are not served at all.
    pub fn renewed_in(&self, stored: &[AuthorityRecord]) -> Vec<String> {
        stored
            .iter()
            .filter(|s| self.ders.get(&s.name) != Some(&s.certificate))
            .map(|s| s.name.clone())
            .collect()
    }
}

/// The CA certificates served now, replaced whole when a CA is renewed:
/// a request reads one [`ServedAuthorities`] throughout, never a mix.
pub struct AuthorityCertificates(RwLock<Arc<ServedAuthorities>>);

impl AuthorityCertificates {
    pub fn new(served: ServedAuthorities) -> Self {
        Self(RwLock::new(Arc::new(served)))
    }

    pub fn current(&self) -> Arc<ServedAuthorities> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, served: ServedAuthorities) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(served);
    }
}
