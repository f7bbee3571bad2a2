//! `boomerang report merge`: joins the reports of a run split into parts into one report with a
//! fresh chain, after checking each part, and refuses parts that overlap or disagree on what ran.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::chain;
use super::checks;
use crate::records::report::{ReportError, ReportRow, ReportWriter};

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
            }
            None => unrecorded.push(part.clone()),
        }
        for entry in read.entries {
            // A report without findings has every row parsed.
            if let Some(row) = entry.row {
                all.push((part.as_path(), entry.line, row));
            }
        }
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
    let columns: [(&str, RowValue); 8] = [
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
        ("thresholds (threshold)", |r| {
            r.threshold.map(|t| t.to_string()).unwrap_or_default()
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
    let summary = MergeSummary {
        output: output.to_path_buf(),
        rows: writer.rows(),
        parts: parts.len(),
        chain_head: writer.chain_head().to_string(),
        unrecorded,
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
