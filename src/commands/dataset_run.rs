//! What `augment` and `enhance` share when they run over a dataset (on top of `dataset`, which
//! walks, checks folders and decodes safely): the CSV manifest (one row per output, fsync'd as it
//! is written, resumable after a crash), seeds on resume, the progress bar and exit codes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Exit;
use crate::io::dataset::{self, DatasetError, Entry, EntryKind};

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

/// The run seed: the one given, else the one a resumed manifest's rows were made with, else a
/// fresh one from the OS.
pub fn resolve_seed(
    given: Option<u64>,
    previous: impl IntoIterator<Item = Option<u64>>,
) -> Result<u64, Refused> {
    let mut previous = previous.into_iter().flatten();
    let first = previous.next();
    if let Some(seed) = first {
        if previous.any(|other| other != seed) {
            return Err(Refused(
                "the manifest holds rows of several run seeds: it cannot be resumed; start over in an empty folder".into(),
            ));
        }
    }
    match (given, first) {
        (Some(given), Some(seed)) if given != seed => Err(Refused(format!(
            "the run being resumed used --seed {seed}, not {given}: resume with --seed {seed} (or without --seed)"
        ))),
        (Some(given), _) => Ok(given),
        (None, Some(seed)) => Ok(seed),
        (None, None) => Ok(crate::diffusion::noise::random_run_seed()),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStatus {
    /// The output was written and its sha256 recorded.
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
