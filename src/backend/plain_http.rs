//! The generation request to a back-end at a plain `http://` URL that no proxy applies to (a
//! model server on this machine or the LAN: Ollama, vLLM, llama.cpp, LM Studio, another
//! gateway), sent on hyper-util's pooled HTTP/1.1 client directly rather than through
//! reqwest. reqwest wraps that same client in layers llmux does not use on this path, and
//! they cost ~13 % of a whole same-protocol request (bench/callgrind.sh, OpenAI chat): its
//! redirect policy and its response each parse the URL again with `Url::parse` (reqwest
//! 0.12.28 and 0.13.5 alike, whatever the policy), then a retry layer and header merging.
//! HTTPS back-ends, and any back-end a proxy applies to, stay on reqwest (TLS, proxies).
//!
//! The answer comes back as a `reqwest::Response`, so everything after the send (status,
//! headers, whole bodies, streams, their errors) is the same code for both clients.

use std::time::Duration;

use axum::http;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use reqwest::ResponseBuilderExt;
use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT};

/// The environment variables through which reqwest applies a proxy to `http://` URLs.
const HTTP_PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];

/// The plain-HTTP client of one back-end, for its one generation URL.
pub struct PlainHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: http::Uri,
    /// The same URL as reqwest reads it, for the `reqwest::Response` given back.
    url: reqwest::Url,
}

impl PlainHttp {
    /// The client for `url`, when it is `http://` and no proxy applies: neither the
    /// back-end's own `proxy_url` nor one of the proxy variables in `env` (which reqwest
    /// would follow; NO_PROXY is left to reqwest too, so any such variable keeps reqwest).
    pub fn for_url(
        url: &reqwest::Url,
        proxy_url: Option<&str>,
        connect_timeout: Duration,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let proxied = proxy_url.is_some()
            || HTTP_PROXY_VARS
                .iter()
                .any(|name| env(name).is_some_and(|value| !value.is_empty()));
        if url.scheme() != "http" || proxied {
            return None;
        }
        let uri = url.as_str().parse().ok()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Some(Self {
            client,
            uri,
            url: url.clone(),
        })
    }

    /// POSTs `body` with `headers` (llmux's user agent added when they name none);
    /// resolves at the response headers.
    pub async fn post(
        &self,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, hyper_util::client::legacy::Error> {
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(super::http::USER_AGENT_VALUE));
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = headers;
        let mut response = self.client.request(request).await?.map(reqwest::Body::wrap);
        // reqwest reads the response's URL from an extension only its builder can set; an
        // empty response carries it over (without it, reqwest parses a placeholder URL).
        if let Ok(with_url) = http::Response::builder().url(self.url.clone()).body(()) {
            response
                .extensions_mut()
                .extend(with_url.into_parts().0.extensions);
        }
        Ok(reqwest::Response::from(response))
    }
}

/// What a failed send says, its causes included, and whether connecting timed out.
pub fn describe(err: &hyper_util::client::legacy::Error) -> (String, bool) {
    let mut message = err.to_string();
    let mut timed_out = false;
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        timed_out |= inner
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        source = inner.source();
    }
    (message, timed_out)
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
        PlainHttp::for_url(&url, proxy, Duration::from_secs(1), env).is_some()
    }

    #[test]
    fn only_plain_http_without_a_proxy_skips_reqwest() {
        assert!(client_for(
            "http://127.0.0.1:11434/v1/chat/completions",
            None,
            &[]
        ));
        assert!(!client_for(
            "https://api.openai.com/v1/chat/completions",
            None,
            &[]
        ));
        let proxy = Some("http://proxy.test:3128");
        assert!(!client_for("http://127.0.0.1:8080/v1", proxy, &[]));
        for var in HTTP_PROXY_VARS {
            assert!(!client_for(
                "http://127.0.0.1:8080/v1",
                None,
                &[(var, "http://p:1")]
            ));
        }
        // An empty variable is no proxy (reqwest ignores it too).
        assert!(client_for(
            "http://127.0.0.1:8080/v1",
            None,
            &[("HTTP_PROXY", "")]
        ));
        // HTTPS_PROXY is for https URLs only.
        assert!(client_for(
            "http://127.0.0.1:8080/v1",
            None,
            &[("HTTPS_PROXY", "http://p:1")]
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
        let client = PlainHttp::for_url(&url, None, timeout, |_| None).unwrap();
        let err = client
            .post(HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        let (message, timed_out) = describe(&err);
        assert!(timed_out, "{message}");
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/v1/x")).unwrap();
        let client = PlainHttp::for_url(&url, None, Duration::from_secs(1), |_| None).unwrap();
        let err = client
            .post(HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        let (message, timed_out) = describe(&err);
        assert!(message.contains("refused"), "{message}");
        assert!(!timed_out);
    }
}
