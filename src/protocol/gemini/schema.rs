//! JSON Schema <-> the OpenAPI-3.0 `Schema` subset Gemini's `parameters` and
//! `responseSchema` accept.
//!
//! Gemini parses `parameters` as a protobuf message: an unknown key anywhere
//! (`additionalProperties`, `$schema`, `const`, ...) fails the whole request with
//! `400 Unknown name "X" ... Cannot find field`, whatever its value (PROTOCOLS.md §2.1 and
//! pitfall 21). [`to_gemini`] therefore rewrites a client's JSON Schema into an
//! allow-list ([`ALLOWED_KEYS`]), one rule per keyword:
//!
//! | JSON Schema | Gemini `parameters` |
//! |---|---|
//! | `$ref` to `#/$defs/x`, `#/definitions/x`, any local pointer | the target, inlined (a recursive `$ref` is an error: the subset cannot express it) |
//! | `allOf` | its members merged into one schema (properties and `required` united) |
//! | `oneOf` | `anyOf` |
//! | `type: [T, "null"]`, `anyOf`/`oneOf` with a `{"type":"null"}` member | `type: T` + `nullable: true` (a single remaining `anyOf` member is merged into its parent) |
//! | `type: [T, U]` | `anyOf: [{type: T}, {type: U}]` |
//! | `const: v` | `enum: [v]` |
//! | `enum` with non-strings | values as strings and `type: string` (Gemini allows `enum` only on strings); a `null` value becomes `nullable` |
//! | `exclusiveMinimum: n` / `exclusiveMaximum: n` (or draft-4 booleans) | `minimum`/`maximum`: `n + 1` / `n - 1` on integers, `n` on numbers (the bound itself becomes allowed) |
//! | `format` | kept only where Gemini knows it (`enum`, `date-time` on strings; `float`, `double`, `int32`, `int64` on numbers) |
//! | `required` | only names that are in `properties` |
//! | `properties: {}` | dropped (Gemini rejects an empty `properties`) |
//! | no `type` but `properties` / `items` / `enum` | `object` / `array` / `string` |
//! | anything else (`$schema`, `$id`, `$defs`, `additionalProperties`, `patternProperties`, `propertyNames`, `title`, `default`, `examples`, `multipleOf`, `uniqueItems`, `not`, `if`/`then`/`else`, `deprecated`, `readOnly`, ...) | dropped |
//!
//! `title`, `default` and `example` are accepted by newer Gemini versions but were
//! rejected by older ones and carry no constraint, so the safe default drops them.
//!
//! The other direction, [`to_json_schema`], reads a Gemini client's `parameters` into
//! plain JSON Schema for the canonical model: upper-case `type` names (`OBJECT`, as the
//! Google SDKs send them) become lower-case, `nullable: true` becomes a `null` type (and
//! a `null` enum value), and Gemini-only keywords (`propertyOrdering`, `format: enum`) go.

use serde_json::{Map, Value};

/// The keys that survive [`to_gemini`]. Conservative on purpose: every Gemini API
/// version accepts them (`nousresearch/hermes-agent:agent/gemini_schema.py` lists a
/// superset; `title`, `default` and `example` are left out, see the module docs).
pub const ALLOWED_KEYS: [&str; 19] = [
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "anyOf",
    "propertyOrdering",
    "minimum",
    "maximum",
];

/// A schema Gemini cannot take, with the path of the offending keyword inside it
/// (`properties.items.$ref`), empty for the root.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

impl SchemaError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Rewrites `schema` (JSON Schema) into the subset Gemini's `parameters` and
/// `responseSchema` accept. See the module docs for the rules.
pub fn to_gemini(schema: &Value) -> Result<Value, SchemaError> {
    let mut stack = Vec::new();
    sanitize(schema, schema, "", &mut stack).map(Value::Object)
}

/// [`to_gemini`] for a function's `parameters`: the root must describe an object, and an
/// object without properties (a function that takes no arguments) gives `None`, because
/// Gemini rejects `properties` that is empty ("should be non-empty for OBJECT type").
pub fn to_gemini_parameters(schema: &Value) -> Result<Option<Value>, SchemaError> {
    let sanitized = to_gemini(schema)?;
    let is_object = match sanitized.get("type").and_then(Value::as_str) {
        Some(kind) => kind.eq_ignore_ascii_case("object"),
        None => sanitized.as_object().is_some_and(Map::is_empty),
    };
    if !is_object {
        return Err(SchemaError::new(
            "type",
            "function parameters must be an object schema (\"type\": \"object\")",
        ));
    }
    if sanitized.get("properties").is_none() {
        return Ok(None);
    }
    Ok(Some(sanitized))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Follows a local `$ref` (`#`, `#/$defs/x`, `#/definitions/x`, any JSON pointer into the
/// root document).
fn resolve<'a>(root: &'a Value, reference: &str, path: &str) -> Result<&'a Value, SchemaError> {
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(SchemaError::new(
            path,
            format!("only local references (\"#/...\") can be inlined, not '{reference}'"),
        ));
    };
    root.pointer(pointer).ok_or_else(|| {
        SchemaError::new(
            path,
            format!("'{reference}' points to nothing in this schema"),
        )
    })
}

/// Resolves `$ref` chains at the top of `node` and merges its `allOf` members, so the
/// result holds neither. Sibling keys of a `$ref` win over the target's. Every reference
/// followed is added to `followed`; one already on `stack` (an ancestor of this node) or
/// in `followed` is a cycle.
fn flatten(
    node: &Map<String, Value>,
    root: &Value,
    path: &str,
    stack: &[String],
    followed: &mut Vec<String>,
) -> Result<Map<String, Value>, SchemaError> {
    let mut node = node.clone();
    while let Some(reference) = node.remove("$ref") {
        let ref_path = join(path, "$ref");
        let Value::String(reference) = reference else {
            return Err(SchemaError::new(&ref_path, "'$ref' must be a string"));
        };
        if stack.contains(&reference) || followed.contains(&reference) {
            return Err(SchemaError::new(
                &ref_path,
                format!(
                    "'{reference}' refers to itself; Gemini's parameters schema cannot express \
                     recursion (send parametersJsonSchema instead)"
                ),
            ));
        }
        let target = match resolve(root, &reference, &ref_path)? {
            Value::Object(target) => target.clone(),
            Value::Bool(true) => Map::new(),
            _ => {
                return Err(SchemaError::new(
                    &ref_path,
                    format!("'{reference}' does not point to a schema object"),
                ));
            }
        };
        followed.push(reference);
        let mut merged = target;
        for (key, value) in node {
            merged.insert(key, value);
        }
        node = merged;
    }
    if let Some(members) = node.remove("allOf") {
        let all_path = join(path, "allOf");
        let Value::Array(members) = members else {
            return Err(SchemaError::new(&all_path, "'allOf' must be an array"));
        };
        for (i, member) in members.iter().enumerate() {
            let member_path = format!("{all_path}[{i}]");
            let member = match member {
                Value::Object(member) => flatten(member, root, &member_path, stack, followed)?,
                Value::Bool(true) => Map::new(),
                _ => {
                    return Err(SchemaError::new(
                        &member_path,
                        "an 'allOf' member must be a schema object",
                    ));
                }
            };
            merge_into(&mut node, member);
        }
    }
    Ok(node)
}

/// Merges an `allOf` member into `target`: properties and `required` are united, other
/// keys already present in `target` win.
fn merge_into(target: &mut Map<String, Value>, member: Map<String, Value>) {
    for (key, value) in member {
        match (key.as_str(), target.get_mut(&key), value) {
            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                for (name, schema) in theirs {
                    mine.entry(name).or_insert(schema);
                }
            }
            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                for name in theirs {
                    if !mine.contains(&name) {
                        mine.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => {
                target.insert(key, value);
            }
        }
    }
}

fn sanitize(
    node: &Value,
    root: &Value,
    path: &str,
    stack: &mut Vec<String>,
) -> Result<Map<String, Value>, SchemaError> {
    let node = match node {
        Value::Object(node) => node,
        // `true` accepts anything: an unconstrained schema.
        Value::Bool(true) => return Ok(Map::new()),
        Value::Bool(false) => {
            return Err(SchemaError::new(
                path,
                "a 'false' schema (nothing is valid) cannot be expressed in Gemini's schema",
            ));
        }
        _ => return Err(SchemaError::new(path, "a schema must be a JSON object")),
    };
    let mut followed = Vec::new();
    let node = flatten(node, root, path, stack, &mut followed)?;
    // The references followed here stay in scope while this subtree is sanitized, so a
    // reference back into it is caught as recursion.
    let depth = stack.len();
    stack.extend(followed);
    let result = sanitize_flat(node, root, path, stack);
    stack.truncate(depth);
    result
}

fn sanitize_flat(
    mut node: Map<String, Value>,
    root: &Value,
    path: &str,
    stack: &mut Vec<String>,
) -> Result<Map<String, Value>, SchemaError> {
    let mut out = Map::new();
    let mut nullable = matches!(node.get("nullable"), Some(Value::Bool(true)));

    // type: a string, or a JSON-Schema type array.
    let mut any_of: Option<Vec<Value>> = None;
    match node.remove("type") {
        Some(Value::String(kind)) if kind == "null" => nullable = true,
        Some(Value::String(kind)) => {
            out.insert("type".into(), Value::String(kind));
        }
        Some(Value::Array(kinds)) => {
            let mut rest = Vec::new();
            for kind in kinds {
                match kind {
                    Value::String(k) if k == "null" => nullable = true,
                    Value::String(k) => rest.push(k),
                    _ => {
                        return Err(SchemaError::new(
                            &join(path, "type"),
                            "'type' entries must be strings",
                        ));
                    }
                }
            }
            match rest.len() {
                0 => {}
                1 => {
                    out.insert("type".into(), Value::String(rest.remove(0)));
                }
                _ => {
                    any_of = Some(
                        rest.into_iter()
                            .map(|k| {
                                let mut member = Map::new();
                                member.insert("type".into(), Value::String(k));
                                Value::Object(member)
                            })
                            .collect(),
                    );
                }
            }
        }
        Some(_) => {
            return Err(SchemaError::new(
                &join(path, "type"),
                "'type' must be a string or an array of strings",
            ));
        }
        None => {}
    }

    // anyOf / oneOf: null members become `nullable`; one member left is merged in.
    for key in ["anyOf", "oneOf"] {
        let Some(members) = node.remove(key) else {
            continue;
        };
        let key_path = join(path, key);
        let Value::Array(members) = members else {
            return Err(SchemaError::new(
                &key_path,
                format!("'{key}' must be an array"),
            ));
        };
        let mut kept = Vec::new();
        for (i, member) in members.iter().enumerate() {
            let sanitized = sanitize(member, root, &format!("{key_path}[{i}]"), stack)?;
            let only_null = sanitized.get("type").is_none()
                && member_is_null(member, root, &format!("{key_path}[{i}]"))?;
            if only_null {
                nullable = true;
            } else {
                kept.push(Value::Object(sanitized));
            }
        }
        any_of.get_or_insert_with(Vec::new).extend(kept);
    }
    if let Some(mut members) = any_of {
        if members.len() == 1 {
            if let Some(Value::Object(member)) = members.pop() {
                for (key, value) in member {
                    match key.as_str() {
                        "nullable" => {
                            if value == Value::Bool(true) {
                                nullable = true;
                            }
                        }
                        _ => {
                            out.entry(key).or_insert(value);
                        }
                    }
                }
            }
        } else if !members.is_empty() {
            out.insert("anyOf".into(), Value::Array(members));
        }
    }

    // const -> enum of one.
    if let Some(value) = node.remove("const") {
        node.entry("enum").or_insert(Value::Array(vec![value]));
    }
    // enum: strings only (Gemini allows enum on strings alone); null -> nullable.
    if let Some(values) = node.remove("enum") {
        let Value::Array(values) = values else {
            return Err(SchemaError::new(
                &join(path, "enum"),
                "'enum' must be an array",
            ));
        };
        let mut strings = Vec::with_capacity(values.len());
        let mut all_strings = true;
        for value in values {
            match value {
                Value::Null => nullable = true,
                Value::String(s) => strings.push(Value::String(s)),
                other => {
                    all_strings = false;
                    strings.push(Value::String(other.to_string()));
                }
            }
        }
        if !all_strings || !out.contains_key("type") {
            out.insert("type".into(), Value::from("string"));
        }
        out.insert("enum".into(), Value::Array(strings));
    }

    // Bounds: exclusive -> inclusive.
    let is_integer = out.get("type").and_then(Value::as_str) == Some("integer");
    let mut minimum = node.remove("minimum").filter(Value::is_number);
    let mut maximum = node.remove("maximum").filter(Value::is_number);
    match node.remove("exclusiveMinimum") {
        Some(Value::Number(n)) => {
            let bound = inclusive_bound(&n, is_integer, 1.0);
            minimum = Some(tighter(minimum, bound, true));
        }
        Some(Value::Bool(true)) => {
            if let (Some(Value::Number(n)), true) = (&minimum, is_integer) {
                minimum = Some(inclusive_bound(n, true, 1.0));
            }
        }
        _ => {}
    }
    match node.remove("exclusiveMaximum") {
        Some(Value::Number(n)) => {
            let bound = inclusive_bound(&n, is_integer, -1.0);
            maximum = Some(tighter(maximum, bound, false));
        }
        Some(Value::Bool(true)) => {
            if let (Some(Value::Number(n)), true) = (&maximum, is_integer) {
                maximum = Some(inclusive_bound(n, true, -1.0));
            }
        }
        _ => {}
    }
    if let Some(minimum) = minimum {
        out.insert("minimum".into(), minimum);
    }
    if let Some(maximum) = maximum {
        out.insert("maximum".into(), maximum);
    }

    // format: only the values Gemini knows for the type.
    if let Some(Value::String(format)) = node.remove("format") {
        let kind = out.get("type").and_then(Value::as_str).unwrap_or("");
        let known = match kind.to_ascii_lowercase().as_str() {
            "string" => matches!(format.as_str(), "enum" | "date-time"),
            "number" => matches!(format.as_str(), "float" | "double"),
            "integer" => matches!(format.as_str(), "int32" | "int64"),
            _ => false,
        };
        if known {
            out.insert("format".into(), Value::String(format));
        }
    }

    // properties, recursively; required filtered to them.
    if let Some(properties) = node.remove("properties") {
        let props_path = join(path, "properties");
        let Value::Object(properties) = properties else {
            return Err(SchemaError::new(
                &props_path,
                "'properties' must be an object",
            ));
        };
        let mut sanitized = Map::new();
        for (name, schema) in &properties {
            sanitized.insert(
                name.clone(),
                Value::Object(sanitize(schema, root, &join(&props_path, name), stack)?),
            );
        }
        if let Some(Value::Array(required)) = node.remove("required") {
            let required: Vec<Value> = required
                .into_iter()
                .filter(|r| r.as_str().is_some_and(|r| sanitized.contains_key(r)))
                .collect();
            if !required.is_empty() {
                out.insert("required".into(), Value::Array(required));
            }
        }
        if !sanitized.is_empty() {
            out.insert("properties".into(), Value::Object(sanitized));
        }
        out.entry("type").or_insert_with(|| Value::from("object"));
    }
    node.remove("required");

    // items: one schema; a draft-4 tuple becomes anyOf of its members.
    if let Some(items) = node.remove("items") {
        let items_path = join(path, "items");
        let sanitized = match &items {
            Value::Array(tuple) => {
                let mut members = Vec::with_capacity(tuple.len());
                for (i, member) in tuple.iter().enumerate() {
                    members.push(Value::Object(sanitize(
                        member,
                        root,
                        &format!("{items_path}[{i}]"),
                        stack,
                    )?));
                }
                match members.len() {
                    0 => Map::new(),
                    1 => match members.pop() {
                        Some(Value::Object(one)) => one,
                        _ => Map::new(),
                    },
                    _ => {
                        let mut any = Map::new();
                        any.insert("anyOf".into(), Value::Array(members));
                        any
                    }
                }
            }
            other => sanitize(other, root, &items_path, stack)?,
        };
        out.insert("items".into(), Value::Object(sanitized));
        out.entry("type").or_insert_with(|| Value::from("array"));
    }

    // The plain keys that pass as they are.
    for key in [
        "description",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "propertyOrdering",
    ] {
        if let Some(value) = node.remove(key) {
            out.insert(key.into(), value);
        }
    }
    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    debug_assert!(out.keys().all(|k| ALLOWED_KEYS.contains(&k.as_str())));
    Ok(out)
}

/// Whether an `anyOf` member only allows `null` (`{"type":"null"}`, possibly via `$ref`).
fn member_is_null(member: &Value, root: &Value, path: &str) -> Result<bool, SchemaError> {
    let Value::Object(member) = member else {
        return Ok(false);
    };
    let flat = flatten(member, root, path, &[], &mut Vec::new())?;
    Ok(match flat.get("type") {
        Some(Value::String(kind)) => kind == "null",
        Some(Value::Array(kinds)) => kinds.iter().all(|k| k == "null"),
        _ => false,
    })
}

/// `n` made inclusive: the next integer on integer schemas, `n` itself on numbers.
fn inclusive_bound(n: &serde_json::Number, is_integer: bool, step: f64) -> Value {
    if is_integer {
        if let Some(i) = n.as_i64() {
            return Value::from(i + step as i64);
        }
        if let Some(f) = n.as_f64() {
            let next = if step > 0.0 {
                f.floor() + 1.0
            } else {
                f.ceil() - 1.0
            };
            return Value::from(next as i64);
        }
    }
    Value::Number(n.clone())
}

/// The tighter of an existing bound and a new one (`lower`: the larger wins).
fn tighter(existing: Option<Value>, bound: Value, lower: bool) -> Value {
    match (existing.as_ref().and_then(Value::as_f64), bound.as_f64()) {
        (Some(old), Some(new)) if (lower && old > new) || (!lower && old < new) => {
            existing.unwrap_or(bound)
        }
        _ => bound,
    }
}

/// Reads a Gemini `Schema` (OpenAPI subset) as plain JSON Schema: `type` names in lower
/// case (`OBJECT` -> `object`, `TYPE_UNSPECIFIED` dropped) and `nullable: true` as a
/// `null` type (`["string", "null"]`, or a `{"type":"null"}` member of `anyOf`).
pub fn to_json_schema(schema: &Value) -> Value {
    let Value::Object(node) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let nullable = matches!(node.get("nullable"), Some(Value::Bool(true)));
    for (key, value) in node {
        match key.as_str() {
            "nullable" => {}
            "type" => match value {
                Value::String(kind) if kind.eq_ignore_ascii_case("type_unspecified") => {}
                Value::String(kind) => {
                    out.insert(key.clone(), Value::String(kind.to_ascii_lowercase()));
                }
                other => {
                    out.insert(key.clone(), other.clone());
                }
            },
            "properties" => match value {
                Value::Object(properties) => {
                    let converted = properties
                        .iter()
                        .map(|(name, schema)| (name.clone(), to_json_schema(schema)))
                        .collect();
                    out.insert(key.clone(), Value::Object(converted));
                }
                other => {
                    out.insert(key.clone(), other.clone());
                }
            },
            "items" => {
                out.insert(key.clone(), to_json_schema(value));
            }
            // Gemini-only keywords other protocols do not know.
            "propertyOrdering" => {}
            "format" if value == "enum" => {}
            "anyOf" => match value {
                Value::Array(members) => {
                    out.insert(
                        key.clone(),
                        Value::Array(members.iter().map(to_json_schema).collect()),
                    );
                }
                other => {
                    out.insert(key.clone(), other.clone());
                }
            },
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if nullable {
        // JSON Schema's enum is exhaustive: a nullable enum must list null.
        if let Some(Value::Array(values)) = out.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
        match out.get_mut("type") {
            Some(Value::String(kind)) => {
                let kind = std::mem::take(kind);
                out.insert(
                    "type".into(),
                    Value::Array(vec![Value::String(kind), Value::from("null")]),
                );
            }
            _ => {
                if let Some(Value::Array(members)) = out.get_mut("anyOf") {
                    members.push(serde_json::json!({"type": "null"}));
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gemini(schema: Value) -> Value {
        to_gemini(&schema).unwrap()
    }

    #[test]
    fn ref_to_defs_is_inlined_and_defs_dropped() {
        let out = gemini(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "urn:x",
            "type": "object",
            "$defs": {"city": {"type": "string", "description": "A city"}},
            "properties": {"from": {"$ref": "#/$defs/city"}, "to": {"$ref": "#/$defs/city", "description": "Arrival"}},
        }));
        assert_eq!(
            out,
            json!({"type": "object", "properties": {
                "from": {"type": "string", "description": "A city"},
                "to": {"type": "string", "description": "Arrival"},
            }})
        );
    }

    #[test]
    fn ref_to_definitions_and_nested_refs_are_inlined() {
        let out = gemini(json!({
            "type": "object",
            "definitions": {
                "point": {"type": "object", "properties": {"x": {"$ref": "#/definitions/coord"}}},
                "coord": {"type": "number"},
            },
            "properties": {"p": {"$ref": "#/definitions/point"}},
        }));
        assert_eq!(
            out["properties"]["p"]["properties"]["x"],
            json!({"type": "number"})
        );
    }

    #[test]
    fn the_same_ref_twice_in_siblings_is_not_recursion() {
        let out = gemini(json!({
            "type": "object",
            "$defs": {"s": {"type": "string"}},
            "properties": {"a": {"type": "array", "items": {"$ref": "#/$defs/s"}}, "b": {"$ref": "#/$defs/s"}},
        }));
        assert_eq!(out["properties"]["a"]["items"], json!({"type": "string"}));
        assert_eq!(out["properties"]["b"], json!({"type": "string"}));
    }

    #[test]
    fn recursive_ref_is_an_error_naming_the_path() {
        let err = to_gemini(&json!({
            "type": "object",
            "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
            "properties": {"root": {"$ref": "#/$defs/node"}},
        }))
        .unwrap_err();
        assert_eq!(err.path, "properties.root.properties.child.$ref");
        assert!(err.message.contains("recursion"), "{}", err.message);
    }

    #[test]
    fn dangling_and_remote_refs_are_errors() {
        let err =
            to_gemini(&json!({"properties": {"a": {"$ref": "#/$defs/missing"}}})).unwrap_err();
        assert_eq!(err.path, "properties.a.$ref");
        assert!(err.message.contains("points to nothing"));
        let err = to_gemini(&json!({"properties": {"a": {"$ref": "https://x/schema.json"}}}))
            .unwrap_err();
        assert!(err.message.contains("local references"));
    }

    #[test]
    fn rejected_keywords_are_dropped() {
        let out = gemini(json!({
            "type": "object",
            "title": "Args",
            "additionalProperties": false,
            "patternProperties": {"^x": {"type": "string"}},
            "propertyNames": {"pattern": "^[a-z]+$"},
            "unevaluatedProperties": false,
            "$comment": "internal",
            "properties": {"n": {
                "type": "integer", "multipleOf": 2, "default": 4, "examples": [2],
                "deprecated": true, "readOnly": true, "not": {"const": 3},
            }, "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}},
            "if": {}, "then": {}, "else": {},
        }));
        assert_eq!(
            out,
            json!({"type": "object", "properties": {
                "n": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
            }})
        );
    }

    #[test]
    fn const_becomes_an_enum_of_one() {
        assert_eq!(
            gemini(json!({"const": "celsius"})),
            json!({"type": "string", "enum": ["celsius"]})
        );
    }

    #[test]
    fn exclusive_bounds_become_inclusive() {
        assert_eq!(
            gemini(json!({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10})),
            json!({"type": "integer", "minimum": 1, "maximum": 9})
        );
        assert_eq!(
            gemini(json!({"type": "number", "exclusiveMinimum": 0.5})),
            json!({"type": "number", "minimum": 0.5})
        );
        // Draft 4 booleans.
        assert_eq!(
            gemini(json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})),
            json!({"type": "integer", "minimum": 1})
        );
        // The tighter bound wins.
        assert_eq!(
            gemini(json!({"type": "integer", "minimum": 5, "exclusiveMinimum": 0})),
            json!({"type": "integer", "minimum": 5})
        );
    }

    #[test]
    fn type_arrays_with_null_become_nullable() {
        assert_eq!(
            gemini(json!({"type": ["string", "null"], "description": "d"})),
            json!({"type": "string", "description": "d", "nullable": true})
        );
        assert_eq!(
            gemini(json!({"type": ["string", "integer"]})),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}]})
        );
    }

    #[test]
    fn any_of_with_null_becomes_nullable() {
        assert_eq!(
            gemini(
                json!({"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "description": "d"})
            ),
            json!({"type": "string", "maxLength": 5, "description": "d", "nullable": true})
        );
        assert_eq!(
            gemini(json!({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]})),
            json!({"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": true})
        );
    }

    #[test]
    fn one_of_becomes_any_of() {
        assert_eq!(
            gemini(json!({"oneOf": [{"type": "string"}, {"type": "number"}]})),
            json!({"anyOf": [{"type": "string"}, {"type": "number"}]})
        );
    }

    #[test]
    fn all_of_members_are_merged() {
        assert_eq!(
            gemini(json!({
                "$defs": {"named": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
                "allOf": [
                    {"$ref": "#/$defs/named"},
                    {"properties": {"age": {"type": "integer"}}, "required": ["age"]},
                ],
            })),
            json!({"type": "object",
                   "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                   "required": ["name", "age"]})
        );
    }

    #[test]
    fn enum_values_become_strings() {
        assert_eq!(
            gemini(json!({"type": "integer", "enum": [1, 2, 3]})),
            json!({"type": "string", "enum": ["1", "2", "3"]})
        );
        assert_eq!(
            gemini(json!({"type": "string", "enum": ["a", null]})),
            json!({"type": "string", "enum": ["a"], "nullable": true})
        );
    }

    #[test]
    fn unknown_formats_are_dropped() {
        assert_eq!(
            gemini(json!({"type": "string", "format": "email"})),
            json!({"type": "string"})
        );
        assert_eq!(
            gemini(json!({"type": "string", "format": "date-time"})),
            json!({"type": "string", "format": "date-time"})
        );
        assert_eq!(
            gemini(json!({"type": "integer", "format": "int64"})),
            json!({"type": "integer", "format": "int64"})
        );
    }

    #[test]
    fn required_names_outside_properties_are_dropped() {
        assert_eq!(
            gemini(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "ghost"]})
            ),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
        );
    }

    #[test]
    fn missing_types_are_inferred() {
        assert_eq!(
            gemini(json!({"properties": {"a": {"items": {"enum": ["x"]}}}})),
            json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string", "enum": ["x"]}}}})
        );
    }

    #[test]
    fn a_function_without_arguments_sends_no_parameters() {
        assert_eq!(
            to_gemini_parameters(
                &json!({"type": "object", "properties": {}, "additionalProperties": false})
            ),
            Ok(None)
        );
        assert_eq!(to_gemini_parameters(&json!({})), Ok(None));
        let err = to_gemini_parameters(&json!({"type": "string"})).unwrap_err();
        assert!(err.message.contains("object"));
    }

    #[test]
    fn non_object_schemas_are_errors() {
        let err = to_gemini(&json!({"type": "object", "properties": {"a": 5}})).unwrap_err();
        assert_eq!(err.path, "properties.a");
        let err = to_gemini(&json!({"type": "object", "properties": {"a": false}})).unwrap_err();
        assert!(err.message.contains("false"));
    }

    #[test]
    fn gemini_schemas_read_as_json_schema() {
        assert_eq!(
            to_json_schema(&json!({
                "type": "OBJECT",
                "properties": {
                    "city": {"type": "STRING", "nullable": true},
                    "unit": {"type": "STRING", "format": "enum", "enum": ["C", "F"], "nullable": true},
                    "days": {"type": "ARRAY", "items": {"type": "INTEGER", "format": "int32"}},
                    "either": {"anyOf": [{"type": "STRING"}], "nullable": true},
                },
                "required": ["city"],
                "propertyOrdering": ["city", "days"],
            })),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": ["string", "null"]},
                    "unit": {"type": ["string", "null"], "enum": ["C", "F", null]},
                    "days": {"type": "array", "items": {"type": "integer", "format": "int32"}},
                    "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "required": ["city"],
            })
        );
    }
}
