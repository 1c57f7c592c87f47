//! How many parts a transfer into a bucket may have on their way at once, and how much memory the parts of
//! all transfers of a node may hold.
//!
//! A part is a granule (8 MiB) gathered in memory before it is sent. Sent one after another, receiving
//! and storing alternate and a transfer runs at about half the slower of the two; with several parts in
//! flight, the next part fills while the previous ones are stored. The memory that takes is bounded per
//! node, not per transfer: a transfer waits for budget before it starts to fill a part (and reads no more
//! of its body meanwhile, so TCP slows the sender), rather than exceed it. Waiting can never deadlock: a
//! part on its way needs no more budget to finish, and gives its share back when stored.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Parts per transfer at once, by default (the memory budget may allow fewer). Measured on moto with one
/// 256 MiB raw upload: 120 MB/s with one part in flight (it still overlaps the next part's receiving),
/// 124–130 with four, 134 with eight; an import 91, 116 and 116 (`docs/benchmarks.md`).
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// Bytes of parts a node may hold, by default: four parts, so one transfer alone keeps three in flight
/// while the fourth fills, and eight transfers at once take turns. Measured on moto with eight 256 MiB
/// uploads at once: the same 120 MB/s together with 32 MiB as with 64 MiB, and a peak RSS of 99 MiB
/// against 132 MiB (glibc keeps freed part buffers in per-thread arenas, so the peak grows faster than
/// the budget).
pub const DEFAULT_TRANSFER_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

/// The budget is counted in KiB, so that a semaphore's permits (`u32` per acquisition) cover any size.
const UNIT: u64 = 1024;

#[derive(Clone)]
pub struct PartBudget {
    in_flight: usize,
    memory: Arc<Semaphore>,
    /// The whole budget, in units: the most one reservation may hold.
    units: u32,
}

/// A part's share of the memory budget, given back when dropped.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

impl PartBudget {
    /// `in_flight` parts per transfer at most (at least one), `memory_bytes` for all transfers.
    pub fn new(in_flight: usize, memory_bytes: u64) -> Self {
        let units = u32::try_from(memory_bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        let permits = usize::try_from(units).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Self { in_flight: in_flight.max(1), memory: Arc::new(Semaphore::new(permits)), units }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Waits until `bytes` fit in the budget and holds them. A part larger than the whole budget holds
    /// all of it (configuration refuses a budget smaller than a part, so only tests get there).
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).min(self.units);
        let permit = self.memory.clone().acquire_many_owned(units).await.expect("the budget is never closed");
        Reservation { _permit: permit }
    }
}

impl Default for PartBudget {
    fn default() -> Self {
        Self::new(DEFAULT_PARTS_IN_FLIGHT, DEFAULT_TRANSFER_MEMORY_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_reservation_waits_for_budget_and_gets_it_when_another_is_dropped() {
        let budget = PartBudget::new(2, 3 * 1024);
        let first = budget.reserve(2 * 1024).await;
        let _second = budget.reserve(1024).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(2 * 1024).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the budget is spent");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("given back").unwrap();
        // More than the whole budget holds all of it, rather than waiting forever.
        let _all = tokio::time::timeout(Duration::from_secs(5), PartBudget::new(1, 1024).reserve(1 << 20))
            .await
            .expect("capped at the budget");
    }
}
