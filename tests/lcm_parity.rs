//! A latent consistency model (UNet with `timestep_cond`, LCMScheduler) against diffusers'
//! PyTorch `LatentConsistencyModelImg2ImgPipeline` on the same tiny weights and the same noise
//! (fixtures from tools/make_lcm_parity_fixtures.py): the prompt embedding, the guidance-scale
//! embedding, the iterated timesteps, every step's latents (max abs error <= 1e-4, step noise
//! included) and the decoded image; `boomerang sample` on it from the command line; and the
//! refusals (negative prompt, config and graph disagreeing). Uses tiny-lcm, which
//! tools/make_tiny_lcm.py (run by tools/test) makes in boomerang's cache.

mod common;

use std::path::PathBuf;

use assert_cmd::Command;
use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::io::runtime::{self, SessionOptions};
use ndarray::{Array2, Array3, Array4, ArrayD};
use ndarray_npy::read_npy;
use predicates::prelude::*;
use serde::Deserialize;

use common::parity::{
    cache_model, copy_dir, max_abs_diff, model_files, read_index, replay, NoiseCall, RecordedRun,
};
use common::root;

const LATENT_TOLERANCE: f32 = 1e-4;
const IMAGE_TOLERANCE: f32 = 1e-4;

fn lcm_model() -> PathBuf {
    cache_model("tiny-lcm", "tools/make_tiny_lcm.py")
}

#[derive(Deserialize)]
struct Case {
    strength: f64,
    guidance_scale: f32,
    prompt: String,
    num_inference_steps: usize,
    timesteps_iterated: Vec<f64>,
    noise_calls: Vec<NoiseCall>,
}

#[test]
fn lcm_matches_diffusers_img2img() {
    let fixtures = root().join("tests/fixtures/lcm_parity");
    let index = read_index(&fixtures);
    assert_eq!(index.cases.len(), 3, "expected three cases");
    assert_eq!(
        model_files(&lcm_model()),
        index.model_files,
        "tiny-lcm differs from the model the fixtures were made with (rerun tools/make_tiny_lcm.py)"
    );
    let runtime = runtime::init(None).expect("ONNX Runtime (run tools/test, which fetches it)");
    let mut engine = Engine::open(&lcm_model(), runtime, &SessionOptions::default()).unwrap();
    assert_eq!(
        engine.model.guidance_embedding.map(|g| g.dim),
        Some(32),
        "tiny-lcm's timestep_cond not detected"
    );
    let image: Array4<f32> = read_npy(fixtures.join("inputs/image.npy")).unwrap();

    for entry in &index.cases {
        let name = &entry.case;
        let dir = fixtures.join(name);
        let case: Case =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        let settings = Settings {
            strength: case.strength,
            steps: case.num_inference_steps,
            prompt: case.prompt.clone(),
            guidance: case.guidance_scale,
            ..Settings::default()
        };
        let conditioning = engine.conditioning(&settings).unwrap();
        assert!(conditioning.uncond.is_none(), "{name}: LCM runs unguided");
        let hidden: Array3<f32> = read_npy(dir.join("prompt_embeds.npy")).unwrap();
        let error = max_abs_diff(&conditioning.cond.clone().into_dyn(), &hidden.into_dyn());
        assert!(
            error <= LATENT_TOLERANCE,
            "{name}: prompt embedding differs by {error}"
        );
        let w_embedding: Array2<f32> = read_npy(dir.join("timestep_cond.npy")).unwrap();
        let ours = conditioning
            .guidance_embedding
            .clone()
            .expect("an embedding");
        let error = max_abs_diff(&ours.into_dyn(), &w_embedding.into_dyn());
        // f32 sines of angles up to 1000 (guidance 2 and more): a few ulps of the angle.
        assert!(
            error <= 1e-4,
            "{name}: guidance embedding differs by {error}"
        );

        let run = RecordedRun {
            name,
            dir: &dir,
            timesteps: &case.timesteps_iterated,
            noise_calls: &case.noise_calls,
        };
        let (output, latent_error) =
            replay(&mut engine, &settings, image.view(), &conditioning, &run);
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
    }
}

fn sample(model: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = Command::cargo_bin("boomerang").unwrap();
    command
        .args(["sample", "--steps", "4", "--strength", "0.5", "--seed", "3"])
        .args(extra)
        .arg("--model")
        .arg(model)
        .arg("-o")
        .arg(out)
        .arg(root().join("examples/astronaut.png"));
    command
}

#[test]
fn sample_runs_an_lcm_from_the_command_line() {
    let temp = tempfile::tempdir().unwrap();
    sample(&lcm_model(), temp.path(), &["--guidance", "8.5", "-n", "2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("start timestep 499"));
    let first = std::fs::read(temp.path().join("astronaut_0.png")).unwrap();
    let second = std::fs::read(temp.path().join("astronaut_1.png")).unwrap();
    assert_ne!(first, second, "two samples of one image should differ");
}

#[test]
fn an_lcm_refuses_a_negative_prompt() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    sample(&lcm_model(), &out, &["--negative-prompt", "blurry"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("it has no negative prompt"));
}

#[test]
fn a_unet_config_and_graph_that_disagree_on_the_guidance_embedding_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("lcm");
    copy_dir(&lcm_model(), &model);
    std::fs::remove_file(model.join("SHA256SUMS")).unwrap();
    let config_path = model.join("unet/config.json");
    let config = std::fs::read_to_string(&config_path).unwrap();
    for (from, to, message) in [
        (
            "\"time_cond_proj_dim\": 32",
            "\"time_cond_proj_dim\": null",
            "time_cond_proj_dim is missing here",
        ),
        (
            "\"time_cond_proj_dim\": 32",
            "\"time_cond_proj_dim\": 64",
            "input is 32 wide",
        ),
    ] {
        assert!(config.contains(from), "unet/config.json has no `{from}`");
        std::fs::write(&config_path, config.replace(from, to)).unwrap();
        sample(&model, &temp.path().join("out"), &[])
            .assert()
            .failure()
            .stderr(predicate::str::contains(message));
        assert!(!temp.path().join("out").exists());
    }
}
