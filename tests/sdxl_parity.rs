//! SDXL against diffusers' PyTorch `StableDiffusionXLImg2ImgPipeline` on the same tiny weights and
//! the same noise (fixtures from tools/make_sdxl_parity_fixtures.py): the UNet's
//! `encoder_hidden_states` (both encoders' penultimate layers), `text_embeds` (pooled, zeros for
//! an absent negative prompt), `time_ids`, the iterated timesteps, every step's latents (max abs
//! error <= 1e-4) and the decoded image; and `boomerang sample` on the tiny SDXL from the command
//! line. Uses tiny-sdxl, which tools/make_tiny_sdxl.py (run by tools/test) makes in boomerang's
//! cache.

mod common;

use std::path::PathBuf;

use assert_cmd::Command;
use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::io::runtime::{self, SessionOptions};
use ndarray::{s, Array2, Array3, Array4, ArrayD};
use ndarray_npy::read_npy;
use predicates::prelude::*;
use serde::Deserialize;

use common::parity::{
    cache_model, copy_dir, max_abs_diff, model_files, read_index, replay, NoiseCall, RecordedRun,
};
use common::root;

const LATENT_TOLERANCE: f32 = 1e-4;
const IMAGE_TOLERANCE: f32 = 1e-4;

fn sdxl_model() -> PathBuf {
    cache_model("tiny-sdxl", "tools/make_tiny_sdxl.py")
}

#[derive(Deserialize)]
struct Case {
    strength: f64,
    guidance_scale: f32,
    prompt: String,
    negative_prompt: Option<String>,
    num_inference_steps: usize,
    timesteps_iterated: Vec<f64>,
    noise_calls: Vec<NoiseCall>,
}

#[test]
fn sdxl_matches_diffusers_img2img() {
    let fixtures = root().join("tests/fixtures/sdxl_parity");
    let index = read_index(&fixtures);
    assert_eq!(index.cases.len(), 3, "expected three cases");
    let runtime = runtime::init(None).expect("ONNX Runtime (run tools/test, which fetches it)");
    let mut engine = Engine::open(&sdxl_model(), runtime, &SessionOptions::default()).unwrap();
    assert!(engine.model.xl.is_some(), "tiny-sdxl not detected as SDXL");
    let files = model_files(&sdxl_model());
    assert_eq!(
        files, index.model_files,
        "tiny-sdxl differs from the model the fixtures were made with (rerun tools/make_tiny_sdxl.py)"
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
            negative_prompt: case.negative_prompt.clone().unwrap_or_default(),
            guidance: case.guidance_scale,
            ..Settings::default()
        };
        let conditioning = engine.conditioning(&settings).unwrap();
        let guided = case.guidance_scale > 1.0;
        assert_eq!(conditioning.uncond.is_some(), guided, "{name}: guidance");

        // encoder_hidden_states and text_embeds in the UNet's batch order, uncond first.
        let hidden: Array3<f32> = read_npy(dir.join("prompt_embeds.npy")).unwrap();
        let pooled: Array2<f32> = read_npy(dir.join("text_embeds.npy")).unwrap();
        let xl = conditioning.xl.as_ref().expect("SDXL conditioning");
        let mut pairs = vec![(
            conditioning.cond.clone().into_dyn(),
            hidden.slice(s![-1.., .., ..]).to_owned().into_dyn(),
            xl.pooled.clone().into_dyn(),
            pooled.slice(s![-1.., ..]).to_owned().into_dyn(),
        )];
        if let (Some(uncond), Some(uncond_pooled)) = (&conditioning.uncond, &xl.uncond_pooled) {
            pairs.push((
                uncond.clone().into_dyn(),
                hidden.slice(s![..1, .., ..]).to_owned().into_dyn(),
                uncond_pooled.clone().into_dyn(),
                pooled.slice(s![..1, ..]).to_owned().into_dyn(),
            ));
        }
        for (got, want, got_pooled, want_pooled) in &pairs {
            let error = max_abs_diff(got, want).max(max_abs_diff(got_pooled, want_pooled));
            assert!(
                error <= LATENT_TOLERANCE,
                "{name}: text embeddings differ by {error}"
            );
        }
        if case.negative_prompt.is_none() && guided {
            assert!(
                pairs[1].0.iter().all(|&x| x == 0.0),
                "{name}: zeros expected"
            );
        }
        let time_ids: Array2<f32> = read_npy(dir.join("time_ids.npy")).unwrap();
        let side = image.shape()[2] as f32;
        for row in time_ids.rows() {
            assert_eq!(
                row.to_vec(),
                vec![side, side, 0.0, 0.0, side, side],
                "{name}"
            );
        }

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

#[test]
fn sample_runs_sdxl_from_the_command_line() {
    let temp = tempfile::tempdir().unwrap();
    Command::cargo_bin("boomerang")
        .unwrap()
        .args([
            "sample",
            "--steps",
            "10",
            "--strength",
            "0.5",
            "--guidance",
            "5",
        ])
        .args(["--prompt", "person", "--seed", "3", "-n", "2", "--model"])
        .arg(sdxl_model())
        .arg("-o")
        .arg(temp.path())
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .success()
        .stdout(predicate::str::contains("start timestep 401"));
    for i in 0..2 {
        assert!(temp.path().join(format!("astronaut_{i}.png")).is_file());
    }
}

/// requires_aesthetics_score true (a refiner's 5 time ids) on a base UNet made for 6 is refused
/// when the model opens, as diffusers' `_get_add_time_ids` refuses it.
#[test]
fn aesthetic_time_ids_on_a_base_unet_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("refiner");
    copy_dir(&sdxl_model(), &model);
    let index = model.join("model_index.json");
    let text = std::fs::read_to_string(&index).unwrap().replace(
        "\"requires_aesthetics_score\": false",
        "\"requires_aesthetics_score\": true",
    );
    std::fs::write(&index, text).unwrap();
    std::fs::remove_file(model.join("SHA256SUMS")).unwrap();
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--steps", "2", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "requires_aesthetics_score is true (an SDXL refiner: original size, crop, aesthetic score), so time_ids has 5 entries, but the UNet's `time_ids` input",
        ))
        .stderr(predicate::str::contains(
            "takes 6: set requires_aesthetics_score to false",
        ));
}

#[test]
fn an_sdxl_unet_without_the_second_text_encoder_is_named() {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("half");
    copy_dir(&sdxl_model(), &model);
    std::fs::remove_dir_all(model.join("text_encoder_2")).unwrap();
    std::fs::remove_file(model.join("SHA256SUMS")).unwrap();
    Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--steps", "2", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "an SDXL UNet, but the model folder has no text_encoder_2/",
        ));
}
