//! The private run report: one CSV row per input file, written and fsync'd as each image
//! finishes, with a hash chain that makes any edit detectable; and `run.json`, the run's record.
//!
//! The chain, so an auditor can check it without this tool (Python, for a report whose fields
//! hold no line breaks):
//!
//! ```text
//! prev = sha256(header_line).hexdigest()          # header_line without its "\n"
//! for line in rows:                               # each without its "\n"
//!     body, chain = line.rsplit(",", 1)           # body: the row's other 26 fields, as written
//!     assert chain == sha256((prev + body).encode()).hexdigest()
//!     prev = chain
//! ```
//!
//! An edited, inserted, deleted or reordered row fails at the first line it touches. The chain
//! has no key: someone who rewrites every later row can forge it, and deleting the last rows
//! leaves a valid prefix; `run.json` keeps the row count and the last chain value for that.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::append::{AppendError, SyncedAppend};
use crate::certify::CertificateKind;
use crate::diffusion::noise::image_seed;
use crate::io::hashing::sha256_bytes;
use crate::io::lock::{self, LockError};

/// The report's columns, in order.
pub const COLUMNS: [&str; 29] = [
    "input_path",
    "input_sha256",
    "output_path",
    "output_sha256",
    "status",
    "certificate",
    "reason",
    "level",
    "strength",
    "start_timestep",
    "steps",
    "scheduler",
    "seed",
    "attempts",
    "distance",
    "threshold",
    "metric",
    "faces_in",
    "faces_out",
    "second_opinions",
    "model_sha256",
    "embedder_sha256",
    "detector_sha256",
    "policy_sha256",
    "width",
    "height",
    "milliseconds",
    "tool_version",
    "chain",
];

/// The header line, without its line break.
pub fn header_line() -> String {
    COLUMNS.join(",")
}

/// The chain value before the first row: hex sha256 of the header line.
pub fn genesis() -> String {
    hex::encode(sha256_bytes(header_line().as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The output is at least the threshold away from the input under the embedder.
    Certified,
    /// Certification failed after the last attempt (output kept or dropped per the policy).
    Failed,
    /// The input could not be processed (unreadable, corrupt, too large...).
    Error,
    /// Not an image, or skipped by policy (e.g. no face found with `on-no-face = "skip"`).
    Skipped,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Certified,
        Status::Failed,
        Status::Error,
        Status::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Certified => "certified",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One report row. Empty strings and `None` are written as empty fields (absent values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    /// Relative to the input folder.
    pub input_path: String,
    pub input_sha256: String,
    /// Relative to the output folder; empty when no output was written.
    pub output_path: String,
    pub output_sha256: String,
    pub status: Status,
    /// What the last attempt's comparison rested on; empty when no comparison was made.
    pub certificate: Option<CertificateKind>,
    pub reason: String,
    pub level: String,
    /// Of the last attempt.
    pub strength: Option<f64>,
    pub start_timestep: Option<f64>,
    pub steps: Option<u32>,
    pub scheduler: String,
    /// Hex per-image seed of the last attempt (secret: see SECURITY.md).
    pub seed: String,
    pub attempts: Option<u32>,
    pub distance: Option<f32>,
    pub threshold: Option<f32>,
    pub metric: String,
    pub faces_in: Option<u32>,
    pub faces_out: Option<u32>,
    /// Each second opinion as `name:distance:threshold`, `;`-separated, in run.json's order
    /// (distance empty when no face pair existed); empty without second opinions.
    pub second_opinions: String,
    pub model_sha256: String,
    pub embedder_sha256: String,
    /// sha256 of the face detector ONNX file that found the faces (pinned by the embedder spec).
    pub detector_sha256: String,
    pub policy_sha256: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub milliseconds: Option<u64>,
    pub tool_version: String,
    /// Written by [`ReportWriter::append`]; whatever a caller puts here is ignored.
    pub chain: String,
}

impl ReportRow {
    /// The seed this row's last attempt must have drawn, hex: `image_seed(run seed, input sha256,
    /// attempts - 1)`. `None` when the row lacks the input hash or attempt count it derives from.
    pub fn expected_seed(&self, run_seed: u64) -> Option<String> {
        let content: [u8; 32] = hex::decode(&self.input_sha256).ok()?.try_into().ok()?;
        let attempt = self.attempts?.checked_sub(1)?;
        Some(hex::encode(image_seed(run_seed, &content, attempt)))
    }
}

/// What is wrong with one line of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowProblem {
    /// The last line has no line break: the run stopped while writing it.
    Torn,
    FieldCount {
        found: usize,
    },
    Unparsable {
        message: String,
    },
    Chain {
        expected: String,
        found: String,
    },
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowProblem::Torn => write!(
                f,
                "the last row is incomplete (no line break): the run stopped while writing it; `--resume` drops it"
            ),
            RowProblem::FieldCount { found } => write!(
                f,
                "{found} fields where a report row has {}",
                COLUMNS.len()
            ),
            RowProblem::Unparsable { message } => write!(f, "unreadable row: {message}"),
            RowProblem::Chain { expected, found } => write!(
                f,
                "chain {found} does not follow from the rows above it (expected {expected}): this row was edited, or rows were inserted, deleted or reordered at this point"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}:1: not a boomerang report header (expected `{expected}`, found `{found}`)", expected = header_line())]
    Header { path: PathBuf, found: String },
    #[error("{path}:{line}: {problem}")]
    Row {
        path: PathBuf,
        line: u64,
        problem: RowProblem,
    },
}

impl ChainError {
    /// The 1-based line of the first problem, when it is about a line.
    pub fn line(&self) -> Option<u64> {
        match self {
            ChainError::Io { .. } => None,
            ChainError::Header { .. } => Some(1),
            ChainError::Row { line, .. } => Some(*line),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Displays the path; the cause follows in the error chain (`{:#}`: `path: cause`).
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} already exists: continue that run with --resume, or choose another --report path"
    )]
    Exists { path: PathBuf },
    #[error("cannot resume the report: {source}")]
    Resume {
        path: PathBuf,
        #[source]
        source: ChainError,
    },
    #[error("{path}: cannot encode: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("{path}: an earlier row could not be written nor rolled back; rerun with --resume, which repairs the report")]
    Broken { path: PathBuf },
    /// Another run holds the report.
    #[error(transparent)]
    Lock(#[from] LockError),
}

fn io_error(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new())
}

/// The CSV text of `fields` (no line break): what the chain of a row covers.
fn encode_fields<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, String> {
    let mut writer = csv_writer();
    writer.write_record(fields).map_err(|e| e.to_string())?;
    let mut bytes = writer.into_inner().map_err(|e| e.to_string())?;
    bytes.pop(); // the terminator
    Ok(bytes)
}

/// The row's first 26 fields as CSV, encoded exactly as a verifier re-encodes what it reads.
fn encode_body(row: &ReportRow) -> Result<Vec<u8>, String> {
    let mut writer = csv_writer();
    writer.serialize(row).map_err(|e| e.to_string())?;
    let bytes = writer.into_inner().map_err(|e| e.to_string())?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    let mut record = csv::ByteRecord::new();
    if !reader
        .read_byte_record(&mut record)
        .map_err(|e| e.to_string())?
    {
        return Err("the row encoded to nothing".into());
    }
    // Cells are neutralised against spreadsheet formulas as written, so the chain covers them
    // as they stand in the file (see `records::cells`).
    let cells: Vec<_> = record
        .iter()
        .take(COLUMNS.len() - 1)
        .map(super::cells::neutralise)
        .collect();
    encode_fields(cells.iter().map(|cell| cell.as_ref()))
}

fn link(previous: &str, body: &[u8]) -> String {
    let mut input = Vec::with_capacity(previous.len() + body.len());
    input.extend_from_slice(previous.as_bytes());
    input.extend_from_slice(body);
    hex::encode(sha256_bytes(&input))
}

/// A report read back: its good rows, where they end, and the first problem after them.
struct Scan {
    rows: Vec<ReportRow>,
    head: String,
    good_end: u64,
    damage: Option<Damage>,
}

struct Damage {
    line: u64,
    problem: RowProblem,
    /// Nothing follows the damaged row: a crash mid-write, which resume may drop.
    last: bool,
}

fn scan(path: &Path) -> Result<Scan, ChainError> {
    let io = |e: std::io::Error| ChainError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    // Never blocks on a FIFO (audit reads reports it is given, symlinks included).
    let mut file = crate::io::safe_path::open_given(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let ends_with_newline = if len == 0 {
        false
    } else {
        file.seek(SeekFrom::End(-1)).map_err(io)?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        last[0] == b'\n'
    };

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::new(file));
    let mut record = csv::ByteRecord::new();
    let header_ok = match reader.read_byte_record(&mut record) {
        Ok(true) => {
            let end = reader.position().byte();
            record.iter().eq(COLUMNS.iter().map(|c| c.as_bytes()))
                && (end < len || ends_with_newline)
        }
        Ok(false) | Err(_) => false,
    };
    if !header_ok {
        let found = record
            .iter()
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(",");
        return Err(ChainError::Header {
            path: path.to_path_buf(),
            found: if len == 0 {
                "an empty file".into()
            } else {
                found
            },
        });
    }

    let mut scan = Scan {
        rows: Vec::new(),
        head: genesis(),
        good_end: reader.position().byte(),
        damage: None,
    };
    loop {
        let line = reader.position().line();
        let problem = match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Err(e) => Some(RowProblem::Unparsable {
                message: e.to_string(),
            }),
            Ok(true) => {
                let end = reader.position().byte();
                match check_row(&record, &scan.head) {
                    Err(problem) => Some(problem),
                    Ok(_) if end >= len && !ends_with_newline => Some(RowProblem::Torn),
                    Ok(row) => {
                        scan.head = row.chain.clone();
                        scan.rows.push(row);
                        scan.good_end = end;
                        None
                    }
                }
            }
        };
        if let Some(problem) = problem {
            let last = matches!(reader.read_byte_record(&mut record), Ok(false));
            scan.damage = Some(Damage {
                line,
                problem,
                last,
            });
            break;
        }
    }
    Ok(scan)
}

fn check_row(record: &csv::ByteRecord, previous: &str) -> Result<ReportRow, RowProblem> {
    if record.len() != COLUMNS.len() {
        return Err(RowProblem::FieldCount {
            found: record.len(),
        });
    }
    let row: ReportRow = super::cells::restore_record(record)
        .deserialize(None)
        .map_err(|e| RowProblem::Unparsable {
            message: e.to_string(),
        })?;
    let body = encode_fields(record.iter().take(COLUMNS.len() - 1))
        .map_err(|message| RowProblem::Unparsable { message })?;
    let expected = link(previous, &body);
    if row.chain != expected {
        return Err(RowProblem::Chain {
            expected,
            found: row.chain,
        });
    }
    Ok(row)
}

/// Reads a whole report and checks its header and chain; the first problem names its line.
pub fn verify(path: &Path) -> Result<Vec<ReportRow>, ChainError> {
    let scan = scan(path)?;
    match scan.damage {
        Some(damage) => Err(ChainError::Row {
            path: path.to_path_buf(),
            line: damage.line,
            problem: damage.problem,
        }),
        None => Ok(scan.rows),
    }
}

/// The rows of a report a resume would keep from: its good rows, a torn last row left out;
/// damage anywhere else is an error naming its line.
pub fn resumable_rows(path: &Path) -> Result<Vec<ReportRow>, ChainError> {
    let scan = scan(path)?;
    match scan.damage {
        Some(damage) if !damage.last => Err(ChainError::Row {
            path: path.to_path_buf(),
            line: damage.line,
            problem: damage.problem,
        }),
        _ => Ok(scan.rows),
    }
}

/// Appends rows to a report, extending its chain; each row is on disk when `append` returns.
/// The report is private (mode 0600) and exclusively locked while the writer lives.
#[derive(Debug)]
pub struct ReportWriter {
    file: SyncedAppend,
    head: String,
    rows: u64,
    /// Holds the report's lock (`flock`) until the writer is dropped.
    _lock: File,
}

impl ReportWriter {
    /// Starts a report: writes the header and makes it durable before any image is processed.
    /// An existing file is an error unless `overwrite`, in which case it is replaced atomically.
    pub fn create(path: &Path, overwrite: bool) -> Result<ReportWriter, ReportError> {
        let header = format!("{}\n", header_line());
        let lock = if overwrite {
            write_locked(path, header.as_bytes())?
        } else {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(crate::io::atomic::PRIVATE_MODE)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => ReportError::Exists {
                        path: path.to_path_buf(),
                    },
                    _ => io_error(path, e),
                })?;
            lock::try_lock(&file, path)?;
            // Private whatever the umask.
            let mode = std::fs::Permissions::from_mode(crate::io::atomic::PRIVATE_MODE);
            file.set_permissions(mode)
                .and_then(|()| file.write_all(header.as_bytes()))
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, e))?;
            file
        };
        sync_parent(path)?;
        ReportWriter::open(path, genesis(), 0, lock)
    }

    /// Continues an existing report: see [`ReportWriter::resume_keeping`] (keeping every row).
    pub fn resume(path: &Path) -> Result<(ReportWriter, Vec<ReportRow>), ReportError> {
        ReportWriter::resume_keeping(path, |_| true)
    }

    /// Continues an existing report after a stop or a crash. A torn last row (the run died while
    /// writing it) is cut off; damage anywhere else is an error naming its line. Rows for which
    /// `keep` is false (say, their output file no longer matches its hash) are removed by
    /// rewriting the report atomically with a fresh chain, so the redone images do not get
    /// duplicate rows. Returns the writer and the kept rows.
    pub fn resume_keeping(
        path: &Path,
        mut keep: impl FnMut(&ReportRow) -> bool,
    ) -> Result<(ReportWriter, Vec<ReportRow>), ReportError> {
        let header = format!("{}\n", header_line());
        // Locked before it is read: two resumes of one report must not both rewrite it.
        let lock =
            crate::io::safe_path::open_regular(path, "report").map_err(|e| io_error(path, e))?;
        lock::try_lock(&lock, path)?;
        // A report restored from a backup or copied may have lost its 0600: a resume that keeps
        // the file as it is must not keep such a mode.
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(crate::io::atomic::PRIVATE_MODE);
            lock.set_permissions(private)
                .map_err(|e| io_error(path, e))?;
        }
        let bytes_len = lock.metadata().map_err(|e| io_error(path, e))?.len();
        // Died while writing the header: start over.
        if bytes_len <= header.len() as u64 {
            let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
            if header.as_bytes().starts_with(&bytes) && bytes.len() < header.len() {
                return Ok((ReportWriter::create(path, true)?, Vec::new()));
            }
        }

        let resume_error = |source: ChainError| ReportError::Resume {
            path: path.to_path_buf(),
            source,
        };
        let scan = scan(path).map_err(resume_error)?;
        if let Some(damage) = &scan.damage {
            if !damage.last {
                return Err(resume_error(ChainError::Row {
                    path: path.to_path_buf(),
                    line: damage.line,
                    problem: damage.problem.clone(),
                }));
            }
        }

        let total = scan.rows.len();
        let rows: Vec<ReportRow> = scan.rows.into_iter().filter(|row| keep(row)).collect();
        if rows.len() == total {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_error(path, e))?;
            if scan.good_end < bytes_len {
                file.set_len(scan.good_end)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_error(path, e))?;
            }
            let writer = ReportWriter::open(path, scan.head, rows.len() as u64, lock)?;
            return Ok((writer, rows));
        }

        let mut text = header.into_bytes();
        let mut head = genesis();
        let mut rechained = Vec::with_capacity(rows.len());
        for mut row in rows {
            let line = encode_line(path, &row, &head)?;
            head = line.1;
            row.chain = head.clone();
            text.extend_from_slice(&line.0);
            rechained.push(row);
        }
        let new_lock = write_locked(path, &text)?;
        drop(lock);
        sync_parent(path)?;
        let writer = ReportWriter::open(path, head, rechained.len() as u64, new_lock)?;
        Ok((writer, rechained))
    }

    fn open(path: &Path, head: String, rows: u64, lock: File) -> Result<ReportWriter, ReportError> {
        Ok(ReportWriter {
            file: SyncedAppend::open(path).map_err(|e| io_error(path, e))?,
            head,
            rows,
            _lock: lock,
        })
    }

    /// Writes `row` (its `chain` computed here) and fsyncs it; a failed write leaves no partial
    /// row behind for the next append to follow.
    pub fn append(&mut self, row: &ReportRow) -> Result<(), ReportError> {
        let (line, chain) = encode_line(self.path(), row, &self.head)?;
        self.file.append(&line).map_err(|e| match e {
            AppendError::Broken => ReportError::Broken {
                path: self.path().to_path_buf(),
            },
            AppendError::Io(e) => io_error(self.path(), e),
        })?;
        self.head = chain;
        self.rows += 1;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The chain value of the last row (the genesis value when there is none).
    pub fn chain_head(&self) -> &str {
        &self.head
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// Replaces the report atomically with a private (0600) file that is locked before it takes the
/// report's name, so the report is never unlocked while this run holds it.
fn write_locked(path: &Path, bytes: &[u8]) -> Result<File, ReportError> {
    let mut held = None;
    let file = crate::io::atomic::write_private_then(path, bytes, |file| {
        lock::try_lock(file, path).map_err(|error| {
            held = Some(error);
            std::io::Error::other("locked")
        })
    });
    match (file, held) {
        (_, Some(error)) => Err(error.into()),
        (Ok(file), None) => Ok(file),
        (Err(error), None) => Err(io_error(path, error)),
    }
}

/// The full CSV line of `row` after `previous`, and its chain value.
fn encode_line(
    path: &Path,
    row: &ReportRow,
    previous: &str,
) -> Result<(Vec<u8>, String), ReportError> {
    let body = encode_body(row).map_err(|message| ReportError::Encode {
        path: path.to_path_buf(),
        message,
    })?;
    let chain = link(previous, &body);
    let mut line = body;
    line.push(b',');
    line.extend_from_slice(chain.as_bytes());
    line.push(b'\n');
    Ok((line, chain))
}

/// Makes a new directory entry durable (a file's fsync does not cover its name).
fn sync_parent(path: &Path) -> Result<(), ReportError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Rows per status, and certified rows per certificate kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub certified: u64,
    pub failed: u64,
    pub error: u64,
    pub skipped: u64,
    /// The certified rows by what their certificate rests on.
    #[serde(default)]
    pub certified_by_kind: KindCounts,
}

/// Rows per certificate kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KindCounts {
    pub face: u64,
    pub face_lost: u64,
    pub whole_image: u64,
}

impl KindCounts {
    pub fn add(&mut self, kind: CertificateKind) {
        *self.get_mut(kind) += 1;
    }

    pub fn get(&self, kind: CertificateKind) -> u64 {
        match kind {
            CertificateKind::Face => self.face,
            CertificateKind::FaceLost => self.face_lost,
            CertificateKind::WholeImage => self.whole_image,
        }
    }

    fn get_mut(&mut self, kind: CertificateKind) -> &mut u64 {
        match kind {
            CertificateKind::Face => &mut self.face,
            CertificateKind::FaceLost => &mut self.face_lost,
            CertificateKind::WholeImage => &mut self.whole_image,
        }
    }

    /// "12 face, 3 whole-image" (kinds with no row left out; "none" when empty).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = CertificateKind::ALL
            .into_iter()
            .filter(|kind| self.get(*kind) > 0)
            .map(|kind| format!("{} {kind}", self.get(kind)))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl StatusCounts {
    pub fn add(&mut self, row: &ReportRow) {
        match row.status {
            Status::Certified => self.certified += 1,
            Status::Failed => self.failed += 1,
            Status::Error => self.error += 1,
            Status::Skipped => self.skipped += 1,
        }
        if let (Status::Certified, Some(kind)) = (row.status, row.certificate) {
            self.certified_by_kind.add(kind);
        }
    }

    pub fn of<'a>(rows: impl IntoIterator<Item = &'a ReportRow>) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for row in rows {
            counts.add(row);
        }
        counts
    }

    pub fn total(&self) -> u64 {
        self.certified + self.failed + self.error + self.skipped
    }
}

/// The resolved configuration of an `anonymize` run, as `run.json` records it. The fields are in
/// alphabetical order on purpose: run.json used to hold a `serde_json` map, which sorts its keys,
/// and this struct writes the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub batch: usize,
    /// The face detector ONNX file (resolved from the embedder spec's `detector`).
    #[serde(default)]
    pub detector: PathBuf,
    /// Its sha256 (the spec's `detector-sha256` pin, when it has one).
    #[serde(default)]
    pub detector_sha256: String,
    /// The execution provider, as `--device` names it.
    pub device: String,
    /// The embedder spec file.
    pub embedder: PathBuf,
    pub embedder_sha256: String,
    /// The whole-image (feature) embedder spec of `whole-image` certificates, and its sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_embedder: Option<RecordedSpec>,
    pub input: PathBuf,
    /// The policy level's name.
    pub level: String,
    /// The level as the policy serializes it (kebab-case keys, sorted, as a JSON map writes
    /// them); kept as JSON because the policy layer owns that format and only writes it.
    pub level_settings: serde_json::Value,
    pub model: PathBuf,
    pub model_sha256: String,
    pub output: PathBuf,
    pub policy: PathBuf,
    pub policy_sha256: String,
    pub report: PathBuf,
    /// Face embedders that had to agree, in the order of the report's `second_opinions` column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub second_opinions: Vec<RecordedSpec>,
    /// The run seed (secret: see SECURITY.md). Absent when it came from a secret file
    /// (`--seed-file`): then only `seed_fingerprint` names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The run seed's public name ([`crate::diffusion::noise::seed_fingerprint`]); absent in
    /// records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_fingerprint: Option<String>,
    /// The part of a sharded run (`--shard K/N`); absent for a whole run, and in the run.json
    /// `report merge` writes for the merged parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
}

impl RunConfig {
    /// The run seed's fingerprint: the recorded one, else computed from the recorded seed.
    pub fn fingerprint(&self) -> Option<String> {
        self.seed_fingerprint
            .clone()
            .or_else(|| self.seed.map(crate::diffusion::noise::seed_fingerprint))
    }
}

/// Which part of a sharded run a run.json records, and the walk all parts split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// K of `--shard K/N`, from 0.
    pub index: u32,
    /// N.
    pub count: u32,
    /// Entries of the whole walk of IN (every part walks all of IN and takes its block).
    pub walk_entries: u64,
    /// sha256 of the walk's paths (report text, one per line): parts of one run walked the same
    /// IN.
    pub walk_sha256: String,
    /// The block of walk entries this part processed: `first..first + entries`.
    pub first: u64,
    pub entries: u64,
}

/// An embedder spec a run used, with the sha256 of the spec file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedSpec {
    pub spec: PathBuf,
    pub sha256: String,
}

/// `run.json`: what ran, with what, and how it ended. Private, like the report (it holds the
/// run seed in `config`, unless the seed came from a secret file: then only its fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub tool_version: String,
    /// The full resolved configuration (command line, policy, level, seed...).
    pub config: RunConfig,
    pub onnxruntime_version: String,
    /// The ONNX Runtime shared library that was loaded.
    pub onnxruntime_library: String,
    pub execution_provider: String,
    pub counts: StatusCounts,
    /// RFC 3339, UTC ([`rfc3339_utc`]).
    pub started: String,
    pub finished: String,
    pub report_path: String,
    /// Rows in the report and its last chain value at the end of the run: together they detect
    /// rows cut from the end, which the chain alone cannot.
    pub report_rows: u64,
    pub report_chain_head: String,
    /// Dataset-level top-1 re-identification rate of outputs against inputs, and its chance level
    /// (absent until the run finishes, or when it wrote no outputs).
    #[serde(default)]
    pub reidentification_rate: Option<f64>,
    #[serde(default)]
    pub reidentification_chance: Option<f64>,
    /// Re-identification by the `--adversary` embedder, which did not certify the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversary: Option<AdversaryReidentification>,
    /// How many parts `report merge` joined into this record (absent for one run). The parts'
    /// re-identification rates do not add up, so a merged record states none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_parts: Option<u32>,
}

/// Dataset-level re-identification of outputs against inputs by a face embedder that is not
/// one the run certified against: top-1 and top-5 ranks, not a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdversaryReidentification {
    /// The spec's name, file and the sha256 of that file.
    pub embedder: String,
    pub spec: PathBuf,
    pub spec_sha256: String,
    /// `None` when no output showed a face to look up.
    pub top1_rate: Option<f64>,
    pub top5_rate: Option<f64>,
    pub chance: Option<f64>,
    /// Outputs looked up (those with a face whose input has one).
    pub probes: usize,
}

impl RunRecord {
    /// Writes pretty JSON atomically (temp file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| ReportError::Encode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        crate::io::atomic::write_private(path, &json).map_err(|e| io_error(path, e))
    }
}

/// `time` as RFC 3339 in UTC with second precision, e.g. `2024-02-29T23:59:59Z`.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let seconds: i64 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        // Before 1970: round down to the whole second.
        Err(before) => {
            let d = before.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
/// `OUT.report.csv` beside OUT: the report links outputs to inputs, so it never goes inside.
pub fn default_report_path(output: &Path) -> PathBuf {
    sibling(output, "report.csv")
}

/// `OUT.<suffix>` in OUT's parent folder.
fn sibling(output: &Path, suffix: &str) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    output
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{name}.{suffix}"))
}

/// `run.json` sits next to the report: both are private. It is named from the report's whole
/// file name, so different reports never share a run record: `X.report.csv` (the default report
/// of OUT `X`) gives `X.run.json`; any other name `N` gives `N.run.json` (`a.csv` →
/// `a.csv.run.json`). The one pair left that could meet (`N.report.csv` and `N`) is refused by
/// anonymize, which never replaces an existing run record when it starts a run.
pub fn run_record_path(report: &Path) -> PathBuf {
    let mut name = report
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let text = name.to_string_lossy().into_owned();
    if let Some(stem) = text.strip_suffix(".report.csv").filter(|s| !s.is_empty()) {
        name = stem.into();
    }
    name.push(".run.json");
    report.parent().unwrap_or(Path::new(".")).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_writes_the_bytes_of_the_sorted_json_map_it_replaces() {
        let config = RunConfig {
            batch: 4,
            detector: "models/face-detector/blazeface-full-range.onnx".into(),
            detector_sha256: "d".repeat(64),
            device: "cpu".into(),
            embedder: "models/dlib-face/embedder.toml".into(),
            embedder_sha256: "e".repeat(64),
            feature_embedder: None,
            input: "data/in".into(),
            level: "medium".into(),
            level_settings: serde_json::json!({"strength": 0.5, "eta": 0.1f32, "name": "medium"}),
            model: "models/tiny-sd".into(),
            model_sha256: "m".repeat(64),
            output: "out/anonymized".into(),
            policy: "policies/demo.toml".into(),
            policy_sha256: "p".repeat(64),
            report: "out/anonymized.report.csv".into(),
            second_opinions: Vec::new(),
            seed: Some(u64::MAX),
            seed_fingerprint: Some("f".repeat(64)),
            shard: None,
            threads: 0,
        };
        // What anonymize built before RunConfig existed.
        let map = serde_json::json!({
            "input": config.input,
            "output": config.output,
            "policy": config.policy,
            "policy_sha256": config.policy_sha256,
            "level": config.level,
            "level_settings": config.level_settings,
            "model": config.model,
            "model_sha256": config.model_sha256,
            "embedder": config.embedder,
            "embedder_sha256": config.embedder_sha256,
            "seed": config.seed,
            "seed_fingerprint": config.seed_fingerprint,
            "batch": config.batch,
            "detector": config.detector,
            "detector_sha256": config.detector_sha256,
            "threads": config.threads,
            "device": config.device,
            "report": config.report,
        });
        assert_eq!(
            serde_json::to_string_pretty(&config).unwrap(),
            serde_json::to_string_pretty(&map).unwrap()
        );
        let back: RunConfig = serde_json::from_value(map).unwrap();
        assert_eq!(back, config);
    }
}
