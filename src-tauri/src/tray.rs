//! The tray icon and its menu: builds them, shows the proxy's state (icon, check mark,
//! status line, tooltip) and hands clicks to [`crate::menu::handle`].

use std::sync::{Arc, Mutex};

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

use crate::menu::{self, Action, Client, Page, Shell};
use crate::proxy::{Proxy, State, Status};
use crate::shell::AppShell;

const ICON_RUNNING: &[u8] = include_bytes!("../icons/tray-running.png");
const ICON_STOPPED: &[u8] = include_bytes!("../icons/tray-stopped.png");
const ICON_ERROR: &[u8] = include_bytes!("../icons/tray-error.png");
const ICON_NO_PROVIDER: &[u8] = include_bytes!("../icons/tray-nokey.png");

pub fn icon(status: &Status) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match status.state {
        State::Running if status.no_provider => ICON_NO_PROVIDER,
        State::Running => ICON_RUNNING,
        State::Stopped => ICON_STOPPED,
        State::Error => ICON_ERROR,
    })
}

/// The tray's parts that change with the proxy's state.
pub struct Tray {
    app: AppHandle,
    icon: TrayIcon,
    menu: Mutex<Items>,
}

/// The menu items that show the state, and the state they show.
struct Items {
    state: State,
    toggle: CheckMenuItem<Wry>,
    at_login: CheckMenuItem<Wry>,
    status_line: MenuItem<Wry>,
}

fn starts_at_login(app: &AppHandle) -> bool {
    AppShell(app.clone()).starts_at_login().unwrap_or(false)
}

fn build_menu(app: &AppHandle, status: &Status) -> tauri::Result<(Menu<Wry>, Items)> {
    let status_line = MenuItem::with_id(
        app,
        "status",
        menu::status_line(status),
        false,
        None::<&str>,
    )?;
    let toggle = CheckMenuItem::with_id(
        app,
        Action::ToggleProxy.id(),
        Action::ToggleProxy.label(),
        true,
        status.state == State::Running,
        None::<&str>,
    )?;
    let at_login = CheckMenuItem::with_id(
        app,
        Action::StartAtLogin.id(),
        Action::StartAtLogin.label(),
        true,
        starts_at_login(app),
        None::<&str>,
    )?;
    let item =
        |action: Action| MenuItem::with_id(app, action.id(), action.label(), true, None::<&str>);
    let menu = Menu::with_items(
        app,
        &[
            &status_line,
            &PredefinedMenuItem::separator(app)?,
            &toggle,
            &at_login,
            &PredefinedMenuItem::separator(app)?,
            &item(Action::CopyBaseUrl(Client::OpenAi))?,
            &item(Action::CopyBaseUrl(Client::Anthropic))?,
            &item(Action::CopyBaseUrl(Client::Gemini))?,
            &PredefinedMenuItem::separator(app)?,
            &item(Action::Open(Page::Inspector))?,
            &item(Action::Open(Page::Settings))?,
            &PredefinedMenuItem::separator(app)?,
            &item(Action::Quit)?,
        ],
    )?;
    // Without an update address (local builds) there is nothing to check.
    let updates_on = app
        .try_state::<std::sync::Arc<crate::updates::Updates>>()
        .is_some_and(|updates| updates.enabled());
    if updates_on {
        let position = menu.items()?.len() - 2;
        menu.insert(&item(Action::CheckForUpdates)?, position)?;
    }
    let items = Items {
        state: status.state,
        toggle,
        at_login,
        status_line,
    };
    Ok((menu, items))
}

impl Tray {
    pub fn build(app: &AppHandle, status: &Status) -> tauri::Result<Self> {
        let (menu, items) = build_menu(app, status)?;
        let icon = TrayIconBuilder::with_id("llmux")
            .icon(icon(status)?)
            .tooltip(menu::tooltip(status))
            .menu(&menu)
            .show_menu_on_left_click(true)
            .on_menu_event(|app, event| {
                let Some(action) = Action::from_id(event.id().as_ref()) else {
                    return;
                };
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    let proxy = app.state::<Arc<Proxy>>().inner().clone();
                    menu::handle(action, &proxy, &AppShell(app.clone())).await;
                    // A check item flips itself on click; show the real state.
                    if let Some(tray) = app.try_state::<Tray>() {
                        tray.show(&proxy.status());
                    }
                });
            })
            .build(app)?;
        Ok(Self {
            app: app.clone(),
            icon,
            menu: Mutex::new(items),
        })
    }

    /// Shows `status`; errors (a tray host gone away) are logged, not fatal.
    pub fn show(&self, status: &Status) {
        let result = (|| -> tauri::Result<()> {
            self.icon.set_icon(Some(icon(status)?))?;
            self.icon.set_tooltip(Some(menu::tooltip(status)))?;
            let mut items = self
                .menu
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if items.state == status.state {
                items.toggle.set_checked(status.state == State::Running)?;
                items.at_login.set_checked(starts_at_login(&self.app))?;
                items.status_line.set_text(menu::status_line(status))?;
            } else {
                // A new menu on each change of state: GTK places a menu whose text grew
                // with its old width, partly off the screen.
                let (menu, new_items) = build_menu(&self.app, status)?;
                self.icon.set_menu(Some(menu))?;
                *items = new_items;
            }
            Ok(())
        })();
        if let Err(err) = result {
            tracing::warn!("tray not updated: {err}");
        }
    }
}
