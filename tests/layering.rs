//! Which parts of llmux may use which: the request path is layered (model < protocol <
//! pipeline and back-ends < engine < admin < front-ends), and a use that points up the
//! layers is a circle in the making. Read from the source, outside comments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/<part>` (or the file `src/<part>.rs`).
fn sources(part: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = root.join(format!("{part}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut found = Vec::new();
    let mut dirs = vec![root.join(part)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    assert!(!found.is_empty(), "no sources for {part}");
    found
}

/// The lines of `part` that use one of `forbidden` (`crate::frontend`, ...), comments aside.
fn uses(part: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in sources(part) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn nothing_below_the_front_ends_uses_them() {
    for part in [
        "engine", "admin", "pipeline", "protocol", "backend", "state", "capture", "model",
        "router", "config",
    ] {
        let found = uses(part, &["crate::frontend", "crate::server"]);
        assert!(
            found.is_empty(),
            "{part} uses the HTTP layer:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn wire_formats_and_the_pipeline_do_not_use_each_other() {
    let found = uses(
        "protocol",
        &["crate::pipeline", "crate::engine", "crate::backend"],
    );
    assert!(
        found.is_empty(),
        "protocol reaches up:\n{}",
        found.join("\n")
    );
    let found = uses("pipeline", &["crate::protocol"]);
    assert!(
        found.is_empty(),
        "pipeline knows a wire:\n{}",
        found.join("\n")
    );
    let found = uses(
        "model",
        &["crate::protocol", "crate::pipeline", "crate::engine"],
    );
    assert!(found.is_empty(), "model reaches up:\n{}", found.join("\n"));
}

#[test]
fn the_config_uses_nothing_of_the_request_path_but_settings_and_descriptors() {
    // A stage's settings type lives in the stage's file (one feature, one file), so the
    // config may name those; nothing else of the request path.
    let found = uses(
        "config",
        &[
            "crate::engine",
            "crate::protocol",
            "crate::admin",
            "crate::router",
        ],
    );
    assert!(
        found.is_empty(),
        "config reaches into the request path:\n{}",
        found.join("\n")
    );
    let backend: Vec<String> = uses("config", &["crate::backend"])
        .into_iter()
        .filter(|line| !line.contains("crate::backend::providers"))
        .collect();
    assert!(
        backend.is_empty(),
        "config uses a back-end beyond its descriptor:\n{}",
        backend.join("\n")
    );
}
