//! Serving the engine on sockets, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::engine::Engine;

/// Serves `engine`'s main app on `listener`; see [`serve_apps`].
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    serve_apps(vec![(listener, engine.router())], shutdown, grace).await
}

/// Serves each app on its listener until `shutdown` resolves, then lets running requests
/// (streams included) finish for up to `grace` before returning.
pub async fn serve_apps(
    apps: Vec<(TcpListener, axum::Router)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let servers = apps.into_iter().map(|(listener, app)| {
        let mut stopped = stop_rx.clone();
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        // Without TCP_NODELAY, small stream frames wait on Nagle's algorithm and the
        // client's delayed ACK: about 40 ms per frame.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        }
    });
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
        results = futures::future::join_all(servers) => {
            results.into_iter().collect::<std::io::Result<Vec<()>>>().map(|_| ())
        }
        () = deadline => {
            tracing::warn!("requests still running after {}s; closing them", grace.as_secs());
            Ok(())
        }
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
