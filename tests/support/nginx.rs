//! An nginx of the test's own (Debian's `nginx`, which scripts/setup installs): a
//! round-robin balancer on a free loopback port over the given upstream addresses, as a
//! team would put in front of several llmux instances. Stopped by pid when dropped.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use super::binary::Listening;

pub struct Nginx {
    pub port: u16,
    _server: Listening,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn balance(upstreams: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::binary::free_port();
        let servers: String = upstreams
            .iter()
            .map(|addr| format!("    server {addr} max_fails=1 fail_timeout=30s;\n"))
            .collect();
        let prefix = dir.path().display();
        // No sticky sessions: plain round robin; a refused connection moves on to the next.
        let conf = format!(
            r#"worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  upstream llmux {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://llmux;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1;
      proxy_buffering off;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"#
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx, installed by scripts/setup)");
        let Some(server) = Listening::wait(child, port).await else {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx did not listen on {port}: {log}");
        };
        Self {
            port,
            _server: server,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
