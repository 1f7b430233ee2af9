//! Config files as llm-interactive-proxy users have them: YAML (`config.yaml`) read into the
//! same table a TOML file gives, and the seed's key names that llmux spells differently
//! moved to llmux's names, each with a one-line deprecation warning naming the new key.
//! Nothing is dropped silently: a seed key llmux has no place for stays where it is, and the
//! usual unknown-key error names it.
//!
//! YAML is read by `serde-saphyr` (pure Rust, panic-free parsing, errors with line and
//! column), into JSON values first, since TOML has no null: a `null` value means "not set"
//! and is left out, as the seed reads it.

use serde_json::Value as Json;
use toml::{Table, Value};

/// Whether a config path is a YAML file (by its extension).
pub fn is_yaml(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// A YAML document as a TOML table; the error says what and where.
pub fn parse_yaml(text: &str) -> Result<Table, String> {
    if text.trim().is_empty() {
        return Ok(Table::new());
    }
    let json: Json = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    match json_to_toml(json) {
        Some(Value::Table(table)) => Ok(table),
        None => Ok(Table::new()),
        Some(other) => Err(format!(
            "the document is a {}, not a mapping of keys to values",
            other.type_str()
        )),
    }
}

/// A JSON value as TOML: nulls (and nulls in arrays) left out, integers kept integers.
fn json_to_toml(json: Json) -> Option<Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(b) => Value::Boolean(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s),
        Json::Array(items) => Value::Array(items.into_iter().filter_map(json_to_toml).collect()),
        Json::Object(fields) => Value::Table(
            fields
                .into_iter()
                .filter_map(|(k, v)| json_to_toml(v).map(|v| (k, v)))
                .collect(),
        ),
    })
}

/// The seed's per-back-end files beside a config file: `backends/NAME/backend.yaml` (or
/// `config/backends/NAME/backend.yaml`) next to it, each with the `models` of back-end NAME
/// and their `limits`. Sorted by path; empty when there are none.
pub fn backend_files(config: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let Some(dir) = config.parent() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for root in [dir.join("backends"), dir.join("config").join("backends")] {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.path().join("backend.yaml");
            if file.is_file() {
                found.push((entry.file_name().to_string_lossy().into_owned(), file));
            }
        }
    }
    found.sort();
    found
}

/// A back-end file's contents as llmux keys: `models."MODEL"` becomes
/// `models."NAME:MODEL"` (a key that already names a back-end stays as it is). Its other
/// keys are the seed's description of the back-end, configured in llmux under
/// `[backends.NAME]`: `backend_type` gets a warning saying so, anything else is an error.
pub fn backend_file_table(
    name: &str,
    text: &str,
    warnings: &mut Vec<String>,
    file: &std::path::Path,
) -> Result<Table, String> {
    let mut table = parse_yaml(text)?;
    let mut models = Table::new();
    if let Some(value) = table.remove("models") {
        let Value::Table(entries) = value else {
            return Err("models must be a mapping of model names".into());
        };
        for (model, settings) in entries {
            let key = if model.contains(':') {
                model
            } else {
                format!("{name}:{model}")
            };
            models.insert(key, settings);
        }
    }
    if table.remove("backend_type").is_some() {
        warnings.push(format!(
            "{}: backend_type is not used by llmux; configure the back-end under [backends.{name}]",
            file.display()
        ));
    }
    if let Some(key) = table.keys().next() {
        return Err(format!(
            "unknown key `{key}` (llmux reads `models` with their `limits` from back-end files)"
        ));
    }
    let mut out = Table::new();
    if !models.is_empty() {
        out.insert("models".into(), Value::Table(models));
    }
    Ok(out)
}

/// Seed keys llmux names differently: (seed path, llmux path).
const RENAMED: &[(&str, &str)] = &[
    ("logging.capture_file", "capture.file"),
    ("logging.capture_buffer_size", "capture.buffer_size"),
    ("logging.capture_flush_interval", "capture.flush_interval"),
    (
        "logging.capture_max_entries_per_flush",
        "capture.max_entries_per_flush",
    ),
    ("logging.capture_max_bytes", "capture.max_bytes"),
    ("logging.capture_max_files", "capture.max_files"),
    ("logging.capture_total_max_bytes", "capture.total_max_bytes"),
];

/// Moves the seed's keys in `table` to llmux's names; a warning for each, naming both. A
/// key set under both names keeps llmux's, and the warning says the seed's was ignored.
/// Returns the keys moved, as (seed name, llmux name).
pub fn rename_seed_keys(
    table: &mut Table,
    warnings: &mut Vec<String>,
) -> Vec<(&'static str, &'static str)> {
    let mut moved = Vec::new();
    for (old, new) in RENAMED {
        let Some(value) = take(table, old) else {
            continue;
        };
        if get(table, new).is_some() {
            warnings.push(format!(
                "{old} is the seed's name for {new}, which is set too: {old} is ignored"
            ));
            continue;
        }
        put(table, new, value);
        warnings.push(format!("{old} is deprecated: llmux calls it {new}"));
        moved.push((*old, *new));
    }
    moved
}

fn get<'t>(table: &'t Table, path: &str) -> Option<&'t Value> {
    let (parents, last) = split(path);
    let mut table = table;
    for key in parents {
        table = table.get(key)?.as_table()?;
    }
    table.get(last)
}

/// Removes the value at `path`, and the tables it leaves empty.
fn take(table: &mut Table, path: &str) -> Option<Value> {
    let keys: Vec<&str> = path.split('.').collect();
    take_keys(table, &keys)
}

fn take_keys(table: &mut Table, keys: &[&str]) -> Option<Value> {
    match keys {
        [] => None,
        [last] => table.remove(*last),
        [first, rest @ ..] => {
            let inner = table.get_mut(*first)?.as_table_mut()?;
            let value = take_keys(inner, rest)?;
            if inner.is_empty() {
                table.remove(*first);
            }
            Some(value)
        }
    }
}

fn put(table: &mut Table, path: &str, value: Value) {
    let (parents, last) = split(path);
    if let Some(table) = super::layers::table_at(table, &parents) {
        table.insert(last.to_owned(), value);
    }
}

fn split(path: &str) -> (Vec<&str>, &str) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().unwrap_or_default();
    (keys, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_becomes_the_table_toml_would_give() {
        let table = parse_yaml(
            "backends:\n  openai:\n    type: openai\ndefault_backend: openai\nproxy:\n  host: 0.0.0.0\n  port: 8000\nratio: 0.5\nexclude: null\nlist: [1, null, 2]\n",
        )
        .unwrap();
        let toml: Table = r#"
default_backend = "openai"
ratio = 0.5
list = [1, 2]
[backends.openai]
type = "openai"
[proxy]
host = "0.0.0.0"
port = 8000
"#
        .parse()
        .unwrap();
        assert_eq!(table, toml);
        assert_eq!(parse_yaml("").unwrap(), Table::new());
        assert!(
            parse_yaml("- a\n- b\n")
                .unwrap_err()
                .contains("not a mapping")
        );
        let err = parse_yaml("proxy:\n  port: [8000\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn seed_names_move_to_llmux_names_with_a_warning() {
        let mut table: Table = r#"
[logging]
level = "debug"
capture_file = "logs/wire.log"
capture_max_files = 5
[capture]
max_files = 9
"#
        .parse()
        .unwrap();
        let mut warnings = Vec::new();
        rename_seed_keys(&mut table, &mut warnings);
        assert_eq!(
            get(&table, "capture.file").unwrap().as_str(),
            Some("logs/wire.log")
        );
        assert_eq!(
            get(&table, "capture.max_files").unwrap().as_integer(),
            Some(9)
        );
        assert!(get(&table, "logging.capture_file").is_none());
        assert_eq!(
            get(&table, "logging.level").unwrap().as_str(),
            Some("debug")
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.contains(
            &"logging.capture_file is deprecated: llmux calls it capture.file".to_owned()
        ));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("logging.capture_max_files") && w.contains("ignored"))
        );
        // A logging table left empty goes.
        let mut only: Table = "[logging]\ncapture_file = \"x\"".parse().unwrap();
        rename_seed_keys(&mut only, &mut Vec::new());
        assert!(only.get("logging").is_none());
    }
}
