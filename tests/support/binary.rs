//! The real `llmux` binary as a child process, for tests that need its own process (its
//! file descriptors, its restarts, its log).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Llmux {
    child: Child,
    /// Each "listening on" address, as the binary logs it.
    listening: mpsc::Receiver<String>,
    /// Every line it logged so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl Llmux {
    pub fn start(config: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let home = config.parent().unwrap();
        Self::start_args(&["serve", "--config", config.to_str().unwrap()], home, env)
    }

    /// `llmux ARGS...` with `home` as its HOME and nothing else of this environment.
    pub fn start_args(args: &[&str], home: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmux"))
            .args(args)
            .env_clear()
            .env("HOME", home)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, listening) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        Self {
            child,
            listening,
            log,
        }
    }

    /// What it logged so far, one line each.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn next_address(&self) -> String {
        self.listening
            .recv_timeout(Duration::from_secs(20))
            .expect("llmux did not (re)start listening")
    }
}

impl Drop for Llmux {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process a test starts (redis-server, nginx): waited for until it listens on its
/// loopback port, killed and reaped when dropped.
pub struct Listening {
    pub port: u16,
    child: Child,
}

impl Listening {
    /// Waits (up to 4 s) for `child` to accept connections on `port`; `None` (the child
    /// killed) when it never does.
    pub async fn wait(mut child: Child, port: u16) -> Option<Self> {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(Self { port, child });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Stops it and waits until the port refuses connections.
    pub async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
