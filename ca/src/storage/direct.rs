//! A connection of its own to the SQLite database file, for the writers
//! that batch (issuance journal, audit chain, refresh tokens), which share
//! it, and connections that read in place. Driven on a blocking
//! thread, a whole transaction is one hand-over between threads, where
//! sqlx's worker thread takes one per statement, and each hand-over wakes
//! a thread: under load those wake-ups cost more than the SQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::ToSql;

use super::{insert_rows_sql, Backend, ROWS_PER_STATEMENT};
use crate::Error;

/// The connection, opened on first use and again after a failure; clones
/// share it.
#[derive(Clone)]
pub struct DirectSqlite {
    path: Arc<Path>,
    connection: Arc<tokio::sync::Mutex<Option<rusqlite::Connection>>>,
}

impl std::fmt::Debug for DirectSqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSqlite")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DirectSqlite {
    pub(super) fn new(path: Arc<Path>) -> Self {
        Self {
            path,
            connection: Arc::default(),
        }
    }

    /// Runs `work` on the connection on a blocking thread, one work at a
    /// time. After a failure the connection is dropped, which rolls back
    /// whatever transaction `work` left open.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut rusqlite::Connection) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let mut slot = self.connection.clone().lock_owned().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = match slot.take() {
                Some(c) => c,
                None => open(&path, WRITER_BUSY_TIMEOUT)?,
            };
            let outcome = work(&mut connection);
            if outcome.is_ok() {
                *slot = Some(connection);
            }
            outcome
        })
        .await
        .map_err(|e| Error::Storage(format!("a database task failed: {e}")))?
    }
}

/// How long a writer waits for another one to finish (as sqlx's connections).
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an in-place read waits, blocking its thread, in the rare cases
/// where a WAL reader must (recovery after a crash, a truncating checkpoint);
/// past it the caller takes the pool instead.
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(20);

fn open(path: &Path, busy_timeout: Duration) -> Result<rusqlite::Connection, Error> {
    let connection = rusqlite::Connection::open(path).map_err(failed)?;
    connection.busy_timeout(busy_timeout).map_err(failed)?;
    // One statement text per batch size.
    connection.set_prepared_statement_cache_capacity(64);
    // Statement journals and RETURNING's results stay in memory rather than
    // in files created and unlinked in /var/tmp (~30 a second under
    // sign-in load).
    connection
        .pragma_update(None, "temp_store", "MEMORY")
        .map_err(failed)?;
    Ok(connection)
}

/// Begins a transaction whose commit flushes the log (`FULL`) or leaves
/// that to a later commit (`NORMAL`).
pub fn begin<'c>(
    connection: &'c mut rusqlite::Connection,
    synchronous: &str,
) -> Result<rusqlite::Transaction<'c>, Error> {
    connection
        .pragma_update(None, "synchronous", synchronous)
        .map_err(failed)?;
    connection.transaction().map_err(failed)
}

/// Runs a statement written with `$n` placeholders (the text PostgreSQL
/// takes too). SQLite would number `$n` in order of appearance; `?n` is
/// the n-th value whatever the order.
pub fn execute(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    values: &[&dyn ToSql],
) -> rusqlite::Result<usize> {
    tx.prepare_cached(&sql.replace('$', "?"))?.execute(values)
}

/// Inserts `rows` with multi-row INSERTs of at most [`ROWS_PER_STATEMENT`]
/// rows each; `insert` is `INSERT INTO t (a, b, …)` and `values` gives one
/// row's `N` values in column order.
pub fn insert_rows<R, const N: usize>(
    tx: &rusqlite::Transaction<'_>,
    insert: &str,
    rows: &[R],
    values: impl for<'r> Fn(&'r R) -> [&'r dyn ToSql; N],
) -> Result<(), Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut bound: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * N);
        for row in chunk {
            bound.extend(values(row));
        }
        execute(
            tx,
            &insert_rows_sql(Backend::Sqlite, insert, chunk.len(), N),
            &bound,
        )
        .map_err(failed)?;
    }
    Ok(())
}

pub fn failed(e: rusqlite::Error) -> Error {
    Error::Storage(e.to_string())
}

/// Connections that read in place, on the caller's thread. A lookup by
/// primary key takes microseconds, less than handing it to sqlx's worker
/// thread and waking the caller again, which under load costs more than
/// the read itself. Only for such lookups: anything that can take long
/// stays on the pool. In WAL mode a reader does not wait for writers; when
/// it would have to (see `READER_BUSY_TIMEOUT`), the read fails and the
/// caller reads through the pool.
pub struct InPlaceReads {
    path: Arc<Path>,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

/// Connections kept for reuse; more are opened while more read at once.
const IDLE_READERS: usize = 4;

impl std::fmt::Debug for InPlaceReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlaceReads")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl InPlaceReads {
    pub(super) fn new(path: Arc<Path>) -> Self {
        Self {
            path,
            idle: std::sync::Mutex::default(),
        }
    }

    pub fn read<T>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let idle = self.lock().pop();
        let connection = match idle {
            Some(c) => c,
            None => open(&self.path, READER_BUSY_TIMEOUT)?,
        };
        let outcome = work(&connection);
        let mut idle = self.lock();
        if outcome.is_ok() && idle.len() < IDLE_READERS {
            idle.push(connection);
        }
        outcome
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<rusqlite::Connection>> {
        // A list of connections: a panic elsewhere cannot leave it torn.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a query written with `$n` placeholders that returns at most one
/// row, mapped by `row`.
pub fn query_optional<T>(
    connection: &rusqlite::Connection,
    sql: &str,
    values: &[&dyn ToSql],
    row: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    let mut statement = connection
        .prepare_cached(&sql.replace('$', "?"))
        .map_err(failed)?;
    let mut rows = statement.query(values).map_err(failed)?;
    match rows.next().map_err(failed)? {
        Some(r) => row(r).map(Some),
        None => Ok(None),
    }
}
