//! The fuzz target bodies, one `pub fn <target>(data: &[u8])` per target. Included by the
//! cargo-fuzz binaries in `fuzz/fuzz_targets/` and by `tests/fuzz_corpora.rs`, which
//! replays every saved corpus and regression input through the same code, so what the
//! fuzzer explored stays covered in CI. Each body feeds outside bytes to the decoders
//! exactly as llmux does; a decoder may answer `Ok` or `Err`, never panic.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use llmux::config::ConfigLoader;
use llmux::model::{Event, Message, Part, Request, Role};
use llmux::pipeline::commands::{CommandSettings, Commands};
use llmux::pipeline::{RequestContext, Stage, derive_session_id};
use llmux::protocol::{StreamDecoder, anthropic, gemini, openai_chat, openai_responses};
use llmux::state::{MemoryStore, Session};

/// The model a Gemini request names in its URL.
const GEMINI_MODEL: &str = "gemini-2.5-flash";

/// Body sizes to cut an upstream body into, as the network would: from the input's
/// length, so a run is repeatable and the fuzzer still sees many different cuts.
fn piece_size(data: &[u8]) -> usize {
    data.len() % 61 + 3
}

/// Reads `data` as an upstream SSE body in pieces, with the SSE reader and the decoder
/// loop of `HttpBackend::stream_events` (src/backend/http.rs): frames until the decoder
/// is done, an error, or the end of the body.
fn drive_sse(data: &[u8], decoder: &mut dyn StreamDecoder) {
    let pieces: Vec<Result<&[u8], Infallible>> = data.chunks(piece_size(data)).map(Ok).collect();
    let mut frames = Box::pin(sse_parse::EventStream::new(futures::stream::iter(pieces)));
    let mut events: Vec<Event> = Vec::new();
    loop {
        if decoder.is_done() {
            let _ = decoder.finish();
            return;
        }
        // The input stream is always ready, so every poll completes.
        let Some(next) = frames.next().now_or_never() else {
            return;
        };
        match next {
            None => {
                let _ = decoder.finish();
                return;
            }
            Some(Err(_)) => return,
            Some(Ok(frame)) => {
                let result = decoder.push(&frame.event, &frame.data, &mut events);
                events.clear();
                if result.is_err() {
                    return;
                }
            }
        }
    }
}

/// What every front-end does with a decoded request before the pipeline.
fn after_decode(request: &Request) {
    let _ = derive_session_id(request);
}

/// A client's `POST /v1/chat/completions` body.
pub fn request_openai_chat(data: &[u8]) {
    if let Ok((request, _options)) = openai_chat::decode_request(data) {
        after_decode(&request);
    }
}

/// A client's `POST /v1/responses` body.
pub fn request_openai_responses(data: &[u8]) {
    if let Ok((request, _options)) = openai_responses::decode_request(data) {
        after_decode(&request);
    }
}

/// A client's `POST /v1/messages` body (and the token estimate `count_tokens` answers).
pub fn request_anthropic(data: &[u8]) {
    if let Ok(request) = anthropic::decode_request(data) {
        after_decode(&request);
        let _ = anthropic::estimate_input_tokens(&request);
    }
}

/// A client's `generateContent` / `streamGenerateContent` body and its `countTokens` body.
pub fn request_gemini(data: &[u8]) {
    if let Ok(request) = gemini::decode_request(data, GEMINI_MODEL) {
        after_decode(&request);
    }
    let _ = gemini::decode_count_tokens_request(data, GEMINI_MODEL);
}

/// A Chat Completions back-end's answer: a whole body, or an SSE stream of chunks.
pub fn upstream_openai_chat(data: &[u8]) {
    let _ = openai_chat::decode_response(data);
    drive_sse(data, &mut openai_chat::ChunkDecoder::new());
}

/// A Responses back-end's answer: a whole body, or an SSE stream of events.
pub fn upstream_openai_responses(data: &[u8]) {
    let _ = openai_responses::decode_response(data);
    drive_sse(data, &mut openai_responses::EventDecoder::new());
}

/// An Anthropic back-end's answer: a whole body, or an SSE stream of events.
pub fn upstream_anthropic(data: &[u8]) {
    let _ = anthropic::decode_response(data);
    drive_sse(data, &mut anthropic::EventDecoder::new());
}

/// A Gemini back-end's answer: a whole body, an `alt=sse` stream, or a streamed JSON
/// array cut into records by `JsonArraySplitter`.
pub fn upstream_gemini(data: &[u8]) {
    let _ = gemini::decode_response(data);
    drive_sse(data, &mut gemini::ChunkDecoder::new());

    let mut splitter = gemini::JsonArraySplitter::new();
    let mut decoder = gemini::ChunkDecoder::new();
    let mut records = Vec::new();
    let mut events = Vec::new();
    for piece in data.chunks(piece_size(data)) {
        if splitter.push(piece, &mut records).is_err() {
            return;
        }
        for record in records.drain(..) {
            if decoder.push(&record, &mut events).is_err() {
                return;
            }
            events.clear();
        }
    }
    if splitter.finish().is_ok() {
        let _ = decoder.finish();
    }
}

/// The commands stage in both detection modes, with its session store, built once.
fn command_stages() -> &'static [(Commands, Arc<MemoryStore>); 2] {
    static STAGES: OnceLock<[(Commands, Arc<MemoryStore>); 2]> = OnceLock::new();
    STAGES.get_or_init(|| {
        [false, true].map(|strict| {
            let store = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
            let settings = CommandSettings {
                prefix: "!/".into(),
                strict,
            };
            let backends = vec!["openai".to_owned(), "anthropic".to_owned()];
            match Commands::new(settings, store.clone(), backends, "openai".into()) {
                Ok(stage) => (stage, store),
                Err(err) => panic!("the default command prefix is unusable: {err}"),
            }
        })
    })
}

/// The last user message's text (NUL separates text parts), read for in-chat commands by
/// the whole commands stage in both detection modes: found (the same scan as `extract`,
/// which would compile the pattern on every call), applied to a session, maybe answered
/// locally.
pub fn commands(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for (stage, store) in command_stages() {
        let parts = text.split('\0').map(Part::text).collect();
        let mut request = Request::new("gpt-4o", vec![Message::new(Role::User, parts)]);
        let mut ctx = RequestContext::new(llmux::model::Protocol::OpenAiChat);
        // With the memory store the stage never waits; if it ever did, this target would
        // stop reaching it, so that is a failure of the target.
        let done = stage.on_request(&mut ctx, &mut request).now_or_never();
        assert!(
            done.is_some(),
            "the commands stage waited; poll it to the end"
        );
        // Each input starts from a fresh session.
        store.update_at(&ctx.session_id, Instant::now(), &|s| {
            *s = Session::default()
        });
    }
}

/// A config file's text, loaded as `llmux serve` and the settings page load it (no
/// environment), printed when valid; and the same text as the two pattern files a config
/// can name (edit-precision patterns, reasoning aliases).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = llmux::pipeline::edit_precision::parse_patterns(&text);
    let _ = llmux::pipeline::reasoning_modes::parse(&text);
    // A config may name files to read; keep the fuzzer away from endless ones.
    if ["/dev", "/proc", "/sys"].iter().any(|p| text.contains(p)) {
        return;
    }
    let loaded = ConfigLoader::new()
        .file_contents("fuzz.toml", text.into_owned())
        .env(|_| None)
        .load();
    if let Ok(loaded) = loaded {
        let _ = loaded.print();
    }
}
