//! The expiration extension: an unfinished upload expires `expiry` after its last write;
//! `Upload-Expires` (an HTTP date) says when. Requests for an expired upload get 410 at once;
//! a background reaper frees the space and, one more `expiry` later, forgets the tombstone.
//! The record of a published upload (what `GET {base}/{id}` and HEAD answer from) is also
//! forgotten one `expiry` after publishing, so records do not pile up; the file stays.

use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use tokio::task::JoinHandle;

use super::Tus;
use crate::error::Result;
use crate::store::upload::{unix_now_ms, Concat, UploadId, UploadInfo, UploadState};
use crate::store::StoreError;

/// When an upload written now expires.
pub fn deadline(expiry: Duration) -> u64 {
    unix_now_ms().saturating_add(expiry.as_millis() as u64)
}

/// Whether an unfinished upload is past its deadline at `now_ms`. Published uploads never
/// expire.
pub fn is_expired(info: &UploadInfo, now_ms: u64) -> bool {
    info.state == UploadState::Active && info.expires_ms.is_some_and(|e| now_ms >= e)
}

/// [`is_expired`] for the upload's concatenation group: an unfinished final upload lives as
/// long as any of its parts is still written to, and a part placed into a final upload, or
/// named by one that is not concatenated yet, lives as long as that final upload. Without
/// this, a final upload created first (concatenation-unfinished) would expire one `expiry`
/// after its creation while its parts still stream, taking their placed bytes with it, and
/// a part complete early (before the final upload was created, or on a store that cannot
/// place parts, S3) would expire while the others still stream, so that the final upload
/// could never be concatenated. (Once concatenated, a final upload no longer needs its
/// parts to be live: the directory store copied them, the S3 store pinned their objects.)
pub async fn group_expired(tus: &Tus, info: &UploadInfo, now_ms: u64) -> bool {
    if !is_expired(info, now_ms) {
        return false;
    }
    group_deadline(tus, info)
        .await
        .is_none_or(|deadline| now_ms >= deadline)
}

/// The latest deadline in `info`'s group, `None` if no group applies.
async fn group_deadline(tus: &Tus, info: &UploadInfo) -> Option<u64> {
    let store = tus.uploads().ok()?;
    let host;
    let fin = match (&info.concat, &info.placement) {
        (Concat::Final { .. }, _) => info,
        (Concat::Partial, Some(p)) => {
            host = store.load(&UploadId::parse(&p.upload)?).await.ok()?;
            &host
        }
        (Concat::Partial, None) => {
            host = waiting_final(tus, info).await?;
            &host
        }
        _ => return None,
    };
    let Concat::Final { parts } = &fin.concat else {
        return None;
    };
    if fin.state != UploadState::Active || fin.is_complete() {
        return None;
    }
    let mut latest = fin.expires_ms.max(info.expires_ms);
    for id in parts.iter().filter_map(|p| UploadId::parse(p)) {
        match store.load(&id).await {
            Ok(p) if p.state == UploadState::Active => latest = latest.max(p.expires_ms),
            _ => {}
        }
    }
    latest
}

/// A final upload that names the unplaced part `info` and is not concatenated yet, if there
/// is one.
async fn waiting_final(tus: &Tus, info: &UploadInfo) -> Option<UploadInfo> {
    let store = tus.uploads().ok()?;
    let finals = tus
        .concatenation()?
        .finals_of(&UploadId::parse(&info.id)?)
        .await
        .ok()?;
    for id in finals {
        match store.load(&id).await {
            Ok(f) if super::concat::waits_for(&f, &info.id) => return Some(f),
            _ => {}
        }
    }
    None
}

/// The `Upload-Expires` value for an upload that is still open.
pub fn header_value(info: &UploadInfo) -> Option<String> {
    if info.state != UploadState::Active {
        return None;
    }
    let at = UNIX_EPOCH + Duration::from_millis(info.expires_ms?);
    Some(crate::http::http_date(at)) // clamped: a huge --upload-expiry must not panic
}

/// Parses `24h`, `30m`, `90s`, `500ms` or a plain number of seconds (`--upload-expiry`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 24h, 30m or 90s, got {s:?}"))?;
    let secs = match unit {
        "" | "s" => 1,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("expected a unit of ms, s, m, h or d, got {unit:?}")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// How often the reaper looks: a quarter of the expiry, between 100 ms and a minute.
fn period(expiry: Duration) -> Duration {
    (expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

impl Tus {
    /// Starts the reaper; it stops when the `Tus` is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) -> JoinHandle<()> {
        let weak: Weak<Tus> = Arc::downgrade(self);
        let every = period(self.cfg.expiry);
        tokio::spawn(async move {
            if let Some(tus) = weak.upgrade() {
                if let Err(e) = tus.count_once().await {
                    tracing::warn!(error = %e, "cannot count the open uploads");
                }
            }
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(tus) = weak.upgrade() else { return };
                match tus.reap_once().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(count = n, "reaped expired uploads"),
                    Err(e) => tracing::warn!(error = %e, "reaper failed"),
                }
            }
        })
    }

    /// One reaper pass: frees expired uploads (never one a client holds), forgets old
    /// tombstones and sweeps the store ([`sweep`](crate::store::upload::UploadStore::sweep)). Returns how many records
    /// changed.
    pub async fn reap_once(&self) -> Result<usize> {
        let store = self.uploads()?;
        let now = unix_now_ms();
        let mut changed = 0;
        for info in store.list_uploads().await? {
            let Some(id) = UploadId::parse(&info.id) else {
                continue;
            };
            let due = info.expires_ms.is_some_and(|e| now >= e);
            if !due {
                continue;
            }
            let Some(_guard) = self.locks.try_acquire(&id) else {
                continue;
            };
            // Re-read under the lock. Another instance's reaper may have forgotten it already.
            let mut info = match store.load(&id).await {
                Err(StoreError::NotFound) => continue,
                r => r?,
            };
            // And still due: another reaper (on this instance or another one sharing the
            // store) may have turned it into a tombstone with a new deadline since the
            // listing, which must then stay until that deadline, not be purged at once.
            if info.expires_ms.is_none_or(|e| now < e) {
                continue;
            }
            // Tombstones, and records of published uploads (the files stay), are forgotten.
            // The state is the store's, not the listing's: a part placed into a final upload
            // that was published reads as terminated even if a crash came before its record
            // said so.
            if !matches!(info.state, UploadState::Active) {
                store.purge(&id).await?;
            } else if group_expired(self, &info, now).await {
                info.expires_ms = Some(deadline(self.cfg.expiry));
                // A store shared by several instances: another reaper, or a writer on another
                // instance, changed the record since it was read; its compare-and-swap won
                // and this pass leaves the upload alone.
                match store.discard(&mut info, UploadState::Expired).await {
                    Err(StoreError::Conflict) => continue,
                    r => r?,
                }
                self.release(&info);
                self.events
                    .emit(crate::events::Kind::Expired, &info, None)
                    .await;
            } else {
                continue;
            }
            changed += 1;
        }
        // What interrupted writers left that no record names (issue 11 point 6(c)): after
        // the discards above, so what they left is orphaned now.
        match store.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "freed what interrupted uploads left"),
            Err(e) => tracing::warn!(error = %e, "cannot look for what interrupted uploads left"),
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::upload::Concat;

    #[test]
    fn only_open_uploads_expire() {
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let mut info = UploadInfo::new(&id, Some(1), None, Concat::None);
        info.expires_ms = Some(1000);
        assert!(!is_expired(&info, 999));
        assert!(is_expired(&info, 1000));
        assert_eq!(
            header_value(&info).as_deref(),
            Some("Thu, 01 Jan 1970 00:00:01 GMT")
        );
        info.expires_ms = Some(u64::MAX);
        assert_eq!(
            header_value(&info).as_deref(),
            Some("Fri, 31 Dec 9999 23:59:59 GMT")
        );
        info.state = UploadState::Published { path: "x".into() };
        assert!(!is_expired(&info, 5000));
        assert_eq!(header_value(&info), None);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn reaper_period_is_bounded() {
        assert_eq!(
            period(Duration::from_secs(24 * 3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            period(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
    }
}
