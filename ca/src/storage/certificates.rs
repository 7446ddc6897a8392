//! The issuance journal: the writes of every issuance — the pending record
//! before the signature, its completion and audit entry after — through one
//! group-committed writer. Under load, concurrent issuances share one
//! transaction per round, with one statement per kind of write, instead of
//! queueing for SQLite's write lock with a commit (and an fsync) each.

use sqlx::{AnyConnection, AnyPool};

use super::group_commit::{BatchWriter, HeldConnection};
use super::{
    insert_rows_sql, rows_of_placeholders, storage, CertificateStatus, ROWS_PER_STATEMENT,
};
use crate::audit::{extend_chain, NewEntry};
use crate::Error;

pub(super) enum IssuanceWrite {
    /// A certificate about to be signed (an owned `PendingCertificate`).
    Pending {
        serial: String,
        issuer: String,
        profile: String,
        subject: String,
        not_before: i64,
        not_after: i64,
        tbs: Vec<u8>,
        requested_at: i64,
    },
    /// A signed certificate completing its pending record, with the audit
    /// entry that records the issuance, written only if the completion is.
    Issued {
        serial: String,
        der: Vec<u8>,
        issued_at: i64,
        audit: NewEntry,
    },
}

pub(super) struct IssuanceWriter {
    connection: HeldConnection,
}

impl IssuanceWriter {
    pub fn new(pool: AnyPool) -> Self {
        Self {
            connection: HeldConnection::new(pool),
        }
    }
}

impl BatchWriter for IssuanceWriter {
    type Item = IssuanceWrite;
    type Output = ();

    async fn write(&self, writes: &[IssuanceWrite]) -> Result<Vec<Result<(), Error>>, Error> {
        let mut held = self.connection.lock().await?;
        let outcome = write_batch(held.connection()?, writes).await;
        if outcome.is_err() {
            held.discard();
        }
        outcome
    }
}

async fn write_batch(
    connection: &mut AnyConnection,
    writes: &[IssuanceWrite],
) -> Result<Vec<Result<(), Error>>, Error> {
    let mut tx = sqlx::Connection::begin(connection).await.map_err(storage)?;
    let pending: Vec<_> = writes
        .iter()
        .filter(|w| matches!(w, IssuanceWrite::Pending { .. }))
        .collect();
    for rows in pending.chunks(ROWS_PER_STATEMENT) {
        insert_pending(&mut tx, rows).await?;
    }
    let issued: Vec<_> = writes
        .iter()
        .filter(|w| matches!(w, IssuanceWrite::Issued { .. }))
        .collect();
    let mut completed = 0;
    for rows in issued.chunks(ROWS_PER_STATEMENT) {
        completed += complete(&mut tx, rows).await?;
    }
    let mut outcomes: Vec<Result<(), Error>> = writes.iter().map(|_| Ok(())).collect();
    match (issued.as_slice(), completed) {
        (_, n) if n == issued.len() as u64 => {}
        // Alone, a completion that finds nothing pending is its own
        // failure; in a batch it is not known which one it was, so the
        // batch rolls back and its items are written one by one.
        ([IssuanceWrite::Issued { serial, .. }], 0) if writes.len() == 1 => {
            outcomes[0] = Err(Error::Storage(format!(
                "certificate {serial} was not pending when its signature completed"
            )));
            return Ok(outcomes);
        }
        _ => {
            return Err(Error::Storage(
                "a completed certificate was not pending".into(),
            ))
        }
    }
    let audit = issued.iter().filter_map(|w| match w {
        IssuanceWrite::Issued { audit, .. } => Some(audit),
        IssuanceWrite::Pending { .. } => None,
    });
    extend_chain(&mut tx, audit).await?;
    tx.commit().await.map_err(storage)?;
    Ok(outcomes)
}

async fn insert_pending(
    tx: &mut sqlx::AnyConnection,
    rows: &[&IssuanceWrite],
) -> Result<(), Error> {
    let sql = insert_rows_sql(
        "INSERT INTO certificates (serial, issuer, profile, subject, status, not_before, not_after, tbs, requested_at)",
        rows.len(),
        9,
    );
    let mut query = sqlx::query(&sql);
    for row in rows {
        if let IssuanceWrite::Pending {
            serial,
            issuer,
            profile,
            subject,
            not_before,
            not_after,
            tbs,
            requested_at,
        } = row
        {
            query = query
                .bind(serial)
                .bind(issuer)
                .bind(profile)
                .bind(subject)
                .bind(CertificateStatus::Pending.as_str())
                .bind(not_before)
                .bind(not_after)
                .bind(tbs)
                .bind(requested_at);
        }
    }
    match query.execute(&mut *tx).await {
        Ok(_) => Ok(()),
        // Which serial it was is known when the row is alone; in a batch,
        // the batch fails and its rows are retried one by one.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            let serials: Vec<&str> = rows
                .iter()
                .filter_map(|r| match r {
                    IssuanceWrite::Pending { serial, .. } => Some(serial.as_str()),
                    IssuanceWrite::Issued { .. } => None,
                })
                .collect();
            Err(Error::DuplicateSerial(serials.join(", ")))
        }
        Err(e) => Err(storage(e)),
    }
}

/// Completes the pending rows; returns how many were pending.
async fn complete(tx: &mut sqlx::AnyConnection, rows: &[&IssuanceWrite]) -> Result<u64, Error> {
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
        if let IssuanceWrite::Issued {
            serial,
            der,
            issued_at,
            ..
        } = row
        {
            query = query.bind(serial).bind(der).bind(issued_at);
        }
    }
    let done = query.execute(&mut *tx).await.map_err(storage)?;
    Ok(done.rows_affected())
}
