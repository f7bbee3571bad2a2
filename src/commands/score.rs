//! `boomerang score IMAGE_A IMAGE_B`: the faces found in two images, the distance between their
//! closest faces and whether the embedder's operating point calls them the same identity.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::certify::{
    resolve_detector, resolve_embedder, Certifier, Comparison, FaceAnalysis, Subject, Verdict,
};
use crate::io::dataset;
use crate::io::runtime::{RuntimeConfig, RuntimeInfo};

/// What `boomerang score` compares, and with what.
#[derive(Debug, Clone)]
pub struct ScoreConfig {
    /// First image (treated as the input).
    pub image_a: PathBuf,
    /// Second image (treated as the output).
    pub image_b: PathBuf,
    /// A name under a models folder, a folder holding embedder.toml, or a spec file.
    pub embedder: String,
    /// `None`: the spec's default operating point.
    pub operating_point: Option<String>,
    /// `None`: the bundled short-range BlazeFace.
    pub detector: Option<PathBuf>,
    pub json: bool,
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub path: PathBuf,
    #[serde(flatten)]
    pub analysis: FaceAnalysis,
}

#[derive(Debug, Serialize)]
pub struct ScoreReport {
    pub embedder: String,
    pub embedder_spec: PathBuf,
    pub detector: PathBuf,
    pub runtime: RuntimeInfo,
    pub image_a: ImageReport,
    pub image_b: ImageReport,
    pub comparison: Comparison,
    pub verdict: Verdict,
    /// "same identity" or "different identity".
    pub verdict_text: &'static str,
}

/// Analyzes both images and builds the report.
pub fn score(config: &ScoreConfig) -> anyhow::Result<ScoreReport> {
    let runtime = config.runtime.init()?;
    let spec_path = resolve_embedder(&config.embedder)?;
    // An explicit --detector is the caller's choice; otherwise the one the spec pins.
    let detector = match config.detector.as_deref() {
        Some(path) => resolve_detector(Some(path))?,
        None => {
            let spec = crate::certify::spec::EmbedderSpec::load(&spec_path)?;
            crate::certify::pinned_detector(&spec)?.path
        }
    };
    let mut certifier = Certifier::load(runtime, &spec_path, &detector, &config.runtime.session)?;
    // Fail on an unknown operating point before spending time on the images.
    certifier
        .spec()
        .operating_point(config.operating_point.as_deref())?;
    let mut analyze = |path: &Path| -> anyhow::Result<ImageReport> {
        // The loader anonymize uses, so both see the same pixels (stored order, EXIF
        // orientation not applied) under the same size limits.
        let image = dataset::load_image(path)?.image;
        Ok(ImageReport {
            path: path.to_path_buf(),
            analysis: certifier.analyze(&image)?,
        })
    };
    let image_a = analyze(&config.image_a)?;
    let image_b = analyze(&config.image_b)?;
    let comparison = certifier.compare(&image_a.analysis, &image_b.analysis)?;
    let verdict = certifier.verdict(&comparison, config.operating_point.as_deref())?;
    Ok(ScoreReport {
        embedder: certifier.spec().name.clone(),
        embedder_spec: spec_path,
        detector,
        runtime: runtime.info().clone(),
        image_a,
        image_b,
        verdict_text: if verdict.same_identity {
            "same identity"
        } else {
            "different identity"
        },
        comparison,
        verdict,
    })
}

fn describe_image(out: &mut String, label: &str, image: &ImageReport) -> std::fmt::Result {
    let a = &image.analysis;
    writeln!(
        out,
        "{label}: {} ({}x{})",
        image.path.display(),
        a.width,
        a.height
    )?;
    if a.faces.is_empty() {
        writeln!(
            out,
            "  no face found: the whole image was embedded instead (fallback)"
        )?;
    }
    for (i, face) in a.faces.iter().enumerate() {
        let b = face.bbox;
        writeln!(
            out,
            "  face #{i}: box ({:.0}, {:.0})-({:.0}, {:.0}), score {:.3}",
            b.x0, b.y0, b.x1, b.y1, face.score
        )?;
    }
    Ok(())
}

fn subject(s: Subject) -> String {
    match s {
        Subject::Face(i) => format!("face #{i}"),
        Subject::WholeImage => "whole image".to_string(),
    }
}

/// The human-readable report.
pub fn render(report: &ScoreReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = render_into(&mut out, report);
    out
}

fn render_into(out: &mut String, report: &ScoreReport) -> std::fmt::Result {
    let c = &report.comparison;
    describe_image(out, "A", &report.image_a)?;
    describe_image(out, "B", &report.image_b)?;
    writeln!(out, "embedder: {} ({} metric)", report.embedder, c.metric)?;
    let similarity = c
        .similarity
        .map(|s| format!(", cosine similarity {s:.4}"))
        .unwrap_or_default();
    writeln!(
        out,
        "distance: {:.4}{similarity} (A {} vs B {})",
        c.distance,
        subject(c.closest.input),
        subject(c.closest.output)
    )?;
    writeln!(
        out,
        "operating point: {} ({})",
        report.verdict.operating_point, report.verdict.rule
    )?;
    if c.fallback_used {
        writeln!(
            out,
            "note: at least one image had no face; its whole-image embedding was compared"
        )?;
    }
    writeln!(out, "verdict: {}", report.verdict_text)
}

/// Runs the command: prints the report (text or JSON) to stdout.
pub fn run(config: &ScoreConfig) -> anyhow::Result<()> {
    let report = score(config)?;
    if config.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
