//! `kexin seal …`: create seals and apply them to files and PDFs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use kexin_seal::registry::NewSeal;
use kexin_seal::{Level, SealKind};

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
        /// A PNG of the seal; a round red seal is drawn if absent, the
        /// organization's name set around its top on every visible seal.
        #[arg(long)]
        image: Option<PathBuf>,
    },
    /// Renew a seal's certificate for the key it has (from the `seal`
    /// profile); the previous certificate stays valid for what it sealed.
    Renew {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
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

#[derive(Subcommand)]
pub enum LicenseCommand {
    /// Issue an e-license: a PDF with a QR code, certified with the seal,
    /// and registered.
    Issue {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        seal: String,
        /// The license type, e.g. 营业执照 (overrides "type" in the JSON).
        #[arg(long = "type")]
        kind: Option<String>,
        /// number, holder, authority, valid_from, valid_until, fields.
        #[arg(long)]
        json: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "b-t")]
        level: String,
    },
    /// Revoke an e-license; verification reports it as revoked from now on.
    Revoke {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        number: String,
        #[arg(long)]
        reason: String,
    },
}

pub async fn run_license(command: LicenseCommand) -> anyhow::Result<ExitCode> {
    match command {
        LicenseCommand::Issue {
            data,
            seal,
            kind,
            json,
            out,
            level,
        } => {
            crate::init_logging(&data)?;
            let level: Level = level.parse()?;
            let text =
                std::fs::read(&json).with_context(|| format!("reading {}", json.display()))?;
            let mut value: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not JSON", json.display()))?;
            if let (Some(kind), Some(obj)) = (kind, value.as_object_mut()) {
                obj.insert("type".into(), kind.into());
            }
            let license: kexin_seal::license::LicenseData = serde_json::from_value(value)
                .with_context(|| format!("{} is not license data", json.display()))?;
            let instance = Instance::open(&data).await?;
            let base = instance.config.https.public_base();
            let (pdf, url) = instance
                .seal_service()
                .await?
                .issue_license(&seal, &license, level, &base, CLI)
                .await?;
            instance.checkpoint_audit().await?;
            std::fs::write(&out, pdf).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("license {} issued into {}", license.number, out.display());
            println!("{url}");
            Ok(ExitCode::SUCCESS)
        }
        LicenseCommand::Revoke {
            data,
            number,
            reason,
        } => {
            crate::init_logging(&data)?;
            let instance = Instance::open(&data).await?;
            instance
                .seal_service()
                .await?
                .revoke_license(&number, &reason, CLI)
                .await?;
            instance.checkpoint_audit().await?;
            eprintln!("license {number} revoked");
            Ok(ExitCode::SUCCESS)
        }
    }
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
        SealCommand::Renew { data, name } => {
            crate::init_logging(&data)?;
            let instance = Instance::open(&data).await?;
            let seal = instance.seal_registry().await?.renew(&name, CLI).await?;
            instance.checkpoint_audit().await?;
            eprintln!(
                "seal {:?} renewed; certificate serial {}, valid until {}",
                seal.name(),
                seal.row.certificate_serial,
                seal.certificate.tbs_certificate.validity.not_after
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
            let instance = Instance::open(&data).await?;
            let signature = instance
                .seal_service()
                .await?
                .sign_file(&seal, &input, level, CLI)
                .await?;
            instance.checkpoint_audit().await?;
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
            let pdf =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let placement = kexin_seal::pades::Placement { page, x, y, size };
            let sealed = instance
                .seal_service()
                .await?
                .seal_pdf(&seal, &pdf, None, &placement, certify, level, CLI)
                .await?;
            instance.checkpoint_audit().await?;
            std::fs::write(&out, sealed.document(&pdf))
                .with_context(|| format!("writing {}", out.display()))?;
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
