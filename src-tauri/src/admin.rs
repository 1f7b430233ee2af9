//! The engine's admin API as Tauri commands, named `admin_<call>` as ui/src/api.ts expects.
//! Thin: each one asks the proxy controller for the engine serving now and calls
//! `llmux::admin`; errors reach the UI as `{message, status}` like the HTTP API's.

use std::sync::Arc;

use llmux::Engine;
use llmux::admin::{self, ListParams, ReplayParams, TimelineParams};
use serde::Serialize;
use serde_json::Value;
use tauri::State;

use crate::proxy::Proxy;

/// An admin error as the UI reads it.
#[derive(Debug, Serialize)]
pub struct AdminError {
    message: String,
    status: u16,
}

impl From<llmux::Error> for AdminError {
    fn from(err: llmux::Error) -> Self {
        Self {
            status: err.status(),
            message: err.to_string(),
        }
    }
}

type Result<T> = std::result::Result<T, AdminError>;

/// The engine behind the listeners; the store and the back-ends live in it.
async fn engine(proxy: &Proxy) -> Result<Engine> {
    proxy.engine().await.ok_or_else(|| AdminError {
        message: "the proxy is off: turn it on from the tray to browse captured requests"
            .to_owned(),
        status: 503,
    })
}

#[tauri::command]
pub async fn admin_info(proxy: State<'_, Arc<Proxy>>) -> Result<Value> {
    Ok(admin::server_info(&engine(&proxy).await?))
}

#[tauri::command]
pub async fn admin_requests(
    params: ListParams,
    proxy: State<'_, Arc<Proxy>>,
) -> Result<Vec<llmux::capture::store::RequestRow>> {
    Ok(admin::requests(&engine(&proxy).await?, params, false).await?)
}

#[tauri::command]
pub async fn admin_request(
    id: String,
    proxy: State<'_, Arc<Proxy>>,
) -> Result<llmux::capture::store::RequestRow> {
    Ok(admin::request(&engine(&proxy).await?, id).await?)
}

#[tauri::command]
pub async fn admin_delete_request(id: String, proxy: State<'_, Arc<Proxy>>) -> Result<()> {
    Ok(admin::delete_request(&engine(&proxy).await?, id).await?)
}

/// The curl command points at the proxy's own address.
#[tauri::command]
pub async fn admin_curl(id: String, proxy: State<'_, Arc<Proxy>>) -> Result<String> {
    let engine = engine(&proxy).await?;
    let row = admin::request(&engine, id).await?;
    let base = proxy.status().openai_base_url();
    let root = base.strip_suffix("/v1").unwrap_or(&base);
    Ok(admin::curl_command(&row, root))
}

#[tauri::command]
pub async fn admin_replay(
    id: String,
    target: ReplayParams,
    proxy: State<'_, Arc<Proxy>>,
) -> Result<admin::Replayed> {
    Ok(llmux::frontend::replay(&engine(&proxy).await?, id, target).await?)
}

#[tauri::command]
pub async fn admin_export(params: ListParams, proxy: State<'_, Arc<Proxy>>) -> Result<String> {
    Ok(admin::export(&engine(&proxy).await?, params).await?)
}

#[tauri::command]
pub async fn admin_stats(proxy: State<'_, Arc<Proxy>>) -> Result<admin::AdminStats> {
    Ok(admin::stats(&engine(&proxy).await?).await?)
}

#[tauri::command]
pub async fn admin_test(model: String, proxy: State<'_, Arc<Proxy>>) -> Result<admin::Replayed> {
    Ok(llmux::frontend::test_request(&engine(&proxy).await?, model).await?)
}

/// The agents are checked against the proxy's config, running or not.
async fn clients_context(proxy: &Proxy) -> admin::clients::Context {
    match proxy.engine().await {
        Some(engine) => admin::clients::Context::of(&engine),
        None => admin::clients::Context {
            config: proxy.config(),
            store: None,
        },
    }
}

#[tauri::command]
pub async fn admin_clients(
    proxy: State<'_, Arc<Proxy>>,
) -> Result<Vec<admin::clients::ClientStatus>> {
    Ok(admin::clients::clients(&clients_context(&proxy).await).await?)
}

#[tauri::command]
pub async fn admin_change_client(
    id: String,
    action: admin::clients::ClientAction,
    proxy: State<'_, Arc<Proxy>>,
) -> Result<admin::clients::ClientChanges> {
    Ok(admin::clients::change(&clients_context(&proxy).await, &id, action).await?)
}

#[tauri::command]
pub async fn admin_usage(
    by: String,
    proxy: State<'_, Arc<Proxy>>,
) -> Result<Vec<llmux::capture::store::Usage>> {
    Ok(admin::usage(&engine(&proxy).await?, &by).await?)
}

#[tauri::command]
pub async fn admin_timeline(
    since: Option<f64>,
    bucket: Option<f64>,
    proxy: State<'_, Arc<Proxy>>,
) -> Result<admin::Timeline> {
    let params = TimelineParams { since, bucket };
    Ok(admin::timeline(&engine(&proxy).await?, params).await?)
}

/// The settings window's view; works with the proxy off too (it reads the config file).
#[tauri::command]
pub async fn admin_settings(
    proxy: State<'_, Arc<Proxy>>,
) -> Result<llmux::admin::settings::Settings> {
    let source = settings_source(&proxy)?;
    let engine = proxy.engine().await;
    Ok(llmux::admin::settings::settings_of(
        &source,
        engine.as_ref(),
    )?)
}

/// Checks, saves and applies a change; a refused one carries its problems, keyed.
#[tauri::command]
pub async fn admin_change_settings(
    change: llmux::admin::settings::SettingsChange,
    proxy: State<'_, Arc<Proxy>>,
) -> std::result::Result<llmux::admin::settings::Saved, SettingsError> {
    use llmux::admin::settings::ChangeError;
    let source = settings_source(&proxy).map_err(SettingsError::from)?;
    llmux::admin::settings::change_source(&source, change)
        .await
        .map_err(|err| match err {
            ChangeError::Invalid(problems) => SettingsError {
                message: "the settings were not saved".to_owned(),
                status: 400,
                problems,
            },
            ChangeError::Other(err) => AdminError::from(err).into(),
        })
}

/// An admin error with the problems of a refused settings change.
#[derive(Debug, Serialize)]
pub struct SettingsError {
    message: String,
    status: u16,
    problems: Vec<llmux::admin::settings::SettingsProblem>,
}

impl From<AdminError> for SettingsError {
    fn from(err: AdminError) -> Self {
        Self {
            message: err.message,
            status: err.status,
            problems: Vec::new(),
        }
    }
}

fn settings_source(proxy: &Proxy) -> Result<Arc<llmux::admin::settings::SettingsSource>> {
    proxy.settings().cloned().ok_or_else(|| AdminError {
        message: "settings cannot be changed: the app has no config file".to_owned(),
        status: 404,
    })
}
