//! One writer per upload across the ferryd instances that share a bucket (issue 11 point 4):
//! a lease kept in the upload's record, which changes only by compare-and-swap on its ETag.
//!
//! Taking an upload ([`LeaseLocker::acquire`], for a PATCH, an uploader's HEAD, a DELETE)
//! first takes this instance's in-process lock (interrupting a PATCH of this instance), then
//! writes a new lease (this instance, the next epoch) into the record. The lease is taken
//! over, never waited for: a tus client that lost its connection comes back through the
//! load balancer, maybe to another instance, while the old instance may not have noticed yet
//! (tusd's `requestUnlock`, across processes). Whoever wrote the upload so far fails its next
//! record write (its revision is stale), stops, and keeps what it had recorded; the client
//! resumes from the record's offset. What decides is the compare-and-swap, not the clock:
//! the lease's expiry only tells an operator reading the record whether its writer is
//! presumed alive.
//!
//! One exception: while a publish copies the finished data to its name (it claimed the
//! record first), a newcomer waits for it (up to the acquire timeout, then 503) rather than
//! take over and publish a second copy.
//!
//! [`LeaseLocker::try_acquire`] (the reaper, a HEAD by a reader) checks this instance only; a
//! reaper on another instance that meets a writer loses its compare-and-swap and skips.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::S3Store;
use crate::store::lock::{Guard, InProcess, LockTimeout, Locker};
use crate::store::upload::{random_hex, unix_now_ms, UploadId};
use crate::store::BoxFuture;

/// How long a lease is presumed alive after its holder's last record write.
const LEASE_TTL_MS: u64 = 60_000;

/// How often a newcomer looks again while a publish holds the upload.
const POLL: Duration = Duration::from_millis(100);

/// Who writes an upload, as recorded in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Lease {
    /// The instance (a random id per ferryd process).
    pub owner: String,
    /// Counts the takeovers: every one changes the record, so its ETag moves on (a
    /// compare-and-swap against an older revision fails even if nothing else changed).
    pub epoch: u64,
    /// Unix milliseconds until which the holder is presumed alive (renewed by every record
    /// write it makes).
    pub until_ms: u64,
}

impl Lease {
    /// `owner`'s lease, taking over `prev`.
    pub fn taken(owner: &str, prev: Option<&Lease>) -> Self {
        Self {
            owner: owner.to_owned(),
            epoch: prev.map_or(1, |l| l.epoch.saturating_add(1)),
            until_ms: unix_now_ms().saturating_add(LEASE_TTL_MS),
        }
    }

    /// The same lease, presumed alive from now on.
    pub fn renewed(&self) -> Self {
        Self {
            until_ms: unix_now_ms().saturating_add(LEASE_TTL_MS),
            ..self.clone()
        }
    }
}

/// What [`S3Store::take_over`] found.
pub(super) enum TakeOver {
    /// The lease is this instance's now (or there is nothing to write: no record, or an
    /// upload that is no longer active).
    Done,
    /// A publish holds the upload.
    Publishing,
}

/// The locker of an S3 store shared by several instances.
pub(super) struct LeaseLocker {
    store: S3Store,
    local: InProcess,
    owner: String,
}

impl LeaseLocker {
    pub fn new(store: S3Store) -> Self {
        let owner = random_hex(8).unwrap_or_else(|_| format!("pid-{}", std::process::id()));
        Self {
            store,
            local: InProcess::default(),
            owner,
        }
    }
}

impl Locker for LeaseLocker {
    fn acquire<'a>(
        &'a self,
        id: &'a UploadId,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Guard, LockTimeout>> {
        Box::pin(async move {
            let busy = || LockTimeout {
                id: id.to_string(),
                timeout,
            };
            let take = async {
                let guard = self.local.acquire(id, timeout).await?;
                loop {
                    match self.store.take_over(id, &self.owner).await {
                        Ok(TakeOver::Done) => return Ok(guard),
                        Ok(TakeOver::Publishing) => tokio::time::sleep(POLL).await,
                        Err(e) => {
                            // The record's compare-and-swaps still keep writers apart; this
                            // request just does not take the upload over (the handler's own
                            // read will likely report the same trouble).
                            tracing::warn!(%id, error = %e, "could not write the upload lease");
                            return Ok(guard);
                        }
                    }
                }
            };
            tokio::time::timeout(timeout, take)
                .await
                .unwrap_or_else(|_| Err(busy()))
        })
    }

    fn try_acquire(&self, id: &UploadId) -> Option<Guard> {
        self.local.try_acquire(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_takeover_moves_the_epoch_on_and_renewal_keeps_it() {
        let a = Lease::taken("a", None);
        assert_eq!(a.epoch, 1);
        let b = Lease::taken("b", Some(&a));
        assert_eq!((b.owner.as_str(), b.epoch), ("b", 2));
        let r = b.renewed();
        assert_eq!((r.owner.as_str(), r.epoch), ("b", 2));
        assert!(r.until_ms >= b.until_ms);
        let max = Lease {
            epoch: u64::MAX,
            ..b
        };
        assert_eq!(Lease::taken("c", Some(&max)).epoch, u64::MAX);
    }
}
