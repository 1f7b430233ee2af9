//! The canonical request.

use super::{Shared, SharedMap};
use serde_json::{Map, Value};

/// A wire protocol llmux speaks, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAiChat => "openai_chat",
            Protocol::OpenAiResponses => "openai_responses",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
        }
    }
}

/// Wire fields the model has no slot for, kept with the protocol they came from.
///
/// Only an encoder of the same protocol reads them back; every other encoder drops
/// them, because a field of one protocol means nothing (or something else) in another.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Extensions {
    pub source: Option<Protocol>,
    pub fields: SharedMap,
}

impl Extensions {
    pub fn new(source: Protocol, fields: Map<String, Value>) -> Self {
        Self {
            source: if fields.is_empty() {
                None
            } else {
                Some(source)
            },
            fields: fields.into(),
        }
    }

    /// The fields, if they came from `protocol`.
    pub fn for_protocol(&self, protocol: Protocol) -> Option<&Map<String, Value>> {
        (self.source == Some(protocol) && !self.fields.is_empty()).then_some(&self.fields)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    System,
    /// OpenAI's `developer` role: a system message that newer models weigh differently.
    Developer,
    User,
    Assistant,
    /// A message that carries tool results (OpenAI `role: tool`).
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ImageSource {
    /// An http(s) URL.
    Url(String),
    /// Inline bytes, base64-encoded.
    Base64 { media_type: String, data: String },
}

impl ImageSource {
    /// Reads either form from a URL string (`data:<mime>;base64,<payload>` or a plain URL).
    pub fn from_url(url: &str) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((meta, data)) = rest.split_once(',')
            && let Some(media_type) = meta.strip_suffix(";base64")
        {
            return ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            };
        }
        ImageSource::Url(url.to_owned())
    }

    /// The URL form (a `data:` URL for inline bytes).
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(url) => url.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Part {
    Text {
        text: String,
        extensions: Extensions,
    },
    Image {
        source: ImageSource,
        /// OpenAI's `detail` (`auto`, `low`, `high`).
        detail: Option<String>,
        extensions: Extensions,
    },
    /// A call the assistant made. `arguments` is JSON text, kept verbatim: Chat and
    /// Responses carry strings, and parsing fragments is a classic translation bug.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
        extensions: Extensions,
    },
    /// The result of a tool call, sent back by the client.
    ToolResult {
        call_id: String,
        content: Vec<Part>,
        is_error: bool,
        extensions: Extensions,
    },
    /// Reasoning text with the provider's signature, kept opaque so it can be replayed.
    Thinking {
        text: String,
        signature: Option<String>,
        /// True for a redacted block whose `text` holds the opaque payload.
        redacted: bool,
        extensions: Extensions,
    },
    Refusal {
        text: String,
    },
    /// A part of a kind the model does not know (audio, files, ...), kept whole for its
    /// own protocol and dropped when translating.
    Opaque {
        protocol: Protocol,
        value: Value,
    },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            extensions: Extensions::default(),
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Part::Text { text, .. } => Some(text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    /// Shared between copies until one is changed: a message an agent's request repeats is
    /// a copy of the one decoded for its last request (`protocol::message_memo`), and
    /// copying each part's text was a tenth of such a request.
    pub parts: Shared<Part>,
    /// OpenAI's optional participant name.
    pub name: Option<String>,
    /// The protocol whose client sent the content as a list of parts even though it is
    /// only text. That protocol's encoder sends it back as parts; every encoder sends plain
    /// text as a string otherwise.
    pub content_as_parts: Option<Protocol>,
    pub extensions: Extensions,
}

impl Message {
    pub fn new(role: Role, parts: Vec<Part>) -> Self {
        Self {
            role,
            parts: parts.into(),
            name: None,
            content_as_parts: None,
            extensions: Extensions::default(),
        }
    }

    /// All text parts joined, for stages that read what was said.
    pub fn text(&self) -> String {
        self.parts.iter().filter_map(Part::as_text).collect()
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Function {
        name: String,
        description: Option<String>,
        /// JSON Schema of the arguments.
        parameters: Option<Value>,
        strict: Option<bool>,
        extensions: Extensions,
    },
    /// A provider-defined tool (web search, code interpreter, ...), kept whole for its
    /// own protocol.
    Opaque { protocol: Protocol, value: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`).
    Required,
    /// The model must call this tool.
    Tool(String),
    Opaque {
        protocol: Protocol,
        value: Value,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    /// The output token cap, whatever the protocol calls it.
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
}

impl ReasoningEffort {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "none" => Self::None,
            "minimal" => Self::Minimal,
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "xhigh" => Self::XHigh,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::XHigh => "xhigh",
        }
    }
}

/// How hard the model should think: an effort level, a token budget, or both.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reasoning {
    pub effort: Option<ReasoningEffort>,
    pub budget_tokens: Option<u64>,
}

impl Reasoning {
    /// The effort level, derived from the budget when only a budget was given
    /// (≤ 1,024 low, ≤ 4,096 medium, else high; 0 is none).
    pub fn effective_effort(&self) -> Option<ReasoningEffort> {
        self.effort.or_else(|| {
            self.budget_tokens.map(|budget| match budget {
                0 => ReasoningEffort::None,
                1..=1024 => ReasoningEffort::Low,
                1025..=4096 => ReasoningEffort::Medium,
                _ => ReasoningEffort::High,
            })
        })
    }

    /// The token budget, derived from the effort when only an effort was given
    /// (minimal 1,024, low 1,024, medium 2,048, high 4,096, xhigh 16,384, none 0: the
    /// defaults litellm uses, from ../shared/reference/PROTOCOLS.md §3.4).
    pub fn effective_budget(&self) -> Option<u64> {
        self.budget_tokens.or_else(|| {
            self.effort.map(|effort| match effort {
                ReasoningEffort::None => 0,
                ReasoningEffort::Minimal | ReasoningEffort::Low => 1024,
                ReasoningEffort::Medium => 2048,
                ReasoningEffort::High => 4096,
                ReasoningEffort::XHigh => 16384,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
        description: Option<String>,
    },
}

/// Who is calling: read by routing, sessions, logs and captures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    /// The end user as the client names it (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// Protocol-specific request headers (`anthropic-version`, `anthropic-beta`), forwarded
    /// unchanged to back-ends of that protocol and to no others.
    pub protocol_headers: Option<(Protocol, Vec<(String, String)>)>,
    /// The session's `!/project-dir(...)`, for agent back-ends.
    pub project_dir: Option<std::path::PathBuf>,
    /// Where a back-end of the client's own protocol leaves the provider's answer body, for
    /// a client that may get it as it came (see [`super::VerbatimSlot`]).
    pub verbatim: Option<super::VerbatimSlot>,
    /// The client's own body, for a back-end of its protocol to send as it came when
    /// nothing changed the request (see [`super::ClientBody`]).
    pub original: Option<super::ClientBody>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The model as the client named it; routing resolves it to a back-end and model.
    pub model: String,
    /// System instructions, in order. Protocols with a single system slot join them.
    pub system: Shared<Part>,
    pub messages: Shared<Message>,
    pub tools: Shared<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub sampling: Sampling,
    pub reasoning: Option<Reasoning>,
    pub response_format: Option<ResponseFormat>,
    pub stream: bool,
    pub client: ClientInfo,
    pub extensions: Extensions,
    /// What stages learnt about each message, shared with the message memo (see
    /// [`super::Facts`]); none kept for a request below the memo's size.
    pub message_facts: super::Facts,
}

/// The characters of the tools' names, descriptions and schemas, counted once for a list an
/// agent sends again (the tools memo's shared list: the schemas of twenty tools are ~16k
/// instructions to walk), and known by its allocation as `protocol::tools_out` knows it.
fn tool_chars(tools: &Shared<Tool>) -> usize {
    static LAST: std::sync::Mutex<Option<(std::sync::Weak<Vec<Tool>>, usize)>> =
        std::sync::Mutex::new(None);
    if tools.is_empty() {
        return 0;
    }
    if let Some((list, chars)) = LAST.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        && tools.is_known_by(list)
    {
        return *chars;
    }
    let chars = tools
        .iter()
        .map(|tool| match tool {
            Tool::Function {
                name,
                description,
                parameters,
                ..
            } => {
                name.len()
                    + description.as_ref().map_or(0, String::len)
                    + parameters.as_ref().map_or(0, json_chars)
            }
            Tool::Opaque { value, .. } => json_chars(value),
        })
        .sum();
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((tools.known_by(), chars));
    chars
}

/// About how many characters `value` is as compact JSON (escapes not counted), found
/// without writing it: written out for each of an agent's twenty tool schemas, the estimate
/// of a request's input tokens cost ~0.5M instructions (bench/callgrind.sh, `--extra-tools
/// 20`).
fn json_chars(value: &Value) -> usize {
    let separators = |items: usize| items.saturating_sub(1);
    match value {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(number) => number
            .as_u64()
            .map_or(8, |n| n.checked_ilog10().unwrap_or(0) as usize + 1),
        Value::String(text) => text.len() + 2,
        Value::Array(items) => {
            2 + separators(items.len()) + items.iter().map(json_chars).sum::<usize>()
        }
        Value::Object(members) => {
            2 + separators(members.len())
                + members
                    .iter()
                    .map(|(key, value)| key.len() + 3 + json_chars(value))
                    .sum::<usize>()
        }
    }
}

impl Request {
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            system: Shared::default(),
            messages: messages.into(),
            tools: Shared::default(),
            tool_choice: None,
            parallel_tool_calls: None,
            sampling: Sampling::default(),
            reasoning: None,
            response_format: None,
            stream: false,
            client: ClientInfo::default(),
            extensions: Extensions::default(),
            message_facts: super::Facts::default(),
        }
    }

    /// A rough count of input tokens (four characters a token, a flat 1,000 per image),
    /// for protocols that must report input usage before the provider has, and for
    /// limits checked before sending. Never zero.
    pub fn estimated_input_tokens(&self) -> u64 {
        fn part_chars(part: &Part) -> usize {
            match part {
                Part::Text { text, .. } | Part::Refusal { text } => text.len(),
                Part::Thinking { text, .. } => text.len(),
                Part::Image { .. } => 4_000,
                Part::ToolCall {
                    name, arguments, ..
                } => name.len() + arguments.len(),
                Part::ToolResult { content, .. } => content.iter().map(part_chars).sum(),
                Part::Opaque { value, .. } => value.to_string().len(),
            }
        }
        let messages: usize = self
            .messages
            .iter()
            .flat_map(|m| m.parts.iter())
            .chain(self.system.iter())
            .map(part_chars)
            .sum();
        ((messages + tool_chars(&self.tools)) as u64)
            .div_ceil(4)
            .max(1)
    }

    /// The text of the last user message, where in-chat commands live.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(Message::text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list counted before gives its count again; the same list changed by a stage (its
    /// own copy) is counted anew, and so is an equal list decoded apart.
    #[test]
    fn a_list_of_tools_is_counted_once_and_a_changed_one_again() {
        let tool = |name: &str| Tool::Function {
            name: name.into(),
            description: Some("d".repeat(40)),
            parameters: Some(serde_json::json!({"type": "object"})),
            strict: None,
            extensions: Extensions::default(),
        };
        let mut request = Request::new("m", vec![Message::new(Role::User, vec![Part::text("")])]);
        request.tools = vec![tool("a")].into();
        let one = request.estimated_input_tokens();
        assert_eq!(one, (1 + 40 + 17_u64).div_ceil(4));
        assert_eq!(request.estimated_input_tokens(), one);
        let kept = request.tools.clone();
        request.tools.push(tool("b"));
        assert_eq!(request.estimated_input_tokens(), (2 * 58_u64).div_ceil(4));
        request.tools = kept;
        assert_eq!(request.estimated_input_tokens(), one);
        request.tools = vec![tool("abcd")].into();
        assert_eq!(
            request.estimated_input_tokens(),
            (4 + 40 + 17_u64).div_ceil(4)
        );
    }

    #[test]
    fn a_schemas_characters_are_counted_as_compact_json_writes_them() {
        let schemas = [
            serde_json::json!({"type": "object", "properties": {
                "pattern": {"type": "string", "description": "The regular expression."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                "mode": {"enum": ["content", "count"], "default": null},
                "strict": {"type": "boolean", "default": false, "deprecated": true}},
                "required": ["pattern"], "additionalProperties": false}),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!(0),
            serde_json::json!("ü"),
        ];
        for schema in schemas {
            assert_eq!(json_chars(&schema), schema.to_string().len(), "{schema}");
        }
        // Escapes and numbers other than whole ones are about right.
        let rough = serde_json::json!({"a": "line\nquote\"", "b": -1.5e300});
        assert!(json_chars(&rough).abs_diff(rough.to_string().len()) <= 10);
    }

    #[test]
    fn data_urls_split_into_media_type_and_payload() {
        let source = ImageSource::from_url("data:image/png;base64,iVBORw0K");
        assert_eq!(
            source,
            ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0K".into()
            }
        );
        assert_eq!(source.to_url(), "data:image/png;base64,iVBORw0K");
        assert_eq!(
            ImageSource::from_url("https://example.com/a.png"),
            ImageSource::Url("https://example.com/a.png".into())
        );
    }

    #[test]
    fn extensions_are_only_visible_to_their_protocol() {
        let mut fields = Map::new();
        fields.insert("x".into(), Value::Bool(true));
        let ext = Extensions::new(Protocol::OpenAiChat, fields);
        assert!(ext.for_protocol(Protocol::OpenAiChat).is_some());
        assert!(ext.for_protocol(Protocol::Anthropic).is_none());
        assert!(
            Extensions::new(Protocol::Gemini, Map::new())
                .source
                .is_none()
        );
    }
}
