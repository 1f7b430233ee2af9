//! Back-ends behind an outbound proxy, all on loopback: the provider's name does not
//! resolve (`provider.invalid`), so an answer proves the request went through the proxy.
//! HTTP proxies are the fake provider itself (a plain-HTTP request through a proxy is sent
//! in absolute form, which the fake records); SOCKS5 is a small server here that connects
//! every tunnel to the fake. A CONNECT tunnel (what an https:// provider gets) is not
//! exercised: the fakes speak plain HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::binary::{Llmux as Binary, free_port};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UNRESOLVABLE: &str = "http://provider.invalid/v1";

fn backend(extra: &str) -> String {
    format!(
        r#"default_backend = "far"
[backends.far]
type = "openai-compatible"
base_url = "{UNRESOLVABLE}"
{extra}
"#
    )
}

async fn ask(url: String) -> (u16, Value) {
    let response = client()
        .post(url)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi."}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn proxy_url(fake: &FakeOpenAi) -> String {
    fake.base_url.trim_end_matches("/v1").to_owned()
}

#[tokio::test]
async fn a_back_end_with_an_http_proxy_reaches_its_provider_through_it() {
    let proxy = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(
            &backend(&format!("proxy_url = \"{}\"", proxy_url(&proxy))),
            &[],
        ),
        &[],
    )
    .await;
    let (status, body) = ask(llmux.url("/v1/chat/completions")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake.");
    assert_eq!(
        proxy.uris.lock().unwrap().as_slice(),
        ["http://provider.invalid/v1/chat/completions"]
    );
}

/// A SOCKS5 server (RFC 1928, no authentication, CONNECT only) that connects every tunnel
/// to `upstream` and records the address each client asked for.
async fn socks5(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                // Greeting: version, methods; choose "no authentication".
                let mut head = [0u8; 2];
                client.read_exact(&mut head).await?;
                let mut methods = vec![0u8; usize::from(head[1])];
                client.read_exact(&mut methods).await?;
                client.write_all(&[5, 0]).await?;
                // Request: version, CONNECT, reserved, address type, address, port.
                let mut request = [0u8; 4];
                client.read_exact(&mut request).await?;
                let host = match request[3] {
                    1 => {
                        let mut ip = [0u8; 4];
                        client.read_exact(&mut ip).await?;
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    3 => {
                        let mut len = [0u8; 1];
                        client.read_exact(&mut len).await?;
                        let mut name = vec![0u8; usize::from(len[0])];
                        client.read_exact(&mut name).await?;
                        String::from_utf8_lossy(&name).into_owned()
                    }
                    _ => return Ok::<_, std::io::Error>(()),
                };
                let port = client.read_u16().await?;
                record.lock().unwrap().push(format!("{host}:{port}"));
                let mut server = TcpStream::connect(upstream).await?;
                client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                Ok(())
            });
        }
    });
    (addr, asked)
}

#[tokio::test]
async fn a_back_end_with_a_socks5_proxy_lets_the_proxy_resolve_the_name() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let upstream: SocketAddr = proxy_url(&fake)
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (socks, asked) = socks5(upstream).await;
    let llmux = start(
        config(&backend(&format!("proxy_url = \"socks5h://{socks}\"")), &[]),
        &[],
    )
    .await;
    let (status, body) = ask(llmux.url("/v1/chat/completions")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(asked.lock().unwrap().as_slice(), ["provider.invalid:80"]);
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn http_proxy_and_no_proxy_from_the_environment_are_honoured() {
    let proxy = FakeOpenAi::start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llmux.toml");
    let write = |port: u16| {
        let listen = format!("[proxy]\nport = {port}\nanthropic_port = 0\n");
        std::fs::write(
            &path,
            backend("").replacen("[backends.far]", &format!("{listen}[backends.far]"), 1),
        )
        .unwrap();
    };

    write(free_port());
    let via = Binary::start(&path, &[("HTTP_PROXY", &proxy_url(&proxy))]);
    let (status, body) = ask(format!("http://{}/v1/chat/completions", via.next_address())).await;
    assert_eq!(status, 200, "{body}\n{}", via.log());
    assert_eq!(proxy.hit_count(), 1);
    drop(via);

    write(free_port());
    let exempt = Binary::start(
        &path,
        &[
            ("HTTP_PROXY", &proxy_url(&proxy)),
            ("NO_PROXY", "provider.invalid"),
        ],
    );
    let (status, body) = ask(format!(
        "http://{}/v1/chat/completions",
        exempt.next_address()
    ))
    .await;
    assert_eq!(
        status, 503,
        "not through the proxy, so the name does not resolve: {body}"
    );
    assert_eq!(proxy.hit_count(), 1);
}

#[test]
fn a_proxy_url_of_another_scheme_is_refused_naming_the_key() {
    let err = support::config_error(&backend("proxy_url = \"ftp://127.0.0.1:21\""));
    assert!(err.contains("backends.far.proxy_url"), "{err}");
}
