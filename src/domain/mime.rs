//! Media types of files: what filegate stores and hands to models.
//!
//! Google's Files API refuses a type that is not a real media type (`bad/mime_type`) at upload with
//! `400 INVALID_ARGUMENT "Unsupported MIME type: bad/mime_type"`, and stores registered types even when
//! Gemini cannot read them (they fail at the model call). filegate does the same: a type must be
//! `type/subtype` tokens (RFC 6838) under a top-level type IANA registers, and a deployment may narrow the
//! accepted set further with `FILEGATE_ALLOWED_MIME_TYPES` globs.

use super::glob_matches;
use crate::error::Error;

/// The top-level media types IANA registers.
const REGISTERED_TOP_LEVEL: [&str; 11] =
    ["application", "audio", "example", "font", "haptics", "image", "message", "model", "multipart", "text", "video"];

const MAX_LEN: usize = 255;

/// The type of a file whose uploader named none.
pub const DEFAULT_MIME_TYPE: &str = "application/octet-stream";

/// Which media types this deployment stores.
#[derive(Debug, Clone)]
pub struct MediaTypePolicy {
    /// Globs (`*` wildcards) matched against the type's essence, lowercase (`video/*`).
    allowed: Vec<String>,
}

fn unsupported(mime: &str) -> Error {
    Error::invalid(format!("Unsupported MIME type: {mime}"))
}

/// The lowercase `type/subtype` of a well-formed media type of a registered top-level type; parameters
/// (`; charset=…`) are allowed and ignored here.
pub fn essence(mime: &str) -> Option<String> {
    let token = |s: &str| {
        !s.is_empty() && s.len() <= 127 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if mime.len() > MAX_LEN || !mime.is_ascii() {
        return None;
    }
    let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (kind, sub) = essence.split_once('/')?;
    (token(kind) && token(sub) && REGISTERED_TOP_LEVEL.contains(&kind)).then_some(essence)
}

/// The media type a caller means: Google's batch guide uploads request files as `jsonl`, which Google's
/// Files API takes; filegate stores them as `application/jsonl`. Anything else is as given.
pub fn resolve_alias(mime: String) -> String {
    if mime.trim().eq_ignore_ascii_case("jsonl") { "application/jsonl".into() } else { mime }
}

impl MediaTypePolicy {
    pub fn new(allowed: Vec<String>) -> Self {
        Self { allowed: allowed.into_iter().map(|g| g.to_ascii_lowercase()).collect() }
    }

    /// Accepts `mime` as it was given, or refuses it with Google's wording.
    pub fn check(&self, mime: &str) -> Result<(), Error> {
        let essence = essence(mime).ok_or_else(|| unsupported(mime))?;
        if self.allowed.iter().any(|glob| glob_matches(glob, &essence)) { Ok(()) } else { Err(unsupported(mime)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_types_pass_and_invented_ones_are_refused_with_googles_words() {
        let any = MediaTypePolicy::new(vec!["*".into()]);
        for ok in ["video/mp4", "text/plain; charset=utf-8", "application/cu-seeme", "image/svg+xml", "Video/MP4"] {
            assert!(any.check(ok).is_ok(), "{ok}");
        }
        for bad in ["bad/mime_type", "", "video", "video/", "/mp4", "vid eo/mp4", "vidéo/mp4", "x-foo/bar"] {
            let err = any.check(bad).unwrap_err().to_string();
            assert_eq!(err, format!("Unsupported MIME type: {bad}"));
        }
    }

    #[test]
    fn a_deployment_can_narrow_the_types_with_globs() {
        let media = MediaTypePolicy::new(vec!["video/*".into(), "application/PDF".into()]);
        assert!(media.check("video/webm").is_ok());
        assert!(media.check("application/pdf; x=1").is_ok());
        assert!(media.check("image/png").is_err());
        assert!(media.check("application/octet-stream").is_err());
    }
}
