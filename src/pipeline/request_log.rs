//! The one log line of every request (target `llmux`, level info), written when it ends
//! however it ends: who asked, where it went (with every attempt, when a failover route
//! moved it on), how long it took, the tokens and the error.

use super::{Outcome, Phases, Reads, RequestContext, Stage};

pub struct RequestLogLine;

impl Stage for RequestLogLine {
    fn name(&self) -> &'static str {
        "request-log"
    }

    fn reads(&self) -> Reads {
        Reads::NOTHING
    }

    fn phases(&self) -> Phases {
        Phases::ON_COMPLETE
    }

    fn on_complete(&self, ctx: &RequestContext, outcome: &Outcome) {
        let (input, output) = outcome
            .usage
            .as_ref()
            .map_or((0, 0), |u| (u.input_tokens, u.output_tokens));
        tracing::info!(
            request_id = %ctx.request_id,
            client = %Client(ctx.client_ip),
            frontend = ctx.frontend.as_str(),
            backend = ctx.backend.as_deref().unwrap_or("-"),
            model = ctx.model.as_deref().unwrap_or("-"),
            key = ctx.key_name.as_deref().unwrap_or("-"),
            stream = ctx.stream,
            status = outcome.status,
            latency_ms = format_args!("{:.1}", outcome.latency_ms),
            input_tokens = input,
            output_tokens = output,
            outcome = outcome.ended.as_str(),
            error = outcome.error.as_deref().unwrap_or(""),
            attempts = %ctx.trail.chain(),
            "request"
        );
    }
}

/// The client's address as the log shows it (empty when unknown), formatted only when the
/// line is written.
struct Client(Option<std::net::IpAddr>);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => Ok(()),
        }
    }
}
