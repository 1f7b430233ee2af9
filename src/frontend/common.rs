//! What every front-end shares: reading bodies, streaming and folding answers, error
//! responses and the per-request context.

use std::net::SocketAddr;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::Error;
use crate::backend::EventStream;
use crate::capture::store::Recorder;
use crate::error::ErrorKind;
use crate::model::{self, Event, Protocol, ResponseBuilder};
use crate::pipeline::RequestContext;
use crate::protocol::openai_chat;
use crate::quiet_timer::{QuietTimer, next_unless_quiet};

/// How often a quiet stream gets a keep-alive frame, so proxies and clients with read
/// timeouts do not drop a model that is thinking.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// At most this many already-waiting events are encoded into one write.
const MAX_BATCH: usize = 64;

/// Joins frames into one buffer (no copy for a single frame).
fn concat(frames: &mut Vec<Bytes>) -> Bytes {
    if frames.len() == 1 {
        return frames.pop().unwrap_or_default();
    }
    let mut joined = bytes::BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
    for frame in frames.drain(..) {
        joined.extend_from_slice(&frame);
    }
    joined.freeze()
}

/// Turns events into a client protocol's stream frames.
pub trait StreamEncoder: Send + 'static {
    /// Encodes one event into zero or more frames.
    fn push(&mut self, event: Event, out: &mut Vec<Bytes>);
    /// Ends the stream with the protocol's terminator (or an error frame if it never
    /// finished).
    fn finish(&mut self, out: &mut Vec<Bytes>);
    /// A frame to send when the stream has been quiet for a while, if the protocol has one.
    fn keepalive(&self) -> Option<Bytes> {
        None
    }
    /// The response's content type.
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }
}

/// A streamed response: frames go out as events arrive, and keep-alives fill long silences.
pub fn stream_response(events: EventStream, encoder: impl StreamEncoder) -> Response {
    let content_type = encoder.content_type();
    let body = async_stream::stream! {
        let mut events = events;
        let mut encoder = encoder;
        let mut frames = Vec::with_capacity(2);
        // The first frame goes out alone: batching it with what follows would hold back
        // the client's first token for the sake of fewer writes.
        let mut batch = 0;
        let mut keepalive = encoder
            .keepalive()
            .map(|ping| (ping, QuietTimer::new(KEEPALIVE_INTERVAL)));
        loop {
            let timer = keepalive.as_mut().map(|(_, timer)| timer);
            let Some(next) = next_unless_quiet(&mut events, timer).await else {
                // Quiet for a whole interval: a ping keeps proxies from closing the stream.
                if let Some((ping, _)) = &keepalive {
                    yield Ok::<Bytes, Infallible>(ping.clone());
                }
                continue;
            };
            let Some(event) = next else { break };
            encoder.push(event, &mut frames);
            // Events that are already waiting go out in the same write: one syscall and
            // one wake-up for a burst instead of one per event.
            let mut ended = false;
            for _ in 0..batch {
                match events.next().now_or_never() {
                    Some(Some(event)) => encoder.push(event, &mut frames),
                    Some(None) => {
                        ended = true;
                        break;
                    }
                    None => break,
                }
            }
            if ended {
                break;
            }
            if !frames.is_empty() {
                let first = batch == 0;
                batch = MAX_BATCH;
                yield Ok(concat(&mut frames));
                if first {
                    // hyper writes a body out only when it has nothing more ready, and the
                    // provider's connection is read in this same task: without a pause, a
                    // burst already received would go out whole, first token included.
                    PauseOnce::default().await;
                }
            }
        }
        encoder.finish(&mut frames);
        if !frames.is_empty() {
            yield Ok(concat(&mut frames));
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Pending once, asking to be polled again at once: lets the server write out what it has.
#[derive(Default)]
struct PauseOnce(bool);

impl std::future::Future for PauseOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The events of a non-streaming answer, as the client gets them; the error of an error
/// event ends it.
pub async fn collect_answer(mut events: EventStream) -> Result<Vec<Event>, Error> {
    let mut answer = Vec::with_capacity(8);
    while let Some(event) = events.next().await {
        if let Event::Error(err) = event {
            return Err(err);
        }
        answer.push(event);
    }
    Ok(answer)
}

/// Folds a whole answer's events into one response.
pub fn fold_answer(answer: Vec<Event>) -> Result<model::Response, Error> {
    let mut builder = ResponseBuilder::new();
    for event in answer {
        builder.push(event)?;
    }
    Ok(builder.finish())
}

/// Marks a response whose bytes the capture store records (see `record_client_leg`).
#[derive(Clone)]
pub struct ClientLeg(Arc<Recorder>);

/// Copies the answer's bytes, as the client gets them, into the request's capture row.
/// A whole body is read at once (its length stays known); a stream is copied as it goes.
pub async fn record_client_leg(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Some(ClientLeg(recorder)) = parts.extensions.remove::<ClientLeg>() else {
        return Response::from_parts(parts, body);
    };
    if body.size_hint().exact().is_some() {
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        recorder.client_response(&bytes);
        return Response::from_parts(parts, Body::from(bytes));
    }
    let copied = body.into_data_stream().inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            recorder.client_response(bytes);
        }
    });
    Response::from_parts(parts, Body::from_stream(copied))
}

/// Adds the request's id to its answer, and its attempt chain (`x-llmux-attempts`) when it
/// asked for a failover route or took more than one attempt.
pub fn with_request_id(response: &mut Response, ctx: &RequestContext) {
    if let Some(recorder) = &ctx.recorder {
        response
            .extensions_mut()
            .insert(ClientLeg(recorder.clone()));
    }
    if let Ok(id) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    if (ctx.failover_route.is_some() || ctx.trail.attempt_count() > 1)
        && let Ok(chain) = HeaderValue::from_str(&ctx.trail.chain())
    {
        response.headers_mut().insert("x-llmux-attempts", chain);
    }
}

/// The client's socket address, for hosts that serve without axum's `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The error response a client of `protocol` expects.
pub fn error_response(protocol: Protocol, error: &Error) -> Response {
    let body = match protocol {
        // Other protocols plug their error bodies in here as their front-ends land.
        Protocol::Anthropic => crate::protocol::anthropic::error_body(error),
        Protocol::Gemini => crate::protocol::gemini::error_body(error),
        Protocol::OpenAiResponses => crate::protocol::openai_responses::error_body(error),
        Protocol::OpenAiChat => openai_chat::error_body(error),
    };
    let body = match (body, error.seed_detail()) {
        (serde_json::Value::Object(mut fields), Some(detail)) => {
            fields.insert("detail".into(), detail);
            serde_json::Value::Object(fields)
        }
        (body, _) => body,
    };
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(wait) = error.retry_after() {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The address of the client that sent `request`, when the server recorded it.
pub fn client_ip(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip())
        .or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
}

/// The context of a request, from its connection and headers.
pub fn request_context(protocol: Protocol, request: &Request) -> RequestContext {
    let mut ctx = RequestContext::new(protocol);
    ctx.client_ip = client_ip(request);
    ctx.user_agent = header_string(request.headers(), "user-agent");
    ctx
}

pub fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads the whole body, refusing more than `limit` bytes with a 413.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Error> {
    let too_large = || Error::from(ErrorKind::PayloadTooLarge { limit });
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
        while let Some(inner) = source {
            if inner.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = inner.source();
        }
        Error::invalid_request(format!("could not read the request body: {err}"))
    })
}

/// `body`, holding `guard` until the body has been sent whole or dropped: what a request
/// holds (a connection's running count, a per-address slot) lasts as long as its answer,
/// streams included. Size hints pass through, so a whole body keeps its length.
pub fn hold_until_done<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Body::new(Holding {
        body,
        _guard: guard,
    })
}

struct Holding<G> {
    body: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> HttpBody for Holding<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes each text delta as its own frame; pings with `ping`.
    struct Frames;

    impl StreamEncoder for Frames {
        fn push(&mut self, event: Event, out: &mut Vec<Bytes>) {
            if let Event::TextDelta(text) = event {
                out.push(Bytes::from(text));
            }
        }
        fn finish(&mut self, out: &mut Vec<Bytes>) {
            out.push(Bytes::from_static(b"end"));
        }
        fn keepalive(&self) -> Option<Bytes> {
            Some(Bytes::from_static(b"ping"))
        }
    }

    /// The body of a streamed response to events that come `gaps` apart.
    async fn body_of(gaps: &'static [u64]) -> String {
        let events = futures::stream::iter(gaps.iter().enumerate()).then(|(i, gap)| async move {
            tokio::time::sleep(Duration::from_secs(*gap)).await;
            Event::TextDelta(format!("<{i}>"))
        });
        let response = stream_response(Box::pin(events), Frames);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_a_ping_each_interval_and_a_busy_one_none() {
        // 14 s gaps never reach the 15 s interval, even though 42 s pass in all.
        assert_eq!(body_of(&[0, 14, 14, 14]).await, "<0><1><2><3>end");
        // 31 s of silence: two pings, then the event.
        assert_eq!(body_of(&[0, 31]).await, "<0>pingping<1>end");
    }

    #[tokio::test]
    async fn the_first_frame_goes_out_before_a_burst_that_is_already_waiting() {
        use std::task::{Context, Poll, Wake, Waker};
        struct Count(std::sync::atomic::AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let events = futures::stream::iter((0..5).map(|i| Event::TextDelta(format!("<{i}>"))));
        let mut body = stream_response(Box::pin(events), Frames).into_body();
        let count = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut poll = || match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => Some(frame.into_data().unwrap()),
            Poll::Ready(other) => panic!("unexpected {:?}", other.map(|r| r.is_ok())),
            Poll::Pending => None,
        };
        assert_eq!(poll().as_deref(), Some(&b"<0>"[..]));
        // Everything else is ready, yet the body pauses once so the server writes <0>.
        assert_eq!(poll(), None);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(poll().as_deref(), Some(&b"<1><2><3><4>end"[..]));
    }
}
