//! `boomerang score IMAGE_A IMAGE_B`: the faces found in two images, how they correspond, the
//! distance between their closest faces, and the certificate `anonymize` would grant B as an
//! anonymized A: its kind (face, face-lost, whole-image) and whether it holds.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::certify::{
    resolve_detector, resolve_embedder, CertificateKind, Certifier, Comparison, FaceAnalysis,
    Subject, Verdict,
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
    /// What the comparison rests on (the report's `certificate` column).
    pub certificate: CertificateKind,
    /// Whether B would be certified as an anonymized A: a face-to-face comparison where every
    /// pair differs, or a whole-image one (A has no face) where the images differ. A lost face is
    /// never a certificate here (policies must opt in with `on-face-lost = "accept"`).
    pub certified: bool,
    /// "same identity", "different identity", "face lost" or "whole images differ" / "near
    /// duplicate": never "different identity" without a face-to-face comparison.
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
    // The loader anonymize uses, so both see the same pixels (EXIF orientation applied) under
    // the same size limits.
    let image_a = ImageReport {
        path: config.image_a.clone(),
        analysis: certifier.analyze(&dataset::load_image(&config.image_a)?.image)?,
    };
    // B as anonymize sees an output: its whole image is embedded exactly when A has no face.
    let image_b = ImageReport {
        path: config.image_b.clone(),
        analysis: certifier.analyze_output(
            &dataset::load_image(&config.image_b)?.image,
            &image_a.analysis,
        )?,
    };
    let comparison = certifier.compare(&image_a.analysis, &image_b.analysis)?;
    let verdict = certifier.verdict(&comparison, config.operating_point.as_deref())?;
    let certificate = comparison.certificate;
    let (certified, verdict_text) = match (certificate, verdict.same_identity) {
        (CertificateKind::Face, false) => (true, "different identity"),
        (CertificateKind::WholeImage, false) => (true, "whole images differ (no face in A)"),
        (CertificateKind::WholeImage, true) => (false, "near duplicate (no face in A)"),
        (CertificateKind::FaceLost, false) => (
            false,
            "face lost: a face of A has no face of B at its place",
        ),
        (_, true) => (false, "same identity"),
    };
    Ok(ScoreReport {
        embedder: certifier.spec().name.clone(),
        embedder_spec: spec_path,
        detector,
        runtime: runtime.info().clone(),
        image_a,
        image_b,
        verdict_text,
        certificate,
        certified,
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
        writeln!(out, "  no face found")?;
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
    for pair in &c.correspondences {
        match (pair.output, pair.distance) {
            (Some(o), Some(d)) => writeln!(
                out,
                "A face #{} <-> B face #{o} (box overlap {:.2}): distance {d:.4}",
                pair.input, pair.iou
            )?,
            _ => writeln!(
                out,
                "A face #{}: no face of B at its place (face lost)",
                pair.input
            )?,
        }
    }
    match (c.distance, c.closest) {
        (Some(distance), Some(closest)) => {
            let similarity = c
                .similarity
                .map(|s| format!(", cosine similarity {s:.4}"))
                .unwrap_or_default();
            writeln!(
                out,
                "closest pair: distance {distance:.4}{similarity} (A {} vs B {})",
                subject(closest.input),
                subject(closest.output)
            )?;
        }
        _ => writeln!(out, "closest pair: none (B has no face to compare)")?,
    }
    writeln!(
        out,
        "operating point: {} ({})",
        report.verdict.operating_point, report.verdict.rule
    )?;
    writeln!(
        out,
        "certificate: {} ({})",
        report.certificate,
        if report.certified {
            "holds"
        } else {
            "does not hold"
        }
    )?;
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
