//! `boomerang report merge`: joins the reports of a run split into parts into one report with a
//! fresh chain, after checking each part, and refuses parts that overlap or disagree on what ran.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::chain;
use super::checks;
use crate::certify::CertificateKind;
use crate::records::report::{ReportError, ReportRow, ReportWriter, RunRecord, StatusCounts};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Audit(#[from] super::AuditError),
    #[error("{path} does not verify, so it is not merged: {problem}")]
    Part { path: PathBuf, problem: String },
    #[error("{path} is given twice")]
    Twice { path: PathBuf },
    #[error("{output} already exists: merge never overwrites; choose another -o path")]
    Exists { output: PathBuf },
    #[error("{0}")]
    Conflict(Box<Conflict>),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the merged report: {0}")]
    Write(#[from] ReportError),
    /// The parts of a sharded run (`anonymize --shard K/N`) do not make one whole run.
    #[error("{0}")]
    Shards(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// The same input or output path in two rows.
    Overlap,
    /// Different policy, model, embedder or detector hashes, or run configurations (level,
    /// strength, steps, scheduler, threshold).
    Mixed,
}

/// Two rows that cannot be in one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: ConflictKind,
    /// The column, in words.
    pub what: &'static str,
    pub first_value: String,
    pub first: PathBuf,
    pub first_line: u64,
    pub second_value: String,
    pub second: PathBuf,
    pub second_line: u64,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (first, second) = (self.first.display(), self.second.display());
        match self.kind {
            ConflictKind::Overlap => write!(
                f,
                "the parts overlap: {} `{}` is on {first}:{} and on {second}:{}; merge only disjoint parts of a run",
                self.what, self.first_value, self.first_line, self.second_line
            ),
            ConflictKind::Mixed => write!(
                f,
                "the parts were made with different {}: {} ({first}:{}) and {} ({second}:{}); a merged report must describe one run configuration (policy, level and its settings, model, embedder, detector)",
                self.what, self.first_value, self.first_line, self.second_value, self.second_line
            ),
        }
    }
}

/// What a merge wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSummary {
    pub output: PathBuf,
    pub rows: u64,
    pub parts: usize,
    /// The merged report's last chain value.
    pub chain_head: String,
    /// Parts without a run.json beside them: rows cut from their end could not be detected.
    pub unrecorded: Vec<PathBuf>,
    /// The run.json written beside the merged report, when the parts are the N parts of one
    /// sharded run.
    pub run_record: Option<PathBuf>,
}

/// One column of a row, as text (empty: absent).
type RowValue = fn(&ReportRow) -> String;

/// Where a value was first seen: part and line.
type Seen<'a> = HashMap<String, (&'a Path, u64)>;

/// Checks `parts` and writes their rows, re-chained, to `output` (atomically; never replacing a
/// file).
pub fn merge(parts: &[PathBuf], output: &Path) -> Result<MergeSummary, MergeError> {
    for (index, part) in parts.iter().enumerate() {
        if parts[..index].contains(part) {
            return Err(MergeError::Twice { path: part.clone() });
        }
    }
    if output.exists() {
        return Err(MergeError::Exists {
            output: output.to_path_buf(),
        });
    }

    let mut all: Vec<(&Path, u64, ReportRow)> = Vec::new();
    let mut unrecorded = Vec::new();
    // Each part's run record, in the order given.
    let mut records: Vec<Option<RunRecord>> = Vec::new();
    // Each recorded part's level and level settings, for comparison.
    let mut configs: Vec<(&Path, String, String)> = Vec::new();
    for part in parts {
        let read = chain::read(part)?;
        if let Some(finding) = read.findings.first() {
            return Err(MergeError::Part {
                path: part.clone(),
                problem: finding.to_string(),
            });
        }
        let mut notes = Vec::new();
        match checks::find_run_json(part, &mut notes)? {
            Some(run) => {
                let head = read
                    .entries
                    .last()
                    .map_or_else(crate::records::report::genesis, |e| e.chain.clone());
                let problems = checks::run_record(part, &read.entries, &head, &run);
                if let Some(problem) = problems.first() {
                    return Err(MergeError::Part {
                        path: part.clone(),
                        problem: problem.to_string(),
                    });
                }
                let config = &run.record.config;
                configs.push((
                    part.as_path(),
                    config.level.clone(),
                    config.level_settings.to_string(),
                ));
                records.push(Some(run.record));
            }
            None => {
                unrecorded.push(part.clone());
                records.push(None);
            }
        }
        for entry in read.entries {
            // A report without findings has every row parsed.
            if let Some(row) = entry.row {
                all.push((part.as_path(), entry.line, row));
            }
        }
    }

    // The parts of a sharded run go in part order (each part's rows are its block of the walk,
    // in walk order), whatever order they were given in.
    let sharded = shard_order(parts, &records)?;
    if let Some(order) = &sharded {
        let rank: HashMap<&Path, usize> = order
            .iter()
            .enumerate()
            .map(|(rank, &part)| (parts[part].as_path(), rank))
            .collect();
        // Stable: rows keep their order inside a part.
        all.sort_by_key(|(part, _, _)| rank[part]);
    }

    let mut inputs: Seen = HashMap::new();
    let mut outputs: Seen = HashMap::new();
    for (part, line, row) in &all {
        overlap("input path", &row.input_path, part, *line, &mut inputs)?;
        if !row.output_path.is_empty() {
            overlap("output path", &row.output_path, part, *line, &mut outputs)?;
        }
    }
    for (what, get) in [
        ("levels (run.json)", 1),
        (
            "level settings (run.json: strength, steps, scheduler, threshold...)",
            2,
        ),
    ] {
        let mut first: Option<&(&Path, String, String)> = None;
        for config in &configs {
            let value = if get == 1 { &config.1 } else { &config.2 };
            match first {
                None => first = Some(config),
                Some(seen) => {
                    let seen_value = if get == 1 { &seen.1 } else { &seen.2 };
                    if seen_value != value {
                        return Err(MergeError::Conflict(Box::new(Conflict {
                            kind: ConflictKind::Mixed,
                            what,
                            first_value: super::shown(seen_value),
                            first: seen.0.to_path_buf(),
                            first_line: 1,
                            second_value: super::shown(value),
                            second: config.0.to_path_buf(),
                            second_line: 1,
                        })));
                    }
                }
            }
        }
    }
    let columns: [(&str, RowValue); 9] = [
        ("policy hashes (policy_sha256)", |r| r.policy_sha256.clone()),
        ("model hashes (model_sha256)", |r| r.model_sha256.clone()),
        ("embedder hashes (embedder_sha256)", |r| {
            r.embedder_sha256.clone()
        }),
        ("detector hashes (detector_sha256)", |r| {
            r.detector_sha256.clone()
        }),
        ("levels (level)", |r| r.level.clone()),
        ("steps (steps)", |r| {
            r.steps.map(|s| s.to_string()).unwrap_or_default()
        }),
        ("schedulers (scheduler)", |r| r.scheduler.clone()),
        ("face thresholds (threshold)", |r| match r.certificate {
            Some(CertificateKind::WholeImage) => String::new(),
            _ => r.threshold.map(|t| t.to_string()).unwrap_or_default(),
        }),
        // Whole-image rows are judged at the whole-image embedder's operating point.
        ("whole-image thresholds (threshold)", |r| {
            match r.certificate {
                Some(CertificateKind::WholeImage) => {
                    r.threshold.map(|t| t.to_string()).unwrap_or_default()
                }
                _ => String::new(),
            }
        }),
    ];
    for (what, get) in columns {
        let mut first: Option<(String, &Path, u64)> = None;
        for (part, line, row) in &all {
            let value = get(row);
            if value.is_empty() {
                continue;
            }
            match &first {
                None => first = Some((value, part, *line)),
                Some((seen, seen_part, seen_line)) if *seen != value => {
                    return Err(MergeError::Conflict(Box::new(Conflict {
                        kind: ConflictKind::Mixed,
                        what,
                        first_value: super::shown(seen),
                        first: seen_part.to_path_buf(),
                        first_line: *seen_line,
                        second_value: super::shown(&value),
                        second: part.to_path_buf(),
                        second_line: *line,
                    })))
                }
                Some(_) => {}
            }
        }
    }

    let folder = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let io = |path: &Path, source: std::io::Error| MergeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let temp = tempfile::Builder::new()
        .prefix(".boomerang-merge-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(|e| io(folder, e))?
        .into_temp_path();
    let mut writer = ReportWriter::create(&temp, true)?;
    for (_, _, row) in &all {
        writer.append(row)?;
    }
    let run_record_path = crate::records::report::run_record_path(output);
    let merged_record = match &sharded {
        Some(order) => {
            if run_record_path.exists() {
                return Err(MergeError::Exists {
                    output: run_record_path,
                });
            }
            // By part number, so the merged record is the same whatever order the parts come in.
            let records: Vec<&RunRecord> = order
                .iter()
                .filter_map(|&index| records[index].as_ref())
                .collect();
            // Each part's counts were checked against its rows: the sum is the count of all.
            let counts = StatusCounts::of(all.iter().map(|(_, _, row)| row));
            Some(merged_run_record(
                &records,
                output,
                counts,
                writer.rows(),
                writer.chain_head(),
            ))
        }
        None => None,
    };
    let summary = MergeSummary {
        output: output.to_path_buf(),
        rows: writer.rows(),
        parts: parts.len(),
        chain_head: writer.chain_head().to_string(),
        unrecorded,
        run_record: merged_record.as_ref().map(|_| run_record_path.clone()),
    };
    drop(writer);
    temp.persist_noclobber(output).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            MergeError::Exists {
                output: output.to_path_buf(),
            }
        } else {
            io(output, e.error)
        }
    })?;
    if let Some(record) = &merged_record {
        record.write(&run_record_path)?;
    }
    // The new name must survive a crash too.
    std::fs::File::open(folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io(folder, e))?;
    Ok(summary)
}

fn overlap<'a>(
    what: &'static str,
    value: &str,
    part: &'a Path,
    line: u64,
    seen: &mut Seen<'a>,
) -> Result<(), MergeError> {
    match seen.get(value) {
        Some((first, first_line)) => Err(MergeError::Conflict(Box::new(Conflict {
            kind: ConflictKind::Overlap,
            what,
            first_value: super::shown(value),
            first: first.to_path_buf(),
            first_line: *first_line,
            second_value: super::shown(value),
            second: part.to_path_buf(),
            second_line: line,
        }))),
        None => {
            seen.insert(value.to_string(), (part, line));
            Ok(())
        }
    }
}

/// When any part is a part of a sharded run (its run.json has `shard`), the parts must be all N
/// parts of one run, each once: then the order of the parts (indices into `parts`) by part
/// number. `None` for parts of no sharded run (merged in the order given, as before).
fn shard_order(
    parts: &[PathBuf],
    records: &[Option<RunRecord>],
) -> Result<Option<Vec<usize>>, MergeError> {
    let Some(first) = records
        .iter()
        .position(|r| r.as_ref().is_some_and(|r| r.config.shard.is_some()))
    else {
        return Ok(None);
    };
    let shown = |index: usize| parts[index].display().to_string();
    let reference = records[first].as_ref().map(|r| &r.config);
    let Some(reference) = reference else {
        return Ok(None);
    };
    let Some(shard) = reference.shard.as_ref() else {
        return Ok(None);
    };
    let count = shard.count;
    // By part number, not a slot per part: the count is run.json's, the operator's, and a
    // forged 4294967295 must not size anything.
    let mut by_index: BTreeMap<u32, usize> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        let Some(record) = record else {
            return Err(MergeError::Shards(format!(
                "{} has no run.json beside it, so it cannot be shown to be a part of the sharded run of {}; merge the parts with their run.json files",
                shown(index),
                shown(first)
            )));
        };
        let config = &record.config;
        let Some(part) = &config.shard else {
            return Err(MergeError::Shards(format!(
                "{} is the report of a whole run, not a part of the sharded run of {} (--shard {}/{count}); merge only the parts of one sharded run",
                shown(index),
                shown(first),
                shard.index
            )));
        };
        let foreign = |what: &str, theirs: String, ours: String| {
            MergeError::Shards(format!(
                "{} is a part of another run: its {what} is {theirs}, {} has {ours}; merge only the N parts of one sharded run (same seed, policy, level, model, embedder, N and input walk)",
                shown(index),
                shown(first)
            ))
        };
        if part.count != count {
            return Err(foreign(
                "number of parts (--shard K/N)",
                part.count.to_string(),
                count.to_string(),
            ));
        }
        let checks = [
            (
                "seed (fingerprint)",
                config.fingerprint().unwrap_or_else(|| "unknown".into()),
                reference.fingerprint().unwrap_or_else(|| "unknown".into()),
            ),
            (
                "policy_sha256",
                config.policy_sha256.clone(),
                reference.policy_sha256.clone(),
            ),
            ("level", config.level.clone(), reference.level.clone()),
            (
                "level settings",
                config.level_settings.to_string(),
                reference.level_settings.to_string(),
            ),
            (
                "model_sha256",
                config.model_sha256.clone(),
                reference.model_sha256.clone(),
            ),
            (
                "embedder_sha256",
                config.embedder_sha256.clone(),
                reference.embedder_sha256.clone(),
            ),
            (
                "detector_sha256",
                config.detector_sha256.clone(),
                reference.detector_sha256.clone(),
            ),
            (
                "walk of IN (walk_sha256)",
                format!("{} ({} entries)", part.walk_sha256, part.walk_entries),
                format!("{} ({} entries)", shard.walk_sha256, shard.walk_entries),
            ),
        ];
        for (what, theirs, ours) in checks {
            if theirs != ours {
                return Err(foreign(what, theirs, ours));
            }
        }
        if part.index >= count {
            return Err(MergeError::Shards(format!(
                "{}: part {}/{count} does not exist",
                shown(index),
                part.index
            )));
        }
        match by_index.entry(part.index) {
            Entry::Occupied(earlier) => {
                return Err(MergeError::Shards(format!(
                    "part {}/{count} is given twice: {} and {}; give each part once",
                    part.index,
                    shown(*earlier.get()),
                    shown(index)
                )))
            }
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
        }
    }
    let absent = u64::from(count) - by_index.len() as u64;
    if absent > 0 {
        // At most a few named: the count may be huge.
        const NAMED: usize = 10;
        let mut missing: Vec<String> = (0..count)
            .filter(|k| !by_index.contains_key(k))
            .take(NAMED)
            .map(|k| format!("{k}/{count}"))
            .collect();
        if absent > NAMED as u64 {
            missing.push(format!("{} more", absent - NAMED as u64));
        }
        return Err(MergeError::Shards(format!(
            "the sharded run has {count} parts, but part {} {} missing; give all {count} parts' reports (OUT.part-KKKK-of-NNNN.report.csv), finished",
            missing.join(", "),
            if absent == 1 { "is" } else { "are" }
        )));
    }
    Ok(Some(by_index.into_values().collect()))
}

/// The run.json of the merged report: part 0's record without `shard`, naming the
/// merged report, its rows and chain head, with the parts' counts summed, the earliest start
/// and the latest end. The re-identification rates of the parts do not add up to the whole
/// run's (each part's gallery was its own block): they are left out, for `audit --recompute`.
fn merged_run_record(
    records: &[&RunRecord],
    output: &Path,
    counts: StatusCounts,
    rows: u64,
    chain_head: &str,
) -> RunRecord {
    let first = records[0];
    let started = records.iter().map(|r| r.started.clone()).min();
    let finished = records.iter().map(|r| r.finished.clone()).max();
    let mut config = first.config.clone();
    config.shard = None;
    config.report = output.to_path_buf();
    RunRecord {
        config,
        counts,
        started: started.unwrap_or_default(),
        finished: finished.unwrap_or_default(),
        report_path: output.display().to_string(),
        report_rows: rows,
        report_chain_head: chain_head.to_string(),
        reidentification_rate: None,
        reidentification_chance: None,
        adversary: None,
        merged_parts: Some(records.len() as u32),
        ..first.clone()
    }
}
