//! Sessions in PostgreSQL, for the replicas of a system that share one
//! database. The table `kexin_rp_sessions` is created when missing.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgPool;

use super::{idle_since, Session, SessionStore, StoreError, StoreFuture, SWEEP_INTERVAL};

/// Replicas starting together take turns to create the table (an advisory
/// lock under this key): `create table if not exists` alone races.
const SCHEMA_LOCK: i64 = 0x6b65_7869_6e72_7073;

const SCHEMA: [&str; 2] = [
    "create table if not exists kexin_rp_sessions (
        key text primary key,
        sid text not null,
        session text not null,
        checked_at bigint not null,
        checking_until bigint not null default 0
    )",
    "create index if not exists kexin_rp_sessions_sid on kexin_rp_sessions (sid)",
];

/// Sessions in a PostgreSQL database.
pub struct PgSessionStore {
    pool: PgPool,
    /// Unix seconds of this store's last sweep of idle sessions: its first
    /// save sweeps, then one a minute.
    swept: AtomicU64,
}

fn store_error(e: sqlx::Error) -> StoreError {
    StoreError(e.to_string())
}

/// Unix seconds as PostgreSQL's `bigint`.
fn seconds(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

impl PgSessionStore {
    /// Connects to `url` (`postgres://…`; across a network, with
    /// `?sslmode=verify-full&sslrootcert=CA.pem`). sqlx's TLS asks rustls
    /// for the process's default provider: if the process has named none,
    /// this names aws-lc-rs (with two compiled in, rustls would panic).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        Self::from_pool(PgPool::connect(url).await.map_err(store_error)?).await
    }

    /// Uses the system's own pool.
    pub async fn from_pool(pool: PgPool) -> Result<Self, StoreError> {
        let mut tx = pool.begin().await.map_err(store_error)?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(Self {
            pool,
            swept: AtomicU64::new(0),
        })
    }

    /// Runs the DELETE `sql` with `value` as its one parameter.
    fn delete<'a>(&'a self, sql: &'static str, value: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(sql)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    async fn sweep(&self, now: u64) -> Result<(), StoreError> {
        let last = self.swept.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_INTERVAL.as_secs()
            || self
                .swept
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        sqlx::query("delete from kexin_rp_sessions where checked_at <= $1")
            .bind(seconds(idle_since(now)))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

impl SessionStore for PgSessionStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let row: Option<(String,)> =
                sqlx::query_as("select session from kexin_rp_sessions where key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(store_error)?;
            row.map(|(json,)| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| StoreError(format!("a stored session does not read: {e}")))
        })
    }

    fn save<'a>(&'a self, key: &'a str, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.sweep(crate::unix_now()).await?;
            let json = serde_json::to_string(session)
                .map_err(|e| StoreError(format!("a session does not write: {e}")))?;
            sqlx::query(
                "insert into kexin_rp_sessions (key, sid, session, checked_at, checking_until)
                 values ($1, $2, $3, $4, 0)
                 on conflict (key) do update set sid = excluded.sid,
                    session = excluded.session, checked_at = excluded.checked_at,
                    checking_until = 0",
            )
            .bind(key)
            .bind(session.sid())
            .bind(json)
            .bind(seconds(session.checked_at))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.delete("delete from kexin_rp_sessions where key = $1", key)
    }

    fn remove_sso_session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        self.delete("delete from kexin_rp_sessions where sid = $1", sid)
    }

    fn claim_check<'a>(&'a self, key: &'a str, now: u64, until: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let taken = sqlx::query(
                "update kexin_rp_sessions set checking_until = $3
                 where key = $1 and checking_until <= $2",
            )
            .bind(key)
            .bind(seconds(now))
            .bind(seconds(until))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
            Ok(taken.rows_affected() == 1)
        })
    }
}
