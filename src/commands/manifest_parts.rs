//! Sharded `augment` and `enhance` runs (`--shard K/N`): each part writes its own manifest inside
//! the shared OUT (`augment.part-0003-of-0016.csv`) and a part record beside it
//! (`augment.part-0003-of-0016.json`: which part of which walk, with which arguments, model and
//! seed fingerprint, and, once the part has finished, how many rows it wrote). `boomerang report
//! merge` of the N part manifests checks the records and writes the one manifest an unsharded run
//! would have written, byte for byte, then removes the parts.
//!
//! The manifests live inside OUT (they describe a published dataset, unlike `anonymize`'s private
//! report), so the merge leaves OUT exactly as an unsharded run leaves it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::dataset_run::{DatasetOptions, Refused, RunSeedCell};
use crate::io::dataset::{self, Entry};
use crate::io::secret::SeedSource;
use crate::io::shard::Shard;

/// What a part record's `format` says: a file with another one is not a part record.
const FORMAT: &str = "boomerang manifest part v1";

/// Which part of which walk a sharded dataset run processes.
#[derive(Debug, Clone)]
pub struct PartPlan {
    pub shard: Shard,
    walk_entries: u64,
    walk_sha256: String,
}

impl PartPlan {
    /// The part `options` asks for (`--shard`, reading the environment for `auto`), or `None`
    /// for an unsharded run. A part must be given the run's secret: a random seed would differ
    /// in every part.
    pub fn resolve(options: &DatasetOptions, seed: &SeedSource) -> anyhow::Result<Option<Shard>> {
        let Some(request) = options.shard else {
            return Ok(None);
        };
        let shard =
            super::shard::resolve(request, options.shards, &|name| std::env::var(name).ok())?;
        if matches!(seed, SeedSource::Random) {
            return Err(Refused(
                "--shard: every part of a sharded run must use the same run seed: pass --seed-file FILE (made once by `boomerang secret new FILE`) to every part".into(),
            )
            .into());
        }
        Ok(Some(shard))
    }

    /// The plan of `shard` over the whole `walked` tree.
    pub fn of(shard: Shard, walked: &[Entry]) -> PartPlan {
        PartPlan {
            shard,
            walk_entries: walked.len() as u64,
            walk_sha256: dataset::walk_sha256(walked),
        }
    }

    /// Keeps this part's block of `planned` (one item per walk entry, in walk order); returns
    /// the name of this part's manifest for a run whose manifest is `manifest`.
    pub fn take_block<T>(&self, planned: &mut Vec<T>, manifest: &str) -> String {
        let range = self.range();
        planned.truncate(range.end);
        planned.drain(..range.start);
        self.manifest_name(manifest)
    }

    /// This part's block of the walk.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.shard.range(self.walk_entries as usize)
    }

    /// `augment.csv` → `augment.part-0003-of-0016.csv`.
    pub fn manifest_name(&self, manifest: &str) -> String {
        self.shard
            .part_report_path(Path::new(manifest))
            .to_string_lossy()
            .into_owned()
    }

    /// Refuses to start this part (before anything is written) when OUT holds the manifest of
    /// an unsharded run, parts of a run split another way, or — unless resuming — this part's
    /// manifest or any of its outputs.
    pub fn refuse_conflicts<'a>(
        &self,
        output: &Path,
        manifest: &str,
        resume: bool,
        outputs: impl IntoIterator<Item = &'a Path>,
    ) -> Result<(), Refused> {
        let whole = output.join(manifest);
        if whole.exists() {
            return Err(Refused(format!(
                "{} holds {}, the manifest of an unsharded run: a part of a sharded run needs an output folder of its own (or only the other parts of its run)",
                output.display(),
                whole.display()
            )));
        }
        let ours = output.join(self.manifest_name(manifest));
        let stem = manifest.strip_suffix(".csv").unwrap_or(manifest);
        let our_count = self.shard.tag();
        let our_count = our_count.rsplit_once("-of-").map_or("", |(_, n)| n);
        if let Ok(listing) = std::fs::read_dir(output) {
            for entry in listing.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(tag) = name
                    .strip_prefix(&format!("{stem}."))
                    .and_then(|rest| rest.strip_suffix(".csv"))
                    .filter(|tag| tag.starts_with("part-"))
                else {
                    continue;
                };
                if tag.rsplit_once("-of-").map(|(_, n)| n) != Some(our_count) {
                    return Err(Refused(format!(
                        "{} holds {name}, a part of a run split into another number of parts than {}: every part of a run needs the same N (--shard K/N)",
                        output.display(),
                        self.shard.count()
                    )));
                }
            }
        }
        if resume {
            return Ok(());
        }
        if ours.exists() {
            return Err(Refused(format!(
                "{} already exists: part {} of this run has started before; continue it with --resume, or use an empty output folder",
                ours.display(),
                self.shard
            )));
        }
        for relative in outputs {
            if output.join(relative).exists() {
                return Err(Refused(format!(
                    "{} already holds {}, an output of part {}, and no manifest of this part lists it: finish the run that wrote it with --resume, or use an empty output folder",
                    output.display(),
                    dataset::path_text(relative),
                    self.shard
                )));
            }
        }
        Ok(())
    }

    /// The record of this part, written (or, on resume, checked against the one there) once the
    /// run has started and knows its seed cell and model hash.
    pub fn start_record(
        &self,
        manifest_path: &Path,
        command: &str,
        arguments: String,
        model_sha256: &str,
        run_seed: &RunSeedCell,
    ) -> anyhow::Result<PartRecord> {
        let record = PartRecord {
            format: FORMAT.to_string(),
            command: command.to_string(),
            index: self.shard.index(),
            count: self.shard.count(),
            walk_entries: self.walk_entries,
            walk_sha256: self.walk_sha256.clone(),
            arguments,
            model_sha256: model_sha256.to_string(),
            run_seed: serde_json::to_value(run_seed)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            finished_rows: None,
        };
        let path = record_path(manifest_path);
        if let Some(previous) = read_record(&path)? {
            if let Some(field) = record.differs(&previous) {
                return Err(Refused(format!(
                    "{} records another {field} than this run's: resume part {} with the arguments, input, model and secret of the run that started it",
                    path.display(),
                    self.shard
                ))
                .into());
            }
        }
        record.write(&path)?;
        Ok(record)
    }
}

/// Refuses to start a run whose OUT holds what it must not overwrite: for a part,
/// [`PartPlan::refuse_conflicts`]; for an unsharded run, anything (unless resuming).
pub fn refuse_existing(
    part: Option<&PartPlan>,
    options: &DatasetOptions,
    manifest: &str,
    outputs: &std::collections::HashSet<String>,
) -> Result<(), Refused> {
    match part {
        Some(part) => part.refuse_conflicts(
            &options.output,
            manifest,
            options.resume,
            outputs.iter().map(Path::new),
        ),
        None => super::dataset_run::refuse_non_empty(&options.output, options.resume),
    }
}

/// What a part record holds (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub format: String,
    pub command: String,
    pub index: u32,
    pub count: u32,
    pub walk_entries: u64,
    pub walk_sha256: String,
    /// The command's settings, as text: every part of one run has the same.
    pub arguments: String,
    pub model_sha256: String,
    /// The manifest's `run_seed` cell: the seed, or `fingerprint:<hex>`.
    pub run_seed: String,
    /// The manifest's row count, set when the part has finished; absent while it runs (or
    /// after it was killed).
    pub finished_rows: Option<u64>,
}

impl PartRecord {
    /// The first field, other than the part number and the finish, in which two records of
    /// one run could not differ.
    fn differs(&self, other: &PartRecord) -> Option<&'static str> {
        let fields: [(&'static str, bool); 7] = [
            ("format", self.format == other.format),
            ("command", self.command == other.command),
            ("number of parts", self.count == other.count),
            (
                "input walk",
                (self.walk_entries, &self.walk_sha256) == (other.walk_entries, &other.walk_sha256),
            ),
            ("arguments", self.arguments == other.arguments),
            ("model", self.model_sha256 == other.model_sha256),
            ("run seed", self.run_seed == other.run_seed),
        ];
        fields.iter().find(|(_, same)| !same).map(|(name, _)| *name)
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        crate::io::atomic::write(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Marks the part finished with the row count of its manifest, as on disk now.
    pub fn finish(mut self, manifest_path: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        self.finished_rows = Some(split_manifest(manifest_path, &bytes)?.rows);
        self.write(&record_path(manifest_path))
    }
}

/// `augment.part-0003-of-0016.csv` → `augment.part-0003-of-0016.json`.
pub fn record_path(manifest_path: &Path) -> PathBuf {
    manifest_path.with_extension("json")
}

/// Whether `path` is the manifest of a part (its record is beside it).
pub fn is_part_manifest(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "csv") && record_path(path).is_file()
}

fn read_record(path: &Path) -> anyhow::Result<Option<PartRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let record: PartRecord = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a part record", path.display()))?;
    if record.format != FORMAT {
        bail!(
            "{}: format `{}`, expected `{FORMAT}`",
            path.display(),
            record.format
        );
    }
    Ok(Some(record))
}

/// A manifest's header line and rows, as bytes.
struct SplitManifest<'a> {
    header: &'a [u8],
    body: &'a [u8],
    rows: u64,
}

fn split_manifest<'a>(path: &Path, bytes: &'a [u8]) -> anyhow::Result<SplitManifest<'a>> {
    if bytes.last() != Some(&b'\n') {
        bail!(
            "{} does not end with a complete row: its part did not finish; finish it with --resume, then merge",
            path.display()
        );
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    reader
        .headers()
        .with_context(|| format!("{}: unreadable header", path.display()))?;
    let header_end = reader.position().byte() as usize;
    let mut rows = 0;
    for record in reader.records() {
        record.with_context(|| format!("{}: unreadable row", path.display()))?;
        rows += 1;
    }
    let (header, body) = bytes.split_at(header_end.min(bytes.len()));
    Ok(SplitManifest { header, body, rows })
}

/// What a manifest merge did.
#[derive(Debug, Clone)]
pub struct ManifestMergeSummary {
    pub command: String,
    pub parts: usize,
    pub rows: u64,
    pub output: PathBuf,
}

/// Checks that `parts` are the N finished parts of one sharded run, writes their rows in part
/// order under one header to `output` (which must not exist), then removes the parts' manifests
/// and records.
pub fn merge(parts: &[PathBuf], output: &Path) -> anyhow::Result<ManifestMergeSummary> {
    if output.exists() {
        bail!(
            "{} exists: the merged manifest is never written over a file; give a new path",
            output.display()
        );
    }
    let mut by_index: BTreeMap<u32, (&PathBuf, PartRecord)> = BTreeMap::new();
    let mut first: Option<(&PathBuf, PartRecord)> = None;
    for part in parts {
        let Some(record) = read_record(&record_path(part))? else {
            bail!(
                "{} has no part record {} beside it: only the manifests of `augment --shard` or `enhance --shard` parts can be merged this way",
                part.display(),
                record_path(part).display()
            );
        };
        if let Some((first_path, first_record)) = &first {
            if let Some(field) = record.differs(first_record) {
                bail!(
                    "{} and {} are parts of different runs (another {field}): merge only the N parts of one sharded run",
                    first_path.display(),
                    part.display()
                );
            }
        } else {
            first = Some((part, record.clone()));
        }
        if let Some((earlier, _)) = by_index.get(&record.index) {
            bail!(
                "part {}/{} is given twice: {} and {}; give each part once",
                record.index,
                record.count,
                earlier.display(),
                part.display()
            );
        }
        by_index.insert(record.index, (part, record));
    }
    let Some((_, template)) = first else {
        bail!("no parts to merge");
    };
    let missing: Vec<String> = (0..template.count)
        .filter(|index| !by_index.contains_key(index))
        .map(|index| index.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the sharded run has {} parts, but part {} {} missing; give all {} parts' manifests, finished",
            template.count,
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            template.count
        );
    }

    let mut header: Option<Vec<u8>> = None;
    let mut merged = Vec::new();
    let mut rows = 0;
    for (part, record) in by_index.values() {
        let bytes = std::fs::read(part).with_context(|| format!("reading {}", part.display()))?;
        let split = split_manifest(part, &bytes)?;
        if record.finished_rows != Some(split.rows) {
            bail!(
                "{} has {} rows, but its record {} {}: finish that part with --resume, then merge",
                part.display(),
                split.rows,
                record_path(part).display(),
                match record.finished_rows {
                    Some(finished) => format!("says it finished with {finished}"),
                    None => "says it has not finished".to_string(),
                }
            );
        }
        match &header {
            None => {
                header = Some(split.header.to_vec());
                merged.extend_from_slice(split.header);
            }
            Some(seen) if seen != split.header => bail!(
                "{} has another header than part 0: not parts of one run",
                part.display()
            ),
            Some(_) => {}
        }
        merged.extend_from_slice(split.body);
        rows += split.rows;
    }
    crate::io::atomic::write(output, &merged)
        .with_context(|| format!("writing {}", output.display()))?;
    for (part, _) in by_index.values() {
        for path in [part.to_path_buf(), record_path(part)] {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the merged part {}", path.display()))?;
        }
    }
    Ok(ManifestMergeSummary {
        command: template.command,
        parts: by_index.len(),
        rows,
        output: output.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_split() {
        let plan = PartPlan {
            shard: Shard::new(3, 16).unwrap(),
            walk_entries: 40,
            walk_sha256: String::new(),
        };
        assert_eq!(
            plan.manifest_name("augment.csv"),
            "augment.part-0003-of-0016.csv"
        );
        assert_eq!(
            record_path(Path::new("o/augment.part-0003-of-0016.csv")),
            Path::new("o/augment.part-0003-of-0016.json")
        );
        assert_eq!(plan.range(), 7..10);
        let mut walk: Vec<usize> = (0..40).collect();
        assert_eq!(
            plan.take_block(&mut walk, "enhance.csv"),
            "enhance.part-0003-of-0016.csv"
        );
        assert_eq!(walk, vec![7, 8, 9]);
        let path = Path::new("m.csv");
        let split = split_manifest(path, b"a,b\n1,\"x\ny\"\n2,z\n").unwrap();
        assert_eq!((split.header, split.rows), (&b"a,b\n"[..], 2));
        assert_eq!(split.body, b"1,\"x\ny\"\n2,z\n");
        assert!(split_manifest(path, b"a,b\n1,2").is_err());
    }
}
