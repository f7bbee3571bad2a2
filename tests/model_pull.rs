//! `boomerang model pull` against a loopback Hugging Face hub written here: the hub's API JSON,
//! resolve URLs that redirect LFS files to a "CDN" path, Range requests, and switches that
//! corrupt a file or break a download off. The repository served is the committed
//! `models/tiny-sd` at a fixed commit.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use assert_cmd::Command;
use predicates::prelude::*;
use sha1::Digest as _;

const REPO: &str = "test-org/Tiny-SD";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_loopbacktesttoken42";

/// A request the hub received.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    range: Option<String>,
    authorization: Option<String>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// Serve this file with one byte changed.
    corrupt: Option<String>,
    /// Break off the next download of this file after this many body bytes (once).
    drop_after: Option<(String, usize)>,
}

struct LoopbackHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn is_lfs(path: &str) -> bool {
    path.ends_with(".onnx") || path.ends_with(".onnx_data")
}

fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut sha1 = sha1::Sha1::new();
    sha1.update(format!("blob {}\0", bytes.len()).as_bytes());
    sha1.update(bytes);
    hex::encode(sha1.finalize())
}

/// Every file of models/tiny-sd, by `/`-separated relative path.
fn repo_files() -> BTreeMap<String, Vec<u8>> {
    common::tree(&common::root().join("models/tiny-sd"))
        .into_iter()
        .map(|(path, bytes)| (path.to_string_lossy().replace('\\', "/"), bytes))
        .collect()
}

/// What the hub's `GET /api/models/REPO/revision/REV?blobs=true` answers.
fn api_json(files: &BTreeMap<String, Vec<u8>>) -> String {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, bytes)| {
            if is_lfs(path) {
                serde_json::json!({
                    "rfilename": path,
                    "size": bytes.len(),
                    // The blob of an LFS file is its pointer, not its content.
                    "blobId": git_blob_sha1(format!("pointer {}", common::sha(bytes)).as_bytes()),
                    "lfs": {"sha256": common::sha(bytes), "size": bytes.len(), "pointerSize": 134},
                })
            } else {
                serde_json::json!({
                    "rfilename": path,
                    "size": bytes.len(),
                    "blobId": git_blob_sha1(bytes),
                })
            }
        })
        .collect();
    serde_json::json!({"id": REPO, "modelId": REPO, "sha": COMMIT, "private": false, "siblings": siblings})
        .to_string()
}

impl LoopbackHub {
    fn start() -> LoopbackHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let files = repo_files();
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // A client that hangs up early is its business.
                        let _ = serve(stream, addr, &files, &state);
                    }
                }
            })
        };
        LoopbackHub {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap());
    }

    /// Stops listening: the port refuses connections afterwards.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for LoopbackHub {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 exchange per connection (`Connection: close`).
fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    files: &BTreeMap<String, Vec<u8>>,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_string()),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    state.lock().unwrap().seen.push(Seen {
        target: target.clone(),
        range: range.clone(),
        authorization,
    });
    let mut out = stream;
    let api = format!("/api/models/{REPO}/revision/");
    let resolve = format!("/{REPO}/resolve/{COMMIT}/");
    if let Some(rest) = target.strip_prefix(&api) {
        let revision = rest.strip_suffix("?blobs=true").unwrap_or(rest);
        if revision == COMMIT || revision == "main" {
            return respond(&mut out, "200 OK", &[], api_json(files).as_bytes());
        }
        let body = format!("{{\"error\":\"Invalid rev id: {revision}\"}}");
        return respond(&mut out, "404 Not Found", &[], body.as_bytes());
    }
    if let Some(path) = target.strip_prefix(&resolve) {
        return match files.get(path) {
            // Like the real hub: LFS files are served from elsewhere.
            Some(bytes) if is_lfs(path) => {
                // Another origin (the port's `localhost` name), as the hub's CDN is another host.
                let location = format!(
                    "Location: http://localhost:{}/cdn/{}",
                    addr.port(),
                    common::sha(bytes)
                );
                respond(&mut out, "302 Found", &[location], b"")
            }
            Some(bytes) => send_file(&mut out, path, bytes, range.as_deref(), state),
            None => respond(
                &mut out,
                "404 Not Found",
                &[],
                b"{\"error\":\"Entry not found\"}",
            ),
        };
    }
    if let Some(digest) = target.strip_prefix("/cdn/") {
        if let Some((path, bytes)) = files.iter().find(|(_, b)| common::sha(b) == digest) {
            return send_file(&mut out, path, bytes, range.as_deref(), state);
        }
    }
    respond(&mut out, "404 Not Found", &[], b"{\"error\":\"not found\"}")
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[String],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// A file, honouring `Range: bytes=K-`, corrupted or broken off when the switches say so.
fn send_file(
    out: &mut TcpStream,
    path: &str,
    bytes: &[u8],
    range: Option<&str>,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let mut state = state.lock().unwrap();
    let mut bytes = bytes.to_vec();
    if state.corrupt.as_deref() == Some(path) {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
    }
    let start = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|k| k.parse::<usize>().ok());
    let (status, headers, body) = match start {
        Some(k) if k < bytes.len() => (
            "206 Partial Content",
            vec![format!(
                "Content-Range: bytes {k}-{}/{}",
                bytes.len() - 1,
                bytes.len()
            )],
            &bytes[k..],
        ),
        _ => ("200 OK", vec![], &bytes[..]),
    };
    if let Some((file, after)) = state.drop_after.clone() {
        if file == path {
            state.drop_after = None;
            drop(state);
            // Headers promise the whole body; the connection ends after `after` bytes.
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
                body.len(),
                headers
                    .iter()
                    .map(|h| format!("{h}\r\n"))
                    .collect::<String>()
            );
            out.write_all(head.as_bytes())?;
            out.write_all(&body[..after])?;
            out.flush()?;
            return out.shutdown(std::net::Shutdown::Both);
        }
    }
    drop(state);
    respond(out, status, &headers, body)
}

/// A pull's folders: the hub cache and the data folder, both in `temp`.
struct Setup {
    temp: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            temp: tempfile::tempdir().unwrap(),
        }
    }

    fn hf_home(&self) -> PathBuf {
        self.temp.path().join("hf")
    }

    fn data(&self) -> PathBuf {
        self.temp.path().join("data")
    }

    fn installed(&self, name: &str) -> PathBuf {
        self.data().join("models").join(name)
    }

    fn repo_cache(&self) -> PathBuf {
        self.hf_home().join("hub/models--test-org--Tiny-SD")
    }

    /// `boomerang ARGS` with this setup's environment and the endpoint (if any), run from an
    /// empty folder so `./models` finds nothing.
    fn boomerang(&self, endpoint: Option<&str>, args: &[&str]) -> Command {
        let cwd = self.temp.path().join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        let mut command = Command::cargo_bin("boomerang").unwrap();
        command
            .current_dir(cwd)
            .args(args)
            .env("HF_HOME", self.hf_home())
            .env("BOOMERANG_DATA_DIR", self.data())
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_HUB_CACHE")
            .env_remove("BOOMERANG_MODELS");
        match endpoint {
            Some(endpoint) => command.env("HF_ENDPOINT", endpoint),
            None => command.env("HF_ENDPOINT", "http://127.0.0.1:9"),
        };
        command
    }

    fn pull(&self, hub: &LoopbackHub, extra: &[&str]) -> Command {
        let mut args = vec!["model", "pull", REPO];
        args.extend_from_slice(extra);
        self.boomerang(Some(&hub.endpoint()), &args)
    }
}

/// The files a pull installs: the repository's export files, without README.md and its
/// SHA256SUMS (not part of an Optimum layout).
fn expected_files() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = common::tree(&common::root().join("models/tiny-sd"));
    files.remove(Path::new("README.md"));
    files.remove(Path::new("SHA256SUMS"));
    files
}

fn installed_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = common::tree(dir);
    assert!(
        files.remove(Path::new("SHA256SUMS")).is_some(),
        "no SHA256SUMS"
    );
    assert!(
        files.remove(Path::new("pull.json")).is_some(),
        "no pull.json"
    );
    files
}

fn pull_record(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("pull.json")).unwrap()).unwrap()
}

fn downloads(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| s.target.contains("/resolve/") || s.target.starts_with("/cdn/"))
        .collect()
}

#[test]
fn a_pull_installs_the_export_byte_for_byte_and_sample_finds_it_by_name() {
    let hub = LoopbackHub::start();
    let setup = Setup::new();
    let assert = setup
        .pull(&hub, &["--revision", COMMIT, "--name", "pulled-tiny"])
        .env("HF_TOKEN", TOKEN)
        .assert()
        .success();
    let output = assert.get_output();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let dir = setup.installed("pulled-tiny");
    assert!(
        stdout.contains(&format!("installed {REPO} at commit {COMMIT}")),
        "{stdout}"
    );
    // Progress is drawn only on a terminal, and the token is never shown.
    assert!(stderr.is_empty(), "{stderr}");
    assert!(!stdout.contains(TOKEN));
    assert_eq!(installed_files(&dir), expected_files());

    // The token went to the hub as a bearer token; files outside the layout were not fetched.
    let seen = hub.seen();
    assert!(
        seen[0]
            .target
            .ends_with(&format!("/revision/{COMMIT}?blobs=true")),
        "{seen:?}"
    );
    let bearer = format!("Bearer {TOKEN}");
    for request in &seen {
        // Sent to the hub, never to the CDN it redirects to.
        let expected = (!request.target.starts_with("/cdn/")).then_some(bearer.as_str());
        assert_eq!(request.authorization.as_deref(), expected, "{request:?}");
    }
    assert!(seen
        .iter()
        .all(|s| !s.target.contains("README") && !s.target.contains("SHA256SUMS")));
    // Each LFS graph went through the redirect to the CDN path, the JSON files directly.
    let cdn = seen
        .iter()
        .filter(|s| s.target.starts_with("/cdn/"))
        .count();
    assert_eq!(cdn, 4, "{seen:?}");

    // The manifest verifies, and its model hash is that of the committed manifest's files.
    let committed =
        std::fs::read_to_string(common::root().join("models/tiny-sd/SHA256SUMS")).unwrap();
    let without_readme: String = committed
        .lines()
        .filter(|l| !l.ends_with("  README.md"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap(),
        without_readme
    );
    Command::cargo_bin("boomerang")
        .unwrap()
        .arg("manifest")
        .arg(&dir)
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "model hash {}",
            common::sha(without_readme.as_bytes())
        )));
    let record = pull_record(&dir);
    assert_eq!(record["repo"], REPO);
    assert_eq!(record["revision"], COMMIT);
    assert_eq!(record["commit"], COMMIT);
    assert_eq!(record["endpoint"], hub.endpoint());

    // The cache has huggingface_hub's layout: relative links from the snapshot to the blobs.
    let unet = std::fs::read(common::root().join("models/tiny-sd/unet/model.onnx")).unwrap();
    let link = setup
        .repo_cache()
        .join(format!("snapshots/{COMMIT}/unet/model.onnx"));
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from(format!("../../../blobs/{}", common::sha(&unet)))
    );
    let index = std::fs::read(common::root().join("models/tiny-sd/model_index.json")).unwrap();
    assert!(setup
        .repo_cache()
        .join("blobs")
        .join(git_blob_sha1(&index))
        .is_file());

    // `sample` finds the pulled model by its name in the data folder.
    let out = setup.temp.path().join("samples");
    setup
        .boomerang(
            None,
            &[
                "sample",
                "--model",
                "pulled-tiny",
                "--steps",
                "4",
                "--seed",
                "1",
                "-o",
            ],
        )
        .arg(&out)
        .arg(common::root().join("examples/astronaut.png"))
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("model {}", dir.display())));
    assert!(out.join("astronaut_0.png").is_file());

    // Pulling the commit it holds again changes nothing and asks the hub nothing.
    let before = hub.seen().len();
    setup
        .pull(&hub, &["--revision", COMMIT, "--name", "pulled-tiny"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
    assert_eq!(hub.seen().len(), before);
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // Another commit is not installed over it.
    setup
        .pull(
            &hub,
            &["--revision", &"e".repeat(40), "--name", "pulled-tiny"],
        )
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "already holds {REPO} at commit {COMMIT}, not {REPO} at {}",
            "e".repeat(40)
        )));
    assert_eq!(installed_files(&dir), expected_files());
}

#[test]
fn a_corrupted_file_refuses_the_whole_pull() {
    let hub = LoopbackHub::start();
    hub.set(|s| s.corrupt = Some("unet/model.onnx".into()));
    let setup = Setup::new();
    let unet = std::fs::read(common::root().join("models/tiny-sd/unet/model.onnx")).unwrap();
    setup
        .pull(&hub, &["--revision", COMMIT])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "unet/model.onnx: downloaded bytes do not match the hub's metadata: expected sha256 {}, found ",
            common::sha(&unet)
        )))
        .stderr(predicate::str::contains("nothing was installed"));
    // Nothing installed, no staging folder left, no bad blob cached.
    let models = setup.data().join("models");
    let left: Vec<_> = std::fs::read_dir(&models)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let blobs = setup.repo_cache().join("blobs");
    assert!(!blobs.join(common::sha(&unet)).exists());
    assert!(!blobs
        .join(format!("{}.incomplete", common::sha(&unet)))
        .exists());
}

#[test]
fn a_broken_off_download_is_resumed_with_a_range_request() {
    let hub = LoopbackHub::start();
    hub.set(|s| s.drop_after = Some(("unet/model.onnx".into(), 100_000)));
    let setup = Setup::new();
    let unet = std::fs::read(common::root().join("models/tiny-sd/unet/model.onnx")).unwrap();
    setup
        .pull(&hub, &["--revision", COMMIT])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "the download of unet/model.onnx broke off after 100000 of {} bytes",
            unet.len()
        )))
        .stderr(predicate::str::contains(
            "run the same pull again to resume it",
        ));
    assert!(!setup.installed("tiny-sd").exists());
    let partial = setup
        .repo_cache()
        .join(format!("blobs/{}.incomplete", common::sha(&unet)));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0 && kept <= 100_000, "{kept}");

    let before = hub.seen().len();
    setup.pull(&hub, &["--revision", COMMIT]).assert().success();
    let again = hub.seen()[before..].to_vec();
    let resumed: Vec<_> = again.iter().filter(|s| s.range.is_some()).collect();
    // The Range header is sent to the hub and kept across its redirect to the CDN.
    assert_eq!(resumed.len(), 2, "{again:?}");
    for request in &resumed {
        assert_eq!(
            request.range.as_deref(),
            Some(format!("bytes={kept}-").as_str())
        );
    }
    assert!(resumed[1].target.starts_with("/cdn/"));
    // Files already complete were not downloaded again: only the UNet (resolve + CDN) and the
    // VAE folders after it: vae_decoder's config and both graphs (resolve + CDN each);
    // vae_encoder/config.json has the same bytes as vae_decoder's, so the same blob serves it.
    assert_eq!(downloads(&again).len(), 2 + 1 + 2 * 2, "{again:?}");
    assert_eq!(
        installed_files(&setup.installed("tiny-sd")),
        expected_files()
    );
    assert!(!partial.exists());
}

#[test]
fn offline_pulls_use_the_cache_and_name_what_is_missing() {
    let mut hub = LoopbackHub::start();
    let setup = Setup::new();
    setup.pull(&hub, &["--revision", COMMIT]).assert().success();
    hub.stop();
    setup
        .pull(&hub, &["--revision", COMMIT, "--name", "again"])
        .env("HF_HUB_OFFLINE", "1")
        .assert()
        .success();
    assert_eq!(installed_files(&setup.installed("again")), expected_files());
    assert_eq!(
        std::fs::read(setup.installed("again").join("SHA256SUMS")).unwrap(),
        std::fs::read(setup.installed("tiny-sd").join("SHA256SUMS")).unwrap()
    );

    let other = "fedcba9876543210fedcba9876543210fedcba98";
    setup
        .pull(&hub, &["--revision", other, "--name", "other"])
        .env("HF_HUB_OFFLINE", "1")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "offline (HF_HUB_OFFLINE set): {REPO} commit {other}"
        )))
        .stderr(predicate::str::contains("is not in the hub cache"));
    assert!(!setup.installed("other").exists());

    // A cached blob that changed is refused, offline too.
    let unet = std::fs::read(common::root().join("models/tiny-sd/unet/model.onnx")).unwrap();
    let blob = setup
        .repo_cache()
        .join(format!("blobs/{}", common::sha(&unet)));
    let mut changed = unet.clone();
    changed[10] ^= 1;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &changed).unwrap();
    setup
        .pull(&hub, &["--revision", COMMIT, "--name", "third"])
        .env("HF_HUB_OFFLINE", "1")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cached blob of unet/model.onnx does not match",
        ));
    assert!(!setup.installed("third").exists());
}

#[test]
fn a_moving_revision_needs_the_flag_and_is_recorded_as_its_commit() {
    let mut hub = LoopbackHub::start();
    let setup = Setup::new();
    // `main` is the default revision: refused before any request.
    setup
        .pull(&hub, &[])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "revision `main` (the default) is a branch or tag",
        ))
        .stderr(predicate::str::contains("--allow-moving-revision"));
    assert!(hub.seen().is_empty());
    assert!(!setup.data().exists());

    setup
        .pull(&hub, &["--allow-moving-revision"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "{REPO} `main` is commit {COMMIT}; pin it with --revision {COMMIT}"
        )));
    let record = pull_record(&setup.installed("tiny-sd"));
    assert_eq!(record["revision"], "main");
    assert_eq!(record["commit"], COMMIT);
    assert_eq!(
        std::fs::read_to_string(setup.repo_cache().join("refs/main")).unwrap(),
        COMMIT
    );
    // Again: `main` still points at the installed commit, so nothing changes.
    let before = hub.seen().len();
    setup
        .pull(&hub, &["--allow-moving-revision"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to do"));
    assert!(downloads(&hub.seen()[before..]).is_empty());
    // The ref lets an offline pull of `main` find the commit.
    hub.stop();
    setup
        .pull(&hub, &["--allow-moving-revision", "--name", "offline-main"])
        .env("HF_HUB_OFFLINE", "1")
        .assert()
        .success();
    assert_eq!(
        installed_files(&setup.installed("offline-main")),
        expected_files()
    );
}

#[test]
fn an_existing_folder_is_never_replaced_and_names_are_checked_first() {
    let hub = LoopbackHub::start();
    let setup = Setup::new();
    let taken = setup.installed("taken");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("mine.txt"), b"keep").unwrap();
    setup
        .pull(&hub, &["--revision", COMMIT, "--name", "taken"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "was not installed by `boomerang model pull`",
        ));
    setup
        .pull(&hub, &["--revision", COMMIT, "--name", "../escape"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a plain folder name"));
    setup
        .boomerang(
            Some(&hub.endpoint()),
            &["model", "pull", "../x", "--revision", COMMIT],
        )
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "is not a Hugging Face model repository id",
        ));
    // None of these reached the hub.
    assert!(hub.seen().is_empty());
    assert_eq!(std::fs::read(taken.join("mine.txt")).unwrap(), b"keep");
}

#[test]
fn export_prints_the_optimum_commands_for_the_data_folder() {
    let setup = Setup::new();
    let dir = setup.installed("sd15");
    setup
        .boomerang(None, &["model", "export", "stable-diffusion-v1-5/stable-diffusion-v1-5", "--name", "sd15"])
        .assert()
        .success()
        .stdout(predicate::str::contains("pip install diffusers==0.39.0"))
        .stdout(predicate::str::contains("'optimum-onnx[onnxruntime]==0.1.0'"))
        .stdout(predicate::str::contains(format!(
            "optimum-cli export onnx --model stable-diffusion-v1-5/stable-diffusion-v1-5 --task image-to-image {}",
            dir.display()
        )))
        .stdout(predicate::str::contains(format!("boomerang manifest --write {}", dir.display())));
    // The pins are those of tools/requirements-models.txt.
    let requirements =
        std::fs::read_to_string(common::root().join("tools/requirements-models.txt")).unwrap();
    for pin in [
        "diffusers==0.39.0",
        "transformers==4.57.6",
        "optimum==2.1.0",
        "optimum-onnx[onnxruntime]==0.1.0",
        "onnx==1.23.2",
        "torch==2.15.0",
    ] {
        assert!(
            requirements.lines().any(|l| l.trim() == pin),
            "{pin} not pinned there"
        );
    }
}
