//! Keeping work off a dependency that stopped answering (the database, a bucket).
//!
//! A host that vanishes (a network partition, a blackholed route) closes nothing: a request sent on an open
//! connection waits for TCP or a client timeout to give up, tens of seconds to a quarter of an hour later.
//! Each adapter runs a **prober** that asks its dependency something small every second, on its own; a few
//! failures in a row ([`Prober`]), or a few seconds without any answer where probes overlap ([`Silence`]),
//! **trip** its [`Guard`]: every operation under way ends at once, new ones fail before they start (a 503
//! with `Retry-After` to their clients, within seconds of the outage), and the first probe that succeeds
//! again ends it. Each adapter says what its failures mean ([`Outage`] into its own
//! error).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Why a guarded operation did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// The prober found the dependency not answering (before or while the operation ran).
    Down,
    /// The operation took longer than its deadline.
    Deadline(Duration),
}

/// Whether a dependency answers, as its prober last found, and the trips so far.
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

impl Guard {
    /// Whether the dependency answers probes now.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// Runs `operation` unless the dependency is known to be down, and ends it if the guard trips meanwhile
    /// or (with a `deadline`) it takes longer.
    pub async fn bounded<T, E: From<Outage>>(
        &self,
        deadline: Option<Duration>,
        operation: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if self.is_down() {
            return Err(Outage::Down.into());
        }
        let mut trips = self.trips.subscribe();
        let timer = async {
            match deadline {
                Some(deadline) => tokio::time::sleep(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = operation => done,
            _ = trips.changed() => Err(Outage::Down.into()),
            () = timer => Err(Outage::Deadline(deadline.unwrap_or_default()).into()),
        }
    }

    /// The prober found the dependency gone: operations under way end now, new ones fail fast. `true` if it
    /// was up until now.
    pub fn trip(&self) -> bool {
        let was_up = !self.down.swap(true, Ordering::AcqRel);
        if was_up {
            self.trips.send_modify(|trips| *trips += 1);
        }
        was_up
    }

    /// The prober found the dependency back; `true` if it was down until now.
    pub fn recover(&self) -> bool {
        self.down.swap(false, Ordering::AcqRel)
    }
}

/// Counts a prober's answers: trips `guard` after `failures_to_trip` failures in a row, recovers it at
/// the first success. Returns what changed, for the prober to log: `Some(true)` tripped, `Some(false)`
/// recovered.
#[derive(Debug)]
pub struct Prober {
    failures: u32,
    failures_to_trip: u32,
}

impl Prober {
    pub const fn new(failures_to_trip: u32) -> Self {
        Self { failures: 0, failures_to_trip }
    }

    pub fn answered(&mut self, guard: &Guard, answered: bool) -> Option<bool> {
        if answered {
            self.failures = 0;
            return guard.recover().then_some(false);
        }
        self.failures += 1;
        (self.failures >= self.failures_to_trip && guard.trip()).then_some(true)
    }
}

/// Judges a dependency asked often by probes that may overlap: trips `guard` once nothing has answered for
/// `limit`, recovers it at the first answer. Unlike [`Prober`]'s failures in a row, a dependency that is
/// slow but alive (a far region, a loaded bucket: every answer 2–3 s late) never trips it, since some
/// probe keeps answering; one that is gone trips it `limit` after its last answer.
#[derive(Debug)]
pub struct Silence {
    last_answer: Instant,
    limit: Duration,
}

impl Silence {
    pub fn new(limit: Duration) -> Self {
        Self { last_answer: Instant::now(), limit }
    }

    /// A probe answered: `Some(false)` if that ends an outage.
    pub fn answered(&mut self, guard: &Guard) -> Option<bool> {
        self.last_answer = Instant::now();
        guard.recover().then_some(false)
    }

    /// Time passed: `Some(true)` if the silence has now lasted long enough to trip `guard`.
    pub fn check(&self, guard: &Guard) -> Option<bool> {
        (self.last_answer.elapsed() >= self.limit && guard.trip()).then_some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_trip_ends_the_operations_under_way_and_refuses_new_ones_until_recovery() {
        let guard = std::sync::Arc::new(Guard::default());
        let hanging = {
            let guard = guard.clone();
            tokio::spawn(async move { guard.bounded(None, std::future::pending::<Result<(), Outage>>()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut prober = Prober::new(2);
        assert_eq!(prober.answered(&guard, false), None, "one failure is not an outage");
        assert_eq!(prober.answered(&guard, false), Some(true));
        let ended = tokio::time::timeout(Duration::from_secs(1), hanging).await.expect("ended at once").unwrap();
        assert_eq!(ended, Err(Outage::Down));
        assert_eq!(guard.bounded(None, async { Ok::<_, Outage>(()) }).await, Err(Outage::Down));
        assert_eq!(prober.answered(&guard, false), None, "one trip per outage");
        assert_eq!(prober.answered(&guard, true), Some(false));
        assert_eq!(guard.bounded(None, async { Ok::<_, Outage>(7) }).await, Ok(7));
        let slow = guard.bounded(Some(Duration::from_millis(50)), std::future::pending::<Result<(), Outage>>()).await;
        assert_eq!(slow, Err(Outage::Deadline(Duration::from_millis(50))));
    }

    /// On tokio's paused clock: the sleeps below are exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_silence_trips_only_once_it_lasts_and_ends_at_the_first_answer() {
        let guard = Guard::default();
        let mut silence = Silence::new(Duration::from_millis(200));
        assert_eq!(silence.check(&guard), None, "just asked");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(silence.answered(&guard), None, "a late answer is an answer");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(silence.check(&guard), None, "the silence restarted at the answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(silence.check(&guard), Some(true));
        assert!(guard.is_down());
        assert_eq!(silence.check(&guard), None, "one trip per outage");
        assert_eq!(silence.answered(&guard), Some(false));
        assert!(!guard.is_down());
    }
}
