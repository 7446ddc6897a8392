//! Finalizing an order into a certificate, downloading its chain, and
//! revoking it.

use axum::extract::{ConnectInfo, Path};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use der::{Decode, Encode};
use kexin_ca::issuance::Requester;
use kexin_ca::profile::SubjectRequest;
use kexin_ca::revocation::{RevocationReason, Revocations};

use super::order::{order_json, order_status, owned_order};
use super::store::Order;
use super::*;

#[derive(serde::Deserialize)]
struct Finalize {
    csr: String,
}

pub(super) async fn finalize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let account = signed.account()?;
    let order = owned_order(&state, account, &id).await?;
    let db = &state.instance.db;
    let authorizations = store::authorizations(db, &id).await?;
    let status = order_status(&order, &authorizations, now());
    if status != "ready" {
        return Err(AcmeError::new(
            "orderNotReady",
            StatusCode::FORBIDDEN,
            &format!("the order is {status}, not ready"),
        ));
    }
    let request: Finalize = signed.payload()?;
    let bad_csr = |d: &str| AcmeError::new("badCSR", StatusCode::BAD_REQUEST, d);
    let csr_der = URL_SAFE_NO_PAD
        .decode(request.csr.trim_end_matches('='))
        .map_err(|_| bad_csr("the csr is not base64url DER"))?;
    let csr = kexin_ca::csr::parse_and_verify(&csr_der).map_err(|e| bad_csr(&e.to_string()))?;
    let subject_request =
        subject_request(csr, &order.identifiers, &signed.key).map_err(|d| bad_csr(&d))?;
    let profile_name = &state.instance.config.acme.profile;
    let profile = state
        .registration
        .profiles()
        .get(profile_name)
        .map_err(|_| AcmeError::server_internal())?;
    if profile.approvals > 1 {
        tracing::error!(profile = %profile_name, "acme.profile needs more than one approval");
        return Err(AcmeError::server_internal());
    }
    let actor = format!("acme:{}", account.id);
    let source = peer.ip().to_string();
    let cert = state
        .registration
        .issue(
            &subject_request,
            profile_name,
            None,
            Requester {
                actor: &actor,
                source: &source,
            },
        )
        .await
        .map_err(|e| match e {
            kexin_ca::Error::Policy(_)
            | kexin_ca::Error::InvalidName(_)
            | kexin_ca::Error::InvalidRequest(_)
            | kexin_ca::Error::Csr(_) => bad_csr(&e.to_string()),
            other => {
                tracing::error!(error = %other, "ACME issuance");
                AcmeError::server_internal()
            }
        })?;
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    if !store::set_certificate(db, &id, &serial).await? {
        return Err(AcmeError::new(
            "orderNotReady",
            StatusCode::FORBIDDEN,
            "the order was finalized by another request",
        ));
    }
    let order = Order {
        certificate_serial: Some(serial),
        ..order
    };
    let url = format!("{}/order/{}", base(&state), order.id);
    Ok(json_response(
        StatusCode::OK,
        order_json(&state, &order, &authorizations),
        Some(&url),
    ))
}

/// The request the CA is asked to certify: the CSR's key, the order's
/// names and nothing else. The CSR's names must be exactly the order's; its
/// other subject attributes were not validated and are dropped.
fn subject_request(
    csr: kexin_ca::csr::VerifiedCsr,
    identifiers: &[String],
    account_key: &AccountKey,
) -> Result<SubjectRequest, String> {
    use x509_cert::ext::pkix::name::GeneralName;
    let common_name = csr
        .subject
        .iter()
        .find(|(oid, _)| *oid == const_oid::db::rfc4519::CN)
        .map(|(_, v)| v.to_ascii_lowercase());
    let mut names = Vec::new();
    for n in &csr.requested_names {
        match n {
            GeneralName::DnsName(d) => names.push(d.as_str().to_ascii_lowercase()),
            _ => return Err("the CSR asks for names other than DNS names".into()),
        }
    }
    names.extend(common_name.clone());
    names.sort();
    names.dedup();
    if names != identifiers {
        return Err(format!(
            "the CSR names {}, the order {}",
            names.join(", "),
            identifiers.join(", ")
        ));
    }
    let key_bytes = csr.public_key.subject_public_key.raw_bytes();
    if key_bytes == account_key.public_key_bytes() {
        return Err("the certificate's key must not be the account key".into());
    }
    let cn = match common_name {
        Some(cn) => cn,
        None => identifiers
            .first()
            .cloned()
            .ok_or("the order names nothing")?,
    };
    let names = identifiers
        .iter()
        .map(|n| {
            der::asn1::Ia5String::new(n)
                .map(GeneralName::DnsName)
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SubjectRequest {
        subject: vec![(const_oid::db::rfc4519::CN, cn)],
        names,
        public_key: csr.public_key,
        key_algorithm: csr.key_algorithm,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap_or_default()
}

pub(super) async fn certificate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let order = owned_order(&state, signed.account()?, &id).await?;
    let serial = order
        .certificate_serial
        .ok_or_else(|| AcmeError::not_found("certificate"))?;
    let record = state
        .instance
        .db
        .certificate(&serial)
        .await
        .map_err(|_| AcmeError::server_internal())?
        .ok_or_else(AcmeError::server_internal)?;
    let leaf = record.der.ok_or_else(AcmeError::server_internal)?;
    let mut chain = pem("CERTIFICATE", &leaf);
    if let Some(issuer) = state.authorities().certificate(&record.issuer) {
        let der = issuer.to_der().map_err(|_| AcmeError::server_internal())?;
        chain.push_str(&pem("CERTIFICATE", &der));
    }
    let mut res = (StatusCode::OK, chain).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    Ok(res)
}

#[derive(serde::Deserialize)]
struct Revoke {
    certificate: String,
    reason: Option<i64>,
}

/// By the account that ordered the certificate, or signed with the
/// certificate's own key; only certificates of the ACME profile.
pub(super) async fn revoke_certificate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    signed: Signed,
) -> Result<Response, AcmeError> {
    let request: Revoke = signed.payload()?;
    let der = URL_SAFE_NO_PAD
        .decode(request.certificate.trim_end_matches('='))
        .map_err(|_| AcmeError::malformed("the certificate is not base64url DER"))?;
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|_| AcmeError::malformed("the certificate does not parse"))?;
    let serial = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
    let db = &state.instance.db;
    let record = db
        .certificate(&serial)
        .await
        .map_err(|_| AcmeError::server_internal())?
        .filter(|r| r.der.as_deref() == Some(&der[..]))
        .ok_or_else(|| AcmeError::not_found("certificate issued by this CA"))?;
    if record.profile != state.instance.config.acme.profile {
        return Err(AcmeError::unauthorized(
            "only certificates issued through ACME are revoked through ACME",
        ));
    }
    let (actor, allowed) = match &signed.account {
        Some(account) => (
            format!("acme:{}", account.id),
            store::ordered_certificate(db, &account.id, &serial).await?,
        ),
        None => (
            format!("acme:key:{}", signed.key.thumbprint()),
            cert.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
                == signed.key.public_key_bytes(),
        ),
    };
    if !allowed {
        return Err(AcmeError::unauthorized(
            "sign with the account that ordered the certificate, or with its key",
        ));
    }
    let reason = match request.reason.unwrap_or(0) {
        code @ (0 | 1 | 3 | 4 | 5 | 9) => RevocationReason::from_code(code),
        _ => None,
    }
    .ok_or_else(|| {
        AcmeError::new(
            "badRevocationReason",
            StatusCode::BAD_REQUEST,
            "reasons are 0, 1, 3, 4, 5 or 9 (RFC 5280)",
        )
    })?;
    if record.status != "issued" {
        return Err(AcmeError::new(
            "alreadyRevoked",
            StatusCode::BAD_REQUEST,
            &format!("the certificate is {}", record.status),
        ));
    }
    let source = peer.ip().to_string();
    let ca = Revocations::new(db.clone(), state.instance.audit.clone())
        .revoke(
            &serial,
            reason,
            None,
            Requester {
                actor: &actor,
                source: &source,
            },
        )
        .await
        .map_err(|e| match e {
            kexin_ca::Error::Conflict(d) => {
                AcmeError::new("alreadyRevoked", StatusCode::BAD_REQUEST, &d)
            }
            other => {
                tracing::error!(error = %other, "ACME revocation");
                AcmeError::server_internal()
            }
        })?;
    state.ocsp.invalidate(&serial);
    if let Err(e) = state.instance.regenerate_crl(&ca).await {
        tracing::error!(ca, error = %e, "CRL regeneration after an ACME revocation failed");
    }
    Ok(StatusCode::OK.into_response())
}
