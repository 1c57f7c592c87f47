//! The request body sent upstream: the rewritten JSON, with each inline file's bytes streamed from the
//! blob store as base64 where its placeholder stands. A file sent inline is never held whole in memory,
//! and the body's exact length is known before it is sent (base64 is 4 bytes per 3, padded).

use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::Value;

use crate::blob::Blobs;
use crate::domain::StorageKey;
use crate::error::{Error, Result};
use crate::telemetry::metric;

/// A file to splice in as base64, where the placeholder `"{base}-{index}"` stands (`index` is its place in
/// the list handed to [`OutgoingBody::new`]).
#[derive(Debug, Clone)]
pub struct InlineFile {
    pub blob_key: StorageKey,
    pub size: u64,
}

#[derive(Debug, Clone)]
enum Segment {
    Json(Bytes),
    Inline { blob_key: StorageKey, size: u64 },
}

#[derive(Debug, Clone)]
pub struct OutgoingBody {
    segments: Vec<Segment>,
    len: u64,
}

/// The length of `size` bytes in padded base64.
pub const fn base64_len(size: u64) -> u64 {
    size.div_ceil(3) * 4
}

/// The placeholder of the inline file at `index`.
pub fn placeholder(base: &str, index: usize) -> String {
    format!("{base}-{index}")
}

impl OutgoingBody {
    /// Serializes `body` and cuts it at each inline file's placeholder, in one pass over the text: each
    /// placeholder is a string value, so it appears once, quoted, in the JSON text; the quotes stay and
    /// the placeholder gives way to the base64. The work is linear in the size of the body, however many
    /// files it inlines.
    pub fn new(body: &Value, base: &str, inline: &[InlineFile]) -> Result<Self> {
        let mut text = Bytes::from(serde_json::to_vec(body).map_err(Error::internal)?);
        let needle = format!("\"{base}-");
        let mut found = vec![false; inline.len()];
        let mut cuts = Vec::with_capacity(inline.len());
        for at in memchr::memmem::find_iter(&text, needle.as_bytes()) {
            let digits_start = at + needle.len();
            let digits = text[digits_start..].iter().take_while(|b| b.is_ascii_digit()).count();
            let index = std::str::from_utf8(&text[digits_start..digits_start + digits])
                .ok()
                .and_then(|d| d.parse::<usize>().ok())
                .filter(|&i| i < inline.len() && text.get(digits_start + digits) == Some(&b'"'));
            // A string that merely starts like a placeholder is the caller's text.
            let Some(index) = index else { continue };
            if std::mem::replace(&mut found[index], true) {
                return Err(Error::internal("an inline placeholder appears twice"));
            }
            // From after the opening quote to before the closing one.
            cuts.push((at + 1, digits_start + digits, index));
        }
        if found.iter().any(|f| !f) {
            return Err(Error::internal("an inline placeholder is missing"));
        }
        let mut segments = Vec::with_capacity(2 * cuts.len() + 1);
        let mut consumed = 0;
        for (start, end, index) in cuts {
            segments.push(Segment::Json(text.split_to(start - consumed)));
            let _placeholder = text.split_to(end - start);
            consumed = end;
            let file = &inline[index];
            segments.push(Segment::Inline { blob_key: file.blob_key.clone(), size: file.size });
        }
        segments.push(Segment::Json(text));
        let len = segments
            .iter()
            .map(|s| match s {
                Segment::Json(bytes) => bytes.len() as u64,
                Segment::Inline { size, .. } => base64_len(*size),
            })
            .sum();
        Ok(Self { segments, len })
    }

    pub const fn len(&self) -> u64 {
        self.len
    }

    /// The body as a stream, reading inline files from `blobs` as it goes.
    pub fn stream(&self, blobs: Arc<Blobs>) -> BoxStream<'static, Result<Bytes>> {
        let segments = self.segments.clone();
        stream::iter(segments)
            .then(move |segment| {
                let blobs = blobs.clone();
                async move {
                    match segment {
                        Segment::Json(bytes) => Ok::<_, Error>(stream::once(async { Ok(bytes) }).boxed()),
                        Segment::Inline { blob_key, size } => {
                            metrics::counter!(metric::MODEL_BYTES, "how" => "inline").increment(size);
                            Ok(base64_stream(blobs.read(&blob_key, 0..size).await?))
                        }
                    }
                }
            })
            .try_flatten()
            .boxed()
    }
}

/// Encodes a byte stream as padded base64, carrying the 0–2 bytes that do not fill a group of three to the
/// next chunk.
fn base64_stream(input: BoxStream<'static, Result<Bytes>>) -> BoxStream<'static, Result<Bytes>> {
    const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    stream::unfold((input, BytesMut::new(), false), |(mut input, mut carry, done)| async move {
        if done {
            return None;
        }
        loop {
            match input.next().await {
                Some(Ok(chunk)) => {
                    carry.extend_from_slice(&chunk);
                    let whole = carry.len() / 3 * 3;
                    if whole == 0 {
                        continue;
                    }
                    let encoded = ENGINE.encode(carry.split_to(whole));
                    return Some((Ok(Bytes::from(encoded)), (input, carry, false)));
                }
                Some(Err(e)) => return Some((Err(e), (input, carry, true))),
                None => {
                    let encoded = ENGINE.encode(&carry);
                    return Some((Ok(Bytes::from(encoded)), (input, BytesMut::new(), true)));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn base64_of_a_stream_matches_base64_of_its_bytes_whatever_the_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in [1, 2, 3, 4, 7, 1000] {
            let chunks: Vec<Result<Bytes>> = data.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            let encoded: Vec<Bytes> = base64_stream(stream::iter(chunks).boxed()).try_collect().await.unwrap();
            let text: Vec<u8> = encoded.concat();
            assert_eq!(text, base64::engine::general_purpose::STANDARD.encode(&data).into_bytes(), "chunk {chunk}");
            assert_eq!(text.len() as u64, base64_len(1000));
        }
    }

    #[test]
    fn the_body_is_cut_at_each_placeholder_and_its_length_counts_the_base64() {
        let value = json!({"a": "P-1", "b": [{"data": "P-0"}], "c": "P-0 in text is not a placeholder"});
        let key = |k: &str| StorageKey::from_stored(k.to_owned());
        let inline = [InlineFile { blob_key: key("k0"), size: 4 }, InlineFile { blob_key: key("k1"), size: 3 }];
        let body = OutgoingBody::new(&value, "P", &inline).unwrap();
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(body.len(), (text.len() - 3 - 3 + 8 + 4) as u64, "each 3-byte placeholder gives way to base64");
        let keys: Vec<_> = body
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Inline { blob_key, .. } => Some(blob_key.as_str()),
                Segment::Json(_) => None,
            })
            .collect();
        assert_eq!(keys, ["k1", "k0"], "in document order");
        assert!(OutgoingBody::new(&json!({"a": "P-0"}), "P", &inline).is_err(), "every placeholder is there");
    }
}
