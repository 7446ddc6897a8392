//! The token log with group commit: every token's serial, time, imprint and
//! requester are committed before the token is handed out, and concurrent
//! requests share one transaction, so the log costs one commit per batch
//! rather than one per token.

use kexin_ca::storage::{insert_rows_sql, Database};
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use crate::Error;

const MAX_BATCH: usize = 256;

#[derive(Clone, Debug)]
pub struct LogEntry {
    pub serial: String,
    pub gen_time_ms: i64,
    pub policy: String,
    pub hash_algorithm: String,
    pub message_imprint: String,
    pub requester: String,
}

type Pending = (LogEntry, oneshot::Sender<Result<(), String>>);

#[derive(Clone, Debug)]
pub struct TokenLog {
    tx: mpsc::Sender<Pending>,
}

impl TokenLog {
    /// Starts the writer task on the current runtime.
    pub fn start(db: Database) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(db, rx));
        Self { tx }
    }

    /// Returns once `entry` is committed.
    pub async fn record(&self, entry: LogEntry) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((entry, done))
            .await
            .map_err(|_| Error::Log("token log writer stopped".into()))?;
        wait.await
            .map_err(|_| Error::Log("token log writer stopped".into()))?
            .map_err(Error::Log)
    }
}

async fn writer(db: Database, mut rx: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // One connection kept for the log: SQLite drops a connection's page
    // cache whenever another connection wrote, so rotating through the pool
    // re-reads the table's pages for every batch. It is detached from the
    // pool so that closing the pool at shutdown does not wait for it.
    let mut connection: Option<AnyConnection> = None;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let result = match &mut connection {
            Some(c) => Ok(c),
            None => db
                .pool()
                .acquire()
                .await
                .map(|c| connection.insert(c.detach())),
        };
        let result = match result {
            Ok(c) => insert(c, &batch).await,
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string());
        if let Err(e) = &result {
            connection = None;
            tracing::error!(error = %e, tokens = batch.len(), "token log write failed");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}

async fn insert(connection: &mut AnyConnection, batch: &[Pending]) -> Result<(), sqlx::Error> {
    let sql = insert_rows_sql(
        "INSERT INTO timestamp_tokens (serial, gen_time_ms, policy, hash_algorithm, message_imprint, requester)",
        batch.len(),
        6,
    );
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
