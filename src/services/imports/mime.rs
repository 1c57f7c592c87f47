//! The MIME type of an imported file: the source's `Content-Type` unless it is missing, generic or not a
//! real media type, then what the first bytes look like, then the URL's extension.

use url::Url;

use crate::domain::mime::essence;

pub const GENERIC: &str = "application/octet-stream";

pub fn detect(content_type: Option<&str>, head: &[u8], url: &Url) -> String {
    if let Some(declared) = content_type.and_then(essence) {
        if declared != GENERIC {
            return declared;
        }
    }
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    mime_guess::from_path(url.path()).first().map_or_else(|| GENERIC.to_owned(), |m| m.essence_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_then_sniffed_then_guessed() {
        let url = Url::parse("https://example.com/clip.mp4").unwrap();
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect(Some("Video/MP4; codecs=avc1"), png, &url), "video/mp4");
        assert_eq!(detect(Some("application/octet-stream"), png, &url), "image/png");
        assert_eq!(detect(None, png, &url), "image/png");
        assert_eq!(detect(Some("binary/octet-stream"), b"plain words", &url), "video/mp4");
        assert_eq!(detect(Some("bad/mime_type"), b"plain words", &url), "video/mp4");
        let bare = Url::parse("https://example.com/download").unwrap();
        assert_eq!(detect(None, b"plain words", &bare), GENERIC);
    }
}
