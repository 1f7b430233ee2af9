//! llmux desktop: the llmux engine in the tray.
//!
//! The engine runs in this process on Tauri's tokio runtime ([`proxy::Proxy`] owns its
//! listeners); the tray ([`tray`]) toggles it and shows its state; keys live in the OS
//! keychain ([`keychain`]); the window shows the UI (ui/dist) for settings and the inspector,
//! which calls the [`commands`].

pub mod commands;
pub mod keychain;
pub mod menu;
pub mod proxy;
pub mod shell;
pub mod tray;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llmux::Config;
use llmux::config::{ConfigLoader, default_config_path};
use llmux::credentials::EnvSecrets;
use tauri::{AppHandle, Manager, RunEvent};

use crate::keychain::{KeychainSecrets, OsKeychain, SERVICE};
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

/// The config the CLI would load without flags: `LLMUX_CONFIG` or llmux.toml in the user
/// config directory, then the environment.
fn load_config() -> Result<(Config, Vec<String>), String> {
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
        .load()
        .map(|loaded| (loaded.config, loaded.notes))
        .map_err(|e| e.to_string())
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
        .invoke_handler(tauri::generate_handler![
            commands::proxy_status,
            commands::set_proxy_enabled,
            commands::list_keys,
            commands::save_key,
            commands::delete_key,
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
    let loaded = load_config();
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

    let store = Arc::new(OsKeychain::new(SERVICE));
    let secrets = Arc::new(KeychainSecrets::new(store, EnvSecrets::from_process()));
    let proxy = match loaded {
        Ok((config, notes)) => {
            for note in notes {
                tracing::info!("{note}");
            }
            Proxy::new(config, secrets.clone())
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
    app.manage(proxy.clone());
    app.manage(secrets);

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
                    crate::menu::on_status_change(&before, &after, &shell);
                    before = after;
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
