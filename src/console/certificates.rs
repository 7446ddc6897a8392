//! Certificate search and details (decoded fields, chain, stored status
//! and what the OCSP responder answers), and revoke / hold / release.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use const_oid::db::DB;
use der::Decode;
use kexin_ca::principal::Permission;
use kexin_ca::revocation::{normalize_serial, RevocationReason};
use kexin_ca::storage::{CertificateQuery, CertificateRecord};
use maud::{html, Markup};
use serde::Deserialize;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::Certificate;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse};

use super::{when, ConsoleError, Officer, PageResult};
use crate::serve::AppState;

const REASONS: [RevocationReason; 7] = [
    RevocationReason::Unspecified,
    RevocationReason::KeyCompromise,
    RevocationReason::AffiliationChanged,
    RevocationReason::Superseded,
    RevocationReason::CessationOfOperation,
    RevocationReason::PrivilegeWithdrawn,
    RevocationReason::CaCompromise,
];

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    status: Option<String>,
    /// Days: only certificates valid now that expire within them.
    expiring: Option<String>,
}

/// The expiry windows the search offers, in days, with their labels.
const EXPIRING: [(i64, &str); 2] = [(30, "expiring-30"), (90, "expiring-90")];

pub async fn search(
    State(state): State<AppState>,
    officer: Officer,
    Query(p): Query<SearchParams>,
) -> PageResult {
    officer.require(officer.caller.role.allows(Permission::ReadCertificates))?;
    let q = p.q.unwrap_or_default().trim().to_owned();
    let status = p.status.filter(|s| !s.is_empty());
    // A hexadecimal query is a serial prefix as well as a subject substring.
    let serial_prefix = normalize_serial(&q).ok().filter(|_| q.len() >= 4);
    let days = p
        .expiring
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| EXPIRING.iter().any(|(days, _)| days == d));
    let now = kexin_ca::issuance::now();
    let expiring = days.map(|d| (now, now + d * 86400));
    let mut queries = vec![CertificateQuery {
        subject: Some(q.clone()).filter(|s| !s.is_empty()),
        status: status.clone(),
        expiring,
        limit: 100,
        ..Default::default()
    }];
    if serial_prefix.is_some() {
        queries.push(CertificateQuery {
            serial_prefix,
            status: status.clone(),
            expiring,
            limit: 100,
            ..Default::default()
        });
    }
    let mut found: Vec<CertificateRecord> = Vec::new();
    for query in queries {
        for r in state
            .instance
            .db
            .search(&query)
            .await
            .map_err(|e| officer.err(e))?
        {
            if !found.iter().any(|f| f.serial == r.serial) {
                found.push(r);
            }
        }
    }
    let body = html! {
        main {
            h1 { (officer.t("certificates")) }
            form method="get" action="/console/certificates" class="search" {
                input type="search" name="q" value=(q) placeholder="CN, O, serial";
                select name="status" {
                    option value="" { (officer.t("all")) }
                    @for s in ["issued", "revoked", "hold"] {
                        option value=(s) selected[status.as_deref() == Some(s)] { (s) }
                    }
                }
                select name="expiring" {
                    option value="" { (officer.t("any-expiry")) }
                    @for (d, label) in EXPIRING {
                        option value=(d) selected[days == Some(d)] { (officer.t(label)) }
                    }
                }
                button type="submit" { (officer.t("search")) }
            }
            @if found.is_empty() { p class="muted" { (officer.t("none")) } }
            @else {
                div class="scroll" {
                    table {
                        thead { tr {
                            th { (officer.t("serial")) } th { (officer.t("subject")) } th { (officer.t("profile")) }
                            th { (officer.t("issuer")) } th { (officer.t("status")) } th { (officer.t("not-after")) }
                        } }
                        tbody {
                            @for r in &found {
                                tr {
                                    td class="mono" { a href={"/console/certificates/" (r.serial)} { (short(&r.serial)) } }
                                    td class="wrap" { (r.subject) }
                                    td { (r.profile) }
                                    td { (r.issuer) }
                                    td { span class={"badge " (r.status)} { (r.status) } }
                                    td class="nowrap" { (when(r.not_after)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(officer.page(officer.t("certificates"), body))
}

fn short(serial: &str) -> String {
    if serial.len() > 20 {
        format!("{}…", &serial[..20])
    } else {
        serial.to_owned()
    }
}

pub async fn detail(
    State(state): State<AppState>,
    officer: Officer,
    Path(serial): Path<String>,
) -> PageResult {
    officer.require(officer.caller.role.allows(Permission::ReadCertificates))?;
    let serial = normalize_serial(&serial).map_err(|e| officer.err(e))?;
    let record = state
        .instance
        .db
        .certificate(&serial)
        .await
        .map_err(|e| officer.err(e))?
        .ok_or_else(|| {
            officer.err(ConsoleError::new(
                StatusCode::NOT_FOUND,
                &format!("no certificate {serial}"),
            ))
        })?;
    let cert = record
        .der
        .as_deref()
        .and_then(|d| Certificate::from_der(d).ok())
        .ok_or_else(|| {
            officer.err(ConsoleError::new(
                StatusCode::CONFLICT,
                &format!("certificate {serial} is {}", record.status),
            ))
        })?;
    let authorities: Vec<Certificate> = state
        .instance
        .db
        .authorities()
        .await
        .map_err(|e| officer.err(e))?
        .iter()
        .filter_map(|a| Certificate::from_der(&a.certificate).ok())
        .collect();
    let roots: Vec<Certificate> = authorities
        .iter()
        .filter(|c| c.tbs_certificate.issuer == c.tbs_certificate.subject)
        .cloned()
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let chain = kexin_ca::verify::build_chain(&cert, &authorities, &roots, now);
    let ocsp = ocsp_answer(&state, &cert, &authorities).await;
    let tbs = &cert.tbs_certificate;
    let key = kexin_hsm::KeyAlgorithm::from_spki(&tbs.subject_public_key_info)
        .map(|k| k.to_string())
        .unwrap_or_else(|_| tbs.subject_public_key_info.algorithm.oid.to_string());
    let may_change = officer.caller.role.allows(Permission::RevokeCertificate);
    let body = html! {
        main {
            h1 class="wrap" { (record.subject) " " span class={"badge " (record.status)} id="cert-status" { (record.status) } }
            dl class="facts" {
                dt { (officer.t("serial")) } dd class="mono" { (record.serial) }
                dt { (officer.t("issuer")) } dd class="wrap" { (tbs.issuer.to_string()) }
                dt { (officer.t("profile")) } dd { (record.profile) }
                dt { (officer.t("not-before")) } dd { (when(record.not_before)) }
                dt { (officer.t("not-after")) } dd { (when(record.not_after)) }
                dt { (officer.t("key")) } dd { (key) }
                dt { "signature" } dd { (oid_name(&cert.signature_algorithm.oid)) }
                @if let Some(at) = record.revoked_at {
                    dt { (officer.t("revoked")) } dd {
                        (when(at)) " · "
                        (record.revocation_reason.and_then(RevocationReason::from_code).map(RevocationReason::as_str).unwrap_or(""))
                    }
                }
            }
            h2 { (officer.t("extensions")) }
            dl class="facts" {
                @for ext in tbs.extensions.iter().flatten() {
                    dt { (oid_name(&ext.extn_id)) @if ext.critical { " (critical)" } }
                    dd class="wrap" { (extension_text(&ext.extn_id, ext.extn_value.as_bytes())) }
                }
            }
            h2 { (officer.t("chain")) }
            @match &chain {
                Ok(subjects) => ol class="chain" { @for s in subjects { li class="wrap" { (s) } } },
                Err(e) => p class="error" { (e) },
            }
            h2 { (officer.t("ocsp")) }
            p id="ocsp-answer" { (ocsp) }
            @if may_change {
                (status_forms(&officer, &record))
            }
        }
    };
    Ok(officer.page(&record.serial, body))
}

fn status_forms(officer: &Officer, record: &CertificateRecord) -> Markup {
    let action = format!("/console/certificates/{}/status", record.serial);
    html! {
        @if record.status == "issued" || record.status == "hold" {
            form method="post" action=(action) class="actions" {
                (officer.csrf_field())
                input type="hidden" name="action" value="revoke";
                label { (officer.t("reason"))
                    select name="reason" id="revoke-reason" {
                        @for r in REASONS { option value=(r.as_str()) { (r.as_str()) } }
                    }
                }
                button type="submit" class="danger" id="revoke" { (officer.t("revoke")) }
            }
        }
        @if record.status == "issued" {
            form method="post" action=(action) class="actions" {
                (officer.csrf_field())
                input type="hidden" name="action" value="hold";
                button type="submit" class="secondary" id="hold" { (officer.t("hold")) }
            }
        }
        @if record.status == "hold" {
            form method="post" action=(action) class="actions" {
                (officer.csrf_field())
                input type="hidden" name="action" value="release";
                button type="submit" class="secondary" id="release" { (officer.t("release")) }
            }
        }
    }
}

fn oid_name(oid: &const_oid::ObjectIdentifier) -> String {
    DB.by_oid(oid)
        .map(str::to_owned)
        .unwrap_or_else(|| match oid.to_string().as_str() {
            "1.2.156.10197.1.501" => "sm2-with-sm3".to_owned(),
            "1.3.6.1.5.5.7.48.1.5" => "id-pkix-ocsp-nocheck".to_owned(),
            other => other.to_owned(),
        })
}

fn extension_text(oid: &const_oid::ObjectIdentifier, value: &[u8]) -> String {
    use const_oid::db::rfc5280::*;
    let decoded = match *oid {
        ID_CE_KEY_USAGE => KeyUsage::from_der(value).map(|k| {
            format!("{:?}", k.0)
                .trim_start_matches("FlagSet(")
                .trim_end_matches(')')
                .replace(" | ", ", ")
        }),
        ID_CE_EXT_KEY_USAGE => ExtendedKeyUsage::from_der(value)
            .map(|e| e.0.iter().map(oid_name).collect::<Vec<_>>().join(", ")),
        ID_CE_SUBJECT_ALT_NAME => SubjectAltName::from_der(value)
            .map(|s| s.0.iter().map(general_name).collect::<Vec<_>>().join(", ")),
        ID_CE_BASIC_CONSTRAINTS => BasicConstraints::from_der(value).map(|b| {
            format!(
                "CA: {}{}",
                b.ca,
                b.path_len_constraint
                    .map(|p| format!(", path length {p}"))
                    .unwrap_or_default()
            )
        }),
        _ => Ok(format!("{} bytes", value.len())),
    };
    decoded.unwrap_or_else(|e| format!("undecodable: {e}"))
}

fn general_name(n: &GeneralName) -> String {
    match n {
        GeneralName::DnsName(d) => format!("DNS:{}", d.as_str()),
        GeneralName::Rfc822Name(e) => format!("email:{}", e.as_str()),
        GeneralName::UniformResourceIdentifier(u) => format!("URI:{}", u.as_str()),
        GeneralName::IpAddress(ip) => match ip.as_bytes() {
            [a, b, c, d] => format!("IP:{a}.{b}.{c}.{d}"),
            other => format!("IP:{}", hex::encode(other)),
        },
        other => format!("{other:?}"),
    }
}

/// Asks the OCSP responder (in process, through the same code path as a
/// relying party's request) and describes its answer.
async fn ocsp_answer(state: &AppState, cert: &Certificate, authorities: &[Certificate]) -> String {
    let Some(issuer) = authorities
        .iter()
        .find(|a| a.tbs_certificate.subject == cert.tbs_certificate.issuer)
    else {
        return "no issuing CA found".into();
    };
    let Ok(request) = kexin_ca::ocsp::request_for(cert, issuer) else {
        return "could not build an OCSP request".into();
    };
    let answer = state.ocsp.respond(&request).await;
    let describe = || -> Option<String> {
        let response = OcspResponse::from_der(&answer.der).ok()?;
        let Some(bytes) = response.response_bytes else {
            return Some(format!("{:?}", response.response_status));
        };
        let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).ok()?;
        let single = basic.tbs_response_data.responses.first()?;
        let status = match &single.cert_status {
            CertStatus::Good(_) => "good".to_owned(),
            CertStatus::Revoked(info) => format!(
                "revoked at {} ({})",
                generalized(&info.revocation_time.0),
                info.revocation_reason
                    .map(|r| format!("{r:?}"))
                    .unwrap_or_else(|| "no reason".into())
            ),
            CertStatus::Unknown(_) => "unknown".to_owned(),
        };
        let signer = basic
            .certs
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| c.tbs_certificate.subject.to_string())
            .unwrap_or_default();
        Some(format!(
            "{status} · thisUpdate {} · nextUpdate {} · signed by {signer}",
            generalized(&single.this_update.0),
            single
                .next_update
                .as_ref()
                .map(|t| generalized(&t.0))
                .unwrap_or_default()
        ))
    };
    describe().unwrap_or_else(|| "unreadable OCSP response".into())
}

fn generalized(t: &der::asn1::GeneralizedTime) -> String {
    when(t.to_unix_duration().as_secs() as i64)
}

#[derive(Deserialize)]
pub struct StatusForm {
    csrf: String,
    action: String,
    reason: Option<String>,
}

pub async fn change_status(
    State(state): State<AppState>,
    officer: Officer,
    Path(serial): Path<String>,
    Form(f): Form<StatusForm>,
) -> PageResult {
    officer.check_csrf(&f.csrf)?;
    let revocation = match f.action.as_str() {
        "revoke" => {
            let reason: RevocationReason = f
                .reason
                .as_deref()
                .unwrap_or("unspecified")
                .parse()
                .map_err(|e| officer.err(e))?;
            if reason == RevocationReason::CertificateHold {
                return Err(officer.err(ConsoleError::new(
                    StatusCode::BAD_REQUEST,
                    "use hold to suspend",
                )));
            }
            Some((reason, None))
        }
        "hold" => Some((RevocationReason::CertificateHold, None)),
        "release" => None,
        _ => return Err(officer.err(ConsoleError::new(StatusCode::BAD_REQUEST, "unknown action"))),
    };
    let record =
        crate::api::change_certificate_status(&state, &officer.caller, &serial, revocation)
            .await
            .map_err(|e| officer.err(e))?;
    Ok(Redirect::to(&format!("/console/certificates/{}", record.serial)).into_response())
}
