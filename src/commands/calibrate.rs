//! `boomerang calibrate --embedder SPEC IDENTITIES/`: genuine and impostor distance
//! distributions of a folder-per-identity set under the certifier `score` and `anonymize` use,
//! the thresholds at FMR 1e-3 and 1e-2 with the FNMR there, the measured FMR/FNMR of the spec's
//! own operating points, and (`--write`) the calibrated points recorded in the spec.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::certify::calibrate::{
    self, distribution, pair_distances, rates, threshold_at_fmr, Distribution, FmrLevel, Rates,
    Threshold, FMR_LEVELS,
};
use crate::certify::metric::Embedding;
use crate::certify::spec::{EmbedderSpec, OperatingPoint};
use crate::certify::{resolve_detector, resolve_embedder, Certifier};
use crate::io::dataset::{self, EntryKind};
use crate::io::runtime::{RuntimeConfig, RuntimeInfo};

#[derive(Debug, Clone)]
pub struct CalibrateConfig {
    /// One folder per identity, images inside (sub-folders allowed).
    pub identities: PathBuf,
    /// A name under a models folder, a folder holding embedder.toml, or a spec file.
    pub embedder: String,
    /// `None`: the detector the spec pins.
    pub detector: Option<PathBuf>,
    pub json: bool,
    /// Record the resolved FMR levels in the spec as operating points.
    pub write: bool,
    /// With `write`: overwrite points of the same name.
    pub replace: bool,
    pub runtime: RuntimeConfig,
}

/// An image left out of the pairs, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdentityCount {
    pub name: String,
    /// Images with exactly one face, used in pairs.
    pub used: usize,
    pub images: usize,
}

/// An existing operating point of the spec, measured on the set.
#[derive(Debug, Clone, Serialize)]
pub struct PointOnSet {
    pub name: String,
    pub rule: String,
    pub rates: Rates,
}

#[derive(Debug, Serialize)]
pub struct CalibrationReport {
    pub identities_folder: PathBuf,
    pub embedder: String,
    pub embedder_spec: PathBuf,
    pub detector: PathBuf,
    pub detector_sha256: String,
    pub metric: String,
    pub runtime: RuntimeInfo,
    /// sha256 over the sorted relative paths and file sha256s of every image of the set.
    pub calibration_sha256: String,
    pub images: usize,
    pub identities: Vec<IdentityCount>,
    /// Images with no face or several faces: not in any pair.
    pub left_out: Vec<LeftOut>,
    /// Files that are not images (by extension) or not in an identity folder: not read.
    pub ignored: Vec<LeftOut>,
    pub genuine: Option<Distribution>,
    pub impostor: Option<Distribution>,
    pub fmr_levels: Vec<FmrLevel>,
    pub spec_points: Vec<PointOnSet>,
    /// Operating points written into the spec (`--write`).
    pub written: Vec<String>,
}

/// Analyzes the set and computes the calibration; writes the spec with `--write`.
pub fn calibrate(config: &CalibrateConfig) -> anyhow::Result<CalibrationReport> {
    let spec_path = resolve_embedder(&config.embedder)?;
    let spec = EmbedderSpec::load(&spec_path)?;
    let detector = match config.detector.as_deref() {
        Some(path) => resolve_detector(Some(path))?,
        None => crate::certify::pinned_detector(&spec)?.path,
    };
    let detector_sha256 = crate::io::hashing::sha256_file(&detector)
        .with_context(|| format!("reading face detector {}", detector.display()))?;
    if let Some(pin) = spec.detector_sha256.as_ref().filter(|_| config.write) {
        // Rates measured with another detector than the one the spec certifies with would be
        // recorded under the wrong name.
        if !pin.eq_ignore_ascii_case(&detector_sha256) {
            bail!(
                "--write: detector {} has sha256 {detector_sha256}, but {} pins detector-sha256                  = {pin}; calibrate with the spec's detector (leave out --detector) to record                  points in it",
                detector.display(),
                spec_path.display()
            );
        }
    }
    let set = list_set(&config.identities)?;
    config
        .runtime
        .single_device("calibrate")
        .map_err(anyhow::Error::msg)?;
    let runtime = config.runtime.init()?;
    let mut certifier = Certifier::load(runtime, &spec_path, &detector, &config.runtime.session)?;

    let mut files = Vec::new();
    let mut samples = Vec::new();
    let mut left_out = Vec::new();
    let mut counts: Vec<IdentityCount> = set
        .identities
        .iter()
        .map(|name| IdentityCount {
            name: name.clone(),
            used: 0,
            images: 0,
        })
        .collect();
    for image in &set.images {
        let path = config.identities.join(&image.relative);
        let loaded = dataset::load_image(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot use {} of identity `{}`: {}. Fix or remove the file (every image of \
                 IDENTITIES/ is read and hashed into the calibration set), then run again",
                path.display(),
                counts[image.identity].name,
                e.reason()
            )
        })?;
        files.push((image.text.clone(), loaded.sha256_hex()));
        counts[image.identity].images += 1;
        let analysis = certifier
            .analyze(&loaded.image)
            .with_context(|| format!("analyzing {}", path.display()))?;
        match analysis.faces.len() {
            1 => {
                if let Some(face) = analysis.faces.into_iter().next() {
                    counts[image.identity].used += 1;
                    samples.push((image.identity, face.embedding));
                }
            }
            0 => left_out.push(LeftOut {
                path: image.text.clone(),
                reason: "no face found".into(),
            }),
            n => left_out.push(LeftOut {
                path: image.text.clone(),
                reason: format!("{n} faces found: which one is the identity is unknown"),
            }),
        }
    }
    let embeddings: Vec<(usize, &Embedding)> = samples.iter().map(|(i, e)| (*i, e)).collect();
    let usable = counts.iter().filter(|c| c.used > 0).count();
    if usable < 2 {
        bail!(
            "{}: only {usable} identit{} with a usable image (exactly one face found); impostor \
             pairs need images of at least two people, one folder each",
            config.identities.display(),
            if usable == 1 { "y" } else { "ies" }
        );
    }
    if !counts.iter().any(|c| c.used >= 2) {
        bail!(
            "{}: no identity has two usable images (exactly one face found), so there is no \
             genuine pair and no FNMR; put at least two photos of one person in their folder",
            config.identities.display()
        );
    }
    let distances = pair_distances(spec.metric, &embeddings)?;
    let fmr_levels: Vec<FmrLevel> = FMR_LEVELS
        .iter()
        .map(|(target, name)| threshold_at_fmr(&distances, name, *target))
        .collect();
    let spec_points = spec
        .operating_points
        .iter()
        .map(|p| PointOnSet {
            name: p.name.clone(),
            rule: p.rule(),
            rates: rates(&distances, |d| p.same_identity(d)),
        })
        .collect();
    let calibration_sha256 = calibrate::set_sha256(&files);
    let mut report = CalibrationReport {
        identities_folder: config.identities.clone(),
        embedder: spec.name.clone(),
        embedder_spec: spec_path.clone(),
        detector,
        detector_sha256,
        metric: spec.metric.to_string(),
        runtime: runtime.info().clone(),
        calibration_sha256,
        images: files.len(),
        identities: counts,
        left_out,
        ignored: set.ignored,
        genuine: distribution(&distances.genuine),
        impostor: distribution(&distances.impostor),
        fmr_levels,
        spec_points,
        written: Vec::new(),
    };
    if config.write {
        report.written = write_spec(&report, &spec_path, config.replace)?;
    }
    Ok(report)
}

struct SetImage {
    identity: usize,
    relative: PathBuf,
    text: String,
}

struct Set {
    identities: Vec<String>,
    images: Vec<SetImage>,
    ignored: Vec<LeftOut>,
}

/// The identity folders and their images, in walk order (sorted).
fn list_set(folder: &Path) -> anyhow::Result<Set> {
    if !folder.is_dir() {
        bail!(
            "{} is not a folder: IDENTITIES/ holds one folder per identity with that person's \
             images",
            folder.display()
        );
    }
    let entries = dataset::walk(folder)?;
    let mut set = Set {
        identities: Vec::new(),
        images: Vec::new(),
        ignored: Vec::new(),
    };
    for entry in entries {
        let text = dataset::path_text(&entry.relative);
        let mut components = entry.relative.components();
        let first = components.next();
        let in_folder = components.next().is_some();
        match (&entry.kind, first) {
            (EntryKind::Image, Some(first)) if in_folder => {
                let name = dataset::path_text(Path::new(first.as_os_str()));
                if set.identities.last() != Some(&name) {
                    set.identities.push(name);
                }
                set.images.push(SetImage {
                    identity: set.identities.len() - 1,
                    relative: entry.relative,
                    text,
                });
            }
            (EntryKind::Image, _) => set.ignored.push(LeftOut {
                path: text,
                reason: "not inside an identity folder".into(),
            }),
            (EntryKind::Skipped(reason), _) => set.ignored.push(LeftOut {
                path: text,
                reason: reason.to_string(),
            }),
        }
    }
    if set.images.is_empty() {
        bail!(
            "{} has no images in identity folders: IDENTITIES/ must hold one folder per \
             identity (e.g. IDENTITIES/alice/1.jpg, IDENTITIES/bob/1.jpg), each with that \
             person's images",
            folder.display()
        );
    }
    if set.identities.len() < 2 {
        bail!(
            "{} has images of one identity only (`{}`): impostor pairs need at least two \
             identity folders",
            folder.display(),
            set.identities.join(", ")
        );
    }
    Ok(set)
}

fn provenance(report: &CalibrationReport, level: &FmrLevel) -> String {
    let people = report.identities.iter().filter(|c| c.used > 0).count();
    let used: usize = report.identities.iter().map(|c| c.used).sum();
    format!(
        "boomerang calibrate: the largest max-distance with measured FMR <= {:e} on {used} face \
         images of {people} identities ({}; set sha256 in calibration-sha256)",
        level.target_fmr,
        // The folder's name only: a spec is shared, the local path is not its business.
        report.identities_folder.file_name().map_or_else(
            || report.identities_folder.display().to_string(),
            |n| { n.to_string_lossy().into_owned() }
        )
    )
}

/// Records every resolved FMR level in the spec, atomically, comments kept.
fn write_spec(
    report: &CalibrationReport,
    spec_path: &Path,
    replace: bool,
) -> anyhow::Result<Vec<String>> {
    let points: Vec<OperatingPoint> = report
        .fmr_levels
        .iter()
        .filter_map(|level| match &level.threshold {
            Threshold::Resolved {
                max_distance,
                rates,
            } => Some(OperatingPoint {
                name: level.name.clone(),
                max_distance: Some(*max_distance),
                min_similarity: None,
                provenance: provenance(report, level),
                measured_fmr: rates.fmr,
                measured_fnmr: rates.fnmr,
                genuine_pairs: Some(rates.genuine_pairs as u64),
                impostor_pairs: Some(rates.impostor_pairs as u64),
                calibration_sha256: Some(report.calibration_sha256.clone()),
            }),
            _ => None,
        })
        .collect();
    if points.is_empty() {
        let pairs = report.impostor.as_ref().map_or(0, |d| d.count);
        bail!(
            "--write: no FMR level could be resolved on this set ({pairs} impostor pairs; FMR \
             1e-2 needs at least 100, 1e-3 at least 1000): nothing written to {}. Add identities \
             (n images spread over many people give about n^2/2 impostor pairs)",
            spec_path.display()
        );
    }
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let edited = calibrate::write_points(&text, spec_path, &points, replace)?;
    crate::io::atomic::write(spec_path, edited.as_bytes())
        .with_context(|| format!("writing {}", spec_path.display()))?;
    Ok(points.into_iter().map(|p| p.name).collect())
}

fn fmt_rate(count: usize, of: usize, rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{count}/{of} = {r:.4}"),
        None => format!("{count}/{of} (no pairs)"),
    }
}

fn fmt_distribution(label: &str, d: Option<&Distribution>) -> String {
    match d {
        None => format!("{label}: no pairs"),
        Some(d) => {
            let percentiles: Vec<String> = d
                .percentiles
                .iter()
                .map(|(p, v)| format!("p{p} {v:.4}"))
                .collect();
            format!(
                "{label}: count {}, min {:.4}, {}, max {:.4}",
                d.count,
                d.min,
                percentiles.join(", "),
                d.max
            )
        }
    }
}

/// The human-readable report.
pub fn render(report: &CalibrationReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = render_into(&mut out, report);
    out
}

fn render_into(out: &mut String, r: &CalibrationReport) -> std::fmt::Result {
    writeln!(
        out,
        "calibration set: {} ({} images of {} identities; sha256 {})",
        r.identities_folder.display(),
        r.images,
        r.identities.len(),
        r.calibration_sha256
    )?;
    for c in &r.identities {
        writeln!(out, "  {}: {} image(s), {} used", c.name, c.images, c.used)?;
    }
    for l in &r.left_out {
        writeln!(out, "left out (not in any pair): {}: {}", l.path, l.reason)?;
    }
    for l in &r.ignored {
        writeln!(out, "ignored: {}: {}", l.path, l.reason)?;
    }
    writeln!(
        out,
        "embedder: {} ({} metric), spec {}, detector {}",
        r.embedder,
        r.metric,
        r.embedder_spec.display(),
        r.detector.display()
    )?;
    writeln!(
        out,
        "{}",
        fmt_distribution("genuine pairs (same identity)", r.genuine.as_ref())
    )?;
    writeln!(
        out,
        "{}",
        fmt_distribution("impostor pairs (different identities)", r.impostor.as_ref())
    )?;
    writeln!(
        out,
        "thresholds (same identity when distance < max-distance):"
    )?;
    for level in &r.fmr_levels {
        match &level.threshold {
            Threshold::Resolved {
                max_distance,
                rates,
            } => writeln!(
                out,
                "  FMR {:e}: max-distance {max_distance:.4}: measured FMR {}, FNMR {}",
                level.target_fmr,
                fmt_rate(rates.false_matches, rates.impostor_pairs, rates.fmr),
                fmt_rate(rates.false_non_matches, rates.genuine_pairs, rates.fnmr)
            )?,
            Threshold::TooFewImpostorPairs {
                impostor_pairs,
                needed,
            } => writeln!(
                out,
                "  FMR {:e}: cannot be resolved on this set: {impostor_pairs} impostor pairs, at \
                 least {needed} needed (add identities)",
                level.target_fmr
            )?,
            Threshold::ZeroDistance { impostor_pairs } => writeln!(
                out,
                "  FMR {:e}: no positive max-distance meets it: too many of the {impostor_pairs} \
                 impostor pairs are at distance 0 (the same picture under two identities?)",
                level.target_fmr
            )?,
        }
    }
    writeln!(out, "the spec's operating points on this set:")?;
    for p in &r.spec_points {
        writeln!(
            out,
            "  {} ({}): FMR {}, FNMR {}",
            p.name,
            p.rule,
            fmt_rate(p.rates.false_matches, p.rates.impostor_pairs, p.rates.fmr),
            fmt_rate(
                p.rates.false_non_matches,
                p.rates.genuine_pairs,
                p.rates.fnmr
            )
        )?;
    }
    if let Some(impostor) = &r.impostor {
        if impostor.count < 1000 {
            writeln!(
                out,
                "note: {} impostor pairs measure an FMR no finer than {:.2e}; these rates \
                 describe this set, not the embedder in general",
                impostor.count,
                1.0 / impostor.count as f64
            )?;
        }
    }
    for name in &r.written {
        writeln!(
            out,
            "wrote operating point `{name}` to {}",
            r.embedder_spec.display()
        )?;
    }
    Ok(())
}

/// Runs the command: prints the report (text or JSON) to stdout.
pub fn run(config: &CalibrateConfig) -> anyhow::Result<()> {
    let report = calibrate(config)?;
    if config.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
