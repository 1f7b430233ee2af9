//! The outermost layer of every listener: what a web page in the user's browser may do.
//!
//! llmux listens on 127.0.0.1, and every page the user opens can reach that port. Two
//! browser tricks turn that into access to prompts, settings and provider keys:
//! - **DNS rebinding**: `evil.example` resolves to 127.0.0.1 after the page loads, so the
//!   page is same-origin with llmux and reads every answer. The browser still sends
//!   `Host: evil.example`, so llmux answers only Host names it knows: loopback names, IP
//!   literals (a rebinding page always has a name) and `proxy.allowed_hosts`.
//! - **Cross-site requests**: a form post or a `text/plain` fetch needs no CORS preflight
//!   and still runs. The browser sends `Origin` with every such request, so llmux refuses
//!   any Origin that is not a loopback origin, its own, or in `proxy.allowed_origins`.
//!
//! Allowed origins get CORS answers (tower-http's `CorsLayer`, preflight included); nobody
//! else ever gets a CORS header. The per-address limit on running requests lives here too,
//! since it is about who is calling rather than what they ask.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

use super::common::{client_ip, error_response, hold_until_done};
use crate::Error;
use crate::error::ErrorKind;
use crate::model::Protocol;

pub use crate::config::proxy::{HostRule, WebSafetySettings, parse_allowed_origin};
use crate::config::proxy::{Origin, ip_literal, is_loopback_name, normal_origin, split_host_port};

/// Where a rejected request's error tells the user to look.
const HOST_SETTING: &str = "proxy.allowed_hosts (--allowed-host, ALLOWED_HOSTS)";
const ORIGIN_SETTING: &str = "proxy.allowed_origins (--allowed-origin, ALLOWED_ORIGINS)";

impl WebSafetySettings {
    /// Whether a request may be served, judged by its `Host` (or HTTP/2 `:authority`) and
    /// `Origin`.
    pub fn check(&self, headers: &HeaderMap, authority: Option<&str>) -> Result<(), Error> {
        let host_header = headers
            .get(header::HOST)
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
            .or(authority);
        let own = match host_header {
            Some(text) => Some(self.check_host(text)?),
            // Browsers always send Host; a client that does not is no web page.
            None => None,
        };
        match headers.get(header::ORIGIN) {
            None => Ok(()),
            Some(value) => self.check_origin(value.to_str().unwrap_or("\u{fffd}"), own),
        }
    }

    /// The request comes from an origin in `proxy.allowed_origins`.
    fn is_listed_origin(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|origin| self.is_listed(&normal_origin(origin)))
    }

    fn is_listed(&self, normal: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == normal)
    }

    /// The request's own host and port when its Host is one llmux answers.
    fn check_host(&self, text: &str) -> Result<(String, Option<u16>), Error> {
        let parsed = split_host_port(text).filter(|(host, _)| !host.is_empty());
        if let Some((host, port)) = &parsed
            && (self.any_host
                || is_loopback_name(host)
                || ip_literal(host).is_some()
                || self.allowed_hosts.iter().any(|rule| rule.matches(host)))
        {
            return Ok((host.clone(), *port));
        }
        Err(Error::forbidden(format!(
            "llmux does not answer requests for host '{}': it answers loopback names \
             (localhost), IP addresses and the names in {HOST_SETTING}. If you reach llmux \
             by this name on purpose, add it there; a web page that rebinds its name to \
             this address is refused this way",
            printable(text)
        )))
    }

    fn check_origin(&self, text: &str, own: Option<(String, Option<u16>)>) -> Result<(), Error> {
        let normal = normal_origin(text);
        if self.is_listed(&normal) {
            return Ok(());
        }
        if let Some(origin) = Origin::parse(&normal) {
            let loopback = is_loopback_name(&origin.host)
                || ip_literal(&origin.host).is_some_and(|ip| ip.is_loopback());
            let same_origin = own.is_some_and(|(host, port)| {
                let default = origin.default_port();
                host == origin.host && port.or(default) == origin.port.or(default)
            });
            if loopback || same_origin {
                return Ok(());
            }
        }
        Err(Error::forbidden(format!(
            "llmux does not answer web pages from origin '{}': only its own pages, pages on \
             this machine (localhost) and the origins in {ORIGIN_SETTING} may call it from \
             a browser",
            printable(text)
        )))
    }
}

/// A header value fit to quote in an error: printable ASCII, at most 200 characters.
fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The protocol whose error shape a client of `path` reads.
pub fn protocol_of_path(path: &str) -> Protocol {
    if path.starts_with("/anthropic/") || path.starts_with("/v1/messages") {
        Protocol::Anthropic
    } else if path.starts_with("/v1beta/") || path.starts_with("/v1/models/") {
        Protocol::Gemini
    } else if path.starts_with("/v1/responses") {
        Protocol::OpenAiResponses
    } else {
        Protocol::OpenAiChat
    }
}

/// What the check layer needs per listener.
#[derive(Clone)]
struct Guard {
    settings: Arc<WebSafetySettings>,
    /// The dedicated Anthropic port answers every error in Anthropic's shape.
    protocol: Option<Protocol>,
    per_ip: Option<Arc<PerIpLimit>>,
    /// The app behind CORS, for requests from a listed origin only: tower-http's layer
    /// adds its method, header and `Vary` headers to every answer and takes every
    /// `OPTIONS`, and nobody else should see any of that.
    with_cors: Option<axum::Router>,
}

/// Wraps `app` in the web-safety layers: Host and Origin checks outermost, then CORS for
/// the allowed origins, then the per-address limit. `protocol` fixes the error shape (the
/// dedicated Anthropic port); `None` picks it from the path. `per_ip` is shared by every
/// listener of one engine.
pub fn wrap(
    app: axum::Router,
    settings: &Arc<WebSafetySettings>,
    per_ip: Option<Arc<PerIpLimit>>,
    protocol: Option<Protocol>,
) -> axum::Router {
    let mut guard = Guard {
        settings: settings.clone(),
        protocol,
        per_ip,
        with_cors: None,
    };
    let mut app = app;
    if guard.per_ip.is_some() {
        app = app.layer(middleware::from_fn_with_state(guard.clone(), limit_per_ip));
    }
    if !settings.allowed_origins.is_empty() {
        guard.with_cors = Some(app.clone().layer(cors(&settings.allowed_origins)));
    }
    app.layer(middleware::from_fn_with_state(guard, check_request))
}

/// CORS answers for the listed origins only: any method and request header (they are
/// trusted by name), the headers a client reads exposed, preflights cached ten minutes.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(ExposeHeaders::list([
            header::RETRY_AFTER,
            header::HeaderName::from_static("x-request-id"),
        ]))
        .max_age(std::time::Duration::from_secs(600))
}

async fn check_request(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let checked = guard.settings.check(
        request.headers(),
        request.uri().authority().map(|a| a.as_str()),
    );
    match checked {
        Ok(()) => match &guard.with_cors {
            Some(with_cors) if guard.settings.is_listed_origin(request.headers()) => {
                match tower::ServiceExt::oneshot(with_cors.clone(), request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            _ => next.run(request).await,
        },
        Err(err) => {
            let path = request.uri().path();
            tracing::warn!(
                client = client_ip(&request)
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
                path,
                "refused: {err}"
            );
            let protocol = guard.protocol.unwrap_or_else(|| protocol_of_path(path));
            error_response(protocol, &err)
        }
    }
}

async fn limit_per_ip(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (Some(limit), Some(ip)) = (&guard.per_ip, client_ip(&request)) else {
        return next.run(request).await;
    };
    let Some(slot) = limit.enter(ip) else {
        let err: Error = ErrorKind::RateLimited {
            message: format!(
                "too many requests running from this address (at most {} at once: \
                 proxy.max_concurrent_requests_per_ip); retry when one has finished",
                limit.max
            ),
            retry_after: Some(std::time::Duration::from_secs(1)),
        }
        .into();
        let protocol = guard
            .protocol
            .unwrap_or_else(|| protocol_of_path(request.uri().path()));
        return error_response(protocol, &err);
    };
    let response = next.run(request).await;
    // The slot is held until the body is done, so a long stream counts as running.
    response.map(|body| hold_until_done(body, slot))
}

/// Requests running per client address.
pub struct PerIpLimit {
    max: usize,
    running: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIpLimit {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more request from `ip`, or `None` at the limit.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let count = running.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            limit: self.clone(),
            ip,
        })
    }

    /// Requests running from `ip` now.
    pub fn running(&self, ip: IpAddr) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(&ip).copied().unwrap_or(0)
    }
}

/// One running request; leaving frees its place.
struct Slot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.limit.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = running.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(hosts: &[&str], origins: &[&str]) -> WebSafetySettings {
        WebSafetySettings {
            any_host: hosts.contains(&"*"),
            allowed_hosts: hosts
                .iter()
                .filter(|h| **h != "*")
                .map(|h| HostRule::parse(h).unwrap())
                .collect(),
            allowed_origins: origins
                .iter()
                .map(|o| parse_allowed_origin(o).unwrap())
                .collect(),
            max_requests_per_ip: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn host_ok(s: &WebSafetySettings, host: &str) -> bool {
        s.check(&headers(&[("host", host)]), None).is_ok()
    }

    #[test]
    fn loopback_names_and_ip_literals_pass_other_names_do_not() {
        let s = settings(&[], &[]);
        for host in [
            "localhost",
            "LOCALHOST:8000",
            "app.localhost:8000",
            "localhost.",
            "127.0.0.1:8000",
            "10.1.2.3",
            "[::1]:8000",
            "[fe80::1]",
        ] {
            assert!(host_ok(&s, host), "{host} should pass");
        }
        for host in [
            "evil.example:8000",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            ":8000",
            "[::1",
            "localhost:99999",
        ] {
            assert!(!host_ok(&s, host), "{host} should be refused");
        }
        let err = s
            .check(&headers(&[("host", "evil.example:8000")]), None)
            .unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(err.to_string().contains("proxy.allowed_hosts"), "{err}");
        assert!(err.to_string().contains("'evil.example:8000'"), "{err}");
    }

    #[test]
    fn listed_hosts_and_wildcards_pass_and_star_turns_the_check_off() {
        let s = settings(&["llmux.internal", "*.corp.example"], &[]);
        assert!(host_ok(&s, "llmux.internal:8000"));
        assert!(host_ok(&s, "LLMUX.Internal"));
        assert!(host_ok(&s, "a.corp.example"));
        assert!(host_ok(&s, "b.a.corp.example:1"));
        assert!(!host_ok(&s, "corp.example"));
        assert!(!host_ok(&s, "evilcorp.example"));
        assert!(!host_ok(&s, "llmux.internal.evil.example"));
        assert!(host_ok(&settings(&["*"], &[]), "anything.example"));
    }

    #[test]
    fn a_missing_host_passes_and_http2_authority_is_checked() {
        let s = settings(&[], &[]);
        assert!(s.check(&HeaderMap::new(), None).is_ok());
        assert!(s.check(&HeaderMap::new(), Some("evil.example")).is_err());
        assert!(s.check(&HeaderMap::new(), Some("127.0.0.1:1")).is_ok());
    }

    #[test]
    fn origins_loopback_own_and_listed_pass_others_are_refused() {
        let s = settings(&["llmux.lan"], &["https://chat.example.com"]);
        let check = |host: &str, origin: &str| {
            s.check(&headers(&[("host", host), ("origin", origin)]), None)
        };
        assert!(check("127.0.0.1:8000", "http://127.0.0.1:8000").is_ok());
        assert!(check("127.0.0.1:8000", "http://localhost:5173").is_ok());
        assert!(check("127.0.0.1:8000", "tauri://localhost").is_ok());
        assert!(check("127.0.0.1:8000", "http://[::1]:3000").is_ok());
        assert!(check("127.0.0.1:8000", "https://chat.example.com/").is_ok());
        assert!(check("llmux.lan", "http://llmux.lan:80").is_ok());
        // Behind a TLS front the Host carries no port; the name decides.
        assert!(check("llmux.lan", "https://llmux.lan").is_ok());
        assert!(check("llmux.lan:8000", "http://llmux.lan:9000").is_err());
        assert!(check("192.168.1.5:8000", "http://192.168.1.5:8000").is_ok());
        for (host, origin) in [
            ("127.0.0.1:8000", "http://evil.example"),
            ("127.0.0.1:8000", "null"),
            ("127.0.0.1:8000", "http://192.168.1.5:8000"),
            ("127.0.0.1:8000", "https://chat.example.com:8443"),
            ("127.0.0.1:8000", "garbage"),
        ] {
            let err = check(host, origin).unwrap_err();
            assert_eq!(err.status(), 403, "{host} {origin}");
            assert!(err.to_string().contains("proxy.allowed_origins"), "{err}");
        }
    }

    #[test]
    fn allowed_entries_are_checked_and_normalised() {
        assert_eq!(
            HostRule::parse("LLMUX.internal."),
            Ok(HostRule::Exact("llmux.internal".into()))
        );
        assert_eq!(
            HostRule::parse("*.corp.example"),
            Ok(HostRule::Subdomains("corp.example".into()))
        );
        for bad in ["http://x", "x:8000", "x/y", "", "*.", "a..b", "a b", "*"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_allowed_origin("HTTP://Localhost:3000/").as_deref(),
            Ok("http://localhost:3000")
        );
        assert_eq!(parse_allowed_origin("null").as_deref(), Ok("null"));
        for bad in [
            "*",
            "localhost:3000",
            "http://x/path",
            "http://",
            "http://x:port",
        ] {
            assert!(parse_allowed_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_take_the_shape_of_the_protocol_the_path_speaks() {
        assert_eq!(protocol_of_path("/v1/messages"), Protocol::Anthropic);
        assert_eq!(
            protocol_of_path("/anthropic/v1/messages"),
            Protocol::Anthropic
        );
        assert_eq!(
            protocol_of_path("/v1beta/models/x:generateContent"),
            Protocol::Gemini
        );
        assert_eq!(protocol_of_path("/v1/models/gemini-pro"), Protocol::Gemini);
        assert_eq!(protocol_of_path("/v1/models"), Protocol::OpenAiChat);
        assert_eq!(protocol_of_path("/v1/responses"), Protocol::OpenAiResponses);
        assert_eq!(
            protocol_of_path("/admin/api/settings"),
            Protocol::OpenAiChat
        );
    }

    #[test]
    fn per_ip_slots_are_counted_and_freed() {
        let limit = Arc::new(PerIpLimit::new(2));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let a = limit.enter(ip).unwrap();
        let _b = limit.enter(ip).unwrap();
        assert!(limit.enter(ip).is_none());
        assert!(limit.enter(other).is_some());
        drop(a);
        assert_eq!(limit.running(ip), 1);
        assert!(limit.enter(ip).is_some());
    }
}
