//! The blob port: where file bytes live while they arrive (a staging area) and once they are complete (one
//! object per file, holding exactly its bytes).
//!
//! A store is a set of capabilities, each a narrow interface, so no adapter ever has a method it must
//! refuse at run time:
//!
//! - [`Objects`]: read a range, size, put a small object, delete, list: every store, through
//!   `object_store` (the local disk is its `LocalFileSystem`; tests use its `InMemory`);
//! - a [`Writer`], how the store takes an upload's bytes as they arrive, one of two:
//!   - [`PositionalStaging`] (the local disk): a staging file takes bytes at any offset, durably
//!     (`fdatasync`) when the write returns, and completing it links it in place as the object;
//!   - [`PartStaging`] (S3, Google Cloud Storage, Azure Blob): a staging area is one multipart upload on
//!     the object's key; bytes go up in parts of the store's granule, and completing the upload turns
//!     its parts into the object. Bytes that do not fill a part yet are kept as a small *tail* object
//!     next to the upload until the next bytes or the finalize make a part of them: acknowledged means
//!     stored in the bucket, readable by any node.
//!
//! [`Blobs`] puts them together with the reading of objects registered from callers' buckets. Everything
//! a node needs to continue an upload (its staging key, multipart id and part ids) is in the database,
//! so any node can take the next chunk or complete it; cleanup is driven from the database too, never by
//! listing a shared bucket. Hashing, offsets and sessions are the services' business
//! (`services/ingest.rs`); a store only keeps bytes. Failures have meanings ([`BlobError`]).

mod bucket;
mod budget;
#[cfg(test)]
mod conformance;
mod error;
mod gcs;
mod local;
mod objects;
mod port;
mod registered;
mod uploads;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::stream::BoxStream;
use object_store::ObjectStore;
use object_store::multipart::MultipartStore;

pub use bucket::{BucketClients, BucketParts, BucketUrl, PART_BYTES, Provider};
pub use budget::{DEFAULT_PARTS_IN_FLIGHT, DEFAULT_TRANSFER_MEMORY_BYTES, PartBudget, Reservation};
pub use error::{BlobError, BlobResult};
pub use gcs::GcsObject;
pub use local::LocalStaging;
pub use objects::{ObjectEntry, Objects};
pub use port::{ByteStream, PartStaging, PositionalStaging, Writer};
pub use uploads::OpenUpload;

use self::registered::Registered;
use crate::domain::{BlobKey, Staging, StorageKey};

/// A store's capabilities, and the reading of registered objects.
pub struct Blobs {
    objects: Objects,
    writer: Writer,
    registered: Registered,
    describe: String,
    /// Only a store this node alone uses (the local disk) may be listed for reconciliation.
    listable: bool,
    /// Parts in flight per transfer, and the node's memory for them (buckets only).
    budget: PartBudget,
    /// The listing of open multipart uploads, where the store has one (S3).
    open_uploads: Option<Arc<uploads::S3Uploads>>,
}

impl Blobs {
    /// The local disk under `root`: staging files in `staging/`, objects in `files/`.
    pub async fn local(root: PathBuf) -> BlobResult<Self> {
        let staging = LocalStaging::open(root.clone()).await?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            objects: Objects::new(Arc::new(store), "", None),
            writer: Writer::Positional(Arc::new(staging)),
            registered: Registered::default(),
            describe: format!("local filesystem at {} (fdatasync per write, hard-link completion)", root.display()),
            listable: true,
            budget: PartBudget::default(),
            open_uploads: None,
        })
    }

    /// A bucket, given its clients (from the environment: [`Blobs::from_env`]; in tests, `InMemory`).
    pub fn bucket(url: &BucketUrl, store: Arc<dyn ObjectStore>, parts: Arc<dyn MultipartStore>) -> Self {
        let base = format!("{}://{}", url.provider.scheme(), url.bucket);
        let objects = Objects::new(store, &url.prefix, Some(base));
        let staging = BucketParts::new(objects.clone(), parts, url.provider.scheme());
        Self {
            describe: format!("{url} (multipart uploads in {} MiB parts)", staging.granule() / (1024 * 1024)),
            objects,
            writer: Writer::Parts(Arc::new(staging)),
            registered: Registered::default(),
            listable: false,
            budget: PartBudget::default(),
            open_uploads: None,
        }
    }

    /// A bucket, its clients built from the provider's environment variables.
    pub fn from_env(url: &BucketUrl) -> BlobResult<Self> {
        let clients = BucketClients::from_env(url)?;
        Ok(Self { open_uploads: clients.open_uploads, ..Self::bucket(url, clients.store, clients.parts) })
    }

    /// A bucket in memory (`object_store`'s `InMemory`, multipart uploads included), for tests.
    pub fn in_memory() -> Self {
        Self::in_memory_with_granule(PART_BYTES)
    }

    /// A bucket in memory whose parts are `granule` bytes (tests of parts and tails with small files).
    pub fn in_memory_with_granule(granule: u64) -> Self {
        let store = Arc::new(object_store::memory::InMemory::new());
        Self::in_memory_over(store.clone(), store, granule)
    }

    /// A bucket in memory whose multipart uploads go through `parts` (tests that watch or slow them).
    pub fn in_memory_over(store: Arc<dyn ObjectStore>, parts: Arc<dyn MultipartStore>, granule: u64) -> Self {
        let url = BucketUrl::parse("s3://memory/filegate").expect("a valid bucket URL");
        let objects = Objects::new(store, &url.prefix, Some("s3://memory".into()));
        let staging = BucketParts::new(objects.clone(), parts, "memory").with_granule(granule);
        Self {
            describe: format!("memory (multipart uploads in parts of {granule} bytes)"),
            objects,
            writer: Writer::Parts(Arc::new(staging)),
            registered: Registered::default(),
            listable: false,
            budget: PartBudget::default(),
            open_uploads: None,
        }
    }

    /// One line for the start-up log: backend, location and what it can do.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The same store with another budget for parts in flight (the node's settings).
    pub fn with_part_budget(mut self, budget: PartBudget) -> Self {
        self.budget = budget;
        self
    }

    pub fn part_budget(&self) -> &PartBudget {
        &self.budget
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The store's own objects (tails included), without registered ones.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Creates a staging area; returns the multipart upload's id, if the store has one.
    pub async fn begin(&self, staging: &Staging) -> BlobResult<Option<String>> {
        match &self.writer {
            Writer::Positional(store) => store.begin(staging).await.map(|()| None),
            Writer::Parts(store) => store.begin(&staging.dest).await.map(Some),
        }
    }

    /// Removes a staging area and whatever it holds (idempotent); one never begun has nothing to remove.
    pub async fn abort(&self, staging: &Staging) -> BlobResult<()> {
        match (&self.writer, &staging.upload_id) {
            (Writer::Positional(store), _) => store.abort(staging).await,
            (Writer::Parts(store), Some(upload_id)) => store.abort(&staging.dest, upload_id).await,
            (Writer::Parts(_), None) => Ok(()),
        }
    }

    /// Streams `range` of a file's object, its own or a registered one.
    pub async fn read(&self, key: &StorageKey, range: Range<u64>) -> crate::error::Result<ByteStream> {
        match key.registered_uri() {
            Some(uri) => {
                let (bucket, object) = self.registered.bucket_of(uri)?;
                // The caller may delete their object: that is their doing, not lost data (a 500).
                if bucket.size(object).await?.is_none() {
                    return Err(crate::error::Error::FailedPrecondition(format!(
                        "The registered object {uri} no longer exists."
                    )));
                }
                Ok(bucket.read(object, range).await?)
            }
            None => Ok(self.objects.read(key, range).await?),
        }
    }

    /// An object's size, `None` when there is no such object.
    pub async fn size(&self, key: &StorageKey) -> BlobResult<Option<u64>> {
        match key.registered_uri() {
            Some(uri) => {
                let (bucket, object) = self.registered.bucket_of(uri)?;
                bucket.size(object).await
            }
            None => self.objects.size(key).await,
        }
    }

    /// Removes an object (idempotent). A registered file's object is the caller's: forgetting the file
    /// leaves it where it is.
    pub async fn delete(&self, key: &StorageKey) -> BlobResult<()> {
        match key.registered_uri() {
            Some(_) => Ok(()),
            None => self.objects.delete(key).await,
        }
    }

    /// Removes many objects at once (see [`Objects::delete_many`]); returns the keys that are gone. A
    /// registered file's object is the caller's, and counts as gone without being touched.
    pub async fn delete_many(&self, keys: &[String]) -> Vec<String> {
        let (registered, own): (Vec<String>, Vec<String>) =
            keys.iter().cloned().partition(|key| matches!(BlobKey::parse(key), Some(BlobKey::Registered { .. })));
        let mut gone = registered;
        gone.extend(self.objects.delete_many(&own).await);
        gone
    }

    /// The object's URI for services that read buckets directly (`gs://…`, `s3://…`, `az://…`); `None` on
    /// the local disk.
    pub fn storage_uri(&self, key: &StorageKey) -> Option<String> {
        match key.registered_uri() {
            Some(uri) => Some(uri.to_owned()),
            None => self.objects.storage_uri(key),
        }
    }

    /// The keys under `dir` (`staging`, `files`), for the start-up reconciliation of a store only this
    /// node uses; `None` for a shared bucket, which is never listed.
    pub async fn list(&self, dir: &str) -> BlobResult<Option<Vec<String>>> {
        if !self.listable {
            return Ok(None);
        }
        self.objects.list(dir).await.map(Some)
    }

    /// A small write and its removal, for the health check: fails while writes fail.
    pub async fn probe(&self) -> BlobResult<()> {
        self.objects.probe().await
    }

    /// Asks the store something small every second, on its own, until `shutdown`: once nothing has answered
    /// for 4 s, every operation under way ends with `Unavailable` and new ones fail at once, until the first
    /// answer ([`crate::outage`]). The questions overlap (each may take up to 10 s), so that a bucket that
    /// is slow but alive — every answer a few seconds late — is never taken for a vanished one. For buckets,
    /// whose host may vanish without closing anything; the local disk answers or fails by itself.
    pub async fn watch_reachability(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        use std::time::Duration;
        const EVERY: Duration = Duration::from_secs(1);
        const PATIENCE: Duration = Duration::from_secs(10);
        const SILENCE: Duration = Duration::from_secs(4);
        let mut silence = crate::outage::Silence::new(SILENCE);
        let mut asking = tokio::task::JoinSet::new();
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    // Bounded by PATIENCE / EVERY questions in flight.
                    let store = self.clone();
                    asking.spawn(async move { store.objects.answers(PATIENCE).await });
                    silence.check(self.objects.guard())
                }
                Some(Ok(true)) = asking.join_next(), if !asking.is_empty() => silence.answered(self.objects.guard()),
            };
            match changed {
                Some(true) => tracing::warn!(
                    store = %self.describe,
                    "the blob store stopped answering: requests that need it fail fast until it is back"
                ),
                Some(false) => tracing::warn!(store = %self.describe, "the blob store answers again"),
                None => {}
            }
        }
    }

    /// Whether several nodes may use the store at once (a bucket, reached over the network) rather than one
    /// node's own disk: writers of one upload must then be claimed in the database, and the store's
    /// reachability is watched. What the services ask, rather than which kind of store it is.
    pub fn is_shared(&self) -> bool {
        matches!(self.writer, Writer::Parts(_))
    }

    /// The size of the parts the store takes bytes in (a bucket's multipart upload), where it takes them in
    /// parts; `None` for a store written at any offset. The bytes after the last full part are a tail.
    pub fn part_granule(&self) -> Option<u64> {
        match &self.writer {
            Writer::Parts(store) => Some(store.granule()),
            Writer::Positional(_) => None,
        }
    }

    /// Removes something the store holds that nothing owns (fsck's orphans): a local staging file the way
    /// its staging area goes, anything else as an object.
    pub async fn delete_orphan(&self, key: &str) -> BlobResult<()> {
        match (&self.writer, BlobKey::parse(key)) {
            (Writer::Positional(store), Some(BlobKey::Staging { .. })) => {
                store.abort(&Staging { key: key.to_owned(), dest: String::new(), upload_id: None }).await
            }
            _ => self.objects.delete(key).await,
        }
    }

    /// The open multipart uploads of files' objects, where the store can list them (S3); `None` elsewhere.
    pub fn open_uploads(&self) -> Option<BoxStream<'static, BlobResult<OpenUpload>>> {
        let lister = self.open_uploads.clone()?;
        let root = self.objects.path("").to_string();
        Some(lister.list(format!("{}/", self.objects.path("files")), root))
    }

    /// Aborts an open multipart upload (idempotent).
    pub async fn abort_upload(&self, upload: &OpenUpload) -> BlobResult<()> {
        match &self.writer {
            Writer::Parts(store) => store.abort(&upload.key, &upload.upload_id).await,
            Writer::Positional(_) => Ok(()),
        }
    }
}
