//! When a failed tus request is tried again (issue 15, point 1): a part whose server offset
//! moved since its last failure retries at once, since the path works and was just cut; only
//! failures in a row without progress back off (exponential, jittered, [`Backoff`]), and a
//! server's `Retry-After` is always honoured, capped at [`MAX_RETRY_AFTER`] like `ferry get`
//! does (RFC 9110 §10.2.3). Requests other than PATCH (OPTIONS, POST, HEAD) carry no bytes,
//! so [`retrying`] backs off on every failure.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::retry::{Backoff, MAX_RETRY_AFTER};

/// The failures of one part's PATCHes, measured against the server's offset.
pub struct Attempts {
    backoff: Backoff,
    max_tries: u32,
    /// The server's offset at the last failure (or at the start).
    mark: u64,
    /// Failures in a row without the offset moving.
    failures: u32,
    rng: fastrand::Rng,
}

impl Attempts {
    /// A part whose server holds `offset` bytes; `max_tries` failures in a row without
    /// progress end it.
    pub fn new(backoff: Backoff, max_tries: u32, offset: u64) -> Self {
        Self {
            backoff,
            max_tries,
            mark: offset,
            failures: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// A request failed with `e`; the server now holds `offset` (learnt after the failure).
    /// Returns how long to wait before trying again, or `None` when `e` is final.
    pub fn failed(&mut self, e: &Error, offset: u64) -> Option<Duration> {
        let transient = e.is_retryable()
            || matches!(
                e,
                Error::Status {
                    status: 409 | 460,
                    ..
                }
            );
        if !transient {
            return None;
        }
        if offset > self.mark {
            self.mark = offset;
            self.failures = 0;
            return Some(retry_after(e).unwrap_or(Duration::ZERO));
        }
        self.failures += 1;
        if self.failures >= self.max_tries {
            return None;
        }
        Some(retry_wait(e, self.backoff, self.failures, &mut self.rng))
    }

    /// Failures in a row without progress so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The server's `Retry-After`, capped at [`MAX_RETRY_AFTER`] (one rule for get and put).
fn retry_after(e: &Error) -> Option<Duration> {
    match e {
        Error::Status {
            retry_after: Some(d),
            ..
        } => Some((*d).min(MAX_RETRY_AFTER)),
        _ => None,
    }
}

/// The wait before retry number `failures` (1-based) after `e`: the server's `Retry-After`
/// (capped), none after 409/460 (the next request fixes the cause), else jittered
/// exponential backoff.
pub fn retry_wait(e: &Error, backoff: Backoff, failures: u32, rng: &mut fastrand::Rng) -> Duration {
    if let Some(d) = retry_after(e) {
        return d;
    }
    match e {
        Error::Status {
            status: 409 | 460, ..
        } => Duration::ZERO,
        _ => backoff.delay(failures.saturating_sub(1), rng),
    }
}

/// Repeats a tus request other than PATCH (OPTIONS, HEAD, POST) while it fails with a
/// retryable error, at most `max_tries` attempts. All are safe to repeat: a creation whose
/// answer was lost leaves an unused upload that the server expires.
pub async fn retrying<T, Fut>(
    backoff: Backoff,
    max_tries: u32,
    mut op: impl FnMut() -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut rng = fastrand::Rng::new();
    let mut failures = 0u32;
    loop {
        match op().await {
            Err(e) if e.is_retryable() && failures + 1 < max_tries => {
                failures += 1;
                let wait = retry_wait(&e, backoff, failures, &mut rng);
                tracing::info!("{e}; retrying in {wait:?} ({failures}/{max_tries})");
                tokio::time::sleep(wait).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Error {
        Error::Status {
            url: "u".into(),
            status: code,
            retry_after: None,
        }
    }

    async fn count_calls(max_tries: u32, answers: &[u16]) -> (Result<u16>, usize) {
        let backoff = Backoff::new(Duration::from_millis(1));
        let calls = std::cell::Cell::new(0usize);
        let res = retrying(backoff, max_tries, || {
            let n = calls.get();
            calls.set(n + 1);
            let code = answers[n.min(answers.len() - 1)];
            async move {
                if code < 300 {
                    Ok(code)
                } else {
                    Err(status(code))
                }
            }
        })
        .await;
        (res, calls.get())
    }

    #[tokio::test]
    async fn retrying_repeats_transient_failures_until_success() {
        let (res, calls) = count_calls(5, &[503, 429, 200]).await;
        assert_eq!((res.ok(), calls), (Some(200), 3));
    }

    #[tokio::test]
    async fn retrying_gives_up_after_max_tries() {
        let (res, calls) = count_calls(3, &[503]).await;
        assert!(res.is_err_and(|e| e.to_string().contains("503")));
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn retrying_never_repeats_a_final_answer() {
        // 404/410: the upload is gone (tus core); 401: the token is wrong.
        for code in [404, 410, 401, 413] {
            let (res, calls) = count_calls(5, &[code]).await;
            assert!(res.is_err());
            assert_eq!(calls, 1, "{code}");
        }
    }

    #[test]
    fn retry_wait_honours_retry_after_and_skips_waiting_after_409_460() {
        let b = Backoff::new(Duration::from_secs(1));
        let mut rng = fastrand::Rng::with_seed(7);
        let after = Error::Status {
            url: "u".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(retry_wait(&after, b, 1, &mut rng), Duration::from_secs(3));
        let absurd = Error::Status {
            url: "u".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(99_999)),
        };
        // Issue 9 point 7: one Retry-After rule for get and put, a long one is capped.
        assert_eq!(retry_wait(&absurd, b, 1, &mut rng), MAX_RETRY_AFTER);
        assert_eq!(retry_wait(&status(409), b, 4, &mut rng), Duration::ZERO);
        assert_eq!(retry_wait(&status(460), b, 4, &mut rng), Duration::ZERO);
        let third = retry_wait(&status(503), b, 3, &mut rng);
        assert!(
            third >= Duration::from_secs(2) && third <= Duration::from_secs(4),
            "{third:?}"
        );
    }

    fn cut() -> Error {
        Error::Stalled {
            url: "u".into(),
            after: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_failure_after_progress_retries_at_once() {
        // Issue 15 point 1: the offset moved since the last failure, so the path works.
        let mut a = Attempts::new(Backoff::new(Duration::from_secs(10)), 3, 0);
        for offset in [1 << 20, 2 << 20, 3 << 20, 4 << 20, 5 << 20] {
            assert_eq!(a.failed(&cut(), offset), Some(Duration::ZERO));
            assert_eq!(a.failures(), 0);
        }
    }

    #[test]
    fn failures_without_progress_back_off_exponentially_then_give_up() {
        let b = Backoff::new(Duration::from_secs(1));
        let mut a = Attempts::new(b, 4, 100);
        let waits: Vec<_> = (0..3).map(|_| a.failed(&cut(), 100).unwrap()).collect();
        for (n, w) in waits.iter().enumerate() {
            let ceiling = b.ceiling(n as u32);
            assert!(*w >= ceiling / 2 && *w <= ceiling, "{n}: {w:?}");
        }
        assert_eq!(
            a.failed(&cut(), 100),
            None,
            "the 4th failure in a row is final"
        );
    }

    #[test]
    fn progress_resets_the_backoff() {
        let b = Backoff::new(Duration::from_secs(1));
        let mut a = Attempts::new(b, 5, 0);
        for _ in 0..3 {
            a.failed(&cut(), 0);
        }
        assert_eq!(a.failures(), 3);
        assert_eq!(a.failed(&cut(), 10), Some(Duration::ZERO));
        let next = a.failed(&cut(), 10).unwrap();
        assert!(next <= b.ceiling(0), "back to the first step: {next:?}");
    }

    #[test]
    fn retry_after_is_honoured_even_after_progress_and_final_errors_end_at_once() {
        let mut a = Attempts::new(Backoff::new(Duration::from_millis(1)), 5, 0);
        let busy = Error::Status {
            url: "u".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(a.failed(&busy, 1), Some(Duration::from_secs(7)));
        assert_eq!(a.failed(&busy, 1), Some(Duration::from_secs(7)));
        for code in [400, 401, 403, 404, 410, 413] {
            assert_eq!(a.failed(&status(code), 2), None, "{code}");
        }
    }
}
