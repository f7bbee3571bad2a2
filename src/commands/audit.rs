//! `boomerang audit`: runs the audit, writes the HTML page, prints the findings or the JSON.

use anyhow::Context;
use serde::Serialize;

use super::recompute::RunRecomputer;
use super::Exit;
use crate::audit::{audit, html, AuditConfig, Finding, GivenHashes, Outcome, Recomputer};
use crate::records::report::{AdversaryReidentification, KindCounts, StatusCounts};

/// With `--recompute` or `--seed-sample`, re-scores and re-runs with the real engine.
pub fn run_with_engine(config: &AuditConfig) -> anyhow::Result<Outcome> {
    let mut recomputer = if config.recheck.recompute > 0 || config.recheck.seed_sample > 0 {
        Some(RunRecomputer::open(config)?)
    } else {
        None
    };
    run(
        config,
        recomputer.as_mut().map(|r| r as &mut dyn Recomputer),
    )
}

/// The JSON printed by `--json`.
#[derive(Serialize)]
struct JsonSummary<'a> {
    report: String,
    rows: usize,
    chain_head: &'a str,
    run_json: Option<String>,
    verdict: &'static str,
    exit_code: u8,
    findings: &'a [Finding],
    not_checked: &'a [String],
    given_hashes: &'a GivenHashes,
    rescored_lines: &'a [u64],
    rerun_lines: &'a [u64],
    /// The nonce that drew the recomputed rows (repeat with --nonce).
    nonce: &'a str,
    reidentification: Option<crate::audit::Reidentification>,
    /// Certified rows per certificate kind, counted from the report's rows.
    certified_by_kind: KindCounts,
    /// run.json's adversary re-identification, as it states it (not recomputed).
    adversary_unverified: Option<&'a AdversaryReidentification>,
}

/// `boomerang audit`: audits, prints, writes the page; returns the outcome (`Err`: exit 1).
pub fn run(
    config: &AuditConfig,
    recomputer: Option<&mut dyn Recomputer>,
) -> anyhow::Result<Outcome> {
    let audit = audit(config, recomputer)?;
    if let Some(path) = &config.html {
        let page = html::render(&audit);
        crate::io::atomic::write(path, page.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let outcome = audit.outcome();
    let certified_by_kind =
        StatusCounts::of(audit.entries.iter().filter_map(|e| e.row.as_ref())).certified_by_kind;
    let adversary = audit.run.as_ref().and_then(|r| r.record.adversary.as_ref());
    if config.json {
        let summary = JsonSummary {
            report: audit.report.display().to_string(),
            rows: audit.entries.len(),
            chain_head: &audit.chain_head,
            run_json: audit.run.as_ref().map(|r| r.path.display().to_string()),
            verdict: match outcome {
                Outcome::Clean => "clean",
                Outcome::Findings => "findings",
            },
            exit_code: Exit::from(outcome).code(),
            findings: &audit.findings,
            not_checked: &audit.not_checked,
            given_hashes: &audit.given,
            rescored_lines: &audit.rescored,
            rerun_lines: &audit.rerun,
            nonce: &audit.nonce,
            reidentification: audit.reidentification,
            certified_by_kind,
            adversary_unverified: adversary,
        };
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for finding in &audit.findings {
            println!("{finding}");
        }
        for what in &audit.not_checked {
            println!("not checked: {what}");
        }
        println!(
            "certified rows by certificate kind: {}",
            certified_by_kind.describe()
        );
        if let Some(reid) = &audit.reidentification {
            println!("re-identification rate: {}", reid.describe());
        }
        if let Some(adversary) = adversary {
            let rate =
                |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.2} %", r * 100.0));
            println!(
                "adversary re-identification by {}, unverified (from run.json): top-1 {}, top-5 {} (chance {}, {} probes)",
                adversary.embedder,
                rate(adversary.top1_rate),
                rate(adversary.top5_rate),
                rate(adversary.chance),
                adversary.probes
            );
        }
        if config.recheck.recompute > 0 || config.recheck.seed_sample > 0 {
            println!(
                "sample nonce: {} (repeat this audit's draw with --nonce {})",
                audit.nonce, audit.nonce
            );
        }
        if !audit.rescored.is_empty() {
            println!("re-scored lines: {}", join_lines(&audit.rescored));
        }
        if !audit.rerun.is_empty() {
            println!(
                "re-ran lines: {} (on {})",
                join_lines(&audit.rerun),
                config.recheck.device
            );
        }
        if let Some(path) = &config.html {
            println!("wrote {}", path.display());
        }
        println!("{}", audit.verdict());
    }
    Ok(outcome)
}

fn join_lines(lines: &[u64]) -> String {
    lines
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<Outcome> for Exit {
    fn from(outcome: Outcome) -> Exit {
        match outcome {
            Outcome::Clean => Exit::Success,
            Outcome::Findings => Exit::Incomplete,
        }
    }
}
