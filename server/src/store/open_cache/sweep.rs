//! The open-file caches tended in the background: a thread that applies each cache's queued
//! changes every [`EVERY`], so that a cache nobody asks (an idle worker's) does not keep a
//! deleted file open, and its disk space taken, until its worker serves another request.
//!
//! It adds nothing to a request: lookups apply the queue themselves, as before (see
//! [`super::notify`] for why they cannot leave it to this thread). Here the queue is only
//! read when nothing else did, once a second, at the price of one lock and one `ioctl` per
//! cache; a cache line of the lock moves to this thread's core and back once a second.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::{Identity, OpenCache};
use crate::worker::Copies;

/// How often each cache is swept: the longest a deleted file stays open in an idle cache.
pub const EVERY: Duration = Duration::from_secs(1);

/// The sweeping thread, stopped when this is dropped.
pub struct Sweeper {
    _stop: mpsc::Sender<()>,
}

/// Starts a thread that sweeps every cache of `caches` (see [`OpenCache::sweep`]) every
/// `every` until the caches or the returned [`Sweeper`] are gone. `current(key, id)` says
/// whether `key` still leads to a file with identity `id` (a `stat`), for checked entries.
pub fn start<T>(
    caches: Copies<OpenCache<T>>,
    every: Duration,
    current: impl Fn(&str, Identity) -> bool + Send + 'static,
) -> io::Result<Sweeper>
where
    T: Clone + Send + Sync + 'static,
{
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("open-file-sweep".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                if !caches.each(|c| c.sweep(&current)) {
                    return;
                }
            }
        })?;
    Ok(Sweeper { _stop: stop })
}
