//! Recomputation of a sample of rows: re-scoring distances with the embedder and re-running
//! Boomerang from the rows' seeds. The work itself needs the anonymize engine, behind
//! [`Recomputer`]; which rows are rechecked is decided here, by the auditor's nonce: whoever
//! writes the report (and so its chain head) cannot know which rows will be drawn.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{Entry, Finding, FindingKind, Reidentification, RunJson};
use crate::certify::CertificateKind;
use crate::io::hashing::sha256_bytes;
use crate::records::report::{ReportRow, Status};

/// ChaCha20 stream of the rows drawn for re-scoring.
pub const RESCORE_STREAM: u64 = 1;
/// ChaCha20 stream of the rows drawn for re-running.
pub const RERUN_STREAM: u64 = 2;

/// Redoes a row's expensive work with the run's engine. The implementation knows the input and
/// output folders, the model, the policy and the embedder; the audit hands it rows from the report.
pub trait Recomputer {
    /// The certificate kind and distance of the row's input against its output file under the
    /// run's detector, embedders and metric, computed afresh from the files.
    fn rescore(&mut self, row: &ReportRow) -> anyhow::Result<Rescored>;
    /// The bytes the run would write for the row's output: Boomerang on the row's input with its
    /// seed, level, strength, steps and scheduler, encoded exactly as the run encodes outputs.
    fn rerun(&mut self, row: &ReportRow) -> anyhow::Result<Vec<u8>>;
    /// The dataset-level top-1 re-identification rate and its chance level over `rows` (those
    /// with outputs), computed afresh from the files as `anonymize` computes it.
    fn reidentify(&mut self, rows: &[&ReportRow]) -> anyhow::Result<RecomputedRate> {
        let _ = rows;
        Ok(RecomputedRate::Unavailable)
    }
}

/// What keys a sample: the auditor's nonce, and the chain head of the report being audited.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub nonce: &'a str,
    pub chain_head: &'a str,
}

impl Key<'_> {
    fn seed(&self) -> [u8; 32] {
        let mut text = Vec::new();
        text.extend_from_slice(b"boomerang/audit-sample/v2\0");
        text.extend_from_slice(self.nonce.as_bytes());
        text.push(0);
        text.extend_from_slice(self.chain_head.as_bytes());
        sha256_bytes(&text)
    }
}

/// A fresh nonce from the operating system: 128 bits as 32 hex digits.
pub fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    ChaCha20Rng::from_os_rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// `n` of the report lines in `eligible` (all of them when there are no more), drawn without
/// replacement by a partial Fisher-Yates shuffle with ChaCha20 keyed by sha256 of
/// `boomerang/audit-sample/v2 NUL nonce NUL chain head`, on stream `stream`. The same nonce draws
/// the same rows (an audit can be repeated); the report's author, who does not know the nonce,
/// cannot steer the draw by grinding the chain head. Returned in report order.
pub fn sample(key: &Key, stream: u64, eligible: &[u64], n: usize) -> Vec<u64> {
    let mut rng = ChaCha20Rng::from_seed(key.seed());
    rng.set_stream(stream);
    let mut pool = eligible.to_vec();
    let n = n.min(pool.len());
    for i in 0..n {
        let j = rng.random_range(i..pool.len());
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool.sort_unstable();
    pool
}

/// What recomputing the re-identification rate found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RecomputedRate {
    /// This recomputer cannot recompute it.
    Unavailable,
    /// No output shows a face to look up: there is no rate.
    NoProbes,
    Rate {
        rate: f64,
        chance: f64,
    },
}

/// What re-scoring a row found.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescored {
    pub certificate: CertificateKind,
    pub distance: Option<f32>,
    /// The second opinions that, re-asked, find some face pair the same identity.
    pub dissenting: Vec<String>,
}

pub(super) struct Recomputed {
    pub findings: Vec<Finding>,
    pub rescored: Vec<u64>,
    pub rerun: Vec<u64>,
}

pub(super) fn recompute(
    entries: &[Entry],
    key: &Key,
    rescore_count: usize,
    rerun_count: usize,
    tolerance: f32,
    recomputer: &mut dyn Recomputer,
) -> Recomputed {
    let rows = |eligible: fn(&ReportRow) -> bool| -> Vec<u64> {
        entries
            .iter()
            .filter(|e| e.row.as_ref().is_some_and(eligible))
            .map(|e| e.line)
            .collect()
    };
    let rescorable = rows(|r| {
        matches!(r.status, Status::Certified | Status::Failed)
            && r.certificate.is_some()
            && !r.output_path.is_empty()
    });
    let rerunnable = rows(|r| !r.output_path.is_empty() && !r.output_sha256.is_empty());
    let rescored = sample(key, RESCORE_STREAM, &rescorable, rescore_count);
    let rerun = sample(key, RERUN_STREAM, &rerunnable, rerun_count);
    let row_at = |line: u64| {
        entries
            .iter()
            .find(|e| e.line == line)
            .and_then(|e| e.row.as_ref())
    };

    let mut findings = Vec::new();
    let mut add = |row: &ReportRow, line: u64, message: String| {
        findings.push(
            Finding::new(FindingKind::Recompute, Some(line), message)
                .input(&row.input_path)
                .output(&row.output_path),
        );
    };
    for &line in &rescored {
        let Some(row) = row_at(line) else { continue };
        let Some(reported_kind) = row.certificate else {
            continue;
        };
        let found = match recomputer.rescore(row) {
            Err(e) => {
                add(row, line, format!("re-scoring failed: {e:#}"));
                continue;
            }
            Ok(found) => found,
        };
        if row.status == Status::Certified && !found.dissenting.is_empty() {
            add(
                row,
                line,
                format!(
                    "certified, but re-asked, second opinion {} finds the same identity",
                    found.dissenting.join(", ")
                ),
            );
        }
        if found.certificate != reported_kind {
            add(
                row,
                line,
                format!(
                    "re-scored certificate kind {}, the report says {reported_kind}",
                    found.certificate
                ),
            );
            continue;
        }
        match (found.distance, row.distance) {
            (None, None) => {}
            (Some(found), Some(reported))
                if found.is_finite() && (found - reported).abs() <= tolerance => {}
            (found, reported) => {
                let flips = match (found, reported, row.threshold) {
                    (Some(f), Some(r), Some(t)) => (f >= t) != (r >= t),
                    _ => true,
                };
                let text = |d: Option<f32>| d.map_or("none".to_string(), |d| d.to_string());
                add(
                    row,
                    line,
                    format!(
                        "re-scored distance {}, the report says {} (tolerance {tolerance}){}",
                        text(found),
                        text(reported),
                        if flips {
                            "; the verdict would change"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
    }
    for &line in &rerun {
        let Some(row) = row_at(line) else { continue };
        match recomputer.rerun(row) {
            Err(e) => add(row, line, format!("re-running failed: {e:#}")),
            Ok(bytes) => {
                let digest = hex::encode(sha256_bytes(&bytes));
                if !digest.eq_ignore_ascii_case(&row.output_sha256) {
                    add(
                        row,
                        line,
                        format!(
                            "re-running from the row's seed gives sha256 {digest}, the report says {}: the output does not reproduce byte for byte",
                            super::shown(&row.output_sha256)
                        ),
                    );
                }
            }
        }
    }
    Recomputed {
        findings,
        rescored,
        rerun,
    }
}

/// Largest difference between a recomputed and a recorded re-identification rate that is not a
/// finding: both are ratios of small counts, so any real difference is far larger.
const RATE_SLACK: f64 = 1e-9;

/// Recomputes the re-identification rate; returns the figure to show and a finding when run.json
/// claims another one.
pub(super) fn reidentify(
    entries: &[Entry],
    run: Option<&RunJson>,
    recomputer: &mut dyn Recomputer,
    recorded: Option<Reidentification>,
) -> (Option<Reidentification>, Option<Finding>) {
    let rows: Vec<&ReportRow> = entries
        .iter()
        .filter_map(|e| e.row.as_ref())
        .filter(|r| !r.output_path.is_empty())
        .collect();
    let source = run.map_or_else(|| "run.json".to_string(), |r| r.path.display().to_string());
    match recomputer.reidentify(&rows) {
        Err(e) => (
            recorded,
            Some(Finding::new(
                FindingKind::Recompute,
                None,
                format!("recomputing the re-identification rate failed: {e:#}"),
            )),
        ),
        Ok(RecomputedRate::Unavailable) => (recorded, None),
        Ok(RecomputedRate::NoProbes) => {
            let finding = run.and_then(|r| r.reidentification_rate).map(|claimed| {
                Finding::new(
                    FindingKind::RunRecord,
                    None,
                    format!(
                        "{source} states a re-identification rate of {claimed}, but no output shows a face to re-identify"
                    ),
                )
            });
            (None, finding)
        }
        Ok(RecomputedRate::Rate { rate, chance }) => {
            let figure = Reidentification {
                rate,
                chance: Some(chance),
                verified: true,
            };
            let claimed = run.and_then(|r| r.reidentification_rate);
            let finding = match claimed {
                Some(claimed) if (claimed - rate).abs() <= RATE_SLACK => None,
                Some(claimed) => Some(Finding::new(
                    FindingKind::RunRecord,
                    None,
                    format!(
                        "{source} states a re-identification rate of {claimed}, recomputed from the files it is {rate}"
                    ),
                )),
                // A merged record states no rate on purpose (its parts' rates do not add up).
                None if run.is_some_and(|r| r.record.merged_parts.is_none()) && !rows.is_empty() => {
                    Some(Finding::new(
                    FindingKind::RunRecord,
                    None,
                    format!("{source} states no re-identification rate, recomputed it is {rate}"),
                ))
                }
                None => None,
            };
            (Some(figure), finding)
        }
    }
}
