//! The capture store: one row per request in an embedded SQLite database (WAL), with
//! FTS5 over prompt and answer text, for browsing and searching what went through llmux.
//!
//! Rows are written by a writer thread from a bounded queue (a request never waits; on
//! overflow rows are dropped and counted) in one transaction per batch. The schema carries
//! a version in `PRAGMA user_version`; opening a database of an older version migrates it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::Redactor;

mod chain;
mod search;
mod segments;
use chain::{Chains, Earlier, Unreadable};
use search::Search;
use segments::Segments;

/// Rows waiting for the writer at most.
const QUEUE: usize = 4096;
/// How long the writer lets rows gather before taking them, at most.
const WRITER_TICK: Duration = Duration::from_millis(10);
/// The schema this code writes.
const SCHEMA_VERSION: i64 = 13;
/// Rows written but not yet in the search index after which the writer indexes them even
/// while requests keep coming (it does at once when idle, flushed or searched). Indexing
/// rows in batches of thousands rather than with each commit of up to 256 cost the search
/// index less than half: FTS5 writes one segment a batch, and merging many small
/// segments was a fifth of the writer's time (see `index_rows`).
const INDEX_BATCH: u64 = 4096;
/// Rows wait for the search index at most this many flush intervals (10 s by default), so
/// under steady traffic that never leaves the writer idle, a store browsed read-only
/// (`llmux inspect`) finds them in a search soon after they are listed.
const INDEX_WITHIN_FLUSHES: u32 = 10;

/// Everything captured about one request.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RequestRow {
    pub id: String,
    /// Unix seconds.
    pub started_at: f64,
    pub session_id: String,
    pub client_host: String,
    pub user_agent: String,
    pub frontend: String,
    pub backend: String,
    pub model_requested: String,
    pub model_used: String,
    pub key_name: String,
    pub status: u16,
    pub stream: bool,
    pub latency_ms: f64,
    /// From the request's arrival to the first answer event.
    pub ttfb_ms: f64,
    /// From sending to the provider to its last byte; `latency_ms - upstream_ms` is llmux's.
    pub upstream_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The provider reported no usage; the token counts are llmux's estimate.
    pub tokens_estimated: bool,
    pub error: String,
    /// Every call to a back-end for this request, `backend:model=status` joined by `; `
    /// (a failover route's legs; one entry otherwise).
    pub attempts: String,
    /// What llmux's stages did to the request or its answer (a dangerous command stopped,
    /// pytest output compressed, a loop cut, ...).
    pub interventions: Vec<crate::pipeline::Intervention>,
    /// The client's request headers as a JSON object; credentials masked.
    pub client_headers: String,
    /// The provider's status line and response headers as a JSON object (`:status` first);
    /// credentials masked.
    pub upstream_headers: String,
    /// The client's request body, as received.
    pub client_request: String,
    /// The body sent to the provider.
    pub upstream_request: String,
    /// The provider's answer: its body, or its stream frames, one per line, each after its
    /// arrival time in milliseconds since the provider request and a tab.
    pub upstream_response: String,
    /// What llmux sent back to the client, as sent.
    pub client_response: String,
    /// The user's text (for search) and the answer's text.
    pub prompt_text: String,
    pub response_text: String,
    /// The tool calls of the answer as the client got it, whatever its protocol.
    pub tool_calls: Vec<CapturedToolCall>,
}

/// One tool call of a captured answer.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CapturedToolCall {
    pub name: String,
    /// The arguments as the model wrote them (JSON text, unless the model erred).
    pub arguments: String,
}

/// A search over stored requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub text: Option<String>,
    pub session_id: Option<String>,
    pub backend: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// Unix seconds: requests started at or after `since` and before `until`.
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub limit: usize,
    pub offset: usize,
    /// Include the three bodies (for export).
    pub with_bodies: bool,
}

/// What usage is totalled by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageBy {
    Day,
    Backend,
    Model,
    Key,
    Session,
}

impl UsageBy {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "day" => Self::Day,
            "backend" => Self::Backend,
            "model" => Self::Model,
            "key" => Self::Key,
            "session" => Self::Session,
            _ => return None,
        })
    }

    fn expression(self) -> &'static str {
        match self {
            Self::Day => "date(started_at, 'unixepoch')",
            Self::Backend => "backend",
            Self::Model => "model_used",
            Self::Key => "key_name",
            Self::Session => "session_id",
        }
    }
}

/// Totals for one day, back-end, model, key or session.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Usage {
    pub group: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Totals for one time bucket.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct TimelinePoint {
    /// The bucket's start, Unix seconds.
    pub start: f64,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_latency_ms: f64,
    pub max_latency_ms: f64,
}

enum Message {
    Row(Box<RequestRow>, Option<Bodies>),
    Flush(SyncSender<()>),
    /// Rows queued from now on are masked with this one (saved settings named new keys).
    Redactor(Box<Redactor>),
}

/// The store: a writer thread for rows, a reader connection for queries.
pub struct Store {
    tx: SyncSender<Message>,
    reader: Mutex<Connection>,
    dropped: AtomicU64,
    path: PathBuf,
    /// Opened to browse only: no writer, nothing recorded.
    read_only: bool,
    /// The longer stream body of the last recorded stream, up to `STREAM_HINT_LIMIT`: a new
    /// stream's bodies start with that much room, so they are not copied again and again as
    /// they grow (doubling from nothing copied ~24k instructions a 64-chunk stream,
    /// callgrind).
    stream_body_hint: AtomicUsize,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    // 16 KiB pages: the writer thread spent 47.5 µs a row instead of 51-54 with 4 KiB
    // (bench/capture.sh, MODE=db), and rows (a few KB each) span fewer pages. Takes effect only
    // on a new, empty database (before WAL is on); an existing store keeps its pages.
    connection.pragma_update(None, "page_size", 16384)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(connection)
}

/// The first schema: requests and their search index.
fn create_version_1(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS requests (
             rowid INTEGER PRIMARY KEY,
             id TEXT NOT NULL UNIQUE,
             started_at REAL NOT NULL,
             session_id TEXT NOT NULL, client_host TEXT NOT NULL, user_agent TEXT NOT NULL,
             frontend TEXT NOT NULL, backend TEXT NOT NULL,
             model_requested TEXT NOT NULL, model_used TEXT NOT NULL, key_name TEXT NOT NULL,
             status INTEGER NOT NULL, stream INTEGER NOT NULL, latency_ms REAL NOT NULL,
             input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, error TEXT NOT NULL,
             client_request TEXT NOT NULL, upstream_request TEXT NOT NULL,
             upstream_response TEXT NOT NULL, prompt_text TEXT NOT NULL, response_text TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS requests_started ON requests(started_at);
         CREATE INDEX IF NOT EXISTS requests_session ON requests(session_id);
         CREATE VIRTUAL TABLE IF NOT EXISTS requests_fts USING fts5(prompt_text, response_text);
         PRAGMA user_version = 1;
         COMMIT;",
    )
}

fn migrate(connection: &Connection) -> Result<(), String> {
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| format!("not a capture store: {e}"))?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the capture store has schema {version}, newer than this llmux ({SCHEMA_VERSION})"
        ));
    }
    migrate_from(connection, version).map_err(|e| format!("cannot migrate the capture store: {e}"))
}

fn migrate_from(connection: &Connection, version: i64) -> rusqlite::Result<()> {
    if version < 1 {
        create_version_1(connection)?;
    }
    if version < 2 {
        // Version 2: where the time went, and the client leg's answer.
        connection.execute_batch(
            "BEGIN;
             ALTER TABLE requests ADD COLUMN ttfb_ms REAL NOT NULL DEFAULT 0;
             ALTER TABLE requests ADD COLUMN upstream_ms REAL NOT NULL DEFAULT 0;
             ALTER TABLE requests ADD COLUMN client_response TEXT NOT NULL DEFAULT '';
             ALTER TABLE requests ADD COLUMN tokens_estimated INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE requests ADD COLUMN client_headers TEXT NOT NULL DEFAULT '';
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if version < 3 {
        // Version 3: the provider's response headers; bodies may be zstd-compressed BLOBs
        // (older rows keep TEXT bodies, read as they are), which an older llmux cannot read.
        connection.execute_batch(
            "BEGIN;
             ALTER TABLE requests ADD COLUMN upstream_headers TEXT NOT NULL DEFAULT '';
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    // Version 4: the answer's tool calls (JSON), so the inspector need not decode the four
    // client protocols again. Version 5: the attempt chain (failover). Version 6: what the
    // stages did (JSON). Older rows have none recorded.
    for (to, column) in [(4, "tool_calls"), (5, "attempts"), (6, "interventions")] {
        if version < to {
            connection.execute_batch(&format!(
                "BEGIN;
                 ALTER TABLE requests ADD COLUMN {column} TEXT NOT NULL DEFAULT '';
                 PRAGMA user_version = {to};
                 COMMIT;"
            ))?;
        }
    }
    if version < 7 {
        // Version 7: a row's four bodies as one compressed frame (`pack_bodies`); the body
        // columns of such a row are empty. Older rows keep their columns.
        connection.execute_batch(
            "BEGIN;
             ALTER TABLE requests ADD COLUMN bodies BLOB;
             PRAGMA user_version = 7;
             COMMIT;",
        )?;
    }
    if version < 8 {
        // Version 8: the search index keeps no copy of the texts (contentless, its rows still
        // deletable): it only ever answers rowids, and the texts are in `requests`. Its copy
        // cost the writer a second b-tree insert a row. It merges its segments 16 at a time
        // instead of 4: merging took a fifth of the writer's time, and 16 took it from 26.3
        // to 22.0-22.4 µs a row (bench/capture.sh's load); a search reads a few more
        // segments. Body frames written from now on are LZ4 (`Packer`), which an older llmux
        // cannot read.
        connection.execute_batch(
            "BEGIN;
             DROP TABLE IF EXISTS requests_fts;
             CREATE VIRTUAL TABLE requests_fts
                 USING fts5(prompt_text, response_text, content='', contentless_delete=1);
             INSERT INTO requests_fts (rowid, prompt_text, response_text)
                 SELECT rowid, prompt_text, response_text FROM requests;
             INSERT INTO requests_fts (requests_fts, rank) VALUES ('automerge', 16);
             PRAGMA user_version = 8;
             COMMIT;",
        )?;
    }
    if version < 9 {
        // Version 9: the search index follows the rows in batches (`index_rows`); every row
        // up to `indexed_to` (a rowid) is in it, the rows after it are not yet.
        connection.execute_batch(
            "BEGIN;
             CREATE TABLE search_index (indexed_to INTEGER NOT NULL);
             INSERT INTO search_index SELECT COALESCE(MAX(rowid), 0) FROM requests;
             PRAGMA user_version = 9;
             COMMIT;",
        )?;
    }
    if version < 10 {
        // Version 10: a body in a frame may be a delta against an earlier one
        // (`DELTA_OF_BODY`), which an older llmux cannot read. The rows are as they were.
        connection.execute_batch("PRAGMA user_version = 10;")?;
    }
    if version < 11 {
        // Version 11: a row's requests may be deltas of an earlier row's (`DELTA_OF_ROW`,
        // `chain`); `base_row` names that row, so it is not deleted from under its deltas.
        connection.execute_batch(
            "BEGIN;
             ALTER TABLE requests ADD COLUMN base_row INTEGER;
             CREATE INDEX requests_base ON requests(base_row) WHERE base_row IS NOT NULL;
             PRAGMA user_version = 11;
             COMMIT;",
        )?;
    }
    if version < 12 {
        // Version 12: a row's frame may be in a segment file beside the database
        // (`segments`): `bodies` then points to it, and `segment` names the file, so that
        // retention deletes the files no row points into. Older rows keep their frames.
        connection.execute_batch(
            "BEGIN;
             ALTER TABLE requests ADD COLUMN segment INTEGER;
             CREATE INDEX requests_segment ON requests(segment) WHERE segment IS NOT NULL;
             CREATE TABLE segments (number INTEGER PRIMARY KEY, live_bytes INTEGER NOT NULL);
             PRAGMA user_version = 12;
             COMMIT;",
        )?;
    }
    if version < 13 {
        // Version 13: the search index records which rows hold a token, not where
        // (`detail=none`): the writer spent a quarter of its time indexing, and this took
        // 1.6-2.5 µs a row off it. A search matches tokens and checks a word the tokenizer
        // splits against the texts (`search`). Rebuilt here once, from the rows indexed so
        // far (llmux started in 0.53 s on a store of 211,512 bench rows). One way, as every
        // migration: an older llmux refuses a store of a newer schema.
        connection.execute_batch(
            "BEGIN;
             DROP TABLE requests_fts;
             CREATE VIRTUAL TABLE requests_fts USING fts5(
                 prompt_text, response_text, content='', contentless_delete=1, detail=none);
             INSERT INTO requests_fts (rowid, prompt_text, response_text)
                 SELECT rowid, prompt_text, response_text FROM requests
                 WHERE rowid <= (SELECT indexed_to FROM search_index);
             INSERT INTO requests_fts (requests_fts, rank) VALUES ('automerge', 16);
             PRAGMA user_version = 13;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// How long rows are kept and how large the database may grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Rows older than this are deleted; `None` keeps them.
    pub max_age: Option<Duration>,
    /// When the pages in use pass this many bytes, the oldest rows go; `None` for no cap.
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_bytes: Some(1 << 30),
        }
    }
}

/// How long a search waits for the writer to index the rows before it (then it searches
/// what is indexed).
const SEARCH_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Retention is applied at most this often (and at every flush). Often, so that a store at
/// its size cap deletes about what a few seconds added each time: a prune's work (and the
/// memory the search index's delete work takes) stays small however large the store is.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// Rows retention deletes per statement.
const PRUNE_CHUNK: u64 = 500;
/// Statements one prune runs at most; a store far over its cap (a lowered cap) gets there
/// over several prunes.
const PRUNE_MAX_CHUNKS: u32 = 400;

/// Totals over the stored requests.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Stats {
    pub requests: u64,
    /// Rows dropped since start because the writer fell behind.
    pub dropped: u64,
    pub backends: Vec<BackendStats>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackendStats {
    pub backend: String,
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub mean_latency_ms: f64,
}

impl Store {
    /// Opens (creating or migrating) the database and starts its writer, with the default
    /// retention.
    pub fn open(
        path: impl Into<PathBuf>,
        flush_interval: Duration,
        redactor: impl Into<Redactor>,
    ) -> Result<Self, String> {
        Self::open_with(path, flush_interval, redactor, Retention::default())
    }

    /// Opens the database with this retention.
    pub fn open_with(
        path: impl Into<PathBuf>,
        flush_interval: Duration,
        redactor: impl Into<Redactor>,
        retention: Retention,
    ) -> Result<Self, String> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let writer = open(&path).map_err(|e| e.to_string())?;
        migrate(&writer)?;
        let reader = open(&path).map_err(|e| e.to_string())?;
        let segments = Segments::open(&writer, retention.max_bytes)?;
        let (tx, rx) = sync_channel(QUEUE);
        let redactor = redactor.into();
        let sink = Sink {
            connection: writer,
            segments,
        };
        std::thread::Builder::new()
            .name("llmux-capture-db".into())
            .spawn(move || write_rows(sink, rx, flush_interval, retention, redactor))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx,
            reader: Mutex::new(reader),
            dropped: AtomicU64::new(0),
            path,
            read_only: false,
            stream_body_hint: AtomicUsize::new(0),
        })
    }

    /// Opens an existing store to browse it only (`llmux inspect FILE`): no writer, no
    /// migration, no retention, and SQLite itself refuses writes, so a store another
    /// llmux is writing, or one copied from another machine, is never changed. A store of
    /// another schema version is refused (the llmux that made it upgrades it when it opens
    /// it for writing).
    pub fn open_read_only(path: impl Into<PathBuf>) -> Result<Self, String> {
        use rusqlite::OpenFlags;
        let path = path.into();
        if !path.is_file() {
            return Err(format!("{}: no such capture store", path.display()));
        }
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        reader
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let version: i64 = reader
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| format!("{} is not a capture store: {e}", path.display()))?;
        // Schemas 10 to 12 added ways to write a body (`DELTA_OF_BODY`, `DELTA_OF_ROW`, a
        // frame in a segment file) and columns that reading does not use (`base_row`,
        // `segment`); schema 13 an index with less detail, which `search` asks only what
        // both answer: a store of schema 9 reads as it is.
        if !(9..=SCHEMA_VERSION).contains(&version) {
            return Err(format!(
                "{} has capture store schema {version}, this llmux reads {SCHEMA_VERSION}{}",
                path.display(),
                if version == 0 {
                    " (is it an llmux capture store?)"
                } else {
                    ""
                }
            ));
        }
        // Nobody receives: nothing is ever queued (see `insert`).
        let (tx, _) = sync_channel(1);
        Ok(Self {
            tx,
            reader: Mutex::new(reader),
            dropped: AtomicU64::new(0),
            path,
            read_only: true,
            stream_body_hint: AtomicUsize::new(0),
        })
    }

    /// Room for a new stream's body (see `stream_body_hint`).
    fn stream_body_hint(&self) -> usize {
        self.stream_body_hint.load(Ordering::Relaxed)
    }

    fn remember_stream_body(&self, row: &RequestRow) {
        let longer = row.upstream_response.len().max(row.client_response.len());
        self.stream_body_hint
            .store(longer.min(STREAM_HINT_LIMIT), Ordering::Relaxed);
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a row (the writer masks its secrets); never blocks. A read-only store
    /// records nothing.
    pub fn insert(&self, row: RequestRow) {
        self.queue(row, None);
    }

    /// Queues a row whose request bodies the writer writes in (a recorder's).
    fn insert_with_bodies(&self, row: RequestRow, bodies: Bodies) {
        self.queue(row, Some(bodies));
    }

    fn queue(&self, row: RequestRow, bodies: Option<Bodies>) {
        if self.read_only {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Message::Row(Box::new(row), bodies))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Masks the rows queued from now on with `redactor`.
    pub fn set_redactor(&self, redactor: Redactor) {
        let _ = self.tx.send(Message::Redactor(Box::new(redactor)));
    }

    /// Rows dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until every queued row is written.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }

    /// As `flush`, but when the writer's queue is full (it is behind), does not wait for
    /// room: a search then sees what is written and indexed so far.
    fn flush_unless_busy(&self, timeout: Duration) {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.try_send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }

    /// The reading connection (the writer thread has its own).
    fn reader(&self) -> Result<std::sync::MutexGuard<'_, Connection>, String> {
        self.reader
            .lock()
            .map_err(|_| "capture store poisoned".to_owned())
    }

    /// Every row `sql` selects with `args`, each read by `read` (given the connection too).
    fn rows<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        mut read: impl FnMut(&Connection, &rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, String> {
        let reader = self.reader()?;
        let mut statement = reader.prepare(sql).map_err(|e| e.to_string())?;
        statement
            .query_map(args, |row| read(&reader, row))
            .and_then(Iterator::collect)
            .map_err(|e| e.to_string())
    }

    /// Requests matching `query`, newest first, without their bodies.
    pub fn list(&self, query: &Query) -> Result<Vec<RequestRow>, String> {
        let text = query.text.as_deref().filter(|t| !t.trim().is_empty());
        // The index follows the rows in batches: have the writer write and index
        // everything first, so a search sees every request so far.
        if text.is_some() && !self.read_only {
            self.flush_unless_busy(SEARCH_FLUSH_TIMEOUT);
        }
        match text {
            Some(text) => Search::of(text)
                .map_err(|e| e.to_string())
                .and_then(|search| self.list_searching(query, &search))
                .map_err(|e| format!("search {text:?}: {e}")),
            None => self.list_matching(query, None),
        }
    }

    /// Requests matching `query` and `search`. Should the index refuse the search's terms
    /// (an error of FTS5's own, "fts5: ..."; none is known, as every term is a token its own
    /// tokenizer made), the words are looked for as typed in the texts instead.
    fn list_searching(&self, query: &Query, search: &Search) -> Result<Vec<RequestRow>, String> {
        match self.list_matching(query, Some(search)) {
            Err(refused) if search.terms.is_some() && refused.contains("fts5:") => {
                tracing::warn!(error = %refused, "the search index refused a search; scanning");
                self.list_matching(query, Some(&search.as_text()))
                    .map_err(|scan| format!("{refused}; then searching the texts: {scan}"))
            }
            listed => listed,
        }
    }

    fn list_matching(
        &self,
        query: &Query,
        search: Option<&Search>,
    ) -> Result<Vec<RequestRow>, String> {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(search) = search {
            let (search_clauses, search_args) = search.clauses();
            clauses.extend(search_clauses.into_iter().map(str::to_owned));
            args.extend(search_args.into_iter().map(Into::into));
        }
        for (column, value) in [
            ("session_id", &query.session_id),
            ("backend", &query.backend),
            ("model_used", &query.model),
        ] {
            if let Some(value) = value {
                clauses.push(format!("{column} = ?"));
                args.push(value.clone().into());
            }
        }
        if let Some(status) = query.status {
            clauses.push("status = ?".to_owned());
            args.push(i64::from(status).into());
        }
        if let Some(since) = query.since {
            clauses.push("started_at >= ?".to_owned());
            args.push(since.into());
        }
        if let Some(until) = query.until {
            clauses.push("started_at < ?".to_owned());
            args.push(until.into());
        }
        let columns = if query.with_bodies {
            format!("{SUMMARY_COLUMNS}, {BODY_COLUMNS}")
        } else {
            SUMMARY_COLUMNS.to_owned()
        };
        let mut sql = format!("SELECT {columns} FROM requests");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY started_at DESC LIMIT ? OFFSET ?");
        args.push((query.limit.clamp(1, 1000) as i64).into());
        args.push((query.offset as i64).into());
        let with_bodies = query.with_bodies;
        let mut rebuilt = chain::Rebuilt::default();
        self.rows(&sql, rusqlite::params_from_iter(args), |reader, row| {
            if with_bodies {
                full_row_of(reader, row, &mut rebuilt)
            } else {
                summary_of(row)
            }
        })
    }

    /// Requests, errors and tokens per day, back-end, model, key or session, largest first.
    pub fn usage(&self, by: UsageBy) -> Result<Vec<Usage>, String> {
        let group = by.expression();
        let order = if by == UsageBy::Day {
            "1 DESC"
        } else {
            "2 DESC"
        };
        let sql = format!(
            "SELECT {group}, COUNT(*), SUM(status >= 400), SUM(input_tokens), SUM(output_tokens)
             FROM requests GROUP BY 1 ORDER BY {order} LIMIT 1000"
        );
        self.rows(&sql, [], |_, row| {
            Ok(Usage {
                group: row.get(0)?,
                requests: row.get(1)?,
                errors: row.get(2)?,
                input_tokens: row.get(3)?,
                output_tokens: row.get(4)?,
            })
        })
    }

    /// Requests, errors, tokens and latency per time bucket of `bucket_secs` seconds, from
    /// `since` (Unix seconds) on, oldest first; empty buckets are left out.
    pub fn timeline(&self, bucket_secs: f64, since: f64) -> Result<Vec<TimelinePoint>, String> {
        let sql = "SELECT CAST(started_at / ?1 AS INTEGER) * ?1, COUNT(*), SUM(status >= 400),
                          SUM(input_tokens), SUM(output_tokens), AVG(latency_ms), MAX(latency_ms)
                   FROM requests WHERE started_at >= ?2 GROUP BY 1 ORDER BY 1 LIMIT 10000";
        self.rows(sql, params![bucket_secs, since], |_, row| {
            Ok(TimelinePoint {
                start: row.get(0)?,
                requests: row.get(1)?,
                errors: row.get(2)?,
                input_tokens: row.get(3)?,
                output_tokens: row.get(4)?,
                mean_latency_ms: row.get(5)?,
                max_latency_ms: row.get(6)?,
            })
        })
    }

    /// One request with its bodies.
    pub fn get(&self, id: &str) -> Result<Option<RequestRow>, String> {
        let reader = self.reader()?;
        reader
            .query_row(
                &format!("SELECT {SUMMARY_COLUMNS}, {BODY_COLUMNS} FROM requests WHERE id = ?"),
                params![id],
                |row| full_row_of(&reader, row, &mut chain::Rebuilt::default()),
            )
            .optional()
            .map_err(|e| e.to_string())
    }

    /// Folds the write-ahead log into the database file and empties it (at shutdown, after a
    /// flush), so a stopped llmux leaves one self-contained file.
    pub fn checkpoint(&self) -> Result<(), String> {
        if self.read_only {
            return Ok(());
        }
        let reader = self.reader()?;
        reader
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| e.to_string())
    }

    /// Input and output tokens of the requests started today, in the machine's time zone.
    pub fn tokens_today(&self) -> Result<u64, String> {
        let reader = self.reader()?;
        // Local midnight, in Unix seconds: today's local date read as local time, to UTC.
        reader
            .query_row(
                "SELECT COALESCE(SUM(input_tokens + output_tokens), 0) FROM requests
                 WHERE started_at >= CAST(strftime('%s', date('now', 'localtime'), 'utc') AS REAL)",
                [],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())
    }

    /// Unix seconds of the newest request whose user agent starts with `agent`.
    pub fn last_seen(&self, agent: &str) -> Result<Option<f64>, String> {
        let reader = self.reader()?;
        let pattern = format!("{}%", agent.replace('%', "").replace('_', "\\_"));
        reader
            .query_row(
                "SELECT MAX(started_at) FROM requests WHERE user_agent LIKE ?1 ESCAPE '\\'",
                [pattern],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())
    }

    /// How many requests are stored.
    pub fn count(&self) -> Result<u64, String> {
        let reader = self.reader()?;
        reader
            .query_row("SELECT COUNT(*) FROM requests", [], |row| row.get(0))
            .map_err(|e| e.to_string())
    }

    /// Deletes one request; false when there was none with this id.
    pub fn delete(&self, id: &str) -> Result<bool, String> {
        if self.read_only {
            return Err(format!(
                "{} is open read-only (llmux inspect): nothing is deleted from it",
                self.path.display()
            ));
        }
        let reader = self.reader()?;
        let deleted = (|| {
            let tx = write_transaction(&reader)?;
            let frame: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT bodies FROM requests WHERE id = ?1 AND segment IS NOT NULL",
                    params![id],
                    |row| row.get(0),
                )
                .optional()?;
            let deleted = delete_where(&tx, "id = ?1", params![id], Unreadable::Refuse)?;
            tx.commit().map(|()| (deleted, frame))
        })();
        let (deleted, frame) = deleted.map_err(|e| e.to_string())?;
        // Deleted on purpose: its text goes from the disk now, not when retention deletes
        // its segment. The row is gone either way.
        if let Some(frame) = frame
            && let Err(err) = segments::erase(&reader, &frame)
        {
            tracing::warn!("capture store: a deleted request's bodies were not erased: {err}");
        }
        Ok(deleted > 0)
    }

    /// Request, error and token totals per back-end and model.
    pub fn stats(&self) -> Result<Stats, String> {
        let sql = "SELECT backend, model_used, COUNT(*), SUM(status >= 400), SUM(input_tokens),
                          SUM(output_tokens), AVG(latency_ms)
                   FROM requests GROUP BY backend, model_used ORDER BY COUNT(*) DESC";
        let backends = self.rows(sql, [], |_, row| {
            Ok(BackendStats {
                backend: row.get(0)?,
                model: row.get(1)?,
                requests: row.get(2)?,
                errors: row.get(3)?,
                input_tokens: row.get(4)?,
                output_tokens: row.get(5)?,
                mean_latency_ms: row.get(6)?,
            })
        })?;
        Ok(Stats {
            requests: backends.iter().map(|b| b.requests).sum(),
            dropped: self.dropped(),
            backends,
        })
    }
}

/// The columns of a row without its bodies, in the order `summary_of` reads them.
const SUMMARY_COLUMNS: &str = "id, started_at, session_id, client_host, user_agent, frontend, \
    backend, model_requested, model_used, key_name, status, stream, latency_ms, ttfb_ms, \
    upstream_ms, input_tokens, output_tokens, error, prompt_text, response_text, \
    tokens_estimated, attempts, interventions";
const BODY_COLUMNS: &str = "client_request, upstream_request, upstream_response, \
    client_response, client_headers, upstream_headers, tool_calls, bodies";

fn summary_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: row.get(0)?,
        started_at: row.get(1)?,
        session_id: row.get(2)?,
        client_host: row.get(3)?,
        user_agent: row.get(4)?,
        frontend: row.get(5)?,
        backend: row.get(6)?,
        model_requested: row.get(7)?,
        model_used: row.get(8)?,
        key_name: row.get(9)?,
        status: row.get(10)?,
        stream: row.get(11)?,
        latency_ms: row.get(12)?,
        ttfb_ms: row.get(13)?,
        upstream_ms: row.get(14)?,
        input_tokens: row.get(15)?,
        output_tokens: row.get(16)?,
        error: row.get(17)?,
        prompt_text: row.get(18)?,
        response_text: row.get(19)?,
        tokens_estimated: row.get(20)?,
        attempts: row.get(21)?,
        interventions: serde_json::from_str(&row.get::<_, String>(22)?).unwrap_or_default(),
        ..RequestRow::default()
    })
}

/// A row with its bodies, selected as `SUMMARY_COLUMNS, BODY_COLUMNS` on `connection` (which
/// a client request stored as a delta of another row's reads that row from).
fn full_row_of(
    connection: &Connection,
    row: &rusqlite::Row<'_>,
    rebuilt: &mut chain::Rebuilt,
) -> rusqlite::Result<RequestRow> {
    let bodies = SUMMARY_COLUMNS.split(',').count();
    let [
        client_request,
        upstream_request,
        upstream_response,
        client_response,
    ] = match row.get_ref(bodies + 7)? {
        rusqlite::types::ValueRef::Blob(frame) => {
            let read = segments::frame_of(connection, frame)
                .map_err(|e| e.into_sql(bodies + 7))
                .and_then(|frame| {
                    unpack_bodies(&frame, bodies + 7, &mut |rowid, index| {
                        chain::body_at(connection, rowid, index, 1, rebuilt)
                    })
                });
            match read {
                Ok(bodies) => bodies,
                // Its segment, or that of a row it is a delta of, is missing (a store copied
                // without its `-bodies` directory), unreadable or was cut short by a crash:
                // the row is still shown, with what happened.
                Err(err) => match segments::FrameError::in_sql(&err) {
                    Some(lost) => [
                        format!("({lost})"),
                        String::new(),
                        String::new(),
                        String::new(),
                    ],
                    None => return Err(err),
                },
            }
        }
        _ => [
            unpacked(row, bodies)?,
            unpacked(row, bodies + 1)?,
            unpacked(row, bodies + 2)?,
            unpacked(row, bodies + 3)?,
        ],
    };
    Ok(RequestRow {
        client_request,
        upstream_request,
        upstream_response,
        client_response,
        client_headers: row.get(bodies + 4)?,
        upstream_headers: row.get(bodies + 5)?,
        tool_calls: tool_calls_of(&row.get::<_, String>(bodies + 6)?),
        ..summary_of(row)?
    })
}

/// The interventions as stored: a JSON array, or nothing when there were none.
fn stored_interventions(interventions: &[crate::pipeline::Intervention]) -> String {
    if interventions.is_empty() {
        return String::new();
    }
    serde_json::to_string(interventions).unwrap_or_default()
}

/// The stored tool calls; none for rows recorded before they were (or unreadable ones).
fn tool_calls_of(text: &str) -> Vec<CapturedToolCall> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Bodies shorter than this are stored as TEXT: compressing them saves next to nothing.
const COMPRESS_FROM: usize = 512;
/// The first bytes of a body frame written since schema 8: LZ4, then the frame's length
/// (u32, little-endian) and the LZ4 block. Frames without it are zstd frames (schema 7).
const LZ4_TAG: &[u8; 4] = b"lz4\0";
/// The first bytes of a frame stored as it is, not compressed (schema 9): LZ4 did not pay
/// for its bodies (`Packer`). Its repeated bodies are still stored once.
const RAW_TAG: &[u8; 4] = b"raw\0";
/// LZ4 must shrink a frame by at least this share (a quarter) for it to be stored
/// compressed; when it does not, the next frames of about its size are stored without even
/// trying, `LZ4_RETRY_AFTER` of them.
const LZ4_MIN_SAVING: usize = 4;
const LZ4_RETRY_AFTER: u8 = 15;
/// In a frame, a body's length at or above this says the body is the same as an earlier one
/// (its index in the low bits), stored once: the client gets the provider's own answer
/// bytes when nothing changed them (`VerbatimSlot`). No body is this long (`BODY_LIMIT`).
const SAME_AS_BODY: u32 = 0xffff_ff00;
/// In a frame (schema 10), a body's length at or above this (and under `SAME_AS_BODY`) says
/// the body is stored as a delta against an earlier one (its index in the low bits): then
/// the delta's length (u32, little-endian) and the delta ([`super::delta`]).
const DELTA_OF_BODY: u32 = 0xffff_fe00;
/// In a frame (schema 11), a body's length at or above this (and under `DELTA_OF_BODY`) says
/// the body is stored as a delta of a body of an earlier row (`chain`; its index in the low
/// bits: the client's request of the client's, the provider's of the provider's): then that
/// row's rowid (i64, little-endian), the delta's length (u32) and the delta. The smallest
/// marker: a body's length is always under it.
const DELTA_OF_ROW: u32 = 0xffff_fd00;
/// A provider's request is tried as a delta only against a client's request this long: LZ4
/// finds a repeat up to 64 KiB back itself, and trying cost more than it saved below that (a
/// stream's answers, which part at every event, cost 590k instructions a row to try).
const DELTA_FROM: usize = 60 * 1024;
/// A frame claiming more than this is broken: four bodies of `BODY_LIMIT` and some room for
/// a stream's last frame, which may run past the limit.
const FRAME_LIMIT: usize = 64 << 20;

/// Compresses a row's bodies on the writer thread into buffers kept from row to row.
///
/// LZ4 rather than zstd: zstd level 1 took a third of the writer's time (perf: 32 % of its
/// samples, 139k instructions a row under bench/callgrind.sh; bench/capture.sh's cost of the
/// store was 21-26 % without streaming against a target of 15 %). On a 4.4 KB row, one
/// core: lz4_flex (its safe encoder; llmux uses the faster default one) 3.9 µs and 1,874
/// bytes, zstd level 1 12.5 µs and 1,300 bytes, level -1 8.1 µs and 1,811 bytes. The
/// writer went from 39.5 to 28.9 µs a row with the search index change of schema 8; rows
/// grew from 2.6 to 3.0 KB (streams: 4.5 to 6.0 KB).
///
/// Compressed only where it pays. The bench's request, 1.8 KB of English prose, with its
/// 0.4 KB answer: LZ4 took 4.0 µs to shrink their 2.2 KB frame by 19 % (41k of the writer's
/// 132k instructions a row, bench/callgrind.sh), while JSON with code and repeated turns, an
/// agent's usual request, shrinks by half or more. A frame that LZ4 shrinks by less than
/// a quarter is stored as it is, and so are the next 15 of about its size (the same power
/// of two), without trying; the 16th tries again.
#[derive(Default)]
struct Packer {
    /// `RAW_TAG`, then the bodies: stored as it is when LZ4 does not pay, with no copy.
    framed: Vec<u8>,
    /// The LZ4 frame's buffer. It only grows, so it is zeroed once rather than for every
    /// row (zeroing a stream row's worst case cost ~47k instructions a row, callgrind).
    packed: Vec<u8>,
    /// Per size class (a frame's length in bits): frames left to store without trying LZ4.
    skip_lz4: [u8; 32],
}

impl Packer {
    /// A row's four bodies (client request, provider request, provider response, client
    /// response) as one frame of each body's length (u32, little-endian) and bytes, a body
    /// the same as an earlier one stored once, compressed when that pays; or `None` when
    /// together they are short (they are then stored as TEXT). The provider's request, the client's with a few changes or
    /// translated, is stored as a delta against it when it is long: LZ4 finds repeats only
    /// within 64 KiB, and an agent's request is larger. The two requests are stored as deltas
    /// of `earlier`'s, its session's requests before, when that pays (the provider's when
    /// that is shorter than its delta of the client's): the frame comes with whether any is.
    fn pack_bodies(
        &mut self,
        bodies: [&str; 4],
        earlier: Option<&Earlier>,
    ) -> Option<(&[u8], bool)> {
        let total: usize = bodies.iter().map(|b| b.len()).sum();
        if total < COMPRESS_FROM {
            return None;
        }
        self.framed.clear();
        self.framed.extend_from_slice(RAW_TAG);
        let mut chained = false;
        for (index, body) in bodies.iter().enumerate() {
            // The same text shared (`Pending::upstream_is_client`) needs no compare.
            let same = bodies[..index].iter().position(|other| {
                !body.is_empty()
                    && ((other.as_ptr(), other.len()) == (body.as_ptr(), body.len())
                        || other == body)
            });
            if let Some(same) = same {
                self.framed
                    .extend_from_slice(&(SAME_AS_BODY | same as u32).to_le_bytes());
                continue;
            }
            if index == 0 && earlier.is_some_and(|earlier| self.push_delta_of_row(earlier, 0, body))
            {
                chained = true;
                continue;
            }
            if index == 1
                && let Some(of_row) = self.push_provider_request(bodies[0], body, earlier)
            {
                chained |= of_row;
                continue;
            }
            let len = u32::try_from(body.len())
                .ok()
                .filter(|&len| len < DELTA_OF_ROW)?;
            self.framed.extend_from_slice(&len.to_le_bytes());
            self.framed.extend_from_slice(body.as_bytes());
        }
        let framed_len = self.framed.len() - RAW_TAG.len();
        let class = ((usize::BITS - framed_len.leading_zeros()) as usize).min(31);
        let packed = match self.skip_lz4[class].checked_sub(1) {
            Some(left) => {
                self.skip_lz4[class] = left;
                None
            }
            None => {
                let packed_len = self.compress_framed()?;
                let saved = framed_len.saturating_sub(packed_len);
                if saved < framed_len / LZ4_MIN_SAVING {
                    self.skip_lz4[class] = LZ4_RETRY_AFTER;
                    None
                } else {
                    Some(packed_len)
                }
            }
        };
        let frame = match packed {
            Some(len) => &self.packed[..len],
            None => &self.framed[..],
        };
        // Even a frame longer than its bodies (by its tag and lengths, when nothing in them
        // repeats and LZ4 does not pay): it goes to a segment, and the row stays small.
        Some((frame, chained))
    }

    /// Appends the provider's request `body` to the frame as a delta against `base`, the
    /// frame's first body (the client's request); false, with nothing appended, when the
    /// base is short or the delta would not pay.
    fn push_delta_of_body(&mut self, base: &str, body: &str) -> bool {
        base.len() >= DELTA_FROM
            && !body.is_empty()
            && self.push_delta(&DELTA_OF_BODY.to_le_bytes(), base, body)
    }

    /// Appends the provider's request `body` as the shorter of its deltas against `client`
    /// and against the provider's request of `earlier`; `Some(true)` when the latter, `None`
    /// (nothing appended) when neither pays. Sent on unchanged or nearly, the provider's
    /// request is closest to the client's; translated, it parts from it at every message
    /// but from the last translation only where a turn was added (6.8 KB against ~2.5 KB a
    /// 100 KB request, bench/results/fastpath.md, session 24).
    fn push_provider_request(
        &mut self,
        client: &str,
        body: &str,
        earlier: Option<&Earlier>,
    ) -> Option<bool> {
        if body.is_empty() {
            return None;
        }
        let head = self.framed.len();
        let of_client = self.push_delta_of_body(client, body);
        let Some(earlier) = earlier.filter(|earlier| !earlier.upstream.is_empty()) else {
            return of_client.then_some(false);
        };
        let second = self.framed.len();
        if !self.push_delta_of_row(earlier, 1, body) {
            return of_client.then_some(false);
        }
        let of_row_len = self.framed.len() - second;
        if of_client && second - head <= of_row_len {
            self.framed.truncate(second);
            return Some(false);
        }
        self.framed.copy_within(second.., head);
        self.framed.truncate(head + of_row_len);
        Some(true)
    }

    /// Appends `body` to the frame as a delta of body `index` of `earlier` (0: the client's
    /// request, 1: the provider's); false, with nothing appended, when that would not pay.
    fn push_delta_of_row(&mut self, earlier: &Earlier, index: u32, body: &str) -> bool {
        let mut marker = [0; 12];
        marker[..4].copy_from_slice(&(DELTA_OF_ROW | index).to_le_bytes());
        marker[4..].copy_from_slice(&earlier.rowid.to_le_bytes());
        let base = if index == 0 {
            earlier.client
        } else {
            earlier.upstream
        };
        self.push_delta(&marker, base, body)
    }

    /// Appends `marker`, the delta's length (u32) and the delta that rebuilds `body` from
    /// `base`; false, with nothing appended, when the delta would not pay.
    fn push_delta(&mut self, marker: &[u8], base: &str, body: &str) -> bool {
        let head = self.framed.len();
        self.framed.extend_from_slice(marker);
        self.framed.extend_from_slice(&[0; 4]);
        let delta_from = self.framed.len();
        if !super::delta::encode(base.as_bytes(), body.as_bytes(), &mut self.framed) {
            self.framed.truncate(head);
            return false;
        }
        let len = (self.framed.len() - delta_from) as u32;
        self.framed[delta_from - 4..delta_from].copy_from_slice(&len.to_le_bytes());
        true
    }

    /// Compresses the frame's bodies into `packed`, behind `LZ4_TAG` and their length;
    /// returns how many bytes of `packed` that took.
    fn compress_framed(&mut self) -> Option<usize> {
        let bodies = &self.framed[RAW_TAG.len()..];
        let header = LZ4_TAG.len() + 4;
        let len = u32::try_from(bodies.len()).ok()?;
        let needed = header + lz4_flex::block::get_maximum_output_size(bodies.len());
        if self.packed.len() < needed {
            self.packed.resize(needed, 0);
        }
        self.packed[..LZ4_TAG.len()].copy_from_slice(LZ4_TAG);
        self.packed[LZ4_TAG.len()..header].copy_from_slice(&len.to_le_bytes());
        let written = lz4_flex::block::compress_into(bodies, &mut self.packed[header..]).ok()?;
        Some(header + written)
    }
}

/// The bytes a body frame holds: a raw frame (schema 9), an LZ4 frame (schema 8) or a zstd
/// frame (schema 7).
fn unpack_frame(frame: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(framed) = frame.strip_prefix(RAW_TAG) {
        return Ok(framed.to_vec());
    }
    let Some(rest) = frame.strip_prefix(LZ4_TAG) else {
        return zstd::stream::decode_all(frame).map_err(|e| e.to_string());
    };
    let (len, block) = rest
        .split_first_chunk::<4>()
        .ok_or("the frame's length is cut off")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > FRAME_LIMIT {
        return Err(format!("the frame claims {len} bytes"));
    }
    let mut framed = vec![0; len];
    let written =
        lz4_flex::block::decompress_into(block, &mut framed).map_err(|e| e.to_string())?;
    if written != len {
        return Err(format!("the frame holds {written} of its {len} bytes"));
    }
    Ok(framed)
}

/// The four bodies of a frame made by [`Packer::pack_bodies`]; `column` names the column in
/// the error for a frame that does not decode. `earlier` gives a body (by its index) of the
/// row with a rowid, for a body stored as a delta of it.
fn unpack_bodies(
    frame: &[u8],
    column: usize,
    earlier: &mut dyn FnMut(i64, usize) -> rusqlite::Result<String>,
) -> rusqlite::Result<[String; 4]> {
    let broken = |why: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, why.into())
    };
    let framed = unpack_frame(frame).map_err(broken)?;
    let mut rest = framed.as_slice();
    let mut bodies: Vec<String> = Vec::with_capacity(4);
    let mut earlier_row = None;
    for _ in 0..4 {
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| broken("a body's length is cut off".into()))?;
        let len = u32::from_le_bytes(*len);
        rest = after;
        if (DELTA_OF_ROW..DELTA_OF_ROW + 2).contains(&len) {
            let (rowid, after) = rest
                .split_first_chunk::<8>()
                .ok_or_else(|| broken("a delta's row is cut off".into()))?;
            let (index, rowid) = ((len - DELTA_OF_ROW) as usize, i64::from_le_bytes(*rowid));
            // As written: each request against the same request of one earlier row. Reading
            // stays one row a step along the chain, whatever a damaged frame says.
            if index != bodies.len() || earlier_row.is_some_and(|earlier| earlier != rowid) {
                return Err(broken("a delta names another body or row".into()));
            }
            earlier_row = Some(rowid);
            let base = earlier(rowid, index)?;
            let (body, after) = applied_delta(base.as_bytes(), after).map_err(broken)?;
            rest = after;
            bodies.push(body);
            continue;
        }
        if len >= SAME_AS_BODY {
            let earlier = bodies
                .get((len - SAME_AS_BODY) as usize)
                .ok_or_else(|| broken("a body repeats one that is not before it".into()))?;
            bodies.push(earlier.clone());
            continue;
        }
        if len >= DELTA_OF_BODY {
            let base = bodies
                .get((len - DELTA_OF_BODY) as usize)
                .ok_or_else(|| broken("a delta's base is not before it".into()))?;
            let (body, after) = applied_delta(base.as_bytes(), rest).map_err(broken)?;
            rest = after;
            bodies.push(body);
            continue;
        }
        if len >= DELTA_OF_ROW {
            return Err(broken(format!("a body's length reads {len:#x}")));
        }
        let len = len as usize;
        if rest.len() < len {
            return Err(broken("a body is cut off".into()));
        }
        let (body, after) = rest.split_at(len);
        rest = after;
        bodies.push(super::text_of(body).into_owned());
    }
    let [a, b, c, d]: [String; 4] = bodies.try_into().unwrap_or_default();
    Ok([a, b, c, d])
}

/// The body that the delta at the start of `rest` (its length, u32, then its operations)
/// rebuilds from `base`, and the bytes after the delta.
fn applied_delta<'a>(base: &[u8], rest: &'a [u8]) -> Result<(String, &'a [u8]), String> {
    let (delta_len, after) = rest
        .split_first_chunk::<4>()
        .ok_or("a delta's length is cut off")?;
    let (delta, after) = after
        .split_at_checked(u32::from_le_bytes(*delta_len) as usize)
        .ok_or("a delta is cut off")?;
    // A body is clipped at `BODY_LIMIT` with a short note.
    let body = super::delta::apply(base, delta, BODY_LIMIT + 64 * 1024)?;
    Ok((super::text_of(&body).into_owned(), after))
}

/// A stored body back as text, whether it was kept as TEXT or compressed.
fn unpacked(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<String> {
    use rusqlite::types::ValueRef;
    match row.get_ref(index)? {
        ValueRef::Text(text) => Ok(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Blob(blob) => zstd::stream::decode_all(blob)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    index,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                )
            }),
        ValueRef::Null => Ok(String::new()),
        other => Err(rusqlite::Error::InvalidColumnType(
            index,
            "body".to_owned(),
            other.data_type(),
        )),
    }
}

/// A transaction that holds the write lock from its start. Deleting and writing rows read
/// first (the rows chained to those deleted, a base still there); a deferred transaction
/// that read before another connection wrote could then not write at all
/// (`SQLITE_BUSY_SNAPSHOT`, which no busy timeout waits out), and its rows would be lost.
fn write_transaction(connection: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    rusqlite::Transaction::new_unchecked(connection, rusqlite::TransactionBehavior::Immediate)
}

/// Deletes the matching requests and their search entries.
fn delete_where(
    connection: &Connection,
    condition: &str,
    args: impl rusqlite::Params + Copy,
    unreadable: Unreadable,
) -> rusqlite::Result<usize> {
    chain::unchain_dependents(connection, condition, args, unreadable)?;
    segments::uncount(connection, condition, args)?;
    // Rows after `indexed_to` are not in the search index yet.
    connection.execute(
        &format!(
            "DELETE FROM requests_fts WHERE rowid IN (SELECT rowid FROM requests
                 WHERE ({condition}) AND rowid <= (SELECT indexed_to FROM search_index))"
        ),
        args,
    )?;
    let deleted = connection.execute(&format!("DELETE FROM requests WHERE {condition}"), args)?;
    // A new row takes the rowid after the largest one left. Were the newest rows deleted,
    // the next row would get a rowid at or under `indexed_to` and never be indexed.
    connection.execute(
        "UPDATE search_index
         SET indexed_to = MIN(indexed_to, COALESCE((SELECT MAX(rowid) FROM requests), 0))",
        [],
    )?;
    Ok(deleted)
}

/// Adds the rows written since the last call to the search index, in one transaction;
/// returns how many.
///
/// Behind the rows rather than with each commit: FTS5 writes a segment per transaction and
/// merges segments as they pile up. Per row, indexing 4096 at once cost about half of what
/// 256 at a time did (SQLite 3.40 by itself, the bench's prompt: 6.3 against 11.7 µs a row
/// for 100 at a time, 8.5 for 1000); the merges of small segments were a fifth of the
/// writer's time (perf, bench/capture.sh's load).
fn index_rows(connection: &Connection) -> rusqlite::Result<usize> {
    let tx = connection.unchecked_transaction()?;
    let indexed = tx.execute(
        "INSERT INTO requests_fts (rowid, prompt_text, response_text)
         SELECT rowid, prompt_text, response_text FROM requests
         WHERE rowid > (SELECT indexed_to FROM search_index)",
        [],
    )?;
    tx.execute(
        "UPDATE search_index SET indexed_to = COALESCE((SELECT MAX(rowid) FROM requests), 0)",
        [],
    )?;
    tx.commit()?;
    Ok(indexed)
}

/// Rows written but not yet in the search index.
fn unindexed_rows(connection: &Connection) -> rusqlite::Result<u64> {
    connection.query_row(
        "SELECT COUNT(*) FROM requests WHERE rowid > (SELECT indexed_to FROM search_index)",
        [],
        |row| row.get(0),
    )
}

/// Bytes of the database's pages in use (freed pages are reused, not counted) and of the
/// frames rows point to in body segments.
fn used_bytes(connection: &Connection) -> rusqlite::Result<u64> {
    let pages: u64 = connection.pragma_query_value(None, "page_count", |row| row.get(0))?;
    let free: u64 = connection.pragma_query_value(None, "freelist_count", |row| row.get(0))?;
    let size: u64 = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
    Ok(pages.saturating_sub(free) * size + segments::live_bytes(connection)?)
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Applies the retention: rows past the age go; then, when the database is over its size,
/// the oldest rows until it is 1 % under it.
fn prune(sink: &Sink, retention: Retention) -> rusqlite::Result<()> {
    // One transaction: the search index writes its delete markers once, as one segment,
    // instead of one segment per statement that its merges then have to fold together.
    let tx = write_transaction(&sink.connection)?;
    prune_in(&tx, retention)?;
    tx.commit()?;
    // Also the segments a delete through `Store::delete` left without rows.
    if let Err(err) = sink.segments.remove_unreferenced(&sink.connection) {
        tracing::warn!("capture store: body segments not removed: {err}");
    }
    Ok(())
}

fn prune_in(connection: &Connection, retention: Retention) -> rusqlite::Result<()> {
    if let Some(max_age) = retention.max_age {
        let cutoff = unix_seconds() - max_age.as_secs_f64();
        delete_where(
            connection,
            "started_at < ?1",
            params![cutoff],
            Unreadable::Lost,
        )?;
    }
    let Some(max_bytes) = retention.max_bytes else {
        return Ok(());
    };
    if used_bytes(connection)? <= max_bytes {
        return Ok(());
    }
    // A little under the cap, so the next prunes do not come at every flush. Deleting a
    // tenth of a full store at once made the search index's delete work peak at tens of MB,
    // which the allocator kept (bench/soak.sh: RSS 29 -> 62 MiB once the store reached its
    // cap); a few hundred rows a statement, just enough of them, keeps it small.
    let target = max_bytes - max_bytes / 100;
    // A hundredth of the rows a statement (at most PRUNE_CHUNK), so a small store is not
    // emptied by its first statement.
    let rows: u64 = connection.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))?;
    let chunk = rows.div_ceil(100).clamp(1, PRUNE_CHUNK);
    for _ in 0..PRUNE_MAX_CHUNKS {
        // The chunk's last row, found once: `delete_where` reads its condition three times
        // (the rows built on those it deletes, their search entries, the rows), and a
        // `LIMIT` over rows started at the same time need not pick the same rows each time.
        let last: Option<(f64, i64)> = connection
            .query_row(
                "SELECT started_at, rowid FROM (SELECT started_at, rowid FROM requests
                     ORDER BY started_at, rowid LIMIT ?1)
                 ORDER BY started_at DESC, rowid DESC LIMIT 1",
                params![chunk],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((started_at, rowid)) = last else {
            break;
        };
        let deleted = delete_where(
            connection,
            "started_at < ?1 OR (started_at = ?1 AND rowid <= ?2)",
            params![started_at, rowid],
            Unreadable::Lost,
        )?;
        if deleted == 0 || used_bytes(connection)? <= target {
            break;
        }
    }
    Ok(())
}

/// What the writer writes to: its connection and the body segments.
struct Sink {
    connection: Connection,
    segments: Segments,
}

/// The writer: waits for work, then sleeps a tick and takes everything queued meanwhile
/// (under load one wake-up per tick, not per request), masks the rows and commits them in
/// one transaction once the oldest has waited `flush_interval`, 256 are waiting, or a flush
/// asks. The committed rows go into the search index when `INDEX_BATCH` of them wait, when
/// nothing came for `flush_interval`, ten flush intervals after the oldest was committed, at
/// a flush and at the end. A flush also syncs the body segments.
fn write_rows(
    mut sink: Sink,
    rx: Receiver<Message>,
    flush_interval: Duration,
    retention: Retention,
    mut redactor: Redactor,
) {
    let tick = flush_interval.min(WRITER_TICK);
    let mut batch: Vec<Pending> = Vec::new();
    let mut packer = Packer::default();
    let mut chains = Chains::default();
    let mut pruned_at: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    // Rows an earlier run left unindexed (it ended abruptly) are indexed at the first quiet
    // moment; not knowing counts as some, and the first try finds out.
    let mut unindexed = Unindexed::new(
        unindexed_rows(&sink.connection).unwrap_or(1),
        flush_interval * INDEX_WITHIN_FLUSHES,
    );
    loop {
        let wait = deadline.map_or(flush_interval, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let mut messages = Vec::new();
        let mut disconnected = false;
        let mut timed_out = false;
        match rx.recv_timeout(wait) {
            Ok(message) => {
                messages.push(message);
                std::thread::sleep(tick);
            }
            Err(RecvTimeoutError::Timeout) => timed_out = true,
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        loop {
            match rx.try_recv() {
                Ok(message) => messages.push(message),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let idle = timed_out && messages.is_empty() && batch.is_empty();
        let mut waiters = Vec::new();
        for message in messages {
            match message {
                Message::Row(mut row, bodies) => {
                    let upstream_is_client = bodies.is_some_and(|bodies| bodies.fill(&mut row));
                    super::tokens::refine(&mut row);
                    redact_row(&redactor, &mut row, upstream_is_client);
                    deadline.get_or_insert_with(|| Instant::now() + flush_interval);
                    batch.push(Pending {
                        row: *row,
                        upstream_is_client,
                    });
                }
                Message::Flush(done) => waiters.push(done),
                Message::Redactor(next) => redactor = *next,
            }
        }
        let due = deadline.is_some_and(|at| Instant::now() >= at);
        if due || batch.len() >= 256 || !waiters.is_empty() || disconnected {
            unindexed.add(batch.len());
            commit(&mut sink, &mut batch, &mut packer, &mut chains);
            deadline = None;
        }
        let asked = idle || !waiters.is_empty() || disconnected;
        if unindexed.due(asked, Instant::now()) {
            match index_rows(&sink.connection) {
                Ok(_) => unindexed.clear(),
                Err(err) => {
                    tracing::warn!("capture store: rows not added to the search index: {err}");
                    unindexed.retry_later(Instant::now());
                }
            }
        }
        let prune_now =
            !waiters.is_empty() || pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if prune_now && !disconnected {
            if let Err(err) = prune(&sink, retention) {
                tracing::warn!("capture store: retention not applied: {err}");
            }
            pruned_at = Some(Instant::now());
        }
        if !waiters.is_empty() {
            sink.segments.sync();
        }
        for done in waiters {
            let _ = done.send(());
        }
        if disconnected {
            sink.segments.sync();
            return;
        }
    }
}

/// The rows the writer committed that the search index does not have yet.
#[derive(Debug)]
struct Unindexed {
    rows: u64,
    /// When the oldest of them was committed.
    since: Option<Instant>,
    /// The longest they wait under traffic that never leaves the writer idle.
    within: Duration,
    /// After a failed try, none before this.
    not_before: Option<Instant>,
}

impl Unindexed {
    fn new(rows: u64, within: Duration) -> Self {
        Self {
            rows,
            since: (rows > 0).then(Instant::now),
            within,
            not_before: None,
        }
    }

    fn add(&mut self, rows: usize) {
        if rows > 0 {
            self.rows += rows as u64;
            self.since.get_or_insert_with(Instant::now);
        }
    }

    fn clear(&mut self) {
        self.rows = 0;
        self.since = None;
        self.not_before = None;
    }

    /// After a failed try (a full disk, say): the rows still wait, and the next try comes
    /// `within` later, not at every idle moment.
    fn retry_later(&mut self, now: Instant) {
        self.not_before = Some(now + self.within);
    }

    /// Whether to index them now: when `asked` (the writer is idle, flushed or closing),
    /// when `INDEX_BATCH` wait, or when the oldest has waited `within`; never while backing
    /// off after a failure.
    fn due(&self, asked: bool, now: Instant) -> bool {
        if self.not_before.is_some_and(|at| now < at) {
            return false;
        }
        let waited_long = self
            .since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.within);
        self.rows > 0 && (asked || self.rows >= INDEX_BATCH || waited_long)
    }
}

/// Masks keys and key-shaped text in every text field of a row.
fn redact_row(redactor: &Redactor, row: &mut RequestRow, upstream_is_client: bool) {
    // The provider's request is often the client's byte for byte, and the client's answer
    // the provider's: each is masked once and copied (a fifth of a row's masking work), or
    // not at all (`Pending::upstream_is_client`).
    let same_request = !upstream_is_client && row.upstream_request == row.client_request;
    let same_response = row.client_response == row.upstream_response;
    for field in [
        &mut row.client_headers,
        &mut row.upstream_headers,
        &mut row.client_request,
        &mut row.upstream_response,
        &mut row.prompt_text,
        &mut row.response_text,
        &mut row.error,
    ] {
        redactor.redact_in_place(field);
    }
    if same_request {
        row.upstream_request.clone_from(&row.client_request);
    } else {
        redactor.redact_in_place(&mut row.upstream_request);
    }
    if same_response {
        row.client_response.clone_from(&row.upstream_response);
    } else {
        redactor.redact_in_place(&mut row.client_response);
    }
    for call in &mut row.tool_calls {
        redactor.redact_in_place(&mut call.arguments);
    }
}

/// The tool calls as stored: JSON, or nothing when there are none.
fn stored_tool_calls(calls: &[CapturedToolCall]) -> String {
    if calls.is_empty() {
        return String::new();
    }
    serde_json::to_string(calls).unwrap_or_default()
}

/// A row waiting in the writer for its commit.
struct Pending {
    row: RequestRow,
    /// The provider's request is the client's byte for byte: `row.upstream_request` is left
    /// empty rather than copied, masked and compared again (three passes over a 100 KB
    /// request, ~15 % of the writer's time; bench/results/fastpath.md, session 24).
    upstream_is_client: bool,
}

#[cfg(test)]
impl From<RequestRow> for Pending {
    fn from(row: RequestRow) -> Self {
        Self {
            row,
            upstream_is_client: false,
        }
    }
}

fn commit(sink: &mut Sink, batch: &mut Vec<Pending>, packer: &mut Packer, chains: &mut Chains) {
    if batch.is_empty() {
        return;
    }
    let Sink {
        connection,
        segments,
    } = sink;
    let result = (|| -> rusqlite::Result<()> {
        let tx = write_transaction(connection)?;
        {
            let mut insert = tx.prepare_cached(
                // OR REPLACE: a row of the same id replaced (llmux gives each request its
                // own id) keeps its frame counted in its segment until the segment goes.
                "INSERT OR REPLACE INTO requests (id, started_at, session_id, client_host, user_agent,
                    frontend, backend, model_requested, model_used, key_name, status, stream,
                    latency_ms, input_tokens, output_tokens, error, client_request,
                    upstream_request, upstream_response, prompt_text, response_text, ttfb_ms,
                    upstream_ms, client_response, tokens_estimated, client_headers,
                    upstream_headers, tool_calls, attempts, interventions, bodies, base_row,
                    segment)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30,
                         ?31, ?32, ?33)",
            )?;
            for Pending {
                row,
                upstream_is_client,
            } in batch.iter_mut()
            {
                let bodies = [
                    row.client_request.as_str(),
                    if *upstream_is_client {
                        &row.client_request
                    } else {
                        &row.upstream_request
                    },
                    &row.upstream_response,
                    &row.client_response,
                ];
                let earlier = chains.base_for(&tx, &row.session_id, &row.id, bodies[0])?;
                let packed = packer.pack_bodies(bodies, earlier.as_ref());
                let chained_to = earlier
                    .filter(|_| packed.is_some_and(|(_, chained)| chained))
                    .map(|earlier| (earlier.rowid, earlier.depth));
                let pointer = packed
                    .map(|(frame, _)| segments.add(frame))
                    .transpose()
                    .map_err(segments::io_error)?;
                let [
                    client_request,
                    upstream_request,
                    upstream_response,
                    client_response,
                ] = if pointer.is_some() { [""; 4] } else { bodies };
                insert.execute(params![
                    row.id,
                    row.started_at,
                    row.session_id,
                    row.client_host,
                    row.user_agent,
                    row.frontend,
                    row.backend,
                    row.model_requested,
                    row.model_used,
                    row.key_name,
                    row.status,
                    row.stream,
                    row.latency_ms,
                    row.input_tokens,
                    row.output_tokens,
                    row.error,
                    client_request,
                    upstream_request,
                    upstream_response,
                    row.prompt_text,
                    row.response_text,
                    row.ttfb_ms,
                    row.upstream_ms,
                    client_response,
                    row.tokens_estimated,
                    row.client_headers,
                    row.upstream_headers,
                    stored_tool_calls(&row.tool_calls),
                    row.attempts,
                    stored_interventions(&row.interventions),
                    pointer.map(|pointer| pointer.to_bytes()),
                    chained_to.map(|(rowid, _)| rowid),
                    pointer.map(|pointer| pointer.segment),
                ])?;
                // A provider request that is the client's is not kept as a base (it is left
                // out of the row): the session's next provider request, if translated, is
                // then a delta of its own client's request only.
                chains.remember(
                    &row.session_id,
                    tx.last_insert_rowid(),
                    &row.id,
                    [
                        std::mem::take(&mut row.client_request),
                        std::mem::take(&mut row.upstream_request),
                    ],
                    chained_to.map(|(_, depth)| depth),
                );
            }
        }
        // The frames first: rows never point past what their segment holds.
        segments.count_pending(&tx)?;
        segments.write().map_err(segments::io_error)?;
        tx.commit()
    })();
    if let Err(err) = result {
        segments.abandon();
        tracing::warn!("capture store: {} rows not written: {err}", batch.len());
    }
    batch.clear();
}

/// Collects one request's row while it runs; inserted into the store when it ends.
pub struct Recorder {
    row: Mutex<Recording>,
    store: Arc<Store>,
}

/// A row being collected, and when the first provider request went out and the provider's
/// last byte came in. One lock for both: a stream frame takes it once.
#[derive(Default)]
struct Recording {
    row: RequestRow,
    bodies: Bodies,
    sent: Option<Instant>,
    last: Option<Instant>,
    /// The provider's answer came as stream frames.
    streamed: bool,
    /// The client's body as it came, until the first provider request, when `bodies.client`
    /// is a copy of it (a short body): a provider request sent in this very buffer is then
    /// the client's without comparing them. Held, so that its address cannot be another
    /// buffer's.
    client_source: bytes::Bytes,
}

/// Headers whose values are credentials, masked whole whatever they hold.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "set-cookie",
];

/// The headers as a JSON object (repeated names joined by ", "), credentials masked.
fn headers_json(headers: &axum::http::HeaderMap) -> String {
    HeadersJson {
        status: None,
        headers,
    }
    .to_json()
}

/// Headers written as a JSON object straight from the map (no `Value` tree: building one
/// cost 11k instructions a request), after `:status` when there is one.
struct HeadersJson<'a> {
    status: Option<u16>,
    headers: &'a axum::http::HeaderMap,
}

impl HeadersJson<'_> {
    /// Written by hand rather than through serde's map serializer: a header's name and
    /// value need no escaping unless a value holds a quote, a backslash or a control
    /// character (a tab), and the serializer's per-entry work was most of the 5.4k instructions a request spent on the
    /// two header objects (bench/callgrind.sh with the capture store on).
    fn to_json(&self) -> String {
        let mut json = String::with_capacity(16 + self.headers.len() * 48);
        json.push('{');
        if let Some(status) = self.status {
            let _ = write!(json, "\":status\":{status}");
        }
        // One pass over the map: a name's values come one after another, so a repeated name
        // continues its entry (no lookup by name per entry).
        let mut open: Option<&axum::http::HeaderName> = None;
        for (name, value) in self.headers {
            let credential = CREDENTIAL_HEADERS.contains(&name.as_str());
            if open == Some(name) {
                if !credential {
                    json.push_str(", ");
                    push_json_escaped(&mut json, &super::text_of(value.as_bytes()));
                }
                continue;
            }
            if open.is_some() {
                json.push('"');
            }
            if json.len() > 1 {
                json.push(',');
            }
            open = Some(name);
            // Header names are lowercase tokens: nothing in them needs escaping.
            json.push('"');
            json.push_str(name.as_str());
            json.push_str("\":\"");
            if credential {
                json.push_str(super::redact::MASK);
            } else {
                push_json_escaped(&mut json, &super::text_of(value.as_bytes()));
            }
        }
        if open.is_some() {
            json.push('"');
        }
        json.push('}');
        json
    }
}

/// Appends `text` as the inside of a JSON string.
fn push_json_escaped(json: &mut String, text: &str) {
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        json.push_str(text);
        return;
    }
    let quoted = serde_json::to_string(text).unwrap_or_default();
    json.push_str(
        quoted
            .get(1..quoted.len().saturating_sub(1))
            .unwrap_or_default(),
    );
}

/// A request's bodies as bytes (see [`Kept`]) until the writer thread writes them into the
/// row as text: checking and copying a 100 KB agent request as text on the request path, and
/// again for the provider's request (the client's bytes, or nearly), cost it ~390k
/// instructions (bench/callgrind.sh, `--history 40`).
#[derive(Default)]
struct Bodies {
    client: Kept,
    /// The last body sent to the provider; `None` when none was sent.
    upstream: Option<Kept>,
}

impl Bodies {
    /// Writes the bodies into `row` as stored text; true when the provider's request is the
    /// client's bytes, which is then left out (`Pending::upstream_is_client`).
    fn fill(self, row: &mut RequestRow) -> bool {
        // A request sent on unchanged shares the client's buffer (from `SHARED_FROM` on;
        // a shorter body is a copy, compared in full): comparing 100 KB that are
        // one was 8 % of the store writer's time (perf, bench/results/fastpath.md, session 24).
        let Bodies { client, upstream } = self;
        let same = matches!((&client, &upstream),
            (Kept::Bytes(client), Some(Kept::Bytes(upstream)))
                if (client.as_ptr(), client.len()) == (upstream.as_ptr(), upstream.len())
                    || client == upstream);
        // The provider's copy goes first: the client's buffer, no longer shared, then
        // becomes the row's text without a copy.
        let upstream = upstream.filter(|_| !same);
        row.upstream_request = upstream.map_or_else(String::new, Kept::into_text);
        row.client_request = client.into_text();
        same
    }
}

/// A request body as a recorder keeps it until the writer takes the row.
#[derive(Clone)]
enum Kept {
    /// Shared with the request from `SHARED_FROM` on, a copy below it.
    Bytes(bytes::Bytes),
    /// A body over `BODY_LIMIT`, clipped at once: the queue must not hold it whole.
    Clipped(String),
}

impl Default for Kept {
    fn default() -> Self {
        Kept::Bytes(bytes::Bytes::new())
    }
}

/// From this size a body is kept shared with the request; a smaller one is copied: it may
/// sit in a larger buffer (an encoded request's 16 KB, hyper's read buffer) that a row
/// waiting in the writer's queue would keep alive, and copying it costs little.
const SHARED_FROM: usize = 64 << 10;

impl Kept {
    fn new(body: bytes::Bytes) -> Self {
        match body.len() {
            len if len > BODY_LIMIT => Kept::Clipped(body_text(&body)),
            len if len < SHARED_FROM => Kept::Bytes(bytes::Bytes::copy_from_slice(&body)),
            _ => Kept::Bytes(body),
        }
    }

    /// The body as stored text (a `Bytes` is never over `BODY_LIMIT`). A buffer that no
    /// one else holds any more, as a request's usually is by the time its row is written,
    /// becomes the text in place: copying a 100 KB request here, with the page faults of
    /// its new buffer, was a fifth of the store writer's time (perf, session 25).
    fn into_text(self) -> String {
        match self {
            Kept::Bytes(body) => String::from_utf8(Vec::from(body))
                .unwrap_or_else(|invalid| body_text(invalid.as_bytes())),
            Kept::Clipped(text) => text,
        }
    }
}

/// A body as stored text, cut at `BODY_LIMIT`.
fn body_text(body: &[u8]) -> String {
    clipped(&super::text_of(body))
}

/// Bodies longer than this are cut (with a note) so one huge request cannot bloat the store.
const BODY_LIMIT: usize = 1 << 20;
/// The most a new stream's bodies reserve (`stream_body_hint`): after one very long stream,
/// the short ones that follow, each kept until the writer takes its row, must not each hold
/// a megabyte; past this, bodies grow by doubling as before.
const STREAM_HINT_LIMIT: usize = 64 << 10;

fn clipped(text: &str) -> String {
    if text.len() <= BODY_LIMIT {
        return text.to_owned();
    }
    let mut end = BODY_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} bytes in all)", &text[..end], text.len())
}

impl Recorder {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            row: Mutex::new(Recording::default()),
            store,
        }
    }

    /// Changes the row.
    pub fn update(&self, change: impl FnOnce(&mut RequestRow)) {
        self.record(|recording| change(&mut recording.row));
    }

    fn record(&self, change: impl FnOnce(&mut Recording)) {
        if let Ok(mut recording) = self.row.lock() {
            change(&mut recording);
        }
    }

    /// The client's request: its body is kept as it came (see [`Bodies`]).
    pub fn client_request(&self, headers: &axum::http::HeaderMap, body: bytes::Bytes) {
        let kept = Kept::new(body.clone());
        let copied = matches!(&kept, Kept::Bytes(kept) if kept.as_ptr() != body.as_ptr());
        let source = if copied { body } else { bytes::Bytes::new() };
        let headers = headers_json(headers);
        self.record(|recording| {
            recording.bodies.client = kept;
            recording.client_source = source;
            recording.row.client_headers = headers;
        });
    }

    /// A body sent to the provider (the last one is stored: a retry's or failover leg's).
    /// Sent on in the client's own buffer, it shares the client's kept body: the store
    /// writer then knows them the same without comparing them (a 50 KB request's compare
    /// was 2 % of its time, perf, session 25).
    pub fn upstream_request(&self, body: bytes::Bytes) {
        self.record(|recording| {
            recording.sent.get_or_insert_with(Instant::now);
            // Held no longer than the first provider request: a retry's is compared instead.
            let source = std::mem::take(&mut recording.client_source);
            let clients = !source.is_empty()
                && (source.as_ptr(), source.len()) == (body.as_ptr(), body.len());
            recording.bodies.upstream = Some(if clients {
                recording.bodies.client.clone()
            } else {
                Kept::new(body)
            });
        });
    }

    /// The provider's answer status and headers, as soon as they arrive.
    pub fn upstream_headers(&self, status: u16, headers: &axum::http::HeaderMap) {
        let text = HeadersJson {
            status: Some(status),
            headers,
        }
        .to_json();
        self.update(|row| row.upstream_headers = text);
    }

    /// The provider's whole answer, or one more stream frame.
    pub fn upstream_response(&self, data: &str, frame: bool) {
        let now = Instant::now();
        self.record(|recording| {
            recording.last = Some(now);
            let body = &mut recording.row.upstream_response;
            if body.len() >= BODY_LIMIT {
                return;
            }
            if frame {
                if !recording.streamed {
                    recording.streamed = true;
                    body.reserve(self.store.stream_body_hint());
                }
                let since_sent = recording
                    .sent
                    .map_or(Duration::ZERO, |sent| now.saturating_duration_since(sent));
                push_milliseconds(body, since_sent);
                body.push('\t');
            }
            body.push_str(data);
            if frame {
                body.push('\n');
            }
        });
    }

    /// More of the answer sent to the client.
    pub fn client_response(&self, data: &[u8]) {
        self.record(|recording| {
            let row = &mut recording.row;
            let body = &mut row.client_response;
            if body.len() >= BODY_LIMIT {
                return;
            }
            // The client often gets the provider's answer as it came (`VerbatimSlot`): a copy
            // of the text already checked. Only as the first piece: a later one is appended.
            if body.is_empty() && data == row.upstream_response.as_bytes() {
                body.clone_from(&row.upstream_response);
                return;
            }
            let text = super::text_of(data);
            if body.is_empty() && recording.streamed {
                body.reserve(self.store.stream_body_hint().max(text.len()));
            }
            body.push_str(&text);
        });
    }

    /// Completes the row with what the request's end knows. The row goes to the store when
    /// the last holder of the recorder lets go, so the client leg's last bytes are in it.
    pub fn finish(&self, change: impl FnOnce(&mut RequestRow)) {
        self.record(|recording| {
            if let (Some(sent), Some(last)) = (recording.sent, recording.last) {
                let ms = last.saturating_duration_since(sent).as_secs_f64() * 1000.0;
                recording.row.upstream_ms = ms;
            }
            change(&mut recording.row);
        });
    }
}

/// Appends `elapsed` in milliseconds with one decimal (`12.3`, rounded half up), in
/// integers: float formatting was most of a stream frame's cost to the recorder, and
/// `write!` still ~600 instructions a frame in u64 (callgrind, +30k a 64-chunk stream).
fn push_milliseconds(text: &mut String, elapsed: Duration) {
    let tenths = u64::try_from((elapsed.as_micros() + 50) / 100).unwrap_or(u64::MAX);
    text.push_str(itoa::Buffer::new().format(tenths / 10));
    text.push('.');
    text.push(char::from(b'0' + (tenths % 10) as u8));
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Ok(recording) = self.row.get_mut() {
            let mut row = std::mem::take(&mut recording.row);
            if recording.streamed {
                self.store.remember_stream_body(&row);
            }
            if row.client_response.len() > BODY_LIMIT {
                row.client_response = clipped(&row.client_response);
            }
            self.store
                .insert_with_bodies(row, std::mem::take(&mut recording.bodies));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For a frame that holds no delta of another row.
    fn no_earlier_row(rowid: i64, index: usize) -> rusqlite::Result<String> {
        panic!("the frame names body {index} of row {rowid}")
    }

    /// A store in `dir` that writes every 20 ms.
    fn test_store(dir: &Path) -> Store {
        Store::open(
            dir.join("capture.db"),
            Duration::from_millis(20),
            Vec::new(),
        )
        .unwrap()
    }

    fn row(id: &str, prompt: &str, backend: &str) -> RequestRow {
        RequestRow {
            id: id.into(),
            started_at: now(),
            backend: backend.into(),
            model_used: "m".into(),
            status: 200,
            prompt_text: prompt.into(),
            response_text: "an answer".into(),
            client_request: "{\"a\":1}".into(),
            ..RequestRow::default()
        }
    }

    /// Records one request whose legs carry these bodies and returns its stored row.
    fn recorded(store: &Arc<Store>, id: &str, legs: [&[u8]; 4]) -> RequestRow {
        let [
            client_request,
            upstream_request,
            upstream_response,
            client_response,
        ] = legs;
        let recorder = Recorder::new(store.clone());
        let client_request = bytes::Bytes::copy_from_slice(client_request);
        recorder.client_request(&axum::http::HeaderMap::new(), client_request);
        recorder.update(|row| {
            row.id = id.into();
            // A row from 1970 would go at once with the 30 days' retention.
            row.started_at = now();
        });
        recorder.upstream_request(bytes::Bytes::copy_from_slice(upstream_request));
        recorder.upstream_response(&String::from_utf8_lossy(upstream_response), false);
        recorder.client_response(client_response);
        drop(recorder);
        store.flush(Duration::from_secs(5));
        store.get(id).unwrap().unwrap()
    }

    #[test]
    fn a_short_request_sent_on_in_the_clients_buffer_shares_the_clients_copy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(test_store(dir.path()));
        let body = bytes::Bytes::from(br#"{"model":"m","messages":[]}"#.to_vec());
        let kept = |recorder: &Recorder| {
            let recording = recorder.row.lock().unwrap();
            let pointer = |kept: &Kept| match kept {
                Kept::Bytes(bytes) => bytes.as_ptr(),
                Kept::Clipped(text) => text.as_ptr(),
            };
            let upstream = recording.bodies.upstream.as_ref().map(pointer);
            (pointer(&recording.bodies.client), upstream)
        };
        // The same buffer: the client's copy, shared.
        let recorder = Recorder::new(store.clone());
        recorder.client_request(&axum::http::HeaderMap::new(), body.clone());
        recorder.upstream_request(body.clone());
        let (client, upstream) = kept(&recorder);
        assert_ne!(client, body.as_ptr(), "a short body is copied");
        assert_eq!(upstream, Some(client));
        // Equal bytes in another buffer: a copy of its own (the writer compares them).
        let recorder = Recorder::new(store.clone());
        recorder.client_request(&axum::http::HeaderMap::new(), body.clone());
        recorder.upstream_request(bytes::Bytes::copy_from_slice(&body));
        let (client, upstream) = kept(&recorder);
        assert!(upstream.is_some_and(|upstream| upstream != client));
        // A slice of the client's buffer at its start is not the client's body.
        let recorder = Recorder::new(store.clone());
        recorder.client_request(&axum::http::HeaderMap::new(), body.clone());
        recorder.upstream_request(body.slice(..10));
        let (client, upstream) = kept(&recorder);
        assert!(upstream.is_some_and(|upstream| upstream != client));
        drop(recorder);
        store.flush(Duration::from_secs(5));
    }

    #[test]
    fn a_leg_that_repeats_the_one_before_it_is_stored_the_same_and_one_that_differs_as_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(test_store(dir.path()));
        let request = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        // The same length as the ones they differ from: a length check alone is not enough.
        let patched = br#"{"model":"n","messages":[{"role":"user","content":"hi"}]}"#;
        let answer = br#"{"choices":[{"message":{"content":"hello"}}]}"#;
        let encoded = br#"{"choices":[{"message":{"content":"hallo"}}]}"#;

        let same = recorded(&store, "req_same", [request, request, answer, answer]);
        assert_eq!(same.upstream_request.as_bytes(), request);
        assert_eq!(same.client_response.as_bytes(), answer);

        let changed = recorded(&store, "req_changed", [request, patched, answer, encoded]);
        assert_eq!(changed.client_request.as_bytes(), request);
        assert_eq!(changed.upstream_request.as_bytes(), patched);
        assert_eq!(changed.upstream_response.as_bytes(), answer);
        assert_eq!(changed.client_response.as_bytes(), encoded);

        // Bytes that are not UTF-8 are stored with U+FFFD in every leg.
        let broken: &[u8] = b"{\"content\":\"\xff\"}";
        let lossy = recorded(&store, "req_lossy", [broken, broken, broken, broken]);
        assert_eq!(lossy.client_request, "{\"content\":\"\u{fffd}\"}");
        assert_eq!(lossy.upstream_request, lossy.client_request);
        assert_eq!(lossy.client_response, lossy.client_request);
    }

    #[test]
    fn a_request_no_one_else_holds_becomes_the_rows_text_in_its_own_buffer() {
        // Sent on unchanged: the provider's request shares the client's buffer; once the
        // handler is done with it, the row takes it over.
        let body = bytes::Bytes::from(vec![b'd'; SHARED_FROM]);
        let at = body.as_ptr();
        let mut row = RequestRow::default();
        let same = Bodies {
            client: Kept::new(body.clone()),
            upstream: Some(Kept::new(body)),
        }
        .fill(&mut row);
        assert!(same);
        assert_eq!(row.client_request.as_ptr(), at, "not copied");
        assert_eq!(row.client_request.len(), SHARED_FROM);
        assert!(row.upstream_request.is_empty());

        // Still held elsewhere: copied, and the other holder's bytes are left as they were.
        let buffer = bytes::Bytes::from([vec![b'x'; 10], vec![b'e'; SHARED_FROM]].concat());
        let body = buffer.slice(10..);
        let mut row = RequestRow::default();
        Bodies {
            client: Kept::new(body.clone()),
            upstream: None,
        }
        .fill(&mut row);
        assert_ne!(row.client_request.as_ptr(), body.as_ptr(), "copied");
        assert_eq!(row.client_request.as_bytes(), &body[..]);
        assert_eq!(&buffer[..10], b"xxxxxxxxxx");

        // Not UTF-8: repaired, as before (and cut at `BODY_LIMIT` once repaired, though
        // each bad byte grew to three).
        let broken = bytes::Bytes::from([&b"\xff"[..], &vec![b'f'; SHARED_FROM]].concat());
        let mut row = RequestRow::default();
        Bodies {
            client: Kept::new(broken),
            upstream: None,
        }
        .fill(&mut row);
        assert!(row.client_request.starts_with('\u{fffd}'));
        assert_eq!(row.client_request.len(), 3 + SHARED_FROM);
    }

    #[test]
    fn small_bodies_are_copied_large_ones_shared_and_huge_ones_clipped_at_once() {
        // A small body may sit in a larger buffer: copied, so a queued row does not keep it.
        let buffer = bytes::Bytes::from(vec![b'a'; 16 << 10]);
        let small = buffer.slice(..100);
        let Kept::Bytes(kept) = Kept::new(small.clone()) else {
            panic!("a small body is kept as bytes");
        };
        assert_eq!(kept, small);
        assert_ne!(kept.as_ptr(), small.as_ptr(), "copied");
        // A large one is shared: copying it is what keeping bytes saves.
        let large = bytes::Bytes::from(vec![b'b'; SHARED_FROM]);
        let Kept::Bytes(kept) = Kept::new(large.clone()) else {
            panic!("a large body is kept as bytes");
        };
        assert_eq!(kept.as_ptr(), large.as_ptr(), "shared");
        // One over the limit is clipped text at once, and stays as clipped when written.
        let huge = bytes::Bytes::from(vec![b'c'; BODY_LIMIT + 1]);
        let Kept::Clipped(text) = Kept::new(huge.clone()) else {
            panic!("a huge body is clipped at once");
        };
        assert_eq!(text, body_text(&huge));
        let mut row = RequestRow::default();
        Bodies {
            client: Kept::new(huge.clone()),
            upstream: Some(Kept::new(huge)),
        }
        .fill(&mut row);
        assert_eq!(row.client_request, text);
        assert_eq!(row.upstream_request, text);
    }

    #[test]
    fn the_last_provider_request_is_stored_and_none_when_none_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(test_store(dir.path()));
        let stored = |id: &str, sent: &[&'static [u8]]| {
            let recorder = Recorder::new(store.clone());
            let client = bytes::Bytes::from_static(br#"{"model":"m"}"#);
            recorder.client_request(&axum::http::HeaderMap::new(), client);
            recorder.update(|row| {
                row.id = id.into();
                row.started_at = now();
            });
            for body in sent {
                recorder.upstream_request(bytes::Bytes::from_static(body));
            }
            drop(recorder);
            store.flush(Duration::from_secs(5));
            store.get(id).unwrap().unwrap()
        };
        // A retry, or a failover leg: the body the answer came from.
        let retried = stored("req_retried", &[br#"{"model":"a"}"#, br#"{"model":"b"}"#]);
        assert_eq!(retried.client_request, r#"{"model":"m"}"#);
        assert_eq!(retried.upstream_request, r#"{"model":"b"}"#);
        // Answered by llmux itself (a command): no provider request.
        let local = stored("req_local", &[]);
        assert_eq!(local.client_request, r#"{"model":"m"}"#);
        assert_eq!(local.upstream_request, "");
    }

    #[test]
    fn a_client_answer_in_pieces_keeps_every_piece_even_one_that_repeats_the_providers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(test_store(dir.path()));
        let recorder = Recorder::new(store.clone());
        recorder.update(|row| {
            row.id = "req_pieces".into();
            row.started_at = now();
        });
        recorder.upstream_response("ab", false);
        recorder.client_response(b"ab");
        recorder.client_response(b"ab");
        drop(recorder);
        store.flush(Duration::from_secs(5));
        assert_eq!(
            store.get("req_pieces").unwrap().unwrap().client_response,
            "abab"
        );
    }

    #[test]
    fn a_provider_request_the_same_as_a_clipped_client_request_is_clipped_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(test_store(dir.path()));
        let huge = vec![b'x'; BODY_LIMIT + 10];
        let row = recorded(&store, "req_huge", [&huge, &huge, b"{}", b"{}"]);
        assert!(
            row.client_request.ends_with("bytes in all)"),
            "clipped with its note"
        );
        assert_eq!(row.upstream_request, row.client_request);
    }

    #[test]
    fn last_seen_finds_the_newest_request_of_a_user_agent_taking_its_underscore_literally() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let start = now().floor() - 1000.0;
        for (id, agent, at) in [
            ("a", "codex_cli_rs/0.63.0 (Linux)", 100.0),
            ("b", "codex_cli_rs/0.63.0 (Linux)", 300.0),
            ("c", "codexXcli/1", 900.0),
            ("d", "claude-cli/2.1.22 (external, cli)", 200.0),
        ] {
            store.insert(RequestRow {
                started_at: start + at,
                user_agent: agent.into(),
                ..row(id, "p", "mock")
            });
        }
        store.flush(Duration::from_secs(5));
        assert_eq!(store.last_seen("codex_").unwrap(), Some(start + 300.0));
        assert_eq!(store.last_seen("claude-cli/").unwrap(), Some(start + 200.0));
        assert_eq!(store.last_seen("GeminiCLI/").unwrap(), None);
    }

    #[test]
    fn tokens_today_counts_the_requests_since_local_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        assert_eq!(store.tokens_today().unwrap(), 0);
        store.insert(RequestRow {
            input_tokens: 1200,
            output_tokens: 34,
            ..row("req_now", "p", "mock")
        });
        // Two days ago is never today, whatever the time zone.
        store.insert(RequestRow {
            started_at: now() - 2.0 * 86_400.0,
            input_tokens: 99_999,
            ..row("req_old", "p", "mock")
        });
        store.flush(Duration::from_secs(5));
        assert_eq!(store.tokens_today().unwrap(), 1234);
    }

    #[test]
    fn long_bodies_are_stored_compressed_in_one_frame_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        let long = format!(
            "{{\"messages\":[{}]}}",
            vec![r#"{"role":"user","content":"the same words again and again"}"#; 200].join(",")
        );
        store.insert(RequestRow {
            client_request: long.clone(),
            upstream_response: "12.0\tdata one\n".repeat(100),
            client_response: "short".into(),
            ..row("req_big", "p", "mock")
        });
        store.insert(RequestRow {
            client_request: long.clone(),
            upstream_request: long.clone(),
            upstream_response: "12.0\tdata one\n".repeat(100),
            client_response: "short".into(),
            ..row("req_twice", "p", "mock")
        });
        store.insert(RequestRow {
            client_request: "{\"a\":1}".into(),
            ..row("req_small", "p", "mock")
        });
        // The client got the provider's own bytes: stored once.
        let answer = "{\"choices\":[{\"message\":{\"content\":\"an answer\"}}]}".repeat(20);
        store.insert(RequestRow {
            client_request: long.clone(),
            upstream_response: answer.clone(),
            ..row("req_answer", "p", "mock")
        });
        store.insert(RequestRow {
            client_request: long.clone(),
            upstream_response: answer.clone(),
            client_response: answer.clone(),
            ..row("req_echo", "p", "mock")
        });
        store.flush(Duration::from_secs(5));
        let got = store.get("req_big").unwrap().unwrap();
        assert_eq!(got.client_request, long);
        assert_eq!(got.upstream_request, "");
        assert_eq!(got.upstream_response, "12.0\tdata one\n".repeat(100));
        assert_eq!(got.client_response, "short");
        let twice = store.get("req_twice").unwrap().unwrap();
        assert_eq!(
            (
                twice.client_request.as_str(),
                twice.upstream_request.as_str()
            ),
            (long.as_str(), long.as_str())
        );
        assert_eq!(
            store.get("req_small").unwrap().unwrap().client_request,
            "{\"a\":1}"
        );

        // Its type, its client request column and its frame's length.
        let stored = |id: &str| -> (String, String, i64) {
            let connection = open(&path).unwrap();
            let (kind, column): (String, String) = connection
                .query_row(
                    "SELECT typeof(bodies), client_request FROM requests WHERE id = ?",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let len = match kind.as_str() {
                "blob" => segments::stored_frame(&connection, id).len() as i64,
                _ => 0,
            };
            (kind, column, len)
        };
        let (kind, column, once) = stored("req_big");
        assert_eq!((kind.as_str(), column.as_str()), ("blob", ""));
        let (pointer, segment): (Vec<u8>, u32) = open(&path)
            .unwrap()
            .query_row(
                "SELECT bodies, segment FROM requests WHERE id = 'req_big'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            pointer[..4],
            *segments::SEGMENT_TAG,
            "the frame is in a segment"
        );
        assert_eq!(pointer[4..8], segment.to_le_bytes());
        let frame = segments::stored_frame(&open(&path).unwrap(), "req_big");
        assert_eq!(frame[..4], *LZ4_TAG);
        assert!(once * 10 < long.len() as i64, "{once} of {}", long.len());
        // The provider's copy of the request costs next to nothing in the same frame.
        let (_, _, twice) = stored("req_twice");
        assert!(twice < once + 64, "{twice} against {once}");
        // A 100 KB request sent on with its model changed: the provider's copy is a delta.
        // Its texts do not repeat, so LZ4 alone would store the copy again.
        let mut rng = fastrand::Rng::with_seed(10);
        let noise =
            |rng: &mut fastrand::Rng| -> String { (0..250).map(|_| rng.alphanumeric()).collect() };
        let agent = format!(
            "{{\"model\":\"gpt-4o\",\"messages\":[{}]}}",
            (0..400)
                .map(|turn| format!(
                    r#"{{"role":"tool","content":"turn {turn}: {}"}}"#,
                    noise(&mut rng)
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let sent = agent.replace("gpt-4o", "gpt-4o-mini");
        store.insert(RequestRow {
            client_request: agent.clone(),
            upstream_request: sent.clone(),
            ..row("req_agent", "p", "mock")
        });
        store.insert(RequestRow {
            client_request: agent.clone(),
            upstream_request: agent.clone(),
            ..row("req_agent_same", "p", "mock")
        });
        store.flush(Duration::from_secs(5));
        let got = store.get("req_agent").unwrap().unwrap();
        assert_eq!((got.client_request, got.upstream_request), (agent, sent));
        let (_, _, delta) = stored("req_agent");
        let (_, _, same) = stored("req_agent_same");
        assert!(delta < same + 64, "{delta} against {same}");
        let (kind, column, _) = stored("req_small");
        assert_eq!((kind.as_str(), column.as_str()), ("null", "{\"a\":1}"));
        let echo = store.get("req_echo").unwrap().unwrap();
        assert_eq!(
            (
                echo.upstream_response.as_str(),
                echo.client_response.as_str()
            ),
            (answer.as_str(), answer.as_str())
        );
        let (_, _, once) = stored("req_answer");
        let (_, _, twice) = stored("req_echo");
        assert_eq!(twice, once, "the repeated answer costs nothing");
    }

    #[test]
    fn a_new_store_has_16_kib_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |path: &Path| -> i64 {
            open(path)
                .unwrap()
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap()
        };
        let new = dir.path().join("new.db");
        drop(Store::open(&new, Duration::from_millis(20), Vec::new()).unwrap());
        assert_eq!(page_size(&new), 16384);

        let old = dir.path().join("old.db");
        let connection = Connection::open(&old).unwrap();
        connection.pragma_update(None, "page_size", 4096).unwrap();
        create_version_1(&connection).unwrap();
        drop(connection);
        let store = Store::open(&old, Duration::from_millis(20), Vec::new()).unwrap();
        store.insert(row("req_in_old", "p", "mock"));
        store.flush(Duration::from_secs(5));
        assert!(store.get("req_in_old").unwrap().is_some());
        drop(store);
        assert_eq!(page_size(&old), 4096);
    }

    /// Rows written before version 7 hold each long body compressed in its own column.
    #[test]
    fn a_row_with_bodies_compressed_one_by_one_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        store.insert(row("req_old_style", "p", "mock"));
        store.flush(Duration::from_secs(5));
        let body = "y".repeat(3000);
        let packed = zstd::bulk::compress(body.as_bytes(), 1).unwrap();
        open(&path)
            .unwrap()
            .execute(
                "UPDATE requests SET client_request = ?, bodies = NULL WHERE id = 'req_old_style'",
                [packed],
            )
            .unwrap();
        let got = store.get("req_old_style").unwrap().unwrap();
        assert_eq!(got.client_request, body);
    }

    #[test]
    fn headers_are_one_json_object_status_first_repeats_joined_credentials_masked() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append("x-seen", "one".parse().unwrap());
        headers.insert("authorization", "Bearer sk-secret".parse().unwrap());
        // Appended after another name: still one entry.
        headers.append("x-seen", "two".parse().unwrap());
        headers.append("cookie", "a=1".parse().unwrap());
        headers.append("cookie", "b=2".parse().unwrap());
        headers.insert(
            "x-odd",
            axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        headers.insert(
            "x-quoted",
            axum::http::HeaderValue::from_bytes(b"a \"b\"\tc\\d").unwrap(),
        );
        let text = HeadersJson {
            status: Some(429),
            headers: &headers,
        }
        .to_json();
        assert!(text.starts_with(r#"{":status":429,"#), "{text}");
        assert!(!text.contains("sk-secret"), "{text}");
        let object: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(object["x-seen"], "one, two");
        assert_eq!(object["authorization"], super::super::redact::MASK);
        assert_eq!(object["x-odd"], "caf\u{fffd}");
        assert_eq!(object["x-quoted"], "a \"b\"\tc\\d");
        assert_eq!(object["cookie"], super::super::redact::MASK);
        assert_eq!(object.as_object().unwrap().len(), 6, "{text}");
        assert_eq!(text.matches("\"x-seen\"").count(), 1, "{text}");
        assert_eq!(headers_json(&axum::http::HeaderMap::new()), "{}");
        let status_only = HeadersJson {
            status: Some(200),
            headers: &axum::http::HeaderMap::new(),
        };
        assert_eq!(status_only.to_json(), r#"{":status":200}"#);
    }

    #[test]
    fn a_body_that_is_not_utf8_is_stored_repaired_and_a_long_one_cut() {
        assert_eq!(body_text(b"{\"a\":\"\xff\"}"), "{\"a\":\"\u{fffd}\"}");
        assert_eq!(body_text("añb".as_bytes()), "añb");
        let long = body_text(&vec![b'x'; BODY_LIMIT + 10]);
        assert!(long.starts_with(&"x".repeat(BODY_LIMIT)));
        assert!(
            long.ends_with(&format!("({} bytes in all)", BODY_LIMIT + 10)),
            "{}",
            &long[BODY_LIMIT..]
        );
    }

    /// Rows written with schema 7 hold their four bodies in one zstd frame.
    #[test]
    fn a_row_with_its_bodies_in_one_zstd_frame_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        store.insert(row("req_schema_7", "p", "mock"));
        store.flush(Duration::from_secs(5));
        let bodies = [
            "{\"model\":\"m\"}",
            "{\"model\":\"n\"}",
            &"z".repeat(3000),
            "",
        ];
        let mut framed = Vec::new();
        for body in bodies {
            framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
            framed.extend_from_slice(body.as_bytes());
        }
        let frame = zstd::bulk::compress(&framed, 1).unwrap();
        open(&path)
            .unwrap()
            .execute(
                "UPDATE requests SET bodies = ? WHERE id = 'req_schema_7'",
                [frame],
            )
            .unwrap();
        let got = store.get("req_schema_7").unwrap().unwrap();
        assert_eq!(
            [
                got.client_request.as_str(),
                &got.upstream_request,
                &got.upstream_response,
                &got.client_response
            ],
            bodies
        );
    }

    #[test]
    fn a_broken_body_frame_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        store.insert(RequestRow {
            client_request: "x".repeat(4000),
            ..row("req_broken", "p", "mock")
        });
        store.flush(Duration::from_secs(5));
        // A frame that is neither LZ4 nor zstd; a zstd frame whose lengths run past its end;
        // LZ4 frames whose length is cut off, that claim 4 GiB, whose block is garbage, and
        // that hold fewer bytes than they claim.
        let cut = zstd::bulk::compress(&[200, 0, 0, 0, b'a'], 1).unwrap();
        let lz4 = |claimed: u32, block: &[u8]| {
            [LZ4_TAG.as_slice(), &claimed.to_le_bytes(), block].concat()
        };
        let short = lz4_flex::block::compress(&[1, 0, 0, 0, b'a']);
        // The first body said to repeat the first body.
        let repeat = [SAME_AS_BODY.to_le_bytes().as_slice(), &[0u8; 12]].concat();
        let looped = lz4_flex::block::compress(&repeat);
        // Raw frames whose second body is a delta: against a body not before it, cut off,
        // copying past its base's end.
        let raw = |second: &[u8]| {
            [
                RAW_TAG.as_slice(),
                &3u32.to_le_bytes(),
                b"abc",
                second,
                &[0u8; 8],
            ]
            .concat()
        };
        let delta = |of: u32, len: u32, ops: &[u8]| {
            raw(&[
                &(DELTA_OF_BODY | of).to_le_bytes(),
                &len.to_le_bytes()[..],
                ops,
            ]
            .concat())
        };
        let copy_past_end = [&[0u8][..], &1u32.to_le_bytes(), &3u32.to_le_bytes()].concat();
        for frame in [
            vec![0u8, 1, 2],
            cut,
            [LZ4_TAG.as_slice(), &[9, 0]].concat(),
            lz4(u32::MAX, &short),
            lz4(5, &[0xff; 12]),
            lz4(64, &short),
            lz4(16, &looped),
            delta(1, 0, &[]),
            delta(0, 200, &copy_past_end),
            delta(0, 9, &copy_past_end),
        ] {
            open(&path)
                .unwrap()
                .execute(
                    "UPDATE requests SET bodies = ? WHERE id = 'req_broken'",
                    [frame],
                )
                .unwrap();
            assert!(store.get("req_broken").is_err());
        }
    }

    #[test]
    fn timeline_buckets_requests_tokens_and_latency() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let at = |id: &str, started_at: f64, status: u16, latency_ms: f64| RequestRow {
            started_at,
            status,
            latency_ms,
            input_tokens: 10,
            output_tokens: 5,
            ..row(id, "p", "mock")
        };
        // A minute boundary ten minutes ago: inside the retention window.
        let base = (now() / 60.0).floor() * 60.0 - 600.0;
        store.insert(at("a", base + 1.0, 200, 100.0));
        store.insert(at("b", base + 30.0, 500, 300.0));
        store.insert(at("c", base + 125.0, 200, 50.0));
        store.insert(at("old", base - 1000.0, 200, 1.0));
        store.flush(Duration::from_secs(5));
        let points = store.timeline(60.0, base - 10.0).unwrap();
        assert_eq!(points.len(), 2, "{points:?}");
        let first = &points[0];
        assert_eq!(first.start, base);
        assert_eq!((first.requests, first.errors), (2, 1));
        assert_eq!((first.input_tokens, first.output_tokens), (20, 10));
        assert_eq!(first.mean_latency_ms, 200.0);
        assert_eq!(first.max_latency_ms, 300.0);
        assert_eq!((points[1].requests, points[1].errors), (1, 0));
        assert!(points[1].start > first.start);
    }

    #[test]
    fn rows_are_stored_listed_searched_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.db");
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        store.insert(row("req_1", "how do I sort a vector in rust", "openai"));
        store.insert(row("req_2", "write a haiku about autumn", "mock"));
        store.flush(Duration::from_secs(5));
        assert_eq!(store.count().unwrap(), 2);
        let found = store
            .list(&Query {
                text: Some("haiku".into()),
                limit: 10,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "req_2");
        let by_backend = store
            .list(&Query {
                backend: Some("openai".into()),
                limit: 10,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(by_backend[0].id, "req_1");
        assert_eq!(
            store.get("req_1").unwrap().unwrap().client_request,
            "{\"a\":1}"
        );
        // Odd search text is data, not FTS syntax.
        assert!(
            store
                .list(&Query {
                    text: Some("\"AND( *".into()),
                    limit: 5,
                    ..Query::default()
                })
                .is_ok()
        );
        store.checkpoint().unwrap();
        let wal = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the checkpoint empties the write-ahead log");
        drop(store);
        let reopened = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        assert_eq!(reopened.count().unwrap(), 2);
    }

    fn now() -> f64 {
        unix_seconds()
    }

    #[test]
    fn retention_deletes_old_rows_and_keeps_the_size_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: Some(256 * 1024),
        };
        let store = Store::open_with(
            dir.path().join("capture.db"),
            Duration::from_millis(20),
            Vec::new(),
            retention,
        )
        .unwrap();
        let mut old = row("old", "from last week", "openai");
        old.started_at = now() - 7.0 * 24.0 * 3600.0;
        store.insert(old);
        for i in 0..200 {
            let mut recent = row(&format!("req_{i}"), "recent question", "openai");
            recent.started_at = now() + f64::from(i);
            // Random text: bodies are compressed, and this must still take room.
            recent.upstream_response = (0..8 * 1024).map(|_| fastrand::alphanumeric()).collect();
            store.insert(recent);
        }
        store.flush(Duration::from_secs(5));
        let reader = open(store.path()).unwrap();
        assert!(used_bytes(&reader).unwrap() <= 256 * 1024);
        assert!(store.get("old").unwrap().is_none(), "past the age");
        let kept = store.count().unwrap();
        assert!(kept > 0 && kept < 200, "kept {kept}");
        // The newest rows are the ones kept, and the search index follows the rows.
        assert!(store.get("req_199").unwrap().is_some());
        assert!(store.get("req_0").unwrap().is_none());
        let fts: u64 = reader
            .query_row("SELECT COUNT(*) FROM requests_fts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fts, kept);
    }

    #[test]
    fn every_text_of_a_row_is_masked_whether_its_bodies_repeat_or_not() {
        let secret = "sk-live-0123456789abcdef";
        let redactor = Redactor::from(vec![secret.to_owned()]);
        let with = |what: &str| format!("{what} {secret}");
        let mut different = RequestRow {
            client_headers: with("ch"),
            upstream_headers: with("uh"),
            client_request: with("creq"),
            upstream_request: with("ureq"),
            upstream_response: with("uresp"),
            client_response: with("cresp"),
            prompt_text: with("p"),
            response_text: with("r"),
            error: with("e"),
            tool_calls: vec![CapturedToolCall {
                name: "t".into(),
                arguments: with("a"),
            }],
            ..RequestRow::default()
        };
        let mut repeating = RequestRow {
            upstream_request: different.client_request.clone(),
            client_response: different.upstream_response.clone(),
            ..different.clone()
        };
        // A provider request known to be the client's is left out, not masked again.
        let mut left_out = RequestRow {
            upstream_request: String::new(),
            ..repeating.clone()
        };
        redact_row(&redactor, &mut different, false);
        redact_row(&redactor, &mut repeating, false);
        redact_row(&redactor, &mut left_out, true);
        assert_eq!(left_out.upstream_request, "");
        left_out.upstream_request = "ureq ****".into();
        for row in [&different, &repeating, &left_out] {
            let texts = [
                &row.client_headers,
                &row.upstream_headers,
                &row.client_request,
                &row.upstream_request,
                &row.upstream_response,
                &row.client_response,
                &row.prompt_text,
                &row.response_text,
                &row.error,
                &row.tool_calls[0].arguments,
            ];
            for text in texts {
                assert!(text.ends_with(" ****") && !text.contains(secret), "{text}");
            }
        }
        assert_eq!(different.upstream_request, "ureq ****");
        assert_eq!(repeating.upstream_request, "creq ****");
        assert_eq!(repeating.client_response, "uresp ****");
    }

    #[test]
    fn a_new_redactor_masks_the_rows_queued_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path().join("c.db"),
            Duration::from_millis(20),
            vec!["old-secret-1234".to_owned()],
        )
        .unwrap();
        let prompt = "keys: old-secret-1234 new-secret-5678";
        store.insert(row("req_before", prompt, "mock"));
        store.set_redactor(Redactor::from(vec![
            "old-secret-1234".to_owned(),
            "new-secret-5678".to_owned(),
        ]));
        store.insert(row("req_after", prompt, "mock"));
        store.flush(Duration::from_secs(5));
        let text = |id| store.get(id).unwrap().unwrap().prompt_text;
        assert_eq!(text("req_before"), "keys: **** new-secret-5678");
        assert_eq!(text("req_after"), "keys: **** ****");
    }

    #[test]
    fn delete_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path().join("c.db"),
            Duration::from_millis(20),
            Vec::new(),
        )
        .unwrap();
        let mut failed = row("req_1", "a", "openai");
        failed.status = 429;
        failed.input_tokens = 10;
        store.insert(failed);
        let mut ok = row("req_2", "b", "openai");
        ok.input_tokens = 5;
        ok.output_tokens = 7;
        store.insert(ok);
        store.insert(row("req_3", "c", "gemini"));
        store.flush(Duration::from_secs(5));
        let stats = store.stats().unwrap();
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.dropped, 0);
        let openai = &stats.backends[0];
        assert_eq!((openai.backend.as_str(), openai.requests), ("openai", 2));
        assert_eq!(
            (openai.errors, openai.input_tokens, openai.output_tokens),
            (1, 15, 7)
        );
        assert!(store.delete("req_1").unwrap());
        assert!(!store.delete("req_1").unwrap());
        assert_eq!(store.count().unwrap(), 2);
        let searched = store
            .list(&Query {
                text: Some("answer".into()),
                limit: 10,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(searched.len(), 2, "the deleted row left the search index");
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let connection = open(&path).unwrap();
            create_version_1(&connection).unwrap();
            connection
                .execute(
                    "INSERT INTO requests VALUES (1, 'old_1', ?1, 's', 'h', 'ua', 'openai_chat',
                     'openai', 'm', 'm', '', 200, 0, 12.5, 3, 4, '', '{}', '{}', '{}',
                     'kept prompt', 'kept answer')",
                    params![now()],
                )
                .unwrap();
            connection
                .execute(
                    "INSERT INTO requests_fts (rowid, prompt_text, response_text)
                     VALUES (1, 'kept prompt', 'kept answer')",
                    [],
                )
                .unwrap();
        }
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        assert_eq!(indexed_to(&path), 1, "the migrated rows are all indexed");
        let version: i64 = open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let old = store.get("old_1").unwrap().unwrap();
        assert_eq!(
            (old.latency_ms, old.ttfb_ms, old.input_tokens),
            (12.5, 0.0, 3)
        );
        let mut new = row("new_1", "fresh prompt", "openai");
        new.ttfb_ms = 5.0;
        new.upstream_ms = 9.0;
        store.insert(new);
        store.flush(Duration::from_secs(5));
        let found = store
            .list(&Query {
                text: Some("kept".into()),
                limit: 5,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(found[0].id, "old_1");
        assert_index_has_no_positions(&path);
        // The rebuilt search index keeps no copy of the texts.
        let tables: Vec<String> = open(&path)
            .unwrap()
            .prepare("SELECT name FROM sqlite_master WHERE name LIKE 'requests_fts%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !tables.iter().any(|t| t == "requests_fts_content"),
            "{tables:?}"
        );
        let fresh = store.get("new_1").unwrap().unwrap();
        assert_eq!((fresh.ttfb_ms, fresh.upstream_ms), (5.0, 9.0));
    }

    #[test]
    fn a_schema_12_index_is_searched_read_only_then_rebuilt_without_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v12.db");
        {
            // Two rows indexed by a schema 12 writer (positions kept), a third not yet.
            let mut sink = writer_sink(&path);
            let commit_row = |sink: &mut Sink, id, prompt| {
                let mut batch = vec![row(id, prompt, "openai").into()];
                commit(
                    sink,
                    &mut batch,
                    &mut Packer::default(),
                    &mut Chains::default(),
                );
            };
            commit_row(&mut sink, "m_1", "use std::sync::Arc;");
            commit_row(&mut sink, "m_2", "std and sync apart");
            sink.connection
                .execute_batch(
                    "DROP TABLE requests_fts;
                     CREATE VIRTUAL TABLE requests_fts
                         USING fts5(prompt_text, response_text, content='', contentless_delete=1);
                     INSERT INTO requests_fts (rowid, prompt_text, response_text)
                         SELECT rowid, prompt_text, response_text FROM requests;
                     UPDATE search_index SET indexed_to = (SELECT MAX(rowid) FROM requests);
                     PRAGMA user_version = 12;",
                )
                .unwrap();
            commit_row(&mut sink, "m_3", "std::sync again");
        }
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(
            search(&reader, "std::sync"),
            ["m_1"],
            "the third is not indexed yet"
        );
        drop(reader);
        let store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        assert_eq!(search(&store, "std::sync"), ["m_3", "m_1"]);
        assert_eq!(search(&store, "apart"), ["m_2"]);
        assert_eq!(
            (fts_rows(&path), indexed_to(&path)),
            (3, 3),
            "each row once"
        );
        assert_index_has_no_positions(&path);
    }

    fn assert_index_has_no_positions(path: &Path) {
        let index: String = open(path)
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'requests_fts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(index.contains("detail=none"), "{index}");
    }

    /// A writer's connection and segments for the store at `path`, made and migrated.
    fn writer_sink(path: &Path) -> Sink {
        let connection = open(path).unwrap();
        migrate(&connection).unwrap();
        let segments = Segments::open(&connection, None).unwrap();
        Sink {
            connection,
            segments,
        }
    }

    fn indexed_to(path: &Path) -> i64 {
        open(path)
            .unwrap()
            .query_row("SELECT indexed_to FROM search_index", [], |r| r.get(0))
            .unwrap()
    }

    fn fts_rows(path: &Path) -> u64 {
        open(path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM requests_fts", [], |r| r.get(0))
            .unwrap()
    }

    fn search(store: &Store, text: &str) -> Vec<String> {
        let query = Query {
            text: Some(text.into()),
            limit: 100,
            ..Query::default()
        };
        let found = store.list(&query).unwrap();
        found.into_iter().map(|row| row.id).collect()
    }

    #[test]
    fn committed_rows_wait_for_the_search_index_until_it_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut sink = writer_sink(&path);
        let mut packer = Packer::default();
        let mut batch: Vec<Pending> = (0..10)
            .map(|i| row(&format!("req_{i}"), "sorting vectors", "openai").into())
            .collect();
        commit(&mut sink, &mut batch, &mut packer, &mut Chains::default());
        let connection = &sink.connection;
        assert_eq!((fts_rows(&path), indexed_to(&path)), (0, 0));
        assert_eq!(unindexed_rows(connection).unwrap(), 10);
        assert_eq!(index_rows(connection).unwrap(), 10);
        assert_eq!((fts_rows(&path), indexed_to(&path)), (10, 10));
        let mut batch = vec![row("req_10", "one more", "openai").into()];
        commit(&mut sink, &mut batch, &mut packer, &mut Chains::default());
        let connection = &sink.connection;
        assert_eq!(index_rows(connection).unwrap(), 1, "only the new row");
        assert_eq!((fts_rows(&path), indexed_to(&path)), (11, 11));
        assert_eq!(index_rows(connection).unwrap(), 0);
    }

    #[test]
    fn rows_are_indexed_when_asked_when_thousands_wait_or_when_the_oldest_waited_long() {
        let start = Instant::now();
        let within = Duration::from_secs(10);
        let mut unindexed = Unindexed::new(0, within);
        assert!(!unindexed.due(true, start), "nothing to index");
        unindexed.add(10);
        let since = unindexed.since.expect("the oldest row's time");
        assert!(since >= start);
        assert!(unindexed.due(true, since), "idle, flushed or closing");
        assert!(!unindexed.due(false, since + within / 2));
        unindexed.add(5);
        assert_eq!(
            unindexed.since,
            Some(since),
            "the oldest row's time is kept"
        );
        assert!(
            unindexed.due(false, since + within),
            "the oldest waited long"
        );
        unindexed.add(INDEX_BATCH as usize);
        assert!(unindexed.due(false, since), "a batch is waiting");
        unindexed.clear();
        assert!(!unindexed.due(true, start + within * 2));
        unindexed.add(0);
        assert!(
            !unindexed.due(false, start + within * 2),
            "no rows, no clock"
        );
        // A failed try keeps the rows, and the next comes `within` later.
        unindexed.add(3);
        let failed = Instant::now();
        unindexed.retry_later(failed);
        assert!(!unindexed.due(true, failed + within / 2), "backing off");
        assert!(unindexed.due(true, failed + within), "tried again");
        assert_eq!(unindexed.rows, 3);
    }

    #[test]
    fn a_search_finds_rows_the_writer_has_neither_written_nor_indexed_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        // A minute before the writer would write on its own.
        let store = Store::open(&path, Duration::from_secs(60), Vec::new()).unwrap();
        store.insert(row("req_1", "a haiku about autumn", "openai"));
        store.insert(row("req_2", "sorting vectors", "openai"));
        assert_eq!(search(&store, "haiku"), ["req_1"]);
        assert_eq!((fts_rows(&path), indexed_to(&path)), (2, 2));
    }

    #[test]
    fn rows_written_before_an_abrupt_end_are_indexed_at_the_next_quiet_moment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        {
            // Committed by a writer that ended before it indexed them.
            let mut sink = writer_sink(&path);
            let mut batch = vec![row("req_1", "left behind", "openai").into()];
            commit(
                &mut sink,
                &mut batch,
                &mut Packer::default(),
                &mut Chains::default(),
            );
        }
        let _store = Store::open(&path, Duration::from_millis(20), Vec::new()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while fts_rows(&path) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!((fts_rows(&path), indexed_to(&path)), (1, 1));
    }

    #[test]
    fn a_row_after_the_newest_one_was_deleted_is_still_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = test_store(dir.path());
        let path = store.path().to_owned();
        store.insert(row("req_1", "first question", "openai"));
        store.insert(row("req_2", "second question", "openai"));
        store.flush(Duration::from_secs(5));
        assert_eq!(indexed_to(&path), 2);
        // The next row takes the deleted one's rowid, 2.
        assert!(store.delete("req_2").unwrap());
        store.insert(row("req_3", "third question", "openai"));
        assert_eq!(search(&store, "third"), ["req_3"]);
        assert_eq!(search(&store, "second"), Vec::<String>::new());
    }

    #[test]
    fn frames_packed_one_after_another_each_hold_only_their_own_bytes() {
        // The packer keeps its buffers from row to row; a frame after a longer one must
        // not carry the longer one's bytes, whether compressed or stored as it is.
        let mut packer = Packer::default();
        let long = "a long answer that repeats itself. ".repeat(1000);
        let noise: String = (0..2000).map(|_| fastrand::alphanumeric()).collect();
        // Compressed (long), compressed (shorter), raw (random letters LZ4 cannot shrink,
        // the repeat stored once), compressed again after the raw one.
        let rows = [
            ["question", "question", long.as_str(), long.as_str()],
            ["question", "", &long[..700], ""],
            [noise.as_str(), noise.as_str(), "", ""],
            ["another question", "", &long[..900], "a short answer"],
        ];
        let expected_tags = [LZ4_TAG, LZ4_TAG, RAW_TAG, LZ4_TAG];
        for (at, (bodies, tag)) in rows.iter().zip(expected_tags).enumerate() {
            let total: usize = bodies.iter().map(|b| b.len()).sum();
            let frame = packer
                .pack_bodies(*bodies, None)
                .map(|(frame, _)| frame)
                .unwrap_or_else(|| panic!("row {at} not packed"));
            assert!(frame.starts_with(tag), "row {at}: {:?}", &frame[..4]);
            assert!(frame.len() < total, "row {at}: {} bytes", frame.len());
            let read = unpack_bodies(frame, 0, &mut no_earlier_row).unwrap();
            assert_eq!(read, bodies.map(str::to_owned), "row {at}");
        }
    }

    #[test]
    fn a_frame_lz4_hardly_shrinks_is_stored_as_it_is_and_its_size_skips_lz4_for_a_while() {
        let mut packer = Packer::default();
        let mut pack = |request: &str, answer: &str| -> Vec<u8> {
            let bodies = [request, request, answer, answer];
            let frame = packer
                .pack_bodies(bodies, None)
                .expect("stored as a frame")
                .0
                .to_vec();
            let read = unpack_bodies(&frame, 0, &mut no_earlier_row).unwrap();
            assert_eq!(read, bodies.map(str::to_owned), "read back whole");
            frame
        };
        let noise = |len: usize| -> String { (0..len).map(|_| fastrand::alphanumeric()).collect() };
        let repeated = |len: usize| "the same words again and again. ".repeat(len / 32);
        // Random letters: LZ4 saves nothing; the repeated request is still stored once.
        let frame = pack(&noise(3000), "an answer");
        assert!(
            frame.starts_with(RAW_TAG) && frame.len() < 3100,
            "{}",
            frame.len()
        );
        // The next 15 frames of that size are not tried, however well they would shrink.
        for _ in 0..LZ4_RETRY_AFTER {
            assert!(pack(&repeated(3000), "an answer").starts_with(RAW_TAG));
        }
        // Frames of another size are.
        assert!(pack(&repeated(40_000), "an answer").starts_with(LZ4_TAG));
        // The 16th is tried again, and compressed when that pays.
        let frame = pack(&repeated(3000), "an answer");
        assert!(
            frame.starts_with(LZ4_TAG) && frame.len() < 500,
            "{}",
            frame.len()
        );
        assert!(pack(&repeated(3000), "an answer").starts_with(LZ4_TAG));
    }

    #[test]
    fn a_stream_frame_is_stamped_with_its_milliseconds_to_one_decimal() {
        let stamp = |micros| {
            let mut text = String::new();
            push_milliseconds(&mut text, Duration::from_micros(micros));
            text
        };
        assert_eq!(stamp(0), "0.0");
        assert_eq!(stamp(50), "0.1");
        assert_eq!(stamp(10_000), "10.0");
        assert_eq!(stamp(u64::MAX), "18446744073709551.6");
        assert_eq!(stamp(12_340), "12.3");
        assert_eq!(stamp(12_350), "12.4");
        assert_eq!(stamp(999_960), "1000.0");
        assert_eq!(stamp(86_400_000_000), "86400000.0");
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open(&path, Duration::from_millis(20), Vec::new())
            .err()
            .unwrap();
        assert!(err.contains("newer than this llmux"), "{err}");
    }
}
