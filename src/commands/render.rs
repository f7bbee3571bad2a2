//! Boomerang on an image as a level frames it: the whole image (fitted into the model's square
//! when it is no larger, else at its own size in fused tiles) or only its face regions, each
//! re-generated at the working size and blended back so every other pixel stays the input's.
//! `anonymize` and the audit's `--recompute` both render through here, so a rerun from a report
//! row's seed makes the same bytes.

use image::{DynamicImage, RgbImage};
use ndarray::{concatenate, Array4, ArrayView3, Axis};
use sha2::{Digest, Sha256};

use crate::certify::FaceAnalysis;
use crate::diffusion::engine::{Engine, EngineError, Settings};
use crate::diffusion::pipeline::{PipelineError, StartPlan};
use crate::diffusion::regions::{self, FaceBox, Region, FACE_MARGIN};
use crate::io::imageio::{self, FrameLimits, Framing};
use crate::policy;

/// How images meet `engine`'s model, generated at most `working_megapixels` large.
pub fn frame_limits(engine: &Engine, working_megapixels: f64) -> FrameLimits {
    let geometry = engine.model.geometry;
    FrameLimits {
        working: geometry.image_size() as u32,
        multiple: geometry.vae_scale_factor as u32,
        max_pixels: (working_megapixels * 1e6) as u64,
    }
}

/// The detected faces' boxes, in pixels.
pub fn face_boxes(analysis: &FaceAnalysis) -> Vec<FaceBox> {
    analysis
        .faces
        .iter()
        .map(|face| FaceBox {
            x: face.bbox.x0,
            y: face.bbox.y0,
            width: face.bbox.width(),
            height: face.bbox.height(),
        })
        .collect()
}

/// One model input of an image: the whole image, or one face region of it.
struct Piece {
    tensor: Array4<f32>,
    framing: Framing,
    /// Where a face region's result goes; `None` for the whole image.
    region: Option<Region>,
}

/// What one image's rendering runs.
pub struct ImagePlan {
    pieces: Vec<Piece>,
    /// The input's pixels, which face regions are blended into.
    base: Option<RgbImage>,
    grayscale: bool,
}

impl ImagePlan {
    /// The plan for `image` under `region`; `faces` are the input's detected faces, in pixels.
    /// Without a face, `Faces` re-generates the whole image (the level's `on-no-face` then
    /// decides what the output is worth).
    pub fn new(
        image: &DynamicImage,
        region: policy::Region,
        faces: &[FaceBox],
        limits: FrameLimits,
    ) -> ImagePlan {
        let grayscale = !image.color().has_color();
        let face_regions = match region {
            policy::Region::Faces => {
                regions::face_regions(faces, image.width(), image.height(), FACE_MARGIN)
            }
            policy::Region::Whole => Vec::new(),
        };
        if face_regions.is_empty() {
            let (tensor, framing) = imageio::frame(image, limits);
            return ImagePlan {
                pieces: vec![Piece {
                    tensor,
                    framing,
                    region: None,
                }],
                base: None,
                grayscale,
            };
        }
        let base = image.to_rgb8();
        let pieces = face_regions
            .into_iter()
            .map(|region| {
                let crop = DynamicImage::ImageRgb8(regions::crop(&base, region));
                // Resized to the working square whatever its size: a face gets the model's
                // full attention, and a large one costs no more than a small one.
                let (tensor, placement) = imageio::to_working_tensor(&crop, limits.working);
                Piece {
                    tensor,
                    framing: Framing::Fitted(placement),
                    region: Some(region),
                }
            })
            .collect();
        ImagePlan {
            pieces,
            base: Some(base),
            grayscale,
        }
    }

    /// Face regions re-generated (0 for a whole image).
    pub fn regions(&self) -> usize {
        self.pieces.iter().filter(|p| p.region.is_some()).count()
    }

    /// The seed of piece `index` given the image's seed: the image's own for the whole image (so
    /// a whole-image row's seed is exactly what ran), a derived one per face region.
    fn piece_seed(&self, image_seed: &[u8; 32], index: usize) -> [u8; 32] {
        if self.base.is_none() {
            return *image_seed;
        }
        let mut hasher = Sha256::new();
        hasher.update(b"boomerang/region-seed/v1");
        hasher.update(image_seed);
        hasher.update((index as u32).to_le_bytes());
        hasher.finalize().into()
    }
}

/// The images of `plans` (image i seeded by `seeds[i]`) and where their reverse process started.
/// Fitted pieces of all images run together, `batch` per UNet call; native ones one by one in
/// tiles, `batch` tiles per call. No result depends on `batch` or on which images share a call.
pub fn render(
    engine: &mut Engine,
    settings: &Settings,
    plans: &[&ImagePlan],
    seeds: &[[u8; 32]],
    batch: usize,
) -> Result<(Vec<DynamicImage>, StartPlan), EngineError> {
    one_seed_each(plans, seeds)?;
    let (_, start) = engine.schedulers.plan(settings)?;
    let mut results: Vec<Vec<Option<DynamicImage>>> = plans
        .iter()
        .map(|plan| plan.pieces.iter().map(|_| None).collect())
        .collect();
    let mut fitted = Vec::new();
    for (image, plan) in plans.iter().enumerate() {
        for (index, piece) in plan.pieces.iter().enumerate() {
            let seed = plan.piece_seed(&seeds[image], index);
            match piece.framing {
                Framing::Fitted(_) => fitted.push((image, index, seed)),
                Framing::Native(_) => {
                    let (output, _, _) =
                        engine.run_tiled(settings, piece.tensor.view(), seed, batch)?;
                    let pixels = output.images.index_axis(Axis(0), 0);
                    results[image][index] = Some(unframe(pixels, &piece.framing)?);
                }
            }
        }
    }
    for chunk in fitted.chunks(batch.max(1)) {
        let pieces: Vec<&Piece> = chunk
            .iter()
            .map(|&(image, index, _)| &plans[image].pieces[index])
            .collect();
        let views: Vec<_> = pieces.iter().map(|piece| piece.tensor.view()).collect();
        let stacked = concatenate(Axis(0), &views)
            .map_err(|error| PipelineError::Input(format!("stacking a batch: {error}")))?;
        let seeds: Vec<[u8; 32]> = chunk.iter().map(|&(_, _, seed)| seed).collect();
        let (output, _) = engine.run(settings, stacked.view(), &seeds)?;
        for ((pixels, piece), &(image, index, _)) in
            output.images.outer_iter().zip(&pieces).zip(chunk)
        {
            results[image][index] = Some(unframe(pixels, &piece.framing)?);
        }
    }
    let images = plans
        .iter()
        .zip(results)
        .map(|(plan, pieces)| assemble(plan, pieces))
        .collect::<Result<_, _>>()?;
    Ok((images, start))
}

/// [`imageio::unframe`], a result of the wrong shape blamed on the VAE decoder that made it.
fn unframe(pixels: ArrayView3<f32>, framing: &Framing) -> Result<DynamicImage, EngineError> {
    imageio::unframe(pixels, framing).map_err(|error| {
        PipelineError::Output {
            graph: "vae_decoder",
            message: error.to_string(),
        }
        .into()
    })
}

/// Every image needs its own seed: a caller bug otherwise, reported rather than indexed past.
fn one_seed_each(plans: &[&ImagePlan], seeds: &[[u8; 32]]) -> Result<(), EngineError> {
    if plans.len() == seeds.len() {
        return Ok(());
    }
    let message = format!("{} images but {} seeds", plans.len(), seeds.len());
    Err(PipelineError::Input(message).into())
}

/// [`render`] spread over several engines (one per device), image i on engine i mod n, each in
/// its own thread. Which engine took an image changes no byte: every draw comes from the image's
/// own seed, and no result depends on what shares a call.
pub fn render_on(
    engines: &mut [Engine],
    settings: &Settings,
    plans: &[&ImagePlan],
    seeds: &[[u8; 32]],
    batch: usize,
) -> Result<(Vec<DynamicImage>, StartPlan), EngineError> {
    let workers = engines.len();
    if workers <= 1 {
        let Some(engine) = engines.first_mut() else {
            return Err(PipelineError::Input("no engine to render on".into()).into());
        };
        return render(engine, settings, plans, seeds, batch);
    }
    one_seed_each(plans, seeds)?;
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = engines
            .iter_mut()
            .enumerate()
            .map(|(worker, engine)| {
                let mine: Vec<usize> = (worker..plans.len()).step_by(workers).collect();
                scope.spawn(move || {
                    let my_plans: Vec<&ImagePlan> = mine.iter().map(|&i| plans[i]).collect();
                    let my_seeds: Vec<[u8; 32]> = mine.iter().map(|&i| seeds[i]).collect();
                    render(engine, settings, &my_plans, &my_seeds, batch)
                        .map(|(images, start)| (mine, images, start))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(PipelineError::Input("a render worker panicked".into()).into())
                })
            })
            .collect::<Vec<_>>()
    });
    let mut images: Vec<Option<DynamicImage>> = plans.iter().map(|_| None).collect();
    let mut start = None;
    for outcome in outcomes {
        let (mine, rendered, plan) = outcome?;
        for (index, image) in mine.into_iter().zip(rendered) {
            images[index] = Some(image);
        }
        start = Some(plan);
    }
    let images = images
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| PipelineError::Input("an image was not rendered".into()))?;
    let start = start.ok_or_else(|| PipelineError::Input("no worker ran".into()))?;
    Ok((images, start))
}

/// One image's output from its rendered pieces.
fn assemble(
    plan: &ImagePlan,
    rendered: Vec<Option<DynamicImage>>,
) -> Result<DynamicImage, EngineError> {
    let missing = || PipelineError::Input("a piece of an image was not rendered".into());
    let Some(base) = &plan.base else {
        return rendered
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(missing)
            .map_err(Into::into);
    };
    let mut output = base.clone();
    for (piece, result) in plan.pieces.iter().zip(rendered) {
        let (Some(region), Some(result)) = (piece.region, result) else {
            return Err(missing().into());
        };
        let feather = regions::feather_for(region, FACE_MARGIN);
        regions::paste(&mut output, region, &result.to_rgb8(), feather)
            .map_err(PipelineError::Input)?;
    }
    Ok(if plan.grayscale {
        DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(output).to_luma8())
    } else {
        DynamicImage::ImageRgb8(output)
    })
}
