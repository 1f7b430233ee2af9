//! Stored Responses-API answers, so `previous_response_id` can continue a conversation on
//! any back-end (llmux replays the stored turn), and `GET`/`DELETE /v1/responses/{id}`
//! work. Bounded by count and age: the oldest answers go first.

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

/// How long this instance trusts its own copy of an answer Redis does not have yet.
const SHARED_WRITE_GRACE: Duration = Duration::from_secs(5);

pub struct ResponseStore {
    max: usize,
    retention: Duration,
    inner: Mutex<Inner>,
    /// Shared with every instance on the same Redis (`[state] backend = "redis"`), so a
    /// `previous_response_id` answered by one instance continues on another. Kept here
    /// too; Redis keeps each for `retention`.
    shared: Option<Arc<RedisStore>>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, (StoredResponse, Instant)>,
    order: VecDeque<String>,
}

impl ResponseStore {
    pub fn new(max: usize, retention: Duration) -> Self {
        Self {
            max,
            retention,
            inner: Mutex::new(Inner::default()),
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
    /// Redis cannot be reached, and for a moment after it was stored (the shared write
    /// happens in the background).
    pub async fn fetch(&self, id: &str) -> Option<StoredResponse> {
        let Some(shared) = &self.shared else {
            return self.get(id);
        };
        match shared.get_json(&Self::shared_key(id)).await {
            Ok(Some(stored)) => Some(stored),
            Ok(None) => self.get_within(id, SHARED_WRITE_GRACE),
            Err(err) => {
                tracing::warn!("stored answers: {err}; only this instance's are found");
                self.get(id)
            }
        }
    }

    /// This instance's copy of `id`, if it was stored less than `age` ago.
    fn get_within(&self, id: &str, age: Duration) -> Option<StoredResponse> {
        let inner = self.inner.lock().ok()?;
        let (stored, at) = inner.entries.get(id)?;
        (at.elapsed() <= age.min(self.retention)).then(|| stored.clone())
    }

    /// Forgets `id` here and in the shared store; whether either had it.
    pub async fn forget(&self, id: &str) -> bool {
        let here = self.remove(id);
        let Some(shared) = &self.shared else {
            return here;
        };
        match shared.delete(&Self::shared_key(id)).await {
            Ok(there) => here || there,
            Err(err) => {
                tracing::warn!("stored answers: {err}");
                here
            }
        }
    }

    pub fn put(&self, id: &str, stored: StoredResponse) {
        if self.max == 0 {
            return;
        }
        if let Some(shared) = self.shared.clone()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Written in the background: the answer is already on its way to the client.
            let (key, value, retention) = (Self::shared_key(id), stored.clone(), self.retention);
            runtime.spawn(async move {
                let written = shared
                    .update_json::<StoredResponse>(&key, &|_| (value.clone(), retention))
                    .await;
                if let Err(err) = written {
                    tracing::warn!("stored answers: {err}; this one is kept by this instance only");
                }
            });
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        if inner.entries.insert(id.to_owned(), (stored, now)).is_none() {
            inner.order.push_back(id.to_owned());
        }
        // Oldest first: by count, then by age.
        while inner.order.len() > self.max
            || inner.order.front().is_some_and(|oldest| {
                inner
                    .entries
                    .get(oldest)
                    .is_none_or(|(_, at)| now.saturating_duration_since(*at) > self.retention)
            })
        {
            if let Some(oldest) = inner.order.pop_front() {
                inner.entries.remove(&oldest);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<StoredResponse> {
        let inner = self.inner.lock().ok()?;
        let (stored, at) = inner.entries.get(id)?;
        (at.elapsed() <= self.retention).then(|| stored.clone())
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
