//! llmux desktop: the llmux engine in the tray.
//!
//! The engine runs in this process on Tauri's tokio runtime ([`proxy::Proxy`] owns its
//! listeners); the tray ([`tray`]) toggles it and shows its state; keys live in the OS
//! keychain ([`keychain`]); the window shows the UI (ui/dist) for settings and the inspector,
//! which calls the [`commands`].

pub mod admin;
pub mod commands;
pub mod keychain;
pub mod menu;
pub mod proxy;
pub mod proxy_key;
pub mod shell;
pub mod tray;
#[cfg(test)]
mod typescript;
pub mod updates;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmux::Config;
use llmux::admin::settings::SettingsSource;
use llmux::config::{ConfigLoader, default_config_path};
use llmux::credentials::EnvSecrets;
use tauri::{AppHandle, Manager, RunEvent};

use crate::keychain::{KeyStore, KeychainSecrets, OsKeychain, SERVICE};
use crate::menu::Page;
use crate::proxy::{Proxy, State};
use crate::shell::AppShell;
use crate::tray::Tray;

/// `--show settings|inspector` opens the window at start (the tests use it; a second launch
/// of the app opens settings in the running one).
fn page_from_args(args: &[String]) -> Option<Page> {
    let at = args.iter().position(|a| a == "--show")?;
    args.get(at + 1).and_then(|name| Page::parse(name))
}

/// The loader the CLI would use without flags: `LLMUX_CONFIG` or llmux.toml in the user
/// config directory, then the environment.
fn config_loader() -> ConfigLoader {
    let mut loader = ConfigLoader::new();
    match std::env::var_os("LLMUX_CONFIG") {
        Some(path) => loader = loader.file(PathBuf::from(path), true),
        None => {
            if let Some(path) = default_config_path() {
                loader = loader.file(path, false);
            }
        }
    }
    loader
}

/// How the app turns its config file into the config it serves: the CLI's loader, then the
/// desktop's defaults and the proxy key from the keychain.
pub struct DesktopConfig {
    pub settings: Arc<SettingsSource>,
    data_dir: Option<PathBuf>,
    pub keychain: Arc<dyn KeyStore>,
}

impl DesktopConfig {
    pub fn load(&self) -> Result<(Config, Vec<String>), String> {
        let loaded = self.settings.load().map_err(|e| e.to_string())?;
        let config = with_desktop_defaults(loaded.config, &loaded.raw, self.data_dir.as_deref());
        let notes = (loaded.warnings.iter().map(|w| format!("warning: {w}")))
            .chain(loaded.notes)
            .collect();
        Ok((proxy_key::apply(config, self.keychain.as_ref()), notes))
    }
}

/// The file the capture store uses in the app unless the config names one.
const CAPTURE_DB: &str = "capture.sqlite";

/// The app records traffic for the inspector unless told otherwise: with `capture.db`
/// unset anywhere, the store lives in the app's data directory (`capture.db = ""` turns it
/// off, as on the command line).
fn with_desktop_defaults(
    mut config: Config,
    raw: &llmux::config::raw::RawConfig,
    data_dir: Option<&Path>,
) -> Config {
    if raw.capture.db.is_none()
        && let Some(dir) = data_dir
    {
        config.capture_db = Some(dir.join(CAPTURE_DB));
    }
    config
}

/// Applies saved settings: the next config, served at once when the proxy runs.
async fn apply_saved_settings(proxy: Arc<Proxy>, desktop: Arc<DesktopConfig>) {
    let mut saved = desktop.settings.reloads();
    while saved.changed().await.is_ok() {
        match desktop.load() {
            Ok((config, _)) => {
                tracing::info!("settings saved: applying them");
                proxy.set_config(config);
                proxy.apply_if_running().await;
            }
            Err(err) => tracing::error!("saved settings do not load:\n{err}"),
        }
    }
}

/// The size at which the log file is set aside at start.
const LOG_LIMIT: u64 = 10 * 1024 * 1024;

/// Logs to `llmux.log` in the user log directory (and stderr), at the config's level.
fn init_logging(app: &AppHandle, level: &str) -> Option<PathBuf> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let dir = app.path().app_log_dir().ok()?;
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join("llmux.log");
    // One generation kept: llmux.log.1 takes over when the log has grown past the limit.
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::rename(&path, dir.join("llmux.log.1"));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let file = std::sync::Mutex::new(file);
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(file.and(std::io::stderr))
        .try_init();
    Some(path)
}

pub fn run() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    let show = page_from_args(&args);
    let app = tauri::Builder::default()
        // First, so a second launch exits before it starts anything.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            let page = page_from_args(&argv).unwrap_or(Page::Settings);
            crate::menu::Shell::open(&AppShell(app.clone()), page);
        }))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(tauri_plugin_updater::Builder::new().build())
        .invoke_handler(tauri::generate_handler![
            commands::proxy_status,
            commands::set_proxy_enabled,
            commands::list_keys,
            commands::save_key,
            commands::delete_key,
            commands::proxy_key_status,
            commands::generate_proxy_key,
            commands::copy_proxy_key,
            commands::remove_proxy_key,
            commands::update_status,
            commands::check_for_update,
            commands::download_update,
            commands::install_update,
            admin::admin_info,
            admin::admin_requests,
            admin::admin_request,
            admin::admin_delete_request,
            admin::admin_curl,
            admin::admin_replay,
            admin::admin_export,
            admin::admin_stats,
            admin::admin_clients,
            admin::admin_test,
            admin::admin_change_client,
            admin::admin_usage,
            admin::admin_timeline,
            admin::admin_settings,
            admin::admin_change_settings,
        ])
        .setup(move |app| {
            setup(app.handle(), show, started);
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            eprintln!("llmux: cannot start the desktop app: {err}");
            std::process::exit(1);
        }
    };
    app.run(|_app, event| {
        // A tray app keeps running when its window closes; only Quit ends it.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
}

fn setup(app: &AppHandle, show: Option<Page>, started: Instant) {
    // A tray app: no Dock icon on macOS.
    #[cfg(target_os = "macos")]
    let _ = app.set_activation_policy(tauri::ActivationPolicy::Accessory);
    let data_dir = app.path().app_data_dir().ok();
    if let Some(dir) = &data_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    let store: Arc<dyn KeyStore> = Arc::new(OsKeychain::new(SERVICE));
    let desktop = Arc::new(DesktopConfig {
        settings: Arc::new(SettingsSource::new(config_loader())),
        data_dir,
        keychain: store.clone(),
    });
    let settings = desktop.settings.clone();
    let loaded = desktop.load();
    let level = match &loaded {
        Ok((config, _)) => config.log_level.clone(),
        Err(_) => "info".to_owned(),
    };
    let log_file = init_logging(app, &level);
    tracing::info!(
        "llmux desktop {} starting; log file: {}",
        env!("CARGO_PKG_VERSION"),
        log_file
            .as_deref()
            .map_or_else(|| "none".into(), |p| p.display().to_string())
    );

    let secrets = Arc::new(KeychainSecrets::new(store, EnvSecrets::from_process()));
    let proxy = match loaded {
        Ok((config, notes)) => {
            for note in notes {
                tracing::info!("{note}");
            }
            Proxy::new(config, secrets.clone()).with_settings(settings.clone())
        }
        Err(err) => {
            tracing::error!("invalid configuration:\n{err}");
            let reason = format!("invalid configuration: {err}");
            match Config::defaults() {
                Ok(defaults) => Proxy::blocked(defaults, secrets.clone(), reason),
                Err(defaults_err) => {
                    tracing::error!("built-in defaults do not load: {defaults_err}");
                    std::process::exit(2);
                }
            }
        }
    };
    let proxy = Arc::new(proxy);
    tauri::async_runtime::spawn(apply_saved_settings(proxy.clone(), desktop.clone()));
    app.manage(desktop);
    app.manage(proxy.clone());
    app.manage(secrets);
    app.manage(Arc::new(crate::updates::Updates::for_app(app)));

    match Tray::build(app, &proxy.status()) {
        Ok(tray) => {
            app.manage(tray);
        }
        Err(err) => tracing::error!("no tray icon: {err}"),
    }
    if let Some(page) = show {
        crate::menu::Shell::open(&AppShell(app.clone()), page);
    }

    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let shell = AppShell(app.clone());
        let mut changes = proxy.subscribe();
        let mut notices = proxy.notices();
        let mut notified = crate::menu::Notices::default();
        let mut before = changes.borrow_and_update().clone();
        // A config error is known before any start.
        crate::menu::on_status_change(
            &proxy::Status {
                state: State::Stopped,
                ..before.clone()
            },
            &before,
            &shell,
        );
        let status = proxy.start().await;
        if status.state == State::Running {
            tracing::info!(
                "proxy listening {} ms after the app started",
                started.elapsed().as_millis()
            );
        }
        // A first run with nothing to call: the settings window opens on its guide.
        if show.is_none() && settings.is_first_run() && proxy.status().no_provider {
            tracing::info!("first run: opening the settings window's guide");
            crate::menu::Shell::open(&shell, Page::Settings);
        }
        // Show every change of state, and the request count every few seconds.
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut shown = None;
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let after = changes.borrow_and_update().clone();
                    if proxy.config().notifications.proxy_failed {
                        crate::menu::on_status_change(&before, &after, &shell);
                    }
                    before = after;
                }
                notice = notices.recv() => {
                    match notice {
                        Ok(notice) => {
                            notified.set_kinds(&proxy.config().notifications);
                            notified.show(&notice, &shell, std::time::Instant::now());
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
                _ = tick.tick() => {}
            }
            let status = proxy.status();
            if shown.as_ref() != Some(&status) {
                if let Some(tray) = app.try_state::<Tray>() {
                    tray.show(&status);
                }
                shown = Some(status);
            }
        }
    });
}
