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
//! A pixel-space denoiser (`--model` a folder with a model.toml, [`DatasetSampler`]) takes 8- or
//! 16-bit grayscale images of its own size (others get error rows) and writes 16-bit grayscale
//! samples, each byte-identical to `boomerang sample`'s sample k at that strength. Its rows record
//! the start sigma in `start_timestep`, the sampler (`consistency`, `euler-<steps>`) in
//! `scheduler`, the number of denoiser calls in `steps`, and in `model_sha256` the run hash of the
//! model.toml and its constants as set (`--set`).
//!
//! `OUT/augment.csv` gets one row per output (and per unusable input), fsync'd as written; with
//! `--resume` finished outputs whose file still matches its row's sha256 are kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use image::DynamicImage;
use ndarray::{concatenate, ArrayView3, Axis};

use super::dataset_run::{
    manifest_row, DatasetOptions, DatasetRun, OutputCounts, OutputStatus, Refused, RunModel,
    RunStart, SamplerOptions,
};
use super::dataset_sampler::{DatasetSampler, Encoded, Prepared, StrengthPlan};
use super::manifest_parts::{self, PartPlan};
use crate::diffusion::engine::Settings;
use crate::diffusion::noise::image_seed;
use crate::diffusion::timing::Stage;
use crate::io::dataset::{self, path_text, EntryKind, OutputClaims};
use crate::io::imageio;

/// The manifest's file name inside OUT.
pub const MANIFEST_NAME: &str = "augment.csv";

/// Validated `augment` configuration.
#[derive(Debug, Clone)]
pub struct AugmentConfig {
    /// Its settings are everything but the strength, which comes from `strengths`; its batch
    /// counts images whose encodings and samples are batched together.
    pub sampler: SamplerOptions,
    /// Sample k uses `strengths[k % strengths.len()]`; never empty.
    pub strengths: Vec<f64>,
    pub count: u32,
    pub originals: bool,
    pub dataset: DatasetOptions,
}

impl AugmentConfig {
    /// The strength of sample `k`.
    pub fn strength_of(&self, k: u32) -> f64 {
        self.strengths[k as usize % self.strengths.len()]
    }

    /// What every part of a sharded run must share beside the model and the seed.
    fn arguments(&self) -> String {
        format!(
            "-n {} --strengths {:?} originals {} {:?} --set {:?}",
            self.count,
            self.strengths,
            self.originals,
            self.sampler.settings,
            self.sampler.constants
        )
    }

    /// The settings at `strength`.
    fn settings_at(&self, strength: f64) -> Settings {
        Settings {
            strength,
            ..self.sampler.settings.clone()
        }
    }
}

manifest_row! {
    /// One row of `augment.csv`. Paths are relative (`/`-separated) to IN and OUT.
    pub struct AugmentRow {
        /// k for `<stem>_aug<k>.png`; empty for the copy of the original.
        pub sample: Option<u32>,
        pub strength: Option<f64>,
        /// Empty at strength 0 (no noise added) and for the original. For a denoiser: the start
        /// sigma.
        pub start_timestep: Option<f64>,
        /// `--steps`; for a denoiser, its calls per sample.
        pub steps: Option<usize>,
        /// The scheduler; for a denoiser, its sampler (`consistency`, `euler-<steps>`).
        pub scheduler: String,
        /// The sample's own seed (hex), from which all its noise is drawn.
        pub seed: String,
        /// The run seed, or `fingerprint:<hex>` for a seed from a secret file.
        pub run_seed: Option<crate::commands::dataset_run::RunSeedCell>,
        pub model_sha256: String,
    }
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

/// One input image to augment and the outputs it writes.
struct ImageToAugment {
    relative: PathBuf,
    original: Option<PathBuf>,
    samples: Vec<PathBuf>,
}

enum Planned {
    Augment(ImageToAugment),
    Skip { relative: PathBuf, reason: String },
}

fn plan(config: &AugmentConfig, entries: Vec<dataset::Entry>) -> Vec<Planned> {
    let mut claims = OutputClaims::default();
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
                let taken = claims.earlier(output).or_else(|| {
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
            Planned::Augment(ImageToAugment {
                relative: entry.relative,
                original,
                samples,
            })
        })
        .collect()
}

/// An input loaded for sampling, with the samples it still needs.
struct Loaded<'a> {
    image: &'a ImageToAugment,
    source_sha256: String,
    prepared: Prepared,
    seeds: Vec<[u8; 32]>,
    pending: Vec<u32>,
}

/// Runs `augment`; returns what happened (its `exit` is the process status).
pub fn run(config: &AugmentConfig) -> anyhow::Result<OutputCounts> {
    let shard = PartPlan::resolve(&config.dataset, &config.sampler.seed)?;
    dataset::check_folders(&config.dataset.input, &config.dataset.output).map_err(Refused::from)?;
    // From here on OUT is used only resolved: creating it creates nothing inside IN.
    let config = &AugmentConfig {
        dataset: super::dataset_run::with_resolved_output(&config.dataset)?,
        ..config.clone()
    };
    let walked = dataset::walk(&config.dataset.input).map_err(Refused::from)?;
    // Output names are planned on the whole walk, so every part agrees on them.
    let part = shard.map(|shard| PartPlan::of(shard, &walked));
    let mut planned = plan(config, walked);
    let manifest_name = match &part {
        Some(part) => part.take_block(&mut planned, MANIFEST_NAME),
        None => MANIFEST_NAME.to_string(),
    };
    let outputs = planned_outputs(&planned);
    manifest_parts::refuse_existing(part.as_ref(), &config.dataset, MANIFEST_NAME, &outputs)?;
    let sampler = DatasetSampler::open(&config.sampler, "augment")?;
    let (run, kept) = DatasetRun::start(
        sampler,
        &RunStart {
            output: &config.dataset.output,
            manifest_name: &manifest_name,
            resume: config.dataset.resume,
            seed: &config.sampler.seed,
            outputs: &outputs,
            part: part.is_some(),
            resume_with: "the arguments of that run (-n, --no-originals)",
        },
    )?;
    let record = match &part {
        Some(part) => Some(part.start_record(
            &run.manifest_path,
            "augment",
            config.arguments(),
            &run.model_sha256,
            &run.run_seed_cell,
        )?),
        None => None,
    };
    let manifest_path = run.manifest_path.clone();
    let mut augmenting = Augmenting::new(config, run, kept)?;
    augmenting.print_header()?;
    let images = planned
        .iter()
        .filter(|p| matches!(p, Planned::Augment(_)))
        .count();
    augmenting.run.show_progress(images, config.dataset.quiet);
    // Rows go in walk order: a skipped entry first finishes the group before it.
    let mut group: Vec<&ImageToAugment> = Vec::new();
    for item in &planned {
        match item {
            Planned::Augment(image) => {
                group.push(image);
                if group.len() == config.sampler.batch {
                    augmenting.process_group(&std::mem::take(&mut group))?;
                }
            }
            Planned::Skip { relative, reason } => {
                augmenting.process_group(&std::mem::take(&mut group))?;
                augmenting.log_skipped(relative, reason)?;
            }
        }
    }
    augmenting.process_group(&group)?;
    let counts = augmenting
        .run
        .finish(config.dataset.quiet, config.dataset.timings);
    if let Some(record) = record {
        record.finish(&manifest_path)?;
    }
    Ok(counts)
}

/// Every output path the plan writes, as manifest rows name them.
fn planned_outputs(planned: &[Planned]) -> HashSet<String> {
    planned
        .iter()
        .filter_map(|p| match p {
            Planned::Augment(image) => Some(image),
            Planned::Skip { .. } => None,
        })
        .flat_map(|image| image.original.iter().chain(&image.samples))
        .map(|path| path_text(path))
        .collect()
}

/// A started augment run and what all its rows share.
struct Augmenting<'a> {
    config: &'a AugmentConfig,
    run: DatasetRun<AugmentRow, DatasetSampler>,
    /// Rows of the resumed run by output path.
    kept: HashMap<String, AugmentRow>,
    scheduler: String,
    /// The plan of each strength (by its bits).
    plans: HashMap<u64, StrengthPlan>,
    /// Rows of the group being processed, logged when it is done ([`Augmenting::process_group`]).
    held: Vec<AugmentRow>,
}

impl<'a> Augmenting<'a> {
    fn new(
        config: &'a AugmentConfig,
        run: DatasetRun<AugmentRow, DatasetSampler>,
        kept: HashMap<String, AugmentRow>,
    ) -> anyhow::Result<Augmenting<'a>> {
        let sampler = &run.model;
        let scheduler = sampler.scheduler(&config.sampler.settings)?;
        let mut plans = HashMap::new();
        for &strength in &config.strengths {
            plans.insert(
                strength.to_bits(),
                sampler.plan(&config.settings_at(strength))?,
            );
        }
        Ok(Augmenting {
            config,
            run,
            kept,
            scheduler,
            plans,
            held: Vec::new(),
        })
    }

    /// The plan of one of `config.strengths`.
    fn plan_of(&self, strength: f64) -> anyhow::Result<StrengthPlan> {
        self.plans
            .get(&strength.to_bits())
            .copied()
            .with_context(|| format!("internal: strength {strength} was not planned"))
    }

    fn print_header(&self) -> anyhow::Result<()> {
        let config = self.config;
        if config.dataset.quiet {
            return Ok(());
        }
        let sampler = &self.run.model;
        println!(
            "{}",
            sampler.describe(&config.sampler.model, &self.run.model_sha256)
        );
        for &strength in &config.strengths {
            let line = sampler.describe_strength(&config.settings_at(strength), &self.scheduler)?;
            println!("{line}");
        }
        self.run.print_seed(config.dataset.quiet);
        Ok(())
    }

    /// The row of an entry the plan skips.
    fn log_skipped(&mut self, relative: &Path, reason: &str) -> anyhow::Result<()> {
        let row = AugmentRow {
            status: OutputStatus::Skipped,
            reason: reason.to_string(),
            ..self.run.row(relative)
        };
        self.run.log(&row)?;
        Ok(())
    }

    /// Loads and samples a group, then logs its rows image by image (original first, then
    /// samples by k), so the manifest's order does not depend on how images were grouped: the
    /// parts of a sharded run merge into the manifest of an unsharded run.
    fn process_group(&mut self, group: &[&ImageToAugment]) -> anyhow::Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let loaded = self.load_group(group)?;
        if !loaded.is_empty() {
            self.sample_group(&loaded)?;
            self.run.tick(loaded.len() as u64);
        }
        let position: HashMap<String, usize> = group
            .iter()
            .enumerate()
            .map(|(index, image)| (path_text(&image.relative), index))
            .collect();
        let mut rows = std::mem::take(&mut self.held);
        rows.sort_by_key(|row| {
            (
                position.get(&row.source).copied(),
                row.sample.map_or(0, |k| u64::from(k) + 1),
            )
        });
        for row in &rows {
            self.run.log(row)?;
        }
        Ok(())
    }

    /// Loads each image of a group, writes its original, and returns those with samples to go.
    fn load_group<'g>(&mut self, group: &[&'g ImageToAugment]) -> anyhow::Result<Vec<Loaded<'g>>> {
        let mut loaded = Vec::new();
        for &image in group {
            match self.load(image)? {
                Some(input) => loaded.push(input),
                None => self.run.tick(1),
            }
        }
        Ok(loaded)
    }

    /// One image: an error row when it cannot be read, `None` when nothing is left to sample.
    fn load<'g>(&mut self, image: &'g ImageToAugment) -> anyhow::Result<Option<Loaded<'g>>> {
        let config = self.config;
        let path = config.dataset.input.join(&image.relative);
        let loaded = (self.run.model.timer()).time(Stage::ImageIo, |_| dataset::load_image(&path));
        // An image the model cannot take (a denoiser's wrong size or colour) is an error row too.
        let prepared = loaded.map_err(|error| error.reason()).and_then(|input| {
            let prepared = self.run.model.prepare(&input.image)?;
            Ok((input, prepared))
        });
        let (input, prepared) = match prepared {
            Ok(both) => both,
            Err(reason) => {
                let row = AugmentRow {
                    status: OutputStatus::Error,
                    reason,
                    ..self.run.row(&image.relative)
                };
                self.held.push(row);
                return Ok(None);
            }
        };
        let source_sha256 = hex::encode(input.sha256);
        if let Some(original) = &image.original {
            if !self.is_kept(original, &source_sha256, &|row| row.sample.is_none())? {
                self.write_original(image, original, &input.image, &source_sha256)?;
            }
        }
        let seeds: Vec<[u8; 32]> = (0..config.count)
            .map(|k| image_seed(self.run.run_seed, &input.sha256, k))
            .collect();
        let pending = self.pending_samples(image, &seeds, &source_sha256)?;
        if pending.is_empty() {
            return Ok(None);
        }
        Ok(Some(Loaded {
            image,
            source_sha256,
            prepared,
            seeds,
            pending,
        }))
    }

    /// The samples k of `image` that the resumed manifest does not hold yet.
    fn pending_samples(
        &self,
        image: &ImageToAugment,
        seeds: &[[u8; 32]],
        source_sha256: &str,
    ) -> anyhow::Result<Vec<u32>> {
        let config = self.config;
        let mut pending = Vec::new();
        for (k, output) in (0..config.count).zip(&image.samples) {
            let seed = hex::encode(seeds[k as usize]);
            let strength = config.strength_of(k);
            let steps = self.plan_of(strength)?.steps;
            let same = |row: &AugmentRow| {
                row.sample == Some(k)
                    && row.seed == seed
                    && row.strength == Some(strength)
                    && row.steps == Some(steps)
                    && row.scheduler == self.scheduler
            };
            if !self.is_kept(output, source_sha256, &same)? {
                pending.push(k);
            }
        }
        Ok(pending)
    }

    /// Whether the resumed run already wrote `output` from this input and model (and `check`
    /// accepts its row); a row made from anything else refuses the resume.
    fn is_kept(
        &self,
        output: &Path,
        source_sha256: &str,
        check: &dyn Fn(&AugmentRow) -> bool,
    ) -> Result<bool, Refused> {
        match self.kept.get(&path_text(output)) {
            Some(row)
                if row.source_sha256 == source_sha256
                    && row.model_sha256 == self.run.model_sha256
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
    }

    /// `<stem>.png`: the original's pixels, re-encoded losslessly.
    fn write_original(
        &mut self,
        image: &ImageToAugment,
        original: &Path,
        pixels: &DynamicImage,
        source_sha256: &str,
    ) -> anyhow::Result<()> {
        let pixels = lossless_pixels(pixels.clone());
        let output = &self.config.dataset.output;
        let output_sha256 = (self.run.model.timer()).time(Stage::ImageIo, |_| {
            imageio::write_png_below(&pixels, output, original)
        });
        let row = AugmentRow {
            source_sha256: source_sha256.to_string(),
            output: path_text(original),
            output_sha256: output_sha256?,
            ..self.run.row(&image.relative)
        };
        self.held.push(row);
        Ok(())
    }

    /// Encodes a group once, then samples it one strength at a time.
    fn sample_group(&mut self, loaded: &[Loaded]) -> anyhow::Result<()> {
        let views: Vec<_> = loaded.iter().map(|l| l.prepared.tensor.view()).collect();
        let stacked = concatenate(Axis(0), &views).context("stacking a batch")?;
        let encoding = self.run.model.encode(stacked)?;
        for &strength in distinct(&self.config.strengths).iter() {
            let samples: Vec<(usize, u32)> = loaded
                .iter()
                .enumerate()
                .flat_map(|(index, l)| l.pending.iter().map(move |&k| (index, k)))
                .filter(|&(_, k)| self.config.strength_of(k) == strength)
                .collect();
            if !samples.is_empty() {
                self.sample_at(loaded, &encoding, strength, &samples)?;
            }
        }
        Ok(())
    }

    /// The `samples` (input index, k) of one strength through the model as one batch.
    fn sample_at(
        &mut self,
        loaded: &[Loaded],
        encoding: &Encoded,
        strength: f64,
        samples: &[(usize, u32)],
    ) -> anyhow::Result<()> {
        let indices: Vec<usize> = samples.iter().map(|&(index, _)| index).collect();
        let seeds: Vec<[u8; 32]> = samples
            .iter()
            .map(|&(index, k)| loaded[index].seeds[k as usize])
            .collect();
        let settings = self.config.settings_at(strength);
        let images = (self.run.model).sample(encoding, &indices, &settings, &seeds)?;
        let plan = self.plan_of(strength)?;
        let results = samples.iter().zip(&seeds).zip(images.outer_iter());
        for ((&(index, k), seed), result) in results {
            let sample = Sample {
                k,
                strength,
                plan,
                seed,
            };
            self.write_sample(&loaded[index], &sample, result)?;
        }
        Ok(())
    }

    fn write_sample(
        &mut self,
        input: &Loaded,
        sample: &Sample,
        result: ArrayView3<f32>,
    ) -> anyhow::Result<()> {
        let config = self.config;
        let path = &input.image.samples[sample.k as usize];
        let output_sha256 = self.run.model.timer().time(Stage::ImageIo, |_| {
            let image = input
                .prepared
                .to_image(result)
                .with_context(|| format!("the model {}", config.sampler.model.display()))?;
            anyhow::Ok(imageio::write_png_below(
                &image,
                &config.dataset.output,
                path,
            )?)
        });
        let row = AugmentRow {
            source_sha256: input.source_sha256.clone(),
            output: path_text(path),
            output_sha256: output_sha256?,
            sample: Some(sample.k),
            strength: Some(sample.strength),
            start_timestep: sample.plan.start,
            steps: Some(sample.plan.steps),
            scheduler: self.scheduler.clone(),
            seed: hex::encode(sample.seed),
            ..self.run.row(&input.image.relative)
        };
        self.held.push(row);
        Ok(())
    }
}

/// What one sample's row records beside its input's columns.
struct Sample<'a> {
    k: u32,
    strength: f64,
    plan: StrengthPlan,
    seed: &'a [u8; 32],
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
