//! Refresh tokens, stored durably as hashes and written through one group
//! commit: the token requests that arrive together share one transaction
//! (one fsync), whether they issue a first refresh token after a code
//! exchange or rotate one.
//!
//! Invariant: a refresh token is rotated at most once. The rotation is a
//! conditional update (`state = 'active'`) in the same transaction as the
//! insertion of its successor, so a token either has exactly one successor
//! or none; the same token presented twice in one batch is rotated for the
//! first presentation only.

use std::collections::HashMap;

use kexin_ca::storage::group_commit::{BatchWriter, GroupCommit, HeldConnection};
use kexin_ca::storage::{insert_rows_sql, rows_of_placeholders, Database, ROWS_PER_STATEMENT};
use sqlx::{AnyConnection, Row};

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

pub enum RefreshWrite {
    Issue(NewGrant),
    /// Spend `presented_sha256` (if it is active, unexpired and `client_id`'s)
    /// and store `successor_sha256` with the same grant.
    Rotate {
        presented_sha256: String,
        client_id: String,
        successor_sha256: String,
    },
}

enum RefreshWritten {
    Issued,
    Rotated(Grant),
    NotRotated,
}

pub struct RefreshJournal(GroupCommit<RefreshWriter>);

impl RefreshJournal {
    pub fn new(db: &Database) -> Self {
        Self(GroupCommit::new(RefreshWriter(HeldConnection::new(
            db.pool().clone(),
        ))))
    }

    /// Stores a new refresh token; returns once it is committed.
    pub async fn issue(&self, grant: NewGrant) -> Result<(), Error> {
        self.0.submit(RefreshWrite::Issue(grant)).await?;
        Ok(())
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
            RefreshWritten::Issued | RefreshWritten::NotRotated => None,
        })
    }
}

struct RefreshWriter(HeldConnection);

impl BatchWriter for RefreshWriter {
    type Item = RefreshWrite;
    type Output = RefreshWritten;

    async fn write(
        &self,
        items: &[RefreshWrite],
    ) -> Result<Vec<Result<RefreshWritten, kexin_ca::Error>>, kexin_ca::Error> {
        let mut held = self.0.lock().await?;
        match write_batch(held.connection()?, items).await {
            Ok(written) => Ok(written.into_iter().map(Ok).collect()),
            Err(e) => {
                held.discard();
                Err(kexin_ca::Error::Storage(e.to_string()))
            }
        }
    }
}

/// All rotations in multi-row UPDATEs, then every new token in multi-row
/// INSERTs, in one transaction.
async fn write_batch(
    connection: &mut AnyConnection,
    items: &[RefreshWrite],
) -> Result<Vec<RefreshWritten>, sqlx::Error> {
    let now = now();
    let mut tx = sqlx::Connection::begin(connection).await?;
    let presented: Vec<(&str, &str)> = items
        .iter()
        .filter_map(|item| match item {
            RefreshWrite::Rotate {
                presented_sha256,
                client_id,
                ..
            } => Some((presented_sha256.as_str(), client_id.as_str())),
            RefreshWrite::Issue(_) => None,
        })
        .collect();
    let mut spent: HashMap<String, Grant> = HashMap::new();
    for chunk in presented.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE oidc_refresh_tokens SET state = 'rotated' \
             WHERE state = 'active' AND expires_at > $1 AND (token_sha256, client_id) IN (VALUES {}) \
             RETURNING token_sha256, family, subject, claims, scope",
            rows_of_placeholders(chunk.len(), 2, 2)
        );
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
    let mut written = Vec::with_capacity(items.len());
    let mut new_rows = Vec::with_capacity(items.len());
    for item in items {
        match item {
            RefreshWrite::Issue(grant) => {
                new_rows.push(grant.clone());
                written.push(RefreshWritten::Issued);
            }
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
    for chunk in new_rows.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_rows_sql(
            "INSERT INTO oidc_refresh_tokens (token_sha256, family, client_id, subject, claims, scope, expires_at, state)",
            chunk.len(),
            8,
        );
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
