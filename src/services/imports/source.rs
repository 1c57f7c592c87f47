//! A source body cut into spans (`part`: a run of the store's parts). Each span is handed to the ingest
//! session as its own stream and made durable and committed before the next one starts, so an import's
//! progress survives a crash every span. A source
//! error or stall does not fail the part: it ends the stream early and is kept aside, so the bytes that
//! did arrive are still stored and committed, and the next attempt resumes right after them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt as _, stream};
use tokio::sync::oneshot;

use super::answer::Failure;
use super::ranged::SourceBody;
use crate::blob::ByteStream;
use crate::domain::FailureCode;

/// How many bytes of a file's beginning are kept to recognise its type.
pub const SNIFF_BYTES: usize = 512;

pub struct PartSource {
    body: SourceBody,
    leftover: Option<Bytes>,
    stall: Duration,
    /// Why the body ended early, if it did.
    pub failure: Option<Failure>,
    /// The body ended (cleanly or not).
    pub done: bool,
}

impl PartSource {
    pub fn new(body: SourceBody, stall: Duration) -> Self {
        Self { body, leftover: None, stall, failure: None, done: false }
    }

    async fn next_frame(&mut self) -> Option<Bytes> {
        if let Some(bytes) = self.leftover.take() {
            return Some(bytes);
        }
        if self.done {
            return None;
        }
        let failure = match tokio::time::timeout(self.stall, self.body.next()).await {
            Ok(Some(Ok(bytes))) => return Some(bytes),
            Ok(None) => None,
            Ok(Some(Err(failure))) => Some(failure),
            Err(_) => Some(Failure::transient(
                FailureCode::Timeout,
                format!("the source sent nothing for {} s", self.stall.as_secs()),
            )),
        };
        self.failure = failure;
        self.done = true;
        None
    }

    /// The next part, of at most `limit` bytes, as a stream; the source comes back through the receiver
    /// once the part stream has ended. With `head`, the part's first [`SNIFF_BYTES`] are copied there.
    pub fn part(self, limit: u64, head: Option<Arc<Mutex<Vec<u8>>>>) -> (ByteStream, oneshot::Receiver<Self>) {
        let (tx, rx) = oneshot::channel();
        let part = stream::unfold(Some((self, limit, tx)), move |state| {
            let head = head.clone();
            async move {
                let (mut source, remaining, tx) = state?;
                let frame = if remaining == 0 { None } else { source.next_frame().await };
                let Some(mut bytes) = frame else {
                    let _ = tx.send(source);
                    return None;
                };
                if bytes.len() as u64 > remaining {
                    source.leftover = Some(bytes.split_off(remaining as usize));
                }
                if let Some(head) = head {
                    let mut head = head.lock().expect("sniff buffer poisoned");
                    let room = SNIFF_BYTES.saturating_sub(head.len()).min(bytes.len());
                    head.extend_from_slice(&bytes[..room]);
                }
                let left = remaining - bytes.len() as u64;
                Some((Ok(bytes), Some((source, left, tx))))
            }
        });
        (part.boxed(), rx)
    }
}
