//! Leases in the metadata store: a claim on a piece of work (an import task, the right to write an upload)
//! that lapses by itself when its holder's node dies, and that a live holder keeps alive.
//!
//! A holder renews every third of the lease, whatever the work is doing (a slow client, a slow bucket),
//! so a live holder never loses its claim to a waiting one. A holder that cannot reach the database
//! gives up a third of a lease before the lease could lapse, so it never works beside the one that takes
//! the claim over.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::domain::Timestamp;
use crate::error::Result;
use crate::meta::{Lease, MetaStore};

/// The name a process's claims of one kind of work go under: `{kind}-` and a random suffix, so that each
/// process (and each kind within it) is told apart in the database and in `filegate fsck`'s report.
pub fn holder(kind: &str) -> String {
    format!("{kind}-{}", crate::domain::random_alphanumeric(12))
}

/// Keeps a claim on queued work (`meta::queue`) alive for `length` at a time, as [`keep_alive`] does;
/// returns once it is lost. Run it beside the work and stop the work when it returns.
pub async fn keep_held(meta: Arc<dyn MetaStore>, lease: Lease, length: Duration) {
    keep_alive(length, move || {
        let (meta, lease) = (meta.clone(), lease.clone());
        Box::pin(async move {
            let until = Timestamp::now().plus_seconds(length.as_secs());
            Ok(meta.renew(&lease, until).await?)
        })
    })
    .await;
}

/// Keeps a lease of length `lease` alive with `renew` (`Ok(false)`: the claim is no longer ours); returns
/// once the lease is lost or can no longer be vouched for. Run it beside the work and stop the work when
/// it returns.
pub async fn keep_alive(lease: Duration, mut renew: impl FnMut() -> BoxFuture<'static, Result<bool>>) {
    let mut ticker = tokio::time::interval(lease / 3);
    ticker.tick().await;
    // Until when the lease surely holds: past it, another node may have taken the work over.
    let mut held_until = tokio::time::Instant::now() + lease;
    loop {
        ticker.tick().await;
        let asked = tokio::time::Instant::now();
        match renew().await {
            Ok(true) => held_until = asked + lease,
            Ok(false) => return,
            Err(e) if tokio::time::Instant::now() + lease / 3 >= held_until => {
                tracing::warn!(error = %e, "a lease could not be renewed in time; stopping its work");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing a lease failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Error;

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_renewed_every_third_and_given_up_before_it_can_lapse() {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let started = tokio::time::Instant::now();
        // Renewals succeed three times, then the database is unreachable.
        keep_alive(Duration::from_secs(30), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < 3 {
                    Ok(true)
                } else {
                    Err(Error::Unavailable(crate::error::Unavailable::Database("down".into())))
                }
            })
        })
        .await;
        // Renewed at 10, 20, 30 s (held until 60 s); failing at 40 and 50 s, it stops at 50 s.
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(started.elapsed(), Duration::from_secs(50));

        let lost = tokio::time::Instant::now();
        keep_alive(Duration::from_secs(30), || Box::pin(async { Ok(false) })).await;
        assert_eq!(lost.elapsed(), Duration::from_secs(10), "a claim taken over ends at the next renewal");
    }
}
