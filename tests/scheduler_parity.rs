//! Schedulers against diffusers 0.39.0, from fixtures made by tools/make_scheduler_fixtures.py,
//! plus config parsing and validation.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::OnceLock;

use boomerang::diffusion::noise::NoiseSource;
use boomerang::diffusion::pipeline::StartPlan;
use boomerang::diffusion::scheduler::{
    alphas_cumprod, build, build_img2img, PredictionType, SchedulerConfig, SchedulerError,
    SchedulerKind, StepInput, TimestepSpacing, VarianceType,
};
use ndarray::{Array5, ArrayD, Axis};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schedulers");
/// The agreement the pipeline relies on, on latents of magnitude up to 1; larger latents
/// (Euler's high sigmas) are held to the same relative precision.
const TOLERANCE: f32 = 1e-5;
/// Scalars diffusers derives with torch's float32 `sqrt`, which is not correctly rounded on
/// every CPU (1 ulp off for about a fifth of inputs with torch 2.15 on AVX2), so they agree to
/// a few ulps rather than bit for bit.
const SCALAR_TOLERANCE: f32 = 1e-6;

fn assert_close(actual: f32, expected: f32, label: &str) {
    let rel = (actual - expected).abs() / expected.abs().max(1.0);
    assert!(rel <= SCALAR_TOLERANCE, "{label}: {actual} vs {expected}");
}

struct Fixtures {
    doc: Value,
    tensors: Array5<f32>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let text = std::fs::read_to_string(Path::new(DIR).join("cases.json")).unwrap();
        let tensors = ndarray_npy::read_npy(Path::new(DIR).join("tensors.npy")).unwrap();
        Fixtures {
            doc: serde_json::from_str(&text).unwrap(),
            tensors,
        }
    })
}

fn tensor(index: &Value) -> ArrayD<f32> {
    let i = index.as_u64().unwrap() as usize;
    fixtures()
        .tensors
        .index_axis(Axis(0), i)
        .to_owned()
        .into_dyn()
}

fn config(value: &Value) -> SchedulerConfig {
    SchedulerConfig::from_json_str(&value.to_string()).unwrap()
}

fn kind(case: &Value) -> SchedulerKind {
    case["kind"].as_str().unwrap().parse().unwrap()
}

/// The img2img strength a case was recorded at; only LCM's timesteps depend on it.
fn strength(case: &Value) -> f64 {
    case["strength"].as_f64().unwrap_or(1.0)
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Largest |actual - expected|, absolute and relative to the tensor's scale max(1, max |expected|).
fn errors(actual: &ArrayD<f32>, expected: &ArrayD<f32>) -> (f32, f32) {
    assert_eq!(actual.shape(), expected.shape());
    let abs = actual
        .iter()
        .zip(expected)
        .map(|(&a, &e)| (a - e).abs())
        .fold(0.0, f32::max);
    let scale = expected.iter().fold(1.0f32, |m, e| m.max(e.abs()));
    (abs, abs / scale)
}

/// Timesteps as float32, the precision both sides hold them in (serde_json's default float
/// parser may be one f64 ulp off the printed value).
fn timesteps_f32(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&t| t as f32).collect()
}

/// Hands out the tensors diffusers drew, in order, checking the shape asked for.
struct Replay(VecDeque<ArrayD<f32>>);

impl NoiseSource for Replay {
    fn randn(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let noise = self
            .0
            .pop_front()
            .expect("the scheduler drew more noise than diffusers did");
        assert_eq!(noise.shape(), shape);
        noise
    }
}

#[test]
fn alphas_cumprod_match_torch() {
    let ac: ndarray::Array2<f32> =
        ndarray_npy::read_npy(Path::new(DIR).join("alphas_cumprod.npy")).unwrap();
    let configs = fixtures().doc["alphas_cumprod"].as_array().unwrap();
    assert_eq!(configs.len(), ac.nrows());
    for (c, expected) in configs.iter().zip(ac.rows()) {
        let resolved = config(c).resolve(SchedulerKind::Ddim).unwrap();
        let actual = alphas_cumprod(&resolved);
        let worst = actual
            .iter()
            .zip(expected)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0f32, f32::max);
        // Without the zero-SNR rescale there is no sqrt on the way: bit-exact.
        let tolerance = if resolved.rescale_betas_zero_snr {
            SCALAR_TOLERANCE
        } else {
            0.0
        };
        assert!(worst <= tolerance, "{c}: alphas_cumprod off by {worst:e}");
    }
}

#[test]
fn timesteps_match_diffusers_or_fail_where_it_fails() {
    let cases = fixtures().doc["timesteps"].as_array().unwrap();
    assert!(cases.len() > 400);
    for case in cases {
        let steps = case["num_inference_steps"].as_u64().unwrap() as usize;
        let strength = strength(case);
        let built = build_img2img(kind(case), &config(&case["config"]), steps, 0.0, strength);
        let label = format!(
            "{} {} steps {steps} strength {strength}",
            kind(case),
            case["config"]
        );
        match (&case["error"], built) {
            (Value::String(_), Err(_)) => {}
            (Value::String(e), Ok(_)) => panic!("{label}: diffusers fails ({e}) but we accept"),
            (_, Err(e)) => panic!("{label}: diffusers runs but we refuse: {e}"),
            (_, Ok(s)) => {
                assert_eq!(
                    timesteps_f32(s.timesteps()),
                    timesteps_f32(&floats(&case["timesteps"])),
                    "{label}"
                );
                let sigma = case["init_noise_sigma"].as_f64().unwrap() as f32;
                assert_close(s.init_noise_sigma(), sigma, &label);
                assert_eq!(s.order(), 1);
            }
        }
    }
}

#[test]
fn config_resolution_matches_from_config() {
    for case in fixtures().doc["resolution"].as_array().unwrap() {
        let k = kind(case);
        let label = format!("{} into {k}", case["name"]);
        let cfg = config(&case["config"]);
        if case["boomerang_rejects"].as_bool().unwrap() {
            let err = cfg.resolve(k).unwrap_err();
            assert!(
                matches!(err, SchedulerError::Unsupported { .. }),
                "{label}: {err}"
            );
            assert!(build(k, &cfg, 10, 0.0).is_err(), "{label}");
            continue;
        }
        let resolved = serde_json::to_value(cfg.resolve(k).unwrap()).unwrap();
        for (key, expected) in case["resolved"].as_object().unwrap() {
            if key == "thresholding" {
                // Only `false` resolves; `true` is an Unsupported error above.
                assert_eq!(expected, &Value::Bool(false), "{label}");
                continue;
            }
            let actual = &resolved[key];
            let same = match (actual.as_f64(), expected.as_f64()) {
                (Some(a), Some(e)) => a == e,
                _ => actual == expected,
            };
            assert!(same, "{label}: {key} is {actual}, diffusers has {expected}");
        }
        let runs = case["diffusers_runs"].as_bool().unwrap();
        assert_eq!(build(k, &cfg, 10, 0.0).is_ok(), runs, "{label}");
    }
}

#[test]
fn img2img_trajectories_match_diffusers() {
    let cases = fixtures().doc["trajectories"].as_array().unwrap();
    assert!(cases.len() >= 100);
    // Per (kind, oracle model outputs?): trajectories, max abs error, max scale-relative error.
    let mut stats: Vec<((SchedulerKind, bool), usize, f32, f32)> = Vec::new();
    let mut worst = (0.0f32, String::new());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let k = kind(case);
        let oracle = case["oracle"].as_bool().unwrap();
        let steps = case["num_inference_steps"].as_u64().unwrap() as usize;
        let eta = case["eta"].as_f64().unwrap() as f32;
        let strength = strength(case);
        let mut s = build_img2img(k, &config(&case["config"]), steps, eta, strength).unwrap();
        assert_eq!(
            timesteps_f32(s.timesteps()),
            timesteps_f32(&floats(&case["timesteps"])),
            "{name}"
        );
        let sigma = case["init_noise_sigma"].as_f64().unwrap() as f32;
        assert_close(s.init_noise_sigma(), sigma, name);

        // The img2img pipeline's start index: diffusers' get_timesteps, or 0 for LCM, whose
        // timesteps already start below the strength.
        let begin = s.img2img_begin_index(steps, strength);
        assert_eq!(
            begin as u64,
            case["begin_index"].as_u64().unwrap(),
            "{name}"
        );
        let timesteps = s.timesteps()[begin..].to_vec();
        s.set_begin_index(begin);

        if !stats.iter().any(|e| e.0 == (k, oracle)) {
            stats.push(((k, oracle), 0, 0.0, 0.0));
        }
        let entry = stats.iter().position(|e| e.0 == (k, oracle)).unwrap();
        stats[entry].1 += 1;
        let mut check = |label: String, actual: &ArrayD<f32>, expected: &ArrayD<f32>| {
            let (abs, rel) = errors(actual, expected);
            assert!(
                rel <= TOLERANCE,
                "{label}: off by {abs:e} (relative {rel:e})"
            );
            stats[entry].2 = stats[entry].2.max(abs);
            stats[entry].3 = stats[entry].3.max(rel);
            if rel > worst.0 {
                worst = (rel, label);
            }
        };

        // Continue from our own latents each step, as the pipeline would.
        let original = tensor(&case["original"]);
        let start_noise = tensor(&case["start_noise"]);
        let mut latents = s.add_noise(original.view(), start_noise.view(), timesteps[0]);
        check(
            format!("{name} add_noise"),
            &latents,
            &tensor(&case["noised"]),
        );

        let recorded = case["steps"].as_array().unwrap();
        assert_eq!(recorded.len(), timesteps.len(), "{name}");
        for (i, (step, &t)) in recorded.iter().zip(&timesteps).enumerate() {
            assert_eq!(
                step["t"].as_f64().unwrap() as f32,
                t as f32,
                "{name} step {i}"
            );
            let model_output = tensor(&step["model_output"]);
            let scaled = s.scale_model_input(latents.view(), t);
            let label = format!("{name} step {i}");
            check(
                format!("{label} scale_model_input"),
                &scaled,
                &tensor(&step["scaled"]),
            );
            let draws = step["noise"].as_array().unwrap().iter().map(tensor);
            let mut noise = Replay(draws.collect());
            latents = s.step(
                step_input(model_output.view(), t, latents.view()),
                &mut noise,
            );
            assert!(
                noise.0.is_empty(),
                "{label}: drew less noise than diffusers"
            );
            check(label, &latents, &tensor(&step["prev"]));
        }
    }
    for ((k, oracle), n, abs, rel) in &stats {
        let outputs = if *oracle { "oracle" } else { "random" };
        println!("{k} ({outputs} model outputs): {n} trajectories, max abs error {abs:e}, max relative {rel:e}");
    }
    println!("largest relative error {:e} at {}", worst.0, worst.1);
}

const SD15_JSON: &str = r#"{
  "_class_name": "PNDMScheduler",
  "_diffusers_version": "0.6.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "num_train_timesteps": 1000,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "trained_betas": null,
  "clip_sample": false
}"#;

#[test]
fn sd15_config_is_the_default_and_loads_into_every_kind() {
    let cfg = SchedulerConfig::from_json_str(SD15_JSON).unwrap();
    assert_eq!(cfg, SchedulerConfig::default());
    assert_eq!(cfg.class_kind().unwrap(), SchedulerKind::Pndm);
    for k in SchedulerKind::ALL {
        let r = cfg.resolve(k).unwrap();
        assert_eq!(r.steps_offset, 1);
        assert_eq!(r.prediction_type, PredictionType::Epsilon);
        assert!(!r.clip_sample, "{k}");
        let expected_spacing = if matches!(k, SchedulerKind::Euler | SchedulerKind::EulerAncestral)
        {
            TimestepSpacing::Linspace
        } else {
            TimestepSpacing::Leading
        };
        assert_eq!(r.timestep_spacing, expected_spacing, "{k}");
    }
    assert!(cfg.resolve(SchedulerKind::Pndm).unwrap().skip_prk_steps);
    // Present in the file, so DDIM takes false rather than its own default (true).
    assert!(!cfg.resolve(SchedulerKind::Ddim).unwrap().set_alpha_to_one);

    let ts = |k| build(k, &cfg, 50, 0.0).unwrap().timesteps()[..4].to_vec();
    assert_eq!(ts(SchedulerKind::Ddim), [981.0, 961.0, 941.0, 921.0]);
    assert_eq!(ts(SchedulerKind::Ddpm), [981.0, 961.0, 941.0, 921.0]);
    assert_eq!(ts(SchedulerKind::Pndm), [981.0, 961.0, 961.0, 941.0]);
    let euler = ts(SchedulerKind::EulerAncestral);
    assert_eq!(euler[0], 999.0);
    assert!((euler[1] - 978.612_243_652_343_8).abs() < 1e-9, "{euler:?}");
}

#[test]
fn absent_keys_take_the_target_class_default() {
    let cfg = SchedulerConfig::from_json_str(r#"{"_class_name": "PNDMScheduler"}"#).unwrap();
    let ddim = cfg.resolve(SchedulerKind::Ddim).unwrap();
    assert!(ddim.clip_sample && ddim.set_alpha_to_one);
    let pndm = cfg.resolve(SchedulerKind::Pndm).unwrap();
    assert!(!pndm.set_alpha_to_one && !pndm.skip_prk_steps);
    let ddpm = cfg.resolve(SchedulerKind::Ddpm).unwrap();
    assert_eq!(ddpm.variance_type, VarianceType::FixedSmall);

    let fixed = cfg.with_stable_diffusion_pipeline_fixes();
    let ddim = fixed.resolve(SchedulerKind::Ddim).unwrap();
    assert!(!ddim.clip_sample);
    assert_eq!(ddim.steps_offset, 1);
}

#[test]
fn use_default_values_keys_are_dropped() {
    let json = r#"{"set_alpha_to_one": false, "steps_offset": 1,
                   "_use_default_values": ["set_alpha_to_one"]}"#;
    let cfg = SchedulerConfig::from_json_str(json).unwrap();
    assert_eq!(cfg.set_alpha_to_one, None);
    assert_eq!(cfg.steps_offset, Some(1));
}

#[test]
fn scheduler_names_round_trip_and_unknown_ones_are_listed() {
    for k in SchedulerKind::ALL {
        assert_eq!(k.to_string().parse::<SchedulerKind>().unwrap(), k);
        assert_eq!(SchedulerKind::from_class_name(k.class_name()).unwrap(), k);
    }
    assert_eq!(
        "euler-ancestral".parse::<SchedulerKind>().unwrap(),
        SchedulerKind::EulerAncestral
    );
    assert_eq!(
        "euler".parse::<SchedulerKind>().unwrap(),
        SchedulerKind::Euler
    );
    let err = "lms".parse::<SchedulerKind>().unwrap_err().to_string();
    assert!(
        err.contains("euler-ancestral") && err.contains("pndm"),
        "{err}"
    );

    let cfg = SchedulerConfig::from_json_str(r#"{"_class_name": "LMSDiscreteScheduler"}"#).unwrap();
    let err = cfg.class_kind().unwrap_err().to_string();
    for name in [
        "LMSDiscreteScheduler",
        "DDIMScheduler",
        "DDPMScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "PNDMScheduler",
        "LCMScheduler",
    ] {
        assert!(err.contains(name), "{err}");
    }
    // Another class's file still configures a supported scheduler, as with from_config.
    assert!(build(SchedulerKind::Ddim, &cfg, 10, 0.0).is_ok());
    let classless = SchedulerConfig::from_json_str("{}").unwrap();
    let err = classless.class_kind().unwrap_err().to_string();
    assert!(err.contains("_class_name") && err.contains("ddim"), "{err}");
}

#[test]
fn unsupported_options_are_refused_not_ignored() {
    let parse = |json: &str| SchedulerConfig::from_json_str(json);
    let thresholding = parse(r#"{"thresholding": true}"#).unwrap();
    let err = thresholding
        .resolve(SchedulerKind::Ddim)
        .unwrap_err()
        .to_string();
    assert!(err.contains("thresholding"), "{err}");
    // PNDM and Euler ancestral have no such option in diffusers either.
    assert!(thresholding.resolve(SchedulerKind::Pndm).is_ok());

    let learned = parse(r#"{"variance_type": "learned_range"}"#).unwrap();
    let err = learned
        .resolve(SchedulerKind::Ddpm)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("variance_type") && err.contains("learned_range"),
        "{err}"
    );
    assert!(learned.resolve(SchedulerKind::Ddim).is_ok());
    let large_log = parse(r#"{"variance_type": "fixed_large_log"}"#).unwrap();
    assert!(large_log.resolve(SchedulerKind::Ddpm).is_err());

    // EulerDiscreteScheduler's sigma options beyond its defaults; other kinds ignore the keys.
    for (json, key) in [
        (r#"{"use_karras_sigmas": true}"#, "use_karras_sigmas"),
        (
            r#"{"use_exponential_sigmas": true}"#,
            "use_exponential_sigmas",
        ),
        (r#"{"use_beta_sigmas": true}"#, "use_beta_sigmas"),
        (
            r#"{"interpolation_type": "log_linear"}"#,
            "interpolation_type",
        ),
        (r#"{"final_sigmas_type": "sigma_min"}"#, "final_sigmas_type"),
        (
            r#"{"timestep_type": "continuous", "prediction_type": "v_prediction"}"#,
            "timestep_type",
        ),
    ] {
        let config = parse(json).unwrap();
        let err = config
            .resolve(SchedulerKind::Euler)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{json}: {err}");
        assert!(
            config.resolve(SchedulerKind::EulerAncestral).is_ok(),
            "{json}"
        );
    }
    let defaults = parse(
        r#"{"use_karras_sigmas": false, "interpolation_type": "linear", "timestep_type": "discrete", "final_sigmas_type": "zero", "use_beta_sigmas": null}"#,
    )
    .unwrap();
    assert!(defaults.resolve(SchedulerKind::Euler).is_ok());

    let sample = parse(r#"{"prediction_type": "sample"}"#).unwrap();
    assert!(sample.resolve(SchedulerKind::Euler).is_ok());
    assert!(sample.resolve(SchedulerKind::EulerAncestral).is_err());
    assert!(sample.resolve(SchedulerKind::Pndm).is_err());
    assert!(sample.resolve(SchedulerKind::Ddpm).is_ok());

    let err = parse(r#"{"beta_schedule": "sigmoid"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sigmoid") && err.contains("scaled_linear"),
        "{err}"
    );
    let err = parse(r#"{"timestep_spacing": "karras"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("karras"), "{err}");

    let err = parse(r#"{"clip_sample": null}"#).unwrap_err().to_string();
    assert!(err.contains("clip_sample"), "{err}");
    assert!(parse(r#"{"some_future_key": null, "trained_betas": null}"#).is_ok());

    let negative = parse(r#"{"steps_offset": -1}"#).unwrap();
    let err = negative
        .resolve(SchedulerKind::Ddim)
        .unwrap_err()
        .to_string();
    assert!(err.contains("steps_offset"), "{err}");
    let short = parse(r#"{"trained_betas": [0.1, 0.2]}"#).unwrap();
    let err = short.resolve(SchedulerKind::Ddim).unwrap_err().to_string();
    assert!(
        err.contains("trained_betas") && err.contains("1000"),
        "{err}"
    );
    assert!(matches!(parse("[1, 2]"), Err(SchedulerError::NotAnObject)));
    let huge = parse(r#"{"num_train_timesteps": 10000000000}"#).unwrap();
    let err = huge.resolve(SchedulerKind::Ddpm).unwrap_err().to_string();
    assert!(err.contains("num_train_timesteps"), "{err}");
}

#[test]
fn build_checks_steps_and_eta() {
    let cfg = SchedulerConfig::default();
    let err = |r: Result<_, SchedulerError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(build(SchedulerKind::Ddim, &cfg, 0, 0.0)).contains("inference steps"));
    assert!(err(build(SchedulerKind::Pndm, &cfg, 1001, 0.0)).contains("1000"));
    assert!(build(SchedulerKind::Ddim, &cfg, 999, 1.0).is_ok());
    assert!(err(build(SchedulerKind::Ddim, &cfg, 10, 1.5)).contains("eta"));
    assert!(err(build(SchedulerKind::Ddim, &cfg, 10, -0.1)).contains("eta"));
    assert!(err(build(SchedulerKind::Ddim, &cfg, 10, f32::NAN)).contains("eta"));
    assert!(err(build(SchedulerKind::EulerAncestral, &cfg, 10, 0.5)).contains("ddim"));
    let prk = SchedulerConfig {
        skip_prk_steps: Some(false),
        ..SchedulerConfig::default()
    };
    assert!(err(build(SchedulerKind::Pndm, &prk, 3, 0.0)).contains("at least 4"));
    let offset = SchedulerConfig {
        steps_offset: Some(5),
        ..SchedulerConfig::default()
    };
    assert!(err(build(SchedulerKind::Ddim, &offset, 1000, 0.0)).contains("outside"));
}

#[test]
fn euler_finds_its_place_from_t_without_a_begin_index() {
    let cfg = SchedulerConfig::default();
    let mut with_index = build(SchedulerKind::EulerAncestral, &cfg, 10, 0.0).unwrap();
    let mut from_t = build(SchedulerKind::EulerAncestral, &cfg, 10, 0.0).unwrap();
    let t = with_index.timesteps()[3];
    with_index.set_begin_index(3);
    let x = ArrayD::from_shape_fn(ndarray::IxDyn(&[1, 4, 2, 2]), |i| i[1] as f32 - 1.5);
    let eps = x.mapv(|v| 0.5 * v);
    let a = with_index.add_noise(x.view(), eps.view(), t);
    assert_eq!(a, from_t.add_noise(x.view(), eps.view(), t));
    let scaled = with_index.scale_model_input(a.view(), t);
    assert_eq!(scaled, from_t.scale_model_input(a.view(), t));
    // A different index gives a different scale, so the lookup is doing something.
    let mut at_zero = build(SchedulerKind::EulerAncestral, &cfg, 10, 0.0).unwrap();
    at_zero.set_begin_index(0);
    assert_ne!(scaled, at_zero.scale_model_input(a.view(), t));
    let replay = |z: &ArrayD<f32>| Replay(VecDeque::from([z.clone()]));
    let next = with_index.step(step_input(eps.view(), t, a.view()), &mut replay(&x));
    assert_eq!(
        next,
        from_t.step(step_input(eps.view(), t, a.view()), &mut replay(&x))
    );
}

#[test]
fn missing_config_file_names_the_path() {
    let err = SchedulerConfig::from_file(Path::new("/nonexistent/scheduler_config.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/scheduler_config.json"), "{err}");
}

fn step_input<'a>(
    model_output: ndarray::ArrayViewD<'a, f32>,
    t: f64,
    sample: ndarray::ArrayViewD<'a, f32>,
) -> StepInput<'a> {
    StepInput {
        model_output,
        t,
        sample,
    }
}

/// The table in README: where LCM img2img starts, and the timesteps it runs, per strength at 2 and
/// 4 steps (default original_inference_steps 50), as diffusers 0.39 `set_timesteps(n, strength=s)`
/// gives them. Strength 0 runs nothing (a VAE round trip).
#[test]
fn lcm_start_timesteps_per_strength() {
    let cfg = SchedulerConfig::from_json_str(r#"{"_class_name": "LCMScheduler"}"#).unwrap();
    let plan = |steps: usize, strength: f64| {
        let s = build_img2img(SchedulerKind::Lcm, &cfg, steps, 0.0, strength).unwrap();
        StartPlan::new(s.as_ref(), steps, strength).timesteps
    };
    let table: [(f64, &[f64], &[f64]); 7] = [
        (1.0, &[999.0, 499.0], &[999.0, 759.0, 499.0, 259.0]),
        (0.8, &[799.0, 399.0], &[799.0, 599.0, 399.0, 199.0]),
        (0.7, &[699.0, 359.0], &[699.0, 539.0, 359.0, 179.0]),
        (0.5, &[499.0, 259.0], &[499.0, 379.0, 259.0, 139.0]),
        (0.3, &[299.0, 159.0], &[299.0, 239.0, 159.0, 79.0]),
        (0.2, &[199.0, 99.0], &[199.0, 159.0, 99.0, 59.0]),
        (0.1, &[99.0, 59.0], &[99.0, 79.0, 59.0, 39.0]),
    ];
    for (strength, two, four) in table {
        assert_eq!(plan(2, strength), two, "strength {strength}, 2 steps");
        assert_eq!(plan(4, strength), four, "strength {strength}, 4 steps");
    }
    assert!(plan(4, 0.0).is_empty());
    // int(50 x 0.07) = 3 original timesteps cannot give 4 steps; diffusers refuses it too.
    let err = build_img2img(SchedulerKind::Lcm, &cfg, 4, 0.0, 0.07)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("original_inference_steps"), "{err}");
    assert!(build_img2img(SchedulerKind::Ddim, &cfg, 4, 0.0, 1.5).is_err());
    let zero = SchedulerConfig::from_json_str(r#"{"original_inference_steps": 0}"#).unwrap();
    let err = zero.resolve(SchedulerKind::Lcm).unwrap_err().to_string();
    assert!(err.contains("original_inference_steps"), "{err}");
    // Other kinds ignore the LCM keys, as from_config does.
    assert!(zero.resolve(SchedulerKind::Ddim).is_ok());
}

/// The table in policies/turbo.toml: where Euler ancestral with trailing spacing (SD-Turbo's
/// scheduler config) starts, and how many UNet calls run, per strength at 2, 4 and 10 steps.
#[test]
fn turbo_start_timesteps_per_strength() {
    let cfg = SchedulerConfig::from_json_str(
        r#"{"_class_name": "EulerAncestralDiscreteScheduler", "timestep_spacing": "trailing"}"#,
    )
    .unwrap();
    let plan = |steps: usize, strength: f64| {
        let s = build_img2img(SchedulerKind::EulerAncestral, &cfg, steps, 0.0, strength).unwrap();
        let timesteps = StartPlan::new(s.as_ref(), steps, strength).timesteps;
        (timesteps.first().copied(), timesteps.len())
    };
    // (strength, [(start timestep, UNet calls) at 2, 4 and 10 steps])
    type Row = (f64, [(Option<f64>, usize); 3]);
    let table: [Row; 4] = [
        (0.2, [(None, 0), (None, 0), (Some(199.0), 2)]),
        (0.5, [(Some(499.0), 1), (Some(499.0), 2), (Some(499.0), 5)]),
        (0.7, [(Some(499.0), 1), (Some(499.0), 2), (Some(699.0), 7)]),
        (0.8, [(Some(499.0), 1), (Some(749.0), 3), (Some(799.0), 8)]),
    ];
    for (strength, expected) in table {
        for (steps, want) in [2, 4, 10].into_iter().zip(expected) {
            assert_eq!(
                plan(steps, strength),
                want,
                "strength {strength}, {steps} steps"
            );
        }
    }
}
