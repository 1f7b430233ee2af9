//! The proxy's own API key in the desktop app: generated here, kept in the OS keychain,
//! added to the config's `auth.api_keys` whenever the config is loaded, copied to the
//! clipboard on request. The window never receives it.

use llmux::Config;
use serde::Serialize;

use crate::keychain::{KeyError, KeyStore};

/// The keychain entry holding the proxy key.
const ACCOUNT: &str = "proxy/api_key";
/// Random bytes in a generated key (256 bits), written as hex after a recognisable prefix.
const KEY_BYTES: usize = 32;
const PREFIX: &str = "llmux-";

/// What the settings window shows about the proxy key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ProxyKeyStatus {
    /// Clients must send a key (this one, or one from the environment or the file).
    pub required: bool,
    /// The app keeps a key in the keychain.
    pub in_keychain: bool,
    /// How many keys come from elsewhere (LLM_INTERACTIVE_PROXY_API_KEY, auth.api_keys).
    pub other_keys: usize,
}

/// The key in the keychain, if any.
pub fn stored(store: &dyn KeyStore) -> Result<Option<String>, KeyError> {
    store.get(ACCOUNT)
}

/// `config` with the keychain's proxy key among its accepted keys.
pub fn apply(mut config: Config, store: &dyn KeyStore) -> Config {
    match stored(store) {
        Ok(Some(key)) if !config.auth.api_keys.contains(&key) => config.auth.api_keys.push(key),
        Ok(_) => {}
        Err(err) => tracing::error!("cannot read the proxy key from the keychain: {err}"),
    }
    config
}

/// The status of `config` (the keychain's key applied or not) and the keychain.
pub fn status(config: &Config, store: &dyn KeyStore) -> Result<ProxyKeyStatus, KeyError> {
    let key = stored(store)?;
    let in_keychain = key.is_some();
    let other_keys = config
        .auth
        .api_keys
        .iter()
        .filter(|k| Some(*k) != key.as_ref())
        .count();
    Ok(ProxyKeyStatus {
        required: in_keychain || other_keys > 0,
        in_keychain,
        other_keys,
    })
}

/// A new random key, stored in the keychain in place of the old one.
pub fn generate(store: &dyn KeyStore) -> Result<String, KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| KeyError::Invalid(format!("no randomness for a key: {e}")))?;
    let key: String = PREFIX
        .chars()
        .chain(bytes.iter().flat_map(|b| {
            let hex = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
            [hex(b >> 4), hex(b & 0xf)]
        }))
        .collect();
    store.set(ACCOUNT, &key)?;
    Ok(key)
}

/// Clients no longer need the keychain's key (keys from elsewhere still apply).
pub fn remove(store: &dyn KeyStore) -> Result<(), KeyError> {
    store.delete(ACCOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keychain::MemoryKeyStore;

    #[test]
    fn generated_keys_are_random_stored_and_applied_once() {
        let store = MemoryKeyStore::default();
        let first = generate(&store).unwrap();
        assert!(first.starts_with(PREFIX));
        assert_eq!(first.len(), PREFIX.len() + 2 * KEY_BYTES);
        assert!(first[PREFIX.len()..].chars().all(|c| c.is_ascii_hexdigit()));
        let second = generate(&store).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            stored(&store).unwrap(),
            Some(second.clone()),
            "the new key replaces the old"
        );

        let config = Config::defaults().unwrap();
        let applied = apply(apply(config.clone(), &store), &store);
        assert_eq!(applied.auth.api_keys, vec![second]);
        let shown = status(&applied, &store).unwrap();
        assert_eq!(
            shown,
            ProxyKeyStatus {
                required: true,
                in_keychain: true,
                other_keys: 0
            }
        );

        remove(&store).unwrap();
        assert_eq!(
            apply(config.clone(), &store).auth.api_keys,
            Vec::<String>::new()
        );
        assert!(!status(&config, &store).unwrap().required);
    }
}
