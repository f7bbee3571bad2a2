//! The input dataset as a list of files: which folders may be used, which files are images,
//! how each input is read and decoded safely, and where its output goes.
//!
//! Walk rule (deterministic, never leaves IN, never loops):
//! - Children of every folder are visited in byte order of their names, depth first, so the list
//!   is sorted by relative path component by component and is the same on every run.
//! - Every regular file is an entry: an image when its extension is one of
//!   [`IMAGE_EXTENSIONS`] (case-insensitive; the content is what decides how it is decoded),
//!   skipped with a reason otherwise. A folder is never an entry, whatever its name.
//! - A symlink is resolved; if its target lies outside IN it is skipped ("symlink leaves the input
//!   folder"), as are broken links and links that loop.
//! - A symlink to a file inside IN is an entry at the link's own path (so the layout is kept),
//!   in addition to the target's own entry.
//! - A symlink to a folder inside IN is walked at the link's path, unless the target is the
//!   folder holding the link or one of its parents (a cycle), or the link is itself reached
//!   through a followed folder link. That last rule bounds the walk: links to links cannot
//!   multiply the tree (each followed link adds one copy of a real subtree at most).
//! - Paths stay `PathBuf`, so file names that are not UTF-8 work; convert with
//!   `display()` only to show them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// Extensions walked as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"];

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("input folder {path} does not exist: check the path")]
    InputMissing { path: PathBuf },
    #[error("input {path} is not a folder: give the folder that holds the images")]
    InputNotFolder { path: PathBuf },
    #[error("output {path} exists and is not a folder: give a new or empty folder")]
    OutputNotFolder { path: PathBuf },
    #[error(
        "input {input} and output {output} are the same folder: give an output folder outside \
         the input, the input is never written to"
    )]
    SameFolder { input: PathBuf, output: PathBuf },
    #[error(
        "output {output} is inside input {input}: outputs would be written into the input and \
         walked as inputs; choose an output folder outside it"
    )]
    OutputInsideInput { input: PathBuf, output: PathBuf },
    #[error(
        "input {input} is inside output {output}: writing the output could change the input; \
         choose an output folder that does not contain the input"
    )]
    InputInsideOutput { input: PathBuf, output: PathBuf },
    #[error(
        "cannot resolve {path}: {source}; check the path and its permissions (a symlink must \
         point to something that exists)"
    )]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read folder {path}: {source}; check its permissions")]
    ReadFolder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Refuses folder pairs that could lose data: IN missing or not a folder, OUT an existing
/// non-folder, the same folder, or one inside the other. Paths are compared after resolving
/// symlinks and `..`; OUT may not exist yet, in which case its nearest existing ancestor is
/// resolved and the rest appended.
pub fn check_folders(input: &Path, output: &Path) -> Result<(), DatasetError> {
    let input_resolved = resolve_input(input)?;
    if output.exists() && !output.is_dir() {
        return Err(DatasetError::OutputNotFolder {
            path: output.to_path_buf(),
        });
    }
    let output_resolved = resolve_planned(output)?;
    let pair = || (input.to_path_buf(), output.to_path_buf());
    if input_resolved == output_resolved {
        let (input, output) = pair();
        return Err(DatasetError::SameFolder { input, output });
    }
    if output_resolved.starts_with(&input_resolved) {
        let (input, output) = pair();
        return Err(DatasetError::OutputInsideInput { input, output });
    }
    if input_resolved.starts_with(&output_resolved) {
        let (input, output) = pair();
        return Err(DatasetError::InputInsideOutput { input, output });
    }
    Ok(())
}

/// True when OUT does not exist yet or is a folder with nothing in it (hidden files count).
pub fn output_is_empty(output: &Path) -> Result<bool, DatasetError> {
    match std::fs::read_dir(output) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(_) if !output.is_dir() => Err(DatasetError::OutputNotFolder {
            path: output.to_path_buf(),
        }),
        Err(source) => Err(DatasetError::ReadFolder {
            path: output.to_path_buf(),
            source,
        }),
    }
}

fn resolve_input(input: &Path) -> Result<PathBuf, DatasetError> {
    let resolved = std::fs::canonicalize(input).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DatasetError::InputMissing {
                path: input.to_path_buf(),
            }
        } else {
            DatasetError::Resolve {
                path: input.to_path_buf(),
                source,
            }
        }
    })?;
    if !resolved.is_dir() {
        return Err(DatasetError::InputNotFolder {
            path: input.to_path_buf(),
        });
    }
    Ok(resolved)
}

/// The absolute, symlink-free path `path` has or will have once created: its nearest existing
/// ancestor canonicalized, then the missing components appended with `.` and `..` applied
/// (they cannot hide symlinks, since they do not exist yet). Use it to compare a path that may
/// not exist (an output folder, a report file) against folders that do.
pub fn resolve_planned(path: &Path) -> Result<PathBuf, DatasetError> {
    let absolute = std::path::absolute(path).map_err(|source| DatasetError::Resolve {
        path: path.to_path_buf(),
        source,
    })?;
    let components: Vec<Component> = absolute.components().collect();
    // symlink_metadata, not exists(): a dangling symlink exists and must not be treated as a
    // free name (creating through it would write wherever it points).
    let mut split = components.len();
    while split > 1
        && components[..split]
            .iter()
            .collect::<PathBuf>()
            .symlink_metadata()
            .is_err()
    {
        split -= 1;
    }
    let existing: PathBuf = components[..split].iter().collect();
    let mut resolved =
        std::fs::canonicalize(&existing).map_err(|source| DatasetError::Resolve {
            path: existing.clone(),
            source,
        })?;
    for component in &components[split..] {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    Ok(resolved)
}

/// One file found under IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to IN; never absolute, never contains `..`.
    pub relative: PathBuf,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Image,
    Skipped(SkipReason),
}

/// Why an entry gets a `skipped` row instead of being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The lowercase extension, `None` when the name has none.
    NotImageExtension(Option<String>),
    NotRegularFile,
    UnreadableFolder(String),
    Unreadable(String),
    SymlinkLeavesInput,
    SymlinkLoop,
    BrokenSymlink,
    /// A folder link reached through another followed folder link (see the module rule).
    NestedFolderSymlink,
    /// Another input, earlier in the walk, already writes this output path.
    OutputCollision {
        output: PathBuf,
        earlier: PathBuf,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotImageExtension(Some(extension)) => {
                write!(f, "not an image extension (.{extension})")
            }
            SkipReason::NotImageExtension(None) => write!(f, "not an image extension (none)"),
            SkipReason::NotRegularFile => write!(f, "not a regular file (device, fifo or socket)"),
            SkipReason::UnreadableFolder(message) => {
                write!(
                    f,
                    "folder cannot be read, its files are not listed: {message}"
                )
            }
            SkipReason::Unreadable(message) => write!(f, "cannot inspect the file: {message}"),
            SkipReason::SymlinkLeavesInput => write!(f, "symlink leaves the input folder"),
            SkipReason::SymlinkLoop => write!(f, "symlink loop"),
            SkipReason::BrokenSymlink => write!(f, "broken symlink (target does not exist)"),
            SkipReason::NestedFolderSymlink => write!(
                f,
                "folder symlink reached through another folder symlink is not followed"
            ),
            SkipReason::OutputCollision { output, earlier } => write!(
                f,
                "output {} is already written for {}: rename one of them or enable file \
                 renaming",
                path_text(output),
                path_text(earlier)
            ),
        }
    }
}

/// sha256 of a walk's paths, one per line: the parts of a sharded run walked the same IN.
pub fn walk_sha256(walked: &[Entry]) -> String {
    let mut text = String::new();
    for entry in walked {
        text.push_str(&path_text(&entry.relative));
        text.push('\n');
    }
    hex::encode(crate::io::hashing::sha256_bytes(text.as_bytes()))
}

/// Lists every file under `input` (see the module documentation for the rule). Problems with
/// single files or folders become skipped entries; only an unusable `input` is an error.
pub fn walk(input: &Path) -> Result<Vec<Entry>, DatasetError> {
    let root = resolve_input(input)?;
    let mut entries = Vec::new();
    // Depth-first with an explicit stack (deep trees cannot overflow the call stack); children
    // are pushed in reverse so they pop in sorted order.
    let mut pending = vec![Pending::Folder {
        relative: PathBuf::new(),
        via_link: false,
    }];
    while let Some(item) = pending.pop() {
        match item {
            Pending::Done(entry) => entries.push(entry),
            Pending::Folder { relative, via_link } => {
                let children = match list_folder(&root.join(&relative)) {
                    Ok(children) => children,
                    Err(error) if relative.as_os_str().is_empty() => {
                        return Err(DatasetError::ReadFolder {
                            path: input.to_path_buf(),
                            source: error,
                        })
                    }
                    Err(error) => {
                        entries.push(Entry {
                            relative,
                            kind: EntryKind::Skipped(SkipReason::UnreadableFolder(
                                error.to_string(),
                            )),
                        });
                        continue;
                    }
                };
                for name in children.into_iter().rev() {
                    pending.push(classify(&root, &relative, &name, via_link));
                }
            }
        }
    }
    Ok(entries)
}

enum Pending {
    Folder { relative: PathBuf, via_link: bool },
    Done(Entry),
}

fn list_folder(folder: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names = std::fs::read_dir(folder)?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    // OsStr orders by bytes on Unix: locale-independent and stable.
    names.sort();
    Ok(names)
}

fn classify(root: &Path, parent: &Path, name: &OsStr, via_link: bool) -> Pending {
    let relative = parent.join(name);
    let path = root.join(&relative);
    let skipped = |relative: PathBuf, reason: SkipReason| {
        Pending::Done(Entry {
            relative,
            kind: EntryKind::Skipped(reason),
        })
    };
    let metadata = match path.symlink_metadata() {
        Ok(metadata) => metadata,
        Err(error) => return skipped(relative, SkipReason::Unreadable(error.to_string())),
    };
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        return Pending::Folder { relative, via_link };
    }
    if file_type.is_file() {
        return Pending::Done(file_entry(relative));
    }
    if !file_type.is_symlink() {
        return skipped(relative, SkipReason::NotRegularFile);
    }
    let target = match std::fs::canonicalize(&path) {
        Ok(target) => target,
        Err(error) => {
            let reason = if error.kind() == std::io::ErrorKind::NotFound {
                SkipReason::BrokenSymlink
            } else if is_symlink_loop(&error) {
                SkipReason::SymlinkLoop
            } else {
                SkipReason::Unreadable(error.to_string())
            };
            return skipped(relative, reason);
        }
    };
    if !target.starts_with(root) {
        return skipped(relative, SkipReason::SymlinkLeavesInput);
    }
    match target.metadata() {
        Ok(target_metadata) if target_metadata.is_file() => Pending::Done(file_entry(relative)),
        Ok(target_metadata) if target_metadata.is_dir() => {
            if via_link {
                skipped(relative, SkipReason::NestedFolderSymlink)
            } else if root.join(parent).starts_with(&target) {
                // Outside followed links the folder's real path is root/parent.
                skipped(relative, SkipReason::SymlinkLoop)
            } else {
                Pending::Folder {
                    relative,
                    via_link: true,
                }
            }
        }
        Ok(_) => skipped(relative, SkipReason::NotRegularFile),
        Err(error) => skipped(relative, SkipReason::Unreadable(error.to_string())),
    }
}

/// ELOOP, by number: `ErrorKind::FilesystemLoop` is still unstable. Elsewhere the loop is
/// reported as unreadable with the system's own message.
fn is_symlink_loop(error: &std::io::Error) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const ELOOP: Option<i32> = Some(40);
    #[cfg(any(
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    ))]
    const ELOOP: Option<i32> = Some(62);
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )))]
    const ELOOP: Option<i32> = None;
    ELOOP.is_some() && error.raw_os_error() == ELOOP
}

fn file_entry(relative: PathBuf) -> Entry {
    let extension = relative
        .extension()
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase());
    let kind = match &extension {
        Some(extension) if IMAGE_EXTENSIONS.contains(&extension.as_str()) => EntryKind::Image,
        _ => EntryKind::Skipped(SkipReason::NotImageExtension(extension)),
    };
    Entry { relative, kind }
}

/// A relative path as report text that maps distinct paths to distinct strings (unlike
/// `display()`, which turns every invalid byte into U+FFFD): UTF-8 is kept, `\` is doubled and
/// each byte that is not UTF-8 becomes `\xHH`. `/` separates components on every platform.
pub fn path_text(relative: &Path) -> String {
    let mut text = String::new();
    for (index, component) in relative.components().enumerate() {
        if index > 0 {
            text.push('/');
        }
        for chunk in component.as_os_str().as_encoded_bytes().utf8_chunks() {
            text.push_str(&chunk.valid().replace('\\', "\\\\"));
            for byte in chunk.invalid() {
                text.push_str(&format!("\\x{byte:02X}"));
            }
        }
    }
    text
}

/// Bounds on what one input may cost before it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_file_bytes: u64,
    pub max_width: u32,
    pub max_height: u32,
    /// Largest pixel buffer the decoder may allocate.
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    /// 16384 px a side covers any camera sensor; 512 MiB holds a 16-bit RGBA image of about
    /// 8000 x 8000, and is image's own default allocation limit.
    fn default() -> Self {
        DecodeLimits {
            max_file_bytes: 512 << 20,
            max_width: 16384,
            max_height: 16384,
            max_alloc_bytes: 512 << 20,
        }
    }
}

/// A decoded input and what the report needs to know about its source file.
#[derive(Debug, Clone)]
pub struct LoadedInput {
    pub image: image::DynamicImage,
    /// SHA-256 of the file's bytes exactly as read (the bytes that were decoded).
    pub sha256: [u8; 32],
    pub file_bytes: u64,
    /// Format found from the content, whatever the extension says.
    pub format: image::ImageFormat,
    pub original_color: image::ExtendedColorType,
    /// The file's EXIF orientation, already applied: `image` is upright (as viewers show it).
    pub orientation: image::metadata::Orientation,
}

impl LoadedInput {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct InputError {
    pub path: PathBuf,
    pub kind: InputErrorKind,
}

impl InputError {
    /// The reason without the path, for the report's reason column.
    pub fn reason(&self) -> String {
        self.kind.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputErrorKind {
    #[error("cannot read the file: {0}")]
    Read(String),
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("file is {bytes} bytes, over the {limit}-byte limit for one input")]
    FileTooLarge { bytes: u64, limit: u64 },
    #[error(
        "not a recognised image: the content is not PNG, JPEG, WebP, BMP, TIFF or GIF \
         (whatever the extension says)"
    )]
    UnknownFormat,
    #[error(
        "declared size exceeds the {max_width}x{max_height} limit (a decompression bomb or an \
         image too large to process)"
    )]
    TooLarge { max_width: u32, max_height: u32 },
    #[error(
        "decoding would allocate more than {} MiB (a decompression bomb or an image too large \
         to process)",
        limit >> 20
    )]
    TooMuchMemory { limit: u64 },
    #[error("truncated {format} (the data ends early)")]
    Truncated { format: String },
    #[error("corrupt {format}: {message}")]
    Corrupt { format: String, message: String },
    #[error("unsupported {format}: {message}")]
    Unsupported { format: String, message: String },
}

/// [`load_image_with_limits`] with [`DecodeLimits::default`]: the one image loader of the
/// commands (`anonymize` and its certification, `score`, `sample`, `augment`, `enhance`, audit
/// recomputation), so every command sees a file's pixels alike, upright (EXIF orientation
/// applied by [`crate::io::imageio::decode_with_limits`]).
pub fn load_image(path: &Path) -> Result<LoadedInput, InputError> {
    load_image_with_limits(path, &DecodeLimits::default())
}

/// Reads the file once, hashes those bytes and decodes them by content under `limits`. Every
/// failure is an [`InputError`] with a reason for the report; nothing here panics on bad files.
pub fn load_image_with_limits(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<LoadedInput, InputError> {
    let fail = |kind| InputError {
        path: path.to_path_buf(),
        kind,
    };
    let bytes = read_bounded(path, limits.max_file_bytes).map_err(fail)?;
    if bytes.is_empty() {
        return Err(fail(InputErrorKind::Empty));
    }
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let format = image::guess_format(&bytes).ok();
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_width);
    image_limits.max_image_height = Some(limits.max_height);
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    let decoded = crate::io::imageio::decode_with_limits(&bytes, image_limits)
        .map_err(|error| fail(classify_decode_error(error, format, limits)))?;
    Ok(LoadedInput {
        image: decoded.image,
        sha256,
        file_bytes: bytes.len() as u64,
        format: decoded.format,
        original_color: decoded.original_color,
        orientation: decoded.orientation,
    })
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, InputErrorKind> {
    let read_error = |error: std::io::Error| InputErrorKind::Read(error.to_string());
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // Read at most one byte past the limit instead of trusting the size on disk, which may
    // change between stat and read.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        let bytes = std::fs::metadata(path)
            .map(|metadata| metadata.len())
            .unwrap_or(bytes.len() as u64);
        return Err(InputErrorKind::FileTooLarge { bytes, limit });
    }
    Ok(bytes)
}

fn classify_decode_error(
    error: image::ImageError,
    format: Option<image::ImageFormat>,
    limits: &DecodeLimits,
) -> InputErrorKind {
    use image::error::LimitErrorKind;
    let Some(format) = format else {
        return InputErrorKind::UnknownFormat;
    };
    let format = format_name(format);
    match error {
        image::ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => InputErrorKind::TooLarge {
                max_width: limits.max_width,
                max_height: limits.max_height,
            },
            _ => InputErrorKind::TooMuchMemory {
                limit: limits.max_alloc_bytes,
            },
        },
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            InputErrorKind::Truncated { format }
        }
        image::ImageError::Unsupported(unsupported) => InputErrorKind::Unsupported {
            format,
            message: unsupported.to_string(),
        },
        other => {
            let message = other.to_string();
            // Decoders word running out of data differently; name it uniformly for the report.
            let lower = message.to_ascii_lowercase();
            if [
                "eof",
                "end of file",
                "unexpected end",
                "no more bytes",
                "truncated",
            ]
            .iter()
            .any(|needle| lower.contains(needle))
            {
                InputErrorKind::Truncated { format }
            } else {
                InputErrorKind::Corrupt { format, message }
            }
        }
    }
}

fn format_name(format: image::ImageFormat) -> String {
    match format {
        image::ImageFormat::Png => "PNG".into(),
        image::ImageFormat::Jpeg => "JPEG".into(),
        image::ImageFormat::WebP => "WebP".into(),
        image::ImageFormat::Bmp => "BMP".into(),
        image::ImageFormat::Tiff => "TIFF".into(),
        image::ImageFormat::Gif => "GIF".into(),
        other => format!("{other:?}"),
    }
}

/// Secret from which renamed output stems are derived; whoever holds it can link output names
/// to input names, so it lives only where the run seed lives (the private report).
#[derive(Clone, PartialEq, Eq)]
pub struct NameKey([u8; 32]);

impl fmt::Debug for NameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameKey(<secret>)")
    }
}

impl NameKey {
    /// Domain-separated from every other use of the seed, so names reveal nothing about noise.
    pub fn from_run_seed(seed: u64) -> NameKey {
        let mut hasher = Sha256::new();
        hasher.update(b"boomerang/file-names/v1");
        hasher.update(seed.to_le_bytes());
        NameKey(hasher.finalize().into())
    }

    /// 16 hex characters (64 bits) of HMAC-SHA256(key, relative path). The path is encoded
    /// component by component with length prefixes, so no two paths share an encoding and the
    /// separator style does not matter.
    pub fn stem_for(&self, relative: &Path) -> String {
        let mut message = Vec::new();
        for component in relative.components() {
            let bytes = component.as_os_str().as_encoded_bytes();
            message.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            message.extend_from_slice(bytes);
        }
        hex::encode(&hmac_sha256(&self.0, &message)[..8])
    }

    /// `output` (relative to OUT, made from the input at `relative` by [`output_relative`])
    /// with every folder replaced by the keyed name of that input folder's path: class folders
    /// named after people ("George_W_Bush") disappear, images of one folder stay together, and
    /// only the private report (input and output paths) maps them back.
    pub fn rename_folders(&self, relative: &Path, output: &Path) -> PathBuf {
        let mut renamed = PathBuf::new();
        let mut prefix = PathBuf::new();
        if let Some(parent) = relative.parent() {
            for component in parent.components() {
                prefix.push(component);
                renamed.push(self.stem_for(&prefix));
            }
        }
        renamed.push(output.file_name().unwrap_or(output.as_os_str()));
        renamed
    }
}

fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    // RFC 2104 with a key shorter than SHA-256's 64-byte block.
    let mut inner_pad = [0x36u8; 64];
    let mut outer_pad = [0x5cu8; 64];
    for (index, byte) in key.iter().enumerate() {
        inner_pad[index] ^= byte;
        outer_pad[index] ^= byte;
    }
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Where an input's output goes, relative to OUT: same folders (class labels stay), extension
/// `.png`, and with `rename` the stem replaced by a keyed name.
pub fn output_relative(entry_relative: &Path, rename: Option<&NameKey>) -> PathBuf {
    let stem = match rename {
        Some(key) => key.stem_for(entry_relative).into(),
        None => entry_relative
            .file_stem()
            .unwrap_or(entry_relative.as_os_str())
            .to_os_string(),
    };
    let mut output = entry_relative.with_file_name(stem);
    output.as_mut_os_string().push(".png");
    output
}

/// What to do with one walked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub relative: PathBuf,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Process into `output`, relative to OUT.
    Process {
        output: PathBuf,
    },
    Skip(SkipReason),
}

/// Maps every image entry to its output and turns clashes into skipped rows: the first entry in
/// walk order keeps a path, later ones that would write the same file (`a.jpg` and `a.png`
/// without renaming), a file where a folder is needed, or a folder where a file is written, are
/// skipped with the earlier input named.
pub fn plan_outputs(entries: Vec<Entry>, rename: Option<&NameKey>) -> Vec<Planned> {
    plan_outputs_renamed(entries, rename, None)
}

/// [`plan_outputs`] with keyed file names (`files`) and keyed folder names (`folders`,
/// [`NameKey::rename_folders`]); clashes are found on the final names. The plan depends only on
/// the walk and the key, never on how other images fare, so every part of a sharded run (which
/// plans the whole walk) agrees with an unsharded run on every output name: an input that fails
/// keeps its name, unused.
pub fn plan_outputs_renamed(
    entries: Vec<Entry>,
    files: Option<&NameKey>,
    folders: Option<&NameKey>,
) -> Vec<Planned> {
    let mut claims = OutputClaims::default();
    entries
        .into_iter()
        .map(|entry| {
            let action = match entry.kind {
                EntryKind::Skipped(reason) => Action::Skip(reason),
                EntryKind::Image => {
                    let mut output = output_relative(&entry.relative, files);
                    if let Some(key) = folders {
                        output = key.rename_folders(&entry.relative, &output);
                    }
                    match claims.clash(&output) {
                        Some(reason) => Action::Skip(reason),
                        None => {
                            claims.claim(&output, &entry.relative);
                            Action::Process { output }
                        }
                    }
                }
            };
            Planned {
                relative: entry.relative,
                action,
            }
        })
        .collect()
}

/// Output paths (relative to OUT) already taken, each with the input that took it: a path is
/// taken by a file, and so are the folders above it.
#[derive(Debug, Default, Clone)]
pub struct OutputClaims {
    files: HashMap<PathBuf, PathBuf>,
    folders: HashMap<PathBuf, PathBuf>,
}

impl OutputClaims {
    /// The earlier input that took `output`: the same file, a file where a folder is needed, or
    /// a folder where the file would go.
    pub fn earlier(&self, output: &Path) -> Option<&PathBuf> {
        self.files
            .get(output)
            .or_else(|| self.folders.get(output))
            .or_else(|| {
                output
                    .ancestors()
                    .skip(1)
                    .find_map(|dir| self.files.get(dir))
            })
    }

    /// Why `output` cannot be written: [`OutputClaims::earlier`] took it.
    pub fn clash(&self, output: &Path) -> Option<SkipReason> {
        let earlier = self.earlier(output)?;
        Some(SkipReason::OutputCollision {
            output: output.to_path_buf(),
            earlier: earlier.clone(),
        })
    }

    /// Takes `output` (and its folders) for `input`.
    pub fn claim(&mut self, output: &Path, input: &Path) {
        for folder in output.ancestors().skip(1) {
            if folder.as_os_str().is_empty() {
                break;
            }
            self.folders
                .entry(folder.to_path_buf())
                .or_insert_with(|| input.to_path_buf());
        }
        self.files.insert(output.to_path_buf(), input.to_path_buf());
    }
}

/// Width and height as the file's header declares them, read without decoding the pixels;
/// `None` when the header cannot be read (the full load then says why).
pub fn declared_dimensions(path: &Path) -> Option<(u32, u32)> {
    let file = std::fs::File::open(path).ok()?;
    image::ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}
