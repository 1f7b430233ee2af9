//! Stored Responses-API answers, so `previous_response_id` can continue a conversation on
//! any back-end (llmux replays the stored turn), and `GET`/`DELETE /v1/responses/{id}`
//! work. Bounded by count and age: the oldest answers go first.
//!
//! With shared state each answer is also written to Redis, in the background (the answer is
//! already on its way to the client). A deleted answer leaves a marker there for its
//! retention, so a write still under way, on this instance or another, cannot bring it
//! back. Until Redis has an answer, this instance serves its own copy; one whose write
//! failed is written again when it is next asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::redis::RedisStore;
use crate::model::{Message, Part, Response};

/// One stored exchange: what was asked (the whole conversation) and the answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    pub system: Vec<Part>,
    pub messages: Vec<Message>,
    pub response: Response,
    /// What the client asked to have echoed back in the Response object.
    pub echo: serde_json::Map<String, serde_json::Value>,
}

/// What Redis holds for an answer: the answer, or the marker that it was deleted. Stored
/// untagged, so an answer reads the same as before markers existed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Shared {
    Deleted { deleted: bool },
    Stored(Box<StoredResponse>),
}

/// Whether Redis has this instance's copy of an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Written {
    Pending,
    Done,
    Failed,
}

pub struct ResponseStore {
    max: usize,
    retention: Duration,
    inner: Arc<Mutex<Inner>>,
    /// Shared with every instance on the same Redis (`[state] backend = "redis"`), so a
    /// `previous_response_id` answered by one instance continues on another. Kept here
    /// too; Redis keeps each for `retention`.
    shared: Option<Arc<RedisStore>>,
}

struct Entry {
    stored: StoredResponse,
    at: Instant,
    written: Written,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
}

impl ResponseStore {
    pub fn new(max: usize, retention: Duration) -> Self {
        Self {
            max,
            retention,
            inner: Arc::default(),
            shared: None,
        }
    }

    /// Keeps the answers in `store` too, shared by every instance on it.
    pub fn with_shared(mut self, store: Arc<RedisStore>) -> Self {
        self.shared = Some(store);
        self
    }

    fn shared_key(id: &str) -> String {
        format!("response:{id}")
    }

    /// The stored answer `id`. With a shared store, the shared copy decides (an answer
    /// another instance deleted is gone here too); this instance's own copy serves while
    /// Redis cannot be reached or does not have it yet.
    pub async fn fetch(&self, id: &str) -> Option<StoredResponse> {
        let Some(shared) = &self.shared else {
            return self.get(id);
        };
        match shared.get_json::<Shared>(&Self::shared_key(id)).await {
            Ok(Some(Shared::Stored(stored))) => Some(*stored),
            Ok(Some(Shared::Deleted { .. })) => {
                self.remove(id);
                None
            }
            Ok(None) => self.unshared_copy(id),
            Err(err) => {
                tracing::warn!("stored answers: {err}; only this instance's are found");
                self.get(id)
            }
        }
    }

    /// This instance's copy of `id` when Redis does not have it because its write is under
    /// way or failed (then it is written again); none when Redis had it and let it go.
    fn unshared_copy(&self, id: &str) -> Option<StoredResponse> {
        let mut inner = self.inner.lock().ok()?;
        let entry = inner.entries.get_mut(id)?;
        if entry.written == Written::Done || entry.at.elapsed() > self.retention {
            return None;
        }
        let stored = entry.stored.clone();
        if entry.written == Written::Failed {
            entry.written = Written::Pending;
            drop(inner);
            self.write_shared(id, stored.clone());
        }
        Some(stored)
    }

    /// Forgets `id` here and in the shared store (leaving the deleted marker); whether
    /// either had it.
    pub async fn forget(&self, id: &str) -> bool {
        let here = self.remove(id);
        let Some(shared) = &self.shared else {
            return here;
        };
        let retention = self.retention;
        let marked = shared
            .update_json::<Shared>(&Self::shared_key(id), &|_| {
                (Shared::Deleted { deleted: true }, retention)
            })
            .await;
        match marked {
            Ok((before, _)) => here || matches!(before, Some(Shared::Stored(_))),
            Err(err) => {
                tracing::warn!("stored answers: {err}");
                here
            }
        }
    }

    /// Writes `stored` to Redis in the background, unless it was deleted meanwhile; notes
    /// on this instance's copy whether it got there.
    fn write_shared(&self, id: &str, stored: StoredResponse) {
        let (Some(shared), Ok(runtime)) =
            (self.shared.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (id, retention) = (id.to_owned(), self.retention);
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let value = Shared::Stored(Box::new(stored));
            let written = shared
                .update_json::<Shared>(&Self::shared_key(&id), &|current| match current {
                    Some(deleted @ Shared::Deleted { .. }) => (deleted, retention),
                    _ => (value.clone(), retention),
                })
                .await;
            if let Err(err) = &written {
                tracing::warn!(
                    "stored answers: {err}; kept by this instance until it is asked for again"
                );
            }
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let Ok(mut inner) = inner.lock() else {
                return;
            };
            if let Some(entry) = inner.entries.get_mut(&id) {
                entry.written = match written {
                    Ok(_) => Written::Done,
                    Err(_) => Written::Failed,
                };
            }
        });
    }

    pub fn put(&self, id: &str, stored: StoredResponse) {
        if self.max == 0 {
            return;
        }
        let copy = self.shared.is_some().then(|| stored.clone());
        self.keep(id, stored);
        if let Some(copy) = copy {
            // After it is kept here, so the write's outcome has an entry to note it on.
            self.write_shared(id, copy);
        }
    }

    fn keep(&self, id: &str, stored: StoredResponse) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        let entry = Entry {
            stored,
            at: now,
            written: Written::Pending,
        };
        if inner.entries.insert(id.to_owned(), entry).is_none() {
            inner.order.push_back(id.to_owned());
        }
        // Oldest first: by count, then by age.
        while inner.order.len() > self.max
            || inner.order.front().is_some_and(|oldest| {
                inner
                    .entries
                    .get(oldest)
                    .is_none_or(|entry| now.saturating_duration_since(entry.at) > self.retention)
            })
        {
            if let Some(oldest) = inner.order.pop_front() {
                inner.entries.remove(&oldest);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<StoredResponse> {
        let inner = self.inner.lock().ok()?;
        let entry = inner.entries.get(id)?;
        (entry.at.elapsed() <= self.retention).then(|| entry.stored.clone())
    }

    pub fn remove(&self, id: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let removed = inner.entries.remove(id).is_some();
        if removed {
            inner.order.retain(|k| k != id);
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredResponse {
        StoredResponse {
            system: Vec::new(),
            messages: Vec::new(),
            response: Response::default(),
            echo: serde_json::Map::new(),
        }
    }

    #[test]
    fn the_store_is_bounded_by_count_and_forgets_the_oldest() {
        let store = ResponseStore::new(3, Duration::from_secs(60));
        for i in 0..5 {
            store.put(&format!("resp_{i}"), stored());
        }
        assert_eq!(store.len(), 3);
        assert!(store.get("resp_0").is_none());
        assert!(store.get("resp_4").is_some());
        assert!(store.remove("resp_4"));
        assert!(!store.remove("resp_4"));
        assert_eq!(store.len(), 2);
    }
}
