//! The same-protocol request pass-through: when the client and the back-end speak the same
//! protocol and nothing on the way changed the request, the back-end gets the client's own
//! bytes, with the model patched in, instead of llmux's re-encoding of the decoded request.
//!
//! The front-end's decoder says whether its protocol's encoder would write the body again
//! as it came (as JSON, `null` members aside): only then does it put a [`ClientBody`] on the
//! request, holding the bytes, where the model's value sits, the few fixed splices that make
//! the rest what the encoder writes (OpenAI chat: no `"stream": false`, a streamed request
//! asks for usage), and a copy of the request as decoded. A back-end whose wire encodes
//! that protocol asks [`ClientBody::body_for`] for the body: it is given only when the
//! request the pipeline hands over is the decoded one, the model aside. Any stage that
//! changed anything (a command stripped from a message, a rewritten prompt, sampling a mode
//! set) makes them differ, and the request is encoded as before. So the encoder stays the
//! reference, and no stage needs to declare what it changes.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::{Protocol, Request};

/// The bytes at `at` replaced by `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub at: Range<usize>,
    pub with: &'static str,
}

/// What changes in a body that goes as it came: the model's value (a JSON string, at
/// `model`) and the protocol's fixed splices, in any order, none overlapping another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edits {
    pub model: Range<usize>,
    pub splices: Vec<Splice>,
}

/// The client's request body, for a back-end of the same protocol to send as it came.
/// Cheap to clone: every clone of the request shares one.
#[derive(Clone)]
pub struct ClientBody(Arc<Sent>);

struct Sent {
    protocol: Protocol,
    body: Bytes,
    edits: Edits,
    /// The request as decoded from `body`, to tell whether a stage changed it.
    decoded: Request,
}

impl ClientBody {
    /// The body of a client that speaks `protocol`, which decoded to `decoded`.
    pub fn new(protocol: Protocol, body: Bytes, decoded: &Request, edits: Edits) -> Self {
        Self(Arc::new(Sent {
            protocol,
            body,
            edits,
            decoded: decoded.clone(),
        }))
    }

    /// The body a back-end that encodes `protocol` sends for `request` to `model`: the
    /// client's own bytes with the edits made, when `request` is still the one decoded
    /// from them (its model aside). `None`: encode it.
    pub fn body_for(&self, protocol: Protocol, request: &Request, model: &str) -> Option<Bytes> {
        let sent = &*self.0;
        (protocol == sent.protocol && same_request(&sent.decoded, request))
            .then(|| spliced(&sent.body, &sent.edits, model))
    }
}

/// `body` with the model's value replaced by `model` and the fixed splices made.
fn spliced(body: &Bytes, edits: &Edits, model: &str) -> Bytes {
    let model_json = serde_json::Value::from(model).to_string();
    // Nothing to change (the model the client named, nothing to splice): the client's own
    // buffer, shared. Copying it cost a 100 KB request ~10 µs, and the capture store then
    // had to compare the two to learn they are one (bench/results/fastpath.md, session 24).
    if edits.splices.is_empty() && body.get(edits.model.clone()) == Some(model_json.as_bytes()) {
        return body.clone();
    }
    let mut cuts: Vec<(&Range<usize>, &str)> = edits
        .splices
        .iter()
        .map(|splice| (&splice.at, splice.with))
        .collect();
    cuts.push((&edits.model, &model_json));
    cuts.sort_unstable_by_key(|(at, _)| at.start);
    let mut out = Vec::with_capacity(body.len() + model_json.len() + 64);
    let mut from = 0;
    for (at, with) in cuts {
        out.extend_from_slice(&body[from..at.start]);
        out.extend_from_slice(with.as_bytes());
        from = at.end;
    }
    out.extend_from_slice(&body[from..]);
    Bytes::from(out)
}

/// Whether `now` asks what `sent` asked, the model and what llmux knows of the client
/// aside (the end user's name is part of the body, so it counts). Every field is named, so
/// a new one must be placed here.
fn same_request(sent: &Request, now: &Request) -> bool {
    let Request {
        model: _,
        system,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        sampling,
        reasoning,
        response_format,
        stream,
        client,
        extensions,
        message_facts: _,
    } = now;
    *stream == sent.stream
        && *parallel_tool_calls == sent.parallel_tool_calls
        && *sampling == sent.sampling
        && *reasoning == sent.reasoning
        && *response_format == sent.response_format
        && *tool_choice == sent.tool_choice
        && client.user == sent.client.user
        && *extensions == sent.extensions
        && *system == sent.system
        && *tools == sent.tools
        && *messages == sent.messages
}

/// The body is not part of what a request asks for: two requests are equal whatever bodies
/// they carry.
impl PartialEq for ClientBody {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientBody({:?}, {} bytes)",
            self.0.protocol,
            self.0.body.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Part, Role};

    const BODY: &str =
        r#"{"model": "alias", "stream": false, "messages": [{"role":"user","content":"hi"}]}"#;

    fn body() -> ClientBody {
        let decoded = Request::new(
            "alias",
            vec![Message::new(Role::User, vec![Part::text("hi")])],
        );
        let model = BODY.find("\"alias\"").unwrap();
        let stream = BODY.find("\"stream\"").unwrap();
        let edits = Edits {
            model: model..model + "\"alias\"".len(),
            splices: vec![Splice {
                at: stream..BODY.find("\"messages\"").unwrap(),
                with: "",
            }],
        };
        ClientBody::new(
            Protocol::OpenAiChat,
            Bytes::from_static(BODY.as_bytes()),
            &decoded,
            edits,
        )
    }

    #[test]
    fn an_unchanged_request_goes_as_it_came_with_the_model_and_splices() {
        let client = body();
        let mut request = client.0.decoded.clone();
        request.model = "routed \"quoted\"".into();
        request.client.user_agent = Some("agent/1".into());
        let sent = client
            .body_for(Protocol::OpenAiChat, &request, "gpt-4o \"x\"")
            .expect("the same request");
        assert_eq!(
            std::str::from_utf8(&sent).unwrap(),
            r#"{"model": "gpt-4o \"x\"", "messages": [{"role":"user","content":"hi"}]}"#
        );
    }

    #[test]
    fn a_request_with_nothing_to_change_goes_in_the_clients_own_buffer() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
        let model = 9..12;
        let decoded = Request::new("m", Vec::new());
        let edits = |splices| Edits {
            model: model.clone(),
            splices,
        };
        let client = ClientBody::new(Protocol::OpenAiChat, body.clone(), &decoded, edits(vec![]));
        let sent = client
            .body_for(Protocol::OpenAiChat, &decoded, "m")
            .unwrap();
        assert_eq!((sent.as_ptr(), sent.len()), (body.as_ptr(), body.len()));
        // Another model, or a splice, is a new body.
        let renamed = client
            .body_for(Protocol::OpenAiChat, &decoded, "n")
            .unwrap();
        assert_eq!(renamed, &br#"{"model":"n","messages":[]}"#[..]);
        let spliced = ClientBody::new(
            Protocol::OpenAiChat,
            body.clone(),
            &decoded,
            edits(vec![Splice {
                at: 12..13,
                with: "",
            }]),
        );
        let sent = spliced
            .body_for(Protocol::OpenAiChat, &decoded, "m")
            .unwrap();
        assert_eq!(sent, &br#"{"model":"m""messages":[]}"#[..]);
    }

    #[test]
    fn a_changed_request_or_another_protocol_is_encoded() {
        let client = body();
        let mut changed = client.0.decoded.clone();
        changed.messages[0].parts.push(Part::text("more"));
        assert_eq!(client.body_for(Protocol::OpenAiChat, &changed, "m"), None);
        let mut sampled = client.0.decoded.clone();
        sampled.sampling.temperature = Some(0.0);
        assert_eq!(client.body_for(Protocol::OpenAiChat, &sampled, "m"), None);
        let mut user = client.0.decoded.clone();
        user.client.user = Some("someone".into());
        assert_eq!(client.body_for(Protocol::OpenAiChat, &user, "m"), None);
        let same = client.0.decoded.clone();
        assert_eq!(client.body_for(Protocol::Anthropic, &same, "m"), None);
    }
}
