//! Native-resolution Boomerang: one image larger than the model's working size, denoised as one
//! latent field in overlapping tiles (MultiDiffusion, Bar-Tal et al. 2023).
//!
//! The forward noise, the posterior sample and every scheduler step act on the whole latent
//! field, drawn from the image's own seed streams exactly as for an untiled image. Only the graph
//! calls are tiled: at every reverse step the UNet runs on overlapping latent tiles and their
//! predictions are averaged with blend weights into one prediction for the whole field, so
//! neighbouring tiles agree by construction instead of blending two different hallucinations. The
//! VAE encoder's output (before the posterior sample) and the decoder's pixels are fused the same
//! way, in latent and pixel space. A field of exactly one tile takes weights of 1 and reproduces
//! the untiled pipeline bit for bit.
//!
//! Tile placement: along each axis tiles are spread evenly with the first at 0 and the last flush
//! with the far edge, as few as keep neighbours overlapping by at least the overlap. A tile's
//! weight ramps linearly across every overlap it shares with a neighbour, from 0.5/V at its own
//! edge to 1 - 0.5/V at the neighbour's (V the overlap), and is 1 elsewhere; a 2-d weight is the
//! product of the two axes'. Overlapping ramps sum to 1, and fusion divides by the summed weights.

use ndarray::{s, Array2, Array4, ArrayView4, Axis};

/// Where tiles start along an axis of `length` cells (at least one tile long): evenly spread,
/// first at 0, last at `length - tile`, as few as keep neighbours overlapping by `overlap`.
pub fn tile_starts(length: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if length <= tile || tile == 0 {
        return vec![0];
    }
    let advance = tile.saturating_sub(overlap).max(1);
    let beyond = length - tile;
    let count = 1 + beyond.div_ceil(advance);
    (0..count)
        .map(|i| (i * beyond + (count - 1) / 2) / (count - 1))
        .collect()
}

/// Per-cell weights of the tile starting at `starts[index]`, along one axis.
fn axis_weights(starts: &[usize], index: usize, tile: usize) -> Vec<f32> {
    let start = starts[index];
    let left = index
        .checked_sub(1)
        .map(|previous| starts[previous] + tile - start)
        .unwrap_or(0);
    let right = starts
        .get(index + 1)
        .map(|&next| start + tile - next)
        .unwrap_or(0);
    (0..tile)
        .map(|local| {
            let mut weight = 1.0;
            if local < left {
                weight *= (local as f32 + 0.5) / left as f32;
            }
            if local + right >= tile {
                weight *= (tile - local) as f32 - 0.5;
                weight /= right as f32;
            }
            weight
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct TileAxis {
    starts: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

impl TileAxis {
    fn from_starts(starts: Vec<usize>, tile: usize) -> TileAxis {
        let weights = (0..starts.len())
            .map(|i| axis_weights(&starts, i, tile))
            .collect();
        TileAxis { starts, weights }
    }
}

/// Square tiles over a `width` x `height` grid of cells (latent cells or pixels), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct TileGrid {
    tile: usize,
    width: usize,
    height: usize,
    columns: TileAxis,
    rows: TileAxis,
}

impl TileGrid {
    /// Tiles of side `tile` overlapping by at least `overlap`; each side of the grid must be at
    /// least one tile long (callers pad smaller images first).
    pub fn new(width: usize, height: usize, tile: usize, overlap: usize) -> TileGrid {
        TileGrid {
            tile,
            width,
            height,
            columns: TileAxis::from_starts(tile_starts(width, tile, overlap), tile),
            rows: TileAxis::from_starts(tile_starts(height, tile, overlap), tile),
        }
    }

    /// The same tiles on a grid `factor` times finer (latent tiles as decoded pixels).
    pub fn scaled(&self, factor: usize) -> TileGrid {
        let tile = self.tile * factor;
        let scale = |axis: &TileAxis| {
            TileAxis::from_starts(axis.starts.iter().map(|s| s * factor).collect(), tile)
        };
        TileGrid {
            tile,
            width: self.width * factor,
            height: self.height * factor,
            columns: scale(&self.columns),
            rows: scale(&self.rows),
        }
    }

    /// `(width, height)` in cells.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    pub fn tile(&self) -> usize {
        self.tile
    }

    pub fn len(&self) -> usize {
        self.columns.starts.len() * self.rows.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn column_row(&self, index: usize) -> (usize, usize) {
        let columns = self.columns.starts.len();
        (index % columns, index / columns)
    }

    /// Top-left cell of tile `index`, `(x, y)`.
    pub fn origin(&self, index: usize) -> (usize, usize) {
        let (column, row) = self.column_row(index);
        (self.columns.starts[column], self.rows.starts[row])
    }

    /// Tile `index`'s blend weights, `[tile, tile]`.
    pub fn weights(&self, index: usize) -> Array2<f32> {
        let (column, row) = self.column_row(index);
        let (wx, wy) = (&self.columns.weights[column], &self.rows.weights[row]);
        Array2::from_shape_fn((self.tile, self.tile), |(y, x)| wy[y] * wx[x])
    }

    /// Tiles `indices` of a `[1, C, height, width]` field, stacked as `[indices, C, tile, tile]`.
    pub fn crops(&self, field: ArrayView4<f32>, indices: &[usize]) -> Array4<f32> {
        let t = self.tile;
        let channels = field.shape()[1];
        let mut stacked = Array4::zeros((indices.len(), channels, t, t));
        for (mut slot, &index) in stacked.outer_iter_mut().zip(indices) {
            let (x, y) = self.origin(index);
            slot.assign(&field.slice(s![0, .., y..y + t, x..x + t]));
        }
        stacked
    }

    /// An empty weighted sum over this grid with `channels` channels.
    pub fn fusion(&self, channels: usize) -> Fusion<'_> {
        Fusion {
            grid: self,
            sum: Array4::zeros((1, channels, self.height, self.width)),
            weight: Array2::zeros((self.height, self.width)),
        }
    }
}

/// The running weighted sum of tile results over a grid.
pub struct Fusion<'a> {
    grid: &'a TileGrid,
    sum: Array4<f32>,
    weight: Array2<f32>,
}

impl Fusion<'_> {
    /// Adds the results `[indices, C, tile, tile]` of tiles `indices`.
    pub fn add(&mut self, results: ArrayView4<f32>, indices: &[usize]) {
        let t = self.grid.tile;
        for (result, &index) in results.outer_iter().zip(indices) {
            let (x, y) = self.grid.origin(index);
            let weights = self.grid.weights(index);
            self.weight
                .slice_mut(s![y..y + t, x..x + t])
                .zip_mut_with(&weights, |total, w| *total += w);
            for (channel, result) in result.outer_iter().enumerate() {
                let mut window = self.sum.slice_mut(s![0, channel, y..y + t, x..x + t]);
                ndarray::Zip::from(&mut window)
                    .and(&result)
                    .and(&weights)
                    .for_each(|total, &value, &w| *total += w * value);
            }
        }
    }

    /// The weighted mean, `[1, C, height, width]`; a cell no tile covered (none, by
    /// construction) would read 0.
    pub fn finish(self) -> Array4<f32> {
        let Fusion {
            mut sum, weight, ..
        } = self;
        for mut channel in sum.index_axis_mut(Axis(0), 0).outer_iter_mut() {
            channel.zip_mut_with(&weight, |value, &w| *value /= w.max(f32::MIN_POSITIVE));
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_axis_evenly_with_at_least_the_overlap() {
        assert_eq!(tile_starts(100, 128, 32), [0]);
        assert_eq!(tile_starts(128, 128, 32), [0]);
        assert_eq!(tile_starts(200, 128, 32), [0, 72]);
        assert_eq!(tile_starts(512, 128, 32), [0, 96, 192, 288, 384]);
        assert_eq!(tile_starts(256, 128, 0), [0, 128]);
        for length in 129usize..700 {
            for overlap in [0, 1, 32, 64, 127] {
                let starts = tile_starts(length, 128, overlap);
                assert_eq!(starts[0], 0);
                assert_eq!(*starts.last().unwrap(), length - 128);
                for pair in starts.windows(2) {
                    assert!(pair[1] > pair[0] && pair[0] + 128 - pair[1] >= overlap);
                }
                // As few as possible: one tile less could not keep the overlap.
                let fewer = starts.len() - 1;
                assert!(fewer * 128 - (fewer - 1) * overlap < length);
            }
        }
    }

    #[test]
    fn weights_ramp_across_overlaps_and_sum_to_one() {
        for (length, overlap) in [
            (200usize, 32usize),
            (512, 32),
            (300, 64),
            (1000, 1),
            (700, 100),
        ] {
            let starts = tile_starts(length, 128, overlap);
            let mut sum = vec![0f32; length];
            for index in 0..starts.len() {
                let weights = axis_weights(&starts, index, 128);
                assert!(weights.iter().all(|&w| w > 0.0 && w <= 1.0));
                for (local, w) in weights.iter().enumerate() {
                    sum[starts[index] + local] += w;
                }
            }
            // Ramps of neighbours sum to exactly 1 while no three tiles meet (every overlap at
            // most half a tile); beyond that the blend's division by the sum takes over.
            let pairwise = starts.windows(2).all(|p| p[0] + 128 - p[1] <= 64);
            for (x, s) in sum.iter().enumerate() {
                if pairwise {
                    assert!((s - 1.0).abs() < 1e-5, "length {length}: sum {s} at {x}");
                } else {
                    assert!(*s >= 0.5, "length {length}: sum {s} at {x}");
                }
            }
        }
        // A lone tile has weight 1 everywhere; an edge shared with a neighbour starts near 0.
        assert!(axis_weights(&[0], 0, 128).iter().all(|&w| w == 1.0));
        let first = axis_weights(&[0, 72], 0, 128);
        assert_eq!(first[0], 1.0);
        assert_eq!(first[127], 0.5 / 56.0);
    }

    #[test]
    fn one_tile_fuses_to_its_own_values_exactly() {
        let grid = TileGrid::new(16, 16, 16, 4);
        let field = Array4::from_shape_fn((1, 4, 16, 16), |(_, c, y, x)| {
            (c * 1000 + y * 16 + x) as f32 * 0.001_234_5 - 3.3
        });
        let mut fusion = grid.fusion(4);
        fusion.add(grid.crops(field.view(), &[0]).view(), &[0]);
        assert_eq!(fusion.finish(), field);
    }

    #[test]
    fn fusing_a_field_cut_into_tiles_gives_it_back() {
        let grid = TileGrid::new(40, 27, 16, 4);
        assert!(grid.len() > 4);
        let field = Array4::from_shape_fn((1, 3, 27, 40), |(_, c, y, x)| {
            ((c + 1) * (y * 40 + x)) as f32 / 97.0
        });
        let indices: Vec<usize> = (0..grid.len()).collect();
        let mut fusion = grid.fusion(3);
        for chunk in indices.chunks(3) {
            fusion.add(grid.crops(field.view(), chunk).view(), chunk);
        }
        let fused = fusion.finish();
        let worst = (&fused - &field)
            .mapv(f32::abs)
            .fold(0.0f32, |m, &v| m.max(v));
        assert!(worst < 1e-4, "worst {worst}");
    }

    #[test]
    fn a_scaled_grid_puts_the_same_tiles_on_finer_cells() {
        let grid = TileGrid::new(40, 27, 16, 4);
        let pixels = grid.scaled(8);
        assert_eq!(pixels.len(), grid.len());
        assert_eq!(pixels.tile(), 128);
        for index in 0..grid.len() {
            let (x, y) = grid.origin(index);
            assert_eq!(pixels.origin(index), (x * 8, y * 8));
        }
    }
}
