//! The token log with group commit: every token's serial, time, imprint and
//! requester are committed before the token is handed out, and concurrent
//! requests share one transaction, so the log costs one commit per batch
//! rather than one per token.
//!
//! A token that leaves the process at once (an answer over HTTP) is
//! flushed to disk before it is returned. One that another part of Kexin
//! embeds first (a seal's signature time-stamp) may leave its flush to that
//! part's own next commit, the audit entry it writes before releasing the
//! document: both databases write their log (SQLite's WAL, PostgreSQL's
//! WAL) in commit order, so a later commit's flush carries every earlier
//! commit with it, and one flush a document is saved.

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

/// When a token's log entry is on disk: `WithCallersNextCommit` for a
/// token that leaves the process only after such a commit.
pub use kexin_ca::storage::Durability;

#[derive(Clone, Debug)]
pub struct TokenLog {
    entries: Arc<GroupCommit<TokenWriter>>,
}

impl TokenLog {
    pub fn new(db: Database) -> Self {
        Self {
            entries: Arc::new(GroupCommit::new(TokenWriter::new(&db))),
        }
    }

    /// Returns once `entry` is committed, and flushed as `durability` says.
    pub async fn record(&self, entry: LogEntry, durability: Durability) -> Result<(), Error> {
        self.entries
            .submit((entry, durability))
            .await
            .map_err(|e| Error::Log(e.to_string()))
    }
}

struct TokenWriter {
    connection: HeldConnection,
    statements: Statements,
    /// Whether the held connection's commits flush, once set; `None` for
    /// a connection not yet told (a new one flushes, as the pool's do).
    flushing: Mutex<Option<bool>>,
}

impl TokenWriter {
    fn new(db: &Database) -> Self {
        Self {
            connection: HeldConnection::new(db.pool().clone()),
            statements: Statements {
                backend: db.backend(),
                by_rows: Mutex::default(),
            },
            flushing: Mutex::default(),
        }
    }

    /// Makes the held connection's next commits flush or not.
    async fn flush_commits(
        &self,
        connection: &mut AnyConnection,
        flush: bool,
    ) -> Result<(), sqlx::Error> {
        if *lock(&self.flushing) == Some(flush) {
            return Ok(());
        }
        let setting = match (self.statements.backend, flush) {
            (Backend::Sqlite, true) => "PRAGMA synchronous = FULL",
            (Backend::Sqlite, false) => "PRAGMA synchronous = NORMAL",
            (Backend::Postgres, true) => "SET synchronous_commit TO ON",
            (Backend::Postgres, false) => "SET synchronous_commit TO OFF",
        };
        sqlx::query(setting).execute(connection).await?;
        *lock(&self.flushing) = Some(flush);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data; a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The INSERT for each batch size, built once per size.
struct Statements {
    backend: Backend,
    by_rows: Mutex<Vec<Option<Arc<str>>>>,
}

impl Statements {
    fn insert(&self, rows: usize) -> Arc<str> {
        let mut by_rows = lock(&self.by_rows);
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
    type Item = (LogEntry, Durability);
    type Output = ();

    async fn write(
        &self,
        entries: &[(LogEntry, Durability)],
    ) -> Result<Vec<Result<(), kexin_ca::Error>>, kexin_ca::Error> {
        let mut held = self.connection.lock().await?;
        let connection = held.connection()?;
        let flush = entries.iter().any(|(_, d)| *d == Durability::Flushed);
        let mut outcome = self.flush_commits(connection, flush).await;
        if outcome.is_ok() {
            outcome = if entries.len() <= ROWS_PER_INSERT {
                insert(connection, &self.statements, entries).await
            } else {
                insert_in_chunks(connection, &self.statements, entries).await
            };
        }
        match outcome {
            Ok(()) => Ok(entries.iter().map(|_| Ok(())).collect()),
            Err(e) => {
                tracing::error!(error = %e, tokens = entries.len(), "token log write failed");
                *lock(&self.flushing) = None;
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
    entries: &[(LogEntry, Durability)],
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
    batch: &[(LogEntry, Durability)],
) -> Result<(), sqlx::Error> {
    let sql = statements.insert(batch.len());
    let mut q = sqlx::query(&sql);
    for (e, _) in batch {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: &str) -> LogEntry {
        LogEntry {
            serial: serial.to_owned(),
            gen_time_ms: 0,
            policy: "1.2.3".to_owned(),
            hash_algorithm: "sha256".to_owned(),
            message_imprint: "00".to_owned(),
            requester: "test".to_owned(),
        }
    }

    /// Whether the writer's connection flushes its commits: SQLite's
    /// `synchronous` FULL (2) rather than NORMAL (1), PostgreSQL's
    /// `synchronous_commit` on rather than off.
    async fn flushes(writer: &TokenWriter) -> bool {
        let mut held = writer.connection.lock().await.unwrap();
        let connection = held.connection().unwrap();
        match writer.statements.backend {
            Backend::Sqlite => {
                let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(connection)
                    .await
                    .unwrap();
                assert!(level == 1 || level == 2, "synchronous = {level}");
                level == 2
            }
            Backend::Postgres => {
                let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(connection)
                    .await
                    .unwrap();
                assert!(setting == "on" || setting == "off", "{setting}");
                setting == "on"
            }
        }
    }

    async fn write(writer: &TokenWriter, entries: &[(LogEntry, Durability)]) {
        let outcomes = writer.write(entries).await.unwrap();
        assert!(outcomes.iter().all(Result::is_ok));
    }

    /// Deferring the flush is the exception: a batch holding any token that
    /// leaves at once is committed flushing, also right after deferred ones.
    async fn a_batch_with_a_token_that_leaves_at_once_is_flushed(db: Database) {
        use Durability::{Flushed, WithCallersNextCommit as Deferred};
        let writer = TokenWriter::new(&db);
        write(&writer, &[(entry("01"), Deferred)]).await;
        assert!(!flushes(&writer).await);
        write(&writer, &[(entry("02"), Deferred), (entry("03"), Flushed)]).await;
        assert!(flushes(&writer).await);
        write(&writer, &[(entry("04"), Deferred)]).await;
        write(&writer, &[(entry("05"), Flushed)]).await;
        assert!(flushes(&writer).await);
        let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM timestamp_tokens")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(logged, 5);
    }

    #[tokio::test]
    async fn on_sqlite_a_batch_with_a_token_that_leaves_at_once_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let url = Database::sqlite_url(&dir.path().join("kexin.db"));
        a_batch_with_a_token_that_leaves_at_once_is_flushed(Database::connect(&url).await.unwrap())
            .await;
    }

    #[tokio::test]
    async fn on_postgres_a_batch_with_a_token_that_leaves_at_once_is_flushed() {
        let url = kexin_test_support::fresh_postgres_database().await;
        a_batch_with_a_token_that_leaves_at_once_is_flushed(Database::connect(&url).await.unwrap())
            .await;
    }
}
