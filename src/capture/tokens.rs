//! Token counts for captured requests whose provider reported no usage.
//!
//! Counted with OpenAI's o200k_base encoding (tiktoken-rs) on the store's writer thread,
//! never on a request's path; the tokenizer loads once, the first time it is needed. Other
//! providers tokenise differently, so the counts stay marked as estimates.

use serde_json::Value;

use super::store::RequestRow;

/// Keys whose string values are structure or binary data, not text the model reads.
const NOT_TEXT: &[&str] = &[
    "role",
    "type",
    "model",
    "id",
    "tool_call_id",
    "call_id",
    "tool_use_id",
    "signature",
    "thoughtSignature",
    "thought_signature",
    "data",
    "media_type",
    "mime_type",
    "mimeType",
    "url",
    "image_url",
    "finish_reason",
    "stop_reason",
    "object",
    "encrypted_content",
    "previous_response_id",
    "cache_control",
    "service_tier",
];

use crate::model::tokens::{Encoding, IMAGE_TOKENS};

fn count(text: &str) -> u64 {
    Encoding::O200k.count(text)
}

/// Counts the tokens of the text a model reads in a request body (messages, system prompts,
/// tool definitions), whatever its protocol, and its images.
fn gather(value: &Value, key: Option<&str>, tokens: &mut u64, images: &mut u64) {
    match value {
        Value::String(s) if !key.is_some_and(|k| NOT_TEXT.contains(&k)) => *tokens += count(s),
        Value::Array(items) => {
            for item in items {
                gather(item, key, tokens, images);
            }
        }
        Value::Object(fields) => {
            let kind = fields.get("type").and_then(Value::as_str);
            if matches!(kind, Some("image" | "image_url" | "input_image"))
                || fields.contains_key("inlineData")
                || fields.contains_key("inline_data")
            {
                *images += 1;
            }
            for (name, field) in fields {
                // Tool schemas: property names and descriptions count, JSON-Schema keywords
                // like "type" are skipped above.
                gather(field, Some(name), tokens, images);
            }
        }
        _ => {}
    }
}

/// The input tokens of a captured client request body; `None` when it is not JSON.
pub fn request_tokens(body: &str) -> Option<u64> {
    let value: Value = serde_json::from_str(body).ok()?;
    let (mut tokens, mut images) = (0, 0);
    gather(&value, None, &mut tokens, &mut images);
    Some(tokens.saturating_add(images.saturating_mul(IMAGE_TOKENS)))
}

/// Replaces llmux's quick estimate with a tokenizer's count, for rows without provider usage.
pub fn refine(row: &mut RequestRow) {
    if !row.tokens_estimated {
        return;
    }
    if let Some(input) = request_tokens(&row.client_request) {
        row.input_tokens = input;
    }
    if !row.response_text.is_empty() {
        row.output_tokens = count(&row.response_text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_with_the_o200k_tokenizer() {
        assert_eq!(count("hello world"), 2);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn requests_count_what_the_model_reads_in_every_protocol() {
        let openai = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"hello world"},
            {"role":"user","content":[{"type":"text","text":"hello world"},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#;
        assert_eq!(request_tokens(openai), Some(2 + 2 + IMAGE_TOKENS));
        let anthropic = r#"{"model":"claude","system":"hello world","max_tokens":10,
            "messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64",
            "media_type":"image/png","data":"iVBORw0KGgo"}}]}]}"#;
        assert_eq!(request_tokens(anthropic), Some(2 + IMAGE_TOKENS));
        let gemini = r#"{"contents":[{"role":"user","parts":[{"text":"hello world"}]}]}"#;
        assert_eq!(request_tokens(gemini), Some(2));
        assert_eq!(request_tokens("not json"), None);
    }

    #[test]
    fn only_estimated_rows_are_recounted() {
        let mut row = RequestRow {
            client_request: r#"{"messages":[{"role":"user","content":"hello world"}]}"#.into(),
            response_text: "hello world".into(),
            input_tokens: 99,
            output_tokens: 99,
            tokens_estimated: true,
            ..RequestRow::default()
        };
        let mut reported = row.clone();
        reported.tokens_estimated = false;
        refine(&mut row);
        refine(&mut reported);
        assert_eq!((row.input_tokens, row.output_tokens), (2, 2));
        assert!(row.tokens_estimated, "still an estimate");
        assert_eq!((reported.input_tokens, reported.output_tokens), (99, 99));
    }
}
