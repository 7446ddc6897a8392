//! `kexin verify`: a report on a signed artifact.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kexin_timestamp::verify::{token_from_reply_or_token, verify_token};
use x509_cert::Certificate;

fn certificates(path: &Path) -> Vec<Certificate> {
    std::fs::read(path)
        .ok()
        .and_then(|pem| kexin_ca::certificate::certificates_from_pem(&pem))
        .unwrap_or_default()
}

/// A certificate, PEM or DER, if `bytes` is one.
fn as_certificate(bytes: &[u8]) -> Option<Certificate> {
    use der::Decode;
    Certificate::from_der(bytes)
        .ok()
        .or_else(|| kexin_ca::certificate::first_certificate_from_pem(bytes))
}

/// Chain to our root now, and the status Kexin's database records, when
/// the database is reachable (no key store is needed).
pub(crate) async fn certificate_report(
    cert: &Certificate,
    db: Option<&kexin_ca::storage::Database>,
    extra: &[Certificate],
    roots: &[Certificate],
) -> serde_json::Value {
    let tbs = &cert.tbs_certificate;
    let serial = hex::encode(tbs.serial_number.as_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let time = |t: &x509_cert::time::Time| {
        time::OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    let mut report = serde_json::json!({
        "type": "certificate",
        "subject": tbs.subject.to_string(),
        "issuer": tbs.issuer.to_string(),
        "serial": serial,
        "not_before": time(&tbs.validity.not_before),
        "not_after": time(&tbs.validity.not_after),
    });
    let chain = match kexin_ca::verify::build_chain(cert, extra, roots, now) {
        Ok(chain) => chain,
        Err(reason) => {
            report["verdict"] = "invalid".into();
            report["reason"] = reason.into();
            return report;
        }
    };
    report["chain"] = chain.into();
    let status = match db {
        Some(db) => db.certificate(&serial).await.ok(),
        None => None,
    };
    match status {
        Some(Some(record)) if record.status == "issued" => {
            report["status"] = "good".into();
            report["verdict"] = "valid".into();
        }
        Some(Some(record)) => {
            report["status"] = record.status.clone().into();
            report["revocation_reason"] = record
                .revocation_reason
                .and_then(kexin_ca::revocation::RevocationReason::from_code)
                .map(|r| r.as_str())
                .into();
            report["verdict"] = "invalid".into();
            report["reason"] = format!("the certificate is {}", record.status).into();
        }
        Some(None) => {
            report["status"] = "unknown".into();
            report["verdict"] = "indeterminate".into();
            report["reason"] = "this CA has no record of the certificate".into();
        }
        None => {
            report["status"] = "unknown".into();
            report["verdict"] = "indeterminate".into();
            report["reason"] = "the revocation status could not be read".into();
        }
    }
    report
}

/// The data directory's database, when it is reachable (no key store is
/// needed to verify).
async fn open_database(data: &Path) -> Option<kexin_ca::storage::Database> {
    let config = kexin_config::Config::load(data).ok()?;
    kexin_ca::storage::Database::connect(&crate::instance::database_url(data, &config))
        .await
        .ok()
}

/// Whether `bytes` is a CMS SignedData over data (not a time-stamp token).
fn is_detached_signature(bytes: &[u8]) -> bool {
    use der::Decode;
    cms::content_info::ContentInfo::from_der(bytes)
        .ok()
        .filter(|ci| ci.content_type == kexin_ca::cms::OID_SIGNED_DATA)
        .and_then(|ci| ci.content.decode_as::<cms::signed_data::SignedData>().ok())
        .is_some_and(|sd| sd.encap_content_info.econtent_type == kexin_ca::cms::OID_DATA)
}

pub async fn run(
    file: &Path,
    content: Option<&Path>,
    data: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let roots = certificates(&data.join("ca/root.pem"));
    if roots.is_empty() {
        anyhow::bail!("no trust anchor at {}", data.join("ca/root.pem").display());
    }
    let mut extra = Vec::new();
    for name in ["officials", "systems", "seals"] {
        extra.extend(certificates(&data.join(format!("ca/{name}.pem"))));
    }
    extra.extend(certificates(&data.join("tsa/tsa.pem")));

    let trust = kexin_seal::verify::Trust {
        roots: roots.clone(),
        intermediates: extra.clone(),
    };
    let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
    let report = if text.starts_with("eyJ") || text.contains("/verify/license?t=") {
        match open_database(data).await {
            Some(db) => {
                serde_json::to_value(kexin_seal::verify::verify_license(text, &trust, &db).await)?
            }
            None => serde_json::json!({
                "verdict": "indeterminate",
                "reason": "the license registry (the data directory's database) is not reachable",
            }),
        }
    } else if bytes.starts_with(b"%PDF-") {
        let db = open_database(data).await;
        serde_json::to_value(kexin_seal::verify::verify_pdf(&bytes, &trust, db.as_ref()).await)?
    } else if is_detached_signature(&bytes) {
        let content =
            content.context("a detached signature: give the signed file with --content FILE")?;
        let mut reader = std::io::BufReader::new(
            std::fs::File::open(content)
                .with_context(|| format!("reading {}", content.display()))?,
        );
        let db = open_database(data).await;
        serde_json::to_value(
            kexin_seal::verify::verify_detached(&bytes, &mut reader, &trust, db.as_ref()).await,
        )?
    } else if let Some(cert) = as_certificate(&bytes) {
        certificate_report(&cert, open_database(data).await.as_ref(), &extra, &roots).await
    } else {
        match token_from_reply_or_token(&bytes) {
            Ok(token) => {
                let content = content.context(
                    "a time-stamp token is detached: give the stamped data with --content FILE",
                )?;
                let mut reader = std::fs::File::open(content)
                    .with_context(|| format!("reading {}", content.display()))?;
                match verify_token(&token, &mut reader, &extra, &roots) {
                    Ok(v) => serde_json::json!({
                        "type": "timestamp-token",
                        "verdict": "valid",
                        "gen_time": time::OffsetDateTime::from_unix_timestamp(v.gen_time_unix as i64)
                            .ok()
                            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                        "serial": v.serial_hex,
                        "policy": v.policy,
                        "hash_algorithm": v.hash_algorithm,
                        "tsa": v.tsa_subject,
                        "chain": v.chain,
                    }),
                    Err(e) => serde_json::json!({
                        "type": "timestamp-token",
                        "verdict": "invalid",
                        "reason": e.to_string(),
                    }),
                }
            }
            Err(e) => serde_json::json!({
                "type": "unknown",
                "verdict": "indeterminate",
                "reason": format!("not a format Kexin verifies yet: {e}"),
            }),
        }
    };
    // A closed pipe (`kexin verify … | head`) ends the output, not the process.
    let _ = print_report(&report, json);
    Ok(if report["verdict"] == "valid" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &serde_json::Value, json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let text = |v: &serde_json::Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let mut out = std::io::stdout().lock();
    if json {
        return writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    }
    writeln!(
        out,
        "verdict: {}",
        report["verdict"].as_str().unwrap_or("?")
    )?;
    for (k, v) in report.as_object().into_iter().flatten() {
        if k == "signatures" {
            for (i, s) in v.as_array().into_iter().flatten().enumerate() {
                writeln!(
                    out,
                    "  signature {}: {}",
                    i + 1,
                    s["verdict"].as_str().unwrap_or("?")
                )?;
                for (k, v) in s.as_object().into_iter().flatten() {
                    if k != "verdict" && !v.is_null() {
                        writeln!(out, "    {k}: {}", text(v))?;
                    }
                }
            }
        } else if k != "verdict" {
            writeln!(out, "  {k}: {}", text(v))?;
        }
    }
    Ok(())
}
