//! Opening the parts of an initialized data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use kexin_ca::audit::{AuditLog, CheckpointKey};
use kexin_ca::crl::CrlIssuer;
use kexin_ca::hierarchy::load_authority;
use kexin_ca::issuance::Issuer;
use kexin_ca::profile::{Profiles, RepositoryUrls};
use kexin_ca::registration::Registration;
use kexin_ca::storage::{CrlRecord, Database};
use kexin_config::{Config, KeyStoreBackend};
use kexin_hsm::{KdfParams, KeyStore, Pkcs11KeyStore, Pkcs11Settings, SoftKeyStore};

pub const PASSPHRASE_ENV: &str = "KEXIN_KEYSTORE_PASSPHRASE";
pub const PIN_ENV: &str = "KEXIN_PKCS11_PIN";
const KEYSTORE_DIR: &str = "keystore";
pub(crate) const SQLITE_FILE: &str = "kexin.db";

/// An initialized data directory with its configuration, key store,
/// database and audit log open.
pub struct Instance {
    pub data_dir: PathBuf,
    pub config: Config,
    pub store: Arc<dyn KeyStore>,
    pub db: Database,
    pub audit: AuditLog,
    /// The one issuer of this process: its issuances share rounds.
    issuer: Issuer,
    /// The CAs its registrations issue under, forgotten when a renewal is
    /// taken up.
    pub authority_cache: kexin_ca::registration::AuthorityCache,
}

impl Instance {
    pub async fn open(data_dir: &Path) -> anyhow::Result<Self> {
        if !is_initialized(data_dir) {
            bail!(
                "{} is not a Kexin data directory (run `kexin init --data {}`)",
                data_dir.display(),
                data_dir.display()
            );
        }
        let config = Config::load(data_dir)?;
        let store = open_keystore(data_dir, &config, false)?;
        let db = Database::connect(&database_url(data_dir, &config)).await?;
        let audit = AuditLog::new(db.clone());
        let issuer = Issuer::new(db.clone(), store.clone());
        Ok(Self {
            data_dir: data_dir.to_owned(),
            config,
            store,
            db,
            audit,
            issuer,
            authority_cache: Default::default(),
        })
    }

    pub fn path(&self, relative: &Path) -> PathBuf {
        self.data_dir.join(relative)
    }

    pub fn urls(&self) -> RepositoryUrls {
        RepositoryUrls {
            base: self.config.http.public_url.clone(),
        }
    }

    pub fn issuer(&self) -> Issuer {
        self.issuer.clone()
    }

    /// Shipped profiles plus the operator's `DATA/profiles/*.toml`.
    pub fn profiles(&self) -> anyhow::Result<Profiles> {
        Ok(Profiles::load(Some(&self.data_dir.join("profiles")))?)
    }

    pub fn registration(&self) -> anyhow::Result<Registration> {
        Ok(Registration::new(
            self.db.clone(),
            self.issuer(),
            self.profiles()?,
            self.urls(),
            self.authority_cache.clone(),
        ))
    }

    /// The registration workflow with its KMC and the seal registry that
    /// carries out approved seal creations. The wrapping keys (escrow,
    /// applicants' ID numbers) carry the instance's label prefix.
    pub async fn requests(&self) -> anyhow::Result<kexin_ca::request::Requests> {
        let prefix = self.key_prefix().await?;
        let kmc = kexin_ca::kmc::KeyManagementCenter::new(
            self.db.clone(),
            self.store.clone(),
            format!("{prefix}-kmc-escrow"),
        );
        Ok(kexin_ca::request::Requests::new(
            self.db.clone(),
            self.audit.clone(),
            self.registration()?,
            kmc,
            self.store.clone(),
            format!("{prefix}-ra-pii"),
        )
        .with_seal_factory(std::sync::Arc::new(
            kexin_seal::registry::RequestedSeals::new(
                self.seal_registry().await?,
                self.config.ca.algorithm.parse()?,
            ),
        )))
    }

    /// The CA certificates above `cert`, issuing CA first, root excluded.
    pub async fn issuers_of(
        &self,
        cert: &x509_cert::Certificate,
    ) -> anyhow::Result<Vec<x509_cert::Certificate>> {
        use der::Decode;
        let authorities = self
            .db
            .authorities()
            .await?
            .iter()
            .map(|a| x509_cert::Certificate::from_der(&a.certificate))
            .collect::<Result<Vec<_>, _>>()?;
        let mut chain = kexin_ca::hierarchy::chain_of(cert, &authorities);
        chain.retain(|c| c.tbs_certificate.issuer != c.tbs_certificate.subject);
        Ok(chain)
    }

    /// Key store label of the first OIDC token key; rotations add `-g{N}`.
    pub async fn oidc_key_base(&self) -> anyhow::Result<String> {
        Ok(format!("{}-oidc-es256", self.key_prefix().await?))
    }

    /// How often a server checks the certificates and keys it runs on
    /// (`ca.certificate_check_secs`).
    pub fn certificate_check_every(&self) -> anyhow::Result<std::time::Duration> {
        match self.config.ca.certificate_check_secs {
            0 => anyhow::bail!("ca.certificate_check_secs must be at least 1"),
            secs => Ok(std::time::Duration::from_secs(secs.into())),
        }
    }

    /// The SSO token keys as they stand now: all published, the newest
    /// whose scheduled time has come signing.
    pub async fn token_keys(&self) -> anyhow::Result<kexin_identity::jwt::KeySet> {
        let base = self.oidc_key_base().await?;
        let starts = self.db.token_key_schedule().await?;
        let store = self.store.clone();
        let now = kexin_ca::issuance::now();
        let keep_replaced_for = crate::oidc::replaced_token_key_kept_for(&self.config);
        Ok(tokio::task::spawn_blocking(move || {
            let schedule = kexin_identity::jwt::KeySchedule {
                starts: &starts,
                now,
                keep_replaced_for,
            };
            kexin_identity::jwt::KeySet::open_scheduled(store, &base, &schedule)
        })
        .await??)
    }

    /// Generates the next SSO token key, published by every server from its
    /// next check and signing from `signs_from` (unix seconds); its key id.
    pub async fn rotate_token_key(&self, signs_from: i64) -> anyhow::Result<String> {
        let base = self.oidc_key_base().await?;
        let store = self.store.clone();
        let label = tokio::task::spawn_blocking(move || {
            kexin_identity::jwt::KeySet::next_label(store, &base)
        })
        .await??;
        self.db.schedule_token_key(&label, signs_from).await?;
        let store = self.store.clone();
        let key = tokio::task::spawn_blocking(move || {
            kexin_identity::jwt::SigningKey::open(store, &label)
        })
        .await??;
        Ok(key.kid)
    }

    /// The secret that authenticates the tokens every node issues and
    /// checks without storing them (sign-in challenges, ACME nonces),
    /// sealed under the instance's `-secrets` wrapping key.
    pub async fn stamp_secret(&self) -> anyhow::Result<kexin_hsm::Zeroizing<Vec<u8>>> {
        Ok(kexin_ca::secrets::shared_secret(
            &self.db,
            self.store.as_ref(),
            "stamps",
            &format!("{}-secrets", self.key_prefix().await?),
        )
        .await?)
    }

    pub async fn seal_registry(&self) -> anyhow::Result<kexin_seal::SealRegistry> {
        Ok(kexin_seal::SealRegistry::new(
            self.db.clone(),
            self.store.clone(),
            self.audit.clone(),
            self.registration()?,
            self.key_prefix().await?,
        ))
    }

    /// Seals applied from the command line: a TSA and an OCSP responder of
    /// their own (the server shares its running ones).
    pub async fn seal_service(&self) -> anyhow::Result<kexin_seal::service::SealService> {
        let ocsp = kexin_ca::ocsp::OcspResponder::load(self.db.clone(), self.store.clone()).await?;
        Ok(kexin_seal::service::SealService::new(
            self.seal_registry().await?,
            std::sync::Arc::new(self.time_stamp_authority().await?),
            std::sync::Arc::new(ocsp),
            self.authority_cache.clone(),
        ))
    }

    pub fn crl_issuer(&self) -> CrlIssuer {
        CrlIssuer::new(
            self.db.clone(),
            self.store.clone(),
            std::time::Duration::from_secs(u64::from(self.config.ca.crl_validity_hours) * 3600),
        )
    }

    /// Generates and stores a fresh CRL for `ca`.
    pub async fn regenerate_crl(&self, ca: &str) -> anyhow::Result<CrlRecord> {
        let authority = load_authority(&self.db, ca).await?;
        Ok(self.crl_issuer().generate(&authority).await?)
    }

    /// The per-instance prefix of key labels, as `init` chose it.
    pub async fn key_prefix(&self) -> anyhow::Result<String> {
        let root = load_authority(&self.db, kexin_ca::hierarchy::ROOT).await?;
        Ok(root
            .key_label
            .strip_suffix("-ca-root")
            .unwrap_or(&root.key_label)
            .to_owned())
    }

    /// The public key under `label`, generated first (with the root CA's
    /// algorithm) if the store does not have it yet.
    async fn service_key(&self, label: &str) -> anyhow::Result<kexin_hsm::PublicKeyInfo> {
        let root = self
            .db
            .authority(kexin_ca::hierarchy::ROOT)
            .await?
            .context("no root CA")?;
        let alg: kexin_hsm::KeyAlgorithm = root.key_algorithm.parse()?;
        let store = self.store.clone();
        let l = label.to_owned();
        Ok(
            tokio::task::spawn_blocking(move || match store.public_key(&l) {
                Err(kexin_hsm::Error::KeyNotFound(_)) => store.generate(&l, alg),
                other => other,
            })
            .await??,
        )
    }

    /// The key that signs audit checkpoints, generated on first use with the
    /// root CA's algorithm.
    pub async fn checkpoint_key(&self) -> anyhow::Result<CheckpointKey> {
        let label = format!("{}-audit", self.key_prefix().await?);
        let public = self.service_key(&label).await?;
        Ok(CheckpointKey {
            label,
            signature: public.algorithm.default_signature(),
        })
    }

    /// Signs the head of the audit chain (no-op if already signed).
    pub async fn checkpoint_audit(&self) -> anyhow::Result<Option<i64>> {
        let key = self.checkpoint_key().await?;
        Ok(self.audit.checkpoint(&self.store, &key).await?)
    }

    /// Issues the TSA certificate (profile `tsa`, CA `systems`) if there is
    /// none or it is due for renewal ([`kexin_ca::renewal::due`]); returns
    /// (key label, certificate). `source` says why, for the audit log.
    pub async fn ensure_tsa(
        &self,
        source: &str,
    ) -> anyhow::Result<(String, x509_cert::Certificate)> {
        use der::{Decode, Encode};
        if let Some((label, der)) = self.db.service_certificate("tsa").await? {
            let cert = x509_cert::Certificate::from_der(&der)?;
            let systems = load_authority(&self.db, "systems").await?;
            let issuer = &systems.certificate.tbs_certificate.validity;
            let now = std::time::SystemTime::now();
            if !kexin_ca::renewal::due(&cert.tbs_certificate.validity, issuer, now) {
                return Ok((label, cert));
            }
            // The other nodes keep the certificate they have, and take up
            // the renewal at a later check.
            if !kexin_ca::renewal::claim(&self.db, "tsa").await? {
                return Ok((label, cert));
            }
            if let Some((latest_label, latest)) = self.db.service_certificate("tsa").await? {
                if latest != der {
                    return Ok((latest_label, x509_cert::Certificate::from_der(&latest)?));
                }
            }
        }
        let label = format!("{}-tsa", self.key_prefix().await?);
        let public = self.service_key(&label).await?;
        let org = self.config.ca.organization.clone();
        let request = kexin_ca::profile::SubjectRequest {
            subject: vec![
                (const_oid::db::rfc4519::C, self.config.ca.country.clone()),
                (const_oid::db::rfc4519::O, org.clone()),
                (
                    const_oid::db::rfc4519::CN,
                    format!("{org} Time-Stamp Authority"),
                ),
            ],
            names: vec![],
            public_key: kexin_ca::certificate::parse_spki(&public.spki_der)?,
            key_algorithm: public.algorithm,
        };
        let cert = self
            .registration()?
            .issue(
                &request,
                "tsa",
                Some("systems"),
                kexin_ca::issuance::Requester {
                    actor: "system:kexin",
                    source,
                },
            )
            .await?;
        self.db
            .put_service_certificate("tsa", &label, &cert.to_der()?)
            .await?;
        let pem = kexin_ca::certificate::certificate_pem(&cert.to_der()?);
        std::fs::create_dir_all(self.data_dir.join("tsa"))?;
        replace_file(&self.data_dir.join("tsa/tsa.pem"), pem.as_bytes())?;
        Ok((label, cert))
    }

    /// The time-stamp authority, with its token log writer started.
    pub async fn time_stamp_authority(
        &self,
    ) -> anyhow::Result<kexin_timestamp::TimeStampAuthority> {
        let (label, certificate) = self.ensure_tsa("startup").await?;
        let tsa = &self.config.tsa;
        let parse = |s: &str| {
            s.parse::<const_oid::ObjectIdentifier>()
                .map_err(|_| anyhow::anyhow!("tsa policy {s:?} is not an OID"))
        };
        let key = kexin_hsm::KeyAlgorithm::from_spki(
            &certificate.tbs_certificate.subject_public_key_info,
        )?;
        Ok(kexin_timestamp::TimeStampAuthority::new(
            kexin_timestamp::TsaSettings {
                store: self.store.clone(),
                key_label: label,
                signature: key.default_signature(),
                issuers: self.issuers_of(&certificate).await?,
                certificate,
                policy: parse(&tsa.policy)?,
                accepted_policies: tsa
                    .accepted_policies
                    .iter()
                    .map(|p| parse(p))
                    .collect::<Result<_, _>>()?,
                accuracy_seconds: tsa.accuracy_seconds,
                clock: kexin_timestamp::clock::ClockGuard::new(
                    std::time::Duration::from_secs(tsa.accuracy_seconds.max(1)),
                    tsa.require_sync_file.clone(),
                ),
                log: kexin_timestamp::log::TokenLog::new(self.db.clone()),
            },
        )?)
    }

    /// Issues missing OCSP responder certificates and renews those due;
    /// returns the CAs whose responder got a certificate. `source` says
    /// why, for the audit log.
    pub async fn ensure_ocsp_responders(&self, source: &str) -> anyhow::Result<Vec<String>> {
        Ok(kexin_ca::ocsp::ensure_responders(
            &self.db,
            &self.issuer(),
            &self.store,
            &self.profiles()?,
            &self.urls(),
            &self.key_prefix().await?,
            kexin_ca::issuance::Requester {
                actor: "system:kexin",
                source,
            },
        )
        .await?)
    }
}

/// Replaces `path` with `bytes` at once: a reader (a restart, an operator)
/// finds the old file or the new one, never half of one.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().context("no file name")?.to_owned();
    name.push(".renewing");
    let staged = path.with_file_name(name);
    let mut file =
        std::fs::File::create(&staged).with_context(|| format!("creating {}", staged.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&staged, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

pub fn is_initialized(data_dir: &Path) -> bool {
    data_dir.join(kexin_config::CONFIG_FILE).is_file()
}

pub fn database_url(data_dir: &Path, config: &Config) -> String {
    config
        .database
        .url
        .clone()
        .unwrap_or_else(|| Database::sqlite_url(&data_dir.join(SQLITE_FILE)))
}

/// Opens (or, with `create`, creates) the key store the configuration names.
pub fn open_keystore(
    data_dir: &Path,
    config: &Config,
    create: bool,
) -> anyhow::Result<Arc<dyn KeyStore>> {
    match config.keystore.backend {
        KeyStoreBackend::Soft => {
            let fallback = config
                .keystore
                .passphrase_file
                .as_ref()
                .map(|p| data_dir.join(p));
            let passphrase = kexin_config::secret(PASSPHRASE_ENV, fallback.as_deref())?
                .with_context(|| {
                    format!("the soft key store needs {PASSPHRASE_ENV} or {PASSPHRASE_ENV}_FILE")
                })?;
            let dir = data_dir.join(KEYSTORE_DIR);
            let store = if create {
                SoftKeyStore::create(&dir, passphrase.as_bytes(), KdfParams::default())?
            } else {
                SoftKeyStore::open(&dir, passphrase.as_bytes())?
            };
            Ok(Arc::new(store))
        }
        KeyStoreBackend::Pkcs11 => {
            let pin = kexin_config::secret(PIN_ENV, None)?.with_context(|| {
                format!("the PKCS#11 key store needs {PIN_ENV} or {PIN_ENV}_FILE")
            })?;
            let p = &config.keystore.pkcs11;
            Ok(Arc::new(Pkcs11KeyStore::open(&Pkcs11Settings {
                module: p.module.clone(),
                token_label: p.token_label.clone(),
                pin,
                max_sessions: p.max_sessions,
            })?))
        }
    }
}
