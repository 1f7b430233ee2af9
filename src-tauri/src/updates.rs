//! Updates: "Check for updates" in the tray and in the settings window, through
//! tauri-plugin-updater and the signed manifest (`latest.json`) release.yml publishes with
//! the installers.
//!
//! Where the manifest comes from:
//! - in debug builds only, `LLMUX_UPDATE_URL` and `LLMUX_UPDATE_PUBKEY`, when both are set
//!   (the tests' loopback server);
//! - else the endpoint and public key release builds carry in `plugins.updater` of their
//!   Tauri config (release.yml merges `tauri.release.conf.json` with the repository's
//!   values).
//!
//! A local build has neither: updates are off, the tray has no item for them and the
//! settings window says why. A package is only kept, and only installed, after its minisign
//! signature checks against the public key (the plugin's `download` verifies it).

use serde::Serialize;
use serde_json::Value;
use tauri::AppHandle;
use tauri_plugin_updater::{Update, UpdaterExt};
use tokio::sync::Mutex;

/// Where to look for updates and the key their packages are signed with.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateSource {
    pub endpoint: tauri::Url,
    /// The minisign public key, as `tauri signer generate` writes it (base64).
    pub pubkey: String,
}

impl UpdateSource {
    /// The source `env` names, else the one in the plugin's config; `None` when updates
    /// are off. A source that is set but unusable is an error naming the setting.
    pub fn find(
        env: impl Fn(&str) -> Option<String>,
        plugin_config: Option<&Value>,
    ) -> Result<Option<Self>, String> {
        let named = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let (endpoint, pubkey, from) =
            match (named("LLMUX_UPDATE_URL"), named("LLMUX_UPDATE_PUBKEY")) {
                (Some(url), Some(key)) => (url, key, "LLMUX_UPDATE_URL"),
                (Some(_), None) | (None, Some(_)) => {
                    return Err(
                        "LLMUX_UPDATE_URL and LLMUX_UPDATE_PUBKEY go together: set both or neither"
                            .into(),
                    );
                }
                (None, None) => {
                    let config = plugin_config.unwrap_or(&Value::Null);
                    let endpoint = config["endpoints"]
                        .as_array()
                        .and_then(|list| list.first())
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let pubkey = config["pubkey"].as_str().unwrap_or_default().to_owned();
                    match endpoint {
                        Some(endpoint) if !pubkey.trim().is_empty() => {
                            (endpoint, pubkey, "plugins.updater.endpoints")
                        }
                        _ => return Ok(None),
                    }
                }
            };
        let endpoint = endpoint
            .trim()
            .parse()
            .map_err(|e| format!("{from}: {endpoint:?} is not a URL: {e}"))?;
        Ok(Some(Self {
            endpoint,
            pubkey: pubkey.trim().to_owned(),
        }))
    }
}

/// A release newer than the running app.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Release {
    pub version: String,
    pub notes: Option<String>,
    /// When it was published, as the manifest says (RFC 3339).
    pub date: Option<String>,
}

/// What the settings window shows about updates.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct UpdateStatus {
    /// Whether this build has an update source.
    pub enabled: bool,
    /// Why updates are off, or what is wrong with their settings.
    pub disabled_reason: Option<String>,
    pub current_version: String,
    /// The newer release the last check found.
    pub available: Option<Release>,
    /// Its package is downloaded and its signature checked: ready to install.
    pub downloaded: bool,
    /// Why the last check, download or install failed.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Found {
    update: Option<Update>,
    package: Option<Vec<u8>>,
    last_error: Option<String>,
}

/// The app's updates: the source, and what the last check and download found.
pub struct Updates {
    source: Result<Option<UpdateSource>, String>,
    found: Mutex<Found>,
}

impl Updates {
    pub fn new(source: Result<Option<UpdateSource>, String>) -> Self {
        if let Err(why) = &source {
            tracing::warn!("updates are off: {why}");
        }
        Self {
            source,
            found: Mutex::new(Found::default()),
        }
    }

    /// From the app's Tauri config; in debug builds (the tests') the environment may name
    /// another source. A release build never takes an update address or key from its
    /// environment: whoever can set it could offer a package they signed themselves.
    pub fn for_app(app: &AppHandle) -> Self {
        let config = app.config().plugins.0.get("updater").cloned();
        let env = |name: &str| {
            if cfg!(debug_assertions) {
                std::env::var(name).ok()
            } else {
                None
            }
        };
        Self::new(UpdateSource::find(env, config.as_ref()))
    }

    pub fn enabled(&self) -> bool {
        matches!(self.source, Ok(Some(_)))
    }

    pub async fn status(&self) -> UpdateStatus {
        let found = self.found.lock().await;
        UpdateStatus {
            enabled: self.enabled(),
            disabled_reason: match &self.source {
                Ok(Some(_)) => None,
                Ok(None) => Some(
                    "this build has no update address (local builds do not; release builds \
                     check GitHub releases)"
                        .into(),
                ),
                Err(why) => Some(why.clone()),
            },
            current_version: env!("CARGO_PKG_VERSION").to_owned(),
            available: found.update.as_ref().map(|update| Release {
                version: update.version.clone(),
                notes: update.body.clone(),
                date: update.date.map(|date| date.to_string()),
            }),
            downloaded: found.package.is_some(),
            last_error: found.last_error.clone(),
        }
    }

    fn source(&self) -> Result<&UpdateSource, String> {
        match &self.source {
            Ok(Some(source)) => Ok(source),
            Ok(None) => Err("updates are off in this build".into()),
            Err(why) => Err(why.clone()),
        }
    }

    /// Asks the update address whether there is a newer release.
    pub async fn check(&self, app: &AppHandle) -> Result<UpdateStatus, String> {
        let source = self.source()?.clone();
        let checked = async {
            app.updater_builder()
                .pubkey(source.pubkey)
                .endpoints(vec![source.endpoint])
                .map_err(|e| e.to_string())?
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(|e| e.to_string())?
                .check()
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        {
            let mut found = self.found.lock().await;
            match checked {
                Ok(update) => {
                    found.package = None;
                    found.last_error = None;
                    found.update = update;
                }
                Err(why) => {
                    let why = format!("cannot check for updates: {why}");
                    tracing::warn!("{why}");
                    found.last_error = Some(why.clone());
                    return Err(why);
                }
            }
        }
        Ok(self.status().await)
    }

    /// Downloads the release the last check found and checks its signature; the package is
    /// kept for [`Updates::install`] only when it is good.
    pub async fn download(&self) -> Result<UpdateStatus, String> {
        {
            let mut found = self.found.lock().await;
            let Some(update) = found.update.as_ref() else {
                return Err("no update to download: check for updates first".into());
            };
            let version = update.version.clone();
            match update.download(|_, _| {}, || {}).await {
                Ok(package) => {
                    tracing::info!(
                        "downloaded llmux {version} ({} bytes); its signature checks",
                        package.len()
                    );
                    found.package = Some(package);
                    found.last_error = None;
                }
                Err(err) => {
                    let why = format!("the llmux {version} package was not kept: {err}");
                    tracing::warn!("{why}");
                    found.package = None;
                    found.last_error = Some(why.clone());
                    return Err(why);
                }
            }
        }
        Ok(self.status().await)
    }

    /// Installs the downloaded package (downloading it first when needed) and restarts
    /// the app into it.
    pub async fn install(&self, app: &AppHandle) -> Result<(), String> {
        if !self.status().await.downloaded {
            self.download().await?;
        }
        let found = self.found.lock().await;
        let (Some(update), Some(package)) = (found.update.as_ref(), found.package.as_ref()) else {
            return Err("no downloaded update to install".into());
        };
        update
            .install(package)
            .map_err(|e| format!("cannot install llmux {}: {e}", update.version))?;
        tracing::info!("installed llmux {}; restarting", update.version);
        app.restart();
    }
}

/// What the tray's "Check for updates" tells the user.
#[derive(Debug, PartialEq)]
pub struct Notice {
    pub title: String,
    pub body: String,
    /// The settings window has the button that installs it.
    pub open_settings: bool,
}

pub fn notice_of(checked: &Result<UpdateStatus, String>) -> Notice {
    match checked {
        Ok(UpdateStatus {
            available: Some(release),
            ..
        }) => Notice {
            title: format!("llmux {} is available", release.version),
            body: "Settings has the button that installs it and restarts llmux.".into(),
            open_settings: true,
        },
        Ok(status) => Notice {
            title: "llmux is up to date".into(),
            body: format!("You run the newest release, {}.", status.current_version),
            open_settings: false,
        },
        Err(why) => Notice {
            title: "llmux: cannot check for updates".into(),
            body: why.clone(),
            open_settings: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_build_without_an_endpoint_has_updates_off() {
        let local = json!({"pubkey": "", "endpoints": []});
        assert_eq!(UpdateSource::find(env(&[]), Some(&local)), Ok(None));
        assert_eq!(UpdateSource::find(env(&[]), None), Ok(None));
        // An endpoint without a key would accept any package: off as well.
        let keyless = json!({"pubkey": " ", "endpoints": ["https://example.com/latest.json"]});
        assert_eq!(UpdateSource::find(env(&[]), Some(&keyless)), Ok(None));
    }

    #[test]
    fn the_release_config_and_the_environment_name_the_source() {
        let release = json!({"pubkey": "RWRrelease", "endpoints": [
            "https://github.com/o/llmux/releases/latest/download/latest.json"]});
        let source = UpdateSource::find(env(&[]), Some(&release))
            .unwrap()
            .unwrap();
        assert_eq!(source.pubkey, "RWRrelease");
        assert_eq!(source.endpoint.host_str(), Some("github.com"));

        let mirror = [
            ("LLMUX_UPDATE_URL", "http://127.0.0.1:9/latest.json"),
            ("LLMUX_UPDATE_PUBKEY", "RWRmirror\n"),
        ];
        let source = UpdateSource::find(env(&mirror), Some(&release))
            .unwrap()
            .unwrap();
        assert_eq!(source.endpoint.port(), Some(9));
        assert_eq!(source.pubkey, "RWRmirror");
    }

    #[test]
    fn half_a_source_or_a_bad_address_is_refused_naming_the_setting() {
        let half = UpdateSource::find(env(&[("LLMUX_UPDATE_URL", "http://x/")]), None);
        assert!(half.unwrap_err().contains("LLMUX_UPDATE_PUBKEY"));
        let bad = UpdateSource::find(
            env(&[
                ("LLMUX_UPDATE_URL", "not a url"),
                ("LLMUX_UPDATE_PUBKEY", "k"),
            ]),
            None,
        );
        assert!(bad.unwrap_err().starts_with("LLMUX_UPDATE_URL:"));
        let updates = Updates::new(Err("LLMUX_UPDATE_URL: bad".into()));
        assert!(!updates.enabled());
    }

    #[test]
    fn the_tray_check_says_what_it_found() {
        let mut status = UpdateStatus {
            enabled: true,
            disabled_reason: None,
            current_version: "0.1.0".into(),
            available: None,
            downloaded: false,
            last_error: None,
        };
        let none = notice_of(&Ok(status.clone()));
        assert_eq!(none.title, "llmux is up to date");
        assert!(none.body.contains("0.1.0") && !none.open_settings);
        status.available = Some(Release {
            version: "0.2.0".into(),
            notes: None,
            date: None,
        });
        let found = notice_of(&Ok(status));
        assert_eq!(found.title, "llmux 0.2.0 is available");
        assert!(found.open_settings);
        let failed = notice_of(&Err("cannot check for updates: timed out".into()));
        assert!(failed.body.contains("timed out") && !failed.open_settings);
    }

    #[tokio::test]
    async fn updates_that_are_off_say_why_and_never_download() {
        let updates = Updates::new(Ok(None));
        let status = updates.status().await;
        assert!(!status.enabled);
        assert!(
            status
                .disabled_reason
                .unwrap()
                .contains("no update address")
        );
        assert_eq!(status.current_version, env!("CARGO_PKG_VERSION"));
        assert!(
            updates
                .download()
                .await
                .unwrap_err()
                .contains("check for updates first")
        );
    }
}
