//! Body frames in segment files beside the database (schema 12).
//!
//! A row's bodies (its frame, [`super::Packer`]) are most of its bytes: 3.5 KB of a bench
//! row's ~4 KB. Inside SQLite each of those bytes was written to the write-ahead log, read
//! back and written again to the database file at a checkpoint, with their b-tree pages
//! balanced on the way: the writer thread spent 16.3 µs a row with the frames in the
//! database and 10.4 without them (bench/results/capture-store.md, session 29). Appended
//! to a file instead, a frame is written once, with one `write` a commit.
//!
//! The files live in a directory named after the database (`capture.sqlite-bodies/`), one
//! file a segment (`00000001.seg`, ...); the writer appends to the newest until it holds
//! `limit` bytes, then starts the next. A row's `bodies` column holds a [`Pointer`] to its
//! frame and its `segment` column the segment's number (indexed), so retention finds the
//! segments no row points into any more and deletes their files (`remove_unreferenced`).
//! The `segments` table keeps the bytes of each segment's frames that rows still point to,
//! in the same transactions that add and delete the rows: the size cap counts those
//! (`live_bytes`), so retention deletes rows as it did when frames were in the database.
//! The files hold at most about one partly deleted segment more (oldest rows go first).
//! A frame carries a CRC-32: a frame a crash cut short (segments are not synced at every
//! commit, as the log is not) reads as lost, never as some other text.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

/// The first bytes of a `bodies` value that points into a segment file.
pub(super) const SEGMENT_TAG: &[u8; 4] = b"seg\0";
/// The tag, the segment's number (u32), the frame's offset (u64), its length (u32) and its
/// CRC-32 (u32), all little-endian.
const POINTER_LEN: usize = 24;
/// A segment holds this much at most (a commit's frames may take it a little past), and
/// less when the store's size cap is small: retention frees a segment's bytes only when
/// all of its rows are gone, so a segment is at most a 64th of the cap.
const SEGMENT_MAX: u64 = 16 << 20;
const SEGMENT_MIN: u64 = 64 << 10;

/// Where a frame is: in which segment, where in it, how long, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pointer {
    pub segment: u32,
    offset: u64,
    len: u32,
    crc: u32,
}

impl Pointer {
    /// The value stored in a row's `bodies` column.
    pub fn to_bytes(self) -> [u8; POINTER_LEN] {
        let mut bytes = [0; POINTER_LEN];
        bytes[..4].copy_from_slice(SEGMENT_TAG);
        bytes[4..8].copy_from_slice(&self.segment.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.offset.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.len.to_le_bytes());
        bytes[20..].copy_from_slice(&self.crc.to_le_bytes());
        bytes
    }

    /// The pointer a `bodies` value holds; `None` when it holds a frame itself.
    pub fn of(value: &[u8]) -> Option<Result<Self, String>> {
        let rest = value.strip_prefix(SEGMENT_TAG)?;
        let Ok(rest) = <&[u8; POINTER_LEN - 4]>::try_from(rest) else {
            return Some(Err(format!(
                "a pointer to a body frame is {} bytes long",
                value.len()
            )));
        };
        let u32_at =
            |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().unwrap_or_default());
        Some(Ok(Self {
            segment: u32_at(0),
            offset: u64::from_le_bytes(rest[4..12].try_into().unwrap_or_default()),
            len: u32_at(12),
            crc: u32_at(16),
        }))
    }
}

/// The directory of the segments of the store at `db`.
pub(super) fn dir_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-bodies");
    PathBuf::from(name)
}

fn file_of(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.seg"))
}

/// The segments directory of the database `connection` has open.
fn dir_of_connection(connection: &Connection) -> Result<PathBuf, String> {
    match connection.path() {
        Some(path) if !path.is_empty() => Ok(dir_of(Path::new(path))),
        _ => Err("the capture store has no file, so no body segments".to_owned()),
    }
}

/// Why a frame in a segment could not be read.
#[derive(Debug)]
pub(super) enum FrameError {
    /// Its bytes are not what was written (a crash cut the segment short, a byte changed,
    /// the pointer is broken) or its segment is gone (a store copied without them; llmux
    /// removes only segments no row points into): the frame is lost for good.
    Damaged(String),
    /// Its segment could not be read now (no permission, an I/O error): it may be readable
    /// later, so nothing is decided on it (a delete that needed it rolls back).
    Unreadable(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Damaged(why) | Self::Unreadable(why) => {
                write!(f, "this request's bodies are lost ({why})")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    /// As a database error: a damaged frame as a value that does not convert (the rows
    /// built on it are made whole without it, `chain::unchain_dependents`), an unreadable
    /// one as a failure that rolls back what needed it.
    pub fn into_sql(self, column: usize) -> rusqlite::Error {
        match self {
            Self::Damaged(_) => rusqlite::Error::FromSqlConversionFailure(
                column,
                rusqlite::types::Type::Blob,
                Box::new(self),
            ),
            Self::Unreadable(_) => rusqlite::Error::ToSqlConversionFailure(Box::new(self)),
        }
    }

    /// The frame error inside `err`, when it is one (a row read through a chain of others).
    pub fn in_sql(err: &rusqlite::Error) -> Option<&Self> {
        match err {
            rusqlite::Error::FromSqlConversionFailure(_, _, inner)
            | rusqlite::Error::ToSqlConversionFailure(inner) => inner.downcast_ref(),
            _ => None,
        }
    }
}

/// A row's frame as its `bodies` column holds it: the frame itself, or read from its
/// segment when the column points there.
pub(super) fn frame_of<'a>(
    connection: &Connection,
    value: &'a [u8],
) -> Result<Cow<'a, [u8]>, FrameError> {
    let Some(pointer) = Pointer::of(value) else {
        return Ok(Cow::Borrowed(value));
    };
    let pointer = pointer.map_err(FrameError::Damaged)?;
    let dir = dir_of_connection(connection).map_err(FrameError::Unreadable)?;
    read(&dir, pointer).map(Cow::Owned)
}

/// The frame `pointer` points to, checked against its checksum.
fn read(dir: &Path, pointer: Pointer) -> Result<Vec<u8>, FrameError> {
    let path = file_of(dir, pointer.segment);
    let at = |why: String| format!("{}: {why}", path.display());
    let file = File::open(&path).map_err(|e| {
        // Gone for good: retention must not stop at every row built on it.
        if e.kind() == std::io::ErrorKind::NotFound {
            FrameError::Damaged(at(e.to_string()))
        } else {
            FrameError::Unreadable(at(e.to_string()))
        }
    })?;
    let metadata = file
        .metadata()
        .map_err(|e| FrameError::Unreadable(at(e.to_string())))?;
    if !metadata.is_file() {
        return Err(FrameError::Unreadable(at("not a file".to_owned())));
    }
    let size = metadata.len();
    // Checked before anything is allocated: a broken pointer may claim 4 GiB.
    if pointer
        .offset
        .checked_add(u64::from(pointer.len))
        .is_none_or(|end| end > size)
    {
        return Err(FrameError::Damaged(at(format!(
            "the frame ends past the segment's {size} bytes"
        ))));
    }
    let mut frame = vec![0; pointer.len as usize];
    file.read_exact_at(&mut frame, pointer.offset)
        .map_err(|e| FrameError::Unreadable(at(e.to_string())))?;
    if crc32fast::hash(&frame) != pointer.crc {
        return Err(FrameError::Damaged(at(
            "the frame does not match its checksum".to_owned(),
        )));
    }
    Ok(frame)
}

/// Overwrites a deleted row's frame with zeros, so its text does not stay on disk until its
/// segment goes; only when the bytes there are still that frame (its checksum), never
/// another's. A `bodies` value that holds its frame itself needs nothing.
pub(super) fn erase(connection: &Connection, value: &[u8]) -> Result<(), String> {
    let Some(pointer) = Pointer::of(value) else {
        return Ok(());
    };
    let pointer = pointer?;
    let dir = dir_of_connection(connection)?;
    match read(&dir, pointer) {
        Ok(_) => {}
        // Not that frame's bytes any more (or gone): nothing of it to erase.
        Err(FrameError::Damaged(_)) => return Ok(()),
        Err(err @ FrameError::Unreadable(_)) => return Err(err.to_string()),
    }
    let path = file_of(&dir, pointer.segment);
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all_at(&vec![0; pointer.len as usize], pointer.offset)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The numbers of the segment files in `dir`, in order; none when it does not exist.
fn listed(dir: &Path) -> std::io::Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".seg"))
            .and_then(|stem| {
                stem.parse::<u32>()
                    .ok()
                    .filter(|n| format!("{n:08}") == stem)
            })
        else {
            continue;
        };
        segments.push(number);
    }
    segments.sort_unstable();
    Ok(segments)
}

fn referenced(connection: &Connection, segment: u32) -> rusqlite::Result<bool> {
    connection
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM requests WHERE segment = ?1)")?
        .query_row(params![segment], |row| row.get(0))
}

/// The bytes of the frames rows point to in segments: within a transaction that deleted
/// rows, what is left once it commits.
pub(super) fn live_bytes(connection: &Connection) -> rusqlite::Result<u64> {
    connection.query_row(
        "SELECT COALESCE(SUM(live_bytes), 0) FROM segments",
        [],
        |row| row.get(0),
    )
}

/// Adds `bytes` (taken when negative) to what rows hold in `segment`.
fn count_live(connection: &Connection, segment: u32, bytes: i64) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO segments (number, live_bytes) VALUES (?1, ?2)
             ON CONFLICT (number) DO UPDATE SET live_bytes = live_bytes + excluded.live_bytes",
        )?
        .execute(params![segment, bytes])
        .map(drop)
}

/// Takes the frames of the rows matching `condition` off their segments' live bytes:
/// before those rows are deleted, or their frames moved into the rows.
pub(super) fn uncount(
    connection: &Connection,
    condition: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<()> {
    let mut taken = std::collections::BTreeMap::<u32, i64>::new();
    // Cached: retention runs it for each chunk of rows it deletes.
    let mut statement = connection.prepare_cached(&format!(
        "SELECT bodies FROM requests WHERE ({condition}) AND segment IS NOT NULL"
    ))?;
    let mut rows = statement.query(args)?;
    while let Some(row) = rows.next()? {
        if let rusqlite::types::ValueRef::Blob(value) = row.get_ref(0)?
            && let Some(Ok(pointer)) = Pointer::of(value)
        {
            *taken.entry(pointer.segment).or_default() += i64::from(pointer.len);
        }
    }
    for (segment, bytes) in taken {
        count_live(connection, segment, -bytes)?;
    }
    Ok(())
}

pub(super) fn io_error(
    err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(err.into())
}

/// The writer's side: the segment it appends to and the frames of the commit being built.
pub(super) struct Segments {
    dir: PathBuf,
    limit: u64,
    current: Option<Current>,
    /// Frames of the commit being built, written to `current` just before it commits.
    pending: Vec<u8>,
    /// The number the next new segment takes.
    next: u32,
}

struct Current {
    number: u32,
    file: File,
    /// Bytes in the file.
    len: u64,
}

impl Segments {
    /// The segments of the store `connection` (the writer's) has open, their directory made
    /// when missing. A store capped at `max_bytes` keeps its segments at a 64th of that.
    pub fn open(connection: &Connection, max_bytes: Option<u64>) -> Result<Self, String> {
        // The database's own path as SQLite resolved it (a link followed): the one readers
        // find the segments by.
        let dir = dir_of_connection(connection)?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let last_file = listed(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .last()
            .copied()
            .unwrap_or(0);
        // Rows may point into segments whose files are gone (a store copied without them):
        // a number is never given out twice, or their pointers would read new frames.
        let last_used: u32 = connection
            .query_row(
                "SELECT MAX(COALESCE((SELECT MAX(segment) FROM requests
                                      WHERE segment IS NOT NULL), 0),
                            COALESCE((SELECT MAX(number) FROM segments), 0))",
                [],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())?;
        Ok(Self {
            dir,
            limit: max_bytes.map_or(SEGMENT_MAX, |max| {
                (max / 64).clamp(SEGMENT_MIN, SEGMENT_MAX)
            }),
            current: None,
            pending: Vec::new(),
            // A new run starts a segment of its own: the last one may end in a frame a
            // crash cut short.
            next: last_file
                .max(last_used)
                .checked_add(1)
                .ok_or("the body segments' numbers are used up")?,
        })
    }

    /// The segment a commit's frames go to, a new one once the last is full (the full one
    /// synced first: it is written to no more).
    fn current(&mut self) -> Result<&mut Current, String> {
        let current = match self.current.take() {
            Some(current) if current.len < self.limit => current,
            full => {
                if let Some(Err(err)) = full.map(|full| full.file.sync_data()) {
                    tracing::warn!("capture store: body segment not synced: {err}");
                }
                self.create()?
            }
        };
        Ok(self.current.insert(current))
    }

    /// A new segment file, numbered after the last one.
    fn create(&mut self) -> Result<Current, String> {
        // A file of the next number may be there (left by hand; one llmux writes a store):
        // the one after it is tried, a few times.
        let mut tries = 0;
        loop {
            let number = self.next;
            let path = file_of(&self.dir, number);
            self.next = number
                .checked_add(1)
                .ok_or("the body segments' numbers are used up")?;
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(file) => {
                    return Ok(Current {
                        number,
                        file,
                        len: 0,
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && tries < 16 => {
                    tries += 1;
                }
                Err(err) => return Err(format!("{}: {err}", path.display())),
            }
        }
    }

    /// Adds a frame to the commit being built; where it will be once `write` wrote it.
    pub fn add(&mut self, frame: &[u8]) -> Result<Pointer, String> {
        let len = u32::try_from(frame.len()).map_err(|_| "a body frame over 4 GiB".to_owned())?;
        let pending = self.pending.len() as u64;
        let current = self.current()?;
        let pointer = Pointer {
            segment: current.number,
            offset: current.len + pending,
            len,
            crc: crc32fast::hash(frame),
        };
        self.pending.extend_from_slice(frame);
        Ok(pointer)
    }

    /// Counts the commit's frames in its segment's live bytes, in the commit's transaction.
    pub fn count_pending(&self, connection: &Connection) -> rusqlite::Result<()> {
        match &self.current {
            Some(current) if !self.pending.is_empty() => {
                count_live(connection, current.number, self.pending.len() as i64)
            }
            _ => Ok(()),
        }
    }

    /// Writes the commit's frames, before its rows commit. After a failure the commit is
    /// abandoned and the next one starts a new segment: the file may hold part of these.
    pub fn write(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = match self.current.as_mut() {
            Some(current) => current
                .file
                .write_all(&self.pending)
                .map(|()| current.len += self.pending.len() as u64)
                .map_err(|e| format!("{}: {e}", file_of(&self.dir, current.number).display())),
            None => Err("no segment to write to".to_owned()),
        };
        self.pending.clear();
        if written.is_err() {
            self.current = None;
        }
        written
    }

    /// Drops the frames of a commit that failed; its rows point nowhere.
    pub fn abandon(&mut self) {
        if !self.pending.is_empty() {
            self.pending.clear();
            self.current = None;
        }
    }

    /// Deletes the files of the segments no row points into (not the one being written),
    /// and the counts of segments no row points into whose files are gone. Called after the
    /// deleting transaction committed: a rolled back delete keeps them.
    pub fn remove_unreferenced(&self, connection: &Connection) -> Result<(), String> {
        let writing = self.current.as_ref().map(|current| current.number);
        for segment in listed(&self.dir).map_err(|e| e.to_string())? {
            if Some(segment) == writing || segment >= self.next {
                continue;
            }
            if !referenced(connection, segment).map_err(|e| e.to_string())? {
                let path = file_of(&self.dir, segment);
                // One that cannot go (a file named so by hand) holds back no other.
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!("capture store: {}: {err}", path.display());
                }
            }
        }
        connection
            .execute(
                "DELETE FROM segments WHERE (?1 IS NULL OR number <> ?1)
                     AND NOT EXISTS (SELECT 1 FROM requests WHERE segment = segments.number)",
                params![writing],
            )
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Makes what was written durable: the segment being written and the directory's
    /// entries (at a flush, so also before the database's last checkpoint at the end).
    pub fn sync(&self) {
        let synced = self
            .current
            .as_ref()
            .map_or(Ok(()), |current| current.file.sync_data())
            .and_then(|()| File::open(&self.dir)?.sync_all());
        if let Err(err) = synced {
            tracing::warn!("capture store: body segments not synced: {err}");
        }
    }
}

/// The frame of the row `id` as stored, read from its segment when it is in one.
#[cfg(test)]
pub(super) fn stored_frame(connection: &Connection, id: &str) -> Vec<u8> {
    let value: Vec<u8> = connection
        .query_row("SELECT bodies FROM requests WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap();
    frame_of(connection, &value).unwrap().into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Query, RequestRow, Retention, Store};
    use super::*;

    fn store_with(dir: &Path, retention: Retention) -> Store {
        Store::open_with(
            dir.join("capture.db"),
            Duration::from_millis(20),
            Vec::new(),
            retention,
        )
        .unwrap()
    }

    /// A row whose bodies make a frame of a few KB: `seed` makes its text its own, so LZ4
    /// finds little to shrink.
    fn row(id: &str, seed: u64, started_at: f64) -> RequestRow {
        let mut rng = fastrand::Rng::with_seed(seed);
        let text: String = (0..4000).map(|_| rng.alphanumeric()).collect();
        RequestRow {
            id: id.into(),
            started_at,
            session_id: format!("session {id}"),
            client_request: format!("{{\"secret plan\":\"{text}\"}}"),
            upstream_response: format!("{{\"answer\":\"{id}\"}}"),
            ..RequestRow::default()
        }
    }

    fn put(store: &Store, rows: std::ops::Range<u64>, started_at: f64) {
        for i in rows {
            store.insert(row(&format!("req_{i}"), i, started_at + i as f64));
        }
        store.flush(Duration::from_secs(10));
    }

    /// Now, in Unix seconds (rows older than the default 30 days are pruned at once).
    fn now() -> f64 {
        super::super::unix_seconds()
    }

    /// The row is shown with a note in place of its bodies, saying `what`.
    fn assert_noted(row: &RequestRow, what: &str) {
        assert!(
            row.client_request.starts_with('(') && row.client_request.contains(what),
            "{}",
            row.client_request
        );
    }

    /// Every row with its bodies, as an export lists them.
    fn exported(store: &Store) -> Vec<RequestRow> {
        store
            .list(&Query {
                with_bodies: true,
                limit: 10,
                ..Query::default()
            })
            .unwrap()
    }

    /// The segment files by number, with their sizes.
    fn segment_files(store: &Store) -> Vec<(u32, u64)> {
        let dir = dir_of(store.path());
        listed(&dir)
            .unwrap()
            .into_iter()
            .map(|number| {
                let len = std::fs::metadata(file_of(&dir, number)).unwrap().len();
                (number, len)
            })
            .collect()
    }

    fn files_bytes(store: &Store) -> u64 {
        segment_files(store).iter().map(|&(_, len)| len).sum()
    }

    #[test]
    fn frames_are_appended_to_a_segment_and_read_back_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 0..3, now());
        let files = segment_files(&store);
        assert_eq!(files.len(), 1, "{files:?}");
        let connection = Connection::open(store.path()).unwrap();
        let live = live_bytes(&connection).unwrap();
        assert_eq!(live, files[0].1, "every byte of the segment is a row's");
        // Each row's frame, not a copy of the bodies, in the database.
        let in_database: i64 = connection
            .query_row("SELECT MAX(length(bodies)) FROM requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(in_database, POINTER_LEN as i64);
        for i in 0..3 {
            let id = format!("req_{i}");
            let got = store.get(&id).unwrap().unwrap();
            assert_eq!(got.client_request, row(&id, i, 0.0).client_request);
            assert_eq!(got.upstream_response, format!("{{\"answer\":\"{id}\"}}"));
        }
        // Listed with their bodies (an export) too.
        let listed = exported(&store);
        assert_eq!(listed.len(), 3);
        assert!(
            listed
                .iter()
                .all(|r| r.client_request.contains("secret plan"))
        );
    }

    #[test]
    fn a_new_run_writes_a_segment_of_its_own_and_reads_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 0..2, now());
        drop(store);
        let store = store_with(dir.path(), Retention::default());
        put(&store, 2..4, now());
        assert_eq!(segment_files(&store).len(), 2);
        for i in 0..4 {
            let id = format!("req_{i}");
            let got = store.get(&id).unwrap().unwrap();
            assert_eq!(got.client_request, row(&id, i, 0.0).client_request);
        }
        // Browsed read-only (`llmux inspect`), with no writer.
        drop(store);
        let browsed = Store::open_read_only(dir.path().join("capture.db")).unwrap();
        let got = browsed.get("req_1").unwrap().unwrap();
        assert_eq!(got.client_request, row("req_1", 1, 0.0).client_request);
    }

    #[test]
    fn a_lost_or_damaged_segment_leaves_its_rows_readable_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 0..2, now());
        let (number, _) = segment_files(&store)[0];
        let path = file_of(&dir_of(store.path()), number);
        // A crash cut the segment short, or a byte of it changed: the checksum tells.
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 4;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let got = store.get("req_0").unwrap().unwrap();
        assert_noted(&got, "does not match its checksum");
        assert_eq!(got.id, "req_0", "the row itself is still there");
        assert_eq!(got.upstream_response, "");
        let second = store.get("req_1").unwrap().unwrap();
        assert_eq!(second.client_request, row("req_1", 1, 0.0).client_request);
        // The store copied without its segments.
        std::fs::remove_file(&path).unwrap();
        let got = store.get("req_1").unwrap().unwrap();
        assert_noted(&got, "this request's bodies are lost");
        let listed = exported(&store);
        assert_eq!(listed.len(), 2);
    }

    #[test]
    fn a_pointer_of_the_wrong_length_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 0..1, now());
        let connection = Connection::open(store.path()).unwrap();
        connection
            .execute(
                "UPDATE requests SET bodies = substr(bodies, 1, 10) WHERE id = 'req_0'",
                [],
            )
            .unwrap();
        let got = store.get("req_0").unwrap().unwrap();
        assert!(got.client_request.contains("10 bytes long"), "{got:?}");
    }

    #[test]
    fn a_deleted_request_is_erased_from_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 0..3, now());
        let (number, len) = segment_files(&store)[0];
        let path = file_of(&dir_of(store.path()), number);
        let text = row("req_1", 1, 0.0).client_request;
        // Too random for LZ4 to shrink: the text is in the file as it is.
        let holds = |needle: &str| {
            let bytes = std::fs::read(&path).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        };
        assert!(holds(&text[20..80]));
        assert!(store.delete("req_1").unwrap());
        assert!(!holds(&text[20..80]), "its bytes are zeros now");
        assert_eq!(segment_files(&store)[0].1, len, "the others' offsets hold");
        let kept = store.get("req_2").unwrap().unwrap();
        assert_eq!(kept.client_request, row("req_2", 2, 0.0).client_request);
        let connection = Connection::open(store.path()).unwrap();
        assert!(live_bytes(&connection).unwrap() < len);
    }

    #[test]
    fn retention_counts_the_frames_and_removes_the_segments_no_row_points_into() {
        let dir = tempfile::tempdir().unwrap();
        let day = 24.0 * 3600.0;
        let now = now();
        let retention = Retention {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes: None,
        };
        let keep_all = Retention {
            max_age: None,
            max_bytes: None,
        };
        let store = store_with(dir.path(), keep_all);
        // Old rows, then (another run, another segment) young ones.
        put(&store, 0..5, now - 10.0 * day);
        drop(store);
        let store = store_with(dir.path(), keep_all);
        put(&store, 5..8, now);
        assert_eq!(segment_files(&store).len(), 2);
        drop(store);
        // Reopened with the week's retention, which prunes at once.
        let store = store_with(dir.path(), retention);
        store.flush(Duration::from_secs(10));
        assert_eq!(store.count().unwrap(), 3);
        let files = segment_files(&store);
        assert_eq!(files.len(), 1, "the old rows' segment is gone: {files:?}");
        let connection = Connection::open(store.path()).unwrap();
        assert_eq!(live_bytes(&connection).unwrap(), files[0].1);
        let segments: i64 = connection
            .query_row("SELECT COUNT(*) FROM segments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(segments, 1);
    }

    #[test]
    fn the_size_cap_holds_the_rows_frames_and_the_files_stay_within_a_segment_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 4 << 20;
        let retention = Retention {
            max_age: None,
            max_bytes: Some(cap),
        };
        let store = store_with(dir.path(), retention);
        // ~4 KB a row, 3,000 rows: three times the cap, written in batches with pruning
        // between them (at every flush).
        for batch in 0..30 {
            put(&store, batch * 100..(batch + 1) * 100, now());
        }
        let connection = Connection::open(store.path()).unwrap();
        let used = super::super::used_bytes(&connection).unwrap();
        assert!(used <= cap, "{used} over the cap of {cap}");
        let rows = store.count().unwrap();
        assert!((500..3000).contains(&rows), "{rows} rows kept");
        // The oldest went, the newest are whole.
        assert!(store.get("req_0").unwrap().is_none());
        let newest = store.get("req_2999").unwrap().unwrap();
        assert_eq!(
            newest.client_request,
            row("req_2999", 2999, 0.0).client_request
        );
        let segment = (cap / 64).max(SEGMENT_MIN);
        let files = files_bytes(&store);
        assert!(
            files <= live_bytes(&connection).unwrap() + 2 * segment + (512 << 10),
            "{files} bytes of segment files for {} live",
            live_bytes(&connection).unwrap()
        );
    }

    /// A coding agent's growing request: a long start every turn repeats, then `turns`.
    fn agent_request(turns: u64) -> String {
        let mut rng = fastrand::Rng::with_seed(7);
        let start: String = (0..20_000).map(|_| rng.alphanumeric()).collect();
        let turns: String = (0..turns).map(|turn| format!(",\"turn {turn}\"")).collect();
        format!("{{\"messages\":[\"{start}\"{turns}]}}")
    }

    /// Rows `s_0`, `s_1`, ... of one session, each a delta of the one before.
    fn put_chain(store: &Store, rows: u64) {
        for turns in 0..rows {
            store.insert(RequestRow {
                id: format!("s_{turns}"),
                started_at: now() + turns as f64,
                session_id: "s".into(),
                client_request: agent_request(turns),
                upstream_response: format!("answer {turns}"),
                ..RequestRow::default()
            });
        }
        store.flush(Duration::from_secs(10));
    }

    /// What the rows' pointers say they hold in segments, added up.
    fn pointed_to(connection: &Connection) -> u64 {
        let mut statement = connection
            .prepare("SELECT bodies FROM requests WHERE segment IS NOT NULL")
            .unwrap();
        let values: Vec<Vec<u8>> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        values
            .iter()
            .map(|value| u64::from(Pointer::of(value).unwrap().unwrap().len))
            .sum()
    }

    #[test]
    fn rows_made_whole_before_their_base_is_deleted_leave_the_count_exact() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put_chain(&store, 4);
        let connection = Connection::open(store.path()).unwrap();
        let base_rows: i64 = connection
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE base_row IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(base_rows, 3, "s_1..s_3 are deltas");
        assert_eq!(live_bytes(&connection).unwrap(), pointed_to(&connection));
        // s_1 is made whole (in its row) before s_0 goes; its frame in the segment no
        // longer counts.
        assert!(store.delete("s_0").unwrap());
        assert_eq!(live_bytes(&connection).unwrap(), pointed_to(&connection));
        assert!(store.delete("s_2").unwrap());
        assert_eq!(live_bytes(&connection).unwrap(), pointed_to(&connection));
        for turns in [1, 3] {
            let got = store.get(&format!("s_{turns}")).unwrap().unwrap();
            assert_eq!(got.client_request, agent_request(turns));
        }
    }

    #[test]
    fn a_segment_that_cannot_be_read_stops_a_delete_instead_of_losing_the_rows_built_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put_chain(&store, 2);
        let (number, _) = segment_files(&store)[0];
        let path = file_of(&dir_of(store.path()), number);
        let away = dir.path().join("away.seg");
        // Unreadable for now (a directory where the file was: opened, it does not read).
        std::fs::rename(&path, &away).unwrap();
        std::fs::create_dir(&path).unwrap();
        // s_1 is a delta of s_0: read through it, it shows what happened.
        let got = store.get("s_1").unwrap().unwrap();
        assert_noted(&got, "bodies are lost");
        assert_eq!(exported(&store).len(), 2, "an export lists both");
        // Deleting s_0 needs s_1 whole first, which needs the segment: nothing is deleted.
        assert!(store.delete("s_0").is_err());
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(&away, &path).unwrap();
        assert_eq!(
            store.get("s_1").unwrap().unwrap().client_request,
            agent_request(1)
        );
        assert!(store.delete("s_0").unwrap());
        assert_eq!(
            store.get("s_1").unwrap().unwrap().client_request,
            agent_request(1)
        );
    }

    #[test]
    fn an_unreadable_segment_does_not_stop_retention() {
        let dir = tempfile::tempdir().unwrap();
        let keep_all = Retention {
            max_age: None,
            max_bytes: None,
        };
        let store = store_with(dir.path(), keep_all);
        // s_1 (young) is a delta of s_0 (ten days old).
        for (turns, age) in [(0, 10.0 * 24.0 * 3600.0), (1, 0.0)] {
            store.insert(RequestRow {
                id: format!("s_{turns}"),
                started_at: now() - age,
                session_id: "s".into(),
                client_request: agent_request(turns),
                ..RequestRow::default()
            });
        }
        store.flush(Duration::from_secs(10));
        let (number, _) = segment_files(&store)[0];
        drop(store);
        let path = file_of(&dir_of(&dir.path().join("capture.db")), number);
        std::fs::rename(&path, dir.path().join("away.seg")).unwrap();
        std::fs::create_dir(&path).unwrap();
        let week = Retention {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_bytes: None,
        };
        let store = store_with(dir.path(), week);
        store.flush(Duration::from_secs(10));
        assert!(store.get("s_0").unwrap().is_none(), "retention went ahead");
        let got = store.get("s_1").unwrap().unwrap();
        assert_noted(&got, "could not read");
    }

    #[test]
    fn a_segment_that_is_gone_does_not_stop_a_delete_and_its_rows_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put_chain(&store, 2);
        let (number, _) = segment_files(&store)[0];
        std::fs::remove_file(file_of(&dir_of(store.path()), number)).unwrap();
        assert!(store.delete("s_0").unwrap());
        let got = store.get("s_1").unwrap().unwrap();
        assert_noted(&got, "could not read");
    }

    #[test]
    fn a_store_copied_without_its_segments_never_gives_their_numbers_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 0..2, now());
        let old = segment_files(&store);
        drop(store);
        std::fs::remove_dir_all(dir_of(&dir.path().join("capture.db"))).unwrap();
        let store = store_with(dir.path(), Retention::default());
        put(&store, 2..4, now());
        let new = segment_files(&store);
        assert_eq!(new.len(), 1);
        assert!(new[0].0 > old[0].0, "{new:?} after {old:?}");
        // The old rows read as lost, and deleting one erases nothing of the new ones.
        let got = store.get("req_0").unwrap().unwrap();
        assert_noted(&got, "bodies are lost");
        assert!(store.delete("req_0").unwrap());
        for i in 2..4 {
            let id = format!("req_{i}");
            assert_eq!(
                store.get(&id).unwrap().unwrap().client_request,
                row(&id, i, 0.0).client_request
            );
        }
    }
}
