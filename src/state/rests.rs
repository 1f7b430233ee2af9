//! Rests: things left alone until a moment, shared by every instance of a team. A key cools
//! down after a rate limit or a refusal (`key:<back-end>:<key name>`); a back-end whose
//! circuit breaker opened rests for its cool-down (`breaker:<back-end>`).
//!
//! Each instance keeps its own rests and the team's in memory, so a request asks no one:
//! one lock, and none at all while nothing rests. With `[state] backend = "redis"` a sync
//! task writes this instance's rests to one Redis hash (`<prefix>rests`, name → the Unix
//! millisecond it ends) and reads the team's back, every second and at once after a change.
//! A rest reaches the other instances within about a second; while Redis cannot be reached
//! each instance goes on with what it knows and writes its rests when Redis is back.
//!
//! The end is wall-clock time, so the instances' clocks must agree (NTP) to the second.
//! Rests outlive an engine replaced by saved settings: a save does not forget a key that
//! is rate limited or a back-end that is down.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::redis::RedisStore;

/// How often the team's rests are read when nothing changes here.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Writes this instance's new rests and ends, drops those over, and answers the live ones,
/// in one step. `ARGV`: now (ms), the number of rests `n`, `n` pairs of name and end (ms),
/// then the names whose rest ended early. A rest already stored with a later end keeps it.
const SYNC: &str = r"
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local name, ends = ARGV[3 + 2 * i], tonumber(ARGV[4 + 2 * i])
  local stored = tonumber(redis.call('HGET', KEYS[1], name) or '0') or 0
  if ends > stored then redis.call('HSET', KEYS[1], name, ends) end
end
for i = 3 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
local all = redis.call('HGETALL', KEYS[1])
local live, latest = {}, 0
for i = 1, #all, 2 do
  local ends = tonumber(all[i + 1]) or 0
  if ends <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
    if ends > latest then latest = ends end
  end
end
if latest > 0 then redis.call('PEXPIREAT', KEYS[1], latest) end
return live
";

/// The rests this instance and its team know of. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct Rests {
    core: Arc<Core>,
}

struct Core {
    table: Mutex<Table>,
    /// Whether anything rests at all: most requests find nothing and skip the lock.
    any: AtomicBool,
    shared: Option<Syncing>,
}

#[derive(Default)]
struct Table {
    /// Rests started here: name → (end in Unix ms, whether Redis has it).
    own: HashMap<String, (u64, bool)>,
    /// The team's rests as last read from Redis: name → end.
    team: HashMap<String, u64>,
    /// Rests ended here early (a breaker closed) that Redis still has.
    ended: HashSet<String>,
}

struct Syncing {
    store: Arc<RedisStore>,
    script: ::redis::Script,
    wake: Arc<tokio::sync::Notify>,
    started: AtomicBool,
}

impl Default for Rests {
    fn default() -> Self {
        Self::local()
    }
}

impl Rests {
    /// Rests this process keeps to itself.
    pub fn local() -> Self {
        Self::with(None)
    }

    /// Rests shared through `store` with every instance on it.
    pub fn shared(store: Arc<RedisStore>) -> Self {
        Self::with(Some(Syncing {
            store,
            script: ::redis::Script::new(SYNC),
            wake: Arc::new(tokio::sync::Notify::new()),
            started: AtomicBool::new(false),
        }))
    }

    fn with(shared: Option<Syncing>) -> Self {
        Self {
            core: Arc::new(Core {
                table: Mutex::new(Table::default()),
                any: AtomicBool::new(false),
                shared,
            }),
        }
    }

    /// `name` rests for `length` from now (or longer, if it already rests longer).
    pub fn rest(&self, name: &str, length: Duration) {
        let ends = now_ms().saturating_add(millis(length));
        {
            let mut table = self.core.lock();
            let own = table.own.entry(name.to_owned()).or_insert((0, true));
            if ends > own.0 {
                *own = (ends, false);
            }
            table.ended.remove(name);
        }
        self.core.any.store(true, Ordering::Release);
        self.changed();
    }

    /// `name`'s rest is over (its breaker closed): here at once, on the team within a sync.
    pub fn end(&self, name: &str) {
        if !self.core.any.load(Ordering::Acquire) {
            return;
        }
        {
            let mut table = self.core.lock();
            let known = table.own.remove(name).is_some() | table.team.remove(name).is_some();
            if known && self.core.shared.is_some() {
                table.ended.insert(name.to_owned());
            }
        }
        self.changed();
    }

    /// Whether anything rests at all (a cheap check before naming what).
    pub fn anything(&self) -> bool {
        self.start_syncing();
        self.core.any.load(Ordering::Acquire)
    }

    /// How long `name` still rests, if it does.
    pub fn left(&self, name: &str) -> Option<Duration> {
        self.start_syncing();
        if !self.core.any.load(Ordering::Acquire) {
            return None;
        }
        let table = self.core.lock();
        let own = table.own.get(name).map(|(ends, _)| *ends);
        let team = table.team.get(name).copied();
        let ends = own.max(team)?;
        remaining(ends, now_ms())
    }

    /// Every rest whose name starts with `prefix`, with its time left (for the admin API).
    pub fn starting_with(&self, prefix: &str) -> Vec<(String, Duration)> {
        let table = self.core.lock();
        let now = now_ms();
        let mut all: HashMap<&str, u64> = HashMap::new();
        for (name, ends) in table
            .own
            .iter()
            .map(|(n, (e, _))| (n, *e))
            .chain(table.team.iter().map(|(n, e)| (n, *e)))
        {
            if name.starts_with(prefix) {
                let entry = all.entry(name.as_str()).or_default();
                *entry = (*entry).max(ends);
            }
        }
        let mut live: Vec<(String, Duration)> = all
            .into_iter()
            .filter_map(|(name, ends)| Some((name.to_owned(), remaining(ends, now)?)))
            .collect();
        live.sort();
        live
    }

    /// Wakes the sync task: a change goes to Redis at once.
    fn changed(&self) {
        if let Some(shared) = &self.core.shared {
            self.start_syncing();
            shared.wake.notify_one();
        }
    }

    /// Starts the sync task the first time it is needed inside the runtime (the engine is
    /// built outside it). It ends when the last clone of these rests is dropped.
    fn start_syncing(&self) {
        let Some(shared) = &self.core.shared else {
            return;
        };
        if shared.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let core = Arc::downgrade(&self.core);
        let wake = shared.wake.clone();
        runtime.spawn(sync_until_dropped(core, wake));
    }
}

async fn sync_until_dropped(core: Weak<Core>, wake: Arc<tokio::sync::Notify>) {
    let mut failing = false;
    loop {
        let Some(core) = core.upgrade() else {
            return;
        };
        match core.sync_once().await {
            Ok(()) if failing => {
                tracing::info!("rests: Redis answers again; key cool-downs and breakers shared");
                failing = false;
            }
            Ok(()) => {}
            Err(err) if !failing => {
                tracing::warn!(
                    "rests: {err}; key cool-downs and breakers stay local until it is back"
                );
                failing = true;
            }
            Err(err) => tracing::debug!("rests: {err}"),
        }
        drop(core);
        tokio::select! {
            () = tokio::time::sleep(SYNC_EVERY) => {}
            () = wake.notified() => {}
        }
    }
}

impl Core {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One round trip: this instance's news out, the team's rests in.
    async fn sync_once(&self) -> Result<(), crate::Error> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let now = now_ms();
        let (news, ended) = {
            let mut table = self.lock();
            table.own.retain(|_, (ends, _)| *ends > now);
            let news: Vec<(String, u64)> = table
                .own
                .iter()
                .filter(|(_, (_, written))| !written)
                .map(|(name, (ends, _))| (name.clone(), *ends))
                .collect();
            let ended: Vec<String> = table.ended.iter().cloned().collect();
            (news, ended)
        };
        let mut args = vec![now.to_string(), news.len().to_string()];
        for (name, ends) in &news {
            args.push(name.clone());
            args.push(ends.to_string());
        }
        args.extend(ended.iter().cloned());
        let live: Vec<String> = shared
            .store
            .run_script(
                "did not answer a sync of rests",
                &shared.script,
                "rests",
                &args,
            )
            .await?;
        let mut table = self.lock();
        for (name, ends) in &news {
            if let Some(own) = table.own.get_mut(name)
                && own.0 == *ends
            {
                own.1 = true;
            }
        }
        for name in &ended {
            table.ended.remove(name);
        }
        let team: HashMap<String, u64> = live
            .chunks_exact(2)
            .filter(|pair| !table.ended.contains(&pair[0]))
            .filter_map(|pair| Some((pair[0].clone(), pair[1].parse().ok()?)))
            .collect();
        table.team = team;
        if !table.team.is_empty() || !table.own.is_empty() {
            self.any.store(true, Ordering::Release);
        }
        Ok(())
    }
}

fn remaining(ends_ms: u64, now_ms: u64) -> Option<Duration> {
    (ends_ms > now_ms).then(|| Duration::from_millis(ends_ms - now_ms))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Wall-clock milliseconds: instances on several machines compare them.
fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    millis(since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rest_lasts_its_length_keeps_the_longer_end_and_ends_early_when_told() {
        let rests = Rests::local();
        assert_eq!(rests.left("key:a:K1"), None);
        rests.rest("key:a:K1", Duration::from_secs(30));
        rests.rest("key:a:K1", Duration::from_secs(5));
        let left = rests.left("key:a:K1").unwrap();
        assert!(left > Duration::from_secs(29), "{left:?}");
        assert_eq!(rests.left("key:a:K2"), None);
        rests.rest("breaker:a", Duration::from_millis(20));
        assert_eq!(rests.starting_with("breaker:").len(), 1);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(rests.left("breaker:a"), None, "over by itself");
        rests.end("key:a:K1");
        assert_eq!(rests.left("key:a:K1"), None);
        assert!(rests.starting_with("").is_empty());
    }

    #[test]
    fn clones_share_their_rests() {
        let rests = Rests::local();
        rests.clone().rest("x", Duration::from_secs(9));
        assert!(rests.left("x").is_some());
    }
}
