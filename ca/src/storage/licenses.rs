//! Rows of the e-license registry.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{storage, Database};
use crate::Error;

#[derive(Clone, Debug, serde::Serialize)]
pub struct LicenseRow {
    pub number: String,
    pub kind: String,
    pub holder: String,
    pub authority: String,
    pub seal: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    pub data: String,
    pub payload_digest: String,
    pub status: String,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
    pub issued_at: i64,
}

const LICENSE_COLUMNS: &str = "number, kind, holder, authority, seal, valid_from, valid_until, data, payload_digest, status, revoked_at, revocation_reason, issued_at";

impl Database {
    pub async fn insert_license(&self, l: &LicenseRow) -> Result<(), Error> {
        sqlx::query(&format!(
            "INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&l.number)
        .bind(&l.kind)
        .bind(&l.holder)
        .bind(&l.authority)
        .bind(&l.seal)
        .bind(&l.valid_from)
        .bind(&l.valid_until)
        .bind(&l.data)
        .bind(&l.payload_digest)
        .bind(&l.status)
        .bind(l.revoked_at)
        .bind(&l.revocation_reason)
        .bind(l.issued_at)
        .execute(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::Conflict(format!("license {} already exists", l.number))
            }
            e => storage(e),
        })?;
        Ok(())
    }

    pub async fn license(&self, number: &str) -> Result<Option<LicenseRow>, Error> {
        sqlx::query(&format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE number = $1"
        ))
        .bind(number)
        .fetch_optional(self.pool())
        .await
        .map_err(storage)?
        .as_ref()
        .map(license_from_row)
        .transpose()
    }

    /// Revokes an active license; false if it was not active.
    pub async fn revoke_license(&self, number: &str, reason: &str, at: i64) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE licenses SET status = 'revoked', revoked_at = $1, revocation_reason = $2 WHERE number = $3 AND status = 'active'",
        )
        .bind(at)
        .bind(reason)
        .bind(number)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(done.rows_affected() == 1)
    }
}

fn license_from_row(r: &AnyRow) -> Result<LicenseRow, Error> {
    Ok(LicenseRow {
        number: r.try_get(0).map_err(storage)?,
        kind: r.try_get(1).map_err(storage)?,
        holder: r.try_get(2).map_err(storage)?,
        authority: r.try_get(3).map_err(storage)?,
        seal: r.try_get(4).map_err(storage)?,
        valid_from: r.try_get(5).map_err(storage)?,
        valid_until: r.try_get(6).map_err(storage)?,
        data: r.try_get(7).map_err(storage)?,
        payload_digest: r.try_get(8).map_err(storage)?,
        status: r.try_get(9).map_err(storage)?,
        revoked_at: r.try_get(10).map_err(storage)?,
        revocation_reason: r.try_get(11).map_err(storage)?,
        issued_at: r.try_get(12).map_err(storage)?,
    })
}
