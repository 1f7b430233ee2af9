//! Subscription logins: the OAuth tokens the official CLIs (Codex, Claude Code, Qwen Code,
//! Gemini CLI) keep in a file after `codex login`, `claude /login`, ..., used as a
//! back-end's credentials.
//!
//! A [`Login`] is one such file. It is read when first needed and again whenever it
//! changes on disk (a `notify` watcher marks it; the next request reads it), so a re-login
//! while llmux runs is picked up without a restart. The access token is refreshed:
//! - ahead of its expiry, in the background (a timer per login, and a request that finds
//!   it inside the window starts one without waiting for it);
//! - at once when it has expired or the provider refused it (401), with one refresh in
//!   flight per login however many requests are waiting;
//! - never blindly: the file is read again first, because the CLI may have refreshed it
//!   already, and refresh tokens that rotate are burned when two parties use the same one
//!   (openai/codex#10332).
//!
//! What was refreshed is written back the way the CLI writes it (every field kept, the
//! file's mode kept, atomically), unless the file changed during the refresh (a new
//! login, which wins). A refusal of the refresh token itself (`invalid_grant`,
//! `refresh_token_reused`, ...) is reported as "log in again with `<cli> login`" and not
//! retried while the file holds that refresh token; an endpoint that fails otherwise is
//! tried again only after a growing pause, so waiting requests and the timer do not each
//! call it. Back-ends that share a file share one refresh turn. Each provider's file
//! layout is in its own module ([`codex`], [`claude`], [`qwen`]).

pub mod claude;
pub mod codex;
pub mod file;
pub mod google;
pub mod jwt;
pub mod qwen;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::Secret;
use crate::error::{Error, ErrorKind};
use file::ReadError;

/// A token this close to its expiry is refreshed before it is used.
const EXPIRY_MARGIN_MS: u64 = 30_000;
/// The longest wait for the token endpoint.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// The background timer looks at least this often, in case the file changed.
const TIMER_MAX_SLEEP: Duration = Duration::from_secs(3600);
/// ... and at most this often, so a failing refresh is not retried in a tight loop.
const TIMER_MIN_SLEEP: Duration = Duration::from_secs(15);
/// The first pause after a token endpoint failed for a reason that may pass; it doubles
/// with each failure in a row, up to [`RETRY_MAX_PAUSE`].
const RETRY_FIRST_PAUSE: Duration = Duration::from_secs(5);
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(300);
/// The longest a first-use setup (Code Assist's project discovery and onboarding) may
/// take before the request gives up (the next one tries again).
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// What a credential file holds, in the terms llmux uses.
#[derive(Clone)]
pub struct Tokens {
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// When the access token expires, in Unix milliseconds, when the file or the token
    /// says.
    pub expires_at_ms: Option<u64>,
    pub account: AccountInfo,
    /// An API root the login names (Qwen's `resource_url`), used over the back-end's.
    pub api_base: Option<String>,
}

/// Who the login belongs to, as far as the file or the token says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccountInfo {
    pub email: Option<String>,
    /// The subscription (`plus`, `pro`, `max`, ...).
    pub plan: Option<String>,
    /// The provider's account id (ChatGPT's `chatgpt-account-id`).
    pub id: Option<String>,
}

/// How a refresh request is sent.
pub enum RefreshBody {
    Json(Value),
    Form(Vec<(&'static str, String)>),
}

/// A renewal of the access token: where it goes (the client's token URL unless the file
/// names another) and what it says.
pub struct Renewal {
    pub url: Option<String>,
    pub body: RefreshBody,
}

/// The OAuth client llmux refreshes as: the CLI's public client, or one configured.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: String,
    /// Google's installed-app clients send a (public) secret too.
    pub client_secret: Option<Secret>,
    /// The official CLI's executable, whose package holds the public client secret, for
    /// when none is configured (the Gemini CLI).
    pub installed_cli: Option<std::path::PathBuf>,
}

/// One provider's credential file layout and refresh protocol.
pub trait LoginFormat: Send + Sync {
    /// The CLI that writes the file, for messages ("Codex CLI").
    fn cli(&self) -> &'static str;
    /// What the user runs to log in again.
    fn login_command(&self) -> &'static str;
    /// The tokens in the file's JSON.
    fn read(&self, file: &Value) -> Result<Tokens, String>;
    /// The body of a refresh-token grant.
    fn refresh_body(&self, refresh_token: &str, client: &OAuthClient) -> RefreshBody;
    /// How to renew the access token of `file`: a refresh-token grant by default.
    fn renewal(
        &self,
        _file: &Value,
        tokens: &Tokens,
        client: &OAuthClient,
    ) -> Result<Renewal, String> {
        Ok(Renewal {
            url: None,
            body: self.refresh_body(refresh_token(tokens)?.expose(), client),
        })
    }
    /// The lock file the CLI takes around a refresh, which llmux takes too (Qwen Code's).
    fn refresh_lock(&self, _path: &Path) -> Option<PathBuf> {
        None
    }
    /// Whether renewed tokens are written back to the file (not for files that only hold
    /// what renews them, such as Google's application default credentials).
    fn writes_back(&self) -> bool {
        true
    }
    /// Puts the token endpoint's answer into the file's JSON, changing only the fields the
    /// CLI itself changes on a refresh.
    fn store_refresh(&self, file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String>;
}

/// The refresh token of `tokens`, or why there is none to renew with.
pub fn refresh_token(tokens: &Tokens) -> Result<&Secret, String> {
    tokens
        .refresh
        .as_ref()
        .ok_or_else(|| "has no refresh token and its access token is no longer accepted".into())
}

/// The settings of one login.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginSettings {
    pub paths: Vec<PathBuf>,
    pub client: OAuthClient,
    /// How long before expiry the token is refreshed in the background.
    pub refresh_ahead: Duration,
    /// Code Assist: the Google Cloud project requests bill to, when configured.
    pub project: Option<String>,
    /// Code Assist: how often account onboarding is polled.
    pub onboard_poll: Duration,
}

/// A login's record, for the admin API and the settings window.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct LoginStatus {
    pub backend: String,
    /// The back-end type (`openai-oauth`, ...).
    pub kind: String,
    pub path: String,
    /// Whether the credential file exists (false: the user has not logged in with the CLI).
    pub found: bool,
    pub email: Option<String>,
    pub plan: Option<String>,
    /// Unix seconds the access token is good until, when known.
    pub valid_until: Option<f64>,
    /// Unix seconds of the last refresh llmux made.
    pub last_refresh: Option<f64>,
    pub refreshes: u64,
    pub last_error: Option<String>,
    /// What to run to log in again.
    pub login_command: String,
}

/// The file as last read: its tokens, and its JSON to write a refresh back into.
pub struct Loaded {
    pub tokens: Tokens,
    file: Value,
}

impl Loaded {
    fn expires_within(&self, margin_ms: u64) -> bool {
        self.tokens
            .expires_at_ms
            .is_some_and(|at| at <= now_ms().saturating_add(margin_ms))
    }

    fn same_token(&self, other: &Loaded) -> bool {
        self.tokens.access == other.tokens.access
    }
}

#[derive(Default)]
struct Record {
    last_refresh_ms: Option<u64>,
    last_error: Option<String>,
    /// The last failed refresh, until one succeeds.
    failure: Option<Failure>,
}

/// A refresh that failed: not tried again with the same refresh token until `retry_at`
/// (never, when the endpoint refused the token).
struct Failure {
    refresh: Option<Secret>,
    problem: FileProblem,
    in_a_row: u32,
    retry_at: Option<Instant>,
}

/// The refresh turn of the credential file at `path`, shared by every [`Login`] on it in
/// this process (two back-ends on one file would otherwise both spend its rotating
/// refresh token).
fn refresh_turn_for(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    type Turns = Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>;
    static TURNS: LazyLock<Turns> = LazyLock::new(Default::default);
    let key = same_file_key(path);
    let mut turns = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    turns.retain(|_, turn| turn.strong_count() > 0);
    if let Some(turn) = turns.get(&key).and_then(Weak::upgrade) {
        return turn;
    }
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    turns.insert(key, Arc::downgrade(&turn));
    turn
}

/// One name for every spelling of a file's path (`~/.codex/../.codex/auth.json`, a link).
fn same_file_key(path: &Path) -> PathBuf {
    if let Ok(path) = path.canonicalize() {
        return path;
    }
    match (path.parent().map(Path::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => path.to_owned(),
    }
}

pub struct Login {
    backend: String,
    kind: &'static str,
    path: PathBuf,
    format: &'static dyn LoginFormat,
    client: OAuthClient,
    refresh_ahead: Duration,
    http: reqwest::Client,
    current: RwLock<Option<Arc<Loaded>>>,
    /// Set by the watcher (and at first): the file must be read before the next use.
    changed: Arc<AtomicBool>,
    /// One refresh at a time per file; waiters find the new token when they get it.
    refreshing: Arc<tokio::sync::Mutex<()>>,
    refreshes: AtomicU64,
    record: Mutex<Record>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    timer_started: AtomicBool,
    /// What the provider said about the account at its first use (Code Assist's project),
    /// with the refresh token it was learned for: another login in the file learns again.
    setup: tokio::sync::Mutex<Option<(Option<Secret>, Value)>>,
}

impl Login {
    pub fn new(
        backend: &str,
        kind: &'static str,
        path: PathBuf,
        format: &'static dyn LoginFormat,
        settings: &LoginSettings,
        http: reqwest::Client,
    ) -> Arc<Self> {
        let refreshing = refresh_turn_for(&path);
        Arc::new(Self {
            backend: backend.to_owned(),
            kind,
            path,
            format,
            client: settings.client.clone(),
            refresh_ahead: settings.refresh_ahead,
            http,
            current: RwLock::new(None),
            changed: Arc::new(AtomicBool::new(true)),
            refreshing,
            refreshes: AtomicU64::new(0),
            record: Mutex::new(Record::default()),
            watcher: Mutex::new(None),
            timer_started: AtomicBool::new(false),
            setup: tokio::sync::Mutex::new(None),
        })
    }

    /// The name the key ring, the attempt chain and captures show: the file's path, with
    /// the home directory as `~`.
    pub fn name(&self) -> String {
        display_path(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A token to send now: read from the file when it changed, refreshed first when it
    /// has expired (or is about to), refreshed in the background when it is inside the
    /// refresh-ahead window.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<Loaded>, Error> {
        let loaded = self.current_or_read().await?;
        if loaded.expires_within(EXPIRY_MARGIN_MS) {
            return self.refresh(&loaded).await;
        }
        if loaded.expires_within(millis(self.refresh_ahead)) {
            self.refresh_in_background(&loaded);
        }
        Ok(loaded)
    }

    /// The provider refused `used` (401): a token from another refresh or from the file
    /// when there is a newer one, else a refreshed one.
    pub async fn refused(self: &Arc<Self>, used: &Arc<Loaded>) -> Result<Arc<Loaded>, Error> {
        self.refresh(used).await
    }

    /// What `learn` finds out about this account, learned once per login (a failure is
    /// not kept: the next request tries again).
    pub async fn setup<F>(&self, loaded: &Loaded, learn: F) -> Result<Value, Error>
    where
        F: std::future::Future<Output = Result<Value, Error>>,
    {
        let mut setup = self.setup.lock().await;
        if let Some((learned_for, value)) = setup.as_ref()
            && *learned_for == loaded.tokens.refresh
        {
            return Ok(value.clone());
        }
        let value = match tokio::time::timeout(SETUP_TIMEOUT, learn).await {
            Ok(learned) => learned?,
            Err(_) => {
                return Err(ErrorKind::BackendUnreachable {
                    backend: self.backend.clone(),
                    message: format!(
                        "setting up the account took longer than {SETUP_TIMEOUT:?}; the next request tries again"
                    ),
                }
                .into());
            }
        };
        *setup = Some((loaded.tokens.refresh.clone(), value.clone()));
        Ok(value)
    }

    pub fn status(&self) -> LoginStatus {
        let current = self.current.read().ok().and_then(|c| c.clone());
        let record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        let account = current
            .as_ref()
            .map(|c| c.tokens.account.clone())
            .unwrap_or_default();
        LoginStatus {
            backend: self.backend.clone(),
            kind: self.kind.to_owned(),
            path: self.name(),
            found: self.path.exists(),
            email: account.email,
            plan: account.plan,
            valid_until: current
                .as_ref()
                .and_then(|c| c.tokens.expires_at_ms)
                .map(|ms| ms as f64 / 1000.0),
            last_refresh: record.last_refresh_ms.map(|ms| ms as f64 / 1000.0),
            refreshes: self.refreshes.load(Ordering::Relaxed),
            last_error: record.last_error.clone(),
            login_command: self.format.login_command().to_owned(),
        }
    }

    /// [`Login::status`], with what the file says when llmux has not read it yet (a peek:
    /// nothing is adopted, watched or refreshed).
    pub async fn status_now(&self) -> LoginStatus {
        let mut status = self.status();
        let unread = self.current.read().map(|c| c.is_none()).unwrap_or(true);
        if !unread {
            return status;
        }
        match self.read_file().await {
            Ok(peeked) => {
                status.email = peeked.tokens.account.email.clone();
                status.plan = peeked.tokens.account.plan.clone();
                status.valid_until = peeked.tokens.expires_at_ms.map(|ms| ms as f64 / 1000.0);
            }
            // Never logged in and never used: nothing went wrong, there is just no login.
            Err(FileProblem::Read(ReadError::Missing)) => {}
            Err(problem) if status.last_error.is_none() => {
                status.last_error = Some(self.describe(&problem).0);
            }
            Err(_) => {}
        }
        status
    }

    /// Reads the file when it changed (or was never read); a file that stays half-written
    /// leaves the last good tokens in use.
    async fn current_or_read(self: &Arc<Self>) -> Result<Arc<Loaded>, Error> {
        self.watch();
        if !self.changed.swap(false, Ordering::AcqRel)
            && let Some(current) = self.current.read().ok().and_then(|c| c.clone())
        {
            return Ok(current);
        }
        match self.read_file().await {
            Ok(loaded) => {
                let loaded = self.adopt(loaded);
                // After adopting: the timer's first sleep is timed by this expiry.
                self.start_timer();
                Ok(loaded)
            }
            Err(err) => {
                let kept = self.current.read().ok().and_then(|c| c.clone());
                match (&err, kept) {
                    (FileProblem::Read(ReadError::NotJson(_)), Some(kept)) => {
                        tracing::warn!(
                            backend = %self.backend,
                            "{} is not valid JSON after a change; using the login read before",
                            self.name()
                        );
                        Ok(kept)
                    }
                    _ => {
                        if let Ok(mut current) = self.current.write() {
                            *current = None;
                        }
                        Err(self.fail(err))
                    }
                }
            }
        }
    }

    async fn read_file(&self) -> Result<Loaded, FileProblem> {
        let file = file::read_json(&self.path)
            .await
            .map_err(FileProblem::Read)?;
        let tokens = self.format.read(&file).map_err(FileProblem::Layout)?;
        Ok(Loaded { tokens, file })
    }

    fn adopt(&self, loaded: Loaded) -> Arc<Loaded> {
        let loaded = Arc::new(loaded);
        if let Ok(mut current) = self.current.write() {
            *current = Some(loaded.clone());
        }
        loaded
    }

    /// One refresh at a time. After waiting its turn it first looks whether the token it
    /// was asked to replace is already replaced (another request refreshed, or the CLI
    /// rewrote the file), and only then asks the token endpoint.
    ///
    /// It runs in a task of its own: a client that walks away must not cancel a refresh
    /// whose rotated refresh token the provider has already issued but llmux has not yet
    /// written.
    async fn refresh(self: &Arc<Self>, seen: &Arc<Loaded>) -> Result<Arc<Loaded>, Error> {
        let (login, seen) = (self.clone(), seen.clone());
        tokio::spawn(async move { login.refresh_in_turn(&seen).await })
            .await
            .map_err(|e| Error::internal(format!("the login refresh stopped: {e}")))?
    }

    async fn refresh_in_turn(self: &Arc<Self>, seen: &Arc<Loaded>) -> Result<Arc<Loaded>, Error> {
        let _turn = self.refreshing.lock().await;
        if let Some(current) = self.current.read().ok().and_then(|c| c.clone())
            && !current.same_token(seen)
            && !current.expires_within(EXPIRY_MARGIN_MS)
        {
            return Ok(current);
        }
        // A refresh token refused before (or an endpoint pausing) needs no lock to say so.
        if let Some(problem) = self.failed_before(seen.tokens.refresh.as_ref()) {
            return Err(self.error_for(&problem));
        }
        // Held until the refreshed file is written: the CLI then sees one or the other.
        let _lock = match self.format.refresh_lock(&self.path) {
            Some(lock) => Some(
                file::FileLock::acquire(lock)
                    .await
                    .map_err(|why| self.fail(FileProblem::Endpoint(why)))?,
            ),
            None => None,
        };
        let on_disk = self.read_file().await.map_err(|err| self.fail(err))?;
        if !on_disk.same_token(seen) && !on_disk.expires_within(EXPIRY_MARGIN_MS) {
            tracing::info!(backend = %self.backend, "{} was renewed by its CLI", self.name());
            return Ok(self.adopt(on_disk));
        }
        if let Some(problem) = self.failed_before(on_disk.tokens.refresh.as_ref()) {
            return Err(self.error_for(&problem));
        }
        let renewal = self
            .format
            .renewal(&on_disk.file, &on_disk.tokens, &self.client)
            .map_err(|why| self.fail(FileProblem::Refused(why)))?;
        let answer = match self
            .call_token_endpoint(renewal, on_disk.tokens.refresh.as_ref())
            .await
        {
            Ok(answer) => answer,
            Err(problem) => {
                self.remember_failure(on_disk.tokens.refresh.clone(), &problem);
                return Err(self.fail(problem));
            }
        };
        // The file again: a login made while the endpoint answered wins over this
        // refresh, and fields the CLI changed meanwhile are kept.
        // A file removed or replaced by another kind of login meanwhile (`codex logout`,
        // an API-key login) is the user's choice: the new tokens serve this process only.
        let (mut file, write_back) = match self.read_file().await {
            Ok(latest) if !latest.same_token(&on_disk) => {
                tracing::info!(backend = %self.backend, "{} changed during the refresh; using it", self.name());
                return Ok(self.adopt(latest));
            }
            Ok(latest) => (latest.file, true),
            Err(FileProblem::Read(ReadError::NotJson(_))) => (on_disk.file, true),
            Err(_) => (on_disk.file, false),
        };
        let now = now_ms();
        self.format
            .store_refresh(&mut file, &answer, now)
            .map_err(|why| self.fail(FileProblem::Endpoint(why)))?;
        let tokens = self
            .format
            .read(&file)
            .map_err(|why| self.fail(FileProblem::Endpoint(why)))?;
        if !self.format.writes_back() || !write_back {
            // Kept in memory only.
        } else if let Err(err) = file::write_json(&self.path, &file).await {
            // The new tokens still serve this process; the CLI keeps its old ones.
            tracing::warn!(backend = %self.backend, "cannot write the refreshed login back to {}: {err}", self.name());
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        {
            let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
            record.last_refresh_ms = Some(now);
            record.last_error = None;
            record.failure = None;
        }
        tracing::info!(backend = %self.backend, "refreshed the login in {}", self.name());
        Ok(self.adopt(Loaded { tokens, file }))
    }

    /// Starts a refresh without waiting for it, unless one is running.
    fn refresh_in_background(self: &Arc<Self>, seen: &Arc<Loaded>) {
        if self.refreshing.try_lock().is_err() {
            return;
        }
        let (login, seen) = (self.clone(), seen.clone());
        // Already a task of its own: no need for `refresh`'s.
        tokio::spawn(async move {
            let _ = login.refresh_in_turn(&seen).await;
        });
    }

    async fn call_token_endpoint(
        &self,
        renewal: Renewal,
        refresh_token: Option<&Secret>,
    ) -> Result<Value, FileProblem> {
        let url = renewal.url.as_deref().unwrap_or(&self.client.token_url);
        let request = self
            .http
            .post(url)
            .timeout(REFRESH_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json");
        let request = match renewal.body {
            RefreshBody::Json(body) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            RefreshBody::Form(fields) => request.form(&fields),
        };
        let response = request.send().await.map_err(|err| {
            FileProblem::Endpoint(format!("the token endpoint is unreachable: {err}"))
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return match json.get("access_token").and_then(Value::as_str) {
                Some(_) => Ok(json),
                None => Err(FileProblem::Endpoint(
                    "the token endpoint answered without an access_token".into(),
                )),
            };
        }
        let why = refresh_error(&json, status, refresh_token.map_or("", Secret::expose));
        if matches!(status, 400 | 401 | 403) && refresh_token_is_dead(&why) {
            Err(FileProblem::Refused(format!(
                "could not be refreshed: the token endpoint answered {status} ({why})"
            )))
        } else {
            Err(FileProblem::Endpoint(format!(
                "the token endpoint answered {status} ({why})"
            )))
        }
    }

    /// The failure of the last refresh with `refresh`, while it still holds: a refused
    /// refresh token stays refused, another failure until its pause is over.
    fn failed_before(&self, refresh: Option<&Secret>) -> Option<FileProblem> {
        let record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        let failure = record.failure.as_ref()?;
        let holds = failure.refresh.as_ref() == refresh
            && failure.retry_at.is_none_or(|at| Instant::now() < at);
        holds.then(|| failure.problem.clone())
    }

    fn remember_failure(&self, refresh: Option<Secret>, problem: &FileProblem) {
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        let in_a_row = match &record.failure {
            Some(last) if last.refresh == refresh => last.in_a_row + 1,
            _ => 1,
        };
        let pause = RETRY_FIRST_PAUSE
            .saturating_mul(1 << (in_a_row - 1).min(10))
            .min(RETRY_MAX_PAUSE);
        let retry_at = match problem {
            FileProblem::Refused(_) => None,
            _ => Some(Instant::now() + pause),
        };
        record.failure = Some(Failure {
            refresh,
            problem: problem.clone(),
            in_a_row,
            retry_at,
        });
    }

    /// Records `problem` and turns it into the error the client sees.
    fn fail(&self, problem: FileProblem) -> Error {
        let message = self.describe(&problem).0;
        {
            let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
            record.last_error = Some(message.clone());
        }
        tracing::warn!(backend = %self.backend, "{message}");
        self.error_for(&problem)
    }

    /// The error the client sees for `problem`.
    fn error_for(&self, problem: &FileProblem) -> Error {
        let (message, login_required) = self.describe(problem);
        if login_required {
            // A 401 cools this login down in the key ring, so the next account is tried.
            ErrorKind::Upstream {
                backend: self.backend.clone(),
                status: 401,
                message,
                error_type: Some("authentication_error".into()),
                code: Some("login_required".into()),
                retry_after: None,
            }
            .into()
        } else {
            ErrorKind::BackendUnreachable {
                backend: self.backend.clone(),
                message,
            }
            .into()
        }
    }

    /// What `problem` means for the user, and whether only a new login helps.
    fn describe(&self, problem: &FileProblem) -> (String, bool) {
        let path = self.name();
        let again = format!(
            "log in again with `{}` ({})",
            self.format.login_command(),
            self.format.cli()
        );
        match problem {
            FileProblem::Read(ReadError::Missing) => (
                format!("no login at {path} ({}): {again}", ReadError::Missing),
                true,
            ),
            FileProblem::Read(other) => (format!("the login at {path} is unusable: {other}"), true),
            FileProblem::Layout(why) => (
                format!(
                    "the login at {path} is not a {} login ({why}): {again}",
                    self.format.cli()
                ),
                true,
            ),
            FileProblem::Refused(why) => (format!("the login at {path} {why}: {again}"), true),
            FileProblem::Endpoint(why) => (
                format!("the login at {path} could not be refreshed now: {why}"),
                false,
            ),
        }
    }

    /// Watches the file's directory (CLIs replace the file, which a watch on the file
    /// itself would lose); any event naming the file marks it changed.
    fn watch(self: &Arc<Self>) {
        let Ok(mut slot) = self.watcher.lock() else {
            return;
        };
        if slot.is_some() {
            return;
        }
        let Some(dir) = self.path.parent().filter(|d| d.is_dir()) else {
            return;
        };
        let (changed, name) = (
            self.changed.clone(),
            self.path.file_name().map(ToOwned::to_owned),
        );
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reads (llmux's own among them) are not changes.
            if let Ok(event) = event
                && !matches!(event.kind, notify::EventKind::Access(_))
                && event.paths.iter().any(|p| p.file_name() == name.as_deref())
            {
                changed.store(true, Ordering::Release);
            }
        });
        match watcher {
            Ok(mut watcher) => {
                use notify::Watcher as _;
                match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => *slot = Some(watcher),
                    Err(err) => tracing::warn!(
                        backend = %self.backend,
                        "cannot watch {} for re-logins: {err}", dir.display()
                    ),
                }
            }
            Err(err) => {
                tracing::warn!(backend = %self.backend, "cannot watch credential files: {err}")
            }
        }
    }

    /// Refreshes ahead of expiry while nobody sends requests; ends with the login.
    fn start_timer(self: &Arc<Self>) {
        if self.timer_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let login: Weak<Login> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = match login.upgrade() {
                    Some(login) => login.until_refresh_due(),
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(login) = login.upgrade() else {
                    return;
                };
                let Ok(loaded) = login.current_or_read().await else {
                    continue;
                };
                if loaded.expires_within(millis(login.refresh_ahead)) {
                    let _ = login.refresh_in_turn(&loaded).await;
                }
            }
        });
    }

    fn until_refresh_due(&self) -> Duration {
        let expires = self
            .current
            .read()
            .ok()
            .and_then(|c| c.as_ref().and_then(|c| c.tokens.expires_at_ms));
        let Some(expires) = expires else {
            return TIMER_MAX_SLEEP;
        };
        let due = expires.saturating_sub(millis(self.refresh_ahead));
        Duration::from_millis(due.saturating_sub(now_ms())).clamp(TIMER_MIN_SLEEP, TIMER_MAX_SLEEP)
    }
}

/// Why a login cannot be used.
#[derive(Clone)]
enum FileProblem {
    Read(ReadError),
    /// The JSON is not this provider's layout.
    Layout(String),
    /// The provider refused the refresh token: only a new login helps.
    Refused(String),
    /// The token endpoint failed in a way that may pass.
    Endpoint(String),
}

/// Whether a refusal says the refresh token itself is no good (only a new login helps),
/// rather than something that may pass (a firewall's 403, a malformed request).
fn refresh_token_is_dead(why: &str) -> bool {
    let why = why.to_lowercase();
    const CODES: [&str; 5] = [
        "invalid_grant",
        "refresh_token_reused",
        "refresh_token_expired",
        "invalid_token",
        "unauthorized_client",
    ];
    CODES.iter().any(|code| why.contains(code))
        || (why.contains("refresh token")
            && ["invalid", "expired", "revoked", "reused", "not found"]
                .iter()
                .any(|word| why.contains(word)))
}

/// The reason out of an OAuth error answer: `{"error":"invalid_grant",
/// "error_description":...}` or `{"error":{"code"|"type":...,"message":...}}`.
fn refresh_error(body: &Value, status: u16, refresh_token: &str) -> String {
    let error = body.get("error");
    let code = error
        .and_then(|e| {
            e.as_str()
                .or_else(|| e.get("code").and_then(Value::as_str))
                .or_else(|| e.get("type").and_then(Value::as_str))
        })
        .unwrap_or("no error code");
    let detail = body
        .get("error_description")
        .and_then(Value::as_str)
        .or_else(|| error.and_then(|e| e.get("message")).and_then(Value::as_str));
    let text = match detail {
        Some(detail) => format!("{code}: {detail}"),
        None => format!("{code}, HTTP {status}"),
    };
    if refresh_token.is_empty() {
        return text;
    }
    text.replace(refresh_token, "****")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().min(u128::from(u64::MAX)) as u64
}

/// `path` with the home directory shown as `~`.
pub fn display_path(path: &Path) -> String {
    let home = directories::BaseDirs::new().map(|b| b.home_dir().to_owned());
    match home
        .as_deref()
        .and_then(|home| path.strip_prefix(home).ok())
    {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}
