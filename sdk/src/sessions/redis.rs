//! Sessions in Redis (or Valkey), for the replicas of a system that share
//! one.
//!
//! A session is a hash under `{prefix}s:{key}`: its JSON, its SSO session
//! and when the right to check it ends. It expires a
//! [`crate::axum::SESSION_IDLE`] after it was last checked, so Redis
//! forgets idle sessions by itself. The keys of each SSO session's
//! sessions are a set under `{prefix}sid:{sid}`, for a back-channel logout.
//! Claiming and saving are Lua scripts, each one atomic in Redis.

use redis::aio::ConnectionManager;
use redis::Script;

use super::{Session, SessionStore, StoreError, StoreFuture};

/// Stores the session (`ARGV[1]` JSON, `ARGV[2]` its SSO session) with no
/// one holding the right to check it, lists it under its SSO session, and
/// lets both expire at `ARGV[3]` (unix seconds): the list no sooner than
/// the last of its sessions.
const SAVE: &str = r"
redis.call('HSET', KEYS[1], 'session', ARGV[1], 'sid', ARGV[2], 'claim', 0)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
local now = tonumber(redis.call('TIME')[1])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[3]) - now then
  redis.call('EXPIREAT', KEYS[2], ARGV[3])
end
return 1
";

/// Takes the right to check the session until `ARGV[2]` if it exists and
/// no one holds the right at `ARGV[1]`.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local held = tonumber(redis.call('HGET', KEYS[1], 'claim') or '0')
if held > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'claim', ARGV[2])
return 1
";

/// Deletes every session listed under an SSO session, and the list.
const REMOVE_SSO_SESSION: &str = r"
local keys = redis.call('SMEMBERS', KEYS[1])
for _, key in ipairs(keys) do redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return #keys
";

/// Sessions in a Redis database.
pub struct RedisSessionStore {
    connection: ConnectionManager,
    prefix: String,
    save: Script,
    claim: Script,
    remove_sso_session: Script,
}

fn store_error(e: redis::RedisError) -> StoreError {
    StoreError(e.to_string())
}

impl RedisSessionStore {
    /// Connects to `url` (`redis://host:port/db`, with `user:password@`
    /// if the server asks for them); keys begin with `kexin-rp:`. The
    /// connection is re-established by itself if it drops.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(store_error)?;
        let connection = ConnectionManager::new(client).await.map_err(store_error)?;
        Ok(Self {
            connection,
            prefix: "kexin-rp:".into(),
            save: Script::new(SAVE),
            claim: Script::new(CLAIM),
            remove_sso_session: Script::new(REMOVE_SSO_SESSION),
        })
    }

    /// Keys begin with `prefix` instead, for systems sharing one Redis.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    fn session_key(&self, key: &str) -> String {
        format!("{}s:{key}", self.prefix)
    }

    fn sid_key(&self, sid: &str) -> String {
        format!("{}sid:{sid}", self.prefix)
    }
}

impl SessionStore for RedisSessionStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let json: Option<String> = redis::cmd("HGET")
                .arg(self.session_key(key))
                .arg("session")
                .query_async(&mut self.connection.clone())
                .await
                .map_err(store_error)?;
            json.map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| StoreError(format!("a stored session does not read: {e}")))
        })
    }

    fn save<'a>(&'a self, key: &'a str, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(session)
                .map_err(|e| StoreError(format!("a session does not write: {e}")))?;
            let idle_end = session.checked_at + crate::axum::SESSION_IDLE.as_secs();
            let _: i64 = self
                .save
                .key(self.session_key(key))
                .key(self.sid_key(session.sid()))
                .arg(json)
                .arg(session.sid())
                .arg(idle_end)
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _: i64 = redis::cmd("DEL")
                .arg(self.session_key(key))
                .query_async(&mut self.connection.clone())
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn remove_sso_session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _: i64 = self
                .remove_sso_session
                .key(self.sid_key(sid))
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn claim_check<'a>(&'a self, key: &'a str, now: u64, until: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let taken: i64 = self
                .claim
                .key(self.session_key(key))
                .arg(now)
                .arg(until)
                .invoke_async(&mut self.connection.clone())
                .await
                .map_err(store_error)?;
            Ok(taken == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract::*;
    use super::*;

    /// A store on the Redis of `REDIS_URL` (default: 127.0.0.1:6379), its
    /// keys under a prefix of their own.
    async fn store() -> RedisSessionStore {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let unique = format!("kexin-test-{}-{nanos}:", std::process::id());
        RedisSessionStore::connect(&url)
            .await
            .expect("Redis on 127.0.0.1:6379 (REDIS_URL)")
            .with_prefix(&unique)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_checks_a_session_in_redis() {
        one_holder_at_a_time_checks_a_session(&store().await).await;
    }

    #[tokio::test]
    async fn sessions_in_redis_end_one_by_one_by_sso_session_and_when_idle() {
        let store = store().await;
        sessions_end_one_by_one_and_by_sso_session(&store).await;
        // Redis forgets a session an idle time after it was last checked.
        save_one_idle_and_one_in_use(&store).await;
        let idle_for = crate::axum::SESSION_IDLE.as_secs();
        assert!(store.load("idle").await.unwrap().is_none());
        let ttl: i64 = redis::cmd("TTL")
            .arg(store.session_key("used"))
            .query_async(&mut store.connection.clone())
            .await
            .unwrap();
        let half = i64::try_from(idle_for / 2).unwrap();
        assert!((half - 5..=half).contains(&ttl), "{ttl}");
        store.remove_sso_session("s3").await.unwrap();
    }
}
