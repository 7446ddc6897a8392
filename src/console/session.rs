//! Console sessions: random identifiers bound to a client certificate,
//! with idle and absolute expiry. The CSRF token is per session.
//!
//! Sessions are rows of the database (`console_sessions`), not one node's
//! memory: behind a load balancer an officer's requests reach any node of
//! the instance and every node honours the session, and signing out at one
//! ends it at all. A row is keyed by a SHA-256 of its cookie, and the
//! CSRF token is another hash of the cookie, stored nowhere: whoever reads
//! the database can neither present a session (nor could they without the
//! officer's certificate) nor forge its forms. A sign-in's row is inserted in the transaction
//! of its `console.login` audit entry: a session exists exactly when its
//! record does. A use moves the session's end on only when that gains more
//! than [`TOUCH_GRANULARITY`], so its idle end is exact to within that.

use std::time::Duration;

use kexin_ca::issuance::now;
use kexin_ca::storage::rows::{NewRow, SqlValue};
use kexin_ca::storage::sweep::SweepSchedule;
use kexin_ca::storage::{storage, Database};
use kexin_ca::Error;
use sqlx::Row;

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after sign-in however busy it is.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// A use of a session is written only when it moves the session's end on
/// by more than this.
const TOUCH_GRANULARITY: Duration = Duration::from_secs(60);
/// How often ended sessions are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub struct Sessions {
    db: Database,
    next_sweep: SweepSchedule,
}

/// A session about to start: the id its cookie carries, and the row that
/// starts it when inserted.
pub struct NewSession {
    pub id: String,
    pub row: NewRow,
}

impl Sessions {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            next_sweep: SweepSchedule::new(SWEEP_EVERY),
        }
    }

    /// A session for the certificate `serial`. Now and then this also
    /// starts deleting ended sessions in the background.
    pub fn start(&self, serial: &str) -> Result<NewSession, Error> {
        let id = random_token()?;
        let now = now();
        if let (Ok(runtime), true) = (tokio::runtime::Handle::try_current(), self.next_sweep.due())
        {
            let db = self.db.clone();
            runtime.spawn(async move {
                if let Err(e) = sweep(&db, now).await {
                    tracing::warn!(error = %e, "ended console sessions could not be deleted");
                }
            });
        }
        let row = NewRow {
            insert: "INSERT INTO console_sessions (session_key, serial, created, expires_at)",
            values: vec![
                SqlValue::Text(key(&id)),
                SqlValue::Text(serial.to_owned()),
                SqlValue::Integer(now),
                SqlValue::Integer(ends(now, now)),
            ],
        };
        Ok(NewSession { id, row })
    }

    /// The CSRF token of session `id` if it is live and belongs to the
    /// certificate `serial`; marks it used.
    pub async fn touch(&self, id: &str, serial: &str) -> Result<Option<String>, Error> {
        let session_key = key(id);
        let row = sqlx::query(
            "SELECT serial, created, expires_at FROM console_sessions WHERE session_key = $1",
        )
        .bind(&session_key)
        .fetch_optional(self.db.pool())
        .await
        .map_err(storage)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (owner, created, expires_at): (String, i64, i64) = (
            row.try_get(0).map_err(storage)?,
            row.try_get(1).map_err(storage)?,
            row.try_get(2).map_err(storage)?,
        );
        let now = now();
        if expires_at <= now || owner != serial {
            return Ok(None);
        }
        let moved = ends(created, now);
        if moved - expires_at > TOUCH_GRANULARITY.as_secs() as i64 {
            // Only a live session: one that ended meanwhile stays ended.
            sqlx::query(
                "UPDATE console_sessions SET expires_at = $1 \
                 WHERE session_key = $2 AND expires_at > $3 AND expires_at < $4",
            )
            .bind(moved)
            .bind(&session_key)
            .bind(now)
            .bind(moved)
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        }
        Ok(Some(hash("kexin-console-csrf", id)))
    }

    /// Ends session `id`, at every node.
    pub async fn end(&self, id: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM console_sessions WHERE session_key = $1")
            .bind(key(id))
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        Ok(())
    }
}

/// Deletes the sessions ended by `now`: officers' sessions are few, so
/// all at once.
async fn sweep(db: &Database, now: i64) -> Result<(), Error> {
    sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await
        .map_err(storage)?;
    Ok(())
}

/// When a session started at `created` and last used at `used` ends.
fn ends(created: i64, used: i64) -> i64 {
    (used + IDLE.as_secs() as i64).min(created + ABSOLUTE.as_secs() as i64)
}

/// Where the session of cookie `id` is stored.
fn key(id: &str) -> String {
    hash("kexin-console-session", id)
}

/// SHA-256 of `id` under a label, so that the key and the CSRF token of
/// one cookie tell nothing of each other.
fn hash(label: &str, id: &str) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(label.as_bytes());
    context.update(b"\n");
    context.update(id.as_bytes());
    hex::encode(context.finish())
}

fn random_token() -> Result<String, Error> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Crypto("no randomness".into()))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_idle_or_at_its_absolute_lifetime() {
        let idle = IDLE.as_secs() as i64;
        let absolute = ABSOLUTE.as_secs() as i64;
        assert_eq!(ends(1000, 1000), 1000 + idle);
        assert_eq!(ends(1000, 5000), 5000 + idle);
        assert_eq!(ends(1000, 1000 + absolute - 60), 1000 + absolute);
    }

    async fn started(sessions: &Sessions, serial: &str) -> NewSession {
        let new = sessions.start(serial).unwrap();
        let mut db = sessions.db.pool().acquire().await.unwrap();
        kexin_ca::storage::rows::insert(&mut db, &[&new.row])
            .await
            .unwrap();
        new
    }

    #[tokio::test]
    async fn a_session_belongs_to_one_certificate_is_shared_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let url = Database::sqlite_url(&dir.path().join("k.db"));
        let (node_a, node_b) = (
            Sessions::new(Database::connect(&url).await.unwrap()),
            Sessions::new(Database::connect(&url).await.unwrap()),
        );
        let new = started(&node_a, "aa").await;
        let stored: String = sqlx::query_scalar("SELECT session_key FROM console_sessions")
            .fetch_one(node_a.db.pool())
            .await
            .unwrap();
        assert_ne!(stored, new.id, "the cookie itself was stored");
        let columns: String = sqlx::query_scalar(
            "SELECT serial || ' ' || created || ' ' || expires_at FROM console_sessions",
        )
        .fetch_one(node_a.db.pool())
        .await
        .unwrap();
        assert!(node_b.touch(&new.id, "bb").await.unwrap().is_none());
        let csrf = node_b.touch(&new.id, "aa").await.unwrap();
        assert_eq!(csrf, node_a.touch(&new.id, "aa").await.unwrap());
        let csrf = csrf.expect("a live session");
        assert!(
            !columns.contains(&csrf) && stored != csrf,
            "the CSRF token was stored"
        );

        // Idle past its end: refused, and then swept.
        sqlx::query("UPDATE console_sessions SET expires_at = $1")
            .bind(now() - 1)
            .execute(node_a.db.pool())
            .await
            .unwrap();
        assert!(node_b.touch(&new.id, "aa").await.unwrap().is_none());
        sweep(&node_a.db, now()).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions")
            .fetch_one(node_a.db.pool())
            .await
            .unwrap();
        assert_eq!(left, 0);

        let new = started(&node_a, "aa").await;
        assert!(node_b.touch(&new.id, "aa").await.unwrap().is_some());
        node_a.end(&new.id).await.unwrap();
        assert!(node_b.touch(&new.id, "aa").await.unwrap().is_none());
    }
}
