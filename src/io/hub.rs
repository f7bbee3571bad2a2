//! Downloads from a Hugging Face hub into the huggingface_hub cache layout, so what Python's hub
//! already fetched is reused and what boomerang fetches serves Python too:
//!
//! ```text
//! $HF_HOME/hub/models--ORG--NAME/blobs/<sha256 of an LFS file | git blob sha1 of another>
//!                               /snapshots/<commit>/<path>  -> ../../blobs/<...> (relative)
//!                               /refs/<revision>            (the commit a moving revision had)
//! ```
//!
//! Every byte is checked against the hub's metadata (LFS: sha256; other files: git's blob sha1)
//! before it is named as a blob; a partial download stays as `blobs/X.incomplete` and is resumed
//! with a Range request. No printing here: callers get [`Event`]s.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Environment variables read, as huggingface_hub reads them.
pub const ENDPOINT_ENV: &str = "HF_ENDPOINT";
pub const TOKEN_ENV: &str = "HF_TOKEN";
pub const OFFLINE_ENV: &str = "HF_HUB_OFFLINE";
pub const HOME_ENV: &str = "HF_HOME";
pub const HUB_CACHE_ENV: &str = "HF_HUB_CACHE";
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The folders of an Optimum ONNX Stable Diffusion export; their configs, text files and graphs
/// are fetched, anything else in the repository is not. `tokenizer_2` and `text_encoder_2` are
/// SDXL's; SD 1.x/2.x repositories have none.
pub const COMPONENTS: &[&str] = &[
    "scheduler",
    "tokenizer",
    "text_encoder",
    "unet",
    "vae_encoder",
    "vae_decoder",
    "tokenizer_2",
    "text_encoder_2",
];

/// Files without which the folder is no Stable Diffusion export boomerang can open.
pub const REQUIRED: &[&str] = &[
    "model_index.json",
    "scheduler/scheduler_config.json",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "text_encoder/model.onnx",
    "unet/model.onnx",
    "vae_encoder/model.onnx",
    "vae_decoder/model.onnx",
];

/// The first text encoder's files in [`REQUIRED`]; an SDXL refiner has the second encoder's
/// ([`REFINER_ENCODER`]) instead.
const FIRST_ENCODER: [&str; 3] = [
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "text_encoder/model.onnx",
];
const REFINER_ENCODER: [&str; 3] = [
    "tokenizer_2/vocab.json",
    "tokenizer_2/merges.txt",
    "text_encoder_2/model.onnx",
];

/// The [`REQUIRED`] files a repository lacks (`has` tells which it holds), an SDXL refiner's
/// second encoder standing in for the first.
fn missing_required(has: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let refiner = REFINER_ENCODER.iter().all(|p| has(p)) && !has("text_encoder/model.onnx");
    REQUIRED
        .iter()
        .copied()
        .filter(|r| !(refiner && FIRST_ENCODER.contains(r)))
        .filter(|r| !has(r))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{repo}` is not a Hugging Face model repository id: expected ORG/NAME (letters, digits, `-`, `_`, `.`), e.g. stabilityai/sd-turbo")]
    BadRepo { repo: String },
    #[error("revision `{revision}` is not a branch, tag or commit name (letters, digits, `-`, `_`, `.`, `/`)")]
    BadRevision { revision: String },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: HTTP {status}: {hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{url}: unexpected answer: {message}")]
    BadAnswer { url: String, message: String },
    #[error("{repo}@{commit} is not an Optimum ONNX Stable Diffusion export: it has no {missing}. Export a checkpoint yourself: `boomerang model export CHECKPOINT` prints how")]
    NotAnExport {
        repo: String,
        commit: String,
        missing: String,
    },
    #[error("{file}: downloaded bytes do not match the hub's metadata: expected {algorithm} {expected}, found {found}; nothing was installed. Pull again; if it repeats, the hub or a proxy serves other bytes than it lists")]
    Mismatch {
        file: String,
        algorithm: &'static str,
        expected: String,
        found: String,
    },
    #[error("{blob}: cached blob of {file} does not match its name: expected {algorithm} {expected}, found {found}. Remove it and pull again")]
    CorruptCache {
        blob: PathBuf,
        file: String,
        algorithm: &'static str,
        expected: String,
        found: String,
    },
    #[error("offline ({OFFLINE_ENV} set): {what} is not in the hub cache {cache}. Pull it once with the network (unset {OFFLINE_ENV}), or give a commit that is cached")]
    NotCached { what: String, cache: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("neither {HUB_CACHE_ENV}, {HOME_ENV} nor HOME is set: set {HOME_ENV} to the folder that holds the hub cache")]
    NoCache,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the hub is and how to reach it, from the environment.
#[derive(Clone)]
pub struct HubConfig {
    pub endpoint: String,
    pub token: Option<String>,
    pub offline: bool,
    /// The hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
}

// Hand-written so a token never reaches a log through `{:?}`.
impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("cache", &self.cache)
            .finish()
    }
}

impl HubConfig {
    pub fn from_env() -> Result<HubConfig, HubError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let hf_home = var(HOME_ENV).map(PathBuf::from).or_else(|| {
            var("XDG_CACHE_HOME")
                .map(|c| PathBuf::from(c).join("huggingface"))
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))
        });
        let cache = var(HUB_CACHE_ENV)
            .map(PathBuf::from)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")))
            .ok_or(HubError::NoCache)?;
        // huggingface_hub's order: the variable, then the token `huggingface-cli login` saved.
        let token = var(TOKEN_ENV).or_else(|| {
            let saved = std::fs::read_to_string(hf_home.as_ref()?.join("token")).ok()?;
            Some(saved.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = var(OFFLINE_ENV).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "on" | "yes" | "true"
            )
        });
        let endpoint = var(ENDPOINT_ENV)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        Ok(HubConfig {
            endpoint,
            token: token.map(|t| t.trim().to_string()),
            offline,
            cache,
        })
    }

    /// `models--ORG--NAME` in the cache.
    pub fn repo_folder(&self, repo: &str) -> PathBuf {
        self.cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }
}

/// Checks a repository id (`ORG/NAME` or a legacy bare `NAME`) before anything is fetched.
pub fn check_repo(repo: &str) -> Result<(), HubError> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 96
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !part.starts_with(['.', '-'])
            && !part.ends_with(['.', '-'])
            && !part.contains("..")
            && !part.contains("--")
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 || !parts.iter().all(|p| part_ok(p)) {
        return Err(HubError::BadRepo {
            repo: repo.to_string(),
        });
    }
    Ok(())
}

/// Whether `revision` is a full commit hash (40 lowercase or uppercase hex digits).
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a branch or tag name: it becomes part of a URL and of a path under `refs/`.
pub fn check_revision(revision: &str) -> Result<(), HubError> {
    let ok = !revision.is_empty()
        && revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && !revision.starts_with('/')
        && !revision.ends_with('/')
        && !revision
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRevision {
            revision: revision.to_string(),
        })
    }
}

/// How a file's bytes are pinned by the hub's metadata; also its blob's name in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// An LFS file: hex sha256 of its bytes.
    Sha256(String),
    /// A file stored in git: hex sha1 of `blob {len}\0` + bytes.
    GitSha1(String),
}

impl Pin {
    pub fn hex(&self) -> &str {
        match self {
            Pin::Sha256(hex) | Pin::GitSha1(hex) => hex,
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            Pin::Sha256(_) => "sha256",
            Pin::GitSha1(_) => "git blob sha1",
        }
    }

    /// The pin a cache blob's name gives, as huggingface_hub names blobs.
    fn from_blob_name(name: &str) -> Option<Pin> {
        let hex = name.bytes().all(|b| b.is_ascii_hexdigit());
        match name.len() {
            64 if hex => Some(Pin::Sha256(name.to_ascii_lowercase())),
            40 if hex => Some(Pin::GitSha1(name.to_ascii_lowercase())),
            _ => None,
        }
    }
}

/// Hashes bytes as a [`Pin`] of their kind says.
enum Hasher {
    Sha256(Sha256),
    GitSha1(Sha1),
}

impl Hasher {
    fn new(pin: &Pin, size: u64) -> Hasher {
        match pin {
            Pin::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Pin::GitSha1(_) => {
                let mut sha1 = Sha1::new();
                sha1.update(format!("blob {size}\0").as_bytes());
                Hasher::GitSha1(sha1)
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitSha1(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::GitSha1(h) => hex::encode(h.finalize()),
        }
    }
}

/// One file of a snapshot.
#[derive(Debug, Clone)]
pub struct RepoFile {
    /// Relative path with `/`.
    pub path: String,
    pub size: u64,
    pub pin: Pin,
}

/// A repository at one commit: the files of the export it holds.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub repo: String,
    pub commit: String,
    pub files: Vec<RepoFile>,
}

/// Whether a repository file belongs to the export (see [`COMPONENTS`]).
pub fn is_export_file(path: &str) -> bool {
    match path.split('/').collect::<Vec<_>>()[..] {
        ["model_index.json"] => true,
        [folder, name] if COMPONENTS.contains(&folder) => {
            name == "model.onnx"
                || name == "model.onnx_data"
                || (!name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".txt")))
        }
        _ => false,
    }
}

fn check_complete(snapshot: &Snapshot) -> Result<(), HubError> {
    let missing = missing_required(|r| snapshot.files.iter().any(|f| f.path == r));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(HubError::NotAnExport {
            repo: snapshot.repo.clone(),
            commit: snapshot.commit.clone(),
            missing: missing.join(", "),
        })
    }
}

/// What a download is doing, for a progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// A file already in the cache, its bytes checked.
    Cached { path: &'a str, size: u64 },
    /// A download starts (`from` > 0: resumed there).
    Start { path: &'a str, size: u64, from: u64 },
    /// More bytes arrived (or were re-read from a partial download).
    Bytes(u64),
}

/// The HTTP side: an agent that does not follow redirects itself, so the token is sent only to
/// the endpoint and a Range request keeps its header across the hub's redirect to its CDN.
pub struct Hub {
    config: HubConfig,
    agent: ureq::Agent,
}

const MAX_REDIRECTS: usize = 5;

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            .user_agent(concat!("boomerang/", env!("CARGO_PKG_VERSION")))
            .build();
        Hub { config, agent }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// GET `url`, following up to [`MAX_REDIRECTS`] redirects; the token goes only to the
    /// endpoint's origin. Returns the final URL and the response.
    fn get(&self, url: &str, range: Option<u64>) -> Result<(String, ureq::Response), HubError> {
        let endpoint_origin = origin(&self.config.endpoint);
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.agent.get(&url);
            if let (Some(token), true) = (&self.config.token, origin(&url) == endpoint_origin) {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            if let Some(from) = range {
                request = request.set("Range", &format!("bytes={from}-"));
            }
            let response = match request.call() {
                Ok(response) => response,
                Err(ureq::Error::Status(status, response)) => {
                    return Err(status_error(&url, status, response, &self.config))
                }
                Err(ureq::Error::Transport(transport)) => {
                    // Its Display repeats the URL; the kind and message say what failed.
                    let mut detail = transport.kind().to_string();
                    if let Some(message) = transport.message() {
                        detail.push_str(&format!(": {message}"));
                    }
                    if let Some(source) = std::error::Error::source(&transport) {
                        detail.push_str(&format!(": {source}"));
                    }
                    return Err(HubError::Http {
                        url: url.clone(),
                        message: format!(
                            "{detail}. Check the network (or {ENDPOINT_ENV}); {OFFLINE_ENV}=1 uses only the cache"
                        ),
                    });
                }
            };
            if !(300..400).contains(&response.status()) {
                return Ok((url, response));
            }
            let location = response
                .header("Location")
                .ok_or_else(|| HubError::BadAnswer {
                    url: url.clone(),
                    message: format!("HTTP {} without a Location", response.status()),
                })?;
            url = if location.starts_with("http://") || location.starts_with("https://") {
                location.to_string()
            } else if location.starts_with('/') {
                format!("{}{location}", origin(&url))
            } else {
                return Err(HubError::BadAnswer {
                    url,
                    message: format!("redirect to an unsupported location `{location}`"),
                });
            };
        }
        Err(HubError::BadAnswer {
            url,
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The repository at `revision`: from the hub's API, or offline from the cache.
    pub fn resolve(&self, repo: &str, revision: &str) -> Result<Snapshot, HubError> {
        check_repo(repo)?;
        if !is_commit(revision) {
            check_revision(revision)?;
        }
        if self.config.offline {
            return self.resolve_cached(repo, revision);
        }
        let url = format!(
            "{}/api/models/{repo}/revision/{}?blobs=true",
            self.config.endpoint,
            revision.replace('/', "%2F")
        );
        let (url, response) = self.get(&url, None)?;
        // A cap, so a misbehaving server cannot fill memory; repo listings are far smaller.
        let body = response.into_reader().take(64 << 20);
        let info: RepoInfo = serde_json::from_reader(body).map_err(|e| HubError::BadAnswer {
            url: url.clone(),
            message: format!("not the model info JSON the hub sends: {e}"),
        })?;
        let bad = |message: String| HubError::BadAnswer {
            url: url.clone(),
            message,
        };
        let commit = info.sha.to_ascii_lowercase();
        if !is_commit(&commit) {
            return Err(bad(format!("`sha` is `{}`, not a commit hash", info.sha)));
        }
        if is_commit(revision) && !commit.eq_ignore_ascii_case(revision) {
            return Err(bad(format!("asked for commit {revision}, got {commit}")));
        }
        let mut files = Vec::new();
        for sibling in info.siblings {
            if !is_export_file(&sibling.rfilename) {
                continue;
            }
            let (pin, size) = match (&sibling.lfs, &sibling.blob_id) {
                (Some(lfs), _) => (Pin::Sha256(lfs.sha256.to_ascii_lowercase()), lfs.size),
                (None, Some(blob)) => (
                    Pin::GitSha1(blob.to_ascii_lowercase()),
                    sibling.size.ok_or_else(|| {
                        bad(format!(
                            "{} has no size (ask with ?blobs=true)",
                            sibling.rfilename
                        ))
                    })?,
                ),
                (None, None) => {
                    return Err(bad(format!(
                        "{} has neither an LFS sha256 nor a blobId",
                        sibling.rfilename
                    )))
                }
            };
            let valid = match &pin {
                Pin::Sha256(hex) => hex.len() == 64,
                Pin::GitSha1(hex) => hex.len() == 40,
            } && pin.hex().bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(bad(format!(
                    "{}: `{}` is not a {}",
                    sibling.rfilename,
                    pin.hex(),
                    pin.algorithm()
                )));
            }
            files.push(RepoFile {
                path: sibling.rfilename,
                size,
                pin,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let snapshot = Snapshot {
            repo: repo.to_string(),
            commit,
            files,
        };
        check_complete(&snapshot)?;
        if !is_commit(revision) {
            // As huggingface_hub does: an offline pull of the same revision finds the commit.
            let folder = self.config.repo_folder(repo);
            let refs = folder.join("refs").join(revision);
            if let Some(parent) = refs.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            crate::io::atomic::write(&refs, snapshot.commit.as_bytes()).map_err(io(&refs))?;
        }
        Ok(snapshot)
    }

    /// Offline: the commit from `refs/` (or the commit given) and the files of its snapshot
    /// folder, each pinned by the name of the blob it links to.
    fn resolve_cached(&self, repo: &str, revision: &str) -> Result<Snapshot, HubError> {
        let folder = self.config.repo_folder(repo);
        let not_cached = |what: String| HubError::NotCached {
            what,
            cache: self.config.cache.clone(),
        };
        let commit = if is_commit(revision) {
            revision.to_ascii_lowercase()
        } else {
            let refs = folder.join("refs").join(revision);
            let text = std::fs::read_to_string(&refs).map_err(|_| {
                not_cached(format!("{repo} revision `{revision}` ({})", refs.display()))
            })?;
            let commit = text.trim().to_ascii_lowercase();
            if !is_commit(&commit) {
                return Err(not_cached(format!(
                    "a commit for {repo} revision `{revision}` ({} holds `{}`)",
                    refs.display(),
                    text.trim()
                )));
            }
            commit
        };
        let root = folder.join("snapshots").join(&commit);
        if !root.is_dir() {
            return Err(not_cached(format!(
                "{repo} commit {commit} ({})",
                root.display()
            )));
        }
        let mut files = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(relative) = pending.pop() {
            let dir = root.join(&relative);
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = if relative.is_empty() {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                let full = root.join(&path);
                let kind = entry.file_type().map_err(io(&full))?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !is_export_file(&path) {
                    continue;
                }
                // The blob's name is its pin; a plain file (no symlinks) cannot be checked.
                let target = std::fs::read_link(&full).map_err(|_| HubError::NotCached {
                    what: format!(
                        "a checkable copy of {path} ({} is not a link to a blob, so its bytes cannot be verified)",
                        full.display()
                    ),
                    cache: self.config.cache.clone(),
                })?;
                let pin = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(Pin::from_blob_name)
                    .ok_or_else(|| HubError::NotCached {
                        what: format!(
                            "a checkable copy of {path} ({} links to {}, not to a blob)",
                            full.display(),
                            target.display()
                        ),
                        cache: self.config.cache.clone(),
                    })?;
                let size = std::fs::metadata(&full)
                    .map_err(|_| not_cached(format!("the blob of {path} ({})", target.display())))?
                    .len();
                files.push(RepoFile { path, size, pin });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let snapshot = Snapshot {
            repo: repo.to_string(),
            commit,
            files,
        };
        let missing = missing_required(|r| snapshot.files.iter().any(|f| f.path == r));
        if !missing.is_empty() {
            return Err(not_cached(format!(
                "{} of {repo} commit {}",
                missing.join(", "),
                snapshot.commit
            )));
        }
        Ok(snapshot)
    }

    /// Makes `file` of `snapshot` present and verified in the cache, downloading (or resuming)
    /// it when needed; returns its path under `snapshots/<commit>/`.
    pub fn fetch(
        &self,
        snapshot: &Snapshot,
        file: &RepoFile,
        progress: &mut dyn FnMut(Event),
    ) -> Result<PathBuf, HubError> {
        let folder = self.config.repo_folder(&snapshot.repo);
        let blobs = folder.join("blobs");
        let blob = blobs.join(file.pin.hex());
        if blob.is_file() {
            let found = hash_file(&blob, &file.pin, &mut |n| progress(Event::Bytes(n)))?;
            if found != file.pin.hex() {
                return Err(HubError::CorruptCache {
                    blob,
                    file: file.path.clone(),
                    algorithm: file.pin.algorithm(),
                    expected: file.pin.hex().to_string(),
                    found,
                });
            }
            progress(Event::Cached {
                path: &file.path,
                size: file.size,
            });
        } else if self.config.offline {
            return Err(HubError::NotCached {
                what: format!("the blob of {} ({})", file.path, blob.display()),
                cache: self.config.cache.clone(),
            });
        } else {
            std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
            self.download(snapshot, file, &blob, progress)?;
        }
        link_snapshot(&folder, &snapshot.commit, file)
    }

    fn download(
        &self,
        snapshot: &Snapshot,
        file: &RepoFile,
        blob: &Path,
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), HubError> {
        let partial = blob.with_file_name(format!("{}.incomplete", file.pin.hex()));
        let mut hasher = Hasher::new(&file.pin, file.size);
        // What an interrupted run left is hashed again (it is not trusted to be ours) and kept.
        let mut have = match std::fs::metadata(&partial) {
            Ok(m) if m.len() > 0 && m.len() < file.size => m.len(),
            Ok(_) => {
                std::fs::remove_file(&partial).map_err(io(&partial))?;
                0
            }
            Err(_) => 0,
        };
        if have > 0 {
            let mut read = File::open(&partial).map_err(io(&partial))?;
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let n = read.read(&mut buffer).map_err(io(&partial))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
        }
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.config.endpoint, snapshot.repo, snapshot.commit, file.path
        );
        progress(Event::Start {
            path: &file.path,
            size: file.size,
            from: have,
        });
        let (url, response) = self.get(&url, (have > 0).then_some(have))?;
        let mut output = match (have > 0, response.status()) {
            (true, 206) => {
                // The server resumes where we ask, and says so.
                let start = response
                    .header("Content-Range")
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(have) {
                    return Err(HubError::BadAnswer {
                        url,
                        message: format!(
                            "asked for bytes from {have}, got Content-Range {:?}",
                            response.header("Content-Range")
                        ),
                    });
                }
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&partial)
                    .map_err(io(&partial))?
            }
            (_, 200) => {
                // A server that ignores Range sends everything: start over.
                hasher = Hasher::new(&file.pin, file.size);
                have = 0;
                File::create(&partial).map_err(io(&partial))?
            }
            (_, status) => {
                return Err(HubError::BadAnswer {
                    url,
                    message: format!("HTTP {status} for a file download"),
                })
            }
        };
        let mut reader = response.into_reader().take(file.size - have + 1);
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buffer).map_err(|e| HubError::Http {
                url: url.clone(),
                message: format!(
                    "the download of {} broke off after {} of {} bytes ({e}); run the same pull again to resume it",
                    file.path,
                    have,
                    file.size
                ),
            })?;
            if n == 0 {
                break;
            }
            output.write_all(&buffer[..n]).map_err(io(&partial))?;
            hasher.update(&buffer[..n]);
            have += n as u64;
            progress(Event::Bytes(n as u64));
        }
        output.sync_all().map_err(io(&partial))?;
        drop(output);
        if have != file.size {
            // A longer file is not resumable; a shorter one is (the server closed early).
            if have > file.size {
                std::fs::remove_file(&partial).map_err(io(&partial))?;
            }
            return Err(HubError::Http {
                url,
                message: format!(
                    "{} ended after {have} bytes, the hub lists {}; run the same pull again to resume it",
                    file.path, file.size
                ),
            });
        }
        let found = hasher.finish();
        if found != file.pin.hex() {
            // Bad bytes are not worth resuming from.
            std::fs::remove_file(&partial).map_err(io(&partial))?;
            return Err(HubError::Mismatch {
                file: file.path.clone(),
                algorithm: file.pin.algorithm(),
                expected: file.pin.hex().to_string(),
                found,
            });
        }
        std::fs::rename(&partial, blob).map_err(io(blob))?;
        Ok(())
    }
}

/// `snapshots/<commit>/<path>` as a relative link to `blobs/<pin>`, as huggingface_hub makes it.
fn link_snapshot(folder: &Path, commit: &str, file: &RepoFile) -> Result<PathBuf, HubError> {
    let link = folder.join("snapshots").join(commit).join(&file.path);
    let ups = "../".repeat(file.path.split('/').count() + 1);
    let target = PathBuf::from(format!("{ups}blobs/{}", file.pin.hex()));
    if std::fs::read_link(&link).is_ok_and(|t| t == target) {
        return Ok(link);
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    match std::fs::symlink_metadata(&link) {
        Ok(_) => std::fs::remove_file(&link).map_err(io(&link))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&link)(e)),
    }
    std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
    Ok(link)
}

/// Hashes a file as `pin` says (for a cached blob, whose bytes are checked on every pull).
pub fn hash_file(
    path: &Path,
    pin: &Pin,
    progress: &mut dyn FnMut(u64),
) -> Result<String, HubError> {
    let mut file = File::open(path).map_err(io(path))?;
    let size = file.metadata().map_err(io(path))?.len();
    let mut hasher = Hasher::new(pin, size);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        progress(n as u64);
    }
    Ok(hasher.finish())
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn status_error(url: &str, status: u16, response: ureq::Response, config: &HubConfig) -> HubError {
    let detail = response
        .into_string()
        .ok()
        .and_then(|body| {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        })
        .map(|e| format!(" (hub says: {e})"))
        .unwrap_or_default();
    let hint = match status {
        401 | 403 if config.token.is_none() => format!(
            "the repository does not exist or is gated/private; for a gated one accept its terms on the hub and set {TOKEN_ENV}"
        ),
        401 | 403 => format!("the repository does not exist or {TOKEN_ENV} has no access to it"),
        404 => "no such repository, revision or file: check the repository id and --revision"
            .to_string(),
        429 => "rate limited by the hub: wait and pull again".to_string(),
        _ => "the hub refused the request".to_string(),
    };
    HubError::Status {
        url: url.to_string(),
        status,
        hint: format!("{hint}{detail}"),
    }
}

#[derive(serde::Deserialize)]
struct RepoInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<Lfs>,
}

#[derive(serde::Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha1_is_gits() {
        // `printf hello | git hash-object --stdin`
        let mut hasher = Hasher::new(&Pin::GitSha1(String::new()), 5);
        hasher.update(b"hello");
        assert_eq!(hasher.finish(), "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0");
    }

    #[test]
    fn export_files_are_the_optimum_layout_only() {
        for path in [
            "model_index.json",
            "unet/model.onnx",
            "unet/model.onnx_data",
            "unet/config.json",
            "tokenizer/merges.txt",
        ] {
            assert!(is_export_file(path), "{path}");
        }
        for path in [
            "README.md",
            ".gitattributes",
            "unet/diffusion_pytorch_model.safetensors",
            "unet/sub/model.onnx",
            "safety_checker/model.onnx",
            "unet/.hidden.json",
        ] {
            assert!(!is_export_file(path), "{path}");
        }
    }

    #[test]
    fn a_refiner_needs_the_second_encoder_instead_of_the_first() {
        let base: Vec<&str> = REQUIRED.iter().copied().chain(REFINER_ENCODER).collect();
        assert!(missing_required(|p| base.contains(&p)).is_empty());
        let refiner: Vec<&str> = base
            .iter()
            .copied()
            .filter(|p| !FIRST_ENCODER.contains(p))
            .collect();
        assert!(missing_required(|p| refiner.contains(&p)).is_empty());
        // Neither encoder: the first is what is named missing.
        let neither: Vec<&str> = refiner
            .iter()
            .copied()
            .filter(|p| *p != "text_encoder_2/model.onnx")
            .collect();
        assert_eq!(
            missing_required(|p| neither.contains(&p)),
            FIRST_ENCODER.to_vec()
        );
    }

    #[test]
    fn repo_and_revision_forms() {
        assert!(check_repo("stabilityai/sd-turbo").is_ok());
        assert!(check_repo("gpt2").is_ok());
        for bad in ["a/b/c", "../x", "a/..", "", "a//b", "a b/c", "-a/b"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
        assert!(check_revision("main").is_ok());
        assert!(check_revision("refs/pr/1").is_ok());
        for bad in ["", "../x", "a/../b", "/x", "a b"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
        assert!(is_commit(&"a".repeat(40)));
        assert!(!is_commit("main"));
        assert_eq!(origin("http://127.0.0.1:8/x/y?z"), "http://127.0.0.1:8");
    }
}
