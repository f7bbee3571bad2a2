//! An SDXL refiner (only `text_encoder_2`, `requires_aesthetics_score`) against diffusers'
//! PyTorch `StableDiffusionXLImg2ImgPipeline` on the same tiny weights and the same noise
//! (fixtures from tools/make_sdxl_refiner_parity_fixtures.py): the UNet's `encoder_hidden_states`
//! (the second encoder's penultimate layer alone), `text_embeds` (pooled; the negative prompt ""
//! when none is given, since the refiner has `force_zeros_for_empty_prompt` false), the 5
//! aesthetic-score `time_ids`, the iterated timesteps, every step's latents (max abs error
//! <= 1e-4) and the decoded image; `boomerang sample` on the tiny refiner from the command line;
//! and the refusal of a refiner whose `requires_aesthetics_score` or add-embedding width does not
//! fit its UNet. Uses tiny-sdxl-refiner, which tools/make_tiny_sdxl_refiner.py (run by tools/test) makes in
//! boomerang's cache. The fixtures keep the hidden states and the decoded image for the first
//! case only (the tracked tree's size budget).

mod common;

use std::path::PathBuf;

use assert_cmd::Command;
use boomerang::diffusion::engine::{Engine, Settings};
use boomerang::diffusion::pipeline::AestheticScores;
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

fn refiner_model() -> PathBuf {
    cache_model("tiny-sdxl-refiner", "tools/make_tiny_sdxl_refiner.py")
}

#[derive(Deserialize)]
struct Case {
    strength: f64,
    guidance_scale: f32,
    prompt: String,
    negative_prompt: Option<String>,
    num_inference_steps: usize,
    aesthetic_score: f32,
    negative_aesthetic_score: f32,
    timesteps_iterated: Vec<f64>,
    noise_calls: Vec<NoiseCall>,
}

#[test]
fn sdxl_refiner_matches_diffusers_img2img() {
    let fixtures = root().join("tests/fixtures/sdxl_refiner_parity");
    let index = read_index(&fixtures);
    assert_eq!(index.cases.len(), 2, "expected two cases");
    let runtime = runtime::init(None).expect("ONNX Runtime (run tools/test, which fetches it)");
    let mut engine = Engine::open(&refiner_model(), runtime, &SessionOptions::default()).unwrap();
    let xl = engine
        .model
        .xl
        .as_ref()
        .expect("tiny-sdxl-refiner not detected as SDXL");
    assert!(xl.requires_aesthetics_score && !xl.force_zeros_for_empty_prompt);
    assert!(
        engine.model.text_encoder.is_none(),
        "a refiner has no first text encoder"
    );
    assert_eq!(
        model_files(&refiner_model()),
        index.model_files,
        "tiny-sdxl-refiner differs from the model the fixtures were made with (rerun tools/make_tiny_sdxl_refiner.py)"
    );
    let image: Array4<f32> = read_npy(fixtures.join("inputs/image.npy")).unwrap();
    let mut hidden_checked = 0;
    let mut images_checked = 0;

    for entry in &index.cases {
        let name = &entry.case;
        let dir = fixtures.join(name);
        let case: Case =
            serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
        assert_eq!(
            AestheticScores {
                positive: case.aesthetic_score,
                negative: case.negative_aesthetic_score
            },
            AestheticScores::default(),
            "{name}: boomerang's defaults are diffusers'"
        );
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
        let xl = conditioning.xl.as_ref().expect("SDXL conditioning");

        // text_embeds (and encoder_hidden_states where recorded) in the UNet's batch order,
        // uncond first.
        let pooled: Array2<f32> = read_npy(dir.join("text_embeds.npy")).unwrap();
        let mut pairs = vec![(
            xl.pooled.clone().into_dyn(),
            pooled.slice(s![-1.., ..]).to_owned().into_dyn(),
        )];
        if let Some(uncond_pooled) = &xl.uncond_pooled {
            pairs.push((
                uncond_pooled.clone().into_dyn(),
                pooled.slice(s![..1, ..]).to_owned().into_dyn(),
            ));
        }
        let hidden_file = dir.join("prompt_embeds.npy");
        if hidden_file.is_file() {
            let hidden: Array3<f32> = read_npy(hidden_file).unwrap();
            pairs.push((
                conditioning.cond.clone().into_dyn(),
                hidden.slice(s![-1.., .., ..]).to_owned().into_dyn(),
            ));
            if let Some(uncond) = &conditioning.uncond {
                pairs.push((
                    uncond.clone().into_dyn(),
                    hidden.slice(s![..1, .., ..]).to_owned().into_dyn(),
                ));
            }
            hidden_checked += 1;
        }
        for (got, want) in &pairs {
            let error = max_abs_diff(got, want);
            assert!(
                error <= LATENT_TOLERANCE,
                "{name}: text embeddings differ by {error}"
            );
        }

        // diffusers' time ids (every UNet call had the same): the aesthetic score's, negative
        // first; and boomerang's for the same latents.
        let time_ids: Array2<f32> = read_npy(dir.join("time_ids.npy")).unwrap();
        let side = image.shape()[2] as f32;
        let mut want_rows = vec![vec![side, side, 0.0, 0.0, case.aesthetic_score]];
        if guided {
            want_rows.insert(0, vec![side, side, 0.0, 0.0, case.negative_aesthetic_score]);
        }
        let rows = |a: &Array2<f32>| -> Vec<Vec<f32>> {
            a.rows().into_iter().map(|r| r.to_vec()).collect()
        };
        assert_eq!(rows(&time_ids), want_rows, "{name}: diffusers' time ids");
        let factor = engine.model.geometry.vae_scale_factor;
        let latent_side = image.shape()[2] / factor;
        let (_, got_time_ids) = conditioning
            .xl_inputs(1, &[1, 4, latent_side, latent_side], factor)
            .unwrap()
            .expect("SDXL inputs");
        assert_eq!(
            rows(&got_time_ids),
            want_rows,
            "{name}: boomerang's time ids"
        );
        let run = RecordedRun {
            name,
            dir: &dir,
            timesteps: &case.timesteps_iterated,
            noise_calls: &case.noise_calls,
        };
        let (output, latent_error) =
            replay(&mut engine, &settings, image.view(), &conditioning, &run);
        assert!(
            latent_error <= LATENT_TOLERANCE,
            "{name}: latents differ by {latent_error}"
        );
        let decoded_file = dir.join("decoded.npy");
        if decoded_file.is_file() {
            let decoded: ArrayD<f32> = read_npy(decoded_file).unwrap();
            let image_error = max_abs_diff(&output.images.into_dyn(), &decoded);
            println!("{name}: latents max abs error {latent_error:.2e}, image {image_error:.2e}");
            assert!(
                image_error <= IMAGE_TOLERANCE,
                "{name}: image differs by {image_error}"
            );
            images_checked += 1;
        } else {
            println!("{name}: latents max abs error {latent_error:.2e}");
        }
    }
    assert!(
        hidden_checked >= 1 && images_checked >= 1,
        "no case recorded the hidden states and the decoded image"
    );
}

#[test]
fn sample_runs_the_sdxl_refiner_from_the_command_line() {
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
        .arg(refiner_model())
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

/// A copy of the tiny refiner with `file`'s `from` replaced by `to` (and no SHA256SUMS), and the
/// stderr of `boomerang sample` on it, which must fail.
fn refused_after_edit(file: &str, from: &str, to: &str) -> String {
    let temp = tempfile::tempdir().unwrap();
    let model = temp.path().join("refiner");
    copy_dir(&refiner_model(), &model);
    let path = model.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    std::fs::remove_file(model.join("SHA256SUMS")).unwrap();
    let output = Command::cargo_bin("boomerang")
        .unwrap()
        .args(["sample", "--steps", "2", "--model"])
        .arg(&model)
        .arg("-o")
        .arg(temp.path().join("out"))
        .arg(root().join("examples/astronaut.png"))
        .assert()
        .failure()
        .get_output()
        .clone();
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn a_refiner_without_requires_aesthetics_score_is_refused() {
    let stderr = refused_after_edit(
        "model_index.json",
        "\"requires_aesthetics_score\": true",
        "\"requires_aesthetics_score\": false",
    );
    assert!(
        stderr.contains("so time_ids has 6 entries, but the UNet's `time_ids` input")
            && stderr.contains("takes 5: set requires_aesthetics_score to true"),
        "{stderr}"
    );
}

#[test]
fn an_add_embedding_width_that_does_not_fit_the_time_ids_is_refused() {
    let stderr = refused_after_edit(
        "unet/config.json",
        "\"projection_class_embeddings_input_dim\": 72",
        "\"projection_class_embeddings_input_dim\": 80",
    );
    assert!(
        stderr.contains("unet/config.json")
            && stderr.contains("projection_class_embeddings_input_dim is 80, but 5 time ids of addition_time_embed_dim 8 and the 32-wide pooled text embedding make 72"),
        "{stderr}"
    );
}
