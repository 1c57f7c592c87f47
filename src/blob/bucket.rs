//! Buckets: S3, Google Cloud Storage and Azure Blob through `object_store`. An upload's staging area is
//! one multipart upload on the object's own key (Azure: uncommitted blocks of that blob), created at
//! `begin`; each granule is one part; completing it makes the object ([`PartStaging`]). Credentials,
//! endpoints and regions come from each provider's usual environment variables, read by `object_store`'s
//! `from_env` builders (`AWS_*`; `GOOGLE_SERVICE_ACCOUNT`, …; `AZURE_STORAGE_*`, `AZURITE_BLOB_STORAGE_URL`):
//! filegate adds none of its own, but reads `AWS_SECRET_ACCESS_KEY_FILE` and `AZURE_STORAGE_ACCOUNT_KEY_FILE`
//! as container platforms mount secrets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStore, PutPayload, RetryConfig};

use super::uploads::S3Uploads;
use super::{BlobError, BlobResult, Objects, PartStaging};

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

/// A bucket's multipart uploads, under its prefix.
pub struct BucketParts {
    objects: Objects,
    parts: Arc<dyn MultipartStore>,
    provider: &'static str,
    granule: u64,
}

/// What building a bucket's client from the environment gives: its objects and its multipart uploads
/// (and, on S3, the listing of those that are open).
pub struct BucketClients {
    pub store: Arc<dyn ObjectStore>,
    pub parts: Arc<dyn MultipartStore>,
    pub open_uploads: Option<Arc<S3Uploads>>,
}

fn retries() -> RetryConfig {
    RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..RetryConfig::default() }
}

/// A provider's secret read from the file `{name}_FILE` names, when `name` itself is not set: container
/// platforms mount secrets as files, and `object_store` reads only the variables.
fn secret_from_file(name: &str) -> BlobResult<Option<String>> {
    let Some(path) = std::env::var_os(format!("{name}_FILE")) else { return Ok(None) };
    if std::env::var_os(name).is_some() {
        return Err(BlobError::Other(format!("{name} and {name}_FILE are both set: keep one")));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BlobError::Other(format!("{name}_FILE: cannot read {}: {e}", path.to_string_lossy())))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// Whether S3 requests may leave their payload unsigned: when the endpoint is https (AWS itself when none is
/// named), TLS already guarantees the bytes arrive unaltered, and signing would hash every part a second time
/// beside the file's own SHA-256 (a third of filegate's CPU on an upload to S3, docs/benchmarks.md). Over
/// plain http the payload stays signed. botocore and the AWS CLI decide the same way;
/// `AWS_UNSIGNED_PAYLOAD` set explicitly wins.
fn payload_protected_by_tls(endpoint: Option<&str>) -> bool {
    endpoint.is_none_or(|e| e.to_ascii_lowercase().starts_with("https://"))
}

impl BucketClients {
    /// The clients of `url`'s bucket, from the provider's environment variables (nothing is sent).
    pub fn from_env(url: &BucketUrl) -> BlobResult<Self> {
        let config = |e: object_store::Error| BlobError::Other(format!("configuring {url}: {e}"));
        Ok(match url.provider {
            Provider::S3 => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env();
                if std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
                    let endpoint = builder.get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint);
                    builder = builder.with_unsigned_payload(payload_protected_by_tls(endpoint.as_deref()));
                }
                if let Some(secret) = secret_from_file("AWS_SECRET_ACCESS_KEY")? {
                    builder = builder.with_secret_access_key(secret);
                }
                let builder = builder.with_bucket_name(&url.bucket).with_retry(retries());
                let s3 = Arc::new(builder.clone().build().map_err(config)?);
                let open_uploads = Some(Arc::new(S3Uploads::new(&builder, &url.bucket, s3.clone())?));
                Self { store: s3.clone(), parts: s3, open_uploads }
            }
            Provider::Gcs => {
                let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&url.bucket)
                    .with_retry(retries())
                    .build()
                    .map_err(config)?;
                let gcs = Arc::new(gcs);
                Self { store: gcs.clone(), parts: gcs, open_uploads: None }
            }
            Provider::Azure => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env();
                if let Some(key) = secret_from_file("AZURE_STORAGE_ACCOUNT_KEY")? {
                    builder = builder.with_access_key(key);
                }
                let azure =
                    Arc::new(builder.with_container_name(&url.bucket).with_retry(retries()).build().map_err(config)?);
                Self { store: azure.clone(), parts: azure, open_uploads: None }
            }
        })
    }
}

impl BucketParts {
    pub fn new(objects: Objects, parts: Arc<dyn MultipartStore>, provider: &'static str) -> Self {
        Self { objects, parts, provider, granule: PART_BYTES }
    }

    /// Parts of another size: `InMemory` takes any, which lets tests exercise parts and tails with
    /// kilobytes instead of megabytes (real buckets want 5 MiB or more for every part but the last).
    pub fn with_granule(mut self, granule: u64) -> Self {
        self.granule = granule;
        self
    }
}

#[async_trait]
impl PartStaging for BucketParts {
    fn granule(&self) -> u64 {
        self.granule
    }

    fn provider(&self) -> &'static str {
        self.provider
    }

    #[tracing::instrument(name = "bucket.begin", skip_all, fields(cloud.provider = self.provider))]
    async fn begin(&self, dest: &str) -> BlobResult<String> {
        self.objects.guarded(async { Ok(self.parts.create_multipart(&self.objects.path(dest)).await?) }).await
    }

    #[tracing::instrument(name = "bucket.put_part", skip_all, fields(cloud.provider = self.provider, index))]
    async fn put_part(&self, dest: &str, upload_id: &str, index: u64, data: Bytes) -> BlobResult<String> {
        let index = usize::try_from(index).map_err(BlobError::other)?;
        let putting = async {
            Ok(self
                .parts
                .put_part(&self.objects.path(dest), &upload_id.to_owned(), index, PutPayload::from(data))
                .await?)
        };
        let part = self.objects.guarded(putting).await?;
        Ok(part.content_id)
    }

    #[tracing::instrument(name = "bucket.complete", skip_all, fields(cloud.provider = self.provider))]
    async fn complete(&self, dest: &str, upload_id: &str, parts: Vec<String>) -> BlobResult<()> {
        let path = self.objects.path(dest);
        if parts.is_empty() {
            // No store completes a multipart upload without parts: an empty file is a plain object.
            self.objects.put(dest, Bytes::new()).await?;
            return self.abort(dest, upload_id).await;
        }
        let parts = parts.into_iter().map(|content_id| PartId { content_id }).collect();
        let completing = async { Ok(self.parts.complete_multipart(&path, &upload_id.to_owned(), parts).await?) };
        self.objects.guarded(completing).await.map(|_| ())
    }

    #[tracing::instrument(name = "bucket.abort", skip_all, fields(cloud.provider = self.provider))]
    async fn abort(&self, dest: &str, upload_id: &str) -> BlobResult<()> {
        let aborting = async {
            match self.parts.abort_multipart(&self.objects.path(dest), &upload_id.to_owned()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                // `InMemory` (the tests' bucket) answers an upload it no longer has with a generic error.
                Err(object_store::Error::Generic { store: "InMemory", .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        };
        self.objects.guarded(aborting).await
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

    #[test]
    fn s3_payloads_are_signed_unless_tls_protects_them() {
        assert!(payload_protected_by_tls(None), "AWS itself is https");
        assert!(payload_protected_by_tls(Some("https://s3.eu-west-1.amazonaws.com")));
        assert!(payload_protected_by_tls(Some("HTTPS://minio.internal:9000")));
        assert!(!payload_protected_by_tls(Some("http://127.0.0.1:9000")));
        assert!(!payload_protected_by_tls(Some("minio.internal:9000")), "no scheme: not known to be TLS");
    }
}
