//! A batch's requests, read as JSONL lines (`{"key": …, "request": GenerateContentRequest}`), numbered from 1,
//! one line in memory at a time: from a filegate file (up to the per-file limit), or from inline requests.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::stream::{self, BoxStream};
use serde_json::{Value, json};

use crate::blob::{Blobs, ByteStream};
use crate::domain::FileRecord;
use crate::error::{Error, Result};

/// A request line's longest spelling: the most a model call takes.
pub const MAX_LINE_BYTES: usize = crate::services::model::REQUEST_MAX_BYTES as usize;

/// Where a batch's requests are.
pub enum Source {
    /// A JSONL file of the caller's.
    File(Box<FileRecord>),
    /// The request body's own `requests`, each as its line would be.
    Inline(Arc<Vec<Value>>),
}

/// Numbered lines.
pub type Lines = BoxStream<'static, Result<(u64, Bytes)>>;

impl Source {
    /// The inline requests of a create body (`{"requests": [{"request": {…}, "metadata": {"key": …}}]}`),
    /// as the lines of a file would carry them.
    pub fn inline(requests: &[Value]) -> Result<Self> {
        let lines = requests
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let request = item.get("request").filter(|r| r.is_object()).ok_or_else(|| {
                    Error::invalid(format!(
                        "requests[{i}] has no request: each is {{\"request\": {{…}}, \"metadata\": {{\"key\": …}}}}."
                    ))
                })?;
                let key = item.pointer("/metadata/key").cloned().unwrap_or_else(|| json!((i + 1).to_string()));
                Ok(json!({"key": key, "request": request}))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::Inline(Arc::new(lines)))
    }

    /// The lines, from the first; a new read each time (the requests are read twice).
    pub async fn lines(&self, blobs: &Blobs) -> Result<Lines> {
        match self {
            Self::File(file) => {
                let body = blobs.read(&file.blob_key, 0..file.size_bytes.unwrap_or(0)).await?;
                Ok(split_lines(body, MAX_LINE_BYTES))
            }
            Self::Inline(lines) => {
                let lines = lines.clone();
                let numbered = (0..lines.len()).map(move |i| {
                    let bytes = serde_json::to_vec(&lines[i]).map_err(Error::internal)?;
                    Ok((i as u64 + 1, Bytes::from(bytes)))
                });
                Ok(stream::iter(numbered).boxed())
            }
        }
    }
}

struct Splitter {
    body: ByteStream,
    buffer: BytesMut,
    line: u64,
    ended: bool,
    failed: bool,
}

/// The non-blank lines of `body`, numbered from 1 (blank ones counted), without their line ends; a line
/// longer than `max` bytes fails the stream, naming its number.
pub fn split_lines(body: ByteStream, max: usize) -> Lines {
    let splitter = Splitter { body, buffer: BytesMut::new(), line: 0, ended: false, failed: false };
    stream::unfold(splitter, move |mut s| async move {
        loop {
            if s.failed {
                return None;
            }
            if let Some(end) = memchr::memchr(b'\n', &s.buffer) {
                let mut line = s.buffer.split_to(end + 1);
                line.truncate(end);
                s.line += 1;
                if let Some(item) = s.emit(line, max) {
                    return Some((item, s));
                }
                continue;
            }
            if s.buffer.len() > max {
                s.failed = true;
                return Some((Err(too_long(s.line + 1, max)), s));
            }
            if s.ended {
                if s.buffer.is_empty() {
                    return None;
                }
                let line = std::mem::take(&mut s.buffer);
                s.line += 1;
                if let Some(item) = s.emit(line, max) {
                    return Some((item, s));
                }
                return None;
            }
            match s.body.next().await {
                Some(Ok(chunk)) => s.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    s.failed = true;
                    return Some((Err(e), s));
                }
                None => s.ended = true,
            }
        }
    })
    .boxed()
}

impl Splitter {
    /// The line as an item, `None` for a blank one.
    fn emit(&mut self, mut line: BytesMut, max: usize) -> Option<Result<(u64, Bytes)>> {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > max {
            self.failed = true;
            return Some(Err(too_long(self.line, max)));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(Ok((self.line, line.freeze())))
    }
}

fn too_long(line: u64, max: usize) -> Error {
    Error::invalid(format!("line {line}: a request is longer than {max} bytes, the most a model call takes."))
}

/// A request line as JSON: `{"key": …, "request": {…}}`.
pub fn parse_line(number: u64, line: &[u8]) -> Result<Value> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| Error::invalid(format!("line {number}: invalid JSON: {e}")))?;
    if !value.get("request").is_some_and(Value::is_object) {
        return Err(Error::invalid(format!(
            "line {number}: each line is {{\"key\": …, \"request\": {{…}}}} with a GenerateContentRequest."
        )));
    }
    Ok(value)
}

/// An error about one line's request, in words that name the line (always a 400: the batch is refused).
pub fn at_line(number: u64, err: Error) -> Error {
    match err {
        Error::FileNotFound(uri) => Error::invalid(format!(
            "line {number}: You do not have permission to access the File {uri} or it may not exist."
        )),
        Error::FailedPrecondition(message) | Error::InvalidArgument(message) => {
            Error::invalid(format!("line {number}: {message}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt as _;

    use super::*;

    async fn split(chunks: &[&str], max: usize) -> Result<Vec<(u64, String)>> {
        let chunks: Vec<Result<Bytes>> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c.as_bytes()))).collect();
        let lines = split_lines(stream::iter(chunks).boxed(), max).try_collect::<Vec<_>>().await?;
        Ok(lines.into_iter().map(|(n, l)| (n, String::from_utf8(l.to_vec()).unwrap())).collect())
    }

    #[tokio::test]
    async fn lines_are_numbered_across_chunks_blank_ones_counted_and_long_ones_refused() {
        let lines = split(&["{\"a\"", ":1}\r\n\n  \n{\"b\":2}\n", "{\"c\"", ":3}"], 64).await.unwrap();
        assert_eq!(lines, [(1, "{\"a\":1}".into()), (4, "{\"b\":2}".into()), (5, "{\"c\":3}".into())]);
        let err = split(&["short\n", "x".repeat(100).as_str()], 64).await.unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = split(&["short\n", &format!("{}\nafter\n", "y".repeat(70))], 64).await.unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        assert!(parse_line(7, b"{\"key\": 1}").unwrap_err().to_string().starts_with("line 7:"));
        assert!(parse_line(8, b"not json").unwrap_err().to_string().starts_with("line 8: invalid JSON"));
    }
}
