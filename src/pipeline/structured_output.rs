//! Structured output: when a client asks for JSON that follows a schema (Responses
//! `text.format: json_schema`, Chat `response_format: json_schema`), llmux checks the
//! model's final answer against the schema (the `jsonschema` crate). An invalid answer is
//! repaired (code fences, text around the JSON, trailing commas, single quotes, unquoted
//! keys, truncated JSON) and checked again; if it still fails and retries are on, the
//! back-end is asked once more with the validation errors as feedback; if that fails too,
//! the answer ends with the finish reason `json_schema_mismatch`, which Responses clients
//! see as `status: incomplete` with that reason.
//!
//! The answer is held back until it is checked, so a streaming client receives it in one
//! piece at the end. Answers that call tools pass through unchecked.

use std::sync::LazyLock;

use futures::StreamExt;
use regex::Regex;
use serde_json::Value;

use super::{Phases, Reads, RequestContext, Stage, Upstream};
use crate::Error;
use crate::backend::EventStream;
use crate::model::json_scan::{Byte, JsonLexer};
use crate::model::{
    Event, FinishReason, Message, Part, Request, Response, ResponseBuilder, ResponseFormat, Role,
};

/// The schema a request asks its answer to follow, if any.
pub fn requested_schema(request: &Request) -> Option<&Value> {
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema),
        _ => None,
    }
}

/// The validation errors of `text` against `schema` (empty when it is valid).
pub fn check(schema: &Value, text: &str) -> Vec<String> {
    let instance: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return vec![format!("the answer is not JSON: {e}")],
    };
    match jsonschema::validator_for(schema) {
        Ok(validator) => validator
            .iter_errors(&instance)
            .take(5)
            .map(|e| {
                let path = e.instance_path.to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("at {path}: {e}")
                }
            })
            .collect(),
        // A schema the validator cannot read: nothing to hold the answer to.
        Err(_) => Vec::new(),
    }
}

static FENCE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?s)```[a-zA-Z0-9]*\s*\n?(.*?)\n?```").ok());
static TRAILING_COMMA: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r",(\s*[}\]])").ok());
static UNQUOTED_KEY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*:)"#).ok());

/// Candidate repairs of `text`, each a little bolder than the one before.
pub fn repairs(text: &str) -> Vec<String> {
    let mut candidates = Vec::new();
    let mut current = text.trim().to_owned();
    if let Some(inner) = FENCE
        .as_ref()
        .and_then(|re| re.captures(&current))
        .and_then(|c| c.get(1))
    {
        current = inner.as_str().trim().to_owned();
        candidates.push(current.clone());
    }
    if let Some(start) = current.find(['{', '[']) {
        let end = current.rfind(['}', ']']).filter(|e| *e > start);
        current = match end {
            Some(end) => current[start..=end].to_owned(),
            None => current[start..].to_owned(),
        };
        candidates.push(current.clone());
    }
    if let Some(re) = TRAILING_COMMA.as_ref() {
        current = re.replace_all(&current, "$1").into_owned();
        candidates.push(current.clone());
    }
    if !current.contains('"') && current.contains('\'') {
        current = current.replace('\'', "\"");
        candidates.push(current.clone());
    }
    if let Some(re) = UNQUOTED_KEY.as_ref() {
        current = re.replace_all(&current, "$1\"$2\"$3").into_owned();
        candidates.push(current.clone());
    }
    candidates.push(close_truncated(&current));
    candidates
}

/// Closes an unterminated string and every open bracket, dropping a dangling comma, so
/// JSON cut off at the token limit parses.
fn close_truncated(text: &str) -> String {
    let mut stack = Vec::new();
    let mut lexer = JsonLexer::default();
    for b in text.bytes() {
        match lexer.step(b) {
            Byte::Open(b'{') => stack.push('}'),
            Byte::Open(_) => stack.push(']'),
            Byte::Close(_) => {
                stack.pop();
            }
            Byte::Other => {}
        }
    }
    let mut out = text.to_owned();
    if lexer.in_string() {
        out.push('"');
    }
    let mut out = out.trim_end().trim_end_matches(',').to_owned();
    while let Some(close) = stack.pop() {
        out.push(close);
    }
    out
}

/// The first text that satisfies the schema: the answer itself or one of its repairs.
pub fn valid_text(schema: &Value, text: &str) -> Result<String, Vec<String>> {
    let errors = check(schema, text);
    if errors.is_empty() {
        return Ok(text.to_owned());
    }
    for candidate in repairs(text) {
        if check(schema, &candidate).is_empty() {
            return Ok(candidate);
        }
    }
    Err(errors)
}

async fn collect(events: EventStream) -> Result<(Vec<Event>, Response), Error> {
    let mut events = events;
    let mut kept = Vec::new();
    while let Some(event) = events.next().await {
        if let Event::Error(error) = event {
            return Err(error);
        }
        kept.push(event);
    }
    let mut folded = ResponseBuilder::new();
    for event in &kept {
        folded.push(event.clone())?;
    }
    Ok((kept, folded.finish()))
}

/// The events of `events` with their text replaced by `text` (one delta, where the first
/// text delta was).
fn with_text(events: Vec<Event>, text: &str) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len());
    let mut placed = false;
    for event in events {
        match event {
            Event::TextDelta(_) if placed => {}
            Event::TextDelta(_) => {
                placed = true;
                out.push(Event::TextDelta(text.to_owned()));
            }
            Event::Finish { .. } if !placed => {
                placed = true;
                out.push(Event::TextDelta(text.to_owned()));
                out.push(event);
            }
            other => out.push(other),
        }
    }
    out
}

fn with_finish(events: Vec<Event>, reason: FinishReason) -> Vec<Event> {
    events
        .into_iter()
        .map(|event| match event {
            Event::Finish { stop_sequence, .. } => Event::Finish {
                reason: reason.clone(),
                stop_sequence,
            },
            other => other,
        })
        .collect()
}

/// Sends `request` through `send`, checks the answer against its schema, repairs it or
/// asks once more, and returns the events to give the client.
pub async fn respond<F, Fut>(request: &Request, retry: bool, send: F) -> Result<EventStream, Error>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Result<EventStream, Error>>,
{
    let Some(schema) = requested_schema(request).cloned() else {
        return send(request.clone()).await;
    };
    let (events, response) = collect(send(request.clone()).await?).await?;
    if response.has_tool_calls() {
        return Ok(Box::pin(futures::stream::iter(events)));
    }
    let text = response.text();
    let errors = match valid_text(&schema, &text) {
        Ok(valid) => return Ok(Box::pin(futures::stream::iter(with_text(events, &valid)))),
        Err(errors) => errors,
    };
    if !retry {
        let events = with_finish(events, FinishReason::schema_mismatch());
        return Ok(Box::pin(futures::stream::iter(events)));
    }
    tracing::info!("answer does not follow its JSON schema; asking once more");
    let mut again = request.clone();
    again
        .messages
        .push(Message::new(Role::Assistant, vec![Part::text(text)]));
    again.messages.push(Message::new(
        Role::User,
        vec![Part::text(format!(
            "Your previous answer does not follow the required JSON schema:\n- {}\n\
             Answer again with only the JSON, following the schema exactly.",
            errors.join("\n- ")
        ))],
    ));
    let (events, response) = collect(send(again).await?).await?;
    let events = match valid_text(&schema, &response.text()) {
        Ok(valid) => with_text(events, &valid),
        Err(_) => with_finish(events, FinishReason::schema_mismatch()),
    };
    Ok(Box::pin(futures::stream::iter(events)))
}

/// The stage: checks answers of requests that ask for a JSON schema, when
/// `validate_structured_output` is on, asking once more when `retry_structured_output` is.
pub struct StructuredOutput {
    validate: bool,
    retry: bool,
}

impl StructuredOutput {
    pub fn new(validate: bool, retry: bool) -> Self {
        Self { validate, retry }
    }
}

#[async_trait::async_trait]
impl Stage for StructuredOutput {
    fn name(&self) -> &'static str {
        "structured-output"
    }

    fn reads(&self) -> Reads {
        Reads::EVENTS
    }

    fn phases(&self) -> Phases {
        Phases::AROUND_UPSTREAM.when(self.validate)
    }

    async fn around_upstream(
        &self,
        _ctx: &RequestContext,
        request: &Request,
        next: Upstream<'_>,
    ) -> Result<EventStream, Error> {
        if !self.validate || requested_schema(request).is_none() {
            return next.send(request).await;
        }
        respond(request, self.retry, |request| async move {
            next.send(&request).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
               "required": ["name", "age"], "additionalProperties": false})
    }

    #[test]
    fn each_defect_class_is_repaired() {
        let cases = [
            "```json\n{\"name\": \"Ada\", \"age\": 36}\n```",
            "Sure! Here it is: {\"name\": \"Ada\", \"age\": 36} Hope that helps.",
            "{\"name\": \"Ada\", \"age\": 36,}",
            "{'name': 'Ada', 'age': 36}",
            "{name: \"Ada\", age: 36}",
            "{\"name\": \"Ada\", \"age\": 36",
        ];
        for case in cases {
            let repaired = valid_text(&schema(), case).unwrap_or_else(|e| panic!("{case}: {e:?}"));
            assert_eq!(
                serde_json::from_str::<Value>(&repaired).unwrap(),
                json!({"name": "Ada", "age": 36}),
                "{case}"
            );
        }
    }

    #[test]
    fn a_truncated_string_is_closed() {
        let repaired = close_truncated("{\"name\": \"Ad");
        assert_eq!(repaired, "{\"name\": \"Ad\"}");
    }

    #[test]
    fn valid_answers_pass_untouched_and_violations_are_described() {
        assert_eq!(
            valid_text(&schema(), "{\"name\":\"Ada\",\"age\":36}").unwrap(),
            "{\"name\":\"Ada\",\"age\":36}"
        );
        let errors = valid_text(&schema(), "{\"name\": \"Ada\", \"age\": \"old\"}").unwrap_err();
        assert!(errors[0].contains("/age"), "{errors:?}");
    }
}
