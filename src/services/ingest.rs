//! The one ingest engine of uploads and imports: append bytes after the committed offset, hash them, make
//! them durable; the caller then commits the new offset, hasher state and parts in one transaction.
//!
//! On a positional store (the local disk) the bytes are written at their offset and `fdatasync`ed. On a
//! parts store (a bucket) they are re-chunked into granule-sized parts, whatever sizes they arrive in: the
//! bytes after the last full part (the *tail*: a chunk that is not a multiple of the granule, an import that
//! stalled mid-part) are stored as a small object keyed by the offset they end at, and prepended to the next
//! bytes or made the last part at completion. So an acknowledged byte is always in the bucket, readable by
//! any node, and every part but the last has exactly the granule's size.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::meter::{Meter, metered};
use crate::blob::{BlobStore, ByteStream, Layout, Staging};
use crate::error::{Error, Result};
use crate::hash::ResumableSha256;
use crate::meta::{Garbage, PartRecord};

/// What an append made durable (not yet committed).
#[derive(Debug)]
pub struct Appended {
    /// Bytes taken from the body.
    pub written: u64,
    /// The running SHA-256 after them.
    pub hasher: ResumableSha256,
    /// Parts stored, in order (parts stores only).
    pub parts: Vec<PartRecord>,
}

/// The most bytes an append may take, and the error past them.
pub struct Cap {
    pub bytes: u64,
    pub overflow: Box<dyn Fn() -> Error + Send + Sync>,
}

/// Appends `body` after the `received` committed bytes of `staging`: hashes it (continuing `hasher`),
/// fails past `cap`, and makes it durable.
#[tracing::instrument(name = "ingest", skip_all, fields(offset = received, bytes = tracing::field::Empty, parts = tracing::field::Empty))]
pub async fn append(
    blobs: &dyn BlobStore,
    staging: &Staging,
    received: u64,
    hasher: ResumableSha256,
    body: ByteStream,
    cap: Cap,
) -> Result<Appended> {
    let meter = Arc::new(Mutex::new(Meter { bytes: 0, hasher }));
    let body = metered(body, meter.clone(), cap.bytes, cap.overflow);
    let parts = match blobs.layout() {
        Layout::Positional => {
            blobs.write_at(staging, received, body).await?;
            Vec::new()
        }
        Layout::Parts { granule } => append_parts(blobs, staging, received, granule, body).await?,
    };
    let meter = std::mem::take(&mut *meter.lock().expect("meter poisoned"));
    let span = tracing::Span::current();
    span.record("bytes", meter.bytes);
    span.record("parts", parts.len());
    Ok(Appended { written: meter.bytes, hasher: meter.hasher, parts })
}

async fn append_parts(
    blobs: &dyn BlobStore,
    staging: &Staging,
    received: u64,
    granule: u64,
    mut body: ByteStream,
) -> Result<Vec<PartRecord>> {
    let size = usize::try_from(granule).map_err(Error::internal)?;
    let mut pending = read_tail(blobs, staging, received, granule).await?;
    let mut index = received / granule;
    let mut parts = Vec::new();
    let mut end = received;
    while let Some(bytes) = body.next().await {
        let mut bytes = bytes?;
        end += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (size - pending.len()).min(bytes.len());
            pending.extend_from_slice(&bytes.split_to(take));
            if pending.len() == size {
                let part = std::mem::replace(&mut pending, BytesMut::with_capacity(size)).freeze();
                let id = blobs.put_part(staging, index, part).await?;
                parts.push(PartRecord { index, id });
                index += 1;
            }
        }
    }
    if end > received && !pending.is_empty() {
        blobs.put(&staging.tail_key(end), pending.freeze()).await?;
    }
    Ok(parts)
}

/// The bytes after the last full part of `received` committed bytes (empty when there are none).
async fn read_tail(blobs: &dyn BlobStore, staging: &Staging, received: u64, granule: u64) -> Result<BytesMut> {
    let len = received % granule;
    let mut tail = BytesMut::with_capacity(usize::try_from(granule).map_err(Error::internal)?);
    if len > 0 {
        let mut stream = blobs.read(&staging.tail_key(received), 0..len).await?;
        while let Some(bytes) = stream.try_next().await? {
            tail.extend_from_slice(&bytes);
        }
        if tail.len() as u64 != len {
            return Err(Error::internal(format!("the tail of {} has {} bytes, not {len}", staging.key, tail.len())));
        }
    }
    Ok(tail)
}

/// The tail object a commit of `written` more bytes after `received` leaves behind, to be queued for
/// deletion in that commit.
pub fn superseded_tail(layout: Layout, staging: &Staging, received: u64, written: u64) -> Option<Garbage> {
    match layout {
        Layout::Parts { granule } if written > 0 && received % granule != 0 => {
            Some(Garbage::object(&staging.tail_key(received)))
        }
        _ => None,
    }
}

/// Completes `staging` (`received` bytes, whose full parts are `parts`) into its object: the tail, if any,
/// becomes the last part. Returns the tail object, now garbage.
pub async fn complete(
    blobs: &dyn BlobStore,
    staging: &Staging,
    received: u64,
    parts: &[PartRecord],
) -> Result<Option<Garbage>> {
    let Layout::Parts { granule } = blobs.layout() else {
        blobs.complete(staging, received, Vec::new()).await?;
        return Ok(None);
    };
    if parts.iter().enumerate().any(|(i, part)| part.index != i as u64) || parts.len() as u64 != received / granule {
        return Err(Error::internal(format!("the parts of {} are not the {received} bytes committed", staging.key)));
    }
    let mut ids: Vec<String> = parts.iter().map(|p| p.id.clone()).collect();
    let tail = read_tail(blobs, staging, received, granule).await?;
    let consumed = (!tail.is_empty()).then(|| Garbage::object(&staging.tail_key(received)));
    if !tail.is_empty() {
        ids.push(blobs.put_part(staging, received / granule, tail.freeze()).await?);
    }
    blobs.complete(staging, received, ids).await?;
    Ok(consumed)
}
