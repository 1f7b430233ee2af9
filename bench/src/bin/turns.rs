//! What the input-limit check and failover add to a request, measured against the same
//! llmux without them in one run (bench/limits.sh starts the processes):
//! - a ~1 MB agent conversation (200 turns) sent to a model with `max_input_tokens` set,
//!   first as a conversation llmux has never seen (every message tokenised) and then as its
//!   follow-up turn (one new message; the rest remembered), against the same requests to a
//!   model without limits;
//! - a small request to a failover route whose first leg refuses connections, against the
//!   same request straight to the second leg.
//!
//! Loopback only; every loop is bounded by --rounds.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: printing the measurements is its job"
)]

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    /// llmux (127.0.0.1:PORT) with the limits and the failover route configured.
    #[arg(long)]
    llmux: SocketAddr,
    /// The model with `max_input_tokens` set.
    #[arg(long, default_value = "limited")]
    limited_model: String,
    /// The model without limits.
    #[arg(long, default_value = "plain")]
    plain_model: String,
    /// The failover route, whose first leg refuses connections.
    #[arg(long, default_value = "sturdy")]
    route: String,
    /// The model the route's second leg names, asked for directly.
    #[arg(long, default_value = "fake:plain")]
    second_leg: String,
    /// Alternating rounds per measurement.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    #[arg(long, default_value_t = 200)]
    turns: usize,
    /// Size of the conversation in bytes (roughly).
    #[arg(long, default_value_t = 1 << 20)]
    bytes: usize,
}

/// A conversation of `turns` messages, about `bytes` long, made unique by `salt` (so no
/// message of it was ever counted before).
fn conversation(turns: usize, bytes: usize, salt: u64) -> Vec<Value> {
    let per_message = bytes / turns;
    let sentence =
        "The build failed in src/lib.rs at line 42 because the borrow outlived its owner; ";
    (0..turns)
        .map(|i| {
            let mut text = format!("[{salt}-{i}] ");
            while text.len() < per_message {
                text.push_str(sentence);
            }
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": text})
        })
        .collect()
}

fn body(model: &str, messages: &[Value]) -> Bytes {
    Bytes::from(json!({"model": model, "max_tokens": 16, "messages": messages}).to_string())
}

/// One keep-alive connection to llmux.
struct Client {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .context("connecting to llmux")?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends a chat request; the time to the whole answer, in milliseconds.
    async fn time(&mut self, body: Bytes) -> anyhow::Result<f64> {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header(HOST, HeaderValue::from_str(&self.addr.to_string())?)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let started = Instant::now();
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            bail!("status {status}: {}", String::from_utf8_lossy(&answer));
        }
        Ok(elapsed)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Row {
    what: &'static str,
    with: f64,
    without: f64,
}

async fn run(args: Args) -> anyhow::Result<Vec<Row>> {
    let mut client = Client::connect(args.llmux).await?;
    let (mut first_on, mut first_off, mut next_on, mut next_off) = (vec![], vec![], vec![], vec![]);
    for round in 0..args.rounds {
        // Fresh conversations for each model, so neither has counted them before.
        for (model, first, next) in [
            (&args.limited_model, &mut first_on, &mut next_on),
            (&args.plain_model, &mut first_off, &mut next_off),
        ] {
            let salt = (round as u64) << 1 | u64::from(model == &args.limited_model);
            let mut messages = conversation(args.turns, args.bytes, salt);
            first.push(client.time(body(model, &messages)).await?);
            messages.push(json!({"role": "user", "content": "And now the tests?"}));
            next.push(client.time(body(model, &messages)).await?);
        }
    }
    let small = [json!({"role": "user", "content": "Say hello."})];
    let (mut routed, mut direct) = (vec![], vec![]);
    for _ in 0..args.rounds * 10 {
        routed.push(client.time(body(&args.route, &small)).await?);
        direct.push(client.time(body(&args.second_leg, &small)).await?);
    }
    Ok(vec![
        Row {
            what: "1 MB conversation, first turn (every message tokenised)",
            with: median(first_on),
            without: median(first_off),
        },
        Row {
            what: "1 MB conversation, follow-up turn (one new message)",
            with: median(next_on),
            without: median(next_off),
        },
        Row {
            what: "failover route, first leg refuses connections",
            with: median(routed),
            without: median(direct),
        },
    ])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (rounds, turns, bytes) = (args.rounds, args.turns, args.bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(run(args))?;
    println!("{rounds} rounds; conversations of {turns} messages, {bytes} bytes; medians in ms\n");
    println!("| request | with | without | added |");
    println!("|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:+.2} |",
            row.what,
            row.with,
            row.without,
            row.with - row.without
        );
    }
    Ok(())
}
