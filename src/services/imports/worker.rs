//! Import workers: claim a task, keep its lease alive, fetch the source part by part into staging,
//! and finish, fail or reschedule it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::answer::Failure;
use super::attempt::{Attempt, AttemptContext, Finished};
use super::fetch::Fetcher;
use super::ranged::RangedFetches;
use super::{ImportQueue, ImportSettings, task};
use crate::blob::Blobs;
use crate::domain::{FailureCode, FileError, FileRecord, Timestamp};
use crate::meta::{Garbage, ImportTask, MetaStore};
use crate::services::lease;
use crate::telemetry::metric;

/// How a claimed task's run ended.
enum Outcome {
    /// With the staging it leaves to delete.
    Ready(Box<FileRecord>, Vec<Garbage>),
    Failed(Failure),
    /// Another worker holds the task now, or the file is gone (deleted, expired).
    LeaseLost,
    /// This node is shutting down: the task goes back to the queue as it is.
    Shutdown,
}

impl From<Result<Finished, Failure>> for Outcome {
    fn from(attempt: Result<Finished, Failure>) -> Self {
        match attempt {
            Ok(Some((file, garbage))) => Self::Ready(Box::new(file), garbage),
            Ok(None) => Self::LeaseLost,
            Err(failure) => Self::Failed(failure),
        }
    }
}

/// Called with each file an import made ready (to start work the file will need, such as a copy for the
/// model upstream).
pub type ReadyHook = Arc<dyn Fn(FileRecord) + Send + Sync>;

pub struct Workers {
    on_ready: Option<ReadyHook>,
    /// What each attempt works with.
    on: AttemptContext,
    queue: Arc<ImportQueue>,
    /// This process's name on the leases it claims (each claim has its own fence besides).
    owner: String,
}

/// Exponential backoff from 1 s, doubling, capped at 60 s, with ±20 % jitter so retries spread out.
fn backoff(attempts: u32) -> Duration {
    let base = 2f64.powi(attempts.saturating_sub(1).min(6) as i32).min(60.0);
    Duration::from_secs_f64(base * rand::thread_rng().gen_range(0.8..1.2))
}

impl Workers {
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<Blobs>, settings: ImportSettings, queue: Arc<ImportQueue>) -> Self {
        let config = &settings.config;
        let ranged = RangedFetches::new(config.connections, config.read_ahead_bytes);
        let fetcher = Fetcher::new(settings.policy.clone(), config.connect_timeout, config.stall_timeout, ranged);
        let owner = lease::holder("imports");
        Self { on_ready: None, on: AttemptContext { meta, blobs, fetcher, settings }, queue, owner }
    }

    pub fn on_ready(mut self, hook: ReadyHook) -> Self {
        self.on_ready = Some(hook);
        self
    }

    /// Runs `settings.config.workers` loops until `shutdown`; returns when all have released their tasks.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let loops: Vec<_> =
            (0..this.on.settings.config.workers).map(|_| tokio::spawn(this.clone().work(shutdown.clone()))).collect();
        for handle in loops {
            let _ = handle.await;
        }
    }

    async fn work(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let now = Timestamp::now();
            let claimed = self
                .on
                .meta
                .claim_import(&self.owner, now, now.plus_seconds(self.on.settings.config.lease.as_secs()))
                .await;
            match claimed {
                Ok(Some(task)) => {
                    // The import's own span, in the trace of the request that created it.
                    let span = tracing::info_span!(
                        "import",
                        otel.name = "import fetch",
                        file.id = %task.file_id,
                        attempt = task.attempts,
                    );
                    if let Some(traceparent) = &task.traceparent {
                        crate::telemetry::traces::continue_from_traceparent(&span, traceparent);
                    }
                    self.run_task(task, &shutdown).instrument(span).await;
                }
                Ok(None) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.queue.wake.notified() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming an import task failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn run_task(&self, task: ImportTask, shutdown: &CancellationToken) {
        let started = std::time::Instant::now();
        let running = self.queue.running.register(&task.blob_key, Some(shutdown));
        let cancel = running.token.clone();
        let (meta, lease, length, lost) =
            (self.on.meta.clone(), task.lease.clone(), self.on.settings.config.lease, cancel.clone());
        let heartbeat = tokio::spawn(async move {
            lease::keep_held(meta, lease, length).await;
            lost.cancel();
        });
        let out_of_time = tokio::time::sleep_until(instant_of(self.deadline(&task)));
        let transferred = tokio::select! {
            attempt = Attempt::run(&self.on, &task) => Some(attempt),
            () = out_of_time => Some(Err(Failure::permanent(FailureCode::Timeout, "the import exceeded its total time limit"))),
            () = cancel.cancelled() => None,
        };
        // The heartbeat stops before the file is made ready: it would see the task finished, call the lease
        // lost and cut the commit's follow-up (the staging's prompt deletion) short. The commit is fenced by
        // the lease, so nothing is lost by not renewing it for one short transaction.
        heartbeat.abort();
        let outcome = match transferred {
            None if shutdown.is_cancelled() => Outcome::Shutdown,
            None | Some(Ok(None)) => Outcome::LeaseLost,
            Some(Ok(Some(completed))) => Outcome::from(completed.commit(&self.on, &task).await),
            Some(Err(failure)) => Outcome::Failed(failure),
        };
        drop(running);

        let recorded = match outcome {
            Outcome::Ready(file, garbage) => {
                tracing::info!(
                    size_bytes = file.size_bytes,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "import ready"
                );
                metrics::counter!(metric::IMPORTS_FINISHED, "status" => "ready").increment(1);
                crate::services::garbage::reclaim_now(self.on.meta.as_ref(), self.on.blobs.as_ref(), &garbage).await;
                if let Some(hook) = &self.on_ready {
                    hook(*file);
                }
                Ok(())
            }
            Outcome::LeaseLost => {
                tracing::info!("import lease lost (the file was deleted, expired or taken over)");
                Ok(())
            }
            Outcome::Shutdown => {
                let now = Timestamp::now();
                self.on.meta.release(&task.lease, now, "shutdown", now).await.map(drop).map_err(Into::into)
            }
            Outcome::Failed(failure) => self.record_failure(&task, failure).await,
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "recording an import's outcome failed; its lease will run out and it will be retried");
        }
        self.queue.changed.notify_waiters();
    }

    /// When the task's total time runs out, counted from its creation.
    fn deadline(&self, task: &ImportTask) -> Timestamp {
        task.created_at.plus_seconds(self.on.settings.config.total_timeout.as_secs())
    }

    async fn record_failure(&self, task: &ImportTask, failure: Failure) -> crate::error::Result<()> {
        let now = Timestamp::now();
        let out_of_time = self.deadline(task) <= now;
        let error = match failure {
            Failure::Transient { error, retry_after }
                if task.attempts < self.on.settings.config.max_attempts && !out_of_time =>
            {
                let wait = backoff(task.attempts).max(retry_after.unwrap_or_default());
                tracing::info!(code = %error.code, reason = %error.message, retry_in_ms = wait.as_millis() as u64, "import attempt failed; retrying");
                let at = Timestamp::from_micros(now.as_micros() + wait.as_micros() as i64);
                self.on.meta.release(&task.lease, at, error.code.as_str(), now).await?;
                return Ok(());
            }
            // A transient failure with no time left to retry is a timeout.
            Failure::Transient { error, .. } if out_of_time => FileError {
                code: FailureCode::Timeout,
                message: format!(
                    "the import did not finish within {} s (last error: {})",
                    self.on.settings.config.total_timeout.as_secs(),
                    error.message
                ),
            },
            Failure::Transient { error, .. } | Failure::Permanent(error) => error,
        };
        tracing::info!(code = %error.code, reason = %error.message, "import failed");
        metrics::counter!(metric::IMPORTS_FINISHED, "status" => "failed").increment(1);
        if let Some(garbage) = task::fail(self.on.meta.as_ref(), task, &error).await? {
            crate::services::garbage::reclaim_now(self.on.meta.as_ref(), self.on.blobs.as_ref(), &garbage).await;
        }
        Ok(())
    }
}

fn instant_of(deadline: Timestamp) -> tokio::time::Instant {
    let left = deadline.as_micros().saturating_sub(Timestamp::now().as_micros()).max(0);
    tokio::time::Instant::now() + Duration::from_micros(left as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        for (attempts, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0)] {
            let wait = backoff(attempts).as_secs_f64();
            assert!((base * 0.8..=base * 1.2).contains(&wait), "attempt {attempts}: {wait}");
        }
    }
}
