//! Who may write an upload in a bucket right now: one request at a time, across nodes, by a claim in the
//! database that its request keeps alive (`services/lease.rs`).

use std::time::Duration;

use super::Uploads;
use crate::domain::{Timestamp, random_alphanumeric};
use crate::error::{Error, Result, UploadError};
use crate::meta::{SessionStatus, UploadSession};
use crate::services::lease;

impl Uploads {
    /// How long a request waits for another that keeps its claim alive before answering 503.
    const WRITER_WAIT: Duration = Duration::from_secs(300);

    /// On a bucket, whose sessions any node may serve, a request first claims its session in the
    /// database, so that two requests racing on one upload (on two nodes) never store parts over each
    /// other. A request that finds the session claimed waits for the claim (the other request ends, or its
    /// node died and the claim lapses), then sees the session as the other left it: a resend, a new
    /// offset — what it would see on one node, where requests on one session run one after the other.
    /// `None` on the local disk: one node, whose requests on one session already run one at a time.
    pub(super) async fn claim_writer(&self, token_hash: &str) -> Result<Option<String>> {
        if !self.blobs.is_shared() {
            return Ok(None);
        }
        let writer = random_alphanumeric(16);
        let waited = std::time::Instant::now();
        loop {
            let now = Timestamp::now();
            let until = now.plus_seconds(self.limits.upload_claim.as_secs());
            if self.meta.claim_writer(token_hash, &writer, until, now).await? {
                return Ok(Some(writer));
            }
            // Only an active session is claimed: any other answers with what it is, at once.
            let active = self.meta.get_upload(token_hash).await?.is_some_and(|s| s.status == SessionStatus::Active);
            if !active {
                return Ok(None);
            }
            if waited.elapsed() > Self::WRITER_WAIT {
                return Err(Error::retry("Another request has been writing to this upload for 5 minutes."));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Keeps this request's claim on the session alive; returns only if it could not (never without one).
    pub(super) async fn keep_writing(&self, session: &UploadSession, writer: Option<&str>) {
        let Some(writer) = writer else { return std::future::pending().await };
        let (meta, token_hash, writer) = (self.meta.clone(), session.token_hash.clone(), writer.to_owned());
        // Renewed every third of it, while the request runs, however slowly its client sends: a waiting
        // request waits this long at most after the node holding the claim died.
        let lease = self.limits.upload_claim;
        lease::keep_alive(lease, move || {
            let (meta, token_hash, writer) = (meta.clone(), token_hash.clone(), writer.clone());
            Box::pin(async move {
                let now = Timestamp::now();
                let until = now.plus_seconds(lease.as_secs());
                if meta.claim_writer(&token_hash, &writer, until, now).await? {
                    return Ok(true);
                }
                // Only an active session is claimed: one this request just finalized (or that a cancel
                // ended) needs no claim any more, and its own commit has already decided.
                Ok(meta.get_upload(&token_hash).await?.is_none_or(|s| s.status != SessionStatus::Active))
            })
        })
        .await;
    }

    /// What a request that lost its claim answers: as on one node, the offset is taken if another
    /// request committed there (409, final); only a database that cannot be reached is worth a retry.
    pub(super) async fn claim_lost(&self, session: &UploadSession) -> Error {
        match self.meta.get_upload(&session.token_hash).await {
            Ok(Some(now)) if now.status == SessionStatus::Cancelled => UploadError::Cancelled.into(),
            Ok(Some(now)) if now.received_bytes > session.received_bytes || now.status == SessionStatus::Final => {
                UploadError::ResendMismatch {
                    offset: session.received_bytes,
                    len: now.received_bytes - session.received_bytes,
                }
                .into()
            }
            Ok(None) => UploadError::SessionNotFound.into(),
            Ok(Some(_)) | Err(_) => {
                Error::retry("This request could not keep its claim on the upload; send the chunk again.")
            }
        }
    }
}
