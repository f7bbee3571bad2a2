//! Reads a report leniently (every row, whatever is wrong with it) and checks its hash chain,
//! computed here from the formula in [`crate::records::report`]'s documentation rather than by the writer's
//! code, so the audit is an independent second implementation.
//!
//! Each row is judged locally: its chain must follow from the chain written on the row above.
//! When it does not, the row's chain is tried after every other row's chain (and the header) to
//! tell a moved row (its real predecessor is elsewhere in the report) from an edited row or a
//! deletion (its real predecessor is nowhere).

use std::collections::HashMap;
use std::path::Path;

use super::{io_error, AuditError, Entry, Finding, FindingKind};
use crate::io::hashing::sha256_bytes;
use crate::records::report::{genesis, ReportRow, COLUMNS};

/// Chain breaks for which the real predecessor is searched (each search hashes every row once).
const SEARCHED_BREAKS: usize = 64;

/// Largest report read (it is read whole): about five million rows, far beyond a run's; a FIFO,
/// device or larger file must not hang the audit or exhaust its memory.
const MAX_REPORT_BYTES: u64 = 4 << 30;

pub(super) struct Read {
    pub entries: Vec<Entry>,
    pub findings: Vec<Finding>,
}

pub(super) fn read(path: &Path) -> Result<Read, AuditError> {
    let bytes =
        crate::io::safe_path::read_given(path, MAX_REPORT_BYTES).map_err(|e| io_error(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut record = csv::ByteRecord::new();
    let header_ok = matches!(reader.read_byte_record(&mut record), Ok(true))
        && record.iter().eq(COLUMNS.iter().map(|c| c.as_bytes()));
    if !header_ok {
        let found: String =
            String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap_or(&[]))
                .chars()
                .take(200)
                .collect();
        return Err(AuditError::Header {
            path: path.to_path_buf(),
            found: if bytes.is_empty() {
                "an empty file".to_string()
            } else {
                super::shown(&found)
            },
        });
    }

    let mut entries = Vec::new();
    let mut bodies = Vec::new();
    let mut findings = Vec::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Err(e) => {
                findings.push(Finding::new(
                    FindingKind::RowFormat,
                    Some(line),
                    format!("unreadable CSV, the audit stops reading here: {e}"),
                ));
                break;
            }
            Ok(true) => {}
        }
        let chain = record
            .get(record.len().saturating_sub(1))
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .unwrap_or_default();
        if record.len() != COLUMNS.len() {
            findings.push(Finding::new(
                FindingKind::RowFormat,
                Some(line),
                format!(
                    "{} fields where a report row has {}",
                    record.len(),
                    COLUMNS.len()
                ),
            ));
            entries.push(Entry {
                line,
                row: None,
                chain,
            });
            bodies.push(None);
            continue;
        }
        bodies.push(encode_fields(record.iter().take(COLUMNS.len() - 1)));
        // Cells were neutralised against spreadsheet formulas when written (records::cells).
        let row =
            match crate::records::cells::restore_record(&record).deserialize::<ReportRow>(None) {
                Ok(row) => Some(row),
                Err(e) => {
                    findings.push(Finding::new(
                        FindingKind::RowFormat,
                        Some(line),
                        format!("a field does not parse: {e}"),
                    ));
                    None
                }
            };
        entries.push(Entry { line, row, chain });
    }

    if !bytes.ends_with(b"\n") {
        let line = entries.last().map_or(1, |e| e.line);
        findings.push(Finding::new(
            FindingKind::Torn,
            Some(line),
            "the last row has no line break: the run stopped while writing it, or the file was cut",
        ));
    }
    findings.extend(check_chain(&entries, &bodies));
    Ok(Read { entries, findings })
}

/// `fields` as the writer encodes them: CSV, quoted only where needed, no line break.
fn encode_fields<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(fields).ok()?;
    let mut bytes = writer.into_inner().ok()?;
    bytes.pop();
    Some(bytes)
}

fn link(previous: &str, body: &[u8]) -> String {
    let mut input = Vec::with_capacity(previous.len() + body.len());
    input.extend_from_slice(previous.as_bytes());
    input.extend_from_slice(body);
    hex::encode(sha256_bytes(&input))
}

fn check_chain(entries: &[Entry], bodies: &[Option<Vec<u8>>]) -> Vec<Finding> {
    let genesis = genesis();
    // Chain value → the line it is written on; the header stands for the genesis value.
    let mut written: HashMap<&str, u64> = HashMap::with_capacity(entries.len() + 1);
    written.insert(genesis.as_str(), 1);
    for entry in entries {
        written.entry(entry.chain.as_str()).or_insert(entry.line);
    }

    let mut findings = Vec::new();
    let mut previous = genesis.as_str();
    let mut previous_line = 1u64;
    let mut searched = 0usize;
    for (entry, body) in entries.iter().zip(bodies) {
        let Some(body) = body else {
            // A malformed row has its own finding; the next row is judged against its chain field.
            previous = entry.chain.as_str();
            previous_line = entry.line;
            continue;
        };
        if link(previous, body) != entry.chain {
            let message = if searched < SEARCHED_BREAKS {
                searched += 1;
                let origin = written
                    .iter()
                    .filter(|(chain, line)| **line != entry.line && **chain != previous)
                    .find(|(chain, _)| link(chain, body) == entry.chain)
                    .map(|(_, line)| *line);
                match origin {
                    Some(1) => format!(
                        "this row was the first row of the report: the {} row(s) above it were inserted or moved there",
                        entry.line - 2
                    ),
                    Some(line) => format!(
                        "this row originally came right after line {line}, not after line {previous_line}: rows were reordered, moved or inserted"
                    ),
                    None => format!(
                        "the chain breaks between line {previous_line} and this row: this row was edited, or rows between them were deleted (or this row was inserted)"
                    ),
                }
            } else {
                format!(
                    "the chain breaks between line {previous_line} and this row (more than {SEARCHED_BREAKS} breaks: not analysed further)"
                )
            };
            findings.push(Finding::new(FindingKind::Chain, Some(entry.line), message));
        }
        previous = entry.chain.as_str();
        previous_line = entry.line;
    }
    findings
}
