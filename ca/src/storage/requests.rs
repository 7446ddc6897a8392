//! Rows of the registration workflow: requests, officers' decisions and
//! escrowed encryption keys.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{labelled_numbers, storage, Database};
use crate::Error;

/// A request as stored; `body` and `evidence` are JSON documents that the
/// workflow (not storage) interprets.
#[derive(Clone, Debug)]
pub struct RequestRow {
    pub id: i64,
    pub kind: String,
    pub profile: Option<String>,
    pub status: String,
    pub body: String,
    pub evidence: String,
    pub id_number_sealed: Option<Vec<u8>>,
    pub approvals_required: i64,
    pub approver_role: String,
    pub submitted_by: String,
    pub submitted_at: i64,
    pub decided_at: Option<i64>,
    pub outcome: Option<String>,
}

/// A request about to be stored.
pub struct NewRequest<'a> {
    pub kind: &'a str,
    pub profile: Option<&'a str>,
    pub body: &'a str,
    pub evidence: &'a str,
    pub id_number_sealed: Option<&'a [u8]>,
    pub approvals_required: i64,
    pub approver_role: &'a str,
    pub submitted_by: &'a str,
    pub submitted_at: i64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct DecisionRow {
    pub officer: String,
    pub decision: String,
    pub decided_at: i64,
}

const REQUEST_COLUMNS: &str = "id, kind, profile, status, body, evidence, id_number_sealed, approvals_required, approver_role, submitted_by, submitted_at, decided_at, outcome";

impl Database {
    pub async fn insert_request(&self, r: &NewRequest<'_>) -> Result<i64, Error> {
        let row = sqlx::query(
            "INSERT INTO requests (kind, profile, status, body, evidence, id_number_sealed, approvals_required, approver_role, submitted_by, submitted_at) \
             VALUES ($1, $2, 'submitted', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(r.kind)
        .bind(r.profile)
        .bind(r.body)
        .bind(r.evidence)
        .bind(r.id_number_sealed)
        .bind(r.approvals_required)
        .bind(r.approver_role)
        .bind(r.submitted_by)
        .bind(r.submitted_at)
        .fetch_one(self.pool())
        .await
        .map_err(storage)?;
        row.try_get(0).map_err(storage)
    }

    pub async fn request(&self, id: i64) -> Result<Option<RequestRow>, Error> {
        sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(storage)?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    /// Newest first; `status` narrows when given.
    pub async fn requests(
        &self,
        status: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<RequestRow>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(status)
        .bind(limit.clamp(1, 500))
        .bind(offset.max(0))
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        rows.iter().map(request_from_row).collect()
    }

    /// Number of requests per status.
    pub async fn request_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM requests GROUP BY status")
            .fetch_all(self.pool())
            .await
            .map_err(storage)?;
        labelled_numbers(&rows)
    }

    /// Records an officer's decision. Returns false if that officer already
    /// decided on this request (the primary key makes this race-free).
    pub async fn insert_decision(
        &self,
        request_id: i64,
        officer: &str,
        decision: &str,
        at: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "INSERT INTO request_decisions (request_id, officer, decision, decided_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (request_id, officer) DO NOTHING",
        )
        .bind(request_id)
        .bind(officer)
        .bind(decision)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn decisions(&self, request_id: i64) -> Result<Vec<DecisionRow>, Error> {
        let rows = sqlx::query(
            "SELECT officer, decision, decided_at FROM request_decisions WHERE request_id = $1 ORDER BY decided_at, officer",
        )
        .bind(request_id)
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|r| {
                Ok(DecisionRow {
                    officer: r.try_get(0).map_err(storage)?,
                    decision: r.try_get(1).map_err(storage)?,
                    decided_at: r.try_get(2).map_err(storage)?,
                })
            })
            .collect()
    }

    /// Moves a request from `from` to `to`; false if it was not in `from`
    /// (someone else moved it first), so exactly one caller wins.
    pub async fn transition_request(
        &self,
        id: i64,
        from: &str,
        to: &str,
        outcome: Option<&str>,
        at: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE requests SET status = $1, outcome = COALESCE($2, outcome), decided_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(to)
        .bind(outcome)
        .bind(at)
        .bind(id)
        .bind(from)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_escrow(
        &self,
        serial: &str,
        key_algorithm: &str,
        wrapping_key: &str,
        sealed_key: &[u8],
        at: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO escrowed_keys (serial, key_algorithm, wrapping_key, sealed_key, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(serial)
        .bind(key_algorithm)
        .bind(wrapping_key)
        .bind(sealed_key)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// (key algorithm, wrapping key label, sealed PKCS#8) of an escrowed key.
    pub async fn escrowed_key(
        &self,
        serial: &str,
    ) -> Result<Option<(String, String, Vec<u8>)>, Error> {
        let row = sqlx::query(
            "SELECT key_algorithm, wrapping_key, sealed_key FROM escrowed_keys WHERE serial = $1",
        )
        .bind(serial)
        .fetch_optional(self.pool())
        .await
        .map_err(storage)?;
        row.map(|r| {
            Ok((
                r.try_get(0).map_err(storage)?,
                r.try_get(1).map_err(storage)?,
                r.try_get(2).map_err(storage)?,
            ))
        })
        .transpose()
    }

    /// Certificates issued and revoked per UTC day since `since` (unix
    /// seconds): (day number, issued, revoked).
    pub async fn daily_activity(&self, since: i64) -> Result<Vec<(i64, i64, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT day, SUM(issued), SUM(revoked) FROM ( \
               SELECT not_before / 86400 AS day, 1 AS issued, 0 AS revoked FROM certificates \
                 WHERE status IN ('issued', 'revoked', 'hold') AND not_before >= $1 \
               UNION ALL \
               SELECT revoked_at / 86400 AS day, 0 AS issued, 1 AS revoked FROM certificates \
                 WHERE revoked_at IS NOT NULL AND revoked_at >= $1 \
             ) AS activity GROUP BY day ORDER BY day",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(storage)?,
                    r.try_get(1).map_err(storage)?,
                    r.try_get(2).map_err(storage)?,
                ))
            })
            .collect()
    }

    /// Every principal: (serial, name, role, created_at), newest first.
    pub async fn principals(&self) -> Result<Vec<(String, String, String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT serial, name, role, created_at FROM principals ORDER BY created_at DESC, name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(storage)?,
                    r.try_get(1).map_err(storage)?,
                    r.try_get(2).map_err(storage)?,
                    r.try_get(3).map_err(storage)?,
                ))
            })
            .collect()
    }
}

fn request_from_row(r: &AnyRow) -> Result<RequestRow, Error> {
    Ok(RequestRow {
        id: r.try_get(0).map_err(storage)?,
        kind: r.try_get(1).map_err(storage)?,
        profile: r.try_get(2).map_err(storage)?,
        status: r.try_get(3).map_err(storage)?,
        body: r.try_get(4).map_err(storage)?,
        evidence: r.try_get(5).map_err(storage)?,
        id_number_sealed: r.try_get(6).map_err(storage)?,
        approvals_required: r.try_get(7).map_err(storage)?,
        approver_role: r.try_get(8).map_err(storage)?,
        submitted_by: r.try_get(9).map_err(storage)?,
        submitted_at: r.try_get(10).map_err(storage)?,
        decided_at: r.try_get(11).map_err(storage)?,
        outcome: r.try_get(12).map_err(storage)?,
    })
}
