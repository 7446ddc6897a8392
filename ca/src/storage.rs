//! Storage: SQLite (embedded default, WAL mode) or PostgreSQL behind one
//! pool. Queries use `$n` placeholders, which both accept, so one query text
//! serves both; only the migrations differ per backend.
//!
//! Storage only stores: it makes no decisions about what may be issued.

use std::sync::Once;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::Error;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool with the schema migrated.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

/// A CA as stored.
#[derive(Clone, Debug)]
pub struct AuthorityRecord {
    pub name: String,
    pub parent: Option<String>,
    pub key_label: String,
    pub key_algorithm: String,
    pub signature_algorithm: String,
    pub certificate: Vec<u8>,
    pub created_at: i64,
}

/// The life of a certificate row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Recorded, not yet signed (or the signer crashed before completing).
    Pending,
    Issued,
    /// Signing failed; the serial stays burnt.
    Failed,
}

impl CertificateStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Issued => "issued",
            Self::Failed => "failed",
        }
    }
}

/// A certificate about to be signed.
#[derive(Clone, Debug)]
pub struct PendingCertificate<'a> {
    pub serial: &'a str,
    pub issuer: &'a str,
    pub profile: &'a str,
    pub subject: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    pub tbs: &'a [u8],
    pub requested_at: i64,
}

#[derive(Clone, Debug)]
pub struct CertificateRecord {
    pub serial: String,
    pub issuer: String,
    pub profile: String,
    pub subject: String,
    pub status: String,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Option<Vec<u8>>,
}

impl Database {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::Storage(format!(
                "unsupported database URL {:?}: use sqlite:// or postgres://",
                redact(url)
            )));
        };
        let options = AnyPoolOptions::new().max_connections(match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        });
        let pool = options
            .connect(url)
            .await
            .map_err(|e| Error::Storage(format!("connecting to {}: {e}", redact(url))))?;
        if backend == Backend::Sqlite {
            // WAL is persistent in the file: readers never block the writer.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .map_err(storage)?;
        }
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| Error::Storage(format!("migrating the database: {e}")))?;
        Ok(Self { pool, backend })
    }

    /// The URL of an SQLite database file, created if missing.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Cheap liveness probe for `/readyz`.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(storage)
    }

    pub async fn insert_authority(&self, a: &AuthorityRecord) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO authorities (name, parent, key_label, key_algorithm, signature_algorithm, certificate, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.name)
        .bind(&a.parent)
        .bind(&a.key_label)
        .bind(&a.key_algorithm)
        .bind(&a.signature_algorithm)
        .bind(&a.certificate)
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    pub async fn authority(&self, name: &str) -> Result<Option<AuthorityRecord>, Error> {
        let row = sqlx::query(
            "SELECT name, parent, key_label, key_algorithm, signature_algorithm, certificate, created_at \
             FROM authorities WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.map(|r| authority_from_row(&r)).transpose()
    }

    pub async fn authorities(&self) -> Result<Vec<AuthorityRecord>, Error> {
        let rows = sqlx::query(
            "SELECT name, parent, key_label, key_algorithm, signature_algorithm, certificate, created_at \
             FROM authorities ORDER BY created_at, name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(authority_from_row).collect()
    }

    /// Records a certificate before it is signed. Fails with
    /// [`Error::DuplicateSerial`] if the serial was ever used.
    pub async fn insert_pending(&self, c: &PendingCertificate<'_>) -> Result<(), Error> {
        let result = sqlx::query(
            "INSERT INTO certificates (serial, issuer, profile, subject, status, not_before, not_after, tbs, requested_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.serial)
        .bind(c.issuer)
        .bind(c.profile)
        .bind(c.subject)
        .bind(CertificateStatus::Pending.as_str())
        .bind(c.not_before)
        .bind(c.not_after)
        .bind(c.tbs)
        .bind(c.requested_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::DuplicateSerial(c.serial.to_owned()))
            }
            Err(e) => Err(storage(e)),
        }
    }

    /// Completes a pending certificate with its signed DER.
    pub async fn complete_issued(
        &self,
        serial: &str,
        der: &[u8],
        issued_at: i64,
    ) -> Result<(), Error> {
        let done = sqlx::query(
            "UPDATE certificates SET status = $1, der = $2, issued_at = $3 WHERE serial = $4 AND status = $5",
        )
        .bind(CertificateStatus::Issued.as_str())
        .bind(der)
        .bind(issued_at)
        .bind(serial)
        .bind(CertificateStatus::Pending.as_str())
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        if done.rows_affected() != 1 {
            return Err(Error::Storage(format!(
                "certificate {serial} was not pending when its signature completed"
            )));
        }
        Ok(())
    }

    /// Marks a pending certificate as failed; its serial is never reused.
    pub async fn mark_failed(&self, serial: &str) -> Result<(), Error> {
        sqlx::query("UPDATE certificates SET status = $1 WHERE serial = $2 AND status = $3")
            .bind(CertificateStatus::Failed.as_str())
            .bind(serial)
            .bind(CertificateStatus::Pending.as_str())
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, Error> {
        let row = sqlx::query(
            "SELECT serial, issuer, profile, subject, status, not_before, not_after, der FROM certificates WHERE serial = $1",
        )
        .bind(serial)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.map(|r| {
            Ok(CertificateRecord {
                serial: r.try_get(0).map_err(storage)?,
                issuer: r.try_get(1).map_err(storage)?,
                profile: r.try_get(2).map_err(storage)?,
                subject: r.try_get(3).map_err(storage)?,
                status: r.try_get(4).map_err(storage)?,
                not_before: r.try_get(5).map_err(storage)?,
                not_after: r.try_get(6).map_err(storage)?,
                der: r.try_get(7).map_err(storage)?,
            })
        })
        .transpose()
    }

    /// Serials recorded but never completed, e.g. after a crash mid-signature.
    pub async fn pending_serials(&self) -> Result<Vec<String>, Error> {
        let rows =
            sqlx::query("SELECT serial FROM certificates WHERE status = $1 ORDER BY requested_at")
                .bind(CertificateStatus::Pending.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(storage))
            .collect()
    }
}

fn authority_from_row(r: &AnyRow) -> Result<AuthorityRecord, Error> {
    Ok(AuthorityRecord {
        name: r.try_get(0).map_err(storage)?,
        parent: r.try_get(1).map_err(storage)?,
        key_label: r.try_get(2).map_err(storage)?,
        key_algorithm: r.try_get(3).map_err(storage)?,
        signature_algorithm: r.try_get(4).map_err(storage)?,
        certificate: r.try_get(5).map_err(storage)?,
        created_at: r.try_get(6).map_err(storage)?,
    })
}

pub(crate) fn storage(e: sqlx::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Hides a password in a database URL before it reaches a log or an error.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://kexin:s3cret@db:5432/kexin"),
            "postgres://kexin:***@db:5432/kexin"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
