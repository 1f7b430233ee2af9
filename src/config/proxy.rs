//! The validated `[proxy]` settings of the listeners: which Host names and web origins
//! llmux answers (read by `frontend::web_safety`), and its connection limits (read by
//! `server`). Parsing lives here so the config can check them without depending on the
//! layers that use them.

use std::net::IpAddr;
use std::time::Duration;

/// The validated `[proxy]` keys this layer reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebSafetySettings {
    /// `proxy.allowed_hosts` contains `"*"`: the Host check is off.
    pub any_host: bool,
    /// Host names answered besides loopback names and IP literals.
    pub allowed_hosts: Vec<HostRule>,
    /// Origins allowed from a browser, normalised (`scheme://host[:port]`, lower case).
    pub allowed_origins: Vec<String>,
    /// Running requests per client address; `None`: no limit.
    pub max_requests_per_ip: Option<usize>,
}

/// One `proxy.allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// `llmux.internal`: that name only.
    Exact(String),
    /// `*.corp.example`: every name below it (not the name itself).
    Subdomains(String),
}

impl HostRule {
    /// Reads one entry of `proxy.allowed_hosts` (other than `"*"`); the error says why not.
    pub fn parse(text: &str) -> Result<Self, String> {
        let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.contains("://") {
            return Err("a host name, not a URL: drop the scheme (http://)".into());
        }
        if name.contains(['/', ':', '@', '[', ']']) || name.contains(char::is_whitespace) {
            return Err("a host name only, without port or path (the port is not checked)".into());
        }
        let (rule, rest) = match name.strip_prefix("*.") {
            Some(rest) => (HostRule::Subdomains(rest.to_owned()), rest),
            None => (HostRule::Exact(name.clone()), name.as_str()),
        };
        let label_ok = |label: &str| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if rest.is_empty() || !rest.split('.').all(label_ok) {
            return Err(
                "not a host name (letters, digits, '-' and dots; '*.' may start it)".into(),
            );
        }
        Ok(rule)
    }

    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostRule::Exact(name) => host == name,
            HostRule::Subdomains(parent) => host
                .strip_suffix(parent.as_str())
                .is_some_and(|below| below.ends_with('.') && below.len() > 1),
        }
    }
}

/// An origin as compared: lower case, without a trailing slash.
pub(crate) fn normal_origin(text: &str) -> String {
    text.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Reads one entry of `proxy.allowed_origins` into its normal form; the error says why not.
pub fn parse_allowed_origin(text: &str) -> Result<String, String> {
    let origin = normal_origin(text);
    if origin == "null" {
        // What sandboxed frames and file:// pages send; allowed only when listed.
        return Ok(origin);
    }
    if origin == "*" {
        return Err("'*' would let every web page use llmux; list each origin instead".into());
    }
    match Origin::parse(&origin) {
        Some(parsed) if !parsed.host.is_empty() => Ok(origin),
        _ => Err("not an origin: write scheme://host[:port], e.g. http://localhost:3000".into()),
    }
}

/// An `Origin` header's parts.
pub(crate) struct Origin<'a> {
    pub(crate) scheme: &'a str,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl<'a> Origin<'a> {
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let (scheme, authority) = text.split_once("://")?;
        if scheme.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_host_port(authority)?;
        Some(Origin { scheme, host, port })
    }

    pub(crate) fn default_port(&self) -> Option<u16> {
        match self.scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        }
    }
}

/// `host[:port]` or `[v6]:port`, host lower case without a trailing dot; `None` when
/// malformed.
pub(crate) fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (v6, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

pub(crate) fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    host.parse().ok()
}

/// The listeners' connection settings (`[proxy]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after its first byte.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request running is closed after this long.
    pub keep_alive_timeout: Duration,
    /// Open connections at most; `None`: sized from the process's file-descriptor limit.
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: None,
        }
    }
}
