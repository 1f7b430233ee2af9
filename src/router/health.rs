//! What llmux has seen of each leg (`backend:model`) since it started: attempts, answers,
//! failures by class and the last failure, and each back-end's circuit breaker. The admin
//! API's stats show it; what changes is announced as [`Notice`]s.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Mutex;

use foldhash::fast::RandomState;

use serde::Serialize;

use super::breaker::{BreakerSettings, Breakers, Notice};

/// One leg's record.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LegStats {
    pub backend: String,
    pub model: String,
    pub attempts: u64,
    /// Attempts that got an answer.
    pub answered: u64,
    /// Failed attempts by how they failed (`429`, `503`, `timeout`, `connect`, ...).
    pub failed: BTreeMap<String, u64>,
    /// Failures since the last answer.
    pub consecutive_failures: u64,
    /// The last failure's message, and when (Unix seconds).
    pub last_error: Option<String>,
    pub last_error_at: Option<f64>,
}

type Legs = HashMap<String, HashMap<String, LegStats, RandomState>, RandomState>;

/// Every leg's record. Cheap to update: one lock, two lookups with a fast hasher.
pub struct Health {
    /// By back-end, then model: a lookup with borrowed names allocates nothing.
    legs: Mutex<Legs>,
    breakers: Breakers,
    notices: tokio::sync::broadcast::Sender<Notice>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(BreakerSettings::default())
    }
}

impl Health {
    pub fn new(breaker: BreakerSettings) -> Self {
        Self {
            legs: Mutex::default(),
            breakers: Breakers::new(breaker),
            notices: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// A fresh record that announces on `notices` (an engine that replaced another keeps
    /// its listeners).
    pub fn with_notices(
        breaker: BreakerSettings,
        notices: tokio::sync::broadcast::Sender<Notice>,
    ) -> Self {
        Self {
            notices,
            ..Self::new(breaker)
        }
    }

    /// Keeps open breakers in `rests` too: shared by a team, kept across saved settings.
    pub fn with_rests(mut self, rests: crate::state::rests::Rests) -> Self {
        self.breakers = self.breakers.with_rests(rests);
        self
    }

    pub fn sender(&self) -> tokio::sync::broadcast::Sender<Notice> {
        self.notices.clone()
    }

    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// Notices from now on (failovers, breakers opening and closing); a receiver that falls
    /// more than 64 behind misses the oldest.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Announces `notice` to whoever listens (and the log).
    pub fn notify(&self, notice: Notice) {
        tracing::warn!(notice = ?notice, "reliability");
        let _ = self.notices.send(notice);
    }

    /// Notes an attempt at `backend:model` and its result.
    pub fn record(&self, backend: &str, model: &str, result: Result<(), &crate::Error>) {
        // The breaker hears from the provider only: not from a request refused here (a
        // limit, the breaker itself).
        let from_provider = result.is_ok()
            || result.is_err_and(|err| {
                err.side() == crate::error::Side::Upstream
                    && !matches!(err.kind(), crate::error::ErrorKind::CircuitOpen { .. })
            });
        if from_provider && let Some(notice) = self.breakers.record(backend, result) {
            self.notify(notice);
        }
        let mut legs = self.legs.lock().unwrap_or_else(|e| e.into_inner());
        if !legs.contains_key(backend) {
            legs.insert(backend.to_owned(), HashMap::default());
        }
        let Some(models) = legs.get_mut(backend) else {
            return;
        };
        if !models.contains_key(model) {
            let fresh = LegStats {
                backend: backend.to_owned(),
                model: model.to_owned(),
                ..LegStats::default()
            };
            models.insert(model.to_owned(), fresh);
        }
        let Some(leg) = models.get_mut(model) else {
            return;
        };
        leg.attempts += 1;
        match result {
            Ok(()) => {
                leg.answered += 1;
                leg.consecutive_failures = 0;
            }
            Err(err) => {
                *leg.failed
                    .entry(err.failure_label().into_owned())
                    .or_default() += 1;
                leg.consecutive_failures += 1;
                leg.last_error = Some(err.to_string());
                leg.last_error_at = Some(crate::capture::store::unix_seconds());
            }
        }
    }

    /// Every leg's record, busiest first.
    pub fn legs(&self) -> Vec<LegStats> {
        let legs = self.legs.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<LegStats> = legs.values().flat_map(|m| m.values().cloned()).collect();
        all.sort_by(|a, b| {
            b.attempts
                .cmp(&a.attempts)
                .then_with(|| (&a.backend, &a.model).cmp(&(&b.backend, &b.model)))
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_answers_and_failures_are_counted_per_leg() {
        let health = Health::default();
        let limited = crate::Error::upstream_status(429, None);
        health.record("a", "m", Err(&limited));
        health.record("a", "m", Err(&limited));
        health.record("b", "n", Ok(()));
        let legs = health.legs();
        assert_eq!(legs.len(), 2);
        let a = &legs[0];
        assert_eq!((a.attempts, a.answered, a.consecutive_failures), (2, 0, 2));
        assert_eq!(a.failed.get("429"), Some(&2));
        assert!(
            a.last_error
                .as_deref()
                .unwrap()
                .contains("provider says 429")
        );
        health.record("a", "m", Ok(()));
        let a = health
            .legs()
            .into_iter()
            .find(|l| l.backend == "a")
            .unwrap();
        assert_eq!((a.answered, a.consecutive_failures), (1, 0));
    }
}
