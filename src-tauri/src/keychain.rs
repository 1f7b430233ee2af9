//! Provider keys in the OS keychain (macOS Keychain, Windows Credential Manager, Secret
//! Service on Linux), read before the environment.
//!
//! Each key is one keychain entry of the service `llmux`, account `<back-end>/<key name>`.
//! Keychains cannot list their entries portably, so the key NAMES of every back-end are kept
//! in one more entry, account `index` (a JSON object `{back-end: [names]}`); names are not
//! secret, but keeping them there too means the app writes no file at all for keys.
//! Secrets only leave this module through [`SecretSource::keys`], which hands them to the
//! engine; nothing here logs or returns them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use llmux::config::BackendConfig;
use llmux::credentials::{EnvSecrets, NamedKey, Secret, SecretSource};
use serde::Serialize;

/// The keychain service every llmux entry belongs to.
pub const SERVICE: &str = "llmux";
const INDEX: &str = "index";

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("the keychain refused: {0}")]
    Keychain(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where key entries are stored: the OS keychain, or memory in tests.
pub trait KeyStore: Send + Sync {
    fn get(&self, account: &str) -> Result<Option<String>, KeyError>;
    fn set(&self, account: &str, secret: &str) -> Result<(), KeyError>;
    /// Deleting a missing entry is not an error.
    fn delete(&self, account: &str) -> Result<(), KeyError>;
}

/// The OS keychain through the `keyring` crate (its platform back-ends are enabled in
/// Cargo.toml; without them it would silently keep keys in memory).
pub struct OsKeychain {
    service: String,
}

impl OsKeychain {
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
        }
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry, KeyError> {
        keyring::Entry::new(&self.service, account).map_err(keychain_error)
    }
}

/// The keyring error's text names the platform failure, never the secret.
fn keychain_error(err: keyring::Error) -> KeyError {
    KeyError::Keychain(err.to_string())
}

impl KeyStore for OsKeychain {
    fn get(&self, account: &str) -> Result<Option<String>, KeyError> {
        match self.entry(account)?.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(err) => Err(keychain_error(err)),
        }
    }

    fn set(&self, account: &str, secret: &str) -> Result<(), KeyError> {
        self.entry(account)?
            .set_password(secret)
            .map_err(keychain_error)
    }

    fn delete(&self, account: &str) -> Result<(), KeyError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(err) => Err(keychain_error(err)),
        }
    }
}

/// Entries in memory, for tests.
#[derive(Default)]
pub struct MemoryKeyStore {
    entries: Mutex<HashMap<String, String>>,
}

impl MemoryKeyStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyStore for MemoryKeyStore {
    fn get(&self, account: &str) -> Result<Option<String>, KeyError> {
        Ok(self.entries().get(account).cloned())
    }
    fn set(&self, account: &str, secret: &str) -> Result<(), KeyError> {
        self.entries().insert(account.to_owned(), secret.to_owned());
        Ok(())
    }
    fn delete(&self, account: &str) -> Result<(), KeyError> {
        self.entries().remove(account);
        Ok(())
    }
}

/// Where a key comes from, as the settings window shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KeySource {
    Keychain,
    Env { variable: String },
}

/// A key's name and origin; never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct KeyInfo {
    pub name: String,
    pub source: KeySource,
}

/// The keys of one back-end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct BackendKeys {
    pub backend: String,
    pub kind: String,
    pub requires_key: bool,
    /// The environment variable read for this back-end's keys (and `_1` .. `_20`).
    pub key_env: Option<String>,
    /// In the order the engine takes them (keychain first, then the environment); it uses
    /// the first until key rotation lands.
    pub keys: Vec<KeyInfo>,
}

/// Keys from the keychain first, then from the environment (the seed's variables); an
/// environment key whose name a keychain key already has is left out.
pub struct KeychainSecrets {
    store: Arc<dyn KeyStore>,
    env: EnvSecrets,
    /// Serialises changes to the index entry.
    writing: Mutex<()>,
}

type Index = BTreeMap<String, Vec<String>>;

impl KeychainSecrets {
    pub fn new(store: Arc<dyn KeyStore>, env: EnvSecrets) -> Self {
        Self {
            store,
            env,
            writing: Mutex::new(()),
        }
    }

    fn index(&self) -> Result<Index, KeyError> {
        match self.store.get(INDEX)? {
            None => Ok(Index::new()),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                KeyError::Keychain(format!(
                    "the llmux key index in the keychain is unreadable: {e}"
                ))
            }),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), KeyError> {
        let text = serde_json::to_string(index)
            .map_err(|e| KeyError::Keychain(format!("cannot encode the key index: {e}")))?;
        self.store.set(INDEX, &text)
    }

    fn keychain_keys(&self, backend: &str) -> Result<Vec<NamedKey>, KeyError> {
        let index = self.index()?;
        let mut keys = Vec::new();
        for name in index.get(backend).into_iter().flatten() {
            if let Some(secret) = self.store.get(&account(backend, name))? {
                keys.push(NamedKey {
                    name: name.clone(),
                    secret: Secret::new(secret),
                });
            }
        }
        Ok(keys)
    }

    /// Stores `secret` as the key `name` of `backend` (replacing one of the same name).
    pub fn save(&self, backend: &BackendConfig, name: &str, secret: &str) -> Result<(), KeyError> {
        check_name(name)?;
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(KeyError::Invalid("the key is empty".into()));
        }
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.store.set(&account(&backend.id, name), secret)?;
        let mut index = self.index()?;
        let names = index.entry(backend.id.clone()).or_default();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
            self.write_index(&index)?;
        }
        tracing::info!(
            "saved key {name} of back-end {} in the keychain",
            backend.id
        );
        Ok(())
    }

    /// Removes the keychain key `name` of `backend`; environment keys stay.
    pub fn delete(&self, backend: &BackendConfig, name: &str) -> Result<(), KeyError> {
        check_name(name)?;
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.store.delete(&account(&backend.id, name))?;
        let mut index = self.index()?;
        if let Some(names) = index.get_mut(&backend.id) {
            names.retain(|n| n != name);
            if names.is_empty() {
                index.remove(&backend.id);
            }
            self.write_index(&index)?;
        }
        tracing::info!(
            "deleted key {name} of back-end {} from the keychain",
            backend.id
        );
        Ok(())
    }

    /// The key names of each back-end with where they come from.
    pub fn list<'a>(
        &self,
        backends: impl IntoIterator<Item = &'a BackendConfig>,
    ) -> Result<Vec<BackendKeys>, KeyError> {
        let index = self.index()?;
        Ok(backends
            .into_iter()
            .map(|backend| {
                let mut keys: Vec<KeyInfo> = index
                    .get(&backend.id)
                    .into_iter()
                    .flatten()
                    .map(|name| KeyInfo {
                        name: name.clone(),
                        source: KeySource::Keychain,
                    })
                    .collect();
                for key in self.env.keys(backend) {
                    if !keys.iter().any(|k| k.name == key.name) {
                        keys.push(KeyInfo {
                            source: KeySource::Env {
                                variable: key.name.clone(),
                            },
                            name: key.name,
                        });
                    }
                }
                BackendKeys {
                    backend: backend.id.clone(),
                    kind: backend.kind.name().to_owned(),
                    requires_key: backend.kind.requires_key(),
                    key_env: backend.api_key_env.clone(),
                    keys,
                }
            })
            .collect())
    }
}

/// The default name of a back-end's first key: its environment variable's name.
pub fn default_key_name(backend: &BackendConfig) -> String {
    backend.api_key_env.clone().unwrap_or_else(|| {
        format!(
            "{}_API_KEY",
            backend
                .id
                .to_uppercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    })
}

fn account(backend: &str, name: &str) -> String {
    format!("{backend}/{name}")
}

fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "key names are 1 to 64 letters, digits, '_', '-' or '.'; got {name:?}"
        )))
    }
}

impl SecretSource for KeychainSecrets {
    fn keys(&self, backend: &BackendConfig) -> Vec<NamedKey> {
        let mut keys = match self.keychain_keys(&backend.id) {
            Ok(keys) => keys,
            Err(err) => {
                tracing::warn!(
                    "keychain not readable for back-end {}: {err}; using the environment only",
                    backend.id
                );
                Vec::new()
            }
        };
        for key in self.env.keys(backend) {
            if !keys.iter().any(|k| k.name == key.name) {
                keys.push(key);
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux::Config;

    fn secrets(env: &[(&str, &str)]) -> (Arc<MemoryKeyStore>, KeychainSecrets) {
        let store = Arc::new(MemoryKeyStore::default());
        let vars = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let source = KeychainSecrets::new(store.clone(), EnvSecrets::from_map(vars));
        (store, source)
    }

    #[test]
    fn keychain_keys_come_first_then_the_environment_and_names_shadow() {
        let config = Config::defaults().unwrap();
        let openai = &config.backends["openai"];
        let (_, source) = secrets(&[
            ("OPENAI_API_KEY", "sk-env-main"),
            ("OPENAI_API_KEY_2", "sk-env-two"),
        ]);
        source
            .save(openai, "OPENAI_API_KEY", "sk-keychain-main")
            .unwrap();
        source.save(openai, "work", " sk-keychain-work \n").unwrap();

        let keys = source.keys(openai);
        let got: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.name.as_str(), k.secret.expose()))
            .collect();
        assert_eq!(
            got,
            [
                ("OPENAI_API_KEY", "sk-keychain-main"),
                ("work", "sk-keychain-work"),
                ("OPENAI_API_KEY_2", "sk-env-two"),
            ]
        );

        let listed = source.list(config.backends.values()).unwrap();
        let openai = listed.iter().find(|b| b.backend == "openai").unwrap();
        assert_eq!(
            openai.keys,
            [
                KeyInfo {
                    name: "OPENAI_API_KEY".into(),
                    source: KeySource::Keychain
                },
                KeyInfo {
                    name: "work".into(),
                    source: KeySource::Keychain
                },
                KeyInfo {
                    name: "OPENAI_API_KEY_2".into(),
                    source: KeySource::Env {
                        variable: "OPENAI_API_KEY_2".into()
                    }
                },
            ]
        );
        let json = serde_json::to_string(&listed).unwrap();
        assert!(!json.contains("sk-"), "a listing shows a secret: {json}");
    }

    #[test]
    fn delete_removes_the_entry_and_its_name_and_env_keys_show_again() {
        let config = Config::defaults().unwrap();
        let openai = &config.backends["openai"];
        let (store, source) = secrets(&[("OPENAI_API_KEY", "sk-env")]);
        source
            .save(openai, "OPENAI_API_KEY", "sk-keychain")
            .unwrap();
        assert_eq!(source.keys(openai)[0].secret.expose(), "sk-keychain");

        source.delete(openai, "OPENAI_API_KEY").unwrap();
        assert_eq!(store.get("openai/OPENAI_API_KEY").unwrap(), None);
        assert_eq!(store.get("index").unwrap().as_deref(), Some("{}"));
        let keys = source.keys(openai);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].secret.expose(), "sk-env");
        // Deleting twice is fine.
        source.delete(openai, "OPENAI_API_KEY").unwrap();
    }

    #[test]
    fn bad_names_and_empty_keys_are_refused() {
        let config = Config::defaults().unwrap();
        let openai = &config.backends["openai"];
        let (_, source) = secrets(&[]);
        for name in ["", "a/b", "has space", &"x".repeat(65)] {
            assert!(source.save(openai, name, "sk-1").is_err(), "{name:?}");
        }
        let err = source.save(openai, "ok", "  ").unwrap_err();
        assert_eq!(err.to_string(), "the key is empty");
        assert_eq!(default_key_name(openai), "OPENAI_API_KEY");
    }

    /// A broken keychain must not hide the environment's keys.
    #[test]
    fn an_unreadable_keychain_falls_back_to_the_environment() {
        struct Locked;
        impl KeyStore for Locked {
            fn get(&self, _: &str) -> Result<Option<String>, KeyError> {
                Err(KeyError::Keychain("locked".into()))
            }
            fn set(&self, _: &str, _: &str) -> Result<(), KeyError> {
                Err(KeyError::Keychain("locked".into()))
            }
            fn delete(&self, _: &str) -> Result<(), KeyError> {
                Err(KeyError::Keychain("locked".into()))
            }
        }
        let config = Config::defaults().unwrap();
        let openai = &config.backends["openai"];
        let vars = HashMap::from([("OPENAI_API_KEY".to_owned(), "sk-env".to_owned())]);
        let source = KeychainSecrets::new(Arc::new(Locked), EnvSecrets::from_map(vars));
        assert_eq!(source.keys(openai)[0].secret.expose(), "sk-env");
        assert!(source.save(openai, "k", "sk-1").is_err());
    }
}
