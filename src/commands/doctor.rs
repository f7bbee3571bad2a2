//! `boomerang doctor`: what this installation finds and what is missing, each with its fix.

use std::path::Path;

use super::Exit;
use crate::certify::{self, spec::EmbedderSpec};
use crate::io::{data_dir, gpu_libraries, runtime};
use crate::policy::Policy;

/// One line of the report: found (with where), or missing (with the fix).
struct Check {
    what: String,
    found: Result<String, String>,
}

impl Check {
    fn print(&self) {
        match &self.found {
            Ok(detail) => println!("ok       {}: {detail}", self.what),
            Err(fix) => println!("missing  {}: {fix}", self.what),
        }
    }
}

/// Prints every check; `Exit::Incomplete` when something the CPU path needs is missing (the GPU
/// lines are information: a CPU machine needs none of them).
pub fn run() -> anyhow::Result<Exit> {
    println!("boomerang {}", env!("CARGO_PKG_VERSION"));
    let mut cpu_ready = true;
    data_folder_checks();

    let onnxruntime = match runtime::init(None) {
        Ok(loaded) => {
            let info = loaded.info();
            Ok(format!(
                "{} at {} (found: {}), providers: {}",
                info.version,
                info.library.display(),
                serde_json::to_value(info.source)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                providers()
            ))
        }
        Err(error) => Err(error.to_string().replace('\n', " ")),
    };
    cpu_ready &= onnxruntime.is_ok();
    Check {
        what: "ONNX Runtime".into(),
        found: onnxruntime,
    }
    .print();

    let gpu_build = runtime::cached_gpu_library().filter(|path| path.is_file());
    Check {
        what: "ONNX Runtime GPU build (for --device cuda/tensorrt)".into(),
        found: gpu_build
            .map(|path| path.display().to_string())
            .ok_or_else(|| format!("run `{} --gpu`", runtime::FIX_COMMAND)),
    }
    .print();
    for (library, found) in
        gpu_libraries::status(&[gpu_libraries::CUDA, gpu_libraries::TENSORRT].concat())
    {
        Check {
            what: format!("{} (GPU)", library.soname),
            found: found.map_err(|why| format!("{why}; {}", library.source)),
        }
        .print();
    }

    let detector = certify::resolve_detector(None).map(|path| path.display().to_string());
    cpu_ready &= detector.is_ok();
    Check {
        what: "face detector".into(),
        found: detector.map_err(|error| error.to_string()),
    }
    .print();
    let embedder =
        certify::resolve_embedder(certify::DEFAULT_EMBEDDER).map(|path| path.display().to_string());
    cpu_ready &= embedder.is_ok();
    Check {
        what: format!("face embedder {}", certify::DEFAULT_EMBEDDER),
        found: embedder.map_err(|error| error.to_string()),
    }
    .print();

    for name in ["default", "demo"] {
        for check in policy_checks(name) {
            check.print();
        }
    }
    println!(
        "cache: {}",
        runtime::cache_root().map_or("none (set BOOMERANG_CACHE_DIR or HOME)".into(), |p| p
            .display()
            .to_string())
    );
    Ok(if cpu_ready {
        Exit::Success
    } else {
        Exit::Incomplete
    })
}

/// Where policies and models are installed (`boomerang setup`) and whether the source tree is
/// searched too.
fn data_folder_checks() {
    let setup = match data_dir::data_dir() {
        None => Err(format!(
            "cannot tell where it is: set {} (or XDG_DATA_HOME or HOME)",
            data_dir::DATA_DIR_ENV
        )),
        Some(data) => match super::setup::marker(&data) {
            Some((version, true)) => Ok(format!(
                "{} (set up by boomerang {version})",
                data.display()
            )),
            Some((version, false)) => Err(format!(
                "{}: setup by boomerang {version} did not complete; run `boomerang setup`",
                data.display()
            )),
            None => Err(format!(
                "{}: setup has not run; run `boomerang setup`",
                data.display()
            )),
        },
    };
    Check {
        what: "data folder".into(),
        found: setup,
    }
    .print();
    println!(
        "source tree: {}",
        data_dir::source_tree().map_or(
            format!(
                "not searched (an installed binary, or {}=1)",
                data_dir::NO_SOURCE_TREE_ENV
            ),
            |tree| format!(
                "{} (searched last: this binary runs from it)",
                tree.display()
            )
        )
    );
}

/// The execution providers the loaded library was built with.
fn providers() -> String {
    use ort::ep::ExecutionProvider;
    let mut names = vec!["CPU"];
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        names.push("CUDA");
    }
    if ort::ep::TensorRT::is_available().unwrap_or(false) {
        names.push("TensorRT");
    }
    names.join(", ")
}

/// The policy `--policy NAME` would load ([`crate::policy::find`]), and what it names.
fn policy_checks(name: &str) -> Vec<Check> {
    let policy = match Policy::load(Path::new(name)) {
        Ok(policy) => policy,
        Err(error) => {
            return vec![Check {
                what: format!("policy {name}"),
                found: Err(error.to_string()),
            }]
        }
    };
    let exists = |what: String, path: &Path, fix: String| Check {
        what,
        found: if path.exists() {
            Ok(path.display().to_string())
        } else {
            Err(format!("{} is missing; {fix}", path.display()))
        },
    };
    let mut checks = vec![Check {
        what: format!("policy {name}"),
        found: Ok(policy.source.display().to_string()),
    }];
    checks.push(exists(
        "  its model".into(),
        &policy.model.path.join("model_index.json"),
        "export it (README, \"Using real Stable Diffusion\") or pass --model DIR".into(),
    ));
    let specs = std::iter::once(&policy.embedder.spec)
        .chain(policy.feature_embedder.iter().map(|e| &e.spec))
        .chain(policy.second_opinions.iter().map(|s| &s.spec));
    for spec in specs {
        checks.push(match EmbedderSpec::load(spec) {
            Ok(loaded) => exists(
                format!("  its embedder {}", loaded.name),
                &loaded.onnx_path(),
                "`boomerang setup` installs it (in a checkout: python3 tools/fetch_models.py)"
                    .into(),
            ),
            Err(error) => Check {
                what: "  its embedder".into(),
                found: Err(error.to_string()),
            },
        });
    }
    checks
}
