//! `multipart/*` bodies read as they arrive (the Gemini multipart upload, the OpenAI form upload): one
//! field's bytes stream to storage; the small fields around it are read whole, each bounded; and the
//! part headers, which the parser holds whole until their blank line, are bounded too ([`Form`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _, stream};
use multer::{Field, Multipart};

use crate::blob::ByteStream;
use crate::error::Error;

/// The most bytes of part headers (with what precedes the first part) a form may send before a field
/// starts: a name, a file name, a type, with room to spare.
pub const MAX_PART_HEADER_BYTES: usize = 16 * 1024;
/// The most bytes the parser holds that its reader has not taken yet.
const WINDOW_BYTES: usize = 1024 * 1024;

/// The error a multipart reader failed with: the body's own (a stalled client, a broken connection), or a
/// malformed body.
pub fn malformed(e: multer::Error) -> Error {
    match e {
        multer::Error::StreamReadFailed(cause) => match cause.downcast::<Error>() {
            Ok(err) => *err,
            Err(cause) => Error::invalid(format!("Malformed multipart body: {cause}")),
        },
        other => Error::invalid(format!("Malformed multipart body: {other}")),
    }
}

fn headers_too_large() -> Error {
    Error::invalid(format!(
        "A part's headers are larger than {MAX_PART_HEADER_BYTES} bytes, the most filegate reads (a name, a file \
         name and a type fit in far less)."
    ))
}

/// A multipart body whose parser never holds more than its reader can use. multer reads a part's headers
/// until their blank line, however far that is, and takes every byte the client sends as soon as it
/// arrives: a 64 MiB file name was held whole, and more. Here the body reaches the parser through a gauge:
/// the parser may hold at most [`WINDOW_BYTES`] beyond the field bytes its reader took, plus
/// [`MAX_PART_HEADER_BYTES`] for each part's headers so far. A parser that cannot go on within that is
/// reading headers too large, and so is one that finds headers over the limit; either way the form fails
/// with a 400 that says so, having held no more than the window.
pub struct Form {
    parser: Multipart<'static>,
    gauge: Arc<Mutex<Gauge>>,
}

#[derive(Default)]
struct Gauge {
    /// Bytes handed to the parser.
    given: usize,
    /// Field bytes its reader took.
    taken: usize,
    /// Parts begun (the one whose headers are being read included).
    parts: usize,
    /// The parser asked for more than the gauge allows.
    starved: bool,
}

impl Gauge {
    /// Bytes the parser may have now.
    fn room(&self) -> usize {
        let allowed = WINDOW_BYTES + self.parts * MAX_PART_HEADER_BYTES;
        allowed.saturating_sub(self.given.saturating_sub(self.taken))
    }
}

/// The body as the parser sees it: never more than the gauge allows; a chunk larger than that is handed
/// over in pieces (without a copy).
struct Gauged {
    body: ByteStream,
    held: Bytes,
    gauge: Arc<Mutex<Gauge>>,
}

impl Stream for Gauged {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let room = {
            let mut gauge = self.gauge.lock().expect("never poisoned");
            // The parser polls until it is refused: the last refusal says whether it was the gauge's.
            gauge.starved = gauge.room() == 0;
            gauge.room()
        };
        if room == 0 {
            // No waker: the parser has what it needs to go on (and is polled again by its reader), or it
            // is stuck on headers too large, which its reader sees from `starved`.
            return Poll::Pending;
        }
        if self.held.is_empty() {
            match self.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(bytes))) => self.held = bytes,
                other => return other,
            }
        }
        let take = room.min(self.held.len());
        let piece = self.held.split_to(take);
        self.gauge.lock().expect("never poisoned").given += piece.len();
        Poll::Ready(Some(Ok(piece)))
    }
}

impl Form {
    pub fn new(body: ByteStream, boundary: String) -> Self {
        let gauge = Arc::new(Mutex::new(Gauge::default()));
        let gauged = Gauged { body, held: Bytes::new(), gauge: gauge.clone() };
        Self { parser: Multipart::new(gauged, boundary), gauge }
    }

    /// The next part, its headers at most [`MAX_PART_HEADER_BYTES`].
    pub async fn next_field(&mut self) -> Result<Option<FormField>, Error> {
        self.gauge.lock().expect("never poisoned").parts += 1;
        let field = std::future::poll_fn(|cx| match self.parser.poll_next_field(cx) {
            Poll::Pending if self.gauge.lock().expect("never poisoned").starved => {
                Poll::Ready(Err(headers_too_large()))
            }
            Poll::Pending => Poll::Pending,
            Poll::Ready(field) => Poll::Ready(field.map_err(malformed)),
        })
        .await?;
        let Some(field) = field else { return Ok(None) };
        let header_bytes: usize = field.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        if header_bytes > MAX_PART_HEADER_BYTES {
            return Err(headers_too_large());
        }
        Ok(Some(FormField { field, gauge: self.gauge.clone() }))
    }
}

/// One part of a [`Form`], its bytes counted as they are taken.
pub struct FormField {
    field: Field<'static>,
    gauge: Arc<Mutex<Gauge>>,
}

impl FormField {
    pub fn name(&self) -> Option<&str> {
        self.field.name()
    }

    pub fn file_name(&self) -> Option<&str> {
        self.field.file_name()
    }

    pub fn content_type(&self) -> Option<&mime_guess::mime::Mime> {
        self.field.content_type()
    }

    /// The next bytes of the part; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        match self.field.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.gauge.lock().expect("never poisoned").taken += bytes.len();
                Poll::Ready(Ok(Some(bytes)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Err(malformed(e))),
            Poll::Ready(None) => Poll::Ready(Ok(None)),
            // The window is full and the parser still cannot hand over a byte of this part: what follows
            // the part is headers beyond the limit.
            Poll::Pending if self.gauge.lock().expect("never poisoned").starved => {
                Poll::Ready(Err(headers_too_large()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A small field read whole, failing with `too_long` past `max` bytes.
pub async fn read_field(mut field: FormField, max: usize, too_long: impl FnOnce() -> Error) -> Result<Bytes, Error> {
    let mut value = BytesMut::new();
    while let Some(chunk) = field.chunk().await? {
        if value.len() + chunk.len() > max {
            return Err(too_long());
        }
        value.extend_from_slice(&chunk);
    }
    Ok(value.freeze())
}

/// `field`'s bytes, then `rest` run on the form after it (to check what follows): an error there ends the
/// stream with it, so the upload reading the stream fails and keeps nothing. The stream owns the form, which
/// owns the request body.
pub fn field_then<F, Fut>(form: Form, field: FormField, rest: F) -> ByteStream
where
    F: FnOnce(Form) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    // multer hands out the next field only once this one is gone: the bytes' stream ends by dropping it.
    let bytes = stream::unfold(Some(field), |field| async move {
        let mut field = field?;
        match field.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(field))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let after =
        stream::once(async move { rest(form).await }).filter_map(|checked| async move { checked.err().map(Err) });
    bytes.chain(after).boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// `parts` as one body, delivered in chunks of `chunk` bytes, counting what the reader pulled.
    fn body(parts: &[u8], chunk: usize, pulled: Arc<AtomicUsize>) -> ByteStream {
        let pieces: Vec<Bytes> = parts.chunks(chunk).map(Bytes::copy_from_slice).collect();
        stream::iter(pieces)
            .map(move |piece| {
                pulled.fetch_add(piece.len(), Ordering::Relaxed);
                Ok(piece)
            })
            .boxed()
    }

    fn part(headers: &str, data: &[u8]) -> Vec<u8> {
        [format!("--b\r\n{headers}\r\n\r\n").as_bytes(), data, b"\r\n"].concat()
    }

    #[tokio::test]
    async fn fields_stream_whole_and_headers_past_the_limit_fail_before_they_are_held() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let form = [
            part("Content-Disposition: form-data; name=\"purpose\"", b"user_data"),
            part("Content-Disposition: form-data; name=\"file\"; filename=\"a.bin\"", &data),
            b"--b--\r\n".to_vec(),
        ]
        .concat();
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut parsed = Form::new(body(&form, 65_536, pulled.clone()), "b".into());
        let purpose = parsed.next_field().await.unwrap().unwrap();
        assert_eq!(read_field(purpose, 64, || Error::invalid("long")).await.unwrap(), "user_data");
        let mut file = parsed.next_field().await.unwrap().unwrap();
        assert_eq!(file.file_name(), Some("a.bin"));
        let mut got = Vec::new();
        while let Some(bytes) = file.chunk().await.unwrap() {
            // The parser never holds more than the window beyond what its reader took (and what it read
            // of the part with its headers).
            let allowed = WINDOW_BYTES + 2 * MAX_PART_HEADER_BYTES;
            assert!(bytes.len() <= allowed, "{} after {}", bytes.len(), got.len());
            let ahead = pulled.load(Ordering::Relaxed) - (got.len() + bytes.len());
            assert!(ahead <= allowed + 65_536, "{ahead}");
            got.extend_from_slice(&bytes);
        }
        assert_eq!(got, data);
        drop(file);
        assert!(parsed.next_field().await.unwrap().is_none());

        // A 64 MiB file name: refused once the limit's worth is in, the rest never read.
        let name = "n".repeat(64 << 20);
        let hostile = part(&format!("Content-Disposition: form-data; name=\"file\"; filename=\"{name}\""), b"x");
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut parsed = Form::new(body(&hostile, 65_536, pulled.clone()), "b".into());
        let err = parsed.next_field().await.map(|_| ()).unwrap_err();
        assert!(err.to_string().contains(&format!("larger than {MAX_PART_HEADER_BYTES} bytes")), "{err}");
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(pulled <= WINDOW_BYTES + MAX_PART_HEADER_BYTES + 65_536, "{pulled} of 64 MiB read");

        // The same after a first part that streamed: the next part's headers are bounded too.
        let hostile = [
            part("Content-Disposition: form-data; name=\"file\"; filename=\"a.bin\"", &data),
            part(&format!("Content-Disposition: form-data; name=\"x\"; filename=\"{name}\""), b"x"),
        ]
        .concat();
        let pulled = Arc::new(AtomicUsize::new(0));
        let mut parsed = Form::new(body(&hostile, 65_536, pulled.clone()), "b".into());
        let mut file = parsed.next_field().await.unwrap().unwrap();
        let mut streamed = 0;
        let failed = loop {
            match file.chunk().await {
                Ok(Some(bytes)) => streamed += bytes.len(),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        drop(file);
        let failed = match failed {
            Some(e) => e,
            None => parsed.next_field().await.map(|_| ()).unwrap_err(),
        };
        assert!(failed.to_string().contains("larger than"), "{failed}");
        assert_eq!(streamed, data.len());
        assert!(pulled.load(Ordering::Relaxed) < data.len() + WINDOW_BYTES + 2 * MAX_PART_HEADER_BYTES + 65_536);
    }
}
