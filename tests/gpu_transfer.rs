//! tools/gpu/pack.sh and unpack.sh: what travels to the GPU machine (which reaches no registry)
//! arrives whole or not at all. Packed here from the pinned GPU build `tools/test` fetched, a
//! built boomerang and the hash-pinned wheels (PyPI); unpacked into a fresh cache and site as on
//! that machine; a damaged chunk is refused by name before anything is installed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::root;

fn script(name: &str) -> Command {
    Command::new(root().join("tools/gpu").join(name))
}

fn unpack(part: &str, transfer: &Path, site: &Path, cache: &Path) -> Output {
    script("unpack.sh")
        .args([part])
        .arg(transfer)
        .arg(site)
        .env("BOOMERANG_CACHE_DIR", cache)
        .output()
        .unwrap()
}

#[test]
fn what_travels_to_the_gpu_machine_arrives_whole_or_not_at_all() {
    let temp = tempfile::tempdir().unwrap();
    let transfer = temp.path().join("transfer");
    let packed = script("pack.sh")
        .arg(&transfer)
        .env("BOOMERANG", env!("CARGO_BIN_EXE_boomerang"))
        .env("XZ_LEVEL", "0")
        .env("CHUNK_MIB", "64")
        .output()
        .unwrap();
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let listed = std::fs::read_to_string(transfer.join("chunks.sha256")).unwrap();
    let chunks: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.split("  ").nth(1))
        .filter(|name| name.starts_with("runtime.tar.xz.part-"))
        .collect();
    assert!(chunks.len() >= 2, "{listed}");
    assert!(listed.contains("  bench.tar.xz\n"), "{listed}");

    // A damaged chunk: refused by name, nothing installed.
    let damaged = temp.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for entry in std::fs::read_dir(&transfer).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let chunk = damaged.join(chunks[1]);
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&chunk, bytes).unwrap();
    let (site, cache) = (temp.path().join("site"), temp.path().join("cache"));
    assert!(unpack("bench", &damaged, &site, &cache).status.success());
    let refused = unpack("runtime", &damaged, &site, &cache);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!("{}: FAILED", chunks[1])),
        "{stderr}"
    );
    assert!(stderr.contains("carry it again"), "{stderr}");
    assert!(!cache.join("onnxruntime-gpu").exists());

    // Whole: the binary runs, the wheels are in the site, and the libraries pass the binary's pins.
    let (site, cache) = (temp.path().join("site2"), temp.path().join("cache2"));
    let bench = unpack("bench", &transfer, &site, &cache);
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    let version = Command::new(transfer.join("boomerang"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("boomerang "));
    assert!(site.join("diffusers/__init__.py").is_file());
    let runtime = unpack("runtime", &transfer, &site, &cache);
    let stdout = String::from_utf8_lossy(&runtime.stdout);
    assert!(
        runtime.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&runtime.stderr)
    );
    let installed = cache.join("onnxruntime-gpu/1.31.1");
    for file in [
        "libonnxruntime.so.1.31.1",
        "libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_tensorrt.so",
    ] {
        assert!(installed.join(file).is_file(), "{file}");
    }
    assert!(
        stdout.contains(&installed.display().to_string()),
        "fetch-onnxruntime --gpu did not check the installed build: {stdout}"
    );
}
