//! Face certification: does a face matcher still link an output image to the person in its
//! input? Faces are found by a detector ([`detector`]), aligned from their eye keypoints
//! ([`align`]), embedded by an identity embedder described by a spec ([`spec`], [`embedder`]) and
//! compared by the spec's metric ([`metric`]). [`reid`] runs the dataset-level re-identification
//! attack; [`score`] is the `boomerang score` command.
//!
//! Images are analyzed as [`crate::io::dataset::load_image`] decodes them, the one loader `anonymize`
//! and `score` share: pixels in stored order, EXIF orientation reported but not applied, so a
//! score of two files sees exactly the pixels a run certified.
//!
//! Independent of the diffusion pipeline: it needs only ONNX Runtime and the two models.

pub mod align;
pub mod calibrate;
pub mod detector;
pub mod embedder;
pub mod metric;
pub mod reid;
pub mod spec;

use std::path::{Path, PathBuf};

use image::DynamicImage;
use serde::Serialize;

use crate::io::runtime::{Runtime, SessionOptions};
use align::AlignError;
use detector::{BoundingBox, DetectorConfig, DetectorError, FaceDetector, Point};
use embedder::{Embedder, EmbedderError};
use metric::{Embedding, Metric, MetricError};
use spec::{EmbedderSpec, OperatingPoint, SpecError};

/// The embedder used when none is named.
pub const DEFAULT_EMBEDDER: &str = "dlib-face";
/// The detector model, relative to a models folder.
pub const DEFAULT_DETECTOR: &str = "face-detector/blazeface-short-range.onnx";
/// Environment variable naming an extra models folder, searched first.
pub const MODELS_ENV: &str = "BOOMERANG_MODELS";

#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("no embedder `{name}`: looked for {looked}. Pass a spec file (embedder.toml), a folder holding one, or the name of a folder under a models directory (set {MODELS_ENV} to add one)")]
    EmbedderNotFound { name: String, looked: String },
    #[error("face detector model not found: looked for {looked}. Pass --detector PATH or set {MODELS_ENV}")]
    DetectorNotFound { looked: String },
    #[error("face detector {path}: {message}")]
    DetectorRead { path: PathBuf, message: String },
    #[error("face detector {path} has sha256 {found}, but embedder spec {spec} pins detector-sha256 = {expected}; refusing to certify with a detector the spec does not name")]
    DetectorHash {
        path: PathBuf,
        spec: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Embedder(#[from] EmbedderError),
    #[error("face {face}: {source}")]
    Align { face: usize, source: AlignError },
    #[error("comparing faces: {0}")]
    Metric(#[from] MetricError),
    #[error("{side} analysis has neither faces nor a whole-image embedding; build it with Certifier::analyze")]
    NothingToCompare { side: &'static str },
}

/// Folders searched for models, in order: `$BOOMERANG_MODELS`, `./models`, and the source tree's
/// `models/` this binary was built from (for runs from a checkout).
pub fn model_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os(MODELS_ENV).filter(|d| !d.is_empty()) {
        roots.push(PathBuf::from(dir));
    }
    roots.push(PathBuf::from("models"));
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    roots
}

/// Finds an embedder spec from a spec file path, a folder holding `embedder.toml`, or a name
/// looked up as `<models root>/<name>/embedder.toml`.
pub fn resolve_embedder(name: &str) -> Result<PathBuf, CertifyError> {
    let given = Path::new(name);
    let mut candidates = vec![given.to_path_buf(), given.join("embedder.toml")];
    // A bare name (no path separators) is looked up in the model folders.
    if given.components().count() == 1 {
        candidates.extend(
            model_roots()
                .into_iter()
                .map(|root| root.join(name).join("embedder.toml")),
        );
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| CertifyError::EmbedderNotFound {
            name: name.to_string(),
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The detector model: `explicit` when given, else the default one in the model folders.
pub fn resolve_detector(explicit: Option<&Path>) -> Result<PathBuf, CertifyError> {
    let candidates = match explicit {
        Some(path) => vec![path.to_path_buf()],
        None => model_roots()
            .into_iter()
            .map(|root| root.join(DEFAULT_DETECTOR))
            .collect(),
    };
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| CertifyError::DetectorNotFound {
            looked: candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The face detector an embedder spec certifies with, and its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedDetector {
    pub path: PathBuf,
    pub sha256: String,
}

/// The detector of `spec`: its `detector` file (relative to the spec, like its graph), else the
/// default one in the model folders; hashed, and refused when it differs from the spec's
/// `detector-sha256` pin.
pub fn pinned_detector(spec: &EmbedderSpec) -> Result<PinnedDetector, CertifyError> {
    let path = match spec.detector_path() {
        Some(path) => path,
        None => resolve_detector(None)?,
    };
    let sha256 =
        crate::io::hashing::sha256_file(&path).map_err(|e| CertifyError::DetectorRead {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if let Some(expected) = &spec.detector_sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(CertifyError::DetectorHash {
                path,
                spec: spec.source.clone(),
                found: sha256,
                expected: expected.clone(),
            });
        }
    }
    Ok(PinnedDetector { path, sha256 })
}

/// One detected face and its identity embedding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Face {
    pub bbox: BoundingBox,
    pub score: f32,
    /// BlazeFace order: right eye, left eye, nose tip, mouth center, right ear, left ear (the
    /// subject's right and left).
    pub keypoints: [Point; 6],
    pub embedding: Embedding,
}

/// Everything certification needs from one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceAnalysis {
    pub width: u32,
    pub height: u32,
    /// Faces found, best score first.
    pub faces: Vec<Face>,
    /// Set exactly when no face was found: the embedding of the whole (center-cropped) image. What
    /// a faceless image means is the caller's policy; comparisons report when it was used.
    pub whole_image_fallback: Option<Embedding>,
}

/// What stood for an image in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    Face(usize),
    WholeImage,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    pub input: Subject,
    pub output: Subject,
    pub distance: f32,
}

/// Input vs output: every input face is matched to its closest output face, and the closest of
/// those pairs (the worst case for privacy) decides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub metric: Metric,
    /// Distance of the closest pair (for cosine, `1 - similarity`).
    pub distance: f32,
    /// Cosine similarity of the closest pair, for the cosine metric.
    pub similarity: Option<f32>,
    pub closest: Pair,
    /// Each input face (or the whole input image) with its best output match.
    pub best_matches: Vec<Pair>,
    pub faces_in: usize,
    pub faces_out: usize,
    /// Whether either side had no face and its whole-image embedding was used.
    pub fallback_used: bool,
}

fn subjects<'a>(
    analysis: &'a FaceAnalysis,
    side: &'static str,
) -> Result<Vec<(Subject, &'a Embedding)>, CertifyError> {
    if !analysis.faces.is_empty() {
        return Ok(analysis
            .faces
            .iter()
            .enumerate()
            .map(|(i, f)| (Subject::Face(i), &f.embedding))
            .collect());
    }
    match &analysis.whole_image_fallback {
        Some(embedding) => Ok(vec![(Subject::WholeImage, embedding)]),
        None => Err(CertifyError::NothingToCompare { side }),
    }
}

/// Compares an input image's analysis with an output image's (see [`Comparison`]).
pub fn compare(
    metric: Metric,
    input: &FaceAnalysis,
    output: &FaceAnalysis,
) -> Result<Comparison, CertifyError> {
    let ins = subjects(input, "input")?;
    let outs = subjects(output, "output")?;
    let mut best_matches = Vec::with_capacity(ins.len());
    for (input_subject, a) in &ins {
        let mut best: Option<Pair> = None;
        for (output_subject, b) in &outs {
            let distance = metric.distance(a, b)?;
            if best.is_none_or(|p| distance < p.distance) {
                best = Some(Pair {
                    input: *input_subject,
                    output: *output_subject,
                    distance,
                });
            }
        }
        // `subjects` never returns an empty list, so every input has a best match.
        best_matches.extend(best);
    }
    let closest = best_matches
        .iter()
        .copied()
        .min_by(|a, b| a.distance.total_cmp(&b.distance))
        .ok_or(CertifyError::NothingToCompare { side: "input" })?;
    Ok(Comparison {
        metric,
        distance: closest.distance,
        similarity: metric.similarity_of(closest.distance),
        closest,
        best_matches,
        faces_in: input.faces.len(),
        faces_out: output.faces.len(),
        fallback_used: input.faces.is_empty() || output.faces.is_empty(),
    })
}

/// A comparison judged at an operating point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub operating_point: String,
    pub rule: String,
    pub same_identity: bool,
}

impl Verdict {
    pub fn new(point: &OperatingPoint, comparison: &Comparison) -> Self {
        Self {
            operating_point: point.name.clone(),
            rule: point.rule(),
            same_identity: point.same_identity(comparison.distance),
        }
    }
}

/// Detector + embedder, loaded once and used image after image.
pub struct Certifier {
    detector: FaceDetector,
    embedder: Embedder,
}

impl Certifier {
    /// Loads the embedder described by the spec at `embedder_spec` and the detector at
    /// `detector_model`.
    pub fn load(
        runtime: &Runtime,
        embedder_spec: &Path,
        detector_model: &Path,
        options: &SessionOptions,
    ) -> Result<Self, CertifyError> {
        let spec = EmbedderSpec::load(embedder_spec)?;
        let embedder = Embedder::load(runtime, spec, options)?;
        let detector =
            FaceDetector::load(runtime, detector_model, options, DetectorConfig::default())?;
        Ok(Self { detector, embedder })
    }

    pub fn spec(&self) -> &EmbedderSpec {
        self.embedder.spec()
    }

    /// Finds, aligns and embeds every face; embeds the whole image when there is none.
    pub fn analyze(&mut self, image: &DynamicImage) -> Result<FaceAnalysis, CertifyError> {
        let rgb = image.to_rgb8();
        let detections = self.detector.detect(&rgb)?;
        let mut faces = Vec::with_capacity(detections.len());
        for (i, detection) in detections.into_iter().enumerate() {
            let chip = align::align_face(&rgb, &detection, self.embedder.spec())
                .map_err(|source| CertifyError::Align { face: i, source })?;
            faces.push(Face {
                embedding: self.embedder.embed(&chip)?,
                bbox: detection.bbox,
                score: detection.score,
                keypoints: detection.keypoints,
            });
        }
        let whole_image_fallback = if faces.is_empty() {
            let [w, h] = self.embedder.spec().input_size;
            Some(self.embedder.embed(&align::whole_image_chip(&rgb, w, h))?)
        } else {
            None
        };
        Ok(FaceAnalysis {
            width: rgb.width(),
            height: rgb.height(),
            faces,
            whole_image_fallback,
        })
    }

    /// [`compare`] with this embedder's metric.
    pub fn compare(
        &self,
        input: &FaceAnalysis,
        output: &FaceAnalysis,
    ) -> Result<Comparison, CertifyError> {
        compare(self.spec().metric, input, output)
    }

    /// Judges a comparison at the named operating point, or the spec's default one.
    pub fn verdict(
        &self,
        comparison: &Comparison,
        operating_point: Option<&str>,
    ) -> Result<Verdict, CertifyError> {
        Ok(Verdict::new(
            self.spec().operating_point(operating_point)?,
            comparison,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(v: &[f32]) -> Face {
        let p = Point { x: 0.0, y: 0.0 };
        Face {
            bbox: BoundingBox {
                x0: 0.0,
                y0: 0.0,
                x1: 1.0,
                y1: 1.0,
            },
            score: 0.9,
            keypoints: [p; 6],
            embedding: Embedding::new(v.to_vec()).unwrap(),
        }
    }

    fn analysis(faces: Vec<Face>, fallback: Option<&[f32]>) -> FaceAnalysis {
        FaceAnalysis {
            width: 10,
            height: 10,
            faces,
            whole_image_fallback: fallback.map(|v| Embedding::new(v.to_vec()).unwrap()),
        }
    }

    #[test]
    fn several_faces_keep_the_worst_case_pair() {
        let input = analysis(vec![face(&[0.0, 0.0]), face(&[10.0, 0.0])], None);
        let output = analysis(
            vec![face(&[0.0, 5.0]), face(&[10.0, 1.0]), face(&[20.0, 0.0])],
            None,
        );
        let c = compare(Metric::Euclidean, &input, &output).unwrap();
        assert_eq!(c.best_matches.len(), 2);
        assert_eq!(c.best_matches[0].output, Subject::Face(0));
        assert_eq!(c.best_matches[0].distance, 5.0);
        assert_eq!(c.best_matches[1].output, Subject::Face(1));
        assert_eq!(c.closest, c.best_matches[1]);
        assert_eq!(c.distance, 1.0);
        assert_eq!((c.faces_in, c.faces_out, c.fallback_used), (2, 3, false));
        assert_eq!(c.similarity, None);
    }

    #[test]
    fn faceless_images_use_their_whole_image_embedding_and_say_so() {
        let input = analysis(vec![face(&[1.0, 0.0])], None);
        let output = analysis(vec![], Some(&[0.0, 1.0]));
        let c = compare(Metric::Cosine, &input, &output).unwrap();
        assert!(c.fallback_used);
        assert_eq!(c.closest.output, Subject::WholeImage);
        assert!((c.distance - 1.0).abs() < 1e-6);
        assert!(c.similarity.unwrap().abs() < 1e-6);
        let broken = analysis(vec![], None);
        assert!(matches!(
            compare(Metric::Cosine, &input, &broken),
            Err(CertifyError::NothingToCompare { side: "output" })
        ));
    }

    #[test]
    fn embedders_resolve_by_name_folder_or_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let by_name = resolve_embedder(DEFAULT_EMBEDDER).unwrap();
        assert!(by_name.ends_with("dlib-face/embedder.toml"));
        let folder = root.join("models/dlib-face");
        assert_eq!(
            resolve_embedder(folder.to_str().unwrap()).unwrap(),
            folder.join("embedder.toml")
        );
        let file = root.join("tests/fixtures/faces/embedder-alt.toml");
        assert_eq!(resolve_embedder(file.to_str().unwrap()).unwrap(), file);
        let err = resolve_embedder("no-such-embedder")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-embedder/embedder.toml"), "{err}");
        assert!(resolve_detector(None).unwrap().ends_with(DEFAULT_DETECTOR));
        assert!(matches!(
            resolve_detector(Some(Path::new("/nonexistent.onnx"))),
            Err(CertifyError::DetectorNotFound { .. })
        ));
    }
}
