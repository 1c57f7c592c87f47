//! Files registered from a caller's own Cloud Storage bucket (`files:register`): their bytes stay where
//! they are. Such a file's blob key is `registered/{generation}/gs://bucket/object` (`domain::storage`);
//! its bytes are read from that bucket, its storage URI is the object's own, and it is never deleted:
//! deleting or expiring the file forgets the registration, the caller's object stays.
//!
//! The objects are read with filegate's Google credentials (the `GOOGLE_*` variables of `object_store`),
//! which is why only the buckets the operator allows (`FILEGATE_REGISTER_BUCKETS`) may be registered
//! (`services/register.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use super::{BlobError, BlobResult, BucketClients, BucketUrl, Objects, Provider};

/// One client per registered bucket, made on first use.
#[derive(Default)]
pub struct Registered {
    buckets: Mutex<HashMap<String, Objects>>,
}

impl Registered {
    /// The objects of `uri`'s bucket, and the object's key in it.
    pub fn bucket_of<'a>(&self, uri: &'a str) -> BlobResult<(Objects, &'a str)> {
        let (bucket, object) = uri
            .strip_prefix("gs://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| BlobError::Other(format!("a registered file names {uri}")))?;
        let mut buckets = self.buckets.lock().expect("bucket clients poisoned");
        if let Some(objects) = buckets.get(bucket) {
            return Ok((objects.clone(), object));
        }
        let url = BucketUrl { provider: Provider::Gcs, bucket: bucket.to_owned(), prefix: String::new() };
        let clients = BucketClients::from_env(&url)?;
        let objects = Objects::new(clients.store, "", Some(format!("gs://{bucket}")));
        buckets.insert(bucket.to_owned(), objects.clone());
        Ok((objects, object))
    }
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registered(..)")
    }
}
