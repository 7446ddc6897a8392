//! The token log with group commit: every token's serial, time, imprint and
//! requester are committed before the token is handed out, and concurrent
//! requests share one transaction, so the log costs one commit per batch
//! rather than one per token.

use std::sync::Arc;

use kexin_ca::storage::group_commit::{BatchWriter, GroupCommit, HeldConnection};
use kexin_ca::storage::{insert_rows_sql, Database};
use sqlx::AnyConnection;

use crate::Error;

/// Most tokens one INSERT carries (6 values each, far below both
/// backends' limits on bound parameters).
const ROWS_PER_INSERT: usize = 256;

#[derive(Clone, Debug)]
pub struct LogEntry {
    pub serial: String,
    pub gen_time_ms: i64,
    pub policy: String,
    pub hash_algorithm: String,
    pub message_imprint: String,
    pub requester: String,
}

#[derive(Clone, Debug)]
pub struct TokenLog {
    entries: Arc<GroupCommit<TokenWriter>>,
}

impl TokenLog {
    pub fn new(db: Database) -> Self {
        Self {
            entries: Arc::new(GroupCommit::new(TokenWriter(HeldConnection::new(
                db.pool().clone(),
            )))),
        }
    }

    /// Returns once `entry` is committed.
    pub async fn record(&self, entry: LogEntry) -> Result<(), Error> {
        self.entries
            .submit(entry)
            .await
            .map_err(|e| Error::Log(e.to_string()))
    }
}

struct TokenWriter(HeldConnection);

impl BatchWriter for TokenWriter {
    type Item = LogEntry;
    type Output = ();

    async fn write(
        &self,
        entries: &[LogEntry],
    ) -> Result<Vec<Result<(), kexin_ca::Error>>, kexin_ca::Error> {
        let mut held = self.0.lock().await?;
        let connection = held.connection()?;
        let outcome = if entries.len() <= ROWS_PER_INSERT {
            insert(connection, entries).await
        } else {
            insert_in_chunks(connection, entries).await
        };
        match outcome {
            Ok(()) => Ok(entries.iter().map(|_| Ok(())).collect()),
            Err(e) => {
                tracing::error!(error = %e, tokens = entries.len(), "token log write failed");
                held.discard();
                Err(kexin_ca::Error::Storage(e.to_string()))
            }
        }
    }
}

/// A batch larger than one INSERT, all or nothing.
async fn insert_in_chunks(
    connection: &mut AnyConnection,
    entries: &[LogEntry],
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(connection).await?;
    for rows in entries.chunks(ROWS_PER_INSERT) {
        insert(&mut tx, rows).await?;
    }
    tx.commit().await
}

async fn insert(connection: &mut AnyConnection, batch: &[LogEntry]) -> Result<(), sqlx::Error> {
    let sql = insert_rows_sql(
        "INSERT INTO timestamp_tokens (serial, gen_time_ms, policy, hash_algorithm, message_imprint, requester)",
        batch.len(),
        6,
    );
    let mut q = sqlx::query(&sql);
    for e in batch {
        q = q
            .bind(&e.serial)
            .bind(e.gen_time_ms)
            .bind(&e.policy)
            .bind(&e.hash_algorithm)
            .bind(&e.message_imprint)
            .bind(&e.requester);
    }
    q.execute(connection).await?;
    Ok(())
}
