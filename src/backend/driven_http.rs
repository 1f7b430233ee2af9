//! The generation request to a back-end that no proxy applies to, sent on an HTTP/1.1
//! connection that the request's own task drives: `https://` providers (OpenAI, Anthropic,
//! OpenRouter, ZAI, the subscription logins) over TLS, and model servers at `http://` URLs
//! on this machine or the LAN (Ollama, vLLM, llama.cpp, LM Studio, another gateway).
//!
//! Two costs are avoided this way, both measured with bench/callgrind.sh:
//! - reqwest's layers, ~13 % of a whole same-protocol request: its redirect policy and its
//!   response each parse the URL again with `Url::parse` (reqwest 0.12.28 and 0.13.5 alike,
//!   whatever the policy), then a retry layer and header merging;
//! - the pooled client's connection task (hyper-util's legacy client, which reqwest wraps):
//!   every connection runs in a task of its own, so a request, its answer and each frame of
//!   a stream hop between that task and the request's, usually across threads.
//!
//! Here a connection is hyper's `client::conn::http1` pair: a sender and the connection
//! future. The request's task polls the connection future whenever it waits on the answer
//! or its body, so the server side, the pipeline and the provider's connection run in one
//! task. A connection whose answer was read to the end goes back to this back-end's idle
//! list; the next request polls it to find whether the provider closed it meanwhile.
//!
//! TLS is rustls with the roots reqwest trusts (webpki-roots, Mozilla's list) and the
//! back-end's `ca_file`, offering only HTTP/1.1 in ALPN, as the providers' own SDKs speak
//! (httpx and Node's fetch). A connection serves every URL at the back-end's origin (the
//! Gemini API names the model in its URL). Any back-end a proxy applies to stays on
//! reqwest, and so does a URL at another origin. The answer comes back as a
//! `reqwest::Response`, so everything after the send (status, headers, whole bodies,
//! streams, their errors) is the same code for both clients.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::http;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use reqwest::ResponseBuilderExt;
use reqwest::header::{HOST, HeaderMap, HeaderValue, USER_AGENT};
use rustls::pki_types::{CertificateDer, ServerName};
use sync_wrapper::SyncWrapper;
use tokio_util::either::Either;

/// The environment variables through which reqwest applies a proxy to `http://` URLs.
const HTTP_PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// The environment variables through which reqwest applies a proxy to `https://` URLs.
const HTTPS_PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

/// How long an idle connection is kept for the next request (as reqwest's pool did).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// At most this many idle connections are kept per back-end; one past it is closed.
const MAX_IDLE: usize = 256;

/// The client of one back-end: its generation URL, or the URLs at its origin when they
/// name the model.
pub struct DrivenHttp {
    /// `http://host:port/`, what the connector connects to (a name is resolved at each
    /// new connection); TLS, if any, is begun on the connection it gives.
    origin: http::Uri,
    /// For an `https://` URL: the TLS settings and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// How long connecting may take, the TLS handshake included (as on reqwest).
    connect_timeout: Duration,
    /// hyper-util's connector: resolution, the IPv6/IPv4 fallback race, the connect
    /// timeout shared among the addresses, TCP_NODELAY.
    connector: HttpConnector,
    /// The request target in origin form (`/v1/chat/completions?...`).
    path: http::Uri,
    /// The `Host` header: the URL's host, and its port unless it is the scheme's default.
    host_header: HeaderValue,
    idle: Arc<IdleConnections>,
    /// The same URL as reqwest reads it, for the `reqwest::Response` given back.
    url: reqwest::Url,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Resolving or connecting failed, or timed out.
    Connect {
        target: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection failed while sending or before the answer's head arrived.
    Http(hyper::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { target, source } => {
                write!(f, "connecting to {target}: ")?;
                write_chain(f, source.as_ref())
            }
            Self::Http(err) => write_chain(f, err),
        }
    }
}

/// An error and its causes, `: `-separated.
fn write_chain(f: &mut fmt::Formatter<'_>, err: &dyn std::error::Error) -> fmt::Result {
    write!(f, "{err}")?;
    let mut source = err.source();
    while let Some(inner) = source {
        write!(f, ": {inner}")?;
        source = inner.source();
    }
    Ok(())
}

impl SendError {
    /// Whether connecting timed out (the back-end's connect timeout, as opposed to an
    /// unreachable one).
    pub fn is_connect_timeout(&self) -> bool {
        let Self::Connect { source, .. } = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(err) = cause {
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                return true;
            }
            cause = err.source();
        }
        false
    }
}

impl DrivenHttp {
    /// The client for `url`, when it is `http://` or `https://` and no proxy applies:
    /// neither the back-end's own `proxy_url` nor one of the proxy variables in `env` for
    /// its scheme (which reqwest would follow; NO_PROXY is left to reqwest too, so any such
    /// variable keeps reqwest). `extra_roots` are trusted besides the built-in ones.
    pub fn for_url(
        url: &reqwest::Url,
        proxy_url: Option<&str>,
        connect_timeout: Duration,
        extra_roots: &[CertificateDer<'static>],
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let proxy_vars = match url.scheme() {
            "http" => HTTP_PROXY_VARS,
            "https" => HTTPS_PROXY_VARS,
            _ => return None,
        };
        let proxied = proxy_url.is_some()
            || proxy_vars
                .iter()
                .any(|name| env(name).is_some_and(|value| !value.is_empty()));
        // reqwest sends a URL's `user:password@` as Basic auth; that stays reqwest's.
        if proxied || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?.to_owned();
        let port = url.port_or_known_default()?;
        let tls = match url.scheme() {
            "https" => Some((tls_connector(extra_roots)?, server_name(&host)?)),
            _ => None,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let path = request_target(url);
        // `Url::port` is None for the scheme's default port, which `Host` leaves out too.
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        Some(Self {
            origin: format!("http://{host}:{port}/").parse().ok()?,
            tls,
            connect_timeout,
            connector,
            path: path.parse().ok()?,
            host_header: HeaderValue::from_str(&host_header).ok()?,
            idle: Arc::default(),
            url: url.clone(),
        })
    }

    /// POSTs `body` with `headers` to the URL this client was made for (llmux's user agent
    /// added when they name none); resolves at the response headers. A request that an
    /// idle connection turned out closed before it was written goes again on a new
    /// connection.
    pub async fn post(
        &self,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, SendError> {
        self.send(self.path.clone(), &self.url, headers, body).await
    }

    /// Whether `url` is at this client's origin (scheme, host and port), so that
    /// [`DrivenHttp::post_to`] can send to it: a wire whose URL names the model (Gemini).
    pub fn serves(&self, url: &reqwest::Url) -> bool {
        url.scheme() == self.url.scheme()
            && url.host_str() == self.url.host_str()
            && url.port_or_known_default() == self.url.port_or_known_default()
    }

    /// [`DrivenHttp::post`] to another URL at the same origin (see [`DrivenHttp::serves`]).
    pub async fn post_to(
        &self,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, SendError> {
        let target = request_target(url)
            .parse()
            .map_err(|e: http::uri::InvalidUri| SendError::Connect {
                target: url.path().to_owned(),
                source: e.into(),
            })?;
        self.send(target, url, headers, body).await
    }

    async fn send(
        &self,
        target: http::Uri,
        url: &reqwest::Url,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, SendError> {
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(super::http::USER_AGENT_VALUE));
        // A `Host` among the back-end's own headers wins, as it did on reqwest.
        headers
            .entry(HOST)
            .or_insert_with(|| self.host_header.clone());
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        let (mut connection, reused) = match self.idle.take_ready() {
            Some(connection) => (connection, true),
            None => (self.connect().await?, false),
        };
        let response = match connection.send(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                Some(request) if reused => {
                    connection = self.connect().await?;
                    connection
                        .send(request)
                        .await
                        .map_err(|failed| SendError::Http(failed.into_error()))?
                }
                _ => return Err(SendError::Http(failed.into_error())),
            },
        };
        Ok(self.answer(response, connection, url))
    }

    /// A new connection to the back-end, over TLS for an `https://` URL.
    async fn connect(&self) -> Result<Box<Connection>, SendError> {
        let connect_error = |source: Box<dyn std::error::Error + Send + Sync>| SendError::Connect {
            target: self
                .origin
                .authority()
                .map_or("", |a| a.as_str())
                .to_owned(),
            source,
        };
        let started = Instant::now();
        let tcp = tower::ServiceExt::oneshot(self.connector.clone(), self.origin.clone())
            .await
            .map_err(|source| connect_error(source.into()))?
            .into_inner();
        let stream = match &self.tls {
            None => Either::Left(tcp),
            Some((connector, name)) => {
                // A host that takes the connection and never answers the handshake (a
                // firewall, a captive portal) is a connect timeout, so failover comes soon.
                let left = self.connect_timeout.saturating_sub(started.elapsed());
                let handshake = tokio::time::timeout(left, connector.connect(name.clone(), tcp));
                let tls = handshake
                    .await
                    .map_err(|_| {
                        let timed_out = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the TLS handshake did not finish within the connect timeout",
                        );
                        connect_error(timed_out.into())
                    })?
                    .map_err(|source| connect_error(source.into()))?;
                Either::Right(Box::new(tls))
            }
        };
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        Ok(Box::new(Connection {
            sender,
            driver: Some(SyncWrapper::new(driver)),
        }))
    }

    /// The answer as a `reqwest::Response` whose body drives `connection` and gives it
    /// back to the idle list once read to the end.
    fn answer(
        &self,
        response: http::Response<Incoming>,
        connection: Box<Connection>,
        url: &reqwest::Url,
    ) -> reqwest::Response {
        let idle = Arc::clone(&self.idle);
        let mut response = response.map(|body| {
            reqwest::Body::wrap(DrivingBody {
                body,
                connection: Some(connection),
                idle,
            })
        });
        // reqwest reads the response's URL from an extension only its builder can set; an
        // empty response carries it over (without it, reqwest parses a placeholder URL).
        if let Ok(with_url) = http::Response::builder().url(url.clone()).body(()) {
            response
                .extensions_mut()
                .extend(with_url.into_parts().0.extensions);
        }
        reqwest::Response::from(response)
    }
}

type Driver = http1::Connection<TokioIo<Stream>, Full<Bytes>>;

/// A URL's request target in origin form: its path, and its query if any.
fn request_target(url: &reqwest::Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The TLS settings of `https://` back-ends: the roots reqwest trusts (Mozilla's, from
/// webpki-roots) and `extra_roots`, HTTP/1.1 only. Back-ends that add no root share one
/// (one root store built, one session cache). `None` when an extra root is not a
/// certificate rustls can use (the config check has said so already).
fn tls_connector(extra_roots: &[CertificateDer<'static>]) -> Option<tokio_rustls::TlsConnector> {
    static PUBLIC_ROOTS_ONLY: std::sync::OnceLock<Option<tokio_rustls::TlsConnector>> =
        std::sync::OnceLock::new();
    if extra_roots.is_empty() {
        return PUBLIC_ROOTS_ONLY
            .get_or_init(|| new_tls_connector(&[]))
            .clone();
    }
    new_tls_connector(extra_roots)
}

fn new_tls_connector(
    extra_roots: &[CertificateDer<'static>],
) -> Option<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for root in extra_roots {
        roots.add(root.clone()).ok()?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a provider's certificate must carry: its host name, or its IP address.
fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(bare.to_owned()).ok(),
    }
}

/// A connection's byte stream: TCP, or TLS over TCP.
type Stream =
    Either<tokio::net::TcpStream, Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>;

/// One HTTP/1.1 connection: its sender and the future that does its reads and writes,
/// which whoever waits on it polls. Kept boxed: hyper's connection state is large, and
/// moving it between the idle list, the send and the body was ~1.6k instructions of
/// `memcpy` a request (bench/callgrind.sh).
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    /// `None` once the connection is over (closed or failed). `SyncWrapper` because a
    /// body given to reqwest must be `Sync`; the driver is only ever used through `&mut`.
    driver: Option<SyncWrapper<Driver>>,
}

impl Connection {
    /// Polls the connection's reads and writes; false once it is over.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = &mut self.driver else {
            return false;
        };
        if Pin::new(driver.get_mut()).poll(cx).is_ready() {
            self.driver = None;
            return false;
        }
        true
    }

    /// Sends `request` and drives the connection until the answer's head arrives.
    async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<
        http::Response<Incoming>,
        hyper::client::conn::TrySendError<http::Request<Full<Bytes>>>,
    > {
        // Queuing the request wakes whichever task drove this connection last; make that
        // no task, since this one drives it from here on.
        quietly(|quiet| self.drive(quiet));
        let mut answer = std::pin::pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            // The answer gets the real waker although only the driver fulfils it: it is a
            // tokio channel, which spends the task's cooperative budget and, when that is
            // used up, asks to be polled again through the waker it is given. The wake it
            // may cause from inside this poll is absorbed by `crate::rewake`.
            self.drive(cx);
            answer.as_mut().poll(cx)
        })
        .await
    }

    /// Whether an idle connection can take a request now. One look, no waiting: a
    /// connection given back healthy is ready at once, and one that is not (closed, or
    /// still writing a request the provider does not read) is not worth waiting for.
    /// The send that follows drives it with the task's real waker.
    fn ready_now(&mut self) -> bool {
        quietly(|quiet| {
            self.drive(quiet) && matches!(self.sender.poll_ready(quiet), Poll::Ready(Ok(())))
        })
    }
}

/// Runs `poll` with a context whose waker does nothing. The answer's body and the sender's
/// readiness are made ready by the connection's driver alone, through hyper's own channels
/// (which spend no cooperative budget), and the same task polls the driver just before
/// looking at them, so their own wakes would only be the task waking itself (see
/// `crate::rewake`).
fn quietly<T>(poll: impl FnOnce(&mut Context<'_>) -> T) -> T {
    poll(&mut Context::from_waker(std::task::Waker::noop()))
}

/// A back-end's idle connections, the most recently used last.
#[derive(Default)]
struct IdleConnections(Mutex<Vec<(Box<Connection>, Instant)>>);

impl IdleConnections {
    /// The most recently used idle connection that can take a request; closed, expired
    /// and busy ones found on the way are dropped.
    fn take_ready(&self) -> Option<Box<Connection>> {
        loop {
            let (mut connection, since) = self.lock().pop()?;
            if since.elapsed() < IDLE_TIMEOUT && connection.ready_now() {
                return Some(connection);
            }
        }
    }

    /// Keeps `connection` for the next request, unless the list is full.
    fn give_back(&self, connection: Box<Connection>) {
        let mut idle = self.lock();
        let expired = idle
            .iter()
            .take_while(|(_, since)| since.elapsed() >= IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push((connection, Instant::now()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Box<Connection>, Instant)>> {
        // The list holds no invariant a panic could break.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The answer's body, which drives its connection while it is read and gives the
/// connection back once it is read to the end (dropped before that, the connection is
/// closed with it: a half-read answer leaves it unusable).
struct DrivingBody {
    body: Incoming,
    connection: Option<Box<Connection>>,
    idle: Arc<IdleConnections>,
}

impl DrivingBody {
    fn give_back(&mut self) {
        if let Some(connection) = self.connection.take()
            && connection.driver.is_some()
        {
            self.idle.give_back(connection);
        }
    }
}

impl Body for DrivingBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.connection.is_none() && this.body.is_end_stream() {
            // Given back at its last byte: nothing more can come, and nobody drives the
            // connection for this body any more.
            return Poll::Ready(None);
        }
        // The driver alone fills the body, so the body is looked at without a waker of
        // its own while the connection lives (see [`quietly`]).
        let mut frame = quietly(|quiet| Pin::new(&mut this.body).poll_frame(quiet));
        if frame.is_pending() {
            let live = this
                .connection
                .as_mut()
                .is_some_and(|connection| connection.drive(cx));
            frame = if live {
                quietly(|quiet| Pin::new(&mut this.body).poll_frame(quiet))
            } else {
                Pin::new(&mut this.body).poll_frame(cx)
            };
        }
        match ready!(frame) {
            None => {
                this.give_back();
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if this.body.is_end_stream() {
                    this.give_back();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(err)) => {
                this.connection = None;
                Poll::Ready(Some(Err(err)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_for(url: &str, proxy: Option<&str>, env: &[(&str, &str)]) -> bool {
        let url = reqwest::Url::parse(url).unwrap();
        let env = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        DrivenHttp::for_url(&url, proxy, Duration::from_secs(1), &[], env).is_some()
    }

    #[test]
    fn only_urls_without_a_proxy_skip_reqwest() {
        for url in [
            "http://127.0.0.1:11434/v1/chat/completions",
            "https://api.openai.com/v1/chat/completions",
            "https://[::1]:8443/v1/messages",
        ] {
            assert!(client_for(url, None, &[]), "{url}");
            let proxy = Some("http://proxy.test:3128");
            assert!(!client_for(url, proxy, &[]), "{url}");
            for var in ["ALL_PROXY", "all_proxy"] {
                assert!(!client_for(url, None, &[(var, "http://p:1")]), "{url}");
            }
            // An empty variable is no proxy (reqwest ignores it too).
            assert!(client_for(url, None, &[("ALL_PROXY", "")]), "{url}");
        }
        assert!(!client_for("ftp://127.0.0.1/v1", None, &[]));
        // Credentials in the URL are reqwest's Basic auth.
        assert!(!client_for("https://user:secret@gw.test/v1", None, &[]));
        assert!(!client_for("http://user@127.0.0.1:8080/v1", None, &[]));
        // Each scheme's own variable applies to it alone.
        for var in HTTP_PROXY_VARS {
            assert!(!client_for(
                "http://127.0.0.1:8080/v1",
                None,
                &[(var, "http://p:1")]
            ));
        }
        for var in HTTPS_PROXY_VARS {
            assert!(!client_for(
                "https://127.0.0.1:8443/v1",
                None,
                &[(var, "http://p:1")]
            ));
        }
        assert!(client_for(
            "http://127.0.0.1:8080/v1",
            None,
            &[("HTTPS_PROXY", "http://p:1")]
        ));
        assert!(client_for(
            "https://127.0.0.1:8443/v1",
            None,
            &[("HTTP_PROXY", "http://p:1")]
        ));
    }

    #[tokio::test]
    async fn a_connect_that_hangs_is_a_timeout() {
        // A loopback listener whose accept queue is full: the kernel drops further SYNs,
        // so a connect waits until its timeout.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        let mut hung = false;
        for _ in 0..8 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => queued.push(stream),
                Err(_) => {
                    hung = true;
                    break;
                }
            }
        }
        assert!(hung, "the accept queue never filled");
        let url = reqwest::Url::parse(&format!("http://{addr}/v1/x")).unwrap();
        let timeout = Duration::from_millis(300);
        let client = DrivenHttp::for_url(&url, None, timeout, &[], |_| None).unwrap();
        let err = client
            .post(HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert!(err.is_connect_timeout(), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/v1/x")).unwrap();
        let client =
            DrivenHttp::for_url(&url, None, Duration::from_secs(1), &[], |_| None).unwrap();
        let err = client
            .post(HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(!err.is_connect_timeout());
    }

    /// How the hand-written provider below treats each connection.
    #[derive(Clone, Copy, PartialEq)]
    enum Provider {
        /// Answers every request and keeps the connection.
        KeepAlive,
        /// Answers one request, then closes (an idle timeout shorter than llmux's).
        ClosesAfterOne,
        /// Answers one request with `connection: close`.
        SaysClose,
        /// Reads the request and closes without answering.
        HangsUp,
        /// Answers with a chunked body of 40 chunks, 2 ms apart.
        Streams,
        /// Answers with the request's `Host` header.
        EchoesHost,
        /// Answers with the request's target (path and query), lower-cased; keeps the
        /// connection.
        EchoesTarget,
    }

    /// A byte stream a provider's connection runs on: TCP, or TLS over it.
    trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Socket for T {}

    /// An HTTP/1.1 provider on loopback, written by hand so that it can close connections
    /// when a test needs it; counts the connections it accepted.
    async fn provider(behaviour: Provider) -> (reqwest::Url, Arc<std::sync::atomic::AtomicUsize>) {
        provider_on(behaviour, None).await
    }

    /// A certificate for `127.0.0.1` and `localhost`, signed by itself, and a TLS acceptor
    /// that presents it.
    fn self_signed() -> (CertificateDer<'static>, tokio_rustls::TlsAcceptor) {
        self_signed_for(&["127.0.0.1", "localhost"])
    }

    /// A certificate for `names`, signed by itself, and a TLS acceptor that presents it.
    fn self_signed_for(names: &[&str]) -> (CertificateDer<'static>, tokio_rustls::TlsAcceptor) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names).unwrap();
        let certificate = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.clone()], key)
            .unwrap();
        (
            certificate,
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        )
    }

    /// [`provider`], over TLS when `tls` is given (its URL then `https://`).
    async fn provider_on(
        behaviour: Provider,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (reqwest::Url, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = reqwest::Url::parse(&format!(
            "{scheme}://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut socket: Box<dyn Socket> = match tls {
                        None => Box::new(tcp),
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => Box::new(stream),
                            Err(_) => return,
                        },
                    };
                    let mut buffer = Vec::new();
                    let mut answered = 0;
                    loop {
                        // One request: its head, then as many bytes as it says.
                        let head_end = loop {
                            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                                break end + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|line| line.strip_prefix("content-length:"))
                            .map_or(0, |value| value.trim().parse().unwrap());
                        while buffer.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buffer.drain(..head_end + length);
                        answered += 1;
                        match behaviour {
                            Provider::HangsUp => return,
                            Provider::Streams => {
                                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                                if socket.write_all(head.as_bytes()).await.is_err() {
                                    return;
                                }
                                for i in 0..40 {
                                    let data = format!("data: {i}\n\n");
                                    let chunk = format!("{:x}\r\n{data}\r\n", data.len());
                                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(2)).await;
                                }
                                if socket.write_all(b"0\r\n\r\n").await.is_err() {
                                    return;
                                }
                            }
                            _ => {
                                let body = if behaviour == Provider::EchoesHost {
                                    head.lines()
                                        .find_map(|line| line.strip_prefix("host:"))
                                        .unwrap_or("")
                                        .trim()
                                        .to_owned()
                                } else if behaviour == Provider::EchoesTarget {
                                    head.split(' ').nth(1).unwrap_or("").to_owned()
                                } else {
                                    format!("{{\"answer\":{answered}}}")
                                };
                                let close = if behaviour == Provider::SaysClose {
                                    "connection: close\r\n"
                                } else {
                                    ""
                                };
                                let answer = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{close}content-length: {}\r\n\r\n{body}",
                                    body.len()
                                );
                                if socket.write_all(answer.as_bytes()).await.is_err() {
                                    return;
                                }
                                if !matches!(
                                    behaviour,
                                    Provider::KeepAlive | Provider::EchoesTarget
                                ) {
                                    // Over TLS, a close_notify before the FIN.
                                    let _ = socket.shutdown().await;
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn client(url: &reqwest::Url) -> DrivenHttp {
        DrivenHttp::for_url(url, None, Duration::from_secs(2), &[], |_| None).unwrap()
    }

    async fn post_text(client: &DrivenHttp) -> String {
        let response = client
            .post(HeaderMap::new(), Bytes::from_static(b"{\"model\":\"m\"}"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    fn count(accepted: &std::sync::atomic::AtomicUsize) -> usize {
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn answers_read_to_the_end_leave_their_connection_for_the_next_request() {
        let (url, accepted) = provider(Provider::KeepAlive).await;
        let client = client(&url);
        for n in 1..=3 {
            assert_eq!(post_text(&client).await, format!("{{\"answer\":{n}}}"));
        }
        assert_eq!(count(&accepted), 1);
        // Two at once need two connections; both are kept and used again.
        let (a, b) = tokio::join!(post_text(&client), post_text(&client));
        assert!(a.starts_with("{\"answer\":") && b.starts_with("{\"answer\":"));
        assert_eq!(count(&accepted), 2);
        let (a, b) = tokio::join!(post_text(&client), post_text(&client));
        assert_ne!(a, b);
        assert_eq!(count(&accepted), 2);
    }

    #[tokio::test]
    async fn a_connection_the_provider_closed_while_idle_is_replaced() {
        let (url, accepted) = provider(Provider::ClosesAfterOne).await;
        let client = client(&url);
        for _ in 0..3 {
            assert_eq!(post_text(&client).await, "{\"answer\":1}");
            // Let the provider's close arrive while the connection is idle.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&accepted), 3);
    }

    #[tokio::test]
    async fn an_answer_that_says_close_ends_its_connection() {
        let (url, accepted) = provider(Provider::SaysClose).await;
        let client = client(&url);
        for _ in 0..3 {
            assert_eq!(post_text(&client).await, "{\"answer\":1}");
        }
        assert_eq!(count(&accepted), 3);
    }

    #[tokio::test]
    async fn a_provider_that_hangs_up_without_answering_is_an_error() {
        let (url, _) = provider(Provider::HangsUp).await;
        let client = client(&url);
        let err = tokio::time::timeout(
            Duration::from_secs(5),
            client.post(HeaderMap::new(), Bytes::from_static(b"{}")),
        )
        .await
        .expect("the send ended")
        .unwrap_err();
        assert!(!err.is_connect_timeout());
        assert!(err.to_string().contains("closed"), "{err}");
    }

    /// Reads the [`Provider::Streams`] answer twice from `client`, checking each arrives
    /// whole and frame by frame, and both on one connection.
    async fn two_streams_on_one_connection(
        client: &DrivenHttp,
        accepted: &std::sync::atomic::AtomicUsize,
    ) {
        use futures::StreamExt;
        for _ in 0..2 {
            let response = client
                .post(HeaderMap::new(), Bytes::from_static(b"{}"))
                .await
                .unwrap();
            let mut text = String::new();
            let mut chunks = 0;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
                chunks += 1;
            }
            let expected: String = (0..40).map(|i| format!("data: {i}\n\n")).collect();
            assert_eq!(text, expected);
            // Frames arrive as the provider sends them, not gathered at the end.
            assert!(chunks >= 20, "{chunks} chunks");
        }
        assert_eq!(count(accepted), 1);
    }

    #[tokio::test]
    async fn a_stream_is_read_frame_by_frame_and_its_connection_kept() {
        let (url, accepted) = provider(Provider::Streams).await;
        two_streams_on_one_connection(&client(&url), &accepted).await;
    }

    fn tls_client(url: &reqwest::Url, roots: &[CertificateDer<'static>]) -> DrivenHttp {
        DrivenHttp::for_url(url, None, Duration::from_secs(2), roots, |_| None).unwrap()
    }

    #[tokio::test]
    async fn https_answers_keep_their_tls_connection_for_the_next_request() {
        let (certificate, acceptor) = self_signed();
        let (url, accepted) = provider_on(Provider::KeepAlive, Some(acceptor)).await;
        let client = tls_client(&url, &[certificate]);
        for n in 1..=3 {
            assert_eq!(post_text(&client).await, format!("{{\"answer\":{n}}}"));
        }
        assert_eq!(count(&accepted), 1);
    }

    #[tokio::test]
    async fn an_https_connection_the_provider_closed_is_replaced() {
        let (certificate, acceptor) = self_signed();
        let (url, accepted) = provider_on(Provider::ClosesAfterOne, Some(acceptor)).await;
        let client = tls_client(&url, &[certificate]);
        for _ in 0..3 {
            assert_eq!(post_text(&client).await, "{\"answer\":1}");
            // The provider's close (a TLS close_notify, then FIN) reaches the idle list.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(&accepted), 3);
    }

    #[tokio::test]
    async fn an_https_stream_is_read_frame_by_frame() {
        let (certificate, acceptor) = self_signed();
        let (url, accepted) = provider_on(Provider::Streams, Some(acceptor)).await;
        two_streams_on_one_connection(&tls_client(&url, &[certificate]), &accepted).await;
    }

    #[tokio::test]
    async fn a_certificate_no_trusted_root_signed_is_refused() {
        let (_, acceptor) = self_signed();
        let (url, _) = provider_on(Provider::KeepAlive, Some(acceptor)).await;
        let client = tls_client(&url, &[]);
        let err = client
            .post(HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("certificate") && err.contains("UnknownIssuer"),
            "{err}"
        );
        assert!(err.starts_with(&format!("connecting to 127.0.0.1:{}", url.port().unwrap())));
    }

    #[tokio::test]
    async fn a_tls_handshake_that_stalls_is_a_connect_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = reqwest::Url::parse(&format!(
            "https://{}/v1/chat/completions",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        // Takes every connection and says nothing.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client =
            DrivenHttp::for_url(&url, None, Duration::from_millis(200), &[], |_| None).unwrap();
        let err = client
            .post(HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(err.is_connect_timeout(), "{err}");
        assert!(err.to_string().contains("TLS handshake"), "{err}");
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused() {
        let (certificate, acceptor) = self_signed_for(&["other.test"]);
        let (url, _) = provider_on(Provider::KeepAlive, Some(acceptor)).await;
        // Trusted, but for other.test, not for the address connected to.
        let client = tls_client(&url, &[certificate]);
        let err = client
            .post(HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificate not valid for name"), "{err}");
    }

    #[tokio::test]
    async fn urls_at_the_same_origin_share_its_connections() {
        let (url, accepted) = provider(Provider::EchoesTarget).await;
        let client = client(&url);
        assert_eq!(post_text(&client).await, "/v1/chat/completions");
        let mut other = url.clone();
        other.set_path("/v1beta/models/m:streamgeneratecontent");
        other.set_query(Some("alt=sse"));
        assert!(client.serves(&other));
        let response = client
            .post_to(&other, HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(response.url(), &other);
        assert_eq!(
            response.text().await.unwrap(),
            "/v1beta/models/m:streamgeneratecontent?alt=sse"
        );
        assert_eq!(count(&accepted), 1);
        // Another port, host or scheme is another origin.
        for elsewhere in [
            "http://127.0.0.1:1/v1/chat/completions",
            "http://localhost/v1/chat/completions",
            &url.as_str().replacen("http://", "https://", 1),
        ] {
            let elsewhere = reqwest::Url::parse(elsewhere).unwrap();
            assert!(!client.serves(&elsewhere), "{elsewhere}");
        }
    }

    #[tokio::test]
    async fn an_answer_dropped_half_read_closes_its_connection() {
        use futures::StreamExt;
        let (url, accepted) = provider(Provider::Streams).await;
        let client = client(&url);
        let response = client
            .post(HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let mut stream = response.bytes_stream();
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        // The next request cannot share the half-read connection.
        let response = client
            .post(HeaderMap::new(), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap().matches("data:").count(), 40);
        assert_eq!(count(&accepted), 2);
    }

    #[tokio::test]
    async fn host_is_the_urls_unless_the_back_end_sets_one() {
        let (url, _) = provider(Provider::EchoesHost).await;
        let client = client(&url);
        let port = url.port().unwrap();
        assert_eq!(post_text(&client).await, format!("127.0.0.1:{port}"));
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("models.internal"));
        let response = client
            .post(headers, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "models.internal");
    }
}
