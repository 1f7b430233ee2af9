//! Tool lists as an encoder wrote them for a provider, written again as text when the same
//! shared list comes back.
//!
//! An agent's request translated for another protocol (Claude Code to an OpenAI back-end)
//! carried its twenty tools' schemas through the encoder each time: cloned into a new
//! `Value` tree, written as JSON and dropped, ~520k of a request's 891k instructions
//! (bench/callgrind.sh, `--kind anthropic-nonstream --extra-tools 20`). The tools memo hands
//! a list sent again back as the list decoded the first time (`model::Shared`, one
//! allocation), and an encoder's tools are a pure function of the list, so the text written
//! for that list is the text to write again. A list is known by its allocation, never by
//! its content: a stage that changes the tools gets a copy (`Arc::make_mut`), a new list.
//! A kept text holds a weak handle to its list: the list's tools are freed with its last
//! request, but its allocation stays taken, so no later list gets its address while kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::json_out;
use crate::model::{Shared, Tool};

/// Lists kept at most, per encoder: an agent's, its sub-agents' and a few more.
const KEPT: usize = 8;
/// Longer texts are written each time and not kept (as the tools memo keeps no longer list).
const LONGEST: usize = 256 << 10;
/// Member key of the tools in every encoder's body.
const TOOLS_KEY: &str = "tools";

/// An encoder's tool lists: the last [`KEPT`] written, newest first.
pub(crate) struct ToolsOut {
    written: Mutex<VecDeque<Written>>,
}

/// A list and what its encoder wrote for it.
struct Written {
    tools: std::sync::Weak<Vec<Tool>>,
    /// The JSON array, or `None` when the encoder left every tool out (another protocol's).
    text: Option<Arc<[u8]>>,
}

impl ToolsOut {
    pub(crate) const fn new() -> Self {
        Self {
            written: Mutex::new(VecDeque::new()),
        }
    }

    /// `tools` as the JSON array that `encode_list` gives, or `None` when it gives none:
    /// written once for each shared list. An error is returned as it is, and nothing kept.
    pub(crate) fn text<E>(
        &self,
        tools: &Shared<Tool>,
        encode_list: impl FnOnce(&[Tool]) -> Result<Vec<Value>, E>,
    ) -> Result<Option<Arc<[u8]>>, E> {
        if let Some(text) = self.find(tools) {
            return Ok(text);
        }
        let values = encode_list(tools)?;
        let text: Option<Arc<[u8]>> =
            (!values.is_empty()).then(|| json_out::to_vec(&Value::Array(values), 0).into());
        if text.as_ref().is_none_or(|text| text.len() <= LONGEST) {
            self.keep(tools, text.clone());
        }
        Ok(text)
    }

    /// The text kept for this very list, made the newest.
    fn find(&self, tools: &Shared<Tool>) -> Option<Option<Arc<[u8]>>> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        // Lists no request holds any more cannot come back: their texts go.
        written.retain(|kept| kept.tools.strong_count() > 0);
        let at = written
            .iter()
            .position(|kept| tools.is_known_by(&kept.tools))?;
        let found = written.remove(at)?;
        let text = found.text.clone();
        written.push_front(found);
        Some(text)
    }

    fn keep(&self, tools: &Shared<Tool>, text: Option<Arc<[u8]>>) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        // Lists no request holds any more cannot come back; and a list another request
        // wrote meanwhile is kept once.
        written.retain(|kept| kept.tools.strong_count() > 0 && !tools.is_known_by(&kept.tools));
        written.truncate(KEPT - 1);
        written.push_front(Written {
            tools: tools.known_by(),
            text,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.written.lock().unwrap().len()
    }
}

/// A request body as an encoder built it: the JSON, and the tools' text to write in place of
/// its member at `tools_at` (`tools`, or inside the object a login wire wraps the body in)
/// when the list was written before.
pub struct Encoded {
    pub body: Value,
    tools: Option<Arc<[u8]>>,
    tools_at: &'static [&'static str],
}

impl From<Value> for Encoded {
    fn from(body: Value) -> Self {
        Self {
            body,
            tools: None,
            tools_at: &[TOOLS_KEY],
        }
    }
}

impl Encoded {
    /// The body as a value, the tools' text read back (for tests and tools that inspect it).
    pub fn to_value(&self) -> Value {
        match &self.tools {
            Some(_) => serde_json::from_slice(&self.to_vec(0)).unwrap_or(Value::Null),
            None => self.body.clone(),
        }
    }

    /// The body as compact JSON, as `serde_json::to_vec` would write it with the tools as
    /// values.
    pub fn to_vec(&self, capacity: usize) -> Vec<u8> {
        match &self.tools {
            Some(text) => json_out::to_vec_with_member(&self.body, capacity, self.tools_at, text),
            None => json_out::to_vec(&self.body, capacity),
        }
    }

    /// This body wrapped by `wrap` as the member `key` of another object, `key_path` being
    /// `[key, "tools"]`: its tools' text goes there. `wrap` must keep the body whole under
    /// `key` (the placeholder would be written as `null` otherwise).
    pub fn wrapped(
        self,
        key_path: &'static [&'static str],
        wrap: impl FnOnce(Value) -> Value,
    ) -> Self {
        Self {
            body: wrap(self.body),
            tools: self.tools,
            tools_at: key_path,
        }
    }
}

/// Puts `tools` into `body` as its `tools` member (none when the encoder leaves out every
/// tool): as values, or, given `out`, as a placeholder whose text the returned [`Encoded`]
/// carries. The member goes where a value would, so the bytes are the same either way.
pub(crate) fn put_tools(
    body: &mut Map<String, Value>,
    tools: &Shared<Tool>,
    out: Option<&ToolsOut>,
    encode_tool: fn(&Tool) -> Option<Value>,
) -> Option<Arc<[u8]>> {
    let each = |tools: &[Tool]| Ok(tools.iter().filter_map(encode_tool).collect());
    match put_tools_list::<std::convert::Infallible>(body, tools, out, each) {
        Ok(text) => text,
        Err(never) => match never {},
    }
}

/// [`put_tools`] for an encoder that writes the list as a whole (`encode_list`), and may
/// refuse it.
pub(crate) fn put_tools_list<E>(
    body: &mut Map<String, Value>,
    tools: &Shared<Tool>,
    out: Option<&ToolsOut>,
    encode_list: impl FnOnce(&[Tool]) -> Result<Vec<Value>, E>,
) -> Result<Option<Arc<[u8]>>, E> {
    if tools.is_empty() {
        return Ok(None);
    }
    match out {
        Some(out) => {
            let text = out.text(tools, encode_list)?;
            if text.is_some() {
                body.insert(TOOLS_KEY.into(), Value::Null);
            }
            Ok(text)
        }
        None => {
            let values = encode_list(tools)?;
            if !values.is_empty() {
                body.insert(TOOLS_KEY.into(), Value::Array(values));
            }
            Ok(None)
        }
    }
}

/// `body` with the tools' text from [`put_tools`].
pub(crate) fn encoded(body: Map<String, Value>, tools: Option<Arc<[u8]>>) -> Encoded {
    Encoded {
        body: Value::Object(body),
        tools,
        tools_at: &[TOOLS_KEY],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Extensions, Protocol, Request};

    fn function(name: &str) -> Tool {
        Tool::Function {
            name: name.into(),
            description: Some(format!("{name}: \"quoted\"\nand more")),
            parameters: Some(json!({"type": "object", "properties": {"x": {"type": "string"}}})),
            strict: None,
            extensions: Extensions::default(),
        }
    }

    fn encode_tool(tool: &Tool) -> Option<Value> {
        match tool {
            Tool::Function {
                name, parameters, ..
            } => Some(json!({"name": name, "schema": parameters})),
            Tool::Opaque { .. } => None,
        }
    }

    fn text_of(out: &ToolsOut, tools: &Shared<Tool>) -> Option<Arc<[u8]>> {
        let each = |tools: &[Tool]| Ok(tools.iter().filter_map(encode_tool).collect());
        out.text::<std::convert::Infallible>(tools, each).unwrap()
    }

    fn body_with(tools: &Shared<Tool>, out: Option<&ToolsOut>) -> Vec<u8> {
        let mut body = Map::new();
        body.insert("model".into(), json!("m"));
        let text = put_tools(&mut body, tools, out, encode_tool);
        body.insert("tool_choice".into(), json!("auto"));
        encoded(body, text).to_vec(0)
    }

    #[test]
    fn a_kept_text_gives_the_bytes_the_values_give_in_the_same_place() {
        let out = ToolsOut::new();
        let tools: Shared<Tool> = vec![function("a"), function("b")].into();
        let as_values = body_with(&tools, None);
        assert!(
            String::from_utf8_lossy(&as_values)
                .starts_with(r#"{"model":"m","tools":[{"name":"a","#)
        );
        assert_eq!(body_with(&tools, Some(&out)), as_values, "written");
        assert_eq!(body_with(&tools, Some(&out)), as_values, "kept");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_list_is_known_by_its_allocation_not_its_content() {
        let out = ToolsOut::new();
        let first: Shared<Tool> = vec![function("a")].into();
        let text = text_of(&out, &first).unwrap();
        assert!(Arc::ptr_eq(&text_of(&out, &first.clone()).unwrap(), &text));
        // An equal list decoded apart, and the list changed by a stage, are written anew.
        let equal: Shared<Tool> = vec![function("a")].into();
        assert!(!Arc::ptr_eq(&text_of(&out, &equal).unwrap(), &text));
        let mut changed = first.clone();
        changed.push(function("c"));
        let changed_text = text_of(&out, &changed).unwrap();
        assert!(String::from_utf8_lossy(&changed_text).contains(r#""name":"c""#));
        assert_eq!(text_of(&out, &first).unwrap(), text);
    }

    #[test]
    fn a_list_the_encoder_leaves_out_entirely_has_no_member() {
        let out = ToolsOut::new();
        let foreign: Shared<Tool> = vec![Tool::Opaque {
            protocol: Protocol::Gemini,
            value: json!({"googleSearch": {}}),
        }]
        .into();
        for _ in 0..2 {
            assert_eq!(
                body_with(&foreign, Some(&out)),
                br#"{"model":"m","tool_choice":"auto"}"#
            );
        }
        assert_eq!(
            body_with(&Shared::default(), Some(&out)),
            body_with(&foreign, None)
        );
        assert_eq!(out.len(), 1, "the empty list is not kept");
    }

    /// Every encoder with kept tools writes, for requests decoded from either protocol with
    /// each kind of tool, the bytes it writes with the tools as values: the first time and
    /// when the list comes back.
    #[test]
    fn each_encoder_writes_the_same_body_with_its_tools_kept() {
        use crate::protocol::{anthropic, gemini, openai_chat, openai_responses};

        let anthropic_body = json!({"model": "claude", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"name": "bash", "description": "Run \"it\"\n", "input_schema":
                    {"type": "object", "properties": {"command": {"type": "string"}}}},
                {"name": "cached", "input_schema": {"type": "object"},
                    "cache_control": {"type": "ephemeral"}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            "tool_choice": {"type": "auto"}});
        let openai_body = json!({"model": "gpt", "stream": true,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "f", "strict": true,
                    "parameters": {"type": "object"}, "x-extra": 1}},
                {"type": "function", "function": {"name": "g"}, "cache": 2}]});
        let mut requests = vec![
            anthropic::decode_request(anthropic_body.to_string().as_bytes()).unwrap(),
            openai_chat::decode_request(openai_body.to_string().as_bytes())
                .unwrap()
                .0,
        ];
        let mut answer_as_json = requests[1].clone();
        answer_as_json.response_format = Some(crate::model::ResponseFormat::JsonSchema {
            name: "answer".into(),
            description: None,
            schema: json!({"type": "object"}),
            strict: None,
        });
        requests.push(answer_as_json);
        type Encoders = (fn(&Request, &str) -> Value, fn(&Request, &str) -> Encoded);
        let encoders: [Encoders; 4] = [
            (
                openai_chat::encode_request,
                openai_chat::encode_request_body,
            ),
            (anthropic::encode_request, anthropic::encode_request_body),
            (
                openai_responses::encode_request,
                openai_responses::encode_request_body,
            ),
            (
                |request, model| gemini::encode_request(request, model).unwrap(),
                |request, model| gemini::encode_request_body(request, model).unwrap(),
            ),
        ];
        for request in &requests {
            for (as_values, kept) in encoders {
                let expected = serde_json::to_vec(&as_values(request, "m")).unwrap();
                let mut texts = Vec::new();
                for time in ["first", "again"] {
                    let encoded = kept(request, "m");
                    assert_eq!(
                        String::from_utf8_lossy(&encoded.to_vec(0)),
                        String::from_utf8_lossy(&expected),
                        "{time}"
                    );
                    texts.extend(encoded.tools);
                }
                // The text written the first time is the one written again (the Anthropic
                // encoder writes a JSON answer's tools as values).
                if let [first, again] = &texts[..] {
                    assert!(Arc::ptr_eq(first, again));
                } else {
                    assert!(texts.is_empty() && request.response_format.is_some());
                }
            }
        }
    }

    #[test]
    fn a_kept_text_does_not_keep_its_list_alive() {
        let out = ToolsOut::new();
        let list: Shared<Tool> = vec![function("a")].into();
        let handle = list.known_by();
        text_of(&out, &list).unwrap();
        drop(list);
        assert!(
            handle.upgrade().is_none(),
            "the tools went with the last request"
        );
        // The next lookup lets the dead one's text go.
        let next: Shared<Tool> = vec![function("a")].into();
        assert!(out.find(&next).is_none());
        assert_eq!(out.len(), 0);
        text_of(&out, &next).unwrap();
        assert_eq!(out.len(), 1);
        // A list two requests wrote at once (both missed) is kept once.
        out.keep(&next, None);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn only_the_newest_lists_are_kept() {
        let out = ToolsOut::new();
        let lists: Vec<Shared<Tool>> = (0..KEPT + 2)
            .map(|i| vec![function(&i.to_string())].into())
            .collect();
        let texts: Vec<_> = lists.iter().map(|l| text_of(&out, l)).collect();
        assert_eq!(out.len(), KEPT);
        // The newest is still this text; the oldest was let go and is written anew.
        let newest = lists.last().unwrap();
        assert!(Arc::ptr_eq(
            &text_of(&out, newest).unwrap(),
            texts.last().unwrap().as_ref().unwrap()
        ));
        assert!(!Arc::ptr_eq(
            &text_of(&out, &lists[0]).unwrap(),
            texts[0].as_ref().unwrap()
        ));
        assert_eq!(out.len(), KEPT);
    }
}
