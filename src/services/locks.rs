use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

/// The work running on this node per key (an upload's chunk, an import's fetch), so that a request that
/// ends it (a cancel, a delete) can stop it at once instead of waiting for it.
#[derive(Default)]
pub struct Running {
    map: Mutex<HashMap<String, (u64, CancellationToken)>>,
    registrations: std::sync::atomic::AtomicU64,
}

/// Registered work; leaving the registry when dropped.
pub struct RunningGuard<'a> {
    running: &'a Running,
    key: String,
    registration: u64,
    pub token: CancellationToken,
}

impl Running {
    /// Registers work under `key`; its token is a child of `parent` (cancelled with it too).
    pub fn register(&self, key: &str, parent: Option<&CancellationToken>) -> RunningGuard<'_> {
        let token = parent.map_or_else(CancellationToken::new, CancellationToken::child_token);
        let registration = self.registrations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.map.lock().expect("running map poisoned").insert(key.to_owned(), (registration, token.clone()));
        RunningGuard { running: self, key: key.to_owned(), registration, token }
    }

    /// Stops the work under `key`, if any runs on this node.
    pub fn cancel(&self, key: &str) {
        if let Some((_, token)) = self.map.lock().expect("running map poisoned").get(key) {
            token.cancel();
        }
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.running.map.lock().expect("running map poisoned");
        // Only our own entry: a later registration under the same key is not ours to remove.
        if map.get(&self.key).is_some_and(|(registration, _)| *registration == self.registration) {
            map.remove(&self.key);
        }
    }
}

/// One async mutex per key, created on demand and dropped when nobody holds or awaits it.
///
/// Requests on the same upload session run one after the other on this node, so two chunks racing on
/// one session never write the same staging bytes at once; the metadata store's compare-and-set on the
/// offset decides between nodes.
#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().expect("lock map poisoned");
            map.entry(key.to_owned()).or_default().clone()
        };
        KeyedGuard { locks: self, key: key.to_owned(), guard: Some(mutex.lock_owned().await) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().expect("lock map poisoned");
        // Only the map still holds the mutex: nobody waits for it.
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_work_is_cancelled_by_key_and_forgotten_when_done() {
        let running = Running::default();
        let guard = running.register("a", None);
        running.cancel("b");
        assert!(!guard.token.is_cancelled());
        running.cancel("a");
        assert!(guard.token.is_cancelled());
        drop(guard);
        assert!(running.map.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_key_is_held_by_one_task_at_a_time_and_forgotten_afterwards() {
        let locks = Arc::new(KeyedLocks::default());
        let first = locks.lock("a").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("a").await;
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the second holder must wait");
        let _other = locks.lock("b").await; // other keys are independent
        drop(first);
        waiter.await.unwrap();
        drop(_other);
        assert_eq!(locks.len(), 0);
    }
}
