use std::path::{Path, PathBuf};

use boomerang::certify::CertificateKind;
use boomerang::diffusion::model_manifest::ModelManifest;
use boomerang::diffusion::scheduler::SchedulerKind;
use boomerang::policy::{
    OnFaceLost, OnFailure, OnNoFace, Policy, PolicyError, Problem, SecondOpinion, Start, Threshold,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A valid one-level policy; tests edit one line of it.
const BASE: &str = r#"version = 1
default-level = "medium"

[model]
path = "../models/tiny-sd"

[embedder]
spec = "../models/dlib-face/embedder.toml"

[feature-embedder]
spec = "../models/efficientnet-lite0/embedder.toml"

[levels.medium]
strength = 0.5
steps = 50
scheduler = "ddim"
eta = 0.0
prompt = "person"
negative-prompt = ""
guidance = 1.0
operating-point = "same-person"
max-attempts = 3
strength-step = 0.1
max-strength = 1.0
on-failure = "flag"
on-no-face = "whole-image"
rename-files = true
"#;

/// Writes `text` as `policies/p.toml` in a fresh folder and loads it.
fn load_text(text: &str) -> (tempfile::TempDir, Result<Policy, PolicyError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let path = dir.path().join("policies/p.toml");
    std::fs::write(&path, text).unwrap();
    let result = Policy::load(&path);
    (dir, result)
}

fn replace(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old}");
    BASE.replacen(old, new, 1)
}

/// The single validation problem of `text`.
fn problem(text: &str) -> Problem {
    match load_text(text).1 {
        Err(PolicyError::Invalid { problems, .. }) => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            problems.into_iter().next().unwrap()
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn shipped_policies_load_and_validate() {
    for name in ["default.toml", "demo.toml"] {
        let policy = Policy::load(&repo().join("policies").join(name)).unwrap();
        assert_eq!(
            policy.level_names(),
            ["low", "medium", "high", "max"],
            "{name}"
        );
        assert_eq!(policy.default_level, "medium");
        // The paper's four noise levels: t = 200 / 500 / 700 / 800 of 1000.
        let strengths: Vec<f64> = policy.levels.iter().map(|l| l.strength()).collect();
        assert_eq!(strengths, [0.2, 0.5, 0.7, 0.8], "{name}");
        for level in &policy.levels {
            assert_eq!(level.prompt, "person");
            assert_eq!(
                level.threshold,
                Threshold::OperatingPoint("same-person".into())
            );
            assert_eq!(level.scheduler, Some(SchedulerKind::Ddim));
            // File names identify people from medium up.
            assert_eq!(
                level.rename_files,
                level.name != "low",
                "{name} {}",
                level.name
            );
        }
        assert_eq!(
            policy.embedder.spec,
            repo()
                .canonicalize()
                .unwrap()
                .join("models/dlib-face/embedder.toml")
        );
    }
    let default = Policy::load(&repo().join("policies/default.toml")).unwrap();
    assert_eq!(default.level("medium").unwrap().steps, 50);
    assert_eq!(default.model.manifest_sha256, None);
    assert_eq!(
        default.model.export_from.as_deref(),
        Some("stable-diffusion-v1-5/stable-diffusion-v1-5")
    );
    for level in &default.levels {
        assert_eq!(level.on_failure, OnFailure::Drop);
        // A lost face is never a certificate in the shipped policy; class folders are renamed
        // wherever file names are.
        assert_eq!(level.on_face_lost, OnFaceLost::Fail);
        assert!(!level.accepts(CertificateKind::FaceLost));
        assert_eq!(level.rename_folders, level.rename_files, "{}", level.name);
    }
}

#[test]
fn on_face_lost_must_be_written_out_to_accept_and_is_checked() {
    let accepting = replace(
        "rename-files = true\n",
        "rename-files = true\non-face-lost = \"accept\"\nrename-folders = true\n",
    );
    let (_dir, result) = load_text(&accepting);
    let policy = result.unwrap();
    let level = policy.level("medium").unwrap();
    assert_eq!(level.on_face_lost, OnFaceLost::Accept);
    assert!(level.accepts(CertificateKind::FaceLost));
    assert!(level.rename_folders);
    let flagging = replace("on-no-face = \"whole-image\"", "on-no-face = \"flag\"");
    let (_dir, result) = load_text(&flagging);
    assert_eq!(
        result.unwrap().level("medium").unwrap().accepted_kinds(),
        [CertificateKind::Face]
    );
    let typo = replace(
        "rename-files = true\n",
        "rename-files = true\non-face-lost = \"ignore\"\n",
    );
    let p = problem(&typo);
    assert_eq!(
        (p.table.as_str(), p.key.as_str()),
        ("levels.medium", "on-face-lost")
    );
    assert!(
        p.message.contains("\"fail\" or \"accept\""),
        "{}",
        p.message
    );
}

#[test]
fn whole_image_certificates_need_a_feature_embedder_and_second_opinions_are_listed() {
    let without = replace(
        "[feature-embedder]\nspec = \"../models/efficientnet-lite0/embedder.toml\"\n",
        "",
    );
    let p = problem(&without);
    assert_eq!(
        (p.table.as_str(), p.key.as_str()),
        ("levels.medium", "on-no-face")
    );
    assert!(p.message.contains("[feature-embedder]"), "{}", p.message);
    // Without whole-image certificates no feature embedder is needed.
    let skipping = without.replace("on-no-face = \"whole-image\"", "on-no-face = \"skip\"");
    let (_dir, result) = load_text(&skipping);
    assert_eq!(result.unwrap().feature_embedder, None);

    let with_opinions = format!(
        "{BASE}\n[[second-opinion]]\nspec = \"../models/mobilefacenet/embedder.toml\"\n\n[[second-opinion]]\nspec = \"other.toml\"\noperating-point = \"strict\"\n"
    );
    let (dir, result) = load_text(&with_opinions);
    let policy = result.unwrap();
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(
        policy.second_opinions,
        [
            SecondOpinion {
                spec: root.join("models/mobilefacenet/embedder.toml"),
                operating_point: None
            },
            SecondOpinion {
                spec: root.join("policies/other.toml"),
                operating_point: Some("strict".into())
            }
        ]
    );
    assert_eq!(
        policy.feature_embedder.unwrap().spec,
        root.join("models/efficientnet-lite0/embedder.toml")
    );
}

#[test]
fn demo_policy_pins_the_bundled_tiny_model() {
    let demo = Policy::load(&repo().join("policies/demo.toml")).unwrap();
    let tiny = repo().canonicalize().unwrap().join("models/tiny-sd");
    assert_eq!(demo.model.path, tiny);
    let hash = ModelManifest::compute(&tiny).unwrap().model_hash();
    assert_eq!(demo.model.manifest_sha256.as_deref(), Some(hash.as_str()));
    assert_eq!(demo.level("low").unwrap().steps, 10);
}

#[test]
fn base_policy_parses_every_field() {
    let (dir, result) = load_text(BASE);
    let policy = result.unwrap();
    let level = policy.level("medium").unwrap();
    assert_eq!(level.start, Start::Strength(0.5));
    assert_eq!(level.steps, 50);
    assert_eq!(level.eta, 0.0);
    assert_eq!(level.negative_prompt, "");
    assert_eq!(level.guidance, 1.0);
    assert_eq!(level.max_attempts, 3);
    assert_eq!(level.on_failure, OnFailure::Flag);
    assert_eq!(level.on_no_face, OnNoFace::WholeImage);
    assert!(level.rename_files);
    // Optional keys: a lost face fails, folders keep their names.
    assert_eq!(level.on_face_lost, OnFaceLost::Fail);
    assert!(!level.rename_folders);
    assert_eq!(
        level.accepted_kinds(),
        [CertificateKind::Face, CertificateKind::WholeImage]
    );
    let root = dir.path().canonicalize().unwrap();
    assert_eq!(policy.source, root.join("policies/p.toml"));
    assert_eq!(policy.version, 1);
}

#[test]
fn relative_paths_resolve_against_the_policy_folder_not_the_working_directory() {
    let text = replace(
        "path = \"../models/tiny-sd\"",
        "path = \"./sub/../m\"\nmanifest-sha256 = \"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\"",
    )
    .replace(
        "spec = \"../models/dlib-face/embedder.toml\"",
        "spec = \"/opt/embedders/e.toml\"",
    );
    let (dir, result) = load_text(&text);
    let policy = result.unwrap();
    let folder = dir.path().canonicalize().unwrap().join("policies");
    // Leading `..` fold into the canonical folder; later ones stay as written.
    assert_eq!(policy.model.path, folder.join("sub/../m"));
    assert_eq!(policy.embedder.spec, Path::new("/opt/embedders/e.toml"));
    assert_eq!(
        policy.model.manifest_sha256.as_deref(),
        Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
    );

    let (dir, result) = load_text(BASE);
    assert_eq!(
        result.unwrap().model.path,
        dir.path().canonicalize().unwrap().join("models/tiny-sd")
    );
}

#[test]
fn sha256_is_the_hash_of_the_file_bytes_and_stable() {
    let (dir, first) = load_text(BASE);
    let first = first.unwrap();
    let again = Policy::load(&dir.path().join("policies/p.toml")).unwrap();
    assert_eq!(first.sha256, again.sha256);
    let expected =
        boomerang::io::hashing::sha256_file(&dir.path().join("policies/p.toml")).unwrap();
    assert_eq!(first.sha256, expected);
    // A comment changes the bytes, so the report's policy hash changes too.
    let (_dir, commented) = load_text(&format!("# reviewed\n{BASE}"));
    assert_ne!(commented.unwrap().sha256, first.sha256);
}

#[test]
fn unknown_key_names_the_file_line_and_column() {
    let text = replace("guidance = 1.0\n", "guidance = 1.0\nguidance-scale = 7.5\n");
    let (dir, result) = load_text(&text);
    let error = result.unwrap_err();
    let PolicyError::Invalid { path, problems } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(path, &dir.path().join("policies/p.toml"));
    let [typo] = problems.as_slice() else {
        panic!("{problems:?}");
    };
    assert_eq!(
        (typo.line, typo.column),
        (line_of(&text, "guidance-scale"), 1)
    );
    assert_eq!(
        (typo.table.as_str(), typo.key.as_str()),
        ("levels.medium", "guidance-scale")
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "{}:{}:1: [levels.medium] `guidance-scale`: unknown key",
            path.display(),
            typo.line
        )),
        "{message}"
    );

    // Unknown keys are rejected in every table, including the top level and [model].
    for (old, new, key) in [
        ("version = 1\n", "version = 1\nlevel = \"x\"\n", "level"),
        ("[model]\n", "[model]\nsha = \"x\"\n", "sha"),
        (
            "[embedder]\n",
            "[embedder]\n  threshold = 0.6\n",
            "threshold",
        ),
    ] {
        let text = replace(old, new);
        let found = problem(&text);
        assert_eq!(found.key, key);
        assert_eq!(
            found.line,
            line_of(&text, new.lines().last().unwrap()),
            "{key}"
        );
    }
}

#[test]
fn typos_are_reported_with_every_other_problem_at_once() {
    // Two unknown keys in two tables and a value out of range: one error lists all three.
    let text = replace("guidance = 1.0\n", "guidance = 1.0\nguidance-scale = 7.5\n")
        .replacen("[model]\n", "[model]\nsha = \"x\"\n", 1)
        .replacen("steps = 50", "steps = 0", 1);
    let problems = match load_text(&text).1 {
        Err(PolicyError::Invalid { problems, .. }) => problems,
        other => panic!("{other:?}"),
    };
    let keys: Vec<(&str, &str, usize)> = problems
        .iter()
        .map(|p| (p.table.as_str(), p.key.as_str(), p.line))
        .collect();
    assert_eq!(
        keys,
        [
            ("model", "sha", line_of(&text, "sha = ")),
            (
                "levels.medium",
                "guidance-scale",
                line_of(&text, "guidance-scale")
            ),
            ("levels.medium", "steps", line_of(&text, "steps = 0")),
        ],
        "{problems:?}"
    );
}

#[test]
fn syntax_and_type_errors_carry_the_line() {
    let text = replace("steps = 50", "steps = \"fifty\"");
    match load_text(&text).1 {
        Err(PolicyError::Parse { line, .. }) => assert_eq!(line, line_of(&text, "fifty")),
        other => panic!("{other:?}"),
    }
    let text = replace("prompt = \"person\"", "prompt = \"person");
    match load_text(&text).1 {
        Err(PolicyError::Parse { line, .. }) => assert_eq!(line, line_of(&text, "prompt = ")),
        other => panic!("{other:?}"),
    }
    // A missing key names itself.
    let text = replace("rename-files = true\n", "");
    let error = load_text(&text).1.unwrap_err().to_string();
    assert!(error.contains("rename-files"), "{error}");
}

#[test]
fn other_versions_are_refused_with_the_supported_list() {
    let text = replace("version = 1", "version = 2");
    let error = load_text(&text).1.unwrap_err();
    assert!(
        matches!(error, PolicyError::Version { line: 1, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("version 2 is not supported"), "{message}");
    assert!(message.contains("reads version 1"), "{message}");

    // Checked before the schema: a v2 file with renamed keys still gets the version message.
    let text = format!(
        "{}\nnew-v2-key = true\n",
        replace("version = 1", "version = 2")
    );
    assert!(matches!(
        load_text(&text).1,
        Err(PolicyError::Version { .. })
    ));

    let text = replace("version = 1\n", "");
    let message = load_text(&text).1.unwrap_err().to_string();
    assert!(message.contains("missing top-level `version`"), "{message}");
}

#[test]
fn each_range_violation_names_file_level_key_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "strength = 0.5",
            "strength = 1.5",
            "strength",
            "outside 0..=1",
        ),
        (
            "strength = 0.5",
            "strength = -0.1",
            "strength",
            "outside 0..=1",
        ),
        (
            "strength = 0.5",
            "strength = nan",
            "strength",
            "outside 0..=1",
        ),
        (
            "strength = 0.5",
            "strength = 0.01",
            "strength",
            "0 denoising steps",
        ),
        (
            "strength = 0.5",
            "strength = 0.1234567",
            "strength",
            "6 decimal places",
        ),
        (
            "strength = 0.5",
            "start-timestep = 0",
            "start-timestep",
            "outside 1..=1000",
        ),
        (
            "strength = 0.5",
            "start-timestep = 1001",
            "start-timestep",
            "outside 1..=1000",
        ),
        ("steps = 50", "steps = 0", "steps", "outside 1..=1000"),
        ("steps = 50", "steps = -3", "steps", "outside 1..=1000"),
        (
            "scheduler = \"ddim\"",
            "scheduler = \"lms\"",
            "scheduler",
            "euler-ancestral",
        ),
        ("eta = 0.0", "eta = -0.5", "eta", ">= 0"),
        ("guidance = 1.0", "guidance = -1.0", "guidance", ">= 0"),
        ("guidance = 1.0", "guidance = inf", "guidance", "finite"),
        (
            "negative-prompt = \"\"",
            "negative-prompt = \"the original face\"",
            "negative-prompt",
            "used only with guidance > 1",
        ),
        (
            "operating-point = \"same-person\"",
            "threshold = 0.0",
            "threshold",
            "> 0",
        ),
        (
            "operating-point = \"same-person\"",
            "threshold = -0.6",
            "threshold",
            "> 0",
        ),
        (
            "operating-point = \"same-person\"",
            "operating-point = \" \"",
            "operating-point",
            "operating point",
        ),
        (
            "max-attempts = 3",
            "max-attempts = 0",
            "max-attempts",
            "outside 1..=10",
        ),
        (
            "max-attempts = 3",
            "max-attempts = 11",
            "max-attempts",
            "outside 1..=10",
        ),
        (
            "strength-step = 0.1",
            "strength-step = 0.0",
            "strength-step",
            "(0, 1]",
        ),
        (
            "strength-step = 0.1",
            "strength-step = 1.5",
            "strength-step",
            "(0, 1]",
        ),
        (
            "max-strength = 1.0",
            "max-strength = 0.4",
            "max-strength",
            "0.5..=1",
        ),
        (
            "max-strength = 1.0",
            "max-strength = 1.1",
            "max-strength",
            "0.5..=1",
        ),
        (
            "on-failure = \"flag\"",
            "on-failure = \"ignore\"",
            "on-failure",
            "\"drop\" or \"flag\"",
        ),
        (
            "on-no-face = \"whole-image\"",
            "on-no-face = \"crop\"",
            "on-no-face",
            "\"skip\"",
        ),
    ];
    for (old, new, key, message) in cases {
        let text = replace(old, new);
        let problem = problem(&text);
        assert_eq!(problem.level(), Some("medium"), "{new}");
        assert_eq!(problem.key, *key, "{new}");
        assert!(
            problem.message.contains(message),
            "{new}: {}",
            problem.message
        );
        assert_eq!(problem.line, line_of(&text, new), "{new}");
        let (dir, result) = load_text(&text);
        let shown = result.unwrap_err().to_string();
        let file = dir.path().join("policies/p.toml");
        assert!(
            shown.contains(&format!("{}:{}:", file.display(), problem.line)),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("[levels.medium] `{key}`")),
            "{shown}"
        );
    }
}

#[test]
fn keep_original_is_rejected_with_the_reason() {
    let problem = problem(&replace(
        "on-failure = \"flag\"",
        "on-failure = \"keep-original\"",
    ));
    assert_eq!(problem.key, "on-failure");
    assert!(
        problem.message.contains("identifiable input"),
        "{}",
        problem.message
    );
}

#[test]
fn eta_only_with_ddim() {
    let problem = problem(&replace("scheduler = \"ddim\"", "scheduler = \"pndm\""));
    assert_eq!(problem.key, "eta");
    assert!(
        problem.message.contains("only allowed with"),
        "{}",
        problem.message
    );
    // Without eta, any scheduler (or none: the model's own) is fine.
    let text = replace("eta = 0.0\n", "").replace("scheduler = \"ddim\"\n", "");
    let policy = load_text(&text).1.unwrap();
    let level = policy.level("medium").unwrap();
    assert_eq!(level.scheduler, None);
    assert_eq!(level.eta, 0.0);
}

#[test]
fn exactly_one_of_strength_and_start_timestep() {
    let both = problem(&replace(
        "strength = 0.5",
        "strength = 0.5\nstart-timestep = 500",
    ));
    assert!(both.message.contains("not both"), "{}", both.message);
    let neither = problem(&replace("strength = 0.5\n", ""));
    assert_eq!(neither.level(), Some("medium"));
    assert!(
        neither.message.contains("start-timestep"),
        "{}",
        neither.message
    );

    let policy = load_text(&replace("strength = 0.5", "start-timestep = 700"))
        .1
        .unwrap();
    let level = policy.level("medium").unwrap();
    assert_eq!(level.start, Start::Timestep(700));
    assert_eq!(level.strength(), 0.7);
}

#[test]
fn exactly_one_of_operating_point_and_threshold() {
    let both = problem(&replace(
        "guidance = 1.0",
        "guidance = 1.0\nthreshold = 0.5",
    ));
    assert!(both.message.contains("not both"), "{}", both.message);
    let neither = problem(&replace("operating-point = \"same-person\"\n", ""));
    assert!(neither.message.contains("threshold"), "{}", neither.message);
    let policy = load_text(&replace(
        "operating-point = \"same-person\"",
        "threshold = 0.55",
    ))
    .1
    .unwrap();
    assert_eq!(
        policy.level("medium").unwrap().threshold,
        Threshold::Value(0.55)
    );
}

#[test]
fn top_level_and_model_problems_are_located() {
    let problem_ = problem(&replace(
        "default-level = \"medium\"",
        "default-level = \"mid\"",
    ));
    assert_eq!(
        (problem_.table.as_str(), problem_.key.as_str()),
        ("", "default-level")
    );
    assert!(problem_.message.contains("medium"), "{}", problem_.message);

    let text = replace("[model]\n", "[model]\nmanifest-sha256 = \"abc\"\n");
    let problem_ = problem(&text);
    assert_eq!(problem_.table, "model");
    assert_eq!(problem_.key, "manifest-sha256");
    assert_eq!(problem_.line, line_of(&text, "abc"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = replace("steps = 50", "steps = 0").replace("guidance = 1.0", "guidance = -2.0");
    match load_text(&text).1 {
        Err(PolicyError::Invalid { problems, .. }) => {
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, ["steps", "guidance"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_level_lists_the_available_ones_in_file_order() {
    let policy = Policy::load(&repo().join("policies/default.toml")).unwrap();
    let message = policy.level("extreme").unwrap_err().to_string();
    assert!(message.contains("no level `extreme`"), "{message}");
    assert!(message.contains("low, medium, high, max"), "{message}");
}

#[test]
fn escalation_raises_strength_exactly_and_caps_it() {
    let policy = Policy::load(&repo().join("policies/default.toml")).unwrap();
    let high = policy.level("high").unwrap();
    // 0.7 + 0.1 in f64 is 0.7999999999999999; int(50 x that) would run 39 steps, not 40.
    assert_eq!(high.strength_for_attempt(0), 0.7);
    assert_eq!(high.strength_for_attempt(1), 0.8);
    assert_eq!((50.0 * high.strength_for_attempt(1)) as usize, 40);
    assert_eq!(high.strength_for_attempt(2), 0.9);
    assert_eq!(high.strength_for_attempt(3), 0.9, "capped at max-strength");
    assert_eq!(high.strength_for_attempt(u32::MAX), 0.9);

    let (_dir, result) = load_text(&replace("strength = 0.5", "start-timestep = 200"));
    let level = result.unwrap();
    let level = level.level("medium").unwrap();
    assert_eq!(level.strength_for_attempt(0), 0.2);
    assert_eq!(level.strength_for_attempt(1), 0.3);
    assert_eq!(level.strength_for_attempt(8), 1.0);
    assert_eq!(level.strength_for_attempt(9), 1.0);
}

#[test]
fn lcm_levels_denoise_at_any_strength_above_zero() {
    // LCM runs all its steps, spread below the strength: 4 steps at 0.2 start at t = 199.
    let lcm = replace(
        "strength = 0.5\nsteps = 50\nscheduler = \"ddim\"\neta = 0.0\n",
        "strength = 0.2\nsteps = 4\nscheduler = \"lcm\"\n",
    );
    let (_dir, result) = load_text(&lcm);
    let json = serde_json::to_value(result.unwrap().level("medium").unwrap()).unwrap();
    assert_eq!(json["scheduler"], "lcm");
    let p = problem(&lcm.replacen("strength = 0.2", "strength = 0.0", 1));
    assert!(p.message.contains("0 denoising steps"), "{}", p.message);
    // The other schedulers keep diffusers' img2img rule: int(4 x 0.2) = 0.
    let ddim = replace("strength = 0.5\nsteps = 50", "strength = 0.2\nsteps = 4");
    assert!(problem(&ddim).message.contains("int(4 x 0.2) = 0"));
}

#[test]
fn run_json_writes_the_scheduler_as_the_policy_spells_it() {
    let (_dir, result) = load_text(&replace(
        "scheduler = \"ddim\"\neta = 0.0\n",
        "scheduler = \"euler-ancestral\"\n",
    ));
    let policy = result.unwrap();
    let json = serde_json::to_value(policy.level("medium").unwrap()).unwrap();
    assert_eq!(json["scheduler"], "euler-ancestral");
    let (_dir, result) = load_text(&replace("scheduler = \"ddim\"\neta = 0.0\n", ""));
    let json = serde_json::to_value(result.unwrap().level("medium").unwrap()).unwrap();
    assert_eq!(json["scheduler"], serde_json::Value::Null);
}

#[test]
fn read_errors_keep_their_cause_as_the_source() {
    use std::error::Error;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let error = Policy::load(&missing).unwrap_err();
    assert!(matches!(error, PolicyError::Io { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&missing.display().to_string()));
    let source = error.source().expect("the io::Error");
    assert!(source.downcast_ref::<std::io::Error>().is_some());

    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"version = 1\n# \xff\n").unwrap();
    let error = Policy::load(&binary).unwrap_err();
    assert!(error.to_string().contains("not UTF-8"), "{error}");
    assert!(error.source().is_some());
}

#[test]
fn eta_is_within_0_to_1() {
    // DDIM interpolates between the deterministic ODE (0) and DDPM's ancestral noise (1); the
    // scheduler refuses anything above 1, so the policy must too, at load time.
    for new in ["eta = 1.5", "eta = 1e30", "eta = inf"] {
        let text = replace("eta = 0.0", new);
        let problem = problem(&text);
        assert_eq!(problem.key, "eta", "{new}");
        assert!(
            problem.message.contains("0..=1"),
            "{new}: {}",
            problem.message
        );
        assert_eq!(problem.line, line_of(&text, new), "{new}");
    }
    let policy = load_text(&replace("eta = 0.0", "eta = 1.0")).1.unwrap();
    assert_eq!(policy.level("medium").unwrap().eta, 1.0);
}

#[test]
fn guidance_is_bounded() {
    // 1e30 used to load, and then produced flat single-colour images.
    for new in ["guidance = 1e30", "guidance = 30.5", "guidance = 1000.0"] {
        let text = replace("guidance = 1.0", new);
        let problem = problem(&text);
        assert_eq!(problem.key, "guidance", "{new}");
        assert!(
            problem.message.contains("0..=30"),
            "{new}: {}",
            problem.message
        );
        assert_eq!(problem.line, line_of(&text, new), "{new}");
    }
    for (new, value) in [("guidance = 30.0", 30.0), ("guidance = 0.0", 0.0)] {
        let policy = load_text(&replace("guidance = 1.0", new)).1.unwrap();
        assert_eq!(policy.level("medium").unwrap().guidance, value, "{new}");
    }
}

#[test]
fn the_few_step_lcm_policy_keeps_the_papers_levels_in_four_steps() {
    let policy = Policy::load(&repo().join("policies/lcm.toml")).unwrap();
    assert_eq!(policy.level_names(), ["low", "medium", "high", "max"]);
    let strengths: Vec<f64> = policy.levels.iter().map(|l| l.strength()).collect();
    assert_eq!(strengths, [0.2, 0.5, 0.7, 0.8]);
    for level in &policy.levels {
        assert_eq!(level.scheduler, Some(SchedulerKind::Lcm), "{}", level.name);
        assert_eq!((level.steps, level.guidance), (4, 1.0), "{}", level.name);
        assert_eq!(
            level.threshold,
            Threshold::OperatingPoint("same-person".into())
        );
    }
    // Found by name like the other shipped policies.
    assert_eq!(
        Policy::load(std::path::Path::new("lcm")).unwrap().source,
        repo().join("policies/lcm.toml").canonicalize().unwrap()
    );
}

#[test]
fn the_turbo_policy_keeps_the_papers_levels_in_ten_trailing_euler_steps() {
    let policy = Policy::load(std::path::Path::new("turbo")).unwrap();
    assert_eq!(
        policy.source,
        repo().join("policies/turbo.toml").canonicalize().unwrap()
    );
    let strengths: Vec<f64> = policy.levels.iter().map(|l| l.strength()).collect();
    assert_eq!(strengths, [0.2, 0.5, 0.7, 0.8]);
    for level in &policy.levels {
        assert_eq!(
            level.scheduler,
            Some(SchedulerKind::EulerAncestral),
            "{}",
            level.name
        );
        assert_eq!((level.steps, level.guidance), (10, 1.0), "{}", level.name);
    }
}
