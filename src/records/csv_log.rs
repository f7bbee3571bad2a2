//! A CSV file appended one row at a time, each row fsync'd before `append` returns, rolled back
//! when a write fails, and resumable after a crash (a torn last row is cut off).

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::append::{AppendError, SyncedAppend};

/// A row type of a log: its serde field order must match `COLUMNS`.
pub trait LogRow: Serialize + DeserializeOwned {
    const COLUMNS: &'static [&'static str];
}

#[derive(Debug, thiserror::Error)]
pub enum CsvLogError {
    /// Displays the path; the cause follows in the error chain (`{:#}`: `path: cause`).
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path}:{line}: {message}; it is not a log this command can resume (move it away to start over)")]
    Damaged {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path} is not a regular file (a symlink, FIFO, device or folder): refusing to read or append to it; remove it and rerun")]
    NotRegular { path: PathBuf },
    #[error("{path}: an earlier row could not be written nor rolled back; rerun with --resume, which repairs the log")]
    Broken { path: PathBuf },
}

fn io_error(path: &Path, source: std::io::Error) -> CsvLogError {
    CsvLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_error(path: &Path, source: csv::Error) -> CsvLogError {
    CsvLogError::Encode {
        path: path.to_path_buf(),
        source,
    }
}

/// A CSV log appended one row at a time; each row is on disk (fsync'd) when `append`
/// returns, so a crash loses at most the row being written, which `resume` cuts off.
pub struct CsvLog<R> {
    file: SyncedAppend,
    row: PhantomData<R>,
}

impl<R: LogRow> CsvLog<R> {
    /// Starts a log with its header (replacing any file there, atomically).
    pub fn create(path: &Path) -> Result<CsvLog<R>, CsvLogError> {
        let header = encode_record(path, R::COLUMNS.iter().map(|c| c.as_bytes()))?;
        crate::io::atomic::write(path, &header).map_err(|e| io_error(path, e))?;
        CsvLog::open(path)
    }

    /// Continues a log after a stop or a crash ([`CsvLog::read_resumable`], then
    /// [`ResumedLog::open`]); a missing or empty file starts a new log.
    pub fn resume(
        path: &Path,
        keep: impl FnMut(&R) -> bool,
    ) -> Result<(CsvLog<R>, Vec<R>), CsvLogError> {
        match CsvLog::read_resumable(path, keep)? {
            Some(resumed) => resumed.open(),
            None => Ok((CsvLog::create(path)?, Vec::new())),
        }
    }

    /// Reads a log to continue it, writing nothing (the caller checks the rows first): a torn
    /// last row is cut off, damage elsewhere is an error naming its line. Rows for which `keep`
    /// is false are dropped, and [`ResumedLog::open`] rewrites the log without them so redone
    /// outputs get no duplicate rows. `None` when there is no file or it holds no complete line.
    /// The file is read without following a symlink or blocking on a FIFO: anything but a
    /// regular file is an error.
    pub fn read_resumable(
        path: &Path,
        mut keep: impl FnMut(&R) -> bool,
    ) -> Result<Option<ResumedLog<R>>, CsvLogError> {
        let bytes = match read_regular(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into_log_error(path)),
        };
        // Everything after the last line break is a row the run died writing.
        let complete = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(end) => &bytes[..=end],
            None => return Ok(None),
        };
        let damaged = |line: u64, message: String| CsvLogError::Damaged {
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
        for (index, record) in reader.byte_records().enumerate() {
            let row = record
                .and_then(|record| super::cells::restore_record(&record).deserialize::<R>(None))
                .map_err(|e| damaged(index as u64 + 2, e.to_string()))?;
            if keep(&row) {
                rows.push(row);
            } else {
                dropped = true;
            }
        }
        Ok(Some(ResumedLog {
            path: path.to_path_buf(),
            rows,
            rewrite: dropped,
        }))
    }

    fn open(path: &Path) -> Result<CsvLog<R>, CsvLogError> {
        Ok(CsvLog {
            file: SyncedAppend::open(path).map_err(|e| io_error(path, e))?,
            row: PhantomData,
        })
    }

    /// Writes `row` and fsyncs it; a failed write leaves no partial row behind.
    pub fn append(&mut self, row: &R) -> Result<(), CsvLogError> {
        let line = encode_row(self.path(), row)?;
        self.file.append(&line).map_err(|e| match e {
            AppendError::Broken => CsvLogError::Broken {
                path: self.path().to_path_buf(),
            },
            AppendError::Io(e) => io_error(self.path(), e),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

/// A log read by [`CsvLog::read_resumable`], not yet continued.
pub struct ResumedLog<R> {
    path: PathBuf,
    /// The kept rows, in order.
    pub rows: Vec<R>,
    /// Whether rows (or a torn last one) were dropped, so the file must be rewritten.
    rewrite: bool,
}

impl<R: LogRow> ResumedLog<R> {
    /// Rewrites the log without the dropped rows (atomically) if need be, and opens it for
    /// appending. Returns the log and its kept rows.
    pub fn open(self) -> Result<(CsvLog<R>, Vec<R>), CsvLogError> {
        let path = &self.path;
        if self.rewrite {
            let mut text = encode_record(path, R::COLUMNS.iter().map(|c| c.as_bytes()))?;
            for row in &self.rows {
                text.extend(encode_row(path, row)?);
            }
            crate::io::atomic::write(path, &text).map_err(|e| io_error(path, e))?;
        }
        Ok((CsvLog::open(path)?, self.rows))
    }
}

/// Why a log file could not be read.
enum ReadError {
    Io(std::io::Error),
    NotRegular,
}

impl ReadError {
    fn kind(&self) -> std::io::ErrorKind {
        match self {
            ReadError::Io(e) => e.kind(),
            ReadError::NotRegular => std::io::ErrorKind::InvalidInput,
        }
    }

    fn into_log_error(self, path: &Path) -> CsvLogError {
        match self {
            ReadError::Io(e) => io_error(path, e),
            ReadError::NotRegular => CsvLogError::NotRegular {
                path: path.to_path_buf(),
            },
        }
    }
}

/// The bytes of `path`, opened without following a symlink (a planted link would make the run
/// read, then append to, a file outside its folder) and without blocking on a FIFO.
fn read_regular(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let mut file = crate::io::safe_path::open_if_regular(path)
        .map_err(ReadError::Io)?
        .ok_or(ReadError::NotRegular)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(ReadError::Io)?;
    Ok(bytes)
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
) -> Result<Vec<u8>, CsvLogError> {
    let mut writer = csv_writer();
    writer
        .write_record(fields)
        .map_err(|e| encode_error(path, e))?;
    writer
        .into_inner()
        .map_err(|e| io_error(path, e.into_error()))
}

/// The row's CSV line, its cells neutralised against spreadsheet formulas (`records::cells`).
fn encode_row<R: Serialize>(path: &Path, row: &R) -> Result<Vec<u8>, CsvLogError> {
    let mut writer = csv_writer();
    writer.serialize(row).map_err(|e| encode_error(path, e))?;
    let plain = writer
        .into_inner()
        .map_err(|e| io_error(path, e.into_error()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(plain.as_slice());
    let mut record = csv::ByteRecord::new();
    reader
        .read_byte_record(&mut record)
        .map_err(|e| encode_error(path, e))?;
    let cells: Vec<_> = record.iter().map(super::cells::neutralise).collect();
    encode_record(path, cells.iter().map(|cell| cell.as_ref()))
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

    impl LogRow for Row {
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
        let mut log = CsvLog::<Row>::create(&path).unwrap();
        log.append(&row("a, with comma", Some(0.25))).unwrap();
        log.append(&row("b", None)).unwrap();
        log.append(&row("c", Some(1.0))).unwrap();
        drop(log);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"d,0.");
        std::fs::write(&path, &text).unwrap();

        let (mut log, rows) = CsvLog::<Row>::resume(&path, |r| r.name != "b").unwrap();
        assert_eq!(
            rows,
            vec![row("a, with comma", Some(0.25)), row("c", Some(1.0))]
        );
        log.append(&row("d", Some(0.5))).unwrap();
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
        let error = CsvLog::<Row>::resume(&path, |_| true).err().unwrap();
        assert!(
            error.to_string().contains(":1: header is `input,output`"),
            "{error}"
        );
        std::fs::write(&path, "name,value\na,notanumber\nb,1\n").unwrap();
        let error = CsvLog::<Row>::resume(&path, |_| true).err().unwrap();
        assert!(error.to_string().contains("m.csv:2:"), "{error}");
    }

    /// A manifest planted as a symlink (to a file outside OUT) or a FIFO (which would block a
    /// plain open) is refused, and the link's target is left as it was.
    #[test]
    fn resume_refuses_a_symlink_and_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.csv");
        std::fs::write(&outside, "name,value\na,1\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let error = CsvLog::<Row>::resume(&link, |_| true).err().unwrap();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&outside).unwrap(),
            "name,value\na,1\n"
        );

        let fifo = dir.path().join("fifo.csv");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = CsvLog::<Row>::resume(&fifo, |_| true).err().unwrap();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }
}
