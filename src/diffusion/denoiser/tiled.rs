//! A denoiser on a field larger than its fixed size: the sampler's noise and Euler steps act on
//! the whole field, and every model call runs the graph on overlapping tiles whose x0 estimates
//! are fused with [`TileGrid`]'s blend weights (MultiDiffusion, as `diffusion::tiled` does for
//! Stable Diffusion latents), so neighbouring tiles agree instead of meeting at a seam. A field
//! of exactly one tile gets weights of 1 and reproduces the untiled sampler bit for bit.

use ndarray::{s, Array4, ArrayView4};

use super::sampler::{self, Denoise, SamplePlan};
use crate::diffusion::tiled::TileGrid;

/// `model` called on the tiles of `grid`, `batch` tiles per call, fused into one estimate.
struct Tiled<'a, D> {
    model: &'a mut D,
    grid: &'a TileGrid,
    batch: usize,
}

impl<D: Denoise> Denoise for Tiled<'_, D> {
    type Error = D::Error;

    fn denoise(&mut self, x: ArrayView4<f32>, sigma: f64) -> Result<Array4<f32>, D::Error> {
        let mut fusion = self.grid.fusion(x.shape()[1]);
        let indices: Vec<usize> = (0..self.grid.len()).collect();
        for chunk in indices.chunks(self.batch.max(1)) {
            let crops = self.grid.crops(x, chunk);
            let estimates = self.model.denoise(crops.view(), sigma)?;
            fusion.add(estimates.view(), chunk);
        }
        Ok(fusion.finish())
    }
}

/// Boomerang on a `[1, C, H, W]` field at least `tile` on each side, with `noise` of the same
/// shape, the model called on `tile`-sided tiles overlapping by at least `overlap`. Returns the
/// result and the number of tiles.
pub fn boomerang_tiled<D: Denoise>(
    model: &mut D,
    plan: &SamplePlan,
    field: ArrayView4<f32>,
    noise: ArrayView4<f32>,
    tile: usize,
    overlap: usize,
    batch: usize,
) -> Result<(Array4<f32>, usize), D::Error> {
    let (height, width) = (field.shape()[2], field.shape()[3]);
    let grid = TileGrid::new(width, height, tile, overlap);
    let mut tiled = Tiled {
        model,
        grid: &grid,
        batch,
    };
    let result = sampler::boomerang(&mut tiled, plan, field, noise)?;
    Ok((result, grid.len()))
}

/// `field` grown to at least `side` on each axis by repeating its last row and column (the
/// padding is cut off afterwards, as the SD path pads a small image).
pub fn pad_to(field: ArrayView4<f32>, side: usize) -> Array4<f32> {
    let (batch, channels, height, width) = field.dim();
    let (padded_height, padded_width) = (height.max(side), width.max(side));
    Array4::from_shape_fn(
        (batch, channels, padded_height, padded_width),
        |(b, c, y, x)| field[[b, c, y.min(height - 1), x.min(width - 1)]],
    )
}

/// The top-left `height` x `width` of a padded field.
pub fn crop(field: ArrayView4<f32>, height: usize, width: usize) -> Array4<f32> {
    field.slice(s![.., .., ..height, ..width]).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pointwise "denoiser": its tiled, fused estimate must equal its estimate on the whole
    /// field wherever the tiles sit, since the blend weights sum to one.
    struct Pointwise {
        calls: Vec<usize>,
    }

    impl Denoise for Pointwise {
        type Error = ();
        fn denoise(&mut self, x: ArrayView4<f32>, sigma: f64) -> Result<Array4<f32>, ()> {
            assert_eq!(&x.shape()[2..], &[8, 8], "tiles only");
            self.calls.push(x.shape()[0]);
            Ok(x.mapv(|v| v * 0.5 + sigma as f32))
        }
    }

    fn field(height: usize, width: usize) -> Array4<f32> {
        Array4::from_shape_fn((1, 1, height, width), |(_, _, y, x)| {
            ((y * 31 + x * 17) % 13) as f32 / 13.0 - 0.5
        })
    }

    #[test]
    fn fused_tiles_of_a_pointwise_model_equal_the_whole_field() {
        let spec_plan = SamplePlan {
            start_sigma: Some(2.0),
            calls: vec![2.0, 0.5, 0.1],
        };
        let source = field(20, 13);
        let noise = field(20, 13).mapv(|v| v * 3.0);
        let mut model = Pointwise { calls: Vec::new() };
        let (tiled, tiles) =
            boomerang_tiled(&mut model, &spec_plan, source.view(), noise.view(), 8, 2, 4).unwrap();
        // 2 columns (13 wide) by 3 rows (20 high), 4 tiles per call: 2 calls per step.
        assert_eq!(tiles, 6);
        assert_eq!(model.calls, vec![4, 2, 4, 2, 4, 2]);

        struct Whole;
        impl Denoise for Whole {
            type Error = ();
            fn denoise(&mut self, x: ArrayView4<f32>, sigma: f64) -> Result<Array4<f32>, ()> {
                Ok(x.mapv(|v| v * 0.5 + sigma as f32))
            }
        }
        let whole =
            sampler::boomerang(&mut Whole, &spec_plan, source.view(), noise.view()).unwrap();
        let worst = tiled
            .iter()
            .zip(whole.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "max |tiled - whole| {worst}");
    }

    #[test]
    fn one_tile_is_the_untiled_sampler_bit_for_bit() {
        let plan = SamplePlan {
            start_sigma: Some(1.5),
            calls: vec![1.5, 0.2],
        };
        let source = field(8, 8);
        let noise = field(8, 8).mapv(|v| v * 2.0 - 0.1);
        let mut model = Pointwise { calls: Vec::new() };
        let (tiled, tiles) =
            boomerang_tiled(&mut model, &plan, source.view(), noise.view(), 8, 2, 1).unwrap();
        assert_eq!(tiles, 1);
        let mut alone = Pointwise { calls: Vec::new() };
        let untiled = sampler::boomerang(&mut alone, &plan, source.view(), noise.view()).unwrap();
        assert_eq!(tiled, untiled);
    }

    #[test]
    fn padding_repeats_the_edge_and_crop_undoes_it() {
        let small = field(5, 3);
        let padded = pad_to(small.view(), 8);
        assert_eq!(padded.dim(), (1, 1, 8, 8));
        assert_eq!(padded[[0, 0, 7, 7]], small[[0, 0, 4, 2]]);
        assert_eq!(padded[[0, 0, 2, 6]], small[[0, 0, 2, 2]]);
        assert_eq!(crop(padded.view(), 5, 3), small);
        assert_eq!(pad_to(field(9, 12).view(), 8), field(9, 12));
    }
}
