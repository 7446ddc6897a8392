//! The token log with group commit: every token's serial, time, imprint and
//! requester are committed before the token is handed out, and concurrent
//! requests share one transaction, so the log costs one commit per batch
//! rather than one per token.

use std::sync::{Arc, Mutex};

use kexin_ca::storage::group_commit::{BatchWriter, GroupCommit, HeldConnection};
use kexin_ca::storage::{insert_rows_sql, Backend, Database};
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
            entries: Arc::new(GroupCommit::new(TokenWriter {
                connection: HeldConnection::new(db.pool().clone()),
                statements: Statements {
                    backend: db.backend(),
                    by_rows: Mutex::default(),
                },
            })),
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

struct TokenWriter {
    connection: HeldConnection,
    statements: Statements,
}

/// The INSERT for each batch size, built once per size.
struct Statements {
    backend: Backend,
    by_rows: Mutex<Vec<Option<Arc<str>>>>,
}

impl Statements {
    fn insert(&self, rows: usize) -> Arc<str> {
        let mut by_rows = self.by_rows.lock().unwrap_or_else(|p| p.into_inner());
        if by_rows.len() <= rows {
            by_rows.resize(rows + 1, None);
        }
        by_rows[rows]
            .get_or_insert_with(|| {
                insert_rows_sql(
                    self.backend,
                    "INSERT INTO timestamp_tokens (serial, gen_time_ms, policy, hash_algorithm, message_imprint, requester)",
                    rows,
                    6,
                )
                .into()
            })
            .clone()
    }
}

impl BatchWriter for TokenWriter {
    type Item = LogEntry;
    type Output = ();

    async fn write(
        &self,
        entries: &[LogEntry],
    ) -> Result<Vec<Result<(), kexin_ca::Error>>, kexin_ca::Error> {
        let mut held = self.connection.lock().await?;
        let connection = held.connection()?;
        let outcome = if entries.len() <= ROWS_PER_INSERT {
            insert(connection, &self.statements, entries).await
        } else {
            insert_in_chunks(connection, &self.statements, entries).await
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
    statements: &Statements,
    entries: &[LogEntry],
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(connection).await?;
    for rows in entries.chunks(ROWS_PER_INSERT) {
        insert(&mut tx, statements, rows).await?;
    }
    tx.commit().await
}

async fn insert(
    connection: &mut AnyConnection,
    statements: &Statements,
    batch: &[LogEntry],
) -> Result<(), sqlx::Error> {
    let sql = statements.insert(batch.len());
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
