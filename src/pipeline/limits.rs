//! Per-model limits, checked for each attempt before its provider is called (the seed's
//! "context window enforcement"): a request with more input tokens than its model takes
//! (`max_input_tokens`, else `context_window`, or `force_context_window` for every model)
//! is refused with the seed's `input_limit_exceeded` error in the client's protocol; a
//! request asking for more output than `max_output_tokens` gets that many; a model over its
//! `requests_per_minute` or `tokens_per_minute` answers 429 with the wait as Retry-After,
//! after waiting up to `queue_timeout_seconds` for a turn. A failover route moves on from a
//! leg that is over its rate (not from one the request is too long for: 400s never fail
//! over).
//!
//! With shared state (`[state] backend = "redis"`) the rates are the team's: every instance
//! takes its turns from one GCRA in Redis (a script, so a request and its tokens are taken
//! together or not at all). While Redis cannot be reached each instance counts on its own.

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
use crate::state::redis::RedisStore;

/// A minute in microseconds: the window of every rate.
const MINUTE_US: f64 = 60_000_000.0;

/// Messages to tokenise above this many bytes are counted on a blocking thread, so a
/// megabyte of new conversation never stalls the runtime's other requests.
const COUNT_INLINE_BYTES: usize = 64 * 1024;

pub struct ModelLimitsStage {
    limits: Limits,
    counter: Arc<TokenCounter>,
    rates: Mutex<HashMap<String, Arc<Rates>>>,
    /// The team's Redis and the GCRA script, when rates are shared.
    shared: Option<(Arc<RedisStore>, ::redis::Script)>,
}

/// GCRA over a minute for a model's requests and tokens, in one step: `KEYS[1]` is a hash
/// of each one's theoretical arrival time (µs, Redis's clock). `ARGV`: the request
/// interval, the token interval (µs; 0 when that rate is not limited), the request's
/// tokens, the window (µs). Answers `{0, 0}` for a turn taken, `{1, wait µs}`, or `{2, 0}`
/// when the tokens exceed a minute's worth.
const SHARED_GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local request_interval, token_interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, window = tonumber(ARGV[3]), tonumber(ARGV[4])
if token_interval > 0 and token_interval * tokens > window then return {2, 0} end
local function next_arrival(field, interval, cost)
  if interval <= 0 then return nil end
  local arrival = tonumber(redis.call('HGET', KEYS[1], field) or '0') or 0
  if arrival < now then arrival = now end
  return arrival + interval * cost
end
local requests = next_arrival('requests', request_interval, 1)
local token_turns = next_arrival('tokens', token_interval, tokens)
local wait = 0
for _, arrival in ipairs({requests or now, token_turns or now}) do
  if arrival - now > window then wait = math.max(wait, arrival - now - window) end
end
if wait > 0 then return {1, math.ceil(wait)} end
local latest = now
if requests then
  redis.call('HSET', KEYS[1], 'requests', string.format('%.0f', requests))
  latest = math.max(latest, requests)
end
if token_turns then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.0f', token_turns))
  latest = math.max(latest, token_turns)
end
redis.call('PEXPIRE', KEYS[1], math.ceil((latest - now) / 1000) + 1)
return {0, 0}
";

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
            shared: None,
        }
    }

    /// Takes turns from the team's rates in `redis`, when there is one.
    pub fn shared(mut self, redis: Option<Arc<RedisStore>>) -> Self {
        self.shared = redis.map(|redis| (redis, ::redis::Script::new(SHARED_GCRA)));
        self
    }

    /// A turn from the team's rates in Redis; `None` when there are none or Redis cannot
    /// be reached (then this instance counts on its own).
    async fn shared_turn(
        &self,
        target: &Target,
        limits: &ModelLimits,
        tokens: u64,
    ) -> Option<Result<(), Wait>> {
        let (redis, script) = self.shared.as_ref()?;
        let interval_us = |per_minute: Option<u32>| match per_minute {
            Some(n) if n > 0 => MINUTE_US / f64::from(n),
            _ => 0.0,
        };
        let args = [
            interval_us(limits.requests_per_minute).to_string(),
            interval_us(limits.tokens_per_minute).to_string(),
            tokens.max(1).to_string(),
            MINUTE_US.to_string(),
        ];
        let name = format!("rate:{}:{}", target.backend.id(), target.model);
        let answer = redis
            .run_script::<(i64, i64)>("did not answer a rate-limit turn", script, &name, &args)
            .await;
        match answer {
            Ok((0, _)) => Some(Ok(())),
            Ok((1, wait_us)) => Some(Err(Wait::For(Duration::from_micros(
                u64::try_from(wait_us).unwrap_or(0),
            )))),
            Ok(_) => Some(Err(Wait::Never(format!(
                "the request's {tokens} input tokens exceed its tokens_per_minute ({})",
                limits.tokens_per_minute.unwrap_or(0)
            )))),
            Err(err) => {
                tracing::warn!("model limits: {err}; counting this instance's turns only");
                None
            }
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
            let turn = match self.shared_turn(target, limits, tokens).await {
                Some(turn) => turn,
                None => rates.wait(tokens),
            };
            let wait = match turn {
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
