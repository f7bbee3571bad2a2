//! Face alignment: the similarity transform (rotation, uniform scale, translation) that puts the
//! detected eyes where the embedder's spec wants them, and the chip sampled through it.
//!
//! Coordinates are continuous pixels: pixel `i` covers `i..i+1`, its center is `i + 0.5`.

use image::{imageops, Rgb, RgbImage};

use super::detector::{Detection, Keypoint, Point};
use super::spec::EmbedderSpec;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("the face's eye keypoints coincide ({x}, {y}); cannot tell its scale or rotation")]
    DegenerateEyes { x: f32, y: f32 },
    #[error("eye keypoint ({x}, {y}) is not a finite position")]
    NotFinite { x: f32, y: f32 },
    #[error("embedder `{embedder}` embeds whole images (subject = \"whole-image\"); it has no face alignment")]
    NotAFaceEmbedder { embedder: String },
}

/// `source = [a -b; b a] * chip + [tx, ty]`: maps chip positions to source image positions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The transform taking `chip_left` to `source_left` and `chip_right` to `source_right`.
    pub fn from_eyes(
        chip_left: Point,
        chip_right: Point,
        source_left: Point,
        source_right: Point,
    ) -> Result<Similarity, AlignError> {
        for p in [source_left, source_right] {
            if !p.x.is_finite() || !p.y.is_finite() {
                return Err(AlignError::NotFinite { x: p.x, y: p.y });
            }
        }
        let (cx, cy) = (
            f64::from(chip_right.x - chip_left.x),
            f64::from(chip_right.y - chip_left.y),
        );
        let (sx, sy) = (
            f64::from(source_right.x) - f64::from(source_left.x),
            f64::from(source_right.y) - f64::from(source_left.y),
        );
        let chip_len2 = cx * cx + cy * cy;
        if sx * sx + sy * sy < 1e-12 || chip_len2 < 1e-12 {
            return Err(AlignError::DegenerateEyes {
                x: source_left.x,
                y: source_left.y,
            });
        }
        // Complex division (sx + i sy) / (cx + i cy).
        let a = (sx * cx + sy * cy) / chip_len2;
        let b = (sy * cx - sx * cy) / chip_len2;
        let (lx, ly) = (f64::from(chip_left.x), f64::from(chip_left.y));
        Ok(Similarity {
            a,
            b,
            tx: f64::from(source_left.x) - (a * lx - b * ly),
            ty: f64::from(source_left.y) - (b * lx + a * ly),
        })
    }

    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    /// Source pixels per chip pixel.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }
}

/// Samples a `width` x `height` chip from `image` through `t` (chip to source), bilinear, black
/// outside the image. When the chip is much smaller than the face in the source, the covered
/// region is first shrunk with a wide (antialiasing) filter so that bilinear sampling does not
/// alias, as dlib's chip extraction does with its image pyramid.
pub fn warp(image: &RgbImage, t: &Similarity, width: u32, height: u32) -> RgbImage {
    let scale = t.scale();
    if scale > 1.5 {
        if let Some((region, t)) = shrink_region(image, t, width, height) {
            return sample(&region, &t, width, height);
        }
    }
    sample(image, t, width, height)
}

/// The part of `image` the chip covers, shrunk to about chip resolution, and the transform into it.
fn shrink_region(
    image: &RgbImage,
    t: &Similarity,
    width: u32,
    height: u32,
) -> Option<(RgbImage, Similarity)> {
    let corners = [
        t.apply(0.0, 0.0),
        t.apply(f64::from(width), 0.0),
        t.apply(0.0, f64::from(height)),
        t.apply(f64::from(width), f64::from(height)),
    ];
    let (mut min_x, mut min_y) = (f64::INFINITY, f64::INFINITY);
    let (mut max_x, mut max_y) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (x, y) in corners {
        (min_x, min_y) = (min_x.min(x), min_y.min(y));
        (max_x, max_y) = (max_x.max(x), max_y.max(y));
    }
    // Two pixels of margin on every side.
    let (min_x, min_y) = (min_x.floor() - 2.0, min_y.floor() - 2.0);
    let (max_x, max_y) = (max_x.ceil() + 2.0, max_y.ceil() + 2.0);
    let x0 = min_x.max(0.0) as u32;
    let y0 = min_y.max(0.0) as u32;
    let x1 = (max_x.min(f64::from(image.width()))).max(0.0) as u32;
    let y1 = (max_y.min(f64::from(image.height()))).max(0.0) as u32;
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let (cw, ch) = (x1 - x0, y1 - y0);
    let shrink = t.scale();
    let rw = ((f64::from(cw) / shrink).round() as u32).max(1);
    let rh = ((f64::from(ch) / shrink).round() as u32).max(1);
    let crop = imageops::crop_imm(image, x0, y0, cw, ch).to_image();
    let region = imageops::resize(&crop, rw, rh, imageops::FilterType::Triangle);
    // New source coordinates: (old - origin) * (resized / cropped), per axis.
    let (fx, fy) = (f64::from(rw) / f64::from(cw), f64::from(rh) / f64::from(ch));
    if (fx - fy).abs() > 0.05 * fx {
        // Rounding made the axes differ too much for a similarity; sample the full image instead.
        return None;
    }
    let f = (fx + fy) / 2.0;
    Some((
        region,
        Similarity {
            a: t.a * f,
            b: t.b * f,
            tx: (t.tx - f64::from(x0)) * fx,
            ty: (t.ty - f64::from(y0)) * fy,
        },
    ))
}

fn sample(image: &RgbImage, t: &Similarity, width: u32, height: u32) -> RgbImage {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let pixel = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0.0; 3];
        }
        let p = image.get_pixel(x as u32, y as u32);
        [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
    };
    RgbImage::from_fn(width, height, |x, y| {
        let (sx, sy) = t.apply(f64::from(x) + 0.5, f64::from(y) + 0.5);
        // Back to pixel-center coordinates for interpolation.
        let (u, v) = (sx - 0.5, sy - 0.5);
        let (x0, y0) = (u.floor(), v.floor());
        let (fx, fy) = (u - x0, v - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (p00, p10, p01, p11) = (
            pixel(x0, y0),
            pixel(x0 + 1, y0),
            pixel(x0, y0 + 1),
            pixel(x0 + 1, y0 + 1),
        );
        let mut out = [0u8; 3];
        for c in 0..3 {
            let top = p00[c] + (p10[c] - p00[c]) * fx;
            let bottom = p01[c] + (p11[c] - p01[c]) * fx;
            out[c] = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
        }
        Rgb(out)
    })
}

/// The embedder's input chip for one detected face.
pub fn align_face(
    image: &RgbImage,
    face: &Detection,
    spec: &EmbedderSpec,
) -> Result<RgbImage, AlignError> {
    let alignment = spec.alignment.ok_or_else(|| AlignError::NotAFaceEmbedder {
        embedder: spec.name.clone(),
    })?;
    let [w, h] = spec.input_size;
    let template = |p: [f32; 2]| Point {
        x: p[0] * w as f32,
        y: p[1] * h as f32,
    };
    // The chip's left eye is the subject's right eye (an upright, unmirrored face).
    let t = Similarity::from_eyes(
        template(alignment.left_eye),
        template(alignment.right_eye),
        face.keypoint(Keypoint::RightEye),
        face.keypoint(Keypoint::LeftEye),
    )?;
    Ok(warp(image, &t, w, h))
}

/// The whole image as a chip, for images without a detected face: the largest centered region
/// with the chip's aspect ratio, resized.
pub fn whole_image_chip(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = image.dimensions();
    let target = f64::from(width) / f64::from(height);
    let (cw, ch) = if f64::from(iw) / f64::from(ih) > target {
        (((f64::from(ih) * target).round() as u32).clamp(1, iw), ih)
    } else {
        (iw, ((f64::from(iw) / target).round() as u32).clamp(1, ih))
    };
    let crop = imageops::crop_imm(image, (iw - cw) / 2, (ih - ch) / 2, cw, ch).to_image();
    imageops::resize(&crop, width, height, imageops::FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: f32, y: f32) -> Point {
        Point { x, y }
    }

    #[test]
    fn eye_transform_maps_template_eyes_onto_detected_eyes() {
        let t = Similarity::from_eyes(
            p(40.0, 50.0),
            p(100.0, 50.0),
            p(300.0, 200.0),
            p(300.0, 320.0),
        )
        .unwrap();
        // Eyes 60 px apart in the chip, 120 px in the source, rotated by 90 degrees.
        assert!((t.scale() - 2.0).abs() < 1e-12);
        let (x, y) = t.apply(40.0, 50.0);
        assert!((x - 300.0).abs() < 1e-9 && (y - 200.0).abs() < 1e-9);
        let (x, y) = t.apply(100.0, 50.0);
        assert!((x - 300.0).abs() < 1e-9 && (y - 320.0).abs() < 1e-9);
        assert!(matches!(
            Similarity::from_eyes(p(40.0, 50.0), p(100.0, 50.0), p(3.0, 3.0), p(3.0, 3.0)),
            Err(AlignError::DegenerateEyes { .. })
        ));
        assert!(matches!(
            Similarity::from_eyes(p(40.0, 50.0), p(100.0, 50.0), p(f32::NAN, 3.0), p(3.0, 3.0)),
            Err(AlignError::NotFinite { .. })
        ));
    }

    /// `source = [a -b; b a] * chip + [tx, ty]`.
    fn similarity(a: f64, b: f64, tx: f64, ty: f64) -> Similarity {
        Similarity { a, b, tx, ty }
    }

    /// An image whose pixel value encodes its position, to check where samples come from.
    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]))
    }

    #[test]
    fn identity_warp_copies_pixels_and_fills_outside_with_black() {
        let image = ramp(20, 10);
        let id = similarity(1.0, 0.0, 0.0, 0.0);
        assert_eq!(warp(&image, &id, 20, 10), image);
        let shifted = similarity(1.0, 0.0, 15.0, 0.0);
        let out = warp(&image, &shifted, 10, 10);
        assert_eq!(out.get_pixel(0, 3), &Rgb([15, 3, 7]));
        assert_eq!(out.get_pixel(9, 3), &Rgb([0, 0, 0]));
    }

    #[test]
    fn rotation_by_90_degrees_reads_the_rotated_pixel() {
        let image = ramp(10, 10);
        // chip (x, y) -> source (10 - y, x): a quarter turn about the origin, shifted back in.
        let t = similarity(0.0, 1.0, 10.0, 0.0);
        let out = warp(&image, &t, 10, 10);
        // chip pixel (2, 1), center (2.5, 1.5) -> source (8.5, 2.5) = pixel (8, 2)
        assert_eq!(out.get_pixel(2, 1), &Rgb([8, 2, 7]));
    }

    #[test]
    fn strong_downscaling_averages_instead_of_aliasing() {
        // One-pixel black/white stripes: point sampling at scale 4 would see a single colour.
        let image = RgbImage::from_fn(400, 400, |x, _| {
            if x % 2 == 0 {
                Rgb([255; 3])
            } else {
                Rgb([0; 3])
            }
        });
        let t = similarity(4.0, 0.0, 0.0, 0.0);
        let out = warp(&image, &t, 100, 100);
        let center = out.get_pixel(50, 50)[0];
        assert!(
            (100..=155).contains(&center),
            "expected a mid grey, got {center}"
        );
    }

    #[test]
    fn a_whole_image_spec_refuses_to_align_a_face() {
        let spec = EmbedderSpec::parse(
            r#"name = "features"
onnx = "m.onnx"
subject = "whole-image"
input-name = "i"
output-name = "o"
input-size = [8, 8]
layout = "nchw"
channel-order = "rgb"
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
metric = "cosine"
default-operating-point = "p"
[[operating-point]]
name = "p"
max-distance = 0.4
provenance = "test"
"#,
            std::path::Path::new("spec.toml"),
        )
        .unwrap();
        let face = Detection {
            bbox: crate::certify::detector::BoundingBox {
                x0: 0.0,
                y0: 0.0,
                x1: 10.0,
                y1: 10.0,
            },
            score: 1.0,
            keypoints: [
                p(3.0, 4.0),
                p(7.0, 4.0),
                p(5.0, 6.0),
                p(5.0, 8.0),
                p(1.0, 4.0),
                p(9.0, 4.0),
            ],
        };
        let err = align_face(&ramp(10, 10), &face, &spec).unwrap_err();
        assert_eq!(
            err,
            AlignError::NotAFaceEmbedder {
                embedder: "features".into()
            }
        );
        assert!(err.to_string().contains("whole-image"));
    }

    #[test]
    fn whole_image_chip_center_crops_to_the_chip_aspect() {
        let image = RgbImage::from_fn(300, 100, |x, _| {
            if (100..200).contains(&x) {
                Rgb([200; 3])
            } else {
                Rgb([0; 3])
            }
        });
        let chip = whole_image_chip(&image, 50, 50);
        assert_eq!(chip.dimensions(), (50, 50));
        assert!(
            chip.pixels().all(|p| p[0] == 200),
            "only the centered square is kept"
        );
    }
}
