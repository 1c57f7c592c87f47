//! Keeping requests off a database that stopped answering ([`crate::outage`]).
//!
//! sqlx has no client-side timer of its own: a query on a connection to a vanished PostgreSQL host waited
//! for TCP to give up, and after the outage the pool was full of connections still waiting out TCP's
//! retransmissions, so recovery took 10–18 s more. Here:
//!
//! - a **prober** (`sql/mod.rs`) asks the database, on a connection of its own, every second (`SELECT 1`,
//!   2 s at most); two failures in a row trip the guard, and the pool is replaced by a fresh one, so that
//!   nothing waits for the dead connections;
//! - every operation has a deadline besides ([`OPERATION_DEADLINE`], longer for the janitor's and the
//!   operator's bulk work), for a single connection gone bad while the database answers probes.
//!
//! SQLite is a local file: it has no prober, only the deadlines.

use std::time::Duration;

use crate::meta::MetaError;
pub use crate::outage::Guard;
use crate::outage::Outage;

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

impl From<Outage> for MetaError {
    fn from(outage: Outage) -> Self {
        match outage {
            Outage::Down => {
                Self::Unavailable("the database is not answering (its host stopped responding); retry shortly".into())
            }
            Outage::Deadline(deadline) => Self::Unavailable(format!("the database did not answer within {deadline:?}")),
        }
    }
}
