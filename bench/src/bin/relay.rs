//! A TCP byte relay: the floor under any HTTP proxy on this machine.
//!
//! Every accepted connection gets its own connection to `--upstream`, and bytes are copied
//! both ways until both directions have ended, with `TCP_NODELAY` on both (as llmux sets).
//! It parses nothing, so a request through it costs what any proxy pays at least: two more
//! socket reads and writes, the wake-ups of the peers it writes to, and its own wait for
//! readiness.
//! `bench/relay-standin.sh` runs it in llmux's place, so `bench/run.sh` measures that floor
//! (`LLMUX_BIN=bench/relay-standin.sh`), and llmux's cost above it is the part llmux's own code
//! can change.
//!
//! It runs on tokio's multi-threaded runtime with its default worker count, as llmux does.
//! Only loopback addresses can be bound or relayed to.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: printing the bound address is its interface"
)]

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "TCP byte relay to a loopback upstream (the proxy floor; loopback only)")]
struct Args {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Loopback address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Where every connection is relayed to (a loopback address and port).
    #[arg(long)]
    upstream: SocketAddr,
}

/// Copies bytes between `client` and a new connection to `upstream` until both directions end.
async fn relay(mut client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    let mut server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

async fn serve(args: Args) -> anyhow::Result<()> {
    for address in [args.host, args.upstream.ip()] {
        if !address.is_loopback() {
            bail!("refusing {address}: only loopback addresses are allowed");
        }
    }
    let listener = TcpListener::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match accepted {
            Ok((client, _)) => {
                tokio::spawn(async move {
                    if let Err(e) = relay(client, args.upstream).await {
                        eprintln!("relay: {e:#}");
                    }
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}
