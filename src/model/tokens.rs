//! Token counts of canonical requests, with OpenAI's tokenizers (tiktoken-rs): o200k_base
//! for current models, cl100k_base for GPT-4 and GPT-3.5. Other providers tokenise
//! differently (Claude, Gemini, Qwen, GLM count within roughly 10-20 % of o200k), so for them
//! the count is an estimate; limits are set with that margin in mind.
//!
//! An agent resends its whole conversation every turn, and a conversation of 200 turns is
//! easily a megabyte. Each message's count is remembered by a hash of its content, so a
//! follow-up turn counts only what is new; hashing a megabyte takes well under a
//! millisecond, counting it tens of milliseconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;

use super::{Message, Part, Request, Tool};

/// Tokens an image costs, roughly: providers bill a few hundred to a few thousand.
pub const IMAGE_TOKENS: u64 = 765;
/// What each message adds beyond its content (role and separators, per OpenAI's cookbook).
const PER_MESSAGE: u64 = 3;
/// What priming the answer adds.
const PER_REQUEST: u64 = 3;
/// How many message counts are remembered; the cache starts over past this.
const CACHE_ENTRIES: usize = 200_000;

/// Which tokenizer counts a model's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    O200k,
    Cl100k,
}

impl Encoding {
    /// GPT-4 (not 4o or 4.1) and GPT-3.5 use cl100k_base; everything else is counted with
    /// o200k_base.
    pub fn for_model(model: &str) -> Self {
        let name = model.rsplit('/').next().unwrap_or(model);
        let old = (name.starts_with("gpt-4")
            && !name.starts_with("gpt-4o")
            && !name.starts_with("gpt-4.1"))
            || name.starts_with("gpt-3.5");
        if old {
            Encoding::Cl100k
        } else {
            Encoding::O200k
        }
    }

    /// The tokens of `text`.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let bpe = match self {
            Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
        };
        bpe.count_ordinary(text) as u64
    }
}

/// Counts requests, remembering each message's count.
#[derive(Default)]
pub struct TokenCounter {
    cache: Mutex<HashMap<u64, u64, foldhash::fast::FixedState>>,
    hasher: foldhash::fast::FixedState,
}

impl TokenCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The input tokens of `request` for `model`: system, messages, tool definitions and
    /// images. Only messages not counted before are tokenised.
    pub fn count(&self, request: &Request, model: &str) -> u64 {
        let encoding = Encoding::for_model(model);
        let mut total = PER_REQUEST;
        total += request
            .system
            .iter()
            .map(|part| part_tokens(encoding, part))
            .sum::<u64>();
        total += self.remembered(encoding, &request.tools, |tools| {
            tools.iter().map(|t| tool_tokens(encoding, t)).sum()
        });
        for message in &request.messages {
            total +=
                PER_MESSAGE + self.remembered(encoding, message, |m| message_tokens(encoding, m));
        }
        total
    }

    /// How many of `request`'s messages have no remembered count yet, and their size in
    /// bytes: what a count would have to tokenise.
    pub fn uncounted(&self, request: &Request, model: &str) -> (usize, usize) {
        let encoding = Encoding::for_model(model);
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        request
            .messages
            .iter()
            .filter(|m| !cache.contains_key(&self.key(encoding, *m)))
            .fold((0, 0), |(n, bytes), m| (n + 1, bytes + message_bytes(m)))
    }

    fn key<T: HashContent + ?Sized>(&self, encoding: Encoding, value: &T) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        encoding.hash(&mut hasher);
        value.hash_content(&mut hasher);
        hasher.finish()
    }

    fn remembered<T: HashContent + ?Sized>(
        &self,
        encoding: Encoding,
        value: &T,
        count: impl FnOnce(&T) -> u64,
    ) -> u64 {
        let key = self.key(encoding, value);
        if let Some(known) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return *known;
        }
        let tokens = count(value);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, tokens);
        tokens
    }
}

fn message_tokens(encoding: Encoding, message: &Message) -> u64 {
    message.parts.iter().map(|p| part_tokens(encoding, p)).sum()
}

fn part_tokens(encoding: Encoding, part: &Part) -> u64 {
    match part {
        Part::Text { text, .. } | Part::Refusal { text } | Part::Thinking { text, .. } => {
            encoding.count(text)
        }
        Part::Image { .. } => IMAGE_TOKENS,
        Part::ToolCall {
            name, arguments, ..
        } => encoding.count(name) + encoding.count(arguments),
        Part::ToolResult { content, .. } => content.iter().map(|p| part_tokens(encoding, p)).sum(),
        Part::Opaque { value, .. } => encoding.count(&value.to_string()),
    }
}

fn tool_tokens(encoding: Encoding, tool: &Tool) -> u64 {
    match tool {
        Tool::Function {
            name,
            description,
            parameters,
            ..
        } => {
            encoding.count(name)
                + description.as_deref().map_or(0, |d| encoding.count(d))
                + parameters
                    .as_ref()
                    .map_or(0, |p| encoding.count(&p.to_string()))
        }
        Tool::Opaque { value, .. } => encoding.count(&value.to_string()),
    }
}

fn message_bytes(message: &Message) -> usize {
    fn part_bytes(part: &Part) -> usize {
        match part {
            Part::Text { text, .. } | Part::Refusal { text } | Part::Thinking { text, .. } => {
                text.len()
            }
            Part::Image { .. } => 0,
            Part::ToolCall {
                name, arguments, ..
            } => name.len() + arguments.len(),
            Part::ToolResult { content, .. } => content.iter().map(part_bytes).sum(),
            Part::Opaque { value, .. } => value.to_string().len(),
        }
    }
    message.parts.iter().map(part_bytes).sum()
}

/// Hashes what a count depends on: the text a model reads, not ids or signatures.
trait HashContent {
    fn hash_content(&self, hasher: &mut impl Hasher);
}

impl HashContent for Message {
    fn hash_content(&self, hasher: &mut impl Hasher) {
        self.parts.len().hash(hasher);
        for part in &self.parts {
            part.hash_content(hasher);
        }
    }
}

impl HashContent for Part {
    fn hash_content(&self, hasher: &mut impl Hasher) {
        match self {
            Part::Text { text, .. } => (0u8, text).hash(hasher),
            Part::Refusal { text } => (1u8, text).hash(hasher),
            Part::Thinking { text, .. } => (2u8, text).hash(hasher),
            Part::Image { .. } => 3u8.hash(hasher),
            Part::ToolCall {
                name, arguments, ..
            } => (4u8, name, arguments).hash(hasher),
            Part::ToolResult { content, .. } => {
                (5u8, content.len()).hash(hasher);
                for part in content {
                    part.hash_content(hasher);
                }
            }
            Part::Opaque { value, .. } => (6u8, value.to_string()).hash(hasher),
        }
    }
}

impl HashContent for [Tool] {
    fn hash_content(&self, hasher: &mut impl Hasher) {
        self.len().hash(hasher);
        for tool in self {
            match tool {
                Tool::Function {
                    name,
                    description,
                    parameters,
                    ..
                } => (
                    name,
                    description,
                    parameters.as_ref().map(|p| p.to_string()),
                )
                    .hash(hasher),
                Tool::Opaque { value, .. } => value.to_string().hash(hasher),
            }
        }
    }
}

impl HashContent for crate::model::Shared<Tool> {
    fn hash_content(&self, hasher: &mut impl Hasher) {
        self.as_slice().hash_content(hasher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn conversation(turns: usize) -> Request {
        let messages = (0..turns)
            .map(|i| {
                let role = if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                Message::new(role, vec![Part::text(format!("turn {i}: hello world"))])
            })
            .collect();
        Request::new("gpt-4o", messages)
    }

    #[test]
    fn the_encoding_follows_the_model_family() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200k);
        assert_eq!(Encoding::for_model("gpt-4.1"), Encoding::O200k);
        assert_eq!(Encoding::for_model("openai/gpt-4-turbo"), Encoding::Cl100k);
        assert_eq!(Encoding::for_model("gpt-3.5-turbo"), Encoding::Cl100k);
        assert_eq!(Encoding::for_model("claude-sonnet-4"), Encoding::O200k);
        assert_eq!(Encoding::O200k.count("hello world"), 2);
        assert_eq!(Encoding::Cl100k.count("hello world"), 2);
    }

    #[test]
    fn a_request_counts_its_text_per_message_overhead_and_tools() {
        let counter = TokenCounter::new();
        let mut request = conversation(1);
        let text = Encoding::O200k.count("turn 0: hello world");
        assert_eq!(
            counter.count(&request, "gpt-4o"),
            PER_REQUEST + PER_MESSAGE + text
        );
        request.system.push(Part::text("hello world"));
        request.messages[0].parts.push(Part::Image {
            source: crate::model::ImageSource::Url("https://example.com/a.png".into()),
            detail: None,
            extensions: Default::default(),
        });
        assert_eq!(
            counter.count(&request, "gpt-4o"),
            PER_REQUEST + PER_MESSAGE + text + 2 + IMAGE_TOKENS
        );
    }

    #[test]
    fn a_follow_up_turn_counts_only_its_new_messages() {
        let counter = TokenCounter::new();
        let first = conversation(200);
        assert_eq!(counter.uncounted(&first, "gpt-4o").0, 200);
        let total = counter.count(&first, "gpt-4o");
        let mut next = first.clone();
        next.messages
            .push(Message::new(Role::User, vec![Part::text("and one more")]));
        assert_eq!(counter.uncounted(&next, "gpt-4o").0, 1);
        let expected = total + PER_MESSAGE + Encoding::O200k.count("and one more");
        assert_eq!(counter.count(&next, "gpt-4o"), expected);
        // Same text under another tokenizer is counted again.
        assert_eq!(counter.uncounted(&next, "gpt-4").0, 201);
    }
}
