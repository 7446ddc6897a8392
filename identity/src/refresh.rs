//! Refresh tokens, stored durably as hashes and written through one group
//! commit: the token requests that arrive together share one transaction
//! (one fsync), whether they redeem a code for a first refresh token or
//! rotate one.
//!
//! A code is redeemed in the transaction that stores its refresh token:
//! it is deleted whatever the outcome, and gives a token only to its
//! client, with its redirect URI and PKCE verifier, before it expires.
//!
//! Invariant: a refresh token is rotated at most once. The rotation is a
//! conditional update (`state = 'active'`) in the same transaction as the
//! insertion of its successor, so a token either has exactly one successor
//! or none; the same token presented twice in one batch is rotated for the
//! first presentation only.

use std::collections::HashMap;

use kexin_ca::storage::direct::{self, DirectSqlite};
use kexin_ca::storage::group_commit::{BatchWriter, GroupCommit, HeldConnection};
use kexin_ca::storage::{
    insert_rows_sql, rows_of_placeholders, Backend, Database, ROWS_PER_STATEMENT,
};
use sqlx::{AnyConnection, Row};

use crate::codes::{pending_from, PendingCode, StoredCode, CODE_COLUMNS};
use crate::{now, Error};

/// How long a refresh token may be used.
pub const REFRESH_TTL: i64 = 8 * 3600;

/// A refresh token to store.
#[derive(Clone, Debug)]
pub struct NewGrant {
    pub token_sha256: String,
    /// `{sid}:{random}`: every token of one sign-in at one client.
    pub family: String,
    pub client_id: String,
    pub subject: String,
    /// JSON claims of the signed-in official.
    pub claims: String,
    pub scope: String,
    pub expires_at: i64,
}

/// What a rotated token granted, carried over to its successor.
#[derive(Clone, Debug)]
pub struct Grant {
    pub family: String,
    pub subject: String,
    pub claims: String,
    pub scope: String,
}

#[derive(Clone)]
pub enum RefreshWrite {
    Issue(NewGrant),
    /// Redeem the code stored under `code_key` for `client_id`, and store
    /// the refresh token `refresh_sha256` in its session's family.
    Redeem(Redemption),
    /// Spend `presented_sha256` (if it is active, unexpired and `client_id`'s)
    /// and store `successor_sha256` with the same grant.
    Rotate {
        presented_sha256: String,
        client_id: String,
        successor_sha256: String,
    },
}

/// A code presented at the token endpoint, and the refresh token it is to
/// give.
#[derive(Clone, Debug)]
pub struct Redemption {
    pub code_key: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// base64url(SHA-256(code_verifier)), or empty for a malformed verifier.
    pub verifier_challenge: String,
    pub refresh_sha256: String,
    /// The family is `{sid}:{family_suffix}`.
    pub family_suffix: String,
}

enum RefreshWritten {
    Issued,
    Rotated(Grant),
    NotRotated,
    Redeemed(PendingCode),
    NotRedeemed(&'static str),
}

/// Why a code gave no token.
pub const CODE_REFUSED: &str = "the code is unknown, used, expired or not for this client";
pub const VERIFIER_REFUSED: &str = "the PKCE code_verifier does not match";

pub struct RefreshJournal(GroupCommit<RefreshWriter>);

impl RefreshJournal {
    pub fn new(db: &Database) -> Self {
        Self(GroupCommit::new(match db.direct_sqlite() {
            Some(direct) => RefreshWriter::Sqlite(direct),
            None => RefreshWriter::Pool(HeldConnection::new(db.pool().clone())),
        }))
    }

    /// Stores a new refresh token; returns once it is committed.
    pub async fn issue(&self, grant: NewGrant) -> Result<(), Error> {
        self.0.submit(RefreshWrite::Issue(grant)).await?;
        Ok(())
    }

    /// Redeems a code once: what it was issued for, with its refresh token
    /// committed, or why it gives none (its description for the client).
    pub async fn redeem(
        &self,
        redemption: Redemption,
    ) -> Result<Result<PendingCode, &'static str>, Error> {
        Ok(
            match self.0.submit(RefreshWrite::Redeem(redemption)).await? {
                RefreshWritten::Redeemed(pending) => Ok(pending),
                RefreshWritten::NotRedeemed(why) => Err(why),
                _ => Err(CODE_REFUSED),
            },
        )
    }

    /// Rotates `presented_sha256` to `successor_sha256`: the grant it
    /// carried, or `None` when the token is not active for this client
    /// (unknown, spent, revoked, expired or another client's).
    pub async fn rotate(
        &self,
        presented_sha256: String,
        client_id: String,
        successor_sha256: String,
    ) -> Result<Option<Grant>, Error> {
        let written = self
            .0
            .submit(RefreshWrite::Rotate {
                presented_sha256,
                client_id,
                successor_sha256,
            })
            .await?;
        Ok(match written {
            RefreshWritten::Rotated(grant) => Some(grant),
            _ => None,
        })
    }
}

/// Batches through a held pool connection, or on SQLite through a
/// connection of its own, where a batch is one hand-over to a blocking
/// thread instead of one per statement.
enum RefreshWriter {
    Pool(HeldConnection),
    Sqlite(DirectSqlite),
}

impl BatchWriter for RefreshWriter {
    type Item = RefreshWrite;
    type Output = RefreshWritten;

    async fn write(
        &self,
        items: &[RefreshWrite],
    ) -> Result<Vec<Result<RefreshWritten, kexin_ca::Error>>, kexin_ca::Error> {
        let written = match self {
            Self::Pool(held) => {
                let mut held = held.lock().await?;
                match write_batch(held.connection()?, items).await {
                    Ok(written) => written,
                    Err(e) => {
                        held.discard();
                        return Err(kexin_ca::Error::Storage(e.to_string()));
                    }
                }
            }
            Self::Sqlite(direct) => {
                let items = items.to_vec();
                direct
                    .run(move |connection| write_batch_sqlite(connection, &items))
                    .await?
            }
        };
        Ok(written.into_iter().map(Ok).collect())
    }
}

/// Spends the presented tokens that are active, unexpired and the
/// presenting client's, returning what they granted.
fn rotate_sql(tokens: usize) -> String {
    format!(
        "UPDATE oidc_refresh_tokens SET state = 'rotated' \
         WHERE state = 'active' AND expires_at > $1 AND (token_sha256, client_id) IN (VALUES {}) \
         RETURNING token_sha256, family, subject, claims, scope",
        rows_of_placeholders(tokens, 2, 2)
    )
}

const INSERT_TOKENS: &str = "INSERT INTO oidc_refresh_tokens \
     (token_sha256, family, client_id, subject, claims, scope, expires_at, state)";

/// The rotations asked for, (presented token, client).
fn presented(items: &[RefreshWrite]) -> Vec<(&str, &str)> {
    items
        .iter()
        .filter_map(|item| match item {
            RefreshWrite::Rotate {
                presented_sha256,
                client_id,
                ..
            } => Some((presented_sha256.as_str(), client_id.as_str())),
            RefreshWrite::Issue(_) | RefreshWrite::Redeem(_) => None,
        })
        .collect()
}

/// The keys of the codes presented.
fn presented_codes(items: &[RefreshWrite]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| match item {
            RefreshWrite::Redeem(r) => Some(r.code_key.as_str()),
            _ => None,
        })
        .collect()
}

/// Deletes the codes under `keys`, returning them.
fn redeem_sql(keys: usize) -> String {
    format!(
        "DELETE FROM oidc_codes WHERE code_key IN (VALUES {}) RETURNING {CODE_COLUMNS}",
        rows_of_placeholders(keys, 1, 1)
    )
}

/// What a redemption gives: the refresh token to store, or why none.
fn redeemed(
    r: &Redemption,
    stored: Option<StoredCode>,
    now: i64,
) -> Result<(PendingCode, NewGrant), &'static str> {
    let stored = stored.ok_or(CODE_REFUSED)?;
    let p = stored.pending;
    if stored.expires_at <= now || p.client_id != r.client_id || p.redirect_uri != r.redirect_uri {
        return Err(CODE_REFUSED);
    }
    let verified = !r.verifier_challenge.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(
            r.verifier_challenge.as_bytes(),
            p.code_challenge.as_bytes(),
        )
        .is_ok();
    if !verified {
        return Err(VERIFIER_REFUSED);
    }
    let grant = NewGrant {
        token_sha256: r.refresh_sha256.clone(),
        family: format!("{}:{}", p.session, r.family_suffix),
        client_id: r.client_id.clone(),
        subject: p.subject.clone(),
        claims: p.claims.to_string(),
        scope: p.scope.clone(),
        expires_at: now + REFRESH_TTL,
    };
    Ok((p, grant))
}

/// Each item's outcome, given the tokens that were spent, and the tokens
/// to store: the new ones and the successors of the spent ones.
fn outcomes(
    items: &[RefreshWrite],
    mut spent: HashMap<String, Grant>,
    mut codes: HashMap<String, StoredCode>,
    now: i64,
) -> (Vec<RefreshWritten>, Vec<NewGrant>) {
    let mut written = Vec::with_capacity(items.len());
    let mut new_rows = Vec::with_capacity(items.len());
    for item in items {
        match item {
            RefreshWrite::Issue(grant) => {
                new_rows.push(grant.clone());
                written.push(RefreshWritten::Issued);
            }
            // A code presented twice in one batch was deleted once: the
            // first presentation takes it.
            RefreshWrite::Redeem(r) => match redeemed(r, codes.remove(&r.code_key), now) {
                Ok((pending, grant)) => {
                    new_rows.push(grant);
                    written.push(RefreshWritten::Redeemed(pending));
                }
                Err(why) => written.push(RefreshWritten::NotRedeemed(why)),
            },
            RefreshWrite::Rotate {
                presented_sha256,
                client_id,
                successor_sha256,
            } => match spent.remove(presented_sha256) {
                Some(grant) => {
                    new_rows.push(NewGrant {
                        token_sha256: successor_sha256.clone(),
                        family: grant.family.clone(),
                        client_id: client_id.clone(),
                        subject: grant.subject.clone(),
                        claims: grant.claims.clone(),
                        scope: grant.scope.clone(),
                        expires_at: now + REFRESH_TTL,
                    });
                    written.push(RefreshWritten::Rotated(grant));
                }
                None => written.push(RefreshWritten::NotRotated),
            },
        }
    }
    (written, new_rows)
}

/// All rotations in multi-row UPDATEs, then every new token in multi-row
/// INSERTs, in one transaction.
async fn write_batch(
    connection: &mut AnyConnection,
    items: &[RefreshWrite],
) -> Result<Vec<RefreshWritten>, sqlx::Error> {
    let now = now();
    let mut tx = sqlx::Connection::begin(connection).await?;
    let mut codes: HashMap<String, StoredCode> = HashMap::new();
    for chunk in presented_codes(items).chunks(ROWS_PER_STATEMENT) {
        let sql = redeem_sql(chunk.len());
        let mut q = sqlx::query(&sql);
        for key in chunk {
            q = q.bind(*key);
        }
        for row in q.fetch_all(&mut *tx).await? {
            let code = pending_from(
                |i| row.try_get::<String, _>(i),
                |i| row.try_get::<Option<String>, _>(i),
                |i| row.try_get::<i64, _>(i),
            )?;
            codes.insert(code.key.clone(), code);
        }
    }
    let mut spent: HashMap<String, Grant> = HashMap::new();
    for chunk in presented(items).chunks(ROWS_PER_STATEMENT) {
        let sql = rotate_sql(chunk.len());
        let mut q = sqlx::query(&sql).bind(now);
        for (token, client) in chunk {
            q = q.bind(*token).bind(*client);
        }
        for row in q.fetch_all(&mut *tx).await? {
            spent.insert(
                row.try_get(0)?,
                Grant {
                    family: row.try_get(1)?,
                    subject: row.try_get(2)?,
                    claims: row.try_get(3)?,
                    scope: row.try_get(4)?,
                },
            );
        }
    }
    let (written, new_rows) = outcomes(items, spent, codes, now);
    for chunk in new_rows.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_rows_sql(Backend::of(&tx), INSERT_TOKENS, chunk.len(), 8);
        let mut q = sqlx::query(&sql);
        for g in chunk {
            q = q
                .bind(&g.token_sha256)
                .bind(&g.family)
                .bind(&g.client_id)
                .bind(&g.subject)
                .bind(&g.claims)
                .bind(&g.scope)
                .bind(g.expires_at)
                .bind("active");
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(written)
}

/// [`write_batch`] on a direct SQLite connection.
fn write_batch_sqlite(
    connection: &mut rusqlite::Connection,
    items: &[RefreshWrite],
) -> Result<Vec<RefreshWritten>, kexin_ca::Error> {
    use rusqlite::ToSql;
    let failed = direct::failed;
    let now = now();
    let tx = direct::begin(connection, "FULL")?;
    let mut codes: HashMap<String, StoredCode> = HashMap::new();
    for chunk in presented_codes(items).chunks(ROWS_PER_STATEMENT) {
        let values: Vec<&dyn ToSql> = chunk.iter().map(|k| k as &dyn ToSql).collect();
        let mut statement = tx
            .prepare_cached(&redeem_sql(chunk.len()).replace('$', "?"))
            .map_err(failed)?;
        let mut rows = statement.query(&values[..]).map_err(failed)?;
        while let Some(row) = rows.next().map_err(failed)? {
            let code =
                pending_from(|i| row.get(i), |i| row.get(i), |i| row.get(i)).map_err(failed)?;
            codes.insert(code.key.clone(), code);
        }
    }
    let mut spent: HashMap<String, Grant> = HashMap::new();
    for chunk in presented(items).chunks(ROWS_PER_STATEMENT) {
        let mut values: Vec<&dyn ToSql> = vec![&now];
        for (token, client) in chunk {
            values.extend([token as &dyn ToSql, client]);
        }
        let mut statement = tx
            .prepare_cached(&rotate_sql(chunk.len()).replace('$', "?"))
            .map_err(failed)?;
        let mut rows = statement.query(&values[..]).map_err(failed)?;
        while let Some(row) = rows.next().map_err(failed)? {
            spent.insert(
                row.get(0).map_err(failed)?,
                Grant {
                    family: row.get(1).map_err(failed)?,
                    subject: row.get(2).map_err(failed)?,
                    claims: row.get(3).map_err(failed)?,
                    scope: row.get(4).map_err(failed)?,
                },
            );
        }
    }
    let (written, new_rows) = outcomes(items, spent, codes, now);
    direct::insert_rows(&tx, INSERT_TOKENS, &new_rows, |g| {
        [
            &g.token_sha256 as &dyn ToSql,
            &g.family,
            &g.client_id,
            &g.subject,
            &g.claims,
            &g.scope,
            &g.expires_at,
            &"active",
        ]
    })?;
    tx.commit().map_err(failed)?;
    Ok(written)
}
