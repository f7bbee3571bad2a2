//! What `augment` and `enhance` share when they run over a dataset (on top of `dataset`, which
//! walks, checks folders and decodes safely): the refusal of a non-empty OUT, the model opened
//! before anything is written, the CSV manifest (one row per output, fsync'd as it is written,
//! resumable after a crash), seeds on resume, the progress bar, the summary and exit codes.
//! `anonymize` shares the progress bar; its report and run record are its own.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Exit;
use crate::diffusion::engine::{Engine, Settings};
use crate::diffusion::noise::seed_fingerprint;
use crate::diffusion::timing::StageTimer;
use crate::io::dataset::{self, DatasetError, Entry, EntryKind};
use crate::io::runtime::RuntimeConfig;
use crate::io::secret::{GivenSeed, SecretError, SeedSource};
use crate::records::csv_log::{CsvLog, CsvLogError, LogRow};

/// A row of an `augment` or `enhance` manifest: what the shared run reads back on resume.
/// [`manifest_row!`] implements it.
pub trait OutputRow: LogRow {
    /// A row of `source` with the columns every row of a run shares (its run seed and model
    /// hash), status `ok` and the other columns empty.
    fn blank(source: String, run_seed: RunSeedCell, model_sha256: String) -> Self;
    fn status(&self) -> OutputStatus;
    /// The output's path relative to OUT (empty when none was written).
    fn output(&self) -> &str;
    fn output_sha256(&self) -> &str;
    fn run_seed(&self) -> Option<&RunSeedCell>;
}

/// Declares a manifest row: the struct (serde, `Default`) with the six columns every manifest
/// starts with (`source`, `source_sha256`, `output`, `output_sha256`, `status`, `reason`) and
/// then the fields given, its [`LogRow`] columns, which are its field names in order, and its
/// [`OutputRow`] access, which also needs the fields `run_seed` and `model_sha256`.
macro_rules! manifest_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            /// The input, relative to what the run reads from.
            pub source: String,
            pub source_sha256: String,
            /// Relative to OUT; empty when no output was written.
            pub output: String,
            pub output_sha256: String,
            pub status: $crate::commands::dataset_run::OutputStatus,
            /// Why an input ended without an output.
            pub reason: String,
            $($(#[$field_meta])* pub $field: $type,)*
        }

        impl $crate::records::csv_log::LogRow for $name {
            const COLUMNS: &'static [&'static str] = &[
                "source",
                "source_sha256",
                "output",
                "output_sha256",
                "status",
                "reason",
                $(stringify!($field)),*
            ];
        }

        impl $crate::commands::dataset_run::OutputRow for $name {
            fn blank(
                source: String,
                run_seed: $crate::commands::dataset_run::RunSeedCell,
                model_sha256: String,
            ) -> Self {
                $name {
                    source,
                    run_seed: Some(run_seed),
                    model_sha256,
                    ..$name::default()
                }
            }
            fn status(&self) -> $crate::commands::dataset_run::OutputStatus {
                self.status
            }
            fn output(&self) -> &str {
                &self.output
            }
            fn output_sha256(&self) -> &str {
                &self.output_sha256
            }
            fn run_seed(&self) -> Option<&$crate::commands::dataset_run::RunSeedCell> {
                self.run_seed.as_ref()
            }
        }
    };
}
pub(crate) use manifest_row;

/// Refuses a non-empty OUT unless the run is resumed.
pub fn refuse_non_empty(output: &Path, resume: bool) -> Result<(), Refused> {
    if !resume && !dataset::output_is_empty(output)? {
        return Err(Refused(format!(
            "output {} is not empty: continue that run with --resume, or choose an empty folder",
            output.display()
        )));
    }
    Ok(())
}

/// Loads ONNX Runtime and opens the model. Done before anything is written, so a model or
/// runtime problem leaves OUT untouched.
pub fn open_engine(model: &Path, runtime: &RuntimeConfig) -> anyhow::Result<Engine> {
    runtime
        .single_device("augment` / `enhance")
        .map_err(anyhow::Error::msg)?;
    Ok(Engine::open(model, runtime.init()?, &runtime.session)?)
}

/// What a dataset run needs of the model it samples with, whatever its kind.
pub trait RunModel {
    /// What every manifest row records as `model_sha256`.
    fn model_sha256(&self) -> String;
    /// Where the run's time goes (`--timings`).
    fn timer(&mut self) -> &mut StageTimer;
}

impl RunModel for Engine {
    fn model_sha256(&self) -> String {
        self.model.model_hash()
    }
    fn timer(&mut self) -> &mut StageTimer {
        &mut self.timer
    }
}

/// The folders of a dataset run and how it reports.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Continue the run in OUT, keeping the outputs its manifest lists intact.
    pub resume: bool,
    /// No progress bar and nothing on stdout.
    pub quiet: bool,
    /// Print time per stage at the end.
    pub timings: bool,
    /// `--shard K/N` or `auto`: process one part of the walk ([`super::manifest_parts`]).
    pub shard: Option<crate::io::shard::ShardRequest>,
    /// `--shards N`, for `--shard auto` where the environment does not say it.
    pub shards: Option<u32>,
}

/// The Boomerang sampler a dataset command runs.
#[derive(Debug, Clone)]
pub struct SamplerOptions {
    pub model: PathBuf,
    pub settings: Settings,
    /// `--seed` or `--seed-file`; [`SeedSource::Random`]: the resumed manifest's run seed, else a
    /// fresh random one.
    pub seed: SeedSource,
    pub batch: usize,
    pub runtime: RuntimeConfig,
    /// `--set NAME=VALUE`: constant inputs of a denoiser model (refused for Stable Diffusion).
    pub constants: Vec<(String, f32)>,
    /// Stable Diffusion options given on the command line (refused for a denoiser model).
    pub sd_only_options: Vec<&'static str>,
}

/// Where a run writes and how it starts: a new run, or the resumption of the one in OUT.
pub struct RunStart<'a> {
    pub output: &'a Path,
    /// The manifest's file name inside OUT.
    pub manifest_name: &'a str,
    pub resume: bool,
    pub seed: &'a SeedSource,
    /// Every output path (relative, as manifest rows name them) this run would write.
    pub outputs: &'a HashSet<String>,
    /// A part of a sharded run, which shares OUT with the other parts.
    pub part: bool,
    /// How to resume a manifest listing other outputs, e.g. "the input of that run".
    pub resume_with: &'a str,
}

/// A started run over a dataset: the model, the manifest, the run seed, the counts and the
/// progress bar. Every row goes through [`DatasetRun::log`], which counts it.
pub struct DatasetRun<R, M> {
    pub model: M,
    /// The opened model's manifest hash, which every row records.
    pub model_sha256: String,
    pub manifest: CsvLog<R>,
    pub manifest_path: PathBuf,
    pub run_seed: u64,
    /// What every row's `run_seed` cell holds: the seed, or only its fingerprint when the seed
    /// came from a secret file.
    pub run_seed_cell: RunSeedCell,
    pub counts: OutputCounts,
    pub bar: ProgressBar,
    /// OUT's lock, held until the run ends.
    _lock: std::fs::File,
}

impl<R: OutputRow, M: RunModel> DatasetRun<R, M> {
    /// Checks everything a run can check before it writes anything (the seed file; on resume
    /// the manifest, its run seed and its outputs against this run's), then creates OUT, locks it
    /// for the whole run and creates the manifest, or continues it keeping the rows whose output
    /// is still on disk with its recorded sha256. Resolves the run seed ([`resolve_seed`]).
    /// Returns the run and the kept rows by output path.
    pub fn start(
        model: M,
        start: &RunStart,
    ) -> anyhow::Result<(DatasetRun<R, M>, HashMap<String, R>)> {
        let output = start.output;
        let given = start.seed.given()?;
        // An existing OUT is locked before it is read, so no other run changes it meanwhile.
        let mut lock = if output.is_dir() {
            Some(lock_output(output, start.part)?)
        } else {
            None
        };
        let manifest_path = output.join(start.manifest_name);
        let resumed = if start.resume {
            CsvLog::<R>::read_resumable(&manifest_path, |row| output_intact(output, row))?
        } else {
            None
        };
        let rows = resumed
            .as_ref()
            .map_or(&[][..], |resumed| &resumed.rows[..]);
        let (run_seed, run_seed_cell) = resolve_seed(given, rows.iter().map(R::run_seed))?;
        refuse_foreign_rows(rows, start.outputs, start.resume_with)?;
        if resumed.is_none() {
            refuse_unlisted(start, &manifest_path)?;
        }
        // Everything is checked: only now is anything created or rewritten.
        let _lock = match lock.take() {
            Some(lock) => lock,
            None => {
                std::fs::create_dir_all(output)
                    .with_context(|| format!("creating {}", output.display()))?;
                let lock = lock_output(output, start.part)?;
                // Another run may have written OUT between the checks and the lock.
                refuse_unlisted(start, &manifest_path)?;
                lock
            }
        };
        let (manifest, kept) = match resumed {
            Some(resumed) => resumed.open()?,
            None => (CsvLog::create(&manifest_path)?, Vec::new()),
        };
        let kept: HashMap<String, R> = kept
            .into_iter()
            .map(|row| (row.output().to_string(), row))
            .collect();
        let run = DatasetRun {
            model_sha256: model.model_sha256(),
            model,
            manifest,
            manifest_path,
            run_seed,
            run_seed_cell,
            counts: OutputCounts {
                kept: kept.len() as u64,
                ..OutputCounts::default()
            },
            bar: ProgressBar::hidden(),
            _lock,
        };
        Ok((run, kept))
    }

    /// The header's last line: the run seed and where the manifest is.
    pub fn print_seed(&self, quiet: bool) {
        if !quiet {
            println!(
                "seed {}; manifest {}",
                super::secret::shown(
                    self.run_seed,
                    matches!(self.run_seed_cell, RunSeedCell::Fingerprint(_))
                ),
                self.manifest_path.display()
            );
        }
    }

    /// Shows the progress bar over `images` inputs ([`progress_bar`]).
    pub fn show_progress(&mut self, images: usize, quiet: bool) {
        self.bar = progress_bar(images as u64, "images", quiet);
    }

    /// A row of `source` with the columns every row shares; the rest empty.
    pub fn row(&self, source: &Path) -> R {
        R::blank(
            dataset::path_text(source),
            self.run_seed_cell.clone(),
            self.model_sha256.clone(),
        )
    }

    /// Appends `row` and counts it by its status.
    pub fn log(&mut self, row: &R) -> Result<(), CsvLogError> {
        self.manifest.append(row)?;
        match row.status() {
            OutputStatus::Ok => self.counts.written += 1,
            OutputStatus::Error => self.counts.errors += 1,
            OutputStatus::Skipped => self.counts.skipped += 1,
        }
        Ok(())
    }

    /// Advances the progress bar by `images` finished inputs.
    pub fn tick(&self, images: u64) {
        self.counts.tick(&self.bar, images);
    }

    /// Clears the bar, prints the summary (and the stage timings with `timings`).
    pub fn finish(mut self, quiet: bool, timings: bool) -> OutputCounts {
        self.bar.finish_and_clear();
        if !quiet {
            println!("{}", self.counts.summary());
        }
        if timings {
            println!("{}", self.model.timer().report());
        }
        self.counts
    }
}

/// A resumed row stands when it wrote its output and the file still has the recorded sha256.
fn output_intact<R: OutputRow>(output: &Path, row: &R) -> bool {
    row.status() == OutputStatus::Ok
        && file_sha256(&output.join(row.output())).as_deref() == Some(row.output_sha256())
}

/// A kept row for an output this run does not plan means the run had other arguments.
fn refuse_foreign_rows<R: OutputRow>(
    rows: &[R],
    outputs: &HashSet<String>,
    resume_with: &str,
) -> Result<(), Refused> {
    match rows.iter().find(|row| !outputs.contains(row.output())) {
        Some(row) => Err(Refused(format!(
            "the manifest lists {}, which this run would not write: resume with {resume_with}, or start over in an empty folder",
            row.output()
        ))),
        None => Ok(()),
    }
}

/// A run with no manifest of its own in OUT starts over, so what it could overwrite must not be
/// there: for an unsharded run, anything in OUT (a `--resume` into a folder another command or
/// another tool wrote is not this run's to continue); for a part, its manifest and its outputs.
fn refuse_unlisted(start: &RunStart, manifest_path: &Path) -> Result<(), Refused> {
    let output = start.output;
    let present = if start.part {
        std::iter::once(manifest_path.to_path_buf())
            .chain(start.outputs.iter().map(|relative| output.join(relative)))
            .find(|path| path.symlink_metadata().is_ok())
    } else if dataset::output_is_empty(output)? {
        None
    } else {
        Some(output.to_path_buf())
    };
    let Some(present) = present else {
        return Ok(());
    };
    Err(Refused(if start.resume {
        format!(
            "cannot resume {}: it holds {} but no manifest {} of this command's run, so nothing there can be checked and kept; resume the folder of that run, or start over in an empty folder",
            output.display(),
            present.display(),
            manifest_path.display()
        )
    } else {
        format!(
            "output {} is not empty ({} is there): continue that run with --resume, or choose an empty folder",
            output.display(),
            present.display()
        )
    }))
}

/// Locks OUT for the whole run, as `anonymize` does: exclusively, or shared for a part of a
/// sharded run (the other parts write beside it; an unsharded run cannot).
fn lock_output(output: &Path, part: bool) -> Result<std::fs::File, crate::io::lock::LockError> {
    if part {
        crate::io::lock::lock_folder_shared(output)
    } else {
        crate::io::lock::lock_folder(output)
    }
}

/// OUT as an absolute path with its symlinks and `..` resolved against the real folders
/// (`IN/new/../../out` is `out` beside IN): it is checked and created by that path only, so
/// creating it creates nothing inside IN.
pub fn with_resolved_output(options: &DatasetOptions) -> Result<DatasetOptions, Refused> {
    Ok(DatasetOptions {
        output: dataset::resolve_planned(&options.output)?,
        ..options.clone()
    })
}

/// Why a run will not start or continue (unsafe folders, a manifest from other arguments...):
/// the message says what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a run did, counted in manifest rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounts {
    /// Outputs written by this run.
    pub written: u64,
    /// Outputs a resumed run found finished (row present, file hash matching).
    pub kept: u64,
    /// Inputs that could not be processed (unreadable, corrupt, too large).
    pub errors: u64,
    /// Files that are not images, or whose output name another input already takes.
    pub skipped: u64,
}

impl OutputCounts {
    /// 0 when every image was processed, 3 when some had errors. Skipped non-image files are
    /// expected in a dataset folder and do not count as failures.
    pub fn exit(&self) -> Exit {
        if self.errors > 0 {
            Exit::Incomplete
        } else {
            Exit::Success
        }
    }

    /// Advances the progress bar by `images` and shows the running counts.
    pub fn tick(&self, bar: &ProgressBar, images: u64) {
        bar.inc(images);
        bar.set_message(format!("{} written, {} errors", self.written, self.errors));
    }

    pub fn summary(&self) -> String {
        format!(
            "{} written, {} already done, {} errors, {} skipped",
            self.written, self.kept, self.errors, self.skipped
        )
    }
}

/// A progress bar on stderr with ETA and running counts; hidden with `--quiet` or when stderr is
/// not a terminal (logs and pipes get no control characters).
pub fn progress_bar(total: u64, unit: &str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    // One layout for anonymize, augment and enhance.
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit}, ETA {{eta}} · {{msg}}");
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(total).with_style(style)
}

/// A manifest's `run_seed` cell: the run seed in decimal (`--seed N` and random runs), or, for a
/// seed read from a secret file, `fingerprint:` and the seed's fingerprint
/// ([`seed_fingerprint`]), so the manifest never holds that seed yet a resume can check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSeedCell {
    Seed(u64),
    Fingerprint(String),
}

const FINGERPRINT_PREFIX: &str = "fingerprint:";

impl RunSeedCell {
    /// The cell a run seed gets: its fingerprint only when it came from a secret file.
    pub fn of(seed: u64, from_file: bool) -> RunSeedCell {
        if from_file {
            RunSeedCell::Fingerprint(seed_fingerprint(seed))
        } else {
            RunSeedCell::Seed(seed)
        }
    }
}

impl Serialize for RunSeedCell {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RunSeedCell::Seed(seed) => serializer.serialize_str(&seed.to_string()),
            RunSeedCell::Fingerprint(fingerprint) => {
                serializer.serialize_str(&format!("{FINGERPRINT_PREFIX}{fingerprint}"))
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for RunSeedCell {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(fingerprint) = text.strip_prefix(FINGERPRINT_PREFIX) {
            let hex = fingerprint.len() == 64
                && fingerprint
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                return Err(serde::de::Error::custom(format!(
                    "`{text}` is not a run seed fingerprint"
                )));
            }
            return Ok(RunSeedCell::Fingerprint(fingerprint.to_string()));
        }
        text.parse::<u64>()
            .map(RunSeedCell::Seed)
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a run seed")))
    }
}

/// The run seed and the cell rows record it in: the one given, else the one a resumed
/// manifest's rows were made with, else a fresh one from the OS. A resumed run keeps the cells it
/// started with; a run whose rows hold a fingerprint needs its secret file (or the seed) back,
/// checked against that fingerprint.
pub fn resolve_seed<'a>(
    given: Option<GivenSeed>,
    previous: impl IntoIterator<Item = Option<&'a RunSeedCell>>,
) -> Result<(u64, RunSeedCell), Refused> {
    let mut previous = previous.into_iter().flatten();
    let first = previous.next();
    if let Some(cell) = first {
        if previous.any(|other| other != cell) {
            return Err(Refused(
                "the manifest holds rows of several run seeds: it cannot be resumed; start over in an empty folder".into(),
            ));
        }
    }
    let how = |given: &GivenSeed| {
        if given.from_file {
            "the secret file given with --seed-file"
        } else {
            "--seed"
        }
    };
    match (given, first) {
        (Some(given), Some(RunSeedCell::Seed(seed))) if given.value != *seed => {
            Err(Refused(if given.from_file {
                format!("the run being resumed used --seed {seed}, not the seed of {}: resume with --seed {seed} (or without --seed-file)", how(&given))
            } else {
                format!("the run being resumed used --seed {seed}, not {}: resume with --seed {seed} (or without --seed)", given.value)
            }))
        }
        (Some(given), Some(RunSeedCell::Fingerprint(recorded))) => {
            let found = seed_fingerprint(given.value);
            if found == *recorded {
                Ok((given.value, RunSeedCell::Fingerprint(found)))
            } else {
                Err(Refused(format!(
                    "the run being resumed was seeded from a secret file with fingerprint {recorded}, but {} has fingerprint {found}: resume with the --seed-file of that run",
                    how(&given)
                )))
            }
        }
        (None, Some(RunSeedCell::Fingerprint(recorded))) => Err(Refused(format!(
            "the run being resumed was seeded from a secret file (fingerprint {recorded}), which the manifest does not hold: resume with --seed-file FILE of that run"
        ))),
        (Some(given), Some(RunSeedCell::Seed(seed))) => Ok((given.value, RunSeedCell::Seed(*seed))),
        (None, Some(RunSeedCell::Seed(seed))) => Ok((*seed, RunSeedCell::Seed(*seed))),
        (Some(given), None) => Ok((given.value, RunSeedCell::of(given.value, given.from_file))),
        (None, None) => {
            let seed = crate::diffusion::noise::random_run_seed();
            Ok((seed, RunSeedCell::Seed(seed)))
        }
    }
}

/// An unreadable or refused secret file.
impl From<SecretError> for Refused {
    fn from(error: SecretError) -> Self {
        Refused(error.to_string())
    }
}

/// A dataset-layer refusal (missing IN, OUT inside IN...).
impl From<DatasetError> for Refused {
    fn from(error: DatasetError) -> Self {
        Refused(error.to_string())
    }
}

/// Refuses IN and OUT pairs that could lose data ([`dataset::check_folders`]); IN may also be a
/// single image file, which must then not lie inside OUT.
pub fn check_input_output(input: &Path, output: &Path) -> Result<(), Refused> {
    if input.is_dir() {
        return Ok(dataset::check_folders(input, output)?);
    }
    let file = std::fs::canonicalize(input)
        .map_err(|e| Refused(format!("input {}: {e}; check the path", input.display())))?;
    if output.exists() && !output.is_dir() {
        return Err(Refused(format!(
            "output {} exists and is not a folder: give a new or empty folder",
            output.display()
        )));
    }
    if file.starts_with(dataset::resolve_planned(output)?) {
        return Err(Refused(format!(
            "input {} is inside output {}: writing the output could change the input; choose an output folder that does not contain it",
            input.display(),
            output.display()
        )));
    }
    Ok(())
}

/// The entries of IN: a folder's walk ([`dataset::walk`]), or a single file named by the user,
/// which is decoded by its content whatever its extension.
pub fn entries(input: &Path) -> Result<(PathBuf, Vec<Entry>), Refused> {
    if input.is_dir() {
        return Ok((input.to_path_buf(), dataset::walk(input)?));
    }
    let name = input
        .file_name()
        .ok_or_else(|| Refused(format!("input {}: not a file name", input.display())))?;
    let root = input.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((
        root,
        vec![Entry {
            relative: PathBuf::from(name),
            kind: EntryKind::Image,
        }],
    ))
}

/// Hex sha256 of a file, or `None` when it cannot be read (a missing output).
pub fn file_sha256(path: &Path) -> Option<String> {
    crate::io::hashing::sha256_file(path).ok()
}

/// How one manifest row ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStatus {
    /// The output was written and its sha256 recorded.
    #[default]
    Ok,
    /// The input could not be processed (the reason says why); no output.
    Error,
    /// Not an image, or its output name is taken by another input; no output.
    Skipped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_columns_are_the_fields_in_order() {
        use crate::commands::{augment::AugmentRow, enhance::EnhanceRow};
        let lead = "source,source_sha256,output,output_sha256,status,reason";
        assert_eq!(
            AugmentRow::COLUMNS.join(","),
            format!(
                "{lead},sample,strength,start_timestep,steps,scheduler,seed,run_seed,model_sha256"
            )
        );
        assert_eq!(
            EnhanceRow::COLUMNS.join(","),
            format!("{lead},scale,strength,start_timestep,steps,scheduler,tile,overlap,tiles,seed,run_seed,width,height,model_sha256")
        );
    }

    #[test]
    fn run_seed_cells_round_trip_and_resume_checks_the_fingerprint() {
        use crate::diffusion::noise::seed_fingerprint;
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Row {
            run_seed: Option<RunSeedCell>,
        }
        let cells = [
            RunSeedCell::Seed(u64::MAX),
            RunSeedCell::of(7, true),
            RunSeedCell::of(7, false),
        ];
        for cell in cells {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer
                .serialize(Row {
                    run_seed: Some(cell.clone()),
                })
                .unwrap();
            let bytes = writer.into_inner().unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            if matches!(cell, RunSeedCell::Fingerprint(_)) {
                assert!(text.contains(&format!("fingerprint:{}", seed_fingerprint(7))));
            }
            let mut reader = csv::Reader::from_reader(bytes.as_slice());
            let back: Row = reader.deserialize().next().unwrap().unwrap();
            assert_eq!(back.run_seed, Some(cell));
        }

        let file = |value| GivenSeed {
            value,
            from_file: true,
        };
        let flag = |value| GivenSeed {
            value,
            from_file: false,
        };
        let hidden = RunSeedCell::of(7, true);
        assert_eq!(
            resolve_seed(Some(file(7)), []).unwrap(),
            (7, hidden.clone())
        );
        assert_eq!(
            resolve_seed(Some(flag(7)), []).unwrap(),
            (7, RunSeedCell::Seed(7))
        );
        assert_eq!(
            resolve_seed(Some(file(7)), [Some(&hidden)]).unwrap(),
            (7, hidden.clone())
        );
        let other = resolve_seed(Some(file(8)), [Some(&hidden)]).unwrap_err();
        assert!(other.0.contains("fingerprint"), "{}", other.0);
        assert!(!other.0.contains(" 8"), "{}", other.0);
        let none = resolve_seed(None, [Some(&hidden)]).unwrap_err();
        assert!(none.0.contains("--seed-file"), "{}", none.0);
        // A --seed run keeps recording the seed even when resumed from a file of that seed.
        let seeded = RunSeedCell::Seed(7);
        assert_eq!(
            resolve_seed(Some(file(7)), [Some(&seeded)]).unwrap(),
            (7, seeded.clone())
        );
        assert!(resolve_seed(Some(file(8)), [Some(&seeded)]).is_err());
    }

    #[test]
    fn a_single_input_file_inside_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out/a.png");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"x").unwrap();
        assert!(check_input_output(&file, &dir.path().join("out")).is_err());
        assert!(check_input_output(&file, dir.path()).is_err());
        check_input_output(&file, &dir.path().join("elsewhere")).unwrap();
    }
}
