//! `model.toml`: what a pixel-space denoiser graph takes and predicts. Parsed by serde into a raw
//! struct whose fields are all optional, then [`RawSpec::validate`]d into a typed
//! [`DenoiserSpec`], so that every problem of a file is reported at once (as cargo-deny does),
//! not the first one per run. The format is documented in models/README.md.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// The file that makes a folder a denoiser model (rather than a Stable Diffusion export).
pub const SPEC_FILE: &str = "model.toml";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid model.toml (see models/README.md): {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem{} (see models/README.md):\n  - {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// What the graph's output is an estimate of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The clean image x0 (EDM's D(x; sigma), consistency models).
    Denoised,
    /// The noise: x0 = x - sigma * eps.
    Epsilon,
    /// v-prediction in EDM's sigma_data scaling: x0 = c_skip x - c_out v, with
    /// c_skip = sd^2 / (sigma^2 + sd^2) and c_out = sigma sd / sqrt(sigma^2 + sd^2).
    V,
}

/// How the reverse process runs from the start sigma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// One call: the consistency function maps x_sigma straight to x0.
    Consistency,
    /// EDM's Euler sampler: `steps` calls on Karras' rho = 7 schedule from the start sigma down to
    /// sigma_min, then the last step to sigma = 0.
    Euler { steps: usize },
}

/// What the graph is fed at one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputRole {
    /// The noisy image x_sigma, `[B, channels, size, size]`, fed as is (the export holds its own
    /// preconditioning).
    Noisy,
    /// The noise level sigma, one per batch row.
    Sigma,
    /// EDM's noise conditioning c_noise = ln(sigma) / 4, one per batch row.
    CNoise,
    /// A constant per batch row (a class or condition label); `range` bounds `--set` overrides.
    Constant {
        value: f32,
        range: Option<(f32, f32)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub role: InputRole,
}

/// EDM's noise range and data scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmaRange {
    pub min: f64,
    pub max: f64,
    pub data: f64,
}

/// The model's value range; image pixels map linearly onto it (0 to `low`, full scale to `high`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueRange {
    pub low: f32,
    pub high: f32,
}

/// A validated `model.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenoiserSpec {
    /// The model.toml it was read from.
    pub path: PathBuf,
    pub name: String,
    /// The graph file, resolved against the spec's folder.
    pub graph: PathBuf,
    pub sha256: String,
    /// How to get a graph that is not committed (shown when it is missing).
    pub fetch: Option<String>,
    pub prediction: Prediction,
    pub sampler: SamplerKind,
    pub channels: usize,
    pub size: usize,
    pub sigma: SigmaRange,
    pub values: ValueRange,
    pub inputs: Vec<InputSpec>,
    pub output: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    name: Option<String>,
    graph: Option<String>,
    sha256: Option<String>,
    fetch: Option<String>,
    prediction: Option<String>,
    sampler: Option<String>,
    steps: Option<i64>,
    channels: Option<i64>,
    size: Option<i64>,
    sigma: Option<RawSigma>,
    values: Option<RawValues>,
    #[serde(default)]
    input: Vec<RawInput>,
    output: Option<RawOutput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigma {
    min: Option<f64>,
    max: Option<f64>,
    data: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValues {
    range: Option<Vec<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: Option<String>,
    role: Option<String>,
    value: Option<f64>,
    range: Option<Vec<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: Option<String>,
}

/// Largest side accepted: beyond it a one-image tensor would not fit a GPU anyway.
const MAX_SIZE: i64 = 8192;
/// More Euler steps than this is a typo, not a sampler setting.
const MAX_STEPS: i64 = 1000;

/// Whether `dir` holds a denoiser spec (and so is not a Stable Diffusion export).
pub fn is_denoiser_folder(dir: &Path) -> bool {
    dir.join(SPEC_FILE).is_file()
}

impl DenoiserSpec {
    /// Reads and validates `dir/model.toml`.
    pub fn load(dir: &Path) -> Result<DenoiserSpec, SpecError> {
        let path = dir.join(SPEC_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| SpecError::Read {
            path: path.clone(),
            source,
        })?;
        DenoiserSpec::parse(&text, &path)
    }

    /// Parses `text` as the model.toml at `path` (graph paths resolve against its folder).
    pub fn parse(text: &str, path: &Path) -> Result<DenoiserSpec, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|error| {
            // One line: where, then toml's message without its multi-line source excerpt.
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            SpecError::Parse {
                path: path.to_path_buf(),
                message: match line {
                    Some(line) => format!("line {line}: {}", error.message().trim()),
                    None => error.message().trim().to_string(),
                },
            }
        })?;
        raw.validate(path)
    }

    /// Replaces a constant input's value (`--set NAME=VALUE`), within its declared range.
    pub fn set_constant(&mut self, name: &str, new: f32) -> Result<(), String> {
        let constants = || {
            self.inputs
                .iter()
                .filter(|i| matches!(i.role, InputRole::Constant { .. }))
                .map(|i| format!("`{}`", i.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let listed = constants();
        let Some(input) = self.inputs.iter_mut().find(|i| i.name == name) else {
            return Err(format!(
                "--set {name}: {} has no input `{name}`; constant inputs: {}",
                self.path.display(),
                if listed.is_empty() { "none" } else { &listed }
            ));
        };
        match &mut input.role {
            InputRole::Constant { value, range } => {
                if !new.is_finite() {
                    return Err(format!("--set {name}={new}: not a finite number"));
                }
                if let Some((low, high)) = *range {
                    if !(low..=high).contains(&new) {
                        return Err(format!(
                            "--set {name}={new}: outside the range {low}..={high} that {} declares",
                            self.path.display()
                        ));
                    }
                }
                *value = new;
                Ok(())
            }
            _ => Err(format!(
                "--set {name}: `{name}` is not a constant input of {} (constant inputs: {})",
                self.path.display(),
                if listed.is_empty() { "none" } else { &listed }
            )),
        }
    }

    /// The start noise level of strength `s` in `[0, 1]`: sigma_min (sigma_max / sigma_min)^s,
    /// log-uniform between the two ends, as the terrain package's generate_from() does.
    pub fn start_sigma(&self, strength: f64) -> f64 {
        self.sigma.min * (self.sigma.max / self.sigma.min).powf(strength)
    }
}

fn finite_pair(values: &[f64]) -> Option<(f64, f64)> {
    match values {
        [low, high] if low.is_finite() && high.is_finite() && low < high => Some((*low, *high)),
        _ => None,
    }
}

/// A path inside the spec's folder: relative, without `..`.
fn inside_folder(relative: &str) -> bool {
    let path = Path::new(relative);
    !relative.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl RawSpec {
    /// Every problem of the file at once, or the typed spec.
    pub fn validate(self, path: &Path) -> Result<DenoiserSpec, SpecError> {
        let mut problems = Vec::new();
        let missing = |field: &str, problems: &mut Vec<String>| {
            problems.push(format!("`{field}` is missing"));
        };

        let name = self.name.unwrap_or_default();
        let graph = match self.graph {
            Some(g) if inside_folder(&g) => Some(g),
            Some(g) => {
                problems.push(format!(
                    "graph = {g:?}: give a file name relative to the model folder (no `..`, not absolute)"
                ));
                None
            }
            None => {
                missing("graph", &mut problems);
                None
            }
        };
        let sha256 = match self.sha256 {
            Some(s)
                if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Some(s)
            }
            Some(s) => {
                problems.push(format!("sha256 = {s:?}: expected 64 lowercase hex digits"));
                None
            }
            None => {
                missing("sha256", &mut problems);
                None
            }
        };
        let prediction = match self.prediction.as_deref() {
            Some("denoised") => Some(Prediction::Denoised),
            Some("epsilon") => Some(Prediction::Epsilon),
            Some("v") => Some(Prediction::V),
            Some(other) => {
                problems.push(format!(
                    "prediction = {other:?}: expected \"denoised\", \"epsilon\" or \"v\""
                ));
                None
            }
            None => {
                missing("prediction", &mut problems);
                None
            }
        };
        let sampler = match (self.sampler.as_deref(), self.steps) {
            (Some("consistency"), None | Some(1)) => Some(SamplerKind::Consistency),
            (Some("consistency"), Some(steps)) => {
                problems.push(format!(
                    "steps = {steps}: a consistency sampler makes exactly one call (remove `steps`, or use sampler = \"euler\")"
                ));
                None
            }
            (Some("euler"), Some(steps)) if (1..=MAX_STEPS).contains(&steps) => {
                Some(SamplerKind::Euler {
                    steps: steps as usize,
                })
            }
            (Some("euler"), Some(steps)) => {
                problems.push(format!("steps = {steps}: expected 1..={MAX_STEPS}"));
                None
            }
            (Some("euler"), None) => {
                problems.push("sampler = \"euler\" needs `steps` (model calls)".into());
                None
            }
            (Some(other), _) => {
                problems.push(format!(
                    "sampler = {other:?}: expected \"consistency\" or \"euler\""
                ));
                None
            }
            (None, _) => {
                missing("sampler", &mut problems);
                None
            }
        };
        let mut dimension = |field: &str, value: Option<i64>, max: i64| match value {
            Some(v) if (1..=max).contains(&v) => Some(v as usize),
            Some(v) => {
                problems.push(format!("{field} = {v}: expected 1..={max}"));
                None
            }
            None => {
                problems.push(format!("`{field}` is missing"));
                None
            }
        };
        let channels = dimension("channels", self.channels, 64);
        let size = dimension("size", self.size, MAX_SIZE);

        let sigma = match self.sigma {
            None => {
                missing("[sigma]", &mut problems);
                None
            }
            Some(raw) => {
                let mut field = |name: &str, value: Option<f64>| match value {
                    Some(v) if v.is_finite() && v > 0.0 => Some(v),
                    Some(v) => {
                        problems.push(format!("sigma.{name} = {v}: expected a positive number"));
                        None
                    }
                    None => {
                        problems.push(format!("`sigma.{name}` is missing"));
                        None
                    }
                };
                let (min, max, data) = (
                    field("min", raw.min),
                    field("max", raw.max),
                    field("data", raw.data),
                );
                match (min, max, data) {
                    (Some(min), Some(max), Some(data)) if min < max => {
                        Some(SigmaRange { min, max, data })
                    }
                    (Some(min), Some(max), Some(_)) => {
                        problems.push(format!("sigma.min = {min} is not below sigma.max = {max}"));
                        None
                    }
                    _ => None,
                }
            }
        };
        let values = match self.values.and_then(|v| v.range) {
            Some(range) => match finite_pair(&range) {
                Some((low, high)) => Some(ValueRange {
                    low: low as f32,
                    high: high as f32,
                }),
                None => {
                    problems.push(format!(
                        "values.range = {range:?}: expected [low, high] with low < high"
                    ));
                    None
                }
            },
            None => {
                missing("values.range", &mut problems);
                None
            }
        };
        let inputs = validate_inputs(self.input, &mut problems);
        let output = match self.output.and_then(|o| o.name) {
            Some(name) if !name.is_empty() => Some(name),
            _ => {
                missing("output.name", &mut problems);
                None
            }
        };

        let folder = path.parent().unwrap_or(Path::new("."));
        match (
            graph, sha256, prediction, sampler, channels, size, sigma, values, output,
        ) {
            (
                Some(graph),
                Some(sha256),
                Some(prediction),
                Some(sampler),
                Some(channels),
                Some(size),
                Some(sigma),
                Some(values),
                Some(output),
            ) if problems.is_empty() => Ok(DenoiserSpec {
                path: path.to_path_buf(),
                name,
                graph: folder.join(graph),
                sha256,
                fetch: self.fetch,
                prediction,
                sampler,
                channels,
                size,
                sigma,
                values,
                inputs,
                output,
            }),
            _ => Err(SpecError::Invalid {
                path: path.to_path_buf(),
                problems,
            }),
        }
    }
}

/// The `[[input]]` tables: unique names, one noisy image, one noise level (sigma or c-noise),
/// constants with a value (inside their range).
fn validate_inputs(raw: Vec<RawInput>, problems: &mut Vec<String>) -> Vec<InputSpec> {
    let mut inputs: Vec<InputSpec> = Vec::new();
    for (k, input) in raw.into_iter().enumerate() {
        let Some(name) = input.name.filter(|n| !n.is_empty()) else {
            problems.push(format!("input {}: `name` is missing", k + 1));
            continue;
        };
        if inputs.iter().any(|i| i.name == name) {
            problems.push(format!("input `{name}` is listed twice"));
            continue;
        }
        let range = match input.range.as_deref() {
            None => Ok(None),
            Some(r) => finite_pair(r)
                .map(|(low, high)| Some((low as f32, high as f32)))
                .ok_or_else(|| {
                    format!("input `{name}`: range = {r:?}: expected [low, high] with low < high")
                }),
        };
        let role = match (input.role.as_deref(), input.value) {
            (Some("constant"), Some(value)) if value.is_finite() => match range {
                Ok(Some((low, high))) if !(low..=high).contains(&(value as f32)) => Err(format!(
                    "input `{name}`: value = {value} is outside its range {low}..={high}"
                )),
                Ok(range) => Ok(InputRole::Constant {
                    value: value as f32,
                    range,
                }),
                Err(message) => Err(message),
            },
            (Some("constant"), Some(value)) => Err(format!(
                "input `{name}`: value = {value} is not a finite number"
            )),
            (Some("constant"), None) => Err(format!(
                "input `{name}`: role \"constant\" needs a `value`"
            )),
            (Some(role @ ("noisy" | "sigma" | "c-noise")), Some(_)) => Err(format!(
                "input `{name}`: `value` is only for role \"constant\", not {role:?}"
            )),
            (Some(_), None) if input.range.is_some() => Err(format!(
                "input `{name}`: `range` is only for role \"constant\""
            )),
            (Some("noisy"), None) => Ok(InputRole::Noisy),
            (Some("sigma"), None) => Ok(InputRole::Sigma),
            (Some("c-noise"), None) => Ok(InputRole::CNoise),
            (Some(other), _) => Err(format!(
                "input `{name}`: role = {other:?}: expected \"noisy\", \"sigma\", \"c-noise\" or \"constant\""
            )),
            (None, _) => Err(format!("input `{name}`: `role` is missing")),
        };
        match role {
            Ok(role) => inputs.push(InputSpec { name, role }),
            Err(message) => problems.push(message),
        }
    }
    let count = |pick: fn(&InputRole) -> bool| inputs.iter().filter(|i| pick(&i.role)).count();
    match count(|r| matches!(r, InputRole::Noisy)) {
        1 => {}
        n => problems.push(format!(
            "expected exactly one input with role \"noisy\", found {n}"
        )),
    }
    match count(|r| matches!(r, InputRole::Sigma | InputRole::CNoise)) {
        1 => {}
        n => problems.push(format!(
            "expected exactly one input with role \"sigma\" or \"c-noise\", found {n}"
        )),
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
graph = "g.onnx"
sha256 = "230f0ec1fae9c5e196aff0c887b7b2a7f57b9b240f8481dd5daa8c3333bb34ec"
prediction = "denoised"
sampler = "consistency"
channels = 1
size = 128
[sigma]
min = 0.002
max = 80.0
data = 0.5
[values]
range = [-1.0, 1.0]
[[input]]
name = "noisy"
role = "noisy"
[[input]]
name = "sigma"
role = "sigma"
[[input]]
name = "difficulty"
role = "constant"
value = 1.0
range = [0.0, 1.0]
[output]
name = "denoised"
"#;

    fn parse(text: &str) -> Result<DenoiserSpec, SpecError> {
        DenoiserSpec::parse(text, Path::new("/m/model.toml"))
    }

    #[test]
    fn a_good_spec_becomes_typed() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.graph, Path::new("/m/g.onnx"));
        assert_eq!(spec.sampler, SamplerKind::Consistency);
        assert_eq!(spec.prediction, Prediction::Denoised);
        assert_eq!(
            spec.inputs[2].role,
            InputRole::Constant {
                value: 1.0,
                range: Some((0.0, 1.0))
            }
        );
        assert_eq!(
            spec.values,
            ValueRange {
                low: -1.0,
                high: 1.0
            }
        );
        // strength 0.5 is the geometric mean of the two ends: sqrt(0.002 * 80) = 0.4.
        assert!((spec.start_sigma(0.5) - 0.4).abs() < 1e-12);
        assert!((spec.start_sigma(1.0) - 80.0).abs() < 1e-9);
        assert!((spec.start_sigma(0.0) - 0.002).abs() < 1e-15);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_the_path() {
        let bad = GOOD
            .replace("\"denoised\"\nsampler", "\"x0\"\nsampler")
            .replace("size = 128", "size = 0")
            .replace("min = 0.002", "min = 90.0")
            .replace("role = \"sigma\"", "role = \"time\"")
            .replace("value = 1.0", "value = 2.0");
        let error = parse(&bad).unwrap_err().to_string();
        for needle in [
            "/m/model.toml: 6 problems",
            "prediction = \"x0\"",
            "size = 0",
            "sigma.min = 90 is not below sigma.max = 80",
            "role = \"time\"",
            "value = 2 is outside its range 0..=1",
            "exactly one input with role \"sigma\" or \"c-noise\", found 0",
        ] {
            assert!(error.contains(needle), "`{needle}` not in:\n{error}");
        }
    }

    #[test]
    fn unknown_keys_and_escaping_graphs_are_refused() {
        let error = parse(&format!("colour = 1\n{GOOD}"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1: unknown field `colour`"), "{error}");
        let error = parse(&GOOD.replace("size = 128", "size = 128\nzoom = 2"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 9: unknown field `zoom`"), "{error}");
        let error = parse(&GOOD.replace("size = 128", "size = \"big\""))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/m/model.toml: not a valid model.toml"),
            "{error}"
        );
        assert!(error.contains("line 8:"), "{error}");
        let error = parse(&GOOD.replace("\"g.onnx\"", "\"../g.onnx\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("relative to the model folder"), "{error}");
        let error = parse(&GOOD.replace("sampler = \"consistency\"", "sampler = \"euler\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs `steps`"), "{error}");
    }

    #[test]
    fn set_constant_checks_name_and_range() {
        let mut spec = parse(GOOD).unwrap();
        spec.set_constant("difficulty", 0.25).unwrap();
        assert_eq!(
            spec.inputs[2].role,
            InputRole::Constant {
                value: 0.25,
                range: Some((0.0, 1.0))
            }
        );
        assert!(spec
            .set_constant("difficulty", 1.5)
            .unwrap_err()
            .contains("outside the range 0..=1"));
        assert!(spec
            .set_constant("sigma", 1.0)
            .unwrap_err()
            .contains("not a constant input"));
        assert!(spec
            .set_constant("nope", 1.0)
            .unwrap_err()
            .contains("constant inputs: `difficulty`"));
    }
}
