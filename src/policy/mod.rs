//! Anonymization policies: TOML files (`policies/*.toml`) that name the model, the certification
//! embedder and, per level, every knob of the Boomerang pass and of the certification loop.
//!
//! A policy is parsed strictly (kebab-case keys, unknown keys rejected with file and line), then
//! every value is range-checked; all problems are reported at once, each with its file, line,
//! table and key, so an auditor can read a policy and know exactly what a run will do.
//!
//! Parse, then validate: serde reads the file into the private `Raw*` structs (values as
//! written, with their spans), `validate` checks them section by section and builds the typed
//! [`Policy`] (enums and numbers, e.g. [`Level::scheduler`] is a [`SchedulerKind`]), so nothing
//! downstream parses a policy string again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::certify::spec::{EmbedderSpec, OperatingPoint, SpecError};
use crate::certify::{CertificateKind, Certifier, CertifyError};
use crate::diffusion::scheduler::SchedulerKind;
use crate::io::hashing::sha256_bytes;
use crate::io::runtime::{Runtime, SessionOptions};

/// The policy format versions this build reads.
pub const SUPPORTED_VERSIONS: &[i64] = &[1];

/// Training timesteps of Stable Diffusion 1.x/2.x (`num_train_timesteps`): a `start-timestep` t
/// stands for strength t / 1000, the paper's convention.
pub const TRAIN_TIMESTEPS: u32 = 1000;

/// The largest `guidance` a level may use. diffusers' img2img default is 7.5 and image tools
/// offer scales up to about 30; far beyond that classifier-free guidance extrapolates the
/// noise prediction so hard that the output saturates (1e30 gives flat single-colour images).
pub const MAX_GUIDANCE: f64 = 30.0;

/// Strengths are decimal numbers with at most this many places, so escalation (`strength +
/// attempt x strength-step`) is exact: 0.7 + 0.1 must be 0.8, not 0.7999999999999999, because
/// diffusers' `int(steps x strength)` would then run one step fewer.
const MICROS: f64 = 1e6;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // The sources are not repeated in the messages: `error: {:#}` prints the chain.
    #[error("{path}: cannot read the policy")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no policy named `{name}`: looked at {looked}; pass --policy PATH to a policy file")]
    NotFound { name: String, looked: String },
    #[error("{path}: not UTF-8 text")]
    NotUtf8 {
        path: PathBuf,
        source: std::str::Utf8Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}:{line}:{column}: policy version {found} is not supported; this build reads version {supported}", supported = supported_versions())]
    Version {
        path: PathBuf,
        line: usize,
        column: usize,
        found: String,
    },
    #[error("{path}: {} problem(s):\n{}", problems.len(), list_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{path}: no level `{name}`; the policy defines: {available}")]
    UnknownLevel {
        path: PathBuf,
        name: String,
        available: String,
    },
}

/// One value that failed validation: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// The TOML table: `model`, `embedder`, `levels.medium`, or empty for the top level.
    pub table: String,
    pub key: String,
    pub message: String,
}

impl Problem {
    /// The level this problem is in, when it is in one.
    pub fn level(&self) -> Option<&str> {
        self.table.strip_prefix("levels.")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if self.table.is_empty() {
            format!("`{}`", self.key)
        } else {
            format!("[{}] `{}`", self.table, self.key)
        };
        write!(
            f,
            "{}:{}: {place}: {}",
            self.line, self.column, self.message
        )
    }
}

fn list_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {}:{p}", path.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ddim, ddpm, euler, euler-ancestral, pndm, lcm`: the `--scheduler` names a level may use.
fn scheduler_names() -> String {
    SchedulerKind::ALL.map(SchedulerKind::cli_name).join(", ")
}

fn supported_versions() -> String {
    SUPPORTED_VERSIONS
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What happens to an image whose output still matches its input after the last attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Keep the last output, marked `failed` in the report.
    Flag,
    /// Write no output; the report row says `failed`.
    Drop,
}

/// What happens when the face detector finds no face in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnNoFace {
    /// Certify on embeddings of the whole (resized) image instead of a face crop.
    WholeImage,
    /// Write no output; the report row says `skipped`.
    Skip,
    /// Anonymize without certification and mark the row for review.
    Flag,
}

/// What happens when an input face has no output face at its place (see
/// `certify::CertificateKind::FaceLost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFaceLost {
    /// A failed attempt: retried, and `failed` after the last one. Nothing showed the face
    /// became someone else; the detector only stopped finding it.
    Fail,
    /// Certified when every face still found is a different identity (an explicit choice: a
    /// face the detector misses in the output may still be recognisable to people).
    Accept,
}

/// What of an image a level re-generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Region {
    /// The whole image, at its own size (in fused tiles when larger than the model's square).
    Whole,
    /// Each detected face with a margin, at the model's working size, blended back; every
    /// other pixel stays the input's. An input without a face falls back to the whole image.
    Faces,
}

/// The default `working-megapixels`: a 4000x3000 phone photo runs at its own size.
pub const DEFAULT_WORKING_MEGAPIXELS: f64 = 12.0;

/// The largest `working-megapixels`: the input budget (`--max-megapixels`) default.
pub const MAX_WORKING_MEGAPIXELS: f64 = 50.0;

/// The certification threshold: a named operating point of the embedder spec, or a distance.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Threshold {
    OperatingPoint(String),
    /// A distance in the embedder's metric: pairs closer than this are the same person.
    Value(f32),
}

/// Where the reverse process starts, as the policy file wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    Strength(f64),
    /// Out of [`TRAIN_TIMESTEPS`]; strength = t / 1000.
    Timestep(u32),
}

impl Start {
    pub fn strength(self) -> f64 {
        match self {
            Start::Strength(s) => s,
            Start::Timestep(t) => f64::from(t) / f64::from(TRAIN_TIMESTEPS),
        }
    }
}

/// One anonymization level, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Level {
    pub name: String,
    pub start: Start,
    pub steps: usize,
    /// `None`: the model folder's own `scheduler_config.json`. Written (run.json) by its
    /// `--scheduler` name, as the policy file spells it.
    #[serde(serialize_with = "serialize_scheduler")]
    pub scheduler: Option<SchedulerKind>,
    /// DDIM's eta, in 0..=1 (0 when absent; only allowed with `ddim`).
    pub eta: f32,
    pub prompt: String,
    pub negative_prompt: String,
    /// Classifier-free guidance scale, in 0..=[`MAX_GUIDANCE`] (1 and below: off).
    pub guidance: f32,
    pub threshold: Threshold,
    pub max_attempts: u32,
    pub strength_step: f64,
    pub max_strength: f64,
    pub on_failure: OnFailure,
    pub on_no_face: OnNoFace,
    pub on_face_lost: OnFaceLost,
    pub rename_files: bool,
    /// Class folders get keyed names too (the mapping is only in the private report).
    pub rename_folders: bool,
    pub region: Region,
    /// Images with more pixels are generated shrunk to this many megapixels, then resized back.
    pub working_megapixels: f64,
}

impl Level {
    /// Whether this level certifies an output whose comparison was of `kind` (when every
    /// compared pair is a different identity).
    pub fn accepts(&self, kind: CertificateKind) -> bool {
        match kind {
            CertificateKind::Face => true,
            CertificateKind::FaceLost => self.on_face_lost == OnFaceLost::Accept,
            CertificateKind::WholeImage => self.on_no_face == OnNoFace::WholeImage,
        }
    }

    /// The face operating point this level certifies at: the named point of `spec`, or its
    /// threshold value as a point of its own.
    pub fn operating_point(&self, spec: &EmbedderSpec) -> Result<OperatingPoint, SpecError> {
        Ok(match &self.threshold {
            Threshold::OperatingPoint(name) => spec.operating_point(Some(name))?.clone(),
            Threshold::Value(max_distance) => OperatingPoint {
                name: "policy threshold".into(),
                max_distance: Some(*max_distance),
                min_similarity: None,
                provenance: "the policy's threshold value".into(),
                ..OperatingPoint::default()
            },
        })
    }

    /// The certificate kinds this level accepts, for messages.
    pub fn accepted_kinds(&self) -> Vec<CertificateKind> {
        CertificateKind::ALL
            .into_iter()
            .filter(|kind| self.accepts(*kind))
            .collect()
    }

    /// The strength of the first attempt.
    pub fn strength(&self) -> f64 {
        self.start.strength()
    }

    /// The strength of attempt `attempt` (0 = the first try): raised by `strength-step` per
    /// retry, capped at `max-strength`, in exact decimal arithmetic (see [`MICROS`]).
    pub fn strength_for_attempt(&self, attempt: u32) -> f64 {
        let base = micros(self.strength());
        let step = micros(self.strength_step);
        let cap = micros(self.max_strength);
        let raised = base.saturating_add(step.saturating_mul(i64::from(attempt)));
        raised.min(cap).max(base) as f64 / MICROS
    }
}

fn serialize_scheduler<S: serde::Serializer>(
    kind: &Option<SchedulerKind>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    kind.map(SchedulerKind::cli_name).serialize(serializer)
}

fn micros(value: f64) -> i64 {
    (value * MICROS).round() as i64
}

/// The model folder a policy runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelRef {
    /// Absolute (resolved against the policy file's folder).
    pub path: PathBuf,
    /// Lowercase hex model hash (`boomerang manifest`); a run refuses a model that differs.
    pub manifest_sha256: Option<String>,
    /// The Hugging Face model id the folder is exported from, for the "model missing" message.
    pub export_from: Option<String>,
}

/// The certification embedder a policy uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EmbedderRef {
    /// Absolute path of the embedder spec (TOML).
    pub spec: PathBuf,
}

/// A second face embedder that must agree: a row is certified only when every second opinion
/// also finds every compared face pair a different identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecondOpinion {
    /// Absolute path of the embedder spec (TOML).
    pub spec: PathBuf,
    /// `None`: the spec's default operating point.
    pub operating_point: Option<String>,
}

/// A loaded, validated policy file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    /// The policy file, absolute.
    pub source: PathBuf,
    /// Hex sha256 of the policy file's bytes (the report's `policy_sha256`).
    pub sha256: String,
    pub version: u32,
    pub default_level: String,
    pub model: ModelRef,
    pub embedder: EmbedderRef,
    /// Embeds whole images for `whole-image` certificates (a spec with `subject =
    /// "whole-image"`); required when a level certifies images without a face.
    pub feature_embedder: Option<EmbedderRef>,
    pub second_opinions: Vec<SecondOpinion>,
    /// In file order.
    pub levels: Vec<Level>,
}

/// Environment variable naming a folder of policies, searched first for a policy by name.
pub const POLICIES_ENV: &str = "BOOMERANG_POLICIES";

/// A policy path as given, or, for a bare name such as `demo` that is not a file here,
/// `NAME.toml` in `$BOOMERANG_POLICIES`, `./policies`, the data folder's `policies/`, then the
/// source tree's `policies/` this binary was built from, so `--policy demo` works anywhere.
pub fn find(given: &Path) -> Result<PathBuf, PolicyError> {
    let bare = given.components().count() == 1 && given.extension().is_none();
    if given.exists() || !bare {
        return Ok(given.to_path_buf());
    }
    let file = given.with_extension("toml");
    let folders = crate::io::data_dir::search_folders(POLICIES_ENV, "policies");
    let candidates: Vec<PathBuf> = folders.iter().map(|folder| folder.join(&file)).collect();
    candidates
        .iter()
        .find(|candidate| candidate.is_file())
        .cloned()
        .ok_or_else(|| PolicyError::NotFound {
            name: given.display().to_string(),
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Policy {
    /// Loads a policy file, or a policy by name ([`find`]: `default`, `demo`).
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let path = &find(path)?;
        let io = |source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::read(path).map_err(io)?;
        let text = std::str::from_utf8(&bytes).map_err(|source| PolicyError::NotUtf8 {
            path: path.to_path_buf(),
            source,
        })?;
        // Relative paths resolve against the canonical folder of the file, so a policy means the
        // same model wherever the command is run from.
        let absolute = std::fs::canonicalize(path).map_err(io)?;
        let folder = absolute.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut policy = parse(text, path, &folder)?;
        policy.source = absolute;
        policy.sha256 = hex::encode(sha256_bytes(&bytes));
        Ok(policy)
    }

    pub fn level(&self, name: &str) -> Result<&Level, PolicyError> {
        self.levels
            .iter()
            .find(|level| level.name == name)
            .ok_or_else(|| PolicyError::UnknownLevel {
                path: self.source.clone(),
                name: name.to_string(),
                available: self.level_names().join(", "),
            })
    }

    /// The certifier this policy names: the face embedder of `face_spec` (the policy's own, or
    /// the one an auditor was given) with `detector`, the policy's whole-image embedder and its
    /// second opinions, sessions opened with `options`.
    pub fn certifier(
        &self,
        runtime: &Runtime,
        face_spec: &Path,
        detector: &Path,
        options: &SessionOptions,
    ) -> Result<Certifier, CertifyError> {
        let mut certifier = Certifier::load(runtime, face_spec, detector, options)?;
        if let Some(feature) = &self.feature_embedder {
            certifier = certifier.with_whole_image_embedder(runtime, &feature.spec, options)?;
        }
        for opinion in &self.second_opinions {
            certifier = certifier.with_second_opinion(
                runtime,
                &opinion.spec,
                opinion.operating_point.as_deref(),
                options,
            )?;
        }
        Ok(certifier)
    }

    pub fn level_names(&self) -> Vec<&str> {
        self.levels
            .iter()
            .map(|level| level.name.as_str())
            .collect()
    }
}

/// Parses and validates policy text; `path` names the file in errors and `folder` is where
/// relative paths resolve. `source` and `sha256` are left for [`Policy::load`] to fill.
fn parse(text: &str, path: &Path, folder: &Path) -> Result<Policy, PolicyError> {
    check_version(text, path)?;
    let (raw, unknown) = read_raw(text, path)?;
    let mut problems = Problems {
        text,
        list: unknown,
    };
    let policy = validate(raw, folder, &mut problems);
    match policy {
        Some(policy) if problems.list.is_empty() => Ok(policy),
        _ => Err(PolicyError::Invalid {
            path: path.to_path_buf(),
            problems: problems.list,
        }),
    }
}

/// The version is read first, on its own, so a file of another version fails with a version
/// message rather than with whatever keys that version renamed.
fn check_version(text: &str, path: &Path) -> Result<(), PolicyError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<Spanned<toml::Value>>,
    }
    let only: VersionOnly = toml::from_str(text).map_err(|e| parse_error(text, path, &e))?;
    let Some(version) = only.version else {
        return Err(PolicyError::Parse {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!(
                "missing top-level `version` (this build reads version {})",
                supported_versions()
            ),
        });
    };
    let (line, column) = line_column(text, version.span().start);
    match version.get_ref() {
        toml::Value::Integer(v) if SUPPORTED_VERSIONS.contains(v) => Ok(()),
        other => Err(PolicyError::Version {
            path: path.to_path_buf(),
            line,
            column,
            found: other.to_string(),
        }),
    }
}

/// The policy's tables, and a problem per unknown key. Reading stops at the first unknown key,
/// which would hide every other problem (and every other typo) behind it: each one found is
/// commented out, keeping every byte offset, and the text read again.
fn read_raw(text: &str, path: &Path) -> Result<(RawPolicy, Vec<Problem>), PolicyError> {
    let mut edited = text.to_string();
    let mut unknown = Vec::new();
    loop {
        let error = match toml::from_str::<RawPolicy>(&edited) {
            Ok(raw) => return Ok((raw, unknown)),
            Err(error) => error,
        };
        let key = error
            .span()
            .filter(|_| error.message().starts_with("unknown field"))
            .and_then(|span| Some((span.clone(), edited.get(span)?.to_string())));
        let Some((span, key)) = key else {
            // Another kind of problem: after unknown keys it may come from commenting out a
            // value that spans lines, so those are reported alone; fixed, the rest shows.
            return match unknown.is_empty() {
                true => Err(parse_error(&edited, path, &error)),
                false => Err(PolicyError::Invalid {
                    path: path.to_path_buf(),
                    problems: unknown,
                }),
            };
        };
        let (line, column) = line_column(&edited, span.start);
        unknown.push(Problem {
            line,
            column,
            table: table_at(&edited, span.start),
            key: key.trim_matches(['"', '\'']).to_string(),
            message: error
                .message()
                .trim_end()
                .replacen("unknown field", "unknown key", 1),
        });
        let start = edited[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let end = edited[span.start..]
            .find('\n')
            .map_or(edited.len(), |i| span.start + i);
        let blank = format!("#{}", " ".repeat(end - start - 1));
        edited.replace_range(start..end, &blank);
    }
}

/// The `[table]` or `[[table]]` header that `offset` is under; empty at the top level.
fn table_at(text: &str, offset: usize) -> String {
    text[..offset]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['))
        .map(|header| {
            let name = header.trim_start_matches('[').split(']').next();
            name.unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

fn parse_error(text: &str, path: &Path, error: &toml::de::Error) -> PolicyError {
    let (line, column) = error
        .span()
        .map(|span| line_column(text, span.start))
        .unwrap_or((1, 1));
    PolicyError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: error.message().trim_end().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawPolicy {
    /// Already checked by `check_version`.
    version: i64,
    default_level: Spanned<String>,
    model: RawModel,
    embedder: RawEmbedder,
    feature_embedder: Option<RawEmbedder>,
    #[serde(default)]
    second_opinion: Vec<RawSecondOpinion>,
    levels: BTreeMap<String, RawLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawSecondOpinion {
    spec: Spanned<String>,
    operating_point: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawModel {
    path: Spanned<String>,
    manifest_sha256: Option<Spanned<String>>,
    export_from: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawEmbedder {
    spec: Spanned<String>,
}

/// Integers are read as i64 so a negative or huge value is a range problem with its key, not a
/// type error.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawLevel {
    strength: Option<Spanned<f64>>,
    start_timestep: Option<Spanned<i64>>,
    steps: Spanned<i64>,
    scheduler: Option<Spanned<String>>,
    eta: Option<Spanned<f64>>,
    prompt: Spanned<String>,
    negative_prompt: Spanned<String>,
    guidance: Spanned<f64>,
    operating_point: Option<Spanned<String>>,
    threshold: Option<Spanned<f64>>,
    max_attempts: Spanned<i64>,
    strength_step: Spanned<f64>,
    max_strength: Spanned<f64>,
    on_failure: Spanned<String>,
    on_no_face: Spanned<String>,
    on_face_lost: Option<Spanned<String>>,
    rename_files: Spanned<bool>,
    rename_folders: Option<Spanned<bool>>,
    region: Option<Spanned<String>>,
    working_megapixels: Option<Spanned<f64>>,
}

impl RawLevel {
    /// Byte offset of the level's first key, to keep levels in file order (serde gives maps
    /// sorted) and to locate problems about a level as a whole.
    fn start_offset(&self) -> usize {
        let optional = [
            self.strength.as_ref().map(|v| v.span().start),
            self.start_timestep.as_ref().map(|v| v.span().start),
            self.scheduler.as_ref().map(|v| v.span().start),
            self.eta.as_ref().map(|v| v.span().start),
            self.operating_point.as_ref().map(|v| v.span().start),
            self.threshold.as_ref().map(|v| v.span().start),
            self.on_face_lost.as_ref().map(|v| v.span().start),
            self.rename_folders.as_ref().map(|v| v.span().start),
            self.region.as_ref().map(|v| v.span().start),
            self.working_megapixels.as_ref().map(|v| v.span().start),
        ];
        let required = [
            self.steps.span().start,
            self.prompt.span().start,
            self.negative_prompt.span().start,
            self.guidance.span().start,
            self.max_attempts.span().start,
            self.strength_step.span().start,
            self.max_strength.span().start,
            self.on_failure.span().start,
            self.on_no_face.span().start,
            self.rename_files.span().start,
        ];
        optional
            .into_iter()
            .flatten()
            .chain(required)
            .min()
            .unwrap_or(0)
    }
}

struct Problems<'a> {
    text: &'a str,
    list: Vec<Problem>,
}

impl Problems<'_> {
    fn add<T>(&mut self, table: &str, key: &str, at: &Spanned<T>, message: impl Into<String>) {
        self.add_at(table, key, at.span().start, message);
    }

    fn add_at(&mut self, table: &str, key: &str, offset: usize, message: impl Into<String>) {
        let (line, column) = line_column(self.text, offset);
        self.list.push(Problem {
            line,
            column,
            table: table.to_string(),
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// `value` when `ok`, else records the problem and returns `None`.
    fn check<T: Copy>(
        &mut self,
        table: &str,
        key: &str,
        at: &Spanned<T>,
        ok: bool,
        message: impl Into<String>,
    ) -> Option<T> {
        if ok {
            Some(*at.get_ref())
        } else {
            self.add(table, key, at, message);
            None
        }
    }
}

fn validate(raw: RawPolicy, folder: &Path, problems: &mut Problems) -> Option<Policy> {
    let model = validate_model(&raw.model, folder, problems);
    let spec = non_empty_path("embedder", "spec", &raw.embedder.spec, folder, problems);

    let mut raw_levels: Vec<(&String, &RawLevel)> = raw.levels.iter().collect();
    raw_levels.sort_by_key(|(_, level)| level.start_offset());
    if raw_levels.is_empty() {
        // An empty `[levels]` table has no span of its own; point at the level it should hold.
        problems.add(
            "",
            "levels",
            &raw.default_level,
            "the policy defines no level: add a [levels.NAME] table",
        );
    }
    let mut levels = Vec::new();
    let mut all_levels_valid = true;
    for (name, level) in raw_levels {
        match validate_level(name, level, problems) {
            Some(level) => levels.push(level),
            None => all_levels_valid = false,
        }
    }

    let default_level = raw.default_level.get_ref().clone();
    if !raw.levels.contains_key(&default_level) {
        let names: Vec<&str> = raw.levels.keys().map(String::as_str).collect();
        problems.add(
            "",
            "default-level",
            &raw.default_level,
            format!(
                "`{default_level}` is not a level of this policy (defined: {})",
                names.join(", ")
            ),
        );
    }

    let feature_spec = raw
        .feature_embedder
        .as_ref()
        .map(|feature| non_empty_path("feature-embedder", "spec", &feature.spec, folder, problems));
    let whole_image_level = levels
        .iter()
        .find(|level| level.on_no_face == OnNoFace::WholeImage);
    if let (None, Some(level)) = (&raw.feature_embedder, whole_image_level) {
        // A face embedder on a picture without a face says nothing about it.
        let at = raw
            .levels
            .get(&level.name)
            .map_or(raw.default_level.span().start, |l| {
                l.on_no_face.span().start
            });
        problems.add_at(
            &format!("levels.{}", level.name),
            "on-no-face",
            at,
            "\"whole-image\" needs a [feature-embedder] with a whole-image spec (e.g. spec = \"../models/efficientnet-lite0/embedder.toml\"): a face embedder says nothing about a picture without a face",
        );
    }
    let second_opinions: Vec<Option<SecondOpinion>> = raw
        .second_opinion
        .iter()
        .map(|opinion| {
            let spec = non_empty_path("second-opinion", "spec", &opinion.spec, folder, problems)?;
            Some(SecondOpinion {
                spec,
                operating_point: opinion
                    .operating_point
                    .as_ref()
                    .map(|p| p.get_ref().clone()),
            })
        })
        .collect();

    let (model, spec) = (model?, spec?);
    let feature_embedder = match feature_spec {
        Some(spec) => Some(EmbedderRef { spec: spec? }),
        None => None,
    };
    let second_opinions: Option<Vec<SecondOpinion>> = second_opinions.into_iter().collect();
    if !all_levels_valid {
        return None;
    }
    Some(Policy {
        source: PathBuf::new(),
        sha256: String::new(),
        version: u32::try_from(raw.version).ok()?,
        default_level,
        model,
        embedder: EmbedderRef { spec },
        feature_embedder,
        second_opinions: second_opinions?,
        levels,
    })
}

fn validate_model(raw: &RawModel, folder: &Path, problems: &mut Problems) -> Option<ModelRef> {
    let before = problems.list.len();
    let path = non_empty_path("model", "path", &raw.path, folder, problems);
    let manifest_sha256 = raw.manifest_sha256.as_ref().and_then(|pin| {
        let hex = pin.get_ref();
        let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            problems.add(
                "model",
                "manifest-sha256",
                pin,
                format!("`{hex}` is not a sha256 (64 hex digits); `boomerang manifest DIR` prints the model hash"),
            );
        }
        ok.then(|| hex.to_ascii_lowercase())
    });
    let export_from = raw.export_from.as_ref().and_then(|id| {
        let ok = !id.get_ref().trim().is_empty();
        if !ok {
            problems.add(
                "model",
                "export-from",
                id,
                "must name a model id, or be left out",
            );
        }
        ok.then(|| id.get_ref().clone())
    });
    if problems.list.len() != before {
        return None;
    }
    Some(ModelRef {
        path: path?,
        manifest_sha256,
        export_from,
    })
}

fn non_empty_path(
    table: &str,
    key: &str,
    raw: &Spanned<String>,
    folder: &Path,
    problems: &mut Problems,
) -> Option<PathBuf> {
    if raw.get_ref().trim().is_empty() {
        problems.add(
            table,
            key,
            raw,
            "must be a path (relative to the policy file's folder)",
        );
        return None;
    }
    Some(resolve(folder, Path::new(raw.get_ref())))
}

/// `relative` against `folder` (canonical). Leading `..` are folded lexically: that is exact
/// because `folder` has no symlinks; later components are kept as written.
fn resolve(folder: &Path, relative: &Path) -> PathBuf {
    if relative.is_absolute() {
        return relative.to_path_buf();
    }
    let mut base = folder.to_path_buf();
    let mut components = relative.components().peekable();
    while let Some(component) = components.peek() {
        match component {
            Component::ParentDir => {
                base.pop();
            }
            Component::CurDir => {}
            _ => break,
        }
        components.next();
    }
    base.extend(components);
    base
}

/// Validates one `[levels.NAME]` table section by section; every problem of every section is
/// recorded, in the order of the keys in the format, before the level is given up.
fn validate_level(name: &str, raw: &RawLevel, problems: &mut Problems) -> Option<Level> {
    let before = problems.list.len();
    let mut check = LevelCheck {
        table: format!("levels.{name}"),
        first: raw.start_offset(),
        raw,
        problems,
    };
    check.name(name);
    let start = check.start();
    let sampling = check.sampling(start);
    let threshold = check.threshold();
    let escalation = check.escalation(start);
    let rules = check.rules();
    let region = check.region();
    let working_megapixels = check.working_megapixels();
    if problems.list.len() != before {
        return None;
    }
    let (sampling, escalation, rules) = (sampling?, escalation?, rules?);
    Some(Level {
        name: name.to_string(),
        start: start?,
        steps: sampling.steps,
        scheduler: sampling.scheduler,
        eta: sampling.eta,
        prompt: raw.prompt.get_ref().clone(),
        negative_prompt: raw.negative_prompt.get_ref().clone(),
        guidance: sampling.guidance,
        threshold: threshold?,
        max_attempts: escalation.max_attempts,
        strength_step: escalation.strength_step,
        max_strength: escalation.max_strength,
        on_failure: rules.on_failure,
        on_no_face: rules.on_no_face,
        on_face_lost: rules.on_face_lost,
        rename_files: *raw.rename_files.get_ref(),
        rename_folders: raw.rename_folders.as_ref().is_some_and(|v| *v.get_ref()),
        region: region?,
        working_megapixels: working_megapixels?,
    })
}

/// The diffusion settings of a level, besides where it starts.
struct Sampling {
    steps: usize,
    scheduler: Option<SchedulerKind>,
    eta: f32,
    guidance: f32,
}

/// How a level retries an image that still matches its input.
struct Escalation {
    max_attempts: u32,
    strength_step: f64,
    max_strength: f64,
}

/// What a level does with images it cannot certify.
struct Rules {
    on_failure: OnFailure,
    on_no_face: OnNoFace,
    on_face_lost: OnFaceLost,
}

/// One level being validated: each method checks one section of it and returns `None` when
/// that section has a problem (recorded, with the level's table, in `problems`).
struct LevelCheck<'r, 'p, 't> {
    table: String,
    /// Byte offset of the level's first key: problems about the level as a whole (its name, a
    /// missing key) point there.
    first: usize,
    raw: &'r RawLevel,
    problems: &'p mut Problems<'t>,
}

impl LevelCheck<'_, '_, '_> {
    fn add<T>(&mut self, key: &str, at: &Spanned<T>, message: impl Into<String>) {
        self.problems.add(&self.table, key, at, message);
    }

    fn add_at_first(&mut self, key: &str, message: impl Into<String>) {
        self.problems.add_at(&self.table, key, self.first, message);
    }

    /// `value` when `ok`, else records the problem and returns `None`.
    fn check<T: Copy>(
        &mut self,
        key: &str,
        at: &Spanned<T>,
        ok: bool,
        message: impl Into<String>,
    ) -> Option<T> {
        self.problems.check(&self.table, key, at, ok, message)
    }

    /// `value` when it has at most six decimal places (see [`MICROS`]).
    fn decimal(&mut self, key: &str, at: &Spanned<f64>) -> Option<f64> {
        let value = *at.get_ref();
        let ok = micros(value) as f64 / MICROS == value;
        self.check(
            key,
            at,
            ok,
            format!("{value} has more than 6 decimal places; escalation needs exact decimals"),
        )
    }

    fn name(&mut self, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            self.add_at_first(
                "(level name)",
                "level names use letters, digits, `-` and `_` only (they are typed after --level and written in reports)",
            );
        }
    }

    /// Exactly one of `strength` and `start-timestep`.
    fn start(&mut self) -> Option<Start> {
        let raw = self.raw;
        match (&raw.strength, &raw.start_timestep) {
            (Some(s), None) => {
                let value = *s.get_ref();
                let in_range = value.is_finite() && (0.0..=1.0).contains(&value);
                self.check("strength", s, in_range, format!("{value} is outside 0..=1"))
                    .and_then(|_| self.decimal("strength", s))
                    .map(Start::Strength)
            }
            (None, Some(ts)) => {
                let value = *ts.get_ref();
                let in_range = (1..=i64::from(TRAIN_TIMESTEPS)).contains(&value);
                let message = format!("{value} is outside 1..={TRAIN_TIMESTEPS}");
                self.check("start-timestep", ts, in_range, message)
                    .map(|t| Start::Timestep(t as u32))
            }
            (Some(s), Some(_)) => {
                let message = "give `strength` or `start-timestep`, not both (t = strength x 1000)";
                self.add("strength", s, message);
                None
            }
            (None, None) => {
                let message = "missing: give `strength` (0..=1) or `start-timestep` (1..=1000)";
                self.add_at_first("strength", message);
                None
            }
        }
    }

    /// `steps`, `scheduler`, `eta` and `guidance`; with `start` (when valid), that the pass
    /// denoises at all.
    fn sampling(&mut self, start: Option<Start>) -> Option<Sampling> {
        let steps = self.steps();
        let scheduler = self.scheduler();
        if let (Some(start), Some(steps)) = (start, steps) {
            self.check_denoises(start, steps, scheduler == Some(Some(SchedulerKind::Lcm)));
        }
        let eta = self.eta(scheduler);
        let guidance = self.guidance();
        Some(Sampling {
            steps: steps?,
            scheduler: scheduler?,
            eta: eta?,
            guidance: guidance?,
        })
    }

    fn steps(&mut self) -> Option<usize> {
        let at = &self.raw.steps;
        let value = *at.get_ref();
        let in_range = (1..=i64::from(TRAIN_TIMESTEPS)).contains(&value);
        let message = format!("{value} is outside 1..={TRAIN_TIMESTEPS}");
        self.check("steps", at, in_range, message)
            .map(|v| v as usize)
    }

    /// diffusers runs int(steps x strength) denoising steps (LCM: all `steps` at any strength
    /// above 0, its own limit checked by the run, which knows the model's schedule); zero would
    /// ship the input's VAE round trip, which is no anonymization at all. Reported on the start
    /// key, as the strength is what usually needs raising.
    fn check_denoises(&mut self, start: Start, steps: usize, lcm: bool) {
        let strength = start.strength();
        let message = if lcm {
            if strength > 0.0 {
                return;
            }
            "strength 0 runs 0 denoising steps: the output would be the input's VAE round trip; \
             raise the strength"
                .to_owned()
        } else {
            if (steps as f64 * strength) as usize != 0 {
                return;
            }
            format!(
                "strength {strength} with {steps} steps runs int({steps} x {strength}) = 0 denoising steps: the output would be the input's VAE round trip; raise the strength or the steps"
            )
        };
        match (&self.raw.strength, &self.raw.start_timestep) {
            (Some(s), _) => self.add("strength", s, message),
            (None, Some(ts)) => self.add("start-timestep", ts, message),
            (None, None) => {}
        }
    }

    /// `Some(None)`: no `scheduler` key, the model's own; `None`: an unknown name (reported).
    fn scheduler(&mut self) -> Option<Option<SchedulerKind>> {
        let Some(at) = &self.raw.scheduler else {
            return Some(None);
        };
        match at.get_ref().parse::<SchedulerKind>() {
            Ok(kind) => Some(Some(kind)),
            Err(_) => {
                let message = format!(
                    "unknown scheduler `{}`; use one of {} (or leave it out for the model's own)",
                    at.get_ref(),
                    scheduler_names()
                );
                self.add("scheduler", at, message);
                None
            }
        }
    }

    /// DDIM's `eta`: 0 when absent; `scheduler` as [`LevelCheck::scheduler`] returned it.
    fn eta(&mut self, scheduler: Option<Option<SchedulerKind>>) -> Option<f32> {
        let Some(at) = &self.raw.eta else {
            return Some(0.0);
        };
        let value = *at.get_ref();
        match scheduler {
            Some(Some(SchedulerKind::Ddim)) => {
                // 0: the deterministic DDIM ODE; 1: fresh noise at every step, as DDPM.
                let ok = (0.0..=1.0).contains(&value);
                let message = format!("{value} is outside 0..=1 (eta must be >= 0 and <= 1)");
                self.check("eta", at, ok, message).map(|v| v as f32)
            }
            // An unknown scheduler is reported on its own key; eta is judged once that is fixed.
            None => None,
            Some(_) => {
                let message = "eta is DDIM's parameter: only allowed with scheduler = \"ddim\"";
                self.add("eta", at, message);
                None
            }
        }
    }

    fn guidance(&mut self) -> Option<f32> {
        let at = &self.raw.guidance;
        let value = *at.get_ref();
        let ok = (0.0..=MAX_GUIDANCE).contains(&value);
        let message = format!(
            "{value} is outside 0..={MAX_GUIDANCE}: guidance must be a finite number >= 0 and at most {MAX_GUIDANCE} (1 turns it off; diffusers' default is 7.5)"
        );
        let guidance = self.check("guidance", at, ok, message)?;
        let negative = &self.raw.negative_prompt;
        if guidance <= 1.0 && !negative.get_ref().trim().is_empty() {
            // Only classifier-free guidance reads the negative prompt.
            let message = format!(
                "a negative prompt is used only with guidance > 1, and this level's guidance is {guidance}: raise guidance or set negative-prompt = \"\""
            );
            self.add("negative-prompt", negative, message);
            return None;
        }
        Some(guidance as f32)
    }

    /// Exactly one of `operating-point` and `threshold`.
    fn threshold(&mut self) -> Option<Threshold> {
        let raw = self.raw;
        match (&raw.operating_point, &raw.threshold) {
            (Some(op), None) if !op.get_ref().trim().is_empty() => {
                Some(Threshold::OperatingPoint(op.get_ref().clone()))
            }
            (Some(op), None) => {
                let message = "must name an operating point of the embedder spec";
                self.add("operating-point", op, message);
                None
            }
            (None, Some(v)) => {
                let value = *v.get_ref();
                let ok = value.is_finite() && value > 0.0 && value <= f64::from(f32::MAX);
                let message = format!("{value} must be a finite distance > 0");
                self.check("threshold", v, ok, message)
                    .map(|v| Threshold::Value(v as f32))
            }
            (Some(op), Some(_)) => {
                self.add(
                    "operating-point",
                    op,
                    "give `operating-point` or `threshold`, not both",
                );
                None
            }
            (None, None) => {
                self.add_at_first(
                    "operating-point",
                    "missing: give `operating-point` (a name in the embedder spec) or `threshold` (a distance)",
                );
                None
            }
        }
    }

    /// `max-attempts`, `strength-step` and `max-strength`; `start` (when valid) is the floor of
    /// `max-strength`.
    fn escalation(&mut self, start: Option<Start>) -> Option<Escalation> {
        let raw = self.raw;
        let attempts = *raw.max_attempts.get_ref();
        let max_attempts = self
            .check(
                "max-attempts",
                &raw.max_attempts,
                (1..=10).contains(&attempts),
                format!("{attempts} is outside 1..=10"),
            )
            .map(|v| v as u32);

        let step = *raw.strength_step.get_ref();
        let ok = step.is_finite() && step > 0.0 && step <= 1.0;
        let strength_step = self
            .check(
                "strength-step",
                &raw.strength_step,
                ok,
                format!("{step} is outside (0, 1]"),
            )
            .and_then(|_| self.decimal("strength-step", &raw.strength_step));

        let cap = *raw.max_strength.get_ref();
        let floor = start.map_or(0.0, Start::strength);
        let ok = cap.is_finite() && cap >= floor && cap <= 1.0;
        let message = format!("{cap} is outside {floor}..=1 (from the level's strength to 1)");
        let max_strength = self
            .check("max-strength", &raw.max_strength, ok, message)
            .and_then(|_| self.decimal("max-strength", &raw.max_strength));

        Some(Escalation {
            max_attempts: max_attempts?,
            strength_step: strength_step?,
            max_strength: max_strength?,
        })
    }

    /// `on-failure`, `on-no-face` and `on-face-lost`.
    fn rules(&mut self) -> Option<Rules> {
        let on_failure = self.on_failure();
        let on_no_face = self.on_no_face();
        let on_face_lost = self.on_face_lost();
        Some(Rules {
            on_failure: on_failure?,
            on_no_face: on_no_face?,
            on_face_lost: on_face_lost?,
        })
    }

    /// Absent means the whole image.
    fn region(&mut self) -> Option<Region> {
        let Some(at) = &self.raw.region else {
            return Some(Region::Whole);
        };
        match at.get_ref().as_str() {
            "whole" => Some(Region::Whole),
            "faces" => Some(Region::Faces),
            other => {
                let message = format!("unknown value `{other}`; use \"whole\" or \"faces\"");
                self.add("region", at, message);
                None
            }
        }
    }

    fn working_megapixels(&mut self) -> Option<f64> {
        let Some(at) = &self.raw.working_megapixels else {
            return Some(DEFAULT_WORKING_MEGAPIXELS);
        };
        let value = *at.get_ref();
        let ok = value.is_finite() && value > 0.0 && value <= MAX_WORKING_MEGAPIXELS;
        let message = format!("{value} is outside (0, {MAX_WORKING_MEGAPIXELS}]");
        self.check("working-megapixels", at, ok, message)
    }

    /// Absent means "fail": accepting a lost face must be written down.
    fn on_face_lost(&mut self) -> Option<OnFaceLost> {
        let Some(at) = &self.raw.on_face_lost else {
            return Some(OnFaceLost::Fail);
        };
        match at.get_ref().as_str() {
            "fail" => Some(OnFaceLost::Fail),
            "accept" => Some(OnFaceLost::Accept),
            other => {
                let message = format!("unknown value `{other}`; use \"fail\" or \"accept\"");
                self.add("on-face-lost", at, message);
                None
            }
        }
    }

    fn on_failure(&mut self) -> Option<OnFailure> {
        let at = &self.raw.on_failure;
        match at.get_ref().as_str() {
            "flag" => Some(OnFailure::Flag),
            "drop" => Some(OnFailure::Drop),
            "keep-original" => {
                self.add(
                    "on-failure",
                    at,
                    "`keep-original` is not allowed: it would ship the identifiable input image as if it were anonymized; use \"drop\" (no output) or \"flag\" (keep the failed output, marked in the report)",
                );
                None
            }
            other => {
                let message = format!("unknown value `{other}`; use \"drop\" or \"flag\"");
                self.add("on-failure", at, message);
                None
            }
        }
    }

    fn on_no_face(&mut self) -> Option<OnNoFace> {
        let at = &self.raw.on_no_face;
        match at.get_ref().as_str() {
            "whole-image" => Some(OnNoFace::WholeImage),
            "skip" => Some(OnNoFace::Skip),
            "flag" => Some(OnNoFace::Flag),
            other => {
                let message =
                    format!("unknown value `{other}`; use \"whole-image\", \"skip\" or \"flag\"");
                self.add("on-no-face", at, message);
                None
            }
        }
    }
}
