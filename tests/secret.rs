//! Secret files (`boomerang secret new`, `--seed-file`): created private and never replaced,
//! refused when others can read them, the same outputs as `--seed N` with the file's seed, and
//! nothing a file-seeded run writes holds the seed (run.json and manifests get its fingerprint);
//! resume and audit check the fingerprint.

mod common;

use common::{anonymize, demo_policy, faces, report_path, root, run_json_path, tree};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use boomerang::diffusion::noise::seed_fingerprint;
use predicates::prelude::*;

fn boomerang() -> Command {
    Command::cargo_bin("boomerang").unwrap()
}

/// `boomerang secret new PATH`, which must succeed; returns the seed written.
fn new_secret(path: &Path) -> u64 {
    let output = boomerang()
        .args(["secret", "new"])
        .arg(path)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let seed = boomerang::io::secret::read(path).unwrap();
    let stdout = String::from_utf8(output).unwrap();
    assert!(stdout.contains(&seed_fingerprint(seed)), "{stdout}");
    assert_no_seed("stdout", stdout.as_bytes(), seed);
    seed
}

/// The ways a seed could be written: decimal, hex (16 digits and shortest), hex of its bytes.
fn seed_forms(seed: u64) -> Vec<String> {
    vec![
        seed.to_string(),
        format!("{seed:016x}"),
        format!("{seed:x}"),
        hex_bytes(&seed.to_le_bytes()),
        hex_bytes(&seed.to_be_bytes()),
    ]
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_no_seed(what: &str, bytes: &[u8], seed: u64) {
    let text = String::from_utf8_lossy(bytes).to_lowercase();
    for form in seed_forms(seed) {
        assert!(!text.contains(&form), "{what} holds the seed as {form}");
    }
}

/// Two faces, in class folders.
fn faces_dataset(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    std::fs::create_dir_all(input.join("a")).unwrap();
    std::fs::create_dir_all(input.join("b")).unwrap();
    std::fs::copy(faces().join("obama.jpg"), input.join("a/1.jpg")).unwrap();
    std::fs::copy(faces().join("biden.jpg"), input.join("b/1.jpg")).unwrap();
    input
}

#[test]
fn secret_new_creates_a_0600_file_and_never_replaces_one() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("run.secret");
    let seed = new_secret(&path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, format!("boomerang-secret v1\n{seed:016x}\n"));

    boomerang()
        .args(["secret", "new"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("run.secret").and(predicate::str::contains("exists")));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "replaced");

    // Two new files get different seeds.
    let other = new_secret(&temp.path().join("other.secret"));
    assert_ne!(seed, other);
}

#[test]
fn a_secret_file_others_can_read_or_a_malformed_one_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let input = faces_dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);
    let path = temp.path().join("open.secret");
    new_secret(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = temp.path().join("out");
    anonymize(
        &policy,
        &input,
        &output,
        &["--seed-file", path.to_str().unwrap()],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains("chmod 600").and(predicate::str::contains("open.secret")));
    assert!(!output.exists(), "a refused run wrote OUT");

    let bad = temp.path().join("bad.secret");
    std::fs::write(&bad, "boomerang-secret v1\n42\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    anonymize(
        &policy,
        &input,
        &output,
        &["--seed-file", bad.to_str().unwrap()],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains("not a boomerang secret file"));
}

#[test]
fn seed_and_seed_file_together_are_a_usage_error() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("run.secret");
    new_secret(&path);
    let input = faces_dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);
    let path_arg = path.to_str().unwrap();
    anonymize(
        &policy,
        &input,
        &temp.path().join("out"),
        &["--seed", "7", "--seed-file", path_arg],
    )
    .assert()
    .code(2)
    .stderr(predicate::str::contains("--seed-file"));
    Command::cargo_bin("anonymize")
        .unwrap()
        .args(["--seed", "7", "--seed-file"])
        .arg(&path)
        .arg(&input)
        .arg(temp.path().join("out"))
        .assert()
        .code(2);
    for command in [
        &["augment", "-n", "1"][..],
        &["enhance", "--scale", "2"][..],
    ] {
        boomerang()
            .args(command)
            .arg("--model")
            .arg(root().join("models/tiny-sd"))
            .args(["--seed", "7", "--seed-file"])
            .arg(&path)
            .arg(&input)
            .arg(temp.path().join("out"))
            .assert()
            .code(2);
    }
    boomerang()
        .args(["sample", "--model"])
        .arg(root().join("models/tiny-sd"))
        .args(["--seed", "7", "--seed-file"])
        .arg(&path)
        .arg("-o")
        .arg(temp.path().join("samples"))
        .arg(faces().join("obama.jpg"))
        .assert()
        .code(2);
}

#[test]
fn anonymize_with_a_seed_file_matches_seed_n_and_writes_only_the_fingerprint() {
    let temp = tempfile::tempdir().unwrap();
    let input = faces_dataset(temp.path());
    let policy = demo_policy(temp.path(), &[]);
    let secret = temp.path().join("run.secret");
    let seed = new_secret(&secret);
    let fingerprint = seed_fingerprint(seed);

    let by_seed = temp.path().join("by-seed");
    anonymize(&policy, &input, &by_seed, &["--seed", &seed.to_string()])
        .assert()
        .code(predicate::in_iter([0, 3]));
    let by_file = temp.path().join("by-file");
    let run = anonymize(
        &policy,
        &input,
        &by_file,
        &["--seed-file", secret.to_str().unwrap()],
    )
    .assert()
    .code(predicate::in_iter([0, 3]));
    assert_no_seed("stdout", &run.get_output().stdout, seed);
    assert_no_seed("stderr", &run.get_output().stderr, seed);

    let outputs = tree(&by_file);
    assert!(!outputs.is_empty());
    assert_eq!(tree(&by_seed), outputs, "--seed-file and --seed N differ");
    for (path, bytes) in &outputs {
        assert_no_seed(&path.display().to_string(), bytes, seed);
    }
    // The report's rows (per-image seeds included) are the same as with --seed N.
    let rows = |output: &Path| {
        boomerang::records::report::verify(&report_path(output))
            .unwrap()
            .into_iter()
            .map(|r| (r.input_path, r.output_path, r.seed, r.output_sha256))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&by_seed), rows(&by_file));
    let report = std::fs::read(report_path(&by_file)).unwrap();
    assert_no_seed("the report", &report, seed);

    let text = std::fs::read_to_string(run_json_path(&by_file)).unwrap();
    assert_no_seed("run.json", text.as_bytes(), seed);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(json["config"].get("seed").is_none(), "{text}");
    assert_eq!(json["config"]["seed_fingerprint"], fingerprint.as_str());

    // A --seed run records the seed, and its fingerprint too.
    let text = std::fs::read_to_string(run_json_path(&by_seed)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["config"]["seed"], seed);
    assert_eq!(json["config"]["seed_fingerprint"], fingerprint.as_str());

    // Resume: another secret file is refused, no file is refused with a pointer to --seed-file,
    // the run's own file finishes (nothing left to do) and still writes no seed.
    let other = temp.path().join("other.secret");
    new_secret(&other);
    anonymize(
        &policy,
        &input,
        &by_file,
        &["--resume", "--seed-file", other.to_str().unwrap()],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains("fingerprint"));
    anonymize(&policy, &input, &by_file, &["--resume"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--seed-file"));
    anonymize(
        &policy,
        &input,
        &by_file,
        &["--resume", "--seed-file", secret.to_str().unwrap()],
    )
    .assert()
    .code(predicate::in_iter([0, 3]));
    assert_eq!(tree(&by_file), outputs);
    let text = std::fs::read_to_string(run_json_path(&by_file)).unwrap();
    assert_no_seed("run.json after resume", text.as_bytes(), seed);
    assert!(text.contains(&fingerprint));

    // Audit: without the file the seed checks are "not checked", with it they are made, with
    // another run's file that is a finding.
    let audit = |extra: &[&Path]| {
        let mut command = boomerang();
        command.arg("audit").arg(report_path(&by_file));
        if let Some(file) = extra.first() {
            command.arg("--seed-file").arg(file);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    let (_, without) = audit(&[]);
    assert!(
        without
            .lines()
            .any(|l| l.starts_with("not checked:") && l.contains("--seed-file")),
        "{without}"
    );
    let (code, with) = audit(&[&secret]);
    assert!(!with.contains("--seed-file"), "{with}");
    assert!(!with.contains("finding:"), "{with}");
    assert_eq!(code, Some(0), "{with}");
    let (code, wrong) = audit(&[&other]);
    assert_eq!(code, Some(3), "{wrong}");
    assert!(
        wrong
            .lines()
            .any(|l| l.starts_with("finding:") && l.contains("fingerprint")),
        "{wrong}"
    );
}

#[test]
fn augment_with_a_seed_file_matches_seed_n_and_its_manifest_holds_no_seed() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    std::fs::create_dir_all(input.join("cat")).unwrap();
    image::open(root().join("examples/astronaut.png"))
        .unwrap()
        .resize_exact(64, 48, image::imageops::FilterType::Triangle)
        .save(input.join("cat/one.png"))
        .unwrap();
    let secret = temp.path().join("run.secret");
    let seed = new_secret(&secret);
    let augment = |output: &Path, seed_args: &[&str]| {
        let mut command = boomerang();
        command
            .args(["augment", "--model"])
            .arg(root().join("models/tiny-sd"))
            .args(["--steps", "3", "-n", "2"])
            .args(seed_args)
            .arg(&input)
            .arg(output);
        command
    };
    let by_seed = temp.path().join("by-seed");
    augment(&by_seed, &["--seed", &seed.to_string()])
        .assert()
        .success();
    let by_file = temp.path().join("by-file");
    let secret_arg = secret.to_str().unwrap();
    let run = augment(&by_file, &["--seed-file", secret_arg])
        .assert()
        .success();
    assert_no_seed("stdout", &run.get_output().stdout, seed);

    let images = |output: &Path| {
        let mut files = tree(output);
        files.remove(Path::new("augment.csv"));
        files
    };
    assert_eq!(images(&by_seed), images(&by_file));
    assert_eq!(images(&by_file).len(), 3);
    for (path, bytes) in tree(&by_file) {
        assert_no_seed(&path.display().to_string(), &bytes, seed);
    }
    let mut reader = csv::Reader::from_path(by_file.join("augment.csv")).unwrap();
    let column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "run_seed")
        .unwrap();
    let expected = format!("fingerprint:{}", seed_fingerprint(seed));
    for record in reader.records() {
        assert_eq!(&record.unwrap()[column], expected);
    }

    // Resume: the run's own file is kept, another file or none refused.
    augment(&by_file, &["--resume", "--seed-file", secret_arg])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 already done"));
    let other = temp.path().join("other.secret");
    new_secret(&other);
    augment(
        &by_file,
        &["--resume", "--seed-file", other.to_str().unwrap()],
    )
    .assert()
    .code(1)
    .stderr(predicate::str::contains("fingerprint"));
    augment(&by_file, &["--resume"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--seed-file"));
}

#[test]
fn enhance_and_sample_with_a_seed_file_match_seed_n_and_print_no_seed() {
    let temp = tempfile::tempdir().unwrap();
    let image = temp.path().join("small.png");
    image::open(root().join("examples/astronaut.png"))
        .unwrap()
        .resize_exact(32, 32, image::imageops::FilterType::Triangle)
        .save(&image)
        .unwrap();
    let secret = temp.path().join("run.secret");
    let seed = new_secret(&secret);
    let secret_arg = secret.to_str().unwrap();
    let seed_arg = seed.to_string();
    let run = |command: &[&str], output: &Path, seed_args: &[&str]| {
        let mut cmd = boomerang();
        cmd.args(command)
            .arg("--model")
            .arg(root().join("models/tiny-sd"))
            .args(["--steps", "3"])
            .args(seed_args);
        if command[0] == "sample" {
            cmd.arg("-o").arg(output).arg(&image);
        } else {
            cmd.arg(&image).arg(output);
        }
        let out = cmd.assert().success().get_output().clone();
        assert_no_seed("stderr", &out.stderr, seed);
        String::from_utf8(out.stdout).unwrap()
    };
    let images = |output: &Path| {
        let mut files = tree(output);
        files.remove(Path::new("enhance.csv"));
        files
    };

    let (by_seed, by_file) = (temp.path().join("e-seed"), temp.path().join("e-file"));
    run(
        &["enhance", "--scale", "2"],
        &by_seed,
        &["--seed", &seed_arg],
    );
    let stdout = run(
        &["enhance", "--scale", "2"],
        &by_file,
        &["--seed-file", secret_arg],
    );
    assert_no_seed("enhance's stdout", stdout.as_bytes(), seed);
    assert!(stdout.contains(&seed_fingerprint(seed)), "{stdout}");
    assert_eq!(images(&by_seed), images(&by_file));
    assert_eq!(images(&by_file).len(), 1);
    let manifest = std::fs::read(by_file.join("enhance.csv")).unwrap();
    assert_no_seed("enhance.csv", &manifest, seed);
    let manifest = String::from_utf8(manifest).unwrap();
    assert!(
        manifest.contains(&format!("fingerprint:{}", seed_fingerprint(seed))),
        "{manifest}"
    );

    let (by_seed, by_file) = (temp.path().join("s-seed"), temp.path().join("s-file"));
    run(&["sample", "-n", "2"], &by_seed, &["--seed", &seed_arg]);
    let stdout = run(
        &["sample", "-n", "2"],
        &by_file,
        &["--seed-file", secret_arg],
    );
    assert_no_seed("sample's stdout", stdout.as_bytes(), seed);
    assert_eq!(tree(&by_seed), tree(&by_file));
    assert_eq!(tree(&by_file).len(), 2);
}
