//! Layering: defaults < TOML file < environment < CLI, remembering where each value came from.
//!
//! Layers are merged as TOML tables before serde reads them, so every layer goes through
//! the same parsing and the same error messages, and `config print` can name each value's
//! source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use toml::{Table, Value};

use super::keys::Kind;

/// Where a config value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Cli(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "environment {name}"),
            Source::Cli(flag) => write!(f, "command line {flag}"),
        }
    }
}

/// A merged TOML table plus the source of every leaf.
#[derive(Debug, Default)]
pub struct Layered {
    pub table: Table,
    pub sources: BTreeMap<String, Source>,
}

impl Layered {
    /// Merges a whole table (a config file) into this one.
    pub fn merge_table(&mut self, table: Table, source: &Source) {
        let mut leaves = Vec::new();
        collect_leaves(String::new(), &Value::Table(table), &mut leaves);
        for (path, value) in leaves {
            self.set(&path, value, source.clone());
        }
    }

    /// Sets one dotted key, creating tables on the way.
    pub fn set(&mut self, path: &str, value: Value, source: Source) {
        let mut keys: Vec<&str> = split_path(path);
        let Some(last) = keys.pop() else { return };
        let mut table = &mut self.table;
        for key in keys {
            let entry = table
                .entry(key.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(next) = entry else { return };
            table = next;
        }
        table.insert(last.to_owned(), value);
        self.sources.insert(path.to_owned(), source);
    }

    /// The source of the value at `path`, or of the nearest enclosing key that has one.
    pub fn source_of(&self, path: &str) -> Source {
        let mut path = path.to_owned();
        loop {
            if let Some(source) = self.sources.get(&path) {
                return source.clone();
            }
            // A key inside a recorded array or table inherits its source.
            if let Some(found) = self.sources.iter().find(|(k, _)| {
                path.starts_with(k.as_str()) && path[k.len()..].starts_with(['.', '['])
            }) {
                return found.1.clone();
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path.truncate(cut),
                None => return Source::Default,
            }
        }
    }
}

/// Splits `backends.local-llama.base_url` into keys. Backend ids may not contain dots.
fn split_path(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

fn collect_leaves(prefix: String, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(table) if !table.is_empty() || prefix.is_empty() => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                collect_leaves(path, value, out);
            }
        }
        _ => out.push((prefix, value.clone())),
    }
}

/// Parses an environment variable's text as the kind its key expects.
pub fn parse_env(name: &str, text: &str, kind: Kind) -> Result<Value, String> {
    let text = text.trim();
    match kind {
        Kind::Text => Ok(Value::String(text.to_owned())),
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{name}='{text}' is not an integer")),
        Kind::Number => text
            .parse::<f64>()
            .map(Value::Float)
            .map_err(|_| format!("{name}='{text}' is not a number")),
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Boolean(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Value::Boolean(false)),
            _ => Err(format!("{name}='{text}' is not a boolean (true/false)")),
        },
        Kind::List => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        Kind::Aliases => aliases_from_json(text).map_err(|why| format!("{name}: {why}")),
    }
}

/// `[{"pattern": ..., "replacement": ...}, ...]` as a TOML array of tables.
fn aliases_from_json(text: &str) -> Result<Value, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let items = value.as_array().ok_or("not a JSON list")?;
    let mut list = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = |key: &str| {
            item.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("item {i} has no string '{key}'"))
        };
        let mut table = toml::Table::new();
        table.insert("pattern".into(), toml::Value::String(field("pattern")?));
        table.insert(
            "replacement".into(),
            toml::Value::String(field("replacement")?),
        );
        list.push(toml::Value::Table(table));
    }
    Ok(toml::Value::Array(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_and_remember_their_source() {
        let mut layered = Layered::default();
        let file: Table = toml::from_str("[proxy]\nport = 9000\nhost = \"127.0.0.1\"").unwrap();
        layered.merge_table(file, &Source::File("a.toml".into()));
        layered.set(
            "proxy.port",
            Value::Integer(9100),
            Source::Env("APP_PORT".into()),
        );
        assert_eq!(layered.table["proxy"]["port"].as_integer(), Some(9100));
        assert_eq!(
            layered.source_of("proxy.port"),
            Source::Env("APP_PORT".into())
        );
        assert_eq!(
            layered.source_of("proxy.host"),
            Source::File("a.toml".into())
        );
        assert_eq!(layered.source_of("auth.disable_auth"), Source::Default);
    }

    #[test]
    fn env_values_are_typed() {
        assert_eq!(
            parse_env("APP_PORT", "80", Kind::Integer),
            Ok(Value::Integer(80))
        );
        assert!(
            parse_env("APP_PORT", "eighty", Kind::Integer)
                .unwrap_err()
                .contains("APP_PORT='eighty'")
        );
        assert_eq!(
            parse_env("K", "a, b,,", Kind::List),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
    }
}
