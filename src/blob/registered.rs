//! Files registered from a caller's own Cloud Storage bucket (`files:register`): their bytes stay where
//! they are. Such a file's blob key is `registered/{generation}/gs://bucket/object` — unique per
//! registration, like every blob key, so one object registered twice is two files — and this store reads it
//! from that bucket, reports the object's own `gs://` URI as the file's storage URI, and never deletes it:
//! deleting or expiring the file forgets the registration, the caller's object stays.
//!
//! Everything else goes to the store filegate keeps its own bytes in. The registered objects are read
//! with filegate's Google credentials (the `GOOGLE_*` variables of `object_store`), which is why only the
//! buckets the operator allows (`FILEGATE_REGISTER_BUCKETS`) may be registered (`services/register.rs`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::object::Provider;
use super::{BlobStore, BucketUrl, ByteStream, Layout, ObjectBlobStore, Staging};
use crate::domain::random_alphanumeric;
use crate::error::{Error, Result};

const PREFIX: &str = "registered/";

/// The blob key of a new registration of `uri` (`gs://bucket/object`).
pub fn registered_key(uri: &str) -> String {
    format!("{PREFIX}{}/{uri}", random_alphanumeric(8))
}

/// The `gs://` URI a registered file's blob key names; `None` for filegate's own blobs.
pub fn registered_uri(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?.split_once('/').map(|(_, uri)| uri)
}

/// A blob store that also reads registered objects from their own buckets.
pub struct WithRegistered {
    own: Arc<dyn BlobStore>,
    /// One client per bucket, made on first use.
    buckets: Mutex<HashMap<String, Arc<ObjectBlobStore>>>,
}

impl WithRegistered {
    pub fn new(own: Arc<dyn BlobStore>) -> Self {
        Self { own, buckets: Mutex::new(HashMap::new()) }
    }

    /// The client of a registered object's bucket, and the object's key in it.
    fn bucket_of<'a>(&self, uri: &'a str) -> Result<(Arc<ObjectBlobStore>, &'a str)> {
        let (bucket, object) = uri
            .strip_prefix("gs://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| Error::internal(format!("a registered file names {uri}")))?;
        let mut buckets = self.buckets.lock().expect("bucket clients poisoned");
        if let Some(client) = buckets.get(bucket) {
            return Ok((client.clone(), object));
        }
        let url = BucketUrl { provider: Provider::Gcs, bucket: bucket.to_owned(), prefix: String::new() };
        let client = Arc::new(ObjectBlobStore::from_env(url)?);
        buckets.insert(bucket.to_owned(), client.clone());
        Ok((client, object))
    }
}

fn not_for_registered(key: &str) -> Error {
    Error::internal(format!("{key} is a registered object: filegate never writes it"))
}

#[async_trait]
impl BlobStore for WithRegistered {
    fn describe(&self) -> String {
        self.own.describe()
    }

    fn layout(&self) -> Layout {
        self.own.layout()
    }

    async fn begin(&self, staging: &Staging) -> Result<Option<String>> {
        self.own.begin(staging).await
    }

    async fn write_at(&self, staging: &Staging, offset: u64, data: ByteStream) -> Result<u64> {
        self.own.write_at(staging, offset, data).await
    }

    async fn put_part(&self, staging: &Staging, index: u64, data: Bytes) -> Result<String> {
        self.own.put_part(staging, index, data).await
    }

    async fn complete(&self, staging: &Staging, size: u64, parts: Vec<String>) -> Result<()> {
        self.own.complete(staging, size, parts).await
    }

    async fn abort(&self, staging: &Staging) -> Result<()> {
        self.own.abort(staging).await
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        match registered_uri(key) {
            Some(_) => Err(not_for_registered(key)),
            None => self.own.put(key, data).await,
        }
    }

    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream> {
        match registered_uri(key) {
            Some(uri) => {
                let (bucket, object) = self.bucket_of(uri)?;
                // The caller may delete their object: that is their doing, not lost data (a 500).
                if bucket.size(object).await?.is_none() {
                    return Err(Error::FailedPrecondition(format!("The registered object {uri} no longer exists.")));
                }
                bucket.read(object, range).await
            }
            None => self.own.read(key, range).await,
        }
    }

    /// A registered file's object is the caller's: forgetting the file leaves it where it is.
    async fn delete(&self, key: &str) -> Result<()> {
        match registered_uri(key) {
            Some(_) => Ok(()),
            None => self.own.delete(key).await,
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        match registered_uri(key) {
            Some(uri) => {
                let (bucket, object) = self.bucket_of(uri)?;
                bucket.size(object).await
            }
            None => self.own.size(key).await,
        }
    }

    async fn list_staging(&self) -> Result<Option<Vec<String>>> {
        self.own.list_staging().await
    }

    async fn list_objects(&self) -> Result<Option<Vec<String>>> {
        self.own.list_objects().await
    }

    fn storage_uri(&self, key: &str) -> Option<String> {
        match registered_uri(key) {
            Some(uri) => Some(uri.to_owned()),
            None => self.own.storage_uri(key),
        }
    }

    async fn probe(&self) -> Result<()> {
        self.own.probe().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_keys_are_unique_and_name_their_object() {
        let (a, b) = (registered_key("gs://media/talks/a b.mp4"), registered_key("gs://media/talks/a b.mp4"));
        assert_ne!(a, b, "one object registered twice is two files");
        assert_eq!(registered_uri(&a), Some("gs://media/talks/a b.mp4"));
        assert_eq!(registered_uri("files/alpha/abc.1234"), None);
        assert_eq!(registered_uri("staging/xyz"), None);
    }
}
