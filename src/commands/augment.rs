//! `boomerang augment`: N Boomerang samples of every image of a class-folder dataset.
//!
//! Layout: `IN/<folders>/<stem>.<ext>` gives `OUT/<folders>/<stem>_aug<k>.png` for k = 0..N-1,
//! plus `OUT/<folders>/<stem>.png`, the original's pixels re-encoded as PNG (bit depth and alpha
//! kept, metadata dropped; `--no-originals` leaves it out). Sample k has the seed
//! `image_seed(run seed, sha256 of the input file, k)`, the same as `boomerang sample`'s sample k,
//! and with `--strengths S0,S1,..` the strength `S[k mod len]`.
//!
//! Shared encoding: a group of `--batch` images goes through the VAE encoder once; each sample
//! then draws its own posterior sample, start noise and step noise from its own seed streams, and
//! all samples of the group that share a strength go through the UNet as one batch. Every random
//! draw depends only on the sample's seed, so a sample is the same as when run alone.
//!
//! `OUT/augment.csv` gets one row per output (and per unusable input), fsync'd as written; with
//! `--resume` finished outputs whose file still matches its row's sha256 are kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::DynamicImage;
use ndarray::{concatenate, Array4, Axis};
use serde::{Deserialize, Serialize};

use super::dataset_run::{self, OutputCounts, OutputStatus, Refused};
use crate::diffusion::engine::{Engine, Settings};
use crate::diffusion::noise::image_seed;
use crate::diffusion::timing::Stage;
use crate::io::dataset::{self, path_text, EntryKind};
use crate::io::imageio::{self, Placement};
use crate::io::runtime::{self, SessionOptions};
use crate::records::csv_log::{CsvLog, LogRow};

/// The manifest's file name inside OUT.
pub const MANIFEST_NAME: &str = "augment.csv";

/// Validated `augment` configuration.
#[derive(Debug, Clone)]
pub struct AugmentConfig {
    pub model: PathBuf,
    /// Everything but the strength, which comes from `strengths`.
    pub settings: Settings,
    /// Sample k uses `strengths[k % strengths.len()]`; never empty.
    pub strengths: Vec<f64>,
    /// `None`: the resumed manifest's run seed, else a fresh random one.
    pub seed: Option<u64>,
    pub count: u32,
    /// Images whose encodings and samples are batched together.
    pub batch: usize,
    pub originals: bool,
    pub input: PathBuf,
    pub output: PathBuf,
    pub resume: bool,
    pub quiet: bool,
    pub timings: bool,
    pub session: SessionOptions,
    pub onnxruntime: Option<PathBuf>,
}

impl AugmentConfig {
    /// The strength of sample `k`.
    pub fn strength_of(&self, k: u32) -> f64 {
        self.strengths[k as usize % self.strengths.len()]
    }
}

/// One row of `augment.csv`. Paths are relative (`/`-separated) to IN and OUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentRow {
    pub source: String,
    pub source_sha256: String,
    pub output: String,
    pub output_sha256: String,
    pub status: OutputStatus,
    pub reason: String,
    /// k for `<stem>_aug<k>.png`; empty for the copy of the original.
    pub sample: Option<u32>,
    pub strength: Option<f64>,
    /// Empty at strength 0 (no noise added) and for the original.
    pub start_timestep: Option<f64>,
    pub steps: Option<usize>,
    pub scheduler: String,
    /// The sample's own seed (hex), from which all its noise is drawn.
    pub seed: String,
    pub run_seed: Option<u64>,
    pub model_sha256: String,
}

impl LogRow for AugmentRow {
    const COLUMNS: &'static [&'static str] = &[
        "source",
        "source_sha256",
        "output",
        "output_sha256",
        "status",
        "reason",
        "sample",
        "strength",
        "start_timestep",
        "steps",
        "scheduler",
        "seed",
        "run_seed",
        "model_sha256",
    ];
}

/// `<stem>_aug<k>.png` beside where the input sits, relative to OUT.
pub fn sample_name(relative: &Path, k: u32) -> PathBuf {
    with_stem_suffix(relative, &format!("_aug{k}"))
}

/// `<stem>.png`, the re-encoded original, relative to OUT.
pub fn original_name(relative: &Path) -> PathBuf {
    with_stem_suffix(relative, "")
}

fn with_stem_suffix(relative: &Path, suffix: &str) -> PathBuf {
    let mut name = relative
        .file_stem()
        .unwrap_or(relative.as_os_str())
        .to_os_string();
    name.push(suffix);
    name.push(".png");
    relative.with_file_name(name)
}

/// One image to augment and what it writes.
struct Job {
    relative: PathBuf,
    original: Option<PathBuf>,
    samples: Vec<PathBuf>,
}

enum Planned {
    Augment(Job),
    Skip { relative: PathBuf, reason: String },
}

/// Output paths claimed so far, to give a later input whose outputs clash a skipped row.
#[derive(Default)]
struct Claims {
    files: HashMap<PathBuf, PathBuf>,
    folders: HashMap<PathBuf, PathBuf>,
}

impl Claims {
    /// The earlier input already writing `output` (or a file where `output` needs a folder, or a
    /// folder where it is a file).
    fn clash(&self, output: &Path) -> Option<&PathBuf> {
        self.files
            .get(output)
            .or_else(|| self.folders.get(output))
            .or_else(|| {
                output
                    .ancestors()
                    .skip(1)
                    .find_map(|dir| self.files.get(dir))
            })
    }

    fn claim(&mut self, output: &Path, source: &Path) {
        for folder in output.ancestors().skip(1) {
            if folder.as_os_str().is_empty() {
                break;
            }
            self.folders
                .entry(folder.to_path_buf())
                .or_insert_with(|| source.to_path_buf());
        }
        self.files
            .insert(output.to_path_buf(), source.to_path_buf());
    }
}

fn plan(config: &AugmentConfig, entries: Vec<dataset::Entry>) -> Vec<Planned> {
    let mut claims = Claims::default();
    entries
        .into_iter()
        .map(|entry| {
            if let EntryKind::Skipped(reason) = entry.kind {
                return Planned::Skip {
                    relative: entry.relative,
                    reason: reason.to_string(),
                };
            }
            let original = config.originals.then(|| original_name(&entry.relative));
            let samples: Vec<PathBuf> = (0..config.count)
                .map(|k| sample_name(&entry.relative, k))
                .collect();
            let mut mine = HashSet::new();
            for output in original.iter().chain(&samples) {
                let taken = claims.clash(output).or_else(|| {
                    // `a_aug0.png` can itself be an input's name in the same folder.
                    mine.contains(output).then_some(&entry.relative)
                });
                if let Some(earlier) = taken {
                    return Planned::Skip {
                        reason: format!(
                            "output {} is already written for {}: rename one of them",
                            path_text(output),
                            path_text(earlier)
                        ),
                        relative: entry.relative,
                    };
                }
                mine.insert(output.clone());
            }
            for output in &mine {
                claims.claim(output, &entry.relative);
            }
            Planned::Augment(Job {
                relative: entry.relative,
                original,
                samples,
            })
        })
        .collect()
}

/// An input loaded for sampling, with the samples it still needs.
struct Loaded<'a> {
    job: &'a Job,
    source_sha256: String,
    tensor: Array4<f32>,
    placement: Placement,
    seeds: Vec<[u8; 32]>,
    pending: Vec<u32>,
}

/// Runs `augment`; returns what happened (its `exit` is the process status).
pub fn run(config: &AugmentConfig) -> anyhow::Result<OutputCounts> {
    dataset::check_folders(&config.input, &config.output).map_err(Refused::from)?;
    let manifest_path = config.output.join(MANIFEST_NAME);
    if !config.resume && !dataset::output_is_empty(&config.output).map_err(Refused::from)? {
        return Err(Refused(format!(
            "output {} is not empty: continue that run with --resume, or choose an empty folder",
            config.output.display()
        ))
        .into());
    }
    let planned = plan(config, dataset::walk(&config.input).map_err(Refused::from)?);

    // Before anything is written, so a model or runtime problem leaves OUT untouched.
    let runtime = runtime::init(config.onnxruntime.as_deref())?;
    let mut engine = Engine::open(&config.model, runtime, &config.session)?;
    std::fs::create_dir_all(&config.output)
        .with_context(|| format!("creating {}", config.output.display()))?;
    let (mut manifest, kept) = if config.resume {
        CsvLog::<AugmentRow>::resume(&manifest_path, |row| {
            row.status == OutputStatus::Ok
                && dataset_run::file_sha256(&config.output.join(&row.output)).as_deref()
                    == Some(row.output_sha256.as_str())
        })?
    } else {
        (CsvLog::create(&manifest_path)?, Vec::new())
    };
    let run_seed = resolve_seed(config.seed, &kept)?;
    let kept = index_kept(&planned, kept)?;

    let size = engine.model.geometry.image_size() as u32;
    let model_sha256 = engine.model.model_hash();
    let scheduler = engine.schedulers.kind(&config.settings)?.to_string();
    let mut starts = HashMap::new();
    for &strength in &config.strengths {
        let settings = Settings {
            strength,
            ..config.settings.clone()
        };
        let (_, start) = engine.schedulers.plan(&settings)?;
        starts.insert(strength.to_bits(), start.start_timestep());
    }
    let start_of = |strength: f64| starts.get(&strength.to_bits()).copied().flatten();

    if !config.quiet {
        println!(
            "model {} (manifest sha256 {model_sha256}), working size {size}x{size}",
            config.model.display()
        );
        for &strength in &config.strengths {
            match start_of(strength) {
                Some(t) => println!(
                    "strength {strength}: {} steps of {scheduler}, start timestep {t}",
                    config.settings.steps
                ),
                None => println!("strength {strength}: no noise added (the VAE round trip)"),
            }
        }
        println!("seed {run_seed}; manifest {}", manifest_path.display());
    }

    let mut counts = OutputCounts {
        kept: kept.len() as u64,
        ..OutputCounts::default()
    };
    let base_row = |source: &Path| AugmentRow {
        source: path_text(source),
        source_sha256: String::new(),
        output: String::new(),
        output_sha256: String::new(),
        status: OutputStatus::Ok,
        reason: String::new(),
        sample: None,
        strength: None,
        start_timestep: None,
        steps: None,
        scheduler: String::new(),
        seed: String::new(),
        run_seed: Some(run_seed),
        model_sha256: model_sha256.clone(),
    };

    let jobs: Vec<&Job> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Augment(job) => Some(job),
            Planned::Skip { .. } => None,
        })
        .collect();
    let bar = dataset_run::progress_bar(jobs.len() as u64, "images", config.quiet);
    for item in &planned {
        if let Planned::Skip { relative, reason } = item {
            manifest.append(&AugmentRow {
                status: OutputStatus::Skipped,
                reason: reason.clone(),
                ..base_row(relative)
            })?;
            counts.skipped += 1;
        }
    }

    for group in jobs.chunks(config.batch) {
        let mut loaded = Vec::new();
        for &job in group {
            let input = match engine.timer.time(Stage::ImageIo, |_| {
                dataset::load_image(&config.input.join(&job.relative))
            }) {
                Ok(input) => input,
                Err(error) => {
                    manifest.append(&AugmentRow {
                        status: OutputStatus::Error,
                        reason: error.reason(),
                        ..base_row(&job.relative)
                    })?;
                    counts.errors += 1;
                    counts.tick(&bar, 1);
                    continue;
                }
            };
            let source_sha256 = hex::encode(input.sha256);
            let seeds: Vec<[u8; 32]> = (0..config.count)
                .map(|k| image_seed(run_seed, &input.sha256, k))
                .collect();
            let is_kept = |output: &Path, check: &dyn Fn(&AugmentRow) -> bool| {
                match kept.get(&path_text(output)) {
                    Some(row)
                        if row.source_sha256 == source_sha256
                            && row.model_sha256 == model_sha256
                            && check(row) =>
                    {
                        Ok(true)
                    }
                    Some(_) => Err(Refused(format!(
                        "{}: its manifest row was made from another input file, model or settings; resume with the arguments of that run, or start over in an empty folder",
                        path_text(output)
                    ))),
                    None => Ok(false),
                }
            };
            if let Some(original) = &job.original {
                if !is_kept(original, &|row| row.sample.is_none())? {
                    let pixels = lossless_pixels(input.image.clone());
                    let output_sha256 = engine.timer.time(Stage::ImageIo, |_| {
                        imageio::write_png(&pixels, &config.output.join(original))
                    });
                    manifest.append(&AugmentRow {
                        source_sha256: source_sha256.clone(),
                        output: path_text(original),
                        output_sha256: output_sha256?,
                        ..base_row(&job.relative)
                    })?;
                    counts.written += 1;
                }
            }
            let mut pending = Vec::new();
            for (k, output) in (0..config.count).zip(&job.samples) {
                let seed = hex::encode(seeds[k as usize]);
                let strength = config.strength_of(k);
                let same = |row: &AugmentRow| {
                    row.sample == Some(k)
                        && row.seed == seed
                        && row.strength == Some(strength)
                        && row.steps == Some(config.settings.steps)
                        && row.scheduler == scheduler
                };
                if !is_kept(output, &same)? {
                    pending.push(k);
                }
            }
            if pending.is_empty() {
                counts.tick(&bar, 1);
                continue;
            }
            let (tensor, placement) = imageio::to_working_tensor(&input.image, size);
            loaded.push(Loaded {
                job,
                source_sha256,
                tensor,
                placement,
                seeds,
                pending,
            });
        }
        if loaded.is_empty() {
            continue;
        }

        let views: Vec<_> = loaded.iter().map(|l| l.tensor.view()).collect();
        let stacked = concatenate(Axis(0), &views).context("stacking a batch")?;
        let encoding = engine.encode(stacked.view())?;
        for &strength in distinct(&config.strengths).iter() {
            let rows: Vec<(usize, u32)> = loaded
                .iter()
                .enumerate()
                .flat_map(|(index, l)| l.pending.iter().map(move |&k| (index, k)))
                .filter(|&(_, k)| config.strength_of(k) == strength)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let indices: Vec<usize> = rows.iter().map(|&(index, _)| index).collect();
            let seeds: Vec<[u8; 32]> = rows
                .iter()
                .map(|&(index, k)| loaded[index].seeds[k as usize])
                .collect();
            let settings = Settings {
                strength,
                ..config.settings.clone()
            };
            let (output, start) =
                engine.run_encoded(&settings, &encoding.select(&indices)?, &seeds)?;
            let results = rows.iter().zip(&seeds).zip(output.images.outer_iter());
            for ((&(index, k), seed), result) in results {
                let l = &loaded[index];
                let path = &l.job.samples[k as usize];
                let output_sha256 = engine.timer.time(Stage::ImageIo, |_| {
                    let image = imageio::from_working_tensor(result, &l.placement);
                    imageio::write_png(&image, &config.output.join(path))
                });
                manifest.append(&AugmentRow {
                    source_sha256: l.source_sha256.clone(),
                    output: path_text(path),
                    output_sha256: output_sha256?,
                    sample: Some(k),
                    strength: Some(strength),
                    start_timestep: start.start_timestep(),
                    steps: Some(config.settings.steps),
                    scheduler: scheduler.clone(),
                    seed: hex::encode(seed),
                    ..base_row(&l.job.relative)
                })?;
                counts.written += 1;
            }
        }
        counts.tick(&bar, loaded.len() as u64);
    }
    bar.finish_and_clear();
    if !config.quiet {
        println!("{}", counts.summary());
    }
    if config.timings {
        println!("{}", engine.timer.report());
    }
    Ok(counts)
}

fn resolve_seed(given: Option<u64>, kept: &[AugmentRow]) -> Result<u64, Refused> {
    dataset_run::resolve_seed(given, kept.iter().map(|row| row.run_seed))
}

/// Kept rows by output path; a row for an output this run does not plan means other arguments.
fn index_kept(
    planned: &[Planned],
    kept: Vec<AugmentRow>,
) -> Result<HashMap<String, AugmentRow>, Refused> {
    let outputs: HashSet<String> = planned
        .iter()
        .filter_map(|p| match p {
            Planned::Augment(job) => Some(job),
            Planned::Skip { .. } => None,
        })
        .flat_map(|job| job.original.iter().chain(&job.samples))
        .map(|path| path_text(path))
        .collect();
    let mut index = HashMap::new();
    for row in kept {
        if !outputs.contains(&row.output) {
            return Err(Refused(format!(
                "the manifest lists {}, which this run would not write: resume with the arguments of that run (-n, --no-originals), or start over in an empty folder",
                row.output
            )));
        }
        index.insert(row.output.clone(), row);
    }
    Ok(index)
}

/// Strengths in first-seen order, each once.
fn distinct(strengths: &[f64]) -> Vec<f64> {
    let mut seen = Vec::new();
    for &s in strengths {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    seen
}

/// The decoded pixels in a form PNG stores exactly (float images become 16-bit).
fn lossless_pixels(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgb16(image.to_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgba16(image.to_rgba16()),
        other => other,
    }
}
