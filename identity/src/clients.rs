//! Registered client systems: an id, a secret (stored hashed) and the
//! redirect URIs that are accepted exactly as written.

use kexin_ca::storage::Database;
use sqlx::Row;

use crate::{oauth, random_token, sha256_hex, storage, Error};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// Where the provider posts a logout token when a session ends.
    pub backchannel_logout_uri: Option<String>,
}

/// Registers a system; returns it and its secret (shown once).
pub async fn register(
    db: &Database,
    name: &str,
    redirect_uris: &[String],
    backchannel_logout_uri: Option<&str>,
) -> Result<(Client, String), Error> {
    if name.trim().is_empty() || redirect_uris.is_empty() {
        return Err(oauth(
            "invalid_client_metadata",
            "a client needs a name and a redirect URI",
        ));
    }
    for uri in redirect_uris
        .iter()
        .chain(backchannel_logout_uri.map(str::to_owned).as_ref())
    {
        let ok = (uri.starts_with("https://")
            || uri.starts_with("http://127.0.0.1")
            || uri.starts_with("http://localhost"))
            && !uri.contains('#')
            && !uri.chars().any(char::is_whitespace);
        if !ok {
            return Err(oauth(
                "invalid_redirect_uri",
                format!("{uri:?}: redirect URIs are https (or http on loopback), without fragment"),
            ));
        }
    }
    let client_id = format!("kx-{}", &random_token()?[..16]);
    let secret = random_token()?;
    sqlx::query("INSERT INTO oidc_clients (client_id, name, secret_sha256, redirect_uris, created_at, backchannel_logout_uri) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&client_id)
        .bind(name.trim())
        .bind(sha256_hex(&secret))
        .bind(serde_json::to_string(redirect_uris).unwrap_or_default())
        .bind(crate::now())
        .bind(backchannel_logout_uri)
        .execute(db.pool())
        .await
        .map_err(storage)?;
    Ok((
        Client {
            client_id,
            name: name.trim().to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            backchannel_logout_uri: backchannel_logout_uri.map(str::to_owned),
        },
        secret,
    ))
}

pub async fn find(db: &Database, client_id: &str) -> Result<Option<(Client, String)>, Error> {
    let row = sqlx::query("SELECT client_id, name, redirect_uris, secret_sha256, backchannel_logout_uri FROM oidc_clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(db.pool())
        .await
        .map_err(storage)?;
    row.map(|r| {
        let uris: String = r.try_get(2).map_err(storage)?;
        Ok((
            Client {
                client_id: r.try_get(0).map_err(storage)?,
                name: r.try_get(1).map_err(storage)?,
                redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
                backchannel_logout_uri: r.try_get(4).map_err(storage)?,
            },
            r.try_get(3).map_err(storage)?,
        ))
    })
    .transpose()
}

/// A confidential client proves itself with its secret (compared as
/// hashes, in constant time).
pub async fn authenticate(db: &Database, client_id: &str, secret: &str) -> Result<Client, Error> {
    let invalid = || oauth("invalid_client", "unknown client or wrong secret");
    let (client, stored) = find(db, client_id).await?.ok_or_else(invalid)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(
        sha256_hex(secret).as_bytes(),
        stored.as_bytes(),
    )
    .map_err(|_| invalid())?;
    Ok(client)
}
