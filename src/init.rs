//! `kexin init`: a data directory with configuration, key store, database
//! and the default CA hierarchy.
//!
//! Everything is built in a hidden sibling directory and renamed into place
//! at the end, so a failed init leaves no half-initialized data directory
//! behind (keys already generated on a PKCS#11 token stay there, under this
//! attempt's unique label prefix).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use aws_lc_rs::rand::SecureRandom;
use der::Encode;
use kexin_ca::audit::AuditLog;
use kexin_ca::certificate::certificate_pem;
use kexin_ca::hierarchy::{create_default_hierarchy, HierarchySettings};
use kexin_ca::issuance::Requester;
use kexin_ca::storage::{redact, Database};
use kexin_config::{Config, KeyStoreBackend};
use kexin_hsm::KeyAlgorithm;

use crate::instance::{database_url, open_keystore, Instance, PASSPHRASE_ENV};
use crate::private_files::{create_private_dir, write_private};

#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    pub algorithm: Option<KeyAlgorithm>,
    pub keystore: Option<KeyStoreBackend>,
    pub pkcs11_module: Option<PathBuf>,
    pub pkcs11_token: Option<String>,
    pub db: Option<String>,
}

const PASSPHRASE_FILE: &str = "keystore.pass";

pub async fn init(data_dir: &Path, opts: InitOptions) -> anyhow::Result<()> {
    if data_dir.exists() {
        let mut entries = std::fs::read_dir(data_dir)
            .with_context(|| format!("reading {}", data_dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} already exists and is not empty; refusing to overwrite it",
                data_dir.display()
            );
        }
    }
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let name = data_dir
        .file_name()
        .context("the data directory needs a name")?
        .to_string_lossy()
        .into_owned();
    let staging = parent.join(format!(".{name}.init-{}", random_hex(4)?));
    create_private_dir(&staging)?;
    match build(&staging, data_dir, opts).await {
        Ok(summary) => {
            if data_dir.exists() {
                std::fs::remove_dir(data_dir)?;
            }
            std::fs::rename(&staging, data_dir).with_context(|| {
                format!("moving {} to {}", staging.display(), data_dir.display())
            })?;
            print!(
                "{}",
                summary.replace("{DATA}", &data_dir.display().to_string())
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

async fn build(dir: &Path, final_dir: &Path, opts: InitOptions) -> anyhow::Result<String> {
    let mut config = Config::load(dir)?;
    let algorithm = match opts.algorithm {
        Some(a) => a,
        None => config.ca.algorithm.parse()?,
    };
    config.ca.algorithm = algorithm.to_string();
    if let Some(k) = opts.keystore {
        config.keystore.backend = k;
    }
    if let Some(m) = opts.pkcs11_module {
        config.keystore.pkcs11.module = m;
    }
    if let Some(t) = opts.pkcs11_token {
        config.keystore.pkcs11.token_label = t;
    }
    if opts.db.is_some() {
        config.database.url = opts.db;
    }
    if config.http.public_url == kexin_config::HttpConfig::default().public_url {
        config.http.public_url = format!("http://{}", config.http.listen);
    }

    let mut notes = Vec::new();
    if config.keystore.backend == KeyStoreBackend::Soft
        && kexin_config::secret(PASSPHRASE_ENV, None)?.is_none()
    {
        write_private(&dir.join(PASSPHRASE_FILE), random_hex(32)?.as_bytes())?;
        config.keystore.passphrase_file = Some(PASSPHRASE_FILE.into());
        notes.push(format!(
            "generated the key store passphrase in {{DATA}}/{PASSPHRASE_FILE} (mode 0600); \
             for production move it off this disk and set {PASSPHRASE_ENV}_FILE"
        ));
    }
    if config.keystore.backend == KeyStoreBackend::Pkcs11 && algorithm == KeyAlgorithm::Sm2 {
        bail!("SM2 keys cannot live on a PKCS#11 token without SM2 mechanisms (SoftHSM2 has none); use --keystore soft");
    }
    let store = open_keystore(dir, &config, true)?;
    let url = database_url(dir, &config);
    let db = Database::connect(&url).await?;
    if !db.authorities().await?.is_empty() {
        bail!(
            "the database {} already holds a CA hierarchy; give this instance its own database",
            redact(&url)
        );
    }
    let audit = AuditLog::new(db.clone());
    let settings = HierarchySettings {
        key_algorithm: algorithm,
        country: config.ca.country.clone(),
        organization: config.ca.organization.clone(),
        public_url: config.http.public_url.clone(),
        root_validity: Duration::from_secs(u64::from(config.ca.root_validity_days) * 86400),
        issuing_validity: Duration::from_secs(u64::from(config.ca.issuing_validity_days) * 86400),
        tls_names: config.https.names.clone(),
        systems_permitted_dns: config.ca.systems_permitted_dns.clone(),
        key_prefix: format!("kx{}", random_hex(4)?),
    };
    let requester = Requester {
        actor: "system:init",
        source: "cli",
    };
    let hierarchy =
        create_default_hierarchy(&db, store.clone(), &audit, &settings, requester).await?;

    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir)?;
    let mut lines = vec![format!(
        "Initialized Kexin in {{DATA}} ({} keys in the {} key store, database {})",
        algorithm,
        store.backend(),
        redact(&database_url(final_dir, &config))
    )];
    for ca in std::iter::once(&hierarchy.root).chain(&hierarchy.issuing) {
        let der = ca.certificate.to_der()?;
        std::fs::write(
            ca_dir.join(format!("{}.pem", ca.name)),
            certificate_pem(&der),
        )?;
        lines.push(format!(
            "  CA {:<10} {}  serial {}",
            ca.name,
            ca.certificate.tbs_certificate.subject,
            hex::encode(ca.certificate.tbs_certificate.serial_number.as_bytes())
        ));
    }
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    let mut chain = String::new();
    for cert in &hierarchy.tls_chain {
        chain.push_str(&certificate_pem(&cert.to_der()?));
    }
    std::fs::write(dir.join(&config.https.chain_file), chain)?;
    config.https.key_label = Some(hierarchy.tls_key_label.clone());
    config.write(dir)?;
    db.pool().close().await;
    let instance = Instance::open(dir).await?;
    instance.ensure_ocsp_responders("init").await?;
    for ca in std::iter::once(&hierarchy.root).chain(&hierarchy.issuing) {
        instance.regenerate_crl(&ca.name).await?;
    }
    instance.ensure_tsa("init").await?;
    instance
        .profiles()?
        .audit_changes(&instance.audit, requester)
        .await?;
    instance.checkpoint_audit().await?;
    instance.db.pool().close().await;
    lines.push("  OCSP responder certificates and first CRLs made for every CA".into());
    lines.push("  time-stamp authority certificate in {DATA}/tsa/tsa.pem".into());
    lines.push(format!(
        "  HTTPS certificate for {} issued by systems",
        config.https.names.join(", ")
    ));
    for n in notes {
        lines.push(format!("  note: {n}"));
    }
    lines.push(String::new());
    Ok(lines.join("\n"))
}

pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("system RNG failed"))?;
    Ok(hex::encode(b))
}
