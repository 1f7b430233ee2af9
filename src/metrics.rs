//! Prometheus metrics at `/metrics` (text exposition format, from the `prometheus-client`
//! crate, the Prometheus project's own Rust client): requests and errors, how long they
//! took (and how much of that was the provider's), tokens, open connections, and what the
//! capture writers dropped.
//!
//! Requests are counted by a pipeline stage at the end of each request ([`MetricsStage`]),
//! so a request refused before the pipeline (bad auth, a foreign Host) is not a request
//! here. The upstream share is the back-end calls' time until their answer began: for a
//! non-streaming request the whole provider call, so `llmux_overhead_seconds` (total
//! minus upstream) is llmux's own time; a stream's upstream time ends at its first event,
//! so streams are left out of the overhead histogram.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::Protocol;
use crate::pipeline::{Ended, Outcome, Phases, Reads, RequestContext, Stage};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    frontend: &'static str,
    backend: String,
    /// `2xx`, `4xx`, `5xx` or `client_left`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    frontend: &'static str,
    stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    backend: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    writer: &'static str,
}

/// Every metric llmux exports. One per process, kept across settings changes.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    upstream: Family<DurationLabels, Histogram>,
    overhead: Histogram,
    tokens: Family<TokenLabels, Counter>,
    open_connections: Gauge,
    capture_dropped: Family<DropLabels, Gauge>,
    /// The series a request counts into, each found in its family once. A family finds a
    /// series by hashing its labels with SipHash under a lock, and the labels hold the
    /// back-end's name as an owned `String`: five lookups and three copies of the name a
    /// request (a fortieth of a non-streaming request's instructions). A clone of a series
    /// counts into the same series, and each is made on first use, as the family makes it,
    /// so `/metrics` shows what it showed before.
    by_backend: RwLock<HashMap<String, Arc<BackendSeries>, foldhash::fast::RandomState>>,
    /// `duration` and `upstream` by front-end and stream.
    timings: [[Timings; 2]; FRONTENDS],
}

/// The front-ends llmux serves: every [`Protocol`] (`frontend_index` maps them, and its
/// test checks that each has a slot).
const FRONTENDS: usize = 4;
/// `2xx`, `4xx`, `5xx`, `client_left`.
const OUTCOMES: [&str; 4] = ["2xx", "4xx", "5xx", "client_left"];

/// One back-end's series: requests by front-end and outcome, and its tokens.
#[derive(Default)]
struct BackendSeries {
    requests: [[OnceLock<Counter>; OUTCOMES.len()]; FRONTENDS],
    input_tokens: OnceLock<Counter>,
    output_tokens: OnceLock<Counter>,
}

#[derive(Default)]
struct Timings {
    duration: OnceLock<Histogram>,
    upstream: OnceLock<Histogram>,
}

fn frontend_index(frontend: Protocol) -> usize {
    match frontend {
        Protocol::OpenAiChat => 0,
        Protocol::OpenAiResponses => 1,
        Protocol::Anthropic => 2,
        Protocol::Gemini => 3,
    }
}

/// Request durations: 1 ms to about 2 minutes.
fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 18)
}

/// llmux's own time: 10 µs to about 160 ms.
fn overhead_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_01, 2.0, 15)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("llmux");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Model requests answered, by front-end, back-end and outcome",
            requests.clone(),
        );
        let duration = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        registry.register(
            "request_duration_seconds",
            "From a request's arrival to the end of its answer",
            duration.clone(),
        );
        let upstream = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        registry.register(
            "upstream_duration_seconds",
            "The back-end calls until their answer began (streams: their first event)",
            upstream.clone(),
        );
        let overhead = Histogram::new(overhead_buckets());
        registry.register(
            "overhead_seconds",
            "llmux's own time in a non-streaming request: total minus upstream",
            overhead.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens the providers reported, by back-end and direction",
            tokens.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            open_connections.clone(),
        );
        let capture_dropped = Family::<DropLabels, Gauge>::default();
        registry.register(
            "capture_dropped",
            "Records a capture writer dropped because it fell behind",
            capture_dropped.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            upstream,
            overhead,
            tokens,
            open_connections,
            capture_dropped,
            by_backend: RwLock::default(),
            timings: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, ctx: &RequestContext, outcome: &Outcome) {
        let frontend = ctx.frontend;
        let backend = ctx.backend.as_deref().unwrap_or("none");
        let series = self.backend_series(backend);
        let result = match (outcome.ended, outcome.status) {
            (Ended::ClientLeft, _) => 3,
            (_, 500..) => 2,
            (_, 400..) => 1,
            _ => 0,
        };
        let slot = frontend_index(frontend);
        series.requests[slot][result]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        frontend: frontend.as_str(),
                        backend: backend.to_owned(),
                        outcome: OUTCOMES[result],
                    })
                    .clone()
            })
            .inc();
        let timings = &self.timings[slot][usize::from(ctx.stream)];
        let labels = || DurationLabels {
            frontend: frontend.as_str(),
            stream: if ctx.stream { "true" } else { "false" },
        };
        let total = outcome.latency_ms / 1000.0;
        timings
            .duration
            .get_or_init(|| self.duration.get_or_create(&labels()).clone())
            .observe(total);
        let upstream_ms = ctx.trail.upstream_ms();
        if upstream_ms > 0.0 {
            let upstream = upstream_ms / 1000.0;
            timings
                .upstream
                .get_or_init(|| self.upstream.get_or_create(&labels()).clone())
                .observe(upstream);
            if !ctx.stream && outcome.ended == Ended::Done {
                self.overhead.observe((total - upstream).max(0.0));
            }
        }
        if let Some(usage) = &outcome.usage {
            for (series, direction, count) in [
                (&series.input_tokens, "input", usage.input_tokens),
                (&series.output_tokens, "output", usage.output_tokens),
            ] {
                let tokens = || {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            backend: backend.to_owned(),
                            direction,
                        })
                        .clone()
                };
                series.get_or_init(tokens).inc_by(count);
            }
        }
    }

    /// The series of `backend`, made on its first request. Back-end names come from the
    /// settings, so the map holds a handful.
    fn backend_series(&self, backend: &str) -> Arc<BackendSeries> {
        let known = self
            .by_backend
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(backend)
            .cloned();
        if let Some(series) = known {
            return series;
        }
        let mut map = self
            .by_backend
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(backend.to_owned()).or_default().clone()
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, engine: &crate::Engine) -> String {
        self.open_connections
            .set(i64::try_from(crate::process::open_connections()).unwrap_or(i64::MAX));
        let dropped = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(store) = engine.store() {
            self.capture_dropped
                .get_or_create(&DropLabels { writer: "store" })
                .set(dropped(store.dropped()));
        }
        if let Some(capture) = engine.capture() {
            self.capture_dropped
                .get_or_create(&DropLabels { writer: "file" })
                .set(dropped(capture.dropped()));
        }
        self.encode()
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!("cannot encode the metrics: {err}");
        }
        text
    }
}

/// Counts each request at its end.
pub struct MetricsStage(pub Arc<Metrics>);

#[async_trait::async_trait]
impl Stage for MetricsStage {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn phases(&self) -> Phases {
        Phases::ON_COMPLETE
    }

    fn on_complete(&self, ctx: &RequestContext, outcome: &Outcome) {
        self.0.record(ctx, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Usage;

    fn outcome(status: u16, ended: Ended, usage: Option<(u64, u64)>) -> Outcome {
        Outcome {
            ended,
            status,
            error: None,
            usage: usage.map(|(input_tokens, output_tokens)| Usage {
                input_tokens,
                output_tokens,
                ..Usage::default()
            }),
            answer_text: None,
            tool_calls: Vec::new(),
            ttfb_ms: None,
            latency_ms: 12.0,
        }
    }

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn each_request_counts_into_its_own_series_and_unused_series_do_not_appear() {
        let metrics = Metrics::default();
        let mut ctx = RequestContext::new(Protocol::OpenAiChat);
        ctx.backend = Some("a".into());
        metrics.record(&ctx, &outcome(200, Ended::Done, Some((3, 2))));
        metrics.record(&ctx, &outcome(200, Ended::Done, Some((3, 2))));
        ctx.frontend = Protocol::Anthropic;
        ctx.stream = true;
        ctx.backend = Some("b".into());
        metrics.record(&ctx, &outcome(502, Ended::Done, None));
        ctx.backend = None;
        metrics.record(&ctx, &outcome(200, Ended::ClientLeft, None));
        for frontend in [Protocol::OpenAiResponses, Protocol::Gemini] {
            ctx.frontend = frontend;
            ctx.stream = false;
            metrics.record(&ctx, &outcome(429, Ended::Done, None));
        }

        let text = metrics.encode();
        let requests = |labels: &str| sample(&text, &format!("llmux_requests_total{{{labels}}}"));
        let expected = [
            (r#"frontend="openai_chat",backend="a",outcome="2xx""#, "2"),
            (r#"frontend="anthropic",backend="b",outcome="5xx""#, "1"),
            (
                r#"frontend="anthropic",backend="none",outcome="client_left""#,
                "1",
            ),
            (
                r#"frontend="openai_responses",backend="none",outcome="4xx""#,
                "1",
            ),
            (r#"frontend="gemini",backend="none",outcome="4xx""#, "1"),
        ];
        for (labels, count) in expected {
            assert_eq!(requests(labels).as_deref(), Some(count), "{labels}: {text}");
        }
        assert_eq!(text.matches("llmux_requests_total{").count(), 5, "{text}");
        let tokens = |labels: &str| sample(&text, &format!("llmux_tokens_total{{{labels}}}"));
        assert_eq!(
            tokens(r#"backend="a",direction="input""#).as_deref(),
            Some("6")
        );
        assert_eq!(
            tokens(r#"backend="a",direction="output""#).as_deref(),
            Some("4")
        );
        assert_eq!(text.matches("llmux_tokens_total{").count(), 2, "{text}");
        let durations = |labels: &str| {
            sample(
                &text,
                &format!("llmux_request_duration_seconds_count{{{labels}}}"),
            )
        };
        let plain = r#"frontend="openai_chat",stream="false""#;
        assert_eq!(durations(plain).as_deref(), Some("2"), "{text}");
        let streamed = r#"frontend="anthropic",stream="true""#;
        assert_eq!(durations(streamed).as_deref(), Some("2"), "{text}");
        assert!(
            !text.contains("llmux_upstream_duration_seconds_count{"),
            "no request reached a back-end: {text}"
        );
    }

    #[test]
    fn every_front_end_has_its_own_slot() {
        let all = [
            Protocol::OpenAiChat,
            Protocol::OpenAiResponses,
            Protocol::Anthropic,
            Protocol::Gemini,
        ];
        let mut slots: Vec<usize> = all.iter().map(|p| frontend_index(*p)).collect();
        slots.sort_unstable();
        assert_eq!(slots, (0..FRONTENDS).collect::<Vec<_>>());
        // A new protocol breaks this match, so it is added to `all` above too.
        match Protocol::OpenAiChat {
            Protocol::OpenAiChat
            | Protocol::OpenAiResponses
            | Protocol::Anthropic
            | Protocol::Gemini => {}
        }
    }
}
