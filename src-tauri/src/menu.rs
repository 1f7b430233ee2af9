//! What the tray menu's items do, apart from any display: the tray (tray.rs) turns a click
//! into an [`Action`] and [`handle`] carries it out through a [`Shell`] (clipboard, windows,
//! notifications, exit), so the handlers are unit-tested with a recording shell.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use llmux::router::breaker::Notice;

use crate::proxy::{Proxy, State, Status};

/// Which client's base URL to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    OpenAi,
    Anthropic,
    Gemini,
}

/// A page of the app's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Inspector,
    Settings,
}

impl Page {
    /// The UI's hash route.
    pub fn route(self) -> &'static str {
        match self {
            Page::Inspector => "#/",
            Page::Settings => "#/settings",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "inspector" => Some(Page::Inspector),
            "settings" => Some(Page::Settings),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The "Proxy enabled" check item.
    ToggleProxy,
    /// The "Start at login" check item.
    StartAtLogin,
    CopyBaseUrl(Client),
    Open(Page),
    /// Shown only when the build has an update address.
    CheckForUpdates,
    Quit,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::ToggleProxy,
        Action::StartAtLogin,
        Action::CopyBaseUrl(Client::OpenAi),
        Action::CopyBaseUrl(Client::Anthropic),
        Action::CopyBaseUrl(Client::Gemini),
        Action::Open(Page::Inspector),
        Action::Open(Page::Settings),
        Action::CheckForUpdates,
        Action::Quit,
    ];

    /// The menu item id.
    pub fn id(self) -> &'static str {
        match self {
            Action::ToggleProxy => "proxy-enabled",
            Action::StartAtLogin => "start-at-login",
            Action::CopyBaseUrl(Client::OpenAi) => "copy-openai",
            Action::CopyBaseUrl(Client::Anthropic) => "copy-anthropic",
            Action::CopyBaseUrl(Client::Gemini) => "copy-gemini",
            Action::Open(Page::Inspector) => "inspector",
            Action::Open(Page::Settings) => "settings",
            Action::CheckForUpdates => "check-for-updates",
            Action::Quit => "quit",
        }
    }

    /// The menu item's text.
    pub fn label(self) -> &'static str {
        match self {
            Action::ToggleProxy => "Proxy enabled",
            Action::StartAtLogin => "Start at login",
            Action::CopyBaseUrl(Client::OpenAi) => "Copy base URL for OpenAI clients",
            Action::CopyBaseUrl(Client::Anthropic) => "Copy base URL for Anthropic clients",
            Action::CopyBaseUrl(Client::Gemini) => "Copy base URL for Gemini clients",
            Action::Open(Page::Inspector) => "Inspector…",
            Action::Open(Page::Settings) => "Settings…",
            Action::CheckForUpdates => "Check for updates…",
            Action::Quit => "Quit llmux",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == id)
    }
}

/// What the handlers need from the desktop around them.
pub trait Shell: Send + Sync {
    fn copy_text(&self, text: &str) -> Result<(), String>;
    fn open(&self, page: Page);
    fn notify(&self, title: &str, body: &str);
    fn quit(&self);
    /// Checks for a newer release and tells the user what it found.
    fn check_for_updates(&self);
    /// Whether the app starts when the user logs in.
    fn starts_at_login(&self) -> Result<bool, String>;
    fn set_start_at_login(&self, on: bool) -> Result<(), String>;
}

/// Carries out a menu action.
pub async fn handle(action: Action, proxy: &Proxy, shell: &dyn Shell) {
    match action {
        Action::ToggleProxy => {
            let running = proxy.status().state == State::Running;
            proxy.set_enabled(!running).await;
        }
        Action::CopyBaseUrl(client) => {
            let status = proxy.status();
            let url = match client {
                Client::OpenAi => status.openai_base_url(),
                Client::Anthropic => status.anthropic_base_url(),
                Client::Gemini => status.gemini_base_url(),
            };
            if let Err(err) = shell.copy_text(&url) {
                shell.notify("llmux: cannot copy", &err);
            }
        }
        Action::StartAtLogin => {
            let changed = shell
                .starts_at_login()
                .and_then(|on| shell.set_start_at_login(!on));
            if let Err(err) = changed {
                shell.notify("llmux: cannot change start at login", &err);
            }
        }
        Action::Open(page) => shell.open(page),
        Action::CheckForUpdates => shell.check_for_updates(),
        Action::Quit => {
            proxy.stop().await;
            shell.quit();
        }
    }
}

/// Tells the user when the proxy enters the error state (it may be the only sign they get:
/// the tray icon is easy to miss).
pub fn on_status_change(before: &Status, after: &Status, shell: &dyn Shell) {
    if after.state == State::Error && (before.state != State::Error || before.error != after.error)
    {
        let reason = after.error.as_deref().unwrap_or("unknown error");
        shell.notify("llmux: the proxy is not running", reason);
    }
}

/// How often the same notice (a route failing over from one leg, a back-end's breaker) may
/// become a notification: an agent sends many requests, each could fail over.
pub const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// Shows failovers, breakers that open and refused keys as notifications, each subject at
/// most once per [`NOTICE_EVERY`]; a breaker closing only goes to the log.
#[derive(Default)]
pub struct Notices {
    last: HashMap<String, Instant>,
    /// The kinds the user turned off in `[notifications]`.
    off: Kinds,
}

/// Which notice kinds are switched off (all on by default).
#[derive(Default, Clone, Copy)]
struct Kinds {
    key_refused: bool,
    login_needed: bool,
    failover: bool,
    breaker: bool,
}

impl Notices {
    /// Follows `[notifications]` (the settings may change while the app runs).
    pub fn set_kinds(&mut self, kinds: &llmux::config::raw::RawNotifications) {
        self.off = Kinds {
            key_refused: !kinds.key_refused,
            login_needed: !kinds.login_needed,
            failover: !kinds.failover,
            breaker: !kinds.breaker,
        };
    }

    fn is_off(&self, notice: &Notice) -> bool {
        match notice {
            Notice::FailedOver { .. } => self.off.failover,
            Notice::BreakerOpened { .. } | Notice::BreakerClosed { .. } => self.off.breaker,
            Notice::KeyRefused { .. } => self.off.key_refused,
            Notice::LoginNeeded { .. } => self.off.login_needed,
        }
    }

    pub fn show(&mut self, notice: &Notice, shell: &dyn Shell, now: Instant) {
        if self.is_off(notice) {
            return;
        }
        let (subject, title, body) = match notice {
            Notice::FailedOver {
                route,
                from,
                to,
                failure,
            } => (
                format!("failover {route} {from}"),
                format!("llmux: route {route} failed over"),
                format!("{from} failed ({failure}); {to} answered instead"),
            ),
            Notice::BreakerOpened {
                backend,
                cool_down_seconds,
                last_error,
            } => (
                format!("breaker {backend}"),
                format!("llmux: back-end {backend} is failing"),
                format!(
                    "Left alone for {cool_down_seconds} s after failing in a row: {last_error}"
                ),
            ),
            Notice::BreakerClosed { backend } => {
                tracing::info!("back-end {backend} answers again");
                return;
            }
            Notice::KeyRefused {
                backend,
                key,
                status,
            } => {
                let key = key.as_deref().unwrap_or("its key");
                (
                    format!("key {backend} {key}"),
                    format!("llmux: {backend} refused a key"),
                    format!(
                        "{backend} answered {status} to {key}: expired, revoked or mistyped. \
                         Check it under Settings > Keys."
                    ),
                )
            }
            Notice::LoginNeeded {
                backend,
                login,
                message,
            } => (
                format!("login {backend} {}", login.as_deref().unwrap_or("")),
                format!("llmux: {backend} needs a new login"),
                message.clone(),
            ),
        };
        if self
            .last
            .get(&subject)
            .is_some_and(|at| now.duration_since(*at) < NOTICE_EVERY)
        {
            return;
        }
        self.last.insert(subject, now);
        shell.notify(&title, &body);
    }
}

/// The tray's status line.
pub fn status_line(status: &Status) -> String {
    let mut served = match status.requests_served {
        1 => "1 request".to_owned(),
        n => format!("{n} requests"),
    };
    if let Some(tokens) = status.tokens_today {
        served.push_str(&format!(" · {} tokens today", compact(tokens)));
    }
    match status.state {
        State::Running if status.no_provider => format!(
            "Running on {} · no provider key yet: add one in Settings",
            status.address
        ),
        State::Running => format!(
            "Running on {} · {} · {served}",
            status.address, status.default_backend
        ),
        State::Stopped => format!("Stopped · {} · {served}", status.default_backend),
        State::Error => {
            // The menu is as wide as its longest line; the notification has the whole text.
            let reason = status.error.as_deref().unwrap_or("unknown error");
            let reason = strip_os_error(reason);
            let reason = reason.strip_prefix("cannot listen on ").unwrap_or(reason);
            let mut line = format!("Error: {reason}");
            if line.chars().count() > STATUS_WIDTH {
                line = line.chars().take(STATUS_WIDTH - 1).collect::<String>() + "…";
            }
            line
        }
    }
}

const STATUS_WIDTH: usize = 56;

/// 950, 12.3k, 4.5M: a count that fits a menu line.
fn compact(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// "Address already in use (os error 98)" reads fine without its number.
fn strip_os_error(reason: &str) -> &str {
    match reason.rfind(" (os error ") {
        Some(at) if reason.ends_with(')') => &reason[..at],
        _ => reason,
    }
}

/// The tray's tooltip.
pub fn tooltip(status: &Status) -> String {
    match status.state {
        State::Running if status.no_provider => format!(
            "llmux: running on {}, but no back-end has a key yet",
            status.address
        ),
        State::Running => format!("llmux: running on {}", status.address),
        State::Stopped => "llmux: stopped".to_owned(),
        State::Error => "llmux: error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tests::{free_port, test_proxy};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<String>>,
        at_login: Mutex<bool>,
    }

    impl Recorder {
        fn events(&self) -> Vec<String> {
            self.events.lock().unwrap().clone()
        }
        fn push(&self, event: String) {
            self.events.lock().unwrap().push(event);
        }
    }

    impl Shell for Recorder {
        fn copy_text(&self, text: &str) -> Result<(), String> {
            self.push(format!("copy {text}"));
            Ok(())
        }
        fn open(&self, page: Page) {
            self.push(format!("open {}", page.route()));
        }
        fn notify(&self, title: &str, body: &str) {
            self.push(format!("notify {title}: {body}"));
        }
        fn quit(&self) {
            self.push("quit".into());
        }
        fn check_for_updates(&self) {
            self.push("check for updates".into());
        }
        fn starts_at_login(&self) -> Result<bool, String> {
            Ok(*self.at_login.lock().unwrap())
        }
        fn set_start_at_login(&self, on: bool) -> Result<(), String> {
            self.push(format!("start at login {on}"));
            *self.at_login.lock().unwrap() = on;
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_start_at_login_item_flips_the_setting() {
        let proxy = test_proxy(free_port());
        let shell = Recorder::default();
        handle(Action::StartAtLogin, &proxy, &shell).await;
        handle(Action::StartAtLogin, &proxy, &shell).await;
        assert_eq!(
            shell.events(),
            ["start at login true", "start at login false"]
        );
        assert_eq!(proxy.status().state, State::Stopped);
    }

    #[test]
    fn failovers_and_open_breakers_notify_once_a_minute_each() {
        let shell = Recorder::default();
        let mut notices = Notices::default();
        let failed_over = Notice::FailedOver {
            route: "coder".into(),
            from: "openrouter:qwen".into(),
            to: "zai:glm".into(),
            failure: "429".into(),
        };
        let start = Instant::now();
        notices.show(&failed_over, &shell, start);
        notices.show(&failed_over, &shell, start + Duration::from_secs(10));
        notices.show(
            &Notice::BreakerOpened {
                backend: "openrouter".into(),
                cool_down_seconds: 30,
                last_error: "answered 503".into(),
            },
            &shell,
            start + Duration::from_secs(11),
        );
        notices.show(
            &Notice::BreakerClosed {
                backend: "openrouter".into(),
            },
            &shell,
            start + Duration::from_secs(12),
        );
        notices.show(&failed_over, &shell, start + Duration::from_secs(61));
        assert_eq!(
            shell.events(),
            [
                "notify llmux: route coder failed over: openrouter:qwen failed (429); zai:glm answered instead",
                "notify llmux: back-end openrouter is failing: Left alone for 30 s after failing in a row: answered 503",
                "notify llmux: route coder failed over: openrouter:qwen failed (429); zai:glm answered instead",
            ]
        );
    }

    #[test]
    fn a_refused_key_notifies_once_a_minute_naming_the_key_never_its_value() {
        let shell = Recorder::default();
        let mut notices = Notices::default();
        let refused = refused_openai_key();
        let start = Instant::now();
        notices.show(&refused, &shell, start);
        notices.show(&refused, &shell, start + Duration::from_secs(5));
        assert_eq!(
            shell.events(),
            [
                "notify llmux: openai refused a key: openai answered 401 to OPENAI_API_KEY: expired, revoked or mistyped. Check it under Settings > Keys."
            ]
        );
    }

    /// OpenAI refusing the key in OPENAI_API_KEY.
    fn refused_openai_key() -> Notice {
        Notice::KeyRefused {
            backend: "openai".into(),
            key: Some("OPENAI_API_KEY".into()),
            status: 401,
        }
    }

    #[test]
    fn a_login_that_needs_the_user_notifies_with_the_command_to_run() {
        let shell = Recorder::default();
        let mut notices = Notices::default();
        let needed = Notice::LoginNeeded {
            backend: "chatgpt".into(),
            login: Some("~/.codex/auth.json".into()),
            message: "the login at ~/.codex/auth.json could not be refreshed: log in again with `codex login`".into(),
        };
        let start = Instant::now();
        notices.show(&needed, &shell, start);
        notices.show(&needed, &shell, start + Duration::from_secs(10));
        assert_eq!(
            shell.events(),
            [
                "notify llmux: chatgpt needs a new login: the login at ~/.codex/auth.json could not be refreshed: log in again with `codex login`"
            ]
        );
    }

    #[test]
    fn a_kind_switched_off_in_the_settings_is_not_shown() {
        let shell = Recorder::default();
        let mut notices = Notices::default();
        let refused = refused_openai_key();
        notices.set_kinds(&llmux::config::raw::RawNotifications {
            key_refused: false,
            ..Default::default()
        });
        notices.show(&refused, &shell, Instant::now());
        assert!(shell.events().is_empty(), "{:?}", shell.events());
        let failed_over = Notice::FailedOver {
            route: "coder".into(),
            from: "a:m".into(),
            to: "b:m".into(),
            failure: "429".into(),
        };
        notices.show(&failed_over, &shell, Instant::now());
        assert_eq!(shell.events().len(), 1, "other kinds still show");
        notices.set_kinds(&Default::default());
        notices.show(&refused, &shell, Instant::now());
        assert_eq!(shell.events().len(), 2, "on again");
    }

    #[test]
    fn every_action_round_trips_through_its_menu_id() {
        for action in Action::ALL {
            assert_eq!(Action::from_id(action.id()), Some(action));
        }
        assert_eq!(Action::from_id("nope"), None);
    }

    #[tokio::test]
    async fn the_toggle_item_stops_and_starts_the_listeners() {
        let port = free_port();
        let proxy = test_proxy(port);
        let shell = Recorder::default();
        proxy.start().await;

        handle(Action::ToggleProxy, &proxy, &shell).await;
        assert_eq!(proxy.status().state, State::Stopped);
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );

        handle(Action::ToggleProxy, &proxy, &shell).await;
        assert_eq!(proxy.status().state, State::Running);
        assert!(
            proxy.status().no_provider,
            "only the mock answers: the tray says no provider is set up"
        );
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(shell.events().is_empty());
        proxy.stop().await;
    }

    #[tokio::test]
    async fn copy_items_copy_each_clients_base_url_pages_open_and_updates_are_checked() {
        let port = free_port();
        let proxy = test_proxy(port);
        let shell = Recorder::default();
        for client in [Client::OpenAi, Client::Anthropic, Client::Gemini] {
            handle(Action::CopyBaseUrl(client), &proxy, &shell).await;
        }
        handle(Action::Open(Page::Settings), &proxy, &shell).await;
        handle(Action::Open(Page::Inspector), &proxy, &shell).await;
        handle(Action::CheckForUpdates, &proxy, &shell).await;
        assert_eq!(
            shell.events(),
            [
                format!("copy http://127.0.0.1:{port}/v1"),
                format!("copy http://127.0.0.1:{port}/anthropic"),
                format!("copy http://127.0.0.1:{port}"),
                "open #/settings".to_owned(),
                "open #/".to_owned(),
                "check for updates".to_owned(),
            ]
        );
    }

    #[tokio::test]
    async fn a_bind_error_from_the_toggle_notifies_once_and_quit_stops_first() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let proxy = test_proxy(port);
        let shell = Recorder::default();
        let mut changes = proxy.subscribe();
        let mut before = changes.borrow_and_update().clone();

        handle(Action::ToggleProxy, &proxy, &shell).await;
        let after = changes.borrow_and_update().clone();
        assert_eq!(after.state, State::Error);
        on_status_change(&before, &after, &shell);
        // The same error again is not news.
        on_status_change(&after, &after, &shell);
        let events = shell.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0]
                .starts_with("notify llmux: the proxy is not running: cannot listen on 127.0.0.1:")
        );
        assert!(status_line(&proxy.status()).starts_with("Error: 127.0.0.1:"));

        drop(taken);
        handle(Action::ToggleProxy, &proxy, &shell).await;
        before = after;
        let after = changes.borrow_and_update().clone();
        assert_eq!(after.state, State::Running);
        on_status_change(&before, &after, &shell);
        assert_eq!(shell.events().len(), 1);

        handle(Action::Quit, &proxy, &shell).await;
        assert_eq!(proxy.status().state, State::Stopped);
        assert_eq!(shell.events().last().map(String::as_str), Some("quit"));
    }

    #[test]
    fn status_lines() {
        let mut status = test_proxy(8000).status();
        assert_eq!(status_line(&status), "Stopped · mock · 0 requests");
        status.state = State::Running;
        status.requests_served = 1;
        assert_eq!(
            status_line(&status),
            "Running on 127.0.0.1:8000 · mock · 1 request"
        );
        status.state = State::Error;
        status.error = Some("cannot listen on 127.0.0.1:8000: Address in use (os error 98)".into());
        assert_eq!(
            status_line(&status),
            "Error: 127.0.0.1:8000: Address in use"
        );
        status.error = Some("x".repeat(200));
        assert_eq!(status_line(&status).chars().count(), STATUS_WIDTH);
        status.state = State::Running;
        status.requests_served = 12;
        status.tokens_today = Some(48_250);
        assert_eq!(
            status_line(&status),
            "Running on 127.0.0.1:8000 · mock · 12 requests · 48.2k tokens today"
        );
        status.no_provider = true;
        assert_eq!(
            status_line(&status),
            "Running on 127.0.0.1:8000 · no provider key yet: add one in Settings"
        );
        assert_eq!(
            tooltip(&status),
            "llmux: running on 127.0.0.1:8000, but no back-end has a key yet"
        );
        assert_eq!(compact(950), "950");
        assert_eq!(compact(4_500_000), "4.5M");
    }
}
