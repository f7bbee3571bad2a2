//! Face-region geometry for anonymizing faces only.
//!
//! Each face is re-generated as a square crop (so it can be resized to the model's square working
//! size without distortion) and blended back with a feathered mask, so every pixel outside the
//! face regions stays the input's own pixels and the seams inside them are not visible. This module
//! is pure geometry over `image` and `ndarray`: it sits below `certify` and knows nothing of models.

use image::RgbImage;
use ndarray::Array2;

/// A detected face's box in image pixels (may extend past the image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// A rectangle of whole pixels inside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    /// Exclusive right edge, widened so that it cannot overflow.
    fn right(self) -> u64 {
        u64::from(self.x) + u64::from(self.width)
    }

    /// Exclusive bottom edge, widened so that it cannot overflow.
    fn bottom(self) -> u64 {
        u64::from(self.y) + u64::from(self.height)
    }

    /// Whether the two share at least one pixel (touching edges do not count).
    fn overlaps(self, other: Region) -> bool {
        u64::from(self.x) < other.right()
            && u64::from(other.x) < self.right()
            && u64::from(self.y) < other.bottom()
            && u64::from(other.y) < self.bottom()
    }

    /// The smallest region holding both.
    fn union(self, other: Region) -> Region {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        // Both lie inside a u32-sized image, so the spans fit in u32; saturate rather than trust it.
        let width =
            u32::try_from(self.right().max(other.right()) - u64::from(x)).unwrap_or(u32::MAX);
        let height =
            u32::try_from(self.bottom().max(other.bottom()) - u64::from(y)).unwrap_or(u32::MAX);
        Region {
            x,
            y,
            width,
            height,
        }
    }
}

/// How much context each face gets, as a fraction of its box's longer side added on every side.
pub const FACE_MARGIN: f32 = 0.5;

/// The regions to re-generate for `faces` in a `width` x `height` image: each box grown by
/// `margin` x its longer side on every side and made square around its centre (shifted inward
/// where it meets an image edge, shrunk only if the image is smaller), then regions that overlap
/// (share at least one pixel) merged into their bounding box, repeatedly until none overlap,
/// sorted by (y, x). Boxes with non-finite or non-positive size, or entirely outside the image, are
/// ignored. Empty input -> empty output. Never panics (width or height 0 -> empty).
pub fn face_regions(faces: &[FaceBox], width: u32, height: u32, margin: f32) -> Vec<Region> {
    if width == 0 || height == 0 {
        return Vec::new();
    }
    // A nonsensical margin must not turn into a nonsensical region; no context is the safe reading.
    let margin = if margin.is_finite() && margin > 0.0 {
        margin
    } else {
        0.0
    };
    let mut regions: Vec<Region> = faces
        .iter()
        .filter_map(|face| square_region(*face, width, height, margin))
        .collect();
    merge_overlapping(&mut regions);
    regions.sort_by_key(|r| (r.y, r.x));
    regions
}

/// One face's grown square, or None when the box is unusable or misses the image.
fn square_region(face: FaceBox, width: u32, height: u32, margin: f32) -> Option<Region> {
    let FaceBox {
        x,
        y,
        width: w,
        height: h,
    } = face;
    if !(x.is_finite() && y.is_finite() && w.is_finite() && h.is_finite()) || w <= 0.0 || h <= 0.0 {
        return None;
    }
    // f64 so that a huge but finite box cannot overflow to infinity in the arithmetic below.
    let (x, y, w, h) = (f64::from(x), f64::from(y), f64::from(w), f64::from(h));
    let (iw, ih) = (f64::from(width), f64::from(height));
    if x + w <= 0.0 || y + h <= 0.0 || x >= iw || y >= ih {
        return None;
    }
    let longer = w.max(h);
    let wanted = (longer * (1.0 + 2.0 * f64::from(margin))).round();
    // Square, at least a pixel, and no bigger than the image's shorter side allows.
    let side = (wanted.max(1.0) as u64).min(u64::from(width.min(height))) as u32;
    let x0 = place(x + w / 2.0, side, width);
    let y0 = place(y + h / 2.0, side, height);
    Some(Region {
        x: x0,
        y: y0,
        width: side,
        height: side,
    })
}

/// The start of a `side`-long span centred at `centre`, shifted inward to fit in `0..extent`.
fn place(centre: f64, side: u32, extent: u32) -> u32 {
    let max_start = f64::from(extent.saturating_sub(side));
    (centre - f64::from(side) / 2.0)
        .round()
        .clamp(0.0, max_start) as u32
}

/// Merges overlapping regions into their bounding boxes until no two overlap: a merged box can
/// reach regions neither part touched, so every merge restarts the scan.
fn merge_overlapping(regions: &mut Vec<Region>) {
    'scan: loop {
        for i in 0..regions.len() {
            for j in (i + 1)..regions.len() {
                if regions[i].overlaps(regions[j]) {
                    let other = regions.swap_remove(j);
                    regions[i] = regions[i].union(other);
                    continue 'scan;
                }
            }
        }
        return;
    }
}

/// `region` cut down to what lies inside a `width` x `height` image.
fn clamp_region(region: Region, width: u32, height: u32) -> Region {
    let x = region.x.min(width);
    let y = region.y.min(height);
    Region {
        x,
        y,
        width: region.width.min(width - x),
        height: region.height.min(height - y),
    }
}

/// The pixels of `region` (which must lie inside `image`; clamp defensively, never panic).
pub fn crop(image: &RgbImage, region: Region) -> RgbImage {
    let r = clamp_region(region, image.width(), image.height());
    image::imageops::crop_imm(image, r.x, r.y, r.width, r.height).to_image()
}

/// Per-pixel blend weight of a generated region, `[height, width]`: 1 in the core, falling
/// linearly to near 0 toward the region's border over `feather` pixels on each side
/// (weight of the pixel at distance d from the nearest border is (d + 0.5) / feather, capped at 1;
/// feather is capped at half the shorter side so the core stays non-empty).
///
/// The cap is `(shorter - 1) / 2`, the largest feather that still leaves a pixel of weight 1 for
/// even sides too; a feather of 0 (or a cap of 0 for 1- and 2-pixel sides) means no feathering.
pub fn feather_mask(width: u32, height: u32, feather: u32) -> Array2<f32> {
    let (w, h) = (width as usize, height as usize);
    let feather = feather.min(width.min(height).saturating_sub(1) / 2);
    if feather == 0 {
        return Array2::ones((h, w));
    }
    let f = feather as f32;
    Array2::from_shape_fn((h, w), |(row, col)| {
        let d = row.min(h - 1 - row).min(col).min(w - 1 - col);
        ((d as f32 + 0.5) / f).min(1.0)
    })
}

/// The feather for a region: a quarter of the margin band, i.e. round(shorter side * margin / (1 + 2*margin) / 2), at least 1.
///
/// A square grown by `margin` x the face's side on every side has `side * margin / (1 + 2*margin)`
/// pixels of pure context on each side, twice that across; the feather is a quarter of that total
/// (half of one side's band), so the blend fades out well before it reaches the face itself.
pub fn feather_for(region: Region, margin: f32) -> u32 {
    let margin = if margin.is_finite() && margin > 0.0 {
        f64::from(margin)
    } else {
        0.0
    };
    let shorter = f64::from(region.width.min(region.height));
    let feather = (shorter * margin / (1.0 + 2.0 * margin) / 2.0).round();
    (feather as u32).max(1)
}

/// Blends `generated` (exactly region-sized; return an error String otherwise) into `image`
/// at `region` with `feather_mask`: out = round(w*gen + (1-w)*orig) per channel, clamped to
/// 0..=255. Every pixel outside `region` is left untouched (byte-identical).
pub fn paste(
    image: &mut RgbImage,
    region: Region,
    generated: &RgbImage,
    feather: u32,
) -> Result<(), String> {
    if generated.dimensions() != (region.width, region.height) {
        return Err(format!(
            "generated image is {}x{}, the region is {}x{}",
            generated.width(),
            generated.height(),
            region.width,
            region.height
        ));
    }
    // A region past the image would mean a caller bug; refuse rather than blend part of it.
    if region.right() > u64::from(image.width()) || region.bottom() > u64::from(image.height()) {
        return Err(format!(
            "region {}x{} at ({}, {}) does not fit in the {}x{} image",
            region.width,
            region.height,
            region.x,
            region.y,
            image.width(),
            image.height()
        ));
    }
    let mask = feather_mask(region.width, region.height, feather);
    for ((row, col), &weight) in mask.indexed_iter() {
        let (gx, gy) = (col as u32, row as u32);
        let new = generated.get_pixel(gx, gy).0;
        let orig = image.get_pixel_mut(region.x + gx, region.y + gy);
        for (o, g) in orig.0.iter_mut().zip(new) {
            let blended = weight * f32::from(g) + (1.0 - weight) * f32::from(*o);
            *o = blended.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn face(x: f32, y: f32, width: f32, height: f32) -> FaceBox {
        FaceBox {
            x,
            y,
            width,
            height,
        }
    }

    fn region(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region {
            x,
            y,
            width,
            height,
        }
    }

    /// Deterministic noise so every pixel differs from its neighbours and from `generated`.
    fn noisy_image(width: u32, height: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        RgbImage::from_fn(width, height, |_, _| {
            let mut channel = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            };
            Rgb([channel(), channel(), channel()])
        })
    }

    fn inside(r: Region, width: u32, height: u32) -> bool {
        r.x + r.width <= width && r.y + r.height <= height
    }

    #[test]
    fn centred_face_gives_square_of_grown_longer_side() {
        // Centre (128, 128), longer side 60 -> side 60 * (1 + 2 * 0.5) = 120.
        let regions = face_regions(&[face(108.0, 98.0, 40.0, 60.0)], 256, 256, FACE_MARGIN);
        assert_eq!(regions, vec![region(68, 68, 120, 120)]);
        let regions = face_regions(&[face(108.0, 98.0, 40.0, 60.0)], 256, 256, 0.25);
        assert_eq!(regions, vec![region(83, 83, 90, 90)]);
    }

    #[test]
    fn corner_faces_shift_inward_and_stay_square() {
        let (w, h) = (200, 150);
        // Top-left: centre (17, 13), side 60 would start at (-13, -17).
        let top_left = face_regions(&[face(2.0, 3.0, 30.0, 20.0)], w, h, FACE_MARGIN);
        assert_eq!(top_left, vec![region(0, 0, 60, 60)]);
        // Bottom-right, partly past the image: centre (195, 150), side 40.
        let bottom_right = face_regions(&[face(185.0, 140.0, 20.0, 20.0)], w, h, FACE_MARGIN);
        assert_eq!(bottom_right, vec![region(160, 110, 40, 40)]);
        for r in top_left.iter().chain(&bottom_right) {
            assert_eq!(r.width, r.height);
            assert!(inside(*r, w, h), "{r:?}");
        }
    }

    #[test]
    fn square_shrinks_only_to_the_image() {
        // Side 80 wanted, the image's shorter side is 30.
        let regions = face_regions(&[face(5.0, 0.0, 40.0, 40.0)], 50, 30, FACE_MARGIN);
        assert_eq!(regions, vec![region(10, 0, 30, 30)]);
    }

    #[test]
    fn overlapping_squares_merge_into_their_bounding_box() {
        // Squares x 40..80 and 70..110, both y 40..80.
        let faces = [face(50.0, 50.0, 20.0, 20.0), face(80.0, 50.0, 20.0, 20.0)];
        let regions = face_regions(&faces, 300, 300, FACE_MARGIN);
        assert_eq!(regions, vec![region(40, 40, 70, 40)]);
    }

    #[test]
    fn touching_squares_do_not_merge() {
        // Squares x 40..80 and 80..120 share an edge but no pixel.
        let faces = [face(50.0, 50.0, 20.0, 20.0), face(90.0, 50.0, 20.0, 20.0)];
        let regions = face_regions(&faces, 300, 300, FACE_MARGIN);
        assert_eq!(
            regions,
            vec![region(40, 40, 40, 40), region(80, 40, 40, 40)]
        );
    }

    #[test]
    fn a_chain_of_three_merges_transitively() {
        // Squares x 40..80, 100..140 and 70..110: the outer two meet only through the middle one.
        let faces = [
            face(50.0, 50.0, 20.0, 20.0),
            face(110.0, 50.0, 20.0, 20.0),
            face(80.0, 50.0, 20.0, 20.0),
        ];
        let regions = face_regions(&faces, 300, 300, FACE_MARGIN);
        assert_eq!(regions, vec![region(40, 40, 100, 40)]);
    }

    #[test]
    fn a_merged_box_absorbs_what_only_it_overlaps() {
        // Margin 0: A 0..40 x 0..40 and B 30..70 x 30..70 overlap; C 55..75 x 0..20 touches
        // neither, but lies in their bounding box 0..70 x 0..70.
        let faces = [
            face(55.0, 0.0, 20.0, 20.0),
            face(0.0, 0.0, 40.0, 40.0),
            face(30.0, 30.0, 40.0, 40.0),
        ];
        let regions = face_regions(&faces, 100, 100, 0.0);
        assert_eq!(regions, vec![region(0, 0, 75, 70)]);
    }

    #[test]
    fn far_apart_faces_stay_separate_and_sorted_by_y_then_x() {
        let faces = [
            face(200.0, 200.0, 20.0, 20.0),
            face(20.0, 200.0, 20.0, 20.0),
            face(100.0, 20.0, 20.0, 20.0),
        ];
        let regions = face_regions(&faces, 300, 300, FACE_MARGIN);
        assert_eq!(
            regions,
            vec![
                region(90, 10, 40, 40),
                region(10, 190, 40, 40),
                region(190, 190, 40, 40),
            ]
        );
    }

    #[test]
    fn unusable_or_outside_boxes_are_ignored() {
        let bad = [
            face(-100.0, 10.0, 50.0, 50.0), // entirely left of the image
            face(10.0, -60.0, 50.0, 50.0),  // entirely above
            face(300.0, 10.0, 20.0, 20.0),  // starts at the right edge
            face(10.0, 400.0, 20.0, 20.0),  // below
            face(f32::NAN, 10.0, 20.0, 20.0),
            face(10.0, 10.0, f32::NAN, 20.0),
            face(10.0, 10.0, f32::INFINITY, 20.0),
            face(10.0, 10.0, 0.0, 20.0),
            face(10.0, 10.0, 20.0, -5.0),
        ];
        assert_eq!(face_regions(&bad, 300, 300, FACE_MARGIN), vec![]);
        // A good face among them is the only one kept.
        let mut faces = bad.to_vec();
        faces.push(face(100.0, 20.0, 20.0, 20.0));
        assert_eq!(
            face_regions(&faces, 300, 300, FACE_MARGIN),
            vec![region(90, 10, 40, 40)]
        );
        // Partly outside still counts.
        assert_eq!(
            face_regions(&[face(-10.0, 10.0, 20.0, 20.0)], 300, 300, FACE_MARGIN),
            vec![region(0, 0, 40, 40)]
        );
    }

    #[test]
    fn degenerate_inputs_give_nothing_without_panicking() {
        let one = [face(10.0, 10.0, 20.0, 20.0)];
        assert_eq!(face_regions(&[], 300, 300, FACE_MARGIN), vec![]);
        assert_eq!(face_regions(&one, 0, 300, FACE_MARGIN), vec![]);
        assert_eq!(face_regions(&one, 300, 0, FACE_MARGIN), vec![]);
        let huge = [face(0.0, 0.0, f32::MAX, f32::MAX)];
        assert_eq!(
            face_regions(&huge, 30, 20, FACE_MARGIN),
            vec![region(10, 0, 20, 20)]
        );
        for margin in [f32::NAN, f32::INFINITY, -1.0] {
            for r in face_regions(&one, 300, 300, margin) {
                assert!(inside(r, 300, 300));
            }
        }
    }

    #[test]
    fn crop_takes_the_region_and_clamps() {
        let image = noisy_image(40, 30, 1);
        let cut = crop(&image, region(5, 7, 10, 12));
        assert_eq!(cut.dimensions(), (10, 12));
        for (x, y, p) in cut.enumerate_pixels() {
            assert_eq!(p, image.get_pixel(x + 5, y + 7));
        }
        assert_eq!(crop(&image, region(35, 25, 10, 10)).dimensions(), (5, 5));
        assert_eq!(crop(&image, region(100, 100, 10, 10)).dimensions(), (0, 0));
    }

    #[test]
    fn feather_mask_is_symmetric_peaked_and_monotone() {
        let (w, h, f) = (11usize, 9usize, 3u32);
        let mask = feather_mask(w as u32, h as u32, f);
        assert_eq!(mask.dim(), (h, w));
        for r in 0..h {
            for c in 0..w {
                let v = mask[[r, c]];
                assert_eq!(v, mask[[h - 1 - r, c]]);
                assert_eq!(v, mask[[r, w - 1 - c]]);
                assert!(v > 0.0 && v <= 1.0);
            }
        }
        assert_eq!(mask[[h / 2, w / 2]], 1.0);
        let corner = mask[[0, 0]];
        assert!((corner - 0.5 / 3.0).abs() < 1e-6);
        assert!(mask.iter().all(|&v| v >= corner));
        // Non-decreasing from each edge to the centre, along rows and columns.
        for r in 0..h {
            for c in 1..=w / 2 {
                assert!(mask[[r, c]] >= mask[[r, c - 1]]);
            }
        }
        for c in 0..w {
            for r in 1..=h / 2 {
                assert!(mask[[r, c]] >= mask[[r - 1, c]]);
            }
        }
        // Strictly rising through the feather band on the middle row.
        assert!(mask[[h / 2, 0]] < mask[[h / 2, 1]] && mask[[h / 2, 1]] < mask[[h / 2, 2]]);
    }

    #[test]
    fn oversized_feather_still_leaves_a_core() {
        for (w, h) in [(10u32, 6u32), (7, 7), (2, 2), (1, 5)] {
            let mask = feather_mask(w, h, 100);
            assert_eq!(mask.dim(), (h as usize, w as usize));
            assert_eq!(mask[[h as usize / 2, w as usize / 2]], 1.0, "{w}x{h}");
            assert!(mask.iter().all(|&v| v > 0.0));
        }
        assert_eq!(feather_mask(0, 5, 3).dim(), (5, 0));
    }

    #[test]
    fn feather_is_half_the_margin_band() {
        assert_eq!(feather_for(region(0, 0, 120, 120), FACE_MARGIN), 15);
        assert_eq!(feather_for(region(0, 0, 100, 60), FACE_MARGIN), 8);
        assert_eq!(feather_for(region(0, 0, 1, 1), FACE_MARGIN), 1);
        assert_eq!(feather_for(region(0, 0, 120, 120), f32::NAN), 1);
    }

    #[test]
    fn paste_touches_only_the_region_and_keeps_the_core_exact() {
        let original = noisy_image(64, 48, 7);
        let r = region(10, 8, 30, 20);
        let generated = noisy_image(r.width, r.height, 99);
        let feather = 4;
        let mut image = original.clone();
        paste(&mut image, r, &generated, feather).expect("region-sized image pastes");
        for (x, y, p) in image.enumerate_pixels() {
            let in_region = x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
            if !in_region {
                assert_eq!(
                    p,
                    original.get_pixel(x, y),
                    "outside pixel ({x}, {y}) changed"
                );
            }
        }
        let (cx, cy) = (r.width / 2, r.height / 2);
        assert_eq!(
            image.get_pixel(r.x + cx, r.y + cy),
            generated.get_pixel(cx, cy)
        );
        // The whole core (distance >= feather from every border) is the generated pixels.
        for gy in feather..r.height - feather {
            for gx in feather..r.width - feather {
                assert_eq!(
                    image.get_pixel(r.x + gx, r.y + gy),
                    generated.get_pixel(gx, gy)
                );
            }
        }
        // The border pixel is the documented blend: weight 0.5 / feather.
        let w = 0.5 / feather as f32;
        let (o, g) = (original.get_pixel(r.x, r.y).0, generated.get_pixel(0, 0).0);
        let got = image.get_pixel(r.x, r.y).0;
        for ch in 0..3 {
            let want = (w * f32::from(g[ch]) + (1.0 - w) * f32::from(o[ch])).round() as u8;
            assert_eq!(got[ch], want);
        }
    }

    #[test]
    fn wrong_sized_generated_is_an_error_not_a_panic() {
        let original = noisy_image(32, 32, 3);
        let mut image = original.clone();
        let r = region(4, 4, 16, 16);
        assert!(paste(&mut image, r, &noisy_image(16, 15, 5), 2).is_err());
        assert!(paste(&mut image, r, &noisy_image(0, 0, 5), 2).is_err());
        // A region past the image is refused too.
        let past = region(20, 20, 16, 16);
        assert!(paste(&mut image, past, &noisy_image(16, 16, 5), 2).is_err());
        let overflow = region(u32::MAX, 0, 16, 16);
        assert!(paste(&mut image, overflow, &noisy_image(16, 16, 5), 2).is_err());
        assert_eq!(image, original);
    }
}
