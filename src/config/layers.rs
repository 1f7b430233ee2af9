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
    /// Merges a whole table (a config file) into this one, table by table, so keys that
    /// hold dots (`models."openai:gpt-4.1"`) keep their place.
    pub fn merge_table(&mut self, table: Table, source: &Source) {
        merge_into(&mut self.table, "", table, source, &mut self.sources);
    }

    /// Sets one dotted key, creating tables on the way.
    pub fn set(&mut self, path: &str, value: Value, source: Source) {
        let mut keys: Vec<&str> = split_path(path);
        let Some(last) = keys.pop() else { return };
        if let Some(table) = table_at(&mut self.table, &keys) {
            table.insert(last.to_owned(), value);
            self.sources.insert(path.to_owned(), source);
        }
    }

    /// The source of the value at `path`, or of the nearest enclosing key that has one.
    pub fn source_of(&self, path: &str) -> Source {
        // A table itself (an error about a key in it names the table): where its keys came
        // from. Only for the path asked about: a default key's siblings do not make it theirs.
        let inside = format!("{path}.");
        if !self.sources.contains_key(path)
            && let Some((_, source)) = self
                .sources
                .range(inside.clone()..)
                .next()
                .filter(|(k, _)| k.starts_with(&inside))
        {
            return source.clone();
        }
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

/// The table at `keys` under `table`, made (and made a table) where it is not one yet.
pub(super) fn table_at<'t>(table: &'t mut Table, keys: &[&str]) -> Option<&'t mut Table> {
    let mut table = table;
    for key in keys {
        let entry = table
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        table = entry.as_table_mut()?;
    }
    Some(table)
}

/// Splits `backends.local-llama.base_url` into keys. Backend ids may not contain dots.
fn split_path(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// Merges `from` into `into` key by key; a leaf (a value, or an empty table) replaces what
/// was there and records `source` under its dotted path.
fn merge_into(
    into: &mut Table,
    prefix: &str,
    from: Table,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) if !inner.is_empty() => {
                let entry = into
                    .entry(key)
                    .or_insert_with(|| Value::Table(Table::new()));
                if !entry.is_table() {
                    *entry = Value::Table(Table::new());
                }
                if let Value::Table(next) = entry {
                    merge_into(next, &path, inner, source, sources);
                }
            }
            leaf => {
                into.insert(key, leaf);
                sources.insert(path, source.clone());
            }
        }
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
    fn keys_with_dots_keep_their_place_and_errors_about_a_table_name_its_file() {
        let mut layered = Layered::default();
        let file: Table =
            toml::from_str("[models.\"openai:gpt-4.1\".limits]\nmax_input_tokens = 5").unwrap();
        layered.merge_table(file, &Source::File("a.toml".into()));
        assert_eq!(
            layered.table["models"]["openai:gpt-4.1"]["limits"]["max_input_tokens"].as_integer(),
            Some(5)
        );
        // serde names the table holding an unknown key: its keys' file is the answer.
        assert_eq!(
            layered.source_of("models.openai:gpt-4.1"),
            Source::File("a.toml".into())
        );
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
