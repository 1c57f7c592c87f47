//! Request bodies under time limits.
//!
//! Every request body is wrapped in [`IdleLimitedBody`] by one middleware, whichever route reads it (a JSON
//! start body, an import request, a multipart metadata part or a chunk), with two limits:
//!
//! - **idle**: a client that sends nothing for the request idle timeout is given up on; the limit restarts
//!   with every frame;
//! - **minimum rate** (`FILEGATE_REQUEST_MIN_BYTES_PER_SECOND`): over every [`RATE_WINDOW`] spent waiting
//!   for the client, at least that many bytes per second must arrive, so that a client trickling a byte
//!   every few seconds cannot hold a connection slot for ever (Apache's `mod_reqtimeout` `MinRate`, the
//!   same idea). Only time the server waits for the client counts: while filegate itself is slow to read
//!   (a busy disk or bucket), the client is not blamed.
//!
//! Reading a body goes through [`read_to_limit`] or [`into_stream`], which turn the wrapper's error back
//! into a domain error.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::blob::ByteStream;
use crate::error::{Error, Stall};

/// The span of waiting over which the minimum rate is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// The error a body yields when its client went silent or too slow.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyStalled(pub Stall);

/// The limits every request body is read under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub idle: Duration,
    /// Bytes per second, over [`RATE_WINDOW`] of waiting; 0 turns the check off.
    pub min_bytes_per_second: u64,
}

/// Time spent waiting for the client, and what it sent meanwhile, in the current window.
#[derive(Debug, Default)]
struct Pace {
    waiting_since: Option<Instant>,
    waited: Duration,
    bytes: u64,
}

pub struct IdleLimitedBody {
    inner: Body,
    limits: BodyLimits,
    pace: Pace,
    /// Armed at the first poll (time spent before the handler reads is the server's, not the client's)
    /// and pushed back by every frame.
    timer: Option<Pin<Box<Sleep>>>,
    /// Set once the body was read to its end.
    finished: Arc<AtomicBool>,
    /// Where the unread rest goes when the handler drops the body early (see [`limit_idle_bodies`]).
    left_over: Arc<std::sync::Mutex<Option<Body>>>,
    /// The client went silent: there is nothing left worth waiting for.
    stalled: bool,
}

impl Drop for IdleLimitedBody {
    fn drop(&mut self) {
        if !self.stalled && !self.finished.load(Ordering::Relaxed) {
            let rest = std::mem::replace(&mut self.inner, Body::empty());
            *self.left_over.lock().expect("left-over slot poisoned") = Some(rest);
        }
    }
}

impl IdleLimitedBody {
    fn new(
        inner: Body,
        limits: BodyLimits,
        finished: Arc<AtomicBool>,
        left_over: Arc<std::sync::Mutex<Option<Body>>>,
    ) -> Self {
        Self { inner, limits, pace: Pace::default(), timer: None, finished, left_over, stalled: false }
    }

    /// Counts `bytes` that arrived at `now` against the minimum rate.
    fn paced(&mut self, now: Instant, bytes: u64) -> Result<(), Stall> {
        let pace = &mut self.pace;
        if let Some(since) = pace.waiting_since.take() {
            pace.waited += now - since;
        }
        pace.bytes += bytes;
        let min = self.limits.min_bytes_per_second;
        if pace.waited >= RATE_WINDOW {
            if pace.bytes < min.saturating_mul(pace.waited.as_secs()) {
                return Err(Stall::TooSlow { min_bytes_per_second: min, window: RATE_WINDOW });
            }
            *pace = Pace::default();
        }
        Ok(())
    }
}

impl HttpBody for IdleLimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let now = Instant::now();
                if let Some(timer) = &mut this.timer {
                    timer.as_mut().reset(now + this.limits.idle);
                }
                if frame.is_none() || this.inner.is_end_stream() {
                    this.finished.store(true, Ordering::Relaxed);
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    if let Err(stall) = this.paced(now, data.map_or(0, Bytes::len) as u64) {
                        this.stalled = true;
                        return Poll::Ready(Some(Err(BodyStalled(stall).into())));
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                this.pace.waiting_since.get_or_insert_with(Instant::now);
                let idle = this.limits.idle;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stalled = true;
                        Poll::Ready(Some(Err(BodyStalled(Stall::Silent(idle)).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The most of an unread body read (and dropped) so that an early reply reaches its client.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Middleware: puts every request body under the idle limit.
///
/// A reply sent before its request's body was read to the end (an error halfway through a chunk, say) would
/// reach the client only by luck: closing a socket with unread bytes makes the kernel reset the connection,
/// and a client still writing sees "broken pipe" instead of the 503. So the rest of the body is read and
/// dropped first — up to [`DRAIN_MAX`] bytes, under the same idle limit — and the connection stays usable.
/// A body larger than that, or one whose client went silent, is not waited for: the HTTP/1 connection is
/// closed and the reply says so with `Connection: close`.
pub async fn limit_idle_bodies(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let finished = Arc::new(AtomicBool::new(false));
    let left_over = Arc::new(std::sync::Mutex::new(None));
    let http1 = req.version() <= Version::HTTP_11;
    let req = req.map(|inner| {
        finished.store(inner.is_end_stream(), Ordering::Relaxed);
        Body::new(IdleLimitedBody::new(inner, limits, finished.clone(), left_over.clone()))
    });
    let mut response = next.run(req).await;
    let rest = left_over.lock().expect("left-over slot poisoned").take();
    let drained = match rest {
        Some(rest) if http1 => drain(rest, limits.idle).await,
        _ => finished.load(Ordering::Relaxed),
    };
    if http1 && !drained {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end and drops it; `false` if it is larger than [`DRAIN_MAX`], fails or goes silent.
async fn drain(body: Body, idle: Duration) -> bool {
    if body.size_hint().lower() > DRAIN_MAX {
        return false;
    }
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    loop {
        match tokio::time::timeout(idle, stream.try_next()).await {
            Ok(Ok(Some(bytes))) => {
                read += bytes.len() as u64;
                if read > DRAIN_MAX {
                    return false;
                }
            }
            Ok(Ok(None)) => return true,
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// What a failed body read means: the client went silent, the body was too large (`too_large`'s error),
/// or the connection broke.
fn body_error(err: &(dyn std::error::Error + 'static), too_large: impl FnOnce() -> Error) -> Error {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(stalled) = e.downcast_ref::<BodyStalled>() {
            return Error::BodyStalled(stalled.0);
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return too_large();
        }
        cause = e.source();
    }
    Error::retry(format!("Reading the request body failed: {err}."))
}

/// Reads a small body whole (JSON requests), refusing more than `limit` bytes with `too_large`'s error.
pub async fn read_to_limit(body: Body, limit: usize, too_large: impl FnOnce() -> Error) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, limit).await.map_err(|e| body_error(&e, too_large))
}

/// Parses a JSON request body into `T`, saying where it is wrong: `messages[2].content: invalid type: …`.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|e| match e.path().to_string().as_str() {
        "." => e.inner().to_string(),
        path => format!("{path}: {}", e.inner()),
    })
}

/// A body as a stream of domain results (for the bytes of a file, which are never held whole).
pub fn into_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(|e| body_error(&e, || Error::internal("unexpected body limit"))))
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;

    use super::*;

    fn limited(inner: Body) -> Body {
        let limits = BodyLimits { idle: Duration::from_secs(60), min_bytes_per_second: 100 };
        Body::new(IdleLimitedBody::new(inner, limits, Default::default(), Default::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_idle_time_with_its_own_error() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let silent = Body::from_stream(tokio_stream_from(rx));
        let err = read_to_limit(limited(silent), 1024, || Error::invalid("big")).await.unwrap_err();
        assert!(matches!(err, Error::BodyStalled(Stall::Silent(d)) if d == Duration::from_secs(60)), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_sending_is_read_whole_and_size_limits_keep_their_meaning() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(50)).await; // under the idle limit each time
                tx.send(Ok(Bytes::from(vec![b'a'; 5000]))).await.unwrap(); // and 100 bytes a second
            }
        });
        let body = limited(Body::from_stream(tokio_stream_from(rx)));
        assert_eq!(read_to_limit(body, 1 << 20, || Error::invalid("big")).await.unwrap().len(), 25_000);
        let err = read_to_limit(limited(Body::from("toolong")), 3, || Error::invalid("big")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(m) if m == "big"));
        let mut stream = into_stream(limited(Body::from("xyz")));
        assert_eq!(stream.next().await.unwrap().unwrap(), "xyz");
    }

    #[test]
    fn json_errors_name_the_field_that_is_wrong() {
        #[derive(serde::Deserialize, Debug)]
        struct Part {
            #[allow(dead_code)]
            text: String,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Request {
            #[allow(dead_code)]
            parts: Vec<Part>,
        }
        let err = parse_json::<Request>(br#"{"parts": [{"text": "a"}, {"text": 7}]}"#).unwrap_err();
        assert!(err.starts_with("parts[1].text: invalid type: integer `7`"), "{err}");
        assert!(parse_json::<Request>(b"[").unwrap_err().contains("EOF"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_under_the_minimum_rate_is_dropped_after_a_window_of_waiting() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let sender = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_secs(2)).await; // one byte every two seconds
                if tx.send(Ok(Bytes::from_static(b"x"))).await.is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let body = limited(Body::from_stream(tokio_stream_from(rx)));
        let err = read_to_limit(body, 1024, || Error::invalid("big")).await.unwrap_err();
        assert!(matches!(err, Error::BodyStalled(Stall::TooSlow { min_bytes_per_second: 100, .. })), "{err:?}");
        assert_eq!(started.elapsed(), RATE_WINDOW, "dropped at the end of the first window");
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_server_spends_not_reading_is_not_the_client_s() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
        for _ in 0..20 {
            tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        }
        drop(tx);
        let mut stream = into_stream(limited(Body::from_stream(tokio_stream_from(rx))));
        let mut read = 0;
        while let Some(piece) = stream.next().await {
            read += piece.unwrap().len();
            tokio::time::sleep(Duration::from_secs(5)).await; // a slow disk, say
        }
        assert_eq!(read, 20);
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
