//! Writes a [`Value`] as `serde_json::to_vec` does, byte for byte, with less work on text.
//!
//! serde_json's writer looks up every byte of a string in a table, and each escape it meets
//! costs a call to write what came before it. Code in tool results is full of escapes (a
//! newline every line, quotes), so writing a translated 100 KB agent request cost ~1.7 M
//! instructions, a third of the request (bench/callgrind.sh with `loadgen --history 40`).
//! Here a string is scanned eight bytes at a time for the bytes JSON must escape, and runs
//! without one are copied whole. Numbers are written by serde_json itself. The output is
//! serde_json's: the same escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` with
//! lower-case hex for the other control characters), nothing else escaped, no spaces, and
//! object members in the map's order; the tests hold it to serde_json on random values.

use serde_json::Value;

/// `value` as compact JSON text, as `serde_json::to_vec` writes it.
pub fn to_vec(value: &Value, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    write_value(&mut out, value);
    out
}

/// `value` as [`to_vec`] writes it, but for the member at `path` (a key, or keys of nested
/// objects), written as `text` (JSON written before) in its place, whatever value it holds.
pub fn to_vec_with_member(value: &Value, capacity: usize, path: &[&str], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity.max(text.len()));
    match value {
        Value::Object(members) => write_object(&mut out, members, Some((path, text))),
        _ => write_value(&mut out, value),
    }
    out
}

/// Appends `value` to `out` as compact JSON text.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => write_object(out, members, None),
    }
}

/// `members` as a JSON object; the member at the path `written.0`, if any, as the text
/// `written.1`.
fn write_object(
    out: &mut Vec<u8>,
    members: &serde_json::Map<String, Value>,
    written: Option<(&[&str], &[u8])>,
) {
    out.push(b'{');
    for (i, (key, member)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        match (written, member) {
            (Some(([name], text)), _) if name == key => out.extend_from_slice(text),
            (Some(([name, rest @ ..], text)), Value::Object(inner)) if name == key => {
                write_object(out, inner, Some((rest, text)));
            }
            _ => write_value(out, member),
        }
    }
    out.push(b'}');
}

/// A number as serde_json writes it (itoa for integers, ryu for floats).
fn write_number(out: &mut Vec<u8>, number: &serde_json::Number) {
    // Writing to a Vec cannot fail, and a Number is always finite.
    if serde_json::to_writer(&mut *out, number).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Eight bytes of 0x01, for the byte-parallel tests below.
const ONES: u64 = u64::MAX / 255;

/// The high bit of each byte of `chunk` that JSON escapes (a control character, `"` or `\`),
/// exact for the lowest such byte (a borrow may also flag bytes above it, never below).
fn escapes_in(chunk: u64) -> u64 {
    let control = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    let quote = chunk ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = chunk ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & (ONES << 7)
}

/// Whether JSON escapes `byte`.
fn is_escaped(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// `text` as a JSON string, quotes included.
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(chunk) = bytes.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let flagged = escapes_in(u64::from_le_bytes(word));
            if flagged == 0 {
                at += 8;
                continue;
            }
            at += (flagged.trailing_zeros() / 8) as usize;
        } else if !is_escaped(bytes[at]) {
            at += 1;
            continue;
        }
        out.extend_from_slice(&bytes[run_start..at]);
        write_escape(out, bytes[at]);
        at += 1;
        run_start = at;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// The escape serde_json writes for `byte`.
fn write_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    /// Text mixing every kind of byte: each control character, quotes, backslashes, `/`,
    /// DEL, two-, three- and four-byte characters, and runs long enough for whole chunks.
    fn random_text(rng: &mut fastrand::Rng) -> String {
        const PIECES: [&str; 14] = [
            "a",
            "plain text ",
            "\"",
            "\\",
            "/",
            "\u{7f}",
            "é",
            "中",
            "🦀",
            "\n",
            "\r\n",
            "\t",
            "let x = \"y\";",
            "0123456789abcdef",
        ];
        let mut text = String::new();
        for _ in 0..rng.usize(0..24) {
            if rng.u8(..8) == 0 {
                text.push(char::from(rng.u8(..0x20)));
            } else {
                text.push_str(PIECES[rng.usize(..PIECES.len())]);
            }
        }
        text
    }

    fn random_number(rng: &mut fastrand::Rng) -> Value {
        match rng.u8(..5) {
            0 => json!(rng.u64(..)),
            1 => json!(rng.i64(..)),
            2 => json!(f64::from_bits(rng.u64(..))),
            3 => json!(rng.f64() * 1e-9),
            _ => json!(rng.i32(-1000..1000)),
        }
    }

    fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
        match rng.u8(..if depth == 0 { 4 } else { 6 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => random_number(rng),
            3 => Value::String(random_text(rng)),
            4 => (0..rng.usize(0..5))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
            _ => {
                let mut members = Map::new();
                for _ in 0..rng.usize(0..5) {
                    members.insert(random_text(rng), random_value(rng, depth - 1));
                }
                Value::Object(members)
            }
        }
    }

    #[test]
    fn random_values_are_written_as_serde_json_writes_them() {
        let mut rng = fastrand::Rng::with_seed(0x0007_50aa);
        for _ in 0..20_000 {
            let value = random_value(&mut rng, 3);
            let expected = serde_json::to_vec(&value).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&to_vec(&value, 0)),
                String::from_utf8_lossy(&expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_member_written_before_goes_in_its_place_at_the_top_level_only() {
        let mut rng = fastrand::Rng::with_seed(0x0007_50ab);
        for _ in 0..2_000 {
            let Value::Object(mut members) = random_value(&mut rng, 3) else {
                continue;
            };
            let inner = json!({"tools": 1});
            members.insert("nested".into(), inner.clone());
            let tools = random_value(&mut rng, 2);
            let text = serde_json::to_vec(&tools).unwrap();
            members.insert("tools".into(), Value::Null);
            let written = to_vec_with_member(&Value::Object(members.clone()), 0, &["tools"], &text);
            // And the same object nested one level down.
            let wrapped = json!({"model": "m", "request": members, "tools": 2});
            let nested = to_vec_with_member(&wrapped, 0, &["request", "tools"], &text);
            members.insert("tools".into(), tools);
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&serde_json::to_vec(&members).unwrap())
            );
            let expected = json!({"model": "m", "request": members, "tools": 2});
            assert_eq!(
                String::from_utf8_lossy(&nested),
                String::from_utf8_lossy(&serde_json::to_vec(&expected).unwrap())
            );
        }
    }

    #[test]
    fn every_byte_is_escaped_as_serde_json_escapes_it() {
        for byte in 0..=0x7fu8 {
            let text = char::from(byte).to_string();
            // Alone, at the end of a whole chunk, and in the middle of one.
            for text in [
                text.clone(),
                format!("abcdefg{text}"),
                format!("abc{text}defghijk"),
            ] {
                let value = Value::String(text);
                assert_eq!(to_vec(&value, 0), serde_json::to_vec(&value).unwrap());
            }
        }
    }

    #[test]
    fn only_the_first_flagged_byte_of_a_chunk_is_trusted() {
        // A control character below a byte that a borrow could flag falsely: `\u{1f}` then
        // `\u{20}` in one chunk.
        let value = json!("ab\u{1f} cdefgh\u{0}\u{1} x");
        assert_eq!(to_vec(&value, 0), serde_json::to_vec(&value).unwrap());
    }
}
