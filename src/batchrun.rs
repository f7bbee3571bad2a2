//! What `augment` and `enhance` share when they run over a dataset (on top of `dataset`, which
//! walks, checks folders and decodes safely): the CSV manifest (one row per output, fsync'd as it
//! is written, resumable after a crash), seeds on resume, the progress bar and exit codes.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use image::DynamicImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dataset::{self, DatasetError, Entry, EntryKind};
use crate::hashing::sha256_bytes;

/// Why a run will not start or continue (unsafe folders, a manifest from other arguments...):
/// the message says what to do instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a run did, counted in manifest rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Outputs written by this run.
    pub written: u64,
    /// Outputs a resumed run found finished (row present, file hash matching).
    pub kept: u64,
    /// Inputs that could not be processed (unreadable, corrupt, too large).
    pub errors: u64,
    /// Files that are not images, or whose output name another input already takes.
    pub skipped: u64,
}

impl Counts {
    /// 0 when every image was processed, 3 when some had errors. Skipped non-image files are
    /// expected in a dataset folder and do not count as failures.
    pub fn exit_code(&self) -> ExitCode {
        if self.errors > 0 {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
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
        (None, None) => Ok(crate::cli::SeedArg::Random.resolve()),
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
    crate::hashing::sha256_file(path).ok()
}

/// Encodes `image` as PNG (no metadata chunks) and writes it atomically; returns its hex sha256.
pub fn write_png(image: &DynamicImage, path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    crate::atomic::write(path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(hex::encode(sha256_bytes(&bytes)))
}

/// How one manifest row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    /// The output was written and its sha256 recorded.
    Ok,
    /// The input could not be processed (the reason says why); no output.
    Error,
    /// Not an image, or its output name is taken by another input; no output.
    Skipped,
}

/// A manifest row type: its serde field order must match `COLUMNS`.
pub trait ManifestRow: Serialize + DeserializeOwned {
    const COLUMNS: &'static [&'static str];
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}; it is not a manifest this command can resume (move it away to start over)")]
    Damaged {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: an earlier row could not be written nor rolled back; rerun with --resume, which repairs the manifest")]
    Broken { path: PathBuf },
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> ManifestError {
    ManifestError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A CSV manifest appended one row at a time; each row is on disk (fsync'd) when `append`
/// returns, so a crash loses at most the row being written, which `resume` cuts off.
pub struct Manifest<R> {
    path: PathBuf,
    file: File,
    /// Bytes known good, to roll back a partly written row.
    len: u64,
    broken: bool,
    row: PhantomData<R>,
}

impl<R: ManifestRow> Manifest<R> {
    /// Starts a manifest with its header (replacing any file there, atomically).
    pub fn create(path: &Path) -> Result<Manifest<R>, ManifestError> {
        let header = encode_record(path, R::COLUMNS.iter().map(|c| c.as_bytes()))?;
        crate::atomic::write(path, &header).map_err(|e| io_error(path, e))?;
        Manifest::open(path)
    }

    /// Continues a manifest after a stop or a crash: a torn last row is cut off, damage elsewhere
    /// is an error naming its line. Rows for which `keep` is false are removed (the manifest is
    /// rewritten atomically) so redone outputs get no duplicate rows. A missing or empty file
    /// starts a new manifest.
    pub fn resume(
        path: &Path,
        mut keep: impl FnMut(&R) -> bool,
    ) -> Result<(Manifest<R>, Vec<R>), ManifestError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Manifest::create(path)?, Vec::new()))
            }
            Err(e) => return Err(io_error(path, e)),
        };
        // Everything after the last line break is a row the run died writing.
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(end) => &bytes[..=end],
            None => return Ok((Manifest::create(path)?, Vec::new())),
        };
        let damaged = |line: u64, message: String| ManifestError::Damaged {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(complete);
        let header = reader
            .headers()
            .map_err(|e| damaged(1, e.to_string()))?
            .clone();
        if !header.iter().eq(R::COLUMNS.iter().copied()) {
            return Err(damaged(
                1,
                format!(
                    "header is `{}`, expected `{}`",
                    header.iter().collect::<Vec<_>>().join(","),
                    R::COLUMNS.join(",")
                ),
            ));
        }
        let mut rows = Vec::new();
        let mut dropped = complete.len() != bytes.len();
        for (index, record) in reader.deserialize::<R>().enumerate() {
            let row = record.map_err(|e| damaged(index as u64 + 2, e.to_string()))?;
            if keep(&row) {
                rows.push(row);
            } else {
                dropped = true;
            }
        }
        if dropped {
            let mut text = encode_record(path, R::COLUMNS.iter().map(|c| c.as_bytes()))?;
            for row in &rows {
                text.extend(encode_row(path, row)?);
            }
            crate::atomic::write(path, &text).map_err(|e| io_error(path, e))?;
        }
        Ok((Manifest::open(path)?, rows))
    }

    fn open(path: &Path) -> Result<Manifest<R>, ManifestError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let len = file.metadata().map_err(|e| io_error(path, e))?.len();
        Ok(Manifest {
            path: path.to_path_buf(),
            file,
            len,
            broken: false,
            row: PhantomData,
        })
    }

    /// Writes `row` and fsyncs it.
    pub fn append(&mut self, row: &R) -> Result<(), ManifestError> {
        if self.broken {
            return Err(ManifestError::Broken {
                path: self.path.clone(),
            });
        }
        let line = encode_row(&self.path, row)?;
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Leave no partial row for the next append to follow.
            if self.file.set_len(self.len).is_err() {
                self.broken = true;
            }
            return Err(io_error(&self.path, e));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new())
}

fn encode_record<'a>(
    path: &Path,
    fields: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, ManifestError> {
    let mut writer = csv_writer();
    writer.write_record(fields).map_err(|e| io_error(path, e))?;
    writer.into_inner().map_err(|e| io_error(path, e))
}

fn encode_row<R: Serialize>(path: &Path, row: &R) -> Result<Vec<u8>, ManifestError> {
    let mut writer = csv_writer();
    writer.serialize(row).map_err(|e| io_error(path, e))?;
    writer.into_inner().map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Row {
        name: String,
        value: Option<f64>,
    }

    impl ManifestRow for Row {
        const COLUMNS: &'static [&'static str] = &["name", "value"];
    }

    fn row(name: &str, value: Option<f64>) -> Row {
        Row {
            name: name.into(),
            value,
        }
    }

    #[test]
    fn resume_cuts_a_torn_row_and_drops_unkept_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        let mut manifest = Manifest::<Row>::create(&path).unwrap();
        manifest.append(&row("a, with comma", Some(0.25))).unwrap();
        manifest.append(&row("b", None)).unwrap();
        manifest.append(&row("c", Some(1.0))).unwrap();
        drop(manifest);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"d,0.");
        std::fs::write(&path, &text).unwrap();

        let (mut manifest, rows) = Manifest::<Row>::resume(&path, |r| r.name != "b").unwrap();
        assert_eq!(
            rows,
            vec![row("a, with comma", Some(0.25)), row("c", Some(1.0))]
        );
        manifest.append(&row("d", Some(0.5))).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "name,value\n\"a, with comma\",0.25\nc,1.0\nd,0.5\n"
        );
    }

    #[test]
    fn resume_refuses_a_foreign_header_and_a_damaged_middle_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, "input,output\nx,y\n").unwrap();
        let error = Manifest::<Row>::resume(&path, |_| true).err().unwrap();
        assert!(
            error.to_string().contains(":1: header is `input,output`"),
            "{error}"
        );
        std::fs::write(&path, "name,value\na,notanumber\nb,1\n").unwrap();
        let error = Manifest::<Row>::resume(&path, |_| true).err().unwrap();
        assert!(error.to_string().contains("m.csv:2:"), "{error}");
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
