//! A redis-server of the test's own on a free loopback port (Debian's `redis-server`, which
//! scripts/setup installs), with no persistence, stopped by pid when dropped.

use std::process::{Command, Stdio};

use super::binary::{Listening, free_port};

pub struct RedisServer {
    pub port: u16,
    server: Listening,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// On `port` (a restart after [`RedisServer::stop`] keeps the address).
    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server, installed by scripts/setup)");
        let server = Listening::wait(child, port)
            .await
            .unwrap_or_else(|| panic!("redis-server did not listen on {port}"));
        Self {
            port,
            server,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops it (by pid) and waits until the port refuses connections.
    pub async fn stop(self) -> u16 {
        let port = self.port;
        self.server.stop().await;
        port
    }
}
