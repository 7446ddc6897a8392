//! Rows to insert, held as data, so that a writer of another component can
//! insert them in its own transaction with either backend: a state change
//! written in the same transaction as its audit entry
//! ([`AuditLog::append_unflushed_with`](crate::audit::AuditLog::append_unflushed_with))
//! exists exactly when its record does, and costs no commit of its own.

use rusqlite::types::ToSqlOutput;
use rusqlite::ToSql;

use super::{direct, insert_rows_sql, storage, Backend};
use crate::Error;

/// One row: `insert` is `INSERT INTO t (a, b, …)` and `values` holds its
/// values in column order. A row whose key is taken fails its whole
/// transaction with [`Error::Conflict`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRow {
    pub insert: &'static str,
    pub values: Vec<SqlValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlValue {
    Text(String),
    Integer(i64),
    Null,
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Self::Text(t) => t.to_sql(),
            Self::Integer(i) => i.to_sql(),
            Self::Null => rusqlite::types::Null.to_sql(),
        }
    }
}

/// The rows grouped by statement (a batch's rows alternate between
/// tables), each group in its order, in runs of one multi-row INSERT.
fn runs<'a>(rows: &[&'a NewRow]) -> Vec<Vec<&'a NewRow>> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (r.insert, r.values.len()));
    rows.chunk_by(|a, b| a.insert == b.insert && a.values.len() == b.values.len())
        .flat_map(|run| run.chunks(super::ROWS_PER_STATEMENT))
        .map(<[&NewRow]>::to_vec)
        .collect()
}

/// Inserts `rows` in the caller's SQLite transaction.
pub(crate) fn insert_sqlite(tx: &rusqlite::Transaction<'_>, rows: &[&NewRow]) -> Result<(), Error> {
    for run in runs(rows) {
        let sql = insert_rows_sql(
            Backend::Sqlite,
            run[0].insert,
            run.len(),
            run[0].values.len(),
        );
        let values: Vec<&dyn ToSql> = run
            .iter()
            .flat_map(|row| row.values.iter().map(|v| v as &dyn ToSql))
            .collect();
        match direct::execute(tx, &sql, &values) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                return Err(taken(run[0].insert))
            }
            other => other.map_err(direct::failed)?,
        };
    }
    Ok(())
}

/// Inserts `rows` in the caller's transaction, or alone on a pool
/// connection.
pub async fn insert(tx: &mut sqlx::AnyConnection, rows: &[&NewRow]) -> Result<(), Error> {
    let backend = Backend::of(tx);
    for run in &runs(rows) {
        let sql = insert_rows_sql(backend, run[0].insert, run.len(), run[0].values.len());
        let mut query = sqlx::query(&sql);
        for value in run.iter().flat_map(|row| &row.values) {
            query = match value {
                SqlValue::Text(t) => query.bind(t.as_str()),
                SqlValue::Integer(i) => query.bind(*i),
                SqlValue::Null => query.bind(None::<String>),
            };
        }
        match query.execute(&mut *tx).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(taken(run[0].insert))
            }
            other => other.map_err(storage)?,
        };
    }
    Ok(())
}

/// A row whose key another row has: [`Error::Conflict`], which a caller
/// that inserts a row to claim something once (an answered challenge)
/// reads as "already claimed".
fn taken(insert: &str) -> Error {
    let table = insert
        .strip_prefix("INSERT INTO ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("a table");
    Error::Conflict(format!("{table} already holds a row with that key"))
}
