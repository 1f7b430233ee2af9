//! The `around_upstream` phase's chain: each stage gets an [`Upstream`] for the stages
//! inside it, and the innermost step prepares the request for its target (phase 3,
//! `upstream_request`), calls the back-end and notes the attempt. A stage may send to
//! another target of the request's [`Plan`] (failover) with [`Upstream::to`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{RequestContext, Stage};
use crate::Error;
use crate::backend::EventStream;
use crate::backend::keys::KeyRing;
use crate::capture::{Capture, Tap, TapInfo};
use crate::model::Request;
use crate::router::health::Health;
use crate::router::{Plan, Target};

/// What every attempt of one request shares.
pub struct Call<'a> {
    pub ctx: &'a RequestContext,
    pub plan: &'a Plan,
    /// The `upstream_request` stages, run for each attempt's target.
    pub prepare: &'a [Arc<dyn Stage>],
    pub capture: Option<&'a Arc<Capture>>,
    pub health: &'a Health,
}

/// The rest of the call: the stages inside this one, then the back-end. Copy, so a stage
/// may send more than once (a retry, or another leg).
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    stages: &'a [Arc<dyn Stage>],
    call: &'a Call<'a>,
    target: &'a Target,
}

impl<'a> Upstream<'a> {
    /// The chain through `stages` to the plan's first target.
    pub fn new(stages: &'a [Arc<dyn Stage>], call: &'a Call<'a>) -> Self {
        Self {
            stages,
            call,
            target: call.plan.first(),
        }
    }

    /// Where the call goes.
    pub fn target(&self) -> &Target {
        self.target
    }

    /// Every target the request may go to, in order, and the failover route they came
    /// from.
    pub fn plan(&self) -> &'a Plan {
        self.call.plan
    }

    /// What llmux knows of each back-end's health: breakers, and where notices go.
    pub fn health(&self) -> &'a Health {
        self.call.health
    }

    /// The same chain, to `target` instead.
    pub fn to(self, target: &'a Target) -> Self {
        Self { target, ..self }
    }

    /// Sends `request` through the remaining stages to the back-end.
    pub async fn send(self, request: &Request) -> Result<EventStream, Error> {
        match self.stages.split_first() {
            Some((stage, inner)) => {
                let next = Upstream {
                    stages: inner,
                    ..self
                };
                stage.around_upstream(self.call.ctx, request, next).await
            }
            None => self.attempt(request).await,
        }
    }

    /// The innermost step: the request for this target, then the back-end's answer (or
    /// its failure before the first event). A back-end with several keys is tried with the
    /// next key when the provider blamed the key (rate limit, refusal); each call is an
    /// attempt in the chain.
    async fn attempt(self, request: &Request) -> Result<EventStream, Error> {
        let Call {
            ctx,
            prepare,
            health,
            ..
        } = *self.call;
        let target = self.target;
        if let Err(wait) = health.breakers().admit(target.backend.id()) {
            let err = crate::router::breaker::Breakers::open_error(target.backend.id(), wait);
            self.note(None, false, Err(&err), Instant::now());
            return Err(err);
        }
        let mut prepared = std::borrow::Cow::Borrowed(request);
        for stage in prepare {
            let started = Instant::now();
            if let Err(err) = stage.upstream_request(ctx, target, &mut prepared).await {
                // Refused for this target before its provider was asked (a limit): still
                // an attempt, so the chain shows why the request moved on.
                self.note(None, false, Err(&err), started);
                return Err(err);
            }
        }
        let request = prepared.as_ref();
        let ring = target.backend.keys().filter(|ring| !ring.is_empty());
        let Some(ring) = ring else {
            return self.call_with(request, None).await;
        };
        let mut tried = Vec::new();
        loop {
            let key = match ring.pick(&tried) {
                Ok(Some(key)) => key,
                Ok(None) => return self.call_with(request, None).await,
                Err(wait) => {
                    let err = ring.all_cooling(wait);
                    self.note(None, false, Err(&err), Instant::now());
                    return Err(err);
                }
            };
            tried.push(key);
            match self.call_with(request, Some((ring, key))).await {
                Err(err) if ring.failed(key, &err) && tried.len() < ring.len() => {
                    tracing::info!(
                        request_id = %ctx.request_id,
                        backend = target.backend.id(),
                        key = ring.name(key).unwrap_or("-"),
                        failure = %err.failure_label(),
                        "key cooling down; trying the next key"
                    );
                }
                result => return result,
            }
        }
    }

    /// One call to the back-end, with key `key` of `ring` when it has keys.
    async fn call_with(
        self,
        request: &Request,
        key: Option<(&KeyRing, usize)>,
    ) -> Result<EventStream, Error> {
        let Call { ctx, capture, .. } = *self.call;
        let target = self.target;
        let key_name = match key {
            Some((ring, i)) => ring.name(i),
            None => target.backend.key_name(),
        };
        let tap = tap(capture, ctx, target, key_name);
        let started = Instant::now();
        let result = match key {
            Some((_, i)) => {
                target
                    .backend
                    .send_with_key(request, &target.model, tap.as_ref(), i)
                    .await
            }
            None => {
                target
                    .backend
                    .send(request, &target.model, tap.as_ref())
                    .await
            }
        };
        let several_keys = key.is_some_and(|(ring, _)| ring.len() > 1);
        self.note(key_name, several_keys, result.as_ref().map(|_| ()), started);
        result
    }

    /// Notes an attempt in the request's chain and the leg's health.
    fn note(
        self,
        key_name: Option<&str>,
        several_keys: bool,
        result: Result<(), &Error>,
        started: Instant,
    ) {
        let target = self.target;
        let label = match result {
            Ok(()) => "200".into(),
            Err(err) => err.failure_label(),
        };
        self.call
            .health
            .record(target.backend.id(), &target.model, result);
        if let Err(err) = result
            && let crate::error::ErrorKind::Upstream {
                status: status @ (401 | 403),
                code,
                message,
                ..
            } = err.kind()
        {
            use crate::router::breaker::Notice;
            let backend = target.backend.id().to_owned();
            let notice = if code.as_deref() == Some("login_required") {
                Notice::LoginNeeded {
                    backend,
                    login: key_name.map(str::to_owned),
                    message: message.clone(),
                }
            } else {
                Notice::KeyRefused {
                    backend,
                    key: key_name.map(str::to_owned),
                    status: *status,
                }
            };
            self.call.health.notify(notice);
        }
        self.call.ctx.trail.push(Attempt {
            backend: target.backend.id().to_owned(),
            model: target.model.clone(),
            key_name: key_name.map(str::to_owned),
            key_in_chain: several_keys,
            result: label.into_owned(),
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
    }
}

/// The capture tap of one attempt, when a capture is on.
fn tap(
    capture: Option<&Arc<Capture>>,
    ctx: &RequestContext,
    target: &Target,
    key_name: Option<&str>,
) -> Option<Tap> {
    if capture.is_none() && ctx.recorder.is_none() {
        return None;
    }
    Some(Tap::new(
        capture.cloned(),
        ctx.recorder.clone(),
        TapInfo {
            request_id: ctx.request_id.clone(),
            session_id: ctx.session_id.clone(),
            client_host: ctx.client_host(),
            user_agent: ctx.user_agent.clone().unwrap_or_default(),
            backend: target.backend.id().to_owned(),
            model: target.model.clone(),
            key_name: key_name.map(str::to_owned),
        },
    ))
}

/// One call to a back-end on a request's behalf.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub backend: String,
    pub model: String,
    /// The name (never the value) of the key it used.
    pub key_name: Option<String>,
    /// Whether the chain names the key: its back-end has several.
    pub key_in_chain: bool,
    /// `200` when the back-end answered, else how it failed ([`Error::failure_label`]).
    pub result: String,
    pub elapsed_ms: f64,
}

/// Something a stage did to a request or its answer, for the log, the capture store and
/// the inspector.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Intervention {
    pub stage: String,
    pub detail: String,
}

/// A request's trail, shared by the clones of its context: its attempts at back-ends, in
/// order, and what stages did along the way.
#[derive(Clone, Default)]
pub struct Trail(Arc<Mutex<Record>>);

#[derive(Default)]
struct Record {
    attempts: Vec<Attempt>,
    interventions: Vec<Intervention>,
}

impl Trail {
    /// Notes what `stage` did.
    pub fn intervene(&self, stage: &str, detail: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .interventions
            .push(Intervention {
                stage: stage.to_owned(),
                detail: detail.into(),
            });
    }

    pub fn interventions(&self) -> Vec<Intervention> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .interventions
            .clone()
    }

    pub fn push(&self, attempt: Attempt) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts
            .push(attempt);
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts
            .clone()
    }

    /// The time every attempt took until its answer began, in milliseconds.
    pub fn upstream_ms(&self) -> f64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts
            .iter()
            .map(|attempt| attempt.elapsed_ms)
            .sum()
    }

    /// How many attempts there were.
    pub fn attempt_count(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts
            .len()
    }

    /// Runs `f` on the last attempt, if there was one.
    pub fn with_last<T>(&self, f: impl FnOnce(&Attempt) -> T) -> Option<T> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts
            .last()
            .map(f)
    }

    /// The chain as the `x-llmux-attempts` header, the log line and the capture store show
    /// it: `openrouter:qwen/qwen3-coder=429; zai:glm-4.6=200`, with the key's name in
    /// brackets when the back-end has several (`openai:gpt-4o[OPENAI_API_KEY_2]=200`). Empty
    /// when no back-end was called.
    pub fn chain(&self) -> String {
        let record = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut chain = String::new();
        for (i, attempt) in record.attempts.iter().enumerate() {
            if i > 0 {
                chain.push_str("; ");
            }
            chain.push_str(&attempt.backend);
            chain.push(':');
            chain.push_str(&attempt.model);
            if attempt.key_in_chain
                && let Some(key) = &attempt.key_name
            {
                chain.push('[');
                chain.push_str(key);
                chain.push(']');
            }
            chain.push('=');
            chain.push_str(&attempt.result);
        }
        chain
    }
}
