//! The latest-wins snapshot slot: the simulation thread swaps in an `Arc<Snapshot>` and bumps a
//! generation counter; readers clone the `Arc` only when the generation changed. Intermediate
//! snapshots are simply replaced, so the simulation never waits for the screen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A shared latest-wins slot holding at most one value, with a generation counter.
///
/// Generation 0 means "nothing published yet"; every [`LatestSlot::publish`] increments it.
#[derive(Debug)]
pub struct LatestSlot<T> {
    value: Arc<Mutex<Option<Arc<T>>>>,
    generation: Arc<AtomicU64>,
}

impl<T> Clone for LatestSlot<T> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            generation: Arc::clone(&self.generation),
        }
    }
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self {
            value: Arc::new(Mutex::new(None)),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the current value and returns the new generation.
    pub fn publish(&self, value: Arc<T>) -> u64 {
        // The value is stored before the generation is bumped, under the lock, so a reader that
        // sees generation g always finds a value at least as new as g.
        let mut guard = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        *guard = Some(value);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The current generation (0 = nothing published yet). Cheap: one atomic load.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest value and its generation, if anything was published.
    pub fn latest(&self) -> Option<(u64, Arc<T>)> {
        let guard = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation.load(Ordering::Acquire);
        guard.as_ref().map(|v| (generation, Arc::clone(v)))
    }

    /// The latest value if its generation is newer than `seen`; updates `seen`.
    pub fn latest_if_newer(&self, seen: &mut u64) -> Option<Arc<T>> {
        if self.generation() <= *seen {
            return None;
        }
        let (generation, value) = self.latest()?;
        *seen = generation;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_slot_hands_out_only_newer_generations() {
        let slot = LatestSlot::<u32>::new();
        let mut seen = 0;
        assert!(slot.latest_if_newer(&mut seen).is_none());
        slot.publish(Arc::new(1));
        slot.publish(Arc::new(2));
        assert_eq!(slot.generation(), 2);
        // Intermediate values are dropped: the reader gets the newest one only.
        assert_eq!(slot.latest_if_newer(&mut seen).as_deref(), Some(&2));
        assert_eq!(seen, 2);
        assert!(slot.latest_if_newer(&mut seen).is_none());
        let reader = slot.clone();
        slot.publish(Arc::new(3));
        assert_eq!(reader.latest_if_newer(&mut seen).as_deref(), Some(&3));
    }
}
