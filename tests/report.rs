use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use boomerang::certify::CertificateKind;
use boomerang::records::report::{
    genesis, rfc3339_utc, verify, ChainError, KindCounts, RecordedSpec, ReportError, ReportRow,
    ReportWriter, RowProblem, RunConfig, RunRecord, Status, StatusCounts,
};
use sha2::{Digest, Sha256};

const HEADER: &str = "input_path,input_sha256,output_path,output_sha256,status,certificate,reason,level,\
strength,start_timestep,steps,scheduler,seed,attempts,distance,threshold,metric,faces_in,\
faces_out,second_opinions,model_sha256,embedder_sha256,detector_sha256,policy_sha256,width,height,milliseconds,tool_version,chain";

fn row(i: u32) -> ReportRow {
    ReportRow {
        input_path: format!("class_{}/img_{i:03}.jpg", i % 2),
        input_sha256: format!("{:064x}", i + 1),
        output_path: format!("class_{}/f3a9{i:02}.png", i % 2),
        output_sha256: format!("{:064x}", i + 1000),
        status: Status::Certified,
        certificate: Some(CertificateKind::Face),
        reason: String::new(),
        level: "medium".into(),
        strength: Some(0.5),
        start_timestep: Some(481.0),
        steps: Some(50),
        scheduler: "ddim".into(),
        seed: format!("{:064x}", u64::from(i) * 7919),
        attempts: Some(1),
        distance: Some(0.7342),
        threshold: Some(0.6),
        metric: "euclidean".into(),
        faces_in: Some(1),
        faces_out: Some(1),
        second_opinions: "mobilefacenet:1.2:1".into(),
        model_sha256: "50b4c2c12e045118b293821b694386c08abb5aee59edb1f8c4fd4f6ef3acea33".into(),
        embedder_sha256: "e4a003f695be5e07c1593caf71a3edf9b6c2c6d822bf62d8bfdbe707b591e82c".into(),
        detector_sha256: "c15fab92a046e9935ae4784972dba0881688ddafa8ba739b6594fc1cef310bdf".into(),
        policy_sha256: "cec8102ce6c379859f99c97aabb3e330475c47c38d9f48e2450618f54790d955".into(),
        width: Some(250),
        height: Some(250),
        milliseconds: Some(1200 + u64::from(i)),
        tool_version: "0.1.0".into(),
        chain: String::new(),
    }
}

/// A row whose fields need CSV quoting: commas, quotes, a line break, non-ASCII.
fn awkward_row() -> ReportRow {
    ReportRow {
        input_path: "people/Zoë \"Z\", 2.png".into(),
        output_path: String::new(),
        output_sha256: String::new(),
        status: Status::Error,
        certificate: None,
        reason: "decode failed:\nunexpected end of file, at byte 12".into(),
        strength: None,
        start_timestep: None,
        steps: None,
        scheduler: String::new(),
        seed: String::new(),
        attempts: None,
        distance: None,
        threshold: None,
        faces_in: None,
        faces_out: None,
        width: None,
        height: None,
        ..row(99)
    }
}

fn write_rows(path: &Path, rows: &[ReportRow]) {
    let mut writer = ReportWriter::create(path, false).unwrap();
    for row in rows {
        writer.append(row).unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn chain_problem_line(path: &Path) -> u64 {
    match verify(path).unwrap_err() {
        ChainError::Row {
            line,
            problem: RowProblem::Chain { .. },
            ..
        } => line,
        other => panic!("expected a chain mismatch, got {other}"),
    }
}

/// Rows as read back, without the chain the writer added.
fn unchained(rows: Vec<ReportRow>) -> Vec<ReportRow> {
    rows.into_iter()
        .map(|r| ReportRow {
            chain: String::new(),
            ..r
        })
        .collect()
}

#[test]
fn header_is_written_at_creation_and_columns_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let writer = ReportWriter::create(&path, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{HEADER}\n")
    );
    assert_eq!(writer.rows(), 0);
    assert_eq!(writer.chain_head(), genesis());
    drop(writer);

    write_rows(&dir.path().join("s.csv"), &[row(1), awkward_row()]);
    let text = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers.join(","), HEADER);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let first = &records[0];
    assert_eq!(&first[0], "class_1/img_001.jpg");
    assert_eq!(&first[4], "certified");
    assert_eq!(&first[5], "face");
    assert_eq!(&first[8], "0.5");
    assert_eq!(&first[10], "50");
    assert_eq!(&first[14], "0.7342");
    assert_eq!(&first[15], "0.6");
    assert_eq!(&first[19], "mobilefacenet:1.2:1");
    assert_eq!(
        &first[22],
        "c15fab92a046e9935ae4784972dba0881688ddafa8ba739b6594fc1cef310bdf"
    );
    assert_eq!(&first[24], "250");
    assert_eq!(first[28].len(), 64);
    // Absent values are empty fields.
    let second = &records[1];
    assert_eq!(&second[4], "error");
    assert_eq!(&second[2], "");
    for column in [5, 8, 9, 10, 12, 13, 14, 15, 17, 18, 24, 25] {
        assert_eq!(&second[column], "", "column {column}");
    }
    assert_eq!(
        &second[6],
        "decode failed:\nunexpected end of file, at byte 12"
    );
}

#[test]
fn create_refuses_an_existing_report_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(1)]);
    let error = ReportWriter::create(&path, false).unwrap_err();
    assert!(matches!(error, ReportError::Exists { .. }), "{error}");
    assert!(error.to_string().contains("--resume"), "{error}");
    assert_eq!(
        verify(&path).unwrap().len(),
        1,
        "the old report is untouched"
    );

    ReportWriter::create(&path, true).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{HEADER}\n")
    );
}

#[test]
fn every_row_is_on_disk_when_append_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let mut writer = ReportWriter::create(&path, false).unwrap();
    for i in 0..4 {
        writer.append(&row(i)).unwrap();
        // The writer is still open: what is on disk must already be complete and verify.
        let on_disk = verify(&path).unwrap();
        assert_eq!(on_disk.len(), i as usize + 1);
        assert_eq!(on_disk.last().unwrap().chain, writer.chain_head());
        assert!(std::fs::read_to_string(&path).unwrap().ends_with('\n'));
    }
    assert_eq!(writer.rows(), 4);
}

#[test]
fn rows_read_back_equal_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let rows = vec![row(0), awkward_row(), row(2)];
    write_rows(&path, &rows);
    assert_eq!(unchained(verify(&path).unwrap()), rows);
}

#[test]
fn chain_is_the_documented_sha256_over_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1), row(2)]);
    let lines = lines(&path);
    let hex = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    let mut previous = hex(lines[0].as_bytes());
    assert_eq!(previous, genesis());
    for line in &lines[1..] {
        let (body, chain) = line.rsplit_once(',').unwrap();
        assert_eq!(chain, hex(format!("{previous}{body}").as_bytes()));
        previous = chain.to_string();
    }
}

#[test]
fn chain_detects_an_edited_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1), row(2), row(3)]);
    let original = lines(&path);

    let mut edited = original.clone();
    edited[3] = edited[3].replacen("certified", "failed", 1);
    write_lines(&path, &edited);
    assert_eq!(chain_problem_line(&path), 4);

    let mut edited = original.clone();
    edited[1] = edited[1].replacen(",0.7342,", ",0.7343,", 1);
    write_lines(&path, &edited);
    assert_eq!(chain_problem_line(&path), 2);
    let message = verify(&path).unwrap_err().to_string();
    assert!(
        message.contains(&format!("{}:2: chain ", path.display())),
        "{message}"
    );

    // The chain value itself.
    let mut edited = original.clone();
    let last = edited.len() - 1;
    edited[last] = format!("{}0", &edited[last][..edited[last].len() - 1]);
    write_lines(&path, &edited);
    assert_eq!(chain_problem_line(&path), 5);

    let mut edited = original;
    edited[0] = edited[0].replace("distance", "dist");
    write_lines(&path, &edited);
    let error = verify(&path).unwrap_err();
    assert!(matches!(error, ChainError::Header { .. }), "{error}");
    assert_eq!(error.line(), Some(1));
}

#[test]
fn chain_detects_an_inserted_a_deleted_and_swapped_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1), row(2), row(3)]);
    let original = lines(&path);
    assert!(verify(&path).is_ok());

    // A copy of row 2 inserted after it (line 4).
    let mut inserted = original.clone();
    inserted.insert(3, original[2].clone());
    write_lines(&path, &inserted);
    assert_eq!(chain_problem_line(&path), 4);

    // A row written by another run of the same report, at the end.
    let other = dir.path().join("other.csv");
    write_rows(&other, &[row(7)]);
    let mut inserted = original.clone();
    inserted.push(lines(&other)[1].clone());
    write_lines(&path, &inserted);
    assert_eq!(chain_problem_line(&path), 6);

    let mut deleted = original.clone();
    deleted.remove(2);
    write_lines(&path, &deleted);
    assert_eq!(chain_problem_line(&path), 3);

    let mut deleted_first = original.clone();
    deleted_first.remove(1);
    write_lines(&path, &deleted_first);
    assert_eq!(chain_problem_line(&path), 2);

    let mut swapped = original;
    swapped.swap(2, 3);
    write_lines(&path, &swapped);
    assert_eq!(chain_problem_line(&path), 3);
}

#[test]
fn verify_reports_malformed_and_torn_rows_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1), row(2)]);
    let original = lines(&path);

    let mut short = original.clone();
    short[2] = "a,b,c".into();
    write_lines(&path, &short);
    match verify(&path).unwrap_err() {
        ChainError::Row {
            line: 3,
            problem: RowProblem::FieldCount { found: 3 },
            ..
        } => {}
        other => panic!("{other}"),
    }

    let mut bad_number = original.clone();
    bad_number[1] = bad_number[1].replacen(",50,", ",fifty,", 1);
    write_lines(&path, &bad_number);
    let error = verify(&path).unwrap_err();
    assert!(
        matches!(
            &error,
            ChainError::Row {
                line: 2,
                problem: RowProblem::Unparsable { .. },
                ..
            }
        ),
        "{error}"
    );

    let text = original.join("\n");
    std::fs::write(&path, &text).unwrap();
    let error = verify(&path).unwrap_err();
    assert!(
        matches!(
            &error,
            ChainError::Row {
                line: 4,
                problem: RowProblem::Torn,
                ..
            }
        ),
        "{error}"
    );
}

/// The bytes of an uninterrupted report of rows 0..n.
fn uninterrupted(dir: &Path, rows: &[ReportRow]) -> Vec<u8> {
    let path = dir.join("reference.csv");
    write_rows(&path, rows);
    std::fs::read(&path).unwrap()
}

#[test]
fn resume_drops_a_torn_last_line_and_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<ReportRow> = vec![row(0), awkward_row(), row(2), row(3)];
    let reference = uninterrupted(dir.path(), &rows);
    let full_three = {
        let path = dir.path().join("three.csv");
        write_rows(&path, &rows[..3]);
        std::fs::read(&path).unwrap()
    };
    let two_rows_end = {
        let path = dir.path().join("two.csv");
        write_rows(&path, &rows[..2]);
        std::fs::read(&path).unwrap().len()
    };

    // Cut the third row anywhere: mid-field, mid-chain, just before its line break.
    for cut in [
        two_rows_end + 1,
        two_rows_end + 40,
        full_three.len() - 30,
        full_three.len() - 1,
    ] {
        let path = dir.path().join(format!("cut{cut}.csv"));
        std::fs::write(&path, &full_three[..cut]).unwrap();
        assert!(verify(&path).is_err());

        let (mut writer, done) = ReportWriter::resume(&path).unwrap();
        assert_eq!(unchained(done), rows[..2].to_vec(), "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), two_rows_end as u64);
        assert_eq!(writer.rows(), 2);
        writer.append(&rows[2]).unwrap();
        writer.append(&rows[3]).unwrap();
        drop(writer);
        assert_eq!(verify(&path).unwrap().len(), 4);
        assert_eq!(std::fs::read(&path).unwrap(), reference, "cut at {cut}");
    }
}

#[test]
fn resume_of_a_cut_inside_a_quoted_line_break_drops_that_row() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![row(0), awkward_row()];
    let path = dir.path().join("r.csv");
    write_rows(&path, &rows);
    let bytes = std::fs::read(&path).unwrap();
    // Just after the line break inside the reason field: the file ends with "\n" but the
    // record is incomplete.
    let inside = bytes.windows(2).position(|w| w == b":\n").unwrap() + 2;
    std::fs::write(&path, &bytes[..inside]).unwrap();
    let (_writer, done) = ReportWriter::resume(&path).unwrap();
    assert_eq!(unchained(done), rows[..1].to_vec());
    assert_eq!(verify(&path).unwrap().len(), 1);
}

#[test]
fn resume_of_a_complete_report_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1)]);
    let before = std::fs::read(&path).unwrap();
    let (writer, done) = ReportWriter::resume(&path).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(writer.chain_head(), done[1].chain);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn resume_makes_a_report_restored_with_another_mode_private_again() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1)]);
    // As `cp` from a backup leaves it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_writer, done) = ReportWriter::resume(&path).unwrap();
    assert_eq!(done.len(), 2);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn resume_drops_a_last_row_with_a_bad_chain_but_refuses_damage_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    write_rows(&path, &[row(0), row(1), row(2)]);
    let original = lines(&path);

    let mut last_bad = original.clone();
    last_bad[3] = last_bad[3].replacen("certified", "skipped", 1);
    write_lines(&path, &last_bad);
    let (writer, done) = ReportWriter::resume(&path).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(verify(&path).unwrap().len(), 2);
    // A writer holds the report's lock until it is dropped.
    drop(writer);

    let mut middle_bad = original;
    middle_bad[2] = middle_bad[2].replacen("certified", "skipped", 1);
    write_lines(&path, &middle_bad);
    let before = std::fs::read(&path).unwrap();
    let error = ReportWriter::resume(&path).unwrap_err();
    match &error {
        ReportError::Resume {
            source: ChainError::Row { line: 3, .. },
            ..
        } => {}
        other => panic!("{other}"),
    }
    assert!(error.to_string().contains(":3: chain"), "{error}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused resume writes nothing"
    );
}

#[test]
fn resume_after_a_crash_while_writing_the_header_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    for cut in [0, 1, 20, HEADER.len()] {
        let path = dir.path().join(format!("h{cut}.csv"));
        std::fs::write(&path, &HEADER.as_bytes()[..cut]).unwrap();
        let (mut writer, done) = ReportWriter::resume(&path).unwrap();
        assert!(done.is_empty());
        writer.append(&row(0)).unwrap();
        assert_eq!(verify(&path).unwrap().len(), 1, "cut at {cut}");
    }
    // Something else entirely is not taken for a torn header.
    let path = dir.path().join("other.csv");
    std::fs::write(&path, "name,age\nbob,3\n").unwrap();
    let error = ReportWriter::resume(&path).unwrap_err();
    assert!(
        matches!(
            error,
            ReportError::Resume {
                source: ChainError::Header { .. },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn resume_keeping_removes_rows_and_rechains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let rows = vec![row(0), row(1), row(2)];
    write_rows(&path, &rows);
    let (mut writer, kept) =
        ReportWriter::resume_keeping(&path, |r| r.input_path != rows[1].input_path).unwrap();
    assert_eq!(unchained(kept), vec![row(0), row(2)]);
    writer.append(&row(1)).unwrap();
    drop(writer);
    let reference = uninterrupted(dir.path(), &[row(0), row(2), row(1)]);
    assert_eq!(std::fs::read(&path).unwrap(), reference);
}

#[test]
fn status_counts_and_names() {
    let mut rows = vec![row(0), row(1), awkward_row()];
    rows[1].status = Status::Skipped;
    let counts = StatusCounts::of(&rows);
    assert_eq!(
        counts,
        StatusCounts {
            certified: 1,
            failed: 0,
            error: 1,
            skipped: 1,
            certified_by_kind: KindCounts {
                face: 1,
                face_lost: 0,
                whole_image: 0
            }
        }
    );
    assert_eq!(counts.certified_by_kind.describe(), "1 face");
    assert_eq!(counts.total(), 3);
    let names: Vec<String> = Status::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["certified", "failed", "error", "skipped"]);
}

#[test]
fn rfc3339_utc_formats_known_instants() {
    let at = |s: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
    assert_eq!(at(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(
        rfc3339_utc(UNIX_EPOCH + Duration::from_millis(1_500)),
        "1970-01-01T00:00:01Z"
    );
    assert_eq!(
        rfc3339_utc(UNIX_EPOCH - Duration::from_millis(500)),
        "1969-12-31T23:59:59Z"
    );
    assert_eq!(
        rfc3339_utc(UNIX_EPOCH - Duration::from_secs(86_400 * 365)),
        "1969-01-01T00:00:00Z"
    );
}

#[test]
fn run_record_is_written_atomically_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    let record = RunRecord {
        tool_version: "0.1.0".into(),
        config: RunConfig {
            batch: 1,
            detector: "models/face-detector/blazeface-full-range.onnx".into(),
            detector_sha256: "d".repeat(64),
            device: "cpu".into(),
            embedder: "models/dlib-face/embedder.toml".into(),
            embedder_sha256: "e".repeat(64),
            feature_embedder: Some(RecordedSpec {
                spec: "models/efficientnet-lite0/embedder.toml".into(),
                sha256: "f".repeat(64),
            }),
            input: "/data/in".into(),
            level: "medium".into(),
            level_settings: serde_json::json!({"name": "medium"}),
            model: "models/tiny-sd".into(),
            model_sha256: "m".repeat(64),
            output: "/data/out".into(),
            policy: "policies/demo.toml".into(),
            policy_sha256: "p".repeat(64),
            report: "/data/out.report.csv".into(),
            second_opinions: Vec::new(),
            seed: Some(0x00ff),
            seed_fingerprint: None,
            shard: None,
            threads: 2,
        },
        onnxruntime_version: "1.31.1".into(),
        onnxruntime_library: "/opt/ort/libonnxruntime.so.1.31.1".into(),
        execution_provider: "cpu".into(),
        counts: StatusCounts {
            certified: 3,
            failed: 1,
            error: 0,
            skipped: 2,
            certified_by_kind: KindCounts {
                face: 2,
                face_lost: 0,
                whole_image: 1,
            },
        },
        started: rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
        finished: rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_709_251_260)),
        report_path: "/data/out.report.csv".into(),
        report_rows: 6,
        report_chain_head: genesis(),
        reidentification_rate: None,
        reidentification_chance: None,
        adversary: None,
        merged_parts: None,
    };
    std::fs::write(&path, "stale").unwrap();
    record.write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let back: RunRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, record);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["counts"]["skipped"], 2);
    assert_eq!(json["started"], "2024-02-29T23:59:59Z");
    assert_eq!(json["config"]["level"], "medium");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["run.json"]);
}
