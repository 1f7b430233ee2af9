//! Where provider keys come from.
//!
//! The engine asks a [`SecretSource`] for a back-end's keys and never reads the keychain,
//! files or the environment itself, so it runs the same in tests, on servers and in the
//! desktop app (whose source reads the OS keychain first).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub mod login;

use crate::config::BackendConfig;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// A key with the name captures and logs show instead of it (`OPENAI_API_KEY_2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedKey {
    pub name: String,
    pub secret: Secret,
}

pub trait SecretSource: Send + Sync {
    /// The keys for a back-end, in rotation order; empty when none is set.
    fn keys(&self, backend: &BackendConfig) -> Vec<NamedKey>;
}

/// Reads `api_key_env` and its numbered variants (`NAME_1` .. `NAME_20`, the seed's way of
/// listing several keys for rotation), then the variables `api_keys_env` names, from an
/// environment; a variable named twice counts once.
pub struct EnvSecrets {
    lookup: Box<EnvLookup>,
}

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl EnvSecrets {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::new(|name| std::env::var(name).ok())
    }

    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }

    /// A fixed set of variables, for tests.
    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self::new(move |name| vars.get(name).cloned())
    }
}

impl SecretSource for EnvSecrets {
    fn keys(&self, backend: &BackendConfig) -> Vec<NamedKey> {
        let numbered = backend.api_key_env.iter().flat_map(|base| {
            std::iter::once(base.clone()).chain((1..=20).map(move |i| format!("{base}_{i}")))
        });
        let mut keys: Vec<NamedKey> = Vec::new();
        for name in numbered.chain(backend.api_keys_env.iter().cloned()) {
            if keys.iter().any(|k| k.name == name) {
                continue;
            }
            let Some(value) = (self.lookup)(&name) else {
                continue;
            };
            let value = value.trim();
            if !value.is_empty() {
                keys.push(NamedKey {
                    secret: Secret::new(value),
                    name,
                });
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn numbered_keys_follow_the_main_one_and_secrets_never_print() {
        let config = Config::defaults().unwrap();
        let openai = &config.backends["openai"];
        let secrets = EnvSecrets::from_map(HashMap::from([
            ("OPENAI_API_KEY".to_owned(), "sk-one".to_owned()),
            ("OPENAI_API_KEY_2".to_owned(), "sk-two".to_owned()),
        ]));
        let keys = secrets.keys(openai);
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["OPENAI_API_KEY", "OPENAI_API_KEY_2"]);
        assert_eq!(keys[0].secret.expose(), "sk-one");
        assert!(!format!("{:?} {}", keys[0], keys[0].secret).contains("sk-one"));
    }
}
