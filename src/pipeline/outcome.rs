//! How a request ended, gathered as its answer goes out, and the `on_error` /
//! `on_complete` phases run exactly once from it: at the end of the answer, at a failure,
//! or (from a drop) when the client leaves first.

use super::{Pipeline, RequestContext};
use crate::Error;
use crate::capture::store::CapturedToolCall;
use crate::model::{Event, Usage};

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The answer (or the error answer) went out whole.
    Done,
    /// The client went away before the answer ended; the upstream call was cancelled.
    ClientLeft,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Done => "done",
            Ended::ClientLeft => "client disconnected",
        }
    }
}

/// What `on_complete` learns about a request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ended: Ended,
    /// The HTTP status the answer has (or would have had, streamed), 200 unless it failed.
    pub status: u16,
    pub error: Option<String>,
    /// The provider's token counts, when it reported them.
    pub usage: Option<Usage>,
    /// The answer's text, kept only when the request has a capture row to hold it.
    pub answer_text: Option<String>,
    /// The answer's tool calls, with their `index`, kept as `answer_text` is.
    pub tool_calls: Vec<(u32, CapturedToolCall)>,
    /// Milliseconds from arrival to the answer's first event.
    pub ttfb_ms: Option<f64>,
    /// Milliseconds from arrival to the end.
    pub latency_ms: f64,
}

/// Watches one request's answer and completes it once.
pub struct Completion {
    ctx: RequestContext,
    pipeline: Pipeline,
    outcome: Outcome,
    done: bool,
}

impl Completion {
    pub fn new(ctx: &RequestContext, pipeline: &Pipeline) -> Self {
        Self {
            ctx: ctx.clone(),
            pipeline: pipeline.clone(),
            outcome: Outcome {
                ended: Ended::Done,
                status: 200,
                error: None,
                usage: None,
                answer_text: ctx.recorder.as_ref().map(|_| String::new()),
                tool_calls: Vec::new(),
                ttfb_ms: None,
                latency_ms: 0.0,
            },
            done: false,
        }
    }

    /// Notes what an answer event says about the outcome.
    pub fn observe(&mut self, event: &Event) {
        let outcome = &mut self.outcome;
        if outcome.ttfb_ms.is_none() {
            outcome.ttfb_ms = Some(elapsed_ms(&self.ctx));
        }
        match event {
            Event::Usage(usage) => outcome.usage = Some(usage.clone()),
            Event::TextDelta(text) | Event::RefusalDelta(text) => {
                if let Some(answer) = &mut outcome.answer_text {
                    answer.push_str(text);
                }
            }
            Event::ToolCallStart { index, name, .. } if outcome.answer_text.is_some() => {
                let call = CapturedToolCall {
                    name: name.clone(),
                    arguments: String::new(),
                };
                outcome.tool_calls.push((*index, call));
            }
            Event::ToolCallArgsDelta { index, arguments } => {
                if let Some((_, call)) = outcome.tool_calls.iter_mut().find(|(i, _)| i == index) {
                    call.arguments.push_str(arguments);
                }
            }
            Event::Error(err) => self.failed(err),
            _ => {}
        }
    }

    /// The request failed before its answer began: `on_error`, then `on_complete`.
    pub fn fail(mut self, err: &Error) {
        self.failed(err);
        self.finish();
    }

    /// The answer went out whole.
    pub fn finish(mut self) {
        self.complete(Ended::Done);
    }

    fn failed(&mut self, err: &Error) {
        self.outcome.status = err.status();
        self.outcome.error = Some(err.to_string());
        self.pipeline.on_error(&self.ctx, err);
    }

    fn complete(&mut self, ended: Ended) {
        self.done = true;
        self.outcome.ended = ended;
        self.outcome.latency_ms = elapsed_ms(&self.ctx);
        self.pipeline.on_complete(&self.ctx, &self.outcome);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.complete(Ended::ClientLeft);
        }
    }
}

fn elapsed_ms(ctx: &RequestContext) -> f64 {
    ctx.started.elapsed().as_secs_f64() * 1000.0
}
