//! SSO sessions, kept in the database rather than in memory: the server's
//! memory does not grow with the number of officials signed in (in memory
//! a session took ~500 bytes, and at 2,500 sign-ins a second with a
//! 30-minute idle time nothing bounded them); sessions survive a restart;
//! and on PostgreSQL every node sees every session.
//!
//! A session is a row keyed by the [`sid`](crate::provider::sid) of its
//! cookie (the cookie value itself is never stored), which begins with the
//! session's start time: new sessions go to the end of the key's index, a
//! batch of them into one or two pages, rather than each to a random page
//! (whose write, and its checkpoint, cost a sign-in more than the rest of
//! its storage). The row holds the systems that took part in the session.
//! It ends at `expires_at`: the earlier of its last use plus the idle time
//! and its start plus the absolute lifetime ([`SessionLifetimes`]). A use moves
//! `expires_at` on only when that gains more than
//! [`TOUCH_GRANULARITY`], so a session in steady use costs a write a
//! minute rather than one a request, and its idle end is exact to within
//! that.
//!
//! Starting a session is the write of every sign-in: its row (and the
//! sign-in's code, [`crate::codes`]) is inserted in the transaction of the
//! sign-in's audit entry
//! ([`AuditLog::append_unflushed_with`](kexin_ca::audit::AuditLog::append_unflushed_with)),
//! so a session exists exactly when its record does and costs no commit of
//! its own. That commit does not flush the log: the sign-in's tokens go out
//! only after their refresh token's commit, which flushes it. A session
//! lost to a power cut before then is a sign-in to repeat; nothing it let
//! out outlives it.

use std::time::Duration;

use kexin_ca::storage::direct;
use kexin_ca::storage::rows::{NewRow, SqlValue};
use kexin_ca::storage::sweep::{delete_keys_before, SweepSchedule};
use kexin_ca::storage::Database;
use sqlx::Row;

use crate::challenges::CHALLENGE_TTL;
use crate::codes::CODE_TTL;
use crate::provider::Official;
use crate::{now, storage, Error};

/// How long an SSO session lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// A session unused this long ends.
    pub idle: Duration,
    /// And this long after sign-in in any case.
    pub absolute: Duration,
}

impl Default for SessionLifetimes {
    /// 30 minutes idle, 10 hours in all: a working day.
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(10 * 3600),
        }
    }
}

impl SessionLifetimes {
    /// When a session started at `created` and last used at `used` ends.
    fn ends(&self, created: i64, used: i64) -> i64 {
        (used + self.idle.as_secs() as i64).min(created + self.absolute.as_secs() as i64)
    }
}

/// A use of a session is written only when it moves the session's end on
/// by more than this.
pub const TOUCH_GRANULARITY: Duration = Duration::from_secs(60);

/// How often ended sessions (and expired codes) are deleted, and how many
/// at most at a time, so that the delete never holds the database's write
/// lock for long.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
const SWEEP_AT_MOST: i64 = 25_000;

/// A live session: its official, and when it ends as stored.
#[derive(Clone, Debug)]
pub struct LiveSession {
    pub official: Official,
    created: i64,
    expires_at: i64,
}

/// What ended with a session: its account and the systems that took part.
#[derive(Debug)]
pub struct EndedSession {
    pub subject: String,
    pub clients: Vec<String>,
}

pub struct Sessions {
    db: Database,
    lifetimes: SessionLifetimes,
    /// When ended sessions are next deleted (Unix seconds).
    next_sweep: SweepSchedule,
}

impl Sessions {
    pub fn new(db: Database, lifetimes: SessionLifetimes) -> Self {
        Self {
            db,
            lifetimes,
            next_sweep: SweepSchedule::new(SWEEP_EVERY),
        }
    }

    pub fn lifetimes(&self) -> SessionLifetimes {
        self.lifetimes
    }

    /// The row of a new session of `official` under `sid`, with `client`
    /// among its systems when the sign-in is for one. Now and then this
    /// also starts deleting ended sessions in the background.
    pub fn start(&self, sid: String, official: &Official, client: Option<&str>) -> NewRow {
        let created = now();
        let runtime = tokio::runtime::Handle::try_current();
        if let (Ok(runtime), true) = (runtime, self.next_sweep.due()) {
            let sessions = Self::new(self.db.clone(), self.lifetimes);
            runtime.spawn(async move {
                if let Err(e) = sessions.sweep().await {
                    tracing::warn!(error = %e, "ended SSO sessions could not be deleted");
                }
            });
        }
        NewRow {
            insert: INSERT_SESSION,
            values: vec![
                SqlValue::Text(sid),
                SqlValue::Text(official.subject.clone()),
                SqlValue::Text(official.claims.to_string()),
                SqlValue::Text(client.unwrap_or_default().to_owned()),
                SqlValue::Integer(created),
                SqlValue::Integer(self.lifetimes.ends(created, created)),
            ],
        }
    }

    /// Deletes up to 25,000 ended sessions, and as many expired codes and
    /// claims of expired challenges.
    pub async fn sweep(&self) -> Result<(), Error> {
        sqlx::query(SWEEP)
            .bind(now())
            .bind(SWEEP_AT_MOST)
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        let issued_before = (now() - CODE_TTL.as_secs() as i64) * 1000;
        let claims_before = kexin_ca::secrets::claims_expired_before(CHALLENGE_TTL);
        for (table, key, before) in [
            ("oidc_codes", "code_key", format!("{issued_before:012x}")),
            ("oidc_spent_challenges", "challenge_key", claims_before),
        ] {
            delete_keys_before(&self.db, table, key, &before, SWEEP_AT_MOST).await?;
        }
        Ok(())
    }

    /// The session under `sid` if it is live now.
    pub async fn find(&self, sid: &str) -> Result<Option<LiveSession>, Error> {
        const SQL: &str =
            "SELECT subject, claims, created, expires_at FROM oidc_sessions WHERE sid = $1";
        let found = self
            .db
            .look_up(
                SQL,
                &[sid],
                |r| {
                    let get = direct::failed;
                    Ok((
                        r.get::<_, String>(0).map_err(get)?,
                        r.get::<_, String>(1).map_err(get)?,
                        r.get::<_, i64>(2).map_err(get)?,
                        r.get::<_, i64>(3).map_err(get)?,
                    ))
                },
                |r| {
                    let get = |e: sqlx::Error| kexin_ca::Error::Storage(e.to_string());
                    Ok((
                        r.try_get::<String, _>(0).map_err(get)?,
                        r.try_get::<String, _>(1).map_err(get)?,
                        r.try_get::<i64, _>(2).map_err(get)?,
                        r.try_get::<i64, _>(3).map_err(get)?,
                    ))
                },
            )
            .await?;
        Ok(found
            .filter(|&(_, _, _, expires_at)| expires_at > now())
            .map(|(subject, claims, created, expires_at)| LiveSession {
                official: Official {
                    subject,
                    claims: serde_json::from_str(&claims).unwrap_or_default(),
                },
                created,
                expires_at,
            }))
    }

    /// The session under `sid` if it is live now, marked used. A use that
    /// cannot be written ends the session no sooner than its last written
    /// use said: the session still counts.
    pub async fn use_live(&self, sid: &str) -> Result<Option<LiveSession>, Error> {
        let Some(live) = self.find(sid).await? else {
            return Ok(None);
        };
        if let Err(e) = self.touch(sid, &live).await {
            tracing::warn!(error = %e, "an SSO session's use could not be recorded");
        }
        Ok(Some(live))
    }

    /// Marks `session` used now: its end moves on, if by more than
    /// [`TOUCH_GRANULARITY`].
    pub async fn touch(&self, sid: &str, session: &LiveSession) -> Result<(), Error> {
        let moved = self.lifetimes.ends(session.created, now());
        if moved - session.expires_at <= TOUCH_GRANULARITY.as_secs() as i64 {
            return Ok(());
        }
        // Only a live session: one that ended meanwhile stays ended.
        sqlx::query(
            "UPDATE oidc_sessions SET expires_at = $1 WHERE sid = $2 AND expires_at < $3 AND expires_at > $4",
        )
        .bind(moved)
        .bind(sid)
        .bind(moved)
        .bind(now())
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// Counts `client_id` among the systems of the session (told at
    /// logout); false if there is no such live session.
    pub async fn join(&self, sid: &str, client_id: &str) -> Result<bool, Error> {
        // Compare and set: two systems joining at once both stay listed.
        loop {
            let row =
                sqlx::query("SELECT clients FROM oidc_sessions WHERE sid = $1 AND expires_at > $2")
                    .bind(sid)
                    .bind(now())
                    .fetch_optional(self.db.pool())
                    .await
                    .map_err(storage)?;
            let Some(row) = row else {
                return Ok(false);
            };
            let clients: String = row.try_get(0).map_err(storage)?;
            if clients.split(' ').any(|c| c == client_id) {
                return Ok(true);
            }
            let joined = format!("{clients} {client_id}");
            let updated = sqlx::query(
                "UPDATE oidc_sessions SET clients = $1 WHERE sid = $2 AND clients = $3",
            )
            .bind(joined.trim_start())
            .bind(sid)
            .bind(&clients)
            .execute(self.db.pool())
            .await
            .map_err(storage)?;
            if updated.rows_affected() == 1 {
                return Ok(true);
            }
        }
    }

    /// Ends the session under `sid`: what ended, if it was live.
    pub async fn end(&self, sid: &str) -> Result<Option<EndedSession>, Error> {
        let ended = sqlx::query(
            "DELETE FROM oidc_sessions WHERE sid = $1 RETURNING subject, clients, expires_at",
        )
        .bind(sid)
        .fetch_optional(self.db.pool())
        .await
        .map_err(storage)?;
        let Some(ended) = ended else {
            return Ok(None);
        };
        if ended.try_get::<i64, _>(2).map_err(storage)? <= now() {
            return Ok(None);
        }
        let clients: String = ended.try_get(1).map_err(storage)?;
        Ok(Some(EndedSession {
            subject: ended.try_get(0).map_err(storage)?,
            clients: clients.split_whitespace().map(str::to_owned).collect(),
        }))
    }
}

const INSERT_SESSION: &str =
    "INSERT INTO oidc_sessions (sid, subject, claims, clients, created, expires_at)";

/// Up to [`SWEEP_AT_MOST`] ended sessions.
const SWEEP: &str = "DELETE FROM oidc_sessions WHERE sid IN \
     (SELECT sid FROM oidc_sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_idle_or_at_its_absolute_lifetime() {
        let lifetimes = SessionLifetimes {
            idle: Duration::from_secs(600),
            absolute: Duration::from_secs(3600),
        };
        assert_eq!(lifetimes.ends(1000, 1000), 1600);
        assert_eq!(lifetimes.ends(1000, 2000), 2600);
        assert_eq!(lifetimes.ends(1000, 4540), 4600);
    }
}
