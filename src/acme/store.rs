//! ACME's records: accounts, orders and authorizations, in the instance's
//! database (SQLite or PostgreSQL). Spent nonces are claimed by `super::nonce`.

use kexin_ca::storage::Database;
use sqlx::Row;

use super::AcmeError;

#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub jwk: String,
    pub contact: Vec<String>,
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct Order {
    pub id: String,
    pub account_id: String,
    pub identifiers: Vec<String>,
    pub expires_at: i64,
    pub certificate_serial: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Authorization {
    pub id: String,
    pub order_id: String,
    pub identifier: String,
    pub token: String,
    pub status: String,
    pub validated_at: Option<i64>,
    pub error: Option<String>,
    pub expires_at: i64,
}

fn failed(e: sqlx::Error) -> AcmeError {
    tracing::error!(error = %e, "ACME storage");
    AcmeError::server_internal()
}

fn strings(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

pub async fn account_by_thumbprint(
    db: &Database,
    thumbprint: &str,
) -> Result<Option<Account>, AcmeError> {
    let row =
        sqlx::query("SELECT id, jwk, contact, status FROM acme_accounts WHERE thumbprint = $1")
            .bind(thumbprint)
            .fetch_optional(db.pool())
            .await
            .map_err(failed)?;
    Ok(row.map(|r| account_from_row(&r)))
}

pub async fn account(db: &Database, id: &str) -> Result<Option<Account>, AcmeError> {
    let row = sqlx::query("SELECT id, jwk, contact, status FROM acme_accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(failed)?;
    Ok(row.map(|r| account_from_row(&r)))
}

fn account_from_row(r: &sqlx::any::AnyRow) -> Account {
    Account {
        id: r.get("id"),
        jwk: r.get("jwk"),
        contact: strings(&r.get::<String, _>("contact")),
        status: r.get("status"),
    }
}

/// Stores a new account, bound to the external account `binding` if one
/// is given, in one transaction. Ok(false) if an account with the same key
/// won a race; an error `unauthorized` if the binding was taken.
pub async fn insert_account(
    db: &Database,
    a: &Account,
    thumbprint: &str,
    binding: Option<&str>,
    now: i64,
) -> Result<bool, AcmeError> {
    let contact = serde_json::to_string(&a.contact).unwrap_or_else(|_| "[]".into());
    let mut tx = db.pool().begin().await.map_err(failed)?;
    let done = sqlx::query(
        "INSERT INTO acme_accounts (id, thumbprint, jwk, contact, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (thumbprint) DO NOTHING",
    )
    .bind(&a.id)
    .bind(thumbprint)
    .bind(&a.jwk)
    .bind(contact)
    .bind(&a.status)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some(kid) = binding {
        let bound = sqlx::query(
            "UPDATE acme_external_accounts SET account_id = $1, hmac_key = '' \
             WHERE kid = $2 AND account_id IS NULL",
        )
        .bind(&a.id)
        .bind(kid)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        if bound.rows_affected() != 1 {
            return Err(AcmeError::unauthorized(
                "the external account key is already bound to an account",
            ));
        }
    }
    tx.commit().await.map_err(failed)?;
    Ok(true)
}

/// An external account key the RA issued: its name and, until an account
/// binds it, its HMAC key.
pub struct ExternalAccount {
    pub name: String,
    pub hmac_key: String,
    pub account_id: Option<String>,
}

pub async fn external_account(
    db: &Database,
    kid: &str,
) -> Result<Option<ExternalAccount>, AcmeError> {
    let row =
        sqlx::query("SELECT name, hmac_key, account_id FROM acme_external_accounts WHERE kid = $1")
            .bind(kid)
            .fetch_optional(db.pool())
            .await
            .map_err(failed)?;
    Ok(row.map(|r| ExternalAccount {
        name: r.get("name"),
        hmac_key: r.get("hmac_key"),
        account_id: r.get("account_id"),
    }))
}

/// Every external account key, oldest first: (kid, name, bound account,
/// created at). Not the keys.
pub async fn external_accounts(
    db: &Database,
) -> Result<Vec<(String, String, Option<String>, i64)>, AcmeError> {
    let rows = sqlx::query(
        "SELECT kid, name, account_id, created_at FROM acme_external_accounts ORDER BY created_at, kid",
    )
    .fetch_all(db.pool())
    .await
    .map_err(failed)?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get("kid"),
                r.get("name"),
                r.get("account_id"),
                r.get("created_at"),
            )
        })
        .collect())
}

pub async fn insert_external_account(
    db: &Database,
    kid: &str,
    name: &str,
    hmac_key: &str,
    now: i64,
) -> Result<(), AcmeError> {
    sqlx::query(
        "INSERT INTO acme_external_accounts (kid, name, hmac_key, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(kid)
    .bind(name)
    .bind(hmac_key)
    .bind(now)
    .execute(db.pool())
    .await
    .map_err(failed)?;
    Ok(())
}

pub async fn update_account(
    db: &Database,
    id: &str,
    contact: &[String],
    status: &str,
) -> Result<(), AcmeError> {
    let contact = serde_json::to_string(contact).unwrap_or_else(|_| "[]".into());
    sqlx::query("UPDATE acme_accounts SET contact = $1, status = $2 WHERE id = $3")
        .bind(contact)
        .bind(status)
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(failed)?;
    Ok(())
}

/// Gives account `id` a new key; false if another account holds that key
/// (the unique thumbprint refused it).
pub async fn replace_account_key(
    db: &Database,
    id: &str,
    jwk: &str,
    thumbprint: &str,
) -> Result<bool, AcmeError> {
    let done = sqlx::query(
        "UPDATE acme_accounts SET jwk = $1, thumbprint = $2 WHERE id = $3 \
         AND NOT EXISTS (SELECT 1 FROM acme_accounts WHERE thumbprint = $2)",
    )
    .bind(jwk)
    .bind(thumbprint)
    .bind(id)
    .execute(db.pool())
    .await
    .map_err(failed)?;
    Ok(done.rows_affected() == 1)
}

/// Stores an order with its authorizations, all or nothing.
pub async fn insert_order(
    db: &Database,
    order: &Order,
    authorizations: &[Authorization],
    now: i64,
) -> Result<(), AcmeError> {
    let mut tx = db.pool().begin().await.map_err(failed)?;
    sqlx::query(
        "INSERT INTO acme_orders (id, account_id, identifiers, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&order.id)
    .bind(&order.account_id)
    .bind(serde_json::to_string(&order.identifiers).unwrap_or_else(|_| "[]".into()))
    .bind(order.expires_at)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(failed)?;
    for a in authorizations {
        sqlx::query(
            "INSERT INTO acme_authorizations (id, order_id, identifier, token, status, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&a.id)
        .bind(&a.order_id)
        .bind(&a.identifier)
        .bind(&a.token)
        .bind(&a.status)
        .bind(a.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}

pub async fn order(db: &Database, id: &str) -> Result<Option<Order>, AcmeError> {
    let row = sqlx::query(
        "SELECT id, account_id, identifiers, expires_at, certificate_serial FROM acme_orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .map_err(failed)?;
    Ok(row.map(|r| Order {
        id: r.get("id"),
        account_id: r.get("account_id"),
        identifiers: strings(&r.get::<String, _>("identifiers")),
        expires_at: r.get("expires_at"),
        certificate_serial: r.get("certificate_serial"),
    }))
}

/// Orders `account_id` opened since `since`.
pub async fn orders_since(db: &Database, account_id: &str, since: i64) -> Result<i64, AcmeError> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM acme_orders WHERE account_id = $1 AND created_at >= $2",
    )
    .bind(account_id)
    .bind(since)
    .fetch_one(db.pool())
    .await
    .map_err(failed)
}

pub async fn order_ids(db: &Database, account_id: &str) -> Result<Vec<String>, AcmeError> {
    sqlx::query_scalar("SELECT id FROM acme_orders WHERE account_id = $1 ORDER BY created_at, id")
        .bind(account_id)
        .fetch_all(db.pool())
        .await
        .map_err(failed)
}

/// Whether `account_id` ordered the certificate with `serial`.
pub async fn ordered_certificate(
    db: &Database,
    account_id: &str,
    serial: &str,
) -> Result<bool, AcmeError> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT id FROM acme_orders WHERE account_id = $1 AND certificate_serial = $2",
    )
    .bind(account_id)
    .bind(serial)
    .fetch_optional(db.pool())
    .await
    .map_err(failed)?;
    Ok(found.is_some())
}

/// Records the certificate of an order; false if it already had one.
pub async fn set_certificate(
    db: &Database,
    order_id: &str,
    serial: &str,
) -> Result<bool, AcmeError> {
    let done = sqlx::query(
        "UPDATE acme_orders SET certificate_serial = $1 WHERE id = $2 AND certificate_serial IS NULL",
    )
    .bind(serial)
    .bind(order_id)
    .execute(db.pool())
    .await
    .map_err(failed)?;
    Ok(done.rows_affected() == 1)
}

pub async fn authorizations(
    db: &Database,
    order_id: &str,
) -> Result<Vec<Authorization>, AcmeError> {
    let rows = sqlx::query(
        "SELECT id, order_id, identifier, token, status, validated_at, error, expires_at \
         FROM acme_authorizations WHERE order_id = $1 ORDER BY identifier",
    )
    .bind(order_id)
    .fetch_all(db.pool())
    .await
    .map_err(failed)?;
    Ok(rows.iter().map(authorization_from_row).collect())
}

pub async fn authorization(db: &Database, id: &str) -> Result<Option<Authorization>, AcmeError> {
    let row = sqlx::query(
        "SELECT id, order_id, identifier, token, status, validated_at, error, expires_at \
         FROM acme_authorizations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await
    .map_err(failed)?;
    Ok(row.as_ref().map(authorization_from_row))
}

fn authorization_from_row(r: &sqlx::any::AnyRow) -> Authorization {
    Authorization {
        id: r.get("id"),
        order_id: r.get("order_id"),
        identifier: r.get("identifier"),
        token: r.get("token"),
        status: r.get("status"),
        validated_at: r.get("validated_at"),
        error: r.get("error"),
        expires_at: r.get("expires_at"),
    }
}

/// Moves an authorization from `from` to `to`; false if it was not in
/// `from` (another request moved it first).
pub async fn move_authorization(
    db: &Database,
    id: &str,
    from: &str,
    to: &str,
    validated_at: Option<i64>,
    error: Option<&str>,
) -> Result<bool, AcmeError> {
    let done = sqlx::query(
        "UPDATE acme_authorizations SET status = $1, validated_at = $2, error = $3 \
         WHERE id = $4 AND status = $5",
    )
    .bind(to)
    .bind(validated_at)
    .bind(error)
    .bind(id)
    .bind(from)
    .execute(db.pool())
    .await
    .map_err(failed)?;
    Ok(done.rows_affected() == 1)
}

/// Validations cut off by a stop: back to pending, for the client to ask
/// again. Returns how many.
pub async fn reopen_interrupted(db: &Database) -> Result<u64, AcmeError> {
    let done = sqlx::query(
        "UPDATE acme_authorizations SET status = 'pending' WHERE status = 'processing'",
    )
    .execute(db.pool())
    .await
    .map_err(failed)?;
    Ok(done.rows_affected())
}
