//! Serde types of the Gemini `generateContent` wire format (v1beta REST).
//!
//! Field names are camelCase on the wire; Google's JSON parser also accepts the
//! proto's snake_case names, so every multi-word field has a snake_case `alias`.
//! Every object keeps the fields we do not model in `extra`, so a same-protocol round
//! trip carries them through. Schemas (`parameters`, `responseSchema`, ...), function
//! arguments and results stay `Value`: they are free-form JSON.
//!
//! Sources: https://ai.google.dev/api/generate-content (request and response bodies),
//! https://ai.google.dev/api/caching#Content (Content, Part, FunctionCall,
//! FunctionResponse, Tool, ToolConfig), https://ai.google.dev/api/tokens (countTokens).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `POST /v1beta/models/{model}:generateContent` (and of
/// `:streamGenerateContent`, which takes the same body). `T` is how the tools are read: as
/// tools, or as the list's text (`&RawValue`) for the tools memo.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<T = Vec<Tool>> {
    #[serde(default)]
    pub contents: Vec<Content>,
    #[serde(
        default,
        alias = "system_instruction",
        skip_serializing_if = "Option::is_none"
    )]
    pub system_instruction: Option<Content>,
    /// Absent is `None` without `default`, which would ask `T` to have a default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<T>,
    #[serde(
        default,
        alias = "tool_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub tool_config: Option<ToolConfig>,
    #[serde(
        default,
        alias = "generation_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub generation_config: Option<GenerationConfig>,
    #[serde(
        default,
        alias = "safety_settings",
        skip_serializing_if = "Option::is_none"
    )]
    pub safety_settings: Option<Vec<SafetySetting>>,
    /// `cachedContent`, `labels`, `model` (inside countTokens), and whatever comes next.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One turn: a role and its parts. `role` is `user` or `model`; it may be omitted for
/// single-turn requests and in `systemInstruction`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `null` or absent reads as none.
    pub parts: Vec<Part>,
    /// Not their nulls.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(Content {
    "role" => role: value,
    "parts" => parts: list,
});

/// One part of a turn. On the wire `data` is a oneof: exactly one of `text`,
/// `inlineData`, `fileData`, `functionCall`, `functionResponse`, `executableCode`,
/// `codeExecutionResult`. `thought` and `thoughtSignature` sit beside the data, on the
/// part (never inside `functionCall`; PROTOCOLS.md pitfall 8).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
    /// `executableCode`, `codeExecutionResult`, `videoMetadata`, `partMetadata`,
    /// `mediaResolution`, ... (not their nulls).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(Part {
    "text" => text: value,
    "inlineData" | "inline_data" => inline_data: value,
    "fileData" | "file_data" => file_data: value,
    "functionCall" | "function_call" => function_call: value,
    "functionResponse" | "function_response" => function_response: value,
    "thought" => thought: value,
    "thoughtSignature" | "thought_signature" => thought_signature: value,
});

/// Data parts the model has no slot for but that are valid Gemini parts.
pub const OPAQUE_DATA_FIELDS: [&str; 4] = [
    "executableCode",
    "codeExecutionResult",
    "executable_code",
    "code_execution_result",
];

impl Part {
    /// The modelled oneof data fields, by wire name, and whether this part sets each.
    fn modelled_data(&self) -> [(&'static str, bool); 5] {
        [
            ("text", self.text.is_some()),
            ("inlineData", self.inline_data.is_some()),
            ("fileData", self.file_data.is_some()),
            ("functionCall", self.function_call.is_some()),
            ("functionResponse", self.function_response.is_some()),
        ]
    }

    /// How many of the oneof data fields this part sets (what [`Self::data_fields`] lists,
    /// without building the list: every streamed part is counted).
    pub fn data_field_count(&self) -> usize {
        let modelled = self.modelled_data().iter().filter(|(_, set)| *set).count();
        // Over the keys rather than four lookups, which would hash each name.
        let opaque = self
            .extra
            .keys()
            .filter(|key| OPAQUE_DATA_FIELDS.contains(&key.as_str()))
            .count();
        modelled + opaque
    }

    /// The names of the oneof data fields this part sets.
    pub fn data_fields(&self) -> Vec<&'static str> {
        let modelled = self.modelled_data().into_iter().filter(|(_, set)| *set);
        let opaque = OPAQUE_DATA_FIELDS
            .into_iter()
            .filter(|name| self.extra.contains_key(*name));
        modelled.map(|(name, _)| name).chain(opaque).collect()
    }
}

/// Inline bytes, base64-encoded.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    #[serde(default, alias = "mime_type")]
    pub mime_type: String,
    #[serde(default)]
    pub data: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A file by URI (Files API, Cloud Storage, YouTube, or a public URL).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(default, alias = "mime_type", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, alias = "file_uri")]
    pub file_uri: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A call the model made. `args` is a JSON object (never a string); `id` is optional
/// and usually missing on the Developer API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Not their nulls.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(FunctionCall {
    "name" => name: value,
    "args" => args: value,
    "id" => id: value,
});

/// A tool result sent back by the client, matched to its call by `name` (and `id`
/// when the call had one). `response` must be a JSON object; by convention its
/// `output` key holds the result and its `error` key an error.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct FunctionResponse {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of `tools`: function declarations, or a built-in tool (`googleSearch`,
/// `codeExecution`, `urlContext`, ...) kept in `extra`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    #[serde(
        default,
        alias = "function_declarations",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_declarations: Option<Vec<FunctionDeclaration>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A function the model may call. `parameters` is Gemini's OpenAPI-3.0 `Schema`
/// subset; `parametersJsonSchema` is plain JSON Schema (v1beta). At most one is set.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(
        default,
        alias = "parameters_json_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters_json_schema: Option<Value>,
    /// `response`, `responseJsonSchema`, `behavior`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    #[serde(
        default,
        alias = "function_calling_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub function_calling_config: Option<FunctionCallingConfig>,
    /// `retrievalConfig`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `mode`: `AUTO` (default), `ANY`, `NONE`, `VALIDATED`. `allowedFunctionNames` only
/// with `ANY` or `VALIDATED`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(
        default,
        alias = "allowed_function_names",
        skip_serializing_if = "Option::is_none"
    )]
    pub allowed_function_names: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, alias = "top_p", skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, alias = "top_k", skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(
        default,
        alias = "max_output_tokens",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_output_tokens: Option<u64>,
    #[serde(
        default,
        alias = "stop_sequences",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(
        default,
        alias = "presence_penalty",
        skip_serializing_if = "Option::is_none"
    )]
    pub presence_penalty: Option<f64>,
    #[serde(
        default,
        alias = "frequency_penalty",
        skip_serializing_if = "Option::is_none"
    )]
    pub frequency_penalty: Option<f64>,
    #[serde(
        default,
        alias = "response_mime_type",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_mime_type: Option<String>,
    /// OpenAPI-subset schema, like `parameters`.
    #[serde(
        default,
        alias = "response_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_schema: Option<Value>,
    /// Plain JSON Schema, like `parametersJsonSchema`.
    #[serde(
        default,
        alias = "response_json_schema",
        skip_serializing_if = "Option::is_none"
    )]
    pub response_json_schema: Option<Value>,
    #[serde(
        default,
        alias = "thinking_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_config: Option<ThinkingConfig>,
    /// `candidateCount`, `responseModalities`, `mediaResolution`, `speechConfig`,
    /// `responseLogprobs`, `logprobs`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Gemini 2.5 takes `thinkingBudget` (`0` off, `-1` dynamic, else tokens); Gemini 3
/// takes `thinkingLevel` (`minimal`, `low`, `medium`, `high`). Never both.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(
        default,
        alias = "thinking_budget",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_budget: Option<i64>,
    #[serde(
        default,
        alias = "include_thoughts",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_thoughts: Option<bool>,
    #[serde(
        default,
        alias = "thinking_level",
        skip_serializing_if = "Option::is_none"
    )]
    pub thinking_level: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SafetySetting {
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub threshold: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A whole response, and also each record of a stream (every streamed record has
/// exactly this shape, holding a partial candidate).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// `null` or absent reads as none.
    pub candidates: Vec<Candidate>,
    /// `blockReason` (with no candidates) when the prompt itself was blocked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_feedback: Option<Value>,
    /// Cumulative in streams: the last one holds the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// `createTime` (Vertex), an `error` object inside a stream, ... (not their nulls).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// Read in one pass, not with `#[serde(flatten)]`: every record of a stream is one of
// these, and buffering each level in serde's `Content` first was a fifth of a Gemini
// stream's instructions (bench/callgrind.sh, FAKE_API=gemini KIND=gemini-stream).
deserialize_in_one_pass!(GenerateContentResponse {
    "candidates" => candidates: list,
    "promptFeedback" | "prompt_feedback" => prompt_feedback: value,
    "usageMetadata" | "usage_metadata" => usage_metadata: value,
    "modelVersion" | "model_version" => model_version: value,
    "responseId" | "response_id" => response_id: value,
});

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// `safetyRatings`, `citationMetadata`, `groundingMetadata`, `avgLogprobs`,
    /// `logprobsResult`, `finishMessage`, `tokenCount`, ... (not their nulls).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

deserialize_in_one_pass!(Candidate {
    "content" => content: value,
    "finishReason" | "finish_reason" => finish_reason: value,
    "index" => index: value,
});

/// `usageMetadata`. `candidatesTokenCount` excludes thoughts, which are counted in
/// `thoughtsTokenCount`; `promptTokenCount` includes `cachedContentTokenCount`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    #[serde(default)]
    pub thoughts_token_count: Option<u64>,
    #[serde(default)]
    pub cached_content_token_count: Option<u64>,
    #[serde(default)]
    pub tool_use_prompt_token_count: Option<u64>,
    #[serde(default)]
    pub total_token_count: u64,
    /// `promptTokensDetails`, `candidatesTokensDetails`, `cacheTokensDetails`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of `POST /v1beta/models/{model}:countTokens`: either `contents` or a whole
/// `generateContentRequest` (which then also names its `model`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<Content>>,
    #[serde(
        default,
        alias = "generate_content_request",
        skip_serializing_if = "Option::is_none"
    )]
    pub generate_content_request: Option<GenerateContentRequest>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensResponse {
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_content_token_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<Value>,
}

/// Google's RPC error envelope: `{"error":{"code":400,"message":"…","status":"INVALID_ARGUMENT"}}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::Part;

    #[test]
    fn a_parts_data_field_count_is_the_length_of_its_list() {
        let parts = [
            serde_json::json!({}),
            serde_json::json!({"text": "hi", "thought": true}),
            serde_json::json!({"text": "hi", "functionCall": {"name": "f"}}),
            serde_json::json!({"executableCode": {"code": "1"}, "codeExecutionResult": {}}),
            serde_json::json!({"inline_data": {"mimeType": "a/b", "data": ""}, "file_data":
                {"fileUri": "u"}, "functionResponse": {"name": "f"}, "videoMetadata": {}}),
        ];
        for (part, count) in parts.into_iter().zip([0, 1, 2, 2, 3]) {
            let part: Part = serde_json::from_value(part).unwrap();
            assert_eq!(part.data_field_count(), count, "{part:?}");
            assert_eq!(part.data_fields().len(), count, "{part:?}");
        }
    }
}
