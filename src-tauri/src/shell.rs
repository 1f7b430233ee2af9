//! The real [`Shell`]: clipboard, the app window, notifications and exit through Tauri.

use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};
use tauri_plugin_autostart::ManagerExt;
use tauri_plugin_clipboard_manager::ClipboardExt;
use tauri_plugin_notification::NotificationExt;

use crate::menu::{Page, Shell};

/// The label of the one app window (settings and inspector are routes of the same UI).
pub const WINDOW: &str = "main";

pub struct AppShell(pub AppHandle);

impl Shell for AppShell {
    fn copy_text(&self, text: &str) -> Result<(), String> {
        self.0
            .clipboard()
            .write_text(text)
            .map_err(|e| e.to_string())
    }

    fn open(&self, page: Page) {
        if let Err(err) = open_window(&self.0, page) {
            tracing::error!("cannot open the window: {err}");
            self.notify("llmux: cannot open the window", &err.to_string());
        }
    }

    fn notify(&self, title: &str, body: &str) {
        tracing::info!("notification: {title}: {body}");
        if let Err(err) = self
            .0
            .notification()
            .builder()
            .title(title)
            .body(body)
            .show()
        {
            tracing::warn!("notification not shown: {err}");
        }
    }

    fn quit(&self) {
        self.0.exit(0);
    }

    fn check_for_updates(&self) {
        let shell = AppShell(self.0.clone());
        tauri::async_runtime::spawn(async move {
            let updates = shell.0.state::<std::sync::Arc<crate::updates::Updates>>();
            let checked = updates.check(&shell.0).await;
            let notice = crate::updates::notice_of(&checked);
            shell.notify(&notice.title, &notice.body);
            if notice.open_settings {
                shell.open(Page::Settings);
            }
        });
    }

    fn starts_at_login(&self) -> Result<bool, String> {
        self.0.autolaunch().is_enabled().map_err(|e| e.to_string())
    }

    fn set_start_at_login(&self, on: bool) -> Result<(), String> {
        let launcher = self.0.autolaunch();
        let result = if on {
            launcher.enable()
        } else {
            launcher.disable()
        };
        tracing::info!("start at login: {}", if on { "on" } else { "off" });
        result.map_err(|e| e.to_string())
    }
}

/// Shows the app window at `page`, creating it the first time.
pub fn open_window(app: &AppHandle, page: Page) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(WINDOW) {
        // The route is a fixed string, safe to put in the script.
        window.eval(format!("window.location.hash = {:?};", page.route()))?;
        window.show()?;
        window.unminimize()?;
        window.set_focus()?;
        return Ok(());
    }
    let url = WebviewUrl::App(format!("index.html{}", page.route()).into());
    WebviewWindowBuilder::new(app, WINDOW, url)
        .title("llmux")
        .inner_size(1100.0, 720.0)
        .min_inner_size(640.0, 480.0)
        .build()?;
    Ok(())
}
