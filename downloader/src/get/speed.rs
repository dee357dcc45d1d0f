//! Per-connection speed, to retry a connection far below the others' speed (issue 3 §4):
//! with a per-connection limit such as nginx's `$connection` map, a fresh connection is
//! usually a fast one. Pure apart from atomics; time is passed in.

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

/// Bytes per second of each connection; 0 while unknown or idle.
#[derive(Debug)]
pub struct SpeedBoard {
    speeds: Vec<AtomicU64>,
}

impl SpeedBoard {
    pub fn new(connections: usize) -> Self {
        Self {
            speeds: (0..connections).map(|_| AtomicU64::new(0)).collect(),
        }
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
    fn straggler_is_far_below_not_just_below() {
        assert!(is_straggler(256 << 10, 8 << 20));
        assert!(!is_straggler(4 << 20, 8 << 20));
        assert!(!is_straggler(u64::MAX, 1));
        assert!(worth_retrying(1 << 20, 256 << 10));
        assert!(!worth_retrying(32 << 10, 256 << 10));
    }
}
