//! `boomerang audit`: lets someone who did not run an anonymization check it from what they were
//! handed (the private report, `run.json`, the output folder, the policy, model and embedder),
//! without trusting the operator; and `boomerang report merge` for runs split into parts.
//!
//! Every check that fails is a [`Finding`] (one line each); checks that could not be made for lack
//! of a file are listed as not checked, never skipped silently. Exit status: 0 clean, 3 findings,
//! 1 the audit itself could not run.

mod chain;
mod checks;
pub mod html;
pub mod merge;
mod sample;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diffusion::model_manifest::ModelManifestError;
use crate::io::runtime::Device;
use crate::policy::{Policy, PolicyError};
use crate::records::report::{ReportRow, RunRecord};

pub use merge::{merge, Conflict, ConflictKind, MergeError, MergeSummary};
pub use sample::{
    random_nonce, sample, Key as SampleKey, RecomputedRate, Recomputer, Rescored, RERUN_STREAM,
    RESCORE_STREAM,
};

/// Default `--distance-tolerance`: re-scoring on another machine or execution provider moves
/// distances in the last float digits, not by 1e-4.
pub const DEFAULT_DISTANCE_TOLERANCE: f32 = 1e-4;

/// What to audit and against what (`boomerang audit`).
#[derive(Debug, Clone, Default)]
pub struct AuditConfig {
    /// The run's own files: its report, folders and run.json
    pub run: RunFiles,
    /// The files the run claims to have used, each checked against every row
    pub claimed: ClaimedFiles,
    /// Which rows to re-score and re-run, and how closely they must agree
    pub recheck: Recheck,
    /// Also write a one-page HTML summary (self-contained; no input pixels or input file names)
    pub html: Option<PathBuf>,
    /// Print the result as JSON on stdout instead of lines
    pub json: bool,
}

/// The files of the audited run (`boomerang audit REPORT --outputs --inputs --run-json`).
#[derive(Debug, Clone, Default)]
pub struct RunFiles {
    /// The run's private CSV report
    pub report: PathBuf,
    /// The run's output folder: every listed output must be there with its sha256, and nothing
    /// else may be
    pub outputs: Option<PathBuf>,
    /// The run's input folder: every input must match its sha256 and have a row (also what
    /// --recompute and --seed-sample read)
    pub inputs: Option<PathBuf>,
    /// The run's run.json (default: OUT.run.json or run.json beside the report, when it names
    /// this report)
    pub run_json: Option<PathBuf>,
    /// The run's secret file (`--seed-file`), for a run seeded from one: run.json then holds only
    /// the seed's fingerprint, and the rows' seeds can be checked only with the seed
    pub seed_file: Option<PathBuf>,
}

/// The files an audited run claims to have used (`--policy --model --embedder --detector`).
#[derive(Debug, Clone, Default)]
pub struct ClaimedFiles {
    /// The policy file the run claims: its sha256 must match every row, and each row's verdict,
    /// threshold, attempts and strength must follow its rules
    pub policy: Option<PathBuf>,
    /// The model folder: its manifest hash (`boomerang manifest`) must match every row
    pub model: Option<PathBuf>,
    /// The embedder spec file: its sha256 (or its ONNX graph's) must match every row, its metric
    /// each row's, and its operating points give the thresholds a policy names
    pub embedder: Option<PathBuf>,
    /// The face detector ONNX file: its sha256 must match every row's `detector_sha256` (without
    /// it, rows are checked against the embedder spec's `detector-sha256` pin)
    pub detector: Option<PathBuf>,
}

/// The rows an audit recomputes (`--recompute --seed-sample --nonce --distance-tolerance`).
#[derive(Debug, Clone)]
pub struct Recheck {
    /// Re-score N rows (drawn by a sample keyed by --nonce) with the embedder and compare their
    /// distances, re-run Boomerang for N rows (as --seed-sample N) and recompute the
    /// re-identification rate. Needs --inputs, --outputs and --policy
    pub recompute: usize,
    /// Re-run Boomerang for N rows, drawn by a sample keyed by --nonce, from their seeds and check
    /// the outputs are byte-identical
    pub seed_sample: usize,
    /// The auditor's text that decides which rows --recompute and --seed-sample draw (default: a
    /// random one from the operating system, printed so the audit can be repeated)
    pub nonce: Option<String>,
    /// Largest difference between a re-scored and a reported distance that is not a finding
    pub distance_tolerance: f32,
    /// Where re-runs run: byte-identical outputs are expected on the device (and ONNX Runtime
    /// build) the run used
    pub device: Device,
}

impl Default for Recheck {
    /// Nothing recomputed, every option at its command-line default.
    fn default() -> Self {
        Recheck {
            recompute: 0,
            seed_sample: 0,
            nonce: None,
            distance_tolerance: DEFAULT_DISTANCE_TOLERANCE,
            device: Device::Cpu,
        }
    }
}

/// Why an audit could not run (exit 1), as opposed to what it found (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a folder (--outputs)")]
    NotAFolder { path: PathBuf },
    #[error("cannot walk the input folder {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: crate::io::dataset::DatasetError,
    },
    #[error("{path}: cannot read the embedder spec")]
    Spec {
        path: PathBuf,
        #[source]
        source: crate::certify::spec::SpecError,
    },
    #[error("{path}:1: not a boomerang report: the header is `{found}`, expected `{expected}`", expected = crate::records::report::header_line())]
    Header { path: PathBuf, found: String },
    #[error("{path}: not a boomerang run.json: {message}")]
    RunJson { path: PathBuf, message: String },
    #[error("cannot audit against the policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("cannot hash the model folder: {0}")]
    ModelManifest(#[from] ModelManifestError),
    #[error("--recompute and --seed-sample need the anonymize engine, which this caller did not provide")]
    NoRecomputer,
    #[error("--distance-tolerance {0} must be a finite number >= 0")]
    Tolerance(f32),
    #[error("--seed-file: {0}")]
    Secret(#[from] crate::io::secret::SecretError),
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> AuditError {
    AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A row was edited, inserted, deleted or moved.
    Chain,
    /// The last row has no line break (a run died while writing it).
    Torn,
    /// A row that cannot be read as a report row.
    RowFormat,
    /// The report disagrees with run.json (rows cut from the end, counts).
    RunRecord,
    OutputMissing,
    OutputHash,
    /// A file in the output folder that no row lists.
    OutputUnlisted,
    /// An output path that is absolute, leaves the folder, or is listed twice.
    OutputPath,
    /// An input path listed by more than one row.
    InputPath,
    InputMissing,
    InputHash,
    /// A file in the input folder that has no row.
    InputUnlisted,
    /// A status that contradicts the row's own distance and threshold.
    Verdict,
    /// A row that does not follow the policy (level, threshold, attempts, strength, on-failure).
    Rule,
    /// A policy, model or embedder hash that differs from the files given, or between rows.
    Hash,
    /// A re-scored distance or a re-run output that does not match the report.
    Recompute,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Chain => "chain",
            FindingKind::Torn => "torn",
            FindingKind::RowFormat => "row-format",
            FindingKind::RunRecord => "run-record",
            FindingKind::OutputMissing => "output-missing",
            FindingKind::OutputHash => "output-hash",
            FindingKind::OutputUnlisted => "output-unlisted",
            FindingKind::OutputPath => "output-path",
            FindingKind::InputPath => "input-path",
            FindingKind::InputMissing => "input-missing",
            FindingKind::InputHash => "input-hash",
            FindingKind::InputUnlisted => "input-unlisted",
            FindingKind::Verdict => "verdict",
            FindingKind::Rule => "rule",
            FindingKind::Hash => "hash",
            FindingKind::Recompute => "recompute",
        }
    }
}

/// One failed check. `message` never holds an input path (those identify people and the HTML page
/// travels); the input path, when relevant, is in `input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The report line (1-based; the header is line 1) the finding is about.
    pub line: Option<u64>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub message: String,
}

impl Finding {
    pub(crate) fn new(kind: FindingKind, line: Option<u64>, message: impl Into<String>) -> Self {
        Finding {
            kind,
            line,
            input: None,
            output: None,
            message: message.into(),
        }
    }

    pub(crate) fn input(mut self, path: &str) -> Self {
        self.input = Some(path.to_string());
        self
    }

    pub(crate) fn output(mut self, path: &str) -> Self {
        self.output = Some(path.to_string());
        self
    }
}

impl std::fmt::Display for Finding {
    /// `finding: [kind] line N (input X, output Y): message`, with control characters in paths
    /// escaped so a file name cannot rewrite the terminal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "finding: [{}]", self.kind.as_str())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        let places: Vec<String> = [("input", &self.input), ("output", &self.output)]
            .into_iter()
            .filter_map(|(what, path)| path.as_ref().map(|p| format!("{what} {}", shown(p))))
            .collect();
        if !places.is_empty() {
            write!(f, " ({})", places.join(", "))?;
        }
        write!(f, ": {}", shown(&self.message))
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`...).
pub(crate) fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One report row as read back: where it is, and its fields when they parse.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line where the row starts (the header is line 1).
    pub line: u64,
    /// `None` when the row does not parse (a `row-format` finding says why).
    pub row: Option<ReportRow>,
    /// The chain field as written.
    pub chain: String,
}

/// run.json as found, with the extra dataset-level figures the page shows.
#[derive(Debug, Clone)]
pub struct RunJson {
    pub path: PathBuf,
    pub record: RunRecord,
    /// Top-1 re-identification rate (inputs as gallery, outputs as probes), 0..=1, and the rate
    /// of guessing, from the top-level `reidentification_rate` and `reidentification_chance` keys
    /// when the run wrote them.
    pub reidentification_rate: Option<f64>,
    pub reidentification_chance: Option<f64>,
}

/// The hashes of the files the auditor gave, for the record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GivenHashes {
    pub policy: Option<String>,
    pub model: Option<String>,
    /// sha256 of the embedder spec file (what `embedder_sha256` records).
    pub embedder: Option<String>,
    /// sha256 of the spec's ONNX graph (also accepted as `embedder_sha256`: it identifies the
    /// same embedder).
    pub embedder_graph: Option<String>,
    /// sha256 of the `--detector` file, else the embedder spec's `detector-sha256` pin.
    pub detector: Option<String>,
}

/// The dataset-level re-identification rate the audit shows, and whether it recomputed it or
/// only repeats run.json's claim.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reidentification {
    pub rate: f64,
    pub chance: Option<f64>,
    /// Recomputed from the files by this audit (`--recompute`); otherwise taken from run.json.
    pub verified: bool,
}

impl Reidentification {
    /// E.g. `12.50 % (chance 33.33 %), recomputed` or `... unverified (from run.json)`.
    pub fn describe(&self) -> String {
        let chance = self
            .chance
            .map(|c| format!(" (chance {:.2} %)", c * 100.0))
            .unwrap_or_default();
        format!(
            "{:.2} %{chance}, {}",
            self.rate * 100.0,
            if self.verified {
                "recomputed by this audit"
            } else {
                "unverified (from run.json)"
            }
        )
    }
}

/// Everything an audit found out.
#[derive(Debug, Clone)]
pub struct Audit {
    pub report: PathBuf,
    pub entries: Vec<Entry>,
    /// The chain field of the last row (the genesis value when there are no rows).
    pub chain_head: String,
    pub run: Option<RunJson>,
    pub given: GivenHashes,
    pub findings: Vec<Finding>,
    /// Checks not made, each with what to give to make it.
    pub not_checked: Vec<String>,
    /// Report lines re-scored and re-run.
    pub rescored: Vec<u64>,
    pub rerun: Vec<u64>,
    /// The text that keyed the sample of rows to recompute (give it as --nonce to draw the same).
    pub nonce: String,
    /// The re-identification rate shown, recomputed or marked as run.json's claim.
    pub reidentification: Option<Reidentification>,
}

/// How an audit ended, when it could run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Findings,
}

impl Audit {
    pub fn outcome(&self) -> Outcome {
        if self.findings.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Findings
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = &ReportRow> {
        self.entries.iter().filter_map(|e| e.row.as_ref())
    }

    /// The text verdict line.
    pub fn verdict(&self) -> String {
        match self.findings.len() {
            0 => format!(
                "verdict: clean ({} rows, chain head {})",
                self.entries.len(),
                self.chain_head
            ),
            n => format!(
                "verdict: {n} finding{} in {} rows (chain head {})",
                if n == 1 { "" } else { "s" },
                self.entries.len(),
                self.chain_head
            ),
        }
    }
}

/// Runs every check the arguments allow. `recomputer` is required when `--recompute` or
/// `--seed-sample` asks for recomputation.
pub fn audit(
    args: &AuditConfig,
    recomputer: Option<&mut dyn Recomputer>,
) -> Result<Audit, AuditError> {
    if !(args.recheck.distance_tolerance.is_finite() && args.recheck.distance_tolerance >= 0.0) {
        return Err(AuditError::Tolerance(args.recheck.distance_tolerance));
    }
    if (args.recheck.recompute > 0 || args.recheck.seed_sample > 0) && recomputer.is_none() {
        return Err(AuditError::NoRecomputer);
    }
    let read = chain::read(&args.run.report)?;
    let mut findings = read.findings;
    let entries = read.entries;
    let chain_head = entries
        .last()
        .map_or_else(crate::records::report::genesis, |e| e.chain.clone());
    let mut not_checked = Vec::new();

    let run = match &args.run.run_json {
        Some(path) => Some(checks::load_run_json(path)?),
        None => checks::find_run_json(&args.run.report, &mut not_checked)?,
    };
    match &run {
        Some(run) => findings.extend(checks::run_record(
            &args.run.report,
            &entries,
            &chain_head,
            run,
        )),
        None => not_checked.push(
            "rows cut from the end of the report (no run.json found: give --run-json FILE)".into(),
        ),
    }

    match &args.run.outputs {
        Some(dir) => findings.extend(checks::outputs(&entries, dir)?),
        None => {
            not_checked.push("output files and unlisted files (give --outputs DIR)".to_string())
        }
    }
    findings.extend(checks::repeated_inputs(&entries));
    match &args.run.inputs {
        Some(dir) => findings.extend(checks::inputs(&entries, dir)?),
        None => not_checked.push("input files (give --inputs DIR)".to_string()),
    }

    let mut given = GivenHashes::default();
    let policy = match &args.claimed.policy {
        Some(path) => {
            let policy = Policy::load(path)?;
            given.policy = Some(policy.sha256.clone());
            Some(policy)
        }
        None => {
            not_checked.push(
                "the policy hash and the policy's rules (on-failure, attempts, strength, thresholds; give --policy FILE)"
                    .to_string(),
            );
            None
        }
    };
    if let Some(dir) = &args.claimed.model {
        given.model =
            Some(crate::diffusion::model_manifest::ModelManifest::compute(dir)?.model_hash());
    } else {
        not_checked.push("the model hash (give --model DIR)".to_string());
    }
    let embedder = match &args.claimed.embedder {
        Some(path) => {
            let facts = checks::embedder_facts(path)?;
            given.embedder = Some(facts.spec_sha256.clone());
            given.embedder_graph = Some(facts.graph_sha256.clone());
            given.detector.clone_from(&facts.detector_pin);
            findings.extend(facts.pin_mismatch.clone());
            Some(facts)
        }
        None => {
            not_checked.push("the embedder hash and metric (give --embedder SPEC)".to_string());
            None
        }
    };
    // Whole-image rows are judged by the policy's feature embedder: its spec, as the policy
    // names it.
    let feature = match policy.as_ref().and_then(|p| p.feature_embedder.as_ref()) {
        Some(feature) => Some(checks::embedder_facts(&feature.spec)?),
        None => None,
    };
    let opinions = match &policy {
        Some(policy) => Some(checks::second_opinion_facts(policy, &mut not_checked)?),
        None => None,
    };
    // A spec that pins another graph or detector than its files decides nothing it can vouch for.
    for facts in feature
        .iter()
        .chain(opinions.iter().flatten().map(|o| &o.facts))
    {
        findings.extend(facts.pin_mismatch.clone());
    }
    if let Some(path) = &args.claimed.detector {
        given.detector =
            Some(crate::io::hashing::sha256_file(path).map_err(|e| io_error(path, e))?);
    }
    if given.detector.is_none() {
        not_checked.push(
            "the detector hash (give --detector FILE, or an --embedder spec that pins detector-sha256)"
                .to_string(),
        );
    }
    findings.extend(checks::hashes(&entries, &given, policy.as_ref()));
    match &run {
        Some(run) => {
            let run_seed = checks::run_seed(
                run,
                args.run.seed_file.as_deref(),
                &mut findings,
                &mut not_checked,
            )?;
            findings.extend(checks::run_config_rows(
                &entries,
                run,
                run_seed,
                embedder.as_ref(),
                feature.as_ref(),
                policy.is_some(),
                &mut not_checked,
            ));
            if let Some(policy) = &policy {
                findings.extend(checks::level_settings(run, policy));
                findings.extend(checks::spec_hashes(
                    run,
                    feature.as_ref(),
                    opinions.as_deref().unwrap_or_default(),
                ));
            }
        }
        None => not_checked.push(
            "rows against the run's configuration (level, strength, steps, scheduler, threshold, seeds: give --run-json FILE)"
                .to_string(),
        ),
    }
    match &args.run.inputs {
        Some(dir) => findings.extend(checks::skipped_images(
            &entries,
            dir,
            policy.as_ref(),
            run.as_ref(),
            &mut not_checked,
        )?),
        None => not_checked.push("skipped rows of valid images (give --inputs DIR)".to_string()),
    }
    findings.extend(checks::verdicts(
        &entries,
        policy.as_ref(),
        embedder.as_ref(),
        feature.as_ref(),
        opinions.as_deref(),
        &mut not_checked,
    ));

    let nonce = args.recheck.nonce.clone().unwrap_or_else(random_nonce);
    let mut reidentification = run.as_ref().and_then(|r| {
        Some(Reidentification {
            rate: r.reidentification_rate?,
            chance: r.reidentification_chance,
            verified: false,
        })
    });
    let mut rescored = Vec::new();
    let mut rerun = Vec::new();
    if let Some(recomputer) = recomputer {
        let done = sample::recompute(
            &entries,
            &sample::Key {
                nonce: &nonce,
                chain_head: &chain_head,
            },
            args.recheck.recompute,
            args.recheck.seed_sample,
            args.recheck.distance_tolerance,
            recomputer,
        );
        findings.extend(done.findings);
        rescored = done.rescored;
        rerun = done.rerun;
        if args.recheck.recompute > 0 {
            let (figure, finding) =
                sample::reidentify(&entries, run.as_ref(), recomputer, reidentification);
            reidentification = figure;
            findings.extend(finding);
        }
    }
    if reidentification.is_some_and(|r| !r.verified) {
        not_checked.push(
            "the re-identification rate, shown as run.json states it (give --recompute N to recompute it)"
                .to_string(),
        );
    }
    if args.recheck.recompute == 0 {
        not_checked.push(
            "re-scored distances (give --recompute N with --inputs, --outputs and --policy)"
                .to_string(),
        );
    }
    let run_devices = run.as_ref().map(|r| r.record.config.device.as_str());
    if let Some(used) = run_devices.filter(|used| {
        args.recheck.seed_sample > 0
            && used
                .split(',')
                .any(|d| d != args.recheck.device.to_string())
    }) {
        not_checked.push(format!(
            "reproducibility on the run's device: it used {used}, the outputs were re-run on {}; outputs are byte-identical only on the same device with the same ONNX Runtime build, so a re-run that differs may differ by device (audit with --device {})",
            args.recheck.device,
            used.split(',').next().unwrap_or(used)
        ));
    }
    if args.recheck.seed_sample == 0 {
        not_checked.push(
            "reproducibility of outputs (give --recompute N or --seed-sample N with --inputs, --outputs and --policy)"
                .to_string(),
        );
    }

    findings.sort_by_key(|f| f.line.unwrap_or(u64::MAX));
    Ok(Audit {
        report: args.run.report.clone(),
        entries,
        chain_head,
        run,
        given,
        findings,
        not_checked,
        rescored,
        rerun,
        nonce,
        reidentification,
    })
}
