//! The pipeline's phases, driven by the engine in process (no socket: what is tested is the
//! order and count of the phases, not HTTP): stages that record every phase they see, in a
//! pipeline of their own, over the built-in mock back-end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use llmux::backend::EventStream;
use llmux::credentials::EnvSecrets;
use llmux::model::{Event, Message, Part, Protocol, Request, Role};
use llmux::pipeline::{
    EventFilter, Flow, Outcome, Phases, Pipeline, RequestContext, Route, RouteSource, Stage,
    Upstream,
};
use llmux::router::Target;
use llmux::state::responses::ResponseStore;
use llmux::{Engine, Error};

type Log = Arc<Mutex<Vec<String>>>;

/// A stage that notes every phase it sees, and what it was told to do in them.
struct Recorder {
    name: &'static str,
    log: Log,
    /// Answer locally in `on_request`.
    answer_locally: bool,
    /// Send upstream this many times in `around_upstream` (the last answer is kept).
    sends: usize,
    /// Choose this route in `on_route`.
    route: Option<&'static str>,
    /// The phases it says it takes part in.
    phases: Phases,
}

impl Recorder {
    fn new(name: &'static str, log: &Log) -> Self {
        Self {
            name,
            log: log.clone(),
            answer_locally: false,
            sends: 1,
            route: None,
            phases: Phases::ALL,
        }
    }

    fn note(&self, what: impl std::fmt::Display) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{}.{what}", self.name));
    }
}

/// Appends the stage's name to every text delta.
struct Tag(&'static str);

impl EventFilter for Tag {
    fn on_event(&mut self, event: Event, out: &mut Vec<Event>) {
        match event {
            Event::TextDelta(text) => out.push(Event::TextDelta(format!("{text}<{}", self.0))),
            other => out.push(other),
        }
    }
}

#[async_trait]
impl Stage for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn phases(&self) -> Phases {
        self.phases
    }

    async fn on_request(
        &self,
        _ctx: &mut RequestContext,
        _request: &mut Request,
    ) -> Result<Flow, Error> {
        self.note("on_request");
        if self.answer_locally {
            return Ok(Flow::Respond(vec![
                Event::TextDelta("local".into()),
                Event::Finish {
                    reason: llmux::model::FinishReason::EndTurn,
                    stop_sequence: None,
                },
            ]));
        }
        Ok(Flow::Continue)
    }

    async fn on_route(
        &self,
        _ctx: &mut RequestContext,
        _request: &mut Request,
        route: &mut Route<'_>,
    ) -> Result<(), Error> {
        self.note(format_args!("on_route({:?})", route.source()));
        if let Some(chosen) = self.route {
            route.choose(chosen, RouteSource::StaticRoute);
        }
        Ok(())
    }

    async fn upstream_request(
        &self,
        _ctx: &RequestContext,
        target: &Target,
        _request: &mut std::borrow::Cow<'_, Request>,
    ) -> Result<(), Error> {
        self.note(format_args!("upstream_request({target:?})"));
        Ok(())
    }

    async fn around_upstream(
        &self,
        _ctx: &RequestContext,
        request: &Request,
        next: Upstream<'_>,
    ) -> Result<EventStream, Error> {
        self.note("around_upstream");
        let mut answer = next.send(request).await;
        for _ in 1..self.sends {
            answer = next.send(request).await;
        }
        answer
    }

    fn response_filter(
        &self,
        _ctx: &RequestContext,
        _request: &Request,
    ) -> Option<Box<dyn EventFilter>> {
        self.note("response_filter");
        Some(Box::new(Tag(self.name)))
    }

    fn on_error(&self, _ctx: &RequestContext, err: &Error) {
        self.note(format_args!("on_error({})", err.status()));
    }

    fn on_complete(&self, _ctx: &RequestContext, outcome: &Outcome) {
        self.note(format_args!(
            "on_complete({}, {})",
            outcome.ended.as_str(),
            outcome.status
        ));
    }
}

/// An engine over the mock back-end (which answers only `m1`, in `chunks` pieces,
/// `delay_ms` apart) running `stages`.
fn engine(stages: Vec<Arc<dyn Stage>>, chunks: u32, delay_ms: u64) -> Engine {
    let config = support::config(
        &format!(
            "default_backend = \"mock\"\n[backends.mock]\nmodels = [\"m1\"]\n\
             response_text = \"one two three four\"\nchunks = {chunks}\nchunk_delay_ms = {delay_ms}\n"
        ),
        &[],
    );
    let responses = Arc::new(ResponseStore::new(10, std::time::Duration::from_secs(60)));
    let pipeline = Pipeline::with_stages(stages);
    Engine::with_pipeline(config, &EnvSecrets::new(|_| None), pipeline, responses).unwrap()
}

fn request(model: &str) -> Request {
    let mut request = Request::new(
        model,
        vec![Message::new(Role::User, vec![Part::text("hi")])],
    );
    request.stream = true;
    request
}

fn taken(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

async fn text_of(mut events: EventStream) -> String {
    let mut text = String::new();
    while let Some(event) = events.next().await {
        if let Event::TextDelta(delta) = event {
            text.push_str(&delta);
        }
    }
    text
}

#[tokio::test]
async fn phases_run_in_order_way_in_forward_way_out_backward_and_complete_once() {
    let log = Log::default();
    let stages: Vec<Arc<dyn Stage>> = vec![
        Arc::new(Recorder::new("a", &log)),
        Arc::new(Recorder::new("b", &log)),
    ];
    let engine = engine(stages, 1, 0);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let events = engine.respond(&mut ctx, request("m1")).await.unwrap();
    assert_eq!(ctx.backend.as_deref(), Some("mock"));
    assert_eq!(ctx.model.as_deref(), Some("m1"));
    let text = text_of(events).await;
    assert_eq!(
        text, "one two three four<b<a",
        "b filters first, a sees the answer last"
    );
    assert_eq!(
        taken(&log),
        [
            "a.on_request",
            "b.on_request",
            "a.on_route(Client)",
            "b.on_route(Client)",
            // The request for the target is made inside the chain, once per attempt (a
            // failover leg gets its own).
            "a.around_upstream",
            "b.around_upstream",
            "a.upstream_request(mock:m1)",
            "b.upstream_request(mock:m1)",
            "b.response_filter",
            "a.response_filter",
            "b.on_complete(done, 200)",
            "a.on_complete(done, 200)",
        ]
    );
}

#[tokio::test]
async fn a_later_route_choice_wins_and_an_unknown_client_model_no_longer_matters() {
    let log = Log::default();
    let mut chooser = Recorder::new("a", &log);
    chooser.route = Some("mock:m1");
    let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(chooser), Arc::new(Recorder::new("b", &log))];
    let engine = engine(stages, 1, 0);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let events = engine.respond(&mut ctx, request("unknown")).await.unwrap();
    text_of(events).await;
    let log = taken(&log);
    assert!(
        log.contains(&"b.on_route(StaticRoute)".to_owned()),
        "{log:?}"
    );
    assert!(
        log.contains(&"a.upstream_request(mock:m1)".to_owned()),
        "{log:?}"
    );
}

#[tokio::test]
async fn a_request_failing_before_its_answer_runs_on_error_then_on_complete_once() {
    let log = Log::default();
    let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(Recorder::new("a", &log))];
    let engine = engine(stages, 1, 0);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let Err(err) = engine.respond(&mut ctx, request("m2")).await else {
        panic!("m2 is not a model of the mock");
    };
    assert_eq!(err.status(), 404);
    assert_eq!(
        taken(&log),
        [
            "a.on_request",
            "a.on_route(Client)",
            "a.on_error(404)",
            "a.on_complete(done, 404)",
        ]
    );
}

#[tokio::test]
async fn a_local_answer_skips_routing_and_the_backend_but_is_filtered_and_completed() {
    let log = Log::default();
    let mut local = Recorder::new("a", &log);
    local.answer_locally = true;
    let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(local), Arc::new(Recorder::new("b", &log))];
    let engine = engine(stages, 1, 0);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let events = engine.respond(&mut ctx, request("m1")).await.unwrap();
    assert_eq!(text_of(events).await, "local<b<a");
    assert_eq!(ctx.backend.as_deref(), Some("llmux"));
    assert_eq!(
        taken(&log),
        [
            "a.on_request",
            "b.response_filter",
            "a.response_filter",
            "b.on_complete(done, 200)",
            "a.on_complete(done, 200)",
        ]
    );
}

#[tokio::test]
async fn an_outer_stage_may_send_twice_through_the_inner_ones() {
    let log = Log::default();
    let mut retrying = Recorder::new("a", &log);
    retrying.sends = 2;
    let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(retrying), Arc::new(Recorder::new("b", &log))];
    let engine = engine(stages, 1, 0);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let events = engine.respond(&mut ctx, request("m1")).await.unwrap();
    text_of(events).await;
    let arounds: Vec<String> = taken(&log)
        .into_iter()
        .filter(|line| line.ends_with("around_upstream"))
        .collect();
    assert_eq!(
        arounds,
        [
            "a.around_upstream",
            "b.around_upstream",
            "b.around_upstream"
        ]
    );
}

#[tokio::test]
async fn a_client_leaving_mid_answer_completes_the_request_once_as_client_disconnected() {
    let log = Log::default();
    let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(Recorder::new("a", &log))];
    let engine = engine(stages, 4, 50);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let mut events = engine.respond(&mut ctx, request("m1")).await.unwrap();
    // The first text delta, then the client goes.
    while let Some(event) = events.next().await {
        if matches!(event, Event::TextDelta(_)) {
            break;
        }
    }
    drop(events);
    let log = taken(&log);
    let completions: Vec<&String> = log.iter().filter(|l| l.contains("on_complete")).collect();
    assert_eq!(completions, ["a.on_complete(client disconnected, 200)"]);
}

#[tokio::test]
async fn a_stage_is_called_only_in_the_phases_it_declares() {
    let log = Log::default();
    let mut quiet = Recorder::new("a", &log);
    quiet.phases = Phases::ON_ROUTE | Phases::ON_COMPLETE;
    let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(quiet), Arc::new(Recorder::new("b", &log))];
    let engine = engine(stages, 1, 0);
    let mut ctx = RequestContext::new(Protocol::OpenAiChat);
    let events = engine.respond(&mut ctx, request("m1")).await.unwrap();
    assert_eq!(text_of(events).await, "one two three four<b");
    let a: Vec<String> = taken(&log)
        .into_iter()
        .filter(|line| line.starts_with("a."))
        .collect();
    assert_eq!(a, ["a.on_route(Client)", "a.on_complete(done, 200)"]);
}

#[test]
fn docs_pipeline_md_lists_the_standard_stages_in_order() {
    let config = support::config("", &[]);
    let shared = llmux::pipeline::Shared {
        metrics: Arc::default(),
        state: Arc::new(llmux::state::MemoryStore::new(config.session_max_age)),
        responses: Arc::new(ResponseStore::new(10, std::time::Duration::from_secs(60))),
        prompt_redactor: None,
        redis: None,
    };
    let standard = Pipeline::standard(&config, &shared).unwrap();
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pipeline.md"),
    )
    .unwrap();
    let table = doc
        .split("## The standard stages")
        .nth(1)
        .expect("a section on the standard stages");
    let documented: Vec<&str> = table
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| "))
        .map(|row| row.split(" |").next().unwrap_or_default())
        .filter(|name| !name.is_empty() && *name != "Stage" && !name.starts_with("---"))
        .collect();
    assert_eq!(documented, standard.names());
}
