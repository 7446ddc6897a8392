//! `kexin`: the command line and server of the Kexin trust service.
#![forbid(unsafe_code)]

mod init;
mod instance;
mod metrics;
mod problem;
mod serve;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use kexin_ca::audit::ChainStatus;
use kexin_config::{Config, KeyStoreBackend, LogFormat};
use kexin_hsm::KeyAlgorithm;

#[derive(Parser)]
#[command(
    name = "kexin",
    version,
    about = "Kexin (可信): PKI, time-stamping and e-seal trust service"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory with the default CA hierarchy.
    Init {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long, value_enum)]
        alg: Option<Alg>,
        #[arg(long, value_enum)]
        keystore: Option<KeyStoreKind>,
        #[arg(long)]
        pkcs11_module: Option<PathBuf>,
        #[arg(long)]
        pkcs11_token: Option<String>,
        /// Database URL (sqlite://… or postgres://…); default: SQLite in the data directory.
        #[arg(long)]
        db: Option<String>,
    },
    /// Run the services; initializes the data directory on first run.
    Serve {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        http: Option<SocketAddr>,
        #[arg(long)]
        https: Option<SocketAddr>,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log from the first entry to the last.
    Verify {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "rsa-3072")]
    Rsa3072,
    #[value(name = "ed25519")]
    Ed25519,
    #[value(name = "sm2")]
    Sm2,
}

impl From<Alg> for KeyAlgorithm {
    fn from(a: Alg) -> Self {
        match a {
            Alg::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            Alg::EcdsaP384 => KeyAlgorithm::EcdsaP384,
            Alg::Rsa3072 => KeyAlgorithm::Rsa3072,
            Alg::Ed25519 => KeyAlgorithm::Ed25519,
            Alg::Sm2 => KeyAlgorithm::Sm2,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyStoreKind {
    Soft,
    Pkcs11,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = cli.command.unwrap_or(Command::Serve {
        data: PathBuf::from("./kexin-data"),
        http: None,
        https: None,
    });
    match command {
        Command::Init {
            data,
            alg,
            keystore,
            pkcs11_module,
            pkcs11_token,
            db,
        } => {
            init_logging(&data)?;
            init::init(
                &data,
                init::InitOptions {
                    algorithm: alg.map(Into::into),
                    keystore: keystore.map(|k| match k {
                        KeyStoreKind::Soft => KeyStoreBackend::Soft,
                        KeyStoreKind::Pkcs11 => KeyStoreBackend::Pkcs11,
                    }),
                    pkcs11_module,
                    pkcs11_token,
                    db,
                },
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { data, http, https } => {
            init_logging(&data)?;
            if !instance::is_initialized(&data) {
                if data.exists() && std::fs::read_dir(&data)?.next().is_some() {
                    bail!(
                        "{} exists but holds no {}; refusing to initialize over it",
                        data.display(),
                        kexin_config::CONFIG_FILE
                    );
                }
                println!(
                    "First run: initializing {} (SQLite, soft key store, loopback)",
                    data.display()
                );
                init::init(&data, init::InitOptions::default()).await?;
            }
            serve::serve(&data, serve::ServeOptions { http, https }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            match instance.audit.verify().await? {
                ChainStatus::Intact { entries, head } => {
                    println!("audit log intact: {entries} entries, head {head}");
                    Ok(ExitCode::SUCCESS)
                }
                ChainStatus::Broken { seq, reason } => {
                    println!("audit log BROKEN at entry {seq}: {reason}");
                    Ok(ExitCode::from(2))
                }
            }
        }
    }
}

/// Logs go to stderr, as text or JSON lines per the configuration; `RUST_LOG` wins.
fn init_logging(data: &Path) -> anyhow::Result<()> {
    let config = if instance::is_initialized(data) {
        Config::load(data)?
    } else {
        Config::load_with_env(Path::new("/nonexistent"), std::env::vars())?
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
