//! Opening a source: one guarded GET, following redirects one checked hop at a time, asking for the
//! missing tail with `Range` + `If-Range` when resuming.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use url::Url;

use super::answer::{Failure, connect_failure, content_range};
use super::ranged::{self, RangedFetches, SourceBody};
use crate::domain::{FailureCode, FileError};
use crate::services::egress::{AddressPolicy, GuardedResolver, UrlProblem, check_parsed};

/// Redirects followed before the task fails with `too_many_redirects`.
pub const MAX_REDIRECTS: usize = 5;

/// A source that answered with bytes.
pub struct SourceResponse {
    /// Where the bytes start: the requested offset for a `206`, 0 for a `200` (the whole file again).
    pub offset: u64,
    /// The file's full size, when the source said it.
    pub total: Option<u64>,
    /// A strong ETag or a Last-Modified date, when the source also takes ranges: what a later `If-Range`
    /// sends to resume without splicing two versions of the file.
    pub validator: Option<String>,
    pub content_type: Option<String>,
    /// The final URL, after redirects (its last path segment names the file).
    pub url: Url,
    pub body: SourceBody,
    /// Bytes received from the source so far (over every connection), ahead of what `body` has yielded
    /// when ranges are read ahead: the import's progress.
    pub arrived: Arc<AtomicU64>,
}

/// The HTTP client of imports: SSRF-guarded resolution, no proxies, no automatic redirects or
/// decompression (the bytes stored are the bytes served).
pub struct Fetcher {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    stall: Duration,
    ranged: RangedFetches,
}

impl Fetcher {
    pub fn new(policy: Arc<AddressPolicy>, connect_timeout: Duration, stall: Duration, ranged: RangedFetches) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver::new(policy.clone())))
            .connect_timeout(connect_timeout)
            .user_agent(concat!("filegate/", env!("CARGO_PKG_VERSION"), " (URL import)"))
            .build()
            .expect("the import HTTP client configuration is valid");
        Self { client, policy, stall, ranged }
    }

    /// GETs `url` (from `offset` with `If-Range: validator` when resuming) and follows up to
    /// [`MAX_REDIRECTS`] redirects, checking every hop's URL before connecting to it.
    pub async fn open(&self, url: &str, resume: Option<(u64, &str)>) -> Result<SourceResponse, Failure> {
        let mut url = Url::parse(url).map_err(|e| Failure::permanent(FailureCode::SourceUnreachable, e.to_string()))?;
        for redirects in 0..=MAX_REDIRECTS {
            url = check_parsed(url, &self.policy).map_err(|problem| match problem {
                UrlProblem::Forbidden(ip) => Failure::permanent(
                    FailureCode::ForbiddenAddress,
                    format!("{ip} is an address imports may not reach"),
                ),
                UrlProblem::Invalid(why) => {
                    Failure::permanent(FailureCode::SourceUnreachable, format!("redirect refused: {why}"))
                }
            })?;
            // The trace of the request that created the import goes on to the source.
            let mut traced = header::HeaderMap::new();
            crate::telemetry::traces::inject_current(&mut traced);
            let mut request = self.client.get(url.clone()).headers(traced);
            if let Some((offset, validator)) = resume {
                request = request.header(header::RANGE, format!("bytes={offset}-")).header(header::IF_RANGE, validator);
            }
            let response = match tokio::time::timeout(self.stall, request.send()).await {
                Err(_) => {
                    return Err(Failure::transient(
                        FailureCode::Timeout,
                        format!("the source sent no response headers within {} s", self.stall.as_secs()),
                    ));
                }
                Ok(Err(e)) => return Err(connect_failure(&e)),
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_redirection() {
                let Some(location) = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()) else {
                    return Err(Failure::permanent(
                        FailureCode::SourceHttpStatus,
                        format!("the source answered {status} without a Location"),
                    ));
                };
                if redirects == MAX_REDIRECTS {
                    return Err(Failure::permanent(
                        FailureCode::TooManyRedirects,
                        format!("the source redirected more than {MAX_REDIRECTS} times"),
                    ));
                }
                url = url.join(location).map_err(|e| {
                    Failure::permanent(FailureCode::SourceUnreachable, format!("bad redirect Location: {e}"))
                })?;
                continue;
            }
            return self.accept(response, url, resume);
        }
        unreachable!("the loop returns on its last iteration")
    }

    fn accept(
        &self,
        response: reqwest::Response,
        url: Url,
        resume: Option<(u64, &str)>,
    ) -> Result<SourceResponse, Failure> {
        let status = response.status();
        let headers = response.headers();
        let resume_from = resume.map(|(offset, _)| offset);
        if let Some((offset, validator)) = resume
            && status == StatusCode::RANGE_NOT_SATISFIABLE
            && unsatisfied_length(headers) == Some(offset)
        {
            // Every byte is already staged (an attempt ended between its last commit and its finish),
            // and the source, unchanged (`If-Range` held), says there are no more: nothing to fetch.
            return Ok(SourceResponse {
                offset,
                total: Some(offset),
                validator: Some(validator.to_owned()),
                content_type: None,
                url,
                body: futures_util::stream::empty().boxed(),
                arrived: Arc::default(),
            });
        }
        let (offset, total) = match status {
            StatusCode::OK => (0, response.content_length()),
            StatusCode::PARTIAL_CONTENT => {
                let (start, total) = content_range(headers).ok_or_else(|| {
                    Failure::transient(
                        FailureCode::SourceHttpStatus,
                        "the source answered 206 without a usable Content-Range",
                    )
                })?;
                if Some(start) != resume_from {
                    return Err(Failure::transient(
                        FailureCode::SourceHttpStatus,
                        format!("the source resumed at byte {start}, not where the import stopped"),
                    ));
                }
                (start, total)
            }
            s if s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                return Err(Failure::Transient { error: http_status_error(s), retry_after: retry_after(headers) });
            }
            s => return Err(Failure::Permanent(http_status_error(s))),
        };
        let takes_ranges = status == StatusCode::PARTIAL_CONTENT
            || headers.get(header::ACCEPT_RANGES).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("bytes"));
        let validator = takes_ranges.then(|| validator(headers)).flatten();
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response
            .bytes_stream()
            .map_err(|e| {
                Failure::transient(FailureCode::SourceUnreachable, format!("the source connection broke: {e}"))
            })
            .boxed();
        // Counted as they arrive: by the range fetches, every connection's, when there are several.
        let arrived = Arc::new(AtomicU64::new(0));
        let body = match (&validator, total) {
            (Some(validator), Some(total)) if self.ranged.applies(total - offset) => {
                let source = ranged::Source {
                    client: self.client.clone(),
                    url: url.clone(),
                    validator: validator.clone(),
                    total,
                    stall: self.stall,
                    arrived: arrived.clone(),
                };
                ranged::body(&self.ranged, source, offset, body)
            }
            _ => {
                let counter = arrived.clone();
                body.inspect_ok(move |bytes| {
                    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                })
                .boxed()
            }
        };
        Ok(SourceResponse { offset, total, validator, content_type, url, body, arrived })
    }
}

fn http_status_error(status: StatusCode) -> FileError {
    FileError { code: FailureCode::SourceHttpStatus, message: format!("the source answered HTTP {status}") }
}

/// `Content-Range: bytes */LENGTH` (a 416's) → LENGTH.
fn unsatisfied_length(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    value.strip_prefix("bytes */")?.trim().parse().ok()
}

/// A strong ETag, else Last-Modified: what `If-Range` may carry (weak ETags may not).
fn validator(headers: &HeaderMap) -> Option<String> {
    let get = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok()).map(str::to_owned);
    get(header::ETAG).filter(|etag| !etag.starts_with("W/")).or_else(|| get(header::LAST_MODIFIED))
}

/// `Retry-After` in seconds or as an HTTP date, capped at five minutes.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn content_range_gives_start_and_total() {
        assert_eq!(content_range(&headers(&[(header::CONTENT_RANGE, "bytes 100-199/1000")])), Some((100, Some(1000))));
        assert_eq!(content_range(&headers(&[(header::CONTENT_RANGE, "bytes 100-199/*")])), Some((100, None)));
        assert_eq!(unsatisfied_length(&headers(&[(header::CONTENT_RANGE, "bytes */1000")])), Some(1000));
        assert_eq!(unsatisfied_length(&headers(&[(header::CONTENT_RANGE, "bytes 0-1/1000")])), None);
        assert_eq!(content_range(&headers(&[(header::CONTENT_RANGE, "items 1-2/3")])), None);
    }

    #[test]
    fn weak_etags_are_not_validators() {
        let strong = headers(&[(header::ETAG, "\"abc\""), (header::LAST_MODIFIED, "Mon, 23 Nov 2026 10:00:00 GMT")]);
        assert_eq!(validator(&strong).as_deref(), Some("\"abc\""));
        let weak = headers(&[(header::ETAG, "W/\"abc\""), (header::LAST_MODIFIED, "Mon, 23 Nov 2026 10:00:00 GMT")]);
        assert_eq!(validator(&weak).as_deref(), Some("Mon, 23 Nov 2026 10:00:00 GMT"));
        assert_eq!(validator(&headers(&[(header::ETAG, "W/\"abc\"")])), None);
    }

    #[test]
    fn retry_after_takes_seconds_or_dates_and_is_capped() {
        assert_eq!(retry_after(&headers(&[(header::RETRY_AFTER, "7")])), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[(header::RETRY_AFTER, "99999")])), Some(Duration::from_secs(300)));
        assert_eq!(
            retry_after(&headers(&[(header::RETRY_AFTER, "Mon, 01 Jan 2001 00:00:00 GMT")])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[(header::RETRY_AFTER, "soon")])), None);
    }
}

#[cfg(test)]
mod resume_tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A source on loopback that answers every request with `reply` (a whole HTTP/1.1 response head).
    async fn source(reply: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/file.bin", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head).await;
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        url
    }

    fn fetcher() -> Fetcher {
        let policy = Arc::new(AddressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()]));
        Fetcher::new(policy, Duration::from_secs(5), Duration::from_secs(5), RangedFetches::new(1, 0))
    }

    #[tokio::test]
    async fn resuming_where_the_file_ends_is_a_finished_fetch_not_a_failure() {
        // An attempt that ended between its last commit and its finish: every byte is staged, the
        // unchanged source (If-Range held) says there is nothing after them.
        let ended =
            source("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */100\r\nContent-Length: 0\r\n\r\n")
                .await;
        let response = fetcher().open(&ended, Some((100, "\"v1\""))).await.unwrap();
        assert_eq!((response.offset, response.total), (100, Some(100)));
        assert_eq!(response.validator.as_deref(), Some("\"v1\""));
        assert!(response.body.collect::<Vec<_>>().await.is_empty(), "nothing to fetch");

        // A 416 that says the file is of another length is not that: the task fails as before.
        let other =
            source("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */50\r\nContent-Length: 0\r\n\r\n")
                .await;
        let refused = fetcher().open(&other, Some((100, "\"v1\""))).await.err().expect("a 416 of another length fails");
        assert!(
            matches!(refused, Failure::Permanent(FileError { code: FailureCode::SourceHttpStatus, .. })),
            "{refused:?}"
        );
        // Without a resume, a 416 is an HTTP error like any other.
        assert!(fetcher().open(&ended, None).await.is_err());
    }
}
