//! Orders and their authorizations: which names may be ordered, the
//! http-01 challenge and its validation, and the status of each.

use axum::extract::{ConnectInfo, Path};

use super::store::{Authorization, Order};
use super::*;
use crate::api::rfc3339;

const ORDER_LIFETIME_SECS: i64 = 7 * 24 * 3600;
const MAX_IDENTIFIERS: usize = 100;

/// A DNS name an ACME order may ask for: LDH labels, at least two of them,
/// no wildcard (that needs dns-01, which is not offered), under
/// `localhost` only where `acme.allow_localhost_names` says so.
fn check_dns_name(
    name: &str,
    permitted: &[String],
    allow_localhost: bool,
) -> Result<String, AcmeError> {
    let rejected = |why: &str| {
        AcmeError::new(
            "rejectedIdentifier",
            StatusCode::BAD_REQUEST,
            &format!("{name}: {why}"),
        )
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.starts_with("*.") {
        return Err(rejected(
            "wildcards need the dns-01 challenge, which this server does not offer",
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let ldh = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !ldh || labels.len() < 2 || name.len() > 253 {
        return Err(rejected("not a fully qualified DNS name"));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(rejected("IP addresses are not DNS names"));
    }
    if labels.last() == Some(&"localhost") && !allow_localhost {
        return Err(rejected(
            "names under localhost are refused (acme.allow_localhost_names)",
        ));
    }
    let inside = |p: &String| {
        let p = p.trim_start_matches('.').to_ascii_lowercase();
        name == p || name.ends_with(&format!(".{p}"))
    };
    if !permitted.is_empty() && !permitted.iter().any(inside) {
        return Err(rejected(&format!(
            "outside the names this CA may certify ({})",
            permitted.join(", ")
        )));
    }
    Ok(name)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    identifiers: Vec<Identifier>,
    not_before: Option<String>,
    not_after: Option<String>,
}

#[derive(serde::Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// What an order's status is now (RFC 8555 §7.1.6).
pub(super) fn order_status(
    order: &Order,
    authorizations: &[Authorization],
    now: i64,
) -> &'static str {
    if order.certificate_serial.is_some() {
        "valid"
    } else if now > order.expires_at || authorizations.iter().any(|a| a.status == "invalid") {
        "invalid"
    } else if authorizations.iter().all(|a| a.status == "valid") {
        "ready"
    } else {
        "pending"
    }
}

pub(super) fn order_json(
    state: &AppState,
    order: &Order,
    authorizations: &[Authorization],
) -> serde_json::Value {
    let b = base(state);
    let mut body = json!({
        "status": order_status(order, authorizations, now()),
        "expires": rfc3339(order.expires_at),
        "identifiers": order.identifiers.iter().map(|v| json!({ "type": "dns", "value": v })).collect::<Vec<_>>(),
        "authorizations": authorizations.iter().map(|a| format!("{b}/authz/{}", a.id)).collect::<Vec<_>>(),
        "finalize": format!("{b}/order/{}/finalize", order.id),
    });
    if order.certificate_serial.is_some() {
        body["certificate"] = json!(format!("{b}/cert/{}", order.id));
    }
    if let Some(failed) = authorizations.iter().find(|a| a.status == "invalid") {
        body["error"] = json!({
            "type": "urn:ietf:params:acme:error:unauthorized",
            "detail": format!("the authorization for {} failed", failed.identifier),
        });
    }
    body
}

pub(super) async fn new_order(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let account = signed.account()?;
    let request: NewOrder = signed.payload()?;
    let limit = state.instance.config.acme.orders_per_hour;
    let opened = store::orders_since(&state.instance.db, &account.id, now() - 3600).await?;
    if opened >= i64::from(limit) {
        let mut res = AcmeError::new(
            "rateLimited",
            StatusCode::TOO_MANY_REQUESTS,
            &format!("an account opens at most {limit} orders an hour (acme.orders_per_hour)"),
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
        return Ok(res);
    }
    if request.not_before.is_some() || request.not_after.is_some() {
        return Err(AcmeError::malformed(
            "notBefore and notAfter are not supported: the profile sets the validity",
        ));
    }
    if request.identifiers.is_empty() || request.identifiers.len() > MAX_IDENTIFIERS {
        return Err(AcmeError::new(
            "rejectedIdentifier",
            StatusCode::BAD_REQUEST,
            &format!("an order names 1 to {MAX_IDENTIFIERS} identifiers"),
        ));
    }
    let permitted = &state.instance.config.ca.systems_permitted_dns;
    let allow_localhost = state.instance.config.acme.allow_localhost_names;
    let mut names = Vec::with_capacity(request.identifiers.len());
    for i in &request.identifiers {
        if i.kind != "dns" {
            return Err(AcmeError::new(
                "unsupportedIdentifier",
                StatusCode::BAD_REQUEST,
                &format!("identifiers of type {} are not supported; use dns", i.kind),
            ));
        }
        names.push(check_dns_name(&i.value, permitted, allow_localhost)?);
    }
    names.sort();
    names.dedup();
    let now = now();
    let token = || kexin_identity::random_token().map_err(|_| AcmeError::server_internal());
    let order = Order {
        id: token()?,
        account_id: account.id.clone(),
        identifiers: names.clone(),
        expires_at: now + ORDER_LIFETIME_SECS,
        certificate_serial: None,
    };
    let mut authorizations = Vec::with_capacity(names.len());
    for name in names {
        authorizations.push(Authorization {
            id: token()?,
            order_id: order.id.clone(),
            identifier: name,
            token: token()?,
            status: "pending".into(),
            validated_at: None,
            error: None,
            expires_at: order.expires_at,
        });
    }
    store::insert_order(&state.instance.db, &order, &authorizations, now).await?;
    let url = format!("{}/order/{}", base(&state), order.id);
    Ok(json_response(
        StatusCode::CREATED,
        order_json(&state, &order, &authorizations),
        Some(&url),
    ))
}

/// The order `id`, which must be `account`'s.
pub(super) async fn owned_order(
    state: &AppState,
    account: &Account,
    id: &str,
) -> Result<Order, AcmeError> {
    let order = store::order(&state.instance.db, id)
        .await?
        .ok_or_else(|| AcmeError::not_found("order"))?;
    if order.account_id != account.id {
        return Err(AcmeError::unauthorized(
            "this order belongs to another account",
        ));
    }
    Ok(order)
}

pub(super) async fn order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let order = owned_order(&state, signed.account()?, &id).await?;
    let authorizations = store::authorizations(&state.instance.db, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        order_json(&state, &order, &authorizations),
        None,
    ))
}

/// The authorization `id` and its order, which must be `account`'s.
async fn owned_authorization(
    state: &AppState,
    account: &Account,
    id: &str,
) -> Result<Authorization, AcmeError> {
    let authorization = store::authorization(&state.instance.db, id)
        .await?
        .ok_or_else(|| AcmeError::not_found("authorization"))?;
    owned_order(state, account, &authorization.order_id).await?;
    Ok(authorization)
}

fn challenge_json(state: &AppState, a: &Authorization) -> serde_json::Value {
    let mut body = json!({
        "type": "http-01",
        "url": format!("{}/chall/{}", base(state), a.id),
        "token": a.token,
        "status": a.status,
    });
    if let Some(at) = a.validated_at {
        body["validated"] = json!(rfc3339(at));
    }
    if let Some(error) = a.error.as_deref() {
        body["error"] = serde_json::from_str(error).unwrap_or(json!({ "detail": error }));
    }
    body
}

fn authorization_json(state: &AppState, a: &Authorization) -> serde_json::Value {
    let status = match a.status.as_str() {
        "valid" => "valid",
        "invalid" => "invalid",
        _ if now() > a.expires_at => "expired",
        _ => "pending",
    };
    json!({
        "status": status,
        "expires": rfc3339(a.expires_at),
        "identifier": { "type": "dns", "value": a.identifier },
        "challenges": [challenge_json(state, a)],
    })
}

pub(super) async fn authorization(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let a = owned_authorization(&state, signed.account()?, &id).await?;
    if !signed.is_post_as_get() {
        return Err(AcmeError::malformed(
            "authorizations are read with POST-as-GET; deactivation is not supported",
        ));
    }
    let mut res = json_response(StatusCode::OK, authorization_json(&state, &a), None);
    poll_again_soon(&mut res, &a);
    Ok(res)
}

/// While a validation runs, asks the client to poll again in a second
/// (RFC 8555 §8.2): left to themselves, clients wait longer (lego: 5 s).
fn poll_again_soon(res: &mut Response, a: &Authorization) {
    if a.status == "processing" {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
}

/// A POST of `{}` asks for validation, once; POST-as-GET reads.
pub(super) async fn challenge(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let account = signed.account()?;
    let mut a = owned_authorization(&state, account, &id).await?;
    let respond_to = !signed.is_post_as_get();
    if respond_to {
        let _: serde_json::Map<String, serde_json::Value> = signed.payload()?;
    }
    let db = &state.instance.db;
    if respond_to
        && a.status == "pending"
        && now() <= a.expires_at
        && store::move_authorization(db, &id, "pending", "processing", None, None).await?
    {
        a.status = "processing".into();
        let key_authorization = format!("{}.{}", a.token, signed.key.thumbprint());
        tokio::spawn(validate(
            state.clone(),
            a.clone(),
            account.id.clone(),
            key_authorization,
            peer,
        ));
    }
    let mut res = json_response(StatusCode::OK, challenge_json(&state, &a), None);
    poll_again_soon(&mut res, &a);
    if let Ok(v) = HeaderValue::from_str(&format!("<{}/authz/{}>;rel=\"up\"", base(&state), a.id)) {
        res.headers_mut().append(header::LINK, v);
    }
    Ok(res)
}

/// Fetches the http-01 response and records the outcome, audited: who
/// proved control of which name, when, and how it went.
async fn validate(
    state: AppState,
    a: Authorization,
    account_id: String,
    key_authorization: String,
    peer: SocketAddr,
) {
    let port = state.instance.config.acme.http01_port;
    let outcome = http01::validate(&a.identifier, port, &a.token, &key_authorization).await;
    let db = &state.instance.db;
    let recorded = match &outcome {
        Ok(()) => {
            store::move_authorization(db, &a.id, "processing", "valid", Some(now()), None).await
        }
        Err((kind, detail)) => {
            let error = json!({
                "type": format!("urn:ietf:params:acme:error:{kind}"),
                "detail": detail,
                "status": 403,
            })
            .to_string();
            store::move_authorization(db, &a.id, "processing", "invalid", None, Some(&error)).await
        }
    };
    if recorded.is_err() {
        tracing::error!(authorization = %a.id, "ACME validation outcome not recorded");
        return;
    }
    let detail = json!({
        "authorization": a.id,
        "challenge": "http-01",
        "port": port,
        "outcome": match &outcome { Ok(()) => "valid".to_owned(), Err((_, d)) => d.clone() },
    });
    if audit(
        &state,
        &account_id,
        "acme.validation",
        &a.identifier,
        peer,
        detail,
    )
    .await
    .is_err()
    {
        tracing::error!(authorization = %a.id, "ACME validation not audited");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_normalized() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            check_dns_name("App.Example.", &none, false).unwrap(),
            "app.example"
        );
        for bad in [
            "*.example.org",
            "localhost",
            "a..b",
            "-a.example",
            "10.0.0.1",
            "a_b.example",
            "app.localhost",
        ] {
            assert!(
                check_dns_name(bad, &none, false).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(check_dns_name("app.localhost", &none, true).is_ok());
        let permitted = vec!["gov.example".to_owned()];
        assert!(check_dns_name("portal.gov.example", &permitted, false).is_ok());
        assert!(check_dns_name("gov.example", &permitted, false).is_ok());
        assert!(check_dns_name("evilgov.example", &permitted, false).is_err());
    }
}
