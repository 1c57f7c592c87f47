//! Keeping requests off a database that stopped answering.
//!
//! A PostgreSQL host that vanishes (a network partition, a blackholed route) closes nothing: a query sent
//! on an open connection waits for TCP to give up, a quarter of an hour later, and sqlx has no client-side
//! timer of its own. Requests hung for the whole outage, and after it the pool was full of connections
//! still waiting out TCP's retransmissions, so recovery took 10–18 s more. Here:
//!
//! - a **prober** asks the database, on a connection of its own, every second (`SELECT 1`, 2 s at most);
//!   two failures in a row **trip** the guard: every operation under way fails at once with
//!   `Unavailable` (a 503 with `Retry-After` to its client), new ones fail before they start, and the
//!   pool is replaced by a fresh one, so that nothing waits for the dead connections;
//! - the first probe that succeeds again ends the outage: the next request opens a new connection (within a
//!   second or two of the database's return);
//! - every operation has a deadline besides ([`OPERATION_DEADLINE`], longer for the janitor's and the
//!   operator's bulk work), for a single connection gone bad while the database answers probes.
//!
//! SQLite is a local file: it has no prober, only the deadlines.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::meta::{MetaError, MetaResult};

/// The longest a request's database operation may take.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a bulk operation may take (the janitor's batches, the counters' recount, full listings):
/// PostgreSQL's own `statement_timeout` is 30 s.
pub const BULK_DEADLINE: Duration = Duration::from_secs(60);
/// How often the prober asks, and how long an answer may take.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed probes in a row that trip the guard.
pub const FAILURES_TO_TRIP: u32 = 2;

/// Whether the database answers, as the prober last found, and the trips so far.
#[derive(Debug)]
pub struct Guard {
    down: AtomicBool,
    trips: watch::Sender<u64>,
}

impl Default for Guard {
    fn default() -> Self {
        Self { down: AtomicBool::new(false), trips: watch::Sender::new(0) }
    }
}

fn not_answering() -> MetaError {
    MetaError::Unavailable("the database is not answering (its host stopped responding); retry shortly".into())
}

impl Guard {
    /// Whether the database answers probes now.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Runs `operation` unless the database is known to be down, and ends it with `Unavailable` if the
    /// guard trips meanwhile or it takes longer than `deadline`.
    pub async fn bounded<T>(
        &self,
        deadline: Duration,
        operation: impl Future<Output = MetaResult<T>>,
    ) -> MetaResult<T> {
        if self.is_down() {
            return Err(not_answering());
        }
        let mut trips = self.trips.subscribe();
        tokio::select! {
            done = operation => done,
            _ = trips.changed() => Err(not_answering()),
            () = tokio::time::sleep(deadline) => {
                Err(MetaError::Unavailable(format!("the database did not answer within {deadline:?}")))
            }
        }
    }

    /// The prober found the database gone: operations under way end now, new ones fail fast. `true` if it
    /// was up until now.
    pub fn trip(&self) -> bool {
        let was_up = !self.down.swap(true, Ordering::AcqRel);
        if was_up {
            self.trips.send_modify(|trips| *trips += 1);
        }
        was_up
    }

    /// The prober found the database back.
    pub fn recover(&self) -> bool {
        self.down.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trip_ends_the_operations_under_way_and_refuses_new_ones_until_recovery() {
        let guard = std::sync::Arc::new(Guard::default());
        let hanging = {
            let guard = guard.clone();
            tokio::spawn(async move { guard.bounded(BULK_DEADLINE, std::future::pending::<MetaResult<()>>()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(guard.trip());
        let ended = tokio::time::timeout(Duration::from_secs(1), hanging).await.expect("ended at once").unwrap();
        assert!(matches!(ended, Err(MetaError::Unavailable(_))));
        assert!(matches!(guard.bounded(OPERATION_DEADLINE, async { Ok(()) }).await, Err(MetaError::Unavailable(_))));
        assert!(!guard.trip(), "one trip per outage");
        assert!(guard.recover());
        assert!(guard.bounded(OPERATION_DEADLINE, async { Ok(7) }).await.is_ok_and(|n| n == 7));
        let slow = guard.bounded(Duration::from_millis(50), std::future::pending::<MetaResult<()>>()).await;
        assert!(matches!(slow, Err(MetaError::Unavailable(why)) if why.contains("within 50ms")));
    }
}
