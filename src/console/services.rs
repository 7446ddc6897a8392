//! The certificates the trust service itself runs on, and when each ends:
//! the CAs' (renewed by an operator, `kexin ca renew`), and the OCSP
//! responders', the TSA's and the HTTPS server's (renewed by Kexin while it
//! serves). For the roles that may read the metrics, which carry the same
//! ends for alerts.

use axum::extract::State;
use der::Decode;
use kexin_ca::principal::Permission;
use maud::html;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use super::{Officer, PageResult};
use crate::serve::AppState;

/// A CA certificate with less than this left is flagged for renewal: a
/// renewal is a key ceremony, to be planned, and what the CA issues is cut
/// short to its end meanwhile.
const CA_RENEWAL_NOTICE_DAYS: i64 = 365;

/// A service certificate with less than this left was not renewed when
/// due (Kexin renews them with 30 days left at the latest).
const SERVICE_NOTICE_DAYS: i64 = 21;

/// One row of the page.
struct Row {
    kind: &'static str,
    name: String,
    subject: Option<String>,
    not_after: i64,
    /// What the officer should know about it, as a text key.
    state: &'static str,
    /// Whether the state needs someone's attention.
    attention: bool,
}

fn end_of(validity: &Validity) -> i64 {
    validity.not_after.to_unix_duration().as_secs() as i64
}

pub async fn overview(State(state): State<AppState>, officer: Officer) -> PageResult {
    officer.require(officer.caller.role.allows(Permission::ReadMetrics))?;
    let now = kexin_ca::issuance::now();
    let days_left = |end: i64| (end - now).div_euclid(86400);
    let mut rows = Vec::new();
    // The root first, then the issuing CAs by name.
    let order = |name: &str| (name != kexin_ca::hierarchy::ROOT, name.to_owned());
    let authorities = state.authorities();
    let mut served: Vec<(&String, &Certificate)> = authorities.certificates().collect();
    served.sort_by_key(|(n, _)| order(n));
    for (name, cert) in served {
        let not_after = end_of(&cert.tbs_certificate.validity);
        let (state_key, attention) = if not_after <= now {
            ("expired", true)
        } else if days_left(not_after) < CA_RENEWAL_NOTICE_DAYS {
            ("ca-renew-soon", true)
        } else {
            ("ca-current", false)
        };
        rows.push(Row {
            kind: "ca",
            name: name.clone(),
            subject: Some(cert.tbs_certificate.subject.to_string()),
            not_after,
            state: state_key,
            attention,
        });
    }
    // `ours`: renewed by Kexin (all but an HTTPS certificate another CA
    // issued, which is the operator's to renew).
    let service = |kind, name: String, subject: Option<String>, not_after: i64, ours: bool| {
        let due = days_left(not_after) < SERVICE_NOTICE_DAYS;
        let (state_key, attention) = match (not_after <= now, due, ours) {
            (true, _, _) => ("expired", true),
            (false, true, true) => ("not-renewed", true),
            (false, true, false) => ("installed-due", true),
            (false, false, true) => ("renewed-by-kexin", false),
            (false, false, false) => ("installed-current", false),
        };
        Row {
            kind,
            name,
            subject,
            not_after,
            state: state_key,
            attention,
        }
    };
    let mut responders = state.ocsp.responder_validities();
    responders.sort_by_key(|(ca, _)| order(ca));
    for (ca, validity) in responders {
        rows.push(service("ocsp-responder", ca, None, end_of(&validity), true));
    }
    let tsa = state.tsa.certificate();
    rows.push(service(
        "tsa",
        String::new(),
        Some(tsa.tbs_certificate.subject.to_string()),
        end_of(&tsa.tbs_certificate.validity),
        true,
    ));
    if let Some(leaf) = crate::https_certificate::read_chain(&state.instance)
        .ok()
        .and_then(|chain| Certificate::from_der(chain.first()?).ok())
    {
        let ours = authorities
            .certificate("systems")
            .is_some_and(|systems| systems.tbs_certificate.subject == leaf.tbs_certificate.issuer);
        rows.push(service(
            "https",
            String::new(),
            Some(leaf.tbs_certificate.subject.to_string()),
            end_of(&leaf.tbs_certificate.validity),
            ours,
        ));
    }

    let body = html! {
        main {
            h1 { (officer.t("services")) }
            p { (officer.t("services-intro")) }
            div class="scroll" {
                table id="service-certificates" {
                    thead { tr {
                        th { (officer.t("kind")) } th { (officer.t("service-name")) } th { (officer.t("status")) }
                        th { (officer.t("days-left")) } th class="until" { (officer.t("valid-until")) } th class="subject" { (officer.t("subject")) }
                    } }
                    tbody {
                        @for r in &rows {
                            tr data-kind=(r.kind) data-name=(r.name) {
                                td { (officer.t(r.kind)) }
                                td { code { (r.name) } }
                                td {
                                    span class={ "badge " (if r.attention { "attention" } else { "current" }) } {
                                        (officer.t(r.state))
                                    }
                                    @if r.kind == "ca" && r.attention {
                                        " " code { "kexin ca renew --name " (r.name) }
                                    }
                                }
                                td class="number" { (days_left(r.not_after).max(0)) }
                                td class="nowrap until" { (super::when(r.not_after)) }
                                td class="wrap subject" { (r.subject.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(officer.page(officer.t("services"), body))
}
