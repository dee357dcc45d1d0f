//! `--limit-rate`: one token bucket shared by every connection of every transfer of a run
//! (curl `--limit-rate`, aria2c `--max-overall-download-limit`), so `-x 16` and `-j 4`
//! together still move at most RATE bytes per second.
//!
//! The bucket is kept as a GCRA schedule (the "virtual scheduling" form of a token bucket):
//! one instant, `tat`, the time at which everything granted so far would have passed at
//! exactly RATE. A grant of `n` bytes moves `tat` by `n / RATE` and waits until `tat` is at
//! most [`burst`](RateLimit::burst) bytes' worth ahead of now. Grants are booked under a lock
//! and then slept outside it, so callers queue in order and nobody spins. Over any interval
//! `t`, at most `RATE × t + burst` bytes pass. The burst is a quarter of a second's worth:
//! over 10 s the rate is at most 2.5 % above RATE, and a process descheduled for less than
//! that (a loaded machine) catches up instead of losing the time.
//!
//! Time is tokio's clock, so the tests run on a paused one.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Largest grant: a body chunk is passed on in pieces of at most this many bytes, so
/// connections sharing the bucket take turns in small steps (a 400 KiB chunk granted at
/// once would leave the others silent for long enough to look stalled).
pub const MAX_QUANTUM: u64 = 16 * 1024;

/// Longest wait booked for one grant.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug)]
pub struct RateLimit {
    rate: u64,
    burst: u64,
    tat: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// A bucket passing `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1);
        Self {
            rate,
            burst: (rate / 4).max(Self::quantum_for(rate)),
            tat: Mutex::new(None),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes that may pass at once after a pause.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The piece size callers should ask for: [`MAX_QUANTUM`], or a sixteenth of a second's
    /// worth at low rates (never less than 512 bytes).
    pub fn quantum(&self) -> u64 {
        Self::quantum_for(self.rate)
    }

    fn quantum_for(rate: u64) -> u64 {
        (rate / 16).clamp(512, MAX_QUANTUM)
    }

    /// Waits until `n` more bytes may pass.
    pub async fn take(&self, n: u64) {
        let at = self.reserve(n, Instant::now());
        tokio::time::sleep_until(at).await;
    }

    /// Books `n` bytes at `now`; returns when they may pass. Pure apart from the lock.
    pub fn reserve(&self, n: u64, now: Instant) -> Instant {
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let start = tat.map_or(now, |t| t.max(now));
        // Unreachable overflow (a year per grant at most) would mean no wait, never a panic.
        let next = start.checked_add(self.duration_of(n)).unwrap_or(start);
        *tat = Some(next);
        next.checked_sub(self.duration_of(self.burst))
            .map_or(now, |at| at.max(now))
    }

    /// How long `n` bytes take at the rate, at most a year (no overflow for any `n`).
    fn duration_of(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.rate);
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos).min(MAX_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Everything granted by `until`, with `workers` tasks each asking `piece` bytes at a time.
    async fn run(limit: Arc<RateLimit>, workers: usize, piece: u64, until: Duration) -> u64 {
        let start = Instant::now();
        let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (limit, total) = (Arc::clone(&limit), Arc::clone(&total));
            set.spawn(async move {
                loop {
                    limit.take(piece).await;
                    if Instant::now() > start + until {
                        break;
                    }
                    total.fetch_add(piece, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        while set.join_next().await.is_some() {}
        total.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn one_taker_gets_the_rate_within_3_percent_over_ten_seconds() {
        let limit = Arc::new(RateLimit::new(2 << 20));
        let got = run(limit, 1, 16 * 1024, Duration::from_secs(10)).await;
        let want = 20u64 << 20;
        assert!(got <= want + (2 << 20) / 4, "{got} > {want} + burst");
        assert!(got as f64 >= want as f64 * 0.99, "{got} < 99% of {want}");
    }

    /// The whole point: sixteen connections share one rate, they do not get one each.
    #[tokio::test(start_paused = true)]
    async fn many_takers_share_one_rate() {
        let limit = Arc::new(RateLimit::new(1 << 20));
        let got = run(limit, 16, 16 * 1024, Duration::from_secs(10)).await;
        let want = 10u64 << 20;
        assert!(got <= want + (1 << 20) / 4, "{got} > {want} + burst");
        assert!(got as f64 >= want as f64 * 0.99, "{got} < 99% of {want}");
    }

    #[test]
    fn a_pause_earns_at_most_the_burst() {
        let limit = RateLimit::new(100_000);
        assert_eq!(limit.burst(), 25_000);
        let t0 = Instant::now();
        // A quarter of a second's worth passes at once (the burst), ...
        assert_eq!(limit.reserve(25_000, t0), t0);
        // ... the next bytes wait for their own time.
        assert_eq!(limit.reserve(100, t0), t0 + Duration::from_millis(1));
        // An hour of silence does not bank an hour of bytes.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(limit.reserve(25_000, later), later);
        assert_eq!(
            limit.reserve(10_000, later),
            later + Duration::from_millis(100)
        );
    }

    #[test]
    fn huge_grants_and_tiny_rates_do_not_overflow() {
        let limit = RateLimit::new(0);
        assert_eq!(limit.rate(), 1);
        assert_eq!(limit.quantum(), 512);
        let t0 = Instant::now();
        assert!(limit.reserve(u64::MAX, t0) > t0 + Duration::from_secs(300 * 24 * 3600));
        let fast = RateLimit::new(u64::MAX);
        assert_eq!(fast.quantum(), MAX_QUANTUM);
        assert_eq!(fast.reserve(1 << 30, t0), t0);
    }
}
