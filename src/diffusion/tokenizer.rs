//! CLIP's byte-level BPE tokenizer, producing the `input_ids` Stable Diffusion's text encoder takes.
//!
//! The reference is the slow `CLIPTokenizer` of transformers 4.57.6 with ftfy installed, called as
//! diffusers calls it: `tok(prompt, padding="max_length", max_length=tok.model_max_length,
//! truncation=True).input_ids`. tests/fixtures/tokenizer_cases.json (tools/make_tokenizer_fixtures.py)
//! pins that behaviour; every case there is matched exactly. The steps, in transformers' order:
//!
//! 1. Added tokens (the special tokens and any `added_tokens_decoder` entry, e.g. a textual-inversion
//!    token) are split out of the raw prompt first, case-sensitively, and map straight to their ids.
//!    SD 2.x's pad token `!` is one of them, so a `!` in an SD 2.x prompt becomes id 0, not the
//!    `!</w>` (256) of SD 1.x.
//! 2. Each remaining piece is cleaned as `whitespace_clean(ftfy.fix_text(piece)).lower()` (see
//!    [`clean_text`]), split by CLIP's pattern
//!    `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (case-insensitive, with Python `regex`'s quirks; see `PRE_TOKENIZER`), mapped byte by byte
//!    to GPT-2's printable byte alphabet and merged by BPE with a `</w>` end-of-word marker.
//! 3. Ids are truncated to `model_max_length - 2`, wrapped in BOS/EOS and padded with the pad id.
//!
//! What [`clean_text`] implements of `ftfy.fix_text` (6.3.1, default settings): HTML entity decoding
//! (skipped from the first line containing `<` on, as ftfy does), C1 controls read as Windows-1252,
//! Latin ligatures, full/half-width forms, curly quotes, line breaks, terminal escape sequences,
//! control characters, NFC, repeated until nothing changes. Where it differs from ftfy:
//! - Mojibake repair (`fix_encoding`: UTF-8 that was decoded as Latin-1/Windows-1252, e.g.
//!   `cafÃ©` or `â€œ`, plus its `restore_byte_a0`/`replace_lossy_sequences`/
//!   `decode_inconsistent_utf8` steps) is not done; such text is tokenized as written. Only
//!   prompts with mojibake-like runs of Latin-1 symbols and accented capitals (`Ã©`, `Â£`,
//!   `Î¹`, `Ã ` before a space) are affected; plain accented text, CJK and emoji are not.
//! - Named HTML entities: the 252 of HTML 4 plus `&apos;`, and their all-caps spellings that ftfy
//!   also accepts (`&EACUTE;` is `É`). ftfy knows every HTML5 name ending in `;` (about 2,100,
//!   e.g. `&check;`); names outside HTML 4 stay as text here. Numeric references (`&#39;`,
//!   `&#x1F600;`, `&#128;`) follow Python's `html.unescape` exactly.
//! - Unicode tables: Python 3.11 uses Unicode 14 for lowercasing and NFC; Rust's are newer, so
//!   characters assigned after Unicode 14 may lowercase or compose differently.
//! - Added tokens that overlap each other are matched leftmost-longest; transformers' trie can pick
//!   differently for such overlaps (no Stable Diffusion tokenizer has any).
//!
//! The fast `CLIPTokenizerFast` skips ftfy (curly quotes, entities, ligatures, full-width forms),
//! does not lowercase Greek final sigma, and keeps some control characters, so it disagrees with
//! the slow tokenizer on such prompts; diffusers uses the slow class, which this follows.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use regex::{Captures, Regex};
use serde_json::{Map, Value};
use unicode_normalization::UnicodeNormalization;

/// Used when the config gives no usable `model_max_length`: the CLIP text encoders of Stable
/// Diffusion have 77 positions.
pub const DEFAULT_MAX_LENGTH: usize = 77;

/// transformers writes `VERY_LARGE_INTEGER` (1e30) for "no limit" and treats anything above
/// `LARGE_INTEGER` (1e20) that way.
const NO_LIMIT_THRESHOLD: f64 = 1e20;

/// `CLIPTokenizer` reads only the first `49152 - 256 - 2` merges, whatever the file holds.
const MAX_MERGES: usize = 49152 - 256 - 2;

/// Pre-tokens whose BPE result is cached; the cache is dropped when it reaches this size so a
/// long-running process does not grow without bound.
const CACHE_CAPACITY: usize = 16_384;

const START_OF_TEXT: &str = "<|startoftext|>";
const END_OF_TEXT: &str = "<|endoftext|>";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read {path}: {source} (expected the `tokenizer` folder of an `optimum-cli export onnx` Stable Diffusion export, with vocab.json and merges.txt)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error("{path} line {line}: expected two BPE symbols separated by a space, found {text:?}")]
    MergeLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// A token matched in the raw prompt before any cleanup, with transformers' `AddedToken` options.
#[derive(Debug, Clone)]
struct AddedToken {
    content: String,
    id: i64,
    lstrip: bool,
    rstrip: bool,
    single_word: bool,
}

/// A special or added token as a config file spells it: a string or an `AddedToken` object.
#[derive(Debug, Clone)]
struct TokenSpec {
    content: String,
    lstrip: bool,
    rstrip: bool,
    single_word: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// CLIP BPE tokenizer loaded from a Hugging Face tokenizer folder.
pub struct ClipTokenizer {
    /// BPE merges over interned symbols: (left, right) -> (rank, merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Final id of every interned symbol (added tokens first, then vocab, then the unk id).
    symbol_ids: Vec<i64>,
    /// Ids of `<|startoftext|>` / `<|endoftext|>` when the pattern matches them in cleaned text.
    start_of_text_id: i64,
    end_of_text_id: i64,
    /// Longest first, so that the first match at a position is the longest.
    added: Vec<AddedToken>,
    split_special_tokens: bool,
    bos_id: i64,
    eos_id: i64,
    pad_id: i64,
    max_length: usize,
    padding_side: Side,
    truncation_side: Side,
    cache: Mutex<HashMap<String, Vec<i64>>>,
}

impl fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("merges", &self.merges.len())
            .field("added_tokens", &self.added.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

/// CLIP's pattern as Python's `regex` module runs it with IGNORECASE on lowercased text: the
/// literals match case-insensitively (`'ſ` is `'s`), while the classes behave as without the flag
/// except that U+0345 (which folds to a letter) is matched by neither class and so dropped.
static PRE_TOKENIZER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}\x{345}]+",
    )
    .expect("constant pattern")
});

impl ClipTokenizer {
    /// Load the tokenizer from `dir`, the `tokenizer` folder of a Stable Diffusion export: it must
    /// hold `vocab.json` and `merges.txt`; `tokenizer_config.json`, `special_tokens_map.json` and
    /// `added_tokens.json` are read when present, with transformers' precedence (a config that
    /// has `added_tokens_decoder` is self-contained; older ones are completed by the other two).
    pub fn from_dir(dir: &Path) -> Result<ClipTokenizer, TokenizerError> {
        let vocab_path = dir.join("vocab.json");
        let vocab: HashMap<String, i64> = parse_json(&vocab_path, &read(&vocab_path)?)?;
        if let Some((token, id)) = vocab.iter().find(|(_, id)| **id < 0) {
            return Err(invalid(
                &vocab_path,
                format!("token {token:?} has negative id {id}"),
            ));
        }
        let merges_path = dir.join("merges.txt");
        let merge_pairs = parse_merges(&merges_path, &read(&merges_path)?)?;

        let config = Config::load(dir)?;
        let mut added: Vec<AddedToken> = Vec::new();
        for (id, spec) in &config.added_tokens {
            added.retain(|t| t.content != spec.content);
            added.push(AddedToken::new(spec, *id));
        }
        // Special tokens transformers did not find among the added tokens are added with their
        // vocab id; a token outside the vocab would get an id the text encoder has no row for.
        for special in &config.special_tokens {
            let (key, spec) = (&special.key, &special.spec);
            if added.iter().any(|t| t.content == spec.content) {
                continue;
            }
            let id = vocab.get(&spec.content).copied().ok_or_else(|| {
                invalid(
                    &special.source,
                    format!(
                        "{key} {:?} is neither in {} nor among the added tokens",
                        spec.content,
                        vocab_path.display()
                    ),
                )
            })?;
            added.push(AddedToken::new(spec, id));
        }
        let lookup = |content: &str| -> Option<i64> {
            added
                .iter()
                .find(|t| t.content == content)
                .map(|t| t.id)
                .or_else(|| vocab.get(content).copied())
        };
        let unk_id = vocab.get(&config.unk.content).copied().ok_or_else(|| {
            invalid(
                &vocab_path,
                format!(
                    "unk_token {:?} is not in the vocabulary",
                    config.unk.content
                ),
            )
        })?;
        // Each of these was added above, so the lookup cannot miss; unk keeps that total.
        let special_id = |spec: &TokenSpec| lookup(&spec.content).unwrap_or(unk_id);
        let (bos_id, eos_id, pad_id) = (
            special_id(&config.bos),
            special_id(&config.eos),
            special_id(&config.pad),
        );

        let mut symbols = SymbolTable::default();
        for byte in 0..=255u8 {
            symbols.intern(byte_char(byte).to_string());
        }
        for byte in 0..=255u8 {
            symbols.intern(format!("{}</w>", byte_char(byte)));
        }
        let mut merges = HashMap::with_capacity(merge_pairs.len());
        for (rank, (left, right)) in merge_pairs.into_iter().enumerate() {
            let merged = symbols.intern(format!("{left}{right}"));
            let key = (symbols.intern(left), symbols.intern(right));
            // Python builds a dict from the merge list, so a repeated pair keeps its last rank.
            merges.insert(key, (rank as u32, merged));
        }
        let symbol_ids = symbols
            .names
            .iter()
            .map(|name| lookup(name).unwrap_or(unk_id))
            .collect();
        let start_of_text_id = lookup(START_OF_TEXT).unwrap_or(unk_id);
        let end_of_text_id = lookup(END_OF_TEXT).unwrap_or(unk_id);
        added.sort_by_key(|t| std::cmp::Reverse(t.content.len()));

        Ok(ClipTokenizer {
            merges,
            symbol_ids,
            start_of_text_id,
            end_of_text_id,
            added,
            split_special_tokens: config.split_special_tokens,
            bos_id,
            eos_id,
            pad_id,
            max_length: config.max_length,
            padding_side: config.padding_side,
            truncation_side: config.truncation_side,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Exactly `max_length()` ids: BOS, the prompt's tokens (truncated so EOS fits), EOS, padding.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let room = self.max_length - 2;
        // With right truncation later text cannot change the kept ids, so stop once room is full.
        let limit = match self.truncation_side {
            Side::Right => Some(room),
            Side::Left => None,
        };
        let mut tokens = self.tokenize(text, limit);
        if tokens.len() > room {
            match self.truncation_side {
                Side::Right => tokens.truncate(room),
                Side::Left => {
                    tokens.drain(..tokens.len() - room);
                }
            }
        }
        let padding = vec![self.pad_id; room - tokens.len()];
        let mut ids = Vec::with_capacity(self.max_length);
        if self.padding_side == Side::Left {
            ids.extend_from_slice(&padding);
        }
        ids.push(self.bos_id);
        ids.extend_from_slice(&tokens);
        ids.push(self.eos_id);
        if self.padding_side == Side::Right {
            ids.extend_from_slice(&padding);
        }
        ids
    }

    /// Sequence length `encode` produces (`model_max_length`).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn bos_id(&self) -> i64 {
        self.bos_id
    }

    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Token ids without BOS/EOS/padding; stops early once `limit` ids are known.
    fn tokenize(&self, text: &str, limit: Option<usize>) -> Vec<i64> {
        let mut ids = Vec::new();
        for piece in self.split_added(text) {
            if limit.is_some_and(|limit| ids.len() >= limit) {
                break;
            }
            match piece {
                Piece::Added(id) => ids.push(id),
                Piece::Text(text) => {
                    let cleaned = clean_text(&text);
                    for word in PRE_TOKENIZER.find_iter(&cleaned) {
                        if limit.is_some_and(|limit| ids.len() >= limit) {
                            break;
                        }
                        self.bpe(word.as_str(), &mut ids);
                    }
                }
            }
        }
        ids
    }

    /// transformers' `tokens_trie.split` plus its lstrip/rstrip/single_word handling.
    fn split_added(&self, text: &str) -> Vec<Piece> {
        if self.split_special_tokens || self.added.is_empty() {
            return vec![Piece::Text(text.to_string())];
        }
        // (text, index into self.added) in prompt order.
        let mut parts: Vec<(String, Option<usize>)> = Vec::new();
        let mut start = 0;
        let mut pos = 0;
        while pos < text.len() {
            let rest = &text[pos..];
            match self.added.iter().position(|t| rest.starts_with(&t.content)) {
                Some(index) => {
                    if start < pos {
                        parts.push((text[start..pos].to_string(), None));
                    }
                    parts.push((self.added[index].content.clone(), Some(index)));
                    pos += self.added[index].content.len();
                    start = pos;
                }
                None => pos += rest.chars().next().map_or(1, char::len_utf8),
            }
        }
        if start < text.len() {
            parts.push((text[start..].to_string(), None));
        }

        for i in 0..parts.len() {
            let Some(index) = parts[i].1 else { continue };
            let token = &self.added[index];
            let has_left = i > 0 && !parts[i - 1].0.is_empty();
            let has_right = i + 1 < parts.len() && !parts[i + 1].0.is_empty();
            if token.rstrip && has_right {
                parts[i + 1].0 = parts[i + 1].0.trim_start().to_string();
            }
            if token.lstrip && has_left {
                parts[i - 1].0 = parts[i - 1].0.trim_end().to_string();
            }
            // A single_word token glued to a neighbour is joined to it, and the joined piece is
            // ordinary text, even when the neighbour was an added token itself.
            if token.single_word && has_left && !parts[i - 1].0.ends_with(' ') {
                let content = std::mem::take(&mut parts[i].0);
                parts[i - 1].0.push_str(&content);
                parts[i - 1].1 = None;
                parts[i].1 = None;
            } else if token.single_word && has_right && !parts[i + 1].0.starts_with(' ') {
                let content = std::mem::take(&mut parts[i].0);
                parts[i + 1].0.insert_str(0, &content);
                parts[i + 1].1 = None;
                parts[i].1 = None;
            }
        }

        parts
            .into_iter()
            .filter(|(text, _)| !text.is_empty())
            .map(|(text, index)| match index {
                Some(index) => Piece::Added(self.added[index].id),
                None => Piece::Text(text),
            })
            .collect()
    }

    /// BPE of one pre-token, appending its ids.
    fn bpe(&self, word: &str, ids: &mut Vec<i64>) {
        // The pattern's special-token alternatives are never split, as transformers' cache seeds say.
        if word == START_OF_TEXT {
            ids.push(self.start_of_text_id);
            return;
        }
        if word == END_OF_TEXT {
            ids.push(self.end_of_text_id);
            return;
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = cache.get(word) {
            ids.extend_from_slice(cached);
            return;
        }
        let bytes = word.as_bytes();
        let Some(last) = bytes.len().checked_sub(1) else {
            return;
        };
        let mut symbols: Vec<u32> = bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if i == last {
                    256 + u32::from(b)
                } else {
                    u32::from(b)
                }
            })
            .collect();
        let mut next = Vec::with_capacity(symbols.len());
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|pair| {
                    self.merges
                        .get(&(pair[0], pair[1]))
                        .map(|m| (m.0, pair[0], pair[1], m.1))
                })
                .min_by_key(|m| m.0);
            let Some((_, left, right, merged)) = best else {
                break;
            };
            next.clear();
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == left && symbols[i + 1] == right {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(symbols[i]);
                    i += 1;
                }
            }
            std::mem::swap(&mut symbols, &mut next);
        }
        let word_ids: Vec<i64> = symbols
            .iter()
            .map(|&s| self.symbol_ids[s as usize])
            .collect();
        ids.extend_from_slice(&word_ids);
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(word.to_string(), word_ids);
    }
}

enum Piece {
    Added(i64),
    Text(String),
}

impl AddedToken {
    fn new(spec: &TokenSpec, id: i64) -> Self {
        AddedToken {
            content: spec.content.clone(),
            id,
            lstrip: spec.lstrip,
            rstrip: spec.rstrip,
            single_word: spec.single_word,
        }
    }
}

#[derive(Default)]
struct SymbolTable {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl SymbolTable {
    fn intern(&mut self, name: String) -> u32 {
        if let Some(&i) = self.index.get(&name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.index.insert(name, i);
        i
    }
}

/// GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the other 68
/// bytes are moved to U+0100.. so that no BPE symbol is whitespace or a control character.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(byte) {
        return char::from(byte);
    }
    let shifted = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    fs::read_to_string(path).map_err(|source| TokenizerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, TokenizerError> {
    serde_json::from_str(text).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, what: String) -> TokenizerError {
    TokenizerError::Invalid {
        path: path.to_path_buf(),
        what,
    }
}

/// The merge pairs as `CLIPTokenizer` reads them: universal newlines, whole file stripped, first
/// line (the `#version` header) skipped, at most `MAX_MERGES` lines.
fn parse_merges(path: &Path, text: &str) -> Result<Vec<(String, String)>, TokenizerError> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let trimmed = text.trim_start();
    // Line numbers in errors count from the file's first line, before the strip.
    let first_line = 1 + text[..text.len() - trimmed.len()].matches('\n').count();
    let mut pairs = Vec::new();
    for (i, line) in trimmed
        .trim_end()
        .split('\n')
        .enumerate()
        .skip(1)
        .take(MAX_MERGES)
    {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(left), Some(right), None) => pairs.push((left.to_string(), right.to_string())),
            _ => {
                return Err(TokenizerError::MergeLine {
                    path: path.to_path_buf(),
                    line: first_line + i,
                    text: line.to_string(),
                })
            }
        }
    }
    Ok(pairs)
}

/// What the config files say about special tokens, added tokens and lengths.
struct Config {
    /// Every special token, in transformers' `SPECIAL_TOKENS_ATTRIBUTES` order.
    special_tokens: Vec<SpecialToken>,
    bos: TokenSpec,
    eos: TokenSpec,
    unk: TokenSpec,
    pad: TokenSpec,
    /// (id, token) from `added_tokens_decoder` or the legacy `added_tokens.json`.
    added_tokens: Vec<(i64, TokenSpec)>,
    max_length: usize,
    padding_side: Side,
    truncation_side: Side,
    split_special_tokens: bool,
}

struct SpecialToken {
    key: String,
    spec: TokenSpec,
    /// The file that named it, for errors.
    source: PathBuf,
}

const SPECIAL_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

impl Config {
    fn load(dir: &Path) -> Result<Config, TokenizerError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = read_object(&config_path)?.unwrap_or_default();

        let mut added_tokens = Vec::new();
        // Special token values, and the file each came from.
        let mut values: Vec<(String, Value, PathBuf)> = config
            .iter()
            .filter(|(key, _)| {
                SPECIAL_KEYS.contains(&key.as_str()) || *key == "additional_special_tokens"
            })
            .map(|(key, value)| (key.clone(), value.clone(), config_path.clone()))
            .collect();
        if let Some(decoder) = config.get("added_tokens_decoder") {
            let Value::Object(decoder) = decoder else {
                return Err(invalid(
                    &config_path,
                    "added_tokens_decoder must be an object".into(),
                ));
            };
            for (id, token) in decoder {
                let id: i64 = id.parse().ok().filter(|id| *id >= 0).ok_or_else(|| {
                    invalid(
                        &config_path,
                        format!("added_tokens_decoder key {id:?} is not a token id"),
                    )
                })?;
                let spec =
                    token_spec(token, &config_path, "added_tokens_decoder")?.ok_or_else(|| {
                        invalid(
                            &config_path,
                            format!("added_tokens_decoder entry {id} is null"),
                        )
                    })?;
                added_tokens.push((id, spec));
            }
        } else {
            // Legacy folders: special_tokens_map.json overrides the config, added_tokens.json
            // lists tokens added after training (e.g. by textual inversion).
            let map_path = dir.join("special_tokens_map.json");
            for (key, value) in read_object(&map_path)?.unwrap_or_default() {
                values.retain(|(k, _, _)| *k != key);
                values.push((key, value, map_path.clone()));
            }
            let added_path = dir.join("added_tokens.json");
            if let Some(added) = read_object(&added_path)? {
                for (content, id) in added {
                    let id = id.as_i64().filter(|id| *id >= 0).ok_or_else(|| {
                        invalid(
                            &added_path,
                            format!("{content:?} maps to {id}, not a token id"),
                        )
                    })?;
                    added_tokens.push((id, TokenSpec::plain(content)));
                }
            }
        }

        let mut special_tokens = Vec::new();
        let mut named =
            |key: &str, default: Option<&str>| -> Result<Option<TokenSpec>, TokenizerError> {
                let (spec, source) = match values.iter().find(|(k, _, _)| k == key) {
                    Some((_, value, path)) => (token_spec(value, path, key)?, path.clone()),
                    // CLIPTokenizer's own default; errors point at the config that did not override it.
                    None => (
                        default.map(|content| TokenSpec::plain(content.to_string())),
                        config_path.clone(),
                    ),
                };
                if let Some(spec) = &spec {
                    special_tokens.push(SpecialToken {
                        key: key.to_string(),
                        spec: spec.clone(),
                        source,
                    });
                }
                Ok(spec)
            };
        let required = |spec: Option<TokenSpec>, key: &str| {
            spec.ok_or_else(|| {
                invalid(
                    &config_path,
                    format!("{key} is null; CLIP needs a {key} to build input_ids"),
                )
            })
        };
        let bos = required(named("bos_token", Some(START_OF_TEXT))?, "bos_token")?;
        let eos = required(named("eos_token", Some(END_OF_TEXT))?, "eos_token")?;
        let unk = required(named("unk_token", Some(END_OF_TEXT))?, "unk_token")?;
        named("sep_token", None)?;
        let pad = required(named("pad_token", Some(END_OF_TEXT))?, "pad_token")?;
        named("cls_token", None)?;
        named("mask_token", None)?;
        if let Some((_, value, path)) = values
            .iter()
            .find(|(k, _, _)| k == "additional_special_tokens")
        {
            let list = match value {
                Value::Array(list) => list.as_slice(),
                Value::Null => &[],
                _ => {
                    return Err(invalid(
                        path,
                        "additional_special_tokens must be a list".into(),
                    ))
                }
            };
            for value in list {
                if let Some(spec) = token_spec(value, path, "additional_special_tokens")? {
                    special_tokens.push(SpecialToken {
                        key: "additional_special_tokens".into(),
                        spec,
                        source: path.clone(),
                    });
                }
            }
        }

        Ok(Config {
            special_tokens,
            bos,
            eos,
            unk,
            pad,
            added_tokens,
            max_length: max_length(&config, &config_path)?,
            padding_side: side(&config, "padding_side", &config_path)?,
            truncation_side: side(&config, "truncation_side", &config_path)?,
            split_special_tokens: match config.get("split_special_tokens") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(split)) => *split,
                Some(other) => {
                    return Err(invalid(
                        &config_path,
                        format!("split_special_tokens must be true or false, found {other}"),
                    ))
                }
            },
        })
    }
}

impl TokenSpec {
    fn plain(content: String) -> Self {
        TokenSpec {
            content,
            lstrip: false,
            rstrip: false,
            single_word: false,
        }
    }
}

/// `None` when the file does not exist.
fn read_object(path: &Path) -> Result<Option<Map<String, Value>>, TokenizerError> {
    if !path.exists() {
        return Ok(None);
    }
    match parse_json(path, &read(path)?)? {
        Value::Object(map) => Ok(Some(map)),
        other => Err(invalid(
            path,
            format!("expected a JSON object, found {other}"),
        )),
    }
}

/// A token given as `"text"` or `{"content": "text", "lstrip": false, ...}`; `null` is `None`.
fn token_spec(value: &Value, path: &Path, key: &str) -> Result<Option<TokenSpec>, TokenizerError> {
    match value {
        Value::Null => Ok(None),
        Value::String(content) => Ok(Some(TokenSpec::plain(content.clone()))),
        Value::Object(fields) => {
            let content = fields
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!("{key}: token object without a string \"content\": {value}"),
                    )
                })?;
            let flag = |name: &str| match fields.get(name) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(flag)) => Ok(*flag),
                Some(other) => Err(invalid(
                    path,
                    format!("{key} {content:?}: {name} must be true or false, found {other}"),
                )),
            };
            Ok(Some(TokenSpec {
                content: content.to_string(),
                lstrip: flag("lstrip")?,
                rstrip: flag("rstrip")?,
                single_word: flag("single_word")?,
            }))
        }
        other => Err(invalid(
            path,
            format!("{key} must be a string or a token object, found {other}"),
        )),
    }
}

fn max_length(config: &Map<String, Value>, path: &Path) -> Result<usize, TokenizerError> {
    let value = config
        .get("model_max_length")
        .or_else(|| config.get("max_len"));
    let length = match value {
        None | Some(Value::Null) => return Ok(DEFAULT_MAX_LENGTH),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(length) => length,
            None if n.as_f64().is_some_and(|f| f > NO_LIMIT_THRESHOLD) => {
                return Ok(DEFAULT_MAX_LENGTH)
            }
            None => 0,
        },
        Some(_) => 0,
    };
    match usize::try_from(length) {
        Ok(length) if (2..=1_000_000).contains(&length) => Ok(length),
        _ => Err(invalid(
            path,
            format!(
                "model_max_length {} is not a usable sequence length (2..=1000000; CLIP uses 77)",
                value.map_or_else(String::new, Value::to_string)
            ),
        )),
    }
}

fn side(config: &Map<String, Value>, key: &str, path: &Path) -> Result<Side, TokenizerError> {
    match config.get(key).and_then(Value::as_str) {
        None if config.get(key).is_none_or(Value::is_null) => Ok(Side::Right),
        Some("right") => Ok(Side::Right),
        Some("left") => Ok(Side::Left),
        _ => Err(invalid(
            path,
            format!("{key} must be \"left\" or \"right\""),
        )),
    }
}

/// The text transformers' `CLIPTokenizer` pre-tokenizes: `whitespace_clean(ftfy.fix_text(text))
/// .lower()`, with the ftfy differences listed in the module documentation.
pub fn clean_text(text: &str) -> String {
    let fixed = fix_text(text);
    let mut out = String::with_capacity(fixed.len());
    for word in fixed.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.to_lowercase()
}

/// ftfy's `fix_text` segmentation: each line (with its `\n`), cut at 1,000,000 characters, is
/// fixed on its own; from the first segment containing `<` on, HTML entities are left alone.
fn fix_text(text: &str) -> String {
    const MAX_SEGMENT_CHARS: usize = 1_000_000;
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            let end = rest
                .char_indices()
                .nth(MAX_SEGMENT_CHARS)
                .map_or(rest.len(), |(i, _)| i);
            let (segment, tail) = rest.split_at(end);
            unescape &= !segment.contains('<');
            out.push_str(&fix_segment(segment, unescape));
            rest = tail;
        }
    }
    out
}

/// ftfy's `fix_and_explain` without `fix_encoding`: its fixers in its order, until a fixed point.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let mut fixed = if unescape {
            unescape_html(&text)
        } else {
            text.clone()
        };
        fixed = fixed.chars().flat_map(fix_char).collect();
        fixed = fixed
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        fixed = TERMINAL_ESCAPE.replace_all(&fixed, "").into_owned();
        fixed.retain(|c| !is_removed_control(c));
        fixed = fixed.nfc().collect();
        if fixed == text {
            return fixed;
        }
        text = fixed;
    }
}

/// ftfy's per-character fixers in order: C1 controls, Latin ligatures, character width, quotes.
fn fix_char(c: char) -> Vec<char> {
    let c = match c {
        '\u{80}'..='\u{9f}' => WINDOWS_1252_C1[c as usize - 0x80],
        _ => c,
    };
    let unligated: Vec<char> = match LIGATURES.iter().find(|(l, _)| *l == c) {
        Some((_, parts)) => parts.chars().collect(),
        None => vec![c],
    };
    unligated
        .into_iter()
        .flat_map(|c| match c {
            '\u{3000}' => vec![' '],
            // NFKC of the half/full-width forms block, as ftfy's width map is built.
            '\u{ff01}'..='\u{ffef}' => c.to_string().nfkc().collect(),
            _ => vec![c],
        })
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

static TERMINAL_ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").expect("constant pattern"));

/// ftfy's `remove_control_chars`: C0 controls other than \t \n \f \r, DEL, deprecated Arabic
/// format controls, the BOM and the interlinear annotation / object replacement characters.
fn is_removed_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
}

/// ftfy's `fix_latin_ligatures` table.
const LIGATURES: [(char, &str); 22] = [
    ('\u{132}', "IJ"),
    ('\u{133}', "ij"),
    ('\u{149}', "\u{2bc}n"),
    ('\u{1f1}', "DZ"),
    ('\u{1f2}', "Dz"),
    ('\u{1f3}', "dz"),
    ('\u{1c4}', "D\u{17d}"),
    ('\u{1c5}', "D\u{17e}"),
    ('\u{1c6}', "d\u{17e}"),
    ('\u{1c7}', "LJ"),
    ('\u{1c8}', "Lj"),
    ('\u{1c9}', "lj"),
    ('\u{1ca}', "NJ"),
    ('\u{1cb}', "Nj"),
    ('\u{1cc}', "nj"),
    ('\u{fb00}', "ff"),
    ('\u{fb01}', "fi"),
    ('\u{fb02}', "fl"),
    ('\u{fb03}', "ffi"),
    ('\u{fb04}', "ffl"),
    ('\u{fb05}', "\u{17f}t"),
    ('\u{fb06}', "st"),
];

/// Windows-1252 for bytes 0x80..=0x9F, undefined bytes kept as the C1 control (ftfy's
/// "sloppy" codec and Python's `html` numeric-reference table agree on this).
const WINDOWS_1252_C1: [char; 32] = [
    '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}', '\u{178}',
];

static HTML_ENTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("constant pattern"));

/// ftfy's `unescape_html` for the entities this module knows (see the module documentation).
fn unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    HTML_ENTITY
        .replace_all(text, |caps: &Captures| {
            let entity = &caps[0];
            let body = &entity[1..entity.len() - 1];
            let decoded = match body.strip_prefix('#') {
                Some(number) => numeric_reference(number),
                None => named_entity(body),
            };
            decoded.unwrap_or_else(|| entity.to_string())
        })
        .into_owned()
}

/// Python's `html.unescape` of `&#...;`; `None` where it would leave part of the text (and so
/// ftfy keeps the whole reference).
fn numeric_reference(number: &str) -> Option<String> {
    let parsed = match number.strip_prefix(['x', 'X']) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16)
        }
        Some(_) => return None,
        None if number.bytes().all(|b| b.is_ascii_digit()) => number.parse::<u32>(),
        None => return None,
    };
    // All digits were valid, so a parse failure is an overflow: beyond U+10FFFF.
    let code = parsed.unwrap_or(u32::MAX);
    let decoded = match code {
        0 => "\u{fffd}".to_string(),
        0x0d => "\r".to_string(),
        0x80..=0x9f => WINDOWS_1252_C1[code as usize - 0x80].to_string(),
        0xd800..=0xdfff | 0x110000.. => "\u{fffd}".to_string(),
        0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef => String::new(),
        _ if code & 0xfffe == 0xfffe => String::new(),
        _ => char::from_u32(code).map(String::from).unwrap_or_default(),
    };
    Some(decoded)
}

/// An HTML 4 entity name, or its all-caps spelling for names that are all lowercase (decoded to
/// the upper-case character, as ftfy does: `&EACUTE;` is `É`, `&SZLIG;` is `SS`).
fn named_entity(name: &str) -> Option<String> {
    let find = |name: &str| {
        HTML4_ENTITIES
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| HTML4_ENTITIES[i].1)
    };
    if let Some(c) = find(name) {
        return Some(c.to_string());
    }
    let lower = name.to_ascii_lowercase();
    if name == lower.to_ascii_uppercase() {
        return find(&lower).map(|c| c.to_uppercase().collect());
    }
    None
}

/// HTML 4's named entities plus `&apos;`, with HTML5's values (`lang`/`rang` are U+27E8/9),
/// sorted by name for binary search.
#[rustfmt::skip]
const HTML4_ENTITIES: [(&str, char); 253] = [
    ("AElig", '\u{00c6}'), ("Aacute", '\u{00c1}'), ("Acirc", '\u{00c2}'), ("Agrave", '\u{00c0}'),
    ("Alpha", '\u{0391}'), ("Aring", '\u{00c5}'), ("Atilde", '\u{00c3}'), ("Auml", '\u{00c4}'),
    ("Beta", '\u{0392}'), ("Ccedil", '\u{00c7}'), ("Chi", '\u{03a7}'), ("Dagger", '\u{2021}'),
    ("Delta", '\u{0394}'), ("ETH", '\u{00d0}'), ("Eacute", '\u{00c9}'), ("Ecirc", '\u{00ca}'),
    ("Egrave", '\u{00c8}'), ("Epsilon", '\u{0395}'), ("Eta", '\u{0397}'), ("Euml", '\u{00cb}'),
    ("Gamma", '\u{0393}'), ("Iacute", '\u{00cd}'), ("Icirc", '\u{00ce}'), ("Igrave", '\u{00cc}'),
    ("Iota", '\u{0399}'), ("Iuml", '\u{00cf}'), ("Kappa", '\u{039a}'), ("Lambda", '\u{039b}'),
    ("Mu", '\u{039c}'), ("Ntilde", '\u{00d1}'), ("Nu", '\u{039d}'), ("OElig", '\u{0152}'),
    ("Oacute", '\u{00d3}'), ("Ocirc", '\u{00d4}'), ("Ograve", '\u{00d2}'), ("Omega", '\u{03a9}'),
    ("Omicron", '\u{039f}'), ("Oslash", '\u{00d8}'), ("Otilde", '\u{00d5}'), ("Ouml", '\u{00d6}'),
    ("Phi", '\u{03a6}'), ("Pi", '\u{03a0}'), ("Prime", '\u{2033}'), ("Psi", '\u{03a8}'),
    ("Rho", '\u{03a1}'), ("Scaron", '\u{0160}'), ("Sigma", '\u{03a3}'), ("THORN", '\u{00de}'),
    ("Tau", '\u{03a4}'), ("Theta", '\u{0398}'), ("Uacute", '\u{00da}'), ("Ucirc", '\u{00db}'),
    ("Ugrave", '\u{00d9}'), ("Upsilon", '\u{03a5}'), ("Uuml", '\u{00dc}'), ("Xi", '\u{039e}'),
    ("Yacute", '\u{00dd}'), ("Yuml", '\u{0178}'), ("Zeta", '\u{0396}'), ("aacute", '\u{00e1}'),
    ("acirc", '\u{00e2}'), ("acute", '\u{00b4}'), ("aelig", '\u{00e6}'), ("agrave", '\u{00e0}'),
    ("alefsym", '\u{2135}'), ("alpha", '\u{03b1}'), ("amp", '&'), ("and", '\u{2227}'),
    ("ang", '\u{2220}'), ("apos", '\''), ("aring", '\u{00e5}'), ("asymp", '\u{2248}'),
    ("atilde", '\u{00e3}'), ("auml", '\u{00e4}'), ("bdquo", '\u{201e}'), ("beta", '\u{03b2}'),
    ("brvbar", '\u{00a6}'), ("bull", '\u{2022}'), ("cap", '\u{2229}'), ("ccedil", '\u{00e7}'),
    ("cedil", '\u{00b8}'), ("cent", '\u{00a2}'), ("chi", '\u{03c7}'), ("circ", '\u{02c6}'),
    ("clubs", '\u{2663}'), ("cong", '\u{2245}'), ("copy", '\u{00a9}'), ("crarr", '\u{21b5}'),
    ("cup", '\u{222a}'), ("curren", '\u{00a4}'), ("dArr", '\u{21d3}'), ("dagger", '\u{2020}'),
    ("darr", '\u{2193}'), ("deg", '\u{00b0}'), ("delta", '\u{03b4}'), ("diams", '\u{2666}'),
    ("divide", '\u{00f7}'), ("eacute", '\u{00e9}'), ("ecirc", '\u{00ea}'), ("egrave", '\u{00e8}'),
    ("empty", '\u{2205}'), ("emsp", '\u{2003}'), ("ensp", '\u{2002}'), ("epsilon", '\u{03b5}'),
    ("equiv", '\u{2261}'), ("eta", '\u{03b7}'), ("eth", '\u{00f0}'), ("euml", '\u{00eb}'),
    ("euro", '\u{20ac}'), ("exist", '\u{2203}'), ("fnof", '\u{0192}'), ("forall", '\u{2200}'),
    ("frac12", '\u{00bd}'), ("frac14", '\u{00bc}'), ("frac34", '\u{00be}'), ("frasl", '\u{2044}'),
    ("gamma", '\u{03b3}'), ("ge", '\u{2265}'), ("gt", '>'), ("hArr", '\u{21d4}'),
    ("harr", '\u{2194}'), ("hearts", '\u{2665}'), ("hellip", '\u{2026}'), ("iacute", '\u{00ed}'),
    ("icirc", '\u{00ee}'), ("iexcl", '\u{00a1}'), ("igrave", '\u{00ec}'), ("image", '\u{2111}'),
    ("infin", '\u{221e}'), ("int", '\u{222b}'), ("iota", '\u{03b9}'), ("iquest", '\u{00bf}'),
    ("isin", '\u{2208}'), ("iuml", '\u{00ef}'), ("kappa", '\u{03ba}'), ("lArr", '\u{21d0}'),
    ("lambda", '\u{03bb}'), ("lang", '\u{27e8}'), ("laquo", '\u{00ab}'), ("larr", '\u{2190}'),
    ("lceil", '\u{2308}'), ("ldquo", '\u{201c}'), ("le", '\u{2264}'), ("lfloor", '\u{230a}'),
    ("lowast", '\u{2217}'), ("loz", '\u{25ca}'), ("lrm", '\u{200e}'), ("lsaquo", '\u{2039}'),
    ("lsquo", '\u{2018}'), ("lt", '<'), ("macr", '\u{00af}'), ("mdash", '\u{2014}'),
    ("micro", '\u{00b5}'), ("middot", '\u{00b7}'), ("minus", '\u{2212}'), ("mu", '\u{03bc}'),
    ("nabla", '\u{2207}'), ("nbsp", '\u{00a0}'), ("ndash", '\u{2013}'), ("ne", '\u{2260}'),
    ("ni", '\u{220b}'), ("not", '\u{00ac}'), ("notin", '\u{2209}'), ("nsub", '\u{2284}'),
    ("ntilde", '\u{00f1}'), ("nu", '\u{03bd}'), ("oacute", '\u{00f3}'), ("ocirc", '\u{00f4}'),
    ("oelig", '\u{0153}'), ("ograve", '\u{00f2}'), ("oline", '\u{203e}'), ("omega", '\u{03c9}'),
    ("omicron", '\u{03bf}'), ("oplus", '\u{2295}'), ("or", '\u{2228}'), ("ordf", '\u{00aa}'),
    ("ordm", '\u{00ba}'), ("oslash", '\u{00f8}'), ("otilde", '\u{00f5}'), ("otimes", '\u{2297}'),
    ("ouml", '\u{00f6}'), ("para", '\u{00b6}'), ("part", '\u{2202}'), ("permil", '\u{2030}'),
    ("perp", '\u{22a5}'), ("phi", '\u{03c6}'), ("pi", '\u{03c0}'), ("piv", '\u{03d6}'),
    ("plusmn", '\u{00b1}'), ("pound", '\u{00a3}'), ("prime", '\u{2032}'), ("prod", '\u{220f}'),
    ("prop", '\u{221d}'), ("psi", '\u{03c8}'), ("quot", '"'), ("rArr", '\u{21d2}'),
    ("radic", '\u{221a}'), ("rang", '\u{27e9}'), ("raquo", '\u{00bb}'), ("rarr", '\u{2192}'),
    ("rceil", '\u{2309}'), ("rdquo", '\u{201d}'), ("real", '\u{211c}'), ("reg", '\u{00ae}'),
    ("rfloor", '\u{230b}'), ("rho", '\u{03c1}'), ("rlm", '\u{200f}'), ("rsaquo", '\u{203a}'),
    ("rsquo", '\u{2019}'), ("sbquo", '\u{201a}'), ("scaron", '\u{0161}'), ("sdot", '\u{22c5}'),
    ("sect", '\u{00a7}'), ("shy", '\u{00ad}'), ("sigma", '\u{03c3}'), ("sigmaf", '\u{03c2}'),
    ("sim", '\u{223c}'), ("spades", '\u{2660}'), ("sub", '\u{2282}'), ("sube", '\u{2286}'),
    ("sum", '\u{2211}'), ("sup", '\u{2283}'), ("sup1", '\u{00b9}'), ("sup2", '\u{00b2}'),
    ("sup3", '\u{00b3}'), ("supe", '\u{2287}'), ("szlig", '\u{00df}'), ("tau", '\u{03c4}'),
    ("there4", '\u{2234}'), ("theta", '\u{03b8}'), ("thetasym", '\u{03d1}'),
    ("thinsp", '\u{2009}'), ("thorn", '\u{00fe}'), ("tilde", '\u{02dc}'), ("times", '\u{00d7}'),
    ("trade", '\u{2122}'), ("uArr", '\u{21d1}'), ("uacute", '\u{00fa}'), ("uarr", '\u{2191}'),
    ("ucirc", '\u{00fb}'), ("ugrave", '\u{00f9}'), ("uml", '\u{00a8}'), ("upsih", '\u{03d2}'),
    ("upsilon", '\u{03c5}'), ("uuml", '\u{00fc}'), ("weierp", '\u{2118}'), ("xi", '\u{03be}'),
    ("yacute", '\u{00fd}'), ("yen", '\u{00a5}'), ("yuml", '\u{00ff}'), ("zeta", '\u{03b6}'),
    ("zwj", '\u{200d}'), ("zwnj", '\u{200c}'),
];
