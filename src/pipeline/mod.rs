//! The pipeline: ordered stages that read and change requests and response events.
//!
//! A stage is one feature in one file with its own config section and tests. On the way
//! in, a stage may change the request or answer it locally (a command such as `!/help`);
//! on the way out, it may install a per-response [`EventFilter`] that changes, drops or
//! appends events. [`Pipeline::standard`] is the one list of stages, in order: reading it
//! tells you everything llmux can do to a request.
//!
//! Hook order for one request:
//! 1. `on_request` of every stage, in list order, until one answers locally;
//! 2. routing and the back-end call;
//! 3. `response_filter` of every stage, in list order; each event then passes through the
//!    filters in that order before the front-end encodes it.

pub mod commands;
pub mod edit_precision;
pub mod model_aliases;
pub mod planning;
pub mod reasoning_modes;
pub mod routing;
pub mod structured_output;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::Error;
use crate::model::{Event, Protocol, Request};
use crate::state::StateStore;

/// What the pipeline knows about one request, shared by every stage.
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The protocol the client speaks.
    pub frontend: Protocol,
    pub started: Instant,
    /// Filled by routing: the back-end and model the request went to.
    pub backend: Option<String>,
    pub model: Option<String>,
    /// The name (never the value) of the provider key used.
    pub key_name: Option<String>,
    /// The session: the client's `x-session-id`, else derived (see [`derive_session_id`]).
    pub session_id: String,
    /// The routing rule that chose the route (set by the routing stage).
    pub route_source: Option<routing::RouteSource>,
    /// This request's row in the capture store, when the store is on.
    pub recorder: Option<Arc<crate::capture::store::Recorder>>,
}

impl RequestContext {
    pub fn new(frontend: Protocol) -> Self {
        Self {
            request_id: new_request_id(),
            client_ip: None,
            user_agent: None,
            frontend,
            started: Instant::now(),
            backend: None,
            model: None,
            key_name: None,
            session_id: String::new(),
            route_source: None,
            recorder: None,
        }
    }
}

/// A session id for clients that send no `x-session-id`: a hash of the user agent and the
/// first user message, which stay the same for every request of one conversation.
pub fn derive_session_id(request: &Request) -> String {
    // FNV-1a: stable across processes and releases, so instances sharing state agree.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    feed(
        request
            .client
            .user_agent
            .as_deref()
            .unwrap_or("")
            .as_bytes(),
    );
    if let Some(first) = request
        .messages
        .iter()
        .find(|m| m.role == crate::model::Role::User)
    {
        feed(first.text().as_bytes());
    }
    format!("auto-{hash:016x}")
}

/// A short random id for logs and the `x-request-id` header.
pub fn new_request_id() -> String {
    format!("req_{:016x}", fastrand::u64(..))
}

/// What a stage decided about a request.
pub enum Flow {
    /// Go on to the next stage.
    Continue,
    /// Answer locally with these events; no back-end is called.
    Respond(Vec<Event>),
}

/// Work a filter does once its response has ended (state updates), awaited before the
/// client's stream ends so the next request sees it.
pub type AfterResponse = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Changes the events of one response. Created per response, so it may keep state.
pub trait EventFilter: Send {
    /// Handles one event, pushing what should follow to `out` (nothing drops it).
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>);

    /// The upstream stream ended; last chance to append events.
    fn on_end(&mut self, _out: &mut Vec<Event>) {}

    /// What to do once the response has ended, if anything (not run when the client left
    /// before the end).
    fn after(&mut self) -> Option<AfterResponse> {
        None
    }
}

#[async_trait]
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;

    /// Runs before routing. May change the request or answer it.
    async fn on_request(
        &self,
        _ctx: &mut RequestContext,
        _request: &mut Request,
    ) -> Result<Flow, Error> {
        Ok(Flow::Continue)
    }

    /// A filter for this response's events, if the stage wants to see them.
    fn response_filter(&self, _ctx: &RequestContext) -> Option<Box<dyn EventFilter>> {
        None
    }
}

/// The ordered stages.
#[derive(Clone, Default)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
}

impl Pipeline {
    /// The stages llmux runs, in order. Later features add their stage here.
    pub fn standard(config: &crate::Config, state: Arc<dyn StateStore>) -> Result<Self, Error> {
        let commands = commands::CommandSettings {
            prefix: config.command_prefix.clone(),
            strict: config.strict_command_detection,
        };
        Ok(Self {
            stages: vec![
                // In-chat commands change the session (and may answer locally)...
                Arc::new(commands::Commands::new(
                    commands,
                    state.clone(),
                    config.backends.keys().cloned().collect(),
                    config.default_backend.clone(),
                )?),
                // ...which, with the routing rules, decides where the request goes...
                Arc::new(routing::Routing::new(
                    routing::RoutingRules::from_config(config)?,
                    state.clone(),
                )),
                // ...unless it is early in the session and the planning phase claims it.
                Arc::new(planning::Planning::new(
                    config.planning.clone(),
                    state.clone(),
                )),
                // What !/max, !/low, ... mean for the model it goes to.
                Arc::new(reasoning_modes::ReasoningModes::new(
                    config.reasoning_modes.clone(),
                    state,
                )),
                // A request that reports a failed file edit gets precise sampling.
                Arc::new(edit_precision::EditPrecision::new(
                    config.edit_precision.clone(),
                )?),
            ],
        })
    }

    /// A pipeline of the given stages (tests and embedders).
    pub fn with_stages(stages: Vec<Arc<dyn Stage>>) -> Self {
        Self { stages }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    pub async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        for stage in &self.stages {
            if let Flow::Respond(events) = stage.on_request(ctx, request).await? {
                return Ok(Flow::Respond(events));
            }
        }
        Ok(Flow::Continue)
    }

    pub fn response_filters(&self, ctx: &RequestContext) -> Vec<Box<dyn EventFilter>> {
        self.stages
            .iter()
            .filter_map(|s| s.response_filter(ctx))
            .collect()
    }
}

/// Runs `event` through `filters` in order, appending the result to `out`.
pub fn apply_filters(filters: &mut [Box<dyn EventFilter>], event: Event, out: &mut Vec<Event>) {
    let mut current = vec![event];
    for filter in filters.iter_mut() {
        let mut next = Vec::with_capacity(current.len());
        for event in current {
            filter.on_event(event, &mut next);
        }
        current = next;
    }
    out.extend(current);
}

/// Lets every filter append events at the end of the stream, passing each filter's
/// additions through the filters after it.
pub fn end_filters(filters: &mut [Box<dyn EventFilter>], out: &mut Vec<Event>) {
    for i in 0..filters.len() {
        let mut appended = Vec::new();
        filters[i].on_end(&mut appended);
        for event in appended {
            apply_filters(&mut filters[i + 1..], event, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upper;
    impl EventFilter for Upper {
        fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
            match event {
                Event::TextDelta(t) => out.push(Event::TextDelta(t.to_uppercase())),
                other => out.push(other),
            }
        }
    }

    struct DoubleAndSign;
    impl EventFilter for DoubleAndSign {
        fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
            if let Event::TextDelta(t) = &event {
                out.push(Event::TextDelta(t.clone()));
            }
            out.push(event);
        }
        fn on_end(&mut self, out: &mut Vec<Event>) {
            out.push(Event::TextDelta("~".into()));
        }
    }

    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::TextDelta(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn filters_run_in_order_and_end_events_pass_later_filters() {
        let mut filters: Vec<Box<dyn EventFilter>> = vec![Box::new(DoubleAndSign), Box::new(Upper)];
        let mut out = Vec::new();
        apply_filters(&mut filters, Event::TextDelta("a".into()), &mut out);
        end_filters(&mut filters, &mut out);
        assert_eq!(texts(&out), ["A", "A", "~"]);
    }
}
