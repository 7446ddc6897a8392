//! `kexin seal …`: create seals and apply them to files and PDFs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use der::Decode;
use kexin_seal::registry::NewSeal;
use kexin_seal::signer::SignOptions;
use kexin_seal::validation::ValidationData;
use kexin_seal::{Level, SealKind, SealSigner};
use x509_cert::Certificate;

use crate::instance::Instance;
use crate::private_files::write_private;
use crate::CLI;

#[derive(Subcommand)]
pub enum SealCommand {
    /// Create a seal: a key in the key store and a certificate from the
    /// `seal` profile.
    Create {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// The owning organization.
        #[arg(long)]
        org: String,
        /// Its unified social credit code (统一社会信用代码).
        #[arg(long)]
        uscc: Option<String>,
        /// official, contract, license, finance or invoice.
        #[arg(long = "type", default_value = "official")]
        kind: String,
        /// A PNG of the seal; a round red seal is drawn if absent.
        #[arg(long)]
        image: Option<PathBuf>,
    },
    /// Sign any file: a detached CAdES signature (DER CMS).
    Sign {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        seal: String,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// b-b, b-t or b-lt.
        #[arg(long, default_value = "b-t")]
        level: String,
    },
    /// Seal a PDF (PAdES) by incremental update, with a visible seal.
    SignPdf {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        seal: String,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// 1-based page of the visible seal (default: the last page).
        #[arg(long)]
        page: Option<u32>,
        /// Position of the seal's lower-left corner, in points from the
        /// page's lower-left corner.
        #[arg(long, default_value_t = 400.0)]
        x: f64,
        #[arg(long, default_value_t = 80.0)]
        y: f64,
        /// Width and height of the seal, in points.
        #[arg(long, default_value_t = 120.0)]
        size: f64,
        /// b-b, b-t, b-lt or b-lta.
        #[arg(long, default_value = "b-t")]
        level: String,
        /// A certification signature (DocMDP): later changes other than
        /// further signatures and form filling invalidate it.
        #[arg(long)]
        certify: bool,
    },
}

pub async fn run(command: SealCommand) -> anyhow::Result<ExitCode> {
    match command {
        SealCommand::Create {
            data,
            name,
            org,
            uscc,
            kind,
            image,
        } => {
            crate::init_logging(&data)?;
            let instance = Instance::open(&data).await?;
            let image = image
                .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            let algorithm: kexin_hsm::KeyAlgorithm = instance.config.ca.algorithm.parse()?;
            let seal = instance
                .seal_registry()
                .await?
                .create(
                    NewSeal {
                        name: &name,
                        organization: &org,
                        uscc: uscc.as_deref(),
                        kind: kind.parse::<SealKind>()?,
                        image,
                        algorithm,
                    },
                    CLI,
                )
                .await?;
            instance.checkpoint_audit().await?;
            eprintln!(
                "seal {:?} of {org} created; certificate serial {}",
                seal.name(),
                seal.row.certificate_serial
            );
            Ok(ExitCode::SUCCESS)
        }
        SealCommand::Sign {
            data,
            seal,
            input,
            out,
            level,
        } => {
            crate::init_logging(&data)?;
            let level: Level = level.parse()?;
            if level == Level::BLTA {
                anyhow::bail!("b-lta applies to PDFs; a detached signature goes up to b-lt");
            }
            let instance = Instance::open(&data).await?;
            let sealing = Sealing::prepare(&instance, &seal, level).await?;
            let (signature, digest) =
                kexin_seal::cades::sign_file(&sealing.signer, &input, &sealing.options(level))
                    .await?;
            sealing.record(&instance, "cades", &input, &digest).await?;
            write_private(&out, &signature)?;
            eprintln!(
                "{} sealed ({}) into {}",
                input.display(),
                level.as_str(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        SealCommand::SignPdf {
            data,
            seal,
            input,
            out,
            page,
            x,
            y,
            size,
            level,
            certify,
        } => {
            crate::init_logging(&data)?;
            let level: Level = level.parse()?;
            let instance = Instance::open(&data).await?;
            let sealing = Sealing::prepare(&instance, &seal, level).await?;
            let pdf =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let placement = kexin_seal::pades::Placement { page, x, y, size };
            let sealed = kexin_seal::pades::seal_pdf(
                &pdf,
                &sealing.signer,
                &sealing.seal,
                &placement,
                certify,
                &sealing.options(level),
            )
            .await?;
            let digest = kexin_ca::cms::DigestAlgorithm::Sha256.digest(&pdf);
            sealing.record(&instance, "pades", &input, &digest).await?;
            std::fs::write(&out, sealed).with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "{} sealed ({}) into {}",
                input.display(),
                level.as_str(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What applying a seal needs: the usable seal, its signer, the TSA and,
/// for B-LT and above, the validation data.
struct Sealing {
    seal: kexin_seal::Seal,
    signer: SealSigner,
    tsa: Option<kexin_timestamp::TimeStampAuthority>,
    validation: Option<ValidationData>,
}

impl Sealing {
    async fn prepare(instance: &Instance, name: &str, level: Level) -> anyhow::Result<Self> {
        let registry = instance.seal_registry().await?;
        let seal = registry.usable(name).await?;
        let authorities = instance
            .db
            .authorities()
            .await?
            .iter()
            .map(|a| Certificate::from_der(&a.certificate))
            .collect::<Result<Vec<_>, _>>()?;
        let signer = SealSigner::new(instance.store.clone(), &seal, &authorities)?;
        let tsa = if level >= Level::BT {
            Some(instance.time_stamp_authority().await?)
        } else {
            None
        };
        let validation = if level >= Level::BLT {
            let ocsp =
                kexin_ca::ocsp::OcspResponder::load(instance.db.clone(), instance.store.clone())
                    .await?;
            let mut leaves = vec![seal.certificate.clone()];
            if let Some(t) = &tsa {
                leaves.push(t.certificate().clone());
            }
            Some(ValidationData::collect(&instance.db, &ocsp, &leaves).await?)
        } else {
            None
        };
        Ok(Self {
            seal,
            signer,
            tsa,
            validation,
        })
    }

    fn options(&self, level: Level) -> SignOptions<'_> {
        SignOptions {
            signing_time: true,
            level,
            tsa: self.tsa.as_ref(),
            validation: self.validation.as_ref(),
            requester: "cli",
        }
    }

    async fn record(
        &self,
        instance: &Instance,
        format: &str,
        input: &Path,
        digest: &[u8],
    ) -> anyhow::Result<()> {
        instance
            .seal_registry()
            .await?
            .record_use(
                &self.seal,
                CLI,
                serde_json::json!({
                    "format": format,
                    "file": input.file_name().map(|f| f.to_string_lossy().into_owned()),
                    "digest": hex::encode(digest),
                }),
            )
            .await?;
        instance.checkpoint_audit().await?;
        Ok(())
    }
}
