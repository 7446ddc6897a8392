//! Applying seals: the one place where a seal is checked, signed with,
//! time-stamped, given validation data and recorded in the audit log —
//! for the command line and the API alike.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kexin_ca::cms::DigestAlgorithm;
use kexin_ca::issuance::Requester;
use kexin_ca::ocsp::OcspResponder;
use kexin_ca::principal::Role;
use kexin_ca::registration::AuthorityCache;
use kexin_timestamp::log::Durability;
use kexin_timestamp::TimeStampAuthority;
use x509_cert::Certificate;

use crate::pades::{Placement, ReceivedDigest, SealImage, Sealed};
use crate::registry::{Seal, SealRegistry};
use crate::signer::{Level, SealSigner, SignOptions};
use crate::validation::ValidationData;
use crate::Error;

pub struct SealService {
    registry: SealRegistry,
    tsa: Arc<TimeStampAuthority>,
    ocsp: Arc<OcspResponder>,
    /// Encoded appearance images by seal certificate serial (a seal's
    /// image never changes; a new seal has a new certificate).
    images: Mutex<HashMap<String, Arc<SealImage>>>,
    /// The CA certificates, parsed on first use and kept until a CA
    /// renewal is taken up: every seal application needs its chain.
    authorities: AuthorityCache,
    /// The digest each seal last signed with, by name: a hint only.
    digests: Mutex<HashMap<String, DigestAlgorithm>>,
}

/// Documents of a batch signed at the same time.
const BATCH_IN_FLIGHT: usize = 32;

/// Seals whose encoded images are kept; more are encoded on every use.
const MAX_CACHED_IMAGES: usize = 1024;

/// Seals whose digest is remembered as a hint; others get SHA-256's.
const MAX_DIGEST_HINTS: usize = 1024;

/// A seal ready to apply at a level.
struct Prepared {
    seal: Seal,
    signer: SealSigner,
    validation: Option<ValidationData>,
}

impl SealService {
    /// `authorities` is the process's, forgotten when a CA renewal is
    /// taken up.
    pub fn new(
        registry: SealRegistry,
        tsa: Arc<TimeStampAuthority>,
        ocsp: Arc<OcspResponder>,
        authorities: AuthorityCache,
    ) -> Self {
        Self {
            registry,
            tsa,
            ocsp,
            images: Mutex::new(HashMap::new()),
            authorities,
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// The digest seal `name` is likely to sign with, to hash a document
    /// with while it arrives: the one it last used here, else SHA-256
    /// (ECDSA P-256 and RSA seals). Never trusted: a document hashed with
    /// another digest than its seal's is hashed again when sealed.
    pub fn digest_hint(&self, name: &str) -> DigestAlgorithm {
        self.digests
            .lock()
            .ok()
            .and_then(|d| d.get(name).copied())
            .unwrap_or(DigestAlgorithm::Sha256)
    }

    async fn authorities(&self) -> Result<Arc<Vec<Certificate>>, Error> {
        Ok(self.authorities.certificates(self.registry.db()).await?)
    }

    /// The seal's appearance image, encoded once.
    fn image(&self, seal: &Seal) -> Result<Arc<SealImage>, Error> {
        let key = &seal.row.certificate_serial;
        if let Some(image) = self.images.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(image);
        }
        let image = Arc::new(SealImage::encode(&seal.row.image)?);
        if let Ok(mut images) = self.images.lock() {
            if images.len() < MAX_CACHED_IMAGES {
                images.insert(key.clone(), image.clone());
            }
        }
        Ok(image)
    }

    pub fn registry(&self) -> &SealRegistry {
        &self.registry
    }

    /// Whether principal `name` with `role` may apply `seal`: it must have
    /// been granted the seal (`seal_users`); the operator's command line
    /// is not asked.
    pub async fn may_use(&self, seal: &str, name: &str, role: Role) -> Result<(), Error> {
        if role == Role::Auditor {
            return Err(Error::Forbidden("auditors do not apply seals".into()));
        }
        if self.registry.db().is_seal_user(seal, name).await? {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{name} may not apply seal {seal:?}"
            )))
        }
    }

    async fn prepare(&self, name: &str, level: Level) -> Result<Prepared, Error> {
        let seal = self.registry.usable(name).await?;
        let signer = SealSigner::new(
            self.registry.store().clone(),
            &seal,
            &self.authorities().await?,
        )?;
        let digest = signer.digest_algorithm();
        if let Ok(mut digests) = self.digests.lock() {
            let known = digests.get(name) == Some(&digest);
            if !known && (digests.len() < MAX_DIGEST_HINTS || digests.contains_key(name)) {
                digests.insert(name.to_owned(), digest);
            }
        }
        let validation = if level >= Level::BLT {
            let leaves = [seal.certificate.clone(), self.tsa.certificate()];
            Some(ValidationData::collect(self.registry.db(), &self.ocsp, &leaves).await?)
        } else {
            None
        };
        Ok(Prepared {
            seal,
            signer,
            validation,
        })
    }

    fn options<'a>(
        &'a self,
        p: &'a Prepared,
        level: Level,
        requester: Requester<'a>,
    ) -> SignOptions<'a> {
        SignOptions {
            signing_time: true,
            level,
            tsa: Some(&self.tsa),
            // Every use of a seal ends with its audit entry, a flushing
            // commit to the database the token log is in (one `Instance`
            // makes both), before the signature leaves the service.
            token_durability: Durability::WithCallersNextCommit,
            validation: p.validation.as_ref(),
            requester: requester.actor,
        }
    }

    /// A detached CAdES signature of the file at `path` (hashed streaming).
    pub async fn sign_file(
        &self,
        name: &str,
        path: &Path,
        level: Level,
        requester: Requester<'_>,
    ) -> Result<Vec<u8>, Error> {
        let p = self.prepare(name, check_detached(level)?).await?;
        let (signature, digest) =
            crate::cades::sign_file(&p.signer, path, &self.options(&p, level, requester)).await?;
        self.record(
            &p.seal,
            requester,
            "cades",
            path.file_name().and_then(|f| f.to_str()),
            &digest,
        )
        .await?;
        Ok(signature)
    }

    /// Detached CAdES signatures of several documents held in memory,
    /// with one seal check and one set of validation data for the batch.
    /// Up to [`BATCH_IN_FLIGHT`] documents are signed at once, so that
    /// their time-stamp tokens and audit entries are committed in groups;
    /// one after another, every document waited for two commits of its own.
    pub async fn sign_batch(
        &self,
        name: &str,
        documents: &[(String, Vec<u8>)],
        level: Level,
        requester: Requester<'_>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        use futures_util::{StreamExt, TryStreamExt};
        let p = self.prepare(name, check_detached(level)?).await?;
        let opts = self.options(&p, level, requester);
        // Made up front: made by a closure inside the stream, the futures
        // failed the API handler's Send check (a higher-ranked lifetime
        // error).
        let signings: Vec<_> = documents
            .iter()
            .map(|(doc_name, bytes)| self.sign_document(&p, &opts, requester, doc_name, bytes))
            .collect();
        futures_util::stream::iter(signings)
            .buffered(BATCH_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// One document of a batch: its digest and detached signature.
    async fn sign_document(
        &self,
        p: &Prepared,
        opts: &SignOptions<'_>,
        requester: Requester<'_>,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let digest = p.signer.digest_algorithm().digest(bytes);
        let signature = p.signer.sign_digest(&digest, opts).await?;
        self.record(&p.seal, requester, "cades", Some(name), &digest)
            .await?;
        Ok((digest, signature))
    }

    /// Seals a PDF (PAdES, incremental update, visible seal): the sealed
    /// document is `pdf` followed by the returned bytes. `received` is
    /// `pdf`'s hash as it arrived, if it was taken (see [`Self::digest_hint`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn seal_pdf(
        &self,
        name: &str,
        pdf: &[u8],
        received: Option<ReceivedDigest>,
        placement: &Placement,
        certify: bool,
        level: Level,
        requester: Requester<'_>,
    ) -> Result<Sealed, Error> {
        let p = self.prepare(name, level).await?;
        let sealed = crate::pades::seal_pdf(
            pdf,
            received,
            &p.signer,
            &p.seal,
            &*self.image(&p.seal)?,
            placement,
            certify,
            &self.options(&p, level, requester),
        )
        .await?;
        self.record(&p.seal, requester, "pades", None, &sealed.signed_digest)
            .await?;
        Ok(sealed)
    }

    /// Issues an e-license: the signed QR payload, the PDF, a
    /// certification seal on it, and the registry entry. Returns the
    /// sealed PDF and the verify URL the QR code carries.
    pub async fn issue_license(
        &self,
        name: &str,
        data: &crate::license::LicenseData,
        level: Level,
        portal_base: &str,
        requester: Requester<'_>,
    ) -> Result<(Vec<u8>, String), Error> {
        use crate::license;
        data.check()?;
        let db = self.registry.db();
        if db.license(&data.number).await?.is_some() {
            return Err(Error::Ca(kexin_ca::Error::Conflict(format!(
                "license {} already exists",
                data.number
            ))));
        }
        let p = self.prepare(name, level).await?;
        let claims = license::claims_for(data, &p.seal)?;
        let jws = license::sign_claims(
            self.registry.store().clone(),
            &p.seal,
            p.signer.signature,
            &claims,
        )
        .await?;
        let url = format!("{portal_base}/verify/license?t={jws}");
        let pdf = license::render_pdf(data, &url)?;
        let (x, y, size) = license::SEAL_PLACEMENT;
        let placement = Placement {
            page: Some(1),
            x,
            y,
            size,
        };
        let sealed = crate::pades::seal_pdf(
            &pdf,
            None,
            &p.signer,
            &p.seal,
            &*self.image(&p.seal)?,
            &placement,
            true,
            &self.options(&p, level, requester),
        )
        .await?;
        let now = crate::registry::now() as i64;
        db.insert_license(&license::registry_row(data, &p.seal, &jws, now)?)
            .await?;
        self.registry
            .audit()
            .append(kexin_ca::audit::AuditEvent {
                actor: requester.actor,
                action: "license.issue",
                target: &data.number,
                source: requester.source,
                detail: serde_json::json!({
                    "type": data.kind,
                    "holder": data.holder,
                    "authority": data.authority,
                    "seal": name,
                    "payload_sha256": hex::encode(kexin_ca::cms::DigestAlgorithm::Sha256.digest(jws.as_bytes())),
                }),
            })
            .await?;
        Ok((sealed.document(&pdf), url))
    }

    pub async fn revoke_license(
        &self,
        number: &str,
        reason: &str,
        requester: Requester<'_>,
    ) -> Result<(), Error> {
        let db = self.registry.db();
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(Error::InvalidInput(
                "give a reason of up to 200 characters".into(),
            ));
        }
        if db.license(number).await?.is_none() {
            return Err(Error::NotFound(format!("license {number}")));
        }
        if !db
            .revoke_license(number, reason, crate::registry::now() as i64)
            .await?
        {
            return Err(Error::Ca(kexin_ca::Error::Conflict(format!(
                "license {number} is already revoked"
            ))));
        }
        self.registry
            .audit()
            .append(kexin_ca::audit::AuditEvent {
                actor: requester.actor,
                action: "license.revoke",
                target: number,
                source: requester.source,
                detail: serde_json::json!({ "reason": reason }),
            })
            .await?;
        Ok(())
    }

    async fn record(
        &self,
        seal: &Seal,
        requester: Requester<'_>,
        format: &str,
        document: Option<&str>,
        digest: &[u8],
    ) -> Result<(), Error> {
        self.registry
            .record_use(
                seal,
                requester,
                serde_json::json!({ "format": format, "document": document, "digest": hex::encode(digest) }),
            )
            .await
    }
}

fn check_detached(level: Level) -> Result<Level, Error> {
    if level == Level::BLTA {
        Err(Error::InvalidInput(
            "b-lta applies to PDFs; a detached signature goes up to b-lt".into(),
        ))
    } else {
        Ok(level)
    }
}
