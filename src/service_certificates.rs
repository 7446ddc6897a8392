//! Keeps the certificates of Kexin's own services current while it serves.
//!
//! The OCSP responders' (90 days), the TSA's and the HTTPS server's
//! certificates are renewed when due ([`kexin_ca::renewal::due`]), and what
//! presents them takes the new ones up without a restart: a server left
//! running does not start signing OCSP answers that relying parties
//! reject. Each check also takes up a responder or TSA certificate that
//! another node sharing the database renewed first.

use std::sync::Arc;
use std::time::Duration;

use kexin_ca::ocsp::OcspResponder;
use kexin_timestamp::TimeStampAuthority;
use tokio::sync::watch;

use crate::instance::Instance;
use crate::tls::ServerCertificate;

/// How often the certificates are looked at; renewal starts weeks before
/// expiry, so this only bounds how late in that window it happens.
const CHECK_EVERY: Duration = Duration::from_secs(60);

/// Source of the audit entries of renewals made while serving.
const SOURCE: &str = "renewal";

/// What presents a service certificate.
pub struct ServiceCertificates {
    pub instance: Arc<Instance>,
    pub ocsp: Arc<OcspResponder>,
    pub tsa: Arc<TimeStampAuthority>,
    pub https: Arc<ServerCertificate>,
}

impl ServiceCertificates {
    /// Checks every [`CHECK_EVERY`] until `shutdown`.
    pub async fn keep_current(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            }
            self.check().await;
        }
    }

    /// One check of each kind; a failure of one is logged and does not
    /// keep the others from being renewed.
    async fn check(&self) {
        if let Err(e) = self.ocsp_responders().await {
            tracing::error!(error = %e, "renewing OCSP responder certificates");
        }
        if let Err(e) = self.time_stamp_authority().await {
            tracing::error!(error = %e, "renewing the TSA certificate");
        }
        match self.instance.renew_https_certificate(SOURCE).await {
            Ok(Some(chain)) => {
                self.https.replace(chain);
                tracing::info!("HTTPS certificate renewed; new connections get it");
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "renewing the HTTPS certificate"),
        }
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
        if certificate != self.tsa.certificate() {
            let issuers = self.instance.issuers_of(&certificate).await?;
            self.tsa.replace_certificate(label, certificate, &issuers)?;
            tracing::info!("time-stamp tokens are signed under the renewed TSA certificate");
        }
        Ok(())
    }
}
