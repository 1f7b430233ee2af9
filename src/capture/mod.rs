//! Wire capture: the provider leg of every request, written as JSON Lines in the seed's
//! "Buffered JSON Lines" format (fields `timestamp_iso`, `timestamp_unix`, `direction`,
//! `source`, `destination`, `session_id`, `backend`, `model`, `key_name`, `content_type`,
//! `content_length`, `payload`, `metadata`; directions `outbound_request`,
//! `inbound_response`, `stream_start`, `stream_chunk`, `stream_end`), so the seed's jq
//! recipes work on our files.
//!
//! Taps never wait: records go over a bounded channel to a writer thread, and when it is
//! full they are dropped and counted ([`Capture::dropped`]). The writer buffers, flushes on
//! an interval or when the buffer fills, rotates the file by size (`file.1` … `file.N`) and
//! deletes the oldest rotated files to stay under the total cap. `key_name` is the key's
//! name, never the key: keys travel in headers, which are not captured.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

mod delta;
pub mod redact;
pub mod store;
mod tokens;

pub use redact::Redactor;

/// Records waiting for the writer at most; beyond this they are dropped and counted.
const QUEUE: usize = 8192;
/// How long the writer lets records gather before taking them, at most.
const WRITER_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSettings {
    pub file: PathBuf,
    /// Bytes buffered before a write (`capture_buffer_size`, 64 KiB).
    pub buffer_size: usize,
    /// The longest a record waits in the buffer (`capture_flush_interval`, 1 s).
    pub flush_interval: Duration,
    /// Records written per flush at most (`capture_max_entries_per_flush`, 100).
    pub max_entries_per_flush: usize,
    /// Size at which the file is rotated (`capture_max_bytes`, 100 MB).
    pub max_bytes: u64,
    /// Rotated files kept (`capture_max_files`, 5).
    pub max_files: usize,
    /// All capture files together at most (`capture_total_max_bytes`, 500 MB).
    pub total_max_bytes: u64,
}

/// Where a record was tapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    OutboundRequest,
    InboundResponse,
    StreamStart,
    StreamChunk,
    StreamEnd,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::OutboundRequest => "outbound_request",
            Direction::InboundResponse => "inbound_response",
            Direction::StreamStart => "stream_start",
            Direction::StreamChunk => "stream_chunk",
            Direction::StreamEnd => "stream_end",
        }
    }
}

/// Who and what a request is, shared by all its records.
#[derive(Debug, Clone, Default)]
pub struct TapInfo {
    pub request_id: String,
    pub session_id: String,
    pub client_host: String,
    pub user_agent: String,
    pub backend: String,
    pub model: String,
    pub key_name: Option<String>,
}

enum Message {
    Record(Box<Pending>),
    Flush(SyncSender<()>),
    /// Records queued from now on are masked with this one (saved settings named new keys).
    Redactor(Box<Redactor>),
}

/// The capture handle taps write to. Cheap to share.
pub struct Capture {
    tx: SyncSender<Message>,
    dropped: AtomicU64,
}

impl Capture {
    /// Starts the writer thread. The redactor masks keys wherever they appear in a record
    /// (a user may paste a key into a prompt).
    pub fn start(
        settings: CaptureSettings,
        redactor: impl Into<Redactor>,
    ) -> std::io::Result<Self> {
        if let Some(dir) = settings.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&settings.file)?;
        let (tx, rx) = sync_channel(QUEUE);
        let redactor = redactor.into();
        std::thread::Builder::new()
            .name("llmux-capture".into())
            .spawn(move || Writer::new(settings, file, redactor).run(rx))?;
        Ok(Self {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues one record; never blocks.
    pub fn record(&self, tap: &Arc<TapInfo>, direction: Direction, payload: Payload<'_>) {
        let (kind, data) = match payload {
            Payload::Json(bytes) => (PayloadKind::Json, bytes.to_vec()),
            Payload::Text(text) => (PayloadKind::Text, text.as_bytes().to_vec()),
            Payload::None => (PayloadKind::None, Vec::new()),
        };
        let pending = Pending {
            info: tap.clone(),
            direction,
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            kind,
            data,
        };
        match self.tx.try_send(Message::Record(Box::new(pending))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes everything queued so far (waiting at most `timeout`).
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }

    /// Masks the records queued from now on with `redactor`.
    pub fn set_redactor(&self, redactor: Redactor) {
        let _ = self.tx.send(Message::Redactor(Box::new(redactor)));
    }
}

/// What a record carries.
pub enum Payload<'a> {
    /// A JSON body.
    Json(&'a [u8]),
    /// Stream text (one SSE frame's data, or nothing).
    Text(&'a str),
    None,
}

/// What a tap hands the writer: copied bytes, formatted on the writer thread so the
/// request path only pays for a copy and a queue push.
struct Pending {
    info: Arc<TapInfo>,
    direction: Direction,
    at: Duration,
    kind: PayloadKind,
    data: Vec<u8>,
}

#[derive(Clone, Copy)]
enum PayloadKind {
    Json,
    Text,
    None,
}

/// A payload as the record carries it: the provider's JSON as it came (when it is one line),
/// else parsed, else a string.
#[derive(Serialize)]
#[serde(untagged)]
enum PayloadOut<'a> {
    Raw(&'a RawValue),
    Parsed(Value),
    Text(Cow<'a, str>),
    Null,
}

/// Bytes as text: checked as UTF-8 on the fast path, repaired only when they are not.
/// `String::from_utf8_lossy` alone walks every byte one by one (for the capture store's four
/// bodies, 32k instructions a request).
pub(crate) fn text_of(bytes: &[u8]) -> Cow<'_, str> {
    std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), Cow::Borrowed)
}

fn payload_out(data: &[u8]) -> PayloadOut<'_> {
    let text = text_of(data);
    if let Cow::Borrowed(text) = text {
        // JSON Lines: a payload that spans lines is re-serialised onto one.
        let one_line = !crate::protocol::spans_lines(text);
        if one_line && let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
            return PayloadOut::Raw(raw);
        }
        if !one_line && let Ok(value) = serde_json::from_str::<Value>(text) {
            return PayloadOut::Parsed(value);
        }
        return PayloadOut::Text(Cow::Borrowed(text));
    }
    PayloadOut::Text(text)
}

#[derive(Serialize)]
struct Record<'a> {
    timestamp_iso: String,
    timestamp_unix: f64,
    direction: &'static str,
    source: String,
    destination: &'a str,
    session_id: &'a str,
    backend: &'a str,
    model: &'a str,
    key_name: &'a Option<String>,
    content_type: &'static str,
    content_length: usize,
    payload: PayloadOut<'a>,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    client_host: &'a str,
    user_agent: &'a str,
    request_id: &'a str,
}

fn line(pending: &Pending) -> String {
    let tap = &*pending.info;
    let (content_type, payload) = match pending.kind {
        PayloadKind::Json => ("json", payload_out(&pending.data)),
        PayloadKind::Text => ("text", payload_out(&pending.data)),
        PayloadKind::None => ("none", PayloadOut::Null),
    };
    let source = if tap.user_agent.is_empty() {
        tap.client_host.clone()
    } else {
        format!("{}({})", tap.client_host, tap.user_agent)
    };
    let record = Record {
        timestamp_iso: iso8601(pending.at),
        timestamp_unix: pending.at.as_secs_f64(),
        direction: pending.direction.as_str(),
        source,
        destination: &tap.backend,
        session_id: &tap.session_id,
        backend: &tap.backend,
        model: &tap.model,
        key_name: &tap.key_name,
        content_type,
        content_length: pending.data.len(),
        payload,
        metadata: Metadata {
            client_host: &tap.client_host,
            user_agent: &tap.user_agent,
            request_id: &tap.request_id,
        },
    };
    let mut line = serde_json::to_string(&record).unwrap_or_default();
    line.push('\n');
    line
}

/// `2025-01-10T15:58:41.039145+00:00` from a time since the epoch (UTC).
pub(crate) fn iso8601(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let micros = since_epoch.subsec_micros();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    settings: CaptureSettings,
    /// Masks keys and key-shaped text in every line before it is written.
    redactor: Redactor,
    file: File,
    written: u64,
    buffer: String,
    entries: usize,
}

impl Writer {
    fn new(settings: CaptureSettings, file: File, redactor: Redactor) -> Self {
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self {
            settings,
            redactor,
            file,
            written,
            buffer: String::new(),
            entries: 0,
        }
    }

    /// Waits for work, then sleeps a tick and takes everything queued meanwhile: under load
    /// the writer wakes once a tick, not once a record, and taps never pay for a wake-up.
    fn run(mut self, rx: Receiver<Message>) {
        let interval = self.settings.flush_interval;
        let tick = interval.min(WRITER_TICK);
        // The oldest buffered record is written by this time, however busy the queue stays.
        let mut deadline: Option<Instant> = None;
        loop {
            let wait = deadline.map_or(interval, |at| at.saturating_duration_since(Instant::now()));
            match rx.recv_timeout(wait) {
                Ok(message) => self.take(message, &mut deadline),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            std::thread::sleep(tick);
            loop {
                match rx.try_recv() {
                    Ok(message) => self.take(message, &mut deadline),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if deadline.is_some_and(|due| Instant::now() >= due) {
                self.flush();
                deadline = None;
            }
        }
    }

    fn take(&mut self, message: Message, deadline: &mut Option<Instant>) {
        match message {
            Message::Record(pending) => {
                deadline.get_or_insert_with(|| Instant::now() + self.settings.flush_interval);
                let mut line = line(&pending);
                self.redactor.redact_in_place(&mut line);
                self.buffer.push_str(&line);
                self.entries += 1;
                if self.buffer.len() >= self.settings.buffer_size
                    || self.entries >= self.settings.max_entries_per_flush
                {
                    self.flush();
                    *deadline = None;
                }
            }
            Message::Flush(done) => {
                self.flush();
                *deadline = None;
                let _ = done.send(());
            }
            Message::Redactor(next) => self.redactor = *next,
        }
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        if self.written > 0 && self.written + self.buffer.len() as u64 > self.settings.max_bytes {
            self.rotate();
        }
        if self.file.write_all(self.buffer.as_bytes()).is_ok() {
            self.written += self.buffer.len() as u64;
            let _ = self.file.flush();
        }
        self.buffer.clear();
        self.entries = 0;
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.settings.file.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// `file` -> `file.1` -> `file.2` …, keeping `max_files` rotated files and the total
    /// under `total_max_bytes`.
    fn rotate(&mut self) {
        let keep = self.settings.max_files;
        let _ = std::fs::remove_file(self.rotated(keep.max(1)));
        for n in (1..keep.max(1)).rev() {
            let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
        }
        if keep == 0 {
            let _ = std::fs::remove_file(&self.settings.file);
        } else {
            let _ = std::fs::rename(&self.settings.file, self.rotated(1));
        }
        // Oldest rotated files go first while the total is over the cap.
        let mut total: u64 = (1..=keep)
            .filter_map(|n| std::fs::metadata(self.rotated(n)).ok())
            .map(|m| m.len())
            .sum();
        let mut n = keep;
        while total + self.settings.max_bytes > self.settings.total_max_bytes && n > 0 {
            if let Ok(meta) = std::fs::metadata(self.rotated(n)) {
                total = total.saturating_sub(meta.len());
                let _ = std::fs::remove_file(self.rotated(n));
            }
            n -= 1;
        }
        if let Ok(file) = open_append(&self.settings.file) {
            self.file = file;
            self.written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(
            iso8601(Duration::from_micros(1_736_524_721_039_145)),
            "2025-01-10T15:58:41.039145+00:00"
        );
        assert_eq!(iso8601(Duration::ZERO), "1970-01-01T00:00:00.000000+00:00");
    }

    fn record_of(kind: PayloadKind, data: &[u8]) -> Value {
        let pending = Pending {
            info: Arc::new(TapInfo::default()),
            direction: Direction::InboundResponse,
            at: Duration::from_secs(1),
            kind,
            data: data.to_vec(),
        };
        let line = line(&pending);
        assert_eq!(
            line.matches('\n').count(),
            1,
            "one record, one line: {line:?}"
        );
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn payloads_stay_json_on_one_line() {
        let kept = record_of(PayloadKind::Json, br#"{"b":1,"a":[true]}"#);
        assert_eq!(kept["payload"], json!({"b": 1, "a": [true]}));
        assert_eq!(kept["content_length"], 18);
        let pretty = record_of(PayloadKind::Json, b"{\n  \"id\": \"x\"\n}\n");
        assert_eq!(pretty["payload"], json!({"id": "x"}));
        let text = record_of(PayloadKind::Text, b"[DONE]");
        assert_eq!(text["payload"], "[DONE]");
        let broken = record_of(PayloadKind::Text, b"not\njson \xff");
        assert!(broken["payload"].as_str().unwrap().starts_with("not\njson"));
        assert_eq!(record_of(PayloadKind::None, b"")["payload"], Value::Null);
    }
}

/// One request's taps: the JSONL capture and the store's row, whichever are on.
#[derive(Clone)]
pub struct Tap {
    capture: Option<std::sync::Arc<Capture>>,
    recorder: Option<std::sync::Arc<store::Recorder>>,
    info: std::sync::Arc<TapInfo>,
}

impl Tap {
    pub fn new(
        capture: Option<std::sync::Arc<Capture>>,
        recorder: Option<std::sync::Arc<store::Recorder>>,
        info: TapInfo,
    ) -> Self {
        Self {
            capture,
            recorder,
            info: std::sync::Arc::new(info),
        }
    }

    /// The provider's answer status and headers, for the store (the JSONL format has no
    /// place for them).
    pub fn upstream_headers(&self, status: u16, headers: &axum::http::HeaderMap) {
        if let Some(recorder) = &self.recorder {
            recorder.upstream_headers(status, headers);
        }
    }

    /// The body sent to the provider, handed to the store's row as bytes (see
    /// [`store::Recorder::upstream_request`]). Every provider request is recorded here.
    pub fn request_sent(&self, body: &bytes::Bytes) {
        if let Some(recorder) = &self.recorder {
            recorder.upstream_request(body.clone());
        }
        if let Some(capture) = &self.capture {
            capture.record(&self.info, Direction::OutboundRequest, Payload::Json(body));
        }
    }

    /// Records what came back from the provider (its request goes through
    /// [`Tap::request_sent`]).
    pub fn record(&self, direction: Direction, payload: Payload<'_>) {
        if let Some(recorder) = &self.recorder {
            match (direction, &payload) {
                (Direction::InboundResponse, Payload::Json(body)) => {
                    recorder.upstream_response(&text_of(body), false);
                }
                (Direction::StreamChunk, Payload::Text(data)) => {
                    recorder.upstream_response(data, true);
                }
                _ => {}
            }
        }
        if let Some(capture) = &self.capture {
            capture.record(&self.info, direction, payload);
        }
    }
}
