//! One source over several connections: when a source takes ranges and names its version (a strong ETag
//! or Last-Modified), the rest of the file after the first segment is fetched in segments of
//! [`SEGMENT_BYTES`], a few at once, and handed on **in order** as one stream — so the SHA-256, the parts
//! and the commits downstream see exactly the bytes of a single GET. Every range request carries
//! `If-Range`: a source that changed answers `200` (the whole new version) or another range, and the
//! attempt ends; the next one asks again from the committed offset with the old validator, gets the new
//! version, and starts over (never a file spliced from two versions).
//!
//! The segment the stream needs next is always fetched straight through, never waiting for anything; only
//! the segments read *ahead* of it are held in memory, each with one of the node's read-ahead slots, taken
//! only if one is free. So memory is bounded per node, and no import can wait on another.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::StatusCode;
use reqwest::header;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument as _;
use url::Url;

use super::answer::{Failure, connect_failure, content_range};
use crate::domain::FailureCode;

/// The size of a segment: one part of a bucket, so a segment read ahead is one part's worth of memory.
pub const SEGMENT_BYTES: u64 = crate::blob::PART_BYTES;

pub type SourceBody = BoxStream<'static, Result<Bytes, Failure>>;

/// How many connections one import may use, and the node's slots for segments read ahead.
#[derive(Clone)]
pub struct RangedFetches {
    per_import: usize,
    slots: Arc<Semaphore>,
    /// Whether the node has any read-ahead slot at all: without one, ranges would only be fetched one
    /// after another, each on a new request — one stream is better.
    can_read_ahead: bool,
}

impl RangedFetches {
    /// `per_import` connections per import at most (1: one stream, no ranges); `read_ahead_bytes` of
    /// segments held by all imports of the node.
    pub fn new(per_import: usize, read_ahead_bytes: u64) -> Self {
        let slots = usize::try_from(read_ahead_bytes / SEGMENT_BYTES).unwrap_or(usize::MAX);
        Self { per_import: per_import.max(1), slots: Arc::new(Semaphore::new(slots)), can_read_ahead: slots > 0 }
    }

    /// Whether a source of `remaining` bytes is worth several connections.
    pub fn applies(&self, remaining: u64) -> bool {
        self.per_import > 1 && self.can_read_ahead && remaining > 2 * SEGMENT_BYTES
    }
}

/// What the segments are fetched with: the guarded client, the final URL, the version and the stall limit.
pub struct Source {
    pub client: reqwest::Client,
    pub url: Url,
    pub validator: String,
    pub total: u64,
    pub stall: Duration,
    /// Bytes received so far, over every connection.
    pub arrived: Arc<std::sync::atomic::AtomicU64>,
}

/// The bytes from `offset` to the end, in order: the first segment from `first` (the response already
/// open, which is then dropped), the others by range.
pub fn body(settings: &RangedFetches, source: Source, offset: u64, first: SourceBody) -> SourceBody {
    let (tx, mut rx) = mpsc::channel(8);
    let producer = produce(settings.clone(), Arc::new(source), offset, first, tx.clone());
    let task = AbortOnDropHandle::new(tokio::spawn(
        async move {
            if let Err(failure) = producer.await {
                let _ = tx.send(Err(failure)).await;
            }
        }
        .instrument(tracing::Span::current()),
    ));
    // The stream owns the producer: dropping it (the attempt ended) stops every fetch.
    futures_util::stream::poll_fn(move |cx| {
        let _owned = &task;
        rx.poll_recv(cx)
    })
    .boxed()
}

/// The end of the segment `start` is in.
fn segment_end(start: u64, total: u64) -> u64 {
    ((start / SEGMENT_BYTES + 1) * SEGMENT_BYTES).min(total)
}

/// A segment read ahead, whole, with the slot that holds its memory.
struct ReadAhead {
    frames: Vec<Bytes>,
    _slot: OwnedSemaphorePermit,
}

type Sender = mpsc::Sender<Result<Bytes, Failure>>;

/// The consumer went away: stop quietly.
struct Gone;

async fn produce(
    settings: RangedFetches,
    source: Arc<Source>,
    offset: u64,
    first: SourceBody,
    tx: Sender,
) -> Result<(), Failure> {
    let mut ahead: VecDeque<(u64, AbortOnDropHandle<Result<ReadAhead, Failure>>)> = VecDeque::new();
    let mut position = offset;
    let mut first = Some(first);
    // The first byte neither the current segment nor a read-ahead covers yet.
    let mut claimed = offset;
    while position < source.total {
        let end = segment_end(position, source.total);
        claimed = claimed.max(end);
        // Read ahead, while slots are free, up to the import's connections (the current one included).
        while ahead.len() + 1 < settings.per_import && claimed < source.total {
            let Ok(slot) = settings.slots.clone().try_acquire_owned() else { break };
            let (start, stop) = (claimed, segment_end(claimed, source.total));
            let fetch = read_ahead(source.clone(), start, stop, slot).instrument(tracing::Span::current());
            ahead.push_back((start, AbortOnDropHandle::new(tokio::spawn(fetch))));
            claimed = stop;
        }
        let sent = match ahead.front() {
            Some((start, _)) if *start == position => {
                let (_, handle) = ahead.pop_front().expect("a front");
                let segment = handle.await.map_err(|e| {
                    Failure::transient(FailureCode::Internal, format!("a range fetch ended unexpectedly: {e}"))
                })??;
                send_all(&tx, segment.frames).await
            }
            _ => {
                let stream = match first.take() {
                    Some(first) => first,
                    None => open(&source, position, end).await?,
                };
                pass(&tx, stream, end - position, &source).await?
            }
        };
        if sent.is_err() {
            return Ok(());
        }
        position = end;
    }
    Ok(())
}

async fn send_all(tx: &Sender, frames: Vec<Bytes>) -> Result<(), Gone> {
    for frame in frames {
        tx.send(Ok(frame)).await.map_err(|_| Gone)?;
    }
    Ok(())
}

/// Sends `len` bytes of `stream` on, the last frame cut at the segment's end; the rest is dropped.
async fn pass(tx: &Sender, mut stream: SourceBody, len: u64, source: &Source) -> Result<Result<(), Gone>, Failure> {
    let mut left = len;
    while left > 0 {
        let frame = next_within(&mut stream, &mut left, source).await?;
        if tx.send(Ok(frame)).await.is_err() {
            return Ok(Err(Gone));
        }
    }
    Ok(Ok(()))
}

/// The next frame of a range with `left` bytes to go, cut at its end (a source may send more than asked),
/// counted as arrived.
async fn next_within(stream: &mut SourceBody, left: &mut u64, source: &Source) -> Result<Bytes, Failure> {
    let stall = source.stall;
    let mut frame = match tokio::time::timeout(stall, stream.next()).await {
        Ok(Some(frame)) => frame?,
        Ok(None) => {
            return Err(Failure::transient(
                FailureCode::SourceUnreachable,
                "the source ended a range before its last byte",
            ));
        }
        Err(_) => {
            return Err(Failure::transient(
                FailureCode::Timeout,
                format!("the source sent nothing for {} s", stall.as_secs()),
            ));
        }
    };
    if frame.len() as u64 > *left {
        frame.truncate(*left as usize);
    }
    *left -= frame.len() as u64;
    source.arrived.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(frame)
}

async fn read_ahead(
    source: Arc<Source>,
    start: u64,
    end: u64,
    slot: OwnedSemaphorePermit,
) -> Result<ReadAhead, Failure> {
    let mut stream = open(&source, start, end).await?;
    let mut frames = Vec::new();
    let mut left = end - start;
    while left > 0 {
        frames.push(next_within(&mut stream, &mut left, &source).await?);
    }
    Ok(ReadAhead { frames, _slot: slot })
}

/// GETs `[start, end)` with `If-Range`; anything but that very range of that very version ends the attempt.
async fn open(source: &Source, start: u64, end: u64) -> Result<SourceBody, Failure> {
    let request = source
        .client
        .get(source.url.clone())
        .header(header::RANGE, format!("bytes={start}-{}", end - 1))
        .header(header::IF_RANGE, &source.validator);
    let response = match tokio::time::timeout(source.stall, request.send()).await {
        Err(_) => {
            return Err(Failure::transient(
                FailureCode::Timeout,
                format!("the source sent no response headers within {} s", source.stall.as_secs()),
            ));
        }
        Ok(Err(e)) => return Err(connect_failure(&e)),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let range = content_range(response.headers());
    if status != StatusCode::PARTIAL_CONTENT || range != Some((start, Some(source.total))) {
        return Err(Failure::transient(
            FailureCode::SourceHttpStatus,
            format!("the source changed while it was fetched (a range answered {status}); the import starts over"),
        ));
    }
    Ok(response
        .bytes_stream()
        .map_err(|e| Failure::transient(FailureCode::SourceUnreachable, format!("the source connection broke: {e}")))
        .boxed())
}
