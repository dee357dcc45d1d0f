//! Per-connection speed, to retry a connection far below the others' speed (issue 3 §4):
//! with a per-connection limit such as nginx's `$connection` map, a fresh connection is
//! usually a fast one. Also when each connection last received a byte, to tell a silent one
//! for end-game racing (issue 15 §3, [`stall_after`]). Pure apart from atomics; time is
//! passed in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Length of one measuring window.
pub const WINDOW: Duration = Duration::from_millis(250);
/// A connection this many times slower than the median of the others is retried.
pub const SLOW_FACTOR: u64 = 8;
/// Only worth a new connection when finishing here would take longer than this.
pub const MIN_TIME_LEFT: Duration = Duration::from_millis(200);
/// Slow-connection retries per worker (a server slow for everyone is not a straggler).
pub const MAX_SLOW_RETRIES: u32 = 8;

/// Windows measured before judging (the first includes connection set-up).
pub const WARM_UP_WINDOWS: u32 = 2;

/// A connection is silent after receiving nothing for as long as this many bytes take at the
/// download's average per-connection rate (several reads' worth: 16-64 KiB each)...
pub const STALL_BYTES: u64 = 256 * 1024;
/// ...but never less than this (a new request's first byte takes a round trip or two)...
pub const MIN_STALL: Duration = Duration::from_millis(200);
/// ...and never more than this share of `--timeout`, which ends the connection anyway.
pub const STALL_TIMEOUT_SHARE: u32 = 4;

/// How long a connection holding a segment may receive nothing before an idle connection
/// races it for the rest (issue 15 §3): relative to the observed rate, well under `timeout`.
pub fn stall_after(per_connection_rate: Option<u64>, timeout: Duration) -> Duration {
    let cap = timeout / STALL_TIMEOUT_SHARE;
    let floor = MIN_STALL.min(cap);
    match per_connection_rate.filter(|r| *r > 0) {
        Some(rate) => Duration::from_secs_f64(STALL_BYTES as f64 / rate as f64).clamp(floor, cap),
        None => cap,
    }
}

/// Bytes per second of each connection (0 while unknown or idle), when each last received
/// a byte or took a segment, and the bytes received by all since `start`.
#[derive(Debug)]
pub struct SpeedBoard {
    speeds: Vec<AtomicU64>,
    /// Microseconds since `start`.
    active_at: Vec<AtomicU64>,
    received: AtomicU64,
    start: Instant,
}

impl SpeedBoard {
    pub fn new(connections: usize) -> Self {
        Self::starting(connections, Instant::now())
    }

    pub fn starting(connections: usize, start: Instant) -> Self {
        Self {
            speeds: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            active_at: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
            start,
        }
    }

    fn micros(&self, now: Instant) -> u64 {
        let us = now.saturating_duration_since(self.start).as_micros();
        u64::try_from(us).unwrap_or(u64::MAX)
    }

    /// Connection `id` took a segment or received something at `now`.
    pub fn touch(&self, id: usize, now: Instant) {
        if let Some(a) = self.active_at.get(id) {
            a.store(self.micros(now), Ordering::Relaxed);
        }
    }

    /// Connection `id` received `n` bytes at `now`.
    pub fn received(&self, id: usize, n: u64, now: Instant) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.touch(id, now);
    }

    /// Whether `id` received nothing (and took nothing) for at least `after`.
    pub fn silent(&self, id: usize, now: Instant, after: Duration) -> bool {
        let Some(a) = self.active_at.get(id) else {
            return false;
        };
        let since = self.micros(now).saturating_sub(a.load(Ordering::Relaxed));
        Duration::from_micros(since) >= after
    }

    /// Average bytes per second per connection since `start`; `None` before any byte.
    pub fn per_connection_rate(&self, now: Instant) -> Option<u64> {
        let secs = now.saturating_duration_since(self.start).as_secs_f64();
        let bytes = self.received.load(Ordering::Relaxed);
        let conns = self.speeds.len().max(1) as f64;
        (bytes > 0 && secs > 0.0).then(|| (bytes as f64 / secs / conns) as u64)
    }

    /// The last window's speed of `id`; 0 while unknown or idle.
    pub fn get(&self, id: usize) -> u64 {
        self.speeds.get(id).map_or(0, |s| s.load(Ordering::Relaxed))
    }

    pub fn set(&self, id: usize, bytes_per_sec: u64) {
        if let Some(s) = self.speeds.get(id) {
            s.store(bytes_per_sec, Ordering::Relaxed);
        }
    }

    /// Median speed of the other busy connections; `None` with fewer than two of them.
    pub fn median_of_others(&self, id: usize) -> Option<u64> {
        let mut others: Vec<u64> = self
            .speeds
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != id)
            .map(|(_, s)| s.load(Ordering::Relaxed))
            .filter(|s| *s > 0)
            .collect();
        if others.len() < 2 {
            return None;
        }
        others.sort_unstable();
        Some(others[others.len() / 2])
    }
}

/// Whether a connection at `mine` bytes/s should make way for a fresh one.
pub fn is_straggler(mine: u64, others_median: u64) -> bool {
    mine.saturating_mul(SLOW_FACTOR) < others_median
}

/// Whether `remaining` bytes at `mine` bytes/s take long enough to be worth a reconnect.
pub fn worth_retrying(remaining: u64, mine: u64) -> bool {
    remaining as f64 > mine as f64 * MIN_TIME_LEFT.as_secs_f64()
}

/// Measures one response's speed in fixed windows.
#[derive(Debug, Clone)]
pub struct Meter {
    start: Instant,
    bytes: u64,
    pub windows: u32,
}

impl Meter {
    pub fn new(now: Instant) -> Self {
        Self {
            start: now,
            bytes: 0,
            windows: 0,
        }
    }

    /// Counts `n` bytes; returns the window's speed when a window closes.
    pub fn feed(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.bytes += n;
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < WINDOW {
            return None;
        }
        let speed = (self.bytes as f64 / elapsed.as_secs_f64()) as u64;
        *self = Self {
            start: now,
            bytes: 0,
            windows: self.windows + 1,
        };
        Some(speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_reports_once_per_window() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        assert_eq!(m.feed(1000, t0 + Duration::from_millis(100)), None);
        assert_eq!(m.feed(1000, t0 + Duration::from_millis(500)), Some(4000));
        assert_eq!(m.windows, 1);
        assert_eq!(m.feed(10, t0 + Duration::from_millis(600)), None);
    }

    #[test]
    fn median_ignores_self_and_idle_and_needs_two_others() {
        let b = SpeedBoard::new(5);
        b.set(0, 1);
        b.set(1, 100);
        assert_eq!(b.median_of_others(0), None);
        b.set(2, 300);
        b.set(3, 200);
        assert_eq!(b.median_of_others(0), Some(200));
        assert_eq!(b.median_of_others(9), Some(200)); // index outside the board: all count
    }

    #[test]
    fn silence_counts_from_the_last_byte_or_segment() {
        let t0 = Instant::now();
        let b = SpeedBoard::starting(2, t0);
        b.touch(0, t0 + Duration::from_millis(100));
        b.received(1, 1 << 20, t0 + Duration::from_millis(500));
        let at = t0 + Duration::from_millis(700);
        assert!(b.silent(0, at, Duration::from_millis(600)));
        assert!(!b.silent(1, at, Duration::from_millis(600)));
        assert!(!b.silent(7, at, Duration::ZERO), "no such connection");
        assert_eq!(
            b.per_connection_rate(t0 + Duration::from_secs(1)),
            Some(512 << 10)
        );
        assert_eq!(SpeedBoard::starting(2, t0).per_connection_rate(at), None);
    }

    /// Issue 15 §3: "a short while, well under --timeout, relative to the observed rate".
    #[test]
    fn stall_threshold_follows_the_rate_within_bounds() {
        let t = Duration::from_secs(30);
        // 1 MiB/s per connection: 256 KiB take 250 ms.
        assert_eq!(stall_after(Some(1 << 20), t), Duration::from_millis(250));
        assert_eq!(stall_after(Some(1 << 30), t), MIN_STALL);
        assert_eq!(stall_after(Some(1), t), t / 4);
        assert_eq!(stall_after(None, t), t / 4);
        assert_eq!(stall_after(Some(0), t), t / 4);
        // A tiny --timeout wins over the floor.
        let tiny = Duration::from_millis(100);
        assert_eq!(stall_after(Some(1 << 30), tiny), tiny / 4);
    }

    #[test]
    fn straggler_is_far_below_not_just_below() {
        assert!(is_straggler(256 << 10, 8 << 20));
        assert!(!is_straggler(4 << 20, 8 << 20));
        assert!(!is_straggler(u64::MAX, 1));
        assert!(worth_retrying(1 << 20, 256 << 10));
        assert!(!worth_retrying(32 << 10, 256 << 10));
    }
}
