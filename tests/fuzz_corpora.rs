//! Replays every saved fuzz corpus (`fuzz/corpus/<target>/`) and every kept crash
//! (`fuzz/regressions/<target>/`) through the fuzz targets' own bodies
//! (`fuzz/targets.rs`), so what the fuzzer found stays covered by an ordinary test: each
//! decoder must answer every input with `Ok` or `Err`, never a panic. Fuzzing itself is
//! `fuzz/run.sh`; this only needs the files.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on every file of `fuzz/<kind>/<name>/`; returns how many it read and
/// the inputs that panicked.
fn replay(kind: &str, name: &str, target: Target) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let inputs = files(&fuzz_dir().join(kind).join(name));
    for path in &inputs {
        let data = match std::fs::read(path) {
            Ok(data) => data,
            Err(err) => {
                failures.push(format!("{}: cannot read it: {err}", path.display()));
                continue;
            }
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: panicked: {message}", path.display()));
        }
    }
    (inputs.len(), failures)
}

#[test]
fn every_target_has_a_corpus_dir_name_here() {
    // A corpus or regression folder whose target this test does not know would be skipped.
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} belongs to no target in tests/fuzz_corpora.rs"
            );
        }
    }
}

/// Replays the corpus and the regressions of one target; a panic fails with every input
/// that caused one.
fn check(name: &str, target: Target) {
    let mut failures = Vec::new();
    let mut read = 0;
    for kind in ["corpus", "regressions"] {
        let (count, mut failed) = replay(kind, name, target);
        read += count;
        failures.append(&mut failed);
    }
    assert!(
        read > 0,
        "no saved corpus for {name} under {}",
        fuzz_dir().display()
    );
    assert!(
        failures.is_empty(),
        "{} input(s) of {name} panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// One test per target, so they run in parallel.
macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        const TARGETS: &[(&str, Target)] = &[$((stringify!($name), targets::$name)),*];
        $(
            #[test]
            fn $name() {
                check(stringify!($name), targets::$name);
            }
        )*
    };
}

replay_tests!(
    request_openai_chat,
    request_openai_responses,
    request_anthropic,
    request_gemini,
    upstream_openai_chat,
    upstream_openai_responses,
    upstream_anthropic,
    upstream_gemini,
    commands,
    config,
);
