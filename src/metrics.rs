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

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
        }
    }
}

impl Metrics {
    /// Counts one finished request.
    pub fn record(&self, ctx: &RequestContext, outcome: &Outcome) {
        let frontend = ctx.frontend.as_str();
        let backend = ctx.backend.clone().unwrap_or_else(|| "none".into());
        let result = match (outcome.ended, outcome.status) {
            (Ended::ClientLeft, _) => "client_left",
            (_, 500..) => "5xx",
            (_, 400..) => "4xx",
            _ => "2xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                frontend,
                backend: backend.clone(),
                outcome: result,
            })
            .inc();
        let labels = DurationLabels {
            frontend,
            stream: if ctx.stream { "true" } else { "false" },
        };
        let total = outcome.latency_ms / 1000.0;
        self.duration.get_or_create(&labels).observe(total);
        let upstream_ms = ctx.trail.upstream_ms();
        if upstream_ms > 0.0 {
            let upstream = upstream_ms / 1000.0;
            self.upstream.get_or_create(&labels).observe(upstream);
            if !ctx.stream && outcome.ended == Ended::Done {
                self.overhead.observe((total - upstream).max(0.0));
            }
        }
        if let Some(usage) = &outcome.usage {
            for (direction, count) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ] {
                self.tokens
                    .get_or_create(&TokenLabels {
                        backend: backend.clone(),
                        direction,
                    })
                    .inc_by(count);
            }
        }
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
