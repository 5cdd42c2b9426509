//! One device's group hand-offs at a time, in order.
//!
//! The manager works out which link each group's engine should sync over for
//! a device and then tells the engines (`peer_ready` / `peer_gone`) outside
//! its state lock. Two refreshes for the same device racing (a link closing
//! while the next one's groups come up) could otherwise deliver their news in
//! the other order: an engine handed a link that already closed, or told the
//! member is gone after it was told of the new link, would be left without a
//! working member until some later link. Devices do not wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use peers_sdk::DeviceId;
use tokio::sync::OwnedMutexGuard;

use crate::util::lock;

/// A turn lock per device with a hand-off under way; entries go when the
/// last holder or waiter does, so the table holds only devices being handed
/// off now.
#[derive(Default)]
pub(super) struct Handoffs {
    turns: Mutex<HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>>,
}

/// `device`'s turn, held while working out and delivering its hand-off.
pub(super) struct Turn<'a> {
    handoffs: &'a Handoffs,
    device: DeviceId,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Handoffs {
    /// Waits for the hand-offs for `device` begun before this call.
    pub(super) async fn turn(&self, device: &DeviceId) -> Turn<'_> {
        // Cloned under the table's lock, which `Turn::drop` relies on.
        let mutex = lock(&self.turns).entry(*device).or_default().clone();
        let guard = mutex.lock_owned().await;
        Turn { handoffs: self, device: *device, guard: Some(guard) }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = lock(&self.handoffs.turns);
        drop(self.guard.take());
        // Only the table holds it now: nobody waits (waiters clone under this lock).
        if turns.get(&self.device).is_some_and(|m| Arc::strong_count(m) == 1) {
            turns.remove(&self.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_for_one_device_queue_and_the_table_empties() {
        let handoffs = Arc::new(Handoffs::default());
        let id = |name| peers_sdk::DeviceKeys::generate(name).unwrap().device_id();
        let (a, b) = (id("a"), id("b"));
        let first = handoffs.turn(&a).await;
        // Another device is not held up.
        drop(handoffs.turn(&b).await);
        let waiting = tokio::spawn({
            let handoffs = handoffs.clone();
            async move { drop(handoffs.turn(&a).await) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second turn for the same device ran alongside the first");
        drop(first);
        waiting.await.unwrap();
        assert!(lock(&handoffs.turns).is_empty());
    }
}
