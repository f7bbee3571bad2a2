//! Opening a model re-uses the sha256 of files unchanged since they were hashed (boomerang's
//! cache of verified hashes), and a changed file is still refused: edited to the same size with
//! its old mtime put back, or checked with `--verify full`.

mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

use common::{optimized_graphs, root};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn sample(model: &Path, cache: &Path, output: &Path, extra: &[&str]) -> Command {
    let library = boomerang::io::runtime::cached_library().unwrap();
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .env("BOOMERANG_CACHE_DIR", cache)
        .args(["sample", "--steps", "2", "--seed", "1", "--onnxruntime"])
        .arg(library)
        .arg("--model")
        .arg(model)
        .args(extra)
        .arg("--output")
        .arg(output)
        .arg(root().join("examples/astronaut.png"));
    command
}

fn records(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("verified-sha256")).map_or(0, |listing| listing.count())
}

#[test]
fn a_changed_model_file_is_refused_though_its_hash_was_remembered() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("tiny-sd");
    copy_tree(&root().join("models/tiny-sd"), &model);
    let cache = temp.path().join("cache");
    let files = std::fs::read_to_string(model.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .count();
    // Only the model's files are remembered here: no optimized graphs kept beside them.
    let sample = |model: &Path, cache: &Path, output: &Path, extra: &[&str]| {
        let mut command = sample(model, cache, output, extra);
        command.env("BOOMERANG_GRAPH_CACHE", "0");
        command
    };
    // Files changed in the last two seconds are hashed but not remembered.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    sample(&model, &cache, &temp.path().join("a"), &[])
        .assert()
        .success();
    assert_eq!(records(&cache), files);
    sample(&model, &cache, &temp.path().join("b"), &[])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(temp.path().join("a/astronaut_0.png")).unwrap(),
        std::fs::read(temp.path().join("b/astronaut_0.png")).unwrap()
    );

    // One byte of the UNet changed, same size, its old mtime put back.
    let unet = model.join("unet/model.onnx");
    let mtime = std::fs::metadata(&unet).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&unet).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&unet, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&unet)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    for verify in ["remembered", "full"] {
        let output = temp.path().join(verify);
        sample(&model, &cache, &output, &["--verify", verify])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "files differ from SHA256SUMS: unet/model.onnx changed",
            ));
        assert!(!output.exists());
    }
}

#[test]
fn optimized_graphs_are_kept_between_runs_and_give_the_same_bytes() {
    let temp = tempfile::tempdir().unwrap();
    let model = root().join("models/tiny-sd");
    let cache = temp.path().join("cache");
    // BOOMERANG_GRAPH_CACHE=0 keeps none.
    sample(&model, &cache, &temp.path().join("off"), &[])
        .env("BOOMERANG_GRAPH_CACHE", "0")
        .assert()
        .success();
    assert!(optimized_graphs(&cache).is_empty());
    sample(&model, &cache, &temp.path().join("first"), &[])
        .assert()
        .success();
    // One entry per graph: text encoder, VAE encoder and decoder, UNet.
    let entries = optimized_graphs(&cache);
    assert_eq!(entries.len(), 4, "{entries:?}");
    let written: Vec<_> = entries
        .iter()
        .map(|entry| std::fs::read(entry.join("model.onnx")).unwrap())
        .collect();
    sample(&model, &cache, &temp.path().join("second"), &[])
        .assert()
        .success();
    sample(
        &model,
        &cache,
        &temp.path().join("full"),
        &["--verify", "full"],
    )
    .assert()
    .success();
    let output = |run: &str| std::fs::read(temp.path().join(run).join("astronaut_0.png")).unwrap();
    assert_eq!(output("first"), output("second"));
    assert_eq!(output("first"), output("full"));
    assert_eq!(output("first"), output("off"));
    // The second run loaded the entries instead of writing new ones.
    assert_eq!(optimized_graphs(&cache), entries);
    for (entry, bytes) in entries.iter().zip(&written) {
        assert!(&std::fs::read(entry.join("model.onnx")).unwrap() == bytes);
    }

    // A damaged optimized graph is not loaded: the run optimizes the original again, gives the
    // same bytes and replaces the entry.
    let damaged = entries[0].join("model.onnx");
    std::fs::write(&damaged, b"not a graph").unwrap();
    sample(&model, &cache, &temp.path().join("after-damage"), &[])
        .assert()
        .success();
    assert_eq!(output("first"), output("after-damage"));
    let replaced = std::fs::read(&damaged).unwrap();
    assert!(replaced != b"not a graph" && replaced.len() > 1000);
}
