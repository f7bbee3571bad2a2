//! Face detection with MediaPipe's BlazeFace (short range) ONNX graph, decoded as MediaPipe's
//! `face_detection_short_range.pbtxt` does: 896 SSD anchors, sigmoid scores, weighted NMS.

use std::path::{Path, PathBuf};

use image::{imageops, RgbImage};
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::io::runtime::{Runtime, RuntimeError, SessionOptions};

/// Side of the square the network sees.
pub const INPUT_SIZE: u32 = 128;
const NUM_ANCHORS: usize = 896;
const NUM_COORDS: usize = 16;
const NUM_KEYPOINTS: usize = 6;
/// MediaPipe clips logits to this before the sigmoid.
const SCORE_CLIP: f32 = 100.0;

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("face detector {path}: {message}")]
    Graph { path: PathBuf, message: String },
    #[error("face detector: ONNX Runtime failed while running: {0}")]
    Run(String),
    #[error("face detector: {output} has {found} values, expected {expected}")]
    OutputSize {
        output: &'static str,
        found: usize,
        expected: usize,
    },
    #[error("cannot detect faces in an empty ({width}x{height}) image")]
    EmptyImage { width: u32, height: u32 },
    #[error("face detector config: {0}")]
    Config(String),
}

/// How overlapping candidates are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nms {
    /// MediaPipe's: a kept face is the score-weighted mean of the candidates it suppresses.
    Weighted,
    /// Classic: the best candidate is kept as is.
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetectorConfig {
    /// Minimum face probability.
    pub min_score: f32,
    /// Candidates overlapping a kept face by more than this IoU are merged into it.
    pub iou_threshold: f32,
    pub nms: Nms,
}

impl Default for DetectorConfig {
    /// MediaPipe's face_detection_short_range.pbtxt values.
    fn default() -> Self {
        Self {
            min_score: 0.5,
            iou_threshold: 0.3,
            nms: Nms::Weighted,
        }
    }
}

impl DetectorConfig {
    fn validate(&self) -> Result<(), DetectorError> {
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(DetectorError::Config(format!(
                "min_score {} is not in 0..=1",
                self.min_score
            )));
        }
        if !(0.0..=1.0).contains(&self.iou_threshold) {
            return Err(DetectorError::Config(format!(
                "iou_threshold {} is not in 0..=1",
                self.iou_threshold
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// Axis-aligned box, corners in pixels (x0, y0) top-left, (x1, y1) bottom-right.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundingBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BoundingBox {
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// BlazeFace's keypoints, in its output order. Left and right are the subject's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keypoint {
    RightEye = 0,
    LeftEye = 1,
    NoseTip = 2,
    MouthCenter = 3,
    RightEarTragion = 4,
    LeftEarTragion = 5,
}

/// One face: box and keypoints in image pixels (pixel `i` covers `i..i+1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub bbox: BoundingBox,
    pub score: f32,
    /// In [`Keypoint`] order.
    pub keypoints: [Point; NUM_KEYPOINTS],
}

impl Detection {
    pub fn keypoint(&self, which: Keypoint) -> Point {
        self.keypoints[which as usize]
    }

    fn map(&self, f: impl Fn(Point) -> Point) -> Detection {
        let a = f(Point {
            x: self.bbox.x0,
            y: self.bbox.y0,
        });
        let b = f(Point {
            x: self.bbox.x1,
            y: self.bbox.y1,
        });
        Detection {
            bbox: BoundingBox {
                x0: a.x,
                y0: a.y,
                x1: b.x,
                y1: b.y,
            },
            score: self.score,
            keypoints: self.keypoints.map(f),
        }
    }
}

/// SSD anchor center in unit coordinates of the network input; BlazeFace anchors have unit size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub x: f32,
    pub y: f32,
}

/// MediaPipe's SsdAnchorsCalculator for BlazeFace short range: strides 8, 16, 16, 16 with two
/// anchors per layer, layers of equal stride sharing a grid: 16x16x2 + 8x8x6 = 896.
pub fn anchors() -> Vec<Anchor> {
    let mut out = Vec::with_capacity(NUM_ANCHORS);
    for (stride, per_cell) in [(8u32, 2usize), (16, 6)] {
        let cells = INPUT_SIZE / stride;
        for y in 0..cells {
            for x in 0..cells {
                let anchor = Anchor {
                    x: (x as f32 + 0.5) / cells as f32,
                    y: (y as f32 + 0.5) / cells as f32,
                };
                out.extend(std::iter::repeat_n(anchor, per_cell));
            }
        }
    }
    out
}

fn sigmoid(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit.clamp(-SCORE_CLIP, SCORE_CLIP)).exp())
}

/// Decodes raw outputs into candidates above `min_score`, in unit coordinates of the network
/// input, best first. `regressors` is [896 x 16], `logits` [896].
pub fn decode(
    regressors: &[f32],
    logits: &[f32],
    anchors: &[Anchor],
    min_score: f32,
) -> Result<Vec<Detection>, DetectorError> {
    let n = anchors.len();
    if regressors.len() != n * NUM_COORDS {
        return Err(DetectorError::OutputSize {
            output: "regressors",
            found: regressors.len(),
            expected: n * NUM_COORDS,
        });
    }
    if logits.len() != n {
        return Err(DetectorError::OutputSize {
            output: "classificators",
            found: logits.len(),
            expected: n,
        });
    }
    let scale = INPUT_SIZE as f32;
    let mut out: Vec<Detection> = anchors
        .iter()
        .zip(regressors.chunks_exact(NUM_COORDS))
        .zip(logits)
        .filter_map(|((anchor, r), &logit)| {
            let score = sigmoid(logit);
            if score < min_score || !r.iter().all(|v| v.is_finite()) {
                return None;
            }
            let cx = r[0] / scale + anchor.x;
            let cy = r[1] / scale + anchor.y;
            let (w, h) = (r[2] / scale, r[3] / scale);
            let keypoints = std::array::from_fn(|k| Point {
                x: r[4 + 2 * k] / scale + anchor.x,
                y: r[5 + 2 * k] / scale + anchor.y,
            });
            Some(Detection {
                bbox: BoundingBox {
                    x0: cx - w / 2.0,
                    y0: cy - h / 2.0,
                    x1: cx + w / 2.0,
                    y1: cy + h / 2.0,
                },
                score,
                keypoints,
            })
        })
        .collect();
    sort_by_score(&mut out);
    Ok(out)
}

fn sort_by_score(detections: &mut [Detection]) {
    // Stable, so equal scores keep anchor order and results never depend on sort internals.
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// Non-maximum suppression over candidates; returns faces best first.
pub fn nms(mut candidates: Vec<Detection>, iou_threshold: f32, kind: Nms) -> Vec<Detection> {
    sort_by_score(&mut candidates);
    let mut kept = Vec::new();
    while let Some(top) = candidates.first().cloned() {
        let (group, rest): (Vec<Detection>, Vec<Detection>) = candidates
            .into_iter()
            .partition(|c| top.bbox.iou(&c.bbox) > iou_threshold);
        candidates = rest;
        kept.push(match kind {
            Nms::Plain => top,
            Nms::Weighted => weighted_mean(&top, &group),
        });
    }
    kept
}

/// The score-weighted mean of a group's boxes and keypoints, keeping the top score.
fn weighted_mean(top: &Detection, group: &[Detection]) -> Detection {
    let total: f32 = group.iter().map(|d| d.score).sum();
    if group.len() < 2 || total <= 0.0 {
        return top.clone();
    }
    let mean =
        |f: &dyn Fn(&Detection) -> f32| group.iter().map(|d| d.score * f(d)).sum::<f32>() / total;
    Detection {
        bbox: BoundingBox {
            x0: mean(&|d| d.bbox.x0),
            y0: mean(&|d| d.bbox.y0),
            x1: mean(&|d| d.bbox.x1),
            y1: mean(&|d| d.bbox.y1),
        },
        score: top.score,
        keypoints: std::array::from_fn(|k| Point {
            x: mean(&|d| d.keypoints[k].x),
            y: mean(&|d| d.keypoints[k].y),
        }),
    }
}

/// Where the image sits in the letterboxed network input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Offset of the resized image in the 128 px square, pixels.
    pub offset_x: u32,
    pub offset_y: u32,
    /// Resized size over original size, per axis.
    pub scale_x: f32,
    pub scale_y: f32,
}

impl Letterbox {
    /// Fits `width` x `height` in the square keeping the aspect ratio, centered.
    pub fn fit(width: u32, height: u32) -> Letterbox {
        let s = INPUT_SIZE as f64 / f64::from(width.max(height));
        let w = ((f64::from(width) * s).round() as u32).clamp(1, INPUT_SIZE);
        let h = ((f64::from(height) * s).round() as u32).clamp(1, INPUT_SIZE);
        Letterbox {
            offset_x: (INPUT_SIZE - w) / 2,
            offset_y: (INPUT_SIZE - h) / 2,
            scale_x: w as f32 / width as f32,
            scale_y: h as f32 / height as f32,
        }
    }

    fn resized(&self, width: u32, height: u32) -> (u32, u32) {
        (
            ((width as f32 * self.scale_x).round() as u32).clamp(1, INPUT_SIZE),
            ((height as f32 * self.scale_y).round() as u32).clamp(1, INPUT_SIZE),
        )
    }

    /// Unit coordinates of the network input to image pixels.
    pub fn to_image(&self, p: Point) -> Point {
        let side = INPUT_SIZE as f32;
        Point {
            x: (p.x * side - self.offset_x as f32) / self.scale_x,
            y: (p.y * side - self.offset_y as f32) / self.scale_y,
        }
    }
}

/// The network input for an image: letterboxed into 128x128 with black borders, RGB scaled to
/// [-1, 1], NHWC.
pub fn input_tensor(image: &RgbImage) -> Result<(Array4<f32>, Letterbox), DetectorError> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(DetectorError::EmptyImage { width, height });
    }
    let letterbox = Letterbox::fit(width, height);
    let (w, h) = letterbox.resized(width, height);
    // Triangle = bilinear whose support widens when shrinking, so downscaling does not alias.
    let resized = imageops::resize(image, w, h, imageops::FilterType::Triangle);
    let side = INPUT_SIZE as usize;
    let mut tensor = Array4::<f32>::from_elem((1, side, side, 3), -1.0);
    for (x, y, pixel) in resized.enumerate_pixels() {
        let (tx, ty) = (
            (x + letterbox.offset_x) as usize,
            (y + letterbox.offset_y) as usize,
        );
        for c in 0..3 {
            tensor[[0, ty, tx, c]] = f32::from(pixel[c]) / 127.5 - 1.0;
        }
    }
    Ok((tensor, letterbox))
}

pub struct FaceDetector {
    session: Session,
    anchors: Vec<Anchor>,
    config: DetectorConfig,
}

impl FaceDetector {
    /// Opens the BlazeFace ONNX graph and checks its inputs and outputs.
    pub fn load(
        runtime: &Runtime,
        model: &Path,
        options: &SessionOptions,
        config: DetectorConfig,
    ) -> Result<Self, DetectorError> {
        config.validate()?;
        let session = runtime.session(model, options)?;
        let has = |outlets: &[ort::value::Outlet], wanted: &str| {
            outlets.iter().any(|o| o.name() == wanted)
        };
        let inputs_ok = has(session.inputs(), "input");
        let outputs_ok = ["regressors", "classificators"]
            .iter()
            .all(|w| has(session.outputs(), w));
        if !inputs_ok || !outputs_ok {
            return Err(DetectorError::Graph {
                path: model.to_path_buf(),
                message: "expected input `input` and outputs `regressors`, `classificators` (BlazeFace short range, as made by tools/make_face_models.py)".to_string(),
            });
        }
        Ok(Self {
            session,
            anchors: anchors(),
            config,
        })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Faces in `image`, best first, in image pixels.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let (tensor, letterbox) = input_tensor(image)?;
        let run = |e: ort::Error| DetectorError::Run(e.to_string());
        let input = TensorRef::from_array_view(tensor.view()).map_err(run)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input])
            .map_err(run)?;
        let (_, regressors) = outputs["regressors"]
            .try_extract_tensor::<f32>()
            .map_err(run)?;
        let (_, logits) = outputs["classificators"]
            .try_extract_tensor::<f32>()
            .map_err(run)?;
        let candidates = decode(regressors, logits, &self.anchors, self.config.min_score)?;
        Ok(nms(candidates, self.config.iou_threshold, self.config.nms)
            .iter()
            .map(|d| d.map(|p| letterbox.to_image(p)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x0: f32, y0: f32, x1: f32, y1: f32, score: f32) -> Detection {
        Detection {
            bbox: BoundingBox { x0, y0, x1, y1 },
            score,
            keypoints: [Point { x: x0, y: y0 }; NUM_KEYPOINTS],
        }
    }

    #[test]
    fn anchors_follow_mediapipe_short_range_layout() {
        let a = anchors();
        assert_eq!(a.len(), NUM_ANCHORS);
        // stride 8: 16x16 cells, two anchors each
        assert_eq!(
            a[0],
            Anchor {
                x: 0.5 / 16.0,
                y: 0.5 / 16.0
            }
        );
        assert_eq!(a[1], a[0]);
        assert_eq!(
            a[2],
            Anchor {
                x: 1.5 / 16.0,
                y: 0.5 / 16.0
            }
        );
        assert_eq!(
            a[511],
            Anchor {
                x: 15.5 / 16.0,
                y: 15.5 / 16.0
            }
        );
        // stride 16: 8x8 cells, six anchors each
        assert_eq!(
            a[512],
            Anchor {
                x: 0.5 / 8.0,
                y: 0.5 / 8.0
            }
        );
        assert_eq!(a[517], a[512]);
        assert_eq!(
            a[518],
            Anchor {
                x: 1.5 / 8.0,
                y: 0.5 / 8.0
            }
        );
        assert_eq!(
            a[895],
            Anchor {
                x: 7.5 / 8.0,
                y: 7.5 / 8.0
            }
        );
    }

    #[test]
    fn decode_offsets_boxes_and_keypoints_from_their_anchor() {
        let anchors = [Anchor { x: 0.5, y: 0.25 }, Anchor { x: 0.1, y: 0.1 }];
        let mut reg = vec![0.0f32; 2 * NUM_COORDS];
        // cx +12.8 px, cy -6.4 px, w 64 px, h 32 px, right eye at +(-12.8, 0) px
        reg[..6].copy_from_slice(&[12.8, -6.4, 64.0, 32.0, -12.8, 0.0]);
        let logits = [2.0f32, -3.0];
        let out = decode(&reg, &logits, &anchors, 0.5).unwrap();
        assert_eq!(out.len(), 1, "the second anchor scores sigmoid(-3) < 0.5");
        let d = &out[0];
        assert!((d.score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        let b = d.bbox;
        assert!((b.x0 - 0.35).abs() < 1e-6 && (b.x1 - 0.85).abs() < 1e-6);
        assert!((b.y0 - 0.075).abs() < 1e-6 && (b.y1 - 0.325).abs() < 1e-6);
        assert!((d.keypoint(Keypoint::RightEye).x - 0.4).abs() < 1e-6);
        assert!((d.keypoint(Keypoint::LeftEye).y - 0.25).abs() < 1e-6);
    }

    #[test]
    fn decode_rejects_outputs_of_the_wrong_size() {
        let anchors = anchors();
        let err = decode(&[0.0; 10], &[0.0; NUM_ANCHORS], &anchors, 0.5).unwrap_err();
        assert!(matches!(
            err,
            DetectorError::OutputSize {
                output: "regressors",
                ..
            }
        ));
        let err = decode(
            &vec![0.0; NUM_ANCHORS * NUM_COORDS],
            &[0.0; 3],
            &anchors,
            0.5,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DetectorError::OutputSize {
                output: "classificators",
                ..
            }
        ));
    }

    #[test]
    fn score_clipping_keeps_huge_logits_finite() {
        assert_eq!(sigmoid(1e30), 1.0);
        assert!(sigmoid(-1e30) >= 0.0);
    }

    #[test]
    fn weighted_nms_averages_overlapping_candidates_by_score() {
        let a = det(0.0, 0.0, 10.0, 10.0, 0.9);
        let b = det(1.0, 1.0, 11.0, 11.0, 0.3);
        let far = det(50.0, 50.0, 60.0, 60.0, 0.6);
        let out = nms(vec![b.clone(), far.clone(), a.clone()], 0.3, Nms::Weighted);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert!(
            (out[0].bbox.x0 - 0.25).abs() < 1e-6,
            "(0*0.9 + 1*0.3) / 1.2"
        );
        assert!((out[0].keypoints[3].y - 0.25).abs() < 1e-6);
        assert_eq!(out[1], far);
        let plain = nms(vec![b, far, a.clone()], 0.3, Nms::Plain);
        assert_eq!(plain[0], a);
    }

    #[test]
    fn nms_keeps_boxes_overlapping_less_than_the_threshold() {
        // IoU of these two is 25/175 = 0.14
        let a = det(0.0, 0.0, 10.0, 10.0, 0.9);
        let b = det(5.0, 5.0, 15.0, 15.0, 0.8);
        assert!((a.bbox.iou(&b.bbox) - 25.0 / 175.0).abs() < 1e-6);
        assert_eq!(nms(vec![a.clone(), b.clone()], 0.3, Nms::Weighted).len(), 2);
        assert_eq!(nms(vec![a, b], 0.1, Nms::Weighted).len(), 1);
    }

    #[test]
    fn letterbox_centers_and_maps_back_to_pixels() {
        let lb = Letterbox::fit(400, 200);
        assert_eq!((lb.offset_x, lb.offset_y), (0, 32));
        assert_eq!(lb.resized(400, 200), (128, 64));
        let p = lb.to_image(Point { x: 0.5, y: 0.5 });
        assert!((p.x - 200.0).abs() < 1e-4 && (p.y - 100.0).abs() < 1e-4);
        let p = lb.to_image(Point {
            x: 0.0,
            y: 32.0 / 128.0,
        });
        assert!(p.x.abs() < 1e-4 && p.y.abs() < 1e-4);
    }

    #[test]
    fn input_tensor_pads_with_black_and_scales_to_unit_range() {
        let image = RgbImage::from_pixel(256, 128, image::Rgb([255, 0, 0]));
        let (t, lb) = input_tensor(&image).unwrap();
        assert_eq!(t.shape(), &[1, 128, 128, 3]);
        assert_eq!(lb.offset_y, 32);
        assert_eq!(t[[0, 0, 0, 0]], -1.0, "border is black");
        assert_eq!(t[[0, 64, 64, 0]], 1.0);
        assert_eq!(t[[0, 64, 64, 1]], -1.0);
        assert!(matches!(
            input_tensor(&RgbImage::new(0, 5)),
            Err(DetectorError::EmptyImage { .. })
        ));
    }

    #[test]
    fn config_is_validated() {
        let bad = DetectorConfig {
            min_score: 1.5,
            ..DetectorConfig::default()
        };
        assert!(matches!(bad.validate(), Err(DetectorError::Config(_))));
    }
}
