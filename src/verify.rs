//! `kexin verify`: a report on a signed artifact.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use kexin_timestamp::verify::{token_from_reply_or_token, verify_token};
use x509_cert::Certificate;

fn certificates(path: &Path) -> Vec<Certificate> {
    std::fs::read(path)
        .ok()
        .and_then(|pem| Certificate::load_pem_chain(&pem).ok())
        .unwrap_or_default()
}

pub fn run(
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

    let report = match token_from_reply_or_token(&bytes) {
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
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("verdict: {}", report["verdict"].as_str().unwrap_or("?"));
        for (k, v) in report.as_object().into_iter().flatten() {
            if k != "verdict" {
                println!(
                    "  {k}: {}",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                );
            }
        }
    }
    Ok(if report["verdict"] == "valid" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
