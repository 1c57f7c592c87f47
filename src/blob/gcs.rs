//! Cloud Storage objects as callers name them, reduced to one canonical spelling before any rule looks at
//! them.
//!
//! A caller can name one object many ways: `gs://b/p/x`, `GS://b//p/x`, `gs://b/p//x`,
//! `https://storage.googleapis.com/b/p/x`, `https://b.storage.googleapis.com/p%2Fx`. Whatever reads the
//! object afterwards (`object_store`, which drops empty segments; Vertex AI, whose own normalisation is not
//! documented) must read the very object the rules checked, so every guard works on [`GcsObject`]: the
//! bucket and the name as the store reads them, with empty segments dropped. Names that stores read in
//! ways that differ (`.` and `..` segments, control characters, backslashes) are refused outright rather
//! than guessed at.

use object_store::path::Path;

use super::BucketUrl;

/// An object in Cloud Storage, spelled canonically: `gs://{bucket}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsObject {
    pub bucket: String,
    /// Segments joined by single slashes; none empty, `.` or `..`.
    pub name: String,
}

/// Hosts that serve Cloud Storage objects over HTTPS, bucket first in the path.
const PATH_STYLE_HOSTS: [&str; 2] = ["storage.googleapis.com", "storage.cloud.google.com"];
const VIRTUAL_HOST_SUFFIX: &str = ".storage.googleapis.com";
/// Hosts of Cloud Storage's JSON API, whose object URLs are `/storage/v1/b/{bucket}/o/{name}` (with
/// `?alt=media` for the bytes), or `/download/storage/v1/b/…`.
const JSON_API_HOSTS: [&str; 2] = ["www.googleapis.com", "storage.googleapis.com"];

/// The bucket and name of a JSON API object path (decoded), if it is one.
fn json_api_object(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("download/").unwrap_or(path).strip_prefix("storage/v1/b/")?;
    let (bucket, rest) = rest.split_once('/')?;
    Some((bucket, rest.strip_prefix("o/").unwrap_or("")))
}

impl GcsObject {
    /// The object `uri` names, if it is a Cloud Storage URI in any spelling: `Ok(None)` for anything
    /// else (a public URL, a Files API URI), `Err` (a sentence for the caller) for a Cloud Storage URI
    /// that names no object filegate can vouch for.
    pub fn parse(uri: &str) -> Result<Option<Self>, String> {
        let Some((scheme, rest)) = uri.split_once("://") else { return Ok(None) };
        let (bucket, name) = if scheme.eq_ignore_ascii_case("gs") {
            let (bucket, name) = rest.split_once('/').unwrap_or((rest, ""));
            (bucket.to_owned(), name.to_owned())
        } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") {
            let Ok(url) = url::Url::parse(uri) else { return Ok(None) };
            let Some(host) = url.host_str().map(str::to_ascii_lowercase) else { return Ok(None) };
            // The path as sent, decoded once, as the storage front end decodes it.
            let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy().into_owned();
            let path = path.trim_start_matches('/');
            if let Some((bucket, name)) = json_api_object(path).filter(|_| JSON_API_HOSTS.contains(&host.as_str())) {
                (bucket.to_owned(), name.to_owned())
            } else if host == JSON_API_HOSTS[0] && path.starts_with("storage/") {
                return Err(format!("\"{}\" is not a Cloud Storage object filegate can pass on.", shorten(uri)));
            } else if PATH_STYLE_HOSTS.contains(&host.as_str()) {
                let (bucket, name) = path.split_once('/').unwrap_or((path, ""));
                (bucket.to_owned(), name.to_owned())
            } else if let Some(bucket) = host.strip_suffix(VIRTUAL_HOST_SUFFIX) {
                (bucket.to_owned(), path.to_owned())
            } else {
                return Ok(None);
            }
        } else {
            return Ok(None);
        };
        let bad = || format!("\"{}\" is not a gs://BUCKET/OBJECT URI filegate can pass on.", shorten(uri));
        if !valid_bucket(&bucket) {
            return Err(bad());
        }
        let mut segments = Vec::new();
        for segment in name.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." || segment.chars().any(|c| c.is_control() || c == '\\') {
                return Err(bad());
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            return Err(bad());
        }
        Ok(Some(Self { bucket, name: segments.join("/") }))
    }

    pub fn uri(&self) -> String {
        format!("gs://{}/{}", self.bucket, self.name)
    }

    /// Whether `object_store` reads this very name (it escapes some characters, `%` among them, which
    /// would make it read another object than the one named).
    pub fn store_reads_it_as_named(&self) -> bool {
        Path::from(self.name.as_str()).as_ref() == self.name
    }

    /// The key of this object under `location` (its bucket and prefix), if it is there.
    pub fn key_under<'a>(&'a self, location: &BucketUrl) -> Option<&'a str> {
        if self.bucket != location.bucket {
            return None;
        }
        if location.prefix.is_empty() {
            return Some(&self.name);
        }
        self.name.strip_prefix(location.prefix.as_str())?.strip_prefix('/')
    }

    /// Whether the object lies in `location`'s bucket at all, under its prefix or not, once `%`
    /// escapes are decoded too: a name that some reader could take for one under the prefix.
    pub fn could_be_under(&self, location: &BucketUrl) -> bool {
        if self.bucket != location.bucket {
            return false;
        }
        if self.key_under(location).is_some() || location.prefix.is_empty() {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(&self.name).decode_utf8_lossy().replace('\\', "/");
        let normal: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        let prefix: Vec<&str> = location.prefix.split('/').collect();
        normal.starts_with(&prefix) || self.name.contains('%')
    }
}

/// Cloud Storage's bucket names: 3 to 222 characters of lowercase letters, digits, `-`, `_` and `.`,
/// starting and ending with a letter or digit.
fn valid_bucket(bucket: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=222).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && edge(bucket.chars().next())
        && edge(bucket.chars().last())
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(uri: &str) -> Option<String> {
        GcsObject::parse(uri).unwrap().map(|o| o.uri())
    }

    #[test]
    fn every_spelling_of_one_object_is_one_object() {
        for spelling in [
            "gs://media/p/files/a/x.1",
            "GS://media/p/files/a/x.1",
            "gs://media//p/files/a/x.1",
            "gs://media///p//files///a/x.1",
            "gs://media/p/files/a/x.1/",
            "https://storage.googleapis.com/media/p/files/a/x.1",
            "https://STORAGE.googleapis.com//media/p/files/a/x.1?alt=media",
            "http://storage.cloud.google.com/media/p/files/a/x.1",
            "https://media.storage.googleapis.com/p/files/a/x.1",
            "https://media.storage.googleapis.com/p%2Ffiles%2Fa%2Fx.1",
            "https://storage.googleapis.com/media/p/files/a/b/%2E%2E/x.1",
            "https://www.googleapis.com/storage/v1/b/media/o/p%2Ffiles%2Fa%2Fx.1?alt=media",
            "https://storage.googleapis.com/storage/v1/b/media/o/p%2Ffiles%2Fa%2Fx.1?alt=media",
            "https://www.googleapis.com/download/storage/v1/b/media/o/p%2Ffiles%2Fa%2Fx.1?alt=media",
        ] {
            assert_eq!(canonical(spelling).as_deref(), Some("gs://media/p/files/a/x.1"), "{spelling}");
        }
    }

    #[test]
    fn what_is_not_cloud_storage_passes_and_what_is_unreadable_is_refused() {
        for other in
            ["https://example.com/v.mp4", "files/abc", "https://generativelanguage.googleapis.com/v1beta/files/x"]
        {
            assert_eq!(GcsObject::parse(other), Ok(None), "{other}");
        }
        for bad in [
            "gs://media",
            "gs://media/",
            "gs://media//",
            "gs://Media/x",
            "gs://me/x",
            "gs:///x",
            "gs://media/p/../x",
            "gs://media/./p/x",
            "gs://media/p\\files/x",
            "gs://media/p/\nx",
            "https://www.googleapis.com/storage/v1/b/media",
            "https://www.googleapis.com/storage/v1/b/media/o/",
        ] {
            assert!(GcsObject::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations_are_compared_segment_by_segment_and_escapes_are_suspect() {
        let own = BucketUrl::parse("gs://media/p").unwrap();
        let object = |uri: &str| GcsObject::parse(uri).unwrap().unwrap();
        assert_eq!(object("gs://media//p//files/a/x.1").key_under(&own), Some("files/a/x.1"));
        assert_eq!(object("gs://media/pp/files/a/x.1").key_under(&own), None, "a longer segment is another");
        assert!(!object("gs://media/pp/files/a/x.1").could_be_under(&own));
        assert!(object("gs://media/p%2Ffiles/a/x.1").could_be_under(&own));
        assert!(object("gs://media/%70/files/a/x.1").could_be_under(&own));
        assert!(!object("gs://other/p/files/a/x.1").could_be_under(&own));
        let whole = BucketUrl::parse("gs://media").unwrap();
        assert_eq!(object("gs://media/anything").key_under(&whole), Some("anything"));
        assert!(object("gs://media/a%25b").could_be_under(&own));
        assert!(!object("gs://media/a%25b").store_reads_it_as_named());
        assert!(object("gs://media/a-b_c.d/e f").store_reads_it_as_named());
    }
}
