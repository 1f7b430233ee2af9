//! The protocol fixture cases under `tests/fixtures/<set>/<case>/`: finding them, reading
//! their files, and running a set of checks over every case.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A check of one case: `Ok(false)` when the case holds none of the files it reads.
pub type Check = fn(&Path) -> Result<bool, String>;

pub fn fixtures_dir(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
}

/// The case directories of a set, sorted by name.
pub fn case_dirs(set: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(fixtures_dir(set))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// A file's text; `None` when the case does not have it.
pub fn read_text(path: &Path) -> Result<Option<String>, String> {
    if !path.exists() {
        return Ok(None);
    }
    fs::read_to_string(path)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn read_json(path: &Path) -> Result<Option<Value>, String> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))
}

pub fn require(case: &Path, file: &str) -> Result<Value, String> {
    read_json(&case.join(file))?.ok_or_else(|| format!("missing {file}"))
}

/// The payloads of the `data:` lines of an SSE file, in order.
pub fn read_sse_data(path: &Path) -> Result<Option<Vec<String>>, String> {
    Ok(read_text(path)?.map(|text| sse_payloads(&text)))
}

pub fn sse_payloads(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|payload| payload.trim().to_owned())
        .collect()
}

/// Runs `checks` (request, response, stream) over every case of `set`, which must hold at
/// least `min_cases`; fails once, listing every failing case.
pub fn check_cases(set: &str, min_cases: usize, checks: &[(&str, Check)]) {
    let cases = case_dirs(set);
    assert!(
        cases.len() >= min_cases,
        "expected the {set} fixture cases under {}",
        fixtures_dir(set).display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let mut checked = 0;
        for (what, check) in checks {
            match check(case) {
                Ok(true) => checked += 1,
                Ok(false) => {}
                Err(e) => failures.push(format!("=== case `{name}` ({what}) ===\n{e}")),
            }
        }
        if checked == 0 && failures.is_empty() {
            failures.push(format!(
                "=== case `{name}` ===\nholds no request.json, response.json or upstream.sse"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
