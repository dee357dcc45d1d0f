//! One writer per upload (tusd's `Locker`). Taking the lock interrupts a PATCH that still
//! streams: tus clients that lost their connection come back with HEAD and a new PATCH while
//! the server may not have noticed the old connection is dead yet. The interrupted PATCH stops
//! reading, keeps and checkpoints what it received, and releases the lock (tusd does the same).
//!
//! [`Locker`] is the interface, with an acquire timeout: a holder that does not let go in time
//! makes the newcomer give up ([`LockTimeout`]) rather than wait forever. [`InProcess`] is
//! the implementation for a store only this process writes (the directory store); a store
//! shared by several ferryd instances brings its own (a lease kept in the upload record),
//! through [`super::upload::UploadStore::locker`]. Handlers see only the trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedMutexGuard};

use super::upload::UploadId;
use super::BoxFuture;

/// Exclusive access to one upload, until dropped. `interrupted` completes when a newcomer
/// wants the lock: the holder should finish what it is doing and drop the guard.
pub struct Guard {
    pub interrupted: oneshot::Receiver<()>,
    /// What the locker keeps while the lock is held; dropping it releases the lock.
    _held: Box<dyn Send>,
}

/// A newcomer gave up: the holder did not let go of the upload within the timeout.
#[derive(Debug, thiserror::Error)]
#[error("upload {id} is busy: another request did not let go of it within {timeout:?}")]
pub struct LockTimeout {
    pub id: String,
    pub timeout: Duration,
}

/// The per-upload lock.
pub trait Locker: Send + Sync {
    /// Takes the lock of `id`, asking the holder (if any) to let go and waiting for it, at
    /// most `timeout`.
    fn acquire<'a>(
        &'a self,
        id: &'a UploadId,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Guard, LockTimeout>>;
    /// Takes the lock only if nobody holds it (the reaper never interrupts a client).
    fn try_acquire(&self, id: &UploadId) -> Option<Guard>;
}

/// How long a newcomer waits for an interrupted holder before signalling again.
const RETRY: Duration = Duration::from_millis(50);

type SlotMap = Arc<Mutex<HashMap<String, Arc<Slot>>>>;

/// Locks in this process's memory: enough when no other process writes the store.
#[derive(Default)]
pub struct InProcess {
    map: SlotMap,
}

#[derive(Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Fires the current holder's interruption.
    cancel: Mutex<Option<oneshot::Sender<()>>>,
}

/// What an [`InProcess`] guard holds; forgets the slot when nobody else knows it.
struct Held {
    _held: OwnedMutexGuard<()>,
    slot: Arc<Slot>,
    id: String,
    map: SlotMap,
}

impl InProcess {
    fn slot(&self, id: &UploadId) -> Arc<Slot> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.as_str().to_string()).or_default().clone()
    }

    /// Takes the lock, interrupting the holder (if any) until it lets go.
    async fn acquire_forever(&self, id: &UploadId) -> Guard {
        let slot = self.slot(id);
        if let Ok(held) = slot.lock.clone().try_lock_owned() {
            return self.guard(held, slot, id);
        }
        crate::metrics::LOCK_WAITS.inc();
        loop {
            if let Some(tx) = slot.cancel.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
            if let Ok(held) = tokio::time::timeout(RETRY, slot.lock.clone().lock_owned()).await {
                return self.guard(held, slot, id);
            }
        }
    }

    fn guard(&self, held: OwnedMutexGuard<()>, slot: Arc<Slot>, id: &UploadId) -> Guard {
        let (tx, rx) = oneshot::channel();
        *slot.cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let (id, map) = (id.as_str().to_string(), self.map.clone());
        Guard {
            interrupted: rx,
            _held: Box::new(Held {
                _held: held,
                slot,
                id,
                map,
            }),
        }
    }
}

impl Locker for InProcess {
    fn acquire<'a>(
        &'a self,
        id: &'a UploadId,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Guard, LockTimeout>> {
        Box::pin(async move {
            tokio::time::timeout(timeout, self.acquire_forever(id))
                .await
                .map_err(|_| LockTimeout {
                    id: id.to_string(),
                    timeout,
                })
        })
    }

    fn try_acquire(&self, id: &UploadId) -> Option<Guard> {
        let slot = self.slot(id);
        let held = slot.lock.clone().try_lock_owned().ok()?;
        Some(self.guard(held, slot, id))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this guard know the slot: nobody waits, so forget it. New clones are
        // only made under the map's mutex, which we hold.
        if Arc::strong_count(&self.slot) == 2 {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn id() -> UploadId {
        UploadId::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[tokio::test]
    async fn newcomer_interrupts_the_holder_and_gets_the_lock() {
        let locks = InProcess::default();
        let id = id();
        let mut first = locks.acquire(&id, LONG).await.unwrap();
        assert!(locks.try_acquire(&id).is_none(), "held");
        let second = async { locks.acquire(&id, LONG).await.unwrap() };
        let holder = async move {
            (&mut first.interrupted)
                .await
                .expect("interrupted, not dropped");
            drop(first);
        };
        let (g, ()) = tokio::join!(second, holder);
        drop(g);
        assert!(
            locks.map.lock().unwrap().is_empty(),
            "slot forgotten once free"
        );
        assert!(locks.try_acquire(&id).is_some());
    }

    // Issue 11 point 5: the lock has an acquire timeout (tusd's `AcquireLockTimeout`): a
    // holder that ignores the interruption makes the newcomer give up, not wait forever.
    #[tokio::test]
    async fn an_acquire_gives_up_when_the_holder_does_not_let_go_in_time() {
        let locks = InProcess::default();
        let id = id();
        let mut stubborn = locks.acquire(&id, LONG).await.unwrap();
        let err = match locks.acquire(&id, Duration::from_millis(120)).await {
            Err(e) => e,
            Ok(_) => panic!("took a lock that is held"),
        };
        assert!(err.to_string().contains("is busy"), "{err}");
        assert!(
            (&mut stubborn.interrupted).await.is_ok(),
            "the holder was asked to let go"
        );
        assert!(locks.try_acquire(&id).is_none(), "still held");
        drop(stubborn);
        assert!(
            locks.map.lock().unwrap().is_empty(),
            "the waiter left no slot"
        );
        assert!(locks.acquire(&id, LONG).await.is_ok());
    }
}
