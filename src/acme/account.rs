//! Accounts: opening one (bound to an external account key from the RA
//! where that is required), reading, updating and deactivating it, its
//! orders; and the RA's side of the external account keys.

use axum::extract::{ConnectInfo, Path};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kexin_ca::issuance::Requester;

use super::*;
use crate::api::rfc3339;

fn account_json(state: &AppState, a: &Account) -> serde_json::Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "orders": format!("{}/orders", account_url(state, &a.id)),
    })
}

/// An account with its URL in Location: how new-account answers.
fn account_reply(state: &AppState, status: StatusCode, a: &Account) -> Response {
    json_response(
        status,
        account_json(state, a),
        Some(&account_url(state, &a.id)),
    )
}

/// Contacts must be mailto: URLs with one address and no header fields.
fn check_contacts(contact: &[String]) -> Result<(), AcmeError> {
    for c in contact {
        let address = c.strip_prefix("mailto:").ok_or_else(|| {
            AcmeError::new(
                "unsupportedContact",
                StatusCode::BAD_REQUEST,
                "contacts are mailto: URLs",
            )
        })?;
        let well_formed = address.split('@').count() == 2
            && !address.contains([',', '?', ' ', '<', '>'])
            && address.len() <= 254;
        if !well_formed {
            return Err(AcmeError::new(
                "invalidContact",
                StatusCode::BAD_REQUEST,
                &format!("{c} is not one e-mail address"),
            ));
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewAccount {
    #[serde(default)]
    contact: Vec<String>,
    #[serde(default)]
    only_return_existing: bool,
    external_account_binding: Option<serde_json::Value>,
}

/// The external account a new account binds to: checked against the key
/// the RA issued under its kid, which must not be bound yet. None when
/// the request has no binding and none is required.
async fn external_binding(
    state: &AppState,
    request: &NewAccount,
    account_key: &AccountKey,
) -> Result<Option<(String, String)>, AcmeError> {
    let Some(binding) = &request.external_account_binding else {
        if state.instance.config.acme.external_account_required {
            return Err(AcmeError::new(
                "externalAccountRequired",
                StatusCode::BAD_REQUEST,
                "accounts are bound to a key from the registration authority (kexin acme eab); send externalAccountBinding",
            ));
        }
        return Ok(None);
    };
    let url = format!("{}/new-account", base(state));
    let binding = jws::ExternalBinding::parse(binding, &url, account_key)?;
    let unknown = || AcmeError::unauthorized("no unbound external account key has this kid");
    let external = store::external_account(&state.instance.db, &binding.kid)
        .await?
        .ok_or_else(unknown)?;
    if external.account_id.is_some() {
        return Err(unknown());
    }
    binding.verify(&external.hmac_key)?;
    Ok(Some((binding.kid, external.name)))
}

/// The external account keys, for the API: kid, name, the account bound
/// (its URL) and when the key was issued.
pub async fn list_external_accounts(state: &AppState) -> Result<Vec<serde_json::Value>, AcmeError> {
    Ok(store::external_accounts(&state.instance.db)
        .await?
        .into_iter()
        .map(|(kid, name, account, created_at)| {
            json!({
                "kid": kid,
                "name": name,
                "account": account.map(|a| account_url(state, &a)),
                "created_at": rfc3339(created_at),
            })
        })
        .collect())
}

/// 32 random bytes, base64url, not beginning with `-`: operators paste
/// these after `--eab-kid` and `--eab-hmac-key`, where a leading dash
/// makes certbot's argument parser take the value for an option (one key
/// in 64 did).
fn option_safe_token() -> Result<String, AcmeError> {
    loop {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AcmeError::server_internal())?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        if !token.starts_with('-') {
            return Ok(token);
        }
    }
}

/// Issues an external account key for `name` (a system the RA knows; 1 to
/// 200 printable characters, whichever way the key is asked for): returns
/// (kid, base64url HMAC key), the key shown this once.
pub async fn issue_external_account(
    instance: &crate::instance::Instance,
    name: &str,
    requester: Requester<'_>,
) -> Result<(String, String), AcmeError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AcmeError::malformed(
            "name is 1 to 200 printable characters",
        ));
    }
    let (kid, hmac_key) = (option_safe_token()?, option_safe_token()?);
    store::insert_external_account(&instance.db, &kid, name, &hmac_key, now()).await?;
    instance
        .audit
        .append(kexin_ca::audit::AuditEvent {
            actor: requester.actor,
            action: "acme.external_account",
            target: &kid,
            source: requester.source,
            detail: json!({ "name": name }),
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit append for an external account key");
            AcmeError::server_internal()
        })?;
    Ok((kid, hmac_key))
}

pub(super) async fn new_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let request: NewAccount = signed.payload()?;
    let thumbprint = signed.key.thumbprint();
    let db = &state.instance.db;
    if let Some(existing) = store::account_by_thumbprint(db, &thumbprint).await? {
        return Ok(account_reply(&state, StatusCode::OK, &existing));
    }
    if request.only_return_existing {
        return Err(AcmeError::new(
            "accountDoesNotExist",
            StatusCode::BAD_REQUEST,
            "no account has this key",
        ));
    }
    check_contacts(&request.contact)?;
    let binding = external_binding(&state, &request, &signed.key).await?;
    let account = Account {
        id: kexin_identity::random_token().map_err(|_| AcmeError::server_internal())?,
        jwk: signed.key.canonical_json(),
        contact: request.contact,
        status: "valid".into(),
    };
    let bound_kid = binding.as_ref().map(|(kid, _)| kid.as_str());
    if !store::insert_account(db, &account, &thumbprint, bound_kid, now()).await? {
        // The same key registered concurrently: answer with that account.
        let existing = store::account_by_thumbprint(db, &thumbprint)
            .await?
            .ok_or_else(AcmeError::server_internal)?;
        return Ok(account_reply(&state, StatusCode::OK, &existing));
    }
    audit(
        &state,
        &account.id,
        "acme.account",
        &account.id,
        peer,
        json!({
            "thumbprint": thumbprint,
            "contact": account.contact,
            "external_account": binding.map(|(kid, name)| json!({ "kid": kid, "name": name })),
        }),
    )
    .await?;
    Ok(account_reply(&state, StatusCode::CREATED, &account))
}

#[derive(serde::Deserialize)]
struct AccountUpdate {
    contact: Option<Vec<String>>,
    status: Option<String>,
}

pub(super) async fn account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let mut account = signed.account()?.clone();
    if account.id != id {
        return Err(AcmeError::unauthorized("this is another account"));
    }
    if !signed.is_post_as_get() {
        let update: AccountUpdate = signed.payload()?;
        if let Some(contact) = update.contact {
            check_contacts(&contact)?;
            account.contact = contact;
        }
        match update.status.as_deref() {
            None => {}
            Some("deactivated") => account.status = "deactivated".into(),
            Some(other) => {
                return Err(AcmeError::malformed(&format!(
                    "an account can only be deactivated, not made {other}"
                )))
            }
        }
        store::update_account(&state.instance.db, &id, &account.contact, &account.status).await?;
        audit(
            &state,
            &id,
            "acme.account.update",
            &id,
            peer,
            json!({ "contact": account.contact, "status": account.status }),
        )
        .await?;
    }
    Ok(json_response(
        StatusCode::OK,
        account_json(&state, &account),
        None,
    ))
}

pub(super) async fn account_orders(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    if signed.account()?.id != id {
        return Err(AcmeError::unauthorized("this is another account"));
    }
    let b = base(&state);
    let urls: Vec<String> = store::order_ids(&state.instance.db, &id)
        .await?
        .into_iter()
        .map(|o| format!("{b}/order/{o}"))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({ "orders": urls }),
        None,
    ))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyChange {
    account: String,
    old_key: serde_json::Value,
}

/// Account key rollover (RFC 8555 §7.3.5): the outer JWS is signed by the
/// account's key, the inner one (its payload) by the new key, over the
/// account URL and the old key.
pub(super) async fn key_change(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let account = signed.account()?;
    let (inner, header) = jws::parse(&signed.payload)?;
    let new_jwk = header
        .jwk
        .as_ref()
        .ok_or_else(|| AcmeError::malformed("the inner JWS carries the new key as jwk"))?;
    if header.nonce.is_some() || header.url != format!("{}/key-change", base(&state)) {
        return Err(AcmeError::malformed(
            "the inner JWS has the outer url and no nonce",
        ));
    }
    let new_key = AccountKey::from_jwk(new_jwk)?;
    let verified = jws::verify(&inner, &header, new_key)?;
    let change: KeyChange = serde_json::from_slice(&verified.payload)
        .map_err(|_| AcmeError::malformed("the inner payload names account and oldKey"))?;
    let own_url = account_url(&state, &account.id);
    let old_key = AccountKey::from_jwk(&change.old_key)?;
    if change.account != own_url || old_key != signed.key {
        return Err(AcmeError::malformed(
            "the inner payload's account and oldKey must be the signer's",
        ));
    }
    let thumbprint = verified.key.thumbprint();
    let db = &state.instance.db;
    if !store::replace_account_key(db, &account.id, &verified.key.canonical_json(), &thumbprint)
        .await?
    {
        let holder = store::account_by_thumbprint(db, &thumbprint).await?;
        let mut res = AcmeError::new(
            "malformed",
            StatusCode::CONFLICT,
            "another account holds the new key",
        )
        .into_response();
        if let Some(v) =
            holder.and_then(|h| HeaderValue::from_str(&account_url(&state, &h.id)).ok())
        {
            res.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(res);
    }
    audit(
        &state,
        &account.id,
        "acme.key_change",
        &account.id,
        peer,
        json!({ "old_thumbprint": signed.key.thumbprint(), "thumbprint": thumbprint }),
    )
    .await?;
    let mut account = account.clone();
    account.jwk = verified.key.canonical_json();
    Ok(json_response(
        StatusCode::OK,
        account_json(&state, &account),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the check, one token in 64 begins with a dash: among 2,000
    /// some would, all but certainly.
    #[test]
    fn external_account_tokens_never_begin_with_a_dash() {
        for _ in 0..2000 {
            let token = option_safe_token().unwrap();
            assert!(!token.starts_with('-'), "{token}");
            assert_eq!(token.len(), 43);
        }
    }
}
