//! Extractors whose rejections speak Google's error format. axum's own `Path` and `Query` reject with a
//! plain-text body (a path segment that is not UTF-8, a repeated query field); every reply of filegate,
//! errors included, is JSON on its surface's format.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::gemini::GeminiError;
use crate::error::Error;

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
