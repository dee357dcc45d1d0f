//! When a failed tus request is tried again (issue 15, point 1), by the one rule `ferry get`
//! uses too ([`Retries`]): a part whose server offset moved since its last failure retries at
//! once, since the path works and was just cut; only failures in a row without progress back
//! off (exponential, jittered), and a server's `Retry-After` is always honoured, capped at
//! [`crate::retry::MAX_RETRY_AFTER`] (RFC 9110 §10.2.3). Requests other than PATCH (OPTIONS,
//! POST, HEAD) carry no bytes, so [`retrying`] backs off on every failure.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::retry::{Backoff, Retries};

/// The failures of one part's PATCHes, measured against the server's offset: the one retry
/// rule ([`Retries`]), with the offset moving as the progress.
pub struct Attempts {
    retries: Retries,
    max_tries: u32,
    /// The server's offset at the last failure (or at the start).
    mark: u64,
}

impl Attempts {
    /// A part whose server holds `offset` bytes; `max_tries` failures since the last
    /// progress end it.
    pub fn new(backoff: Backoff, max_tries: u32, offset: u64) -> Self {
        Self {
            retries: Retries::new(backoff),
            max_tries,
            mark: offset,
        }
    }

    /// A request failed with `e`; the server now holds `offset` (learnt after the failure).
    /// Returns how long to wait before trying again (nothing after 409/460: the next request
    /// fixes the cause), or `None` when `e` is final.
    pub fn failed(&mut self, e: &Error, offset: u64) -> Option<Duration> {
        let resend = matches!(
            e,
            Error::Status {
                status: 409 | 460,
                ..
            } | Error::Conflict { .. }
        );
        if !(e.is_retryable() || resend) {
            return None;
        }
        if offset > self.mark {
            self.mark = offset;
            self.retries.progress();
        }
        let wait = self.retries.failed(e.retry_after());
        if self.retries.failures() >= self.max_tries {
            return None;
        }
        Some(if resend { Duration::ZERO } else { wait })
    }

    /// Failures since the last progress so far.
    pub fn failures(&self) -> u32 {
        self.retries.failures()
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
    let mut retries = Retries::new(backoff);
    loop {
        match op().await {
            Err(e) if e.is_retryable() && retries.failures() + 1 < max_tries => {
                let wait = retries.failed(e.retry_after());
                let failures = retries.failures();
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
    fn retry_after_is_capped_and_409_460_resend_at_once() {
        let mut a = Attempts::new(Backoff::new(Duration::from_secs(1)), 10, 0);
        let after = |secs| Error::Status {
            url: "u".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(a.failed(&after(3), 0), Some(Duration::from_secs(3)));
        // Issue 9 point 7: one Retry-After rule for get and put, a long one is capped.
        assert_eq!(
            a.failed(&after(99_999), 0),
            Some(crate::retry::MAX_RETRY_AFTER)
        );
        assert_eq!(a.failed(&status(409), 0), Some(Duration::ZERO));
        assert_eq!(a.failed(&status(460), 0), Some(Duration::ZERO));
        let fifth = a.failed(&status(503), 0).unwrap();
        assert!(fifth >= Duration::from_secs(8), "{fifth:?}");
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
            assert_eq!(a.failures(), 1);
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
