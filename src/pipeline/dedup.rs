//! De-duplication (off by default; the seed used 6 s): a request identical to one the same
//! session sent less than `dedup_window_seconds` ago is answered with that request's
//! answer, as it arrives, instead of calling the provider twice. Agents and their clients
//! retry on their own timeouts; without this, each retry pays again.
//!
//! Identical means the same session, model, system prompt, messages, tools, sampling and
//! response format; streamed and whole answers share (each client gets its own encoding of
//! the same events). The first request's answer is kept for the window; a request whose
//! original failed before answering fails the same way, and one whose original's client
//! left mid-answer gets what arrived and an error.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::watch;

use super::{Phases, Reads, RequestContext, Stage, Upstream};
use crate::Error;
use crate::backend::EventStream;
use crate::model::{Event, Request};

pub struct Dedup {
    window: Duration,
    flights: Mutex<HashMap<u64, Arc<Flight>>>,
    hasher: foldhash::fast::RandomState,
}

/// One original request's answer, shared with its duplicates.
struct Flight {
    started: Instant,
    events: Mutex<Vec<Event>>,
    /// How many events there are, and whether the answer has ended.
    progress: watch::Sender<Progress>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Progress {
    Running(usize),
    Ended(usize),
}

impl Dedup {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            flights: Mutex::new(HashMap::new()),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn fingerprint(&self, ctx: &RequestContext, request: &Request) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(ctx.session_id.as_bytes());
        // Written straight into the hasher: a megabyte of conversation is not copied into
        // a string first.
        let _ = write!(
            HashWriter(&mut hasher),
            "{:?}",
            (
                &request.model,
                &request.system,
                &request.messages,
                &request.tools,
                &request.tool_choice,
                &request.sampling,
                &request.reasoning,
                &request.response_format,
            )
        );
        hasher.finish()
    }

    /// The flight of an identical request within the window, or a new one for this request
    /// (then `true`: this request calls the provider).
    fn join_or_lead(&self, key: u64) -> (Arc<Flight>, bool) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        flights.retain(|_, flight| now.duration_since(flight.started) < self.window);
        if let Some(flight) = flights.get(&key) {
            return (flight.clone(), false);
        }
        let flight = Arc::new(Flight {
            started: now,
            events: Mutex::new(Vec::new()),
            progress: watch::Sender::new(Progress::Running(0)),
        });
        flights.insert(key, flight.clone());
        (flight, true)
    }

    fn forget(&self, key: u64) {
        self.flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

/// Feeds formatted text to a hasher.
struct HashWriter<'a, H: Hasher>(&'a mut H);

impl<H: Hasher> std::fmt::Write for HashWriter<'_, H> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

impl Flight {
    fn push(&self, event: Event) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.push(event);
        let n = events.len();
        self.progress.send_replace(Progress::Running(n));
    }

    fn end(&self) {
        let n = self.events.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.progress.send_replace(Progress::Ended(n));
    }
}

/// Ends the flight when the original's answer is dropped before its end (its client left):
/// the duplicates get what arrived and an error instead of waiting forever.
struct EndOnDrop(Arc<Flight>, bool);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.push(Event::Error(Error::internal(
                "the identical request this one was answered from was cancelled",
            )));
            self.0.end();
        }
    }
}

/// The original's events, copied into the flight as they pass.
fn lead(events: EventStream, flight: Arc<Flight>) -> EventStream {
    Box::pin(async_stream::stream! {
        let mut guard = EndOnDrop(flight, false);
        let mut events = events;
        while let Some(event) = events.next().await {
            guard.0.push(event.clone());
            yield event;
        }
        guard.0.end();
        guard.1 = true;
    })
}

/// A duplicate's events: the flight's, from the first, as they arrive.
fn follow(flight: Arc<Flight>) -> EventStream {
    Box::pin(async_stream::stream! {
        let mut progress = flight.progress.subscribe();
        let mut next = 0;
        loop {
            let state = *progress.borrow_and_update();
            let (available, ended) = match state {
                Progress::Running(n) => (n, false),
                Progress::Ended(n) => (n, true),
            };
            let fresh: Vec<Event> = {
                let events = flight.events.lock().unwrap_or_else(|e| e.into_inner());
                events[next.min(events.len())..available.min(events.len())].to_vec()
            };
            next = available;
            for event in fresh {
                yield event;
            }
            if ended || progress.changed().await.is_err() {
                break;
            }
        }
    })
}

#[async_trait]
impl Stage for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn phases(&self) -> Phases {
        Phases::AROUND_UPSTREAM.when(!self.window.is_zero())
    }

    async fn around_upstream(
        &self,
        ctx: &RequestContext,
        request: &Request,
        next: Upstream<'_>,
    ) -> Result<EventStream, Error> {
        let key = self.fingerprint(ctx, request);
        let (flight, leader) = self.join_or_lead(key);
        if !leader {
            tracing::info!(request_id = %ctx.request_id, "duplicate request: answered from the one in flight");
            return Ok(follow(flight));
        }
        match next.send(request).await {
            Ok(events) => Ok(lead(events, flight)),
            Err(err) => {
                // Duplicates already waiting fail the same way; later ones try afresh.
                self.forget(key);
                flight.push(Event::Error(err.clone()));
                flight.end();
                Err(err)
            }
        }
    }
}
