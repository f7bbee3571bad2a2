//! The checks beyond the chain: run.json, output and input files, hashes, and each row's verdict
//! against its distance, threshold and the policy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::{io_error, AuditError, Entry, Finding, FindingKind, GivenHashes, RunJson};
use crate::certify::spec::EmbedderSpec;
use crate::certify::CertificateKind;
use crate::io::dataset::{path_text, IMAGE_EXTENSIONS};
use crate::io::hashing::sha256_file;
use crate::policy::{OnFailure, OnNoFace, Policy, Threshold};
use crate::records::report::run_record_path;
use crate::records::report::{ReportRow, RunRecord, Status, StatusCounts};

/// Slack when comparing a row's threshold or strength with the policy's: both went through a
/// decimal text round trip.
const THRESHOLD_SLACK: f32 = 1e-6;
const STRENGTH_SLACK: f64 = 1e-9;

/// Largest run.json read: a run writes a few kilobytes.
const MAX_RUN_JSON_BYTES: u64 = 64 << 20;

pub(super) fn load_run_json(path: &Path) -> Result<RunJson, AuditError> {
    let bytes = crate::io::safe_path::read_given(path, MAX_RUN_JSON_BYTES)
        .map_err(|e| io_error(path, e))?;
    let bad = |message: String| AuditError::RunJson {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let reidentification_rate = value
        .get("reidentification_rate")
        .and_then(serde_json::Value::as_f64);
    let reidentification_chance = value
        .get("reidentification_chance")
        .and_then(serde_json::Value::as_f64);
    let record: RunRecord = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    Ok(RunJson {
        path: path.to_path_buf(),
        record,
        reidentification_rate,
        reidentification_chance,
    })
}

/// The run.json the run wrote beside the report ([`run_record_path`]), when it names this report.
pub(super) fn find_run_json(
    report: &Path,
    not_checked: &mut Vec<String>,
) -> Result<Option<RunJson>, AuditError> {
    let Some(name) = report.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(None);
    };
    let candidate = run_record_path(report);
    if !candidate.is_file() {
        return Ok(None);
    }
    let run = load_run_json(&candidate)?;
    if names_report(&run.record, &name) {
        return Ok(Some(run));
    }
    not_checked.push(format!(
        "{} was not used: it names the report `{}`, not this one",
        candidate.display(),
        super::shown(&run.record.report_path)
    ));
    Ok(None)
}

fn names_report(record: &RunRecord, report_name: &str) -> bool {
    Path::new(&record.report_path)
        .file_name()
        .is_some_and(|n| n.to_string_lossy() == report_name)
}

/// The report against run.json: rows cut from the end, a rewritten tail, counts.
pub(super) fn run_record(
    report: &Path,
    entries: &[Entry],
    chain_head: &str,
    run: &RunJson,
) -> Vec<Finding> {
    let record = &run.record;
    let source = run.path.display();
    let mut findings = Vec::new();
    let mut add = |message: String| {
        findings.push(Finding::new(FindingKind::RunRecord, None, message));
    };
    let report_name = report
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !names_report(record, &report_name) {
        add(format!(
            "{source} is the record of report `{}`, not of `{}`",
            super::shown(&record.report_path),
            super::shown(&report_name)
        ));
    }
    let rows = entries.len() as u64;
    if record.report_rows != rows {
        let what = if record.report_rows > rows {
            "rows were deleted (the chain alone cannot see rows cut from the end)"
        } else {
            "rows were added after the run ended"
        };
        add(format!(
            "the report has {rows} rows, {source} says the run wrote {}: {what}",
            record.report_rows
        ));
    }
    if record.report_chain_head != chain_head {
        add(format!(
            "the report's last chain value is {chain_head}, {source} says {}: the report's end was cut, extended or rewritten",
            record.report_chain_head
        ));
    }
    if record.finished.is_empty() {
        add(format!(
            "{source} has no end time: the run did not finish (continue it with --resume), so its report is incomplete"
        ));
    }
    let config = &record.config;
    let columns: [(&str, &str, HashOf); 4] = [
        ("policy_sha256", &config.policy_sha256, |row| {
            &row.policy_sha256
        }),
        ("model_sha256", &config.model_sha256, |row| {
            &row.model_sha256
        }),
        ("embedder_sha256", &config.embedder_sha256, |row| {
            &row.embedder_sha256
        }),
        ("detector_sha256", &config.detector_sha256, |row| {
            &row.detector_sha256
        }),
    ];
    for (column, recorded, of_row) in columns {
        if recorded.is_empty() {
            add(format!("{source} records no {column}"));
            continue;
        }
        let differing: BTreeSet<&str> = entries
            .iter()
            .filter_map(|e| e.row.as_ref())
            .map(of_row)
            .filter(|value| !value.is_empty() && !value.eq_ignore_ascii_case(recorded))
            .collect();
        for value in differing {
            add(format!(
                "rows have {column} {}, {source} records {}",
                super::shown(value),
                super::shown(recorded)
            ));
        }
    }
    let counts = StatusCounts::of(entries.iter().filter_map(|e| e.row.as_ref()));
    if counts != record.counts {
        add(format!(
            "status counts differ: the report has {}, {source} says {}",
            describe_counts(&counts),
            describe_counts(&record.counts)
        ));
    }
    findings
}

/// One hash column of a report row.
type HashOf = fn(&ReportRow) -> &str;

fn describe_counts(counts: &StatusCounts) -> String {
    format!(
        "certified {} ({}), failed {}, error {}, skipped {}",
        counts.certified,
        counts.certified_by_kind.describe(),
        counts.failed,
        counts.error,
        counts.skipped
    )
}

/// The listed outputs against the output folder, and anything there that no row lists. Report
/// paths are never opened as written: the folder is walked and its files matched by their report
/// text ([`path_text`]), so a row cannot point the audit outside the folder.
pub(super) fn outputs(entries: &[Entry], dir: &Path) -> Result<Vec<Finding>, AuditError> {
    if !dir.is_dir() {
        return Err(AuditError::NotAFolder {
            path: dir.to_path_buf(),
        });
    }
    let found: HashMap<String, (PathBuf, Kind)> = walk(dir)?
        .into_iter()
        .map(|(path, kind)| (path_text(&path), (path, kind)))
        .collect();
    let mut findings = Vec::new();
    let mut listed: HashMap<&str, u64> = HashMap::new();
    for entry in entries {
        let Some(row) = &entry.row else { continue };
        if row.output_path.is_empty() {
            continue;
        }
        let finding = |kind, message: String| {
            Finding::new(kind, Some(entry.line), message).output(&row.output_path)
        };
        if let Some(first) = listed.insert(&row.output_path, entry.line) {
            findings.push(finding(
                FindingKind::OutputPath,
                format!("the same output is listed on line {first}"),
            ));
            continue;
        }
        match found.get(&row.output_path) {
            None => findings.push(finding(
                FindingKind::OutputMissing,
                "the output file is not in the output folder".to_string(),
            )),
            Some((_, kind)) if *kind != Kind::File => findings.push(finding(
                FindingKind::OutputMissing,
                "the output is not a regular file (a symlink or a special file)".to_string(),
            )),
            Some((path, _)) => {
                let full = dir.join(path);
                let digest = sha256_file(&full).map_err(|e| io_error(&full, e))?;
                if !digest.eq_ignore_ascii_case(&row.output_sha256) {
                    findings.push(finding(
                        FindingKind::OutputHash,
                        format!(
                            "the file's sha256 is {digest}, the report says {}: the output was replaced or changed",
                            shown_hash(&row.output_sha256)
                        ),
                    ));
                }
            }
        }
    }

    // Folders holding a listed output are the run's; any other folder (even an empty one, whose
    // name alone can identify someone) is not.
    let holders: BTreeSet<PathBuf> = listed
        .keys()
        .filter_map(|text| found.get(*text))
        .flat_map(|(path, _)| path.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    let mut unlisted: Vec<(&String, &(PathBuf, Kind))> = found
        .iter()
        .filter(|(text, _)| !listed.contains_key(text.as_str()))
        .filter(|(_, (path, kind))| *kind != Kind::Folder || !holders.contains(path))
        .collect();
    unlisted.sort();
    for (text, (path, kind)) in unlisted {
        let what = match kind {
            Kind::File if crate::io::atomic::is_temp_file(path) => {
                "a temporary file of an interrupted write, listed by no row"
            }
            Kind::File if is_image(path) => "an image that no row lists",
            Kind::File => "a file that no row lists",
            Kind::Symlink => "a symbolic link, which a run never writes",
            Kind::Other => {
                "not a regular file (a socket, FIFO or device), which a run never writes"
            }
            Kind::Folder => "a folder that holds no listed output, which a run never leaves",
        };
        findings.push(Finding::new(FindingKind::OutputUnlisted, None, what).output(text));
    }
    Ok(findings)
}

/// Rows that repeat an input path: a run writes one row per input (`report merge` refuses parts
/// that overlap), so a second row is a forged or merged-in duplicate, whatever its verdict.
pub(super) fn repeated_inputs(entries: &[Entry]) -> Vec<Finding> {
    let mut first: HashMap<&str, u64> = HashMap::new();
    let mut findings = Vec::new();
    for entry in entries {
        let Some(row) = &entry.row else { continue };
        let line = *first.entry(&row.input_path).or_insert(entry.line);
        if line != entry.line {
            findings.push(
                Finding::new(
                    FindingKind::InputPath,
                    Some(entry.line),
                    format!("the same input has a row on line {line}: a run writes one row per input, so one of them was added"),
                )
                .input(&row.input_path),
            );
        }
    }
    findings
}

/// The listed inputs against the input folder, walked exactly as a run walks it
/// ([`crate::io::dataset::walk`]): each row's input must match its sha256, and each walked entry must
/// have a row.
pub(super) fn inputs(entries: &[Entry], dir: &Path) -> Result<Vec<Finding>, AuditError> {
    let walked: HashMap<String, PathBuf> = crate::io::dataset::walk(dir)
        .map_err(|source| AuditError::Walk {
            path: dir.to_path_buf(),
            source,
        })?
        .into_iter()
        .map(|entry| (path_text(&entry.relative), entry.relative))
        .collect();
    let mut findings = Vec::new();
    let mut listed = BTreeSet::new();
    for entry in entries {
        let Some(row) = &entry.row else { continue };
        listed.insert(row.input_path.as_str());
        let finding = |kind, message: &str| {
            Finding::new(kind, Some(entry.line), message).input(&row.input_path)
        };
        let Some(relative) = walked.get(&row.input_path) else {
            findings.push(finding(
                FindingKind::InputMissing,
                "the input file is not in the input folder",
            ));
            continue;
        };
        if row.input_sha256.is_empty() {
            continue;
        }
        let full = dir.join(relative);
        // Followed: the run reads through symlinks inside its input folder.
        if !std::fs::metadata(&full).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let digest = sha256_file(&full).map_err(|e| io_error(&full, e))?;
        if !digest.eq_ignore_ascii_case(&row.input_sha256) {
            findings.push(finding(
                FindingKind::InputHash,
                "the input file's sha256 differs from the report's: the input changed since the run, or the row was forged",
            ));
        }
    }
    let mut unlisted: Vec<&String> = walked
        .keys()
        .filter(|text| !listed.contains(text.as_str()))
        .collect();
    unlisted.sort();
    for text in unlisted {
        findings.push(
            Finding::new(
                FindingKind::InputUnlisted,
                None,
                "an input with no row in the report: the run missed it, or its row was deleted",
            )
            .input(text),
        );
    }
    Ok(findings)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    File,
    Symlink,
    Other,
    Folder,
}

/// Every entry under `dir` (folders too), relative, without following symlinks.
fn walk(dir: &Path) -> Result<Vec<(PathBuf, Kind)>, AuditError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let folder = dir.join(&relative);
        let listing = std::fs::read_dir(&folder).map_err(|e| io_error(&folder, e))?;
        for item in listing {
            let item = item.map_err(|e| io_error(&folder, e))?;
            let child = relative.join(item.file_name());
            let kind = item
                .file_type()
                .map_err(|e| io_error(&dir.join(&child), e))?;
            if kind.is_dir() {
                found.push((child.clone(), Kind::Folder));
                pending.push(child);
            } else if kind.is_file() {
                found.push((child, Kind::File));
            } else if kind.is_symlink() {
                found.push((child, Kind::Symlink));
            } else {
                found.push((child, Kind::Other));
            }
        }
    }
    Ok(found)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn shown_hash(hash: &str) -> String {
    if hash.is_empty() {
        "nothing".to_string()
    } else {
        super::shown(hash)
    }
}

/// What the audit needs from the embedder spec: its hashes, its metric and its operating points
/// as distance thresholds (`max-distance`, or for cosine `1 - min-similarity`).
pub(super) struct EmbedderFacts {
    /// The spec file, as given.
    pub spec: PathBuf,
    /// The spec's `name`: what the `second_opinions` column names a second opinion by.
    pub name: String,
    /// sha256 of the spec file: what `anonymize` records as `embedder_sha256`.
    pub spec_sha256: String,
    /// sha256 of the spec's ONNX graph.
    pub graph_sha256: String,
    pub metric: String,
    pub thresholds: HashMap<String, f32>,
    /// The threshold of the spec's default operating point, as a distance.
    pub default_threshold: Option<f32>,
    /// The spec's `detector-sha256` pin.
    pub detector_pin: Option<String>,
    /// The spec pins a graph or detector sha256 that its file does not have.
    pub pin_mismatch: Vec<Finding>,
}

pub(super) fn embedder_facts(path: &Path) -> Result<EmbedderFacts, AuditError> {
    let spec = EmbedderSpec::load(path).map_err(|source| AuditError::Spec {
        path: path.to_path_buf(),
        source,
    })?;
    let spec_sha256 = sha256_file(path).map_err(|e| io_error(path, e))?;
    let graph = spec.onnx_path();
    let graph_sha256 = sha256_file(&graph).map_err(|e| io_error(&graph, e))?;
    let mut pin_mismatch: Vec<Finding> = spec
        .sha256
        .as_ref()
        .filter(|pin| !pin.eq_ignore_ascii_case(&graph_sha256))
        .map(|pin| {
            Finding::new(
                FindingKind::Hash,
                None,
                format!(
                    "the embedder spec pins graph sha256 {}, but {} hashes to {graph_sha256}",
                    super::shown(pin),
                    graph.display()
                ),
            )
        })
        .into_iter()
        .collect();
    if let (Some(pin), Some(detector)) = (&spec.detector_sha256, spec.detector_path()) {
        match sha256_file(&detector) {
            Ok(found) if found.eq_ignore_ascii_case(pin) => {}
            Ok(found) => pin_mismatch.push(Finding::new(
                FindingKind::Hash,
                None,
                format!(
                    "the embedder spec pins detector-sha256 {}, but {} hashes to {found}",
                    super::shown(pin),
                    detector.display()
                ),
            )),
            Err(e) => pin_mismatch.push(Finding::new(
                FindingKind::Hash,
                None,
                format!(
                    "the embedder spec's detector {} cannot be read: {e}",
                    detector.display()
                ),
            )),
        }
    }
    let thresholds: HashMap<String, f32> = spec
        .operating_points
        .iter()
        .filter_map(|point| Some((point.name.clone(), point.distance_threshold()?)))
        .collect();
    Ok(EmbedderFacts {
        spec: path.to_path_buf(),
        name: spec.name.clone(),
        default_threshold: thresholds.get(&spec.default_operating_point).copied(),
        detector_pin: spec
            .detector_sha256
            .as_ref()
            .map(|p| p.to_ascii_lowercase()),
        graph_sha256,
        spec_sha256,
        metric: spec.metric.to_string(),
        thresholds,
        pin_mismatch,
    })
}

/// A second opinion of the policy, as its spec defines it: the `second_opinions` cell of every
/// row compared by faces must name these, in this order, at these thresholds.
pub(super) struct OpinionFacts {
    pub facts: EmbedderFacts,
    /// The operating point the policy names (or the spec's default), as a distance; `None` when
    /// the spec does not define it.
    pub threshold: Option<f32>,
}

/// The policy's second opinions, each from its spec file.
pub(super) fn second_opinion_facts(
    policy: &Policy,
    not_checked: &mut Vec<String>,
) -> Result<Vec<OpinionFacts>, AuditError> {
    let mut opinions = Vec::with_capacity(policy.second_opinions.len());
    for opinion in &policy.second_opinions {
        let facts = embedder_facts(&opinion.spec)?;
        let threshold = match &opinion.operating_point {
            Some(name) => facts.thresholds.get(name).copied(),
            None => facts.default_threshold,
        };
        if threshold.is_none() {
            not_checked.push(format!(
                "the rows' thresholds of second opinion {} (its spec {} defines no distance threshold for the operating point the policy names)",
                super::shown(&facts.name),
                facts.spec.display()
            ));
        }
        opinions.push(OpinionFacts { facts, threshold });
    }
    Ok(opinions)
}

/// The spec hashes run.json records for the whole-image embedder and the second opinions against
/// the specs the policy names: a run that used other specs certified by other rules.
pub(super) fn spec_hashes(
    run: &RunJson,
    feature: Option<&EmbedderFacts>,
    opinions: &[OpinionFacts],
) -> Vec<Finding> {
    let config = &run.record.config;
    let source = run.path.display();
    let mut findings = Vec::new();
    let mut add = |message: String| findings.push(Finding::new(FindingKind::Hash, None, message));
    match (&config.feature_embedder, feature) {
        (Some(recorded), Some(feature)) => {
            if !recorded.sha256.eq_ignore_ascii_case(&feature.spec_sha256) {
                add(format!(
                    "{source} records feature_embedder sha256 {}, but the policy's feature embedder spec {} hashes to {}",
                    shown_hash(&recorded.sha256),
                    feature.spec.display(),
                    feature.spec_sha256
                ));
            }
        }
        (None, Some(feature)) => add(format!(
            "{source} records no feature_embedder, but the policy names {}: the run was not made with this policy",
            feature.spec.display()
        )),
        (Some(recorded), None) => add(format!(
            "{source} records feature_embedder {}, but the policy names none: the run was not made with this policy",
            super::shown(&recorded.spec.display().to_string())
        )),
        (None, None) => {}
    }
    if config.second_opinions.len() != opinions.len() {
        add(format!(
            "{source} records {} second opinions, but the policy names {}: the run was not made with this policy",
            config.second_opinions.len(),
            opinions.len()
        ));
        return findings;
    }
    for (n, (recorded, opinion)) in config.second_opinions.iter().zip(opinions).enumerate() {
        if !recorded
            .sha256
            .eq_ignore_ascii_case(&opinion.facts.spec_sha256)
        {
            add(format!(
                "{source} records second opinion {} with spec sha256 {}, but the policy's spec {} hashes to {}",
                n + 1,
                shown_hash(&recorded.sha256),
                opinion.facts.spec.display(),
                opinion.facts.spec_sha256
            ));
        }
    }
    findings
}

/// Reads one column of a row.
pub(super) type Column = fn(&ReportRow) -> &str;

/// Policy, model and embedder hashes: one value across the report, equal to the files given.
pub(super) fn hashes(
    entries: &[Entry],
    given: &GivenHashes,
    policy: Option<&Policy>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let pinned = policy.and_then(|p| p.model.manifest_sha256.clone());
    let embedder: Vec<&String> = given.embedder.iter().chain(&given.embedder_graph).collect();
    let columns: [(&str, Column, Vec<&String>, &str); 4] = [
        (
            "policy_sha256",
            |r| &r.policy_sha256,
            given.policy.iter().collect(),
            "--policy file",
        ),
        (
            "model_sha256",
            |r| &r.model_sha256,
            given.model.iter().collect(),
            "--model folder's manifest",
        ),
        (
            "embedder_sha256",
            |r| &r.embedder_sha256,
            embedder,
            "--embedder spec",
        ),
        (
            "detector_sha256",
            |r| &r.detector_sha256,
            given.detector.iter().collect(),
            "--detector file (or the embedder spec's detector-sha256 pin)",
        ),
    ];
    for (column, get, expected, source) in columns {
        // Value → (rows, first line).
        let mut values: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for entry in entries {
            let Some(row) = &entry.row else { continue };
            let value = get(row);
            if value.is_empty() {
                if matches!(row.status, Status::Certified | Status::Failed) {
                    findings.push(Finding::new(
                        FindingKind::Hash,
                        Some(entry.line),
                        format!("{} row with an empty {column}", row.status),
                    ));
                }
                continue;
            }
            let slot = values.entry(value).or_insert((0, entry.line));
            slot.0 += 1;
        }
        if values.len() > 1 {
            let list: Vec<String> = values
                .iter()
                .map(|(v, (n, first))| {
                    format!("{} ({n} rows, first line {first})", super::shown(v))
                })
                .collect();
            findings.push(Finding::new(
                FindingKind::Hash,
                None,
                format!(
                    "the report mixes {} values of {column}: {}",
                    values.len(),
                    list.join(", ")
                ),
            ));
        }
        if let Some(first_expected) = expected.first() {
            for (value, (n, first)) in &values {
                if !expected.iter().any(|e| value.eq_ignore_ascii_case(e)) {
                    findings.push(Finding::new(
                        FindingKind::Hash,
                        Some(*first),
                        format!(
                            "{n} row(s) have {column} {}, the {source} hashes to {first_expected}",
                            super::shown(value)
                        ),
                    ));
                }
            }
        }
        if column == "model_sha256" {
            if let Some(pin) = &pinned {
                for (value, (n, first)) in &values {
                    if !value.eq_ignore_ascii_case(pin) {
                        findings.push(Finding::new(
                            FindingKind::Hash,
                            Some(*first),
                            format!(
                                "{n} row(s) have model_sha256 {}, the policy pins {pin}",
                                super::shown(value)
                            ),
                        ));
                    }
                }
            }
        }
    }
    findings
}

/// Each row's status against its own distance and threshold, and against the policy's rules.
pub(super) fn verdicts(
    entries: &[Entry],
    policy: Option<&Policy>,
    embedder: Option<&EmbedderFacts>,
    feature: Option<&EmbedderFacts>,
    opinions: Option<&[OpinionFacts]>,
    not_checked: &mut Vec<String>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut unresolved = BTreeSet::new();
    let mut whole_image_unjudged = false;
    for entry in entries {
        let Some(row) = &entry.row else { continue };
        let mut add = |kind, message: String| {
            let mut finding = Finding::new(kind, Some(entry.line), message);
            if !row.output_path.is_empty() {
                finding = finding.output(&row.output_path);
            }
            findings.push(finding);
        };
        own_verdict(row, &mut add);
        let judge = match row.certificate {
            // Which embedder judged whole images is the policy's to say (its feature embedder,
            // else the face embedder).
            Some(CertificateKind::WholeImage) if policy.is_none() => {
                whole_image_unjudged = true;
                None
            }
            _ if whole_image_judge(row, feature) => feature,
            _ => embedder,
        };
        if let Some(embedder) = judge {
            if matches!(row.status, Status::Certified | Status::Failed)
                && row.metric != embedder.metric
            {
                add(
                    FindingKind::Rule,
                    format!(
                        "metric `{}`, but the embedder spec compares by {}",
                        super::shown(&row.metric),
                        embedder.metric
                    ),
                );
            }
        }
        if let Some(policy) = policy {
            let thresholds = embedder.map(|e| &e.thresholds);
            let feature_threshold = feature.and_then(|f| f.default_threshold);
            let judged = Judged {
                operating_points: thresholds,
                whole_image: whole_image_judge(row, feature).then_some(feature_threshold),
            };
            policy_rules(row, policy, judged, &mut unresolved, &mut add);
        }
        if let Some(opinions) = opinions {
            policy_second_opinions(row, opinions, &mut add);
        }
    }
    if whole_image_unjudged && embedder.is_some() {
        not_checked.push(
            "the metric of whole-image rows (give --policy FILE: they are judged by its feature embedder)"
                .to_string(),
        );
    }
    for name in unresolved {
        not_checked.push(format!(
            "thresholds of operating point `{name}` (give the embedder spec that defines it with --embedder)"
        ));
    }
    findings
}

/// The certificate kind against the face counts it derives from: whole-image exactly when the
/// input has no face; a face certificate needs an output face for every input face.
fn own_certificate(row: &ReportRow, add: &mut impl FnMut(FindingKind, String)) {
    let Some(kind) = row.certificate else {
        if row.status == Status::Certified {
            add(
                FindingKind::Verdict,
                "certified without a certificate kind (face, face-lost or whole-image)".into(),
            );
        }
        return;
    };
    let (faces_in, faces_out) = (row.faces_in, row.faces_out);
    let contradiction = match kind {
        CertificateKind::WholeImage => faces_in.is_some_and(|n| n > 0),
        CertificateKind::Face => {
            faces_in == Some(0) || matches!((faces_in, faces_out), (Some(i), Some(o)) if o < i)
        }
        CertificateKind::FaceLost => faces_in == Some(0),
    };
    if contradiction {
        add(
            FindingKind::Verdict,
            format!(
                "certificate kind {kind}, but the row records {} input and {} output faces",
                faces_in.map_or("no count of".to_string(), |n| n.to_string()),
                faces_out.map_or("no count of".to_string(), |n| n.to_string())
            ),
        );
    }
}

/// A certified row's second opinions must each be beyond their own threshold.
fn own_second_opinions(row: &ReportRow, add: &mut impl FnMut(FindingKind, String)) {
    if row.status != Status::Certified || row.second_opinions.is_empty() {
        return;
    }
    for opinion in row.second_opinions.split(';') {
        let parts: Vec<&str> = opinion.split(':').collect();
        let [name, distance, threshold] = parts[..] else {
            add(
                FindingKind::Verdict,
                format!(
                    "second opinion `{}` is not name:distance:threshold",
                    super::shown(opinion)
                ),
            );
            continue;
        };
        let (distance, threshold) = (distance.parse::<f32>(), threshold.parse::<f32>());
        match (distance, threshold) {
            (Ok(d), Ok(t)) if d.is_finite() && t.is_finite() && d >= t => {}
            (Ok(d), Ok(t)) => add(
                FindingKind::Verdict,
                format!(
                    "certified, but second opinion {} finds distance {d}, not beyond its threshold {t}",
                    super::shown(name)
                ),
            ),
            // No face pair to compare (a lost face and no output face).
            (Err(_), Ok(_)) if row.faces_out == Some(0) => {}
            _ => add(
                FindingKind::Verdict,
                format!(
                    "certified, but second opinion {} has no finite distance and threshold",
                    super::shown(name)
                ),
            ),
        }
    }
}

/// The `second_opinions` cell of a certified or failed row against the policy's second opinions:
/// every face comparison lists them all, by name, in the policy's order, at the threshold of the
/// operating point the policy names; a whole-image comparison lists none (they match faces).
fn policy_second_opinions(
    row: &ReportRow,
    opinions: &[OpinionFacts],
    add: &mut impl FnMut(FindingKind, String),
) {
    if !matches!(row.status, Status::Certified | Status::Failed) {
        return;
    }
    // No kind: no comparison was made (own_certificate names a certified row without one).
    let Some(kind) = row.certificate else { return };
    let expected: &[OpinionFacts] = if kind == CertificateKind::WholeImage {
        &[]
    } else {
        opinions
    };
    let cells: Vec<Vec<&str>> = if row.second_opinions.is_empty() {
        Vec::new()
    } else {
        row.second_opinions
            .split(';')
            .map(|cell| cell.split(':').collect())
            .collect()
    };
    let found: Vec<&str> = cells
        .iter()
        .map(|parts| parts.first().copied().unwrap_or_default())
        .collect();
    let wanted: Vec<&str> = expected.iter().map(|o| o.facts.name.as_str()).collect();
    if found != wanted {
        let list = |names: &[&str]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                super::shown(&names.join(", "))
            }
        };
        add(
            FindingKind::Rule,
            format!(
                "{} row with second opinions: {}, but the policy's second opinions on a {kind} comparison are: {}",
                row.status,
                list(&found),
                list(&wanted)
            ),
        );
        return;
    }
    for (parts, opinion) in cells.iter().zip(expected) {
        let Some(expected) = opinion.threshold else {
            continue;
        };
        let found = parts.get(2).copied().unwrap_or_default();
        if !found
            .parse::<f32>()
            .is_ok_and(|t| (t - expected).abs() <= THRESHOLD_SLACK)
        {
            add(
                FindingKind::Rule,
                format!(
                    "second opinion {} judged at threshold `{}`, but the operating point the policy names certifies at {expected}",
                    super::shown(&opinion.facts.name),
                    super::shown(found)
                ),
            );
        }
    }
}

/// The cells a run fills on every certified and failed row (whatever the certificate kind: a
/// lost face or a faceless input still has its hash, seed, strength, steps, attempt and face
/// counts). Each check that reads one of them skips an empty cell, so an empty one is a finding
/// here, not a check silently not made.
fn own_required_cells(row: &ReportRow, add: &mut impl FnMut(FindingKind, String)) {
    if !matches!(row.status, Status::Certified | Status::Failed) {
        return;
    }
    let missing: Vec<&str> = [
        ("input_sha256", row.input_sha256.is_empty()),
        ("strength", row.strength.is_none()),
        ("steps", row.steps.is_none()),
        ("seed", row.seed.is_empty()),
        ("attempts", row.attempts.is_none()),
        ("faces_in", row.faces_in.is_none()),
        ("faces_out", row.faces_out.is_none()),
    ]
    .into_iter()
    .filter_map(|(column, empty)| empty.then_some(column))
    .collect();
    if !missing.is_empty() {
        add(
            FindingKind::Verdict,
            format!(
                "{} row with an empty {}: a run fills these on every certified and failed row, and the checks that need them cannot be made",
                row.status,
                missing.join(", ")
            ),
        );
    }
}

/// Whether a second opinion in the row finds the same identity (a distance below its threshold):
/// a face row fails then, however far its own distance.
fn second_opinion_dissents(row: &ReportRow) -> bool {
    row.second_opinions
        .split(';')
        .filter_map(|opinion| {
            let mut parts = opinion.split(':').skip(1);
            let distance = parts.next()?.parse::<f32>().ok()?;
            let threshold = parts.next()?.parse::<f32>().ok()?;
            Some(distance < threshold)
        })
        .any(|same| same)
}

fn own_verdict(row: &ReportRow, add: &mut impl FnMut(FindingKind, String)) {
    let known_metric = matches!(row.metric.as_str(), "euclidean" | "cosine");
    own_required_cells(row, add);
    own_certificate(row, add);
    own_second_opinions(row, add);
    // A lost face with no output face at all has no pair, hence no distance.
    let nothing_compared =
        row.certificate == Some(CertificateKind::FaceLost) && row.faces_out == Some(0);
    match row.status {
        Status::Certified => {
            if row.output_path.is_empty() || row.output_sha256.is_empty() {
                add(
                    FindingKind::Verdict,
                    "certified, but the row lists no output file or no output sha256".into(),
                );
            }
            match (row.distance, row.threshold) {
                (None, Some(t)) if nothing_compared && t.is_finite() => {}
                (Some(d), Some(t)) if d.is_finite() && t.is_finite() => {
                    if !known_metric {
                        add(
                            FindingKind::Verdict,
                            format!(
                                "certified under the unknown metric `{}`: cannot tell which side of the threshold is a different identity",
                                super::shown(&row.metric)
                            ),
                        );
                    } else if d < t {
                        add(
                            FindingKind::Verdict,
                            format!(
                                "certified, but distance {d} is below the threshold {t} ({}: a distance at or above the threshold is a different identity)",
                                row.metric
                            ),
                        );
                    }
                }
                _ => add(
                    FindingKind::Verdict,
                    "certified without a finite distance and threshold".into(),
                ),
            }
        }
        // Only a face certificate depends on the distance alone; the policy decides the others.
        Status::Failed => match (row.distance, row.threshold) {
            (Some(d), Some(t))
                if row.certificate == Some(CertificateKind::Face)
                    && known_metric
                    && d.is_finite()
                    && t.is_finite()
                    && d > t
                    && !second_opinion_dissents(row) =>
            {
                add(
                FindingKind::Verdict,
                format!(
                    "failed, but distance {d} is beyond the threshold {t} ({}): the row would be certified",
                    row.metric
                ),
            )
            }
            (Some(_), Some(_)) => {}
            _ if row.reason.trim().is_empty() => add(
                FindingKind::Verdict,
                "failed without a distance and threshold, and without a reason".into(),
            ),
            _ => {}
        },
        Status::Error | Status::Skipped => {
            if row.reason.trim().is_empty() {
                add(FindingKind::Verdict, format!("{} without a reason", row.status));
            }
            if !row.output_path.is_empty() {
                add(
                    FindingKind::Verdict,
                    format!("{}, yet the row lists an output file", row.status),
                );
            }
        }
    }
}

/// Whether a row was judged by the policy's whole-image (feature) embedder rather than the face
/// embedder: a whole-image comparison in a run that had one.
fn whole_image_judge(row: &ReportRow, feature: Option<&EmbedderFacts>) -> bool {
    feature.is_some() && row.certificate == Some(CertificateKind::WholeImage)
}

/// The thresholds a row may be judged at.
struct Judged<'a> {
    /// The face embedder's operating points, when its spec was given.
    operating_points: Option<&'a HashMap<String, f32>>,
    /// For a row judged by the whole-image embedder: that embedder's default threshold.
    whole_image: Option<Option<f32>>,
}

fn policy_rules(
    row: &ReportRow,
    policy: &Policy,
    judged: Judged,
    unresolved: &mut BTreeSet<String>,
    add: &mut impl FnMut(FindingKind, String),
) {
    let operating_points = judged.operating_points;
    if !matches!(row.status, Status::Certified | Status::Failed) {
        return;
    }
    let Ok(level) = policy.level(&row.level) else {
        add(
            FindingKind::Rule,
            format!(
                "level `{}` is not in the policy (it has: {})",
                super::shown(&row.level),
                policy.level_names().join(", ")
            ),
        );
        return;
    };
    if let (Status::Certified, Some(kind)) = (row.status, row.certificate) {
        if !level.accepts(kind) {
            add(
                FindingKind::Rule,
                format!(
                    "certified with a {kind} certificate, which level `{}` does not accept (it accepts: {})",
                    level.name,
                    level
                        .accepted_kinds()
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if let (Status::Failed, Some(kind)) = (row.status, row.certificate) {
        // A face row is judged by own_verdict; here the kinds whose acceptance is the policy's.
        let all_differ = match (row.distance, row.threshold) {
            (Some(d), Some(t)) => d.is_finite() && t.is_finite() && d > t,
            (None, _) => kind == CertificateKind::FaceLost && row.faces_out == Some(0),
            _ => false,
        };
        if kind != CertificateKind::Face && level.accepts(kind) && all_differ {
            add(
                FindingKind::Rule,
                format!(
                    "failed, but its {kind} comparison is beyond the threshold and level `{}` accepts {kind} certificates: the row would be certified",
                    level.name
                ),
            );
        }
    }
    // A faceless input under on-no-face = "flag" is kept and marked, whatever on-failure says.
    let flagged_no_face = row.faces_in == Some(0) && level.on_no_face == OnNoFace::Flag;
    if row.status == Status::Failed && flagged_no_face {
        if row.output_path.is_empty() {
            add(
                FindingKind::Rule,
                format!(
                    "failed without a face and level `{}` says on-no-face = \"flag\" (keep the output, marked), yet no output is listed",
                    level.name
                ),
            );
        }
    } else if row.status == Status::Failed {
        match (level.on_failure, row.output_path.is_empty()) {
            (OnFailure::Drop, false) => add(
                FindingKind::Rule,
                format!(
                    "failed and level `{}` says on-failure = \"drop\", yet an output was kept",
                    level.name
                ),
            ),
            (OnFailure::Flag, true) => add(
                FindingKind::Rule,
                format!(
                    "failed and level `{}` says on-failure = \"flag\" (keep the output, marked), yet no output is listed",
                    level.name
                ),
            ),
            _ => {}
        }
    }
    let expected_threshold = match (&level.threshold, judged.whole_image) {
        (_, Some(whole_image)) => whole_image,
        (Threshold::Value(value), None) => Some(*value),
        (Threshold::OperatingPoint(name), None) => {
            let found = operating_points.and_then(|points| points.get(name).copied());
            if found.is_none() {
                unresolved.insert(name.clone());
            }
            found
        }
    };
    if let (Some(expected), Some(found)) = (expected_threshold, row.threshold) {
        if (expected - found).abs() > THRESHOLD_SLACK {
            add(
                FindingKind::Rule,
                format!(
                    "threshold {found}, but level `{}` of the policy certifies at {expected}",
                    level.name
                ),
            );
        }
    }
    match row.attempts {
        Some(attempts) if (1..=level.max_attempts).contains(&attempts) => {
            let expected = level.strength_for_attempt(attempts - 1);
            if let Some(strength) = row.strength {
                if (strength - expected).abs() > STRENGTH_SLACK {
                    add(
                        FindingKind::Rule,
                        format!(
                            "strength {strength} at attempt {attempts}, but level `{}` escalates to {expected} there",
                            level.name
                        ),
                    );
                }
            }
        }
        Some(attempts) => add(
            FindingKind::Rule,
            format!(
                "{attempts} attempts, but level `{}` allows 1 to {}",
                level.name, level.max_attempts
            ),
        ),
        // own_required_cells names a missing count.
        None => {}
    }
    if let Some(steps) = row.steps {
        if steps as usize != level.steps {
            add(
                FindingKind::Rule,
                format!(
                    "{steps} steps, but level `{}` runs {}",
                    level.name, level.steps
                ),
            );
        }
    }
    if let Some(scheduler) = level.scheduler {
        if row.scheduler != scheduler.cli_name() {
            add(
                FindingKind::Rule,
                format!(
                    "scheduler `{}`, but level `{}` uses `{scheduler}`",
                    super::shown(&row.scheduler),
                    level.name
                ),
            );
        }
    }
}

/// The first-attempt strength, escalation and cap of run.json's `level_settings`.
struct Escalation {
    base: f64,
    step: f64,
    cap: f64,
}

impl Escalation {
    fn of(settings: &serde_json::Value) -> Option<Escalation> {
        let start = settings.get("start")?;
        let base = match start.get("strength").and_then(serde_json::Value::as_f64) {
            Some(strength) => strength,
            None => start.get("timestep")?.as_f64()? / 1000.0,
        };
        Some(Escalation {
            base,
            step: settings.get("strength-step")?.as_f64()?,
            cap: settings.get("max-strength")?.as_f64()?,
        })
    }

    /// The strength of attempt `attempts` (1 = the first), in whole millionths as the policy
    /// computes it ([`crate::policy::Level::strength_for_attempt`]).
    fn strength(&self, attempts: u32) -> f64 {
        let micros = |v: f64| (v * 1e6).round() as i64;
        let base = micros(self.base);
        let raised = base.saturating_add(
            micros(self.step).saturating_mul(i64::from(attempts.saturating_sub(1))),
        );
        raised.min(micros(self.cap)).max(base) as f64 / 1e6
    }
}

/// The run seed the rows' seeds are checked against: run.json's `seed`, or, for a run seeded from
/// a secret file (run.json holds only `seed_fingerprint`), the seed of the auditor's
/// `--seed-file`, checked against that fingerprint. `None` (with a `not checked` line, or a
/// finding when the file or run.json disagree) when there is none to check with.
pub(super) fn run_seed(
    run: &RunJson,
    seed_file: Option<&Path>,
    findings: &mut Vec<Finding>,
    not_checked: &mut Vec<String>,
) -> Result<Option<u64>, AuditError> {
    use crate::diffusion::noise::seed_fingerprint;
    let config = &run.record.config;
    let source = run.path.display();
    let from_file = match seed_file {
        Some(path) => Some(crate::io::secret::read(path)?),
        None => None,
    };
    let mut add = |message: String| {
        findings.push(Finding::new(FindingKind::RunRecord, None, message));
    };
    match (config.seed, &config.seed_fingerprint) {
        (Some(seed), recorded) => {
            if recorded
                .as_ref()
                .is_some_and(|f| *f != seed_fingerprint(seed))
            {
                add(format!(
                    "{source}'s seed_fingerprint is not the fingerprint of its seed: run.json was edited"
                ));
            }
            if from_file.is_some_and(|file| file != seed) {
                add(format!(
                    "the secret file of --seed-file holds another seed than {source} records"
                ));
            }
            Ok(Some(seed))
        }
        (None, Some(recorded)) => match from_file {
            Some(file) if seed_fingerprint(file) == *recorded => Ok(Some(file)),
            Some(file) => {
                add(format!(
                    "the secret file of --seed-file has fingerprint {}, but {source} records the fingerprint {recorded}: it is another run's secret file, or run.json was edited",
                    seed_fingerprint(file)
                ));
                not_checked.push(
                    "the rows' seeds against the run seed (the --seed-file given is not the run's)"
                        .to_string(),
                );
                Ok(None)
            }
            None => {
                not_checked.push(format!(
                    "the rows' seeds against the run seed: unverified, the run was seeded from a secret file and {source} holds only its fingerprint (give --seed-file FILE)"
                ));
                Ok(None)
            }
        },
        (None, None) => {
            add(format!(
                "{source} records neither the run seed nor its fingerprint"
            ));
            Ok(None)
        }
    }
}

/// Every row against the configuration run.json records: its level, the level's steps,
/// scheduler, escalated strength and threshold, and each seed derived from the run seed (when
/// known, see [`run_seed`]) and the input's sha256 ([`crate::diffusion::noise::image_seed`]) at
/// the row's last attempt.
pub(super) fn run_config_rows(
    entries: &[Entry],
    run: &RunJson,
    run_seed: Option<u64>,
    embedder: Option<&EmbedderFacts>,
    feature: Option<&EmbedderFacts>,
    policy_given: bool,
    not_checked: &mut Vec<String>,
) -> Vec<Finding> {
    use serde_json::Value;
    let config = &run.record.config;
    let settings = &config.level_settings;
    let source = run.path.display();
    let steps = settings.get("steps").and_then(Value::as_u64);
    let scheduler = settings.get("scheduler").and_then(Value::as_str);
    let escalation = Escalation::of(settings);
    let threshold = match settings.get("threshold") {
        Some(t) => match (
            t.get("value").and_then(Value::as_f64),
            t.get("operating-point").and_then(Value::as_str),
        ) {
            (Some(value), _) => Some(value as f32),
            (None, Some(name)) => {
                let found = embedder.and_then(|e| e.thresholds.get(name).copied());
                if found.is_none() {
                    not_checked.push(format!(
                        "row thresholds against run.json's operating point `{}` (give the embedder spec that defines it with --embedder)",
                        super::shown(name)
                    ));
                }
                found
            }
            _ => None,
        },
        None => None,
    };
    let mut findings = Vec::new();
    let mut whole_image_unjudged = false;
    for entry in entries {
        let Some(row) = &entry.row else { continue };
        let mut add = |message: String| {
            let mut finding = Finding::new(FindingKind::RunRecord, Some(entry.line), message);
            if !row.output_path.is_empty() {
                finding = finding.output(&row.output_path);
            }
            findings.push(finding);
        };
        if !row.level.is_empty() && row.level != config.level {
            add(format!(
                "level `{}`, but {source} records a run at level `{}`",
                super::shown(&row.level),
                super::shown(&config.level)
            ));
        }
        if let (Some(found), Some(expected)) = (row.steps, steps) {
            if u64::from(found) != expected {
                add(format!(
                    "{found} steps, but {source} records {expected} steps"
                ));
            }
        }
        if let Some(expected) = scheduler {
            if !row.scheduler.is_empty() && row.scheduler != expected {
                add(format!(
                    "scheduler `{}`, but {source} records `{}`",
                    super::shown(&row.scheduler),
                    super::shown(expected)
                ));
            }
        }
        let expected = match (row.certificate, feature) {
            (Some(CertificateKind::WholeImage), Some(feature)) => feature.default_threshold,
            // Judged by the face embedder only in a run without a whole-image embedder.
            (Some(CertificateKind::WholeImage), None)
                if !policy_given && config.feature_embedder.is_some() =>
            {
                whole_image_unjudged = true;
                None
            }
            _ => threshold,
        };
        if let (Some(found), Some(expected)) = (row.threshold, expected) {
            if (found - expected).abs() > THRESHOLD_SLACK {
                add(format!(
                    "threshold {found}, but {source} records a level that certifies at {expected}"
                ));
            }
        }
        if let (Some(found), Some(attempts), Some(escalation)) =
            (row.strength, row.attempts, &escalation)
        {
            let expected = escalation.strength(attempts);
            if (found - expected).abs() > STRENGTH_SLACK {
                add(format!(
                    "strength {found} at attempt {attempts}, but {source} records a level that escalates to {expected} there"
                ));
            }
        }
        // With the policy, policy_second_opinions checks names and thresholds too.
        if !policy_given {
            if let Some(kind) = row
                .certificate
                .filter(|_| matches!(row.status, Status::Certified | Status::Failed))
            {
                let expected = if kind == CertificateKind::WholeImage {
                    0
                } else {
                    config.second_opinions.len()
                };
                let found = if row.second_opinions.is_empty() {
                    0
                } else {
                    row.second_opinions.split(';').count()
                };
                if found != expected {
                    add(format!(
                        "{found} second opinions on a {kind} comparison, but {source} records a run that asks {expected}"
                    ));
                }
            }
        }
        let Some(run_seed) = run_seed else { continue };
        if !row.seed.is_empty() {
            match (row.expected_seed(run_seed), row.attempts) {
                (Some(expected), Some(attempts)) => {
                    if !expected.eq_ignore_ascii_case(&row.seed) {
                        add(format!(
                            "the seed is not the one derived from {source}'s run seed and the input's sha256 at attempt {attempts}: the seed, the run seed or the input hash was changed"
                        ));
                    }
                }
                _ => add(
                    "a seed without the input sha256 and attempt count it is derived from"
                        .to_string(),
                ),
            }
        }
    }
    if whole_image_unjudged {
        not_checked.push(format!(
            "the thresholds of whole-image rows ({source} records a feature embedder, whose operating point judged them: give --policy FILE)"
        ));
    }
    findings
}

/// run.json's `level_settings` against the level of the same name in the policy given.
pub(super) fn level_settings(run: &RunJson, policy: &Policy) -> Vec<Finding> {
    let config = &run.record.config;
    let source = run.path.display();
    let Ok(level) = policy.level(&config.level) else {
        return vec![Finding::new(
            FindingKind::RunRecord,
            None,
            format!(
                "{source} records level `{}`, which the policy does not have (it has: {})",
                super::shown(&config.level),
                policy.level_names().join(", ")
            ),
        )];
    };
    let expected = serde_json::to_value(level).unwrap_or_default();
    let (Some(expected), Some(found)) = (expected.as_object(), config.level_settings.as_object())
    else {
        return vec![Finding::new(
            FindingKind::RunRecord,
            None,
            format!("{source}'s level_settings is not a map of settings"),
        )];
    };
    let keys: BTreeSet<&String> = expected.keys().chain(found.keys()).collect();
    keys.into_iter()
        .filter(|key| expected.get(*key) != found.get(*key))
        .map(|key| {
            let show = |v: Option<&serde_json::Value>| {
                v.map_or_else(|| "nothing".to_string(), |v| super::shown(&v.to_string()))
            };
            Finding::new(
                FindingKind::RunRecord,
                None,
                format!(
                    "{source} records level `{}` with {key} = {}, but the policy's level has {key} = {}",
                    level.name,
                    show(found.get(key)),
                    show(expected.get(key))
                ),
            )
        })
        .collect()
}

/// `skipped` rows of inputs that a run would have processed: the file is an image that decodes
/// (under the run's limits), so only the policy's `on-no-face = "skip"` allows a skip, and only
/// for an input with no face.
pub(super) fn skipped_images(
    entries: &[Entry],
    dir: &Path,
    policy: Option<&Policy>,
    run: Option<&RunJson>,
    not_checked: &mut Vec<String>,
) -> Result<Vec<Finding>, AuditError> {
    let walked: HashMap<String, crate::io::dataset::Entry> = crate::io::dataset::walk(dir)
        .map_err(|source| AuditError::Walk {
            path: dir.to_path_buf(),
            source,
        })?
        .into_iter()
        .map(|entry| (path_text(&entry.relative), entry))
        .collect();
    let mut findings = Vec::new();
    let mut unknown_policy = false;
    for entry in entries {
        let Some(row) = &entry.row else { continue };
        if row.status != Status::Skipped {
            continue;
        }
        let Some(walked) = walked.get(&row.input_path) else {
            continue;
        };
        if !matches!(walked.kind, crate::io::dataset::EntryKind::Image) {
            continue;
        }
        let Ok(loaded) = crate::io::dataset::load_image(&dir.join(&walked.relative)) else {
            continue;
        };
        let mut add = |message: String| {
            findings.push(
                Finding::new(FindingKind::Rule, Some(entry.line), message).input(&row.input_path),
            );
        };
        if !row.input_sha256.is_empty()
            && !row.input_sha256.eq_ignore_ascii_case(&loaded.sha256_hex())
        {
            // The input-hash check names this already.
            continue;
        }
        let level_name = if row.level.is_empty() {
            run.map(|r| r.record.config.level.as_str())
        } else {
            Some(row.level.as_str())
        };
        let level = match (policy, level_name) {
            (Some(policy), Some(name)) => match policy.level(name) {
                Ok(level) => level,
                Err(_) => {
                    add(format!(
                        "skipped, yet the input is an image that decodes, and level `{}` is not in the policy",
                        super::shown(name)
                    ));
                    continue;
                }
            },
            _ => {
                unknown_policy = true;
                continue;
            }
        };
        if level.on_no_face != crate::policy::OnNoFace::Skip {
            add(format!(
                "skipped, yet the input is an image that decodes and level `{}` processes every image (on-no-face = {}): the row hides an image that was not anonymized, or its output",
                level.name,
                serde_json::to_value(level.on_no_face).unwrap_or_default()
            ));
        } else if row.faces_in != Some(0) {
            add(
                "skipped, yet the input is an image that decodes and the row does not record that no face was found (faces_in = 0), the only skip the policy allows"
                    .to_string(),
            );
        }
    }
    if unknown_policy {
        not_checked.push(
            "whether the policy allows skipping the valid images that rows mark skipped (give --policy FILE and run.json)"
                .to_string(),
        );
    }
    Ok(findings)
}
