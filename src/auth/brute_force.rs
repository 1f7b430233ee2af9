//! Brute-force protection, as the seed defines it ("Authentication & Brute-Force
//! Protection"): each client IP may fail `max_failed_attempts` times within `ttl`; the
//! failure that reaches the limit blocks the IP for `initial_block`, and every further
//! failure while the record lives blocks it again for `multiplier` times longer, up to
//! `max_block`. Blocked requests get 429 with Retry-After. A success resets the IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BruteForceConfig;

/// Records kept at most; beyond this, records that block nobody are dropped first.
const MAX_RECORDS: usize = 100_000;

#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    blocked_until: Option<Instant>,
    next_block: Duration,
    expires_at: Instant,
}

pub struct BruteForce {
    config: BruteForceConfig,
    state: Mutex<State>,
}

struct State {
    records: HashMap<IpAddr, Record>,
    last_cleanup: Instant,
}

impl BruteForce {
    pub fn new(config: BruteForceConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                records: HashMap::new(),
                last_cleanup: Instant::now(),
            }),
        }
    }

    /// How long `ip` must still wait, if it is blocked.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().ok()?;
        let record = state.records.get(&ip)?;
        match record.blocked_until {
            Some(until) if until > now => Some(until - now),
            _ => {
                if record.expires_at <= now {
                    state.records.remove(&ip);
                }
                None
            }
        }
    }

    /// Records a failed attempt; returns the block it started, if any.
    pub fn failure(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut state = self.state.lock().ok()?;
        self.cleanup(&mut state, now);
        let config = &self.config;
        let record = state
            .records
            .entry(ip)
            .and_modify(|r| {
                if r.expires_at <= now {
                    *r = fresh(config, now);
                }
            })
            .or_insert_with(|| fresh(config, now));
        record.failures += 1;
        let mut started = None;
        if record.failures >= config.max_failed_attempts {
            let block = record.next_block.min(config.max_block);
            let until = now + block;
            record.blocked_until = Some(record.blocked_until.map_or(until, |u| u.max(until)));
            let next = Duration::from_secs_f64((block.as_secs_f64() * config.multiplier).ceil());
            record.next_block = next.max(block).min(config.max_block);
            started = Some(block);
        }
        // The record outlives its block by `ttl`, so a failure right after a block ends
        // doubles the next one, as the seed documents. (The seed's code let the record
        // expire with the block, which capped blocks near 16 minutes instead of an hour.)
        let ttl_end = now + config.ttl;
        record.expires_at = record
            .blocked_until
            .map_or(ttl_end, |until| (until + config.ttl).max(ttl_end));
        started
    }

    /// A successful authentication clears the IP's record.
    pub fn success(&self, ip: IpAddr) {
        if let Ok(mut state) = self.state.lock() {
            state.records.remove(&ip);
        }
    }

    fn cleanup(&self, state: &mut State, now: Instant) {
        let due = now.saturating_duration_since(state.last_cleanup) >= self.config.ttl;
        if !due && state.records.len() < MAX_RECORDS {
            return;
        }
        state
            .records
            .retain(|_, r| r.expires_at > now || r.blocked_until.is_some_and(|until| until > now));
        if state.records.len() >= MAX_RECORDS {
            state
                .records
                .retain(|_, r| r.blocked_until.is_some_and(|until| until > now));
        }
        state.last_cleanup = now;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().map(|s| s.records.len()).unwrap_or(0)
    }
}

fn fresh(config: &BruteForceConfig, now: Instant) -> Record {
    Record {
        failures: 0,
        blocked_until: None,
        next_block: config.initial_block,
        expires_at: now + config.ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_defaults() -> BruteForceConfig {
        BruteForceConfig {
            enabled: true,
            max_failed_attempts: 5,
            ttl: Duration::from_secs(900),
            initial_block: Duration::from_secs(30),
            multiplier: 2.0,
            max_block: Duration::from_secs(3600),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn the_fifth_failure_blocks_for_30s_and_blocks_double_up_to_the_cap() {
        let bf = BruteForce::new(seed_defaults());
        let t0 = Instant::now();
        for i in 0..4 {
            assert_eq!(bf.failure(IP, t0), None, "failure {i}");
            assert_eq!(bf.blocked_for(IP, t0), None);
        }
        assert_eq!(bf.failure(IP, t0), Some(Duration::from_secs(30)));
        assert_eq!(bf.blocked_for(IP, t0), Some(Duration::from_secs(30)));
        let mut t = t0;
        let mut block = Duration::from_secs(30);
        let mut blocks = Vec::new();
        for _ in 0..9 {
            t += block + Duration::from_secs(1);
            assert_eq!(bf.blocked_for(IP, t), None);
            block = bf.failure(IP, t).unwrap();
            blocks.push(block.as_secs());
        }
        assert_eq!(blocks, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }

    #[test]
    fn success_resets_and_old_failures_expire() {
        let bf = BruteForce::new(seed_defaults());
        let t0 = Instant::now();
        for _ in 0..4 {
            bf.failure(IP, t0);
        }
        bf.success(IP);
        assert_eq!(bf.failure(IP, t0), None);
        let later = t0 + Duration::from_secs(901);
        for _ in 0..3 {
            bf.failure(IP, later);
        }
        // The first failure expired with its ttl, so four in all is still under the limit.
        assert_eq!(bf.failure(IP, later), None);
    }

    #[test]
    fn records_are_bounded() {
        let bf = BruteForce::new(seed_defaults());
        let t0 = Instant::now();
        bf.failure(IP, t0);
        bf.failure(
            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8)),
            t0 + Duration::from_secs(1000),
        );
        assert_eq!(bf.len(), 1, "the expired record was cleaned up");
    }
}
