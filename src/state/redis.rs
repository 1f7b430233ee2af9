//! Session state in Redis (or any server that speaks its protocol, such as Valkey), so
//! several llmux instances behind one load balancer share what users told them in chat.
//!
//! Each session is one JSON string under `<prefix>session:<id>`, with the idle timeout as
//! its expiry (renewed by every update and every turn). Its turns are counted apart, with
//! `INCR` on `<prefix>turns:<id>`: a request that starts reads the session and counts its
//! turn in one script and writes the session only to use up a one-off route, so one
//! session's requests on many instances do not race to rewrite it (they did when every
//! request rewrote it: 3 ms at p50 at 32 at once, bench/state.sh). An update reads the
//! session, applies the change
//! here, and writes it back with a compare-and-set script that succeeds only when the
//! stored value is still the one read; when another instance got there first it reads
//! again and retries, so concurrent updates are never lost (the redis-rs multiplexed
//! connection cannot hold a `WATCH` for one caller). Every call has a short deadline:
//! Redis going away costs a request at most that long (see [`Degradable`] for what
//! happens then).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redis::aio::ConnectionManager;

use super::{MemoryStore, Session, StateStore, Updated};
use crate::Error;

/// Replaces the stored session only if it is still what the caller read (`ARGV[1]`, empty
/// for none): answers `{1, ""}` when it did, else `{0, current}` so the caller can retry
/// without another read.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return {0, current} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, ''}
";

/// A request's start: answers `{session or "", turns}` after counting the turn (`KEYS[2]`)
/// and renewing both keys' idle expiry (`ARGV[1]` ms). A session seen for the first time is
/// stored as `{}` (the default session), so `count` finds it.
const BEGIN_TURN: &str = r"
local session = redis.call('GET', KEYS[1])
if session then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
else
  session = ''
  redis.call('SET', KEYS[1], '{}', 'PX', ARGV[1])
end
local turns = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {session, turns}
";

/// Adds `ARGV[1]` to the turn count and renews its idle expiry (`ARGV[2]` ms).
const ADD_TURNS: &str = r"
local turns = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return turns
";

/// How often an update is tried again after losing a race, before it gives up.
const RACE_RETRIES: usize = 200;

pub struct RedisStore {
    client: ::redis::Client,
    /// Connected at first use (the engine is built outside the async runtime) and then
    /// kept: the manager reconnects by itself.
    connection: tokio::sync::OnceCell<ConnectionManager>,
    prefix: String,
    idle: Duration,
    timeout: Duration,
    script: ::redis::Script,
    begin_turn: ::redis::Script,
    add_turns: ::redis::Script,
    /// After a failure, calls fail at once until then instead of each waiting out the
    /// timeout (a down Redis must not cost every request `timeout_ms`, or twice that).
    resting_until: Mutex<Option<Instant>>,
}

impl RedisStore {
    /// A store at `url` (`redis://host:port/db`, `rediss://` for TLS); nothing is
    /// connected yet.
    pub fn new(url: &str, prefix: &str, idle: Duration, timeout: Duration) -> Result<Self, String> {
        let client = ::redis::Client::open(url).map_err(|e| format!("state.url: {e}"))?;
        Ok(Self {
            client,
            connection: tokio::sync::OnceCell::new(),
            prefix: prefix.to_owned(),
            idle,
            timeout,
            script: ::redis::Script::new(COMPARE_AND_SET),
            begin_turn: ::redis::Script::new(BEGIN_TURN),
            add_turns: ::redis::Script::new(ADD_TURNS),
            resting_until: Mutex::new(None),
        })
    }

    fn failed(&self, what: &str, why: impl std::fmt::Display) -> Error {
        Error::internal(format!("the state store (Redis) {what}: {why}"))
    }

    /// Runs `call` on the connection within the deadline.
    async fn with_deadline<T, F>(&self, what: &str, call: F) -> Result<T, Error>
    where
        F: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.failed(what, err)),
            Err(_) => Err(self.failed(what, format!("no answer within {:?}", self.timeout))),
        };
        let mut resting = self.resting_until.lock().unwrap_or_else(|e| e.into_inner());
        *resting = result.is_err().then(|| Instant::now() + RETRY_AFTER);
        result
    }

    /// An error at once while the store rests after a failure.
    fn check_resting(&self) -> Result<(), Error> {
        let resting = self.resting_until.lock().unwrap_or_else(|e| e.into_inner());
        match *resting {
            Some(until) if Instant::now() < until => Err(self.failed(
                "is not answering",
                format!("tried again in {:?}", until - Instant::now()),
            )),
            _ => Ok(()),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, Error> {
        self.check_resting()?;
        let connect = || async {
            let config = ::redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1);
            ConnectionManager::new_with_config(self.client.clone(), config).await
        };
        self.connection
            .get_or_try_init(|| self.with_deadline("cannot be reached", connect()))
            .await
            .cloned()
    }

    async fn read(
        &self,
        connection: &mut ConnectionManager,
        key: &str,
    ) -> Result<Option<String>, Error> {
        let mut get = ::redis::cmd("GET");
        get.arg(key);
        self.with_deadline("did not answer a read", get.query_async(connection))
            .await
    }
}

/// An expiry as Redis takes it: whole milliseconds, at least one.
fn millis(expiry: Duration) -> String {
    expiry.as_millis().max(1).to_string()
}

/// The value a stored text holds; one that does not parse (written by another version)
/// counts as none, with a warning.
fn decode<T: serde::de::DeserializeOwned>(key: &str, stored: Option<&str>) -> Option<T> {
    match stored {
        None | Some("") => None,
        Some(text) => serde_json::from_str(text)
            .map_err(|err| {
                tracing::warn!(
                    key,
                    "a stored value does not parse ({err}); starting it over"
                )
            })
            .ok(),
    }
}

impl RedisStore {
    /// The JSON value at `<prefix><name>`, if there is one.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, Error> {
        let key = format!("{}{name}", self.prefix);
        let mut connection = self.connection().await?;
        let stored = self.read(&mut connection, &key).await?;
        Ok(decode(&key, stored.as_deref()))
    }

    /// Replaces the JSON value at `<prefix><name>` with what `change` makes of it (and the
    /// expiry it gives), as one atomic step across instances: a compare-and-set, tried
    /// again from the newer value when another instance wrote first. Answers the value
    /// before and after.
    pub async fn update_json<T>(
        &self,
        name: &str,
        change: &(dyn Fn(Option<T>) -> (T, Duration) + Send + Sync),
    ) -> Result<(Option<T>, T), Error>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send,
    {
        // The whole update, races included, within a few timeouts.
        let limit = self.timeout.saturating_mul(4);
        match tokio::time::timeout(limit, self.update_json_racing(name, change)).await {
            Ok(result) => result,
            Err(_) => Err(self.failed(
                "did not finish an update",
                format!("still racing other instances after {limit:?}"),
            )),
        }
    }

    async fn update_json_racing<T>(
        &self,
        name: &str,
        change: &(dyn Fn(Option<T>) -> (T, Duration) + Send + Sync),
    ) -> Result<(Option<T>, T), Error>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send,
    {
        let key = format!("{}{name}", self.prefix);
        let mut connection = self.connection().await?;
        let mut stored = self.read(&mut connection, &key).await?;
        for _ in 0..RACE_RETRIES {
            let before: Option<T> = decode(&key, stored.as_deref());
            let (after, expiry) = change(before.clone());
            let written = serde_json::to_string(&after)
                .map_err(|e| Error::internal(format!("cannot encode {key}: {e}")))?;
            let mut invocation = self.script.key(&key);
            invocation
                .arg(stored.as_deref().unwrap_or_default())
                .arg(written)
                .arg(millis(expiry));
            let swap = invocation.invoke_async::<(i64, Option<String>)>(&mut connection);
            match self.with_deadline("did not answer a write", swap).await? {
                (1, _) => return Ok((before, after)),
                // Another instance wrote first: try again from what it wrote.
                (_, current) => stored = current.filter(|c| !c.is_empty()),
            }
        }
        Err(self.failed(
            "kept changing under this update",
            format!("{RACE_RETRIES} tries lost the race"),
        ))
    }

    /// Runs `script` on the key `<prefix><name>` with `args`, within the deadline.
    pub async fn run_script<T: ::redis::FromRedisValue>(
        &self,
        what: &str,
        script: &::redis::Script,
        name: &str,
        args: &[String],
    ) -> Result<T, Error> {
        let key = format!("{}{name}", self.prefix);
        let mut connection = self.connection().await?;
        let mut invocation = script.key(&key);
        for arg in args {
            invocation.arg(arg);
        }
        self.with_deadline(what, invocation.invoke_async::<T>(&mut connection))
            .await
    }

    /// Removes the value at `<prefix><name>`; whether there was one.
    pub async fn delete(&self, name: &str) -> Result<bool, Error> {
        let key = format!("{}{name}", self.prefix);
        let mut connection = self.connection().await?;
        let mut del = ::redis::cmd("DEL");
        del.arg(&key);
        self.with_deadline(
            "did not answer a delete",
            del.query_async::<i64>(&mut connection),
        )
        .await
        .map(|removed| removed > 0)
    }
}

/// Sessions and their turn counts, kept apart (see the module's docs).
impl RedisStore {
    fn session_key(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    fn turns_key(&self, id: &str) -> String {
        format!("{}turns:{id}", self.prefix)
    }

    async fn counted_turns(&self, id: &str) -> Result<u64, Error> {
        let mut connection = self.connection().await?;
        let turns = self.read(&mut connection, &self.turns_key(id)).await?;
        Ok(turns.and_then(|t| t.parse().ok()).unwrap_or(0))
    }

    /// Adds `delta` to the session's turn count; the count after.
    async fn add_turns(&self, id: &str, delta: i64) -> Result<u64, Error> {
        let args = [delta.to_string(), self.idle_ms()];
        let name = format!("turns:{id}");
        let turns: i64 = self
            .run_script("did not answer a write", &self.add_turns, &name, &args)
            .await?;
        Ok(u64::try_from(turns).unwrap_or(0))
    }

    fn idle_ms(&self) -> String {
        millis(self.idle)
    }
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    async fn session(&self, id: &str) -> Result<Session, Error> {
        let key = self.session_key(id);
        let mut connection = self.connection().await?;
        let mut get = ::redis::cmd("MGET");
        get.arg(&key).arg(self.turns_key(id));
        let read = get.query_async::<(Option<String>, Option<u64>)>(&mut connection);
        let (stored, turns) = self.with_deadline("did not answer a read", read).await?;
        let mut session: Session = decode(&key, stored.as_deref()).unwrap_or_default();
        session.turns = turns.unwrap_or(0);
        Ok(session)
    }

    /// The change sees the session with its counted turns; what it does to them is added
    /// to the count, so concurrent changes of the count add up.
    async fn update(
        &self,
        id: &str,
        change: &(dyn for<'s> Fn(&'s mut Session) + Send + Sync),
    ) -> Result<Updated, Error> {
        let idle = self.idle;
        let turns = self.counted_turns(id).await?;
        let (before, mut after) = self
            .update_json::<Session>(&format!("session:{id}"), &|stored| {
                let mut session = stored.unwrap_or_default();
                session.turns = turns;
                change(&mut session);
                (session, idle)
            })
            .await?;
        if after.turns != turns {
            let delta = i64::try_from(after.turns).unwrap_or(i64::MAX)
                - i64::try_from(turns).unwrap_or(i64::MAX);
            after.turns = self.add_turns(id, delta).await?;
        }
        let mut before = before.unwrap_or_default();
        before.turns = turns;
        Ok(Updated { before, after })
    }

    async fn begin_turn(&self, id: &str) -> Result<Updated, Error> {
        let key = self.session_key(id);
        let mut connection = self.connection().await?;
        let mut invocation = self.begin_turn.key(&key);
        invocation.key(self.turns_key(id)).arg(self.idle_ms());
        let started = invocation.invoke_async::<(String, u64)>(&mut connection);
        let (stored, turns) = self.with_deadline("did not answer a turn", started).await?;
        let mut before: Session = decode(&key, Some(&stored)).unwrap_or_default();
        if before.oneoff.is_some() {
            // The compare-and-set decides which of the requests starting now takes it.
            let taken = self.update(id, &|s| s.oneoff = None).await?;
            before = taken.before;
        }
        before.turns = turns.saturating_sub(1);
        let after = Session {
            turns,
            oneoff: None,
            ..before.clone()
        };
        Ok(Updated { before, after })
    }

    async fn check(&self) -> Result<(), Error> {
        let mut connection = self.connection().await?;
        let ping = ::redis::cmd("PING");
        self.with_deadline(
            "did not answer a ping",
            ping.query_async::<String>(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn count(&self) -> Result<usize, Error> {
        let mut connection = self.connection().await?;
        let pattern = format!("{}session:*", self.prefix);
        let mut cursor: u64 = 0;
        let mut count = 0;
        loop {
            let mut scan = ::redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys) = self
                .with_deadline(
                    "did not answer a count",
                    scan.query_async::<(u64, Vec<String>)>(&mut connection),
                )
                .await?;
            count += keys.len();
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }
}

/// How long a Redis that failed is left alone before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A shared store with a local one behind it: while the shared one fails (Redis stopped,
/// unreachable, too slow), requests go on with this instance's own memory and a warning,
/// and [`StateStore::degraded`] says why (the health endpoint reports it). Every call
/// tries the shared store first: a [`RedisStore`] that just failed answers at once for
/// [`RETRY_AFTER`], so this costs an outage nothing.
///
/// Sessions changed locally meanwhile are written to Redis once it answers again (this
/// instance's version wins for them), so a choice made during an outage is not lost.
pub struct Degradable {
    shared: std::sync::Arc<dyn StateStore>,
    local: std::sync::Arc<MemoryStore>,
    /// Why the shared store is down, from its first failure until it answers again.
    down: Mutex<Option<String>>,
    /// Sessions updated in local memory while the shared store was down.
    changed_while_down: Mutex<std::collections::HashSet<String>>,
}

impl Degradable {
    pub fn new(shared: std::sync::Arc<dyn StateStore>, idle: Duration) -> Self {
        Self {
            shared,
            local: std::sync::Arc::new(MemoryStore::new(idle)),
            down: Mutex::new(None),
            changed_while_down: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn went_down(&self, err: &Error) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            tracing::warn!("{err}; serving sessions from this instance's memory until it is back");
            *down = Some(err.to_string());
        }
    }

    fn came_back(&self) {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        if down.take().is_some() {
            tracing::info!("the state store (Redis) answers again; sessions are shared again");
            drop(down);
            self.write_back_local_changes();
        }
    }

    /// Writes the sessions changed during the outage to the shared store, in the
    /// background (the request that found Redis back does not wait for them). One that
    /// fails stays local, with a warning.
    fn write_back_local_changes(&self) {
        let ids: Vec<String> = self
            .changed_while_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        if ids.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (shared, local) = (self.shared.clone(), self.local.clone());
        tracing::info!(
            "writing {} sessions changed during the outage to Redis",
            ids.len()
        );
        runtime.spawn(async move {
            for id in ids {
                let Ok(session) = local.session(&id).await else {
                    continue;
                };
                if let Err(err) = shared.update(&id, &|s| *s = session.clone()).await {
                    tracing::warn!("a session changed during the outage stays local: {err}");
                }
            }
        });
    }

    /// What the shared store answered a change, mirrored in local memory; `None` when it
    /// failed, and the session is then marked to be written back once Redis answers.
    async fn mirrored(&self, id: &str, shared: Result<Updated, Error>) -> Option<Updated> {
        match shared {
            Ok(updated) => {
                self.came_back();
                let mirror = updated.after.clone();
                let _ = self.local.update(id, &|s| *s = mirror.clone()).await;
                Some(updated)
            }
            Err(err) => {
                self.went_down(&err);
                self.changed_while_down
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_owned());
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl StateStore for Degradable {
    async fn session(&self, id: &str) -> Result<Session, Error> {
        match self.shared.session(id).await {
            Ok(session) => {
                self.came_back();
                // Mirrored here, so an outage starts from the last shared state.
                let mirror = session.clone();
                let _ = self.local.update(id, &|s| *s = mirror.clone()).await;
                Ok(session)
            }
            Err(err) => {
                self.went_down(&err);
                self.local.session(id).await
            }
        }
    }

    async fn update(
        &self,
        id: &str,
        change: &(dyn for<'s> Fn(&'s mut Session) + Send + Sync),
    ) -> Result<Updated, Error> {
        let shared = self.shared.update(id, change).await;
        if let Some(updated) = self.mirrored(id, shared).await {
            return Ok(updated);
        }
        self.local.update(id, change).await
    }

    async fn begin_turn(&self, id: &str) -> Result<Updated, Error> {
        let shared = self.shared.begin_turn(id).await;
        if let Some(updated) = self.mirrored(id, shared).await {
            return Ok(updated);
        }
        self.local.begin_turn(id).await
    }

    async fn count(&self) -> Result<usize, Error> {
        if let Ok(count) = self.shared.count().await {
            return Ok(count);
        }
        self.local.count().await
    }

    fn degraded(&self) -> Option<String> {
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down.clone()
    }

    /// Ready only when the shared store answers: a balancer then sends traffic to the
    /// instances that share sessions.
    async fn check(&self) -> Result<(), Error> {
        match self.shared.check().await {
            Ok(()) => {
                self.came_back();
                Ok(())
            }
            Err(err) => {
                self.went_down(&err);
                Err(err)
            }
        }
    }
}
