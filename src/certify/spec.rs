//! Embedder spec: everything boomerang needs to know about an identity embedder's ONNX graph, in a
//! TOML file next to it, so that another embedder (ArcFace, FaceNet, AdaFace...) is a new spec
//! file rather than new code.
//!
//! ```toml
//! name = "arcface-r100"
//! onnx = "arcface-r100.onnx"          # relative to the spec file
//! sha256 = "..."                      # optional; checked when the model is loaded
//! detector = "../face-detector/blazeface-full-range.onnx"  # relative to the spec file
//! detector-sha256 = "..."             # the detector's pin; a mismatch is refused
//! input-name = "input"
//! output-name = "embedding"
//! input-size = [112, 112]             # [width, height] of the aligned chip
//! layout = "nchw"                     # or "nhwc"
//! channel-order = "rgb"               # or "bgr"
//! mean = [127.5, 127.5, 127.5]        # tensor = (pixel - mean) / std, pixel in 0..=255
//! std = [127.5, 127.5, 127.5]
//! metric = "cosine"                   # or "euclidean"
//! l2-normalize = false                # optional: normalize embeddings before the metric
//! default-operating-point = "fmr-1e-3"
//! subject = "face"                    # optional: "face" (default) or "whole-image"
//!
//! [alignment]                         # required for faces; a whole-image spec has none.
//!                                     # Eye centers in the chip, fractions of width / height;
//! left-eye = [0.3419, 0.4616]         # left = left side of the chip (the subject's right eye)
//! right-eye = [0.6565, 0.4598]
//!
//! [[operating-point]]
//! name = "fmr-1e-3"
//! min-similarity = 0.245              # cosine only; or max-distance = ... (any metric)
//! provenance = "where the threshold comes from"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metric::Metric;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read embedder spec {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedder spec {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("embedder spec {path}, key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("embedder spec {path} has no operating point `{name}` (it has: {known})")]
    UnknownOperatingPoint {
        path: PathBuf,
        name: String,
        known: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// What an embedder is given: aligned face chips, or whole pictures (a general image feature
/// embedder for images without faces, judged by a near-duplicate threshold, not an identity one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedderSubject {
    #[default]
    Face,
    WholeImage,
}

/// Eye centers in the aligned chip, as fractions of its width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Alignment {
    /// The eye on the left of the chip: the subject's right eye.
    pub left_eye: [f32; 2],
    pub right_eye: [f32; 2],
}

/// A named decision threshold with where it comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OperatingPoint {
    pub name: String,
    /// Same identity when the distance is below this.
    pub max_distance: Option<f32>,
    /// Same identity when the cosine similarity is at least this (cosine metric only).
    pub min_similarity: Option<f32>,
    pub provenance: String,
    /// Measured false-match rate on the calibration set (`boomerang calibrate --write`): the
    /// share of different-identity pairs this point calls the same identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_fmr: Option<f64>,
    /// Measured false non-match rate on the calibration set: the share of same-identity pairs
    /// this point calls different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_fnmr: Option<f64>,
    /// Same-identity pairs the measurement counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genuine_pairs: Option<u64>,
    /// Different-identity pairs the measurement counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impostor_pairs: Option<u64>,
    /// sha256 of the calibration set (its sorted relative paths and file sha256s, see
    /// [`super::calibrate::set_sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_sha256: Option<String>,
}

impl OperatingPoint {
    /// Whether a pair at `distance` (the metric's distance, see [`Metric::distance`]) counts as
    /// the same identity at this operating point.
    pub fn same_identity(&self, distance: f32) -> bool {
        match (self.max_distance, self.min_similarity) {
            (Some(max), _) => distance < max,
            // Validation guarantees min-similarity only with the cosine metric.
            (None, Some(min)) => Metric::Cosine.similarity(distance) >= min,
            (None, None) => false,
        }
    }

    /// The threshold as a distance in the metric (a cosine similarity s is the distance 1 - s):
    /// what the report's `threshold` column records.
    pub fn distance_threshold(&self) -> Option<f32> {
        self.max_distance
            .or(self.min_similarity.map(|similarity| 1.0 - similarity))
    }

    /// The rule in words, e.g. "distance < 0.6".
    pub fn rule(&self) -> String {
        match (self.max_distance, self.min_similarity) {
            (Some(max), _) => format!("distance < {max}"),
            (None, Some(min)) => format!("cosine similarity >= {min}"),
            (None, None) => "no threshold".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EmbedderSpec {
    pub name: String,
    pub onnx: PathBuf,
    pub sha256: Option<String>,
    /// The face detector ONNX file, relative to the spec's folder (default: looked up in the
    /// model folders, see [`super::resolve_detector`]).
    #[serde(default)]
    pub detector: Option<PathBuf>,
    /// The detector's sha256: the detector that finds the faces decides every certificate, so it
    /// is pinned like the embedder graph.
    #[serde(default)]
    pub detector_sha256: Option<String>,
    pub input_name: String,
    pub output_name: String,
    pub input_size: [u32; 2],
    pub layout: Layout,
    pub channel_order: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub metric: Metric,
    #[serde(default)]
    pub l2_normalize: bool,
    pub default_operating_point: String,
    /// Faces (the default) or whole images.
    #[serde(default)]
    pub subject: EmbedderSubject,
    /// Where the eyes go in the chip: required for a face embedder, refused for a whole-image one.
    #[serde(default)]
    pub alignment: Option<Alignment>,
    #[serde(rename = "operating-point")]
    pub operating_points: Vec<OperatingPoint>,
    /// Where the spec was read from; the ONNX path is relative to its folder.
    #[serde(skip)]
    pub source: PathBuf,
}

/// Largest accepted chip side; far above any face embedder's input, it only catches typos.
const MAX_INPUT_SIDE: u32 = 2048;

impl EmbedderSpec {
    /// Reads and validates a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates spec text; `path` names the file in errors and anchors `onnx`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let mut spec: EmbedderSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        spec.source = path.to_path_buf();
        spec.validate()?;
        Ok(spec)
    }

    /// The ONNX file, resolved against the spec's folder.
    pub fn onnx_path(&self) -> PathBuf {
        match self.source.parent() {
            Some(dir) => dir.join(&self.onnx),
            None => self.onnx.clone(),
        }
    }

    /// The detector file the spec names, resolved against the spec's folder.
    pub fn detector_path(&self) -> Option<PathBuf> {
        let detector = self.detector.as_ref()?;
        Some(match self.source.parent() {
            Some(dir) => dir.join(detector),
            None => detector.clone(),
        })
    }

    /// Whether the spec embeds whole images (center crop resized to `input-size`) rather than
    /// aligned faces.
    pub fn is_whole_image(&self) -> bool {
        self.subject == EmbedderSubject::WholeImage
    }

    /// The operating point called `name`, or the spec's default one.
    pub fn operating_point(&self, name: Option<&str>) -> Result<&OperatingPoint, SpecError> {
        let name = name.unwrap_or(&self.default_operating_point);
        self.operating_points
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| SpecError::UnknownOperatingPoint {
                path: self.source.clone(),
                name: name.to_string(),
                known: self
                    .operating_points
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    fn invalid(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            path: self.source.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        for (key, value) in [
            ("name", &self.name),
            ("input-name", &self.input_name),
            ("output-name", &self.output_name),
        ] {
            if value.trim().is_empty() {
                return Err(self.invalid(key, "must not be empty"));
            }
        }
        // The report's second_opinions cell is `name:distance:threshold;...`.
        if self.name.contains([':', ';']) || self.name.chars().any(char::is_control) {
            return Err(self.invalid(
                "name",
                "must not hold `:`, `;` or control characters (the report separates names and figures with them)",
            ));
        }
        if self.onnx.as_os_str().is_empty() {
            return Err(self.invalid("onnx", "must name the model file"));
        }
        for (key, pin) in [
            ("sha256", &self.sha256),
            ("detector-sha256", &self.detector_sha256),
        ] {
            if let Some(sha) = pin {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(self.invalid(key, "must be 64 hexadecimal digits"));
                }
            }
        }
        if self
            .detector
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(self.invalid("detector", "must name the detector model file"));
        }
        let [w, h] = self.input_size;
        if w == 0 || h == 0 || w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE {
            return Err(self.invalid(
                "input-size",
                format!("[{w}, {h}]: each side must be 1..={MAX_INPUT_SIDE} pixels"),
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(self.invalid("mean", "values must be finite"));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            return Err(self.invalid("std", "values must be finite and non-zero"));
        }
        self.validate_alignment()?;
        self.validate_operating_points()
    }

    fn validate_alignment(&self) -> Result<(), SpecError> {
        let alignment = match (self.subject, self.alignment) {
            (EmbedderSubject::WholeImage, None) => {
                return match (&self.detector, &self.detector_sha256) {
                    (None, None) => Ok(()),
                    (Some(_), _) => Err(self.invalid(
                        "detector",
                        "a whole-image embedder (subject = \"whole-image\") looks for no faces; remove it",
                    )),
                    (None, Some(_)) => Err(self.invalid(
                        "detector-sha256",
                        "a whole-image embedder (subject = \"whole-image\") looks for no faces; remove it",
                    )),
                }
            }
            (EmbedderSubject::WholeImage, Some(_)) => {
                return Err(self.invalid(
                    "alignment",
                    "a whole-image embedder (subject = \"whole-image\") is given whole pictures, not aligned faces; remove [alignment]",
                ))
            }
            (EmbedderSubject::Face, None) => {
                return Err(self.invalid(
                    "alignment",
                    "a face embedder needs [alignment] (left-eye, right-eye); for a general image embedder set subject = \"whole-image\"",
                ))
            }
            (EmbedderSubject::Face, Some(alignment)) => alignment,
        };
        let Alignment {
            left_eye,
            right_eye,
        } = alignment;
        for (key, eye) in [
            ("alignment.left-eye", left_eye),
            ("alignment.right-eye", right_eye),
        ] {
            if eye.iter().any(|v| !(0.0..=1.0).contains(v)) {
                return Err(self.invalid(
                    key,
                    format!("{eye:?}: coordinates are fractions of the chip size, in 0..=1"),
                ));
            }
        }
        if left_eye[0] >= right_eye[0] {
            return Err(self.invalid(
                "alignment.left-eye",
                "must be left of alignment.right-eye (the left eye is the one on the chip's left)",
            ));
        }
        Ok(())
    }

    fn validate_operating_points(&self) -> Result<(), SpecError> {
        const KEY: &str = "operating-point";
        if self.operating_points.is_empty() {
            return Err(self.invalid(KEY, "at least one [[operating-point]] is required"));
        }
        for (i, point) in self.operating_points.iter().enumerate() {
            let key = format!("{KEY}[{i}]");
            if point.name.trim().is_empty() {
                return Err(self.invalid(&format!("{key}.name"), "must not be empty"));
            }
            if self.operating_points[..i]
                .iter()
                .any(|p| p.name == point.name)
            {
                return Err(self.invalid(
                    &format!("{key}.name"),
                    format!("`{}` is defined twice", point.name),
                ));
            }
            if point.provenance.trim().is_empty() {
                return Err(self.invalid(
                    &format!("{key}.provenance"),
                    "say where the threshold comes from",
                ));
            }
            for (field, rate) in [
                ("measured-fmr", point.measured_fmr),
                ("measured-fnmr", point.measured_fnmr),
            ] {
                if rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
                    return Err(self.invalid(&format!("{key}.{field}"), "must be in 0..=1"));
                }
            }
            if let Some(sha) = &point.calibration_sha256 {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(self.invalid(
                        &format!("{key}.calibration-sha256"),
                        "must be 64 hexadecimal digits",
                    ));
                }
            }
            match (point.max_distance, point.min_similarity) {
                (Some(d), None) if d.is_finite() && d > 0.0 => {}
                (Some(_), None) => {
                    return Err(
                        self.invalid(&format!("{key}.max-distance"), "must be a positive number")
                    )
                }
                (None, Some(s)) if self.metric != Metric::Cosine => {
                    return Err(self.invalid(
                        &format!("{key}.min-similarity"),
                        format!(
                        "{s}: a similarity threshold needs metric = \"cosine\"; use max-distance"
                    ),
                    ))
                }
                (None, Some(s)) if (-1.0..=1.0).contains(&s) => {}
                (None, Some(_)) => {
                    return Err(self.invalid(&format!("{key}.min-similarity"), "must be in -1..=1"))
                }
                _ => {
                    return Err(
                        self.invalid(&key, "give exactly one of max-distance or min-similarity")
                    )
                }
            }
        }
        if !self
            .operating_points
            .iter()
            .any(|p| p.name == self.default_operating_point)
        {
            return Err(self.invalid(
                "default-operating-point",
                format!(
                    "`{}` is not one of the [[operating-point]] names",
                    self.default_operating_point
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "test"
onnx = "model.onnx"
input-name = "input"
output-name = "embedding"
input-size = [112, 112]
layout = "nhwc"
channel-order = "bgr"
mean = [127.5, 127.5, 127.5]
std = [127.5, 127.5, 127.5]
metric = "cosine"
default-operating-point = "strict"

[alignment]
left-eye = [0.34, 0.46]
right-eye = [0.66, 0.46]

[[operating-point]]
name = "strict"
min-similarity = 0.3
provenance = "test"

[[operating-point]]
name = "loose"
max-distance = 0.8
provenance = "test"
"#;

    fn parse(text: &str) -> Result<EmbedderSpec, SpecError> {
        EmbedderSpec::parse(text, Path::new("/specs/x/embedder.toml"))
    }

    fn invalid_key(text: &str) -> String {
        match parse(text) {
            Err(SpecError::Invalid { key, path, .. }) => {
                assert_eq!(path, Path::new("/specs/x/embedder.toml"));
                key
            }
            other => panic!("expected an invalid-key error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_complete_spec_and_resolves_the_model_next_to_it() {
        let spec = parse(SPEC).unwrap();
        assert_eq!(spec.layout, Layout::Nhwc);
        assert_eq!(spec.channel_order, ChannelOrder::Bgr);
        assert_eq!(spec.metric, Metric::Cosine);
        assert!(!spec.l2_normalize);
        assert_eq!(spec.onnx_path(), Path::new("/specs/x/model.onnx"));
        assert_eq!(spec.operating_point(None).unwrap().name, "strict");
        assert_eq!(
            spec.operating_point(Some("loose")).unwrap().max_distance,
            Some(0.8)
        );
        match spec.operating_point(Some("nope")) {
            Err(SpecError::UnknownOperatingPoint { known, .. }) => {
                assert_eq!(known, "strict, loose")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operating_points_decide_in_their_own_units() {
        let spec = parse(SPEC).unwrap();
        let strict = spec.operating_point(Some("strict")).unwrap();
        // cosine distance 0.6 is similarity 0.4 >= 0.3; distance 0.8 is similarity 0.2.
        assert!(strict.same_identity(0.6));
        assert!(!strict.same_identity(0.8));
        let loose = spec.operating_point(Some("loose")).unwrap();
        assert!(loose.same_identity(0.79));
        assert!(!loose.same_identity(0.8));
        assert_eq!(strict.rule(), "cosine similarity >= 0.3");
        assert_eq!(loose.rule(), "distance < 0.8");
    }

    #[test]
    fn unknown_keys_are_rejected_with_file_and_key() {
        let err =
            parse(&SPEC.replace("layout = \"nhwc\"", "layout = \"nhwc\"\nlayuot = 1")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/specs/x/embedder.toml") && text.contains("layuot"),
            "{text}"
        );
    }

    #[test]
    fn bad_enum_values_name_the_key() {
        let text = parse(&SPEC.replace("\"nhwc\"", "\"chw\""))
            .unwrap_err()
            .to_string();
        assert!(text.contains("layout") && text.contains("chw"), "{text}");
        let text = parse(&SPEC.replace("\"cosine\"", "\"manhattan\""))
            .unwrap_err()
            .to_string();
        assert!(text.contains("metric"), "{text}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        for (from, to, key) in [
            ("[112, 112]", "[0, 112]", "input-size"),
            (
                "std = [127.5, 127.5, 127.5]",
                "std = [1.0, 0.0, 1.0]",
                "std",
            ),
            ("[0.34, 0.46]", "[0.7, 0.46]", "alignment.left-eye"),
            ("[0.66, 0.46]", "[1.5, 0.46]", "alignment.right-eye"),
            (
                "default-operating-point = \"strict\"",
                "default-operating-point = \"x\"",
                "default-operating-point",
            ),
            (
                "metric = \"cosine\"",
                "metric = \"euclidean\"",
                "operating-point[0].min-similarity",
            ),
            (
                "name = \"loose\"",
                "name = \"strict\"",
                "operating-point[1].name",
            ),
            (
                "max-distance = 0.8",
                "max-distance = 0.8\nmin-similarity = 0.1",
                "operating-point[1]",
            ),
            (
                "max-distance = 0.8",
                "max-distance = -1.0",
                "operating-point[1].max-distance",
            ),
            (
                "onnx = \"model.onnx\"",
                "onnx = \"m.onnx\"\nsha256 = \"abc\"",
                "sha256",
            ),
            ("name = \"test\"", "name = \"a:b\"", "name"),
            ("name = \"test\"", "name = \"a;b\"", "name"),
            (
                "provenance = \"test\"\n\n",
                "provenance = \" \"\n\n",
                "operating-point[0].provenance",
            ),
        ] {
            assert_eq!(invalid_key(&SPEC.replace(from, to)), key, "{from} -> {to}");
        }
    }

    #[test]
    fn whole_image_specs_have_no_alignment_and_no_detector() {
        let alignment = "[alignment]\nleft-eye = [0.34, 0.46]\nright-eye = [0.66, 0.46]\n";
        assert!(SPEC.contains(alignment));
        let whole = SPEC.replace(alignment, "").replace(
            "metric = \"cosine\"",
            "metric = \"cosine\"\nsubject = \"whole-image\"",
        );
        let spec = parse(&whole).unwrap();
        assert_eq!(spec.subject, EmbedderSubject::WholeImage);
        assert!(spec.is_whole_image() && spec.alignment.is_none());
        // A face spec is the default and keeps its alignment.
        let face = parse(SPEC).unwrap();
        assert_eq!(face.subject, EmbedderSubject::Face);
        assert!(!face.is_whole_image() && face.alignment.is_some());

        let with_alignment = SPEC.replace(
            "metric = \"cosine\"",
            "metric = \"cosine\"\nsubject = \"whole-image\"",
        );
        assert_eq!(invalid_key(&with_alignment), "alignment");
        for (extra, key) in [
            ("detector = \"d.onnx\"", "detector"),
            (
                &format!("detector-sha256 = \"{}\"", "a".repeat(64)),
                "detector-sha256",
            ),
        ] {
            let text = whole.replace(
                "onnx = \"model.onnx\"",
                &format!("onnx = \"model.onnx\"\n{extra}"),
            );
            assert_eq!(invalid_key(&text), key, "{extra}");
        }
        assert_eq!(invalid_key(&SPEC.replace(alignment, "")), "alignment");
        let text = parse(&whole.replace("whole-image", "hands"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("subject") && text.contains("hands"), "{text}");
    }

    #[test]
    fn the_committed_specs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dlib = EmbedderSpec::load(&root.join("models/dlib-face/embedder.toml")).unwrap();
        assert_eq!(dlib.metric, Metric::Euclidean);
        assert_eq!(dlib.operating_point(None).unwrap().max_distance, Some(0.6));
        assert!(dlib.onnx_path().is_file());
        assert!(dlib.detector_path().unwrap().is_file());
        assert!(dlib.detector_sha256.is_some());
        // The fetched embedders' specs are committed (their models are not: tools/fetch_models.py).
        let feature =
            EmbedderSpec::load(&root.join("models/efficientnet-lite0/embedder.toml")).unwrap();
        assert!(feature.is_whole_image() && feature.sha256.is_some());
        let face = EmbedderSpec::load(&root.join("models/mobilefacenet/embedder.toml")).unwrap();
        assert!(!face.is_whole_image() && face.sha256.is_some());
        assert_eq!(face.detector_sha256, dlib.detector_sha256);
        let alt = EmbedderSpec::load(&root.join("tests/fixtures/faces/embedder-alt.toml")).unwrap();
        assert_eq!(
            std::fs::canonicalize(alt.onnx_path()).unwrap(),
            std::fs::canonicalize(dlib.onnx_path()).unwrap()
        );
    }
}
