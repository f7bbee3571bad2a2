//! ClipTokenizer against transformers' CLIPTokenizer (tests/fixtures/tokenizer_cases.json, from
//! tools/make_tokenizer_fixtures.py) and its error reporting.

use std::fs;
use std::path::{Path, PathBuf};

use boomerang::diffusion::tokenizer::{clean_text, ClipTokenizer, TokenizerError};
use serde_json::Value;

fn vocab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-sd/tokenizer")
}

fn fixtures() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_cases.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// A tokenizer folder with the shared vocab/merges and the given config files.
fn folder_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["vocab.json", "merges.txt"] {
        fs::copy(vocab_dir().join(name), dir.path().join(name)).unwrap();
    }
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn variant_folder(fixtures: &Value, variant: &str) -> tempfile::TempDir {
    let files: Vec<(&str, &str)> = fixtures["variants"][variant]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str().unwrap()))
        .collect();
    folder_with(&files)
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

const ASTRONAUT: [i64; 10] = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407];

#[test]
fn every_fixture_case_matches_transformers() {
    let fixtures = fixtures();
    let cases = fixtures["cases"].as_array().unwrap();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for variant in fixtures["variants"].as_object().unwrap().keys() {
        let folder = variant_folder(&fixtures, variant);
        let tokenizer = ClipTokenizer::from_dir(folder.path()).unwrap();
        let variant_cases: Vec<&Value> = cases
            .iter()
            .filter(|c| c["variant"] == variant.as_str())
            .collect();
        assert!(!variant_cases.is_empty(), "variant {variant} has no cases");
        for case in variant_cases {
            let prompt = case["prompt"].as_str().unwrap();
            let expected = ids(&case["ids"]);
            let actual = tokenizer.encode(prompt);
            if actual != expected {
                mismatches.push(format!(
                    "[{variant}] {prompt:?}\n  expected {expected:?}\n  actual   {actual:?}"
                ));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len(), "some cases name an unknown variant");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cases differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn clean_text_matches_ftfy_cleanup() {
    let fixtures = fixtures();
    let cases = fixtures["clean_cases"].as_array().unwrap();
    assert!(
        cases.len() > 400,
        "clean cases should cover every HTML 4 entity"
    );
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let text = case["text"].as_str().unwrap();
            let expected = case["clean"].as_str().unwrap();
            let actual = clean_text(text);
            (actual != expected).then(|| format!("{text:?}: expected {expected:?}, got {actual:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn tiny_sd_tokenizer_folder_encodes_the_astronaut_prompt() {
    let tokenizer = ClipTokenizer::from_dir(&vocab_dir()).unwrap();
    let ids = tokenizer.encode("a photo of an astronaut riding a horse");
    assert_eq!(ids.len(), 77);
    assert_eq!(&ids[..10], &ASTRONAUT);
    assert!(
        ids[10..].iter().all(|&id| id == 49407),
        "SD 1.x pads with <|endoftext|>: {ids:?}"
    );
    assert_eq!(
        (tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id()),
        (49406, 49407, 49407)
    );
}

#[test]
fn without_config_files_clip_defaults_apply() {
    let folder = folder_with(&[]);
    let tokenizer = ClipTokenizer::from_dir(folder.path()).unwrap();
    assert_eq!(tokenizer.max_length(), 77);
    let ids = tokenizer.encode("a photo of an astronaut riding a horse");
    assert_eq!(&ids[..10], &ASTRONAUT);
    assert_eq!(ids.len(), 77);
    assert_eq!(tokenizer.pad_id(), 49407);
}

#[test]
fn config_lengths_and_pad_tokens_are_read() {
    let fixtures = fixtures();
    let sd2 = ClipTokenizer::from_dir(variant_folder(&fixtures, "sd2").path()).unwrap();
    assert_eq!((sd2.max_length(), sd2.pad_id()), (77, 0));
    let short = ClipTokenizer::from_dir(variant_folder(&fixtures, "short").path()).unwrap();
    assert_eq!(short.max_length(), 16);
    assert_eq!(short.encode("").len(), 16);
}

fn error_of(folder: &Path) -> TokenizerError {
    ClipTokenizer::from_dir(folder).unwrap_err()
}

#[test]
fn missing_vocab_names_the_path() {
    let folder = folder_with(&[]);
    fs::remove_file(folder.path().join("vocab.json")).unwrap();
    let message = error_of(folder.path()).to_string();
    let path = folder.path().join("vocab.json");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("cannot read"), "{message}");
}

#[test]
fn missing_merges_names_the_path() {
    let folder = folder_with(&[]);
    fs::remove_file(folder.path().join("merges.txt")).unwrap();
    let message = error_of(folder.path()).to_string();
    assert!(
        message.contains(&folder.path().join("merges.txt").display().to_string()),
        "{message}"
    );
}

#[test]
fn invalid_vocab_json_is_reported_with_its_path() {
    let folder = folder_with(&[]);
    fs::write(folder.path().join("vocab.json"), "{\"a\": 1,").unwrap();
    let error = error_of(folder.path());
    assert!(matches!(error, TokenizerError::Json { .. }), "{error:?}");
    assert!(error.to_string().contains("vocab.json"), "{error}");

    fs::write(folder.path().join("vocab.json"), "{\"a\": \"one\"}").unwrap();
    assert!(matches!(
        error_of(folder.path()),
        TokenizerError::Json { .. }
    ));
}

#[test]
fn malformed_merge_line_is_reported_with_its_line_number() {
    let folder = folder_with(&[]);
    fs::write(
        folder.path().join("merges.txt"),
        "#version: 0.2\ni n\nt h e\na b\n",
    )
    .unwrap();
    let error = error_of(folder.path());
    match &error {
        TokenizerError::MergeLine { path, line, text } => {
            assert_eq!(path, &folder.path().join("merges.txt"));
            assert_eq!((*line, text.as_str()), (3, "t h e"));
        }
        other => panic!("expected MergeLine, got {other:?}"),
    }
    assert!(error.to_string().contains("merges.txt line 3"), "{error}");
}

#[test]
fn pad_token_outside_the_vocab_is_rejected() {
    let config = r#"{"pad_token": "<pad>", "model_max_length": 77}"#;
    let folder = folder_with(&[("tokenizer_config.json", config)]);
    let message = error_of(folder.path()).to_string();
    assert!(message.contains("tokenizer_config.json"), "{message}");
    assert!(message.contains("pad_token \"<pad>\""), "{message}");
}

#[test]
fn special_tokens_map_overrides_a_legacy_config() {
    let folder = folder_with(&[
        (
            "tokenizer_config.json",
            r#"{"pad_token": "<|endoftext|>", "model_max_length": 77}"#,
        ),
        ("special_tokens_map.json", r#"{"pad_token": "!"}"#),
    ]);
    let tokenizer = ClipTokenizer::from_dir(folder.path()).unwrap();
    assert_eq!(tokenizer.pad_id(), 0);
}

#[test]
fn unusable_model_max_length_is_rejected() {
    for bad in ["1", "-5", "\"77\"", "77.5"] {
        let config = format!(r#"{{"model_max_length": {bad}}}"#);
        let folder = folder_with(&[("tokenizer_config.json", &config)]);
        let message = error_of(folder.path()).to_string();
        assert!(message.contains("model_max_length"), "{bad}: {message}");
    }
}

#[test]
fn bad_special_token_value_is_rejected() {
    let folder = folder_with(&[(
        "tokenizer_config.json",
        r#"{"eos_token": {"lstrip": false}}"#,
    )]);
    let message = error_of(folder.path()).to_string();
    assert!(
        message.contains("eos_token") && message.contains("content"),
        "{message}"
    );
}
