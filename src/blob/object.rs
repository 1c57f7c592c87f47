//! [`BlobStore`] on S3, Google Cloud Storage and Azure Blob through `object_store`.
//!
//! An upload's staging area is one multipart upload on the object's own key (Azure: uncommitted blocks of
//! that blob), created at `begin`; each granule is one part; completing it makes the object. Credentials,
//! endpoints and regions come from each provider's usual environment variables, read by `object_store`'s
//! `from_env` builders (`AWS_*`; `GOOGLE_SERVICE_ACCOUNT`, …; `AZURE_STORAGE_*`, `AZURITE_BLOB_STORAGE_URL`):
//! filegate adds none of its own.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig};

use super::{BlobStore, ByteStream, Layout, Staging};
use crate::domain::random_alphanumeric;
use crate::error::{Error, Result, Unavailable};
use crate::telemetry::metric;

/// One part per 8 MiB granule: the granularity the upload protocol advertises, and above the 5 MiB
/// minimum of S3 and Google Cloud Storage.
pub const PART_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    S3,
    Gcs,
    Azure,
}

impl Provider {
    pub const fn scheme(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Gcs => "gs",
            Self::Azure => "az",
        }
    }
}

/// `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    pub provider: Provider,
    pub bucket: String,
    /// Without leading or trailing slash; empty for the bucket's root.
    pub prefix: String,
}

impl BucketUrl {
    pub fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let provider = match scheme {
            "s3" => Provider::S3,
            "gs" => Provider::Gcs,
            "az" => Provider::Azure,
            _ => return None,
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid =
            |s: &str| s != "." && s != ".." && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() || !valid(bucket) || !prefix.split('/').all(|p| p.is_empty() || valid(p)) {
            return None;
        }
        Some(Self { provider, bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl std::fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.provider.scheme(), self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

pub struct ObjectBlobStore {
    url: BucketUrl,
    store: Arc<dyn ObjectStore>,
    parts: Arc<dyn MultipartStore>,
}

/// A failure of the bucket: a missing object is a bug or lost data (500); anything else (the network,
/// the provider's 5xx after retries, throttling, credentials that stopped working) is worth a retry (503).
fn bucket_error(err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotFound { .. } | object_store::Error::InvalidPath { .. } => Error::internal(err),
        other => Error::Unavailable(Unavailable::Storage(format!("the bucket: {other}"))),
    }
}

/// A provider's secret read from the file `{name}_FILE` names, when `name` itself is not set: container
/// platforms mount secrets as files, and `object_store` reads only the variables.
fn secret_from_file(name: &str) -> Result<Option<String>> {
    let Some(path) = std::env::var_os(format!("{name}_FILE")) else { return Ok(None) };
    if std::env::var_os(name).is_some() {
        return Err(Error::internal(format!("{name} and {name}_FILE are both set: keep one")));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::internal(format!("{name}_FILE: cannot read {}: {e}", path.to_string_lossy())))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
}

fn retries() -> RetryConfig {
    RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..RetryConfig::default() }
}

impl ObjectBlobStore {
    /// Builds the client from the provider's environment variables.
    pub fn from_env(url: BucketUrl) -> Result<Self> {
        let config = |e: object_store::Error| Error::internal(format!("configuring {url}: {e}"));
        let (store, parts): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match url.provider {
            Provider::S3 => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env();
                if let Some(secret) = secret_from_file("AWS_SECRET_ACCESS_KEY")? {
                    builder = builder.with_secret_access_key(secret);
                }
                let s3 = builder.with_bucket_name(&url.bucket).with_retry(retries()).build().map_err(config)?;
                let s3 = Arc::new(s3);
                (s3.clone(), s3)
            }
            Provider::Gcs => {
                let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&url.bucket)
                    .with_retry(retries())
                    .build()
                    .map_err(config)?;
                let gcs = Arc::new(gcs);
                (gcs.clone(), gcs)
            }
            Provider::Azure => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env();
                if let Some(key) = secret_from_file("AZURE_STORAGE_ACCOUNT_KEY")? {
                    builder = builder.with_access_key(key);
                }
                let azure = builder.with_container_name(&url.bucket).with_retry(retries()).build().map_err(config)?;
                let azure = Arc::new(azure);
                (azure.clone(), azure)
            }
        };
        Ok(Self { url, store, parts })
    }

    fn path(&self, key: &str) -> Path {
        if self.url.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.url.prefix)) }
    }

    fn upload_id<'a>(&self, staging: &'a Staging) -> Result<&'a String> {
        staging.upload_id.as_ref().ok_or_else(|| Error::internal(format!("{} has no multipart upload", staging.key)))
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    fn describe(&self) -> String {
        format!("{} (multipart uploads in {} MiB parts)", self.url, PART_BYTES / (1024 * 1024))
    }

    fn layout(&self) -> Layout {
        Layout::Parts { granule: PART_BYTES }
    }

    #[tracing::instrument(name = "bucket.begin", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn begin(&self, staging: &Staging) -> Result<Option<String>> {
        let id = self.parts.create_multipart(&self.path(&staging.dest)).await.map_err(bucket_error)?;
        Ok(Some(id))
    }

    #[tracing::instrument(name = "bucket.write_at", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn write_at(&self, _staging: &Staging, _offset: u64, _data: ByteStream) -> Result<u64> {
        Err(Error::internal("a bucket takes parts, not bytes at offsets"))
    }

    #[tracing::instrument(name = "bucket.put_part", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn put_part(&self, staging: &Staging, index: u64, data: Bytes) -> Result<String> {
        let id = self.upload_id(staging)?;
        let index = usize::try_from(index).map_err(Error::internal)?;
        let started = std::time::Instant::now();
        let part = self
            .parts
            .put_part(&self.path(&staging.dest), id, index, PutPayload::from(data))
            .await
            .map_err(bucket_error)?;
        metrics::histogram!(metric::STORE_PART_SECONDS, "provider" => self.url.provider.scheme())
            .record(started.elapsed().as_secs_f64());
        Ok(part.content_id)
    }

    #[tracing::instrument(name = "bucket.complete", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn complete(&self, staging: &Staging, size: u64, parts: Vec<String>) -> Result<()> {
        let dest = self.path(&staging.dest);
        if size == 0 {
            // No store completes a multipart upload without parts: an empty file is a plain object.
            self.store.put(&dest, PutPayload::new()).await.map_err(bucket_error)?;
            return self.abort(staging).await;
        }
        let parts = parts.into_iter().map(|content_id| PartId { content_id }).collect();
        self.parts.complete_multipart(&dest, self.upload_id(staging)?, parts).await.map_err(bucket_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "bucket.abort", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn abort(&self, staging: &Staging) -> Result<()> {
        let Some(id) = &staging.upload_id else { return Ok(()) };
        match self.parts.abort_multipart(&self.path(&staging.dest), id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(bucket_error(e)),
        }
    }

    #[tracing::instrument(name = "bucket.put", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.store.put(&self.path(key), PutPayload::from(data)).await.map_err(bucket_error)?;
        Ok(())
    }

    #[tracing::instrument(name = "bucket.read", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream> {
        if range.is_empty() {
            return Ok(stream::empty().boxed());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..GetOptions::default() };
        let result = self.store.get_opts(&self.path(key), options).await.map_err(bucket_error)?;
        Ok(result.into_stream().map_err(bucket_error).boxed())
    }

    #[tracing::instrument(name = "bucket.delete", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(bucket_error(e)),
        }
    }

    #[tracing::instrument(name = "bucket.size", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(bucket_error(e)),
        }
    }

    #[tracing::instrument(name = "bucket.list_staging", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn list_staging(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    #[tracing::instrument(name = "bucket.list_objects", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn list_objects(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    fn storage_uri(&self, key: &str) -> Option<String> {
        Some(format!("{}://{}/{}", self.url.provider.scheme(), self.url.bucket, self.path(key)))
    }

    #[tracing::instrument(name = "bucket.probe", skip_all, fields(cloud.provider = self.url.provider.scheme()))]
    async fn probe(&self) -> Result<()> {
        let key = format!(".health-probe/{}", random_alphanumeric(16));
        self.put(&key, Bytes::from_static(b"ok")).await?;
        self.delete(&key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_name_provider_bucket_and_prefix() {
        let url = BucketUrl::parse("gs://media-bucket/filegate/prod/").unwrap();
        assert_eq!(
            (url.provider, url.bucket.as_str(), url.prefix.as_str()),
            (Provider::Gcs, "media-bucket", "filegate/prod")
        );
        assert_eq!(url.to_string(), "gs://media-bucket/filegate/prod");
        assert_eq!(BucketUrl::parse("s3://b").unwrap().prefix, "");
        assert_eq!(BucketUrl::parse("az://container/p").unwrap().provider, Provider::Azure);
        for bad in ["s3://", "ftp://b/p", "s3://b/../x", "gs://b c/p", "bucket/path"] {
            assert!(BucketUrl::parse(bad).is_none(), "{bad}");
        }
    }
}
