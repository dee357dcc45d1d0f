//! A seeded flaky TCP proxy for the fault benchmarks (issue 15): forwards 127.0.0.1 connections
//! to `--target` and cuts, silences or resets them (see `ferry_tests::flaky`). Prints
//! `listening on ADDR` once bound; on SIGINT/SIGTERM prints what it did on stderr and exits.
//!
//! Example: flaky_proxy --target 127.0.0.1:8080 --cut 1M-8M --silent-every 7 --seed 1

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use ferry_tests::flaky::{Direction, FlakyConfig, FlakyProxy};

#[derive(Parser)]
#[command(about = "seeded flaky TCP proxy for benchmarks and tests")]
struct Args {
    /// Address to forward to.
    #[arg(long)]
    target: SocketAddr,
    /// Address to listen on (port 0 picks one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed for every connection's fate: the same seed gives the same faults in the same
    /// connection order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cut each connection after a random amount in MIN-MAX bytes (binary units: 1M-8M), or
    /// `none`.
    #[arg(long, default_value = "none", value_parser = parse_cut)]
    cut: CutRange,
    /// Which bytes count towards the cut: down (server to client), up, or both.
    #[arg(long, default_value = "both")]
    direction: Direction,
    /// One connection in K, at random, stays open without sending a byte (0 = never).
    #[arg(long, default_value_t = 0)]
    silent_every: u32,
    /// Silent connections forward their cut amount first, then go silent.
    #[arg(long)]
    silent_mid: bool,
    /// Percentage of cuts that are TCP resets instead of a close.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    reset_percent: u8,
    /// Longest time a silent connection is held open, in seconds.
    #[arg(long, default_value_t = 120)]
    silent_hold: u64,
    /// Most connections at once; more wait in the accept backlog.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Log every connection's fate and outcome on stderr.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Clone)]
struct CutRange(Option<std::ops::RangeInclusive<u64>>);

fn parse_cut(s: &str) -> Result<CutRange, String> {
    if s == "none" {
        return Ok(CutRange(None));
    }
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let lo = ferry::size::parse_size(lo)?;
    let hi = ferry::size::parse_size(hi)?;
    if lo > hi {
        return Err(format!("expected MIN-MAX with MIN <= MAX, got {s:?}"));
    }
    Ok(CutRange(Some(lo..=hi)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let cfg = FlakyConfig {
        target: a.target,
        seed: a.seed,
        cut: a.cut.0,
        direction: a.direction,
        silent_every: a.silent_every,
        silent_mid: a.silent_mid,
        reset_percent: a.reset_percent,
        silent_hold: Duration::from_secs(a.silent_hold),
        max_connections: a.max_connections,
        verbose: a.verbose,
    };
    let proxy = FlakyProxy::start(a.listen, cfg).await.context("bind")?;
    println!("listening on {}", proxy.addr);
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("flaky_proxy: {}", proxy.stats);
    Ok(())
}
