//! Every clap type of boomerang, and its conversion into the plain config its command takes.
//! Nothing outside `cli/` sees clap.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::audit::{AuditConfig, ClaimedFiles, Recheck, RunFiles, DEFAULT_DISTANCE_TOLERANCE};
use crate::certify::DEFAULT_EMBEDDER;
use crate::commands::anonymize::AnonymizeConfig;
use crate::commands::augment::AugmentConfig;
use crate::commands::calibrate::CalibrateConfig;
use crate::commands::dataset_run::{DatasetOptions, SamplerOptions};
use crate::commands::enhance::EnhanceConfig;
use crate::commands::model::{ExportConfig, PullConfig};
use crate::commands::report_merge::MergeConfig;
use crate::commands::sample::SampleConfig;
use crate::commands::score::ScoreConfig;
use crate::diffusion::engine::Settings;
use crate::diffusion::scheduler::SchedulerKind;
use crate::io::hashing::Verify;
use crate::io::runtime::{Device, DeviceList, RuntimeConfig, SessionOptions};
use crate::io::secret::SeedSource;
use crate::io::shard::ShardRequest;
use crate::policy::MAX_GUIDANCE;

#[derive(Debug, Parser)]
#[command(
    name = "boomerang",
    version,
    about = "Boomerang local sampling on Stable Diffusion ONNX graphs",
    long_about = "Boomerang (Luzi et al., TMLR 2024): encode an image, add forward-diffusion noise up to an \
intermediate timestep t = strength x T, then run the ordinary reverse diffusion back to 0. The result \
stays on the image manifold, close to the input but never identical; a larger strength moves it farther.\n\n\
Models are Stable Diffusion folders exported with `optimum-cli export onnx --task image-to-image` \
(`boomerang model export` prints how), or pulled ready-made from a Hugging Face hub with \
`boomerang model pull`. \
ONNX Runtime is loaded at run time; `boomerang fetch-onnxruntime` installs the pinned CPU build."
)]
pub struct Opts {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Anonymize a dataset: certified Boomerang on every image of IN, written to OUT with the same
    /// folder layout, plus a private hash-chained CSV report beside OUT
    Anonymize(AnonymizeArgs),
    /// Write COUNT Boomerang samples of each IMAGE into OUTDIR (as <stem>_<k>.png)
    Sample(SampleArgs),
    /// Write N Boomerang samples of every image of a class-folder dataset (data augmentation)
    ///
    /// IN is an ImageFolder-style dataset (class folders of images); OUT gets the same folders.
    /// For IN/<class>/<stem>.<ext> it writes OUT/<class>/<stem>_aug<k>.png for k = 0..N-1 and,
    /// unless --no-originals, OUT/<class>/<stem>.png: the original's pixels re-encoded as PNG (bit
    /// depth and alpha kept; EXIF, XMP and every other metadata dropped). Samples are 8-bit RGB
    /// (grayscale stays grayscale, alpha dropped) at the input's exact size.
    ///
    /// Sample k is seeded by sha256(run seed, sha256 of the input file, k), exactly like sample k
    /// of `boomerang sample`, and gets the strength S[k mod len] of --strengths S0,S1,.. (or
    /// --strength). Each image is VAE-encoded once for all its samples; each sample still draws its
    /// own posterior, start and step noise from its own seed, so it is byte-identical to running
    /// it alone. With --batch B, B images are encoded together and all their samples of one
    /// strength go through the UNet as one batch.
    ///
    /// OUT/augment.csv lists every output (source, source_sha256, output, output_sha256, status,
    /// reason, sample, strength, start_timestep, steps, scheduler, seed, run_seed, model_sha256;
    /// with --seed-file, run_seed holds `fingerprint:<hex>` instead of the seed),
    /// one row fsync'd per output, plus error rows for unusable images and skipped rows for other
    /// files. Outputs are written to a temp file and renamed. A non-empty OUT is refused unless
    /// --resume, which keeps outputs whose row and sha256 match and redoes the rest.
    ///
    /// --model may also be a pixel-space denoiser folder (one with a model.toml): inputs must be
    /// 8- or 16-bit grayscale of the model's size, samples are 16-bit grayscale and equal
    /// `boomerang sample`'s; start_timestep then holds the start sigma, scheduler the sampler,
    /// steps the denoiser calls. --set INPUT=VALUE sets its constant inputs; the Stable Diffusion
    /// options (--steps, --scheduler, --eta, --prompt, --negative-prompt, --guidance) are refused.
    ///
    /// Exit codes: 0 every image augmented (skipped non-images do not count); 1 the run could not
    /// proceed (refused folders included); 2 usage error; 3 some images could not be read (error
    /// rows in the manifest).
    Augment(AugmentArgs),
    /// Upsample images by K (Lanczos3), then Boomerang at low strength at that size in fused tiles
    ///
    /// IN is an image file or a folder (walked recursively, layout kept); OUT is a folder. Each
    /// image becomes OUT/<folders>/<stem>.png, exactly K times its width and height: upsampled with
    /// a Lanczos3 filter, then Boomerang at --strength (default 0.2) adds plausible detail.
    ///
    /// The upsampled image is denoised as one latent field, with the model called on square tiles
    /// of --tile pixels (default: the model's working size) spread evenly so neighbours overlap by
    /// at least --overlap pixels (default a quarter tile, rounded up to whole latent cells); at
    /// every step the tiles' predictions are averaged with linear ramps across each overlap
    /// (MultiDiffusion), and the VAE's outputs likewise, so tiles agree and no seam shows. A side
    /// shorter than a tile is padded by repeating its edge and cut back. All noise comes from the
    /// image seed sha256(run seed, sha256 of the input, 0).
    /// Output is 8-bit RGB (grayscale stays grayscale, alpha dropped), PNG without metadata.
    ///
    /// --model may also be a pixel-space denoiser folder (one with a model.toml): the 8- or
    /// 16-bit grayscale input is upsampled as 16-bit and denoised in fused tiles of the model's
    /// size (the only --tile it takes); output is 16-bit grayscale. --set INPUT=VALUE sets its
    /// constant inputs; the Stable Diffusion options are refused.
    ///
    /// OUT/enhance.csv gets one row per input (fsync'd as written), with resume, error and skipped
    /// rows as for `augment`. Exit codes: 0 all enhanced; 1 the run could not proceed; 2 usage
    /// error; 3 some images could not be read or were too large.
    Enhance(EnhanceArgs),
    /// Compare the faces in two images: distance and same/different identity verdict
    Score(ScoreArgs),
    /// Measure an embedder on a folder-per-identity set: genuine and impostor distances, the
    /// thresholds at FMR 1e-3 and 1e-2 with the FNMR there, and the spec's operating points
    ///
    /// IDENTITIES/ holds one folder per person with that person's images. Each image is analyzed
    /// like `score` does; images with no face or several faces are listed and left out. Genuine
    /// pairs are two images of one folder, impostor pairs images of two folders. A threshold at
    /// FMR F is the largest max-distance whose measured FMR is at most F; with fewer than 1/F
    /// impostor pairs it is reported as not resolvable. --write records the resolved levels in
    /// the spec as operating points `fmr-1e-3` / `fmr-1e-2` with their measured FMR, FNMR, pair
    /// counts and the set's sha256 (comments in the spec are kept).
    Calibrate(CalibrateArgs),
    /// Print (or write) a model folder's SHA256SUMS manifest and its model hash
    Manifest(ManifestArgs),
    /// Get Stable Diffusion: pull an ONNX export from a Hugging Face hub (verified, pinned to a
    /// commit), or print the commands that export a checkpoint yourself
    #[command(subcommand)]
    Model(ModelCommand),
    /// Download the pinned ONNX Runtime (onnxruntime==1.31.1, CPU; with --gpu onnxruntime-gpu,
    /// CUDA 13) from PyPI into boomerang's cache, every file checked against its pinned sha256
    FetchOnnxruntime(FetchOnnxruntimeArgs),
    /// Print a shell completion script: `source <(boomerang completions bash)`, or save it where
    /// your shell loads completions (bash: ~/.local/share/bash-completion/completions/boomerang)
    Completions(CompletionsArgs),
    /// Write man pages (boomerang.1 and one per subcommand) into DIR, e.g. ~/.local/share/man/man1
    Man(ManArgs),
    /// Say what this installation finds and what is missing, with the fix for each: ONNX Runtime
    /// (library, version, providers), the NVIDIA libraries a GPU needs, models and policies.
    /// Exit 0 when the CPU path is ready, 3 when something it needs is missing
    Doctor,
    /// Install into the data folder ($BOOMERANG_DATA_DIR, else $XDG_DATA_HOME/boomerang, else
    /// ~/.local/share/boomerang) the shipped policies and the models they certify with, so they
    /// work by name from any directory; the two embedders that may not be redistributed are built
    /// by the fetch script this binary carries (python3 3.11+, pip, npm). Exit 0 complete, 3 when
    /// something could not be installed (each named, with its fix)
    Setup(SetupArgs),
    /// Check a run from its report: hash chain, output files, verdicts, policy, model and embedder
    /// hashes; exit 0 clean, 3 findings, 1 could not run
    Audit(AuditArgs),
    /// Work with run reports
    #[command(subcommand)]
    Report(ReportCommand),
    /// Secret files: a run seed that the parts of a run share without a command line
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a fresh random run seed (from the OS) to FILE, for `--seed-file FILE`
    ///
    /// FILE is created with mode 0600 and never replaced (an existing FILE is an error), written
    /// and fsync'd. Only the seed's fingerprint is printed, never the seed. Every part of a run
    /// given `--seed-file FILE` uses that seed; run.json and manifests then record only its
    /// fingerprint. Keep FILE private: with it, the model and an output, the diffusion can be
    /// inverted. A FILE that group or others can read is refused (chmod 600 FILE).
    New(SecretNewArgs),
}

#[derive(Debug, Args)]
pub struct SecretNewArgs {
    /// The secret file to create (must not exist)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download an Optimum ONNX Stable Diffusion export from a Hugging Face hub and install it as
    /// a model folder boomerang finds by name
    ///
    /// Fetches model_index.json and the scheduler/, tokenizer/, text_encoder/, unet/,
    /// vae_encoder/ and vae_decoder/ folders, and SDXL's tokenizer_2/ and text_encoder_2/ (their
    /// .json and .txt files, model.onnx and model.onnx_data); other files of the repository are not downloaded. Every LFS file is
    /// checked against the sha256 the hub lists and every other file against its git blob sha1:
    /// one mismatch refuses the whole pull, naming the file, and nothing is installed.
    ///
    /// Downloads go to the huggingface_hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub), in its layout, so files Python's hub fetched are reused. An
    /// interrupted download is resumed by running the same pull again. The model is then
    /// installed as DATA/models/NAME (DATA: $BOOMERANG_DATA_DIR, $XDG_DATA_HOME/boomerang or
    /// ~/.local/share/boomerang) with a SHA256SUMS manifest and pull.json (repository, revision,
    /// commit, endpoint, time), renamed into place at once. An existing folder is never
    /// replaced: pulling the commit it holds again does nothing.
    #[command(after_help = PULL_HELP)]
    Pull(PullArgs),
    /// Print the commands that export a diffusers checkpoint to ONNX with Hugging Face Optimum
    /// into DATA/models/NAME and pin it (it prints them only: run them yourself)
    Export(ExportArgs),
}

const PULL_HELP: &str = "Environment:\n  \
HF_ENDPOINT     the hub (default https://huggingface.co), e.g. a mirror\n  \
HF_TOKEN        token for gated or private repositories (else the saved login's token),\n                  \
sent only to HF_ENDPOINT, never printed\n  \
HF_HUB_OFFLINE  1: no network; install a commit already in the cache (its bytes are checked)\n\n\
Example:\n  \
boomerang model pull ORG/REPO --revision <40-hex commit> --name sd15\n  \
boomerang sample --model sd15 --strength 0.5 --prompt person -o out/ face.jpg";

/// `boomerang model pull`.
#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Hugging Face model repository holding an Optimum ONNX export (ORG/NAME)
    #[arg(value_name = "REPO")]
    pub repo: String,
    /// The commit to install (40 hex digits: pulls are reproducible). A branch or tag such as
    /// `main` needs --allow-moving-revision
    #[arg(long, default_value = "main", value_name = "REV")]
    pub revision: String,
    /// Accept a branch or tag for --revision; the commit it resolves to is printed (pin it next
    /// time) and recorded in pull.json
    #[arg(long)]
    pub allow_moving_revision: bool,
    /// Folder name under the data folder's models/ (default: REPO's last part, lowercased); the
    /// name `--model NAME` then finds
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

impl PullArgs {
    pub fn config(&self) -> PullConfig {
        PullConfig {
            repo: self.repo.clone(),
            revision: self.revision.clone(),
            name: self.name.clone(),
            allow_moving_revision: self.allow_moving_revision,
        }
    }
}

/// `boomerang model export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A diffusers Stable Diffusion checkpoint: a hub id (stable-diffusion-v1-5/stable-diffusion-v1-5)
    /// or a local folder
    #[arg(value_name = "CHECKPOINT")]
    pub checkpoint: String,
    /// Folder name under the data folder's models/ (default: CHECKPOINT's last part, lowercased)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

impl ExportArgs {
    pub fn config(&self) -> ExportConfig {
        ExportConfig {
            checkpoint: self.checkpoint.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the reports of a run split into parts into one re-chained report
    Merge(ReportMergeArgs),
}

/// Where and how ONNX Runtime runs.
#[derive(Debug, Args, Clone)]
pub struct RuntimeArgs {
    /// ONNX Runtime library to load (default: ORT_DYLIB_PATH, then boomerang's cache, then python3's
    /// onnxruntime package, then the system library path)
    #[arg(long, value_name = "PATH")]
    pub onnxruntime: Option<PathBuf>,
    /// Execution provider: cpu, cuda[:ID] or tensorrt[:ID]. A GPU provider that fails to load is an
    /// error, never a silent fall back to the CPU. `anonymize` takes a list, `cuda:0,cuda:1`: one
    /// worker per device, each with its own sessions; no output depends on which worker took it
    #[arg(long, default_value = "cpu", value_name = "DEVICE[,DEVICE...]")]
    pub device: DeviceList,
    /// ONNX Runtime intra-op threads (0: ONNX Runtime's default, one per core). Results do not
    /// depend on it
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// How a model folder is checked against its SHA256SUMS when it opens: `remembered` re-uses
    /// the sha256 boomerang's cache recorded for a file whose device, inode, size, mtime and
    /// ctime are unchanged (new or changed files are hashed), and on CPUs loads the graphs ONNX
    /// Runtime optimized in an earlier run from the cache (BOOMERANG_GRAPH_CACHE=0: never);
    /// `full` hashes every byte and optimizes the original graphs. The audit always does as `full`
    #[arg(long, default_value = "remembered", value_name = "HOW", value_parser = parse_verify)]
    pub verify: Verify,
}

fn parse_verify(text: &str) -> Result<Verify, String> {
    match text {
        "remembered" => Ok(Verify::Remembered),
        "full" => Ok(Verify::Full),
        _ => Err(format!("`{text}`: expected remembered or full")),
    }
}

impl RuntimeArgs {
    pub fn config(&self) -> RuntimeConfig {
        RuntimeConfig {
            onnxruntime: self.onnxruntime.clone(),
            session: self.session_options(),
            more_devices: self.device.rest().to_vec(),
        }
    }

    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            device: self.device.first(),
            threads: self.threads,
            verify: self.verify,
        }
    }
}

/// The Boomerang knobs shared by every command that samples.
#[derive(Debug, Args, Clone)]
pub struct BoomerangArgs {
    /// Model folder: an optimum ONNX export of Stable Diffusion 1.x/2.x, or (`sample` only) a
    /// pixel-space denoiser folder holding a model.toml (models/README.md); or the name of one in
    /// $BOOMERANG_MODELS, ./models or the data folder's models/ (e.g. tiny-sd, or one `boomerang
    /// model pull` installed)
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// How far to travel: the fraction of the diffusion schedule re-run, 0..=1. 0 returns the VAE
    /// round trip, 1 a new image; the paper used 0.2, 0.5, 0.7 and 0.8
    #[arg(long, default_value_t = 0.5, value_name = "S")]
    pub strength: f64,
    /// Inference steps of the full schedule; about strength x steps of them are run (lcm runs all
    /// of them, spread below strength x 1000) [default: 50]
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// ddim, ddpm, euler, euler-ancestral, pndm or lcm (default: the model's scheduler_config.json)
    #[arg(long, value_name = "NAME")]
    pub scheduler: Option<SchedulerKind>,
    /// DDIM's eta, 0..=1: 0 is deterministic after the start noise, 1 is DDPM-like
    #[arg(long, value_name = "E")]
    pub eta: Option<f32>,
    /// Text prompt (the paper used "person" for faces)
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub prompt: String,
    /// Negative prompt, used only with --guidance > 1
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub negative_prompt: String,
    /// Classifier-free guidance scale, 0..=30; 1 (default) disables it and halves the UNet work
    #[arg(long, default_value_t = 1.0, value_name = "G")]
    pub guidance: f32,
    /// Run seed: a number reproduces a run byte for byte; `random` (default) draws one from the OS
    #[arg(long, default_value = "random", value_name = "N|random")]
    pub seed: SeedArg,
    /// Read the run seed from a secret file (`boomerang secret new FILE`) instead of the command
    /// line; what the run writes then records only the seed's fingerprint
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    pub seed_file: Option<PathBuf>,
    /// Images per UNet batch
    #[arg(long, default_value_t = 1, value_name = "B", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Copy)]
pub enum SeedArg {
    Fixed(u64),
    Random,
}

impl std::str::FromStr for SeedArg {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "random" {
            return Ok(SeedArg::Random);
        }
        text.parse::<u64>().map(SeedArg::Fixed).map_err(|_| {
            format!("`{text}` is not a seed: give an integer 0..=18446744073709551615 or `random`")
        })
    }
}

impl SeedArg {
    /// Where the run seed comes from, given `--seed-file` (which clap keeps from meeting an
    /// explicit `--seed`).
    pub fn source(self, seed_file: Option<&PathBuf>) -> SeedSource {
        match (seed_file, self) {
            (Some(file), _) => SeedSource::File(file.clone()),
            (None, SeedArg::Fixed(seed)) => SeedSource::Fixed(seed),
            (None, SeedArg::Random) => SeedSource::Random,
        }
    }
}

/// `--steps` when not given.
const DEFAULT_STEPS: usize = 50;

impl BoomerangArgs {
    /// The Stable Diffusion options given on the command line, which a denoiser model (its
    /// sampler set by its model.toml, no text conditioning) must refuse rather than ignore.
    pub fn sd_only_options(&self) -> Vec<&'static str> {
        let given = [
            ("--steps", self.steps.is_some()),
            ("--scheduler", self.scheduler.is_some()),
            ("--eta", self.eta.is_some()),
            ("--prompt", !self.prompt.is_empty()),
            ("--negative-prompt", !self.negative_prompt.is_empty()),
            ("--guidance", self.guidance != 1.0),
        ];
        given
            .into_iter()
            .filter(|(_, given)| *given)
            .map(|(name, _)| name)
            .collect()
    }

    /// The sampler of a dataset command that can resume (`--seed random` defers to the resumed
    /// run's seed), with `settings` already checked and a denoiser's `--set` values.
    pub fn sampler(
        &self,
        settings: Settings,
        constants: Vec<(String, f32)>,
    ) -> anyhow::Result<SamplerOptions> {
        Ok(SamplerOptions {
            model: self.model_dir()?,
            settings,
            seed: self.seed.source(self.seed_file.as_ref()),
            batch: self.batch,
            runtime: self.runtime.config(),
            constants,
            sd_only_options: self.sd_only_options(),
        })
    }

    /// `--model` as a path, or a bare name looked up in the models folders.
    fn model_dir(&self) -> anyhow::Result<PathBuf> {
        crate::io::data_dir::find_model_dir(&self.model, crate::certify::MODELS_ENV)
            .map_err(anyhow::Error::msg)
    }

    /// Range checks that clap cannot express.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        if !(0.0..=1.0).contains(&self.strength) {
            bail!("--strength {} is outside 0..=1", self.strength);
        }
        let steps = self.steps.unwrap_or(DEFAULT_STEPS);
        if steps == 0 {
            bail!("--steps must be at least 1");
        }
        // The same bounds as a policy level: beyond them outputs degenerate (flat colour).
        if !(0.0..=MAX_GUIDANCE).contains(&f64::from(self.guidance)) {
            bail!(
                "--guidance {} is outside 0..={MAX_GUIDANCE}: give a finite number, 1 turns guidance off",
                self.guidance
            );
        }
        let eta = match (self.eta, self.scheduler) {
            (Some(eta), _) if !(0.0..=1.0).contains(&eta) => {
                bail!("--eta {eta} is outside 0..=1")
            }
            (Some(eta), Some(SchedulerKind::Ddim) | None) => eta,
            (Some(_), Some(other)) => bail!("--eta applies to ddim only, not {other}"),
            (None, _) => 0.0,
        };
        Ok(Settings {
            strength: self.strength,
            steps,
            scheduler: self.scheduler,
            eta,
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            guidance: self.guidance,
        })
    }
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub boomerang: BoomerangArgs,
    /// Samples per input image; each has its own seed stream, so they all differ
    #[arg(short = 'n', long = "count", default_value_t = 1, value_name = "COUNT")]
    pub count: u32,
    /// Output folder (created if missing; existing samples of the same name are replaced)
    #[arg(short = 'o', long = "output", value_name = "OUTDIR")]
    pub output: PathBuf,
    /// Print time per stage and the share spent outside ONNX Runtime
    #[arg(long)]
    pub timings: bool,
    /// Denoiser models only: set a constant input of the model.toml (e.g. `--set difficulty=0.5`),
    /// within the range it declares; repeatable
    #[arg(long = "set", value_name = "INPUT=VALUE", value_parser = parse_constant)]
    pub set: Vec<(String, f32)>,
    /// Input images (PNG, JPEG, WebP, BMP, TIFF, GIF; 8- or 16-bit grayscale PNG for a denoiser
    /// model)
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

impl SampleArgs {
    pub fn config(&self) -> anyhow::Result<SampleConfig> {
        if self.count == 0 {
            bail!("-n/--count must be at least 1");
        }
        // Argument ranges first: they are wrong whatever the model.
        let settings = self.boomerang.settings()?;
        Ok(SampleConfig {
            model: self.boomerang.model_dir()?,
            settings,
            seed: self
                .boomerang
                .seed
                .source(self.boomerang.seed_file.as_ref()),
            count: self.count,
            batch: self.boomerang.batch,
            output_dir: self.output.clone(),
            images: self.images.clone(),
            runtime: self.boomerang.runtime.config(),
            timings: self.timings,
            constants: self.set.clone(),
            sd_only_options: self.boomerang.sd_only_options(),
        })
    }
}

/// `NAME=VALUE` of `--set`.
fn parse_constant(text: &str) -> Result<(String, f32), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected INPUT=VALUE, e.g. difficulty=0.5"))?;
    let parsed = value
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{text}`: `{value}` is not a finite number"))?;
    Ok((name.trim().to_string(), parsed))
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Write DIR/SHA256SUMS (atomically) instead of only checking and printing
    #[arg(long)]
    pub write: bool,
    /// Model folder
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `anonymize` options; the standalone `anonymize` binary takes exactly these.
#[derive(Debug, Args)]
#[command(after_long_help = ANONYMIZE_HELP)]
pub struct AnonymizeArgs {
    /// Level of the policy: how far outputs move (the shipped policies: low, medium, high, max).
    /// Default: the policy's default-level
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<String>,
    /// Policy file (TOML) mapping levels to strength, steps, scheduler, prompt and the
    /// certification rule, or the name of a shipped one (`default`: real Stable Diffusion,
    /// `demo`: the bundled tiny model), looked up as NAME.toml in $BOOMERANG_POLICIES, ./policies
    /// and the data folder's policies/ (`boomerang setup`)
    #[arg(long, default_value = "default", value_name = "FILE|NAME")]
    pub policy: PathBuf,
    /// Model folder or a models folder's NAME, instead of the policy's (its manifest pin still
    /// applies)
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Run seed. It is a secret key (knowing it, the model and an output allows inverting the
    /// diffusion): default `random`, drawn from the OS and stored only in the private report and
    /// run.json. `--seed N` reproduces a run exactly
    #[arg(long, default_value = "random", value_name = "N|random")]
    pub seed: SeedArg,
    /// Read the run seed from a secret file (`boomerang secret new FILE`, mode 0600) instead of
    /// the command line, where `ps` and shell history show it: run.json then records only the
    /// seed's fingerprint. The parts of a sharded run share one file; --resume needs it again
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    pub seed_file: Option<PathBuf>,
    /// Images per UNet batch
    #[arg(long, default_value_t = 1, value_name = "B", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: usize,
    /// Pixel budget per image, in megapixels: a larger image (by its header, never decoded)
    /// gets an `error` row instead of being processed
    #[arg(long, default_value_t = crate::commands::anonymize::DEFAULT_MAX_MEGAPIXELS, value_name = "MP", value_parser = positive_megapixels)]
    pub max_megapixels: f64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Report path (default: OUT.report.csv beside OUT; never inside IN or OUT). run.json is
    /// written next to it: X.report.csv gives X.run.json, any other name R gives R.run.json
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// After the run, re-identify outputs against inputs with this face embedder (a name under
    /// a models folder, a folder or a spec file) and report its top-1 and top-5 rates: evidence
    /// from a matcher the run did not certify against (refused if the policy certifies with it)
    #[arg(long, value_name = "SPEC")]
    pub adversary: Option<String>,
    /// Continue an interrupted run: keep the report rows whose outputs are intact, redo the rest
    /// (needs the report and run.json of the run that wrote OUT)
    #[arg(long)]
    pub resume: bool,
    /// Print the plan (files, level, strength, start timestep, hashes) and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Print where the time went (per stage, inside ONNX Runtime or not, tiles of large images)
    #[arg(long)]
    pub timings: bool,
    /// Process only part K of N (K from 0 to N-1) of the sorted walk of IN: a contiguous block,
    /// entries K*M/N up to (K+1)*M/N of M. Every part plans the output names of the whole walk,
    /// so parts running at once into one OUT agree on every name; each writes its own report
    /// OUT.part-KKKK-of-NNNN.report.csv and run record OUT.part-KKKK-of-NNNN.run.json (with
    /// --report R, R gets the same tag). `auto` reads BOOMERANG_SHARD=K/N, or a Slurm array's
    /// SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN (K = ID - MIN), or a
    /// Kubernetes Indexed Job's JOB_COMPLETION_INDEX (with --shards N); none set is an error
    /// (exit 1). Every part needs the same secret: --seed-file FILE (or --seed N). Join the
    /// parts' reports with `boomerang report merge`
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<ShardRequest>,
    /// The number of parts, for --shard auto where the environment does not say it
    /// (JOB_COMPLETION_INDEX); checked against the environment or K/N otherwise
    #[arg(long, value_name = "N", requires = "shard", value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..))]
    pub shards: Option<u32>,
    /// Input dataset folder (only read, never written)
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output folder: empty or missing (or the folder of an interrupted run, with --resume)
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

/// `--max-megapixels`: a finite number > 0 (a usage error otherwise).
fn positive_megapixels(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("`{text}` is not a number of megapixels > 0")),
    }
}

const ANONYMIZE_HELP: &str = "\
Exit codes: 0 every image certified (skipped non-images do not count), 1 the run could not \
proceed, 2 usage error, 3 some images failed certification or had errors.

Example (bundled tiny model; random weights, so most images fail certification and are flagged):
  boomerang anonymize --policy policies/demo.toml --level medium examples/ out/anonymized";

impl AnonymizeArgs {
    pub fn config(&self) -> AnonymizeConfig {
        let report = self
            .report
            .clone()
            .unwrap_or_else(|| crate::records::report::default_report_path(&self.output));
        AnonymizeConfig {
            input: self.input.clone(),
            output: self.output.clone(),
            policy: self.policy.clone(),
            level: self.level.clone(),
            model: self.model.clone(),
            seed: self.seed.source(self.seed_file.as_ref()),
            batch: self.batch,
            max_megapixels: self.max_megapixels,
            runtime: self.runtime.config(),
            report,
            adversary: self.adversary.clone(),
            resume: self.resume,
            dry_run: self.dry_run,
            quiet: self.quiet,
            json: self.json,
            timings: self.timings,
            shard: self.shard,
            shards: self.shards,
        }
    }
}

/// The standalone `anonymize` binary: the same options as `boomerang anonymize`.
#[derive(Debug, Parser)]
#[command(
    name = "anonymize",
    version,
    about = "Anonymize a dataset with certified Boomerang (same as `boomerang anonymize`)"
)]
pub struct AnonymizeOpts {
    #[command(flatten)]
    pub args: AnonymizeArgs,
}

/// Options of the dataset commands (augment, enhance) beyond the Boomerang knobs.
#[derive(Debug, Args, Clone)]
pub struct DatasetArgs {
    /// Continue an interrupted run in the same OUT: outputs whose manifest row and sha256 match are
    /// kept, the rest redone (byte-identical to an uninterrupted run). Without --seed, the seed of
    /// the resumed run is used; a run seeded from a secret file needs its --seed-file again
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no plan or summary on stdout (errors still go to stderr). The bar is
    /// also hidden when stderr is not a terminal
    #[arg(short, long)]
    pub quiet: bool,
    /// Print time per stage and the share spent outside ONNX Runtime
    #[arg(long)]
    pub timings: bool,
    /// Process only part K of N (K from 0 to N-1) of the sorted walk of IN, a contiguous block;
    /// output names are planned on the whole walk, so parts running at once into one OUT agree.
    /// Each part writes its own manifest OUT/<command>.part-KKKK-of-NNNN.csv and a record of the
    /// part beside it (.json). `auto` reads BOOMERANG_SHARD=K/N, a Slurm array's
    /// SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN, or a Kubernetes
    /// Indexed Job's JOB_COMPLETION_INDEX (with --shards N). Every part needs the same secret
    /// (--seed-file FILE or --seed N). When all parts have finished, `boomerang report merge
    /// OUT/<command>.part-*.csv -o OUT/<command>.csv` leaves OUT as one unsharded run would
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<ShardRequest>,
    /// The number of parts, for --shard auto where the environment does not say it
    /// (JOB_COMPLETION_INDEX); checked against the environment or K/N otherwise
    #[arg(long, value_name = "N", requires = "shard", value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..))]
    pub shards: Option<u32>,
    /// Input: a dataset folder (augment), or an image or folder (enhance)
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Output folder, created if missing; must be empty unless --resume (or holding only the
    /// other parts of a --shard run), and outside IN
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

impl DatasetArgs {
    pub fn options(&self) -> DatasetOptions {
        DatasetOptions {
            input: self.input.clone(),
            output: self.output.clone(),
            resume: self.resume,
            quiet: self.quiet,
            timings: self.timings,
            shard: self.shard,
            shards: self.shards,
        }
    }
}

#[derive(Debug, Args)]
#[command(mut_arg("batch", |arg| arg.help(
    "Images encoded together; all their samples of one strength share a UNet batch, so UNet \
     memory grows with B x N"
)))]
pub struct AugmentArgs {
    #[command(flatten)]
    pub boomerang: BoomerangArgs,
    /// Samples per image, written as <stem>_aug<k>.png for k = 0..N-1
    #[arg(
        short = 'n',
        long = "count",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub count: u32,
    /// Several strengths: sample k uses S[k mod len] (so -n 4 --strengths 0.2,0.5 gives samples
    /// 0 and 2 at 0.2, 1 and 3 at 0.5). Replaces --strength
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "S1,S2,..",
        value_parser = parse_strength,
        conflicts_with = "strength"
    )]
    pub strengths: Option<Vec<f64>>,
    /// Do not write the re-encoded original beside its samples
    #[arg(long)]
    pub no_originals: bool,
    /// Denoiser models only: set a constant input of the model.toml (e.g. `--set difficulty=0.5`),
    /// within the range it declares; repeatable
    #[arg(long = "set", value_name = "INPUT=VALUE", value_parser = parse_constant)]
    pub set: Vec<(String, f32)>,
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

/// One strength of `--strengths`, 0..=1.
fn parse_strength(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(strength) if (0.0..=1.0).contains(&strength) => Ok(strength),
        Ok(strength) => Err(format!("{strength} is outside 0..=1")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

impl AugmentArgs {
    pub fn config(&self) -> anyhow::Result<AugmentConfig> {
        let settings = self.boomerang.settings()?;
        let strengths = match &self.strengths {
            // clap gives at least one value for a present option.
            Some(strengths) => strengths.clone(),
            None => vec![settings.strength],
        };
        Ok(AugmentConfig {
            sampler: self.boomerang.sampler(settings, self.set.clone())?,
            strengths,
            count: self.count,
            originals: !self.no_originals,
            dataset: self.dataset.options(),
        })
    }
}

#[derive(Debug, Args)]
// Enhancement wants little change: the paper's low setting, not BoomerangArgs' 0.5.
#[command(
    mut_arg("strength", |arg| arg.default_value("0.2")),
    mut_arg("batch", |arg| arg.help("Tiles per UNet batch"))
)]
pub struct EnhanceArgs {
    #[command(flatten)]
    pub boomerang: BoomerangArgs,
    /// Upsampling factor K (1..=8): the output is exactly K times the input's width and height
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=8))]
    pub scale: u32,
    /// Tile side in pixels of the upsampled image (default: the model's working size); a multiple
    /// of 8 latent cells (64 px for Stable Diffusion); a denoiser's own size only
    #[arg(long, value_name = "T")]
    pub tile: Option<u32>,
    /// Least overlap between neighbouring tiles in pixels (default: a quarter of the tile)
    #[arg(long, value_name = "O")]
    pub overlap: Option<u32>,
    /// Denoiser models only: set a constant input of the model.toml (e.g. `--set difficulty=0.5`),
    /// within the range it declares; repeatable
    #[arg(long = "set", value_name = "INPUT=VALUE", value_parser = parse_constant)]
    pub set: Vec<(String, f32)>,
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

impl EnhanceArgs {
    pub fn config(&self) -> anyhow::Result<EnhanceConfig> {
        Ok(EnhanceConfig {
            sampler: self
                .boomerang
                .sampler(self.boomerang.settings()?, self.set.clone())?,
            scale: self.scale,
            tile: self.tile,
            overlap: self.overlap,
            dataset: self.dataset.options(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// One folder per identity, each holding that person's images.
    pub identities: PathBuf,
    /// Embedder: a name under a models folder, a folder holding embedder.toml, or a spec file.
    #[arg(long, default_value = DEFAULT_EMBEDDER)]
    pub embedder: String,
    /// Face detector ONNX model (default: the one the embedder spec pins).
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Record the resolved FMR levels in the embedder spec as operating points.
    #[arg(long)]
    pub write: bool,
    /// With --write: overwrite operating points of the same name.
    #[arg(long, requires = "write")]
    pub replace: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl CalibrateArgs {
    pub fn config(&self) -> CalibrateConfig {
        CalibrateConfig {
            identities: self.identities.clone(),
            embedder: self.embedder.clone(),
            detector: self.detector.clone(),
            json: self.json,
            write: self.write,
            replace: self.replace,
            runtime: self.runtime.config(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// First image (treated as the input).
    pub image_a: PathBuf,
    /// Second image (treated as the output).
    pub image_b: PathBuf,
    /// Embedder: a name under a models folder, a folder holding embedder.toml, or a spec file.
    #[arg(long, default_value = DEFAULT_EMBEDDER, conflicts_with = "policy")]
    pub embedder: String,
    /// Operating point of the embedder's spec to judge by (default: the spec's default).
    #[arg(long, conflicts_with = "policy")]
    pub operating_point: Option<String>,
    /// Face detector ONNX model (default: the one the embedder spec pins).
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Judge B exactly as this anonymization policy would: its embedder, whole-image embedder,
    /// second opinions, operating point and the certificate kinds the level accepts.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The policy's level (default: the policy's default level).
    #[arg(long, requires = "policy")]
    pub level: Option<String>,
    /// Without --policy: the whole-image embedder (a spec with subject = "whole-image", e.g.
    /// efficientnet-lite0) that judges a faceless A; without one such a pair is never certified
    #[arg(long, value_name = "SPEC", conflicts_with = "policy")]
    pub feature_embedder: Option<String>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

impl ScoreArgs {
    pub fn config(&self) -> ScoreConfig {
        ScoreConfig {
            image_a: self.image_a.clone(),
            image_b: self.image_b.clone(),
            embedder: self.embedder.clone(),
            operating_point: self.operating_point.clone(),
            detector: self.detector.clone(),
            policy: self.policy.clone(),
            level: self.level.clone(),
            feature_embedder: self.feature_embedder.clone(),
            json: self.json,
            runtime: self.runtime.config(),
        }
    }
}

const EXIT_HELP: &str = "Exit status:\n  \
0  clean: every check that was made passed\n  \
3  findings: at least one check failed (each printed as a `finding:` line)\n  \
1  the audit could not run (unreadable report, not a boomerang report, bad policy or run.json...)\n\n\
Checks not made for lack of a file (no --outputs, --policy, --model, --embedder...) are printed \
as `not checked:` lines and do not make the audit fail.";

/// `boomerang audit`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_HELP)]
pub struct AuditArgs {
    /// The run's private CSV report
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// The run's output folder: every listed output must be there with its sha256, and nothing
    /// else may be
    #[arg(long, value_name = "DIR")]
    pub outputs: Option<PathBuf>,
    /// The run's input folder: every input must match its sha256 and have a row (also what
    /// --recompute and --seed-sample read)
    #[arg(long, value_name = "DIR")]
    pub inputs: Option<PathBuf>,
    /// The run's run.json (default: OUT.run.json or run.json beside the report, when it names
    /// this report)
    #[arg(long, value_name = "FILE")]
    pub run_json: Option<PathBuf>,
    /// The run's secret file, for a run seeded with --seed-file: run.json then holds only the
    /// seed's fingerprint, which the file must match; without it the rows' seeds are not checked
    /// against the run seed (a `not checked` line). --recompute needs no run seed
    #[arg(long, value_name = "FILE")]
    pub seed_file: Option<PathBuf>,
    /// The policy file the run claims: its sha256 must match every row, and each row's verdict,
    /// threshold, attempts and strength must follow its rules
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The model folder: its manifest hash (`boomerang manifest`) must match every row
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// The embedder spec file: its sha256 (or its ONNX graph's) must match every row, its metric
    /// each row's, and its operating points give the thresholds a policy names
    #[arg(long, value_name = "SPEC")]
    pub embedder: Option<PathBuf>,
    /// The face detector ONNX file: its sha256 must match every row's detector_sha256 (default:
    /// the --embedder spec's detector-sha256 pin)
    #[arg(long, value_name = "FILE")]
    pub detector: Option<PathBuf>,
    /// Re-score N rows (drawn by a sample keyed by --nonce) with the embedder and compare their
    /// distances, re-run Boomerang for N rows (as --seed-sample N), and recompute the
    /// re-identification rate. Needs --inputs, --outputs and --policy
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub recompute: usize,
    /// Re-run Boomerang for N rows, drawn by a sample keyed by --nonce, from their seeds and check
    /// the outputs are byte-identical
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed_sample: usize,
    /// Where re-runs run (cpu, cuda[:ID], tensorrt[:ID]). Outputs are byte-identical only on the
    /// device and ONNX Runtime build the run used (run.json's device): re-runs elsewhere are
    /// listed as not checked for that reason
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: Device,
    /// Any text of the auditor's that decides which rows --recompute and --seed-sample draw; the
    /// report's author cannot know it, so cannot steer the draw. Default: a random nonce from the
    /// operating system, printed so the same audit can be repeated with --nonce
    #[arg(long, value_name = "TEXT")]
    pub nonce: Option<String>,
    /// Largest difference between a re-scored and a reported distance that is not a finding
    #[arg(long, default_value_t = DEFAULT_DISTANCE_TOLERANCE, value_name = "D")]
    pub distance_tolerance: f32,
    /// Also write a one-page HTML summary (self-contained; no input pixels or input file names)
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Print the result as JSON on stdout instead of lines
    #[arg(long)]
    pub json: bool,
}

impl AuditArgs {
    pub fn config(&self) -> AuditConfig {
        AuditConfig {
            run: RunFiles {
                report: self.report.clone(),
                outputs: self.outputs.clone(),
                inputs: self.inputs.clone(),
                run_json: self.run_json.clone(),
                seed_file: self.seed_file.clone(),
            },
            claimed: ClaimedFiles {
                policy: self.policy.clone(),
                model: self.model.clone(),
                embedder: self.embedder.clone(),
                detector: self.detector.clone(),
            },
            recheck: Recheck {
                recompute: self.recompute,
                nonce: self.nonce.clone(),
                // --recompute both re-scores and re-runs; --seed-sample can ask for more re-runs.
                seed_sample: self.seed_sample.max(self.recompute),
                distance_tolerance: self.distance_tolerance,
                device: self.device,
            },
            html: self.html.clone(),
            json: self.json,
        }
    }
}

const MERGE_HELP: &str = "Each part is checked first: its header and hash chain, and, when a \
run.json for it lies beside it, its row count and last chain value. The merged report lists the \
parts' rows in the order given, re-chained from a new header; unless it joins the parts of a sharded run (below) it has no run.json of its own, so \
keep the parts' run.json files with it.\n\n\
Refused: a part that fails its check, two parts (or rows) with the same input or output path, and \
parts made with different policy, model, embedder or detector hashes, or with different run configurations (level, strength, steps, scheduler, threshold: run.json's level and level settings when present, and the rows' columns). The output file must not exist.\n\n\
Parts of a sharded run (anonymize --shard K/N, whose run.json records the part) must be all N \
parts of one run, each once, with their run.json files: they are merged in part order (any order \
given), so the rows are in walk order, and a run.json for the merged report is written beside it \
(ALL.report.csv gives ALL.run.json, any other name R gives R.run.json): counts summed, no shard, \
the configuration otherwise the parts'. Refused: a missing part, a part given twice, and a part \
of another run (other seed, by its fingerprint, policy, level, model, embedder, detector, N or \
walk of IN). Example: boomerang report merge OUT.part-*-of-0016.report.csv -o OUT.report.csv\n\n\
The manifests of augment or enhance parts (OUT/augment.part-KKKK-of-NNNN.csv, with the part record \
.json beside each) are merged the same way: all N parts, finished (the record holds the row count), \
of one run (same arguments, model, seed, N and walk of IN), in part order under one header, then \
the parts' manifests and records are removed, so OUT is as an unsharded run leaves it. Example: \
boomerang report merge OUT/augment.part-*.csv -o OUT/augment.csv";

/// `boomerang completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// Replace installed files that differ from the shipped ones (files of your own are kept)
    #[arg(long)]
    pub force: bool,
}

impl SetupArgs {
    pub fn config(&self) -> crate::commands::setup::SetupConfig {
        crate::commands::setup::SetupConfig { force: self.force }
    }
}

/// `boomerang man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Folder to write the pages into (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `boomerang fetch-onnxruntime`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "The GPU build (--gpu, a 256 MB download) installs libonnxruntime.so.1.31.1 \
with its CUDA and TensorRT providers side by side in the cache; --device cuda/tensorrt then loads it \
first. The CUDA provider also needs the NVIDIA driver and CUDA 13 libraries (cudart, cuBLAS, cuRAND, \
cuFFT, NVRTC, cuDNN 9): found on the loader path, in $CUDA_HOME, or in python3's nvidia-* pip \
packages (e.g. pip install nvidia-cudnn-cu13); a missing one is named when a GPU session opens."
)]
pub struct FetchOnnxruntimeArgs {
    /// Fetch the GPU build (onnxruntime-gpu) instead of the CPU build
    #[arg(long)]
    pub gpu: bool,
}

/// `boomerang report merge`.
#[derive(Debug, Clone, Args)]
#[command(after_help = MERGE_HELP)]
pub struct ReportMergeArgs {
    /// The parts' reports, in the order their rows should appear (parts of a sharded run: any
    /// order, merged in part order)
    #[arg(required = true, num_args = 2.., value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// The merged report to write (must not exist)
    #[arg(short = 'o', long = "output", value_name = "ALL.csv")]
    pub output: PathBuf,
}

impl ReportMergeArgs {
    pub fn config(&self) -> MergeConfig {
        MergeConfig {
            reports: self.reports.clone(),
            output: self.output.clone(),
        }
    }
}
