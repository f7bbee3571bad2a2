//! An installed boomerang works from any directory without the source tree: `boomerang setup`
//! installs what the shipped policies need into the data folder, from the bytes the `boomerang`
//! binary carries (src/bundle.rs, pinned by sha256), and the release script packs the binaries
//! with their man pages and completions.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Mutex;

use assert_cmd::Command;
use predicates::prelude::*;

use common::{faces, root, sha};

/// `cargo install --target-dir target/` and the release script rebuild target/debug/boomerang:
/// the tests that run that binary take turns.
static BINARIES: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    BINARIES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The folders `boomerang setup` installs from the binary (the `.onnx` of the two fetched
/// embedders are gitignored and made at setup), and the fetch script it runs.
const BUNDLED: &[&str] = &[
    "policies",
    "models/dlib-face",
    "models/face-detector",
    "models/tiny-sd",
    "models/efficientnet-lite0",
    "models/mobilefacenet",
    "tools/fetch_models.py",
    "tools/face_sources.py",
    "tools/venv_cache.py",
    "tools/requirements-fetch.txt",
];

/// (path, pin) of every entry of src/bundle.rs.
fn bundle_pins() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("src/bundle.rs")).unwrap();
    let entry = regex::Regex::new(r#""([^"]+)"\s*\n\s*"([0-9a-f]{64})""#).unwrap();
    entry
        .captures_iter(&text)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

/// The committed files (tracked or new, not ignored) of the bundled folders.
fn shipped_files() -> BTreeSet<String> {
    let output = Process::new("git")
        .current_dir(root())
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
        ])
        .args(BUNDLED)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|path| root().join(path).is_file())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bundle_pins_every_shipped_file_by_its_sha256() {
    let pins = bundle_pins();
    let listed: BTreeSet<String> = pins.iter().map(|(path, _)| path.clone()).collect();
    let shipped = shipped_files();
    let mut fix = Vec::new();
    for path in &shipped {
        let found = sha(&std::fs::read(root().join(path)).unwrap());
        if !pins.contains(&(path.clone(), found.clone())) {
            fix.push(format!("    \"{path}\"\n        \"{found}\","));
        }
    }
    let stale: Vec<&String> = listed.difference(&shipped).collect();
    assert!(
        fix.is_empty() && stale.is_empty(),
        "src/bundle.rs is out of date: remove {stale:?} and put these lines in FILES:\n{}",
        fix.join("\n")
    );
}

/// Whether `needle` occurs in the file at `path`.
fn contains(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|window| window == needle)
}

#[test]
fn only_the_boomerang_binary_carries_the_models() {
    let _turn = lock();
    // 64 bytes from the middle of the dlib weights: in no binary unless embedded.
    let weights = std::fs::read(root().join("models/dlib-face/dlib-face-resnet29.onnx")).unwrap();
    let needle = &weights[weights.len() / 2..weights.len() / 2 + 64];
    let boomerang = assert_cmd::cargo::cargo_bin("boomerang");
    assert!(contains(&boomerang, needle), "boomerang lacks the bundle");
    let anonymize = assert_cmd::cargo::cargo_bin("anonymize");
    assert!(
        !contains(&anonymize, needle),
        "anonymize carries the bundle"
    );
    let this_test = std::env::current_exe().unwrap();
    assert!(
        !contains(&this_test, needle),
        "test binaries carry the bundle"
    );
}

/// The environment of a user with nothing installed but what `data` holds: temporary HOME,
/// XDG_DATA_HOME and data folder, the real cache (ONNX Runtime, the fetch script's venv and its
/// downloads), no cargo variables and no search-path overrides.
fn isolated(command: &mut Process, data: &Path, home: &Path) {
    let cache = std::env::var_os("BOOMERANG_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("boomerang")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/boomerang")
        });
    command
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("BOOMERANG_DATA_DIR", data)
        .env("BOOMERANG_CACHE_DIR", cache)
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("BOOMERANG_MODELS")
        .env_remove("BOOMERANG_POLICIES")
        .env_remove("BOOMERANG_NO_SOURCE_TREE");
}

fn run(mut command: Process) -> (i32, String, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn setup_is_idempotent_reports_changes_and_says_what_is_missing() {
    let _turn = lock();
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let home = temp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let setup = |args: &[&str], path: Option<&str>| {
        let mut command = Process::new(assert_cmd::cargo::cargo_bin("boomerang"));
        command.arg("setup").args(args).current_dir(temp.path());
        isolated(&mut command, &data, &home);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        run(command)
    };

    // No python3: everything else is installed, and the two fetched embedders are named.
    let (code, out, err) = setup(&[], Some("/nonexistent"));
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains(&format!("data folder: {}", data.display())),
        "{out}"
    );
    assert!(out.contains("installed  models/dlib-face: "), "{out}");
    assert!(
        out.contains("not installed  models/efficientnet-lite0, models/mobilefacenet: python3 (3.11 or newer, with venv and pip) is not on PATH"),
        "{out}"
    );
    assert!(out.contains("apt-get install python3"), "{out}");
    for installed in [
        "policies/demo.toml",
        "policies/README.md",
        "models/dlib-face/dlib-face-resnet29.onnx",
        "models/face-detector/blazeface-full-range.onnx",
        "models/tiny-sd/unet/model.onnx",
    ] {
        let shipped = std::fs::read(root().join(installed)).unwrap();
        assert_eq!(
            std::fs::read(data.join(installed)).unwrap(),
            shipped,
            "{installed}"
        );
    }
    // A folder is published whole or not at all.
    assert!(!data.join("models/mobilefacenet").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .filter(|name| name != boomerang::io::install::LOCK_FILE)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // With python3: the rest is built (from the cached venv and archives), nothing else redone.
    let (code, out, err) = setup(&[], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("already installed  models/dlib-face: "),
        "{out}"
    );
    assert!(
        out.contains("installed  models/mobilefacenet: ")
            && out.contains("its model built by tools/fetch_models.py"),
        "{out}"
    );
    let spec = std::fs::read_to_string(data.join("models/mobilefacenet/embedder.toml")).unwrap();
    let pin = spec
        .lines()
        .find_map(|line| line.strip_prefix("sha256 = \""))
        .unwrap()
        .trim_end_matches('"');
    let built = std::fs::read(data.join("models/mobilefacenet/mobilefacenet.onnx")).unwrap();
    assert_eq!(sha(&built), pin);

    // Second run: nothing to do.
    let (code, out, _) = setup(&[], None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("already installed  ").count(), 6, "{out}");

    // A changed file is reported and kept; --force replaces it and keeps the user's own files.
    let demo = data.join("policies/demo.toml");
    std::fs::write(&demo, "edited").unwrap();
    std::fs::write(data.join("policies/mine.toml"), "own").unwrap();
    let (code, out, _) = setup(&[], None);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(&format!(
            "changed  {}: differs from what boomerang {} ships; kept (run `boomerang setup --force` to replace it)",
            demo.display(),
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&demo).unwrap(), "edited");
    let (code, out, _) = setup(&["--force"], None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("installed  policies: ") && out.contains("replaced demo.toml"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&demo).unwrap(),
        std::fs::read(root().join("policies/demo.toml")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(data.join("policies/mine.toml")).unwrap(),
        "own"
    );
}

#[test]
fn no_source_tree_hides_the_checkout_and_bare_model_names_are_looked_up() {
    let _turn = lock();
    let temp = tempfile::tempdir().unwrap();
    let boomerang = || {
        let mut command = Command::cargo_bin("boomerang").unwrap();
        command
            .current_dir(temp.path())
            .env("BOOMERANG_DATA_DIR", temp.path().join("empty-data"))
            .env_remove("BOOMERANG_POLICIES")
            .env_remove("BOOMERANG_MODELS");
        command
    };
    std::fs::create_dir_all(temp.path().join("in")).unwrap();
    let checkout = root().join("policies").display().to_string();
    boomerang()
        .env("BOOMERANG_NO_SOURCE_TREE", "1")
        .args(["anonymize", "--policy", "demo", "in", "out"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no policy named `demo`: looked at",
        ))
        .stderr(predicate::str::contains(checkout).not());
    let image = faces().join("obama.jpg");
    boomerang()
        .args(["sample", "--model", "no-such-model", "-o", "out"])
        .arg(&image)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "no model folder `no-such-model`: looked at no-such-model, models/no-such-model, {}, {}",
            temp.path().join("empty-data/models/no-such-model").display(),
            root().join("models/no-such-model").display()
        )));
}

/// The files a build of boomerang reads: the manifest, the code and what src/bundle.rs embeds.
fn copy_build_inputs(to: &Path) {
    let output = Process::new("git")
        .current_dir(root())
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
        ])
        .args(["Cargo.toml", "Cargo.lock", "src", "benches"])
        .args(BUNDLED)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    for path in String::from_utf8(output.stdout).unwrap().lines() {
        let from = root().join(path);
        if from.is_file() {
            let dest = to.join(path);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&from, &dest).unwrap();
            let modified = std::fs::metadata(&from).unwrap().modified().unwrap();
            let file = std::fs::File::options().write(true).open(&dest).unwrap();
            file.set_modified(modified).unwrap();
        }
    }
}

/// Hard links to the binaries of a build folder, renamed back over them when dropped.
struct KeepBinaries(Vec<(PathBuf, PathBuf)>);

impl KeepBinaries {
    fn new(folder: &Path) -> KeepBinaries {
        let mut kept = Vec::new();
        for name in ["boomerang", "anonymize"] {
            let binary = folder.join(name);
            let copy = folder.join(format!("{name}.kept-by-installed-test"));
            let _ = std::fs::remove_file(&copy);
            if std::fs::hard_link(&binary, &copy).is_ok() {
                kept.push((copy, binary));
            }
        }
        KeepBinaries(kept)
    }
}

impl Drop for KeepBinaries {
    fn drop(&mut self) {
        for (copy, binary) in &self.0 {
            let _ = std::fs::rename(copy, binary);
        }
    }
}

#[test]
fn an_installed_binary_works_from_any_directory_without_the_source_tree() {
    let _turn = lock();
    let temp = tempfile::tempdir().unwrap();
    let prefix = temp.path().join("prefix");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    // A fixed place with the files' own mtimes, so a second run finds cargo's build of it fresh
    // (its fingerprint records CARGO_MANIFEST_DIR and the sources' mtimes).
    let copy = target.join("installed-test/checkout");
    let _ = std::fs::remove_dir_all(&copy);
    copy_build_inputs(&copy);
    // cargo install replaces target/debug/{boomerang,anonymize} by its build of the copy, and
    // a later cargo test would not put the checkout's back (its build is fresh): keep them.
    let _kept = KeepBinaries::new(&target.join("debug"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (code, out, err) = run({
        let mut command = Process::new(cargo);
        command
            .args(["install", "--debug", "--locked", "--offline", "--quiet"])
            // Another unit hash than the checkout's build: the copy's lib and binaries would
            // otherwise overwrite the checkout's (same package, same relative paths), and cargo
            // would then take them as fresh builds of the checkout.
            .args([
                "--config",
                "profile.dev.package.boomerang.codegen-units=255",
                "--path",
            ])
            .arg(&copy)
            .arg("--root")
            .arg(&prefix)
            .arg("--target-dir")
            .arg(&target);
        command
    });
    assert_eq!(code, 0, "cargo install: {out}{err}");
    std::fs::remove_dir_all(&copy).unwrap();

    let data = temp.path().join("data");
    let home = temp.path().join("home");
    let work = temp.path().join("work");
    std::fs::create_dir_all(work.join("in")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    for face in ["obama.jpg", "biden.jpg"] {
        std::fs::copy(faces().join(face), work.join("in").join(face)).unwrap();
    }
    let installed = |binary: &str, args: &[&str]| {
        let mut command = Process::new(prefix.join("bin").join(binary));
        command.args(args).current_dir(&work);
        isolated(&mut command, &data, &home);
        run(command)
    };

    let (code, out, err) = installed("boomerang", &["setup"]);
    assert_eq!(code, 0, "setup: {out}{err}");
    assert!(
        out.contains(&format!(
            "installed  policies: {}",
            data.join("policies").display()
        )),
        "{out}"
    );

    let (code, out, err) = installed(
        "anonymize",
        &[
            "--policy", "demo", "--level", "medium", "--seed", "5", "in", "out",
        ],
    );
    // Random weights: some images may fail certification (3), but the run must complete.
    assert!(code == 0 || code == 3, "anonymize: {out}{err}");
    let run_json = std::fs::read_to_string(work.join("out.run.json")).unwrap();
    assert!(
        run_json.contains(&data.join("policies/demo.toml").display().to_string()),
        "{run_json}"
    );

    let (code, out, err) = installed(
        "boomerang",
        &[
            "audit",
            "out.report.csv",
            "--inputs",
            "in",
            "--outputs",
            "out",
            "--policy",
            "demo",
            "--recompute",
            "2",
        ],
    );
    assert_eq!(code, 0, "audit: {out}{err}");
    assert!(out.contains("verdict: clean"), "{out}");

    // --model by name, from the data folder.
    let (code, out, err) = installed(
        "boomerang",
        &[
            "sample",
            "--model",
            "tiny-sd",
            "--steps",
            "2",
            "--seed",
            "1",
            "-o",
            "samples",
            "in/obama.jpg",
        ],
    );
    assert_eq!(code, 0, "sample: {out}{err}");
    assert!(work.join("samples/obama_0.png").is_file(), "{out}");

    let (code, out, err) = installed("boomerang", &["doctor"]);
    assert_eq!(code, 0, "doctor: {out}{err}");
    let expected = [
        format!(
            "ok       data folder: {} (set up by boomerang {})",
            data.display(),
            env!("CARGO_PKG_VERSION")
        ),
        "source tree: not searched".to_string(),
        format!(
            "ok       face detector: {}",
            data.join("models/face-detector").display()
        ),
        format!(
            "ok       face embedder dlib-face: {}",
            data.join("models/dlib-face").display()
        ),
        format!(
            "ok       policy demo: {}",
            data.join("policies/demo.toml").display()
        ),
        format!(
            "ok         its model: {}",
            data.join("models/tiny-sd").display()
        ),
        format!(
            "ok         its embedder mobilefacenet: {}",
            data.join("models/mobilefacenet").display()
        ),
    ];
    for line in expected {
        assert!(out.contains(&line), "doctor lacks `{line}`:\n{out}");
    }
    // A path below the checkout; the root alone may prefix another folder (CI's cache beside a
    // clone: /tmp/clone-cache next to /tmp/clone).
    let below_root = format!("{}/", root().display());
    assert!(!out.contains(&below_root), "{out}");
}

#[test]
fn the_release_script_packs_binaries_man_pages_and_completions() {
    let _turn = lock();
    let temp = tempfile::tempdir().unwrap();
    let output = Process::new(root().join("tools/release.sh"))
        .current_dir(root())
        .args(["--debug", "--out"])
        .arg(temp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let name = format!("boomerang-{}-x86_64-linux", env!("CARGO_PKG_VERSION"));
    let tarball = temp.path().join(format!("{name}.tar.gz"));
    let digest = sha(&std::fs::read(&tarball).unwrap());
    assert!(
        stdout.contains(&format!("{digest}  {}", tarball.display())),
        "{stdout}"
    );

    let listing = Process::new("tar")
        .arg("-tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for file in [
        "bin/boomerang",
        "bin/anonymize",
        "share/man/man1/boomerang.1",
        "share/man/man1/boomerang-setup.1",
        "share/bash-completion/completions/boomerang",
        "share/zsh/site-functions/_boomerang",
        "share/fish/vendor_completions.d/boomerang.fish",
        "README.md",
        "SECURITY.md",
        "share/doc/boomerang/licenses/dlib-face/LICENSE-dlib-model-CC0.txt",
        "share/doc/boomerang/licenses/face-detector/LICENSE-Apache-2.0.txt",
    ] {
        assert!(
            listing.contains(&format!("{name}/{file}\n")),
            "no {file} in:\n{listing}"
        );
    }
    let unpacked = temp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = Process::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let share = unpacked.join(&name).join("share");
    let page = std::fs::read_to_string(share.join("man/man1/boomerang-setup.1")).unwrap();
    assert!(page.contains(".TH boomerang-setup"), "{page}");
    let bash =
        std::fs::read_to_string(share.join("bash-completion/completions/boomerang")).unwrap();
    assert!(
        bash.contains("_boomerang()") && bash.contains("setup"),
        "{bash}"
    );
    let fish =
        std::fs::read_to_string(share.join("fish/vendor_completions.d/boomerang.fish")).unwrap();
    assert!(fish.contains("complete -c boomerang"), "{fish}");
    let zsh = std::fs::read_to_string(share.join("zsh/site-functions/_boomerang")).unwrap();
    assert!(zsh.starts_with("#compdef boomerang"), "{zsh}");
}
