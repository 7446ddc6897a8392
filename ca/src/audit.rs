//! The tamper-evident audit trail: who did what, when, from where.
//!
//! Entries form a hash chain. Entry `n` stores `hash_n = SHA-256(hash_{n-1}
//! || fields_n)` with every field length-prefixed, starting from 64 zeros. A
//! changed, removed or reordered row breaks the chain at that row, which
//! [`AuditLog::verify`] reports. (Truncating the newest rows is detected by
//! comparing the head with a copy kept elsewhere: [`AuditLog::head`].)

use std::sync::Arc;

use aws_lc_rs::digest::{Context, SHA256};
use sqlx::Row;

use crate::storage::direct;
use crate::storage::group_commit::{BatchWriter, GroupCommit};
use crate::storage::rows::{self, NewRow};
use crate::storage::{
    insert_rows_sql, leave_flush_to_later, storage, Backend, Database, Durability,
    ROWS_PER_STATEMENT,
};
use crate::Error;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One state change to record.
#[derive(Clone, Debug)]
pub struct AuditEvent<'a> {
    /// Officer, system or `system:kexin` for the service itself.
    pub actor: &'a str,
    /// Dotted verb, e.g. `ca.create`, `certificate.issue`.
    pub action: &'a str,
    /// What was acted on, e.g. a CA name or a certificate serial.
    pub target: &'a str,
    /// Where the request came from: an address, or `cli`.
    pub source: &'a str,
    /// Structured details as JSON.
    pub detail: serde_json::Value,
}

/// A stored entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What [`AuditLog::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainStatus {
    Intact {
        entries: i64,
        head: String,
        /// Signed checkpoints that were verified.
        checkpoints: usize,
    },
    Broken {
        seq: i64,
        reason: String,
    },
}

/// The key that signs checkpoints, in the key store.
#[derive(Clone, Debug)]
pub struct CheckpointKey {
    pub label: String,
    pub signature: kexin_hsm::SignatureAlgorithm,
}

fn checkpoint_message(seq: i64, hash: &str, at_ms: i64) -> Vec<u8> {
    format!("kexin audit checkpoint\n{seq}\n{hash}\n{at_ms}").into_bytes()
}

#[derive(Clone, Debug)]
pub struct AuditLog {
    db: Database,
    /// Appends of this process are group-committed: one transaction, one
    /// chain segment per batch. Across processes the `audit_lock` row
    /// serializes batches, and the primary key on `seq` backs it up.
    appends: Arc<GroupCommit<ChainWriter>>,
}

impl AuditLog {
    pub fn new(db: Database) -> Self {
        Self {
            appends: Arc::new(GroupCommit::new(ChainWriter {
                direct: db.direct_sqlite(),
                db: db.clone(),
            })),
            db,
        }
    }

    /// Appends `event`; returns once it is committed and flushed.
    pub async fn append(&self, event: AuditEvent<'_>) -> Result<AuditEntry, Error> {
        self.append_with(event, Vec::new()).await
    }

    /// As [`Self::append`], with `rows` inserted in the same transaction:
    /// the change the event records exists exactly when its record does.
    pub async fn append_with(
        &self,
        event: AuditEvent<'_>,
        rows: Vec<NewRow>,
    ) -> Result<AuditEntry, Error> {
        self.submit(event, rows, Durability::Flushed).await
    }

    /// Appends `event`; returns once it is committed, its flush left to
    /// the caller's next flushing commit ([`Durability::WithCallersNextCommit`];
    /// a batch with any flushed entry flushes whole). For an event whose
    /// effect reaches the outside world only through such a commit, made
    /// after this one returns: a crash before it loses the record and the
    /// effect together.
    pub async fn append_unflushed(&self, event: AuditEvent<'_>) -> Result<AuditEntry, Error> {
        self.append_unflushed_with(event, Vec::new()).await
    }

    /// As [`Self::append_unflushed`], with `rows` inserted in the same
    /// transaction: the change the event records exists exactly when its
    /// record does, and needs no commit of its own.
    pub async fn append_unflushed_with(
        &self,
        event: AuditEvent<'_>,
        rows: Vec<NewRow>,
    ) -> Result<AuditEntry, Error> {
        self.submit(event, rows, Durability::WithCallersNextCommit)
            .await
    }

    async fn submit(
        &self,
        event: AuditEvent<'_>,
        riders: Vec<NewRow>,
        durability: Durability,
    ) -> Result<AuditEntry, Error> {
        let mut entry = NewEntry::from(event);
        entry.durability = durability;
        entry.riders = riders;
        self.appends.submit(entry).await
    }

    /// Entries in order, `limit` at most, starting after `after_seq`.
    pub async fn entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEntry>, Error> {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, action, target, source, detail, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get(0).map_err(storage)?,
                    at_ms: r.try_get(1).map_err(storage)?,
                    actor: r.try_get(2).map_err(storage)?,
                    action: r.try_get(3).map_err(storage)?,
                    target: r.try_get(4).map_err(storage)?,
                    source: r.try_get(5).map_err(storage)?,
                    detail: r.try_get(6).map_err(storage)?,
                    prev_hash: r.try_get(7).map_err(storage)?,
                    hash: r.try_get(8).map_err(storage)?,
                })
            })
            .collect()
    }

    /// The details of the newest entry with `action` on `target`.
    pub async fn latest_detail(&self, action: &str, target: &str) -> Result<Option<String>, Error> {
        let row = sqlx::query(
            "SELECT detail FROM audit_log WHERE action = $1 AND target = $2 ORDER BY seq DESC LIMIT 1",
        )
        .bind(action)
        .bind(target)
        .fetch_optional(self.db.pool())
        .await
        .map_err(storage)?;
        row.map(|r| r.try_get(0).map_err(storage)).transpose()
    }

    /// The newest entry's sequence number and hash.
    pub async fn head(&self) -> Result<Option<(i64, String)>, Error> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.db.pool())
            .await
            .map_err(storage)?;
        row.map(|r| {
            Ok((
                r.try_get(0).map_err(storage)?,
                r.try_get(1).map_err(storage)?,
            ))
        })
        .transpose()
    }

    /// Signs the current head unless it is already checkpointed. Returns
    /// the sequence number checkpointed, if any.
    pub async fn checkpoint(
        &self,
        store: &std::sync::Arc<dyn kexin_hsm::KeyStore>,
        key: &CheckpointKey,
    ) -> Result<Option<i64>, Error> {
        let Some((seq, hash)) = self.head().await? else {
            return Ok(None);
        };
        let done = sqlx::query("SELECT seq FROM audit_checkpoints WHERE seq = $1")
            .bind(seq)
            .fetch_optional(self.db.pool())
            .await
            .map_err(storage)?;
        if done.is_some() {
            return Ok(None);
        }
        let at_ms = now_ms();
        let message = checkpoint_message(seq, &hash, at_ms);
        let signature = kexin_hsm::sign_async(store, &key.label, key.signature, message).await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at_ms, key_label, signature_algorithm, signature) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(seq)
        .bind(&hash)
        .bind(at_ms)
        .bind(&key.label)
        .bind(key.signature.to_string())
        .bind(signature)
        .execute(self.db.pool())
        .await
        .map_err(storage)?;
        Ok(Some(seq))
    }

    /// Walks the whole chain, then checks every signed checkpoint against
    /// it with the public key from `store`.
    pub async fn verify_with_checkpoints(
        &self,
        store: &dyn kexin_hsm::KeyStore,
    ) -> Result<ChainStatus, Error> {
        let status = self.verify().await?;
        let ChainStatus::Intact { entries, head, .. } = status else {
            return Ok(status);
        };
        let rows = sqlx::query(
            "SELECT seq, hash, at_ms, key_label, signature_algorithm, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(self.db.pool())
        .await
        .map_err(storage)?;
        let mut checked = 0;
        for r in rows {
            let seq: i64 = r.try_get(0).map_err(storage)?;
            let hash: String = r.try_get(1).map_err(storage)?;
            let at_ms: i64 = r.try_get(2).map_err(storage)?;
            let label: String = r.try_get(3).map_err(storage)?;
            let signature: Vec<u8> = r.try_get(5).map_err(storage)?;
            let public = store.public_key(&label)?;
            let spki = crate::certificate::parse_spki(&public.spki_der)?;
            let alg = {
                let name: String = r.try_get(4).map_err(storage)?;
                if name == "rsa-pss-sha256" {
                    kexin_hsm::SignatureAlgorithm::RsaPssSha256
                } else {
                    public.algorithm.default_signature()
                }
            };
            if crate::verify::verify_signature(
                &spki,
                &alg.algorithm_identifier(),
                &checkpoint_message(seq, &hash, at_ms),
                &signature,
                &[],
            )
            .is_err()
            {
                return Ok(ChainStatus::Broken {
                    seq,
                    reason: "checkpoint signature does not verify".into(),
                });
            }
            if seq > entries {
                return Ok(ChainStatus::Broken {
                    seq: entries + 1,
                    reason: format!("entries after {entries} were removed: a signed checkpoint covers entry {seq}"),
                });
            }
            let entry = self.entries(seq - 1, 1).await?;
            if entry.first().map(|e| e.hash.as_str()) != Some(hash.as_str()) {
                return Ok(ChainStatus::Broken {
                    seq,
                    reason: "entry differs from what its signed checkpoint recorded".into(),
                });
            }
            checked += 1;
        }
        Ok(ChainStatus::Intact {
            entries,
            head,
            checkpoints: checked,
        })
    }

    /// Walks the whole chain, a page at a time.
    pub async fn verify(&self) -> Result<ChainStatus, Error> {
        let mut expected_prev = GENESIS.to_owned();
        let mut expected_seq = 1;
        loop {
            let page = self.entries(expected_seq - 1, 1000).await?;
            if page.is_empty() {
                return Ok(ChainStatus::Intact {
                    entries: expected_seq - 1,
                    head: expected_prev,
                    checkpoints: 0,
                });
            }
            for e in page {
                if e.seq != expected_seq {
                    return Ok(ChainStatus::Broken {
                        seq: expected_seq,
                        reason: format!("entry {expected_seq} is missing (next is {})", e.seq),
                    });
                }
                if e.prev_hash != expected_prev {
                    return Ok(ChainStatus::Broken {
                        seq: e.seq,
                        reason: "does not link to the previous entry".into(),
                    });
                }
                if entry_hash(&e) != e.hash {
                    return Ok(ChainStatus::Broken {
                        seq: e.seq,
                        reason: "content does not match its hash".into(),
                    });
                }
                expected_prev = e.hash;
                expected_seq += 1;
            }
        }
    }
}

/// An event on its way into the chain.
#[derive(Clone)]
pub(crate) struct NewEntry {
    actor: String,
    action: String,
    target: String,
    source: String,
    detail: String,
    durability: Durability,
    /// Written in the entry's transaction: the change the entry records.
    riders: Vec<NewRow>,
}

impl From<AuditEvent<'_>> for NewEntry {
    fn from(e: AuditEvent<'_>) -> Self {
        Self {
            actor: e.actor.to_owned(),
            action: e.action.to_owned(),
            target: e.target.to_owned(),
            source: e.source.to_owned(),
            detail: e.detail.to_string(),
            durability: Durability::Flushed,
            riders: Vec::new(),
        }
    }
}

/// Appends batches through the pool, or on SQLite through a connection of
/// its own, where a batch is one hand-over to a blocking thread instead of
/// one per statement.
struct ChainWriter {
    db: Database,
    direct: Option<direct::DirectSqlite>,
}

impl BatchWriter for ChainWriter {
    type Item = NewEntry;
    type Output = AuditEntry;

    async fn write(&self, events: &[NewEntry]) -> Result<Vec<Result<AuditEntry, Error>>, Error> {
        // Another process may hold the chain for a moment (SQLite: busy).
        let mut last_err = None;
        for _ in 0..10 {
            match self.try_write(events).await {
                Ok(entries) => return Ok(entries.into_iter().map(Ok).collect()),
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Storage("audit append failed".into())))
    }
}

impl ChainWriter {
    async fn try_write(&self, events: &[NewEntry]) -> Result<Vec<AuditEntry>, Error> {
        let flush = events.iter().any(|e| e.durability == Durability::Flushed);
        if let Some(direct) = &self.direct {
            let events = events.to_vec();
            return direct
                .run(move |connection| {
                    let tx = direct::begin(connection, if flush { "FULL" } else { "NORMAL" })?;
                    let entries = extend_chain_sqlite(&tx, &events)?;
                    rows::insert_sqlite(&tx, &riders(&events))?;
                    tx.commit().map_err(direct::failed)?;
                    Ok(entries)
                })
                .await;
        }
        let mut tx = self.db.pool().begin().await.map_err(storage)?;
        if !flush && self.db.backend() == Backend::Postgres {
            leave_flush_to_later(&mut tx).await?;
        }
        let entries = extend_chain(&mut tx, events).await?;
        rows::insert(&mut tx, &riders(events)).await?;
        tx.commit().await.map_err(storage)?;
        Ok(entries)
    }
}

fn riders(events: &[NewEntry]) -> Vec<&NewRow> {
    events.iter().flat_map(|e| &e.riders).collect()
}

const LOCK_CHAIN: &str = "UPDATE audit_lock SET appends = appends + 1 WHERE id = 1";
const CHAIN_HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
const INSERT_ENTRIES: &str =
    "INSERT INTO audit_log (seq, at_ms, actor, action, target, source, detail, prev_hash, hash)";

/// Appends `events` to the chain inside the caller's transaction, which
/// holds the chain (the `audit_lock` row) until it ends.
pub(crate) async fn extend_chain<'a>(
    tx: &mut sqlx::AnyConnection,
    events: impl IntoIterator<Item = &'a NewEntry>,
) -> Result<Vec<AuditEntry>, Error> {
    let events: Vec<&NewEntry> = events.into_iter().collect();
    if events.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(LOCK_CHAIN)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
    let head = match sqlx::query(CHAIN_HEAD)
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage)?
    {
        Some(r) => Some((
            r.try_get::<i64, _>(0).map_err(storage)?,
            r.try_get::<String, _>(1).map_err(storage)?,
        )),
        None => None,
    };
    let entries = chain_entries(head, events);
    for rows in entries.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_rows_sql(Backend::of(tx), INSERT_ENTRIES, rows.len(), 9);
        let mut query = sqlx::query(&sql);
        for entry in rows {
            query = query
                .bind(entry.seq)
                .bind(entry.at_ms)
                .bind(&entry.actor)
                .bind(&entry.action)
                .bind(&entry.target)
                .bind(&entry.source)
                .bind(&entry.detail)
                .bind(&entry.prev_hash)
                .bind(&entry.hash);
        }
        query.execute(&mut *tx).await.map_err(storage)?;
    }
    Ok(entries)
}

/// [`extend_chain`] on a direct SQLite connection.
pub(crate) fn extend_chain_sqlite<'a>(
    tx: &rusqlite::Transaction<'_>,
    events: impl IntoIterator<Item = &'a NewEntry>,
) -> Result<Vec<AuditEntry>, Error> {
    let events: Vec<&NewEntry> = events.into_iter().collect();
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let failed = direct::failed;
    tx.prepare_cached(LOCK_CHAIN)
        .and_then(|mut lock| lock.execute([]))
        .map_err(failed)?;
    let head = tx
        .prepare_cached(CHAIN_HEAD)
        .and_then(|mut head| {
            rusqlite::OptionalExtension::optional(
                head.query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))),
            )
        })
        .map_err(failed)?;
    let entries = chain_entries(head, events);
    direct::insert_rows(tx, INSERT_ENTRIES, &entries, |entry| {
        [
            &entry.seq as &dyn rusqlite::ToSql,
            &entry.at_ms,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.source,
            &entry.detail,
            &entry.prev_hash,
            &entry.hash,
        ]
    })?;
    Ok(entries)
}

/// The entries that chain `events` after `head` (sequence number and hash
/// of the last entry; none for an empty log).
fn chain_entries(head: Option<(i64, String)>, events: Vec<&NewEntry>) -> Vec<AuditEntry> {
    let (prev_seq, prev_hash) = head.unwrap_or_else(|| (0, GENESIS.to_owned()));
    let mut entries: Vec<AuditEntry> = Vec::with_capacity(events.len());
    for e in events {
        let (seq, prev_hash) = match entries.last() {
            Some(last) => (last.seq + 1, last.hash.clone()),
            None => (prev_seq + 1, prev_hash.clone()),
        };
        let mut entry = AuditEntry {
            seq,
            at_ms: now_ms(),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            source: e.source.clone(),
            detail: e.detail.clone(),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry_hash(&entry);
        entries.push(entry);
    }
    entries
}

fn entry_hash(e: &AuditEntry) -> String {
    let mut ctx = Context::new(&SHA256);
    let seq = e.seq.to_be_bytes();
    let at = e.at_ms.to_be_bytes();
    let fields: [&[u8]; 8] = [
        e.prev_hash.as_bytes(),
        &seq,
        &at,
        e.actor.as_bytes(),
        e.action.as_bytes(),
        e.target.as_bytes(),
        e.source.as_bytes(),
        e.detail.as_bytes(),
    ];
    for f in fields {
        ctx.update(&(f.len() as u64).to_be_bytes());
        ctx.update(f);
    }
    hex::encode(ctx.finish().as_ref())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str) -> AuditEvent<'_> {
        AuditEvent {
            actor: "official:test",
            action,
            target: "sso",
            source: "127.0.0.1",
            detail: serde_json::json!({}),
        }
    }

    /// The writer's SQLite `synchronous` level after its last batch: FULL
    /// (2) flushes the commit, NORMAL (1) leaves it to a later one.
    async fn synchronous(log: &AuditLog) -> i64 {
        let direct = log.appends.writer().direct.clone().unwrap();
        direct
            .run(|c| {
                c.pragma_query_value(None, "synchronous", |r| r.get(0))
                    .map_err(direct::failed)
            })
            .await
            .unwrap()
    }

    /// Only a batch of unflushed entries alone skips the flush; any entry
    /// appended with `append` makes its batch flush, and every entry joins
    /// the chain either way.
    #[tokio::test]
    async fn a_batch_flushes_unless_every_entry_in_it_may_wait() {
        let dir = tempfile::tempdir().unwrap();
        let url = Database::sqlite_url(&dir.path().join("kexin.db"));
        let log = AuditLog::new(Database::connect(&url).await.unwrap());
        log.append_unflushed(event("sso.login")).await.unwrap();
        assert_eq!(synchronous(&log).await, 1);
        log.append(event("cert.revoke")).await.unwrap();
        assert_eq!(synchronous(&log).await, 2);
        log.append_unflushed(event("sso.login")).await.unwrap();
        assert_eq!(synchronous(&log).await, 1);
        let mut unflushed = NewEntry::from(event("sso.login"));
        unflushed.durability = Durability::WithCallersNextCommit;
        let mixed = [unflushed, NewEntry::from(event("cert.issue"))];
        let written = log.appends.writer().write(&mixed).await.unwrap();
        assert!(written.iter().all(Result::is_ok));
        assert_eq!(synchronous(&log).await, 2);
        assert!(
            matches!(
                log.verify().await.unwrap(),
                ChainStatus::Intact { entries: 5, .. }
            ),
            "every entry is in the chain"
        );
    }

    /// On PostgreSQL an unflushed batch commits with `synchronous_commit`
    /// off for its transaction alone, and joins the chain all the same.
    #[tokio::test]
    async fn on_postgres_unflushed_entries_join_the_chain() {
        let url = kexin_test_support::fresh_postgres_database().await;
        let log = AuditLog::new(Database::connect(&url).await.unwrap());
        log.append_unflushed(event("sso.login")).await.unwrap();
        log.append(event("cert.revoke")).await.unwrap();
        assert!(matches!(
            log.verify().await.unwrap(),
            ChainStatus::Intact { entries: 2, .. }
        ));
    }
}
