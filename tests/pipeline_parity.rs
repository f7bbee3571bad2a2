//! Boomerang against diffusers' PyTorch img2img pipeline on the same tiny weights and the same
//! noise (fixtures from tools/make_parity_fixtures.py): token ids, text embeddings, timesteps,
//! start timestep, every step's latents (max abs error <= 1e-4) and the final float image.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use boomerang::diffusion::model::SdModel;
use boomerang::diffusion::noise::NoiseSource;
use boomerang::diffusion::pipeline::{
    boomerang_batch, encode_text, BatchRequest, Conditioning, PipelineNoise, StartPlan,
};
use boomerang::diffusion::scheduler::{self, SchedulerConfig, SchedulerKind};
use boomerang::diffusion::timing::StageTimer;
use boomerang::diffusion::tokenizer::ClipTokenizer;
use boomerang::io::runtime::{self, SessionOptions};
use ndarray::{s, Array2, Array3, Array4, ArrayD, Axis};
use ndarray_npy::read_npy;
use serde::Deserialize;

const LATENT_TOLERANCE: f32 = 1e-4;
/// Decoded images are compared as floats; the VAE decoder amplifies latent differences a little.
const IMAGE_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct NoiseCall {
    file: String,
    purpose: String,
}

#[derive(Deserialize)]
struct SchedulerKwargs {
    #[serde(default)]
    eta: f32,
}

#[derive(Deserialize)]
struct Case {
    scheduler_class: String,
    scheduler_kwargs: SchedulerKwargs,
    strength: f64,
    num_inference_steps: usize,
    guidance_scale: f32,
    prompt: String,
    negative_prompt: Option<String>,
    scheduler_timesteps: Vec<f64>,
    timesteps_iterated: Vec<f64>,
    latent_timestep: Option<f64>,
    noise_calls: Vec<NoiseCall>,
    model: String,
    /// The init image, shared by all cases, relative to the fixture root.
    image_file: String,
    /// 2: the init image and its left-right mirror.
    batch: usize,
}

#[derive(Deserialize)]
struct IndexEntry {
    case: String,
}

#[derive(Deserialize)]
struct Index {
    cases: Vec<IndexEntry>,
}

/// Replays diffusers' random tensors in the order it drew them, checking each one's purpose.
struct Recorded {
    calls: VecDeque<(String, ArrayD<f32>)>,
    step_source: StepReplay,
}

struct StepReplay(VecDeque<ArrayD<f32>>);

impl NoiseSource for StepReplay {
    fn randn(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let next = self
            .0
            .pop_front()
            .expect("diffusers drew fewer step noises");
        assert_eq!(next.shape(), shape, "step noise shape");
        next
    }
}

impl Recorded {
    fn new(dir: &Path, case: &Case) -> Self {
        let mut calls = VecDeque::new();
        let mut steps = VecDeque::new();
        for call in &case.noise_calls {
            let array: ArrayD<f32> = read_npy(dir.join(&call.file)).unwrap();
            if call.purpose == "step" {
                steps.push_back(array);
            } else {
                calls.push_back((call.purpose.clone(), array));
            }
        }
        Recorded {
            calls,
            step_source: StepReplay(steps),
        }
    }

    fn next(&mut self, purpose: &str, shape: &[usize]) -> ArrayD<f32> {
        let (recorded_purpose, array) =
            self.calls.pop_front().expect("diffusers drew fewer noises");
        assert_eq!(recorded_purpose, purpose);
        assert_eq!(array.shape(), shape, "{purpose} noise shape");
        array
    }
}

impl PipelineNoise for Recorded {
    fn vae_sample(&mut self, shape: &[usize]) -> ArrayD<f32> {
        self.next("vae", shape)
    }
    fn start(&mut self, shape: &[usize]) -> ArrayD<f32> {
        self.next("start", shape)
    }
    fn step(&mut self) -> &mut dyn NoiseSource {
        &mut self.step_source
    }
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn boomerang_matches_diffusers_img2img() {
    let fixtures = root().join("tests/fixtures/parity");
    let index: Index =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("index.json")).unwrap())
            .unwrap();
    let index: Vec<String> = index.cases.into_iter().map(|entry| entry.case).collect();
    assert!(
        index.len() >= 40,
        "expected the full case grid, found {}",
        index.len()
    );
    let runtime = runtime::init(None).expect("ONNX Runtime (run tools/test, which fetches it)");
    let mut models: HashMap<String, (SdModel, ClipTokenizer, SchedulerConfig)> = HashMap::new();
    let mut worst = (0.0f32, 0.0f32, String::new());

    for name in &index {
        let dir = fixtures.join(name);
        let case: Case =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let (model, tokenizer, config) = models.entry(case.model.clone()).or_insert_with(|| {
            let model = SdModel::load(
                &root().join(&case.model),
                runtime,
                &SessionOptions::default(),
            )
            .unwrap();
            let (_, tokenizer_dir) = model.layout.text_encoder.as_ref().unwrap();
            let tokenizer = ClipTokenizer::from_dir(tokenizer_dir).unwrap();
            let config = SchedulerConfig::from_file(&model.layout.scheduler_config).unwrap();
            (model, tokenizer, config)
        });
        let mut timer = StageTimer::default();

        // Token ids and text embeddings, in the UNet's batch order (unconditional first).
        let ids: Array2<i64> = read_npy(dir.join("input_ids.npy")).unwrap();
        let expected_embeddings: Array3<f32> = read_npy(dir.join("text_embeddings.npy")).unwrap();
        let guided = case.guidance_scale > 1.0;
        let cond_ids = tokenizer.encode(&case.prompt);
        assert_eq!(
            ids.row(ids.nrows() - 1).to_vec(),
            cond_ids,
            "{name}: prompt ids"
        );
        let cond = encode_text(model, &cond_ids, &mut timer).unwrap();
        let uncond = guided.then(|| {
            let negative = tokenizer.encode(case.negative_prompt.as_deref().unwrap_or(""));
            assert_eq!(ids.row(0).to_vec(), negative, "{name}: negative prompt ids");
            encode_text(model, &negative, &mut timer).unwrap()
        });
        let embedding_error = max_abs_diff(
            &cond.clone().into_dyn(),
            &expected_embeddings
                .slice(s![-1.., .., ..])
                .to_owned()
                .into_dyn(),
        );
        assert!(
            embedding_error <= LATENT_TOLERANCE,
            "{name}: text embeddings differ by {embedding_error}"
        );

        let kind = SchedulerKind::from_class_name(&case.scheduler_class).unwrap();
        let mut scheduler = scheduler::build(
            kind,
            config,
            case.num_inference_steps,
            case.scheduler_kwargs.eta,
        )
        .unwrap();
        assert_eq!(
            scheduler.timesteps(),
            case.scheduler_timesteps.as_slice(),
            "{name}: schedule"
        );
        let plan = StartPlan::new(scheduler.as_ref(), case.num_inference_steps, case.strength);
        assert_eq!(
            plan.timesteps, case.timesteps_iterated,
            "{name}: iterated timesteps"
        );
        assert_eq!(
            plan.start_timestep(),
            case.latent_timestep,
            "{name}: start timestep"
        );

        let first: Array4<f32> = read_npy(fixtures.join(&case.image_file)).unwrap();
        let image = match case.batch {
            1 => first,
            // Stored once (tools/make_parity_fixtures.py): the second image is the first mirrored.
            2 => ndarray::concatenate(Axis(0), &[first.view(), first.slice(s![.., .., .., ..;-1])])
                .unwrap(),
            other => panic!("{name}: batch {other} has no init image"),
        };
        let conditioning = Conditioning {
            cond,
            uncond,
            guidance: case.guidance_scale,
            xl: None,
            guidance_embedding: None,
        };
        let mut noise = Recorded::new(&dir, &case);
        let mut step_errors = Vec::new();
        let output = boomerang_batch(
            model,
            scheduler.as_mut(),
            BatchRequest {
                plan: &plan,
                images: image.view(),
                conditioning: &conditioning,
            },
            &mut noise,
            &mut timer,
            &mut |step, latents| {
                let expected: ArrayD<f32> =
                    read_npy(dir.join(format!("latents_{step:03}.npy"))).unwrap();
                step_errors.push(max_abs_diff(&latents.clone().into_dyn(), &expected));
            },
        )
        .unwrap();
        assert_eq!(
            step_errors.len(),
            case.timesteps_iterated.len(),
            "{name}: step count"
        );
        assert!(
            noise.calls.is_empty() && noise.step_source.0.is_empty(),
            "{name}: unused noise"
        );

        let final_latents: ArrayD<f32> = read_npy(dir.join("final_latents.npy")).unwrap();
        let latent_error = step_errors.iter().copied().fold(
            max_abs_diff(&output.latents.clone().into_dyn(), &final_latents),
            f32::max,
        );
        let decoded: ArrayD<f32> = read_npy(dir.join("decoded.npy")).unwrap();
        let image_error = max_abs_diff(&output.images.into_dyn(), &decoded);
        println!("{name}: latents max abs error {latent_error:.2e}, image {image_error:.2e}");
        assert!(
            latent_error <= LATENT_TOLERANCE,
            "{name}: latents differ by {latent_error}"
        );
        assert!(
            image_error <= IMAGE_TOLERANCE,
            "{name}: image differs by {image_error}"
        );
        if latent_error > worst.0 {
            worst = (latent_error, image_error, name.clone());
        }
    }
    println!(
        "largest latent error {:.2e} (image {:.2e}) in {}",
        worst.0, worst.1, worst.2
    );
}
