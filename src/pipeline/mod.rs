//! The pipeline: ordered stages, each one feature in one file, that see a request through
//! its phases. [`Pipeline::standard`] is the one list of stages: reading it tells you
//! everything llmux does to a request. docs/pipeline.md draws the phases.
//!
//! The phases, in the order a request meets them (the [`Stage`] methods):
//! 1. [`on_request`](Stage::on_request): every stage in list order, until one answers
//!    locally (an in-chat command);
//! 2. [`on_route`](Stage::on_route): every stage in list order; together they choose the
//!    back-end and model, a typed [`Route`];
//! 3. [`upstream_request`](Stage::upstream_request): every stage in list order, knowing the
//!    target: the request as that back-end will get it;
//! 4. [`around_upstream`](Stage::around_upstream): nested, the first stage's call outermost;
//!    the innermost [`Upstream::send`] calls the back-end;
//! 5. [`response_filter`](Stage::response_filter), whose [`EventFilter::on_event`] and
//!    [`EventFilter::on_end`] see the answer's events from the last stage to the first, so
//!    the first stage in the list sees the answer as the client gets it;
//! 6. [`on_error`](Stage::on_error): every stage, when the request fails, before or during
//!    the answer;
//! 7. [`on_complete`](Stage::on_complete): every stage, once, when the request has ended
//!    however it ended (finished, failed, or the client left).
//!
//! Like a middleware stack, the way in runs in list order and the way out in reverse: a
//! stage early in the list is outermost.

pub mod capture_row;
pub mod commands;
pub mod content_rewriting;
pub mod dangerous_commands;
pub mod dedup;
pub mod edit_precision;
pub mod empty_response;
pub mod failover;
pub mod limits;
pub mod loop_detection;
pub mod model_aliases;
pub mod outcome;
pub mod planning;
pub mod pytest_output;
pub mod pytest_steering;
pub mod reasoning_modes;
pub mod redaction;
pub mod request_log;
pub mod responses_store;
pub mod route;
pub mod routing;
pub mod session;
pub mod structured_output;
pub mod think_tags;
pub mod tool_call_reactor;
pub mod tool_call_repair;
pub mod tool_match;
pub mod tool_screen;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::Error;
use crate::backend::EventStream;
use crate::model::{Event, Protocol, Request};
use crate::router::{Plan, Target};
use crate::state::{Session, StateStore};

pub use outcome::{Completion, Ended, Outcome};
pub use route::{Route, RouteSource};
pub use session::derive_session_id;
pub use upstream::{Attempt, Call, Intervention, Trail, Upstream};

/// What the pipeline knows about one request, shared by every stage.
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The protocol the client speaks.
    pub frontend: Protocol,
    /// Whether the client asked for a streamed answer.
    pub stream: bool,
    pub started: Instant,
    /// Filled once the route is chosen: the back-end and model the request went to.
    pub backend: Option<String>,
    pub model: Option<String>,
    /// The name (never the value) of the provider key used.
    pub key_name: Option<String>,
    /// The session: the client's `x-session-id`, else derived (see [`derive_session_id`]).
    pub session_id: String,
    /// The session's state as this request sees it (set by the routing stage, after the
    /// in-chat commands of this request changed it).
    pub session: Session,
    /// This request's row in the capture store, when the store is on.
    pub recorder: Option<Arc<crate::capture::store::Recorder>>,
    /// Request parameters the client's protocol repeats in a stored answer (the Responses
    /// API's `instructions`, `tools`, `store`, ...), set by its front-end.
    pub answer_echo: Option<Arc<AnswerEcho>>,
    /// Every call to a back-end made for this request, in order, and what stages did.
    pub trail: Trail,
    /// The failover route the request asked for, if it did.
    pub failover_route: Option<String>,
    /// Text llmux shows before the model's answer: what `!/help` or `!/status` said when
    /// the message also had text for the model.
    pub preface: Option<String>,
}

impl RequestContext {
    pub fn new(frontend: Protocol) -> Self {
        Self {
            request_id: new_request_id(),
            client_ip: None,
            user_agent: None,
            frontend,
            stream: false,
            started: Instant::now(),
            backend: None,
            model: None,
            key_name: None,
            session_id: String::new(),
            session: Session::default(),
            recorder: None,
            answer_echo: None,
            trail: Trail::default(),
            failover_route: None,
            preface: None,
        }
    }

    /// The client's address as text for captures, `""` when unknown. An IPv4 address is
    /// written octet by octet: `to_string` through `Display` (the formatting machinery, four
    /// `u8`s, a growing buffer) cost ~1,300 instructions a request (callgrind, capture store
    /// on).
    pub fn client_host(&self) -> String {
        match self.client_ip {
            None => String::new(),
            Some(IpAddr::V4(ip)) => {
                let [first, rest @ ..] = ip.octets();
                let mut digits = itoa::Buffer::new();
                // "255.255.255.255" at most.
                let mut text = String::with_capacity(15);
                text.push_str(digits.format(first));
                for octet in rest {
                    text.push('.');
                    text.push_str(digits.format(octet));
                }
                text
            }
            Some(ip) => ip.to_string(),
        }
    }
}

/// A short id for logs, the `x-request-id` header and the capture store's rows: the low 40
/// bits of the Unix time in milliseconds (they wrap in 2039), then a 24-bit counter that
/// starts at a random value, as 16 hex digits. Ids made later sort later, so the store's
/// unique index on them grows at its right edge instead of taking each row at a random
/// place: random ids cost the store's writer thread 15 % more time a row (b-tree searches
/// and page splits; 29.5 against 24.2-25.8 µs under the same load).
pub fn new_request_id() -> String {
    static NEXT: std::sync::LazyLock<std::sync::atomic::AtomicU32> =
        std::sync::LazyLock::new(|| std::sync::atomic::AtomicU32::new(fastrand::u32(..)));
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let count = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff;
    let mut id = String::with_capacity(20);
    id.push_str("req_");
    push_hex(&mut id, millis, 10);
    push_hex(&mut id, u64::from(count), 6);
    id
}

/// The low `digits` hex digits of `value`, lowercase and zero-padded, as `{:0N$x}` writes
/// them for a value that fits; written directly (`format!` cost ~600 instructions an id).
fn push_hex(out: &mut String, value: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(digits <= 16, "a u64 has 16 hex digits");
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[(value >> (shift * 4)) as usize & 0xf]));
    }
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

    /// Whether this filter has ended the answer (it pushed its own closing events): the
    /// upstream call is then dropped, which cancels it, and the answer ends as if the
    /// provider had.
    fn cut(&self) -> bool {
        false
    }
}

/// Request parameters a stored answer repeats: members as values, and the tools as the JSON
/// text the front-end kept (an agent's tools, not parsed unless the answer is stored), for
/// which `fields` holds a null in their place.
#[derive(Debug, Clone, Default)]
pub struct AnswerEcho {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub tools: Option<Arc<str>>,
}

impl AnswerEcho {
    /// The members, the tools read from their text.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = self.fields.clone();
        if let Some(text) = &self.tools
            && let Some(slot) = fields.get_mut("tools")
        {
            *slot = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
        }
        fields
    }
}

/// What of a request a stage looks at beyond its model and headers, so a request that no
/// stage reads in full can take a faster path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reads {
    /// The request's messages (read or changed).
    pub messages: bool,
    /// The answer's events.
    pub events: bool,
}

impl Reads {
    pub const NOTHING: Reads = Reads {
        messages: false,
        events: false,
    };
    pub const MESSAGES: Reads = Reads {
        messages: true,
        events: false,
    };
    pub const EVENTS: Reads = Reads {
        messages: false,
        events: true,
    };
    pub const ALL: Reads = Reads {
        messages: true,
        events: true,
    };

    pub fn union(self, other: Reads) -> Reads {
        Reads {
            messages: self.messages || other.messages,
            events: self.events || other.events,
        }
    }
}

/// The phases a stage takes part in. The pipeline calls a stage only in the phases it
/// declares, so a request does not pay for phases a stage leaves at their default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases(u8);

impl Phases {
    pub const ON_REQUEST: Phases = Phases(1);
    pub const ON_ROUTE: Phases = Phases(1 << 1);
    pub const UPSTREAM_REQUEST: Phases = Phases(1 << 2);
    pub const AROUND_UPSTREAM: Phases = Phases(1 << 3);
    pub const RESPONSE_FILTER: Phases = Phases(1 << 4);
    pub const ON_ERROR: Phases = Phases(1 << 5);
    pub const ON_COMPLETE: Phases = Phases(1 << 6);
    pub const ALL: Phases = Phases(0x7f);
    /// A stage that is switched off takes part in nothing.
    pub const NONE: Phases = Phases(0);

    pub const fn contains(self, other: Phases) -> bool {
        self.0 & other.0 == other.0
    }

    /// These phases when `on`, else none: a stage its settings switch off.
    pub const fn when(self, on: bool) -> Phases {
        if on { self } else { Phases::NONE }
    }
}

impl std::ops::BitOr for Phases {
    type Output = Phases;

    fn bitor(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }
}

/// One feature's part in the request path. Every phase has a default that does nothing,
/// so a stage implements only the phases it needs.
#[async_trait]
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;

    /// What this stage reads; a stage that does not say is taken to read everything.
    fn reads(&self) -> Reads {
        Reads::ALL
    }

    /// The phases this stage implements; a stage that does not say is called in all of
    /// them. Say it: a phase left out is never called, one put in costs every request a
    /// call.
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    /// Phase 1, before anything is decided: may change the request, or answer it locally
    /// with [`Flow::Respond`] (then no later phase but the response filters, `on_error`
    /// and `on_complete` runs, and no back-end is called).
    async fn on_request(
        &self,
        _ctx: &mut RequestContext,
        _request: &mut Request,
    ) -> Result<Flow, Error> {
        Ok(Flow::Continue)
    }

    /// Phase 2, choosing the target: may [`Route::choose`] a route (later stages see the
    /// choice and its [`RouteSource`]) and change what goes with it (sampling). A route
    /// no stage chose is the client's model.
    async fn on_route(
        &self,
        _ctx: &mut RequestContext,
        _request: &mut Request,
        _route: &mut Route<'_>,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Phase 3, the target known: the request as `target` will get it (per-model
    /// settings). Runs for each attempt, inside the `around_upstream` chain, so a failover
    /// leg gets its own. The request is borrowed until a stage changes it
    /// (`request.to_mut()` copies it then), so a stage that changes nothing costs nothing.
    /// An error answers the client.
    async fn upstream_request(
        &self,
        _ctx: &RequestContext,
        _target: &Target,
        _request: &mut std::borrow::Cow<'_, Request>,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// Phase 4, wrapping the back-end call: call `next.send` once, several times (a
    /// retry), or not at all. Errors before the answer's first event come back as `Err`.
    async fn around_upstream(
        &self,
        _ctx: &RequestContext,
        request: &Request,
        next: Upstream<'_>,
    ) -> Result<EventStream, Error> {
        next.send(request).await
    }

    /// Phase 5: a filter for this answer's events, if the stage wants to see or change
    /// them. Also made for answers given locally in phase 1.
    fn response_filter(
        &self,
        _ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        None
    }

    /// Phase 6: the request failed with `err`, before its answer began or in the middle.
    /// Runs before `on_complete`; must not block.
    fn on_error(&self, _ctx: &RequestContext, _err: &Error) {}

    /// Phase 7: the request has ended; `outcome` says how. Runs exactly once per request,
    /// also when the client left mid-answer (from a drop, so it must not block: spawn
    /// anything slow).
    fn on_complete(&self, _ctx: &RequestContext, _outcome: &Outcome) {}
}

/// What the standard stages share: session state, the stored Responses answers, and the
/// redactor of prompts when `[redaction] prompts` is on.
#[derive(Clone)]
pub struct Shared {
    pub state: Arc<dyn StateStore>,
    /// What `/metrics` exports, counted at each request's end.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub responses: Arc<crate::state::responses::ResponseStore>,
    pub prompt_redactor: Option<Arc<crate::capture::Redactor>>,
    /// The team's Redis, when state is shared: rate limits count there too.
    pub redis: Option<Arc<crate::state::redis::RedisStore>>,
}

/// The ordered stages. Cheap to clone.
#[derive(Clone, Default)]
pub struct Pipeline {
    stages: Arc<[Arc<dyn Stage>]>,
    by_phase: Arc<ByPhase>,
}

/// The stages of each phase, in list order.
#[derive(Default)]
struct ByPhase {
    on_request: Vec<Arc<dyn Stage>>,
    on_route: Vec<Arc<dyn Stage>>,
    upstream_request: Vec<Arc<dyn Stage>>,
    around_upstream: Vec<Arc<dyn Stage>>,
    response_filter: Vec<Arc<dyn Stage>>,
    on_error: Vec<Arc<dyn Stage>>,
    on_complete: Vec<Arc<dyn Stage>>,
}

impl ByPhase {
    fn of(stages: &[Arc<dyn Stage>]) -> Self {
        let taking = |phase: Phases| -> Vec<Arc<dyn Stage>> {
            stages
                .iter()
                .filter(|s| s.phases().contains(phase))
                .cloned()
                .collect()
        };
        Self {
            on_request: taking(Phases::ON_REQUEST),
            on_route: taking(Phases::ON_ROUTE),
            upstream_request: taking(Phases::UPSTREAM_REQUEST),
            around_upstream: taking(Phases::AROUND_UPSTREAM),
            response_filter: taking(Phases::RESPONSE_FILTER),
            on_error: taking(Phases::ON_ERROR),
            on_complete: taking(Phases::ON_COMPLETE),
        }
    }
}

impl Pipeline {
    /// The stages llmux runs, in order. A new feature adds its stage here.
    pub fn standard(config: &crate::Config, shared: &Shared) -> Result<Self, Error> {
        let state = &shared.state;
        let commands = commands::CommandSettings {
            prefix: config.command_prefix.clone(),
            strict: config.strict_command_detection,
        };
        let stages: Vec<Arc<dyn Stage>> = vec![
            // Outermost: the log line, the metrics and the capture row see every request
            // and its end.
            Arc::new(request_log::RequestLogLine),
            Arc::new(crate::metrics::MetricsStage(shared.metrics.clone())),
            // A Responses request continues its stored turn, and its answer is stored as
            // the client gets it (this stage sees the answer last).
            Arc::new(responses_store::ResponsesStore::new(
                shared.responses.clone(),
            )),
            Arc::new(capture_row::CaptureRow {
                store_on: config.capture_db.is_some(),
            }),
            // Which conversation this is.
            Arc::new(session::SessionId),
            // Secrets pasted into a prompt are masked before it goes anywhere (opt-in).
            Arc::new(redaction::PromptRedaction::new(
                shared.prompt_redactor.clone(),
            )),
            // In-chat commands change the session (and may answer locally)...
            Arc::new(
                commands::Commands::new(
                    commands,
                    state.clone(),
                    config.backends.keys().cloned().collect(),
                    config.default_backend.clone(),
                )?
                .with_routes(config.routes.clone()),
            ),
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
            )),
            // Pytest output in tool results loses its passing lines and timings.
            Arc::new(pytest_output::PytestOutput::new(config.pytest_compression)),
            // A request that reports a failed file edit gets precise sampling.
            Arc::new(edit_precision::EditPrecision::new(
                config.edit_precision.clone(),
            )?),
            // The user's rewriting rules, for the target and the client.
            Arc::new(content_rewriting::ContentRewriting::new(
                config.content_rewriting.clone(),
            )),
            // What the target model takes: input tokens, output tokens, rate.
            Arc::new(
                limits::ModelLimitsStage::new(config.limits.clone()).shared(shared.redis.clone()),
            ),
            // A request identical to one in flight is answered with that one's answer.
            Arc::new(dedup::Dedup::new(config.dedup_window)),
            // A failover route's legs are tried in order until one answers.
            Arc::new(failover::Failover),
            // An answer with no text and no tool call is asked for once more.
            Arc::new(empty_response::EmptyResponseRecovery::new(
                config.empty_response_recovery.clone(),
            )),
            // An answer that must follow a JSON schema is checked, repaired or asked again.
            Arc::new(structured_output::StructuredOutput::new(
                config.validate_structured_output,
                config.retry_structured_output,
            )),
            // A tool call that would run a destructive shell command becomes a message (its
            // filter sees the answer first, as the provider sent it).
            Arc::new(dangerous_commands::DangerousCommands::new(
                config.dangerous_commands.clone(),
            )),
            // The user's rules on tool calls: steer, block, rate-limit, rewrite (its filter
            // sees calls before the dangerous-command stage's, so rewrites are checked too).
            Arc::new(tool_call_reactor::ToolCallReactor::new(
                config.tool_call_reactor.clone(),
            )),
            // A call running the whole pytest suite is steered once (opt-in).
            Arc::new(pytest_steering::PytestSteering::new(
                config.pytest_full_suite_steering,
            )),
            // Answers that repeat themselves are cut; tool calls in circles are steered.
            Arc::new(loop_detection::LoopDetection::new(config.loop_detection)),
            // Calls written as text become tool calls, malformed arguments are repaired (its
            // filter sees the answer right after the `<think>` filter, so the stages above
            // see the calls the model meant).
            Arc::new(tool_call_repair::ToolCallRepair::new(
                config.tool_call_repair,
            )),
            // `<think>` text from models without a reasoning field becomes reasoning (its
            // filter sees the answer first, as the provider sent it).
            Arc::new(think_tags::ThinkTags::new(config.think_tags)),
        ];
        Ok(Self::with_stages(stages))
    }

    /// A pipeline of the given stages (tests and embedders).
    pub fn with_stages(stages: Vec<Arc<dyn Stage>>) -> Self {
        Self {
            by_phase: Arc::new(ByPhase::of(&stages)),
            stages: stages.into(),
        }
    }

    /// The stages that wrap the back-end call, outermost first.
    pub fn around_upstream_stages(&self) -> &[Arc<dyn Stage>] {
        &self.by_phase.around_upstream
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// What the stages read, together.
    pub fn reads(&self) -> Reads {
        self.stages
            .iter()
            .fold(Reads::NOTHING, |all, s| all.union(s.reads()))
    }

    /// Phase 1: `on_request` of each stage until one answers.
    pub async fn on_request(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
    ) -> Result<Flow, Error> {
        for stage in &self.by_phase.on_request {
            if let Flow::Respond(events) = stage.on_request(ctx, request).await? {
                return Ok(Flow::Respond(events));
            }
        }
        Ok(Flow::Continue)
    }

    /// Phase 2: where the stages send the request, or the client's model when none
    /// chooses; a failover route's name stands for its legs.
    pub async fn on_route(
        &self,
        ctx: &mut RequestContext,
        request: &mut Request,
        router: &crate::router::Router,
    ) -> Result<Plan, Error> {
        let mut route = Route::new(router);
        for stage in &self.by_phase.on_route {
            stage.on_route(ctx, request, &mut route).await?;
        }
        route.into_plan(&request.model, &ctx.session)
    }

    /// Phase 3 stages, for the innermost step of the upstream chain.
    pub fn upstream_request_stages(&self) -> &[Arc<dyn Stage>] {
        &self.by_phase.upstream_request
    }

    /// Phase 5: the filters, in the order events pass them (last stage first).
    pub fn response_filters(
        &self,
        ctx: &RequestContext,
        request: &Request,
    ) -> Vec<Box<dyn EventFilter>> {
        self.by_phase
            .response_filter
            .iter()
            .rev()
            .filter_map(|s| s.response_filter(ctx, request))
            .collect()
    }

    /// Phase 6.
    pub fn on_error(&self, ctx: &RequestContext, err: &Error) {
        for stage in self.by_phase.on_error.iter().rev() {
            stage.on_error(ctx, err);
        }
    }

    /// Phase 7.
    pub fn on_complete(&self, ctx: &RequestContext, outcome: &Outcome) {
        for stage in self.by_phase.on_complete.iter().rev() {
            stage.on_complete(ctx, outcome);
        }
    }
}

/// Runs `event` through `filters` in order, appending the result to `out`.
pub fn apply_filters(filters: &mut [Box<dyn EventFilter>], event: Event, out: &mut Vec<Event>) {
    let mut scratch = Vec::new();
    apply_filters_with(filters, &mut scratch, event, out);
}

/// [`apply_filters`] with buffers kept between events (one per filter but the last), so a
/// stream's events pass its filters without an allocation each: this runs for every chunk
/// of every answer that has filters.
pub fn apply_filters_with(
    filters: &mut [Box<dyn EventFilter>],
    scratch: &mut Vec<Vec<Event>>,
    event: Event,
    out: &mut Vec<Event>,
) {
    if scratch.len() + 1 < filters.len() {
        scratch.resize_with(filters.len() - 1, Vec::new);
    }
    pass(filters, scratch, event, out);
}

fn pass(
    filters: &mut [Box<dyn EventFilter>],
    scratch: &mut [Vec<Event>],
    event: Event,
    out: &mut Vec<Event>,
) {
    let Some((first, rest)) = filters.split_first_mut() else {
        out.push(event);
        return;
    };
    if rest.is_empty() {
        first.on_event(event, out);
        return;
    }
    let Some((buffer, more)) = scratch.split_first_mut() else {
        return;
    };
    buffer.clear();
    first.on_event(event, buffer);
    for event in buffer.drain(..) {
        pass(rest, more, event, out);
    }
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

    /// The standard stages, with prompt redaction and pytest compression on, read a request
    /// that names no command, holds no secret and no pytest output without taking its lists
    /// mutably: the copy kept to tell whether the client's body can go out as it came still
    /// shares them, so comparing them at send time compares pointers (`model::Shared`).
    #[tokio::test]
    async fn stages_that_change_nothing_leave_the_requests_lists_shared() {
        use crate::model::{Message, Part, Role};
        let mut config = crate::config::ConfigLoader::new()
            .env(|_| None)
            .set("default_backend", "openai", "test")
            .load()
            .unwrap()
            .config;
        config.redact_prompts = true;
        config.pytest_compression = true;
        let shared = Shared {
            state: Arc::new(crate::state::MemoryStore::new(
                std::time::Duration::from_secs(60),
            )),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            responses: Arc::new(crate::state::responses::ResponseStore::new(
                10,
                std::time::Duration::from_secs(60),
            )),
            prompt_redactor: Some(Arc::new(crate::capture::Redactor::from(vec![
                "sk-secret-123456".to_owned(),
            ]))),
            redis: None,
        };
        let pipeline = Pipeline::standard(&config, &shared).unwrap();
        let request_with = |text: &str| {
            let mut request = Request::new(
                "gpt-4o-mini",
                vec![Message::new(Role::User, vec![Part::text(text)])],
            );
            request.system = vec![Part::text("be brief")].into();
            request
        };
        let lists = |r: &Request| (r.system.as_ptr(), r.messages.as_ptr(), r.tools.as_ptr());

        let mut request = request_with("explain this function");
        let kept = request.clone();
        let mut ctx = RequestContext::new(Protocol::OpenAiChat);
        let flow = pipeline.on_request(&mut ctx, &mut request).await.unwrap();
        assert!(matches!(flow, Flow::Continue));
        assert_eq!(lists(&request), lists(&kept), "no list was copied");

        // A secret is masked in the request's own copy; the kept one is as the client sent it.
        let mut request = request_with("my key is sk-secret-123456");
        let kept = request.clone();
        let mut ctx = RequestContext::new(Protocol::OpenAiChat);
        pipeline.on_request(&mut ctx, &mut request).await.unwrap();
        assert_ne!(request.messages, kept.messages);
        assert_eq!(
            kept.messages[0].parts,
            vec![Part::text("my key is sk-secret-123456")]
        );
        assert_eq!(
            request.system.as_ptr(),
            kept.system.as_ptr(),
            "the system part had none"
        );
    }

    #[test]
    fn the_client_host_is_the_address_as_std_writes_it() {
        let mut ctx = RequestContext::new(Protocol::OpenAiChat);
        assert_eq!(ctx.client_host(), "");
        let mut rng = fastrand::Rng::with_seed(17);
        let mut addresses: Vec<IpAddr> = vec![
            std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            std::net::Ipv4Addr::BROADCAST.into(),
            std::net::Ipv4Addr::new(10, 0, 99, 1).into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
            "fe80::1:2".parse().unwrap(),
            "::ffff:192.0.2.7".parse().unwrap(),
        ];
        addresses.extend((0..200).map(|_| IpAddr::from(std::net::Ipv4Addr::from(rng.u32(..)))));
        for ip in addresses {
            ctx.client_ip = Some(ip);
            assert_eq!(ctx.client_host(), ip.to_string());
        }
    }

    #[test]
    fn hex_is_written_as_format_writes_it() {
        for value in [0, 1, 0xabc, 0xff_ffff_ffff, u64::MAX, 0x0123_4567_89ab_cdef] {
            for digits in [6, 10, 16] {
                let mut out = String::from("x");
                push_hex(&mut out, value, digits);
                let masked = if digits == 16 {
                    value
                } else {
                    value & ((1 << (digits * 4)) - 1)
                };
                let width = digits as usize;
                assert_eq!(out, format!("x{masked:0width$x}"), "{value:#x} in {digits}");
            }
        }
    }

    #[test]
    fn request_ids_are_unique_and_later_ones_sort_later() {
        let shape = |id: &str| {
            id.len() == 20
                && id.starts_with("req_")
                && id[4..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        };
        let first: Vec<String> = (0..1000).map(|_| new_request_id()).collect();
        assert!(first.iter().all(|id| shape(id)), "{:?}", &first[..3]);
        let distinct: std::collections::HashSet<&String> = first.iter().collect();
        assert_eq!(distinct.len(), first.len());
        std::thread::sleep(std::time::Duration::from_millis(3));
        let later = new_request_id();
        assert!(
            first.iter().all(|id| *id < later),
            "{later} sorts before an older id"
        );
    }

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
