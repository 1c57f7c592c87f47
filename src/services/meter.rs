use std::sync::{Arc, Mutex};

use futures_util::{StreamExt as _, stream};

use crate::blob::ByteStream;
use crate::error::Error;
use crate::hash::ResumableSha256;

/// What a [`metered`] stream has seen: the byte count and the running SHA-256.
#[derive(Debug, Default)]
pub struct Meter {
    pub bytes: u64,
    pub hasher: ResumableSha256,
}

/// Watches bytes on their way to storage: counts and hashes them (so no file is ever read back to be
/// hashed) and fails the stream once it carries more than `limit` bytes (with `overflow`'s error). A
/// client that goes silent is the HTTP layer's business (its bodies have an idle limit).
pub fn metered(
    body: ByteStream,
    meter: Arc<Mutex<Meter>>,
    limit: u64,
    overflow: impl Fn() -> Error + Send + Sync + 'static,
) -> ByteStream {
    let overflow = Arc::new(overflow);
    stream::unfold(Some(body), move |body| {
        let (meter, overflow) = (meter.clone(), overflow.clone());
        async move {
            let mut body = body?; // `None` once an error was yielded: the stream has ended
            let item = body.next().await?.and_then(|bytes| {
                let mut meter = meter.lock().expect("meter poisoned");
                if meter.bytes + bytes.len() as u64 > limit {
                    return Err(overflow());
                }
                meter.bytes += bytes.len() as u64;
                meter.hasher.update(&bytes);
                Ok(bytes)
            });
            let next = item.is_ok().then_some(body);
            Some((item, next))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::TryStreamExt as _;

    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn counts_and_hashes_what_passes() {
        let meter = Arc::new(Mutex::new(Meter::default()));
        let out: Vec<Bytes> = metered(body(&[b"hello ", b"world"]), meter.clone(), 11, || Error::invalid("over"))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(out.concat(), b"hello world");
        let meter = meter.lock().unwrap();
        assert_eq!(meter.bytes, 11);
        let mut expected = ResumableSha256::new();
        expected.update(b"hello world");
        assert_eq!(meter.hasher.digest(), expected.digest());
    }

    #[tokio::test]
    async fn stops_with_the_overflow_error_past_the_limit() {
        let meter = Arc::new(Mutex::new(Meter::default()));
        let result: Result<Vec<Bytes>, Error> =
            metered(body(&[b"hello ", b"world"]), meter.clone(), 10, || Error::invalid("over")).try_collect().await;
        assert!(matches!(result, Err(Error::InvalidArgument(m)) if m == "over"));
        assert_eq!(meter.lock().unwrap().bytes, 6, "the overflowing part is not counted");
    }
}
