//! `multipart/*` bodies read as they arrive (the Gemini multipart upload, the OpenAI form upload): one
//! field's bytes stream to storage; the small fields around it are read whole, each bounded.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt as _, stream};
use multer::{Field, Multipart};

use crate::blob::ByteStream;
use crate::error::Error;

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

/// A small field read whole, failing with `too_long` past `max` bytes.
pub async fn read_field(
    mut field: Field<'static>,
    max: usize,
    too_long: impl FnOnce() -> Error,
) -> Result<Bytes, Error> {
    let mut value = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(malformed)? {
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
pub fn field_then<F, Fut>(form: Multipart<'static>, field: Field<'static>, rest: F) -> ByteStream
where
    F: FnOnce(Multipart<'static>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    // multer hands out the next field only once this one is gone: the bytes' stream ends by dropping it.
    let bytes = stream::unfold(Some(field), |field| async move {
        let mut field = field?;
        match field.chunk().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(field))),
            Ok(None) => None,
            Err(e) => Some((Err(malformed(e)), None)),
        }
    });
    let after =
        stream::once(async move { rest(form).await }).filter_map(|checked| async move { checked.err().map(Err) });
    bytes.chain(after).boxed()
}
