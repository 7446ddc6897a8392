//! The audit log browser, for roles that may read it, with a check of the
//! whole hash chain and its signed checkpoints on demand.

use axum::extract::{Query, State};
use kexin_ca::audit::ChainStatus;
use kexin_ca::principal::Permission;
use maud::html;
use serde::Deserialize;

use super::{Officer, PageResult};
use crate::serve::AppState;

const PAGE: i64 = 50;

#[derive(Deserialize)]
pub struct Params {
    /// Show entries up to this sequence number (newest first).
    before: Option<i64>,
    verify: Option<String>,
}

pub async fn browse(
    State(state): State<AppState>,
    officer: Officer,
    Query(p): Query<Params>,
) -> PageResult {
    officer.require(officer.caller.role.allows(Permission::ReadAudit))?;
    let audit = &state.instance.audit;
    let head = audit
        .head()
        .await
        .map_err(|e| officer.err(e))?
        .map(|h| h.0)
        .unwrap_or(0);
    let upto = p.before.unwrap_or(head + 1).clamp(1, head + 1);
    let first = (upto - PAGE).max(1);
    let mut entries = audit
        .entries(first - 1, upto - first)
        .await
        .map_err(|e| officer.err(e))?;
    entries.reverse();
    let verification = match p.verify {
        Some(_) => Some(
            audit
                .verify_with_checkpoints(state.instance.store.as_ref())
                .await
                .map_err(|e| officer.err(e))?,
        ),
        None => None,
    };
    let body = html! {
        main {
            h1 { (officer.t("audit")) }
            @match &verification {
                Some(ChainStatus::Intact { entries, head, checkpoints }) => p class="notice ok" id="chain-status" {
                    (officer.t("chain-intact")) ": " (entries) " · " (checkpoints) " checkpoints · head " code { (head.get(..16).unwrap_or(head)) }
                },
                Some(ChainStatus::Broken { seq, reason }) => p class="notice error" id="chain-status" {
                    (officer.t("chain-broken")) ": #" (seq) " " (reason)
                },
                None => form method="get" action="/console/audit" {
                    input type="hidden" name="verify" value="1";
                    button type="submit" id="verify-chain" { (officer.t("verify-chain")) }
                },
            }
            div class="scroll" {
                table class="audit" {
                    thead { tr {
                        th { "#" } th { (officer.t("time")) } th { (officer.t("actor")) } th { (officer.t("action")) }
                        th { (officer.t("target")) } th { (officer.t("source")) } th { (officer.t("detail")) }
                    } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { (e.seq) }
                                td class="nowrap" { (super::when(e.at_ms / 1000)) }
                                td { (e.actor) }
                                td { code { (e.action) } }
                                td class="wrap mono" { (e.target) }
                                td { (e.source) }
                                td class="wrap detail" { (e.detail) }
                            }
                        }
                    }
                }
            }
            nav class="pager" {
                @if upto <= head { a href={"/console/audit?before=" ((upto + PAGE).min(head + 1))} { "← " (officer.t("newer")) } }
                @if first > 1 { a href={"/console/audit?before=" (first)} { (officer.t("older")) " →" } }
            }
        }
    };
    Ok(officer.page(officer.t("audit"), body))
}
