//! Registered client systems: an id, a secret (stored hashed) and the
//! redirect URIs that are accepted exactly as written.

use std::collections::HashMap;
use std::sync::Mutex;

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
    /// RFC 8705 `tls_client_auth`: the subject DN of the client's TLS
    /// certificate (from the systems CA), instead of or beside the secret.
    pub tls_client_auth_subject_dn: Option<String>,
    /// Set when this request authenticated with a certificate: its SHA-256
    /// thumbprint (base64url), which binds the access tokens issued now
    /// (RFC 8705 §3).
    #[serde(skip)]
    pub certificate_thumbprint: Option<String>,
    /// `ES256` (default) or `SM2` (SM2 with SM3, user ID 1234567812345678).
    pub id_token_alg: String,
}

/// Registers a system; returns it and its secret (shown once).
pub async fn register(
    db: &Database,
    name: &str,
    redirect_uris: &[String],
    backchannel_logout_uri: Option<&str>,
    tls_client_auth_subject_dn: Option<&str>,
    id_token_alg: Option<&str>,
) -> Result<(Client, String), Error> {
    let id_token_alg = id_token_alg.unwrap_or("ES256").to_ascii_uppercase();
    if !matches!(id_token_alg.as_str(), "ES256" | "SM2") {
        return Err(oauth(
            "invalid_client_metadata",
            "id_token_alg is ES256 or SM2",
        ));
    }
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
    sqlx::query("INSERT INTO oidc_clients (client_id, name, secret_sha256, redirect_uris, created_at, backchannel_logout_uri, tls_client_auth_subject_dn, id_token_alg) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&client_id)
        .bind(name.trim())
        .bind(sha256_hex(&secret))
        .bind(serde_json::to_string(redirect_uris).unwrap_or_default())
        .bind(crate::now())
        .bind(backchannel_logout_uri)
        .bind(tls_client_auth_subject_dn)
        .bind(&id_token_alg)
        .execute(db.pool())
        .await
        .map_err(storage)?;
    Ok((
        Client {
            client_id,
            name: name.trim().to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            backchannel_logout_uri: backchannel_logout_uri.map(str::to_owned),
            tls_client_auth_subject_dn: tls_client_auth_subject_dn.map(str::to_owned),
            certificate_thumbprint: None,
            id_token_alg,
        },
        secret,
    ))
}

/// Every registered client (without secrets), oldest first.
pub async fn list(db: &Database) -> Result<Vec<Client>, Error> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT client_id FROM oidc_clients ORDER BY created_at, client_id")
            .fetch_all(db.pool())
            .await
            .map_err(storage)?;
    let mut clients = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some((client, _)) = read(db, &id).await? {
            clients.push(client);
        }
    }
    Ok(clients)
}

/// The registered clients, as this process has read them. A client row is
/// never updated or deleted once registered, so a client found once stays
/// right for the life of the process and later requests need no database
/// read; an unknown id is looked up every time, so that a client
/// registered meanwhile (by the CLI, or another node) is found.
pub struct Directory {
    db: Database,
    known: Mutex<HashMap<String, (Client, String)>>,
}

/// More clients than a province registers; past it the cache starts over
/// rather than grow without bound.
const MAX_CACHED: usize = 10_000;

impl Directory {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            known: Mutex::default(),
        }
    }

    /// The client and the SHA-256 (hex) of its secret.
    pub async fn find(&self, client_id: &str) -> Result<Option<(Client, String)>, Error> {
        if let Some(found) = self.lock().get(client_id) {
            return Ok(Some(found.clone()));
        }
        let found = read(&self.db, client_id).await?;
        if let Some(f) = &found {
            let mut known = self.lock();
            if known.len() >= MAX_CACHED {
                known.clear();
            }
            known.insert(client_id.to_owned(), f.clone());
        }
        Ok(found)
    }

    /// A confidential client proves itself with its secret (compared as
    /// hashes, in constant time).
    pub async fn authenticate(&self, client_id: &str, secret: &str) -> Result<Client, Error> {
        let invalid = || oauth("invalid_client", "unknown client or wrong secret");
        let (client, stored) = self.find(client_id).await?.ok_or_else(invalid)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(
            sha256_hex(secret).as_bytes(),
            stored.as_bytes(),
        )
        .map_err(|_| invalid())?;
        Ok(client)
    }

    /// RFC 8705 `tls_client_auth`: the client presented a certificate
    /// (already checked to be good and from the systems CA) whose subject
    /// is the one registered for it.
    pub async fn authenticate_by_certificate(
        &self,
        client_id: &str,
        subject_dn: &str,
        thumbprint: &str,
    ) -> Result<Client, Error> {
        let invalid = || {
            oauth(
                "invalid_client",
                "unknown client or a certificate not registered for it",
            )
        };
        let (mut client, _) = self.find(client_id).await?.ok_or_else(invalid)?;
        match &client.tls_client_auth_subject_dn {
            Some(dn) if dn == subject_dn => {
                client.certificate_thumbprint = Some(thumbprint.to_owned());
                Ok(client)
            }
            _ => Err(invalid()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Client, String)>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn read(db: &Database, client_id: &str) -> Result<Option<(Client, String)>, Error> {
    let row = sqlx::query("SELECT client_id, name, redirect_uris, secret_sha256, backchannel_logout_uri, tls_client_auth_subject_dn, id_token_alg FROM oidc_clients WHERE client_id = $1")
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
                tls_client_auth_subject_dn: r.try_get(5).map_err(storage)?,
                certificate_thumbprint: None,
                id_token_alg: r
                    .try_get::<Option<String>, _>(6)
                    .map_err(storage)?
                    .unwrap_or_else(|| "ES256".into()),
            },
            r.try_get(3).map_err(storage)?,
        ))
    })
    .transpose()
}
