//! Per-model limits, checked for each attempt before its provider is called (the seed's
//! "context window enforcement"): a request with more input tokens than its model takes
//! (`max_input_tokens`, else `context_window`, or `force_context_window` for every model)
//! is refused with the seed's `input_limit_exceeded` error in the client's protocol; a
//! request asking for more output than `max_output_tokens` gets that many; a model over its
//! `requests_per_minute` or `tokens_per_minute` answers 429 with the wait as Retry-After,
//! after waiting up to `queue_timeout_seconds` for a turn. A failover route moves on from a
//! leg that is over its rate (not from one the request is too long for: 400s never fail
//! over).

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::{Phases, Reads, RequestContext, Stage};
use crate::Error;
use crate::config::limits::{Limits, ModelLimits};
use crate::error::ErrorKind;
use crate::model::Request;
use crate::model::tokens::TokenCounter;
use crate::router::Target;

/// Messages to tokenise above this many bytes are counted on a blocking thread, so a
/// megabyte of new conversation never stalls the runtime's other requests.
const COUNT_INLINE_BYTES: usize = 64 * 1024;

pub struct ModelLimitsStage {
    limits: Limits,
    counter: Arc<TokenCounter>,
    rates: Mutex<HashMap<String, Arc<Rates>>>,
}

/// A model's rate limiters.
struct Rates {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
}

impl ModelLimitsStage {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            counter: Arc::new(TokenCounter::new()),
            rates: Mutex::new(HashMap::new()),
        }
    }

    /// The input tokens of `request` for `model`, tokenising on a blocking thread when much
    /// of it has not been counted before.
    async fn input_tokens(&self, request: &Request, model: &str) -> Result<u64, Error> {
        let (_, new_bytes) = self.counter.uncounted(request, model);
        if new_bytes <= COUNT_INLINE_BYTES {
            return Ok(self.counter.count(request, model));
        }
        let (counter, request, model) = (self.counter.clone(), request.clone(), model.to_owned());
        tokio::task::spawn_blocking(move || counter.count(&request, &model))
            .await
            .map_err(|e| Error::internal(format!("counting tokens failed: {e}")))
    }

    fn rates(&self, target: &Target, limits: &ModelLimits) -> Arc<Rates> {
        let key = format!("{}:{}", target.backend.id(), target.model);
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        rates
            .entry(key)
            .or_insert_with(|| {
                let per_minute = |n: Option<u32>| {
                    n.and_then(NonZeroU32::new)
                        .map(|n| RateLimiter::direct(Quota::per_minute(n)))
                };
                Arc::new(Rates {
                    requests: per_minute(limits.requests_per_minute),
                    tokens: per_minute(limits.tokens_per_minute),
                })
            })
            .clone()
    }

    /// Takes a turn of `target`'s rates for one request of `tokens`, waiting up to the
    /// model's queue timeout; the error says how long until a turn is free.
    async fn take_turn(
        &self,
        target: &Target,
        limits: &ModelLimits,
        tokens: u64,
    ) -> Result<(), Error> {
        let rates = self.rates(target, limits);
        let deadline = Instant::now() + limits.queue_timeout;
        loop {
            let wait = match rates.wait(tokens) {
                Ok(()) => return Ok(()),
                Err(Wait::Never(message)) => return Err(rate_limited(target, message, None)),
                Err(Wait::For(wait)) => wait,
            };
            if Instant::now() + wait > deadline {
                let message = format!("over its rate limit; the next turn is in {wait:.1?}");
                return Err(rate_limited(target, message, Some(wait)));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

enum Wait {
    For(Duration),
    Never(String),
}

impl Rates {
    /// Takes a request turn and `tokens` token turns, or says how long until they are free.
    /// A request turn taken when the tokens are not free is given back by the wait (GCRA
    /// has no refund; the next check after the wait sees both).
    fn wait(&self, tokens: u64) -> Result<(), Wait> {
        let clock = DefaultClock::default();
        if let Some(tokens_limiter) = &self.tokens {
            let n = NonZeroU32::new(u32::try_from(tokens.max(1)).unwrap_or(u32::MAX))
                .unwrap_or(NonZeroU32::MIN);
            match tokens_limiter.check_n(n) {
                Err(capacity) => {
                    return Err(Wait::Never(format!(
                        "the request's {tokens} input tokens exceed its tokens_per_minute \
                         ({capacity})"
                    )));
                }
                Ok(Err(not_until)) => return Err(Wait::For(not_until.wait_time_from(clock.now()))),
                Ok(Ok(())) => {}
            }
        }
        if let Some(requests) = &self.requests
            && let Err(not_until) = requests.check()
        {
            return Err(Wait::For(not_until.wait_time_from(clock.now())));
        }
        Ok(())
    }
}

fn rate_limited(target: &Target, why: String, wait: Option<Duration>) -> Error {
    ErrorKind::RateLimited {
        message: format!(
            "model '{}' of back-end '{}' is {why}",
            target.model,
            target.backend.id()
        ),
        retry_after: wait.map(|w| w.max(Duration::from_secs(1))),
    }
    .into()
}

#[async_trait]
impl Stage for ModelLimitsStage {
    fn name(&self) -> &'static str {
        "model-limits"
    }

    fn reads(&self) -> Reads {
        Reads::MESSAGES
    }

    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST.when(self.limits.any())
    }

    async fn upstream_request(
        &self,
        ctx: &RequestContext,
        target: &Target,
        request: &mut Cow<'_, Request>,
    ) -> Result<(), Error> {
        let limits = self.limits.of(target.backend.id(), &target.model);
        if limits.is_empty() {
            return Ok(());
        }
        let needs_count = limits.max_input_tokens.is_some() || limits.tokens_per_minute.is_some();
        let tokens = if needs_count {
            self.input_tokens(request, &target.model).await?
        } else {
            0
        };
        if let Some(limit) = limits.max_input_tokens
            && tokens > limit
        {
            return Err(ErrorKind::InputLimitExceeded {
                model: target.model.clone(),
                limit,
                measured: tokens,
            }
            .into());
        }
        if let Some(max) = limits.max_output_tokens
            && request.sampling.max_tokens.is_some_and(|asked| asked > max)
        {
            request.to_mut().sampling.max_tokens = Some(max);
            ctx.trail.intervene(
                "model-limits",
                format!("max_tokens lowered to the model's {max}"),
            );
        }
        if limits.rate_limited() {
            self.take_turn(target, &limits, tokens).await?;
        }
        Ok(())
    }
}
