//! What the pipeline parity tests against recorded diffusers runs share: the cache models they
//! run, diffusers' recorded noise replayed in order, and the error measure.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::diffusion::noise::NoiseSource;
use boomerang::diffusion::pipeline::{
    boomerang_batch, BatchOutput, BatchRequest, Conditioning, PipelineNoise,
};
use boomerang::diffusion::timing::StageTimer;
use boomerang::io::runtime;
use ndarray::{ArrayD, ArrayView4};
use ndarray_npy::read_npy;
use serde::Deserialize;

/// A tiny model a tools/make_tiny_*.py script makes in boomerang's cache; missing is a failure,
/// not a skip.
pub fn cache_model(name: &str, script: &str) -> PathBuf {
    let dir = runtime::cache_root()
        .expect("no cache folder: set BOOMERANG_CACHE_DIR or HOME")
        .join("models")
        .join(name);
    assert!(
        dir.join("SHA256SUMS").is_file(),
        "{} is missing: run tools/test (or {script} with the model venv) to make it",
        dir.display()
    );
    dir
}

/// sha256 of every file of a model's SHA256SUMS but PROVENANCE: what the fixtures' index.json
/// records as the model they were made with.
pub fn model_files(model: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(model.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once("  "))
        .filter(|(_, path)| *path != "PROVENANCE")
        .map(|(digest, path)| (path.to_string(), digest.to_string()))
        .collect()
}

/// One random tensor diffusers drew, as a case.json lists it.
#[derive(Deserialize)]
pub struct NoiseCall {
    pub file: String,
    pub purpose: String,
}

#[derive(Deserialize)]
pub struct IndexEntry {
    pub case: String,
}

/// A fixture folder's index.json.
#[derive(Deserialize)]
pub struct Index {
    /// sha256 of every file of the model the fixtures were made with but its PROVENANCE.
    pub model_files: std::collections::BTreeMap<String, String>,
    pub cases: Vec<IndexEntry>,
}

pub fn read_index(fixtures: &Path) -> Index {
    serde_json::from_str(&std::fs::read_to_string(fixtures.join("index.json")).unwrap()).unwrap()
}

/// A recorded diffusers run: its folder, the timesteps it iterated and the noise it drew.
pub struct RecordedRun<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub timesteps: &'a [f64],
    pub noise_calls: &'a [NoiseCall],
}

/// Runs boomerang on `image` with `settings` and diffusers' recorded noise: the iterated
/// timesteps must be diffusers', one step per recorded `latents_NNN.npy` and every recorded noise
/// used. Returns the output and the largest latent error over the steps.
pub fn replay(
    engine: &mut Engine,
    settings: &Settings,
    image: ArrayView4<f32>,
    conditioning: &Conditioning,
    run: &RecordedRun,
) -> (BatchOutput, f32) {
    let name = run.name;
    let (mut scheduler, plan) = engine.schedulers.plan(settings).unwrap();
    assert_eq!(plan.timesteps, run.timesteps, "{name}: timesteps");
    let mut noise = Recorded(
        run.noise_calls
            .iter()
            .map(|c| (c.purpose.clone(), read_npy(run.dir.join(&c.file)).unwrap()))
            .collect(),
    );
    let mut step_errors = Vec::new();
    let mut timer = StageTimer::default();
    let output = boomerang_batch(
        &mut engine.model,
        scheduler.as_mut(),
        BatchRequest {
            plan: &plan,
            images: image,
            conditioning,
        },
        &mut noise,
        &mut timer,
        &mut |step, latents| {
            let expected: ArrayD<f32> =
                read_npy(run.dir.join(format!("latents_{step:03}.npy"))).unwrap();
            step_errors.push(max_abs_diff(&latents.clone().into_dyn(), &expected));
        },
    )
    .unwrap();
    assert_eq!(step_errors.len(), run.timesteps.len(), "{name}: step count");
    assert!(noise.0.is_empty(), "{name}: unused noise");
    (output, step_errors.iter().copied().fold(0.0, f32::max))
}

/// diffusers' random tensors in the order it drew them, each with its purpose (`vae`, `start`,
/// `step`).
pub struct Recorded(pub VecDeque<(String, ArrayD<f32>)>);

impl Recorded {
    fn next(&mut self, purpose: &str, shape: &[usize]) -> ArrayD<f32> {
        let (recorded, array) = self.0.pop_front().expect("diffusers drew fewer noises");
        assert_eq!(recorded, purpose);
        assert_eq!(array.shape(), shape, "{purpose} noise shape");
        array
    }
}

impl NoiseSource for Recorded {
    fn randn(&mut self, shape: &[usize]) -> ArrayD<f32> {
        self.next("step", shape)
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
        self
    }
}

pub fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
