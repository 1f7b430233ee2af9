//! `llmux config print`: the effective config, one key per line with its source.

use std::fmt::Write;

use super::Loaded;

/// Keys whose values are secrets: shown as a count, never as text.
const SECRET_KEYS: &[&str] = &["auth.api_keys"];

/// One effective value: its dotted key, its value (secrets masked) and where it came from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: toml::Value,
    pub source: super::layers::Source,
}

/// Every effective value, tables in TOML order, secrets masked.
pub fn entries(loaded: &Loaded) -> Result<Vec<Entry>, String> {
    let value = toml::Value::try_from(&loaded.raw).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    walk(String::new(), &value, &mut lines);
    Ok(lines
        .into_iter()
        .map(|(key, value)| {
            let value = if SECRET_KEYS.contains(&key.as_str()) {
                let count = value.as_array().map(Vec::len).unwrap_or(0);
                toml::Value::Array(vec![toml::Value::String("****".into()); count])
            } else if key == "state.url"
                && let Some(url) = value.as_str()
            {
                toml::Value::String(super::url_without_password(url))
            } else {
                value
            };
            let source = loaded.layered.source_of(&key);
            Entry { key, value, source }
        })
        .collect())
}

pub fn render(loaded: &Loaded) -> String {
    let entries = match entries(loaded) {
        Ok(entries) => entries,
        Err(err) => return format!("# cannot render the config: {err}\n"),
    };
    let mut out = String::new();
    let mut section = String::new();
    for Entry {
        key: path,
        value,
        source,
    } in entries
    {
        let (table, key) = match path.rfind('.') {
            Some(cut) => (&path[..cut], &path[cut + 1..]),
            None => ("", path.as_str()),
        };
        if table != section {
            let _ = writeln!(out, "\n[{table}]");
            section = table.to_owned();
        }
        let _ = writeln!(out, "{key} = {value}  # {source}");
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
