//! Setting one key in a client's settings file, leaving the rest as it was: JSON objects
//! (order kept, re-indented by two spaces), TOML (comments and layout kept, `toml_edit`)
//! and `.env` files (one `KEY=value` line each, other lines untouched).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    DotEnv,
}

/// `text` with the key at `path` set to `value`, or removed when `value` is `None`.
pub fn set(
    format: Format,
    text: &str,
    path: &[&str],
    value: Option<&Value>,
) -> Result<String, String> {
    match format {
        Format::Json => set_json(text, path, value),
        Format::Toml => set_toml(text, path, value),
        Format::DotEnv => Ok(set_env(
            text,
            path.first().copied().unwrap_or_default(),
            value,
        )),
    }
}

/// The value at `path` in `text`, when there is one.
pub fn get(format: Format, text: &str, path: &[&str]) -> Option<Value> {
    match format {
        Format::Json => {
            let mut value: &Value = &parse_json(text).ok()?;
            for key in path {
                value = value.get(key)?;
            }
            Some(value.clone())
        }
        Format::Toml => {
            let doc: toml_edit::DocumentMut = text.parse().ok()?;
            let mut item = doc.as_item();
            for key in path {
                item = item.get(key)?;
            }
            toml_to_json(item)
        }
        Format::DotEnv => {
            let key = path.first()?;
            text.lines().find_map(|line| {
                let (name, value) = line.split_once('=')?;
                (name.trim() == *key).then(|| Value::from(value.trim().to_owned()))
            })
        }
    }
}

fn parse_json(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err("not a JSON object".into()),
        Err(err) => Err(format!(
            "not plain JSON ({err}); comments are not kept by llmux, so edit it by hand"
        )),
    }
}

fn set_json(text: &str, path: &[&str], value: Option<&Value>) -> Result<String, String> {
    let mut root = parse_json(text)?;
    let Some((last, parents)) = path.split_last() else {
        return Err("an empty key".into());
    };
    let mut node = &mut root;
    for key in parents {
        let Some(object) = node.as_object_mut() else {
            return Err(format!("`{key}` is inside a value that is not an object"));
        };
        if value.is_none() && !object.contains_key(*key) {
            return Ok(text.to_owned());
        }
        node = object
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Some(object) = node.as_object_mut() else {
        return Err(format!("`{last}` is inside a value that is not an object"));
    };
    match value {
        Some(value) => {
            object.insert((*last).to_owned(), value.clone());
        }
        None => {
            object.remove(*last);
        }
    }
    let mut out = serde_json::to_string_pretty(&root).map_err(|e| e.to_string())?;
    out.push('\n');
    Ok(out)
}

fn set_toml(text: &str, path: &[&str], value: Option<&Value>) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let Some((last, parents)) = path.split_last() else {
        return Err("an empty key".into());
    };
    let mut table = doc.as_table_mut();
    for key in parents {
        if value.is_none() && !table.contains_key(key) {
            return Ok(doc.to_string());
        }
        let entry = table
            .entry(key)
            .or_insert_with(|| toml_edit::Item::Table(implicit_table()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    match value {
        Some(value) => {
            table.insert(last, json_to_toml(value)?);
        }
        None => {
            table.remove(last);
        }
    }
    Ok(doc.to_string())
}

/// A table that only holds others (`[model_providers.llmux]` without a bare
/// `[model_providers]` header).
fn implicit_table() -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.set_implicit(true);
    table
}

fn json_to_toml(value: &Value) -> Result<toml_edit::Item, String> {
    Ok(match value {
        Value::Object(fields) => {
            let mut table = toml_edit::Table::new();
            for (key, value) in fields {
                table.insert(key, json_to_toml(value)?);
            }
            toml_edit::Item::Table(table)
        }
        Value::String(text) => toml_edit::value(text.as_str()),
        Value::Bool(flag) => toml_edit::value(*flag),
        Value::Number(n) if n.is_i64() => toml_edit::value(n.as_i64().unwrap_or_default()),
        Value::Number(n) => toml_edit::value(n.as_f64().unwrap_or_default()),
        other => return Err(format!("cannot write {other} to TOML")),
    })
}

fn toml_to_json(item: &toml_edit::Item) -> Option<Value> {
    match item {
        toml_edit::Item::Table(table) => Some(Value::Object(
            table
                .iter()
                .filter_map(|(k, v)| Some((k.to_owned(), toml_to_json(v)?)))
                .collect(),
        )),
        toml_edit::Item::Value(value) => match value {
            toml_edit::Value::String(s) => Some(Value::from(s.value().clone())),
            toml_edit::Value::Boolean(b) => Some(Value::from(*b.value())),
            toml_edit::Value::Integer(i) => Some(Value::from(*i.value())),
            toml_edit::Value::Float(f) => Some(Value::from(*f.value())),
            toml_edit::Value::InlineTable(table) => Some(Value::Object(
                table
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((
                            k.to_owned(),
                            toml_to_json(&toml_edit::Item::Value(v.clone()))?,
                        ))
                    })
                    .collect(),
            )),
            _ => None,
        },
        _ => None,
    }
}

fn set_env(text: &str, key: &str, value: Option<&Value>) -> String {
    let line_for = |value: &Value| match value {
        Value::String(text) => format!("{key}={text}"),
        other => format!("{key}={other}"),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut done = false;
    for line in text.lines() {
        let is_key = line
            .split_once('=')
            .is_some_and(|(name, _)| name.trim() == key);
        match (is_key, value) {
            (true, Some(value)) if !done => {
                lines.push(line_for(value));
                done = true;
            }
            (true, _) => {}
            (false, _) => lines.push(line.to_owned()),
        }
    }
    if let (false, Some(value)) = (done, value) {
        lines.push(line_for(value));
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
