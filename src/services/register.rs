//! `files:register`: objects that already live in Cloud Storage become files without copying their bytes,
//! so that data in a caller's bucket reaches Vertex AI by its own `gs://` URI through filegate.
//!
//! Each object is read once, streamed, for its SHA-256 and its type (its first bytes, then its name); its
//! size comes from the bucket. The file costs its project nothing against the quota (filegate holds no
//! bytes of it) but counts as a file; it expires like any other, and deleting it never deletes the
//! object (`blob/registered.rs`).
//!
//! filegate reads the objects with its own credentials, which may reach more than a caller should: only
//! objects the operator allows (`FILEGATE_REGISTER_BUCKETS`) may be registered, and never anything under
//! filegate's own blob store or staging bucket, whatever the patterns say. An object that is not allowed
//! and one that does not exist answer alike (403, Google's wording).

use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use sha2::{Digest as _, Sha256};

use super::lifecycle::{self, Companion, Demand};
use super::outbox::{self, EventType};
use crate::blob::{Blobs, BucketUrl, GcsObject};
use crate::config::Limits;
use crate::domain::registered_key;
use crate::domain::{FileId, FileRecord, FileState, Origin, ProjectId, Timestamp, glob_matches};
use crate::error::{Error, Result};
use crate::meta::MetaStore;

/// Objects one request may register.
pub const MAX_URIS: usize = 100;
/// Objects read at once.
const CONCURRENT_READS: usize = 4;
/// Bytes of an object's start kept to recognize its type.
const HEAD_BYTES: usize = 8192;

pub struct Registrar {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<Blobs>,
    limits: Limits,
    /// `gs://` patterns of what may be registered.
    allowed: Vec<String>,
    /// The locations that hold filegate's own bytes (its blob store, the Vertex staging bucket).
    own: Vec<BucketUrl>,
}

/// What reading an object found.
struct Examined {
    uri: String,
    size: u64,
    sha256: [u8; 32],
    mime_type: String,
}

/// The object `uri` names, in its canonical spelling (`blob/gcs.rs`), if the `allowed` patterns admit it
/// and it is not in one of filegate's `own` locations. Every guard looks at the canonical spelling only,
/// the one the store will read: `gs://b//prefix/files/…` is `gs://b/prefix/files/…`, and refused as such.
fn check_uri(uri: &str, allowed: &[String], own: &[BucketUrl]) -> Result<GcsObject> {
    let object = match GcsObject::parse(uri) {
        Ok(Some(object)) => object,
        Ok(None) => return Err(Error::invalid(format!("\"{uri}\" is not a gs://BUCKET/OBJECT URI."))),
        Err(message) => return Err(Error::invalid(message)),
    };
    if !object.store_reads_it_as_named() {
        return Err(Error::invalid(format!(
            "\"{}\": filegate cannot read an object whose name holds any of the characters % \\ {{ }} ^ [ ] ` \" < > # | ~ * ?",
            object.uri()
        )));
    }
    let filegates_own = own.iter().any(|location| object.could_be_under(location));
    if filegates_own || !allowed.iter().any(|pattern| glob_matches(pattern, &object.uri())) {
        return Err(Error::FileNotFound(uri.to_owned()));
    }
    Ok(object)
}

impl Registrar {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<Blobs>,
        limits: Limits,
        allowed: Vec<String>,
        own: Vec<BucketUrl>,
    ) -> Self {
        Self { meta, blobs, limits, allowed, own }
    }

    /// Registers every object of `uris` for `project`, or none of them.
    pub async fn register(&self, project: &ProjectId, uris: Vec<String>) -> Result<Vec<FileRecord>> {
        if self.allowed.is_empty() {
            return Err(Error::NotImplemented(
                "Registering gs:// objects is off on this server: its operator can allow buckets with \
                 FILEGATE_REGISTER_BUCKETS (for example gs://media-archive/*)."
                    .into(),
            ));
        }
        if uris.is_empty() || uris.len() > MAX_URIS {
            return Err(Error::invalid(format!("uris must name 1 to {MAX_URIS} gs:// objects.")));
        }
        let objects: Vec<GcsObject> =
            uris.iter().map(|uri| check_uri(uri, &self.allowed, &self.own)).collect::<Result<_>>()?;
        let examined: Vec<Examined> = stream::iter(objects.into_iter().map(|object| self.examine(object.uri())))
            .buffered(CONCURRENT_READS)
            .try_collect()
            .await?;

        let now = Timestamp::now();
        let expires_at = now.plus_seconds(self.limits.default_ttl.as_secs());
        let files: Vec<FileRecord> = examined
            .into_iter()
            .map(|object| FileRecord {
                project: project.clone(),
                id: FileId::generate(),
                display_name: object.uri.rsplit('/').next().map(str::to_owned),
                mime_type: object.mime_type,
                size_bytes: Some(object.size),
                sha256: Some(object.sha256),
                state: FileState::Ready,
                origin: Origin::Upload,
                blob_key: registered_key(&object.uri),
                charged_bytes: 0,
                created_at: now,
                updated_at: now,
                expires_at,
                error: None,
                import: None,
            })
            .collect();
        let mut tx = self.meta.write().await?;
        for file in &files {
            let demand = Demand { bytes: 0, file: true, upload: false, import: false };
            lifecycle::admit(tx.as_mut(), project, &self.limits, &demand, now).await?;
            lifecycle::add(tx.as_mut(), file, Companion::Registered).await?;
        }
        let active: Vec<(EventType, &FileRecord)> = files.iter().map(|file| (EventType::FileActive, file)).collect();
        outbox::queue_file_events(tx.as_mut(), &active, now).await?;
        tx.commit().await?;
        Ok(files)
    }

    /// Reads an object once: its size, SHA-256 and type.
    async fn examine(&self, uri: String) -> Result<Examined> {
        let key = registered_key(&uri);
        let size = self.blobs.size(&key).await?.ok_or_else(|| Error::FileNotFound(uri.clone()))?;
        if size > self.limits.max_file_bytes {
            return Err(Error::FileTooLarge { size, limit: self.limits.max_file_bytes });
        }
        let mut bytes = self.blobs.read(&key, 0..size).await?;
        let (mut hasher, mut head, mut read) = (Sha256::new(), Vec::new(), 0u64);
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            read += chunk.len() as u64;
            if head.len() < HEAD_BYTES {
                head.extend_from_slice(&chunk[..chunk.len().min(HEAD_BYTES - head.len())]);
            }
        }
        if read != size {
            return Err(Error::retry(format!("{uri} changed while it was read ({read} of {size} bytes).")));
        }
        let url = url::Url::parse(&uri).map_err(|e| Error::invalid(format!("\"{uri}\": {e}")))?;
        let mime_type = crate::services::imports::detect_mime(None, &head, &url);
        self.limits.media_types.check(&mime_type)?;
        Ok(Examined { uri, size, sha256: hasher.finalize().into(), mime_type })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_objects_outside_filegate_s_own_storage_may_be_registered() {
        let own = vec![BucketUrl::parse("gs://filegate-data/prod").unwrap(), BucketUrl::parse("gs://staging").unwrap()];
        let check = |uri: &str, allowed: &[&str]| {
            let allowed: Vec<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
            check_uri(uri, &allowed, &own)
        };
        assert_eq!(check("gs://media/talks/a.mp4", &["gs://*"]).unwrap().uri(), "gs://media/talks/a.mp4");
        assert!(check("gs://filegate-data/other/x", &["gs://*"]).is_ok(), "outside filegate's prefix");
        for own_object in [
            "gs://filegate-data/prod/files/alpha/x.1",
            "gs://filegate-data//prod/files/alpha/x.1",
            "gs://filegate-data///prod//files/alpha/x.1",
            "GS://filegate-data/prod/files/alpha/x.1",
            "https://storage.googleapis.com/filegate-data/prod/files/alpha/x.1",
            "https://filegate-data.storage.googleapis.com//prod/files/alpha/x.1",
            "https://filegate-data.storage.googleapis.com/prod%2Ffiles%2Falpha%2Fx.1",
            "gs://filegate-data/prod/staging/tok/tail-5",
            "gs://staging/files/alpha/x.1",
            "gs://staging//anything",
        ] {
            assert!(matches!(check(own_object, &["gs://*"]), Err(Error::FileNotFound(_))), "{own_object}");
        }
        for bad in [
            "gs://media",
            "gs://media/",
            "s3://media/a",
            "gs:///a",
            "gs://m/a/../b",
            "gs://filegate-data/prod/./files/alpha/x.1",
            "gs://filegate-data/prod%2Ffiles/alpha/x.1",
            "gs://media/100%.mp4",
        ] {
            assert!(matches!(check(bad, &["gs://*"]), Err(Error::InvalidArgument(_))), "{bad}");
        }
        assert!(check("gs://media/talks/a.mp4", &["gs://media/talks/*"]).is_ok());
        assert!(check("gs://media//talks/a.mp4", &["gs://media/talks/*"]).is_ok(), "checked as the store reads it");
        assert!(matches!(check("gs://media/private/a.mp4", &["gs://media/talks/*"]), Err(Error::FileNotFound(_))));
    }
}
