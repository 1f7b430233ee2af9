//! Proxy auth: client keys, trusted networks and brute-force protection.
//!
//! Order of checks, as in the seed: bypass paths, trusted IPs, "no key configured"
//! (loopback only, enforced by config validation), a brute-force block, then the key
//! itself. Keys are compared in constant time.

mod brute_force;

use std::net::IpAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use subtle::ConstantTimeEq;

pub use brute_force::BruteForce;

use crate::Error;
use crate::config::AuthConfig;
use crate::error::ErrorKind;

/// Paths that never need a key (the seed's bypass list, plus health and info).
pub const BYPASS_PATHS: &[&str] = &[
    "/",
    "/health",
    "/info",
    "/anthropic/health",
    "/anthropic/info",
    "/docs",
    "/openapi.json",
    "/redoc",
];

/// The admin API: captured prompts, settings, replay.
const ADMIN_PREFIX: &str = "/admin/api/";

pub struct Auth {
    keys: Vec<Vec<u8>>,
    trusted: Vec<IpNet>,
    brute_force: Option<BruteForce>,
    /// The admin API takes only a key: no trusted network, no keyless loopback.
    admin_requires_key: bool,
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            keys: config
                .api_keys
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            trusted: config.trusted.clone(),
            brute_force: config
                .brute_force
                .enabled
                .then(|| BruteForce::new(config.brute_force.clone())),
            admin_requires_key: config.admin_requires_key,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Keeps brute-force records in `store`, shared by every instance on it.
    pub fn with_shared_records(
        mut self,
        store: std::sync::Arc<crate::state::redis::RedisStore>,
    ) -> Self {
        self.brute_force = self.brute_force.map(|bf| bf.shared(store));
        self
    }

    /// Decides whether a request may pass.
    pub async fn check(
        &self,
        path: &str,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), Error> {
        if BYPASS_PATHS.contains(&path) {
            return Ok(());
        }
        let key_only = self.admin_requires_key && is_admin(path);
        if key_only && !self.enabled() {
            // Config validation refuses to start this way; never serve prompts keyless.
            return Err(Error::unauthorized(
                "the admin API needs a proxy key when llmux answers any host or listens \
                 beyond loopback; set LLM_INTERACTIVE_PROXY_API_KEY",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        if let Some(ip) = client
            && !key_only
            && self.trusted.iter().any(|net| net.contains(&ip))
        {
            return Ok(());
        }
        let now = brute_force::now_ms();
        let watched = match (&self.brute_force, client) {
            (Some(bf), Some(ip)) => Some((bf, ip, bf.standing(ip, now).await)),
            _ => None,
        };
        if let Some((_, _, standing)) = &watched
            && let Some(wait) = standing.blocked_for
        {
            return Err(blocked(wait));
        }
        let presented = presented_key(headers, query);
        let valid = presented.is_some_and(|key| self.matches(key.as_bytes()));
        if let Some((bf, ip, standing)) = &watched {
            let ip = *ip;
            if valid {
                bf.success(ip, standing).await;
            } else {
                bf.failure(ip, now).await;
            }
        }
        match (valid, presented) {
            (true, _) => Ok(()),
            (false, None) => Err(Error::unauthorized(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
            )),
            (false, Some(_)) => Err(Error::unauthorized("invalid API key")),
        }
    }

    fn matches(&self, presented: &[u8]) -> bool {
        // Compare against every key so the time taken does not say which one was close.
        self.keys.iter().fold(false, |found, key| {
            found | bool::from(key.as_slice().ct_eq(presented))
        })
    }
}

fn is_admin(path: &str) -> bool {
    path.starts_with(ADMIN_PREFIX) || path == ADMIN_PREFIX.trim_end_matches('/')
}

fn blocked(wait: Duration) -> Error {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    ErrorKind::RateLimited {
        message: format!(
            "too many invalid API keys from this address; retry after {seconds} seconds"
        ),
        retry_after: Some(Duration::from_secs(seconds)),
    }
    .into()
}

/// The key a client presented: `Authorization: Bearer`, `x-api-key` (Anthropic clients),
/// `x-goog-api-key` or a `key` / `api_key` query parameter (Gemini clients).
fn presented_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = header("authorization") {
        let value = value.trim();
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            return Some(token.trim());
        }
    }
    if let Some(key) = header("x-api-key").or_else(|| header("x-goog-api-key")) {
        return Some(key.trim());
    }
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "key" || name == "api_key").then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn auth_with(keys: &[&str], trusted: &[&str]) -> Auth {
        let mut config = Config::defaults().unwrap().auth;
        config.api_keys = keys.iter().map(|k| k.to_string()).collect();
        config.trusted = trusted.iter().map(|t| t.parse().unwrap()).collect();
        Auth::new(&config)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 9)));

    #[tokio::test]
    async fn bearer_and_x_api_key_are_accepted() {
        let auth = auth_with(&["k1", "k2"], &[]);
        assert!(
            auth.check(
                "/v1/models",
                CLIENT,
                &headers(&[("authorization", "Bearer k2")]),
                None
            )
            .await
            .is_ok()
        );
        assert!(
            auth.check("/v1/models", CLIENT, &headers(&[("x-api-key", "k1")]), None)
                .await
                .is_ok()
        );
        assert!(
            auth.check("/v1/models", CLIENT, &HeaderMap::new(), Some("key=k1"))
                .await
                .is_ok()
        );
        let err = auth
            .check(
                "/v1/models",
                CLIENT,
                &headers(&[("authorization", "Bearer nope")]),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), 401);
        let err = auth
            .check("/v1/models", CLIENT, &HeaderMap::new(), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing API key"));
    }

    #[tokio::test]
    async fn trusted_networks_and_bypass_paths_skip_auth() {
        let auth = auth_with(&["k1"], &["192.168.1.0/24"]);
        assert!(
            auth.check("/v1/models", CLIENT, &HeaderMap::new(), None)
                .await
                .is_ok()
        );
        let auth = auth_with(&["k1"], &["10.0.0.1/32"]);
        assert!(
            auth.check("/v1/models", CLIENT, &HeaderMap::new(), None)
                .await
                .is_err()
        );
        assert!(
            auth.check("/health", CLIENT, &HeaderMap::new(), None)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_admin_api_takes_only_a_key_when_the_host_check_is_off() {
        let mut config = Config::defaults().unwrap().auth;
        config.api_keys = vec!["k1".into()];
        config.trusted = vec!["192.168.1.0/24".parse().unwrap()];
        config.admin_requires_key = true;
        let auth = Auth::new(&config);
        let none = HeaderMap::new();
        assert!(auth.check("/v1/models", CLIENT, &none, None).await.is_ok());
        let err = auth
            .check("/admin/api/requests", CLIENT, &none, None)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 401);
        let key = headers(&[("authorization", "Bearer k1")]);
        assert!(
            auth.check("/admin/api/requests", CLIENT, &key, None)
                .await
                .is_ok()
        );

        config.api_keys.clear();
        let keyless = Auth::new(&config);
        assert!(
            keyless
                .check("/v1/models", CLIENT, &none, None)
                .await
                .is_ok()
        );
        let err = keyless
            .check("/admin/api/settings", CLIENT, &none, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("needs a proxy key"), "{err}");
    }

    #[tokio::test]
    async fn repeated_failures_block_with_retry_after_even_for_the_right_key() {
        let auth = auth_with(&["k1"], &[]);
        let bad = headers(&[("authorization", "Bearer wrong")]);
        for _ in 0..5 {
            assert_eq!(
                auth.check("/v1/models", CLIENT, &bad, None)
                    .await
                    .unwrap_err()
                    .status(),
                401
            );
        }
        let good = headers(&[("authorization", "Bearer k1")]);
        let err = auth
            .check("/v1/models", CLIENT, &good, None)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 429);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    }
}
