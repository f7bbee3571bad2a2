//! Face certification: does a face matcher still link an output image to the person in its
//! input? Faces are found by a detector ([`detector`]), aligned from their eye keypoints
//! ([`align`]), embedded by an identity embedder described by a spec ([`spec`], [`embedder`]) and
//! compared by the spec's metric ([`metric`]). [`reid`] runs the dataset-level re-identification
//! attack; [`score`] is the `boomerang score` command.
//!
//! Images are analyzed as [`crate::io::dataset::load_image`] decodes them, the one loader `anonymize`
//! and `score` share (EXIF orientation applied), so a score of two files sees exactly the pixels
//! a run certified.
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
use serde::{Deserialize, Serialize};

use crate::io::runtime::{Runtime, SessionOptions};
use align::AlignError;
use detector::{BoundingBox, DetectorConfig, DetectorError, FaceDetector, Point};
use embedder::{Embedder, EmbedderError};
use metric::{Embedding, Metric, MetricError};
use spec::{EmbedderSpec, OperatingPoint, SpecError};

/// The embedder used when none is named.
pub const DEFAULT_EMBEDDER: &str = "dlib-face";
/// The detector model, relative to a models folder.
pub const DEFAULT_DETECTOR: &str = "face-detector/blazeface-full-range.onnx";
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
    #[error("{spec}: {role} needs a spec with subject = \"{wanted}\"")]
    WrongSubject {
        spec: PathBuf,
        role: &'static str,
        wanted: &'static str,
    },
}

/// Folders searched for models, in order: `$BOOMERANG_MODELS`, `./models`, the data folder's
/// `models/` (`boomerang setup`, `model pull`) and the source tree's `models/` this binary was
/// built from (for runs from a checkout).
pub fn model_roots() -> Vec<PathBuf> {
    crate::io::data_dir::search_folders(MODELS_ENV, "models")
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
    /// The same face by each second-opinion embedder, in the certifier's order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub second_opinions: Vec<Embedding>,
}

/// Everything certification needs from one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceAnalysis {
    pub width: u32,
    pub height: u32,
    /// Faces found, best score first.
    pub faces: Vec<Face>,
    /// The embedding of the whole image, made only when a whole-image comparison can happen:
    /// the input has no face (see [`Certifier::analyze_output`]).
    pub whole_image: Option<Embedding>,
}

impl FaceAnalysis {
    /// A face's box as fractions of the image's width and height, so boxes of two images of
    /// different sizes (a resized copy) can be compared.
    fn unit_box(&self, face: &Face) -> BoundingBox {
        let (w, h) = (self.width.max(1) as f32, self.height.max(1) as f32);
        BoundingBox {
            x0: face.bbox.x0 / w,
            y0: face.bbox.y0 / h,
            x1: face.bbox.x1 / w,
            y1: face.bbox.y1 / h,
        }
    }
}

/// What a comparison of an input with its output rests on: the report's `certificate` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateKind {
    /// Every input face has an output face at its place, each compared with it; and every
    /// input face was compared with every output face.
    Face,
    /// At least one input face has no output face at its place: the detector no longer finds
    /// it, so nothing shows it became someone else. Never a certificate unless a policy says
    /// `on-face-lost = "accept"`.
    FaceLost,
    /// The input has no face: whole-image embeddings were compared (a near-duplicate check,
    /// not an identity check).
    WholeImage,
}

impl CertificateKind {
    pub const ALL: [CertificateKind; 3] = [
        CertificateKind::Face,
        CertificateKind::FaceLost,
        CertificateKind::WholeImage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateKind::Face => "face",
            CertificateKind::FaceLost => "face-lost",
            CertificateKind::WholeImage => "whole-image",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for CertificateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Boxes (as fractions of their image) overlapping at least this much show the same face
/// before and after: Boomerang keeps the layout of the image (it starts from the input's
/// latents), so a face stays where it was; 0.3 leaves room for the reshaped face and the
/// detector's jitter, and stays far above boxes of two neighbouring faces.
pub const MIN_CORRESPONDENCE_IOU: f32 = 0.3;

/// An input face and the output face found at its place, if any.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Correspondence {
    pub input: usize,
    pub output: Option<usize>,
    /// Overlap of the two boxes (0 without a counterpart).
    pub iou: f32,
    /// Distance between the two faces' embeddings.
    pub distance: Option<f32>,
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

/// Input vs output, face to face: each input face is paired with the output face at its place
/// ([`Correspondence`]), and every input face is compared with every output face; the closest
/// of all those pairs (the worst case for privacy) is the comparison's distance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub certificate: CertificateKind,
    /// The metric of the embedder that made the compared embeddings (the whole-image embedder's
    /// for [`CertificateKind::WholeImage`]).
    pub metric: Metric,
    /// Distance of the closest pair (for cosine, `1 - similarity`); `None` when there was no
    /// pair at all (an input face lost and no output face).
    pub distance: Option<f32>,
    /// Cosine similarity of the closest pair, for the cosine metric.
    pub similarity: Option<f32>,
    pub closest: Option<Pair>,
    /// One per input face, in input order.
    pub correspondences: Vec<Correspondence>,
    pub faces_in: usize,
    pub faces_out: usize,
}

impl Comparison {
    /// Whether every compared pair is a different identity at `point` (true when nothing was
    /// compared: whether that may certify is the certificate kind's question, not this one's).
    pub fn all_pairs_differ(&self, point: &OperatingPoint) -> bool {
        self.distance.is_none_or(|d| !point.same_identity(d))
    }
}

/// Pairs input faces with output faces by box overlap, greedily from the largest overlap, one
/// output face per input face.
fn correspond(input: &FaceAnalysis, output: &FaceAnalysis) -> Vec<Option<(usize, f32)>> {
    let mut overlaps = Vec::new();
    for (i, a) in input.faces.iter().enumerate() {
        for (o, b) in output.faces.iter().enumerate() {
            let iou = input.unit_box(a).iou(&output.unit_box(b));
            if iou >= MIN_CORRESPONDENCE_IOU {
                overlaps.push((iou, i, o));
            }
        }
    }
    overlaps.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut paired = vec![None; input.faces.len()];
    let mut taken = vec![false; output.faces.len()];
    for (iou, i, o) in overlaps {
        if paired[i].is_none() && !taken[o] {
            paired[i] = Some((o, iou));
            taken[o] = true;
        }
    }
    paired
}

/// Compares an input image's analysis with its output's (see [`Comparison`]). `face_metric`
/// is the face embedder's; `whole_image_metric` the metric of the embedder that made the
/// whole-image embeddings.
pub fn compare(
    face_metric: Metric,
    whole_image_metric: Metric,
    input: &FaceAnalysis,
    output: &FaceAnalysis,
) -> Result<Comparison, CertifyError> {
    compare_by(face_metric, whole_image_metric, input, output, |face| {
        Some(&face.embedding)
    })
}

/// [`compare`] of the face embeddings `embedding_of` picks (a second opinion's).
fn compare_by<'a>(
    face_metric: Metric,
    whole_image_metric: Metric,
    input: &'a FaceAnalysis,
    output: &'a FaceAnalysis,
    embedding_of: impl Fn(&'a Face) -> Option<&'a Embedding>,
) -> Result<Comparison, CertifyError> {
    let (faces_in, faces_out) = (input.faces.len(), output.faces.len());
    if input.faces.is_empty() {
        let a = input
            .whole_image
            .as_ref()
            .ok_or(CertifyError::NothingToCompare { side: "input" })?;
        let b = output
            .whole_image
            .as_ref()
            .ok_or(CertifyError::NothingToCompare { side: "output" })?;
        let distance = whole_image_metric.distance(a, b)?;
        return Ok(Comparison {
            certificate: CertificateKind::WholeImage,
            metric: whole_image_metric,
            distance: Some(distance),
            similarity: whole_image_metric.similarity_of(distance),
            closest: Some(Pair {
                input: Subject::WholeImage,
                output: Subject::WholeImage,
                distance,
            }),
            correspondences: Vec::new(),
            faces_in,
            faces_out,
        });
    }
    let mut closest: Option<Pair> = None;
    let mut distances = vec![vec![0.0f32; faces_out]; faces_in];
    let missing = |side| CertifyError::NothingToCompare { side };
    for (i, a) in input.faces.iter().enumerate() {
        for (o, b) in output.faces.iter().enumerate() {
            let distance = face_metric.distance(
                embedding_of(a).ok_or(missing("input"))?,
                embedding_of(b).ok_or(missing("output"))?,
            )?;
            distances[i][o] = distance;
            if closest.is_none_or(|p| distance < p.distance) {
                closest = Some(Pair {
                    input: Subject::Face(i),
                    output: Subject::Face(o),
                    distance,
                });
            }
        }
    }
    let correspondences: Vec<Correspondence> = correspond(input, output)
        .into_iter()
        .enumerate()
        .map(|(i, paired)| Correspondence {
            input: i,
            output: paired.map(|(o, _)| o),
            iou: paired.map_or(0.0, |(_, iou)| iou),
            distance: paired.map(|(o, _)| distances[i][o]),
        })
        .collect();
    let certificate = if correspondences.iter().all(|c| c.output.is_some()) {
        CertificateKind::Face
    } else {
        CertificateKind::FaceLost
    };
    let distance = closest.map(|p| p.distance);
    Ok(Comparison {
        certificate,
        metric: face_metric,
        distance,
        similarity: distance.and_then(|d| face_metric.similarity_of(d)),
        closest,
        correspondences,
        faces_in,
        faces_out,
    })
}

/// A comparison judged at an operating point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub operating_point: String,
    pub rule: String,
    /// Some compared pair is the same identity at the operating point.
    pub same_identity: bool,
}

impl Verdict {
    pub fn new(point: &OperatingPoint, comparison: &Comparison) -> Self {
        Self {
            operating_point: point.name.clone(),
            rule: point.rule(),
            same_identity: !comparison.all_pairs_differ(point),
        }
    }
}

/// Detector + face embedder (+ an optional whole-image embedder and second-opinion face
/// embedders), loaded once and used image after image.
pub struct Certifier {
    detector: FaceDetector,
    /// The detector file and its sha256, which a second opinion's pin must name.
    detector_file: PinnedDetector,
    embedder: Embedder,
    /// Embeds whole images for [`CertificateKind::WholeImage`]; without it the face embedder
    /// embeds a centre crop, which says little (the comparison records whose metric it used).
    whole_image_embedder: Option<Embedder>,
    /// Face embedders that must agree, each with the operating point it judges at.
    second_opinions: Vec<(Embedder, OperatingPoint)>,
}

/// One second opinion on a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opinion {
    /// The embedder spec's name.
    pub embedder: String,
    pub comparison: Comparison,
    pub operating_point: OperatingPoint,
    /// Every compared pair is a different identity at its operating point.
    pub differs: bool,
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
        let detector_sha256 = crate::io::hashing::sha256_file(detector_model).map_err(|e| {
            CertifyError::DetectorRead {
                path: detector_model.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        if embedder.spec().is_whole_image() {
            return Err(CertifyError::WrongSubject {
                spec: embedder_spec.to_path_buf(),
                role: "the face embedder",
                wanted: "face",
            });
        }
        Ok(Self {
            detector,
            detector_file: PinnedDetector {
                path: detector_model.to_path_buf(),
                sha256: detector_sha256,
            },
            embedder,
            whole_image_embedder: None,
            second_opinions: Vec::new(),
        })
    }

    /// Embeds whole images with the embedder of `spec` (`subject = "whole-image"`) instead of
    /// a centre crop through the face embedder.
    pub fn with_whole_image_embedder(
        mut self,
        runtime: &Runtime,
        spec: &Path,
        options: &SessionOptions,
    ) -> Result<Self, CertifyError> {
        let loaded = EmbedderSpec::load(spec)?;
        if !loaded.is_whole_image() {
            return Err(CertifyError::WrongSubject {
                spec: spec.to_path_buf(),
                role: "a whole-image (feature) embedder",
                wanted: "whole-image",
            });
        }
        self.whole_image_embedder = Some(Embedder::load(runtime, loaded, options)?);
        Ok(self)
    }

    /// Adds a face embedder whose verdict must agree, judged at `operating_point` of its spec
    /// (`None`: its default point).
    pub fn with_second_opinion(
        mut self,
        runtime: &Runtime,
        spec: &Path,
        operating_point: Option<&str>,
        options: &SessionOptions,
    ) -> Result<Self, CertifyError> {
        let loaded = EmbedderSpec::load(spec)?;
        if loaded.is_whole_image() {
            return Err(CertifyError::WrongSubject {
                spec: spec.to_path_buf(),
                role: "a second opinion",
                wanted: "face",
            });
        }
        // A second opinion embeds the faces the certifying detector found: its thresholds hold
        // only for the detector (and alignment) it was pinned with.
        if let Some(expected) = &loaded.detector_sha256 {
            if !expected.eq_ignore_ascii_case(&self.detector_file.sha256) {
                return Err(CertifyError::DetectorHash {
                    path: self.detector_file.path.clone(),
                    spec: spec.to_path_buf(),
                    found: self.detector_file.sha256.clone(),
                    expected: expected.clone(),
                });
            }
        }
        let point = loaded.operating_point(operating_point)?.clone();
        let embedder = Embedder::load(runtime, loaded, options)?;
        self.second_opinions.push((embedder, point));
        Ok(self)
    }

    /// The specs of the second-opinion embedders, in order.
    pub fn second_opinion_specs(&self) -> impl Iterator<Item = &EmbedderSpec> {
        self.second_opinions.iter().map(|(e, _)| e.spec())
    }

    pub fn spec(&self) -> &EmbedderSpec {
        self.embedder.spec()
    }

    /// The spec of the embedder whole images are embedded with.
    pub fn whole_image_spec(&self) -> &EmbedderSpec {
        self.whole_image_embedder
            .as_ref()
            .unwrap_or(&self.embedder)
            .spec()
    }

    /// Finds, aligns and embeds every face of an input; embeds the whole image when there is
    /// none.
    pub fn analyze(&mut self, image: &DynamicImage) -> Result<FaceAnalysis, CertifyError> {
        self.analyze_with(image, None)
    }

    /// [`Self::analyze`] of an output made from `input`: the whole image is embedded exactly
    /// when the input has no face, whatever the output shows.
    pub fn analyze_output(
        &mut self,
        image: &DynamicImage,
        input: &FaceAnalysis,
    ) -> Result<FaceAnalysis, CertifyError> {
        self.analyze_with(image, Some(input.faces.is_empty()))
    }

    /// `whole_image`: whether to embed the whole image; `None`: when no face is found.
    fn analyze_with(
        &mut self,
        image: &DynamicImage,
        whole_image: Option<bool>,
    ) -> Result<FaceAnalysis, CertifyError> {
        let rgb = image.to_rgb8();
        let detections = self.detector.detect(&rgb)?;
        let mut faces = Vec::with_capacity(detections.len());
        for (i, detection) in detections.into_iter().enumerate() {
            let align_error = |source| CertifyError::Align { face: i, source };
            let chip =
                align::align_face(&rgb, &detection, self.embedder.spec()).map_err(align_error)?;
            let mut second_opinions = Vec::with_capacity(self.second_opinions.len());
            for (embedder, _) in &mut self.second_opinions {
                let chip =
                    align::align_face(&rgb, &detection, embedder.spec()).map_err(align_error)?;
                second_opinions.push(embedder.embed(&chip)?);
            }
            faces.push(Face {
                embedding: self.embedder.embed(&chip)?,
                second_opinions,
                bbox: detection.bbox,
                score: detection.score,
                keypoints: detection.keypoints,
            });
        }
        let whole_image = if whole_image.unwrap_or(faces.is_empty()) {
            Some(match self.whole_image_embedder.as_mut() {
                Some(embedder) => embedder.embed_whole_image(&rgb)?,
                None => {
                    let [w, h] = self.embedder.spec().input_size;
                    self.embedder.embed(&align::whole_image_chip(&rgb, w, h))?
                }
            })
        } else {
            None
        };
        Ok(FaceAnalysis {
            width: rgb.width(),
            height: rgb.height(),
            faces,
            whole_image,
        })
    }

    /// [`compare`] with this certifier's metrics.
    pub fn compare(
        &self,
        input: &FaceAnalysis,
        output: &FaceAnalysis,
    ) -> Result<Comparison, CertifyError> {
        compare(
            self.spec().metric,
            self.whole_image_spec().metric,
            input,
            output,
        )
    }

    /// Each second opinion on the faces of `input` and `output` (none for a whole-image
    /// comparison: second opinions are face matchers).
    pub fn second_opinions(
        &self,
        input: &FaceAnalysis,
        output: &FaceAnalysis,
    ) -> Result<Vec<Opinion>, CertifyError> {
        if input.faces.is_empty() {
            return Ok(Vec::new());
        }
        let metric = self.whole_image_spec().metric;
        self.second_opinions
            .iter()
            .enumerate()
            .map(|(k, (embedder, point))| {
                let comparison = compare_by(embedder.spec().metric, metric, input, output, |f| {
                    f.second_opinions.get(k)
                })?;
                Ok(Opinion {
                    embedder: embedder.spec().name.clone(),
                    differs: comparison.all_pairs_differ(point),
                    operating_point: point.clone(),
                    comparison,
                })
            })
            .collect()
    }

    /// The operating point a comparison of `kind` is judged at: `face_point` (a point of the
    /// face embedder) for faces, the whole-image embedder's default point for whole images
    /// when there is a whole-image embedder.
    pub fn operating_point(
        &self,
        kind: CertificateKind,
        face_point: Option<&str>,
    ) -> Result<&OperatingPoint, CertifyError> {
        match (kind, &self.whole_image_embedder) {
            (CertificateKind::WholeImage, Some(embedder)) => {
                Ok(embedder.spec().operating_point(None)?)
            }
            _ => Ok(self.spec().operating_point(face_point)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face at box (x, y)-(x+10, y+10).
    fn face_at(x: f32, y: f32, v: &[f32]) -> Face {
        let p = Point { x: 0.0, y: 0.0 };
        Face {
            bbox: BoundingBox {
                x0: x,
                y0: y,
                x1: x + 10.0,
                y1: y + 10.0,
            },
            score: 0.9,
            keypoints: [p; 6],
            embedding: Embedding::new(v.to_vec()).unwrap(),
            second_opinions: Vec::new(),
        }
    }

    fn analysis(size: u32, faces: Vec<Face>, whole_image: Option<&[f32]>) -> FaceAnalysis {
        FaceAnalysis {
            width: size,
            height: size,
            faces,
            whole_image: whole_image.map(|v| Embedding::new(v.to_vec()).unwrap()),
        }
    }

    fn face_compare(input: &FaceAnalysis, output: &FaceAnalysis) -> Comparison {
        compare(Metric::Euclidean, Metric::Cosine, input, output).unwrap()
    }

    #[test]
    fn faces_pair_by_place_and_every_cross_pair_counts() {
        let input = analysis(
            100,
            vec![
                face_at(0.0, 0.0, &[0.0, 0.0]),
                face_at(50.0, 50.0, &[10.0, 0.0]),
            ],
            None,
        );
        // Output face 0 sits where input face 1 was, and looks like input face 0 (a face moved
        // onto its neighbour's place): the cross pair decides.
        let output = analysis(
            100,
            vec![
                face_at(51.0, 50.0, &[0.0, 0.5]),
                face_at(1.0, 0.0, &[10.0, 9.0]),
            ],
            None,
        );
        let c = face_compare(&input, &output);
        assert_eq!(c.certificate, CertificateKind::Face);
        assert_eq!(c.correspondences[0].output, Some(1));
        assert_eq!(
            c.correspondences[0].distance,
            Some((100.0f32 + 81.0).sqrt())
        );
        assert_eq!(c.correspondences[1].output, Some(0));
        assert!(c.correspondences[1].iou > 0.8);
        assert_eq!(c.distance, Some(0.5));
        let closest = c.closest.unwrap();
        assert_eq!(
            (closest.input, closest.output),
            (Subject::Face(0), Subject::Face(0))
        );
        let point = OperatingPoint {
            name: "p".into(),
            max_distance: Some(0.6),
            min_similarity: None,
            provenance: String::new(),
            ..OperatingPoint::default()
        };
        assert!(!c.all_pairs_differ(&point));
        assert!(Verdict::new(&point, &c).same_identity);
    }

    #[test]
    fn a_face_without_a_counterpart_is_lost_not_certified_by_a_whole_image() {
        let input = analysis(100, vec![face_at(0.0, 0.0, &[0.0, 0.0])], None);
        // No face found in the output: no pair, whatever its whole-image embedding says.
        let empty = analysis(100, vec![], Some(&[5.0, 5.0]));
        let c = face_compare(&input, &empty);
        assert_eq!(c.certificate, CertificateKind::FaceLost);
        assert_eq!((c.distance, c.closest), (None, None));
        assert_eq!(c.correspondences[0].output, None);
        // A face elsewhere is not this face's counterpart, but still compared with it.
        let moved = analysis(100, vec![face_at(60.0, 60.0, &[3.0, 4.0])], None);
        let c = face_compare(&input, &moved);
        assert_eq!(c.certificate, CertificateKind::FaceLost);
        assert_eq!(c.distance, Some(5.0));
        assert_eq!(c.correspondences[0].iou, 0.0);
    }

    #[test]
    fn boxes_compare_as_fractions_of_their_image() {
        let input = analysis(100, vec![face_at(20.0, 20.0, &[0.0, 0.0])], None);
        // The same face in a copy at twice the size.
        let mut output = analysis(200, vec![face_at(40.0, 40.0, &[1.0, 0.0])], None);
        output.faces[0].bbox.x1 = 60.0;
        output.faces[0].bbox.y1 = 60.0;
        let c = face_compare(&input, &output);
        assert_eq!(c.certificate, CertificateKind::Face);
        assert!((c.correspondences[0].iou - 1.0).abs() < 1e-6);
    }

    #[test]
    fn faceless_inputs_compare_whole_images_with_the_whole_image_metric() {
        let input = analysis(10, vec![], Some(&[1.0, 0.0]));
        // Faces appearing in the output do not matter: the input had none to protect.
        let output = analysis(10, vec![face_at(0.0, 0.0, &[0.0, 0.0])], Some(&[0.0, 1.0]));
        let c = face_compare(&input, &output);
        assert_eq!(c.certificate, CertificateKind::WholeImage);
        assert_eq!(c.metric, Metric::Cosine);
        assert!((c.distance.unwrap() - 1.0).abs() < 1e-6);
        assert!(c.similarity.unwrap().abs() < 1e-6);
        let broken = analysis(10, vec![], None);
        assert!(matches!(
            compare(Metric::Euclidean, Metric::Cosine, &input, &broken),
            Err(CertifyError::NothingToCompare { side: "output" })
        ));
    }

    #[test]
    fn certificate_kinds_round_trip_their_names() {
        for kind in CertificateKind::ALL {
            assert_eq!(CertificateKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CertificateKind::parse("whole"), None);
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
