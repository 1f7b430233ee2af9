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

use crate::model::Reasoning;

/// What one session has asked for.
#[derive(Debug, Clone, Default, PartialEq)]
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
}

pub trait StateStore: Send + Sync {
    /// The session's state (a default one if it is new or expired).
    fn session(&self, id: &str) -> Session;
    /// Changes the session's state.
    fn update(&self, id: &str, change: &mut dyn FnMut(&mut Session));
    /// How many sessions are held now.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
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
    pub fn update_at(&self, id: &str, now: Instant, change: &mut dyn FnMut(&mut Session)) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
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
        change(&mut entry.0);
    }

    /// Like [`StateStore::session`], at a given time (tests).
    pub fn session_at(&self, id: &str, now: Instant) -> Session {
        let Ok(inner) = self.inner.lock() else {
            return Session::default();
        };
        match inner.sessions.get(id) {
            Some((session, used)) if now.saturating_duration_since(*used) < self.idle => {
                session.clone()
            }
            _ => Session::default(),
        }
    }
}

impl StateStore for MemoryStore {
    fn session(&self, id: &str) -> Session {
        self.session_at(id, Instant::now())
    }

    fn update(&self, id: &str, change: &mut dyn FnMut(&mut Session)) {
        self.update_at(id, Instant::now(), change);
    }

    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.sessions.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_isolated() {
        let store = MemoryStore::new(Duration::from_secs(60));
        store.update("a", &mut |s| s.backend = Some("openai".into()));
        assert_eq!(store.session("a").backend.as_deref(), Some("openai"));
        assert_eq!(store.session("b"), Session::default());
    }

    #[test]
    fn ten_thousand_idle_sessions_are_swept_away() {
        let store = MemoryStore::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..10_000 {
            store.update_at(&format!("s{i}"), t0, &mut |s| s.turns += 1);
        }
        assert_eq!(store.len(), 10_000);
        let later = t0 + Duration::from_secs(61);
        store.update_at("fresh", later, &mut |s| s.turns += 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.session_at("s1", later), Session::default());
    }

    #[test]
    fn an_expired_session_starts_over() {
        let store = MemoryStore::new(Duration::from_secs(60));
        let t0 = Instant::now();
        store.update_at("a", t0, &mut |s| s.model = Some("m".into()));
        store.update_at("a", t0 + Duration::from_secs(61), &mut |s| s.turns += 1);
        let session = store.session_at("a", t0 + Duration::from_secs(61));
        assert_eq!(session.model, None);
        assert_eq!(session.turns, 1);
    }
}
pub mod responses;
