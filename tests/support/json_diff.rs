//! JSON comparison with one line per differing path, for the protocol fixture tests.
#![allow(dead_code)]

use serde_json::Value;

/// Lists every path where `actual` differs from `expected`.
pub fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let sub = format!("{path}.{key}");
                match a.get(key) {
                    Some(av) => diff(&sub, ev, av, out),
                    None => out.push(format!("{sub}: missing (expected {ev})")),
                }
            }
            for (key, av) in a {
                if !e.contains_key(key) {
                    out.push(format!("{path}.{key}: unexpected {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(&format!("{path}[{i}]"), ev, av, out);
            }
            if e.len() != a.len() {
                out.push(format!(
                    "{path}: expected {} items, got {}",
                    e.len(),
                    a.len()
                ));
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}

pub fn compare_json(what: &str, expected: &Value, actual: &Value) -> Result<(), String> {
    let mut differences = Vec::new();
    diff("$", expected, actual, &mut differences);
    if differences.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{what} differs:\n  {}\nactual {what}:\n{}",
        differences.join("\n  "),
        serde_json::to_string_pretty(actual).unwrap()
    ))
}
