//! Tauri commands the window calls (through ui/src/api.ts). Thin: each one calls the proxy
//! controller or the keychain and returns what the UI shows; no command returns a secret.

use std::sync::Arc;

use serde::{Serialize, Serializer};
use tauri::State;

use crate::DesktopConfig;
use crate::keychain::{BackendKeys, KeyError, KeychainSecrets, default_key_name};
use crate::proxy::{Proxy, Status};
use crate::proxy_key::{self, ProxyKeyStatus};
use crate::updates::{UpdateStatus, Updates};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no back-end named {0:?}")]
    UnknownBackend(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    Internal(String),
}

/// The UI receives the message.
impl Serialize for CommandError {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

type Result<T> = std::result::Result<T, CommandError>;

#[tauri::command]
pub async fn proxy_status(proxy: State<'_, Arc<Proxy>>) -> Result<Status> {
    Ok(proxy.status())
}

/// What the tray's "Proxy enabled" item does.
#[tauri::command]
pub async fn set_proxy_enabled(enabled: bool, proxy: State<'_, Arc<Proxy>>) -> Result<Status> {
    Ok(proxy.set_enabled(enabled).await)
}

/// The key names of every back-end and where each comes from (keychain or environment).
#[tauri::command]
pub async fn list_keys(
    proxy: State<'_, Arc<Proxy>>,
    keys: State<'_, Arc<KeychainSecrets>>,
) -> Result<Vec<BackendKeys>> {
    let (proxy, keys) = (proxy.inner().clone(), keys.inner().clone());
    blocking(move || Ok(keys.list(proxy.config().backends.values())?)).await
}

/// Stores a key in the keychain (name defaults to the back-end's environment variable) and
/// applies it when running (a successor engine uses it). Returns the new listing.
#[tauri::command]
pub async fn save_key(
    backend: String,
    name: Option<String>,
    secret: String,
    proxy: State<'_, Arc<Proxy>>,
    keys: State<'_, Arc<KeychainSecrets>>,
) -> Result<Vec<BackendKeys>> {
    change_keys(&proxy, &keys, backend, move |keys, backend| {
        let name = name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| default_key_name(backend));
        keys.save(backend, name.trim(), &secret)
    })
    .await
}

/// Removes a key from the keychain; environment keys cannot be removed here.
#[tauri::command]
pub async fn delete_key(
    backend: String,
    name: String,
    proxy: State<'_, Arc<Proxy>>,
    keys: State<'_, Arc<KeychainSecrets>>,
) -> Result<Vec<BackendKeys>> {
    change_keys(&proxy, &keys, backend, move |keys, backend| {
        keys.delete(backend, &name)
    })
    .await
}

/// Runs `change` on `backend`'s keys off the async threads, applies them when running (so
/// the engine uses the keys now) and answers the new listing.
async fn change_keys(
    proxy: &Arc<Proxy>,
    keys: &Arc<KeychainSecrets>,
    backend: String,
    change: impl FnOnce(
        &KeychainSecrets,
        &llmux::config::BackendConfig,
    ) -> std::result::Result<(), KeyError>
    + Send
    + 'static,
) -> Result<Vec<BackendKeys>> {
    let (for_keys, keys) = (proxy.clone(), keys.clone());
    let listed = blocking(move || {
        let config = for_keys.config();
        let found = config
            .backends
            .get(&backend)
            .ok_or(CommandError::UnknownBackend(backend.clone()))?;
        change(&keys, found)?;
        Ok(keys.list(config.backends.values())?)
    })
    .await?;
    proxy.apply_if_running().await;
    Ok(listed)
}

/// Keychain calls block (D-Bus, Keychain Services): off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))?
}

/// Whether clients must send a key, and whether the app keeps one in the keychain.
#[tauri::command]
pub async fn proxy_key_status(
    proxy: State<'_, Arc<Proxy>>,
    desktop: State<'_, Arc<DesktopConfig>>,
) -> Result<ProxyKeyStatus> {
    let (config, store) = (proxy.config(), desktop.keychain.clone());
    blocking(move || Ok(proxy_key::status(&config, store.as_ref())?)).await
}

/// Makes clients send a new random key (kept in the keychain; the old one stops working)
/// and puts it on the clipboard. The window never receives it.
#[tauri::command]
pub async fn generate_proxy_key(
    app: tauri::AppHandle,
    proxy: State<'_, Arc<Proxy>>,
    desktop: State<'_, Arc<DesktopConfig>>,
) -> Result<ProxyKeyStatus> {
    let store = desktop.keychain.clone();
    let key = blocking(move || Ok(proxy_key::generate(store.as_ref())?)).await?;
    crate::menu::Shell::copy_text(&crate::shell::AppShell(app), &key)
        .map_err(CommandError::Internal)?;
    reload(&proxy, &desktop).await
}

/// Copies the keychain's proxy key to the clipboard, for a client's settings.
#[tauri::command]
pub async fn copy_proxy_key(
    app: tauri::AppHandle,
    desktop: State<'_, Arc<DesktopConfig>>,
) -> Result<()> {
    let store = desktop.keychain.clone();
    let key = blocking(move || Ok(proxy_key::stored(store.as_ref())?)).await?;
    let key = key.ok_or_else(|| CommandError::Internal("the app keeps no proxy key".into()))?;
    crate::menu::Shell::copy_text(&crate::shell::AppShell(app), &key)
        .map_err(CommandError::Internal)
}

/// Clients no longer need the app's key (keys from the environment or file still apply).
#[tauri::command]
pub async fn remove_proxy_key(
    proxy: State<'_, Arc<Proxy>>,
    desktop: State<'_, Arc<DesktopConfig>>,
) -> Result<ProxyKeyStatus> {
    let store = desktop.keychain.clone();
    blocking(move || Ok(proxy_key::remove(store.as_ref())?)).await?;
    reload(&proxy, &desktop).await
}

/// Serves the config as it loads now (keychain key included) and answers the key status.
async fn reload(proxy: &Arc<Proxy>, desktop: &Arc<DesktopConfig>) -> Result<ProxyKeyStatus> {
    let loader = desktop.clone();
    let (config, _) = blocking(move || loader.load().map_err(CommandError::Internal)).await?;
    proxy.set_config(config.clone());
    proxy.apply_if_running().await;
    let store = desktop.keychain.clone();
    blocking(move || Ok(proxy_key::status(&config, store.as_ref())?)).await
}

/// Whether updates are on, and what the last check and download found.
#[tauri::command]
pub async fn update_status(updates: State<'_, Arc<Updates>>) -> Result<UpdateStatus> {
    Ok(updates.status().await)
}

/// Asks the update address for a newer release.
#[tauri::command]
pub async fn check_for_update(
    app: tauri::AppHandle,
    updates: State<'_, Arc<Updates>>,
) -> Result<UpdateStatus> {
    updates.check(&app).await.map_err(CommandError::Internal)
}

/// Downloads the release found and checks its signature (nothing is installed).
#[tauri::command]
pub async fn download_update(updates: State<'_, Arc<Updates>>) -> Result<UpdateStatus> {
    updates.download().await.map_err(CommandError::Internal)
}

/// Installs the downloaded release and restarts into it.
#[tauri::command]
pub async fn install_update(app: tauri::AppHandle, updates: State<'_, Arc<Updates>>) -> Result<()> {
    updates.install(&app).await.map_err(CommandError::Internal)
}
