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
//!
//! On SQLite the journal has a connection of its own (`super::direct`).

use rusqlite::ToSql;
use sqlx::AnyPool;

use super::direct::DirectSqlite;
use super::group_commit::{HeldConnection, HeldGuard};
use super::{
    insert_rows_sql, rows_of_placeholders, storage, Backend, CertificateStatus, ROWS_PER_STATEMENT,
};
use crate::audit::{extend_chain, extend_chain_sqlite, AuditEvent, NewEntry};
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
pub struct IssuanceJournal(Journal);

enum Journal {
    Sqlite(DirectSqlite),
    Postgres(HeldConnection),
}

/// The journal held for one round.
pub struct JournalSession<'a>(Session<'a>);

enum Session<'a> {
    Sqlite(&'a DirectSqlite),
    Postgres(HeldGuard<'a>),
}

impl IssuanceJournal {
    pub(super) fn sqlite(direct: DirectSqlite) -> Self {
        Self(Journal::Sqlite(direct))
    }

    pub(super) fn postgres(pool: AnyPool) -> Self {
        Self(Journal::Postgres(HeldConnection::new(pool)))
    }

    /// Holds the journal's connection until the session is dropped.
    pub async fn open(&self) -> Result<JournalSession<'_>, Error> {
        Ok(JournalSession(match &self.0 {
            Journal::Sqlite(direct) => Session::Sqlite(direct),
            Journal::Postgres(held) => Session::Postgres(held.lock().await?),
        }))
    }
}

impl JournalSession<'_> {
    /// Commits `rows` as pending, all or none, without waiting for the
    /// disk (see the module's documentation). Fails with
    /// [`Error::DuplicateSerial`] if a serial was ever used.
    pub async fn record_pending(&mut self, rows: Vec<PendingCertificate>) -> Result<(), Error> {
        match &mut self.0 {
            Session::Sqlite(direct) => direct.run(move |c| sqlite::record_pending(c, &rows)).await,
            Session::Postgres(held) => postgres::record_pending(held.connection()?, &rows).await,
        }
    }

    /// Completes the `signed` certificates with their audit entries and
    /// marks the `failed` ones (their serials are never reused), in one
    /// transaction that is on disk when this returns. Fails, writing
    /// nothing, if any of them was not pending.
    pub async fn record_outcomes(
        &mut self,
        signed: Vec<SignedCertificate>,
        failed: Vec<String>,
    ) -> Result<(), Error> {
        match &mut self.0 {
            Session::Sqlite(direct) => {
                direct
                    .run(move |c| sqlite::record_outcomes(c, &signed, &failed))
                    .await
            }
            Session::Postgres(held) => {
                postgres::record_outcomes(held.connection()?, &signed, &failed).await
            }
        }
    }

    /// Drops the connection after a failure (a transaction left open rolls
    /// back as it closes); the next round opens another.
    pub fn discard(self) {
        match self.0 {
            // The direct connection drops itself after a failure.
            Session::Sqlite(_) => {}
            Session::Postgres(held) => held.discard(),
        }
    }
}

fn insert_pending_sql(backend: Backend, rows: usize) -> String {
    insert_rows_sql(
        backend,
        "INSERT INTO certificates (serial, issuer, profile, subject, status, not_before, not_after, tbs, requested_at)",
        rows,
        9,
    )
}

/// `$1` is the new status, `$2` pending; then serial, DER, issue time per row.
fn complete_sql(rows: usize) -> String {
    format!(
        "WITH signed (serial, der, issued_at) AS (VALUES {}) \
         UPDATE certificates SET status = $1, der = signed.der, issued_at = signed.issued_at \
         FROM signed WHERE certificates.serial = signed.serial AND certificates.status = $2",
        rows_of_placeholders(rows, 3, 3)
    )
}

/// `$1` is the new status, `$2` pending; then the serials.
fn mark_failed_sql(rows: usize) -> String {
    format!(
        "UPDATE certificates SET status = $1 WHERE status = $2 AND serial IN ({})",
        (3..3 + rows)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn not_pending() -> Error {
    Error::Storage("a signed or failed certificate was not pending".into())
}

fn duplicate(rows: &[PendingCertificate]) -> Error {
    // Which serial it was is known when the row is alone; in a batch, the
    // batch fails and its rows are retried one by one.
    let serials: Vec<&str> = rows.iter().map(|r| r.serial.as_str()).collect();
    Error::DuplicateSerial(serials.join(", "))
}

mod sqlite {
    use super::*;
    use crate::storage::direct::{begin, execute, failed};

    pub fn record_pending(
        connection: &mut rusqlite::Connection,
        rows: &[PendingCertificate],
    ) -> Result<(), Error> {
        let tx = begin(connection, "NORMAL")?;
        let status = CertificateStatus::Pending.as_str();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut values: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 9);
            for row in chunk {
                values.extend([
                    &row.serial as &dyn ToSql,
                    &row.issuer,
                    &row.profile,
                    &row.subject,
                    &status,
                    &row.not_before,
                    &row.not_after,
                    &row.tbs,
                    &row.requested_at,
                ]);
            }
            match execute(
                &tx,
                &insert_pending_sql(Backend::Sqlite, chunk.len()),
                &values,
            ) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    return Err(duplicate(chunk))
                }
                other => other.map_err(failed)?,
            };
        }
        tx.commit().map_err(failed)
    }

    pub fn record_outcomes(
        connection: &mut rusqlite::Connection,
        signed: &[SignedCertificate],
        failed_serials: &[String],
    ) -> Result<(), Error> {
        let tx = begin(connection, "FULL")?;
        let statuses = [
            CertificateStatus::Issued.as_str(),
            CertificateStatus::Pending.as_str(),
        ];
        let mut changed = 0;
        for chunk in signed.chunks(ROWS_PER_STATEMENT) {
            let mut values: Vec<&dyn ToSql> = vec![&statuses[0], &statuses[1]];
            for row in chunk {
                values.extend([&row.serial as &dyn ToSql, &row.der, &row.issued_at]);
            }
            changed += execute(&tx, &complete_sql(chunk.len()), &values).map_err(failed)?;
        }
        let statuses = [
            CertificateStatus::Failed.as_str(),
            CertificateStatus::Pending.as_str(),
        ];
        for chunk in failed_serials.chunks(ROWS_PER_STATEMENT) {
            let mut values: Vec<&dyn ToSql> = vec![&statuses[0], &statuses[1]];
            values.extend(chunk.iter().map(|s| s as &dyn ToSql));
            changed += execute(&tx, &mark_failed_sql(chunk.len()), &values).map_err(failed)?;
        }
        if changed != signed.len() + failed_serials.len() {
            return Err(not_pending());
        }
        extend_chain_sqlite(&tx, signed.iter().map(|s| &s.audit))?;
        tx.commit().map_err(failed)
    }
}

mod postgres {
    use super::*;

    pub async fn record_pending(
        connection: &mut sqlx::AnyConnection,
        rows: &[PendingCertificate],
    ) -> Result<(), Error> {
        let mut tx = sqlx::Connection::begin(connection).await.map_err(storage)?;
        crate::storage::leave_flush_to_later(&mut tx).await?;
        let status = CertificateStatus::Pending.as_str();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_pending_sql(Backend::Postgres, chunk.len());
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(&row.serial)
                    .bind(&row.issuer)
                    .bind(&row.profile)
                    .bind(&row.subject)
                    .bind(status)
                    .bind(row.not_before)
                    .bind(row.not_after)
                    .bind(&row.tbs)
                    .bind(row.requested_at);
            }
            match query.execute(&mut *tx).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(duplicate(chunk))
                }
                Err(e) => return Err(storage(e)),
            }
        }
        tx.commit().await.map_err(storage)
    }

    pub async fn record_outcomes(
        connection: &mut sqlx::AnyConnection,
        signed: &[SignedCertificate],
        failed: &[String],
    ) -> Result<(), Error> {
        let mut tx = sqlx::Connection::begin(connection).await.map_err(storage)?;
        let mut changed = 0;
        for chunk in signed.chunks(ROWS_PER_STATEMENT) {
            let sql = complete_sql(chunk.len());
            let mut query = sqlx::query(&sql)
                .bind(CertificateStatus::Issued.as_str())
                .bind(CertificateStatus::Pending.as_str());
            for row in chunk {
                query = query.bind(&row.serial).bind(&row.der).bind(row.issued_at);
            }
            changed += query
                .execute(&mut *tx)
                .await
                .map_err(storage)?
                .rows_affected();
        }
        for chunk in failed.chunks(ROWS_PER_STATEMENT) {
            let sql = mark_failed_sql(chunk.len());
            let mut query = sqlx::query(&sql)
                .bind(CertificateStatus::Failed.as_str())
                .bind(CertificateStatus::Pending.as_str());
            for serial in chunk {
                query = query.bind(serial);
            }
            changed += query
                .execute(&mut *tx)
                .await
                .map_err(storage)?
                .rows_affected();
        }
        if changed != (signed.len() + failed.len()) as u64 {
            return Err(not_pending());
        }
        extend_chain(&mut tx, signed.iter().map(|s| &s.audit)).await?;
        tx.commit().await.map_err(storage)
    }
}
