//! The layering rule of `src/`, checked on the source text: each top-level module imports only
//! from the modules below it (so the module graph has no cycle), only `cli/` knows clap, and
//! only `cli/` and `commands/` print or draw progress.

use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up; a module may use itself and anything earlier.
const LAYERS: &[&str] = &[
    "io",
    "diffusion",
    "certify",
    "policy",
    "records",
    "audit",
    "commands",
    "cli",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs, main.rs and bin/).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    LAYERS.contains(&name).then(|| name.to_string())
}

fn rank(module: &str) -> usize {
    LAYERS.iter().position(|m| *m == module).unwrap()
}

/// Source lines with comments cut off, numbered from 1.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
}

/// Every `crate::NAME` (or `boomerang::NAME`) a line names.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    for prefix in ["crate::", "boomerang::"] {
        for (at, _) in line.match_indices(prefix) {
            let rest = &line[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in &files {
        let Some(module) = module_of(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(src).unwrap().display();
        for (number, line) in code_lines(&text) {
            for used in crate_paths(line) {
                if LAYERS.contains(&used.as_str()) && rank(&used) > rank(&module) {
                    found.push(format!(
                        "{shown}:{number}: {module} imports upward from {used}"
                    ));
                }
            }
            if module != "cli" && (line.contains("clap::") || line.contains("use clap")) {
                found.push(format!("{shown}:{number}: clap outside cli/"));
            }
            let prints = ["println!", "eprintln!", "print!(", "eprint!(", "indicatif"]
                .iter()
                .any(|p| line.contains(p));
            if prints && module != "cli" && module != "commands" {
                found.push(format!(
                    "{shown}:{number}: {module} prints (only cli/ and commands/ may)"
                ));
            }
        }
    }
    found
}

#[test]
fn modules_import_only_downward_and_only_the_top_prints() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn an_upward_import_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let io = dir.path().join("io");
    std::fs::create_dir_all(&io).unwrap();
    std::fs::write(
        io.join("a.rs"),
        "use crate::commands::anonymize; // fine here: crate::cli\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.rs"),
        "fn f() { println!(\"x\"); }\n",
    )
    .unwrap();
    let found = violations(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("io/a.rs:1: io imports upward from commands"));
    assert!(found[1].contains("policy.rs:1: policy prints"));
}
