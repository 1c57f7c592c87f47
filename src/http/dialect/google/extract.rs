//! Extractors whose rejections speak Google's error format, and the caller's project on a Gemini route. axum's own `Path` and `Query` reject with a
//! plain-text body (a path segment that is not UTF-8, a repeated query field); every reply of filegate,
//! errors included, is JSON on its surface's format.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::GeminiError;
use crate::domain::ProjectId;
use crate::error::Error;
use crate::http::auth::gemini_project;
use crate::http::state::HttpState;
use crate::services::model::{REQUEST_MAX_BYTES, body_too_large};

/// `Path<T>`, rejecting with a google.rpc.Status `INVALID_ARGUMENT`.
pub struct GPath<T>(pub T);

/// `Query<T>`, rejecting with a google.rpc.Status `INVALID_ARGUMENT`.
pub struct GQuery<T>(pub T);

/// `?pageSize=&pageToken=` of Google's list methods.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for GPath<T> {
    type Rejection = GeminiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(GeminiError::Failed(Error::invalid(format!("Invalid request path: {}", rejection.body_text()))))
            }
        }
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for GQuery<T> {
    type Rejection = GeminiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(GeminiError::Failed(Error::invalid(format!("Invalid query string: {}", rejection.body_text()))))
            }
        }
    }
}

/// The caller's project on a Gemini route; a missing or unknown key is refused in Google's format.
pub(crate) struct GeminiCaller(pub ProjectId);

impl FromRequestParts<HttpState> for GeminiCaller {
    type Rejection = GeminiError;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, GeminiError> {
        Ok(Self(gemini_project(state, parts).await?))
    }
}

/// A request body that must be one JSON object, at most the upstream's request size.
pub async fn read_json_object(body: Body) -> Result<Value, GeminiError> {
    let bytes = crate::http::body::read_to_limit(body, REQUEST_MAX_BYTES as usize, body_too_large).await?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::invalid(format!("Invalid JSON payload received. {e}")))?;
    if !body.is_object() {
        return Err(GeminiError::Failed(Error::invalid("Invalid JSON payload received: the body must be an object.")));
    }
    Ok(body)
}
