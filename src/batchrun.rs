//! What `augment` and `enhance` share when they run over a dataset: refusing folder pairs that
//! could lose data, listing the inputs, reading them safely, the CSV manifest (one row per output,
//! fsync'd as it is written, resumable after a crash), the progress bar and exit codes.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::hashing::sha256_bytes;

/// A mistake in how the command was called (exit code 2), as opposed to a failure while running.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit codes shared by the dataset commands (documented in their `--help`).
pub const EXIT_OK: u8 = 0;
pub const EXIT_RUN_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INPUTS_FAILED: u8 = 3;

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
    pub fn exit_code(&self) -> u8 {
        if self.errors > 0 {
            EXIT_INPUTS_FAILED
        } else {
            EXIT_OK
        }
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
    let template = format!("{{bar:30}} {{pos}}/{{len}} {unit} ({{msg}}) ETA {{eta}}");
    let style =
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(total).with_style(style)
}

/// The run seed: the one given, else the one a resumed manifest's rows were made with, else a
/// fresh one from the OS.
pub fn resolve_seed(
    given: Option<u64>,
    previous: impl IntoIterator<Item = Option<u64>>,
) -> Result<u64, UsageError> {
    let mut previous = previous.into_iter().flatten();
    let first = previous.next();
    if let Some(seed) = first {
        if previous.any(|other| other != seed) {
            return Err(UsageError(
                "the manifest holds rows of several run seeds: it cannot be resumed; start over in an empty folder".into(),
            ));
        }
    }
    match (given, first) {
        (Some(given), Some(seed)) if given != seed => Err(UsageError(format!(
            "the run being resumed used --seed {seed}, not {given}: resume with --seed {seed} (or without --seed)"
        ))),
        (Some(given), _) => Ok(given),
        (None, Some(seed)) => Ok(seed),
        (None, None) => Ok(crate::cli::SeedArg::Random.resolve()),
    }
}

/// Refuses IN and OUT pairs that could lose data: IN missing, OUT an existing non-folder, the same
/// folder, or one inside the other (compared after resolving symlinks). `input` may be a file.
pub fn check_folders(input: &Path, output: &Path) -> Result<(), UsageError> {
    let input_resolved = std::fs::canonicalize(input)
        .map_err(|e| UsageError(format!("input {}: {e}; check the path", input.display())))?;
    if output.exists() && !output.is_dir() {
        return Err(UsageError(format!(
            "output {} exists and is not a folder: give a new or empty folder",
            output.display()
        )));
    }
    let output_resolved = resolve_planned(output)?;
    if input_resolved == output_resolved {
        return Err(UsageError(format!(
            "input {} and output {} are the same: the input is never written to; choose another output folder",
            input.display(),
            output.display()
        )));
    }
    if output_resolved.starts_with(&input_resolved) {
        return Err(UsageError(format!(
            "output {} is inside input {}: outputs would be written into the input; choose an output folder outside it",
            output.display(),
            input.display()
        )));
    }
    if input_resolved.starts_with(&output_resolved) {
        return Err(UsageError(format!(
            "input {} is inside output {}: writing the output could change the input; choose an output folder that does not contain it",
            input.display(),
            output.display()
        )));
    }
    Ok(())
}

/// The absolute, symlink-free path `path` will have once created: its nearest existing ancestor
/// resolved, the missing components appended.
fn resolve_planned(path: &Path) -> Result<PathBuf, UsageError> {
    let absolute = std::path::absolute(path)
        .map_err(|e| UsageError(format!("output {}: {e}", path.display())))?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    // symlink_metadata: a dangling link is a taken name, not a free one.
    while existing.symlink_metadata().is_err() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut resolved = std::fs::canonicalize(existing)
        .map_err(|e| UsageError(format!("output {}: {e}", path.display())))?;
    for name in missing.into_iter().rev() {
        if name == ".." {
            resolved.pop();
        } else if name != "." {
            resolved.push(name);
        }
    }
    Ok(resolved)
}

/// Whether OUT is missing or an empty folder (a non-empty one needs `--resume`).
pub fn output_is_empty(output: &Path) -> Result<bool, UsageError> {
    match std::fs::read_dir(output) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(UsageError(format!("output {}: {e}", output.display()))),
    }
}

/// Extensions listed as images (case-insensitive); the content decides how a file is decoded.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"];

/// One file under IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to IN (for a single-file IN: the file name).
    pub relative: PathBuf,
    /// `None`: an image to process; `Some(reason)`: a skipped row.
    pub skip: Option<String>,
}

/// Every file under `input`, depth first with each folder's children in byte order (the same
/// list on every run). Symlinks are not followed (a skipped row each), so the walk never leaves
/// IN and never loops. A single file is a one-entry list.
pub fn walk(input: &Path) -> Result<Vec<Entry>, UsageError> {
    let metadata = std::fs::metadata(input)
        .map_err(|e| UsageError(format!("input {}: {e}; check the path", input.display())))?;
    if metadata.is_file() {
        let name = input
            .file_name()
            .ok_or_else(|| UsageError(format!("input {}: not a file name", input.display())))?;
        return Ok(vec![classify(PathBuf::from(name), &metadata)]);
    }
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(folder) = pending.pop() {
        let mut names = match std::fs::read_dir(input.join(&folder)).and_then(|read| {
            read.map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(names) => names,
            Err(e) if folder.as_os_str().is_empty() => {
                return Err(UsageError(format!("input {}: {e}", input.display())))
            }
            Err(e) => {
                entries.push(Entry {
                    relative: folder,
                    skip: Some(format!("folder cannot be read: {e}")),
                });
                continue;
            }
        };
        names.sort();
        // Folders are pushed in reverse so they pop in order, after this folder's files.
        let mut folders = Vec::new();
        for name in names {
            let relative = folder.join(&name);
            match input.join(&relative).symlink_metadata() {
                Ok(metadata) if metadata.is_dir() => folders.push(relative),
                Ok(metadata) => entries.push(classify(relative, &metadata)),
                Err(e) => entries.push(Entry {
                    relative,
                    skip: Some(format!("cannot inspect the file: {e}")),
                }),
            }
        }
        pending.extend(folders.into_iter().rev());
    }
    Ok(entries)
}

fn classify(relative: PathBuf, metadata: &std::fs::Metadata) -> Entry {
    let extension = relative
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let skip = if metadata.file_type().is_symlink() {
        Some("symlink (not followed)".to_string())
    } else if !metadata.is_file() {
        Some("not a regular file".to_string())
    } else {
        match extension {
            Some(e) if IMAGE_EXTENSIONS.contains(&e.as_str()) => None,
            Some(e) => Some(format!("not an image extension (.{e})")),
            None => Some("not an image extension (none)".to_string()),
        }
    };
    Entry { relative, skip }
}

/// Largest input file read, and the decoder's limits: a file declaring a huge size is refused
/// from its header, before any pixel buffer is allocated.
const MAX_FILE_BYTES: u64 = 256 << 20;
const MAX_SIDE: u32 = 16_384;
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// An input read once: its bytes' sha256 and its decoded pixels.
pub struct Input {
    pub sha256: [u8; 32],
    pub image: DynamicImage,
}

/// Reads and decodes one input; the error is the reason for its manifest row.
pub fn read_input(path: &Path) -> Result<Input, String> {
    let file = File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("file is over the {MAX_FILE_BYTES}-byte limit"));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if reader.format().is_none() {
        return Err("not a recognised image (PNG, JPEG, WebP, BMP, TIFF or GIF)".into());
    }
    reader.limits(limits);
    let image = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    Ok(Input {
        sha256: sha256_bytes(&bytes),
        image,
    })
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

/// A path for a manifest column: `/`-separated, lossy only for names that are not UTF-8.
pub fn path_text(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
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
    fn out_inside_in_and_the_same_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        std::fs::create_dir(&input).unwrap();
        assert!(check_folders(&input, &input.join("out")).is_err());
        assert!(check_folders(&input, &dir.path().join("in/./")).is_err());
        std::os::unix::fs::symlink(&input, dir.path().join("link")).unwrap();
        assert!(check_folders(&input, &dir.path().join("link/out")).is_err());
        assert!(check_folders(&input, dir.path()).is_err());
        check_folders(&input, &dir.path().join("out/new")).unwrap();
    }

    #[test]
    fn walk_is_sorted_depth_first_and_skips_non_images() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["b/2.png", "b/1.JPG", "a/x.txt", "top.png", "a/c/z.gif"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let entries = walk(dir.path()).unwrap();
        let listed: Vec<_> = entries
            .iter()
            .map(|e| (path_text(&e.relative), e.skip.is_some()))
            .collect();
        assert_eq!(
            listed,
            [
                ("top.png".to_string(), false),
                ("a/x.txt".to_string(), true),
                ("a/c/z.gif".to_string(), false),
                ("b/1.JPG".to_string(), false),
                ("b/2.png".to_string(), false),
            ]
        );
    }
}
