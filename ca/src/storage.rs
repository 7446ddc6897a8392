//! Storage: SQLite (embedded default, WAL mode) or PostgreSQL behind one
//! pool. Queries use `$n` placeholders, which both accept, so one query text
//! serves both; only the migrations differ per backend.
//!
//! Storage only stores: it makes no decisions about what may be issued.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::Error;

mod certificates;
pub mod direct;
pub mod group_commit;
mod licenses;
mod requests;
pub mod rows;
mod seals;
pub mod sweep;
pub use certificates::{IssuanceJournal, JournalSession, PendingCertificate, SignedCertificate};
pub use licenses::LicenseRow;
pub use requests::{DecisionRow, NewRequest, RequestRow};
pub use seals::SealRow;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection of the `Any` driver talks to.
    pub fn of(connection: &sqlx::AnyConnection) -> Self {
        if connection.backend_name().eq_ignore_ascii_case("postgresql") {
            Self::Postgres
        } else {
            Self::Sqlite
        }
    }
}

/// A connection pool with the schema migrated.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// On SQLite, the one connection every batch writer (issuance journal,
    /// audit chain, refresh tokens, token log) commits through. SQLite has
    /// one writer at a time anyway; on connections of their own the writers
    /// waited for each other in SQLite's busy handler, sleeping 1-10 ms at a
    /// time (~130 sleeps a second under sign-in load), and every commit
    /// emptied the page caches of the others.
    writer: Option<direct::DirectSqlite>,
    /// On SQLite, point lookups read in place (`direct::InPlaceReads`).
    in_place_reads: Option<Arc<direct::InPlaceReads>>,
    /// Bumped after every revocation, hold and release through this
    /// handle (and its clones): what caches a certificate's status checks it.
    status_changes: Arc<AtomicU64>,
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

#[derive(Clone, Debug, serde::Serialize)]
pub struct CertificateRecord {
    pub serial: String,
    pub issuer: String,
    pub profile: String,
    pub subject: String,
    /// pending, issued, failed, revoked or hold.
    pub status: String,
    pub not_before: i64,
    pub not_after: i64,
    #[serde(skip)]
    pub der: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<i64>,
    pub invalidity_date: Option<i64>,
}

/// A revoked (or held) certificate as a CRL or OCSP response lists it.
#[derive(Clone, Debug)]
pub struct RevokedEntry {
    pub serial: String,
    pub revoked_at: i64,
    pub reason: i64,
    pub invalidity_date: Option<i64>,
}

/// Search criteria; every field narrows the result.
#[derive(Clone, Debug, Default)]
pub struct CertificateQuery {
    pub issuer: Option<String>,
    pub status: Option<String>,
    /// Substring of the subject DN.
    pub subject: Option<String>,
    pub serial_prefix: Option<String>,
    /// Valid at this Unix time and expiring no later than `.1`; the
    /// results then come soonest to expire first, for renewal in time.
    pub expiring: Option<(i64, i64)>,
    pub limit: i64,
    pub offset: i64,
}

const CERTIFICATE_COLUMNS: &str = "serial, issuer, profile, subject, status, not_before, not_after, der, revoked_at, revocation_reason, invalidity_date";

/// The newest CRL of a CA.
#[derive(Clone, Debug)]
pub struct CrlRecord {
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub der: Vec<u8>,
}

impl Database {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let sqlite_file = url.strip_prefix("sqlite:").map(sqlite_file).transpose()?;
        let backend = if sqlite_file.is_some() {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::Storage(format!(
                "unsupported database URL {:?}: use sqlite:// or postgres://",
                redact(url)
            )));
        };
        let options = match backend {
            // A file connection does not go stale: pinging it before every
            // use only costs a round trip to its worker thread.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(12)
                .test_before_acquire(false),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        };
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
        Ok(Self {
            pool,
            backend,
            in_place_reads: sqlite_file
                .clone()
                .map(|path| Arc::new(direct::InPlaceReads::new(path))),
            writer: sqlite_file.map(direct::DirectSqlite::new),
            status_changes: Arc::default(),
        })
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

    /// Replaces the certificate of the CA `name` with `renewed`, if it is
    /// still `current`; false when another renewal came first.
    pub async fn replace_authority_certificate(
        &self,
        name: &str,
        current: &[u8],
        renewed: &[u8],
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE authorities SET certificate = $1 WHERE name = $2 AND certificate = $3",
        )
        .bind(renewed)
        .bind(name)
        .bind(current)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(done.rows_affected() == 1)
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

    /// The connection issuance rounds write through. Only one journal
    /// should write at a time (SQLite has one writer): keep one per process.
    pub fn issuance_journal(&self) -> IssuanceJournal {
        match self.direct_sqlite() {
            Some(direct) => IssuanceJournal::sqlite(direct),
            None => IssuanceJournal::postgres(self.pool.clone()),
        }
    }

    /// The writers' connection to the database, on SQLite (shared by the
    /// clones of this handle: one transaction at a time).
    pub fn direct_sqlite(&self) -> Option<direct::DirectSqlite> {
        self.writer.clone()
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
        let sql = format!("SELECT {CERTIFICATE_COLUMNS} FROM certificates WHERE serial = $1");
        self.look_up(
            &sql,
            &[serial],
            |r| certificate_from_row(r),
            certificate_from_row,
        )
        .await
    }

    /// A lookup of at most one row by key (`keys` bound to `$1`, `$2`, …),
    /// mapped by `in_place` or `pooled`: on SQLite read in place on the
    /// caller's thread, through the pool if that fails or elsewhere.
    pub async fn look_up<T>(
        &self,
        sql: &str,
        keys: &[&str],
        in_place: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, Error>,
        pooled: impl FnOnce(&AnyRow) -> Result<T, Error>,
    ) -> Result<Option<T>, Error> {
        if let Some(reads) = &self.in_place_reads {
            let values: Vec<&dyn rusqlite::ToSql> =
                keys.iter().map(|k| k as &dyn rusqlite::ToSql).collect();
            match reads.read(|c| direct::query_optional(c, sql, &values, in_place)) {
                Ok(found) => return Ok(found),
                Err(e) => {
                    tracing::debug!(error = %e, "in-place read failed; reading through the pool")
                }
            }
        }
        let mut query = sqlx::query(sql);
        for key in keys {
            query = query.bind(*key);
        }
        let row = query.fetch_optional(&self.pool).await.map_err(storage)?;
        row.map(|r| pooled(&r)).transpose()
    }

    /// Certificates matching `q`, newest first.
    pub async fn search(&self, q: &CertificateQuery) -> Result<Vec<CertificateRecord>, Error> {
        let subject = q.subject.as_ref().map(|s| format!("%{}%", escape_like(s)));
        let serial = q
            .serial_prefix
            .as_ref()
            .map(|s| format!("{}%", escape_like(&s.to_ascii_lowercase())));
        let order = if q.expiring.is_some() {
            "not_after, serial"
        } else {
            "requested_at DESC, serial"
        };
        let rows = sqlx::query(&format!(
            "SELECT {CERTIFICATE_COLUMNS} FROM certificates \
             WHERE ($1 IS NULL OR issuer = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR subject LIKE $3 ESCAPE '\\') AND ($4 IS NULL OR serial LIKE $4 ESCAPE '\\') \
             AND ($7 IS NULL OR (not_after > $7 AND not_after <= $8)) \
             ORDER BY {order} LIMIT $5 OFFSET $6"
        ))
        .bind(&q.issuer)
        .bind(&q.status)
        .bind(subject)
        .bind(serial)
        .bind(q.limit.clamp(1, 1000))
        .bind(q.offset.max(0))
        .bind(q.expiring.map(|(from, _)| from))
        .bind(q.expiring.map(|(_, until)| until))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter().map(certificate_from_row).collect()
    }

    /// Moves an issued (or held) certificate to revoked, or an issued one to
    /// hold when `reason` is certificateHold (6). Returns false if the
    /// certificate was not in a state that allows it.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: i64,
        at: i64,
        invalidity_date: Option<i64>,
    ) -> Result<bool, Error> {
        let (status, from) = if reason == 6 {
            ("hold", "('issued')")
        } else {
            ("revoked", "('issued', 'hold')")
        };
        let done = sqlx::query(&format!(
            "UPDATE certificates SET status = $1, revoked_at = $2, revocation_reason = $3, invalidity_date = $4 \
             WHERE serial = $5 AND status IN {from}"
        ))
        .bind(status)
        .bind(at)
        .bind(reason)
        .bind(invalidity_date)
        .bind(serial)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        self.status_changes.fetch_add(1, Ordering::Release);
        Ok(done.rows_affected() == 1)
    }

    /// Returns a held certificate to good. Returns false if it was not on hold.
    pub async fn release(&self, serial: &str) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE certificates SET status = 'issued', revoked_at = NULL, revocation_reason = NULL, invalidity_date = NULL \
             WHERE serial = $1 AND status = 'hold'",
        )
        .bind(serial)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        self.status_changes.fetch_add(1, Ordering::Release);
        Ok(done.rows_affected() == 1)
    }

    /// Streams the unexpired revoked and held certificates of `issuer` in
    /// serial order, without loading them all at once.
    pub fn revoked_entries<'a>(
        &'a self,
        issuer: &'a str,
        now: i64,
    ) -> impl futures_util::Stream<Item = Result<RevokedEntry, Error>> + 'a {
        use futures_util::StreamExt;
        sqlx::query(
            "SELECT serial, revoked_at, revocation_reason, invalidity_date FROM certificates \
             WHERE issuer = $1 AND status IN ('revoked', 'hold') AND not_after > $2 ORDER BY serial",
        )
        .bind(issuer)
        .bind(now)
        .fetch(&self.pool)
        .map(|row| {
            let r = row.map_err(storage)?;
            Ok(RevokedEntry {
                serial: r.try_get(0).map_err(storage)?,
                revoked_at: r.try_get(1).map_err(storage)?,
                reason: r.try_get(2).map_err(storage)?,
                invalidity_date: r.try_get(3).map_err(storage)?,
            })
        })
    }

    /// How many entries [`Database::revoked_entries`] would stream.
    pub async fn count_revoked(&self, issuer: &str, now: i64) -> Result<i64, Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM certificates WHERE issuer = $1 AND status IN ('revoked', 'hold') AND not_after > $2",
        )
        .bind(issuer)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(storage)?;
        row.try_get::<i64, _>(0).map_err(storage)
    }

    /// Takes the next CRL number of `ca` (1 for the first).
    pub async fn next_crl_number(&self, ca: &str) -> Result<i64, Error> {
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let updated = sqlx::query("UPDATE crls SET number = number + 1 WHERE ca = $1")
            .bind(ca)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO crls (ca, number, this_update, next_update, der) VALUES ($1, 1, 0, 0, $2)")
                .bind(ca)
                .bind(Vec::<u8>::new())
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
        }
        let row = sqlx::query("SELECT number FROM crls WHERE ca = $1")
            .bind(ca)
            .fetch_one(&mut *tx)
            .await
            .map_err(storage)?;
        let number: i64 = row.try_get(0).map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(number)
    }

    /// Stores CRL `number` of `ca` unless a newer one is already stored.
    pub async fn store_crl(&self, ca: &str, crl: &CrlRecord) -> Result<(), Error> {
        sqlx::query("UPDATE crls SET this_update = $1, next_update = $2, der = $3 WHERE ca = $4 AND number = $5")
            .bind(crl.this_update)
            .bind(crl.next_update)
            .bind(&crl.der)
            .bind(ca)
            .bind(crl.number)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    pub async fn crl(&self, ca: &str) -> Result<Option<CrlRecord>, Error> {
        let row = sqlx::query("SELECT number, this_update, next_update, der FROM crls WHERE ca = $1 AND this_update > 0")
            .bind(ca)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        row.map(|r| {
            Ok(CrlRecord {
                number: r.try_get(0).map_err(storage)?,
                this_update: r.try_get(1).map_err(storage)?,
                next_update: r.try_get(2).map_err(storage)?,
                der: r.try_get(3).map_err(storage)?,
            })
        })
        .transpose()
    }

    pub async fn insert_ocsp_responder(
        &self,
        ca: &str,
        key_label: &str,
        certificate: &[u8],
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO ocsp_responders (ca, key_label, certificate) VALUES ($1, $2, $3) \
             ON CONFLICT (ca) DO UPDATE SET key_label = excluded.key_label, certificate = excluded.certificate",
        )
        .bind(ca)
        .bind(key_label)
        .bind(certificate)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// (CA, key label, certificate DER) of every OCSP responder.
    pub async fn ocsp_responders(&self) -> Result<Vec<(String, String, Vec<u8>)>, Error> {
        let rows =
            sqlx::query("SELECT ca, key_label, certificate FROM ocsp_responders ORDER BY ca")
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(storage)?,
                    r.try_get(1).map_err(storage)?,
                    r.try_get(2).map_err(storage)?,
                ))
            })
            .collect()
    }

    /// Claims the renewal of the service certificate `name` until `until`
    /// (unix seconds) if no node holds it at `now`; whether it was claimed.
    pub async fn claim_renewal(&self, name: &str, now: i64, until: i64) -> Result<bool, Error> {
        let done = sqlx::query(
            "INSERT INTO service_renewals (name, claimed_until) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET claimed_until = excluded.claimed_until \
             WHERE service_renewals.claimed_until <= $3",
        )
        .bind(name)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(done.rows_affected() == 1)
    }

    /// Makes the SSO token key `label` sign from `signs_from` (unix
    /// seconds) on every node.
    pub async fn schedule_token_key(&self, label: &str, signs_from: i64) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO token_keys (label, signs_from) VALUES ($1, $2) \
             ON CONFLICT (label) DO UPDATE SET signs_from = excluded.signs_from",
        )
        .bind(label)
        .bind(signs_from)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// (label, signs from) of every SSO token key scheduled to sign later
    /// than it was made.
    pub async fn token_key_schedule(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query("SELECT label, signs_from FROM token_keys ORDER BY label")
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        labelled_numbers(&rows)
    }

    /// Records (or replaces) the certificate of a Kexin service such as the TSA.
    pub async fn put_service_certificate(
        &self,
        name: &str,
        key_label: &str,
        certificate: &[u8],
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO service_certificates (name, key_label, certificate) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET key_label = excluded.key_label, certificate = excluded.certificate",
        )
        .bind(name)
        .bind(key_label)
        .bind(certificate)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// (key label, certificate DER) of the service `name`.
    pub async fn service_certificate(
        &self,
        name: &str,
    ) -> Result<Option<(String, Vec<u8>)>, Error> {
        let row =
            sqlx::query("SELECT key_label, certificate FROM service_certificates WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)?;
        row.map(|r| {
            Ok((
                r.try_get(0).map_err(storage)?,
                r.try_get(1).map_err(storage)?,
            ))
        })
        .transpose()
    }

    pub async fn insert_principal(
        &self,
        serial: &str,
        name: &str,
        role: &str,
        at: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO principals (serial, name, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(serial)
        .bind(name)
        .bind(role)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// A certificate's status and, if it belongs to a registered
    /// principal, the principal's name and role: what authenticating a
    /// client certificate needs, in one query.
    /// Changes whenever a certificate's status changed through this
    /// database handle. Read it before reading a status that is to be
    /// cached: a change committed meanwhile then shows as a new value.
    pub fn status_generation(&self) -> u64 {
        self.status_changes.load(Ordering::Acquire)
    }

    pub async fn certificate_holder(
        &self,
        serial: &str,
    ) -> Result<Option<(String, Option<(String, String)>)>, Error> {
        let row = sqlx::query(
            "SELECT c.status, p.name, p.role FROM certificates c \
             LEFT JOIN principals p ON p.serial = c.serial WHERE c.serial = $1",
        )
        .bind(serial)
        .fetch_optional(&self.pool)
        .await
        .map_err(storage)?;
        row.map(|r| {
            let status: String = r.try_get(0).map_err(storage)?;
            let name: Option<String> = r.try_get(1).map_err(storage)?;
            let role: Option<String> = r.try_get(2).map_err(storage)?;
            Ok((status, name.zip(role)))
        })
        .transpose()
    }

    /// Serials recorded before `requested_before` (unix seconds) but never
    /// completed, e.g. after a crash mid-signature.
    pub async fn pending_serials(&self, requested_before: i64) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "SELECT serial FROM certificates WHERE status = $1 AND requested_at < $2 ORDER BY requested_at",
        )
        .bind(CertificateStatus::Pending.as_str())
        .bind(requested_before)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(storage))
            .collect()
    }
}

/// A column value that both connection kinds read.
trait Value:
    sqlx::Type<sqlx::Any> + for<'r> sqlx::Decode<'r, sqlx::Any> + rusqlite::types::FromSql
{
}

impl<T> Value for T where
    T: sqlx::Type<sqlx::Any> + for<'r> sqlx::Decode<'r, sqlx::Any> + rusqlite::types::FromSql
{
}

/// A row of either connection kind, read by column index.
trait Columns {
    fn column<T: Value>(&self, index: usize) -> Result<T, Error>;
}

impl Columns for AnyRow {
    fn column<T: Value>(&self, index: usize) -> Result<T, Error> {
        self.try_get(index).map_err(storage)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn column<T: Value>(&self, index: usize) -> Result<T, Error> {
        self.get(index).map_err(direct::failed)
    }
}

fn certificate_from_row(r: &impl Columns) -> Result<CertificateRecord, Error> {
    Ok(CertificateRecord {
        serial: r.column(0)?,
        issuer: r.column(1)?,
        profile: r.column(2)?,
        subject: r.column(3)?,
        status: r.column(4)?,
        not_before: r.column(5)?,
        not_after: r.column(6)?,
        der: r.column(7)?,
        revoked_at: r.column(8)?,
        revocation_reason: r.column(9)?,
        invalidity_date: r.column(10)?,
    })
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
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

/// Most rows one multi-row statement carries: 100 rows of 9 values stay
/// far below both backends' limits on bound parameters.
pub const ROWS_PER_STATEMENT: usize = 100;

/// `{insert} VALUES (…), (…), …`: a multi-row INSERT of `rows` rows of
/// `columns` values, e.g. `insert_rows_sql(backend, "INSERT INTO t (a, b)", 2, 2)`.
/// PostgreSQL gets `$1, $2, …`; SQLite gets anonymous `?` in the same
/// positions, because sqlx binds a `$N` parameter on SQLite only after
/// asking its name, a lookup that scans the statement's list of names:
/// binding a batch grew with the square of its size.
pub fn insert_rows_sql(backend: Backend, insert: &str, rows: usize, columns: usize) -> String {
    match backend {
        Backend::Postgres => format!("{insert} VALUES {}", rows_of_placeholders(rows, columns, 1)),
        Backend::Sqlite => {
            let row = format!("({})", vec!["?"; columns].join(", "));
            format!("{insert} VALUES {}", vec![row; rows].join(", "))
        }
    }
}

/// `($first, …), (…), …`: placeholders for `rows` rows of `columns`
/// values, numbered from `first`.
pub fn rows_of_placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(first + row * columns + column).to_string());
        }
        sql.push(')');
    }
    sql
}

/// The file of an SQLite URL (`sqlite://PATH?options`): Kexin's SQLite
/// databases are files, which several connections open.
fn sqlite_file(rest: &str) -> Result<Arc<Path>, Error> {
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path.is_empty() || path == ":memory:" {
        return Err(Error::Storage(
            "an SQLite database must be a file: sqlite://PATH".into(),
        ));
    }
    // Percent-decoded, as sqlx decodes it: both must open the same file.
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| Error::Storage("the SQLite file name is not UTF-8".into()))?;
    Ok(Arc::from(Path::new(&*path)))
}

/// When a record is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Before the call that records it returns.
    Flushed,
    /// With the caller's next flushing commit to the same database, which
    /// the caller must make before what the record is about leaves the
    /// process. Both backends write their log in commit order, so that
    /// later flush carries this record.
    WithCallersNextCommit,
}

/// Commits the PostgreSQL transaction `tx` without waiting for its flush
/// (`synchronous_commit` off for this transaction alone).
pub(crate) async fn leave_flush_to_later(tx: &mut sqlx::AnyConnection) -> Result<(), Error> {
    sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(tx)
        .await
        .map(drop)
        .map_err(storage)
}

/// A database driver's error as this crate's.
pub fn storage(e: sqlx::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Rows of a text and a number (a status and its count, a name and a
/// time), as pairs.
fn labelled_numbers(rows: &[AnyRow]) -> Result<Vec<(String, i64)>, Error> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(storage)?,
                r.try_get(1).map_err(storage)?,
            ))
        })
        .collect()
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
    fn placeholders_number_rows_consecutively() {
        assert_eq!(
            super::rows_of_placeholders(2, 3, 3),
            "($3, $4, $5), ($6, $7, $8)"
        );
        assert_eq!(
            super::insert_rows_sql(super::Backend::Postgres, "INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            super::insert_rows_sql(super::Backend::Sqlite, "INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        let file = |rest| super::sqlite_file(rest).map(|p| p.display().to_string());
        assert_eq!(
            file("///var/kexin/kexin.db?mode=rwc").unwrap(),
            "/var/kexin/kexin.db"
        );
        assert_eq!(file("//data/kexin.db").unwrap(), "data/kexin.db");
        assert_eq!(file("kexin.db").unwrap(), "kexin.db");
        assert_eq!(file("////srv/kexin.db").unwrap(), "//srv/kexin.db");
        assert_eq!(file("//data/a%20b%3F.db").unwrap(), "data/a b?.db");
        assert!(file(":memory:").is_err());
        assert!(file("//?mode=rwc").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://kexin:s3cret@db:5432/kexin"),
            "postgres://kexin:***@db:5432/kexin"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
