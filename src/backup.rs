//! `kexin backup`: a consistent copy of a data directory on the embedded
//! SQLite database, taken while the server runs.
//!
//! SQLite's `VACUUM INTO` writes the database as one read transaction sees
//! it, so the copy is whole even while issuance, revocation and the audit
//! log go on writing (a plain file copy of a database in WAL mode can miss
//! committed pages or tear). The files beside it (configuration, CA and
//! service certificates, the software key store's sealed keys, operators'
//! profiles) are copied as they are, after the snapshot, so that every key
//! the snapshot refers to is in the copy. The key store's passphrase file is
//! left out: with it, whoever holds the backup would hold the CA keys.
//! The backup is an audited action, recorded before the snapshot so that
//! the copy carries its own record; the copy's audit chain is walked before
//! the command reports success.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kexin_ca::audit::{AuditEvent, AuditLog, ChainStatus};
use kexin_ca::storage::Database;
use kexin_config::Config;

use crate::instance::{is_initialized, SQLITE_FILE};

/// What a backup holds.
pub struct Backup {
    /// Files copied beside the database snapshot.
    pub files: usize,
    /// The copy's audit chain: entries, and the hash of the last.
    pub audit_entries: i64,
    pub audit_head: String,
    /// A file of the data directory that was left out (the passphrase).
    pub left_out: Option<PathBuf>,
}

/// Copies the data directory `data` into `out`, which must not exist yet.
pub async fn backup(data: &Path, out: &Path) -> anyhow::Result<Backup> {
    if !is_initialized(data) {
        bail!("{} is not a Kexin data directory", data.display());
    }
    let config = Config::load(data)?;
    if let Some(url) = &config.database.url {
        let engine = if url.starts_with("postgres") {
            "PostgreSQL: dump it with `pg_dump --format=custom`"
        } else {
            "outside the data directory: copy it with `sqlite3 FILE '.backup COPY'`"
        };
        bail!(
            "the database is {engine}, and copy the data directory beside the dump; \
             `kexin backup` copies the embedded database (`{SQLITE_FILE}`)"
        );
    }
    crate::private_files::create_private_dir(out).context("the backup goes to a new directory")?;
    let copied = copy_into(data, out, &config).await;
    if copied.is_err() {
        // Half a backup must not pass for one.
        let _ = std::fs::remove_dir_all(out);
    }
    copied
}

/// Copies the data directory `data` into the new directory `out`.
async fn copy_into(data: &Path, out: &Path, config: &Config) -> anyhow::Result<Backup> {
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

    let db = Database::connect(&Database::sqlite_url(&data.join(SQLITE_FILE))).await?;
    let target = out.join(SQLITE_FILE);
    AuditLog::new(db.clone())
        .append(AuditEvent {
            actor: crate::CLI.actor,
            source: crate::CLI.source,
            action: "instance.backup",
            target: &out.display().to_string(),
            detail: serde_json::json!({ "passphrase_left_out": left_out.is_some() }),
        })
        .await?;
    sqlx::query("VACUUM INTO $1")
        .bind(target.display().to_string())
        .execute(db.pool())
        .await
        .context("writing the database snapshot")?;
    // After the snapshot: every key it refers to was made before it.
    let files = copy_tree(data, out, &skip)?;

    let copy = Database::connect(&Database::sqlite_url(&target)).await?;
    match AuditLog::new(copy).verify().await? {
        ChainStatus::Intact { entries, head, .. } => Ok(Backup {
            files,
            audit_entries: entries,
            audit_head: head,
            left_out,
        }),
        ChainStatus::Broken { seq, reason } => {
            bail!("the copy's audit chain is broken at entry {seq}: {reason}")
        }
    }
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
