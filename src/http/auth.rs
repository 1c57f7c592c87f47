//! Which API key a request presents. The Gemini SDKs send `x-goog-api-key`; Google also accepts
//! `?key=` and `Authorization: Bearer`; the import surface's original clients send the bare key in
//! `Authorization`.

use axum::extract::Query;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;

use super::state::Handles;
use crate::domain::ProjectId;
use crate::error::Result;

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// The key a request presents, in order of precedence: `x-goog-api-key`, `?key=`, `Authorization`
/// (`Bearer <key>`, or the bare value when `bare_authorization`).
pub fn presented_key(parts: &Parts, bare_authorization: bool) -> Option<String> {
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(key) = header("x-goog-api-key").filter(|k| !k.is_empty()) {
        return Some(key.to_owned());
    }
    if let Some(key) = Query::<KeyQuery>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.key) {
        return Some(key);
    }
    let authorization = header(AUTHORIZATION.as_str())?;
    match authorization.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim().to_owned()),
        None if bare_authorization => Some(authorization.to_owned()),
        _ => None,
    }
}

/// The project of a request on the Gemini surfaces (`x-goog-api-key`, `?key=`, `Authorization: Bearer`).
pub async fn gemini_project(state: &Handles, parts: &Parts) -> Result<ProjectId> {
    state.auth.authenticate(presented_key(parts, false).as_deref()).await
}

/// The project of a request on the import and OpenAI surfaces (the bare key in `Authorization` too).
pub async fn import_project(state: &Handles, parts: &Parts) -> Result<ProjectId> {
    state.auth.authenticate(presented_key(parts, true).as_deref()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::harness::request_parts as parts;

    #[test]
    fn keys_are_found_where_google_accepts_them() {
        assert_eq!(presented_key(&parts("/v1/files", &[("x-goog-api-key", "k1")]), false).as_deref(), Some("k1"));
        assert_eq!(presented_key(&parts("/v1/files?key=k2&pageSize=3", &[]), false).as_deref(), Some("k2"));
        assert_eq!(presented_key(&parts("/v1/files", &[("authorization", "Bearer k3")]), false).as_deref(), Some("k3"));
        assert_eq!(presented_key(&parts("/v1/files", &[("authorization", "k4")]), false), None);
        assert_eq!(presented_key(&parts("/v1/files", &[("authorization", "k4")]), true).as_deref(), Some("k4"));
        assert_eq!(presented_key(&parts("/v1/files", &[]), true), None);
    }
}
