use std::fmt;

use base64::Engine as _;
use rand::{Rng as _, RngCore as _, rngs::OsRng};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::error::Error;

const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters of `[a-z0-9]` from the operating system's CSPRNG.
pub fn random_alphanumeric(len: usize) -> String {
    (0..len).map(|_| ALPHANUMERIC[OsRng.gen_range(0..ALPHANUMERIC.len())] as char).collect()
}

/// The prefix of import task ids; Gemini names may not start with it.
pub const IMPORT_ID_PREFIX: &str = "qfile-";

/// The id part of a Gemini file name (`files/{id}`).
///
/// Generated ids are 16 characters of `[a-z0-9]` (about 82 bits of entropy): the SDKs cut ids at the first
/// character outside `[a-z0-9]` when they parse a `uri`, so generated ids carry no dash. User-chosen ids
/// follow Gemini's rule: at most 40 characters of `[a-z0-9-]`, no leading or trailing dash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(String);

impl FileId {
    pub fn generate() -> Self {
        Self(random_alphanumeric(16))
    }

    /// Parses a user-chosen name, with or without the `files/` prefix.
    pub fn parse_user_name(name: &str) -> Result<Self, Error> {
        let id = name.strip_prefix("files/").unwrap_or(name);
        let valid = !id.is_empty()
            && id.len() <= 40
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if !valid {
            return Err(Error::InvalidArgument(format!(
                "Invalid file name \"{name}\": a file id has at most 40 characters of [a-z0-9-] \
                 and cannot start or end with '-'."
            )));
        }
        if id.starts_with(IMPORT_ID_PREFIX) {
            return Err(Error::InvalidArgument(format!(
                "Invalid file name \"{name}\": the prefix \"{IMPORT_ID_PREFIX}\" is reserved for URL imports."
            )));
        }
        Ok(Self(id.to_owned()))
    }

    /// Wraps an id read from a request path. Anything that cannot be a stored id simply finds nothing,
    /// so no validation error can tell a caller more than "not found".
    pub fn from_path(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// Wraps an id read back from the metadata store.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn import_id(&self) -> String {
        format!("{IMPORT_ID_PREFIX}{}", self.0)
    }

    /// The id of this file on the OpenAI surfaces: `file-{id}` (at most 45 characters, within OpenAI's 64).
    pub fn openai_id(&self) -> String {
        format!("{OPENAI_ID_PREFIX}{}", self.0)
    }

    /// The file an OpenAI id names: `file-{id}`, or the bare id. (A Gemini name that itself begins with
    /// `file-` is `file-file-…` there.)
    pub fn from_openai(id: &str) -> Self {
        Self::from_path(id.strip_prefix(OPENAI_ID_PREFIX).unwrap_or(id))
    }
}

/// The prefix of file ids on the OpenAI surfaces.
pub const OPENAI_ID_PREFIX: &str = "file-";

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project (tenant). Files, quotas and keys belong to projects; a project id is also a path segment of
/// blob keys, so it is restricted to `[a-z0-9_-]`, 1 to 63 characters, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    pub fn parse(id: &str) -> Result<Self, Error> {
        let valid = !id.is_empty()
            && id.len() <= 63
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && id.as_bytes()[0].is_ascii_alphanumeric();
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::InvalidArgument(format!(
                "Invalid project id \"{id}\": use 1 to 63 characters of [a-z0-9_-], starting with a letter or digit."
            )))
        }
    }

    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A token that is itself the credential: the secret part of an upload URL (whoever holds it may write to
/// that one upload session: the Python SDK sends no API key with chunks) and of a console download link
/// (a browser's download cannot send a header). 256 bits from the OS CSPRNG; the database stores only its
/// SHA-256, so a leaked database grants no access. Held as a [`SecretString`]: never printed, wiped from
/// memory when dropped.
#[derive(Clone)]
pub struct SecretToken(SecretString);

impl SecretToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes).into())
    }

    pub fn from_request(token: &str) -> Self {
        Self(token.into())
    }

    pub fn as_str(&self) -> &str {
        self.0.expose_secret()
    }

    /// What the metadata store keeps and looks sessions up by.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.expose_secret())
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(..)")
    }
}

/// An API key in clear, as a client presents it. Only its SHA-256 is ever stored; in memory it is a
/// [`SecretString`] (never printed, wiped when dropped).
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// `fg_` followed by 40 characters of `[a-z0-9]` (about 206 bits).
    pub fn generate() -> Self {
        Self(format!("fg_{}", random_alphanumeric(40)).into())
    }

    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().into())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn hash(&self) -> String {
        sha256_hex(self.0.expose_secret())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_file_ids_are_sixteen_lowercase_alphanumerics() {
        let id = FileId::generate();
        assert_eq!(id.as_str().len(), 16);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(FileId::generate(), id);
    }

    #[test]
    fn user_names_follow_geminis_rule() {
        assert_eq!(FileId::parse_user_name("files/big-one").unwrap().as_str(), "big-one");
        assert_eq!(FileId::parse_user_name("abc123").unwrap().as_str(), "abc123");
        assert!(FileId::parse_user_name(&"a".repeat(40)).is_ok());
        for bad in ["", "files/", "-abc", "abc-", "ABC", "a_b", "a.b", "files/a/b", &"a".repeat(41)] {
            assert!(FileId::parse_user_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn the_import_prefix_is_reserved() {
        let err = FileId::parse_user_name("files/qfile-abc").unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn project_ids_are_path_safe() {
        assert!(ProjectId::parse("default").is_ok());
        assert!(ProjectId::parse("team_a-1").is_ok());
        for bad in ["", "../x", "a/b", "-a", "A", &"a".repeat(64)] {
            assert!(ProjectId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn upload_tokens_are_long_and_stored_hashed() {
        let token = SecretToken::generate();
        assert_eq!(token.as_str().len(), 43);
        assert_eq!(token.hash().len(), 64);
        assert_ne!(token.hash(), token.as_str());
        assert_eq!(SecretToken::from_request(token.as_str()).hash(), token.hash());
    }
}
