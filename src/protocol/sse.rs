//! Server-sent events framing shared by the protocols that stream over SSE.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// One `data:` frame holding `value` as JSON. Serializing our own types cannot fail, but
/// a failure is still turned into an error frame rather than a panic.
pub fn data_frame<T: Serialize>(value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(256).writer();
    buf.get_mut().put_slice(b"data: ");
    if serde_json::to_writer(&mut buf, value).is_err() {
        return Bytes::from_static(
            b"data: {\"error\":{\"message\":\"llmux failed to encode a frame\",\"type\":\"server_error\"}}\n\n",
        );
    }
    let mut buf = buf.into_inner();
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// An `event: <name>` frame followed by its `data:` line.
pub fn named_frame<T: Serialize>(event: &str, value: &T) -> Bytes {
    let data = data_frame(value);
    let mut buf = BytesMut::with_capacity(event.len() + data.len() + 8);
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_bytes());
    buf.put_slice(b"\n");
    buf.put_slice(&data);
    buf.freeze()
}

/// `n` in decimal, for frames written directly.
pub fn push_u64(buf: &mut BytesMut, n: u64) {
    buf.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `text` as a JSON string, escaped exactly as serde_json escapes it, for frames written
/// directly.
pub fn push_json_string(buf: &mut BytesMut, text: &str) {
    let mut writer = buf.writer();
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut writer, text);
}

/// Strings for tests of frames written directly: empty, plain, and every kind of escape
/// (quotes, backslash, control characters, non-ASCII, a line separator).
#[cfg(test)]
pub const AWKWARD_TEXTS: [&str; 3] = [
    "",
    "Hello",
    "\"q\" \\ \n\t\r\u{0}\u{1f} é 😀 </script> \u{2028}",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_end_with_a_blank_line() {
        assert_eq!(
            &data_frame(&serde_json::json!({"a": 1}))[..],
            b"data: {\"a\":1}\n\n"
        );
        assert_eq!(
            &named_frame("ping", &serde_json::json!({"type": "ping"}))[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }

    #[test]
    fn numbers_are_written_in_decimal_as_display_writes_them() {
        for n in [0, 7, 10, 99, 100, 4_294_967_296, u64::MAX] {
            let mut buf = BytesMut::from(&b"x"[..]);
            push_u64(&mut buf, n);
            assert_eq!(&buf[..], format!("x{n}").as_bytes());
        }
    }
}
