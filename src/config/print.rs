//! `llmux config print`: the effective config, one key per line with its source.

use std::fmt::Write;

use super::Loaded;

/// Keys whose values are secrets: shown as a count, never as text.
const SECRET_KEYS: &[&str] = &["auth.api_keys"];

pub fn render(loaded: &Loaded) -> String {
    let value = match toml::Value::try_from(&loaded.raw) {
        Ok(value) => value,
        Err(err) => return format!("# cannot render the config: {err}\n"),
    };
    let mut out = String::new();
    let mut lines = Vec::new();
    walk(String::new(), &value, &mut lines);
    let mut section = String::new();
    for (path, value) in lines {
        let (table, key) = match path.rfind('.') {
            Some(cut) => (&path[..cut], &path[cut + 1..]),
            None => ("", path.as_str()),
        };
        if table != section {
            let _ = writeln!(out, "\n[{table}]");
            section = table.to_owned();
        }
        let shown = if SECRET_KEYS.contains(&path.as_str()) {
            let count = value.as_array().map(Vec::len).unwrap_or(0);
            format!("[{}]", vec!["\"****\""; count].join(", "))
        } else {
            value.to_string()
        };
        let source = loaded.layered.source_of(&path);
        let _ = writeln!(out, "{key} = {shown}  # {source}");
    }
    out.trim_start().to_owned()
}

fn walk(prefix: String, value: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match value {
        toml::Value::Table(table) => {
            // Plain keys first, then sub-tables, as TOML wants them.
            let (tables, plain): (Vec<_>, Vec<_>) = table.iter().partition(|(_, v)| v.is_table());
            for (key, value) in plain.into_iter().chain(tables) {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(path, value, out);
            }
        }
        _ => out.push((prefix, value.clone())),
    }
}
