//! `kexin`: the command line and server of the Kexin trust service.
#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc: under load glibc spent ~12% of the
/// server's CPU in malloc/free (consolidation of freed chunks), and every
/// large document body was a fresh mmap to fault in. Measured with it:
/// SSO logins +18%, PAdES 1 MB +15%, 50 MB +19% (bench/sso.sh, seal.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod acme;
mod api;
mod authority_renewal;
mod backup;
mod console;
mod https_certificate;
mod init;
mod instance;
mod metrics;
mod officer;
mod official_certificates;
mod oidc;
mod plain_http;
mod portal;
mod private_files;
mod problem;
mod proxy_protocol;
mod seal;
mod serve;
mod service_certificates;
mod sso_client;
mod tls;
mod verify;
mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use der::Encode;
use kexin_ca::audit::ChainStatus;
use kexin_ca::certificate::certificate_pem;
use kexin_ca::issuance::Requester;
use kexin_ca::principal::Role;
use kexin_ca::revocation::{RevocationReason, Revocations};
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
    /// Issue, revoke, hold and release certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Generate a fresh CRL for a CA.
    Crl {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        ca: String,
        /// Where to write the DER CRL; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a signed artifact (today: a certificate, or an RFC 3161
    /// time-stamp token or reply) and print a report; exit 0 if valid.
    Verify {
        file: PathBuf,
        /// The data a detached token or signature covers.
        #[arg(long)]
        content: Option<PathBuf>,
        /// Trust anchors and intermediates come from this data directory.
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Officers of the console and the API.
    Officer {
        #[command(subcommand)]
        command: OfficerCommand,
    },
    /// Electronic seals: create, sign files (CAdES) and PDFs (PAdES).
    Seal {
        #[command(subcommand)]
        command: seal::SealCommand,
    },
    /// Electronic licenses with QR codes.
    License {
        #[command(subcommand)]
        command: seal::LicenseCommand,
    },
    /// The single sign-on provider's keys.
    Oidc {
        #[command(subcommand)]
        command: OidcCommand,
    },
    /// Systems that accept single sign-on.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The ACME server's registration side.
    Acme {
        #[command(subcommand)]
        command: AcmeCommand,
    },
    /// The CAs' own certificates.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The HTTPS side's certificate, when another CA is to issue it (one
    /// citizens' browsers trust, for the verify portal).
    Https {
        #[command(subcommand)]
        command: HttpsCommand,
    },
    /// Copy a data directory and its database while the server runs: a
    /// consistent snapshot (SQLite: a database file; PostgreSQL: pg_dump's
    /// custom format) and the files beside it, without the key store's
    /// passphrase file.
    Backup {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        /// A new directory for the copy.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Re-certify a CA with its name, key and extensions unchanged, from
    /// now on: an issuing CA by the root (never past the root's end), the
    /// root by itself. Its certificates, CRLs and OCSP answers keep
    /// verifying; running servers serve the new certificate within a
    /// minute (`ca.certificate_check_secs`).
    Renew {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        /// The CA: root, officials, systems or seals.
        #[arg(long)]
        name: String,
        /// Days of validity; the present certificate's lifetime if absent.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: Option<u32>,
    },
}

#[derive(Subcommand)]
enum HttpsCommand {
    /// Write a PKCS#10 request for the HTTPS key, signed in the key store,
    /// for `https.names`: what another CA certifies.
    Csr {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        /// Where to write the PEM request; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Put the certificate another CA issued for that request (PEM, the
    /// leaf first, then the CAs above it) in place; a running server
    /// presents it within a minute.
    Install {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        chain: PathBuf,
    },
}

#[derive(Subcommand)]
enum AcmeCommand {
    /// Issue an external account key for a system (RFC 8555 §7.3.4): its
    /// ACME client opens one account with it (certbot `--eab-kid
    /// --eab-hmac-key`). Prints the kid and the HMAC key, shown once.
    Eab {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        /// The system the key is for, as the audit log will name it.
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum OidcCommand {
    /// Generate the next token signing key. Every running server publishes
    /// it in its JWKS from its next check (every ca.certificate_check_secs)
    /// and signs with it once every server publishes it and JWKS cached
    /// before have expired; the key it replaces stays published while a
    /// token it signed can be live.
    RotateKey {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a system for single sign-on; prints client_id and secret.
    Add {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// Exactly as the system will send it; repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Where Kexin posts a logout token when an official's session ends.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        /// RFC 8705: the subject DN of the system's TLS client certificate
        /// (systems CA), accepted instead of the secret.
        #[arg(long)]
        tls_client_auth_subject: Option<String>,
        /// ES256 (default) or SM2 ID tokens.
        #[arg(long)]
        id_token_alg: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log from the first entry to the
    /// last, and every checkpoint signed with the audit key.
    Verify {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
    },
    /// Sign the current head of the audit chain with the audit key.
    Checkpoint {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum OfficerCommand {
    /// Create an officer with a role and a client certificate in a PKCS#12
    /// file protected by KEXIN_P12_PASSWORD.
    Add {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// ra-officer, ra-admin, kmc-officer, seal-admin or auditor.
        #[arg(long)]
        role: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Issue a certificate from a PKCS#10 CSR (PEM or DER) under a profile.
    Issue {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        csr: PathBuf,
        /// Issuing CA; the profile's default if absent.
        #[arg(long)]
        ca: Option<String>,
        /// Where to write the PEM certificate; standard output if absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate (reason certificateHold puts it on hold).
    Revoke {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise,
        /// affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// When the key is known or suspected to have been compromised (RFC 3339).
        #[arg(long)]
        invalidity_date: Option<String>,
    },
    /// Release a certificate from hold.
    Release {
        #[arg(long, default_value = "./kexin-data")]
        data: PathBuf,
        #[arg(long)]
        serial: String,
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
    // sqlx's TLS to PostgreSQL asks rustls for the process's provider, and
    // two are compiled in (aws-lc-rs, Kexin's everywhere, and ring, which
    // reqwest brings): without one named, rustls panics.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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
        Command::Cert { command } => cert_command(command).await,
        Command::Verify {
            file,
            content,
            data,
            json,
        } => verify::run(&file, content.as_deref(), &data, json).await,
        Command::Officer {
            command:
                OfficerCommand::Add {
                    data,
                    name,
                    role,
                    out,
                },
        } => {
            init_logging(&data)?;
            let role: Role = role.parse()?;
            let instance = instance::Instance::open(&data).await?;
            let serial = officer::add_to_file(&instance, &name, role, &out, CLI).await?;
            instance.checkpoint_audit().await?;
            eprintln!(
                "officer {name} ({role}) added; certificate serial {serial} in {}",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Crl { data, ca, out } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let crl = instance.regenerate_crl(&ca).await?;
            write_output(out.as_deref(), &crl.der)?;
            eprintln!("CRL {} of {ca}: {} bytes", crl.number, crl.der.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Seal { command } => seal::run(command).await,
        Command::Oidc {
            command: OidcCommand::RotateKey { data },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let signs_from = oidc::token_key_signs_from(
                kexin_ca::issuance::now(),
                instance.config.ca.certificate_check_secs,
            );
            let kid = instance.rotate_token_key(signs_from).await?;
            instance
                .audit
                .append(kexin_ca::audit::AuditEvent {
                    actor: CLI.actor,
                    action: "oidc.rotate-key",
                    target: &kid,
                    source: CLI.source,
                    detail: serde_json::json!({ "signs_from": signs_from }),
                })
                .await?;
            instance.checkpoint_audit().await?;
            eprintln!(
                "token key {kid}: published by running servers from their next check; \
                 tokens are signed with it from {}",
                httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(signs_from.max(0) as u64)
                )
            );
            println!("{kid}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Client {
            command:
                ClientCommand::Add {
                    data,
                    name,
                    redirect_uris,
                    backchannel_logout_uri,
                    tls_client_auth_subject,
                    id_token_alg,
                    json,
                },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let registration = sso_client::ClientRegistration {
                name,
                redirect_uris,
                backchannel_logout_uri,
                tls_client_auth_subject,
                id_token_alg,
            };
            let (client, secret) = sso_client::register(&instance, &registration, CLI).await?;
            instance.checkpoint_audit().await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "client_id": client.client_id, "client_secret": secret, "issuer": instance.config.https.public_base() })
                );
            } else {
                println!("client_id: {}\nclient_secret: {secret}", client.client_id);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::License { command } => seal::run_license(command).await,
        Command::Acme {
            command: AcmeCommand::Eab { data, name, json },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let (kid, hmac_key) = acme::issue_external_account(&instance, &name, CLI).await?;
            instance.checkpoint_audit().await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "eab_kid": kid, "eab_hmac_key": hmac_key, "directory": format!("{}/acme/directory", instance.config.https.public_base()) })
                );
            } else {
                println!("eab_kid: {kid}\neab_hmac_key: {hmac_key}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            match instance
                .audit
                .verify_with_checkpoints(instance.store.as_ref())
                .await?
            {
                ChainStatus::Intact {
                    entries,
                    head,
                    checkpoints,
                } => {
                    println!(
                        "audit log intact: {entries} entries, {checkpoints} signed checkpoints verified, head {head}"
                    );
                    Ok(ExitCode::SUCCESS)
                }
                ChainStatus::Broken { seq, reason } => {
                    println!("audit log BROKEN at entry {seq}: {reason}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Ca {
            command: CaCommand::Renew { data, name, days },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let renewed = authority_renewal::renew(&instance, &name, days).await?;
            let validity = &renewed.authority.certificate.tbs_certificate.validity;
            println!(
                "renewed CA {name}: serial {}, valid until {} (was {}); written to {}. \
                 Running servers serve it from their next check of their certificates \
                 (every ca.certificate_check_secs)",
                hex::encode(
                    renewed
                        .authority
                        .certificate
                        .tbs_certificate
                        .serial_number
                        .as_bytes()
                ),
                validity.not_after,
                renewed.previous.tbs_certificate.validity.not_after,
                data.join("ca").join(format!("{name}.pem")).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Https {
            command: HttpsCommand::Csr { data, out },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let pem = https_certificate::csr(&instance).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, pem)
                        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                    println!(
                        "wrote a request for {} to {}",
                        instance.config.https.names.join(", "),
                        path.display()
                    );
                }
                None => print!("{pem}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Https {
            command: HttpsCommand::Install { data, chain },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let pem = std::fs::read(&chain)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", chain.display()))?;
            let installed = https_certificate::install(&instance, &pem).await?;
            println!(
                "installed the HTTPS certificate of {} issued by {}, valid until {}; a running server presents it within a minute",
                installed.subject, installed.issuer, installed.not_after
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { data, out } => {
            init_logging(&data)?;
            let copy = backup::backup(&data, &out).await?;
            println!(
                "backed up {} into {}: the database as one transaction saw it (through audit entry {}), and {} files",
                data.display(),
                out.display(),
                copy.entry,
                copy.files
            );
            match copy.database {
                backup::DatabaseCopy::Sqlite { entries, head } => {
                    println!("the copy's audit chain is intact: {entries} entries, head {head}")
                }
                backup::DatabaseCopy::PgDump { tables } => println!(
                    "{}: pg_restore reads it ({tables} tables' data). To restore: createdb NEW; \
                     pg_restore --no-owner --dbname NEW {}; then point database.url in {} at NEW",
                    backup::PG_DUMP_FILE,
                    out.join(backup::PG_DUMP_FILE).display(),
                    out.join(kexin_config::CONFIG_FILE).display()
                ),
            }
            if let Some(passphrase) = copy.left_out {
                println!(
                    "left out: {} (the key store's passphrase). Keep it apart; to restore, \
                     set {} (or {}_FILE) or put the file back",
                    passphrase.display(),
                    instance::PASSPHRASE_ENV,
                    instance::PASSPHRASE_ENV
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { data },
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            match instance.checkpoint_audit().await? {
                Some(seq) => println!("signed checkpoint at entry {seq}"),
                None => println!("the head is already checkpointed"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) const CLI: Requester<'static> = Requester {
    actor: "cli",
    source: "cli",
};

async fn cert_command(command: CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::Issue {
            data,
            profile,
            csr,
            ca,
            out,
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let csr = std::fs::read(&csr)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", csr.display()))?;
            let cert = instance
                .registration()?
                .issue_from_csr(&csr, &profile, ca.as_deref(), CLI)
                .await?;
            instance.checkpoint_audit().await?;
            let pem = certificate_pem(&cert.to_der()?);
            write_output(out.as_deref(), pem.as_bytes())?;
            eprintln!(
                "issued {} serial {}",
                cert.tbs_certificate.subject,
                hex::encode(cert.tbs_certificate.serial_number.as_bytes())
            );
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Revoke {
            data,
            serial,
            reason,
            invalidity_date,
        } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let reason: RevocationReason = reason.parse()?;
            let invalidity = invalidity_date
                .map(|d| {
                    time::OffsetDateTime::parse(&d, &time::format_description::well_known::Rfc3339)
                        .map(|t| t.unix_timestamp())
                        .map_err(|e| anyhow::anyhow!("--invalidity-date {d:?}: {e}"))
                })
                .transpose()?;
            let ca = Revocations::new(instance.db.clone(), instance.audit.clone())
                .revoke(&serial, reason, invalidity, CLI)
                .await?;
            let crl = instance.regenerate_crl(&ca).await?;
            eprintln!(
                "revoked {serial} ({reason}); CRL {} of {ca} published",
                crl.number
            );
            Ok(ExitCode::SUCCESS)
        }
        CertCommand::Release { data, serial } => {
            init_logging(&data)?;
            let instance = instance::Instance::open(&data).await?;
            let ca = Revocations::new(instance.db.clone(), instance.audit.clone())
                .release(&serial, CLI)
                .await?;
            let crl = instance.regenerate_crl(&ca).await?;
            eprintln!(
                "released {serial} from hold; CRL {} of {ca} published",
                crl.number
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_output(out: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match out {
        Some(path) => std::fs::write(path, bytes)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display())),
        None => Ok(std::io::stdout().write_all(bytes)?),
    }
}

/// Logs go to stderr, as text or JSON lines per the configuration; `RUST_LOG` wins.
pub(crate) fn init_logging(data: &Path) -> anyhow::Result<()> {
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
