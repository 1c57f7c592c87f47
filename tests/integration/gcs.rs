//! A small in-process fake of Google Cloud Storage's XML API, for `object_store`'s GCS client: no emulator
//! here speaks its multipart calls. It serves object PUT/GET (with `Range`)/HEAD/DELETE, multipart
//! `?uploads`, `?partNumber&uploadId`, complete and abort, and the `list-type=2` listing, keeps everything
//! in memory, and lets tests see what is stored and which uploads are open. `object_store` is pointed at it
//! with a service-account file holding `gcs_base_url` and `disable_oauth: true`, its documented test hook.
//! `fake_speaks_the_wire_object_store_expects` drives it with the real client.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Default)]
struct Upload {
    key: String,
    parts: BTreeMap<u32, Bytes>,
}

#[derive(Default)]
struct Buckets {
    objects: HashMap<String, Bytes>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
}

#[derive(Clone)]
pub struct FakeGcs {
    pub url: String,
    state: Arc<Mutex<Buckets>>,
}

impl FakeGcs {
    /// The one fake of this test process, started on first use.
    pub fn shared() -> &'static FakeGcs {
        static FAKE: OnceLock<FakeGcs> = OnceLock::new();
        FAKE.get_or_init(|| {
            let state = Arc::new(Mutex::new(Buckets::default()));
            let (tx, rx) = std::sync::mpsc::channel();
            let app_state = state.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(listener.local_addr().unwrap()).unwrap();
                    let app = axum::Router::new()
                        .route("/{bucket}", axum::routing::get(list))
                        .route("/{bucket}/{*key}", axum::routing::any(object))
                        .layer(axum::extract::DefaultBodyLimit::disable())
                        .with_state(app_state);
                    axum::serve(listener, app).await.unwrap();
                });
            });
            let addr = rx.recv().unwrap();
            FakeGcs { url: format!("http://{addr}"), state }
        })
    }

    /// A service-account file that points `object_store` at this fake, written under `dir`.
    pub fn service_account(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("gcs-service-account.json");
        let account = serde_json::json!({
            "private_key": "unused", "private_key_id": "unused", "client_email": "filegate-test@example.invalid",
            "disable_oauth": true, "gcs_base_url": self.url,
        });
        std::fs::write(&path, account.to_string()).unwrap();
        path
    }

    /// Stored objects whose `bucket/key` starts with `prefix`.
    pub fn objects(&self, prefix: &str) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    /// Open multipart uploads whose `bucket/key` starts with `prefix`.
    pub fn open_uploads(&self, prefix: &str) -> usize {
        self.state.lock().unwrap().uploads.values().filter(|u| u.key.starts_with(prefix)).count()
    }
}

fn etag(bytes: &[u8]) -> String {
    format!("\"{}\"", &crate::support::sha256_hex(bytes)[..32])
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn not_found() -> Response {
    xml(StatusCode::NOT_FOUND, "<Error><Code>NoSuchKey</Code><Message>No such object.</Message></Error>".into())
}

/// `bytes=a-b` → a..=b within `len`.
fn range(headers: &HeaderMap, len: usize) -> Option<std::ops::Range<usize>> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end = if end.is_empty() { len } else { end.parse::<usize>().ok()?.saturating_add(1).min(len) };
    Some(start..end)
}

async fn object(
    State(state): State<Arc<Mutex<Buckets>>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full = format!("{bucket}/{key}");
    let mut buckets = state.lock().unwrap();
    match (method.as_str(), query.get("uploadId")) {
        ("POST", None) if query.contains_key("uploads") => {
            buckets.next_upload += 1;
            let id = format!("upload-{}", buckets.next_upload);
            buckets.uploads.insert(id.clone(), Upload { key: full, parts: BTreeMap::new() });
            let body = format!(
                "<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
            );
            xml(StatusCode::OK, body)
        }
        ("PUT", Some(id)) => {
            let Some(upload) = buckets.uploads.get_mut(id) else { return not_found() };
            let number: u32 = query.get("partNumber").and_then(|n| n.parse().ok()).unwrap_or(0);
            let tag = etag(&body);
            upload.parts.insert(number, body);
            (StatusCode::OK, [(header::ETAG, tag)]).into_response()
        }
        ("POST", Some(id)) => {
            let Some(upload) = buckets.uploads.remove(id) else { return not_found() };
            // <Part><PartNumber>n</PartNumber><ETag>"…"</ETag></Part>, in order.
            let text = String::from_utf8_lossy(&body).into_owned();
            let mut assembled = Vec::new();
            for part in text.split("<Part>").skip(1) {
                let number: u32 = between(part, "<PartNumber>", "</PartNumber>").parse().unwrap_or(0);
                let wanted = between(part, "<ETag>", "</ETag>").trim_matches('"').to_owned();
                match upload.parts.get(&number) {
                    Some(bytes) if etag(bytes).trim_matches('"') == wanted => assembled.extend_from_slice(bytes),
                    _ => {
                        buckets.uploads.insert(id.clone(), upload);
                        return xml(StatusCode::BAD_REQUEST, "<Error><Code>InvalidPart</Code></Error>".into());
                    }
                }
            }
            let tag = etag(&assembled);
            buckets.objects.insert(full, Bytes::from(assembled));
            let body = format!(
                "<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{tag}</ETag></CompleteMultipartUploadResult>"
            );
            xml(StatusCode::OK, body)
        }
        ("DELETE", Some(id)) => match buckets.uploads.remove(id) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => not_found(),
        },
        ("PUT", None) => {
            let tag = etag(&body);
            buckets.objects.insert(full, body);
            (StatusCode::OK, [(header::ETAG, tag)]).into_response()
        }
        ("GET" | "HEAD", None) => {
            let Some(bytes) = buckets.objects.get(&full).cloned() else { return not_found() };
            let mut response = Response::new(Body::empty());
            let (status, slice) = match range(&headers, bytes.len()) {
                Some(r) if r.start < r.end => {
                    let value = format!("bytes {}-{}/{}", r.start, r.end - 1, bytes.len());
                    response.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).unwrap());
                    (StatusCode::PARTIAL_CONTENT, bytes.slice(r))
                }
                Some(_) => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
                None => (StatusCode::OK, bytes.clone()),
            };
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(header::ETAG, HeaderValue::from_str(&etag(&bytes)).unwrap());
            headers.insert(header::LAST_MODIFIED, HeaderValue::from_static("Sat, 28 Nov 2026 12:00:00 GMT"));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(slice.len()));
            if method == Method::GET {
                *response.body_mut() = Body::from(slice);
            }
            response
        }
        ("DELETE", None) => match buckets.objects.remove(&full) {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => not_found(),
        },
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    text.split_once(open).and_then(|(_, rest)| rest.split_once(close)).map_or("", |(inner, _)| inner)
}

/// `GET /{bucket}?list-type=2&prefix=…`
async fn list(
    State(state): State<Arc<Mutex<Buckets>>>,
    Path(bucket): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let buckets = state.lock().unwrap();
    let mut contents = String::new();
    let mut keys: Vec<(&String, &Bytes)> = buckets.objects.iter().collect();
    keys.sort();
    for (full, bytes) in keys {
        let Some(key) = full.strip_prefix(&format!("{bucket}/")) else { continue };
        if key.starts_with(&prefix) {
            contents.push_str(&format!(
                "<Contents><Key>{key}</Key><Size>{}</Size><LastModified>2026-11-28T12:00:00.000Z</LastModified><ETag>{}</ETag></Contents>",
                bytes.len(),
                etag(bytes)
            ));
        }
    }
    let body = format!(
        "<ListBucketResult><Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
    );
    xml(StatusCode::OK, body)
}

#[tokio::test]
async fn fake_speaks_the_wire_object_store_expects() {
    use futures_util::TryStreamExt as _;
    use object_store::multipart::MultipartStore as _;
    use object_store::path::Path as ObjectPath;
    use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _, PutPayload};

    let fake = FakeGcs::shared();
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_service_account_path(fake.service_account(dir.path()).to_str().unwrap())
        .with_bucket_name("wire-check")
        .build()
        .unwrap();
    let path = ObjectPath::from("a/b.bin");
    store.put(&path, PutPayload::from_static(b"0123456789")).await.unwrap();
    assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"0123456789");
    let ranged = GetOptions { range: Some(GetRange::Bounded(2..5)), ..GetOptions::default() };
    assert_eq!(store.get_opts(&path, ranged).await.unwrap().bytes().await.unwrap().as_ref(), b"234");
    assert_eq!(store.head(&path).await.unwrap().size, 10);
    let listed: Vec<_> = store.list(Some(&ObjectPath::from("a"))).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);

    let big = ObjectPath::from("a/multi.bin");
    let id = store.create_multipart(&big).await.unwrap();
    let p0 = store.put_part(&big, &id, 0, PutPayload::from(vec![1u8; 100])).await.unwrap();
    let p1 = store.put_part(&big, &id, 1, PutPayload::from(vec![2u8; 50])).await.unwrap();
    assert_eq!(fake.open_uploads("wire-check/"), 1);
    store.complete_multipart(&big, &id, vec![p0, p1]).await.unwrap();
    let got = store.get(&big).await.unwrap().bytes().await.unwrap();
    assert_eq!((got.len(), got[0], got[149]), (150, 1, 2));
    let aborted = store.create_multipart(&big).await.unwrap();
    store.abort_multipart(&big, &aborted).await.unwrap();
    assert_eq!(fake.open_uploads("wire-check/"), 0);
    store.delete(&path).await.unwrap();
    assert!(matches!(store.get(&path).await, Err(object_store::Error::NotFound { .. })));
}
