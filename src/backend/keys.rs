//! A back-end's keys and whose turn it is. A key the provider rate limits (429), finds out
//! of credit (402) or refuses (401, 403) cools down, for the provider's Retry-After when it
//! gave one, and the request goes on with the next key; `key_rotation = "round-robin"`
//! spreads requests over the keys even when none fails. Health (uses, failures, cooling
//! until, last error) is kept per key for the admin API and the settings window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::KeyRotation;
use crate::error::{Error, ErrorKind};
use crate::state::rests::Rests;

/// How long a rate-limited key rests when the provider did not say.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(60);
/// How long a refused key (401, 403) or one out of credit (402) rests.
pub const REFUSED_COOL_DOWN: Duration = Duration::from_secs(600);
/// The longest rest a Retry-After may ask for; providers that say "tomorrow" are asked
/// again within the hour.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);

/// One key's record.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct KeyHealth {
    pub backend: String,
    /// The key's name (its variable or keychain entry), never its value.
    pub name: String,
    /// Requests sent with it.
    pub uses: u64,
    /// Failures that made it cool down.
    pub failures: u64,
    /// Unix seconds until which it is left alone; absent when it is usable.
    pub cooling_until: Option<f64>,
    pub last_error: Option<String>,
}

struct KeyState {
    uses: u64,
    failures: u64,
    cooling_until: Option<Instant>,
    last_error: Option<String>,
}

pub struct KeyRing {
    backend: String,
    /// What each key is called (its variable, keychain entry or login), never its value.
    names: Vec<String>,
    rotation: KeyRotation,
    next: AtomicUsize,
    state: Mutex<Vec<KeyState>>,
    /// Each key's name among the rests (`key:<back-end>:<name>`).
    rest_names: Vec<String>,
    /// Where cool-downs are also kept: shared by the team's instances, and kept when saved
    /// settings rebuild this ring.
    rests: OnceLock<Rests>,
}

impl KeyRing {
    pub fn new(backend: &str, names: Vec<String>, rotation: KeyRotation) -> Self {
        let state = names
            .iter()
            .map(|_| KeyState {
                uses: 0,
                failures: 0,
                cooling_until: None,
                last_error: None,
            })
            .collect();
        Self {
            backend: backend.to_owned(),
            rest_names: names.iter().map(|n| format!("key:{backend}:{n}")).collect(),
            names,
            rotation,
            next: AtomicUsize::new(0),
            state: Mutex::new(state),
            rests: OnceLock::new(),
        }
    }

    /// Keeps cool-downs in `rests` too (and honours those already there).
    pub fn share_rests(&self, rests: Rests) {
        let _ = self.rests.set(rests);
    }

    /// How long key `index` still cools down, here or anywhere on the team.
    fn cooling_left(&self, index: usize, local: Option<Instant>, now: Instant) -> Option<Duration> {
        let here = local.filter(|until| *until > now).map(|until| until - now);
        let team = self
            .rests
            .get()
            .and_then(|rests| rests.left(&self.rest_names[index]));
        here.max(team)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of key `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// The key to use next, leaving out `tried` and keys cooling down; `Err` with the wait
    /// until the first one is ready again when every untried key is cooling down. `None`
    /// inside when the back-end has no key at all.
    pub fn pick(&self, tried: &[usize]) -> Result<Option<usize>, Duration> {
        let n = self.names.len();
        if n == 0 {
            return Ok(None);
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Round robin: from the key after the last one used (under the lock, so two
        // requests never get the same turn); a key resting is skipped, not counted.
        let start = match self.rotation {
            KeyRotation::OnFailure => 0,
            KeyRotation::RoundRobin => self.next.load(Ordering::Relaxed),
        };
        let mut soonest: Option<Duration> = None;
        for offset in 0..n {
            let i = (start + offset) % n;
            if tried.contains(&i) {
                continue;
            }
            match self.cooling_left(i, state[i].cooling_until, now) {
                Some(wait) => {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                }
                None => {
                    state[i].cooling_until = None;
                    state[i].uses += 1;
                    self.next.store((i + 1) % n, Ordering::Relaxed);
                    return Ok(Some(i));
                }
            }
        }
        Err(soonest.unwrap_or(DEFAULT_COOL_DOWN))
    }

    /// Notes how a request with key `index` failed. Returns whether the failure was the
    /// key's and another key may do better: the key now cools down. A back-end with one
    /// key never rests it (each request asks the provider, which knows its own limits).
    pub fn failed(&self, index: usize, err: &Error) -> bool {
        let Some(rest) = cool_down_for(err) else {
            return false;
        };
        let rotates = self.names.len() > 1;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = state.get_mut(index) {
            key.failures += 1;
            key.last_error = Some(err.to_string());
            if rotates {
                key.cooling_until = Some(Instant::now() + rest);
                if let Some(rests) = self.rests.get() {
                    rests.rest(&self.rest_names[index], rest);
                }
            }
        }
        rotates
    }

    /// The error when every key is cooling down: 429, with the wait until the first one is
    /// ready as its Retry-After.
    pub fn all_cooling(&self, wait: Duration) -> Error {
        let seconds = wait.as_secs_f64().ceil() as u64;
        ErrorKind::Upstream {
            backend: self.backend.clone(),
            status: 429,
            message: format!(
                "all {} keys of back-end '{}' are cooling down after rate limits or refusals; \
                 the first is ready again in {seconds} s",
                self.names.len(),
                self.backend
            ),
            error_type: Some("rate_limit_error".into()),
            code: Some("keys_cooling_down".into()),
            retry_after: Some(Duration::from_secs(seconds.max(1))),
        }
        .into()
    }

    /// Every key's record.
    pub fn health(&self) -> Vec<KeyHealth> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let unix_now = crate::capture::store::unix_seconds();
        self.names
            .iter()
            .zip(state.iter())
            .enumerate()
            .map(|(i, (name, s))| KeyHealth {
                backend: self.backend.clone(),
                name: name.clone(),
                uses: s.uses,
                failures: s.failures,
                cooling_until: self
                    .cooling_left(i, s.cooling_until, now)
                    .map(|left| unix_now + left.as_secs_f64()),
                last_error: s.last_error.clone(),
            })
            .collect()
    }
}

/// How long a key rests after `err`, when the failure was the key's.
fn cool_down_for(err: &Error) -> Option<Duration> {
    match err.kind() {
        ErrorKind::Upstream { status: 429, .. } => Some(
            err.retry_after()
                .unwrap_or(DEFAULT_COOL_DOWN)
                .min(MAX_COOL_DOWN),
        ),
        ErrorKind::Upstream {
            status: 401..=403, ..
        } => Some(REFUSED_COOL_DOWN),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize, rotation: KeyRotation) -> KeyRing {
        let names = (1..=n).map(|i| format!("K{i}")).collect();
        KeyRing::new("b", names, rotation)
    }

    fn status(status: u16, retry_after: Option<u64>) -> Error {
        Error::upstream_status(status, retry_after.map(Duration::from_secs))
    }

    #[test]
    fn on_failure_keeps_the_first_key_until_it_cools_down() {
        let ring = ring(3, KeyRotation::OnFailure);
        assert_eq!(ring.pick(&[]), Ok(Some(0)));
        assert_eq!(ring.pick(&[]), Ok(Some(0)));
        assert!(ring.failed(0, &status(429, Some(30))));
        assert_eq!(ring.pick(&[]), Ok(Some(1)));
        assert!(!ring.failed(1, &status(500, None)), "not the key's fault");
        assert_eq!(ring.pick(&[]), Ok(Some(1)));
        let health = ring.health();
        assert_eq!(health[0].failures, 1);
        let until = health[0].cooling_until.unwrap() - crate::capture::store::unix_seconds();
        assert!((28.0..=30.5).contains(&until), "{until}");
        assert_eq!(health[1].cooling_until, None);
    }

    #[test]
    fn round_robin_is_fair_and_skips_keys_that_rest() {
        let ring = ring(3, KeyRotation::RoundRobin);
        let mut counts = [0; 3];
        for _ in 0..999 {
            counts[ring.pick(&[]).unwrap().unwrap()] += 1;
        }
        assert_eq!(counts, [333, 333, 333]);
        ring.failed(1, &status(403, None));
        let mut counts = [0; 3];
        for _ in 0..1000 {
            counts[ring.pick(&[]).unwrap().unwrap()] += 1;
        }
        assert_eq!(counts, [500, 0, 500]);
    }

    #[test]
    fn a_cool_down_kept_in_shared_rests_holds_for_a_rebuilt_ring() {
        let rests = Rests::local();
        let first = ring(2, KeyRotation::OnFailure);
        first.share_rests(rests.clone());
        assert!(first.failed(0, &status(429, Some(30))));
        let rebuilt = ring(2, KeyRotation::OnFailure);
        rebuilt.share_rests(rests);
        assert_eq!(rebuilt.pick(&[]), Ok(Some(1)), "K1 still cools down");
        let until =
            rebuilt.health()[0].cooling_until.unwrap() - crate::capture::store::unix_seconds();
        assert!((28.0..=30.5).contains(&until), "{until}");
    }

    #[test]
    fn a_single_key_is_never_rested() {
        let ring = ring(1, KeyRotation::OnFailure);
        assert!(!ring.failed(0, &status(429, Some(30))));
        assert_eq!(ring.pick(&[]), Ok(Some(0)));
        assert_eq!(ring.health()[0].failures, 1);
    }

    #[test]
    fn every_key_resting_gives_the_wait_until_the_first_is_ready() {
        let ring = ring(2, KeyRotation::OnFailure);
        ring.failed(0, &status(429, Some(20)));
        ring.failed(1, &status(429, Some(5)));
        let wait = ring.pick(&[]).unwrap_err();
        assert!(wait <= Duration::from_secs(5) && wait > Duration::from_secs(3));
        let err = ring.all_cooling(wait);
        assert_eq!(err.status(), 429);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        // A key already tried is left out even when it is usable.
        let fresh = super::tests::ring(2, KeyRotation::OnFailure);
        assert_eq!(fresh.pick(&[0]), Ok(Some(1)));
        assert!(fresh.pick(&[0, 1]).is_err());
    }
}
