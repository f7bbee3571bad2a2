//! The NVIDIA libraries ONNX Runtime's CUDA and TensorRT providers open by name, found and loaded
//! before the first GPU session, so a missing one is a one-line error naming it and where it comes
//! from, not a provider failure on the first image.
//!
//! Each library is looked for by the dynamic loader first (`LD_LIBRARY_PATH`, the system), then in
//! `$CUDA_HOME/lib64`, and in the `lib` folders of `python3`'s `nvidia-*` pip packages (what
//! PyTorch installs). One found in a folder is loaded by its full path with `RTLD_GLOBAL`: the
//! loader then resolves the provider's own request for that name (its soname) to the library
//! already loaded, as `LD_LIBRARY_PATH` cannot be changed for a running process.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A library a provider needs and where users get it.
#[derive(Debug, Clone, Copy)]
pub struct Needed {
    pub soname: &'static str,
    pub source: &'static str,
}

const fn needed(soname: &'static str, source: &'static str) -> Needed {
    Needed { soname, source }
}

/// What the CUDA provider of onnxruntime-gpu 1.31 (CUDA 13, cuDNN 9) opens: at load, then cuDNN,
/// cuFFT and NVRTC on the first kernels that use them. Dependencies come before what needs them.
pub const CUDA: &[Needed] = &[
    needed("libcuda.so.1", "the NVIDIA driver (not a pip package)"),
    needed("libcudart.so.13", "pip install nvidia-cuda-runtime"),
    needed("libcublasLt.so.13", "pip install nvidia-cublas"),
    needed("libcublas.so.13", "pip install nvidia-cublas"),
    needed("libcurand.so.10", "pip install nvidia-curand"),
    needed("libcufft.so.12", "pip install nvidia-cufft"),
    needed("libnvrtc.so.13", "pip install nvidia-cuda-nvrtc"),
    needed("libcudnn.so.9", "pip install nvidia-cudnn-cu13"),
];

/// What the TensorRT provider opens on top of [`CUDA`].
pub const TENSORRT: &[Needed] = &[
    needed(
        "libnvinfer.so.10",
        "TensorRT 10 for CUDA 13 (NVIDIA's tensorrt-cu13 pip package or TensorRT tarball)",
    ),
    needed(
        "libnvonnxparser.so.10",
        "TensorRT 10 for CUDA 13 (NVIDIA's tensorrt-cu13 pip package or TensorRT tarball)",
    ),
];

/// Loads every library of `needed` (kept loaded for the process). The error lists every missing
/// one with where it comes from, on one line.
pub fn load_all(needed: &[Needed]) -> Result<(), String> {
    let missing: Vec<String> = status(needed)
        .into_iter()
        .filter_map(|(library, found)| {
            found
                .err()
                .map(|why| format!("{} ({why}; {})", library.soname, library.source))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "missing {}; looked on the loader path (LD_LIBRARY_PATH, system), $CUDA_HOME and python3's nvidia-* packages",
        missing.join(", ")
    ))
}

/// Each library of `needed`, loaded: where it was found, or why not.
pub fn status(needed: &[Needed]) -> Vec<(Needed, Result<String, String>)> {
    let folders = search_folders();
    needed
        .iter()
        .map(|library| (*library, load(library.soname, &folders)))
        .collect()
}

fn load(soname: &str, folders: &[PathBuf]) -> Result<String, String> {
    if dlopen_global(Path::new(soname)).is_ok() {
        return Ok("on the loader path".to_string());
    }
    match find_in(soname, folders) {
        Some(path) => dlopen_global(&path)
            .map(|()| path.display().to_string())
            .map_err(|error| format!("{}: {error}", path.display())),
        None => Err("not found".to_string()),
    }
}

/// The first `folder/soname` that exists.
pub fn find_in(soname: &str, folders: &[PathBuf]) -> Option<PathBuf> {
    folders
        .iter()
        .map(|folder| folder.join(soname))
        .find(|path| path.is_file())
}

/// `$CUDA_HOME/lib64` and `lib`, then every `lib` folder up to three levels below python3's
/// `nvidia` package (`nvidia/cublas/lib`, `nvidia/cu13/lib`).
fn search_folders() -> Vec<PathBuf> {
    let mut folders = Vec::new();
    if let Some(home) = std::env::var_os("CUDA_HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        folders.extend([home.join("lib64"), home.join("lib")]);
    }
    for root in python_nvidia_roots() {
        folders.extend(lib_folders_below(&root, 3));
    }
    folders
}

fn python_nvidia_roots() -> Vec<PathBuf> {
    let Ok(output) = Command::new("python3")
        .args(["-c", "import nvidia\nfor p in nvidia.__path__: print(p)"])
        .output()
    else {
        return Vec::new();
    };
    if !output.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| PathBuf::from(line.trim()))
        .collect()
}

/// Folders named `lib` at most `depth` levels below `root`, sorted.
pub fn lib_folders_below(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0)];
    while let Some((folder, level)) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in listing.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if entry.file_name() == "lib" {
                found.push(path.clone());
            }
            if level + 1 < depth {
                pending.push((path, level + 1));
            }
        }
    }
    found.sort();
    found
}

/// `dlopen(path, RTLD_NOW | RTLD_GLOBAL)`, never closed; a bare name searches the loader path.
fn dlopen_global(path: &Path) -> Result<(), String> {
    let name = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: dlopen/dlerror are called with a valid NUL-terminated string; the handle is leaked
    // on purpose, so the library stays loaded for the providers that need it.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !handle.is_null() {
            return Ok(());
        }
        let error = libc::dlerror();
        if error.is_null() {
            Err("cannot be loaded".to_string())
        } else {
            Err(std::ffi::CStr::from_ptr(error)
                .to_string_lossy()
                .into_owned())
        }
    }
}

/// The models of the NVIDIA GPUs the driver lists (`/proc/driver/nvidia/gpus/*/information`),
/// sorted; empty without the driver.
pub fn gpu_models() -> Vec<String> {
    let mut models: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("information")).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("Model:"))
                .map(|model| model.trim().to_string())
        })
        .collect();
    models.sort();
    models
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libraries_in_pip_style_lib_folders() {
        let temp = tempfile::tempdir().unwrap();
        let nvidia = temp.path().join("nvidia");
        for folder in ["cu13/lib", "cudnn/lib", "cudnn/include", "a/b/c/lib"] {
            std::fs::create_dir_all(nvidia.join(folder)).unwrap();
        }
        std::fs::write(nvidia.join("cudnn/lib/libcudnn.so.9"), b"").unwrap();
        let folders = lib_folders_below(&nvidia, 3);
        // Three levels: nvidia/a/b/c/lib is the fourth.
        assert_eq!(
            folders,
            vec![nvidia.join("cu13/lib"), nvidia.join("cudnn/lib")]
        );
        assert_eq!(
            find_in("libcudnn.so.9", &folders),
            Some(nvidia.join("cudnn/lib/libcudnn.so.9"))
        );
        assert_eq!(find_in("libcublas.so.13", &folders), None);
    }

    #[test]
    fn a_missing_library_is_named_with_its_source() {
        let error =
            load_all(&[needed("libboomerang-absent.so.1", "pip install nothing")]).unwrap_err();
        assert!(
            error.starts_with("missing libboomerang-absent.so.1 (not found; pip install nothing)"),
            "{error}"
        );
        assert!(!error.contains('\n'));
    }
}
