//! Small HTTP helpers every layer uses: HTTP dates. Backends hand out `SystemTime`s; how a
//! time is written on the wire is decided here, once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A time as an HTTP date (RFC 9110 §5.6.7, IMF-fixdate). `httpdate` panics outside
/// 1970..=9999, and a file can carry any mtime (`touch -d 1960-01-01`), so the time is clamped.
pub fn http_date(t: SystemTime) -> String {
    // 9999-12-31T23:59:59Z
    let latest = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    httpdate::fmt_http_date(t.clamp(UNIX_EPOCH, latest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_clamps_times_httpdate_cannot_format() {
        // Regression: a file dated 1960 made httpdate panic inside a request.
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10 * 365 * 86_400);
        assert_eq!(http_date(before_epoch), "Thu, 01 Jan 1970 00:00:00 GMT");
        let far_future = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(http_date(far_future), "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
