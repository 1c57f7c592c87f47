//! Staging on the local disk ([`PositionalStaging`]): one staging file per upload, written with positional
//! writes and `fdatasync`, completed by a hard link into `files/` (the staging name is removed afterwards),
//! so a crash at any point leaves either the staging file or both names, never a half-written object.
//! Finished objects are read, listed and deleted through `object_store`'s `LocalFileSystem` on the same
//! root ([`super::Objects`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::{BlobError, BlobResult, ByteStream, PositionalStaging};
use crate::domain::{BlobKey, Staging};
use crate::error::{Error, Result};

/// Writes reach the disk in buffers of this size: large enough for few system calls, small enough that
/// each request holds only a few of them.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Write buffers kept for the next request (and the next MiB of this one). A fresh 1 MiB buffer per MiB
/// made glibc hand memory back to the kernel and fault it in again zeroed: up to 50 000 page faults per
/// GiB uploaded, and uploads to tmpfs ~3 % slower (docs/benchmarks.md). At most this many stay idle.
const SPARE_BUFFERS_MAX: usize = 16;
static SPARE_BUFFERS: Mutex<Vec<BytesMut>> = Mutex::new(Vec::new());

fn take_buffer() -> BytesMut {
    let spare = SPARE_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
    spare.unwrap_or_else(|| BytesMut::with_capacity(WRITE_BUFFER))
}

/// Keeps a written buffer for reuse, when nothing else holds it and there is room.
fn give_back(buf: Bytes) {
    if let Ok(mut buf) = buf.try_into_mut() {
        buf.clear();
        let mut spare = SPARE_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buf.capacity() >= WRITE_BUFFER && spare.len() < SPARE_BUFFERS_MAX {
            spare.push(buf);
        }
    }
}

/// Staging files under `{root}/staging`, completed into `{root}/files`.
pub struct LocalStaging {
    root: PathBuf,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> BlobResult<T> {
    Ok(tokio::task::spawn_blocking(f).await.map_err(BlobError::other)??)
}

/// Asks the kernel to start writing a just-written range to disk now, without waiting for it.
///
/// A chunk is acknowledged only after `fdatasync`; started early, the writeback overlaps with receiving
/// the rest of the chunk, and the final `fdatasync` waits only for the tail. Without it, every chunk
/// would pay its whole disk write after its last byte arrived. Purely a hint: errors are ignored, and the
/// `fdatasync` that follows is what makes the bytes durable.
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
        // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor is borrowed from a
        // live `File`, so it is open for the duration of the call.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// Makes a directory entry (a new file, a link, a removal) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl LocalStaging {
    pub async fn open(root: PathBuf) -> BlobResult<Self> {
        let dirs = [root.join("files"), root.join("staging")];
        blocking(move || dirs.iter().try_for_each(fs::create_dir_all)).await?;
        Ok(Self { root })
    }

    /// Keys come back from the database: anything but a key filegate makes (which could leave the root)
    /// is refused.
    fn path(&self, key: &str) -> BlobResult<PathBuf> {
        match BlobKey::parse(key) {
            Some(BlobKey::File { .. } | BlobKey::Staging { .. }) => Ok(self.root.join(key)),
            _ => Err(BlobError::Other(format!("refusing blob key {key:?} on the local disk"))),
        }
    }
}

#[async_trait]
impl PositionalStaging for LocalStaging {
    async fn begin(&self, staging: &Staging) -> BlobResult<()> {
        let path = self.path(&staging.key)?;
        blocking(move || {
            let dir = path.parent().expect("staging keys have a directory");
            fs::create_dir_all(dir)?;
            OpenOptions::new().create(true).truncate(false).write(true).open(&path)?.sync_all()?;
            sync_dir(dir)
        })
        .await
    }

    async fn write_at(&self, staging: &Staging, offset: u64, mut data: ByteStream) -> Result<u64> {
        let path = self.path(&staging.key)?;
        // Created if missing: the database records a staging area before it exists, and a crash may come
        // between the two.
        let file = blocking(move || OpenOptions::new().create(true).truncate(false).write(true).open(path)).await?;
        // The network side fills buffers while a blocking thread writes the previous ones: the two
        // overlap, and at most a few buffers are held whatever the chunk size.
        let (tx, mut rx) = mpsc::channel::<Bytes>(2);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut position = offset;
            while let Some(buf) = rx.blocking_recv() {
                file.write_all_at(&buf, position)?;
                start_writeback(&file, position, buf.len() as u64);
                position += buf.len() as u64;
                give_back(buf);
            }
            file.sync_data()?;
            Ok(position - offset)
        });
        // Buffers are filled to exactly `WRITE_BUFFER`, splitting frames, so that none ever grows (a
        // reallocation and copy) and each can be reused as it is.
        let mut pending = take_buffer();
        let mut outcome = Ok(());
        'receive: while let Some(item) = data.next().await {
            match item {
                Ok(mut bytes) => {
                    while !bytes.is_empty() {
                        let take = (WRITE_BUFFER - pending.len()).min(bytes.len());
                        pending.extend_from_slice(&bytes.split_to(take));
                        if pending.len() == WRITE_BUFFER {
                            let full = std::mem::replace(&mut pending, take_buffer());
                            if tx.send(full.freeze()).await.is_err() {
                                break 'receive; // the writer failed; its error is reported below
                            }
                        }
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_ok() && !pending.is_empty() {
            let _ = tx.send(pending.freeze()).await;
        } else {
            give_back(pending.freeze());
        }
        drop(tx);
        let written = writer.await.map_err(Error::internal)?;
        outcome?;
        Ok(written.map_err(BlobError::from)?)
    }

    async fn complete(&self, staging: &Staging, size: u64) -> BlobResult<()> {
        let (staging, dest) = (self.path(&staging.key)?, self.path(&staging.dest)?);
        blocking(move || {
            let file = OpenOptions::new().write(true).open(&staging)?;
            file.set_len(size)?;
            file.sync_all()?;
            let dir = dest.parent().expect("object keys have a directory");
            fs::create_dir_all(dir)?;
            ignore_missing(fs::remove_file(&dest))?;
            fs::hard_link(&staging, &dest)?;
            sync_dir(dir)
        })
        .await
    }

    async fn abort(&self, staging: &Staging) -> BlobResult<()> {
        let path = self.path(&staging.key)?;
        blocking(move || ignore_missing(fs::remove_file(path))).await
    }
}
