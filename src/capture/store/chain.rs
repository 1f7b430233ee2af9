//! A session's requests stored as deltas of the one before (schema 11).
//!
//! A coding agent's request is its previous request with the last turn's tool call and result
//! added: the prefix stays byte for byte the same (providers' prompt caches depend on it).
//! Stored whole, a session of n requests costs the store n²/2 turns, and the writer
//! compresses all of them again with each request (LZ4 over a 100 KB body was half of its
//! time, bench/results/fastpath.md, session 23). So a long client request is stored as a
//! delta ([`super::super::delta`]) against the last long client request of its
//! conversation (a session holds up to two: an agent's and a sub-agent's), which the writer
//! keeps in memory. So is the provider's request, against the provider's
//! request of that row, when that is shorter than its delta against the client's own
//! request: a request translated to another protocol parts from the client's at every
//! message, but from the last translation only where a turn was added.
//!
//! The rows form chains, each at most [`MAX_CHAIN`] deltas long, so reading a row reads at
//! most that many others. A row's frame names its base's rowid, and the `base_row` column
//! holds it too, indexed, so that a row is made whole again before its base is deleted
//! ([`unchain_dependents`]): nothing of a kept row is lost to retention or a delete made
//! through llmux. (A row deleted by hand, say with the sqlite3 shell, leaves the rows built
//! on it unreadable; so would two rows with one id, which llmux never writes.)
//!
//! The bases live in the writer's memory only: after a restart, each session's next long
//! request is stored whole.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Packer, segments, unpack_bodies};

/// A row with a client request this long has its requests stored as deltas of its
/// conversation's last such row's, and is kept to be the next one's base. Below it LZ4
/// finds the repeats within one row.
pub(super) const CHAIN_FROM: usize = 16 * 1024;
/// At most this many deltas in a row: every 17th long request of a conversation is stored
/// whole.
pub(super) const MAX_CHAIN: u32 = 16;
/// A session's conversations kept as bases: an agent's sub-agent shares its session id, and
/// their requests come in turn, each with a start of its own. With one base a session, each
/// was a delta of the other's (too long to pay) and stored whole.
const BASES_A_SESSION: usize = 2;
/// The bases kept in all (two bodies of at most 1 MiB each, `BODY_LIMIT`, shrunk to their
/// length: 32 MiB at worst); the one kept longest ago makes room.
const BASES_KEPT: usize = 16;

/// A base the writer keeps: the requests of a session's last row with a long client
/// request in one of its conversations, as stored.
struct Base {
    rowid: i64,
    /// The row's id: its rowid is checked to still be this row before a delta names it
    /// (deleted rows' rowids are given out again).
    id: String,
    client: String,
    upstream: String,
    /// How many deltas its own chain holds before it (0: stored whole).
    depth: u32,
    /// When it was kept (a count, never the same twice): a conversation's base is replaced
    /// by its next row, so the oldest is the one whose conversation went quiet first.
    kept_at: u64,
}

/// The base `Chains::base_for` found closest to the row it was asked about.
#[derive(Clone, Copy)]
struct Closest {
    kept_at: u64,
    /// The length of its client request.
    len: usize,
    /// The row takes its place whatever its delta: the base's chain is full, or it is gone.
    replaced: bool,
}

/// The writer's bases, by session, each session's oldest first.
#[derive(Default)]
pub(super) struct Chains {
    bases: HashMap<String, Vec<Base>>,
    clock: u64,
    /// The base `base_for` found for the row it was asked about last. The row takes its place
    /// when it continues its conversation: stored as a delta of it and no shorter (a
    /// conversation grows; a sub-agent's first request, which may share its agent's long
    /// start, is shorter), or whatever its delta when `Closest::replaced`. Otherwise the
    /// row starts a conversation of its own.
    closest: Option<Closest>,
}

/// The row a row's requests may be stored against.
pub(super) struct Earlier<'a> {
    pub rowid: i64,
    /// Its client request and provider request.
    pub client: &'a str,
    pub upstream: &'a str,
    /// How many deltas its own chain holds before it.
    pub depth: u32,
}

impl Chains {
    /// The base for the row `id` of `session` with the client request `client`: the last
    /// long request of the session's conversation that `client` shares the longest start
    /// with, when that row is still in the store and its chain has room (and it is not the
    /// row itself, which its insert would replace).
    pub(super) fn base_for(
        &mut self,
        connection: &Connection,
        session: &str,
        id: &str,
        client: &str,
    ) -> rusqlite::Result<Option<Earlier<'_>>> {
        self.closest = None;
        if client.len() < CHAIN_FROM || session.is_empty() {
            return Ok(None);
        }
        let Some(bases) = self.bases.get(session) else {
            return Ok(None);
        };
        let Some(base) = bases.get(closest_base(bases, client)) else {
            return Ok(None);
        };
        let usable = base.depth < MAX_CHAIN
            && base.id != id
            && connection
                .prepare_cached("SELECT id = ?2 FROM requests WHERE rowid = ?1")?
                .query_row(params![base.rowid, base.id], |row| row.get(0))
                .optional()?
                == Some(true);
        self.closest = Some(Closest {
            kept_at: base.kept_at,
            len: base.client.len(),
            replaced: !usable,
        });
        if !usable {
            return Ok(None);
        }
        Ok(Some(Earlier {
            rowid: base.rowid,
            client: &base.client,
            upstream: &base.upstream,
            depth: base.depth,
        }))
    }

    /// Keeps a row's requests as a base of its session, after `base_for` was asked about it:
    /// `chained_to` is the depth of the base it was stored against (`None`: stored whole).
    pub(super) fn remember(
        &mut self,
        session: &str,
        rowid: i64,
        id: &str,
        [mut client, mut upstream]: [String; 2],
        chained_to: Option<u32>,
    ) {
        let closest = self.closest.take();
        if client.len() < CHAIN_FROM || session.is_empty() {
            return;
        }
        // A request's text may be its receive buffer, taken over (`Kept::into_text`), with
        // room to spare that a base would keep for as long as it lives.
        client.shrink_to_fit();
        upstream.shrink_to_fit();
        let continued = closest
            .filter(|closest| {
                closest.replaced || (chained_to.is_some() && client.len() >= closest.len)
            })
            .map(|closest| closest.kept_at);
        self.clock += 1;
        let base = Base {
            rowid,
            id: id.to_owned(),
            client,
            upstream,
            depth: chained_to.map_or(0, |depth| depth + 1),
            kept_at: self.clock,
        };
        let bases = self.bases.entry(session.to_owned()).or_default();
        if let Some(at) =
            continued.and_then(|kept_at| bases.iter().position(|b| b.kept_at == kept_at))
        {
            bases.remove(at);
            bases.push(base);
            return;
        }
        bases.push(base);
        if bases.len() > BASES_A_SESSION
            && let Some((oldest, _)) = bases.iter().enumerate().min_by_key(|(_, b)| b.kept_at)
        {
            bases.remove(oldest);
        }
        while self.kept_in_all() > BASES_KEPT {
            self.forget_oldest();
        }
    }

    /// Drops the base kept longest ago, of any session.
    fn forget_oldest(&mut self) {
        let Some((session, kept_at)) = self
            .bases
            .iter()
            .flat_map(|(session, bases)| bases.iter().map(move |base| (session, base.kept_at)))
            .min_by_key(|&(_, kept_at)| kept_at)
            .map(|(session, kept_at)| (session.clone(), kept_at))
        else {
            return;
        };
        let Some(bases) = self.bases.get_mut(&session) else {
            return;
        };
        bases.retain(|base| base.kept_at != kept_at);
        if bases.is_empty() {
            self.bases.remove(&session);
        }
    }

    /// The bases kept, of every session (16 at most: counting them is cheap).
    fn kept_in_all(&self) -> usize {
        self.bases.values().map(Vec::len).sum()
    }

    /// How many bases are kept, in all and for `session`.
    #[cfg(test)]
    fn kept(&self, session: &str) -> (usize, usize) {
        (
            self.kept_in_all(),
            self.bases.get(session).map_or(0, Vec::len),
        )
    }
}

/// Which of a session's bases (oldest first; a session is kept with one at least) `client`
/// shares the longest start with, the newest when two share as much. Compared only when
/// there are two, newest first; a base no longer than the longest start found is not
/// compared (it cannot share more).
fn closest_base(bases: &[Base], client: &str) -> usize {
    let newest = bases.len().saturating_sub(1);
    if newest == 0 {
        return 0;
    }
    let (mut best, mut shared) = (newest, 0);
    for (index, base) in bases.iter().enumerate().rev() {
        if base.client.len() <= shared {
            continue;
        }
        let common = super::super::delta::common_prefix(base.client.as_bytes(), client.as_bytes());
        if common > shared {
            (best, shared) = (index, common);
        }
    }
    best
}

/// The bodies of rows read back from their chains while reading others, so that reading the
/// rows of a chain one after another (a list, an export) rebuilds each once, not once for
/// every row after it.
#[derive(Default)]
pub(super) struct Rebuilt {
    /// By rowid and body index: the body, and when it was last used.
    bodies: HashMap<(i64, usize), (String, u64)>,
    /// The bodies' bytes in all.
    bytes: usize,
    uses: u64,
}

impl Rebuilt {
    /// Two chains' worth of both requests, in at most `BYTES`; past either the body used
    /// longest ago makes room. (Emptied at once when full, it made a list of two sessions'
    /// rows in turn rebuild their chains again; counted alone, it kept 68 requests of 1 MiB.)
    const KEPT: usize = 4 * (MAX_CHAIN as usize + 1);
    const BYTES: usize = 16 << 20;

    fn get(&mut self, key: (i64, usize)) -> Option<String> {
        self.uses += 1;
        let (body, used) = self.bodies.get_mut(&key)?;
        *used = self.uses;
        Some(body.clone())
    }

    fn keep(&mut self, key: (i64, usize), body: String) {
        self.uses += 1;
        self.bytes += body.len();
        if let Some((replaced, _)) = self.bodies.insert(key, (body, self.uses)) {
            self.bytes -= replaced.len();
        }
        // The body just kept is the one used last: it goes only when alone over the bytes.
        while self.bodies.len() > Self::KEPT || (self.bytes > Self::BYTES && self.bodies.len() > 1)
        {
            let Some(oldest) = self
                .bodies
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key)
            else {
                break;
            };
            if let Some((dropped, _)) = self.bodies.remove(&oldest) {
                self.bytes -= dropped.len();
            }
        }
    }
}

/// Body `index` (0: the client's request, 1: the provider's) of the row at `rowid`, its
/// chain read back: `hops` rows have been read on the way here. A chain longer than
/// `MAX_CHAIN` (a broken store) is an error.
pub(super) fn body_at(
    connection: &Connection,
    rowid: i64,
    index: usize,
    hops: u32,
    rebuilt: &mut Rebuilt,
) -> rusqlite::Result<String> {
    if let Some(body) = rebuilt.get((rowid, index)) {
        return Ok(body);
    }
    let broken = |why: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, why.into())
    };
    if hops > MAX_CHAIN {
        return Err(broken(format!(
            "request {rowid}'s chain of deltas is longer than {MAX_CHAIN}"
        )));
    }
    let stored = connection
        .prepare_cached(
            "SELECT bodies, client_request, upstream_request FROM requests WHERE rowid = ?1",
        )?
        .query_row(params![rowid], |row| {
            let texts: [String; 2] = [row.get(1)?, row.get(2)?];
            Ok((row.get::<_, Option<Vec<u8>>>(0)?, texts))
        })
        .optional()?;
    match stored {
        None => Err(broken(format!(
            "a request's body is a delta of request {rowid}, which is gone"
        ))),
        Some((Some(frame), _)) => {
            let frame = segments::frame_of(connection, &frame).map_err(|e| e.into_sql(0))?;
            let [client, upstream, ..] = unpack_bodies(&frame, 0, &mut |earlier, index| {
                body_at(connection, earlier, index, hops + 1, rebuilt)
            })?;
            let body = if index == 0 { &client } else { &upstream };
            let body = body.clone();
            rebuilt.keep((rowid, 0), client);
            rebuilt.keep((rowid, 1), upstream);
            Ok(body)
        }
        Some((None, texts)) => texts
            .into_iter()
            .nth(index)
            .ok_or_else(|| broken(format!("a delta names body {index} of a row"))),
    }
}

/// What a delete does with a row built on a deleted one whose bodies cannot be read now (a
/// segment with no permission, an I/O error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unreadable {
    /// Nothing is deleted (a delete someone asked for: it can be asked again).
    Refuse,
    /// Its bodies are dropped as a damaged row's are (retention: the store's cap and age
    /// hold even when a segment stays unreadable).
    Lost,
}

/// Before the rows matching `condition` (with `args`) are deleted, every other row with a
/// body that is a delta of one of theirs is stored whole again.
pub(super) fn unchain_dependents(
    connection: &Connection,
    condition: &str,
    args: impl rusqlite::Params + Copy,
    unreadable: Unreadable,
) -> rusqlite::Result<()> {
    let dependents: Vec<i64> = connection
        .prepare(&format!(
            "SELECT rowid FROM requests
             WHERE base_row IN (SELECT rowid FROM requests WHERE {condition})
               AND NOT ({condition})"
        ))?
        .query_map(args, |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let (mut packer, mut rebuilt) = (Packer::default(), Rebuilt::default());
    for &rowid in &dependents {
        match store_whole(connection, rowid, &mut packer, &mut rebuilt) {
            Ok(()) => {}
            // Its frame did not decode (a damaged store): it reads as an error either way,
            // and must not hold back retention or a delete for good. Its frame goes too:
            // read against whatever row takes its base's rowid next, it could give
            // someone else's text instead of an error.
            Err(err)
                if matches!(err, rusqlite::Error::FromSqlConversionFailure(..))
                    || (unreadable == Unreadable::Lost
                        && segments::FrameError::in_sql(&err).is_some()) =>
            {
                tracing::warn!(
                    "capture store: request {rowid}'s bodies could not be read, and are \
                     dropped as a row they are a delta of is deleted: {err}"
                );
                segments::uncount(connection, "rowid = ?1", params![rowid])?;
                connection.execute(
                    "UPDATE requests SET base_row = NULL, bodies = NULL, segment = NULL,
                         client_request = '(llmux could not read this request''s stored bodies)'
                     WHERE rowid = ?1",
                    params![rowid],
                )?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Stores the row at `rowid` with its bodies whole again, not a delta of another row. The
/// frame goes into the row itself, not a segment: this runs on whichever connection deletes
/// (the writer's retention or a delete through the inspector), and only the writer appends
/// to segments.
fn store_whole(
    connection: &Connection,
    rowid: i64,
    packer: &mut Packer,
    rebuilt: &mut Rebuilt,
) -> rusqlite::Result<()> {
    let frame: Vec<u8> = connection.query_row(
        "SELECT bodies FROM requests WHERE rowid = ?1",
        params![rowid],
        |row| row.get(0),
    )?;
    let frame = segments::frame_of(connection, &frame).map_err(|e| e.into_sql(0))?;
    let bodies = unpack_bodies(&frame, 0, &mut |earlier, index| {
        body_at(connection, earlier, index, 1, rebuilt)
    })?;
    let texts = bodies.each_ref().map(String::as_str);
    segments::uncount(connection, "rowid = ?1", params![rowid])?;
    let frame = packer.pack_bodies(texts, None).map(|(frame, _)| frame);
    let [client, upstream, answer, client_answer] = if frame.is_some() { [""; 4] } else { texts };
    connection.execute(
        "UPDATE requests SET bodies = ?2, client_request = ?3, upstream_request = ?4,
             upstream_response = ?5, client_response = ?6, base_row = NULL, segment = NULL
         WHERE rowid = ?1",
        params![rowid, frame, client, upstream, answer, client_answer],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::{
        DELTA_OF_BODY, DELTA_OF_ROW, Packer, RAW_TAG, RequestRow, Retention, SAME_AS_BODY, Store,
        unix_seconds, unpack_frame,
    };

    /// A body stored as it is (see `stored_as`).
    const RAW: u32 = 0;
    use super::*;

    /// An agent's request after `turns` tool calls: each turn adds ~2.6 KB of its own text,
    /// and the request ends the same way whatever came before.
    fn agent_request(turns: usize) -> String {
        conversation_request(0, turns)
    }

    /// The request of one of several conversations, each with its own text.
    fn conversation_request(conversation: usize, turns: usize) -> String {
        let mut body = String::from(r#"{"model":"m","messages":[{"role":"user","content":"go"}"#);
        for turn in 0..turns {
            body.push_str(&format!(
                r#",{{"role":"assistant","tool_calls":[{{"id":"call_{turn}"}}]}},{{"role":"tool","tool_call_id":"call_{turn}","content":"{}"}}"#,
                tool_result(1000 * conversation + turn)
            ));
        }
        body.push_str(r#"],"stream":false}"#);
        body
    }

    /// The same request as another protocol puts it: the same results, every turn framed
    /// otherwise.
    fn translated(turns: usize) -> String {
        let mut body = String::from(r#"{"model":"gpt-5","input":[{"type":"message","text":"go"}"#);
        for turn in 0..turns {
            body.push_str(&format!(
                r#",{{"type":"function_call","call_id":"call_{turn}","name":"Bash"}},{{"type":"function_call_output","call_id":"call_{turn}","output":"{}"}}"#,
                tool_result(turn)
            ));
        }
        body.push_str(r#"],"store":false}"#);
        body
    }

    fn tool_result(turn: usize) -> String {
        let mut rng = fastrand::Rng::with_seed(turn as u64);
        let words: Vec<String> = (0..400)
            .map(|_| (0..rng.usize(2..9)).map(|_| rng.lowercase()).collect())
            .collect();
        words.join(" ")
    }

    fn store(dir: &Path, retention: Retention) -> Store {
        Store::open_with(
            dir.join("c.db"),
            Duration::from_millis(20),
            Vec::new(),
            retention,
        )
        .unwrap()
    }

    /// The provider's request for `request`: the same with another model.
    fn sent_on(request: &str) -> String {
        request.replacen(r#""model":"m""#, r#""model":"gpt-5""#, 1)
    }

    fn put(store: &Store, id: &str, session: &str, started_at: f64, request: &str) {
        put_translated(store, id, session, started_at, request, &sent_on(request));
    }

    fn put_translated(
        store: &Store,
        id: &str,
        session: &str,
        started_at: f64,
        request: &str,
        upstream: &str,
    ) {
        store.insert(RequestRow {
            id: id.into(),
            session_id: session.into(),
            started_at,
            status: 200,
            client_request: request.into(),
            upstream_request: upstream.into(),
            upstream_response: r#"{"choices":[]}"#.into(),
            ..RequestRow::default()
        });
    }

    /// Each row's id and the id of the row its client request is a delta of, oldest first.
    fn bases(store: &Store) -> Vec<(String, Option<String>)> {
        let connection = Connection::open(store.path()).unwrap();
        let mut statement = connection
            .prepare(
                "SELECT r.id, b.id FROM requests r LEFT JOIN requests b ON b.rowid = r.base_row
                 ORDER BY r.rowid",
            )
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// How a row's frame holds each body: its marker, or `RAW` for a body as it is.
    fn stored_as(store: &Store, id: &str) -> [u32; 4] {
        let connection = Connection::open(store.path()).unwrap();
        let frame = segments::stored_frame(&connection, id);
        let framed = unpack_frame(&frame).unwrap();
        let mut rest = &framed[..];
        let mut kinds = [RAW; 4];
        for kind in &mut kinds {
            let mut word = || {
                let (word, after) = rest.split_first_chunk::<4>().unwrap();
                rest = after;
                u32::from_le_bytes(*word)
            };
            let len = word();
            let skip = match len {
                _ if len >= SAME_AS_BODY => 0,
                _ if len >= DELTA_OF_BODY => word(),
                _ if len >= DELTA_OF_ROW => {
                    word(); // the rowid's two halves
                    word();
                    word()
                }
                len => len,
            };
            *kind = if len >= DELTA_OF_ROW { len } else { RAW };
            rest = &rest[skip as usize..];
        }
        kinds
    }

    fn assert_bases(store: &Store, expected: &[(&str, Option<&str>)]) {
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(id, base)| (id.to_string(), base.map(str::to_owned)))
            .collect();
        assert_eq!(bases(store), expected);
    }

    fn rowid_of(connection: &Connection, id: &str) -> i64 {
        connection
            .query_row("SELECT rowid FROM requests WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .unwrap()
    }

    fn stored_bytes(store: &Store, id: &str) -> usize {
        segments::stored_frame(&Connection::open(store.path()).unwrap(), id).len()
    }

    /// Every row is read back with exactly the bodies it was given, one by one and listed.
    fn assert_read_back(store: &Store, requests: &[(String, String)]) {
        let with_upstream: Vec<(String, String, String)> = requests
            .iter()
            .map(|(id, request)| (id.clone(), request.clone(), sent_on(request)))
            .collect();
        assert_read_back_with(store, &with_upstream);
    }

    /// Every row is read back with exactly the client and provider requests it was given.
    fn assert_read_back_with(store: &Store, requests: &[(String, String, String)]) {
        for (id, request, upstream) in requests {
            let row = store
                .get(id)
                .unwrap()
                .unwrap_or_else(|| panic!("{id} gone"));
            assert!(
                &row.client_request == request,
                "{id}: its client request differs"
            );
            assert!(
                &row.upstream_request == upstream,
                "{id}: its provider request differs"
            );
            assert_eq!(row.upstream_response, r#"{"choices":[]}"#, "{id}");
        }
        let listed = store
            .list(&crate::capture::store::Query {
                with_bodies: true,
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(listed.len(), requests.len());
        for row in listed {
            let (_, request, upstream) = requests.iter().find(|(id, ..)| *id == row.id).unwrap();
            assert!(&row.client_request == request, "{} listed", row.id);
            assert!(&row.upstream_request == upstream, "{} listed", row.id);
        }
    }

    /// Puts one session's growing requests, `turns` turns and up, and waits for them.
    fn put_session(
        store: &Store,
        session: &str,
        turns: std::ops::Range<usize>,
    ) -> Vec<(String, String)> {
        let requests: Vec<(String, String)> = turns
            .map(|turn| (format!("{session}_{turn}"), agent_request(turn)))
            .collect();
        for (id, request) in &requests {
            put(store, id, session, unix_seconds(), request);
        }
        store.flush(Duration::from_secs(10));
        requests
    }

    #[test]
    fn a_sessions_growing_requests_are_deltas_of_the_one_before_seventeen_to_a_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        // 7 turns (~18 KB) up to 26 (~68 KB, past the provider request's own delta).
        let requests = put_session(&store, "s", 7..27);
        let expected: Vec<(String, Option<String>)> = (0..20)
            .map(|at| {
                let base = (at % 17 != 0).then(|| requests[at - 1].0.clone());
                (requests[at].0.clone(), base)
            })
            .collect();
        assert_eq!(bases(&store), expected);
        // A delta holds the turn added, not the request again.
        let (last, request) = requests.last().unwrap();
        let bytes = stored_bytes(&store, last);
        assert!(
            bytes < 4096,
            "{bytes} bytes for a {} byte request",
            request.len()
        );
        // Under 60 KiB, the provider's request is a delta of the last one too; past it, of
        // the client's, the nearer (a model renamed) when both are tried.
        assert_eq!(
            stored_as(&store, &requests[1].0),
            [DELTA_OF_ROW, DELTA_OF_ROW | 1, RAW, RAW]
        );
        assert_eq!(
            stored_as(&store, last),
            [DELTA_OF_ROW, DELTA_OF_BODY, RAW, RAW]
        );
        assert_read_back(&store, &requests);
    }

    #[test]
    fn a_translated_request_is_a_delta_of_the_last_translation_when_that_is_shorter() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        // 30 turns (~77 KB) and up: past the provider request's delta of the client's own.
        let requests: Vec<(String, String, String)> = (30..34)
            .map(|turns| {
                (
                    format!("s_{turns}"),
                    agent_request(turns),
                    translated(turns),
                )
            })
            .collect();
        for (id, request, upstream) in &requests {
            put_translated(&store, id, "s", unix_seconds(), request, upstream);
        }
        store.flush(Duration::from_secs(10));
        assert_eq!(bases(&store)[3].1.as_deref(), Some("s_32"));
        // The turn added, twice (the client's and the provider's), and nothing more: each
        // part of a translation that differs from the client's would cost ~40 bytes, 4.8 KB
        // over 120 messages.
        for (id, request, _) in &requests[1..] {
            let bytes = stored_bytes(&store, id);
            assert!(
                bytes < 2 * 2900,
                "{bytes} bytes for a {} byte request",
                request.len()
            );
        }
        for (id, ..) in &requests[1..] {
            assert_eq!(
                stored_as(&store, id),
                [DELTA_OF_ROW, DELTA_OF_ROW | 1, RAW, RAW],
                "{id}"
            );
        }
        assert_read_back_with(&store, &requests);
    }

    #[test]
    fn requests_are_deltas_only_within_their_session_and_only_when_long() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        let long = agent_request(10);
        let short = agent_request(2);
        let rows = [
            ("a_1", "a", &long),
            ("b_1", "b", &long),
            ("a_2", "a", &long),
            ("none_1", "", &long),
            ("none_2", "", &long),
            ("a_3", "a", &short),
            ("b_2", "b", &long),
        ];
        for (id, session, request) in rows {
            put(&store, id, session, unix_seconds(), request);
        }
        store.flush(Duration::from_secs(10));
        assert_bases(
            &store,
            &[
                ("a_1", None),
                ("b_1", None),
                ("a_2", Some("a_1")),
                ("none_1", None),
                ("none_2", None),
                ("a_3", None),
                ("b_2", Some("b_1")),
            ],
        );
        let requests: Vec<(String, String)> = rows
            .iter()
            .map(|(id, _, request)| (id.to_string(), request.to_string()))
            .collect();
        assert_read_back(&store, &requests);
    }

    #[test]
    fn two_conversations_in_one_session_are_each_a_chain_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        // An agent and its sub-agent take turns in one session, each growing.
        let mut requests = Vec::new();
        for turns in 7..12 {
            for conversation in 0..2 {
                let id = format!("c{conversation}_{turns}");
                let request = conversation_request(conversation, turns);
                put(&store, &id, "s", unix_seconds(), &request);
                requests.push((id, request));
            }
        }
        store.flush(Duration::from_secs(10));
        let expected: Vec<(String, Option<String>)> = requests
            .iter()
            .enumerate()
            .map(|(at, (id, _))| (id.clone(), (at >= 2).then(|| requests[at - 2].0.clone())))
            .collect();
        assert_eq!(bases(&store), expected);
        for (id, request) in &requests[2..] {
            let bytes = stored_bytes(&store, id);
            assert!(bytes < 4096, "{id}: {bytes} bytes for {}", request.len());
        }
        assert_read_back(&store, &requests);
    }

    #[test]
    fn a_shorter_request_that_shares_a_conversations_start_does_not_take_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        // A sub-agent starts from its agent's first nine turns: its request pays as a delta
        // of the agent's, but the agent's next request is still a delta of the agent's last.
        let mut requests: Vec<(String, String)> = (7..11)
            .map(|turns| (format!("a_{turns}"), agent_request(turns)))
            .collect();
        requests.push(("sub".into(), agent_request(9)));
        requests.push(("a_11".into(), agent_request(11)));
        for (id, request) in &requests {
            put(&store, id, "s", unix_seconds(), request);
        }
        store.flush(Duration::from_secs(10));
        assert_bases(
            &store,
            &[
                ("a_7", None),
                ("a_8", Some("a_7")),
                ("a_9", Some("a_8")),
                ("a_10", Some("a_9")),
                ("sub", Some("a_10")),
                ("a_11", Some("a_10")),
            ],
        );
        assert_read_back(&store, &requests);
    }

    /// A connection with just enough of a store for `Chains::base_for`, holding `rows`.
    fn rows_table(rows: std::ops::Range<i64>) -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE requests (id TEXT)")
            .unwrap();
        for rowid in rows {
            connection
                .execute(
                    "INSERT INTO requests (rowid, id) VALUES (?1, ?2)",
                    params![rowid, format!("r{rowid}")],
                )
                .unwrap();
        }
        connection
    }

    /// Asks `chains` for a base for the row `rowid` of `session`, then keeps it as the writer
    /// does: stored as a delta of it when that pays.
    fn write(chains: &mut Chains, connection: &Connection, session: &str, rowid: i64, body: &str) {
        let id = format!("r{rowid}");
        let depth = chains
            .base_for(connection, session, &id, body)
            .unwrap()
            .and_then(|earlier| {
                let mut delta = Vec::new();
                crate::capture::delta::encode(
                    earlier.client.as_bytes(),
                    body.as_bytes(),
                    &mut delta,
                )
                .then_some(earlier.depth)
            });
        chains.remember(session, rowid, &id, [body.to_owned(), String::new()], depth);
    }

    #[test]
    fn the_writer_keeps_one_base_a_conversation_two_a_session_and_sixteen_in_all() {
        let connection = rows_table(1..400);
        let mut chains = Chains::default();
        let mut rowid = 0;
        let mut next = || {
            rowid += 1;
            rowid
        };
        // One conversation, past a full chain: its last row only.
        for turns in 7..30 {
            write(
                &mut chains,
                &connection,
                "one",
                next(),
                &agent_request(turns),
            );
            assert_eq!(chains.kept("one"), (1, 1), "{turns} turns");
        }
        // Three conversations taking turns: two are kept.
        for turns in 7..10 {
            for conversation in 0..3 {
                let request = conversation_request(conversation, turns);
                write(&mut chains, &connection, "three", next(), &request);
            }
        }
        assert_eq!(chains.kept("three"), (3, 2));
        // Twenty more sessions: the sixteen used last are kept.
        for session in 0..20 {
            let request = agent_request(7);
            write(
                &mut chains,
                &connection,
                &format!("s{session}"),
                next(),
                &request,
            );
        }
        assert_eq!(chains.kept("s19"), (16, 1));
        assert_eq!(chains.kept("one"), (16, 0));
        assert_eq!(chains.kept("s4"), (16, 1));
        assert_eq!(chains.kept("s3"), (16, 0));
    }

    #[test]
    fn rebuilt_bodies_make_room_by_dropping_the_one_used_longest_ago() {
        let mut rebuilt = Rebuilt::default();
        for rowid in 0..Rebuilt::KEPT as i64 {
            rebuilt.keep((rowid, 0), format!("body {rowid}"));
        }
        assert_eq!(rebuilt.get((0, 0)).as_deref(), Some("body 0"));
        rebuilt.keep((1000, 0), "new".into());
        // The first, used since, stays; the second, not used since it was kept, went.
        assert_eq!(rebuilt.bodies.len(), Rebuilt::KEPT);
        assert_eq!(rebuilt.get((0, 0)).as_deref(), Some("body 0"));
        assert_eq!(rebuilt.get((1, 0)), None);
        assert_eq!(rebuilt.get((1000, 0)).as_deref(), Some("new"));
        assert_eq!(rebuilt.get((2, 0)).as_deref(), Some("body 2"));
    }

    #[test]
    fn rebuilt_bodies_are_kept_within_their_bytes() {
        let mut rebuilt = Rebuilt::default();
        let body = "x".repeat(1 << 20);
        for rowid in 0..24 {
            rebuilt.keep((rowid, 0), body.clone());
            assert!(
                rebuilt.bytes <= Rebuilt::BYTES,
                "{rowid}: {} bytes",
                rebuilt.bytes
            );
        }
        assert_eq!(rebuilt.bodies.len(), Rebuilt::BYTES >> 20);
        assert_eq!(rebuilt.bytes, Rebuilt::BYTES);
        assert!(rebuilt.get((23, 0)).is_some());
        assert!(rebuilt.get((7, 0)).is_none());
        // Kept again under its key: counted once.
        rebuilt.keep((23, 0), "short".into());
        assert_eq!(rebuilt.bytes, Rebuilt::BYTES - (1 << 20) + 5);
        // One body over the bytes by itself is still kept, alone.
        rebuilt.keep((99, 0), "y".repeat(Rebuilt::BYTES + 1));
        assert_eq!(rebuilt.bodies.len(), 1);
        assert!(rebuilt.get((99, 0)).is_some());
    }

    #[test]
    fn deleting_a_row_first_stores_the_row_that_is_a_delta_of_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        let mut requests = put_session(&store, "s", 7..12);
        assert!(store.delete("s_9").unwrap());
        requests.remove(2);
        assert!(store.delete("s_7").unwrap());
        requests.remove(0);
        assert_bases(
            &store,
            &[("s_8", None), ("s_10", None), ("s_11", Some("s_10"))],
        );
        assert_read_back(&store, &requests);
        // The next request of the session is a delta of the last one again.
        requests.extend(put_session(&store, "s", 12..13));
        assert_eq!(bases(&store)[3], ("s_12".into(), Some("s_11".into())));
        assert_read_back(&store, &requests);
    }

    fn used_bytes(store: &Store) -> u64 {
        super::super::used_bytes(&Connection::open(store.path()).unwrap()).unwrap()
    }

    /// `store` (in `dir`) reopened with room for about half of the rows it holds over
    /// `empty` bytes, once its retention has run: the oldest go, a few at a time.
    fn reopened_with_half_the_room(dir: &Path, store: Store, empty: u64) -> Store {
        let full = used_bytes(&store);
        drop(store);
        let store = self::store(
            dir,
            Retention {
                max_age: None,
                max_bytes: Some(empty + (full - empty) / 2),
            },
        );
        store.flush(Duration::from_secs(10));
        store
    }

    #[test]
    fn retention_by_size_keeps_every_row_it_leaves_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        let empty = used_bytes(&store);
        let mut requests = put_session(&store, "s", 7..31);
        let store = reopened_with_half_the_room(dir.path(), store, empty);
        let kept = bases(&store);
        assert!((1..24).contains(&kept.len()), "{} rows kept", kept.len());
        requests.drain(..24 - kept.len());
        assert_eq!(
            kept[0],
            (requests[0].0.clone(), None),
            "the oldest left is whole"
        );
        assert_read_back(&store, &requests);
    }

    #[test]
    fn retention_by_size_deletes_the_oldest_first_when_they_started_at_the_same_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        let empty = used_bytes(&store);
        // One clock reading for all: the rows written first go first. (This pins the order
        // rather than the fix: the chunk was picked again by each statement before, and
        // SQLite happened to pick the same rows, in the index's rowid order.)
        let at = unix_seconds();
        let mut requests: Vec<(String, String)> = (7..31)
            .map(|turns| (format!("s_{turns}"), agent_request(turns)))
            .collect();
        for (id, request) in &requests {
            put(&store, id, "s", at, request);
        }
        store.flush(Duration::from_secs(10));
        let store = reopened_with_half_the_room(dir.path(), store, empty);
        let kept = bases(&store);
        assert!((1..24).contains(&kept.len()), "{} rows kept", kept.len());
        requests.drain(..24 - kept.len());
        let ids: Vec<&String> = kept.iter().map(|(id, _)| id).collect();
        let newest: Vec<&String> = requests.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, newest, "the newest rows are kept");
        assert_read_back(&store, &requests);
    }

    #[test]
    fn retention_stores_the_rows_it_keeps_whole_before_deleting_their_bases() {
        let dir = tempfile::tempdir().unwrap();
        let day = 24.0 * 3600.0;
        let store = store(
            dir.path(),
            Retention {
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
                max_bytes: None,
            },
        );
        // Written while they were young, then found old at the next prune: rows are pruned
        // by the time they started, and a restart prunes at once.
        let mut requests = Vec::new();
        for (at, turns) in (7..12).enumerate() {
            let id = format!("s_{turns}");
            let request = agent_request(turns);
            let started_at = if at < 3 {
                unix_seconds() - 6.9 * day
            } else {
                unix_seconds()
            };
            put(&store, &id, "s", started_at, &request);
            requests.push((id, request));
        }
        store.flush(Duration::from_secs(10));
        assert_eq!(bases(&store).len(), 5);
        drop(store);
        let store = self::store(
            dir.path(),
            Retention {
                max_age: Some(Duration::from_secs(6 * 24 * 3600)),
                max_bytes: None,
            },
        );
        store.flush(Duration::from_secs(10));
        requests.drain(..3);
        assert_bases(&store, &[("s_10", None), ("s_11", Some("s_10"))]);
        assert_read_back(&store, &requests);
    }

    #[test]
    fn a_base_deleted_before_the_next_request_is_written_leaves_that_request_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        put_session(&store, "s", 7..8);
        assert!(store.delete("s_7").unwrap());
        // The writer still holds s_7's request, but its row is gone, and its rowid is given
        // to the next row written: another session's.
        let mut requests = put_session(&store, "other", 3..4);
        requests.extend(put_session(&store, "s", 8..10));
        assert_bases(
            &store,
            &[("other_3", None), ("s_8", None), ("s_9", Some("s_8"))],
        );
        assert_read_back(&store, &requests);
    }

    #[test]
    fn a_row_whose_chain_is_broken_does_not_stop_its_base_from_being_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        put_session(&store, "s", 7..9);
        let connection = Connection::open(store.path()).unwrap();
        // s_8's delta is cut short: it cannot be read, nor made whole.
        let cut = segments::stored_frame(&connection, "s_8")[..30].to_vec();
        connection
            .execute(
                "UPDATE requests SET bodies = ?1, segment = NULL WHERE id = 's_8'",
                [cut],
            )
            .unwrap();
        assert!(store.get("s_8").is_err());
        assert!(store.delete("s_7").unwrap());
        assert_bases(&store, &[("s_8", None)]);
        // Its unreadable frame went with its base: read against the next row to take that
        // rowid, it could have given that row's text.
        let s_8 = store.get("s_8").unwrap().unwrap();
        assert!(s_8.client_request.contains("could not read"), "{s_8:?}");
        assert!(store.delete("s_8").unwrap());
        assert!(bases(&store).is_empty());
    }

    #[test]
    fn a_recorded_request_sent_on_in_the_clients_buffer_is_chained_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(store(dir.path(), Retention::default()));
        let record = |id: &str, request: &str| {
            let recorder = super::super::Recorder::new(store.clone());
            let body = bytes::Bytes::from(request.to_owned());
            recorder.client_request(&axum::http::HeaderMap::new(), body.clone());
            recorder.update(|row| {
                row.id = id.into();
                row.session_id = "s".into();
                row.started_at = unix_seconds();
            });
            // The same buffer, as a request sent on unchanged is.
            recorder.upstream_request(body);
            recorder.upstream_response(r#"{"choices":[]}"#, false);
            recorder.client_response(br#"{"choices":[]}"#);
        };
        // 30 turns (~77 KB): past `SHARED_FROM`, so the recorder shares the buffer.
        let requests: Vec<(String, String, String)> = (30..32)
            .map(|turns| {
                (
                    format!("s_{turns}"),
                    agent_request(turns),
                    agent_request(turns),
                )
            })
            .collect();
        for (id, request, _) in &requests {
            record(id, request);
        }
        store.flush(Duration::from_secs(10));
        assert_bases(&store, &[("s_30", None), ("s_31", Some("s_30"))]);
        assert_eq!(
            stored_as(&store, "s_31"),
            [DELTA_OF_ROW, SAME_AS_BODY, RAW, SAME_AS_BODY | 2]
        );
        assert_read_back_with(&store, &requests);
    }

    #[test]
    fn a_delta_of_a_row_that_is_gone_or_of_itself_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Retention::default());
        put_session(&store, "s", 7..8);
        let connection = Connection::open(store.path()).unwrap();
        let rowid = rowid_of(&connection, "s_7");
        let request = agent_request(7);
        let frame_naming = |rowid: i64| {
            let earlier = Earlier {
                rowid,
                client: &request,
                upstream: "",
                depth: 0,
            };
            let mut packer = Packer::default();
            let (frame, chained) = packer
                .pack_bodies([&request, "", "an answer", ""], Some(&earlier))
                .unwrap();
            assert!(chained && frame.starts_with(RAW_TAG));
            assert_eq!(frame[4..8], DELTA_OF_ROW.to_le_bytes());
            frame.to_vec()
        };
        for (names, error) in [
            (rowid + 100, "which is gone"),
            (rowid, "chain of deltas is longer than 16"),
        ] {
            connection
                .execute(
                    "UPDATE requests SET bodies = ?1 WHERE rowid = ?2",
                    params![frame_naming(names), rowid],
                )
                .unwrap();
            let read = store.get("s_7").unwrap_err();
            assert!(read.contains(error), "{read}");
        }
        // Frames the writer never writes: a delta of another body, or of two rows. Each
        // would let a damaged frame read many rows for one.
        put_session(&store, "t", 7..8);
        let earlier_row = rowid_of(&connection, "t_7");
        let frame_of = |words: &[(u32, Option<i64>)]| {
            let mut frame = RAW_TAG.to_vec();
            for &(word, rowid) in words {
                frame.extend_from_slice(&word.to_le_bytes());
                if let Some(rowid) = rowid {
                    frame.extend_from_slice(&rowid.to_le_bytes());
                    frame.extend_from_slice(&0u32.to_le_bytes());
                }
            }
            frame
        };
        let row_delta = |index: u32, rowid: i64| (DELTA_OF_ROW | index, Some(rowid));
        for (frame, error) in [
            (
                frame_of(&[row_delta(1, earlier_row), (0, None), (0, None), (0, None)]),
                "another body or row",
            ),
            (
                frame_of(&[row_delta(0, earlier_row), row_delta(1, earlier_row + 1)]),
                "another body or row",
            ),
            (frame_of(&[(DELTA_OF_ROW | 2, None)]), "reads 0xfffffd02"),
            (
                [RAW_TAG.as_slice(), &DELTA_OF_ROW.to_le_bytes(), &[1, 2]].concat(),
                "row is cut off",
            ),
        ] {
            connection
                .execute(
                    "UPDATE requests SET bodies = ?1 WHERE rowid = ?2",
                    params![frame, rowid],
                )
                .unwrap();
            let read = store.get("s_7").unwrap_err();
            assert!(read.contains(error), "{error}: {read}");
        }
    }
}
