//! A circuit breaker per back-end: after `failures` outages in a row (5xx, timeouts,
//! unreachable; not a request's own 4xx or a rate limit, which key rotation handles) the
//! back-end is open for `cool_down`: requests to it fail at once with 503 and the cool-down
//! left as Retry-After, and a failover route tries its other legs first. After the
//! cool-down one request goes through as a probe (others still fail fast while it runs): an
//! answer closes the breaker, a failure opens it again.
//!
//! An open breaker is also a rest ([`Rests`], `breaker:<back-end>`): with shared state the
//! other instances of a team leave the back-end alone too, within a sync, and each sends its
//! own probe when the cool-down is over. A probe's answer ends the rest for all of them.
//!
//! What happens is announced as [`Notice`]s (the desktop app shows them as notifications).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Error;
use crate::error::ErrorKind;
use crate::state::rests::Rests;

pub use crate::config::BreakerSettings;

/// Something a person may want to know about, as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A failover route moved a request from one leg to the next.
    FailedOver {
        route: String,
        from: String,
        to: String,
        failure: String,
    },
    /// A back-end failed too often in a row and is left alone for a while.
    BreakerOpened {
        backend: String,
        cool_down_seconds: u64,
        last_error: String,
    },
    /// A back-end answered again after its breaker opened.
    BreakerClosed { backend: String },
    /// A provider refused a key (401 or 403): expired, revoked or mistyped.
    KeyRefused {
        backend: String,
        /// The key's name (its variable or keychain entry), never its value.
        key: Option<String>,
        status: u16,
    },
    /// A subscription login can no longer be used (logged out, refresh token refused):
    /// only the user can fix it, with the CLI command the message names.
    LoginNeeded {
        backend: String,
        /// The credential file, as the key ring names it.
        login: Option<String>,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down is over and one request is probing.
    Probing,
}

/// A back-end's breaker as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BreakerState {
    pub backend: String,
    /// `closed`, `open` or `probing`.
    pub state: String,
    /// Outages in a row so far (closed).
    pub failures: u32,
    /// Seconds of cool-down left (open).
    pub open_for_seconds: Option<f64>,
}

pub struct Breakers {
    settings: BreakerSettings,
    states: Mutex<HashMap<String, State, foldhash::fast::RandomState>>,
    rests: Rests,
}

fn rest_name(backend: &str) -> String {
    format!("breaker:{backend}")
}

/// Whether an error counts against a back-end: the provider failed, not the request.
pub fn is_outage(err: &Error) -> bool {
    match err.kind() {
        ErrorKind::Upstream { status, .. } => *status >= 500,
        ErrorKind::Timeout { .. }
        | ErrorKind::BackendUnreachable { .. }
        | ErrorKind::UpstreamProtocol { .. }
        | ErrorKind::StreamInterrupted { .. } => true,
        _ => false,
    }
}

impl Breakers {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            states: Mutex::new(HashMap::default()),
            rests: Rests::local(),
        }
    }

    /// Keeps open breakers in `rests` too (shared by a team, kept across saved settings).
    pub fn with_rests(mut self, rests: Rests) -> Self {
        self.rests = rests;
        self
    }

    /// How long the team leaves `backend` alone, when an open breaker elsewhere says so.
    fn team_rest(&self, backend: &str) -> Option<Duration> {
        self.rests
            .anything()
            .then(|| self.rests.left(&rest_name(backend)))
            .flatten()
    }

    /// Whether `backend` may be called now; the cool-down left when it is open. Past its
    /// cool-down, the first caller becomes the probe.
    pub fn admit(&self, backend: &str) -> Result<(), Duration> {
        if !self.settings.enabled {
            return Ok(());
        }
        let team = self.team_rest(backend);
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = team {
            // Open here too until the team's rest ends; then this instance probes.
            let until = Instant::now() + wait;
            let state = states
                .entry(backend.to_owned())
                .or_insert(State::Closed { failures: 0 });
            match *state {
                State::Probing => return Err(Duration::from_secs(1)),
                State::Open { until: ours } if ours >= until => {}
                _ => *state = State::Open { until },
            }
        }
        let Some(state) = states.get_mut(backend) else {
            return Ok(());
        };
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Probing;
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            // Others wait for the probe's answer; a second is a fair guess of how long.
            State::Probing => Err(Duration::from_secs(1)),
        }
    }

    /// Whether `backend` is open (skipped first by a failover route).
    pub fn is_open(&self, backend: &str) -> bool {
        if self.team_rest(backend).is_some() {
            return true;
        }
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        matches!(
            states.get(backend),
            Some(State::Open { until }) if *until > Instant::now()
        )
    }

    /// Notes a call's result; says what changed, if anything worth a notice.
    pub fn record(&self, backend: &str, result: Result<(), &Error>) -> Option<Notice> {
        if !self.settings.enabled {
            return None;
        }
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let outage = result.err().filter(|err| is_outage(err));
        let Some(err) = outage else {
            // An answer (or the request's own fault) closes the breaker.
            let before = states.insert(backend.to_owned(), State::Closed { failures: 0 });
            let reopened = matches!(before, Some(State::Probing | State::Open { .. }));
            if reopened {
                self.rests.end(&rest_name(backend));
            }
            return reopened.then(|| Notice::BreakerClosed {
                backend: backend.to_owned(),
            });
        };
        let state = states
            .entry(backend.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let failures = match *state {
            State::Closed { failures } => failures + 1,
            State::Probing | State::Open { .. } => self.settings.failures,
        };
        if failures < self.settings.failures {
            *state = State::Closed { failures };
            return None;
        }
        let was_open = matches!(*state, State::Open { .. });
        *state = State::Open {
            until: Instant::now() + self.settings.cool_down,
        };
        self.rests
            .rest(&rest_name(backend), self.settings.cool_down);
        (!was_open).then(|| Notice::BreakerOpened {
            backend: backend.to_owned(),
            cool_down_seconds: self.settings.cool_down.as_secs(),
            last_error: err.to_string(),
        })
    }

    /// The error a request to an open back-end gets.
    pub fn open_error(backend: &str, wait: Duration) -> Error {
        ErrorKind::CircuitOpen {
            backend: backend.to_owned(),
            retry_after: wait,
        }
        .into()
    }

    /// Every back-end that has failed since llmux started.
    pub fn states(&self) -> Vec<BreakerState> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut all: Vec<BreakerState> = states
            .iter()
            .map(|(backend, state)| {
                let (name, failures, open_for) = match *state {
                    State::Closed { failures } => ("closed", failures, None),
                    State::Open { until } if until > now => {
                        ("open", 0, Some((until - now).as_secs_f64()))
                    }
                    State::Open { .. } => ("open", 0, Some(0.0)),
                    State::Probing => ("probing", 0, None),
                };
                BreakerState {
                    backend: backend.clone(),
                    state: name.to_owned(),
                    failures,
                    open_for_seconds: open_for,
                }
            })
            .collect();
        // Back-ends the team left alone that this instance has not called since.
        for (name, left) in self.rests.starting_with("breaker:") {
            let backend = &name["breaker:".len()..];
            if !states.contains_key(backend) {
                all.push(BreakerState {
                    backend: backend.to_owned(),
                    state: "open".to_owned(),
                    failures: 0,
                    open_for_seconds: Some(left.as_secs_f64()),
                });
            }
        }
        all.sort_by(|a, b| a.backend.cmp(&b.backend));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(failures: u32, cool_down_ms: u64) -> Breakers {
        Breakers::new(BreakerSettings {
            enabled: true,
            failures,
            cool_down: Duration::from_millis(cool_down_ms),
        })
    }

    #[test]
    fn outages_in_a_row_open_it_and_an_answer_in_between_starts_the_count_again() {
        let b = breakers(3, 60_000);
        let outage = Error::upstream_status(503, None);
        assert_eq!(b.record("x", Err(&outage)), None);
        assert_eq!(b.record("x", Err(&outage)), None);
        assert_eq!(b.record("x", Ok(())), None);
        assert_eq!(b.record("x", Err(&outage)), None);
        assert_eq!(b.record("x", Err(&outage)), None);
        assert!(b.admit("x").is_ok());
        let opened = b.record("x", Err(&outage));
        assert!(
            matches!(opened, Some(Notice::BreakerOpened { .. })),
            "{opened:?}"
        );
        let wait = b.admit("x").unwrap_err();
        assert!(wait > Duration::from_secs(59));
        assert!(b.is_open("x"));
        assert!(b.admit("y").is_ok(), "other back-ends are not affected");
    }

    #[test]
    fn a_breaker_opened_by_another_instance_holds_here_and_this_probe_ends_it() {
        let rests = Rests::local();
        let here = breakers(2, 60_000).with_rests(rests.clone());
        let elsewhere = breakers(1, 20).with_rests(rests.clone());
        let outage = Error::upstream_status(503, None);
        assert!(elsewhere.record("x", Err(&outage)).is_some());
        assert!(here.is_open("x"));
        assert!(here.admit("x").is_err(), "open here as well");
        assert_eq!(here.states()[0].state, "open");
        std::thread::sleep(Duration::from_millis(30));
        assert!(here.admit("x").is_ok(), "this instance's probe");
        assert!(here.record("x", Ok(())).is_some(), "closed");
        assert!(
            rests.left("breaker:x").is_none(),
            "the rest is over for all"
        );
        assert!(elsewhere.admit("x").is_ok());
    }

    #[test]
    fn a_request_s_own_errors_and_rate_limits_do_not_count() {
        let b = breakers(1, 60_000);
        assert_eq!(b.record("x", Err(&Error::upstream_status(400, None))), None);
        assert_eq!(b.record("x", Err(&Error::upstream_status(429, None))), None);
        assert!(b.admit("x").is_ok());
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_its_answer_closes_it() {
        let b = breakers(1, 20);
        let outage = Error::upstream_status(500, None);
        b.record("x", Err(&outage));
        assert!(b.admit("x").is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.admit("x").is_ok(), "the probe");
        assert!(b.admit("x").is_err(), "others wait for the probe");
        assert_eq!(
            b.record("x", Ok(())),
            Some(Notice::BreakerClosed {
                backend: "x".into()
            })
        );
        assert!(b.admit("x").is_ok());
        // A failed probe opens it again at once.
        b.record("x", Err(&outage));
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.admit("x").is_ok());
        assert!(b.record("x", Err(&outage)).is_some());
        assert!(b.admit("x").is_err());
    }
}
