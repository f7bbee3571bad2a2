//! Face detection with MediaPipe's BlazeFace ONNX graphs, full range (192 px input, 2304 anchors)
//! or short range (128 px, 896 anchors), decoded as MediaPipe's `face_detection_full_range` and
//! `face_detection_short_range` graphs do: SSD anchors, sigmoid scores, weighted NMS. Large images
//! are also searched tile by tile (see [`tiles`]), so faces of 5% of the image side are found.

use std::path::{Path, PathBuf};

use image::{imageops, RgbImage};
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::io::runtime::{Runtime, RuntimeError, SessionOptions};

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
    /// Also search overlapping tiles of large images (see [`tiles`]).
    pub tiled: bool,
}

impl Default for DetectorConfig {
    /// MediaPipe's values for both models (NMS at IoU 0.3, weighted), with min score 0.5: the
    /// full-range graph says 0.6, but MediaPipe's face detection solutions override it with
    /// their `min_detection_confidence`, 0.5 by default, as they do for short range.
    fn default() -> Self {
        Self {
            min_score: 0.5,
            iou_threshold: 0.3,
            nms: Nms::Weighted,
            tiled: true,
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

/// Which BlazeFace graph is loaded, told apart by its input side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// face_detection_short_range: 128x128 input, 896 anchors.
    ShortRange,
    /// face_detection_full_range: 192x192 input, 2304 anchors.
    FullRange,
}

impl Variant {
    pub fn from_input_side(side: i64) -> Option<Variant> {
        match side {
            128 => Some(Variant::ShortRange),
            192 => Some(Variant::FullRange),
            _ => None,
        }
    }

    /// Side of the square the network sees.
    pub fn input_size(self) -> u32 {
        match self {
            Variant::ShortRange => 128,
            Variant::FullRange => 192,
        }
    }

    /// MediaPipe's SsdAnchorsCalculator options as (stride, anchors per cell) grids, layers of
    /// equal stride sharing a grid. Short range: strides 8, 16, 16, 16 with two anchors per
    /// layer (16x16x2 + 8x8x6 = 896). Full range: one layer of stride 4 and, with
    /// interpolated_scale_aspect_ratio 0, one anchor per cell (48x48 = 2304).
    fn grids(self) -> &'static [(u32, usize)] {
        match self {
            Variant::ShortRange => &[(8, 2), (16, 6)],
            Variant::FullRange => &[(4, 1)],
        }
    }

    pub fn num_anchors(self) -> usize {
        self.grids()
            .iter()
            .map(|&(stride, per_cell)| ((self.input_size() / stride).pow(2) as usize) * per_cell)
            .sum()
    }
}

/// Anchor centers in the network's output order (anchor offsets 0.5, fixed unit size).
pub fn anchors(variant: Variant) -> Vec<Anchor> {
    let mut out = Vec::with_capacity(variant.num_anchors());
    for &(stride, per_cell) in variant.grids() {
        let cells = variant.input_size() / stride;
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
/// input, best first. `regressors` is [anchors x 16] in pixels of the `side` px input, `logits`
/// [anchors].
pub fn decode(
    regressors: &[f32],
    logits: &[f32],
    anchors: &[Anchor],
    side: u32,
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
    let scale = side as f32;
    let mut out: Vec<Detection> = anchors
        .iter()
        .zip(regressors.chunks_exact(NUM_COORDS))
        .zip(logits)
        .filter_map(|((anchor, r), &logit)| {
            let score = sigmoid(logit);
            // Written so that a NaN score fails it; a box with no area cannot be a face (and
            // would overlap nothing, itself included, in `nms`).
            let keep = score >= min_score && r.iter().all(|v| v.is_finite());
            if !keep || r[2] <= 0.0 || r[3] <= 0.0 {
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
    // The top candidate leaves the list on every turn: taking it out through its overlap with
    // itself would loop forever on a box with no area or an IoU threshold of 1.
    let mut remaining = candidates.into_iter();
    while let Some(top) = remaining.next() {
        let (overlapping, rest): (Vec<Detection>, Vec<Detection>) =
            remaining.partition(|c| top.bbox.iou(&c.bbox) > iou_threshold);
        remaining = rest.into_iter();
        kept.push(match kind {
            Nms::Plain => top,
            Nms::Weighted => weighted_mean(top, &overlapping),
        });
    }
    kept
}

/// The score-weighted mean of the top candidate's and its overlapping ones' boxes and keypoints,
/// keeping the top score.
fn weighted_mean(top: Detection, overlapping: &[Detection]) -> Detection {
    let group: Vec<&Detection> = std::iter::once(&top).chain(overlapping).collect();
    let total: f32 = group.iter().map(|d| d.score).sum();
    if group.len() < 2 || total <= 0.0 {
        return top;
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
    /// Side of the network input square, pixels.
    pub side: u32,
    /// Offset of the resized image in the square, pixels.
    pub offset_x: u32,
    pub offset_y: u32,
    /// Resized size over original size, per axis.
    pub scale_x: f32,
    pub scale_y: f32,
}

impl Letterbox {
    /// Fits `width` x `height` in a `side` px square keeping the aspect ratio, centered.
    pub fn fit(width: u32, height: u32, side: u32) -> Letterbox {
        let s = f64::from(side) / f64::from(width.max(height));
        let w = ((f64::from(width) * s).round() as u32).clamp(1, side);
        let h = ((f64::from(height) * s).round() as u32).clamp(1, side);
        Letterbox {
            side,
            offset_x: (side - w) / 2,
            offset_y: (side - h) / 2,
            scale_x: w as f32 / width as f32,
            scale_y: h as f32 / height as f32,
        }
    }

    fn resized(&self, width: u32, height: u32) -> (u32, u32) {
        (
            ((width as f32 * self.scale_x).round() as u32).clamp(1, self.side),
            ((height as f32 * self.scale_y).round() as u32).clamp(1, self.side),
        )
    }

    /// Unit coordinates of the network input to image pixels.
    pub fn to_image(&self, p: Point) -> Point {
        let side = self.side as f32;
        Point {
            x: (p.x * side - self.offset_x as f32) / self.scale_x,
            y: (p.y * side - self.offset_y as f32) / self.scale_y,
        }
    }
}

/// The network input for an image: letterboxed into a `side` px square with black borders, RGB
/// scaled to [-1, 1], NHWC.
pub fn input_tensor(
    image: &RgbImage,
    side: u32,
) -> Result<(Array4<f32>, Letterbox), DetectorError> {
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(DetectorError::EmptyImage { width, height });
    }
    let letterbox = Letterbox::fit(width, height, side);
    let (w, h) = letterbox.resized(width, height);
    // Triangle = bilinear whose support widens when shrinking, so downscaling does not alias.
    let resized = imageops::resize(image, w, h, imageops::FilterType::Triangle);
    let n = side as usize;
    let mut tensor = Array4::<f32>::from_elem((1, n, n, 3), -1.0);
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

/// The smallest face that must be found, as a fraction of the image's longer side.
const SMALLEST_FACE: f32 = 0.05;
/// Face box width, in network input pixels, from which full range finds faces reliably: pasted
/// at 14 px and more into grey squares, every fixture face was found at every position tried
/// (12 px: 21 of 24). 20 leaves a margin for harder backgrounds, and short range's own limit
/// is in the same range (~15 px of 128).
const RELIABLE_FACE_PX: f32 = 20.0;
/// Band along a tile's inner edges, as a fraction of the tile side, where a candidate means a
/// face cut by the edge: it is left to the neighbouring tile, which holds the face whole.
const EDGE_BAND: f32 = 0.02;
/// Tiling must magnify faces at least this much over the whole-image pass to be worth it.
const MIN_TILE_GAIN: f32 = 4.0 / 3.0;

/// A square (or, along a short image side, shorter) region of the image searched on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Tile {
    /// Whether a candidate (in tile pixels) stays clear of the tile's inner edges, those not
    /// on the image border: a candidate touching one is most likely a cut face.
    fn keeps(&self, d: &Detection, image_width: u32, image_height: u32) -> bool {
        let band = EDGE_BAND * self.width.max(self.height) as f32;
        let b = d.bbox;
        (self.x == 0 || b.x0 >= band)
            && (self.y == 0 || b.y0 >= band)
            && (self.x + self.width >= image_width || b.x1 <= self.width as f32 - band)
            && (self.y + self.height >= image_height || b.y1 <= self.height as f32 - band)
    }
}

/// Tiles searched besides the whole image, for a `side` px network.
///
/// The whole letterboxed image shows a face of 5% of the longer side L at 5% of the network
/// side (~10 px at 192), too small to be found; faces from [`RELIABLE_FACE_PX`] up are. So:
/// * the tile side is what shows a 5% face at `RELIABLE_FACE_PX` (0.48 L for full range), and
///   never below the network side, where tiles would only upscale pixels;
/// * neighbouring tiles overlap by the largest face the whole-image pass may miss
///   (`RELIABLE_FACE_PX / side` of L) plus both edge bands, so every such face lies whole, and
///   clear of the bands, inside one tile; larger faces are the whole-image pass's;
/// * no tiles when they would magnify less than [`MIN_TILE_GAIN`] (small images): the
///   whole-image pass already sees those faces as well as tiles would.
///
/// Tiles are spread evenly from edge to edge along each axis.
pub fn tiles(width: u32, height: u32, side: u32) -> Vec<Tile> {
    let long = width.max(height) as f32;
    let tile = (SMALLEST_FACE * long * side as f32 / RELIABLE_FACE_PX)
        .ceil()
        .max(side as f32);
    if tile * MIN_TILE_GAIN > long {
        return Vec::new();
    }
    let overlap = RELIABLE_FACE_PX / side as f32 * long + 2.0 * EDGE_BAND * tile;
    let tile = tile as u32;
    let starts = |extent: u32| -> Vec<(u32, u32)> {
        if extent <= tile {
            return vec![(0, extent)];
        }
        let span = (extent - tile) as f32;
        // overlap < tile for both variants; the floor keeps a changed constant from looping
        let n = (span / (tile as f32 - overlap).max(1.0)).ceil() as u32 + 1;
        (0..n)
            .map(|i| (((span * i as f32) / (n - 1) as f32).round() as u32, tile))
            .collect()
    };
    let (xs, ys) = (starts(width), starts(height));
    ys.iter()
        .flat_map(|&(y, h)| {
            xs.iter().map(move |&(x, w)| Tile {
                x,
                y,
                width: w,
                height: h,
            })
        })
        .collect()
}

pub struct FaceDetector {
    session: Session,
    variant: Variant,
    anchors: Vec<Anchor>,
    config: DetectorConfig,
}

impl FaceDetector {
    /// Opens a BlazeFace ONNX graph (short or full range, told apart by its input side) and
    /// checks its inputs and outputs.
    pub fn load(
        runtime: &Runtime,
        model: &Path,
        options: &SessionOptions,
        config: DetectorConfig,
    ) -> Result<Self, DetectorError> {
        config.validate()?;
        let session = runtime.session(model, options)?;
        let input_shape = session
            .inputs()
            .iter()
            .find(|o| o.name() == "input")
            .and_then(|o| o.dtype().tensor_shape())
            .map(|shape| shape.to_vec());
        let outputs_ok = ["regressors", "classificators"]
            .iter()
            .all(|w| session.outputs().iter().any(|o| o.name() == *w));
        let variant = match (input_shape.as_deref(), outputs_ok) {
            (Some(&[1, h, w, 3]), true) if h == w => Variant::from_input_side(h),
            _ => None,
        }
        .ok_or_else(|| DetectorError::Graph {
            path: model.to_path_buf(),
            message: format!(
                "expected input `input` [1, 128 or 192, same, 3] (found {input_shape:?}) and outputs `regressors`, `classificators` (BlazeFace short or full range, as made by tools/make_face_models.py)"
            ),
        })?;
        Ok(Self {
            session,
            variant,
            anchors: anchors(variant),
            config,
        })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Faces in `image`, best first, in image pixels: the whole image and, when the config
    /// says so, its [`tiles`], merged by one NMS over all candidates.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let mut candidates = self.candidates(image)?;
        if self.config.tiled {
            let (width, height) = image.dimensions();
            for tile in tiles(width, height, self.variant.input_size()) {
                let crop =
                    imageops::crop_imm(image, tile.x, tile.y, tile.width, tile.height).to_image();
                let (dx, dy) = (tile.x as f32, tile.y as f32);
                candidates.extend(
                    self.candidates(&crop)?
                        .into_iter()
                        .filter(|d| tile.keeps(d, width, height))
                        .map(|d| {
                            d.map(|p| Point {
                                x: p.x + dx,
                                y: p.y + dy,
                            })
                        }),
                );
            }
        }
        Ok(nms(candidates, self.config.iou_threshold, self.config.nms))
    }

    /// Candidates above the minimum score in one letterboxed pass over `image`, in its pixels.
    fn candidates(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectorError> {
        let side = self.variant.input_size();
        let (tensor, letterbox) = input_tensor(image, side)?;
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
        let candidates = decode(
            regressors,
            logits,
            &self.anchors,
            side,
            self.config.min_score,
        )?;
        Ok(candidates
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
        let a = anchors(Variant::ShortRange);
        assert_eq!(a.len(), 896);
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
    fn anchors_follow_mediapipe_full_range_layout() {
        let a = anchors(Variant::FullRange);
        assert_eq!(a.len(), 2304);
        assert_eq!(Variant::FullRange.num_anchors(), 2304);
        // stride 4: 48x48 cells, one anchor each, row by row
        assert_eq!(
            a[0],
            Anchor {
                x: 0.5 / 48.0,
                y: 0.5 / 48.0
            }
        );
        assert_eq!(
            a[1],
            Anchor {
                x: 1.5 / 48.0,
                y: 0.5 / 48.0
            }
        );
        assert_eq!(
            a[48],
            Anchor {
                x: 0.5 / 48.0,
                y: 1.5 / 48.0
            }
        );
        assert_eq!(
            a[2303],
            Anchor {
                x: 47.5 / 48.0,
                y: 47.5 / 48.0
            }
        );
    }

    #[test]
    fn variant_is_told_by_the_input_side() {
        assert_eq!(Variant::from_input_side(128), Some(Variant::ShortRange));
        assert_eq!(Variant::from_input_side(192), Some(Variant::FullRange));
        assert_eq!(Variant::from_input_side(256), None);
        assert_eq!(Variant::ShortRange.num_anchors(), 896);
    }

    #[test]
    fn decode_offsets_boxes_and_keypoints_from_their_anchor() {
        let anchors = [Anchor { x: 0.5, y: 0.25 }, Anchor { x: 0.1, y: 0.1 }];
        let mut reg = vec![0.0f32; 2 * NUM_COORDS];
        // cx +12.8 px, cy -6.4 px, w 64 px, h 32 px, right eye at +(-12.8, 0) px
        reg[..6].copy_from_slice(&[12.8, -6.4, 64.0, 32.0, -12.8, 0.0]);
        let logits = [2.0f32, -3.0];
        let out = decode(&reg, &logits, &anchors, 128, 0.5).unwrap();
        assert_eq!(out.len(), 1, "the second anchor scores sigmoid(-3) < 0.5");
        let d = &out[0];
        assert!((d.score - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        let b = d.bbox;
        assert!((b.x0 - 0.35).abs() < 1e-6 && (b.x1 - 0.85).abs() < 1e-6);
        assert!((b.y0 - 0.075).abs() < 1e-6 && (b.y1 - 0.325).abs() < 1e-6);
        assert!((d.keypoint(Keypoint::RightEye).x - 0.4).abs() < 1e-6);
        assert!((d.keypoint(Keypoint::LeftEye).y - 0.25).abs() < 1e-6);
        // the same pixels in a 192 px input are a smaller part of it
        let out = decode(&reg, &logits, &anchors, 192, 0.5).unwrap();
        assert!((out[0].bbox.x1 - out[0].bbox.x0 - 64.0 / 192.0).abs() < 1e-6);
    }

    #[test]
    fn decode_rejects_outputs_of_the_wrong_size() {
        let anchors = anchors(Variant::FullRange);
        let n = anchors.len();
        let err = decode(&[0.0; 10], &vec![0.0; n], &anchors, 192, 0.5).unwrap_err();
        assert!(matches!(
            err,
            DetectorError::OutputSize {
                output: "regressors",
                ..
            }
        ));
        let err = decode(&vec![0.0; n * NUM_COORDS], &[0.0; 3], &anchors, 192, 0.5).unwrap_err();
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
    fn nms_ends_on_boxes_with_no_area_and_a_threshold_of_one() {
        let flat = det(5.0, 5.0, 5.0, 15.0, 0.9);
        let a = det(0.0, 0.0, 10.0, 10.0, 0.8);
        assert_eq!(
            nms(vec![flat.clone(), a.clone()], 0.3, Nms::Weighted).len(),
            2
        );
        let same = nms(vec![a.clone(), a.clone()], 1.0, Nms::Plain);
        assert_eq!(
            same,
            vec![a.clone(), a],
            "IoU 1 is not above 1: both kept, once each"
        );
    }

    #[test]
    fn decode_drops_nan_scores_and_boxes_with_no_area() {
        let anchors = [Anchor { x: 0.5, y: 0.5 }; 3];
        let mut reg = vec![0.0f32; 3 * NUM_COORDS];
        reg[2..4].copy_from_slice(&[0.0, 32.0]); // no width
        reg[NUM_COORDS + 2..NUM_COORDS + 4].copy_from_slice(&[32.0, -4.0]); // negative height
        reg[2 * NUM_COORDS + 2..2 * NUM_COORDS + 4].copy_from_slice(&[32.0, 32.0]);
        let out = decode(&reg, &[5.0, 5.0, f32::NAN], &anchors, 128, 0.5).unwrap();
        assert!(out.is_empty(), "{out:?}");
        let out = decode(&reg, &[5.0, 5.0, 5.0], &anchors, 128, 0.5).unwrap();
        assert_eq!(out.len(), 1, "the third box has an area and a score");
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
        let lb = Letterbox::fit(400, 200, 128);
        assert_eq!((lb.offset_x, lb.offset_y), (0, 32));
        assert_eq!(lb.resized(400, 200), (128, 64));
        let full = Letterbox::fit(400, 200, 192);
        assert_eq!((full.offset_x, full.offset_y), (0, 48));
        let p = full.to_image(Point { x: 0.25, y: 0.5 });
        assert!((p.x - 100.0).abs() < 1e-4 && (p.y - 100.0).abs() < 1e-4);
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
        let (t, lb) = input_tensor(&image, 128).unwrap();
        assert_eq!(t.shape(), &[1, 128, 128, 3]);
        assert_eq!(lb.offset_y, 32);
        assert_eq!(t[[0, 0, 0, 0]], -1.0, "border is black");
        assert_eq!(t[[0, 64, 64, 0]], 1.0);
        assert_eq!(t[[0, 64, 64, 1]], -1.0);
        assert!(matches!(
            input_tensor(&RgbImage::new(0, 5), 192),
            Err(DetectorError::EmptyImage { .. })
        ));
    }

    #[test]
    fn small_images_are_not_tiled() {
        // tiles are at least 192 px: on a 250 px image they would not magnify 4/3 times
        assert!(tiles(250, 200, 192).is_empty());
        assert_eq!(tiles(300, 200, 192).len(), 4);
        assert!(tiles(420, 398, 128).len() > 1, "short range tiles sooner");
    }

    #[test]
    fn tiles_cover_the_image_and_overlap_by_more_than_a_missed_face() {
        let (w, h, side) = (1600u32, 1200u32, 192u32);
        let t = tiles(w, h, side);
        // tile side 0.05 * 1600 * 192 / 20 = 768: 3 columns x 2 rows
        assert_eq!(t.len(), 6, "{t:?}");
        assert!(t.iter().all(|t| t.width == 768 && t.height == 768));
        assert_eq!((t[0].x, t[0].y), (0, 0));
        assert_eq!((t[5].x + 768, t[5].y + 768), (w, h));
        // faces below 20 px of 192 in the whole-image pass (1600 * 20 / 192 = 167 px) must fit
        // whole, clear of the 2% edge bands, in the overlap of neighbours
        let needed = 1600.0 * 20.0 / 192.0 + 2.0 * 0.02 * 768.0;
        let overlap_x = (t[0].x + t[0].width - t[1].x) as f32;
        let overlap_y = (t[0].y + t[0].height - t[3].y) as f32;
        assert!(
            overlap_x >= needed && overlap_y >= needed,
            "{overlap_x} {overlap_y}"
        );
        // a very wide image tiles only along its long side, with full-height tiles
        let strip = tiles(4000, 500, 192);
        assert!(strip.len() > 1 && strip.iter().all(|t| t.y == 0 && t.height == 500));
    }

    #[test]
    fn tiles_drop_candidates_on_inner_edges_only() {
        let tile = Tile {
            x: 0,
            y: 400,
            width: 500,
            height: 500,
        };
        // image 1000 x 900: the tile's right and top edges are inner, left and bottom are borders
        let keeps = |x0, y0, x1, y1| tile.keeps(&det(x0, y0, x1, y1, 0.9), 1000, 900);
        assert!(keeps(0.0, 100.0, 50.0, 150.0), "left border");
        assert!(keeps(100.0, 440.0, 150.0, 500.0), "bottom border");
        assert!(!keeps(460.0, 100.0, 499.0, 150.0), "cut by the right edge");
        assert!(!keeps(100.0, 2.0, 150.0, 50.0), "cut by the top edge");
        assert!(keeps(100.0, 20.0, 150.0, 70.0));
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
