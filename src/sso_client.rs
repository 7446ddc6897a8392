//! Registering the client systems of single sign-on: one path for the CLI,
//! the API and the console, so that every registration is checked the same
//! way and audited.

use kexin_ca::issuance::Requester;
use kexin_identity::clients::Client;
use serde::Deserialize;

use crate::instance::Instance;

/// What an `ra-admin` states about a system.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    pub name: String,
    /// Accepted exactly as written.
    pub redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// RFC 8705 `tls_client_auth`: the subject DN of the system's TLS
    /// client certificate from the systems CA.
    pub tls_client_auth_subject: Option<String>,
    /// `ES256` (default) or `SM2`.
    pub id_token_alg: Option<String>,
}

/// Registers the system and audits it; returns it with its secret, which
/// is stored only hashed and so can be shown this once.
pub async fn register(
    instance: &Instance,
    r: &ClientRegistration,
    requester: Requester<'_>,
) -> Result<(Client, String), kexin_identity::Error> {
    let (client, secret) = kexin_identity::clients::register(
        &instance.db,
        &r.name,
        &r.redirect_uris,
        r.backchannel_logout_uri.as_deref(),
        r.tls_client_auth_subject.as_deref(),
        r.id_token_alg.as_deref(),
    )
    .await?;
    instance
        .audit
        .append(kexin_ca::audit::AuditEvent {
            actor: requester.actor,
            action: "client.add",
            target: &client.client_id,
            source: requester.source,
            detail: serde_json::json!({
                "name": client.name,
                "redirect_uris": client.redirect_uris,
                "backchannel_logout_uri": client.backchannel_logout_uri,
                "tls_client_auth_subject_dn": client.tls_client_auth_subject_dn,
                "id_token_alg": client.id_token_alg,
            }),
        })
        .await?;
    Ok((client, secret))
}
