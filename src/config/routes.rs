//! `[routes.NAME]`: failover routes. A client that asks for model `NAME` (or `route:NAME`)
//! gets the first leg that answers; a leg that fails in a way `retry_on` names passes the
//! request to the next one, as long as nothing of the answer has reached the client.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Layered, bad};
use crate::error::{Error, ErrorKind};

/// A route as the config file writes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `backend:model` legs, tried in order.
    pub legs: Vec<String>,
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<String>,
    #[serde(default = "default_attempts")]
    pub attempts_per_leg: u32,
}

pub fn default_retry_on() -> Vec<String> {
    DEFAULT_RETRY_ON.iter().map(|s| (*s).to_owned()).collect()
}

fn default_attempts() -> u32 {
    1
}

/// What fails over by default: rate limits, provider failures and overload, waits that ran
/// out, providers that cannot be reached, and legs whose back-end has no key.
pub const DEFAULT_RETRY_ON: &[&str] = &["429", "5xx", "529", "timeout", "connect", "unconfigured"];

/// The most attempts one leg may get.
pub const MAX_ATTEMPTS_PER_LEG: u32 = 5;

/// A failover route, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverRoute {
    pub name: String,
    /// `backend:model`, each naming a configured back-end.
    pub legs: Vec<String>,
    pub retry_on: RetryOn,
    pub attempts_per_leg: u32,
}

impl FailoverRoute {
    /// A route made in chat: the default failure classes, one attempt per leg.
    pub fn with_defaults(name: &str, legs: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            legs,
            retry_on: RetryOn::defaults(),
            attempts_per_leg: 1,
        }
    }
}

/// Which failures move a request on: HTTP statuses (`429`, `5xx`) and failure classes.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOn {
    statuses: Vec<StatusMatch>,
    timeout: bool,
    connect: bool,
    unconfigured: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StatusMatch {
    Exact(u16),
    /// `4xx`, `5xx`: the hundreds digit.
    Class(u16),
}

impl RetryOn {
    pub fn defaults() -> Self {
        Self::parse(DEFAULT_RETRY_ON.iter().copied()).unwrap_or_else(|_| Self {
            statuses: Vec::new(),
            timeout: true,
            connect: true,
            unconfigured: true,
        })
    }

    /// Reads tokens such as `429`, `5xx`, `timeout`, `connect`, `unconfigured`.
    pub fn parse<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut on = Self {
            statuses: Vec::new(),
            timeout: false,
            connect: false,
            unconfigured: false,
        };
        for token in tokens {
            let token = token.trim().to_ascii_lowercase();
            match token.as_str() {
                "timeout" => on.timeout = true,
                "connect" => on.connect = true,
                "unconfigured" => on.unconfigured = true,
                t if t.len() == 3 && t.ends_with("xx") && matches!(&t[..1], "4" | "5") => {
                    on.statuses
                        .push(StatusMatch::Class(u16::from(t.as_bytes()[0] - b'0')));
                }
                t => match t.parse::<u16>() {
                    Ok(status) if (400..=599).contains(&status) => {
                        on.statuses.push(StatusMatch::Exact(status))
                    }
                    _ => {
                        return Err(format!(
                            "'{token}' is not a failure to retry on; use an HTTP status (429), a \
                             class (4xx, 5xx), timeout, connect or unconfigured"
                        ));
                    }
                },
            }
        }
        Ok(on)
    }

    /// Whether `err` should move the request to the next attempt. A request the provider
    /// refused for what it holds (400, 413, 422: bad content, too long for the model) fails
    /// the same way everywhere, so it never moves on.
    pub fn matches(&self, err: &Error) -> bool {
        match err.kind() {
            ErrorKind::Upstream {
                status: 400 | 413 | 422,
                ..
            } => false,
            ErrorKind::Upstream { status, .. } => self.status(*status),
            ErrorKind::UpstreamProtocol { .. } | ErrorKind::StreamInterrupted { .. } => {
                self.status(502)
            }
            // A leg over its own rate limit (`[models.X.limits]`) is a 429 of that leg.
            ErrorKind::RateLimited { .. } => self.status(429),
            ErrorKind::Timeout { .. } => self.timeout,
            ErrorKind::BackendUnreachable { .. } => self.connect,
            ErrorKind::BackendNotConfigured { .. } => self.unconfigured,
            // A leg its circuit breaker holds open is skipped, whatever the route says.
            ErrorKind::CircuitOpen { .. } => true,
            _ => false,
        }
    }

    fn status(&self, status: u16) -> bool {
        self.statuses.iter().any(|m| match m {
            StatusMatch::Exact(s) => *s == status,
            StatusMatch::Class(c) => status / 100 == *c,
        })
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tokens: Vec<String> = self
            .statuses
            .iter()
            .map(|m| match m {
                StatusMatch::Exact(s) => s.to_string(),
                StatusMatch::Class(c) => format!("{c}xx"),
            })
            .collect();
        for (on, name) in [
            (self.timeout, "timeout"),
            (self.connect, "connect"),
            (self.unconfigured, "unconfigured"),
        ] {
            if on {
                tokens.push(name.to_owned());
            }
        }
        f.write_str(&tokens.join(", "))
    }
}

/// The name a client's model asks for as a route: `route:NAME`, or `NAME` itself.
pub fn route_name(model: &str) -> &str {
    model.strip_prefix("route:").unwrap_or(model)
}

/// Checks a route's name against the back-ends (a route may not hide one).
pub fn check_name(name: &str, backends: &[&str]) -> Result<(), String> {
    if name.is_empty() || name.contains([':', ' ', '/']) {
        return Err("a route name must be non-empty, without ':', '/' or spaces".into());
    }
    if backends.contains(&name) {
        return Err(format!(
            "'{name}' is a back-end; name the route differently"
        ));
    }
    Ok(())
}

/// Checks one leg: `backend:model` with a configured back-end.
pub fn check_leg(leg: &str, backends: &[&str]) -> Result<(), String> {
    match leg.split_once(':') {
        Some((backend, model)) if !model.is_empty() && backends.contains(&backend) => Ok(()),
        _ => Err(format!(
            "'{leg}' is not backend:model with a configured back-end ({})",
            backends.join(", ")
        )),
    }
}

/// `[routes]`, checked: every problem names its key.
pub fn validate(
    raw: &BTreeMap<String, RawRoute>,
    backends: &[&str],
    layered: &Layered,
    problems: &mut Vec<String>,
) -> BTreeMap<String, FailoverRoute> {
    let mut routes = BTreeMap::new();
    for (name, route) in raw {
        let key = format!("routes.{name}");
        if let Err(why) = check_name(name, backends) {
            problems.push(format!("{key} (from {}): {why}", layered.source_of(&key)));
            continue;
        }
        if route.legs.is_empty() {
            problems.push(bad(
                layered,
                &format!("{key}.legs"),
                "[]",
                "name at least one leg",
            ));
        }
        for leg in &route.legs {
            if let Err(why) = check_leg(leg, backends) {
                problems.push(bad(
                    layered,
                    &format!("{key}.legs"),
                    format!("'{leg}'"),
                    why,
                ));
            }
        }
        let retry_on = RetryOn::parse(route.retry_on.iter().map(String::as_str))
            .map_err(|why| {
                problems.push(bad(
                    layered,
                    &format!("{key}.retry_on"),
                    format!("{:?}", route.retry_on),
                    why,
                ))
            })
            .unwrap_or_else(|()| RetryOn::defaults());
        if !(1..=MAX_ATTEMPTS_PER_LEG).contains(&route.attempts_per_leg) {
            problems.push(bad(
                layered,
                &format!("{key}.attempts_per_leg"),
                route.attempts_per_leg,
                format!("must be 1 to {MAX_ATTEMPTS_PER_LEG}"),
            ));
        }
        routes.insert(
            name.clone(),
            FailoverRoute {
                name: name.clone(),
                legs: route.legs.clone(),
                retry_on,
                attempts_per_leg: route.attempts_per_leg.clamp(1, MAX_ATTEMPTS_PER_LEG),
            },
        );
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn upstream(status: u16) -> Error {
        Error::upstream_status(status, None)
    }

    #[test]
    fn the_defaults_fail_over_on_rate_limits_outages_and_waits_but_never_on_content() {
        let on = RetryOn::defaults();
        for status in [429, 500, 502, 503, 529] {
            assert!(on.matches(&upstream(status)), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert!(!on.matches(&upstream(status)), "{status}");
        }
        let timeout: Error = ErrorKind::Timeout {
            backend: "b".into(),
            phase: crate::error::TimeoutPhase::FirstByte,
            after: Duration::from_secs(1),
        }
        .into();
        assert!(on.matches(&timeout));
        assert!(!on.matches(&Error::invalid_request("bad")));
        assert_eq!(
            on.to_string(),
            "429, 5xx, 529, timeout, connect, unconfigured"
        );
    }

    #[test]
    fn tokens_choose_what_moves_on_and_content_errors_never_do() {
        let on = RetryOn::parse(["4xx"]).unwrap();
        assert!(on.matches(&upstream(401)));
        assert!(on.matches(&upstream(429)));
        assert!(
            !on.matches(&upstream(400)),
            "content errors never fail over"
        );
        assert!(!on.matches(&upstream(413)));
        assert!(!on.matches(&upstream(503)));
        let err = RetryOn::parse(["429", "sometimes"]).unwrap_err();
        assert!(err.contains("'sometimes'"), "{err}");
        assert!(RetryOn::parse(["200"]).is_err());
    }

    #[test]
    fn names_and_legs_are_checked_against_the_backends() {
        let backends = ["openai", "zai"];
        assert!(check_name("coder", &backends).is_ok());
        assert!(check_name("openai", &backends).is_err());
        assert!(check_name("a:b", &backends).is_err());
        assert!(check_leg("zai:glm-4.6", &backends).is_ok());
        assert!(check_leg("nowhere:m", &backends).is_err());
        assert!(check_leg("zai:", &backends).is_err());
        assert_eq!(route_name("route:coder"), "coder");
        assert_eq!(route_name("coder"), "coder");
    }
}
