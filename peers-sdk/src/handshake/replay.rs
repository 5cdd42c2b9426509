//! Remembers recent first messages so a replayed one is refused.

use std::collections::{HashSet, VecDeque};

use crate::error::HandshakeError;

/// Remembers the ephemeral keys of first handshake messages seen within the
/// timestamp window. A responder shares one guard across all its handshakes.
///
/// Message 1 carries a fresh ephemeral key that doubles as its nonce, and a
/// timestamp; a message older than the window is refused by the timestamp check, a
/// message inside it is refused here. Memory is bounded by `capacity`, and an
/// entry leaves only when it ages out of the window: when the guard is full,
/// new first messages are refused ([`HandshakeError::ReplayGuardFull`]) rather
/// than older entries forgotten, so a flood of first messages cannot make the
/// guard forget one it must still refuse. The flood costs new handshakes for
/// at most one window; established connections are not affected.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    order: VecDeque<(u64, [u8; 32])>,
    seen: HashSet<[u8; 32]>,
}

impl ReplayGuard {
    /// Default number of remembered messages.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A guard that remembers keys for `window_ms` milliseconds, at most `capacity`.
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        ReplayGuard { window_ms, capacity: capacity.max(1), order: VecDeque::new(), seen: HashSet::new() }
    }

    /// Records `key` seen at `now`; fails if it was seen within the window,
    /// or if the guard is full of keys still inside it.
    pub fn check(&mut self, key: &[u8; 32], now: u64) -> Result<(), HandshakeError> {
        while let Some(&(at, old)) = self.order.front() {
            if now.saturating_sub(at) <= self.window_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if self.seen.contains(key) {
            return Err(HandshakeError::Replayed);
        }
        if self.order.len() >= self.capacity {
            return Err(HandshakeError::ReplayGuardFull { capacity: self.capacity });
        }
        self.seen.insert(*key);
        self.order.push_back((now, *key));
        Ok(())
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_key_inside_the_window_and_forgets_it_after() {
        let mut guard = ReplayGuard::new(1_000, 10);
        guard.check(&[1; 32], 0).unwrap();
        assert_eq!(guard.check(&[1; 32], 500), Err(HandshakeError::Replayed));
        guard.check(&[2; 32], 2_000).unwrap();
        guard.check(&[1; 32], 2_000).unwrap();
    }

    #[test]
    fn memory_is_bounded_and_full_refuses_rather_than_forgets() {
        let mut guard = ReplayGuard::new(1_000, 4);
        for i in 0..4u8 {
            guard.check(&[i; 32], 0).unwrap();
        }
        assert_eq!(guard.check(&[9; 32], 500), Err(HandshakeError::ReplayGuardFull { capacity: 4 }));
        assert_eq!(guard.len(), 4);
        assert_eq!(guard.check(&[0; 32], 1_000), Err(HandshakeError::Replayed), "the oldest is still refused");
        guard.check(&[9; 32], 1_001).unwrap();
        assert_eq!(guard.len(), 1, "the window aged the four out");
    }
}
