//! Rows of the seal registry.

use sqlx::Row;

use super::{labelled_numbers, storage, Columns, Database};
use crate::Error;

#[derive(Clone, Debug)]
pub struct SealRow {
    pub name: String,
    pub organization: String,
    pub uscc: Option<String>,
    pub kind: String,
    pub image: Vec<u8>,
    pub key_label: String,
    pub certificate_serial: String,
    pub status: String,
    pub created_at: i64,
}

const SEAL_COLUMNS: &str =
    "name, organization, uscc, kind, image, key_label, certificate_serial, status, created_at";

impl Database {
    pub async fn insert_seal(&self, s: &SealRow) -> Result<(), Error> {
        sqlx::query(&format!(
            "INSERT INTO seals ({SEAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&s.name)
        .bind(&s.organization)
        .bind(&s.uscc)
        .bind(&s.kind)
        .bind(&s.image)
        .bind(&s.key_label)
        .bind(&s.certificate_serial)
        .bind(&s.status)
        .bind(s.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::Conflict(format!("a seal named {:?} exists", s.name))
            }
            e => storage(e),
        })?;
        Ok(())
    }

    /// Read at every use of a seal, in place on SQLite.
    pub async fn seal(&self, name: &str) -> Result<Option<SealRow>, Error> {
        let sql = format!("SELECT {SEAL_COLUMNS} FROM seals WHERE name = $1");
        self.look_up(&sql, &[name], |r| seal_from_row(r), seal_from_row)
            .await
    }

    /// The seal whose certificate, now or before a renewal, has `serial`.
    pub async fn seal_by_certificate(&self, serial: &str) -> Result<Option<SealRow>, Error> {
        sqlx::query(&format!(
            "SELECT {SEAL_COLUMNS} FROM seals WHERE certificate_serial = $1 \
             OR name = (SELECT seal FROM seal_certificates WHERE serial = $2)"
        ))
        .bind(serial)
        .bind(serial)
        .fetch_optional(self.pool())
        .await
        .map_err(storage)?
        .as_ref()
        .map(seal_from_row)
        .transpose()
    }

    /// The name of each active seal whose certificate is issued, and when
    /// that certificate ends (Unix seconds), by name.
    pub async fn active_seal_ends(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT s.name, c.not_after FROM seals s JOIN certificates c ON c.serial = s.certificate_serial \
             WHERE s.status = 'active' AND c.status = 'issued' ORDER BY s.name",
        )
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        labelled_numbers(&rows)
    }

    pub async fn seals(&self) -> Result<Vec<SealRow>, Error> {
        let rows = sqlx::query(&format!("SELECT {SEAL_COLUMNS} FROM seals ORDER BY name"))
            .fetch_all(self.pool())
            .await
            .map_err(storage)?;
        rows.iter().map(seal_from_row).collect()
    }

    /// Gives the seal `name` the certificate `renewed` in place of
    /// `current`, kept as an earlier certificate of the seal; false when
    /// the seal no longer has `current` (another renewal came first).
    pub async fn replace_seal_certificate(
        &self,
        name: &str,
        current: &str,
        renewed: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.pool().begin().await.map_err(storage)?;
        let done = sqlx::query(
            "UPDATE seals SET certificate_serial = $1 WHERE name = $2 AND certificate_serial = $3",
        )
        .bind(renewed)
        .bind(name)
        .bind(current)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO seal_certificates (serial, seal) VALUES ($1, $2)")
            .bind(current)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(true)
    }

    /// Every certificate of the seal that has the certificate `serial`,
    /// its present one and those renewed since (all for one key), but
    /// `serial`; none for a certificate of no seal.
    pub async fn other_certificates_of_seal(&self, serial: &str) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "WITH owner AS (\
                 SELECT name AS seal FROM seals WHERE certificate_serial = $1 \
                 UNION SELECT seal FROM seal_certificates WHERE serial = $2) \
             SELECT certificate_serial AS serial FROM seals WHERE name IN (SELECT seal FROM owner) \
             UNION SELECT serial FROM seal_certificates WHERE seal IN (SELECT seal FROM owner)",
        )
        .bind(serial)
        .bind(serial)
        .fetch_all(self.pool())
        .await
        .map_err(storage)?;
        let mut serials = Vec::with_capacity(rows.len());
        for row in rows {
            let other: String = row.try_get("serial").map_err(storage)?;
            if other != serial {
                serials.push(other);
            }
        }
        Ok(serials)
    }

    pub async fn set_seal_status(&self, name: &str, status: &str) -> Result<bool, Error> {
        let done = sqlx::query("UPDATE seals SET status = $1 WHERE name = $2")
            .bind(status)
            .bind(name)
            .execute(self.pool())
            .await
            .map_err(storage)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn add_seal_user(&self, seal: &str, principal: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO seal_users (seal, principal) VALUES ($1, $2) ON CONFLICT (seal, principal) DO NOTHING",
        )
        .bind(seal)
        .bind(principal)
        .execute(self.pool())
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// The principals granted a seal.
    pub async fn seal_users(&self, seal: &str) -> Result<Vec<String>, Error> {
        let rows =
            sqlx::query("SELECT principal FROM seal_users WHERE seal = $1 ORDER BY principal")
                .bind(seal)
                .fetch_all(self.pool())
                .await
                .map_err(storage)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(storage))
            .collect()
    }

    /// Read at every use of a seal, in place on SQLite.
    pub async fn is_seal_user(&self, seal: &str, principal: &str) -> Result<bool, Error> {
        let found = self
            .look_up(
                "SELECT 1 FROM seal_users WHERE seal = $1 AND principal = $2",
                &[seal, principal],
                |_| Ok(()),
                |_| Ok(()),
            )
            .await?;
        Ok(found.is_some())
    }
}

fn seal_from_row(r: &impl Columns) -> Result<SealRow, Error> {
    Ok(SealRow {
        name: r.column(0)?,
        organization: r.column(1)?,
        uscc: r.column(2)?,
        kind: r.column(3)?,
        image: r.column(4)?,
        key_label: r.column(5)?,
        certificate_serial: r.column(6)?,
        status: r.column(7)?,
        created_at: r.column(8)?,
    })
}
