//! Session state in Redis (or any server that speaks its protocol, such as Valkey), so
//! several llmux instances behind one load balancer share what users told them in chat.
//!
//! Each session is one JSON string under `<prefix>session:<id>`, with the idle timeout as
//! its expiry (renewed by every update). An update reads the session, applies the change
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
                .arg(expiry.as_millis().max(1).to_string());
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

#[async_trait::async_trait]
impl StateStore for RedisStore {
    async fn session(&self, id: &str) -> Result<Session, Error> {
        Ok(self
            .get_json(&format!("session:{id}"))
            .await?
            .unwrap_or_default())
    }

    async fn update(
        &self,
        id: &str,
        change: &(dyn for<'s> Fn(&'s mut Session) + Send + Sync),
    ) -> Result<Updated, Error> {
        let idle = self.idle;
        let (before, after) = self
            .update_json::<Session>(&format!("session:{id}"), &|stored| {
                let mut session = stored.unwrap_or_default();
                change(&mut session);
                (session, idle)
            })
            .await?;
        Ok(Updated {
            before: before.unwrap_or_default(),
            after,
        })
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
        match self.shared.update(id, change).await {
            Ok(updated) => {
                self.came_back();
                let mirror = updated.after.clone();
                let _ = self.local.update(id, &|s| *s = mirror.clone()).await;
                return Ok(updated);
            }
            Err(err) => self.went_down(&err),
        }
        self.changed_while_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned());
        self.local.update(id, change).await
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
