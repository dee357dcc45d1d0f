//! One writer per upload. Taking the lock interrupts a PATCH that still streams: tus clients
//! that lost their connection come back with HEAD and a new PATCH while the server may not
//! have noticed the old connection is dead yet. The interrupted PATCH stops reading, keeps
//! and checkpoints what it received, and releases the lock (tusd does the same).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedMutexGuard};

use crate::store::upload::UploadId;

/// How long a newcomer waits for an interrupted holder before signalling again.
const RETRY: Duration = Duration::from_millis(50);

type SlotMap = Arc<Mutex<HashMap<String, Arc<Slot>>>>;

#[derive(Default)]
pub struct Locks {
    map: SlotMap,
}

#[derive(Default)]
struct Slot {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Fires the current holder's interruption.
    cancel: Mutex<Option<oneshot::Sender<()>>>,
}

/// Exclusive access to one upload. `interrupted` completes when a newcomer wants the lock.
pub struct Guard {
    _held: OwnedMutexGuard<()>,
    slot: Arc<Slot>,
    id: String,
    map: SlotMap,
    pub interrupted: oneshot::Receiver<()>,
}

impl Locks {
    fn slot(&self, id: &UploadId) -> Arc<Slot> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.as_str().to_string()).or_default().clone()
    }

    /// Takes the lock, interrupting the holder (if any) until it lets go.
    pub async fn acquire(&self, id: &UploadId) -> Guard {
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

    /// Takes the lock only if nobody holds it (the reaper never interrupts a client).
    pub fn try_acquire(&self, id: &UploadId) -> Option<Guard> {
        let slot = self.slot(id);
        let held = slot.lock.clone().try_lock_owned().ok()?;
        Some(self.guard(held, slot, id))
    }

    fn guard(&self, held: OwnedMutexGuard<()>, slot: Arc<Slot>, id: &UploadId) -> Guard {
        let (tx, rx) = oneshot::channel();
        *slot.cancel.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let (id, map) = (id.as_str().to_string(), self.map.clone());
        Guard {
            _held: held,
            slot,
            id,
            map,
            interrupted: rx,
        }
    }
}

impl Drop for Guard {
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

    #[tokio::test]
    async fn newcomer_interrupts_the_holder_and_gets_the_lock() {
        let locks = Locks::default();
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let mut first = locks.acquire(&id).await;
        assert!(locks.try_acquire(&id).is_none(), "held");
        let second = async { locks.acquire(&id).await };
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
}
