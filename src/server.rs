//! Serving the engine on sockets: connection limits and timeouts, graceful shutdown.
//!
//! A local proxy is reachable by anything on the machine, so a connection that never
//! finishes its request head, or a flood of connections, must not take llmux down:
//! - every connection has a watchdog: a request head must arrive whole within
//!   `header_read_timeout` of its first byte (of the accept, on a new connection), and a
//!   kept-alive connection with nothing running is closed after `keep_alive_timeout`;
//! - served connections are capped (both ports together); at the cap each listener holds
//!   the one connection it accepted last and accepts no more, so new clients wait in the
//!   kernel's backlog until one closes, and llmux says so in the log (once a minute).
//!
//! hyper's own `header_read_timeout` starts when it begins waiting for a head, idle time
//! included, which would make the keep-alive timeout the header timeout; the watchdog
//! tells the two apart by counting the connection's running requests.
//!
//! Each port serves whichever app its [`Switch`] holds when a request arrives: saved
//! settings put the apps of a new engine in (no listener restarts, no connection dropped),
//! while requests already running finish on the app and engine they started with.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::frontend::hold_until_done;

pub use crate::config::proxy::ConnectionLimits;

/// The connection cap when none is configured: half the file descriptors llmux may open
/// (each proxied request also holds one to the provider), less a reserve for files and
/// listeners. The soft limit is raised to the hard one first, as servers do.
pub fn default_max_connections() -> usize {
    let limit = raise_fd_limit();
    let reserve = 64;
    usize::try_from(limit.saturating_sub(reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(16)
}

#[cfg(unix)]
fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::debug!("cannot read or raise the open-file limit: {err}");
            1024
        }
    }
}

#[cfg(not(unix))]
fn raise_fd_limit() -> u64 {
    // Windows sockets are not bounded by a per-process descriptor table.
    16_384
}

/// Connections the kernel completes and queues before llmux accepts them. Tokio's default is
/// 1024; a burst beyond the queue makes the kernel answer with SYN cookies, leaving clients a
/// connection llmux never sees. Linux caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` (address reuse on, as servers do, so a restart does not wait for
/// TIME_WAIT sockets) with a deep accept queue.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The app a port serves now; replaced whole when settings change.
type AppSlot = Arc<arc_swap::ArcSwap<axum::Router>>;

/// A wrapper the host puts around every app (the desktop shell counts requests).
type Layer = Arc<dyn Fn(axum::Router) -> axum::Router + Send + Sync>;

/// The listening sockets of one engine: its main port and, when configured, the dedicated
/// Anthropic port, each with its app. What the CLI, the desktop shell and the tests start.
pub struct Listeners {
    /// Where the main port listens (the OS's port when the config said 0).
    pub main: SocketAddr,
    /// Where the dedicated Anthropic port listens, when it is on.
    pub anthropic: Option<SocketAddr>,
    apps: Vec<(TcpListener, AppSlot)>,
    layers: Vec<Layer>,
}

/// Puts another engine's apps on running listeners: see [`Listeners::switch`].
#[derive(Clone)]
pub struct Switch {
    main: AppSlot,
    anthropic: Option<AppSlot>,
    layers: Vec<Layer>,
}

impl Switch {
    /// From the next request on, every port serves `engine` (with the host's layers).
    pub fn serve(&self, engine: &Engine) {
        let (main, anthropic) = crate::frontend::apps(engine);
        self.main.store(Arc::new(self.wrapped(main)));
        if let Some(slot) = &self.anthropic {
            slot.store(Arc::new(self.wrapped(anthropic)));
        }
    }

    fn wrapped(&self, app: axum::Router) -> axum::Router {
        self.layers.iter().fold(app, |app, layer| layer(app))
    }
}

/// A port that cannot be listened on.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {addr}: {source}")]
    Main {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for Anthropic clients: {source}; the dedicated Anthropic port \
         is the main port + 1 by default: choose another with --anthropic-port (or \
         proxy.anthropic_port), or 0 to turn it off"
    )]
    Anthropic {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Listeners {
    /// Binds the ports `engine`'s config names.
    pub fn bind(engine: &Engine) -> Result<Self, BindError> {
        let config = engine.config();
        let anthropic = config
            .anthropic_port
            .map(|port| SocketAddr::new(config.host, port));
        Self::bind_at(engine, SocketAddr::new(config.host, config.port), anthropic)
    }

    /// Binds these addresses instead (tests ask the OS for free ports with port 0).
    pub fn bind_at(
        engine: &Engine,
        main: SocketAddr,
        anthropic: Option<SocketAddr>,
    ) -> Result<Self, BindError> {
        let listener = listen(main).map_err(|source| BindError::Main { addr: main, source })?;
        let main = listener.local_addr().unwrap_or(main);
        let (main_app, anthropic_app) = crate::frontend::apps(engine);
        let slot = |app| Arc::new(arc_swap::ArcSwap::from_pointee(app));
        let mut apps = vec![(listener, slot(main_app))];
        let mut anthropic_addr = None;
        if let Some(addr) = anthropic {
            let listener = listen(addr).map_err(|source| BindError::Anthropic { addr, source })?;
            anthropic_addr = Some(listener.local_addr().unwrap_or(addr));
            apps.push((listener, slot(anthropic_app)));
        }
        Ok(Self {
            main,
            anthropic: anthropic_addr,
            apps,
            layers: Vec::new(),
        })
    }

    /// Wraps every port's app in `layer` (the desktop shell counts the requests it serves),
    /// now and whenever a [`Switch`] puts in another engine's.
    pub fn layer(
        mut self,
        layer: impl Fn(axum::Router) -> axum::Router + Send + Sync + 'static,
    ) -> Self {
        for (_, slot) in &self.apps {
            slot.store(Arc::new(layer(slot.load().as_ref().clone())));
        }
        self.layers.push(Arc::new(layer));
        self
    }

    /// The handle that puts another engine on these listeners while they serve.
    pub fn switch(&self) -> Switch {
        Switch {
            main: self.apps[0].1.clone(),
            anthropic: self.apps.get(1).map(|(_, slot)| slot.clone()),
            layers: self.layers.clone(),
        }
    }

    /// Serves until `shutdown`; see [`serve_apps`].
    pub async fn serve(
        self,
        limits: ConnectionLimits,
        shutdown: impl Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<()> {
        serve_apps(self.apps, limits, shutdown, grace).await
    }
}

/// Serves each app on its listener until `shutdown` resolves, then lets running requests
/// (streams included) finish for up to `grace` before closing what is left.
async fn serve_apps(
    apps: Vec<(TcpListener, AppSlot)>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let max = limits
        .max_connections
        .unwrap_or_else(default_max_connections);
    let shared = Arc::new(Shared {
        limits,
        slots: Arc::new(Semaphore::new(max)),
        max,
        cap_logged: AtomicU64::new(0),
    });
    let servers = apps
        .into_iter()
        .map(|(listener, app)| accept_loop(listener, app, shared.clone(), stop_rx.clone()));
    let mut stopping = stop_rx.clone();
    let deadline = async move {
        if stopping.wait_for(|stop| *stop).await.is_ok() {
            tracing::info!(
                "shutting down; waiting up to {}s for running requests",
                grace.as_secs()
            );
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = futures::future::join_all(servers) => Ok(()),
        () = deadline => {
            tracing::warn!("requests still running after {}s; closing them", grace.as_secs());
            Ok(())
        }
    }
}

/// What every listener of one server shares.
struct Shared {
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    max: usize,
    /// When the cap was last logged (seconds since the Unix epoch), to log it once a minute.
    cap_logged: AtomicU64,
}

impl Shared {
    fn log_cap_reached(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.cap_logged.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .cap_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "connection limit reached: {} client connections are open; new ones wait \
                 until one closes (proxy.max_connections, --max-connections, MAX_CONNECTIONS)",
                self.max
            );
        }
    }
}

/// Accepts connections until `stop`, then waits for the open ones to finish (each is told
/// to close once its running request is done). Dropping it closes them all.
async fn accept_loop(
    listener: TcpListener,
    app: AppSlot,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: the listener stays good; wait for descriptors to free.
                tracing::warn!("cannot accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // At the cap, the connection just accepted waits for a slot and no other is
        // accepted meanwhile: the rest wait in the kernel's backlog.
        let slot = if let Ok(slot) = shared.slots.clone().try_acquire_owned() {
            slot
        } else {
            shared.log_cap_reached();
            tokio::select! {
                slot = shared.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                _ = stop.wait_for(|s| *s) => break,
            }
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        // Without TCP_NODELAY, small stream frames wait on Nagle's algorithm and the
        // client's delayed ACK: about 40 ms per frame.
        let _ = tcp.set_nodelay(true);
        let conn = serve_connection(tcp, remote, app.clone(), shared.clone(), stop.clone());
        connections.spawn(crate::rewake::repoll_on_self_wake(async move {
            let _slot = slot;
            conn.await;
        }));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it closes, its watchdog fires, or the server stops (then
/// it finishes its running request first).
async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    app: AppSlot,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _open = crate::process::OpenConnection::count();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let running = activity.request_started();
            // The app of this moment: a settings change applies from the next request on.
            let app = app.load().as_ref().clone();
            async move {
                let response = tower::ServiceExt::oneshot(app, request.map(Body::new)).await;
                Ok::<_, Infallible>(match response {
                    Ok(response) => response.map(|body| hold_until_done(body, running)),
                    Err(never) => match never {},
                })
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timeout (30 s by default once a timer is set) also runs while a
    // kept-alive connection waits for its next request; the watchdog times both instead.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut watchdog = pin!(activity.watchdog(shared.limits.clone()));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(client = %remote, "connection ended: {err}");
                }
                return;
            }
            reason = &mut watchdog => {
                tracing::debug!(client = %remote, "closing the connection: {reason}");
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection's watchdog knows: its running requests, when a head started
/// arriving, and when it last went idle. Times are milliseconds since `started`.
struct Activity {
    started: Instant,
    running: AtomicUsize,
    /// When the first byte of a head not yet complete arrived; `NONE` when none is pending.
    head_since: AtomicU64,
    /// When the last request finished (or the connection opened).
    idle_since: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            running: AtomicUsize::new(0),
            // A new connection owes its first head from the start: a client that connects
            // and sends nothing gets the header timeout, not the keep-alive one.
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Bytes arrived: while nothing runs they are the start of the next head.
    fn bytes_read(&self) {
        if self.running.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NONE
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// A head arrived whole; the request runs until the returned guard drops (its answer
    /// has been sent, or abandoned).
    fn request_started(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        Running(self.clone())
    }

    /// Resolves, with the reason, when the connection should be closed.
    async fn watchdog(&self, limits: ConnectionLimits) -> &'static str {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE - 1);
        let (header, keep_alive) = (
            ms(limits.header_read_timeout),
            ms(limits.keep_alive_timeout),
        );
        loop {
            let now = self.now();
            let wake_at = if self.running.load(Ordering::Relaxed) > 0 {
                // A request runs: nothing to time here; look again later.
                now + header.min(keep_alive)
            } else {
                let head = self.head_since.load(Ordering::Relaxed);
                if head != NONE {
                    if now >= head + header {
                        return "the request head did not arrive in time";
                    }
                    head + header
                } else {
                    let idle = self.idle_since.load(Ordering::Relaxed);
                    if now >= idle + keep_alive {
                        return "idle keep-alive connection";
                    }
                    idle + keep_alive
                }
            };
            tokio::time::sleep(Duration::from_millis(wake_at.saturating_sub(now).max(1))).await;
        }
    }
}

/// One running request on a connection.
struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::Relaxed);
        activity.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
