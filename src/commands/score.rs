//! `boomerang score IMAGE_A IMAGE_B`: the faces found in two images, how they correspond, the
//! distance between their closest faces, and the certificate `anonymize` would grant B as an
//! anonymized A: its kind (face, face-lost, whole-image) and whether it holds.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::certify::spec::EmbedderSpec;
use crate::certify::{
    pinned_detector, resolve_detector, resolve_embedder, CertificateKind, Certifier, Comparison,
    FaceAnalysis, Opinion, Subject, Verdict,
};
use crate::io::dataset;
use crate::io::runtime::{RuntimeConfig, RuntimeInfo};
use crate::policy::{Level, Policy};

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
    /// `None`: the detector the embedder spec pins.
    pub detector: Option<PathBuf>,
    /// Judge as this policy's level does: its embedder, whole-image embedder, second opinions,
    /// operating point and accepted certificate kinds (`embedder` and `operating_point` unused).
    pub policy: Option<PathBuf>,
    /// The policy's level (`None`: its default level).
    pub level: Option<String>,
    /// Without a policy: the whole-image embedder for faceless A (`None`: whole images are
    /// compared through the face embedder, which never certifies).
    pub feature_embedder: Option<String>,
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
    /// The second opinions of the policy, each of which must agree.
    pub second_opinions: Vec<Opinion>,
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

/// The certifier and the level `score` judges with: a policy's, or the named embedder's.
fn certifier_for(
    config: &ScoreConfig,
    runtime: &crate::io::runtime::Runtime,
) -> anyhow::Result<(Certifier, PathBuf, PathBuf, Option<Level>)> {
    config
        .runtime
        .single_device("score")
        .map_err(anyhow::Error::msg)?;
    let session = &config.runtime.session;
    let policy = config.policy.as_deref().map(Policy::load).transpose()?;
    let level = match &policy {
        Some(policy) => Some(
            policy
                .level(config.level.as_deref().unwrap_or(&policy.default_level))?
                .clone(),
        ),
        None => None,
    };
    let spec_path = match &policy {
        Some(policy) => policy.embedder.spec.clone(),
        None => resolve_embedder(&config.embedder)?,
    };
    // An explicit --detector is the caller's choice; otherwise the one the spec pins.
    let detector = match config.detector.as_deref() {
        Some(path) => resolve_detector(Some(path))?,
        None => pinned_detector(&EmbedderSpec::load(&spec_path)?)?.path,
    };
    let certifier = match (&policy, &config.feature_embedder) {
        (Some(policy), _) => policy.certifier(runtime, &spec_path, &detector, session)?,
        (None, Some(feature)) => Certifier::load(runtime, &spec_path, &detector, session)?
            .with_whole_image_embedder(runtime, &resolve_embedder(feature)?, session)?,
        (None, None) => Certifier::load(runtime, &spec_path, &detector, session)?,
    };
    Ok((certifier, spec_path, detector, level))
}

/// Analyzes both images and builds the report.
pub fn score(config: &ScoreConfig) -> anyhow::Result<ScoreReport> {
    let runtime = config.runtime.init()?;
    let (mut certifier, spec_path, detector, level) = certifier_for(config, runtime)?;
    // Fail on an unknown operating point before spending time on the images.
    let face_point = match &level {
        Some(level) => level.operating_point(certifier.spec())?,
        None => certifier
            .spec()
            .operating_point(config.operating_point.as_deref())?
            .clone(),
    };
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
    let certificate = comparison.certificate;
    let point = match certificate {
        CertificateKind::WholeImage => certifier.operating_point(certificate, None)?.clone(),
        CertificateKind::Face | CertificateKind::FaceLost => face_point,
    };
    let verdict = Verdict::new(&point, &comparison);
    let second_opinions = certifier.second_opinions(&image_a.analysis, &image_b.analysis)?;
    let dissent = second_opinions.iter().any(|opinion| !opinion.differs);
    // Without a policy: faces, and whole images judged by a whole-image embedder (a face
    // embedder says nothing about a picture without a face); a lost face never.
    let accepted = match &level {
        Some(level) => level.accepts(certificate),
        None => match certificate {
            CertificateKind::Face => true,
            CertificateKind::WholeImage => config.feature_embedder.is_some(),
            CertificateKind::FaceLost => false,
        },
    };
    let certified = accepted && !verdict.same_identity && !dissent;
    let verdict_text = match certificate {
        CertificateKind::WholeImage if verdict.same_identity => "near duplicate (no face in A)",
        CertificateKind::WholeImage => "whole images differ (no face in A)",
        _ if verdict.same_identity => "same identity",
        CertificateKind::FaceLost => "face lost: a face of A has no face of B at its place",
        CertificateKind::Face if dissent => "same identity by a second opinion",
        CertificateKind::Face => "different identity",
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
        second_opinions,
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
    for opinion in &report.second_opinions {
        let distance = opinion
            .comparison
            .distance
            .map_or("none".to_string(), |d| format!("{d:.4}"));
        writeln!(
            out,
            "second opinion {}: closest pair distance {distance} ({}: {})",
            opinion.embedder,
            opinion.operating_point.rule(),
            if opinion.differs {
                "differs"
            } else {
                "same identity"
            }
        )?;
    }
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
