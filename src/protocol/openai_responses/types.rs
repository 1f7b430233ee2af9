//! Serde types of the Responses wire format.
//!
//! Field names follow `openai/openai-python` `types/responses/*` (`response_create_params.py`,
//! `response_input_item_param.py`, `response.py`, `response_usage.py`,
//! `response_stream_event.py`). Every object keeps the fields we do not model in `extra`, so
//! a same-protocol round trip carries them through. Polymorphic pieces (input items, content
//! parts, tools, tool_choice, text.format) stay `Value` at the top and are read item by item
//! in `decode.rs` into the typed items below, so errors can name the exact field
//! (`input[3].call_id`).

use serde::de::{self, Deserializer};

use crate::protocol::{Spanned, TextOrList, text_or_list};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// `POST /v1/responses` request body. `T` is how the tools are read: as values, or as the
/// list's text (`&RawValue`) for the tools memo; `I` how the input is: as values, or as
/// each item's text ([`InputTexts`]) for the message memo. The model and `stream` keep
/// where they sit in the body, for the same-protocol pass-through (`request_pass_through`).
#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest<'a, T = Vec<Value>, I = Content> {
    #[serde(borrow)]
    pub model: Spanned<'a, String>,
    /// Absent is `None` without `default`, which would ask `I` to have a default.
    pub input: Option<I>,
    /// A string; kept as `Value` because the Response object also allows a list here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Value>,
    /// Absent is `None` without `default`, which would ask `T` to have a default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    #[serde(default, borrow)]
    pub stream: Option<Spanned<'a, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `reasoning`: `{effort, summary}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ReasoningConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// `auto`, `concise` or `detailed`: whether summaries are streamed at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `text`: `{format, verbosity}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TextConfig {
    /// `{"type":"text"}`, `{"type":"json_object"}` or
    /// `{"type":"json_schema","name","schema","strict","description"}` (flat, unlike Chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`, a message's `content` and a function call's `output`: a string or a list.
#[derive(Debug, Clone)]
pub enum Content {
    Text(String),
    List(Vec<Value>),
}

impl Serialize for Content {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => serializer.serialize_str(text),
            Content::List(items) => items.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(
            match text_or_list(deserializer, "a string or an array", false)? {
                TextOrList::Text(text) => Content::Text(text),
                TextOrList::List(items) => Content::List(items),
                // Not read when null is refused; kept an error rather than a panic.
                TextOrList::Null => {
                    return Err(de::Error::invalid_type(
                        de::Unexpected::Unit,
                        &"a string or an array",
                    ));
                }
            },
        )
    }
}

/// `input` as the message memo reads it: a string, or the JSON text of each item.
#[derive(Debug, Clone)]
pub enum InputTexts<'a> {
    Text(String),
    Items(Vec<&'a RawValue>),
}

impl<'de: 'a, 'a> Deserialize<'de> for InputTexts<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Texts;
        impl<'de> de::Visitor<'de> for Texts {
            type Value = InputTexts<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(InputTexts::Text(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(InputTexts::Text(text))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(InputTexts::Items(items))
            }
        }
        deserializer.deserialize_any(Texts)
    }
}

// ---------------------------------------------------------------------------------------
// Items: the same shapes appear in a request's `input` and a response's `output`. The
// `type` key is read (and removed) by the decoder before these are parsed.

/// A `message` item: `EasyInputMessage`, an input `Message` or a `ResponseOutputMessage`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageItem {
    pub role: String,
    pub content: Content,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `function_call` item. `call_id` is what the result echoes; `id` (`fc_…`) names the
/// item itself and is what stream events refer to as `item_id`.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallItem {
    pub call_id: String,
    pub name: String,
    /// JSON text, kept verbatim.
    #[serde(default)]
    pub arguments: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `function_call_output` item.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallOutputItem {
    pub call_id: String,
    /// A string, or a list of `input_text` / `input_image` / `input_file` parts.
    pub output: Content,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `reasoning` item. Codex sends them back without `id` but with `encrypted_content`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReasoningItem {
    #[serde(default, deserialize_with = "crate::protocol::null_as_empty")]
    pub summary: Vec<TextPart>,
    /// Raw reasoning text (`reasoning_text` parts), from open-weight models.
    #[serde(default, deserialize_with = "crate::protocol::null_as_empty")]
    pub content: Vec<TextPart>,
    #[serde(default)]
    pub encrypted_content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A part holding text: `input_text`, `output_text`, `summary_text`, `reasoning_text`.
/// Annotations and logprobs of `output_text` stay in `extra`.
#[derive(Debug, Clone, Deserialize)]
pub struct TextPart {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub text: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An `input_image` part: a URL (`https://` or `data:`) or an uploaded `file_id`.
#[derive(Debug, Clone, Deserialize)]
pub struct InputImagePart {
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `refusal` part of an assistant message.
#[derive(Debug, Clone, Deserialize)]
pub struct RefusalPart {
    pub refusal: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `{"type":"function", "name", ...}` tool: flat, unlike Chat's nested `function`.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------
// Responses

/// The Response object (`"object": "response"`), whole or as a stream event's snapshot.
#[derive(Debug, Clone, Default)]
pub struct ResponseObject {
    pub id: String,
    /// Unix seconds; the SDK types it as a float.
    pub created_at: Option<f64>,
    pub status: Option<String>,
    pub model: String,
    /// `null` or absent reads as none.
    pub output: Vec<Value>,
    pub usage: Option<Value>,
    pub error: Option<Value>,
    pub incomplete_details: Option<IncompleteDetails>,
    /// Every other member, `null` ones too: they travel to a client of this protocol.
    pub extra: Map<String, Value>,
}

// Read in one pass, not with `#[serde(flatten)]`, which buffered the object in serde's
// `Content` first (bench/callgrind.sh, FAKE_API=responses KIND=responses-nonstream).
deserialize_in_one_pass!(ResponseObject, nulls kept {
    "id" => id: value,
    "created_at" => created_at: value,
    "status" => status: value,
    "model" => model: value,
    "output" => output: list,
    "usage" => usage: value,
    "error" => error: value,
    "incomplete_details" => incomplete_details: value,
});

#[derive(Debug, Clone, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens` or `content_filter`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `usage` of a Response, as serde reads it. Input includes cached tokens and output
/// includes reasoning. `decode::usage` reads the members where they are; its test holds it to
/// this type.
#[cfg(test)]
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponsesUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: Option<Map<String, Value>>,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub output_tokens_details: Option<Map<String, Value>>,
    #[serde(default)]
    pub total_tokens: u64,
}

/// `{code, message}` as carried by `response.error` and the `error` stream event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseError {
    #[serde(default)]
    pub code: Option<Value>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub param: Option<Value>,
}

/// One streamed event. Every event type shares this flat shape: only the fields its type
/// uses are present (`response_stream_event.py`); unknown types are skipped.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub sequence_number: Option<u64>,
    /// The Response object, as its text: read once, into a [`ResponseObject`], rather than
    /// into a `Value` first.
    #[serde(default)]
    pub response: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    pub item: Option<Value>,
    #[serde(default)]
    pub item_id: Option<String>,
    #[serde(default)]
    pub output_index: Option<u32>,
    #[serde(default)]
    pub content_index: Option<u32>,
    #[serde(default)]
    pub summary_index: Option<u32>,
    #[serde(default)]
    pub delta: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
    #[serde(default)]
    pub part: Option<Value>,
    /// The `error` event: `{code, message, param}` at the top, or nested under `error`.
    #[serde(default)]
    pub code: Option<Value>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<Value>,
}
