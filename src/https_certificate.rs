//! The certificate of the HTTPS side, whose key stays in the key store.
//!
//! `kexin init` has `systems` issue it, and Kexin renews that one itself
//! ([`renew`]). A province may want another CA's certificate there
//! instead: one that citizens' phones trust, for the verify portal. Then
//! [`csr`] asks for it with the key in the store, and [`install`] puts the
//! certificate in place after checking that it is for that key; a running
//! server takes it up within a minute ([`read_chain`]), and renewing it is
//! the operator's, who is warned when it is due.

use std::path::PathBuf;

use anyhow::{bail, Context};
use der::{Decode, Encode};
use kexin_ca::audit::AuditEvent;
use kexin_ca::hierarchy::load_authority;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_cert::Certificate;

use crate::instance::{replace_file, Instance};

/// What [`renew`] found.
pub enum HttpsRenewal {
    /// Issued afresh: the new chain, leaf first.
    Renewed(Vec<CertificateDer<'static>>),
    NotDue,
    /// Due, but issued by another CA, so the operator must replace `file`.
    DueElsewhere {
        file: PathBuf,
        not_after: String,
    },
}

impl HttpsRenewal {
    /// Logs a certificate the operator must replace.
    pub fn warn_if_due_elsewhere(&self) {
        if let Self::DueElsewhere { file, not_after } = self {
            tracing::warn!(
                file = %file.display(),
                %not_after,
                "the HTTPS certificate expires soon and was not issued here; get a new one (kexin https csr) and install it"
            );
        }
    }
}

/// The chain of `https.chain_file`, leaf first.
pub fn read_chain(instance: &Instance) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let path = instance.path(&instance.config.https.chain_file);
    let chain = CertificateDer::pem_file_iter(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(chain)
}

/// The DER SubjectPublicKeyInfo of the HTTPS key in the store.
async fn store_key(instance: &Instance) -> anyhow::Result<Vec<u8>> {
    let label = instance
        .config
        .https
        .key_label
        .clone()
        .context("https.key_label is not set")?;
    let store = instance.store.clone();
    let public = tokio::task::spawn_blocking(move || store.public_key(&label)).await??;
    Ok(public.spki_der)
}

/// Renews the HTTPS server certificate `chain` (as [`read_chain`] read
/// it) when it is due, or does not name exactly `https.names` (an
/// operator changed them), and this instance issued it (by `systems`, for
/// the key `https.key_label`); the renewal replaces `https.chain_file`. A
/// certificate from another CA is the operator's to renew: it is left
/// alone.
pub async fn renew(
    instance: &Instance,
    chain: &[CertificateDer<'_>],
    source: &str,
) -> anyhow::Result<HttpsRenewal> {
    let path = instance.path(&instance.config.https.chain_file);
    let leaf = Certificate::from_der(chain.first().context("no HTTPS certificate")?)?;
    let names = &instance.config.https.names;
    let wanted = kexin_ca::certificate::subject_alt_name(names, false)?;
    let names_kept = leaf
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .any(|e| e.extn_id == wanted.extn_id && e.extn_value == wanted.extn_value);
    let systems = load_authority(&instance.db, "systems").await?;
    let due = kexin_ca::renewal::due(
        &leaf.tbs_certificate.validity,
        &systems.certificate.tbs_certificate.validity,
        std::time::SystemTime::now(),
    );
    if names_kept && !due {
        return Ok(HttpsRenewal::NotDue);
    }
    let key = store_key(instance).await?;
    let ours = leaf.tbs_certificate.issuer == systems.certificate.tbs_certificate.subject
        && leaf.tbs_certificate.subject_public_key_info.to_der()? == key;
    if !ours {
        return Ok(if due {
            HttpsRenewal::DueElsewhere {
                file: path,
                not_after: leaf.tbs_certificate.validity.not_after.to_string(),
            }
        } else {
            HttpsRenewal::NotDue
        });
    }
    let config = &instance.config;
    let subject = kexin_ca::hierarchy::HttpsSubject {
        country: &config.ca.country,
        organization: &config.ca.organization,
        names,
        public_url: &config.http.public_url,
    };
    let cert = kexin_ca::hierarchy::issue_https_certificate(
        &instance.issuer(),
        &systems,
        kexin_ca::certificate::parse_spki(&key)?,
        &subject,
        kexin_ca::issuance::Requester {
            actor: "system:kexin",
            source,
        },
    )
    .await?;
    let root = load_authority(&instance.db, kexin_ca::hierarchy::ROOT).await?;
    let renewed = [cert, systems.certificate, root.certificate]
        .iter()
        .map(|c| c.to_der().map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()?;
    write_chain(&path, &renewed)?;
    Ok(HttpsRenewal::Renewed(renewed))
}

fn write_chain(path: &std::path::Path, chain: &[CertificateDer<'_>]) -> anyhow::Result<()> {
    let pem: String = chain
        .iter()
        .map(|c| kexin_ca::certificate::certificate_pem(c))
        .collect();
    replace_file(path, pem.as_bytes())
}

/// A PEM certificate request for the HTTPS key, signed by it in the key
/// store: the organization of `ca.organization`, the first of
/// `https.names` as common name, and all of them as subjectAltName.
pub async fn csr(instance: &Instance) -> anyhow::Result<String> {
    let config = &instance.config;
    let key = store_key(instance).await?;
    let spki = kexin_ca::certificate::parse_spki(&key)?;
    let signature = kexin_hsm::KeyAlgorithm::from_spki(&spki)?.default_signature();
    let common_name = config.https.names.first().context("https.names is empty")?;
    let subject = kexin_ca::certificate::DistinguishedName::new()
        .country(&config.ca.country)
        .organization(&config.ca.organization)
        .common_name(common_name)
        .to_name()?;
    let (info, tbs) = kexin_ca::csr::request_info(subject, spki, &config.https.names)?;
    let label = config.https.key_label.clone().unwrap_or_default();
    let signed = kexin_hsm::sign_async(&instance.store, &label, signature, tbs).await?;
    let der = kexin_ca::csr::assemble(info, signature, &signed)?;
    der::pem::encode_string("CERTIFICATE REQUEST", der::pem::LineEnding::LF, &der)
        .map_err(|e| anyhow::anyhow!("encoding the request as PEM: {e}"))
}

/// What [`install`] put in place.
pub struct Installed {
    pub subject: String,
    pub issuer: String,
    pub not_after: String,
}

/// Puts `pem` (the leaf first, then the CAs above it) in `https.chain_file`
/// once it is checked: the leaf certifies the HTTPS key of the store, is
/// valid now, and is for TLS servers if it says what it is for. The audit
/// entry is written first: a change is never unaudited.
pub async fn install(instance: &Instance, pem: &[u8]) -> anyhow::Result<Installed> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the chain is not PEM certificates")?;
    let leaf = Certificate::from_der(chain.first().context("the file holds no certificate")?)
        .context("the first certificate does not parse")?;
    let tbs = &leaf.tbs_certificate;
    if tbs.subject_public_key_info.to_der()? != store_key(instance).await? {
        bail!("the first certificate is not for this instance's HTTPS key (make the request with `kexin https csr`)");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if now < tbs.validity.not_before.to_unix_duration() {
        bail!(
            "the certificate is not valid before {}",
            tbs.validity.not_before
        );
    }
    if now >= tbs.validity.not_after.to_unix_duration() {
        bail!("the certificate expired at {}", tbs.validity.not_after);
    }
    if let Ok(Some((_, usage))) = leaf
        .tbs_certificate
        .get::<x509_cert::ext::pkix::ExtendedKeyUsage>()
    {
        if !usage.0.contains(&const_oid::db::rfc5280::ID_KP_SERVER_AUTH) {
            bail!("the certificate's extended key usage does not include serverAuth");
        }
    }
    let installed = Installed {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        not_after: tbs.validity.not_after.to_string(),
    };
    instance
        .audit
        .append(AuditEvent {
            actor: "operator:cli",
            action: "https.install",
            target: &kexin_ca::certificate::serial_hex(&tbs.serial_number),
            source: "cli",
            detail: serde_json::json!({
                "subject": installed.subject,
                "issuer": installed.issuer,
                "not_after": installed.not_after,
            }),
        })
        .await?;
    write_chain(&instance.path(&instance.config.https.chain_file), &chain)?;
    Ok(installed)
}

/// Whether `chain`'s leaf certifies the HTTPS key of the store: a chain
/// file edited by hand is taken up only then.
pub async fn is_for_store_key(
    instance: &Instance,
    chain: &[CertificateDer<'_>],
) -> anyhow::Result<bool> {
    let leaf = Certificate::from_der(chain.first().context("no certificate")?)?;
    Ok(leaf.tbs_certificate.subject_public_key_info.to_der()? == store_key(instance).await?)
}
