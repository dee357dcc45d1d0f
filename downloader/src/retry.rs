//! Retry helpers shared by `get` and `put`: exponential backoff with jitter, `Retry-After`
//! (RFC 9110 §10.2.3), the rule that progress resets the backoff ([`Retries`]), and shedding
//! connections when a server refuses more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// Exponential backoff: attempt `n` (0-based) waits `base * 2^n`, capped at `max`, then
/// jittered down to between half and all of it so that many connections failing together do
/// not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            max: Duration::from_secs(60).max(base),
        }
    }

    /// The un-jittered delay before retry number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, jittered into `[ceiling/2, ceiling]`.
    pub fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling / 2 + ceiling.mul_f64(rng.f64() / 2.0)
    }
}

/// The one retry rule of `get` and `put` (issue 15 §1): a failure that follows progress
/// (bytes delivered, or the server's upload offset moving) is a broken connection, not a
/// failing server, so the next try starts at once; only failures in a row *without* progress
/// wait, exponentially and jittered ([`Backoff`]). A `Retry-After` is always honoured, capped
/// to [`MAX_RETRY_AFTER`]. One `Retries` per connection to one server.
#[derive(Debug)]
pub struct Retries {
    backoff: Backoff,
    /// Failures since the last progress (a failure right after progress counts as the first).
    failures: u32,
    /// Failures in a row without any progress before them.
    stuck: u32,
    progressed: bool,
    rng: fastrand::Rng,
}

impl Retries {
    pub fn new(backoff: Backoff) -> Self {
        Self::with_rng(backoff, fastrand::Rng::new())
    }

    pub fn with_rng(backoff: Backoff, rng: fastrand::Rng) -> Self {
        Self {
            backoff,
            failures: 0,
            stuck: 0,
            progressed: false,
            rng,
        }
    }

    /// The transfer moved forward: the next failure retries at once, the backoff starts over.
    pub fn progress(&mut self) {
        self.progressed = true;
        self.failures = 0;
        self.stuck = 0;
    }

    /// Records a failure; returns how long to wait before the next try. `retry_after` is the
    /// server's `Retry-After`, if it sent one.
    pub fn failed(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = if std::mem::take(&mut self.progressed) {
            Duration::ZERO
        } else {
            self.stuck = self.stuck.saturating_add(1);
            self.backoff.delay(self.stuck - 1, &mut self.rng)
        };
        match retry_after {
            Some(after) => after.min(MAX_RETRY_AFTER),
            None => wait,
        }
    }

    /// Failures since the last progress, to compare with a maximum number of tries.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Longest `Retry-After` we wait; a longer one is capped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Parses `Retry-After`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the past
/// means "now". `None` for anything unparsable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Counts live connections so that, when a server answers 429/503, all but the last one can
/// leave ("shed") while the last one waits and retries.
#[derive(Debug, Default)]
pub struct Shedder {
    live: AtomicUsize,
}

impl Shedder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection starts.
    pub fn join(&self) {
        self.live.fetch_add(1, Ordering::SeqCst);
    }

    /// A connection ends for any reason other than shedding.
    pub fn leave(&self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// Leaves if at least one other connection stays; `false` means "you are the last, wait
    /// and retry".
    pub fn try_shed(&self) -> bool {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            })
            .is_ok()
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ceilings: Vec<_> = (0..6).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let b = Backoff::new(Duration::from_millis(100));
        let mut rng = fastrand::Rng::with_seed(1);
        let mut distinct = std::collections::HashSet::new();
        for attempt in 0..8 {
            for _ in 0..200 {
                let d = b.delay(attempt, &mut rng);
                assert!(
                    d >= b.ceiling(attempt) / 2 && d <= b.ceiling(attempt),
                    "{d:?}"
                );
                distinct.insert(d);
            }
        }
        assert!(distinct.len() > 100, "jitter should vary the delay");
    }

    /// Issue 15 §1: a cut after progress reconnects at once; failures without progress back
    /// off exponentially from the base; progress starts the backoff over.
    #[test]
    fn progress_makes_the_next_retry_immediate_and_resets_the_backoff() {
        let b = Backoff::new(Duration::from_millis(100));
        let mut r = Retries::with_rng(b, fastrand::Rng::with_seed(7));
        let in_ceiling = |d: Duration, n: u32| d >= b.ceiling(n) / 2 && d <= b.ceiling(n);
        // No progress at all: the first failure already waits.
        assert!(in_ceiling(r.failed(None), 0));
        assert!(in_ceiling(r.failed(None), 1));
        assert_eq!(r.failures(), 2);
        r.progress();
        assert_eq!(r.failed(None), Duration::ZERO, "cut after progress");
        assert_eq!(r.failures(), 1);
        // The retry right after got nothing: now the backoff starts again from the base.
        assert!(in_ceiling(r.failed(None), 0));
        assert!(in_ceiling(r.failed(None), 1));
        assert!(in_ceiling(r.failed(None), 2));
        assert_eq!(r.failures(), 4);
        r.progress();
        assert_eq!(r.failed(None), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_honoured_even_after_progress_and_capped() {
        let mut r = Retries::new(Backoff::new(Duration::from_millis(100)));
        r.progress();
        assert_eq!(
            r.failed(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            r.failed(Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn last_connection_never_sheds() {
        let s = Shedder::new();
        s.join();
        s.join();
        s.join();
        assert!(s.try_shed());
        assert!(s.try_shed());
        assert!(!s.try_shed());
        assert_eq!(s.live(), 1);
        s.leave();
        assert_eq!(s.live(), 0);
    }
}
