//! Keeps the certificates of Kexin's own services current while it serves.
//!
//! The OCSP responders' (90 days), the TSA's and the HTTPS server's
//! certificates are renewed when due ([`kexin_ca::renewal::due`]), and what
//! presents them takes the new ones up without a restart: a server left
//! running does not start signing OCSP answers that relying parties
//! reject. Each check also takes up a responder or TSA certificate that
//! another node sharing the database renewed first, and CA certificates
//! that an operator renewed (`kexin ca renew`): they are served, checked
//! against, and sent in the HTTPS chain and in time-stamp tokens.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kexin_ca::ocsp::OcspResponder;
use kexin_timestamp::TimeStampAuthority;
use tokio::sync::watch;

use crate::authority_renewal::{self, AuthorityCertificates, ServedAuthorities};
use crate::https_certificate::{self, HttpsRenewal};
use crate::instance::Instance;
use crate::metrics::{CertificateLabels, Metrics};
use crate::tls::ServerCertificate;

/// How often a problem with the HTTPS certificate that the operator must
/// fix (another CA's certificate due for renewal, a chain file that is
/// not for the key) is logged: at start and then daily, not every minute.
const WARN_EVERY: Duration = Duration::from_secs(86400);

/// Source of the audit entries of renewals made while serving.
const SOURCE: &str = "renewal";

/// What presents a service certificate.
pub struct ServiceCertificates {
    instance: Arc<Instance>,
    ocsp: Arc<OcspResponder>,
    tsa: Arc<TimeStampAuthority>,
    https: Arc<ServerCertificate>,
    /// Told when each certificate expires, after every check.
    metrics: Arc<Metrics>,
    /// The CA certificates this node serves.
    authorities: Arc<AuthorityCertificates>,
    /// How often the certificates are looked at; renewal starts weeks
    /// before expiry, so this only bounds how late in that window it
    /// happens, and how long a CA renewal waits to be served.
    check_every: Duration,
    /// When a problem with the HTTPS certificate was last logged.
    warned_https: Mutex<Option<Instant>>,
    /// The seals whose certificate ends the metrics last gave.
    reported_seals: Mutex<Vec<String>>,
}

impl ServiceCertificates {
    /// For a server that has just started, and checked (and warned) then.
    pub fn new(
        instance: Arc<Instance>,
        ocsp: Arc<OcspResponder>,
        tsa: Arc<TimeStampAuthority>,
        https: Arc<ServerCertificate>,
        metrics: Arc<Metrics>,
        authorities: Arc<AuthorityCertificates>,
    ) -> anyhow::Result<Self> {
        let check_every = instance.certificate_check_every()?;
        Ok(Self {
            instance,
            ocsp,
            tsa,
            https,
            metrics,
            authorities,
            check_every,
            warned_https: Mutex::new(Some(Instant::now())),
            reported_seals: Mutex::default(),
        })
    }

    /// Checks every `check_every` until `shutdown`.
    pub async fn keep_current(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.report_expiry().await;
            if crate::serve::shutting_down_within(self.check_every, &mut shutdown).await {
                return;
            }
            self.check().await;
        }
    }

    /// Tells the metrics when the certificates served now expire: the
    /// CAs', the OCSP responders', the TSA's, the HTTPS server's and the
    /// seals'.
    async fn report_expiry(&self) {
        use der::Decode;
        let labels = CertificateLabels::new;
        for (name, cert) in self.authorities.current().certificates() {
            self.metrics
                .certificate_expires(labels("ca", name), &cert.tbs_certificate.validity);
        }
        for (ca, validity) in self.ocsp.responder_validities() {
            self.metrics
                .certificate_expires(labels("ocsp-responder", &ca), &validity);
        }
        let tsa = self.tsa.certificate();
        self.metrics
            .certificate_expires(labels("tsa", ""), &tsa.tbs_certificate.validity);
        if let Some(leaf) = self.https.leaf() {
            if let Ok(cert) = x509_cert::Certificate::from_der(&leaf) {
                self.metrics
                    .certificate_expires(labels("https", ""), &cert.tbs_certificate.validity);
            }
        }
        match self.instance.db.active_seal_ends().await {
            Ok(ends) => {
                let mut reported = self
                    .reported_seals
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for gone in reported
                    .iter()
                    .filter(|n| !ends.iter().any(|(e, _)| e == *n))
                {
                    self.metrics.forget_certificate(&labels("seal", gone));
                }
                for (name, not_after) in &ends {
                    self.metrics
                        .certificate_ends_at(labels("seal", name), *not_after);
                }
                *reported = ends.into_iter().map(|(name, _)| name).collect();
            }
            Err(e) => tracing::warn!(error = %e, "listing seals for the expiry metrics"),
        }
    }

    /// One check of each kind; a failure of one is logged and does not
    /// keep the others from being renewed.
    async fn check(&self) {
        // First: the HTTPS chain and the TSA's carry the CA certificates.
        if let Err(e) = self.certificate_authorities().await {
            tracing::error!(error = %e, "taking up renewed CA certificates");
        }
        if let Err(e) = self.ocsp_responders().await {
            tracing::error!(error = %e, "renewing OCSP responder certificates");
        }
        if let Err(e) = self.time_stamp_authority().await {
            tracing::error!(error = %e, "renewing the TSA certificate");
        }
        if let Err(e) = self.https_certificate().await {
            tracing::error!(error = %e, "renewing the HTTPS certificate");
        }
    }

    /// Serves the CA certificates of the database where they are not those
    /// served (`kexin ca renew`), and brings this node's files that carry
    /// them up to date; the HTTPS and TSA checks that follow present them.
    async fn certificate_authorities(&self) -> anyhow::Result<()> {
        let stored = self.instance.db.authorities().await?;
        let renewed = self.authorities.current().renewed_in(&stored);
        if renewed.is_empty() {
            return Ok(());
        }
        self.authorities.replace(ServedAuthorities::new(stored));
        self.instance.authority_cache.forget();
        for file in authority_renewal::take_up(&self.instance).await? {
            tracing::info!(file = %file.display(), "a renewed CA certificate: file brought up to date");
        }
        tracing::info!(cas = ?renewed, "renewed CA certificates are served");
        Ok(())
    }

    /// Renews the HTTPS certificate when due; otherwise presents the chain
    /// of `https.chain_file` if it is another than the one presented
    /// (`kexin https install` put it there, or a CA renewal) and is for the
    /// HTTPS key.
    async fn https_certificate(&self) -> anyhow::Result<()> {
        let chain = match https_certificate::read_chain(&self.instance) {
            Ok(chain) => chain,
            Err(e) => {
                if may_warn(&self.warned_https) {
                    tracing::error!(error = %e, "the HTTPS chain file cannot be read; the server presents the chain it has");
                }
                return Ok(());
            }
        };
        match https_certificate::renew(&self.instance, &chain, SOURCE).await? {
            HttpsRenewal::Renewed(renewed) => {
                self.https.replace(renewed);
                tracing::info!("HTTPS certificate renewed; new connections get it");
                return Ok(());
            }
            HttpsRenewal::NotDue => {}
            elsewhere => {
                if may_warn(&self.warned_https) {
                    elsewhere.warn_if_due_elsewhere();
                }
            }
        }
        if self.https.chain() == chain {
            return Ok(());
        }
        if https_certificate::is_for_store_key(&self.instance, &chain).await? {
            self.https.replace(chain);
            tracing::info!("the HTTPS chain file changed; new connections get its certificate");
        } else if may_warn(&self.warned_https) {
            tracing::error!("the HTTPS chain file's certificate is not for the HTTPS key; the server presents the chain it has");
        }
        Ok(())
    }

    async fn ocsp_responders(&self) -> anyhow::Result<()> {
        let issued = self.instance.ensure_ocsp_responders(SOURCE).await?;
        if !issued.is_empty() {
            tracing::info!(cas = ?issued, "OCSP responder certificates renewed");
        }
        let taken_up = self.ocsp.reload_responders().await?;
        if !taken_up.is_empty() {
            tracing::info!(cas = ?taken_up, "OCSP answers are signed under the renewed responder certificates");
        }
        Ok(())
    }

    async fn time_stamp_authority(&self) -> anyhow::Result<()> {
        let (label, certificate) = self.instance.ensure_tsa(SOURCE).await?;
        let issuers = self.instance.issuers_of(&certificate).await?;
        if certificate != self.tsa.certificate() || issuers != self.tsa.issuers() {
            self.tsa.replace_certificate(label, certificate, &issuers)?;
            tracing::info!("time-stamp tokens are signed under the renewed TSA or CA certificates");
        }
        Ok(())
    }
}

/// Whether a problem last logged at `last` may be logged again now: at
/// most once every [`WARN_EVERY`].
fn may_warn(last: &Mutex<Option<Instant>>) -> bool {
    let mut last = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let due = last.is_none_or(|at| at.elapsed() >= WARN_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
}
