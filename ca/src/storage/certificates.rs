//! The issuance journal: the writes of every issuance — the pending record
//! before the signature, its completion and audit entry after. Issuances
//! that arrive together share one round (see `crate::issuance`): one
//! transaction records them all as pending, another completes them all,
//! with one statement per kind of write.
//!
//! Only the completing transaction is waited onto disk. Both databases
//! write their log in commit order, so the completion's flush makes the
//! pending records durable too, and nothing signed leaves Kexin before that
//! flush: a crash before it loses only signatures that nobody received.
//! The pending records are committed (visible to every other connection and
//! node, their serials taken) before anything is signed.

use sqlx::AnyPool;

use super::group_commit::{HeldConnection, HeldGuard};
use super::{
    insert_rows_sql, rows_of_placeholders, storage, Backend, CertificateStatus, ROWS_PER_STATEMENT,
};
use crate::audit::{extend_chain, AuditEvent, NewEntry};
use crate::Error;

/// A certificate about to be signed, with the exact bytes to be signed.
#[derive(Clone, Debug)]
pub struct PendingCertificate {
    pub serial: String,
    pub issuer: String,
    pub profile: String,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub tbs: Vec<u8>,
    pub requested_at: i64,
}

/// A signed certificate completing its pending record, with the audit
/// entry that records the issuance, written only if the completion is.
pub struct SignedCertificate {
    pub serial: String,
    pub der: Vec<u8>,
    pub issued_at: i64,
    pub(crate) audit: NewEntry,
}

impl SignedCertificate {
    pub fn new(serial: &str, der: &[u8], issued_at: i64, audit: AuditEvent<'_>) -> Self {
        Self {
            serial: serial.to_owned(),
            der: der.to_vec(),
            issued_at,
            audit: audit.into(),
        }
    }
}

/// The connection the issuance rounds write through, one round at a time.
pub struct IssuanceJournal {
    connection: HeldConnection,
    backend: Backend,
}

/// The journal held for one round.
pub struct JournalSession<'a> {
    guard: HeldGuard<'a>,
    backend: Backend,
}

impl IssuanceJournal {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Self {
        Self {
            connection: HeldConnection::new(pool),
            backend,
        }
    }

    /// Holds the journal's connection until the session is dropped.
    pub async fn open(&self) -> Result<JournalSession<'_>, Error> {
        Ok(JournalSession {
            guard: self.connection.lock().await?,
            backend: self.backend,
        })
    }
}

impl JournalSession<'_> {
    /// Commits `rows` as pending, all or none, without waiting for the
    /// disk (see the module's documentation). Fails with
    /// [`Error::DuplicateSerial`] if a serial was ever used.
    pub async fn record_pending(&mut self, rows: &[&PendingCertificate]) -> Result<(), Error> {
        let backend = self.backend;
        let connection = self.guard.connection()?;
        if backend == Backend::Sqlite {
            set_synchronous(connection, "NORMAL").await?;
        }
        let mut tx = sqlx::Connection::begin(connection).await.map_err(storage)?;
        if backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await
                .map_err(storage)?;
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            insert_pending(&mut tx, chunk).await?;
        }
        tx.commit().await.map_err(storage)
    }

    /// Completes the `signed` certificates with their audit entries and
    /// marks the `failed` ones (their serials are never reused), in one
    /// transaction that is on disk when this returns. Fails, writing
    /// nothing, if any of them was not pending.
    pub async fn record_outcomes(
        &mut self,
        signed: &[SignedCertificate],
        failed: &[&str],
    ) -> Result<(), Error> {
        let backend = self.backend;
        let connection = self.guard.connection()?;
        if backend == Backend::Sqlite {
            set_synchronous(connection, "FULL").await?;
        }
        let mut tx = sqlx::Connection::begin(connection).await.map_err(storage)?;
        let mut completed = 0;
        for chunk in signed.chunks(ROWS_PER_STATEMENT) {
            completed += complete(&mut tx, chunk).await?;
        }
        for chunk in failed.chunks(ROWS_PER_STATEMENT) {
            completed += mark_failed(&mut tx, chunk).await?;
        }
        if completed != (signed.len() + failed.len()) as u64 {
            return Err(Error::Storage(
                "a signed or failed certificate was not pending".into(),
            ));
        }
        extend_chain(&mut tx, signed.iter().map(|s| &s.audit)).await?;
        tx.commit().await.map_err(storage)
    }

    /// Drops the connection after a failure (a transaction left open rolls
    /// back as it closes); the next round opens another.
    pub fn discard(self) {
        self.guard.discard();
    }
}

/// SQLite's flush policy for this connection's next commits: `FULL`
/// flushes the log at each commit, `NORMAL` leaves it to a later one.
async fn set_synchronous(
    connection: &mut sqlx::AnyConnection,
    level: &'static str,
) -> Result<(), Error> {
    sqlx::query(&format!("PRAGMA synchronous = {level}"))
        .execute(connection)
        .await
        .map_err(storage)?;
    Ok(())
}

async fn insert_pending(
    tx: &mut sqlx::AnyConnection,
    rows: &[&PendingCertificate],
) -> Result<(), Error> {
    let sql = insert_rows_sql(
        "INSERT INTO certificates (serial, issuer, profile, subject, status, not_before, not_after, tbs, requested_at)",
        rows.len(),
        9,
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = query
            .bind(&row.serial)
            .bind(&row.issuer)
            .bind(&row.profile)
            .bind(&row.subject)
            .bind(CertificateStatus::Pending.as_str())
            .bind(row.not_before)
            .bind(row.not_after)
            .bind(&row.tbs)
            .bind(row.requested_at);
    }
    match query.execute(&mut *tx).await {
        Ok(_) => Ok(()),
        // Which serial it was is known when the row is alone; in a batch,
        // the batch fails and its rows are retried one by one.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            let serials: Vec<&str> = rows.iter().map(|r| r.serial.as_str()).collect();
            Err(Error::DuplicateSerial(serials.join(", ")))
        }
        Err(e) => Err(storage(e)),
    }
}

/// Completes the pending rows; returns how many were pending.
async fn complete(tx: &mut sqlx::AnyConnection, rows: &[SignedCertificate]) -> Result<u64, Error> {
    let sql = format!(
        "WITH signed (serial, der, issued_at) AS (VALUES {}) \
         UPDATE certificates SET status = $1, der = signed.der, issued_at = signed.issued_at \
         FROM signed WHERE certificates.serial = signed.serial AND certificates.status = $2",
        rows_of_placeholders(rows.len(), 3, 3)
    );
    let mut query = sqlx::query(&sql)
        .bind(CertificateStatus::Issued.as_str())
        .bind(CertificateStatus::Pending.as_str());
    for row in rows {
        query = query.bind(&row.serial).bind(&row.der).bind(row.issued_at);
    }
    let done = query.execute(&mut *tx).await.map_err(storage)?;
    Ok(done.rows_affected())
}

/// Marks the pending rows failed; returns how many were pending.
async fn mark_failed(tx: &mut sqlx::AnyConnection, serials: &[&str]) -> Result<u64, Error> {
    let sql = format!(
        "UPDATE certificates SET status = $1 WHERE status = $2 AND serial IN ({})",
        (3..3 + serials.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut query = sqlx::query(&sql)
        .bind(CertificateStatus::Failed.as_str())
        .bind(CertificateStatus::Pending.as_str());
    for serial in serials {
        query = query.bind(*serial);
    }
    let done = query.execute(&mut *tx).await.map_err(storage)?;
    Ok(done.rows_affected())
}
