//! ONNX Runtime's optimized graphs kept between runs, so a large model is optimized once per
//! machine instead of at every start (about 10 s for an SD 1.5 UNet on a CPU).
//!
//! An entry is keyed by everything the optimized graph depends on: the sha256 of every file in
//! the graph's folder (the graph and its external weights), the ONNX Runtime version and the CPU
//! (ONNX Runtime's CPU layout passes write hardware-specific nodes). It is written into a
//! staging folder while the session is created from the original, then renamed into place, so a
//! reader sees a complete entry or none; the optimized graph's own sha256 is recorded and checked
//! when it is loaded. CPU sessions only: GPU providers compile nodes that cannot be saved.

use std::path::{Path, PathBuf};

use super::hashing::{sha256_bytes, sha256_file_remembered, Verify};

/// Bumped when what an entry holds changes.
const FORMAT: &str = "boomerang-optimized-graph-v1";
/// The optimized graph in an entry; its weights go to [`WEIGHTS_FILE`] next to it.
const GRAPH_FILE: &str = "model.onnx";
pub const WEIGHTS_FILE: &str = "model.onnx.data";
/// The sha256 of the optimized graph and of its weights, written last.
const DIGEST_FILE: &str = "SHA256SUMS";

/// Where a session's optimized graph comes from.
pub enum Lookup {
    /// A finished entry: load this graph, already optimized.
    Hit(PathBuf),
    /// No entry yet: ONNX Runtime writes the optimized graph to [`Pending::graph`] while the
    /// session is made, then [`Pending::publish`] puts it in place.
    Miss(Pending),
}

pub struct Pending {
    staging: tempfile::TempDir,
    entry: PathBuf,
    verify: Verify,
}

impl Pending {
    pub fn graph(&self) -> PathBuf {
        self.staging.path().join(GRAPH_FILE)
    }

    /// Records the optimized graph's digest and renames the staging folder into place. Failing
    /// (full disk, another process publishing the same entry first) only means no entry: the
    /// session made from the original graph is unaffected.
    pub fn publish(self) {
        let Some(sums) = digests(self.staging.path(), self.verify) else {
            return;
        };
        if std::fs::write(self.staging.path().join(DIGEST_FILE), sums).is_err() {
            return;
        }
        let staged = self.staging.keep();
        if std::fs::rename(&staged, &self.entry).is_ok() {
            return;
        }
        // An entry that failed its check (a damaged graph) is replaced; a good one another
        // process published meanwhile is kept.
        let replaced = finished_graph(&self.entry, self.verify).is_none()
            && std::fs::remove_dir_all(&self.entry).is_ok()
            && std::fs::rename(&staged, &self.entry).is_ok();
        if !replaced {
            let _ = std::fs::remove_dir_all(&staged);
        }
    }
}

/// The entry for the graph at `model` under `cache`, or `None` when no key can be made (a file
/// of the graph's folder unreadable, no CPU description) or the staging folder cannot be made.
pub fn lookup(cache: &Path, model: &Path, runtime_version: &str, verify: Verify) -> Option<Lookup> {
    let key = key(model, runtime_version, verify)?;
    let entry = cache.join(&key);
    if let Some(graph) = finished_graph(&entry, verify) {
        return Some(Lookup::Hit(graph));
    }
    std::fs::create_dir_all(cache).ok()?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{key}."))
        .tempdir_in(cache)
        .ok()?;
    Some(Lookup::Miss(Pending {
        staging,
        entry,
        verify,
    }))
}

/// An entry's graph when it is complete and its files' bytes are those recorded.
fn finished_graph(entry: &Path, verify: Verify) -> Option<PathBuf> {
    let recorded = std::fs::read_to_string(entry.join(DIGEST_FILE)).ok()?;
    (digests(entry, verify)? == recorded).then(|| entry.join(GRAPH_FILE))
}

/// `sha256  name` lines for the graph and, when ONNX Runtime wrote one, its weights file.
fn digests(entry: &Path, verify: Verify) -> Option<String> {
    let mut sums = String::new();
    for name in [GRAPH_FILE, WEIGHTS_FILE] {
        let path = entry.join(name);
        if name == GRAPH_FILE || path.exists() {
            let digest = sha256_file_remembered(&path, verify).ok()?;
            sums.push_str(&format!("{digest}  {name}\n"));
        }
    }
    Some(sums)
}

fn key(model: &Path, runtime_version: &str, verify: Verify) -> Option<String> {
    let folder = model.parent()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .ok()?;
    files.retain(|path| path.is_file());
    files.sort();
    let mut material = format!(
        "{FORMAT}\nonnxruntime {runtime_version}\ncpu {}\ngraph {}\n",
        cpu_identity()?,
        model.file_name()?.to_string_lossy()
    );
    for file in files {
        let digest = sha256_file_remembered(&file, verify).ok()?;
        material.push_str(&format!(
            "{} {digest}\n",
            file.file_name()?.to_string_lossy()
        ));
    }
    Some(hex::encode(sha256_bytes(material.as_bytes())))
}

/// The CPU's model name and feature flags: what ONNX Runtime's hardware-specific passes depend on.
fn cpu_identity() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |name: &str| {
        info.lines()
            .find(|line| line.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_string())
    };
    Some(format!(
        "{} | {}",
        field("model name").unwrap_or_default(),
        field("flags").or_else(|| field("Features"))?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_folder(dir: &Path) -> PathBuf {
        let folder = dir.join("unet");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("model.onnx"), b"graph").unwrap();
        std::fs::write(folder.join("model.onnx_data"), b"weights").unwrap();
        folder.join("model.onnx")
    }

    #[test]
    fn an_entry_is_found_only_while_every_input_and_its_own_bytes_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let model = graph_folder(dir.path());
        let Some(Lookup::Miss(pending)) = lookup(&cache, &model, "1.31.1", Verify::Full) else {
            panic!("a new graph must miss");
        };
        std::fs::write(pending.graph(), b"optimized").unwrap();
        std::fs::write(pending.graph().with_file_name(WEIGHTS_FILE), b"tensors").unwrap();
        pending.publish();
        let Some(Lookup::Hit(graph)) = lookup(&cache, &model, "1.31.1", Verify::Full) else {
            panic!("the published entry must be found");
        };
        assert_eq!(std::fs::read(&graph).unwrap(), b"optimized");
        // Damaged weights next to a good graph are not used either.
        std::fs::write(graph.with_file_name(WEIGHTS_FILE), b"w").unwrap();
        assert!(matches!(
            lookup(&cache, &model, "1.31.1", Verify::Full),
            Some(Lookup::Miss(_))
        ));
        std::fs::write(graph.with_file_name(WEIGHTS_FILE), b"tensors").unwrap();
        assert!(matches!(
            lookup(&cache, &model, "1.31.1", Verify::Full),
            Some(Lookup::Hit(_))
        ));
        // Another runtime version, or changed external weights, is another entry.
        assert!(matches!(
            lookup(&cache, &model, "1.32.0", Verify::Full),
            Some(Lookup::Miss(_))
        ));
        std::fs::write(model.with_file_name("model.onnx_data"), b"weightz").unwrap();
        assert!(matches!(
            lookup(&cache, &model, "1.31.1", Verify::Full),
            Some(Lookup::Miss(_))
        ));
        std::fs::write(model.with_file_name("model.onnx_data"), b"weights").unwrap();
        // A damaged optimized graph is not used.
        std::fs::write(&graph, b"optimizeD").unwrap();
        let Some(Lookup::Miss(pending)) = lookup(&cache, &model, "1.31.1", Verify::Full) else {
            panic!("a damaged entry must miss");
        };
        // ...and is replaced by the next publication.
        std::fs::write(pending.graph(), b"optimized").unwrap();
        pending.publish();
        assert!(matches!(
            lookup(&cache, &model, "1.31.1", Verify::Full),
            Some(Lookup::Hit(_))
        ));
    }
}
