//! Session state: what a user told llmux from inside their chat (overrides, one-off routes)
//! and the counters later features keep per session.
//!
//! State lives behind [`StateStore`] so several llmux instances can share it (a Redis store
//! comes with scale-out); the default [`MemoryStore`] keeps it in this process and forgets
//! sessions idle for longer than a timeout, so memory stays bounded however many sessions
//! come and go.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod redis;
pub mod rests;

use crate::Error;
use crate::model::Reasoning;

/// What one session has asked for. Stored as JSON by shared stores: a field added later
/// reads as its default from what older versions wrote.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Session {
    /// `!/backend(...)`: the back-end for every following request.
    pub backend: Option<String>,
    /// `!/model(...)`: the model (maybe `backend:model`) for every following request.
    pub model: Option<String>,
    /// `!/oneoff(...)`: `backend:model` for the next request only.
    pub oneoff: Option<String>,
    /// `!/set(temperature=...)`.
    pub temperature: Option<f64>,
    /// `!/max`, `!/low`, `!/set(reasoning=...)`, ...
    pub reasoning: Option<Reasoning>,
    /// `!/project-dir(...)`, for agent back-ends.
    pub project_dir: Option<PathBuf>,
    /// Requests seen in this session.
    pub turns: u64,
    /// Requests the planning phase sent to the strong model.
    pub planning_turns: u64,
    /// File-writing tool calls the model made (they end the planning phase).
    pub file_writes: u64,
    /// Failover routes made in this chat (`!/failover-route(...)`): name to
    /// `backend:model` legs. They win over configured routes of the same name.
    pub failover_routes: std::collections::BTreeMap<String, Vec<String>>,
    /// `!/loop-detection(on|off)`: loop detection for this session, over the config.
    pub loop_detection: Option<bool>,
}

/// What a request does to its session as it starts: one more turn, and a one-off route
/// used up.
pub fn count_turn(session: &mut Session) {
    session.turns += 1;
    session.oneoff = None;
}

/// A session's state just before and just after an update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Updated {
    pub before: Session,
    pub after: Session,
}

/// Where session state lives. Async, so a store may be another process (Redis, for several
/// llmux instances); every store passes [`conformance::check`].
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The session's state (a default one if it is new or expired).
    async fn session(&self, id: &str) -> Result<Session, Error>;

    /// Changes the session's state as one atomic step and says what it was and became. A
    /// shared store may run `change` again when another instance changed the session at the
    /// same moment, so `change` must depend on nothing but the session it is given.
    async fn update(
        &self,
        id: &str,
        change: &(dyn for<'s> Fn(&'s mut Session) + Send + Sync),
    ) -> Result<Updated, Error>;

    /// Counts a request of the session and uses up its one-off route, as one atomic step
    /// ([`count_turn`]): the session before (with the one-off this request takes) and after.
    /// Of requests that start together, exactly one takes a one-off. A shared store counts
    /// without rewriting the session, so one session's requests on many instances do not
    /// race each other's writes.
    async fn begin_turn(&self, id: &str) -> Result<Updated, Error> {
        self.update(id, &count_turn).await
    }

    /// How many sessions are held now.
    async fn count(&self) -> Result<usize, Error>;

    /// Why the store serves with less than it should (a shared store that is unreachable,
    /// so this instance uses its own memory); `None` when it is whole.
    fn degraded(&self) -> Option<String> {
        None
    }

    /// Whether the store can serve now (a shared store answers); for readiness probes.
    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// In-process state with idle expiry.
pub struct MemoryStore {
    idle: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    sessions: HashMap<String, (Session, Instant)>,
    last_sweep: Instant,
}

impl MemoryStore {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Drops idle sessions, at most once per tenth of the idle timeout.
    fn sweep(&self, inner: &mut Inner, now: Instant) {
        if now.saturating_duration_since(inner.last_sweep) < self.idle / 10 {
            return;
        }
        let idle = self.idle;
        inner
            .sessions
            .retain(|_, (_, used)| now.saturating_duration_since(*used) < idle);
        inner.last_sweep = now;
    }

    /// Like [`StateStore::update`], at a given time (tests).
    pub fn update_at(
        &self,
        id: &str,
        now: Instant,
        change: &(dyn Fn(&mut Session) + Send + Sync + '_),
    ) -> Updated {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut inner, now);
        let idle = self.idle;
        let entry = inner
            .sessions
            .entry(id.to_owned())
            .or_insert_with(|| (Session::default(), now));
        if now.saturating_duration_since(entry.1) >= idle {
            entry.0 = Session::default();
        }
        entry.1 = now;
        let before = entry.0.clone();
        change(&mut entry.0);
        Updated {
            before,
            after: entry.0.clone(),
        }
    }

    /// Like [`StateStore::session`], at a given time (tests).
    pub fn session_at(&self, id: &str, now: Instant) -> Session {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.sessions.get(id) {
            Some((session, used)) if now.saturating_duration_since(*used) < self.idle => {
                session.clone()
            }
            _ => Session::default(),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for MemoryStore {
    async fn session(&self, id: &str) -> Result<Session, Error> {
        Ok(self.session_at(id, Instant::now()))
    }

    async fn update(
        &self,
        id: &str,
        change: &(dyn for<'s> Fn(&'s mut Session) + Send + Sync),
    ) -> Result<Updated, Error> {
        Ok(self.update_at(id, Instant::now(), change))
    }

    async fn count(&self) -> Result<usize, Error> {
        Ok(self.held())
    }
}

impl MemoryStore {
    /// Sessions held now, expired ones not yet swept included.
    pub fn held(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sessions
            .len()
    }
}

/// What every [`StateStore`] must do, as one test any store can run against itself:
/// `conformance::check(&store).await` (the memory store runs it below; a shared store runs
/// it against its server). It panics, naming the broken rule, when the store breaks one.
#[doc(hidden)]
pub mod conformance {
    use super::{Session, StateStore};

    pub async fn check(store: &dyn StateStore) {
        let unique = format!("conformance-{:016x}", fastrand::u64(..));
        let id = |name: &str| format!("{unique}-{name}");

        let fresh = store.session(&id("new")).await;
        assert_eq!(
            fresh.ok(),
            Some(Session::default()),
            "a new session is default"
        );

        let updated = store
            .update(&id("a"), &|s| s.backend = Some("openai".into()))
            .await
            .unwrap_or_default();
        assert_eq!(
            updated.before,
            Session::default(),
            "before the first update"
        );
        assert_eq!(updated.after.backend.as_deref(), Some("openai"), "after it");
        let read = store.session(&id("a")).await.unwrap_or_default();
        assert_eq!(read, updated.after, "a read sees the update");
        let other = store.session(&id("b")).await.unwrap_or_default();
        assert_eq!(other, Session::default(), "sessions are isolated");

        // Concurrent updates of one session are not lost.
        let count = id("count");
        let bump = |s: &mut Session| s.turns += 1;
        let bumps = (0..50).map(|_| store.update(&count, &bump));
        let results = futures::future::join_all(bumps).await;
        assert!(results.iter().all(Result::is_ok), "every update succeeds");
        let turns = store.session(&id("count")).await.unwrap_or_default().turns;
        assert_eq!(turns, 50, "concurrent updates are all applied");

        let held = store.count().await.unwrap_or(0);
        assert!(held >= 2, "count counts the sessions held ({held})");

        check_turns(store, &id("turns")).await;
    }

    /// `begin_turn`: every start counts, updates and turns do not lose each other, a one-off
    /// goes to exactly one of the requests that start together, and a session seen only
    /// through its turns is held.
    async fn check_turns(store: &dyn StateStore, id: &str) {
        let held_before = store.count().await.unwrap_or(0);
        let first = store.begin_turn(id).await.unwrap_or_default();
        assert_eq!(
            (first.before.turns, first.after.turns),
            (0, 1),
            "a first turn"
        );
        let held = store.count().await.unwrap_or(0);
        assert!(held > held_before, "a session with a turn is held");

        let set = |s: &mut Session| s.oneoff = Some("b:m".into());
        store.update(id, &set).await.unwrap_or_default();
        let starts = (0..10).map(|_| store.begin_turn(id));
        let results = futures::future::join_all(starts).await;
        assert!(results.iter().all(Result::is_ok), "every turn starts");
        let took: Vec<_> = results
            .into_iter()
            .filter_map(|r| r.ok()?.before.oneoff)
            .collect();
        assert_eq!(
            took,
            vec!["b:m".to_owned()],
            "one request takes the one-off"
        );

        let bump = |s: &mut Session| s.turns += 1;
        let mixed = (0..10).map(|i| async move {
            if i % 2 == 0 {
                store.begin_turn(id).await.map(drop)
            } else {
                store.update(id, &bump).await.map(drop)
            }
        });
        let results = futures::future::join_all(mixed).await;
        assert!(
            results.iter().all(Result::is_ok),
            "turns and updates succeed"
        );
        let read = store.session(id).await.unwrap_or_default();
        assert_eq!(
            read.turns, 21,
            "11 turns, then 5 more and 5 counted by updates"
        );
        assert_eq!(read.oneoff, None, "the one-off is used up");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        conformance::check(&MemoryStore::new(Duration::from_secs(60))).await;
    }

    #[test]
    fn ten_thousand_idle_sessions_are_swept_away() {
        let store = MemoryStore::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..10_000 {
            store.update_at(&format!("s{i}"), t0, &|s| s.turns += 1);
        }
        assert_eq!(store.held(), 10_000);
        let later = t0 + Duration::from_secs(61);
        store.update_at("fresh", later, &|s| s.turns += 1);
        assert_eq!(store.held(), 1);
        assert_eq!(store.session_at("s1", later), Session::default());
    }

    #[test]
    fn an_expired_session_starts_over() {
        let store = MemoryStore::new(Duration::from_secs(60));
        let t0 = Instant::now();
        store.update_at("a", t0, &|s| s.model = Some("m".into()));
        let updated = store.update_at("a", t0 + Duration::from_secs(61), &|s| s.turns += 1);
        assert_eq!(
            updated.before,
            Session::default(),
            "expired: starts from nothing"
        );
        let session = store.session_at("a", t0 + Duration::from_secs(61));
        assert_eq!(session.model, None);
        assert_eq!(session.turns, 1);
    }
}
pub mod responses;
