//! The SQLite capture store survives `kill -9` of the real binary under load: the database
//! reopens (WAL recovery) without corruption, and every request answered well before the
//! kill (ten flush intervals) is stored, whole.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use llmux::capture::store::{Query, RequestRow, Store};
use serde_json::json;

/// How often the writer commits.
const FLUSH: Duration = Duration::from_millis(50);
/// A request answered this long before the kill must be stored.
const DURABLE_AFTER: Duration = Duration::from_millis(500);
const TASKS: usize = 4;
const PER_TASK: usize = 50;
/// A cap on requests per task of a burst cut by the kill.
const CAP: usize = 2_000;
/// Filler so each row spans a few pages and commits take a while.
const FILLER_WORDS: usize = 150;

/// The server process; killed (SIGKILL) and reaped on drop, so a failing test leaves none.
struct Server {
    child: Option<Child>,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `llmux serve` on a port the OS picks, and waits for `/health`.
    async fn start(dir: &Path, db: &Path, client: &reqwest::Client) -> Self {
        let config = dir.join("llmux.toml");
        std::fs::write(
            &config,
            "default_backend = \"mock\"\n\n[auth]\ndisable_auth = true\n",
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmux"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--port", "0", "--capture-flush-interval"])
            .arg(FLUSH.as_secs_f64().to_string())
            .arg("--capture-db")
            .arg(db)
            .current_dir(dir)
            .env_clear()
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("xdg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // One line per request goes to stderr: drain it for the whole run, or the server
        // would block on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = addr_tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Self {
            child: Some(child),
            addr: String::new(),
            log,
        };
        let addr =
            tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(20)))
                .await
                .unwrap();
        match addr {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!("llmux did not start:\n{}", server.log()),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.get(server.url("/health")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("no /health: {other:?}\n{}", server.log()),
            }
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL, then reap it (bounded).
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    assert!(!status.success(), "killed, yet exited {status}");
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => panic!("llmux was not reaped 10 s after SIGKILL"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One request sent, and how it ended.
#[derive(Debug, Clone)]
struct Sent {
    prompt: String,
    /// The `x-request-id` of an answer read to its end.
    id: Option<String>,
    status: Option<u16>,
    done: Instant,
}

impl Sent {
    /// Answered (200, read to the end) at least `age` before `at`.
    fn answered_before(&self, at: Instant, age: Duration) -> bool {
        self.status == Some(200) && self.done <= at && at.duration_since(self.done) >= age
    }
}

fn prompt(burst: u32, task: usize, n: usize) -> String {
    // The token is one FTS term, unique to this request.
    let mut text = format!("crashprobe b{burst}t{task}r{n}");
    for i in 0..FILLER_WORDS {
        text.push_str(&format!(" filler{}", i % 17));
    }
    text
}

async fn chat(client: &reqwest::Client, url: &str, prompt: String) -> Sent {
    let body = json!({"model": "mock-model",
        "messages": [{"role": "user", "content": prompt}]});
    let mut sent = Sent {
        prompt,
        id: None,
        status: None,
        done: Instant::now(),
    };
    if let Ok(response) = client.post(url).json(&body).send().await {
        let status = response.status().as_u16();
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response.bytes().await.is_ok() {
            sent.status = Some(status);
            sent.id = id;
        }
    }
    sent.done = Instant::now();
    sent
}

/// `TASKS` tasks, each sending requests one after another (`pause` apart) until one fails
/// (the server is gone), `stop` is set, or `CAP`.
fn load(
    client: &reqwest::Client,
    url: &str,
    burst: u32,
    pause: Duration,
    stop: &Arc<AtomicBool>,
    sent: &Arc<Mutex<Vec<Sent>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..TASKS)
        .map(|task| {
            let (client, url) = (client.clone(), url.to_owned());
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                for n in 0..CAP {
                    let one = chat(&client, &url, prompt(burst, task, n)).await;
                    let failed = one.status.is_none();
                    sent.lock().unwrap().push(one);
                    if failed || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            })
        })
        .collect()
}

/// Kills the server while `tasks` load it, and returns when they have all ended.
async fn kill_under(
    server: &mut Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: &AtomicBool,
) -> Instant {
    let killed_at = Instant::now();
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("a load task hung after the kill")
            .unwrap();
    }
    killed_at
}

fn assert_well_formed(row: &RequestRow, prompt: &str) {
    assert_eq!(row.status, 200, "{row:?}");
    assert_eq!(row.prompt_text, prompt, "row {}", row.id);
    assert_eq!(row.backend, "mock", "{row:?}");
    assert_eq!(row.model_requested, "mock-model", "{row:?}");
    assert!(!row.stream, "{row:?}");
    assert!(row.error.is_empty(), "{row:?}");
    assert!(!row.response_text.is_empty(), "{row:?}");
    assert!(row.started_at > 1.0e9, "{row:?}");
    assert!(row.client_request.contains(prompt), "row {}", row.id);
}

/// After a SIGKILL: the WAL is there, the store reopens, SQLite and FTS5 find nothing
/// wrong, and every row is one of `sent`, whole. Returns the reopened store, the stored
/// ids, and the WAL's size before recovery.
fn recover(db: &Path, sent: &[&Sent]) -> (Store, HashSet<String>, u64) {
    let mut wal = PathBuf::from(db);
    wal.as_mut_os_string().push("-wal");
    let wal_bytes = std::fs::metadata(&wal)
        .map(|m| m.len())
        .expect("no WAL after SIGKILL");
    let store = Store::open(db, FLUSH, Vec::new()).expect("the store does not reopen");

    let check = rusqlite::Connection::open(db).unwrap();
    check.busy_timeout(Duration::from_secs(5)).unwrap();
    let journal: String = check
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let integrity: Vec<String> = check
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(integrity, ["ok"], "integrity_check after SIGKILL");
    // The full-text index agrees with its rows.
    check
        .execute(
            "INSERT INTO requests_fts(requests_fts) VALUES('integrity-check')",
            [],
        )
        .expect("FTS5 integrity-check after SIGKILL");
    // The index follows the rows in batches: it has every row up to `indexed_to` (one
    // snapshot, while the reopened store's writer may be indexing the rest).
    let count_rows = || -> (u64, u64, u64, u64) {
        check
            .query_row(
                "SELECT (SELECT COUNT(*) FROM requests),
                        (SELECT COUNT(*) FROM requests
                         WHERE rowid <= (SELECT indexed_to FROM search_index)),
                        (SELECT COUNT(*) FROM requests_fts),
                        (SELECT COUNT(*) FROM requests_fts f
                         WHERE NOT EXISTS (SELECT 1 FROM requests r WHERE r.rowid = f.rowid))",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
    };
    let (_, indexed, fts_rows, orphans) = count_rows();
    assert_eq!(indexed, fts_rows, "indexed rows and requests_fts disagree");
    assert_eq!(orphans, 0, "FTS rows without a request");
    // The rows the kill left unindexed are indexed once the store writes again.
    store.flush(Duration::from_secs(10));
    let (rows, indexed, fts_rows, orphans) = count_rows();
    assert_eq!(
        (indexed, fts_rows, orphans),
        (rows, rows, 0),
        "after a flush"
    );
    assert_eq!(store.count().unwrap(), rows);

    // Every row is one we sent, whole; an id we saw carries its own prompt.
    let by_prompt: HashMap<&str, &Sent> = sent.iter().map(|s| (s.prompt.as_str(), *s)).collect();
    let all: Vec<(String, String)> = check
        .prepare("SELECT id, prompt_text FROM requests")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, prompt) in &all {
        let sent = by_prompt
            .get(prompt.as_str())
            .unwrap_or_else(|| panic!("row {id} has a prompt never sent"));
        if let Some(sent_id) = &sent.id {
            assert_eq!(sent_id, id, "prompt stored under another id");
        }
        assert_well_formed(&store.get(id).unwrap().unwrap(), prompt);
    }
    let ids = all.into_iter().map(|(id, _)| id).collect();
    (store, ids, wal_bytes)
}

/// The requests answered at least `DURABLE_AFTER` before the kill that are not stored.
fn lost<'a>(sent: &[&'a Sent], stored: &HashSet<String>, killed_at: Instant) -> Vec<&'a Sent> {
    sent.iter()
        .copied()
        .filter(|s| s.answered_before(killed_at, DURABLE_AFTER))
        .filter(|s| !stored.contains(s.id.as_deref().unwrap_or("")))
        .collect()
}

/// Answered but not stored, and how long before the kill the oldest of them was answered.
fn cost(sent: &[&Sent], stored: &HashSet<String>, killed_at: Instant) -> (usize, Duration) {
    let ages: Vec<Duration> = sent
        .iter()
        .filter(|s| s.answered_before(killed_at, Duration::ZERO))
        .filter(|s| !stored.contains(s.id.as_deref().unwrap_or("")))
        .map(|s| killed_at.duration_since(s.done))
        .collect();
    (ages.len(), ages.into_iter().max().unwrap_or_default())
}

/// A burst, a pause past the durability bound, then a second burst flat out, cut by
/// SIGKILL: the database is intact and holds the whole first burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_capture_store_survives_sigkill_under_load() {
    let begun = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capture.sqlite");
    let client = client();
    let mut server = Server::start(dir.path(), &db, &client).await;
    let url = server.url("/v1/chat/completions");

    // Burst 1: TASKS × PER_TASK requests, each task sequential.
    let burst1_began = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 0..PER_TASK {
                sent.push(chat(&client, &url, prompt(1, task, n)).await);
            }
            sent
        }));
    }
    let mut burst1 = Vec::new();
    for task in tasks {
        burst1.extend(
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("burst 1 hung")
                .unwrap(),
        );
    }
    let burst1_time = burst1_began.elapsed();
    for sent in &burst1 {
        assert_eq!(sent.status, Some(200), "{sent:?}\n{}", server.log());
        assert!(sent.id.is_some(), "no x-request-id: {sent:?}");
    }
    let ids: HashSet<&str> = burst1.iter().filter_map(|s| s.id.as_deref()).collect();
    assert_eq!(ids.len(), TASKS * PER_TASK, "x-request-id not unique");

    // Let burst 1 age past the durability bound, and check the live server has it.
    tokio::time::sleep(DURABLE_AFTER + FLUSH * 2).await;
    let last = burst1.iter().max_by_key(|s| s.done).unwrap();
    let response = client
        .get(server.url(&format!(
            "/admin/api/requests/{}",
            last.id.as_deref().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the live server lost its last row");
    let shown: serde_json::Value = response.json().await.unwrap();
    assert_eq!(shown["prompt_text"], last.prompt.as_str(), "{shown}");

    // Burst 2: flat out, cut by SIGKILL at a random moment, long enough for a few hundred
    // rows, so the writer is likely committing when it dies.
    let stop = Arc::new(AtomicBool::new(false));
    let burst2 = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(&client, &url, 2, Duration::ZERO, &stop, &burst2);
    let kill_after = Duration::from_millis(fastrand::u64(100..=400));
    tokio::time::sleep(kill_after).await;
    let killed_at = kill_under(&mut server, tasks, &stop).await;
    let burst2 = std::mem::take(&mut *burst2.lock().unwrap());
    assert!(
        burst2
            .iter()
            .any(|s| s.answered_before(killed_at, Duration::ZERO)),
        "the kill came before burst 2 did anything"
    );

    let sent: Vec<&Sent> = burst1.iter().chain(burst2.iter()).collect();
    let (store, stored, wal_bytes) = recover(&db, &sent);

    // Nothing answered DURABLE_AFTER before the kill is lost, and that is all of burst 1.
    let lost_ = lost(&sent, &stored, killed_at);
    assert!(
        lost_.is_empty(),
        "{} requests answered at least {DURABLE_AFTER:?} before the kill were lost: {:?}",
        lost_.len(),
        lost_.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
    for sent in &burst1 {
        assert!(sent.answered_before(killed_at, DURABLE_AFTER));
        let id = sent.id.as_deref().unwrap();
        assert_well_formed(&store.get(id).unwrap().unwrap(), &sent.prompt);
    }

    // And the recovered index still finds them.
    for sent in &burst1 {
        let token = sent.prompt.split_whitespace().nth(1).unwrap();
        let found = store
            .list(&Query {
                text: Some(token.to_owned()),
                limit: 10,
                ..Query::default()
            })
            .unwrap();
        let found: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(found, [sent.id.as_deref().unwrap()], "search for {token}");
    }

    let burst2: Vec<&Sent> = burst2.iter().collect();
    let (unstored, oldest) = cost(&burst2, &stored, killed_at);
    eprintln!(
        "burst 1: {} requests in {burst1_time:?}; burst 2: killed after {kill_after:?}, {} \
         sent, {} stored, {unstored} answered but not stored (oldest answered {oldest:?} before \
         the kill); WAL {wal_bytes} bytes before recovery; total {:?}",
        burst1.len(),
        burst2.len(),
        stored.len() - burst1.len(),
        begun.elapsed()
    );
}

/// Steady load (requests closer together than the flush interval, too few to fill a batch),
/// cut by SIGKILL: every request answered ten flush intervals before the kill is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_steady_load_sigkill_loses_nothing_older_than_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capture.sqlite");
    let client = client();
    let mut server = Server::start(dir.path(), &db, &client).await;
    let url = server.url("/v1/chat/completions");

    // About 4 / 20 ms = 200 requests a second: one every 5 ms, far under the 50 ms flush
    // interval, and some 240 in 1.2 s: under the writer's 256-row batch.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(&client, &url, 3, Duration::from_millis(20), &stop, &sent);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let killed_at = kill_under(&mut server, tasks, &stop).await;
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let sent: Vec<&Sent> = sent.iter().collect();
    let old = sent
        .iter()
        .filter(|s| s.answered_before(killed_at, DURABLE_AFTER))
        .count();
    assert!(old > 0, "no request was answered early enough to count");

    let (_store, stored, wal_bytes) = recover(&db, &sent);
    let lost_ = lost(&sent, &stored, killed_at);
    let (unstored, oldest) = cost(&sent, &stored, killed_at);
    eprintln!(
        "steady load: {} sent, {old} answered at least {DURABLE_AFTER:?} before the kill, \
         {unstored} answered but not stored (oldest answered {oldest:?} before the kill); \
         {} rows stored; WAL {wal_bytes} bytes before recovery",
        sent.len(),
        stored.len()
    );
    assert!(
        lost_.is_empty(),
        "{} of {old} requests answered at least {DURABLE_AFTER:?} (10 flush intervals) \
         before the kill were lost; the oldest was answered {oldest:?} before it. Rows are \
         committed only when the writer's queue is idle for a whole flush interval or 256 \
         rows are waiting, so steady traffic defers commits indefinitely",
        lost_.len()
    );
}

/// The same bound, in process: rows inserted 10 ms apart (never idle for a flush interval)
/// are readable within a few flush intervals, not only once 256 have queued.
#[test]
fn rows_inserted_steadily_are_committed_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("capture.sqlite"), FLUSH, Vec::new()).unwrap();
    let begun = Instant::now();
    let mut inserted_by_half_time = 0;
    let mut n = 0;
    while begun.elapsed() < DURABLE_AFTER * 2 {
        store.insert(RequestRow {
            id: format!("req_{n}"),
            started_at: 1.7e9,
            status: 200,
            prompt_text: format!("steady row {n}"),
            ..RequestRow::default()
        });
        n += 1;
        if begun.elapsed() <= DURABLE_AFTER {
            inserted_by_half_time = n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Still inserting: no idle flush interval yet, and far fewer than 256 rows.
    let committed = store.count().unwrap();
    assert!(
        committed >= inserted_by_half_time,
        "{committed} of {n} rows committed after {:?} of steady inserts; {inserted_by_half_time} \
         were inserted more than {DURABLE_AFTER:?} ago",
        begun.elapsed()
    );
}
