//! A bucket's open multipart uploads, listed: what `filegate fsck` compares with the staging areas the
//! database records, to find uploads nobody owns (a node killed between creating an upload and recording
//! its id). `object_store` has no such listing, so this sends S3's own `ListMultipartUploads`, signed by
//! `rusty-s3` with the credentials `object_store` resolved (keys, session tokens, instance roles alike).
//!
//! Google Cloud Storage and Azure are not listed: a bucket lifecycle rule (GCS's
//! `AbortIncompleteMultipartUpload`) or Azure's own expiry of uncommitted blocks (7 days) removes what
//! nobody completes; docs/operations.md says so.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use serde::Deserialize;

use super::{BlobError, BlobResult};
use crate::domain::Timestamp;

/// An open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The object it would complete, as a key under the store's prefix.
    pub key: String,
    pub upload_id: String,
    pub initiated: Timestamp,
}

/// A listing is refused past this size: a page of 1 000 uploads is about 400 KiB.
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Lists an S3 bucket's open multipart uploads.
pub struct S3Uploads {
    http: reqwest::Client,
    bucket: rusty_s3::Bucket,
    region: String,
    store: Arc<AmazonS3>,
}

impl S3Uploads {
    /// From the builder `store` was built with (its endpoint, region and addressing style).
    pub fn new(builder: &AmazonS3Builder, bucket: &str, store: Arc<AmazonS3>) -> BlobResult<Self> {
        let value = |key| builder.get_config_value(&key);
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = value(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let (endpoint, style) = match value(AmazonS3ConfigKey::Endpoint) {
            Some(endpoint) if !virtual_hosted => (endpoint, rusty_s3::UrlStyle::Path),
            Some(endpoint) => (endpoint, rusty_s3::UrlStyle::VirtualHost),
            None => (format!("https://s3.{region}.amazonaws.com"), rusty_s3::UrlStyle::VirtualHost),
        };
        let invalid = |e: &dyn std::fmt::Display| BlobError::Other(format!("the S3 endpoint {endpoint}: {e}"));
        let url = endpoint.parse().map_err(|e| invalid(&e))?;
        let bucket = rusty_s3::Bucket::new(url, style, bucket.to_owned(), region.clone()).map_err(|e| invalid(&e))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(BlobError::other)?;
        Ok(Self { http, bucket, region, store })
    }

    /// The open uploads whose keys start with `prefix` (the store's prefix and a directory), page by page.
    pub fn list(self: Arc<Self>, prefix: String, strip: String) -> BoxStream<'static, BlobResult<OpenUpload>> {
        let pages = futures_util::stream::try_unfold(Some(None), move |marker: Option<Option<(String, String)>>| {
            let (lister, prefix, strip) = (self.clone(), prefix.clone(), strip.clone());
            async move {
                let Some(marker) = marker else { return Ok(None) };
                let page = lister.page(&prefix, marker.as_ref()).await?;
                let uploads: Vec<BlobResult<OpenUpload>> = page
                    .uploads
                    .into_iter()
                    .map(|u| {
                        let key = u.key.strip_prefix(&strip).unwrap_or(&u.key).trim_start_matches('/').to_owned();
                        let initiated = u.initiated.parse::<jiff::Timestamp>().map_err(BlobError::other)?;
                        Ok(OpenUpload {
                            key,
                            upload_id: u.upload_id,
                            initiated: Timestamp::from_micros(initiated.as_microsecond()),
                        })
                    })
                    .collect();
                let next = match (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) {
                    (true, Some(key), Some(id)) => Some(Some((key, id))),
                    _ => None,
                };
                Ok::<_, BlobError>(Some((futures_util::stream::iter(uploads), next)))
            }
        });
        pages.try_flatten().boxed()
    }

    async fn page(&self, prefix: &str, marker: Option<&(String, String)>) -> BlobResult<ListUploadsPage> {
        let credential = self.store.credentials().get_credential().await.map_err(BlobError::from)?;
        // Sorted by name, as the signature wants them.
        let mut query = vec![("prefix", prefix), ("uploads", "")];
        if let Some((key, id)) = marker {
            query.extend([("key-marker", key.as_str()), ("upload-id-marker", id.as_str())]);
        }
        query.sort();
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Get,
            self.bucket.base_url().clone(),
            &credential.key_id,
            &credential.secret_key,
            credential.token.as_deref(),
            &self.region,
            60,
            query.into_iter(),
            std::iter::empty(),
        );
        let failed = |e: reqwest::Error| BlobError::Other(format!("listing multipart uploads: {}", e.without_url()));
        let response = self.http.get(url).send().await.map_err(failed)?;
        let status = response.status();
        let body = read_bounded(response).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(BlobError::Other(format!("listing multipart uploads: {status}: {text}")));
        }
        quick_xml::de::from_reader(body.as_slice())
            .map_err(|e| BlobError::Other(format!("listing multipart uploads: an answer that is not S3's: {e}")))
    }
}

async fn read_bounded(response: reqwest::Response) -> BlobResult<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| BlobError::Other(format!("listing multipart uploads: {}", e.without_url())))?;
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(BlobError::Other(format!("a page of multipart uploads over {MAX_PAGE_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `ListMultipartUploadsResult`, the parts fsck reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploadsPage {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<ListedUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListedUpload {
    key: String,
    upload_id: String,
    initiated: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_s3_s_answer_reads_as_its_uploads_and_where_the_next_starts() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/files/a/x.1</NextKeyMarker><NextUploadIdMarker>id-2</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/files/a/w.1</Key><UploadId>id-1</UploadId><Initiated>2026-12-07T10:00:00.000Z</Initiated>
    <StorageClass>STANDARD</StorageClass></Upload>
  <Upload><Key>p/files/a/x.1</Key><UploadId>id-2</UploadId><Initiated>2026-12-07T11:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListUploadsPage = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id-2"));
        assert_eq!(page.uploads.iter().map(|u| u.upload_id.as_str()).collect::<Vec<_>>(), ["id-1", "id-2"]);
        let empty = r#"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#;
        assert!(quick_xml::de::from_str::<ListUploadsPage>(empty).unwrap().uploads.is_empty());
    }
}
