//! A seeded flaky TCP proxy (issue 15), for the fault benchmarks (`bench/get`, `bench/put`)
//! and for tests: it forwards loopback connections to a target and, per connection, cuts after
//! a random number of bytes, stays silent, or resets, the way a bad mobile or hotel link does.
//!
//! Every connection's fate is drawn from `seed` and the connection's index alone, so two runs
//! with the same seed (one with ferry, one with aria2c) meet the same sequence of faults in the
//! order they open connections. Bounded: at most `max_connections` at once (further clients
//! wait in the accept backlog), and a silent connection is held open at most `silent_hold`.
//!
//! The `flaky_proxy` binary is a thin wrapper (flags in `bench/get/README.md`).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Which bytes count towards a connection's cut budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Server to client (downloads).
    Down,
    /// Client to server (uploads).
    Up,
    /// Either: each direction has the budget, the first to exhaust it cuts.
    Both,
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "down" => Ok(Self::Down),
            "up" => Ok(Self::Up),
            "both" => Ok(Self::Both),
            _ => Err(format!("expected down, up or both, got {s:?}")),
        }
    }
}

/// What the proxy does to its connections.
#[derive(Debug, Clone)]
pub struct FlakyConfig {
    pub target: SocketAddr,
    pub seed: u64,
    /// Each connection is cut after a number of bytes drawn uniformly from this range;
    /// `None` never cuts.
    pub cut: Option<RangeInclusive<u64>>,
    pub direction: Direction,
    /// One connection in `silent_every` (drawn at random) goes silent; 0 = never.
    pub silent_every: u32,
    /// A silent connection first forwards its cut budget, then goes silent (instead of being
    /// silent from its first byte).
    pub silent_mid: bool,
    /// A cut is a TCP reset instead of a close with this probability, in percent.
    pub reset_percent: u8,
    /// How long a silent connection is held open at most.
    pub silent_hold: Duration,
    pub max_connections: usize,
    /// Print each connection's fate and outcome on stderr.
    pub verbose: bool,
}

impl FlakyConfig {
    /// A proxy to `target` that does nothing bad until told to.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            seed: 1,
            cut: None,
            direction: Direction::Both,
            silent_every: 0,
            silent_mid: false,
            reset_percent: 0,
            silent_hold: Duration::from_secs(120),
            max_connections: 256,
            verbose: false,
        }
    }
}

/// What happens to connection number `index`, drawn from the seed and the index alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    /// Bytes forwarded (per counted direction) before the fault; `None` = no fault.
    pub limit: Option<u64>,
    pub on_limit: OnLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    Close,
    Reset,
    Silent,
}

/// The fate of connection `index` under `cfg` (pure; the same for every run with one seed).
pub fn fate(cfg: &FlakyConfig, index: u64) -> Fate {
    let mut rng = fastrand::Rng::with_seed(
        cfg.seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let limit = cfg.cut.clone().map(|r| rng.u64(r));
    let silent = cfg.silent_every > 0 && rng.u32(0..cfg.silent_every) == 0;
    let reset = rng.u8(0..100) < cfg.reset_percent;
    match (silent, limit) {
        (true, Some(n)) if cfg.silent_mid => Fate {
            limit: Some(n),
            on_limit: OnLimit::Silent,
        },
        (true, _) => Fate {
            limit: Some(0),
            on_limit: OnLimit::Silent,
        },
        (false, limit) => Fate {
            limit,
            on_limit: if reset {
                OnLimit::Reset
            } else {
                OnLimit::Close
            },
        },
    }
}

/// Counters of what the proxy did, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub closed: AtomicU64,
    pub reset: AtomicU64,
    pub silent: AtomicU64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        write!(
            f,
            "{} connections: {} cut, {} reset, {} silent",
            get(&self.connections),
            get(&self.closed),
            get(&self.reset),
            get(&self.silent)
        )
    }
}

/// A running proxy. Dropping it stops accepting (open connections end with their tasks).
pub struct FlakyProxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    /// Binds `listen` (use `127.0.0.1:0`) and starts forwarding to `cfg.target`.
    pub async fn start(listen: SocketAddr, cfg: FlakyConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(accept_loop(listener, Arc::new(cfg), stats.clone()));
        Ok(Self { addr, stats, task })
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, cfg: Arc<FlakyConfig>, stats: Arc<Stats>) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    for index in 0u64.. {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let client = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => continue, // e.g. EMFILE: the permit bounds us, try again
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (cfg, stats) = (cfg.clone(), stats.clone());
        tokio::spawn(async move {
            let fate = fate(&cfg, index);
            let outcome = serve(client, &cfg, fate, &stats).await;
            if cfg.verbose {
                eprintln!("conn {index}: {fate:?} -> {outcome}");
            }
            drop(permit);
        });
    }
}

/// Forwards one connection under its fate; returns a word for the log.
async fn serve(mut client: TcpStream, cfg: &FlakyConfig, fate: Fate, stats: &Stats) -> String {
    let _ = client.set_nodelay(true);
    if fate.limit == Some(0) && fate.on_limit == OnLimit::Silent {
        stats.silent.fetch_add(1, Ordering::Relaxed);
        hold_silent(&mut client, cfg.silent_hold).await;
        return "silent from the start".into();
    }
    let Ok(mut upstream) = TcpStream::connect(cfg.target).await else {
        return "target refused".into();
    };
    let _ = upstream.set_nodelay(true);
    let (up_limit, down_limit) = match cfg.direction {
        Direction::Down => (None, fate.limit),
        Direction::Up => (fate.limit, None),
        Direction::Both => (fate.limit, fate.limit),
    };
    let hit = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        tokio::select! {
            r = pump(&mut cr, &mut uw, up_limit) => r,
            r = pump(&mut ur, &mut cw, down_limit) => r,
        }
    };
    if !hit {
        return "closed by a peer".into();
    }
    drop(upstream);
    match fate.on_limit {
        OnLimit::Close => {
            stats.closed.fetch_add(1, Ordering::Relaxed);
            "cut".into()
        }
        OnLimit::Reset => {
            stats.reset.fetch_add(1, Ordering::Relaxed);
            let _ = client.set_zero_linger();
            "reset".into()
        }
        OnLimit::Silent => {
            stats.silent.fetch_add(1, Ordering::Relaxed);
            hold_silent(&mut client, cfg.silent_hold).await;
            "silent after its budget".into()
        }
    }
}

/// Copies `from` to `to` until EOF or error (`false`) or until `limit` bytes went through
/// (`true`: the fault point; the last write is trimmed to land exactly on it).
async fn pump<R, W>(from: &mut R, to: &mut W, mut limit: Option<u64>) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if limit == Some(0) {
            return true;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let take = limit.map_or(n, |l| n.min(usize::try_from(l).unwrap_or(usize::MAX)));
        if to.write_all(&buf[..take]).await.is_err() {
            return false;
        }
        if let Some(l) = limit.as_mut() {
            *l -= take as u64;
        }
    }
}

/// Keeps the connection open without sending a byte, swallowing what the client sends, until
/// the client leaves or `hold` passes.
async fn hold_silent(client: &mut TcpStream, hold: Duration) {
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(hold, async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FlakyConfig {
        let mut c = FlakyConfig::new("127.0.0.1:1".parse().unwrap());
        c.cut = Some(1 << 20..=8 << 20);
        c.silent_every = 7;
        c.reset_percent = 20;
        c
    }

    #[test]
    fn same_seed_same_fates_other_seed_other_fates() {
        let a: Vec<_> = (0..50).map(|i| fate(&cfg(), i)).collect();
        let b: Vec<_> = (0..50).map(|i| fate(&cfg(), i)).collect();
        assert_eq!(a, b);
        let mut other = cfg();
        other.seed = 2;
        let c: Vec<_> = (0..50).map(|i| fate(&other, i)).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn fates_follow_the_configured_proportions() {
        let fates: Vec<_> = (0..7000).map(|i| fate(&cfg(), i)).collect();
        let silent = fates
            .iter()
            .filter(|f| f.on_limit == OnLimit::Silent)
            .count();
        assert!((800..1200).contains(&silent), "{silent} silent of 7000");
        let reset = fates
            .iter()
            .filter(|f| f.on_limit == OnLimit::Reset)
            .count();
        assert!((900..1500).contains(&reset), "{reset} reset of 7000");
        for f in fates.iter().filter(|f| f.on_limit != OnLimit::Silent) {
            let n = f.limit.unwrap();
            assert!((1 << 20..=8 << 20).contains(&n), "{n}");
        }
    }

    #[test]
    fn without_faults_nothing_happens() {
        let c = FlakyConfig::new("127.0.0.1:1".parse().unwrap());
        for i in 0..100 {
            assert_eq!(fate(&c, i).limit, None);
            assert_eq!(fate(&c, i).on_limit, OnLimit::Close);
        }
    }

    /// A target that answers every connection with `len` bytes of a pattern, then closes.
    async fn source(len: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let _ = s.write_all(&crate::pattern(len, 3)).await;
                });
            }
        });
        addr
    }

    async fn fetch(addr: SocketAddr) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
        got
    }

    #[tokio::test]
    async fn cuts_exactly_at_the_drawn_byte_and_forwards_the_prefix() {
        let mut c = FlakyConfig::new(source(100_000).await);
        c.cut = Some(12_345..=12_345);
        let p = FlakyProxy::start("127.0.0.1:0".parse().unwrap(), c)
            .await
            .unwrap();
        let got = fetch(p.addr).await;
        assert_eq!(got, crate::pattern(100_000, 3)[..12_345]);
        assert_eq!(p.stats.closed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn silent_connection_sends_nothing_and_stays_open() {
        let mut c = FlakyConfig::new(source(1000).await);
        c.silent_every = 1;
        let p = FlakyProxy::start("127.0.0.1:0".parse().unwrap(), c)
            .await
            .unwrap();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(r.is_err(), "expected no byte and no close, got {r:?}");
    }

    #[tokio::test]
    async fn without_faults_forwards_everything() {
        let p = FlakyProxy::start(
            "127.0.0.1:0".parse().unwrap(),
            FlakyConfig::new(source(300_000).await),
        )
        .await
        .unwrap();
        assert_eq!(fetch(p.addr).await, crate::pattern(300_000, 3));
    }
}
