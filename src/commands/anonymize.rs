//! `anonymize`: certified Boomerang over a whole dataset.
//!
//! Per image: Boomerang → detect and embed the faces of input and output → distance against the
//! policy's operating point → certified, or retry with more strength and a new seed, then the
//! final verdict. Every finished image appends one hash-chained row to the private report.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context};
use image::DynamicImage;
use indicatif::ProgressBar;
use serde::Serialize;

use super::render::{self, ImagePlan};
use super::Exit;
use crate::certify::metric::Embedding;
use crate::certify::reid::{self, Probe};
use crate::certify::spec::OperatingPoint;
use crate::certify::{
    self, CertificateKind, Certifier, CertifyError, Comparison, FaceAnalysis, Opinion,
};
use crate::diffusion::engine::{Engine, SchedulerSetup, Settings};
use crate::diffusion::model_manifest::ModelManifest;
use crate::diffusion::noise::{image_seed, seed_fingerprint};
use crate::diffusion::timing::{StageTimer, TimingReport};
use crate::io::dataset::{self, Action, LoadedInput, NameKey, SkipReason};
use crate::io::hashing::sha256_file;
use crate::io::imageio::{self, FrameLimits};
use crate::io::runtime::{Runtime, RuntimeConfig};
use crate::io::secret::{GivenSeed, SeedSource};
use crate::io::shard::{Shard, ShardRequest};
use crate::policy::{Level, OnFailure, OnNoFace, Policy};
use crate::records::report::{
    rfc3339_utc, run_record_path, AdversaryReidentification, RecordedSpec, ReportRow, ReportWriter,
    RunConfig, RunRecord, ShardRecord, Status, StatusCounts,
};

pub const TOOL_VERSION: &str = concat!("boomerang ", env!("CARGO_PKG_VERSION"));

/// Default pixel budget per image (`--max-megapixels`).
pub const DEFAULT_MAX_MEGAPIXELS: f64 = 50.0;

/// Validated `anonymize` configuration.
#[derive(Debug, Clone)]
pub struct AnonymizeConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub policy: PathBuf,
    pub level: Option<String>,
    pub model: Option<PathBuf>,
    /// `--seed` or `--seed-file`; [`SeedSource::Random`]: a fresh random seed, or the recorded
    /// one when resuming. A seed from a file is never written down: run.json records its
    /// fingerprint only.
    pub seed: SeedSource,
    pub batch: usize,
    /// Pixel budget per image: larger images get an error row, read from their header only.
    pub max_megapixels: f64,
    pub runtime: RuntimeConfig,
    pub report: PathBuf,
    /// A face embedder that re-identifies outputs after the run (never one that certified).
    pub adversary: Option<String>,
    pub resume: bool,
    pub dry_run: bool,
    pub quiet: bool,
    pub json: bool,
    /// Print the stage timer after the summary.
    pub timings: bool,
    /// `--shard K/N` or `--shard auto`: process only that part of the walk (resolved to
    /// `Fixed` once the run starts).
    pub shard: Option<ShardRequest>,
    /// `--shards N`: the number of parts, where the environment does not say it (Kubernetes).
    pub shards: Option<u32>,
}

impl AnonymizeConfig {
    /// The part this run processes, once resolved (`None`: the whole walk).
    fn part(&self) -> Option<Shard> {
        match self.shard {
            Some(ShardRequest::Fixed(shard)) => Some(shard),
            _ => None,
        }
    }
}

/// What the command prints at the end (and as JSON with `--json`). Holds no seed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub level: String,
    pub counts: StatusCounts,
    /// Top-1 re-identification rate of outputs (probes) against inputs (gallery).
    pub reidentification_rate: Option<f64>,
    pub reidentification_top5: Option<f64>,
    pub reidentification_chance: Option<f64>,
    /// The same by the `--adversary` embedder.
    pub adversary: Option<AdversaryReidentification>,
    pub seconds: f64,
    #[serde(flatten)]
    pub private: PrivateRecords,
    #[serde(flatten)]
    pub hashes: RunHashes,
    /// Printed with `--timings` (not part of the JSON summary).
    #[serde(skip)]
    pub timings: Box<TimingReport>,
}

/// The private files a run writes beside OUT.
#[derive(Debug, Clone, Serialize)]
pub struct PrivateRecords {
    pub report: PathBuf,
    pub run_record: PathBuf,
}

/// What ran: the model, policy and embedder hashes every row records too.
#[derive(Debug, Clone, Serialize)]
pub struct RunHashes {
    pub model_sha256: String,
    pub policy_sha256: String,
    pub embedder_sha256: String,
}

impl Summary {
    /// Everything certified (skipped non-images do not count against a run).
    pub fn all_certified(&self) -> bool {
        self.counts.failed == 0 && self.counts.error == 0
    }
}

/// The plan `--dry-run` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub images: usize,
    pub skipped: usize,
    pub level: String,
    pub strength: f64,
    pub steps: usize,
    pub scheduler: String,
    pub start_timestep: Option<f64>,
    pub model: PathBuf,
    pub model_sha256: String,
    pub policy_sha256: String,
    pub report: PathBuf,
    /// `K/N` with `--shard`: the counts are this part's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

pub enum Outcome {
    Planned(DryRun),
    Ran(Summary),
}

struct Prepared {
    policy: Policy,
    level: Level,
    settings: Settings,
    model_dir: PathBuf,
    model_sha256: String,
    embedder_sha256: String,
    /// The policy's whole-image embedder and second opinions, with their spec hashes.
    feature_embedder: Option<RecordedSpec>,
    second_opinions: Vec<RecordedSpec>,
    adversary: Option<RecordedSpec>,
    detector: certify::PinnedDetector,
    schedulers: SchedulerSetup,
}

/// The spec at `path` with the sha256 of its file, as run.json records it.
fn recorded_spec(path: &Path) -> anyhow::Result<RecordedSpec> {
    Ok(RecordedSpec {
        spec: path.to_path_buf(),
        sha256: sha256_file(path)
            .with_context(|| format!("reading embedder spec {}", path.display()))?,
    })
}

fn prepare(config: &AnonymizeConfig) -> anyhow::Result<Prepared> {
    let policy = Policy::load(&config.policy)?;
    let level = policy
        .level(config.level.as_deref().unwrap_or(&policy.default_level))?
        .clone();
    let model_dir = match &config.model {
        Some(given) => crate::io::data_dir::find_model_dir(given, crate::certify::MODELS_ENV)
            .map_err(anyhow::Error::msg)?,
        None => policy.model.path.clone(),
    };
    if crate::diffusion::denoiser::is_denoiser_folder(&model_dir) {
        bail!(
            "{} is a pixel-space denoiser (model.toml), not a latent diffusion export: anonymize certifies RGB images with a face detector and embedders, so it runs Stable Diffusion 1.x/2.x, SDXL and LCM exports (model_index.json) only; use `boomerang sample` or `boomerang augment` with this model",
            model_dir.display()
        );
    }
    if !model_dir.join("model_index.json").exists() {
        let what = if model_dir.is_dir() {
            "has no model_index.json (not an optimum export)"
        } else {
            "not found"
        };
        let source = policy
            .model
            .export_from
            .as_deref()
            .unwrap_or("stable-diffusion-v1-5/stable-diffusion-v1-5");
        bail!(
            "model folder {} {what} (policy {}).\n  export it where the Hugging Face hub is reachable:\n    pip install \"optimum-onnx[onnxruntime]==0.1.0\" diffusers\n    optimum-cli export onnx --model {source} --task image-to-image {}\n    boomerang manifest --write {}\n  or install an ONNX export published on a hub: boomerang model pull ORG/REPO --revision COMMIT --name NAME\n  then pin the printed model hash as manifest-sha256 in the policy, or pass --model DIR|NAME",
            model_dir.display(),
            policy.source.display(),
            model_dir.display(),
            model_dir.display()
        );
    }
    let model_sha256 =
        ModelManifest::compute_with(&model_dir, config.runtime.session.verify)?.model_hash();
    if let Some(pin) = &policy.model.manifest_sha256 {
        if *pin != model_sha256 {
            bail!(
                "{}: model files hash to {model_sha256}, but policy {} pins manifest-sha256 = {pin}; refusing to run a model the policy does not name (`boomerang manifest {}` lists its files)",
                model_dir.display(),
                policy.source.display(),
                model_dir.display()
            );
        }
    }
    let embedder_sha256 = recorded_spec(&policy.embedder.spec)?.sha256;
    let feature_embedder = match &policy.feature_embedder {
        Some(feature) => Some(recorded_spec(&feature.spec)?),
        None => None,
    };
    let second_opinions = policy
        .second_opinions
        .iter()
        .map(|opinion| recorded_spec(&opinion.spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let adversary = match &config.adversary {
        Some(name) => {
            let spec = certify::resolve_embedder(name)?;
            let certifying = std::iter::once(&policy.embedder.spec)
                .chain(policy.second_opinions.iter().map(|o| &o.spec));
            check_independent_adversary(&spec, certifying)?;
            Some(recorded_spec(&spec)?)
        }
        None => None,
    };
    let face_spec = certify::spec::EmbedderSpec::load(&policy.embedder.spec)?;
    check_operating_points(&policy, &face_spec)?;
    // Pinned by the spec and checked here, before anything is created.
    let detector = certify::pinned_detector(&face_spec)?;
    let settings = level_settings(&level);
    let schedulers = SchedulerSetup::load(&model_dir.join("scheduler/scheduler_config.json"))?;
    Ok(Prepared {
        policy,
        level,
        settings,
        model_dir,
        model_sha256,
        embedder_sha256,
        feature_embedder,
        second_opinions,
        adversary,
        detector,
        schedulers,
    })
}

/// Every level's operating point, not only the level run's: a typo in another level would
/// otherwise surface on the day that level runs. All problems at once. (Second opinions' points
/// are checked when the certifier opens them, also before anything is written.)
fn check_operating_points(
    policy: &Policy,
    face_spec: &certify::spec::EmbedderSpec,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for level in &policy.levels {
        if let Err(error) = level.operating_point(face_spec) {
            problems.push(format!("[levels.{}]: {error}", level.name));
        }
    }
    if !problems.is_empty() {
        bail!(
            "policy {}: {}",
            policy.source.display(),
            problems.join("; ")
        );
    }
    Ok(())
}

/// The adversary must not be a matcher the run certified against (same graph file), or its
/// re-identification rate would be the run judging itself.
fn check_independent_adversary<'a>(
    adversary: &Path,
    certifying: impl Iterator<Item = &'a PathBuf>,
) -> anyhow::Result<()> {
    let graph_sha = |spec: &Path| -> anyhow::Result<String> {
        let graph = certify::spec::EmbedderSpec::load(spec)?.onnx_path();
        sha256_file(&graph).with_context(|| format!("reading {}", graph.display()))
    };
    let own = graph_sha(adversary)?;
    for spec in certifying {
        if graph_sha(spec)? == own {
            bail!(
                "--adversary {}: its graph is the one the policy certifies with ({}); an adversary must be a matcher the run did not certify against",
                adversary.display(),
                spec.display()
            );
        }
    }
    Ok(())
}

/// The Boomerang settings of a level's first attempt.
pub fn level_settings(level: &Level) -> Settings {
    Settings {
        strength: level.strength(),
        steps: level.steps,
        scheduler: level.scheduler,
        eta: level.eta,
        prompt: level.prompt.clone(),
        negative_prompt: level.negative_prompt.clone(),
        guidance: level.guidance,
    }
}

pub fn run(config: &AnonymizeConfig) -> anyhow::Result<Outcome> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let shard = match config.shard {
        Some(request) => Some(super::shard::resolve(request, config.shards, &|name| {
            std::env::var(name).ok()
        })?),
        None => None,
    };
    let resolved = with_resolved_paths(config, shard)?;
    let config = &resolved;
    let (prepared, RunSeed { seed, hidden }, previous_run) = prepare_run(config)?;
    let level = &prepared.level;
    let key = (level.rename_files || level.rename_folders).then(|| NameKey::from_run_seed(seed));
    let file_key = key.as_ref().filter(|_| level.rename_files);
    let folder_key = key.as_ref().filter(|_| level.rename_folders);
    // The output names are planned on the whole walk, from the walk and the key alone: every
    // part of a sharded run and an unsharded run give every input the same name (an input that
    // fails keeps its name, unused).
    let walked = dataset::walk(&config.input)?;
    let walk_sha256 = dataset::walk_sha256(&walked);
    let mut planned = dataset::plan_outputs_renamed(walked, file_key, folder_key);
    let shard = config.part().map(|part| {
        let range = part.range(planned.len());
        let record = ShardRecord {
            index: part.index(),
            count: part.count(),
            walk_entries: planned.len() as u64,
            walk_sha256,
            first: range.start as u64,
            entries: range.len() as u64,
        };
        planned = planned.drain(range).collect();
        record
    });
    // Everything that can fail before the first image is checked before anything is created,
    // and a dry run checks it too: runtime, execution provider, models, operating point.
    let runtime = config.runtime.init()?;
    let models = Models::open(config, &prepared, runtime)?;
    if config.dry_run {
        return Ok(Outcome::Planned(dry_run(config, &prepared, &planned)?));
    }

    let _output_lock = lock_output(config, &planned, previous_run)?;
    let Resumed {
        writer,
        done,
        deferred,
    } = open_report(config, &planned)?;
    let record = RecordTemplate {
        config,
        prepared: &prepared,
        seed,
        hidden,
        shard,
        runtime,
        started_at,
    };
    let counts = StatusCounts::of(&done);
    record.at(&counts, &writer, None).write(&record.path())?;

    let mut certifying = Certifying::open(config, &prepared, seed, models, writer, counts);
    certifying.progress =
        super::dataset_run::progress_bar(planned.len() as u64, "images", config.quiet);
    let done_inputs: HashSet<String> = done.iter().map(|r| r.input_path.clone()).collect();
    certifying.certify_all(&planned, &done_inputs, deferred)?;
    certifying.progress.finish_and_clear();

    let Reidentified { own, adversary } = certifying.reidentify(&planned)?;
    let (rate, chance) = (
        own.as_ref().map(|r| r.top1_rate),
        own.as_ref().map(|r| r.chance),
    );
    let counts = certifying.counts;
    RunRecord {
        reidentification_rate: rate,
        reidentification_chance: chance,
        adversary: adversary.clone(),
        ..record.at(&counts, &certifying.writer, Some(SystemTime::now()))
    }
    .write(&record.path())?;
    Ok(Outcome::Ran(Summary {
        level: prepared.level.name.clone(),
        counts,
        reidentification_rate: rate,
        reidentification_top5: own.as_ref().map(|r| r.top5_rate),
        reidentification_chance: chance,
        adversary,
        seconds: started.elapsed().as_secs_f64(),
        private: PrivateRecords {
            report: config.report.clone(),
            run_record: record.path(),
        },
        hashes: RunHashes {
            model_sha256: prepared.model_sha256.clone(),
            policy_sha256: prepared.policy.sha256.clone(),
            embedder_sha256: prepared.embedder_sha256.clone(),
        },
        timings: Box::new(certifying.timings()),
    }))
}

/// The run seed, and whether it must stay out of what the run writes (it came from a secret
/// file, or the resumed run's did).
struct RunSeed {
    seed: u64,
    hidden: bool,
}

/// Checks the folders and the report's place, loads the policy and model hashes, and resolves
/// the run seed (the resumed run's, from its run.json); the flag says whether a run.json of a
/// run being resumed was found.
fn prepare_run(config: &AnonymizeConfig) -> anyhow::Result<(Prepared, RunSeed, bool)> {
    dataset::check_folders(&config.input, &config.output)?;
    check_outside(&config.report, &config.input, &config.output)?;
    let prepared = prepare(config)?;
    let record_path = run_record_path(&config.report);
    check_private_files(config, &record_path)?;
    let previous = if config.resume {
        let previous = read_previous_run(&record_path)?;
        check_resumed_run_is_this_one(config, &record_path, previous.as_ref())?;
        previous
    } else {
        // A part shares OUT with the other parts: it checks its own outputs once planned.
        if config.part().is_none() && !dataset::output_is_empty(&config.output)? {
            bail!(
                "{} is not empty; choose an empty output folder, or pass --resume to finish the run that wrote it",
                config.output.display()
            );
        }
        None
    };
    let given = config.seed.given()?;
    let run_seed = match &previous {
        Some(previous) => resumed_seed(given, previous, &record_path)?,
        None => match given {
            Some(given) => RunSeed {
                seed: given.value,
                hidden: given.from_file,
            },
            // Parts drawing their own random seeds could never be merged into one run.
            None if config.part().is_some() => bail!(
                "--shard: every part of a sharded run must use the same run seed: pass --seed-file FILE (made once by `boomerang secret new FILE`) to every part"
            ),
            None => RunSeed {
                seed: crate::diffusion::noise::random_run_seed(),
                hidden: false,
            },
        },
    };
    let seed = run_seed.seed;
    if let Some(previous) = &previous {
        let changed = changed_since(previous, &prepared, config);
        if !changed.is_empty() {
            bail!(
                "{}: the run being resumed used another {} (its kept rows were judged with that); start a new run in an empty folder instead",
                record_path.display(),
                changed.join(", ")
            );
        }
        check_kept_seeds(&config.report, &record_path, seed)?;
    }
    Ok((prepared, run_seed, previous.is_some()))
}

/// What a resumed run would judge differently from the run that wrote its kept rows. The
/// certifying specs are files of their own beside the policy: editing one (a threshold, the
/// detector) leaves the policy's hash as it was.
fn changed_since(
    previous: &RunConfig,
    prepared: &Prepared,
    config: &AnonymizeConfig,
) -> Vec<&'static str> {
    let hashes = |specs: &[RecordedSpec]| -> Vec<String> {
        specs.iter().map(|spec| spec.sha256.clone()).collect()
    };
    let checks = [
        (previous.policy_sha256 == prepared.policy.sha256, "policy"),
        (previous.level == prepared.level.name, "level"),
        (previous.model_sha256 == prepared.model_sha256, "model"),
        (
            previous.shard.as_ref().map(|s| (s.index, s.count))
                == config.part().map(|p| (p.index(), p.count())),
            "--shard",
        ),
        (
            previous.embedder_sha256 == prepared.embedder_sha256,
            "embedder spec",
        ),
        (
            previous.detector_sha256 == prepared.detector.sha256,
            "face detector",
        ),
        (
            previous.feature_embedder.as_ref().map(|spec| &spec.sha256)
                == prepared.feature_embedder.as_ref().map(|spec| &spec.sha256),
            "whole-image embedder spec",
        ),
        (
            hashes(&previous.second_opinions) == hashes(&prepared.second_opinions),
            "second-opinion specs",
        ),
    ];
    checks
        .into_iter()
        .filter(|(same, _)| !same)
        .map(|(_, what)| what)
        .collect()
}

/// The seed of the run being resumed: the one its run.json records, or, for a run seeded from a
/// secret file (run.json holds only the fingerprint), the one given, checked against that
/// fingerprint. The resumed run keeps the way it recorded its seed.
fn resumed_seed(
    given: Option<GivenSeed>,
    previous: &RunConfig,
    record_path: &Path,
) -> anyhow::Result<RunSeed> {
    let how = |given: &GivenSeed| {
        if given.from_file {
            "the secret file of --seed-file"
        } else {
            "--seed"
        }
    };
    if let (Some(seed), Some(fingerprint)) = (previous.seed, &previous.seed_fingerprint) {
        if seed_fingerprint(seed) != *fingerprint {
            bail!(
                "{}: its seed_fingerprint is not the fingerprint of its seed: run.json was edited; refusing to resume with it",
                record_path.display()
            );
        }
    }
    match (previous.seed, &previous.seed_fingerprint, given) {
        (Some(recorded), _, Some(given)) if given.value != recorded => bail!(
            "{} differs from the seed of the run being resumed ({}); resume without {}",
            how(&given),
            record_path.display(),
            if given.from_file { "--seed-file" } else { "--seed" }
        ),
        (Some(recorded), _, _) => Ok(RunSeed {
            seed: recorded,
            hidden: false,
        }),
        (None, Some(fingerprint), Some(given)) => {
            let found = seed_fingerprint(given.value);
            if found != *fingerprint {
                bail!(
                    "{}: the run being resumed was seeded from a secret file with fingerprint {fingerprint}, but {} has fingerprint {found}: resume with that run's --seed-file",
                    record_path.display(),
                    how(&given)
                );
            }
            Ok(RunSeed {
                seed: given.value,
                hidden: true,
            })
        }
        (None, Some(fingerprint), None) => bail!(
            "{}: the run being resumed was seeded from a secret file (fingerprint {fingerprint}); run.json does not hold the seed: pass --seed-file FILE with that run's secret file",
            record_path.display()
        ),
        (None, None, _) => bail!(
            "{}: records neither a seed nor a seed fingerprint: not the run record of a run that can be resumed",
            record_path.display()
        ),
    }
}

/// What `--dry-run` reports instead of running.
fn dry_run(
    config: &AnonymizeConfig,
    prepared: &Prepared,
    planned: &[dataset::Planned],
) -> anyhow::Result<DryRun> {
    let (_, plan) = prepared.schedulers.plan(&prepared.settings)?;
    let images = planned
        .iter()
        .filter(|p| matches!(p.action, Action::Process { .. }))
        .count();
    Ok(DryRun {
        images,
        skipped: planned.len() - images,
        level: prepared.level.name.clone(),
        strength: prepared.settings.strength,
        steps: prepared.settings.steps,
        scheduler: prepared.schedulers.kind(&prepared.settings)?.to_string(),
        start_timestep: plan.start_timestep(),
        model: prepared.model_dir.clone(),
        model_sha256: prepared.model_sha256.clone(),
        policy_sha256: prepared.policy.sha256.clone(),
        report: config.report.clone(),
        shard: config.part().map(|part| part.to_string()),
    })
}

/// The report a run appends to, and the rows of a resumed run it keeps.
struct Resumed {
    writer: ReportWriter,
    /// Rows left in the report: the resumed run's rows up to the first one redone.
    done: Vec<ReportRow>,
    /// Kept rows after the first redone one, by input: appended again at their place in walk
    /// order, so the report's rows stay in walk order.
    deferred: HashMap<String, ReportRow>,
}

/// Creates OUT and the report, or resumes the report: a row is kept when its output is intact
/// and its input still has the hash it recorded (a replaced input is redone, with a note).
fn open_report(config: &AnonymizeConfig, planned: &[dataset::Planned]) -> anyhow::Result<Resumed> {
    std::fs::create_dir_all(&config.output)
        .with_context(|| format!("creating {}", config.output.display()))?;
    if !(config.resume && config.report.exists()) {
        return Ok(Resumed {
            writer: ReportWriter::create(&config.report, false)?,
            done: Vec::new(),
            deferred: HashMap::new(),
        });
    }
    refuse_symlinks_inside(&config.output)?;
    remove_stale_temp_files(&config.output, config.part())?;
    let inputs: HashMap<String, PathBuf> = planned
        .iter()
        .map(|item| {
            (
                dataset::path_text(&item.relative),
                config.input.join(&item.relative),
            )
        })
        .collect();
    let mut redone = false;
    let mut deferred = HashMap::new();
    let (writer, done) = ReportWriter::resume_keeping(&config.report, |row| {
        let usable = row_output_intact(&config.output, row)
            && row_input_unchanged(&config.output, &inputs, row);
        if !usable {
            redone = true;
            false
        } else if redone {
            deferred.insert(row.input_path.clone(), row.clone());
            false
        } else {
            true
        }
    })?;
    Ok(Resumed {
        writer,
        done,
        deferred,
    })
}

/// A resumed row's input still hashes to what the row recorded (rows without an input hash,
/// and inputs no longer walked, stand). A changed input is noted, and its old output removed
/// so a redo that writes none leaves nothing unlisted.
fn row_input_unchanged(
    output_root: &Path,
    inputs: &HashMap<String, PathBuf>,
    row: &ReportRow,
) -> bool {
    if row.input_sha256.is_empty() {
        return true;
    }
    let Some(path) = inputs.get(&row.input_path) else {
        return true;
    };
    if sha256_file(path).is_ok_and(|digest| digest == row.input_sha256) {
        return true;
    }
    eprintln!(
        "note: input {} changed since its row was written (sha256 {}): redoing it",
        row.input_path, row.input_sha256
    );
    if let Some(path) = row_output_file(output_root, &row.output_path) {
        let _ = std::fs::remove_file(path);
    }
    false
}

/// A row's output as a file below OUT; `None` for no output, or a recorded path that is not
/// relative and plain: resume must not check or remove files outside OUT on a report's word.
fn row_output_file(output_root: &Path, output_path: &str) -> Option<PathBuf> {
    let relative = Path::new(output_path);
    let plain = relative
        .components()
        .all(|part| matches!(part, std::path::Component::Normal(_)));
    (plain && !output_path.is_empty()).then(|| output_root.join(relative))
}

/// What run.json records that does not change during the run.
struct RecordTemplate<'a> {
    config: &'a AnonymizeConfig,
    prepared: &'a Prepared,
    seed: u64,
    /// Record only the seed's fingerprint.
    hidden: bool,
    shard: Option<ShardRecord>,
    runtime: &'a Runtime,
    started_at: SystemTime,
}

impl RecordTemplate<'_> {
    fn path(&self) -> PathBuf {
        run_record_path(&self.config.report)
    }

    /// The record with the report as it stands; `finished` is empty until the run ends.
    fn at(
        &self,
        counts: &StatusCounts,
        writer: &ReportWriter,
        finished: Option<SystemTime>,
    ) -> RunRecord {
        let config = self.config;
        RunRecord {
            tool_version: TOOL_VERSION.into(),
            config: RunConfig {
                shard: self.shard.clone(),
                ..run_config(config, self.prepared, self.seed, self.hidden)
            },
            onnxruntime_version: self.runtime.info().version.clone(),
            onnxruntime_library: self.runtime.info().library.display().to_string(),
            execution_provider: config.runtime.devices_text(),
            counts: *counts,
            started: rfc3339_utc(self.started_at),
            finished: finished.map(rfc3339_utc).unwrap_or_default(),
            report_path: config.report.display().to_string(),
            report_rows: writer.rows(),
            report_chain_head: writer.chain_head().to_string(),
            reidentification_rate: None,
            reidentification_chance: None,
            adversary: None,
            merged_parts: None,
        }
    }
}

/// The certification loop of a run: models, report, counts and the images waiting for a batch.
struct Certifying<'a> {
    config: &'a AnonymizeConfig,
    prepared: &'a Prepared,
    run_seed: u64,
    /// One per device (`--device a,b`).
    engines: Vec<Engine>,
    certifier: Certifier,
    points: Points,
    adversary: Option<Certifier>,
    context: RowContext<'a>,
    limits: FrameLimits,
    writer: ReportWriter,
    counts: StatusCounts,
    progress: ProgressBar,
    batch: Vec<ImageToCertify>,
}

/// The models a run needs, opened (sessions created on the requested device) before anything
/// is written.
struct Models {
    engines: Vec<Engine>,
    limits: FrameLimits,
    certifier: Certifier,
    points: Points,
    adversary: Option<Certifier>,
}

/// The operating points a level judges at: its own for faces, the whole-image embedder's
/// for whole images (the face one when the policy has no whole-image embedder).
#[derive(Clone)]
struct Points {
    face: OperatingPoint,
    whole_image: OperatingPoint,
}

impl Points {
    fn for_kind(&self, kind: CertificateKind) -> &OperatingPoint {
        match kind {
            CertificateKind::WholeImage => &self.whole_image,
            CertificateKind::Face | CertificateKind::FaceLost => &self.face,
        }
    }
}

impl Models {
    /// Opens the diffusion model, the face detector and the embedder, and finds the level's
    /// operating point in the embedder spec.
    fn open(
        config: &AnonymizeConfig,
        prepared: &Prepared,
        runtime: &Runtime,
    ) -> anyhow::Result<Models> {
        let engines = config
            .runtime
            .workers()
            .iter()
            .map(|worker| Engine::open(&prepared.model_dir, runtime, worker))
            .collect::<Result<Vec<_>, _>>()?;
        let session = &config.runtime.session;
        let policy = &prepared.policy;
        let certifier = policy.certifier(
            runtime,
            &policy.embedder.spec,
            &prepared.detector.path,
            session,
        )?;
        let points = Points {
            face: prepared.level.operating_point(certifier.spec())?,
            whole_image: certifier
                .operating_point(CertificateKind::WholeImage, None)?
                .clone(),
        };
        let adversary = match &prepared.adversary {
            Some(adversary) => Some(Certifier::load(
                runtime,
                &adversary.spec,
                &prepared.detector.path,
                session,
            )?),
            None => None,
        };
        let first = engines.first().context("no device to run on")?;
        let limits = render::frame_limits(first, prepared.level.working_megapixels);
        Ok(Models {
            engines,
            limits,
            certifier,
            points,
            adversary,
        })
    }
}

impl<'a> Certifying<'a> {
    fn open(
        config: &'a AnonymizeConfig,
        prepared: &'a Prepared,
        run_seed: u64,
        models: Models,
        writer: ReportWriter,
        counts: StatusCounts,
    ) -> Certifying<'a> {
        let Models {
            engines,
            limits,
            certifier,
            points,
            adversary,
        } = models;
        let context = RowContext {
            level: &prepared.level,
            model_sha256: &prepared.model_sha256,
            embedder_sha256: &prepared.embedder_sha256,
            detector_sha256: &prepared.detector.sha256,
            policy_sha256: &prepared.policy.sha256,
            metric: certifier.spec().metric.to_string(),
            threshold: points.face.distance_threshold(),
        };
        Certifying {
            config,
            prepared,
            run_seed,
            limits,
            engines,
            certifier,
            points,
            adversary,
            context,
            writer,
            counts,
            progress: ProgressBar::hidden(),
            batch: Vec::new(),
        }
    }

    /// Every planned input not done yet, in walk order: an immediate row (skip, error) first
    /// flushes the pending batch, so rows go out in walk order.
    /// `done_inputs`: inputs whose rows are in the report;
    /// `deferred`: kept rows appended again at their place.
    fn certify_all(
        &mut self,
        planned: &[dataset::Planned],
        done_inputs: &HashSet<String>,
        mut deferred: HashMap<String, ReportRow>,
    ) -> anyhow::Result<()> {
        for item in planned {
            let input_text = dataset::path_text(&item.relative);
            if done_inputs.contains(&input_text) {
                self.progress.inc(1);
                continue;
            }
            if let Some(row) = deferred.remove(&input_text) {
                self.flush()?;
                self.finish_row(row)?;
                continue;
            }
            let config = self.config;
            // An image whose output name an earlier input of the walk holds (the plan's).
            let clash = match &item.action {
                Action::Skip(reason @ SkipReason::OutputCollision { .. }) => Some(reason),
                _ => None,
            };
            let job = match clash {
                Some(reason) => Err(Box::new(self.context.row(
                    &input_text,
                    Status::Error,
                    format!("{reason}; this image was not anonymized"),
                ))),
                None => prepare_job(
                    item,
                    &input_text,
                    &self.context,
                    config,
                    &mut self.certifier,
                    self.limits,
                ),
            };
            match job {
                Ok(job) => {
                    self.batch.push(job);
                    // Each worker gets --batch images per round.
                    if self.batch.len() == config.batch * self.engines.len() {
                        self.flush()?;
                    }
                }
                Err(row) => {
                    self.flush()?;
                    self.finish_row(*row)?;
                }
            }
        }
        self.flush()?;
        // Kept rows of inputs no longer walked stay in the report, after the others.
        let mut leftover: Vec<ReportRow> = deferred.into_values().collect();
        leftover.sort_by(|a, b| a.input_path.cmp(&b.input_path));
        for row in leftover {
            self.finish_row(row)?;
        }
        Ok(())
    }

    /// Where the time went, summed over the workers (which run at once: with several, stage
    /// times can add up to more than the wall time).
    fn timings(&self) -> TimingReport {
        let mut timer = StageTimer::default();
        for engine in &self.engines {
            timer.absorb(&engine.timer);
        }
        timer.report()
    }

    /// Certifies the pending batch and writes its rows.
    fn flush(&mut self) -> anyhow::Result<()> {
        let jobs = std::mem::take(&mut self.batch);
        let context = BatchContext {
            points: &self.points,
            prepared: self.prepared,
            run_seed: self.run_seed,
            output_root: &self.config.output,
            batch: self.config.batch,
            temp_tag: self.config.part().map(|part| part.tag()),
        };
        let rows = certify_batch(&mut self.engines, &mut self.certifier, &context, jobs)?;
        for row in rows {
            self.finish_row(row)?;
        }
        Ok(())
    }

    fn finish_row(&mut self, row: ReportRow) -> anyhow::Result<()> {
        let counts = &mut self.counts;
        counts.add(&row);
        self.progress.inc(1);
        self.progress.set_message(format!(
            "certified {} failed {} errors {}",
            counts.certified, counts.failed, counts.error
        ));
        self.writer.append(&row)?;
        Ok(())
    }

    /// The re-identification rate and its chance level over the verified report's rows.
    fn reidentify(&mut self, planned: &[dataset::Planned]) -> anyhow::Result<Reidentified> {
        let config = self.config;
        let rows = crate::records::report::verify(&config.report)?;
        // Report paths are display text (non-UTF-8 names escaped): map them back to real paths.
        let paths: HashMap<String, (PathBuf, PathBuf)> = planned
            .iter()
            .filter_map(|item| match &item.action {
                Action::Process { output } => Some((
                    dataset::path_text(&item.relative),
                    (
                        config.input.join(&item.relative),
                        config.output.join(output),
                    ),
                )),
                Action::Skip(_) => None,
            })
            .collect();
        let own = reidentification(&rows, &paths, &mut self.certifier)?;
        let adversary = match (&mut self.adversary, &self.prepared.adversary) {
            (Some(certifier), Some(recorded)) => {
                let reid = reidentification(&rows, &paths, certifier)?;
                Some(AdversaryReidentification {
                    embedder: certifier.spec().name.clone(),
                    spec: recorded.spec.clone(),
                    spec_sha256: recorded.sha256.clone(),
                    top1_rate: reid.as_ref().map(|r| r.top1_rate),
                    top5_rate: reid.as_ref().map(|r| r.top5_rate),
                    chance: reid.as_ref().map(|r| r.chance),
                    probes: reid.as_ref().map_or(0, |r| r.ranks.len()),
                })
            }
            _ => None,
        };
        Ok(Reidentified { own, adversary })
    }
}

/// Re-identification after a run: by the certifying embedder, and by the adversary.
struct Reidentified {
    own: Option<reid::Reidentification>,
    adversary: Option<AdversaryReidentification>,
}

/// The report and run record hold the secret seed and the input↔output links: never inside IN
/// (read only) or OUT (shared).
fn check_outside(report: &Path, input: &Path, output: &Path) -> anyhow::Result<()> {
    let report_resolved = dataset::resolve_planned(report)?;
    for (folder, name) in [(input, "input"), (output, "output")] {
        let resolved = dataset::resolve_planned(folder)?;
        if report_resolved.starts_with(&resolved) {
            bail!(
                "the report {} would be inside the {name} folder {}; it is private (it links outputs to inputs and holds the seeds): put it elsewhere with --report",
                report.display(),
                folder.display()
            );
        }
    }
    Ok(())
}

/// The configuration the run being resumed recorded in run.json, if there is one.
fn read_previous_run(path: &Path) -> anyhow::Result<Option<RunConfig>> {
    let file = match crate::io::safe_path::open_regular(path, "run record") {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let text =
        std::io::read_to_string(file).with_context(|| format!("reading {}", path.display()))?;
    let record: RunRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run record", path.display()))?;
    Ok(Some(record.config))
}

/// The run's configuration; `hidden` leaves the seed out (its fingerprint is always there).
fn run_config(config: &AnonymizeConfig, prepared: &Prepared, seed: u64, hidden: bool) -> RunConfig {
    RunConfig {
        input: config.input.clone(),
        output: config.output.clone(),
        policy: prepared.policy.source.clone(),
        policy_sha256: prepared.policy.sha256.clone(),
        level: prepared.level.name.clone(),
        // A map of plain fields: serializing it cannot fail.
        level_settings: serde_json::to_value(&prepared.level).unwrap_or_default(),
        model: prepared.model_dir.clone(),
        model_sha256: prepared.model_sha256.clone(),
        embedder: prepared.policy.embedder.spec.clone(),
        embedder_sha256: prepared.embedder_sha256.clone(),
        feature_embedder: prepared.feature_embedder.clone(),
        second_opinions: prepared.second_opinions.clone(),
        detector: prepared.detector.path.clone(),
        detector_sha256: prepared.detector.sha256.clone(),
        seed: (!hidden).then_some(seed),
        seed_fingerprint: Some(seed_fingerprint(seed)),
        shard: None,
        batch: config.batch,
        threads: config.runtime.session.threads,
        device: config.runtime.devices_text(),
        report: config.report.clone(),
    }
}

/// OUT and the report as absolute paths with `..` applied against the real parent folders
/// (`IN/newdir/../../out` is `out` beside IN, and creating it creates nothing in IN). OUT's
/// symlinks are resolved; the report's own name is kept (a symlink there is refused, not followed).
/// With a `shard`, the report is the part's ([`Shard::part_report_path`]).
fn with_resolved_paths(
    config: &AnonymizeConfig,
    shard: Option<Shard>,
) -> anyhow::Result<AnonymizeConfig> {
    let output = dataset::resolve_planned(&config.output)?;
    let report_name = match config.report.file_name() {
        Some(name) if !config.report.ends_with("..") => name.to_os_string(),
        _ => bail!("--report {}: not a file name", config.report.display()),
    };
    let report_folder = match config.report.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut report = dataset::resolve_planned(report_folder)?.join(report_name);
    if let Some(shard) = shard {
        report = shard.part_report_path(&report);
    }
    Ok(AnonymizeConfig {
        output,
        report,
        shard: shard.map(ShardRequest::Fixed),
        ..config.clone()
    })
}

/// The report and run.json must be regular files when they exist (a FIFO would block the run, a
/// symlink would write elsewhere); a new run never replaces either.
fn check_private_files(config: &AnonymizeConfig, record_path: &Path) -> anyhow::Result<()> {
    for (path, what) in [
        (config.report.as_path(), "report"),
        (record_path, "run record"),
    ] {
        let exists = crate::io::safe_path::private_file_exists(path, what)?;
        if exists && !config.resume {
            bail!(
                "the {what} {} already exists: it belongs to another run; continue that run with --resume, or choose another --report",
                path.display()
            );
        }
    }
    Ok(())
}

/// A resume continues the run that wrote OUT, with that run's report and run.json: without
/// run.json (or with one naming another OUT) there is no seed to continue with, so it is refused
/// unless there is nothing at all to resume (no report and an empty OUT).
fn check_resumed_run_is_this_one(
    config: &AnonymizeConfig,
    record_path: &Path,
    previous: Option<&RunConfig>,
) -> anyhow::Result<()> {
    let output = &config.output;
    // A part shares OUT: it checks its own outputs once planned (lock_output).
    let whole = config.part().is_none();
    let Some(previous) = previous else {
        let report_exists = config.report.exists();
        if report_exists || (whole && !dataset::output_is_empty(output)?) {
            bail!(
                "cannot resume {}: its run record {} is missing, so the run seed is unknown; --resume needs the report and run.json of the run that wrote {} (pass its --report), or start a new run in an empty folder",
                if report_exists { config.report.display() } else { output.display() },
                record_path.display(),
                output.display()
            );
        }
        return Ok(());
    };
    let recorded = dataset::resolve_planned(&previous.output)?;
    if recorded != *output {
        bail!(
            "{} is the run record of the run that wrote {}, not {}: resume that folder, or pass the --report of the run that wrote {}",
            record_path.display(),
            previous.output.display(),
            output.display(),
            output.display()
        );
    }
    if !config.report.exists() && whole && !dataset::output_is_empty(output)? {
        bail!(
            "cannot resume {}: its report {} is missing",
            output.display(),
            config.report.display()
        );
    }
    Ok(())
}

/// Every kept row's per-image seed must derive from the run seed of run.json (see
/// [`image_seed`]): an edited or foreign run.json would finish the run with other seeds.
fn check_kept_seeds(report: &Path, record_path: &Path, run_seed: u64) -> anyhow::Result<()> {
    // A missing, torn or damaged report is handled (or refused) when it is resumed.
    let Ok(rows) = crate::records::report::resumable_rows(report) else {
        return Ok(());
    };
    for row in rows {
        if row.attempts.is_none() || row.seed.is_empty() {
            continue;
        }
        if row.expected_seed(run_seed).as_deref() != Some(row.seed.as_str()) {
            bail!(
                "{}: the seed of the row for {} does not derive from the run seed in {}: run.json was edited or belongs to another run; refusing to resume with it",
                report.display(),
                row.input_path,
                record_path.display()
            );
        }
    }
    Ok(())
}

/// Creates OUT and takes its lock for the whole run, so a second run into the same OUT (a second
/// `--resume`, or a new run with another report) exits instead of mixing files and rows. A part
/// of a sharded run takes a shared lock (the other parts run beside it, an unsharded run cannot)
/// and its report's exclusive lock keeps a second copy of the same part out; it never starts
/// over outputs of its own block already in OUT (unless it resumes the run that wrote them).
fn lock_output(
    config: &AnonymizeConfig,
    planned: &[dataset::Planned],
    previous_run: bool,
) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(&config.output)
        .with_context(|| format!("creating {}", config.output.display()))?;
    if let Some(part) = config.part() {
        let lock = crate::io::lock::lock_folder_shared(&config.output)?;
        if !(config.resume && previous_run) {
            let present = planned.iter().find_map(|item| match &item.action {
                Action::Process { output } if config.output.join(output).exists() => Some(output),
                _ => None,
            });
            if let Some(output) = present {
                bail!(
                    "{} already holds {}, an output of part {part}, and no run of this part with the report {} wrote it: finish the run that did with --resume (and its --report), or use an empty output folder",
                    config.output.display(),
                    dataset::path_text(output),
                    config.report.display()
                );
            }
        }
        return Ok(lock);
    }
    let lock = crate::io::lock::lock_folder(&config.output)?;
    // Another run may have finished in OUT between the pre-flight check and the lock.
    if !config.resume && !dataset::output_is_empty(&config.output)? {
        bail!(
            "{} is not empty; choose an empty output folder, or pass --resume to finish the run that wrote it",
            config.output.display()
        );
    }
    Ok(lock)
}

/// A symlink inside OUT could send outputs anywhere: resume refuses before writing.
fn refuse_symlinks_inside(output: &Path) -> anyhow::Result<()> {
    let found = crate::io::safe_path::find_symlink_below(output)
        .with_context(|| format!("reading {}", output.display()))?;
    if let Some(link) = found {
        bail!(
            "{} is a symlink inside the output folder {}: outputs are never written through a symlink; remove it and resume again",
            link.display(),
            output.display()
        );
    }
    Ok(())
}

/// A resumed row stands when it wrote no output, or its output is still there, unchanged.
fn row_output_intact(output_root: &Path, row: &ReportRow) -> bool {
    if row.output_path.is_empty() {
        return true;
    }
    row_output_file(output_root, &row.output_path)
        .is_some_and(|path| sha256_file(&path).is_ok_and(|digest| digest == row.output_sha256))
}

/// A kill -9 can leave `.boomerang-*.tmp` files from interrupted atomic writes. A part removes
/// only its own (`.boomerang-part-K-of-N-*.tmp`): the other parts may be writing theirs.
fn remove_stale_temp_files(output: &Path, part: Option<Shard>) -> anyhow::Result<()> {
    let tag = part.map(|part| part.tag());
    let stale = |path: &Path| match &tag {
        Some(tag) => crate::io::atomic::is_temp_file_of(path, tag),
        None => crate::io::atomic::is_temp_file(path),
    };
    let mut pending = vec![output.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && stale(&path) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The columns every row of a run shares.
struct RowContext<'a> {
    level: &'a Level,
    model_sha256: &'a str,
    embedder_sha256: &'a str,
    detector_sha256: &'a str,
    policy_sha256: &'a str,
    metric: String,
    threshold: Option<f32>,
}

impl RowContext<'_> {
    fn row(&self, input: &str, status: Status, reason: String) -> ReportRow {
        ReportRow {
            input_path: input.to_string(),
            input_sha256: String::new(),
            output_path: String::new(),
            output_sha256: String::new(),
            status,
            certificate: None,
            reason,
            level: self.level.name.clone(),
            strength: None,
            start_timestep: None,
            steps: Some(self.level.steps as u32),
            scheduler: self
                .level
                .scheduler
                .map(|kind| kind.to_string())
                .unwrap_or_default(),
            seed: String::new(),
            attempts: None,
            distance: None,
            threshold: self.threshold,
            metric: self.metric.clone(),
            faces_in: None,
            faces_out: None,
            second_opinions: String::new(),
            model_sha256: self.model_sha256.to_string(),
            embedder_sha256: self.embedder_sha256.to_string(),
            detector_sha256: self.detector_sha256.to_string(),
            policy_sha256: self.policy_sha256.to_string(),
            width: None,
            height: None,
            milliseconds: None,
            tool_version: TOOL_VERSION.into(),
            chain: String::new(),
        }
    }
}

/// Loads and analyzes one planned input; `Err` is its finished row (skipped or error).
fn prepare_job(
    item: &dataset::Planned,
    input_text: &str,
    context: &RowContext,
    config: &AnonymizeConfig,
    certifier: &mut Certifier,
    limits: FrameLimits,
) -> Result<ImageToCertify, Box<ReportRow>> {
    let output = match &item.action {
        Action::Skip(reason) => {
            return Err(Box::new(context.row(
                input_text,
                Status::Skipped,
                reason.to_string(),
            )));
        }
        Action::Process { output } => output.clone(),
    };
    let started = Instant::now();
    if let Some(row) = over_pixel_budget(item, input_text, context, config) {
        return Err(Box::new(row));
    }
    let loaded = dataset::load_image(&config.input.join(&item.relative))
        .map_err(|error| Box::new(context.row(input_text, Status::Error, error.reason())))?;
    let mut row = context.row(input_text, Status::Error, String::new());
    row.input_sha256 = loaded.sha256_hex();
    row.width = Some(loaded.image.width());
    row.height = Some(loaded.image.height());
    let faces_in = match certifier.analyze(&loaded.image) {
        Ok(analysis) => analysis,
        Err(error) => {
            row.reason = format!("face analysis of the input failed: {error}");
            return Err(Box::new(row));
        }
    };
    row.faces_in = Some(faces_in.faces.len() as u32);
    if faces_in.faces.is_empty() && context.level.on_no_face == OnNoFace::Skip {
        row.status = Status::Skipped;
        row.reason = "no face found in the input (policy: on-no-face = skip)".into();
        return Err(Box::new(row));
    }
    let plan = ImagePlan::new(
        &loaded.image,
        context.level.region,
        &render::face_boxes(&faces_in),
        limits,
    );
    Ok(ImageToCertify {
        row,
        output,
        loaded,
        plan,
        faces_in,
        started,
    })
}

/// The error row of an image whose header declares more pixels than the budget: it is never
/// decoded.
fn over_pixel_budget(
    item: &dataset::Planned,
    input_text: &str,
    context: &RowContext,
    config: &AnonymizeConfig,
) -> Option<ReportRow> {
    let path = config.input.join(&item.relative);
    let (width, height) = dataset::declared_dimensions(&path)?;
    let megapixels = f64::from(width) * f64::from(height) / 1e6;
    if megapixels <= config.max_megapixels {
        return None;
    }
    let reason = format!(
        "{width}x{height} is {megapixels:.1} megapixels, over the pixel budget of {} megapixels per image (--max-megapixels); not decoded",
        config.max_megapixels
    );
    let mut row = context.row(input_text, Status::Error, reason);
    row.input_sha256 = sha256_file(&path).unwrap_or_default();
    row.width = Some(width);
    row.height = Some(height);
    Some(row)
}

/// What every batch of a run shares.
struct BatchContext<'a> {
    points: &'a Points,
    prepared: &'a Prepared,
    run_seed: u64,
    output_root: &'a Path,
    /// Model inputs (or tiles) per UNet call.
    batch: usize,
    /// A part's tag on its temp files ([`remove_stale_temp_files`]).
    temp_tag: Option<String>,
}

/// One input image on its way through the certification loop.
struct ImageToCertify {
    row: ReportRow,
    output: PathBuf,
    loaded: LoadedInput,
    plan: ImagePlan,
    faces_in: FaceAnalysis,
    started: Instant,
}

/// How an attempt made its output, whatever came of it.
struct AttemptSetup {
    /// Attempts made so far (this one included).
    number: u32,
    strength: f64,
    start_timestep: Option<f64>,
    seed: [u8; 32],
}

impl AttemptSetup {
    fn record(&self, row: &mut ReportRow) {
        row.strength = Some(self.strength);
        row.start_timestep = self.start_timestep;
        row.seed = hex::encode(self.seed);
        row.attempts = Some(self.number);
    }
}

/// The last attempt of one image.
struct Attempt {
    image: DynamicImage,
    comparison: Comparison,
    /// The threshold it was judged at, as a distance in its metric.
    threshold: Option<f32>,
    opinions: Vec<Opinion>,
    certified: bool,
    setup: AttemptSetup,
}

/// The last attempt of one image when the certifier could not analyze its output (e.g. eyes it
/// cannot align, an all-black image with no embedding direction): an error row for this image,
/// not the end of the run.
struct Unanalyzed {
    setup: AttemptSetup,
    error: CertifyError,
}

/// What the last attempt of one image came to.
type LastAttempt = Result<Attempt, Unanalyzed>;

/// Runs attempt after attempt; each round sends every still-uncertified image of the batch
/// through the UNet together, at that attempt's strength, each with its own new seed.
fn certify_batch(
    engines: &mut [Engine],
    certifier: &mut Certifier,
    context: &BatchContext,
    jobs: Vec<ImageToCertify>,
) -> anyhow::Result<Vec<ReportRow>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let level = &context.prepared.level;
    let mut results: Vec<Option<LastAttempt>> = jobs.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    for attempt in 0..level.max_attempts {
        if pending.is_empty() {
            break;
        }
        let round = Round {
            jobs: &jobs,
            pending: &pending,
            attempt,
        };
        pending = attempt_round(engines, certifier, context, &round, &mut results)?;
    }
    let mut rows = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.into_iter().zip(results) {
        rows.push(verdict(context, job, result)?);
    }
    Ok(rows)
}

/// One attempt over the images of a batch still pending.
struct Round<'a> {
    jobs: &'a [ImageToCertify],
    pending: &'a [usize],
    attempt: u32,
}

/// Runs one attempt and records it in `results`; returns the images worth another attempt.
fn attempt_round(
    engines: &mut [Engine],
    certifier: &mut Certifier,
    context: &BatchContext,
    round: &Round,
    results: &mut [Option<LastAttempt>],
) -> anyhow::Result<Vec<usize>> {
    let Round {
        jobs,
        pending,
        attempt,
    } = *round;
    let level = &context.prepared.level;
    let settings = Settings {
        strength: level.strength_for_attempt(attempt),
        ..context.prepared.settings.clone()
    };
    let plans: Vec<&ImagePlan> = pending.iter().map(|&i| &jobs[i].plan).collect();
    let seeds: Vec<[u8; 32]> = pending
        .iter()
        .map(|&i| image_seed(context.run_seed, &jobs[i].loaded.sha256, attempt))
        .collect();
    let (images, plan) = render::render_on(engines, &settings, &plans, &seeds, context.batch)?;
    let mut still = Vec::new();
    for ((slot, &i), image) in pending.iter().enumerate().zip(images) {
        let job = &jobs[i];
        let setup = AttemptSetup {
            number: attempt + 1,
            strength: settings.strength,
            start_timestep: plan.start_timestep(),
            seed: seeds[slot],
        };
        let (comparison, opinions) = match analyze_attempt(certifier, &job.faces_in, &image) {
            Ok(analysis) => analysis,
            Err(error) => {
                // Another seed may give an output it can analyze.
                results[i] = Some(Err(Unanalyzed { setup, error }));
                still.push(i);
                continue;
            }
        };
        let point = context.points.for_kind(comparison.certificate);
        // A certificate needs a kind the level accepts, and every compared pair different by
        // the certifying embedder and by every second opinion.
        let certified = level.accepts(comparison.certificate)
            && comparison.all_pairs_differ(point)
            && opinions.iter().all(|opinion| opinion.differs);
        results[i] = Some(Ok(Attempt {
            image,
            threshold: point.distance_threshold(),
            opinions,
            comparison,
            certified,
            setup,
        }));
        // Without a face there is nothing a retry could improve when the policy flags.
        let flag_no_face = job.faces_in.faces.is_empty() && level.on_no_face == OnNoFace::Flag;
        if !certified && !flag_no_face {
            still.push(i);
        }
    }
    Ok(still)
}

/// The output's faces compared with the input's, by the certifying embedder and every second
/// opinion.
fn analyze_attempt(
    certifier: &mut Certifier,
    faces_in: &FaceAnalysis,
    image: &DynamicImage,
) -> Result<(Comparison, Vec<Opinion>), CertifyError> {
    let faces_out = certifier.analyze_output(image, faces_in)?;
    let comparison = certifier.compare(faces_in, &faces_out)?;
    let opinions = certifier.second_opinions(faces_in, &faces_out)?;
    Ok((comparison, opinions))
}

/// The finished row of one image after its last attempt; writes the output the policy keeps.
fn verdict(
    context: &BatchContext,
    job: ImageToCertify,
    result: Option<LastAttempt>,
) -> anyhow::Result<ReportRow> {
    let mut row = job.row;
    let result = match result {
        None => {
            row.reason = "no attempt ran (max-attempts is 0)".into();
            return Ok(row);
        }
        Some(Err(unanalyzed)) => {
            unanalyzed.setup.record(&mut row);
            row.reason = format!(
                "face analysis of the output of attempt {} failed: {}; output dropped",
                unanalyzed.setup.number, unanalyzed.error
            );
            row.milliseconds = Some(job.started.elapsed().as_millis() as u64);
            return Ok(row);
        }
        Some(Ok(attempt)) => attempt,
    };
    result.setup.record(&mut row);
    row.certificate = Some(result.comparison.certificate);
    row.distance = result.comparison.distance;
    row.metric = result.comparison.metric.to_string();
    row.threshold = result.threshold;
    row.faces_out = Some(result.comparison.faces_out as u32);
    row.second_opinions = opinions_cell(&result.opinions);
    let no_face = job.faces_in.faces.is_empty();
    let (status, reason, keep) = judge(context, &result, no_face);
    row.status = status;
    row.reason = reason;
    if keep {
        // The plan gave every output name to one input only.
        row.output_sha256 = imageio::write_png_below_tagged(
            &result.image,
            context.output_root,
            &job.output,
            context.temp_tag.as_deref(),
        )?;
        row.output_path = dataset::path_text(&job.output);
    }
    row.milliseconds = Some(job.started.elapsed().as_millis() as u64);
    Ok(row)
}

/// The status, the reason and whether the output is kept, per the policy.
fn judge(context: &BatchContext, result: &Attempt, no_face: bool) -> (Status, String, bool) {
    let level = &context.prepared.level;
    let point = context.points.for_kind(result.comparison.certificate);
    if no_face && level.on_no_face == OnNoFace::Flag {
        let reason =
            "no face found in the input (policy: on-no-face = flag); output kept, not certified";
        (Status::Failed, reason.into(), true)
    } else if result.certified {
        let reason = match result.comparison.certificate {
            CertificateKind::Face => format!(
                "every input face has its output face at its place, and every pair of faces {}",
                beyond(point)
            ),
            CertificateKind::FaceLost if result.comparison.faces_out == 0 => {
                "an input face has no output face at its place, and the output shows no face (accepted: on-face-lost = accept)".to_string()
            }
            CertificateKind::FaceLost => format!(
                "an input face has no output face at its place (accepted: on-face-lost = accept); every pair of faces still found {}",
                beyond(point)
            ),
            CertificateKind::WholeImage => format!(
                "no face in the input: the whole images are no near duplicates at operating point `{}` ({}); a picture check, not an identity check",
                point.name,
                point.rule()
            ),
        };
        (Status::Certified, reason, true)
    } else {
        let flagged = level.on_failure == OnFailure::Flag;
        let dissent = result.opinions.iter().find(|opinion| !opinion.differs);
        let why = if !result.comparison.all_pairs_differ(point) {
            format!("still the same identity ({})", point.rule())
        } else if let Some(opinion) = dissent {
            format!(
                "still the same identity by second opinion {} ({})",
                opinion.embedder,
                opinion.operating_point.rule()
            )
        } else if result.comparison.certificate == CertificateKind::FaceLost {
            "an input face has no output face at its place (on-face-lost = fail: a face the detector stops finding is not shown to be someone else)".to_string()
        } else {
            format!(
                "a {} comparison, which this level does not accept",
                result.comparison.certificate
            )
        };
        let reason = format!(
            "{why} after {} attempts; {}",
            result.setup.number,
            if flagged {
                "output kept and flagged (policy: on-failure = flag)"
            } else {
                "output dropped (policy: on-failure = drop)"
            }
        );
        (Status::Failed, reason, flagged)
    }
}

/// The report's `second_opinions` cell: `name:distance:threshold` per opinion.
fn opinions_cell(opinions: &[Opinion]) -> String {
    opinions
        .iter()
        .map(|opinion| {
            format!(
                "{}:{}:{}",
                opinion.embedder,
                opinion
                    .comparison
                    .distance
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                opinion
                    .operating_point
                    .distance_threshold()
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn beyond(point: &OperatingPoint) -> String {
    format!(
        "is not the same identity at operating point `{}` ({})",
        point.name,
        point.rule()
    )
}

/// The identity an attacker would look up: the image's most confident face. Images without a
/// face are left out: re-identification is about people.
fn representative(analysis: FaceAnalysis) -> Option<Embedding> {
    analysis
        .faces
        .into_iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .map(|face| face.embedding)
}

/// Dataset-level top-1 re-identification: every input is the gallery, every written output a
/// probe. Recomputed from the files, so resumed runs count every row (and `audit --recompute`
/// recomputes it the same way).
pub(crate) fn reidentification(
    rows: &[ReportRow],
    paths: &HashMap<String, (PathBuf, PathBuf)>,
    certifier: &mut Certifier,
) -> anyhow::Result<Option<reid::Reidentification>> {
    let mut gallery = Vec::new();
    let mut probe_embeddings = Vec::new();
    for row in rows.iter().filter(|r| !r.output_path.is_empty()) {
        let Some((input, output)) = paths.get(&row.input_path) else {
            continue;
        };
        // Decoded as the run decoded them, so the embeddings are the ones certification saw.
        let source = dataset::load_image(input)?.image;
        let result = dataset::load_image(output)?.image;
        let (Some(a), Some(b)) = (
            representative(certifier.analyze(&source)?),
            representative(certifier.analyze(&result)?),
        ) else {
            continue;
        };
        probe_embeddings.push((gallery.len(), b));
        gallery.push(a);
    }
    if gallery.is_empty() {
        return Ok(None);
    }
    let probes: Vec<Probe> = probe_embeddings
        .iter()
        .map(|(source, embedding)| Probe {
            source: *source,
            embedding,
        })
        .collect();
    Ok(Some(reid::reidentify(
        certifier.spec().metric,
        &gallery,
        &probes,
    )?))
}

/// The CLI entry shared by `boomerang anonymize` and the `anonymize` binary: runs, prints the
/// plan or the summary, and maps the outcome to the documented exit code.
pub fn command(config: &AnonymizeConfig) -> anyhow::Result<Exit> {
    match run(config)? {
        Outcome::Planned(plan) => {
            if config.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                let start = plan
                    .start_timestep
                    .map_or("none (VAE round trip)".to_string(), |t| t.to_string());
                if let Some(shard) = &plan.shard {
                    println!("part {shard} of the walk (--shard):");
                }
                println!(
                    "dry run: {} images to anonymize, {} to skip\nlevel {}: strength {}, {} {} steps, start timestep {start}\nmodel {} (sha256 {})\npolicy sha256 {}\nreport would go to {}\nnothing written",
                    plan.images,
                    plan.skipped,
                    plan.level,
                    plan.strength,
                    plan.steps,
                    plan.scheduler,
                    plan.model.display(),
                    plan.model_sha256,
                    plan.policy_sha256,
                    plan.report.display()
                );
            }
            Ok(Exit::Success)
        }
        Outcome::Ran(summary) => {
            if config.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                let counts = &summary.counts;
                let reid = match (
                    summary.reidentification_rate,
                    summary.reidentification_chance,
                ) {
                    (Some(rate), Some(chance)) => format!("{rate:.3} (chance {chance:.3})"),
                    _ => "n/a (no output with a face)".to_string(),
                };
                println!(
                    "level {}: {} certified ({}), {} failed, {} errors, {} skipped in {:.1} s\ntop-1 re-identification rate of outputs against inputs: {reid}\nreport {} and run record {} are private: they link outputs to inputs and hold the seed",
                    summary.level,
                    counts.certified,
                    counts.certified_by_kind.describe(),
                    counts.failed,
                    counts.error,
                    counts.skipped,
                    summary.seconds,
                    summary.private.report.display(),
                    summary.private.run_record.display()
                );
            }
            if config.timings && config.json {
                // stdout holds exactly one JSON document.
                eprintln!("{}", summary.timings);
            } else if config.timings {
                println!("{}", summary.timings);
            }
            Ok(if summary.all_certified() {
                Exit::Success
            } else {
                Exit::Incomplete
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_names_only_outputs_below_out() {
        let root = Path::new("/data/out");
        assert_eq!(
            row_output_file(root, "class/a.png"),
            Some(PathBuf::from("/data/out/class/a.png"))
        );
        for outside in [
            "",
            "../a.png",
            "class/../../a.png",
            "/etc/passwd",
            "./a.png",
        ] {
            assert_eq!(row_output_file(root, outside), None, "{outside}");
        }
    }
}
