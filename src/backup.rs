//! `kexin backup`: a consistent copy of a data directory and its
//! database, taken while the server runs.
//!
//! The database is copied as one transaction sees it, so the copy is whole
//! even while issuance, revocation and the audit log go on writing: the
//! embedded SQLite database with `VACUUM INTO` (a plain file copy of a
//! database in WAL mode can miss committed pages or tear), PostgreSQL with
//! `pg_dump` (custom format, for `pg_restore`). The files beside it
//! (configuration, CA and service certificates, the software key store's
//! sealed keys, operators' profiles) are copied as they are, after the
//! snapshot, so that every key the snapshot refers to is in the copy. The
//! key store's passphrase file is left out: with it, whoever holds the
//! backup would hold the CA keys. The backup is an audited action,
//! recorded before the snapshot so that the copy carries its own record;
//! the copy is read back before the command reports success (SQLite: its
//! audit chain walked; PostgreSQL: the dump listed by `pg_restore`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use kexin_ca::audit::{AuditEvent, AuditLog, ChainStatus};
use kexin_ca::storage::Database;
use kexin_config::Config;

use crate::instance::{database_url, is_initialized, SQLITE_FILE};

/// The file of a PostgreSQL instance's dump in a backup.
pub const PG_DUMP_FILE: &str = "kexin.pgdump";

/// What a backup holds.
pub struct Backup {
    /// Files copied beside the database snapshot.
    pub files: usize,
    /// The backup's own audit entry: the copy holds the chain up to it.
    pub entry: i64,
    pub database: DatabaseCopy,
    /// A file of the data directory that was left out (the passphrase).
    pub left_out: Option<PathBuf>,
}

/// The database's copy, as read back.
pub enum DatabaseCopy {
    /// `kexin.db`, whose audit chain is intact: entries, and the last hash.
    Sqlite { entries: i64, head: String },
    /// [`PG_DUMP_FILE`], in which `pg_restore` lists this many tables' data.
    PgDump { tables: usize },
}

enum Engine {
    Sqlite,
    Postgres(String),
}

/// Copies the data directory `data` and its database into `out`, which
/// must not exist yet.
pub async fn backup(data: &Path, out: &Path) -> anyhow::Result<Backup> {
    if !is_initialized(data) {
        bail!("{} is not a Kexin data directory", data.display());
    }
    let config = Config::load(data)?;
    let engine = match &config.database.url {
        None => Engine::Sqlite,
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            Engine::Postgres(url.clone())
        }
        Some(_) => bail!(
            "the database is an SQLite file outside the data directory: copy it with \
             `sqlite3 FILE '.backup COPY'` and the data directory beside it; `kexin backup` \
             copies the embedded database (`{SQLITE_FILE}`) and PostgreSQL"
        ),
    };
    crate::private_files::create_private_dir(out).context("the backup goes to a new directory")?;
    let copied = copy_into(data, out, &config, &engine).await;
    if copied.is_err() {
        // Half a backup must not pass for one.
        let _ = std::fs::remove_dir_all(out);
    }
    copied
}

/// Copies the data directory `data` into the new directory `out`.
async fn copy_into(
    data: &Path,
    out: &Path,
    config: &Config,
    engine: &Engine,
) -> anyhow::Result<Backup> {
    if std::fs::canonicalize(out)?.starts_with(std::fs::canonicalize(data)?) {
        bail!("the backup goes outside the data directory");
    }
    let left_out = config
        .keystore
        .passphrase_file
        .as_ref()
        .map(|p| data.join(p))
        .filter(|p| p.exists());
    let skip: Vec<PathBuf> = [
        SQLITE_FILE.to_owned(),
        format!("{SQLITE_FILE}-wal"),
        format!("{SQLITE_FILE}-shm"),
        format!("{SQLITE_FILE}-journal"),
    ]
    .iter()
    .map(|f| data.join(f))
    .chain(left_out.clone())
    .collect();

    let db = Database::connect(&database_url(data, config)).await?;
    let entry = AuditLog::new(db.clone())
        .append(AuditEvent {
            actor: crate::CLI.actor,
            source: crate::CLI.source,
            action: "instance.backup",
            target: &out.display().to_string(),
            detail: serde_json::json!({ "passphrase_left_out": left_out.is_some() }),
        })
        .await?;
    let database = match engine {
        Engine::Sqlite => {
            let target = out.join(SQLITE_FILE);
            sqlx::query("VACUUM INTO $1")
                .bind(target.display().to_string())
                .execute(db.pool())
                .await
                .context("writing the database snapshot")?;
            let copy = Database::connect(&Database::sqlite_url(&target)).await?;
            match AuditLog::new(copy).verify().await? {
                ChainStatus::Intact { entries, .. } if entries < entry.seq => {
                    bail!(
                        "the copy ends at audit entry {entries}, before its own {}",
                        entry.seq
                    )
                }
                ChainStatus::Intact { entries, head, .. } => DatabaseCopy::Sqlite { entries, head },
                ChainStatus::Broken { seq, reason } => {
                    bail!("the copy's audit chain is broken at entry {seq}: {reason}")
                }
            }
        }
        Engine::Postgres(url) => {
            let dump = out.join(PG_DUMP_FILE);
            pg_tool(
                Command::new("pg_dump")
                    .args(["--format=custom", "--file"])
                    .arg(&dump),
                url,
            )?;
            let listing = pg_tool(Command::new("pg_restore").arg("--list").arg(&dump), url)?;
            let tables = listing
                .lines()
                .filter(|l| l.contains(" TABLE DATA "))
                .count();
            if !listing.contains(" TABLE DATA public audit_log ") {
                bail!("the dump holds no audit log");
            }
            DatabaseCopy::PgDump { tables }
        }
    };
    // After the snapshot: every key it refers to was made before it.
    let files = copy_tree(data, out, &skip)?;
    Ok(Backup {
        files,
        entry: entry.seq,
        database,
        left_out,
    })
}

/// Runs a PostgreSQL client tool for the database at `url`, whose parts go
/// in libpq's environment (a password on the command line would be in the
/// process list); its standard output.
fn pg_tool(command: &mut Command, url: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(url).context("reading the database URL")?;
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut env = vec![
        (
            "PGHOST",
            url.host_str()
                .unwrap_or("localhost")
                .trim_matches(['[', ']'])
                .to_owned(),
        ),
        ("PGPORT", url.port().unwrap_or(5432).to_string()),
        ("PGDATABASE", decoded(url.path().trim_start_matches('/'))),
    ];
    if !url.username().is_empty() {
        env.push(("PGUSER", decoded(url.username())));
    }
    if let Some(password) = url.password() {
        env.push(("PGPASSWORD", decoded(password)));
    }
    for (key, value) in url.query_pairs() {
        let name = match key.as_ref() {
            "sslmode" => "PGSSLMODE",
            "sslrootcert" => "PGSSLROOTCERT",
            "sslcert" => "PGSSLCERT",
            "sslkey" => "PGSSLKEY",
            _ => continue,
        };
        env.push((name, value.into_owned()));
    }
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.envs(env).output().with_context(|| {
        format!("running {program}: install PostgreSQL's client tools (postgresql-client), of the server's major version or later")
    })?;
    if !output.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Copies the regular files under `from` into `to`, keeping their
/// permissions, except those in `skip`; how many were copied.
fn copy_tree(from: &Path, to: &Path, skip: &[PathBuf]) -> anyhow::Result<usize> {
    let mut copied = 0;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (path, kind) = (entry.path(), entry.file_type()?);
        if skip.contains(&path) {
            continue;
        }
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            crate::private_files::create_private_dir(&target)?;
            copied += copy_tree(&path, &target, skip)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
            copied += 1;
        }
    }
    Ok(copied)
}
