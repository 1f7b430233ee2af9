//! Many streams at once: opens `--streams` streaming chat requests together (one connection
//! each) against a fake provider started with `--chunk-interval-ms`, directly or through a
//! proxy, and reads them all to the end. Every content chunk carries `" <index>@<send time>"`
//! from the provider, so each frame is checked to arrive in order and its delay (arrival
//! minus the provider's send stamp, both on this machine's clock) goes into a histogram.
//! With `--pid`, the process's RSS is sampled every 50 ms for its peak. Loopback targets only.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: printing the measurements is its job"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Content chunks the paced fake sends per stream.
const CHUNKS: u64 = 64;

#[derive(Parser, Debug)]
#[command(
    about = "Hold many streams at once; check frame order and per-frame delay (loopback only)"
)]
struct Args {
    /// Base URL of an OpenAI-compatible API on loopback, e.g. http://127.0.0.1:8000/v1.
    #[arg(long)]
    url: String,
    /// Streaming requests held open at once.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// A process whose RSS to sample (the proxy).
    #[arg(long)]
    pid: Option<u32>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Model name sent in the request.
    #[arg(long, default_value = "fake-model")]
    model: String,
}

/// What every stream adds to.
struct Tally {
    active: AtomicUsize,
    peak_active: AtomicUsize,
    streams_ok: AtomicU64,
    frames: AtomicU64,
    out_of_order: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(message);
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `(index, stamp)` a paced chunk's `data:` payload carries, if it is a content chunk.
fn stamp_of(payload: &str) -> Option<(u64, u64)> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let content = value["choices"][0]["delta"]["content"].as_str()?;
    let (index, stamp) = content.trim().split_once('@')?;
    Some((index.parse().ok()?, stamp.parse().ok()?))
}

/// One stream, read to `[DONE]`: the delays of its frames in microseconds.
async fn one_stream(
    addr: SocketAddr,
    path: &str,
    body: Bytes,
    tally: &Tally,
) -> anyhow::Result<Vec<u64>> {
    let tcp = TcpStream::connect(addr).await.context("connecting")?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, HeaderValue::from_str(&addr.to_string())?)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        bail!("status {}", response.status());
    }
    let now_active = tally.active.fetch_add(1, Ordering::Relaxed) + 1;
    tally.peak_active.fetch_max(now_active, Ordering::Relaxed);
    let result = read_frames(response.into_body(), tally).await;
    tally.active.fetch_sub(1, Ordering::Relaxed);
    result
}

async fn read_frames(mut body: hyper::body::Incoming, tally: &Tally) -> anyhow::Result<Vec<u64>> {
    let mut delays = Vec::with_capacity(CHUNKS as usize);
    let mut pending = String::new();
    let mut expected = 0u64;
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let arrived = unix_micros();
        pending.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let Some(payload) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if payload == "[DONE]" {
                done = true;
                continue;
            }
            if let Some((index, stamp)) = stamp_of(payload) {
                if index != expected {
                    tally.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                expected = index + 1;
                delays.push(arrived.saturating_sub(stamp));
                tally.frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if !done || expected != CHUNKS {
        bail!("stream ended after {expected} of {CHUNKS} chunks (done: {done})");
    }
    Ok(delays)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let url: hyper::Uri = args.url.parse().context("--url")?;
    let host = url.host().context("--url needs a host")?;
    let ip: std::net::IpAddr = match host {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => other
            .trim_matches(['[', ']'])
            .parse()
            .context("--url host")?,
    };
    if !ip.is_loopback() {
        bail!("refusing {host}: only loopback targets");
    }
    let addr = SocketAddr::new(ip, url.port_u16().unwrap_or(80));
    let path = format!("{}/chat/completions", url.path().trim_end_matches('/'));
    let body = Bytes::from(
        serde_json::json!({"model": args.model, "stream": true,
            "messages": [{"role": "user", "content": "count to 64"}]})
        .to_string(),
    );
    let tally = Arc::new(Tally {
        active: AtomicUsize::new(0),
        peak_active: AtomicUsize::new(0),
        streams_ok: AtomicU64::new(0),
        frames: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let rss_start = args.pid.and_then(rss_kib);
    let peak_rss = Arc::new(AtomicU64::new(rss_start.unwrap_or(0)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = args.pid.map(|pid| {
        let (peak, on) = (peak_rss.clone(), sampling.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.streams {
        let (tally, path, body) = (tally.clone(), path.clone(), body.clone());
        tasks.spawn(async move {
            match one_stream(addr, &path, body, &tally).await {
                Ok(delays) => {
                    tally.streams_ok.fetch_add(1, Ordering::Relaxed);
                    delays
                }
                Err(err) => {
                    tally.error(format!("{err:#}"));
                    Vec::new()
                }
            }
        });
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let deadline = tokio::time::sleep(Duration::from_secs(args.timeout_secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(delays)) => {
                    for d in delays {
                        histogram.record(d.max(1))?;
                    }
                }
                Some(Err(err)) => tally.error(format!("task: {err}")),
                None => break,
            },
            () = &mut deadline => {
                tally.error(format!("{} streams unfinished after {} s", tasks.len(), args.timeout_secs));
                tasks.abort_all();
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    let first_error = tally
        .first_error
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = serde_json::json!({
        "streams": args.streams,
        "streams_ok": tally.streams_ok.load(Ordering::Relaxed),
        "peak_active": tally.peak_active.load(Ordering::Relaxed),
        "frames": tally.frames.load(Ordering::Relaxed),
        "frames_expected": args.streams as u64 * CHUNKS,
        "out_of_order": tally.out_of_order.load(Ordering::Relaxed),
        "errors": tally.errors.load(Ordering::Relaxed),
        "first_error": first_error,
        "elapsed_s": elapsed.as_secs_f64(),
        "frame_delay_us": {
            "p50": histogram.value_at_quantile(0.50),
            "p90": histogram.value_at_quantile(0.90),
            "p99": histogram.value_at_quantile(0.99),
            "max": histogram.max(),
        },
        "rss_start_kib": rss_start,
        "rss_peak_kib": args.pid.map(|_| peak_rss.load(Ordering::Relaxed)),
    });
    println!("{report}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_from_paced_chunks_only() {
        let chunk = r#"{"choices":[{"index":0,"delta":{"content":" 12@1700000000123456"}}]}"#;
        assert_eq!(stamp_of(chunk), Some((12, 1_700_000_000_123_456)));
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(stamp_of(role), None);
        assert_eq!(stamp_of("not json"), None);
    }
}
