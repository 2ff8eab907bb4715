//! Tidy checks: conventions and architecture invariants that a test can
//! enforce (see docs/architecture.md and ../shared/STYLE.md).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == "node_modules" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["protocol", "server", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {files:?}");
    files
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap_or_default().trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a leading //! paragraph: {missing:?}");
}

#[test]
fn no_mod_rs_files() {
    let found: Vec<_> = all_rust_files().into_iter().filter(|f| f.ends_with("mod.rs")).collect();
    assert!(found.is_empty(), "use foo.rs + foo/bar.rs instead of mod.rs: {found:?}");
}

#[test]
fn core_and_protocol_do_no_io() {
    // Invariant 2: weft-core does no network I/O; weft-protocol no I/O at all.
    for (krate, banned) in [
        ("server/core/Cargo.toml", &["tokio", "axum", "tungstenite", "rusqlite", "hyper"][..]),
        ("protocol/Cargo.toml", &["tokio", "axum", "tungstenite", "rusqlite", "hyper", "yrs"][..]),
    ] {
        let manifest = std::fs::read_to_string(root().join(krate)).unwrap_or_default();
        let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
        let deps = deps.split("\n[").next().unwrap_or_default();
        for dep in banned {
            assert!(!deps.contains(dep), "{krate} must not depend on {dep}");
        }
    }
}

#[test]
fn only_the_protocol_crate_defines_wire_enums() {
    // Invariant 1: serde-tagged wire enums live in weft-protocol.
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|f| !f.starts_with(root().join("protocol")) && !f.starts_with(root().join("tests")))
        .filter(|f| std::fs::read_to_string(f).unwrap_or_default().contains("#[serde(tag ="))
        .collect();
    assert!(offenders.is_empty(), "wire types outside weft-protocol: {offenders:?}");
}

#[test]
fn protocol_doc_covers_every_code_and_frame() {
    let doc = std::fs::read_to_string(root().join("docs/protocol.md")).unwrap_or_default();
    let control = std::fs::read_to_string(root().join("protocol/src/control.rs")).unwrap_or_default();
    // Every ErrorCode variant, by wire name (snake_case of the variant).
    let codes = control.split("pub enum ErrorCode").nth(1).unwrap_or_default();
    let codes = codes.split("\n}").next().unwrap_or_default();
    let mut names = Vec::new();
    for line in codes.lines().map(str::trim) {
        if let Some(variant) = line.strip_suffix(',').filter(|v| v.chars().all(char::is_alphanumeric)) {
            let mut snake = String::new();
            for (i, c) in variant.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            names.push(snake);
        }
    }
    assert!(names.len() >= 10, "parsed {names:?}");
    names.extend(["auth", "unsubscribe", "welcome", "error", "ack", "kick"].map(String::from));
    let missing: Vec<_> = names.iter().filter(|n| !doc.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "docs/protocol.md does not mention {missing:?}");
}

#[test]
fn readme_and_ci_run_the_same_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap_or_default();
    assert!(readme.contains("bash scripts/test"), "README must show the test command");
    assert!(ci.contains("bash scripts/test"), ".ci/run must run the README's test command");
    assert!(readme.contains("cargo run --release --bin weft -- hub"), "README must show how to run the hub");
}
