//! Brute-force protection, as the seed defines it ("Authentication & Brute-Force
//! Protection"): each client IP may fail `max_failed_attempts` times within `ttl`; the
//! failure that reaches the limit blocks the IP for `initial_block`, and every further
//! failure while the record lives blocks it again for `multiplier` times longer, up to
//! `max_block`. Blocked requests get 429 with Retry-After. A success resets the IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::BruteForceConfig;
use crate::state::redis::RedisStore;

/// Records kept at most; beyond this, records that block nobody are dropped first.
const MAX_RECORDS: usize = 100_000;

/// One IP's failures and block. Times are Unix milliseconds, so instances on several
/// machines read a shared record the same way.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    failures: u32,
    blocked_until_ms: Option<u64>,
    next_block: Duration,
    expires_at_ms: u64,
}

impl Record {
    fn fresh(config: &BruteForceConfig, now_ms: u64) -> Self {
        Self {
            failures: 0,
            blocked_until_ms: None,
            next_block: config.initial_block,
            expires_at_ms: now_ms.saturating_add(millis(config.ttl)),
        }
    }

    /// How long the IP must still wait, if it is blocked.
    fn blocked_for(&self, now_ms: u64) -> Option<Duration> {
        self.blocked_until_ms
            .filter(|until| *until > now_ms)
            .map(|until| Duration::from_millis(until - now_ms))
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms <= now_ms && self.blocked_for(now_ms).is_none()
    }

    /// Counts a failure; returns the block it started, if any.
    fn fail(&mut self, config: &BruteForceConfig, now_ms: u64) -> Option<Duration> {
        if self.expires_at_ms <= now_ms {
            *self = Self::fresh(config, now_ms);
        }
        self.failures += 1;
        let mut started = None;
        if self.failures >= config.max_failed_attempts {
            let block = self.next_block.min(config.max_block);
            let until = now_ms.saturating_add(millis(block));
            self.blocked_until_ms = Some(self.blocked_until_ms.map_or(until, |u| u.max(until)));
            let next = Duration::from_secs_f64((block.as_secs_f64() * config.multiplier).ceil());
            self.next_block = next.max(block).min(config.max_block);
            started = Some(block);
        }
        // The record outlives its block by `ttl`, so a failure right after a block ends
        // doubles the next one, as the seed documents. (The seed's code let the record
        // expire with the block, which capped blocks near 16 minutes instead of an hour.)
        let ttl_end = now_ms.saturating_add(millis(config.ttl));
        self.expires_at_ms = self.blocked_until_ms.map_or(ttl_end, |until| {
            until.saturating_add(millis(config.ttl)).max(ttl_end)
        });
        started
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What the records say of an IP before its key is checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// How long it must still wait, when it is blocked.
    pub blocked_for: Option<Duration>,
    /// Whether it has a record (failures that a success clears).
    pub recorded: bool,
}

pub struct BruteForce {
    config: BruteForceConfig,
    state: Mutex<State>,
    /// Shared with every instance on the same Redis (`[state] backend = "redis"`): a
    /// block earned on one holds on all. While Redis cannot be reached, this instance
    /// counts on its own.
    shared: Option<Arc<RedisStore>>,
}

struct State {
    records: HashMap<IpAddr, Record>,
    last_cleanup_ms: u64,
}

impl BruteForce {
    pub fn new(config: BruteForceConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State {
                records: HashMap::new(),
                last_cleanup_ms: 0,
            }),
            shared: None,
        }
    }

    /// Keeps the records in `store`, shared by every instance on it.
    pub fn shared(mut self, store: Arc<RedisStore>) -> Self {
        self.shared = Some(store);
        self
    }

    fn shared_key(ip: IpAddr) -> String {
        format!("brute-force:{ip}")
    }

    /// Whether `ip` is blocked, and whether it has a record a success must clear.
    pub async fn standing(&self, ip: IpAddr, now_ms: u64) -> Standing {
        if let Some(store) = &self.shared {
            match store.get_json::<Record>(&Self::shared_key(ip)).await {
                Ok(record) => {
                    return Standing {
                        blocked_for: record.as_ref().and_then(|r| r.blocked_for(now_ms)),
                        recorded: record.is_some(),
                    };
                }
                Err(err) => tracing::warn!("brute-force records: {err}; counting locally"),
            }
        }
        Standing {
            blocked_for: self.local_blocked_for(ip, now_ms),
            // While Redis is away the shared record is unknown: clear it to be sure.
            recorded: true,
        }
    }

    /// Records a failed attempt; returns the block it started, if any.
    pub async fn failure(&self, ip: IpAddr, now_ms: u64) -> Option<Duration> {
        if let Some(store) = &self.shared {
            let config = &self.config;
            let counted = store
                .update_json::<Record>(&Self::shared_key(ip), &|stored| {
                    let mut record = stored.unwrap_or_else(|| Record::fresh(config, now_ms));
                    record.fail(config, now_ms);
                    let lives = record.expires_at_ms.saturating_sub(now_ms);
                    (record, Duration::from_millis(lives.max(1)))
                })
                .await;
            match counted {
                Ok((before, after)) => {
                    let was = before.and_then(|b| b.blocked_until_ms);
                    return (after.blocked_until_ms != was)
                        .then(|| after.blocked_for(now_ms))
                        .flatten();
                }
                Err(err) => tracing::warn!("brute-force records: {err}; counting locally"),
            }
        }
        self.local_failure(ip, now_ms)
    }

    /// A successful authentication clears the IP's record. Only one the lookup found
    /// costs a round trip to Redis: most requests carry the right key and have none.
    pub async fn success(&self, ip: IpAddr, standing: &Standing) {
        if let Some(store) = &self.shared
            && standing.recorded
            && let Err(err) = store.delete(&Self::shared_key(ip)).await
        {
            tracing::debug!("brute-force records: {err}");
        }
        if let Ok(mut state) = self.state.lock() {
            state.records.remove(&ip);
        }
    }

    fn local_blocked_for(&self, ip: IpAddr, now_ms: u64) -> Option<Duration> {
        let mut state = self.state.lock().ok()?;
        let record = state.records.get(&ip)?;
        let wait = record.blocked_for(now_ms);
        if wait.is_none() && record.expired(now_ms) {
            state.records.remove(&ip);
        }
        wait
    }

    fn local_failure(&self, ip: IpAddr, now_ms: u64) -> Option<Duration> {
        let mut state = self.state.lock().ok()?;
        self.cleanup(&mut state, now_ms);
        let config = &self.config;
        state
            .records
            .entry(ip)
            .or_insert_with(|| Record::fresh(config, now_ms))
            .fail(config, now_ms)
    }

    fn cleanup(&self, state: &mut State, now_ms: u64) {
        let due = now_ms.saturating_sub(state.last_cleanup_ms) >= millis(self.config.ttl);
        if !due && state.records.len() < MAX_RECORDS {
            return;
        }
        state.records.retain(|_, r| !r.expired(now_ms));
        if state.records.len() >= MAX_RECORDS {
            state.records.retain(|_, r| r.blocked_for(now_ms).is_some());
        }
        state.last_cleanup_ms = now_ms;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().map(|s| s.records.len()).unwrap_or(0)
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
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
        let t0: u64 = 1_000_000_000;
        for i in 0..4 {
            assert_eq!(bf.local_failure(IP, t0), None, "failure {i}");
            assert_eq!(bf.local_blocked_for(IP, t0), None);
        }
        assert_eq!(bf.local_failure(IP, t0), Some(Duration::from_secs(30)));
        assert_eq!(bf.local_blocked_for(IP, t0), Some(Duration::from_secs(30)));
        let mut t = t0;
        let mut block = Duration::from_secs(30);
        let mut blocks = Vec::new();
        for _ in 0..9 {
            t += millis(block) + 1_000;
            assert_eq!(bf.local_blocked_for(IP, t), None);
            block = bf.local_failure(IP, t).unwrap();
            blocks.push(block.as_secs());
        }
        assert_eq!(blocks, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
    }

    #[tokio::test]
    async fn success_resets_and_old_failures_expire() {
        let bf = BruteForce::new(seed_defaults());
        let t0: u64 = 1_000_000_000;
        for _ in 0..4 {
            bf.local_failure(IP, t0);
        }
        bf.success(IP, &bf.standing(IP, t0).await).await;
        assert_eq!(bf.local_failure(IP, t0), None);
        let later = t0 + 901_000;
        for _ in 0..3 {
            bf.local_failure(IP, later);
        }
        // The first failure expired with its ttl, so four in all is still under the limit.
        assert_eq!(bf.local_failure(IP, later), None);
    }

    #[test]
    fn records_are_bounded() {
        let bf = BruteForce::new(seed_defaults());
        let t0: u64 = 1_000_000_000;
        bf.local_failure(IP, t0);
        bf.local_failure(
            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 8)),
            t0 + 1_000_000,
        );
        assert_eq!(bf.len(), 1, "the expired record was cleaned up");
    }
}
