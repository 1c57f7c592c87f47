//! The protocol's rules as properties, over real stores run in-process: SQLite in a temporary directory for
//! metadata, and for bytes both kinds of staging (the local disk, positional; `InMemory` with 1 KiB parts,
//! so that parts and tails appear with small files). Random sequences of chunks — at the committed
//! offset, resent (identical or not, whole or from the middle of a chunk), ahead of it, too long,
//! finalizing early or on time — are played against the service and against a model of what the
//! protocol promises; at every step the answers agree, and a finished upload holds exactly the bytes
//! the model says, with their SHA-256.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use proptest::prelude::*;
use sha2::Digest as _;

use super::{DeclaredSize, Progress, StartUpload, Uploads};
use crate::blob::{Blobs, ByteStream};
use crate::config::Limits;
use crate::domain::{MediaTypePolicy, Origin, ProjectId, SecretToken};
use crate::error::{Error, UploadError};
use crate::meta::MetaStore;
use crate::meta::sql::SqlMeta;

fn limits() -> Limits {
    Limits {
        max_file_bytes: 1 << 30,
        project_quota_bytes: 1 << 32,
        project_max_open_uploads: 100,
        project_max_files: 100,
        project_max_active_imports: 100,
        project_max_running_batches: 100,
        default_ttl: std::time::Duration::from_secs(3600),
        upload_claim: std::time::Duration::from_secs(30),
        media_types: MediaTypePolicy::new(vec!["*".into()]),
    }
}

/// The file's bytes: deterministic per seed.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn body(bytes: &[u8], pieces: usize) -> ByteStream {
    let size = bytes.len().div_ceil(pieces.max(1)).max(1);
    let chunks: Vec<crate::error::Result<Bytes>> = bytes.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(chunks).boxed()
}

/// One request on the upload URL.
#[derive(Debug, Clone)]
enum Op {
    /// The next `len` bytes at the committed offset, cut into `pieces` body frames.
    Next {
        len: usize,
        pieces: usize,
        finalize: bool,
    },
    /// The committed chunk number `chunk` (modulo how many there are) sent again, identical or not.
    Resend {
        chunk: usize,
        altered: bool,
        finalize: bool,
    },
    /// Bytes at an offset past the committed one.
    Ahead {
        by: usize,
    },
    /// A bare finalize.
    Finalize,
    Query,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..3000usize, 1..5usize, prop::bool::weighted(0.2)).prop_map(|(len, pieces, finalize)| Op::Next { len, pieces, finalize }),
        2 => (0..8usize, any::<bool>(), any::<bool>()).prop_map(|(chunk, altered, finalize)| Op::Resend { chunk, altered, finalize }),
        1 => (1..500usize).prop_map(|by| Op::Ahead { by }),
        1 => Just(Op::Finalize),
        1 => Just(Op::Query),
    ]
}

/// What the protocol promises, played alongside.
struct Model {
    data: Vec<u8>,
    /// `(offset, len)` of each committed chunk.
    chunks: Vec<(usize, usize)>,
    committed: usize,
    finalized: bool,
}

impl Model {
    fn new(size: usize, seed: u8) -> Self {
        Self { data: content(size, seed), chunks: Vec::new(), committed: 0, finalized: false }
    }
}

async fn service(store: &str) -> (Uploads, Arc<dyn MetaStore>, Arc<Blobs>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetaStore> = Arc::new(SqlMeta::open_sqlite(&dir.path().join("meta.db"), 4, true).await.unwrap());
    let blobs = Arc::new(match store {
        "local" => Blobs::local(dir.path().join("blobs")).await.unwrap(),
        _ => Blobs::in_memory_with_granule(1024),
    });
    (Uploads::new(meta.clone(), blobs.clone(), limits()), meta, blobs, dir)
}

async fn start(uploads: &Uploads, size: usize) -> SecretToken {
    let request = StartUpload {
        project: ProjectId::parse("props").unwrap(),
        name: None,
        display_name: None,
        mime_type: Some("application/octet-stream".into()),
        size: DeclaredSize::Exact(size as u64),
        origin: Origin::Upload,
        ttl: None,
    };
    uploads.start(request).await.unwrap().token
}

fn received(progress: &Progress) -> Option<u64> {
    match progress {
        Progress::Active { received } => Some(*received),
        Progress::Final(_) => None,
    }
}

/// Plays `ops` against a fresh upload of `size` bytes on `store`, checking every answer with the model.
async fn play(store: &str, size: usize, seed: u8, ops: Vec<Op>) {
    let (uploads, _meta, blobs, _dir) = service(store).await;
    let token = start(&uploads, size).await;
    let mut model = Model::new(size, seed);
    for op in ops {
        let answer = match &op {
            Op::Next { len, pieces, finalize } => {
                let end = (model.committed + len).min(size + 1);
                let bytes = if end <= size { model.data[model.committed..end].to_vec() } else { vec![7; *len] };
                let answer =
                    uploads.write(&token, Some(model.committed as u64), *finalize, body(&bytes, *pieces)).await;
                if model.finalized {
                    assert!(answer.is_err(), "{op:?} after the finalize: {answer:?}");
                    continue;
                }
                if model.committed + len > size {
                    assert!(
                        matches!(answer, Err(Error::Upload(UploadError::TooManyBytes { .. }))),
                        "{op:?}: {answer:?}"
                    );
                    continue;
                }
                model.chunks.push((model.committed, *len));
                model.committed += len;
                if *finalize && model.committed == size {
                    model.finalized = true;
                } else if *finalize {
                    assert!(
                        matches!(answer, Err(Error::Upload(UploadError::SizeMismatch { .. }))),
                        "{op:?}: {answer:?}"
                    );
                    continue;
                }
                answer
            }
            Op::Resend { chunk, altered, finalize } => {
                if model.chunks.is_empty() {
                    continue;
                }
                let (offset, len) = model.chunks[chunk % model.chunks.len()];
                let mut bytes = model.data[offset..offset + len].to_vec();
                if *altered {
                    bytes[len / 2] ^= 0xff;
                }
                let answer = uploads.write(&token, Some(offset as u64), *finalize, body(&bytes, 2)).await;
                let last = offset + len == model.committed;
                if *altered {
                    assert!(
                        matches!(answer, Err(Error::Upload(UploadError::ResendMismatch { .. }))),
                        "{op:?}: {answer:?}"
                    );
                    continue;
                }
                if model.finalized && !last {
                    assert!(matches!(answer, Err(Error::Upload(UploadError::AlreadyFinalized))), "{op:?}: {answer:?}");
                    continue;
                }
                if *finalize && last && model.committed == size {
                    model.finalized = true;
                } else if *finalize && last && !model.finalized {
                    assert!(
                        matches!(answer, Err(Error::Upload(UploadError::SizeMismatch { .. }))),
                        "{op:?}: {answer:?}"
                    );
                    continue;
                }
                answer
            }
            Op::Ahead { by } => {
                let answer = uploads.write(&token, Some((model.committed + by) as u64), false, body(&[1; 10], 1)).await;
                if model.finalized {
                    assert!(answer.is_err(), "{op:?}: {answer:?}");
                } else {
                    assert!(
                        matches!(answer, Err(Error::Upload(UploadError::OffsetMismatch { .. }))),
                        "{op:?}: {answer:?}"
                    );
                }
                continue;
            }
            Op::Finalize => {
                let answer = uploads.write(&token, None, true, body(&[], 1)).await;
                if model.committed == size {
                    model.finalized = true;
                } else {
                    assert!(
                        matches!(answer, Err(Error::Upload(UploadError::SizeMismatch { .. }))),
                        "{op:?}: {answer:?}"
                    );
                    continue;
                }
                answer
            }
            Op::Query => uploads.query(&token).await,
        };
        let progress = answer.unwrap_or_else(|e| panic!("{op:?} failed: {e:?}"));
        if model.finalized {
            assert!(received(&progress).is_none(), "{op:?}: final expected, got {progress:?}");
        } else {
            assert_eq!(received(&progress), Some(model.committed as u64), "{op:?}");
        }
    }
    // Whatever happened, the upload finishes with exactly the model's bytes.
    if !model.finalized {
        let rest = model.data[model.committed..].to_vec();
        let done = uploads.write(&token, Some(model.committed as u64), true, body(&rest, 3)).await.unwrap();
        assert!(received(&done).is_none(), "finalized");
    }
    let Progress::Final(file) = uploads.query(&token).await.unwrap() else { panic!("final") };
    assert_eq!(file.size_bytes, Some(size as u64));
    let digest: [u8; 32] = sha2::Sha256::digest(&model.data).into();
    assert_eq!(file.sha256, Some(digest), "the digest of the bytes, hashed as they came");
    let stored: Vec<Bytes> = blobs.read(&file.blob_key, 0..size as u64).await.unwrap().try_collect().await.unwrap();
    assert_eq!(stored.concat(), model.data, "the object holds exactly the bytes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunks_resends_and_finalizes_keep_the_protocol_on_every_kind_of_store(
        size in 1..12_000usize,
        seed in any::<u8>(),
        ops in prop::collection::vec(op(), 1..24),
        store in prop::sample::select(vec!["local", "memory"]),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(play(store, size, seed, ops));
    }

    #[test]
    fn two_requests_racing_at_one_offset_leave_one_winner_and_whole_bytes(
        size in 2..6000usize,
        first in 1..3000usize,
        store in prop::sample::select(vec!["local", "memory"]),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let first = first.min(size - 1);
            let (uploads, _meta, blobs, _dir) = service(store).await;
            let uploads = Arc::new(uploads);
            let token = start(&uploads, size).await;
            let (ours, theirs) = (content(size, 1), content(size, 2));
            let race = |bytes: Vec<u8>| {
                let (uploads, token) = (uploads.clone(), token.clone());
                tokio::spawn(async move { uploads.write(&token, Some(0), false, body(&bytes, 3)).await })
            };
            let (a, b) = (race(ours[..first].to_vec()), race(theirs[..first].to_vec()));
            let (a, b) = (a.await.unwrap(), b.await.unwrap());
            let ok = [a.is_ok(), b.is_ok()];
            assert_eq!(ok.iter().filter(|o| **o).count(), 1, "one winner: {a:?} {b:?}");
            let loser = if a.is_ok() { &b } else { &a };
            assert!(matches!(loser, Err(Error::Upload(UploadError::ResendMismatch { .. }))), "{loser:?}");
            let winner = if a.is_ok() { &ours } else { &theirs };
            let done = uploads.write(&token, Some(first as u64), true, body(&winner[first..], 2)).await.unwrap();
            let Progress::Final(file) = done else { panic!("final") };
            let stored: Vec<Bytes> = blobs.read(&file.blob_key, 0..size as u64).await.unwrap().try_collect().await.unwrap();
            assert_eq!(stored.concat(), *winner, "the winner's bytes, whole");
        });
    }
}
