//! The Boomerang engine every application shares (sample, anonymize, augment, enhance): one opened
//! model, its tokenizer and scheduler config, and prompt embeddings cached per prompt.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, Array3, ArrayView4};

use crate::diffusion::model::{ModelError, SdModel};
use crate::diffusion::pipeline::{
    boomerang_encoded, encode_images, encode_text, encode_text_xl, encode_tiled,
    guidance_scale_embedding, AestheticScores, BatchOutput, Conditioning, EncodedRequest, Encoding,
    Layout, PipelineError, SeededNoise, StartPlan, Tiles, XlConditioning,
};
use crate::diffusion::scheduler::{
    self, Scheduler, SchedulerConfig, SchedulerError, SchedulerKind,
};
use crate::diffusion::tiled::TileGrid;
use crate::diffusion::timing::StageTimer;
use crate::diffusion::tokenizer::{ClipTokenizer, TokenizerError};
use crate::io::runtime::{Runtime, SessionOptions};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// What to run: the knobs of one Boomerang pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Fraction of the schedule re-run, in `[0, 1]`; the start timestep follows from it.
    pub strength: f64,
    pub steps: usize,
    /// `None`: the model's own scheduler (its `scheduler_config.json`).
    pub scheduler: Option<SchedulerKind>,
    pub eta: f32,
    pub prompt: String,
    pub negative_prompt: String,
    pub guidance: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            strength: 0.5,
            // diffusers' img2img default.
            steps: 50,
            scheduler: None,
            eta: 0.0,
            prompt: String::new(),
            negative_prompt: String::new(),
            // 1 disables classifier-free guidance: one UNet call per step.
            guidance: 1.0,
        }
    }
}

/// A model's scheduler config, as diffusers' SD pipelines use it; enough to plan a run without
/// opening any graph (`--dry-run`).
pub struct SchedulerSetup {
    config: SchedulerConfig,
}

impl SchedulerSetup {
    pub fn load(scheduler_config: &Path) -> Result<SchedulerSetup, EngineError> {
        // diffusers' SD pipelines force these two on whatever scheduler config they are given.
        let config =
            SchedulerConfig::from_file(scheduler_config)?.with_stable_diffusion_pipeline_fixes();
        Ok(SchedulerSetup { config })
    }

    /// The `--scheduler` override, else the class the model's config names (resolved only then,
    /// so an unsupported class in the config does not block an explicit choice).
    pub fn kind(&self, settings: &Settings) -> Result<SchedulerKind, EngineError> {
        match settings.scheduler {
            Some(kind) => Ok(kind),
            None => Ok(self.config.class_kind()?),
        }
    }

    /// A fresh scheduler for `settings` and where its reverse process starts.
    pub fn plan(
        &self,
        settings: &Settings,
    ) -> Result<(Box<dyn Scheduler>, StartPlan), EngineError> {
        let scheduler = scheduler::build_img2img(
            self.kind(settings)?,
            &self.config,
            settings.steps,
            settings.eta,
            settings.strength,
        )?;
        let plan = StartPlan::new(scheduler.as_ref(), settings.steps, settings.strength);
        Ok((scheduler, plan))
    }
}

pub struct Engine {
    pub model: SdModel,
    /// `None` for an SDXL refiner, which has `tokenizer_2` only.
    tokenizer: Option<ClipTokenizer>,
    /// SDXL's second tokenizer (`tokenizer_2`).
    tokenizer_2: Option<ClipTokenizer>,
    pub schedulers: SchedulerSetup,
    /// Per prompt: the UNet's `encoder_hidden_states` and, for SDXL, the pooled embedding.
    embeddings: HashMap<String, (Array3<f32>, Option<Array2<f32>>)>,
    pub timer: StageTimer,
}

impl Engine {
    pub fn open(
        model_dir: &Path,
        runtime: &Runtime,
        options: &SessionOptions,
    ) -> Result<Engine, EngineError> {
        let model = SdModel::load(model_dir, runtime, options)?;
        let tokenizer = match &model.layout.text_encoder {
            Some((_, dir)) => Some(ClipTokenizer::from_dir(dir)?),
            None => None,
        };
        let tokenizer_2 = match &model.layout.text_encoder_2 {
            Some((_, dir)) => Some(ClipTokenizer::from_dir(dir)?),
            None => None,
        };
        let schedulers = SchedulerSetup::load(&model.layout.scheduler_config)?;
        Ok(Engine {
            model,
            tokenizer,
            tokenizer_2,
            schedulers,
            embeddings: HashMap::new(),
            timer: StageTimer::default(),
        })
    }

    fn embedding(
        &mut self,
        prompt: &str,
    ) -> Result<(Array3<f32>, Option<Array2<f32>>), EngineError> {
        if let Some(cached) = self.embeddings.get(prompt) {
            return Ok(cached.clone());
        }
        let ids = self.tokenizer.as_ref().map(|t| t.encode(prompt));
        let embedding = match (&self.tokenizer_2, ids) {
            (Some(tokenizer_2), ids) => {
                let ids_2 = tokenizer_2.encode(prompt);
                let (hidden, pooled) =
                    encode_text_xl(&mut self.model, ids.as_deref(), &ids_2, &mut self.timer)?;
                (hidden, Some(pooled))
            }
            (None, Some(ids)) => (encode_text(&mut self.model, &ids, &mut self.timer)?, None),
            (None, None) => {
                return Err(PipelineError::Input(format!(
                    "{}: no tokenizer/ and no tokenizer_2/ to encode the prompt with",
                    self.model.layout.root.display()
                ))
                .into())
            }
        };
        self.embeddings
            .insert(prompt.to_string(), embedding.clone());
        Ok(embedding)
    }

    pub fn conditioning(&mut self, settings: &Settings) -> Result<Conditioning, EngineError> {
        let (cond, pooled) = self.embedding(&settings.prompt)?;
        let zeros_for_empty = self
            .model
            .xl
            .as_ref()
            .is_some_and(|xl| xl.force_zeros_for_empty_prompt);
        let aesthetic_scores = self
            .model
            .xl
            .as_ref()
            .filter(|xl| xl.requires_aesthetics_score)
            .map(|_| AestheticScores::default());
        let guidance_embedding = match self.model.guidance_embedding {
            Some(_) if !settings.negative_prompt.is_empty() => {
                return Err(PipelineError::Input(
                    "a latent consistency model takes guidance through its guidance embedding (`timestep_cond`), without classifier-free guidance: it has no negative prompt; leave it out".into(),
                )
                .into())
            }
            Some(embedding) => Some(guidance_scale_embedding(
                settings.guidance - 1.0,
                embedding.dim,
            )),
            None => None,
        };
        let uncond = if settings.guidance <= 1.0 || guidance_embedding.is_some() {
            None
        } else if zeros_for_empty && settings.negative_prompt.is_empty() {
            // SDXL's `force_zeros_for_empty_prompt`: no negative prompt means zero embeddings
            // (diffusers does this when negative_prompt is not given).
            Some((
                Array3::zeros(cond.raw_dim()),
                pooled.as_ref().map(|p| Array2::zeros(p.raw_dim())),
            ))
        } else {
            Some(self.embedding(&settings.negative_prompt)?)
        };
        let xl = pooled.map(|pooled| XlConditioning {
            pooled,
            uncond_pooled: uncond.as_ref().and_then(|(_, p)| p.clone()),
            aesthetic_scores,
        });
        Ok(Conditioning {
            cond,
            uncond: uncond.map(|(hidden, _)| hidden),
            guidance: settings.guidance,
            xl,
            guidance_embedding,
        })
    }

    /// Boomerang on `[B, 3, H, W]` images in `[-1, 1]`, image `i` seeded by `seeds[i]`.
    pub fn run(
        &mut self,
        settings: &Settings,
        images: ArrayView4<f32>,
        seeds: &[[u8; 32]],
    ) -> Result<(BatchOutput, StartPlan), EngineError> {
        check_seeds(images.shape()[0], "images", seeds)?;
        let encoding = self.encode(images)?;
        self.run_encoded(settings, &encoding, seeds)
    }

    /// The VAE encoder's output for `[B, 3, H, W]` images in `[-1, 1]`, to share between runs
    /// ([`Encoding::select`] repeats an image for several samples).
    pub fn encode(&mut self, images: ArrayView4<f32>) -> Result<Encoding, EngineError> {
        Ok(encode_images(&mut self.model, images, &mut self.timer)?)
    }

    /// Boomerang from an encoding, row `i` seeded by `seeds[i]`: the same result as [`Engine::run`]
    /// on the images that were encoded, since every random draw comes from the row's own seed.
    pub fn run_encoded(
        &mut self,
        settings: &Settings,
        encoding: &Encoding,
        seeds: &[[u8; 32]],
    ) -> Result<(BatchOutput, StartPlan), EngineError> {
        check_seeds(encoding.len(), "encodings", seeds)?;
        self.denoise(settings, encoding, seeds, Layout::Whole)
    }

    /// Posterior sample, forward noise, reverse process and decode of `encoding`, its graphs
    /// called as `layout` says.
    fn denoise(
        &mut self,
        settings: &Settings,
        encoding: &Encoding,
        seeds: &[[u8; 32]],
        layout: Layout,
    ) -> Result<(BatchOutput, StartPlan), EngineError> {
        let conditioning = self.conditioning(settings)?;
        let (mut scheduler, plan) = self.schedulers.plan(settings)?;
        let mut noise = SeededNoise::new(seeds);
        let request = EncodedRequest {
            plan: &plan,
            encoding,
            conditioning: &conditioning,
            layout,
        };
        let output = boomerang_encoded(
            &mut self.model,
            scheduler.as_mut(),
            request,
            &mut noise,
            &mut self.timer,
            &mut |_, _| {},
        )?;
        Ok((output, plan))
    }

    /// Boomerang on one `[1, 3, H, W]` image in `[-1, 1]` larger than the working size, seeded by
    /// `seed`: one latent field denoised in overlapping working-size tiles fused at every graph
    /// call (see [`crate::diffusion::tiled`]), `batch` tiles per call. H and W must be multiples
    /// of the VAE factor and at least the working size. Returns the output, the plan and the
    /// number of tiles.
    pub fn run_tiled(
        &mut self,
        settings: &Settings,
        image: ArrayView4<f32>,
        seed: [u8; 32],
        batch: usize,
    ) -> Result<(BatchOutput, StartPlan, usize), EngineError> {
        let tile = self.model.geometry.latent_size;
        let tiling = LatentTiling {
            tile,
            overlap: tile / TILE_OVERLAP_DIVISOR,
        };
        self.run_tiled_with(settings, image, seed, batch, tiling)
    }

    /// [`Engine::run_tiled`] with tiles of another size (a multiple of 8 latent cells, so the
    /// UNet can halve it down to its bottom); the image must be at least one tile large.
    pub fn run_tiled_with(
        &mut self,
        settings: &Settings,
        image: ArrayView4<f32>,
        seed: [u8; 32],
        batch: usize,
        tiling: LatentTiling,
    ) -> Result<(BatchOutput, StartPlan, usize), EngineError> {
        let grid = self.latent_grid(image.shape(), tiling)?;
        let tiles = Tiles { grid: &grid, batch };
        let encoding = encode_tiled(&mut self.model, image, tiles, &mut self.timer)?;
        let (output, plan) = self.denoise(settings, &encoding, &[seed], Layout::Tiled(tiles))?;
        self.timer.count_tiles(grid.len());
        Ok((output, plan, grid.len()))
    }

    /// The tiles over the latent field of an image of `shape` `[1, 3, H, W]`.
    fn latent_grid(&self, shape: &[usize], tiling: LatentTiling) -> Result<TileGrid, EngineError> {
        let factor = self.model.geometry.vae_scale_factor;
        let LatentTiling { tile, overlap } = tiling;
        let size = tile * factor;
        let fits = shape.len() == 4
            && shape[0] == 1
            && shape[2] >= size
            && shape[3] >= size
            && shape[2].is_multiple_of(factor)
            && shape[3].is_multiple_of(factor);
        if !fits {
            return Err(PipelineError::Input(format!(
                "tiled Boomerang needs one image of at least {size}x{size} pixels with sides that are multiples of {factor}; got shape {shape:?}"
            ))
            .into());
        }
        if tile == 0 || !tile.is_multiple_of(8) || overlap >= tile {
            return Err(PipelineError::Input(format!(
                "latent tiles of {tile} cells overlapping by {overlap}: the tile must be a positive multiple of 8 and the overlap smaller"
            ))
            .into());
        }
        Ok(TileGrid::new(
            shape[3] / factor,
            shape[2] / factor,
            tile,
            overlap,
        ))
    }
}

/// Tile side and least overlap between neighbouring tiles, in latent cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentTiling {
    pub tile: usize,
    pub overlap: usize,
}

/// Neighbouring tiles overlap by at least this fraction of a tile: a quarter, as tiled-diffusion
/// tools commonly use; wider overlaps cost more tiles for little gain once predictions are fused.
pub const TILE_OVERLAP_DIVISOR: usize = 4;

/// One seed per image (or encoding) of a batch.
fn check_seeds(rows: usize, what: &str, seeds: &[[u8; 32]]) -> Result<(), EngineError> {
    if seeds.len() != rows {
        return Err(
            PipelineError::Input(format!("{rows} {what} but {} seeds", seeds.len())).into(),
        );
    }
    Ok(())
}
