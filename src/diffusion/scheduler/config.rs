//! diffusers' `scheduler/scheduler_config.json`, and how each scheduler class resolves it.
//!
//! diffusers' `SchedulerClass.from_config(json)` takes every key the target class's `__init__`
//! accepts from the JSON and gives every absent key *that class's* default, ignoring the rest.
//! So [`SchedulerConfig`] keeps the file as written (absent keys are `None`) and
//! [`SchedulerConfig::resolve`] fills in the defaults of one [`SchedulerKind`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SchedulerError;

/// The scheduler classes boomerang implements, named as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Ddim,
    Ddpm,
    Euler,
    EulerAncestral,
    Pndm,
    Lcm,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 6] = [
        SchedulerKind::Ddim,
        SchedulerKind::Ddpm,
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::Pndm,
        SchedulerKind::Lcm,
    ];

    /// The command-line name: `ddim`, `ddpm`, `euler`, `euler-ancestral`, `pndm` or `lcm`.
    pub fn cli_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::Ddpm => "ddpm",
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler-ancestral",
            SchedulerKind::Pndm => "pndm",
            SchedulerKind::Lcm => "lcm",
        }
    }

    /// The diffusers class this kind reproduces (its `_class_name`).
    pub fn class_name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "DDIMScheduler",
            SchedulerKind::Ddpm => "DDPMScheduler",
            SchedulerKind::Euler => "EulerDiscreteScheduler",
            SchedulerKind::EulerAncestral => "EulerAncestralDiscreteScheduler",
            SchedulerKind::Pndm => "PNDMScheduler",
            SchedulerKind::Lcm => "LCMScheduler",
        }
    }

    /// The kind for a diffusers `_class_name`.
    pub fn from_class_name(name: &str) -> Result<Self, SchedulerError> {
        if name.is_empty() {
            return Err(SchedulerError::NoClass);
        }
        Self::ALL
            .into_iter()
            .find(|k| k.class_name() == name)
            .ok_or_else(|| SchedulerError::UnsupportedClass {
                name: name.to_owned(),
            })
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cli_name())
    }
}

impl FromStr for SchedulerKind {
    type Err = SchedulerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.cli_name() == s)
            .ok_or_else(|| SchedulerError::UnknownKind { name: s.to_owned() })
    }
}

pub(super) fn supported_cli_names() -> String {
    SchedulerKind::ALL.map(SchedulerKind::cli_name).join(", ")
}

pub(super) fn supported_class_names() -> String {
    SchedulerKind::ALL.map(SchedulerKind::class_name).join(", ")
}

/// diffusers' `beta_schedule` values that boomerang implements (DDPM's `sigmoid` and `laplace`
/// are not among them and fail to parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

/// What the denoising model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    /// The clean sample itself; only DDIM, DDPM and LCM accept it (as in diffusers).
    Sample,
}

/// How inference timesteps are spread over the training schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

/// DDPM's `variance_type`. All diffusers values parse; [`SchedulerConfig::resolve`] rejects the
/// ones boomerang does not implement when the target is DDPM (other classes ignore the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceType {
    FixedSmall,
    FixedSmallLog,
    FixedLarge,
    FixedLargeLog,
    Learned,
    LearnedRange,
}

impl fmt::Display for VarianceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarianceType::FixedSmall => "fixed_small",
            VarianceType::FixedSmallLog => "fixed_small_log",
            VarianceType::FixedLarge => "fixed_large",
            VarianceType::FixedLargeLog => "fixed_large_log",
            VarianceType::Learned => "learned",
            VarianceType::LearnedRange => "learned_range",
        })
    }
}

/// A scheduler configuration as written in diffusers' `scheduler_config.json`.
///
/// `None` means the key is absent, so the target class's default applies (see
/// [`SchedulerConfig::resolve`]). Keys diffusers writes that no implemented class reads are
/// ignored. `Default` is Stable Diffusion 1.5's file (a `PNDMScheduler` config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    /// diffusers' `_class_name`; empty when the file names no class.
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    pub num_train_timesteps: Option<usize>,
    pub beta_start: Option<f64>,
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<BetaSchedule>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<PredictionType>,
    pub timestep_spacing: Option<TimestepSpacing>,
    /// Signed so that a negative value gets a clear error instead of a parse failure.
    pub steps_offset: Option<i64>,
    pub set_alpha_to_one: Option<bool>,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: Option<f64>,
    pub thresholding: Option<bool>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub variance_type: Option<VarianceType>,
    pub skip_prk_steps: Option<bool>,
    /// Signed so that a negative value gets a clear error instead of a parse failure.
    pub original_inference_steps: Option<i64>,
    pub timestep_scaling: Option<f64>,
    /// `EulerDiscreteScheduler`'s sigma options; only their defaults (`linear`, no Karras,
    /// exponential or beta sigmas, `discrete`, `zero`) are implemented. `null` is their default
    /// too, as diffusers' `None` is falsy.
    pub interpolation_type: Option<String>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub timestep_type: Option<String>,
    pub final_sigmas_type: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        // runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
        Self {
            class_name: "PNDMScheduler".to_owned(),
            num_train_timesteps: Some(1000),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            beta_schedule: Some(BetaSchedule::ScaledLinear),
            trained_betas: None,
            prediction_type: None,
            timestep_spacing: None,
            steps_offset: Some(1),
            set_alpha_to_one: Some(false),
            clip_sample: Some(false),
            clip_sample_range: None,
            thresholding: None,
            rescale_betas_zero_snr: None,
            variance_type: None,
            skip_prk_steps: Some(true),
            original_inference_steps: None,
            timestep_scaling: None,
            interpolation_type: None,
            use_karras_sigmas: None,
            use_exponential_sigmas: None,
            use_beta_sigmas: None,
            timestep_type: None,
            final_sigmas_type: None,
        }
    }
}

const MAX_TRAIN_TIMESTEPS: usize = 100_000;

/// Keys the implemented classes read; `null` is only meaningful for `trained_betas`.
const READ_KEYS: [&str; 17] = [
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "prediction_type",
    "timestep_spacing",
    "steps_offset",
    "set_alpha_to_one",
    "clip_sample",
    "clip_sample_range",
    "thresholding",
    "rescale_betas_zero_snr",
    "variance_type",
    "skip_prk_steps",
    "original_inference_steps",
    "timestep_scaling",
    "_class_name",
];

impl SchedulerConfig {
    /// Parses the text of a `scheduler_config.json`.
    pub fn from_json_str(json: &str) -> Result<Self, SchedulerError> {
        let value: Value = serde_json::from_str(json).map_err(SchedulerError::Json)?;
        let Value::Object(mut map) = value else {
            return Err(SchedulerError::NotAnObject);
        };
        // diffusers drops keys listed here: they only held the writing class's defaults.
        if let Some(defaults) = map.remove("_use_default_values") {
            let Value::Array(keys) = defaults else {
                return Err(SchedulerError::BadUseDefaultValues);
            };
            for key in keys {
                let Value::String(key) = key else {
                    return Err(SchedulerError::BadUseDefaultValues);
                };
                map.remove(&key);
            }
        }
        reject_nulls(&map)?;
        serde_json::from_value(Value::Object(map)).map_err(SchedulerError::Json)
    }

    /// Reads and parses a `scheduler_config.json` file.
    pub fn from_file(path: &Path) -> Result<Self, SchedulerError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|e| SchedulerError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// The kind named by `_class_name`.
    pub fn class_kind(&self) -> Result<SchedulerKind, SchedulerError> {
        SchedulerKind::from_class_name(&self.class_name)
    }

    /// What diffusers' `StableDiffusionImg2ImgPipeline.__init__` does to any scheduler config:
    /// it forces `steps_offset = 1` and `clip_sample = false`, warning that older files are
    /// "outdated". Apply this to reproduce the pipeline rather than the bare scheduler.
    pub fn with_stable_diffusion_pipeline_fixes(mut self) -> Self {
        self.steps_offset = Some(1);
        self.clip_sample = Some(false);
        self
    }

    /// The configuration `kind` runs with: keys from the file, the class's diffusers 0.39 defaults
    /// for absent ones. Errors for options diffusers accepts but boomerang does not implement.
    pub fn resolve(&self, kind: SchedulerKind) -> Result<ResolvedConfig, SchedulerError> {
        use SchedulerKind::*;
        let reads_clip = matches!(kind, Ddim | Ddpm | Lcm);
        let num_train_timesteps = self.num_train_timesteps.unwrap_or(1000);
        // The upper bound only guards the allocations; Stable Diffusion uses 1000.
        if !(1..=MAX_TRAIN_TIMESTEPS).contains(&num_train_timesteps) {
            return Err(SchedulerError::Invalid {
                key: "num_train_timesteps",
                reason: format!(
                    "is {num_train_timesteps}; it must be from 1 to {MAX_TRAIN_TIMESTEPS}"
                ),
            });
        }
        if let Some(betas) = &self.trained_betas {
            if betas.len() != num_train_timesteps {
                return Err(SchedulerError::Invalid {
                    key: "trained_betas",
                    reason: format!(
                        "has {} values but num_train_timesteps is {num_train_timesteps}",
                        betas.len()
                    ),
                });
            }
        }
        let steps_offset = self.steps_offset.unwrap_or(0);
        let steps_offset = usize::try_from(steps_offset).map_err(|_| SchedulerError::Invalid {
            key: "steps_offset",
            reason: format!("is {steps_offset}; it must be 0 or more"),
        })?;
        let prediction_type = self.prediction_type.unwrap_or(PredictionType::Epsilon);
        if prediction_type == PredictionType::Sample && matches!(kind, EulerAncestral | Pndm) {
            return Err(SchedulerError::Unsupported {
                kind,
                key: "prediction_type",
                value: "sample".to_owned(),
                why: "diffusers implements it only for DDIM, DDPM and LCM; pick one of those",
            });
        }
        if kind == Euler {
            self.check_euler_sigma_options(prediction_type)?;
        }
        if reads_clip && self.thresholding == Some(true) {
            return Err(SchedulerError::Unsupported {
                kind,
                key: "thresholding",
                value: "true".to_owned(),
                why: "dynamic thresholding is meant for pixel-space models, not latent \
                      diffusion; set it to false",
            });
        }
        let variance_type = if kind == Ddpm {
            let v = self.variance_type.unwrap_or(VarianceType::FixedSmall);
            let why = match v {
                VarianceType::FixedSmall
                | VarianceType::FixedSmallLog
                | VarianceType::FixedLarge => None,
                VarianceType::FixedLargeLog => {
                    Some("diffusers takes the square root of a log-variance there (NaN noise)")
                }
                VarianceType::Learned | VarianceType::LearnedRange => Some(
                    "it needs a model that predicts its variance (twice the latent channels), \
                     which Stable Diffusion's UNet does not",
                ),
            };
            if let Some(why) = why {
                return Err(SchedulerError::Unsupported {
                    kind,
                    key: "variance_type",
                    value: v.to_string(),
                    why,
                });
            }
            v
        } else {
            VarianceType::FixedSmall
        };
        let clip_sample_range = self.clip_sample_range.unwrap_or(1.0);
        let original_inference_steps = if kind == Lcm {
            let steps = self.original_inference_steps.unwrap_or(50);
            // diffusers divides by it and then refuses more than num_train_timesteps.
            match usize::try_from(steps) {
                Ok(s) if (1..=num_train_timesteps).contains(&s) => s,
                _ => {
                    return Err(SchedulerError::Invalid {
                        key: "original_inference_steps",
                        reason: format!(
                            "is {steps}; it must be from 1 to num_train_timesteps \
                             ({num_train_timesteps})"
                        ),
                    })
                }
            }
        } else {
            50
        };
        let timestep_scaling = if kind == Lcm {
            let scaling = self.timestep_scaling.unwrap_or(10.0);
            if !scaling.is_finite() {
                return Err(SchedulerError::Invalid {
                    key: "timestep_scaling",
                    reason: format!("is {scaling}; it must be a finite number"),
                });
            }
            scaling
        } else {
            10.0
        };
        // LCMScheduler's own defaults are Stable Diffusion's betas, not DDPM's.
        let (beta_start, beta_end, beta_schedule) = if kind == Lcm {
            (0.00085, 0.012, BetaSchedule::ScaledLinear)
        } else {
            (0.0001, 0.02, BetaSchedule::Linear)
        };
        Ok(ResolvedConfig {
            kind,
            num_train_timesteps,
            beta_start: self.beta_start.unwrap_or(beta_start),
            beta_end: self.beta_end.unwrap_or(beta_end),
            beta_schedule: self.beta_schedule.unwrap_or(beta_schedule),
            trained_betas: self.trained_betas.clone(),
            prediction_type,
            timestep_spacing: self.timestep_spacing.unwrap_or(
                if matches!(kind, Euler | EulerAncestral) {
                    TimestepSpacing::Linspace
                } else {
                    TimestepSpacing::Leading
                },
            ),
            steps_offset,
            set_alpha_to_one: match kind {
                Ddim | Lcm => self.set_alpha_to_one.unwrap_or(true),
                Pndm => self.set_alpha_to_one.unwrap_or(false),
                Ddpm | Euler | EulerAncestral => false,
            },
            clip_sample: reads_clip && self.clip_sample.unwrap_or(kind != Lcm),
            clip_sample_range,
            rescale_betas_zero_snr: kind != Pndm && self.rescale_betas_zero_snr.unwrap_or(false),
            variance_type,
            skip_prk_steps: kind == Pndm && self.skip_prk_steps.unwrap_or(false),
            original_inference_steps,
            timestep_scaling,
        })
    }
}

impl SchedulerConfig {
    /// `EulerDiscreteScheduler` options other than their defaults change the sigmas or the
    /// timesteps in ways boomerang does not reproduce: refused rather than ignored.
    fn check_euler_sigma_options(&self, prediction: PredictionType) -> Result<(), SchedulerError> {
        let unsupported = |key: &'static str, value: &str, why: &'static str| {
            Err(SchedulerError::Unsupported {
                kind: SchedulerKind::Euler,
                key,
                value: value.to_owned(),
                why,
            })
        };
        if let Some(value) = self
            .interpolation_type
            .as_deref()
            .filter(|v| *v != "linear")
        {
            return unsupported(
                "interpolation_type",
                value,
                "only `linear` is implemented; use `linear` or another scheduler",
            );
        }
        for (key, set) in [
            ("use_karras_sigmas", self.use_karras_sigmas),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
        ] {
            if set == Some(true) {
                return unsupported(
                    key,
                    "true",
                    "only the model's own sigmas are implemented; set it to false or pick another scheduler",
                );
            }
        }
        if let Some(value) = self.final_sigmas_type.as_deref().filter(|v| *v != "zero") {
            return unsupported("final_sigmas_type", value, "only `zero` is implemented");
        }
        let continuous = self.timestep_type.as_deref() == Some("continuous");
        if continuous && prediction == PredictionType::VPrediction {
            return unsupported(
                "timestep_type",
                "continuous",
                "continuous (log-sigma) timesteps with v_prediction are not implemented",
            );
        }
        Ok(())
    }
}

fn reject_nulls(map: &Map<String, Value>) -> Result<(), SchedulerError> {
    match READ_KEYS
        .iter()
        .find(|k| map.get(**k) == Some(&Value::Null))
    {
        Some(key) => Err(SchedulerError::Null { key }),
        None => Ok(()),
    }
}

/// A configuration resolved for one scheduler kind: every value the scheduler uses.
///
/// Serializes with diffusers' key names. Fields the kind does not read hold inert values:
/// `set_alpha_to_one` false for DDPM and Euler, `clip_sample` false for Euler and PNDM,
/// `rescale_betas_zero_snr` false for PNDM, `variance_type` fixed_small except for DDPM,
/// `skip_prk_steps` false except for PNDM, `original_inference_steps` 50 and `timestep_scaling`
/// 10 except for LCM.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedConfig {
    #[serde(skip)]
    pub kind: SchedulerKind,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    pub set_alpha_to_one: bool,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub rescale_betas_zero_snr: bool,
    pub variance_type: VarianceType,
    pub skip_prk_steps: bool,
    /// LCM: the distillation schedule's length, from which the inference timesteps are picked.
    pub original_inference_steps: usize,
    /// LCM: the factor on `t` in the consistency boundary scalings `c_skip` and `c_out`.
    pub timestep_scaling: f64,
}
