//! The URL import surface (`docs/imports.md`): `POST /v1/files`, `GET` and `DELETE /v1/files/qfile-…`.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

pub use crate::http::dialect::openai::OpenAiError;

use crate::domain::{FieldCode, IMPORT_ID_PREFIX, ProjectId};
use crate::error::Error;
use crate::http::dialect::openai::view as openai_view;
use crate::http::state::Handles;
use crate::services::imports::{CreateImport, MAX_WAIT};
use crate::services::webhooks::RequestWebhooks;

type Result<T> = std::result::Result<T, OpenAiError>;

const MAX_BODY_BYTES: usize = 64 * 1024;

/// Whether `GET`/`DELETE /{version}/files/{segment}` addresses an import.
pub fn is_import(version: &str, segment: &str) -> bool {
    version == "v1" && segment.starts_with(IMPORT_ID_PREFIX)
}

/// Reads the JSON body field by field, so that every wrong field gets its own message; the import's own
/// webhooks come apart, to be checked before they are kept.
fn parse_create(bytes: &[u8]) -> std::result::Result<(CreateImport, Option<RequestWebhooks>), Error> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid_field(FieldCode::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(Error::invalid_field(FieldCode::InvalidJson, "the body must be a JSON object"));
    };
    let string = |fields: &Map<String, Value>, name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid_field(FieldCode::InvalidType, format!("{name} must be a string"))),
    };
    let expires_in = match fields.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
            Error::invalid_field(
                FieldCode::InvalidExpiresIn,
                format!("expires_in must be a whole number of seconds, got {n}"),
            )
        })?),
        Some(_) => {
            return Err(Error::invalid_field(FieldCode::InvalidExpiresIn, "expires_in must be a number of seconds"));
        }
    };
    let webhooks = match fields.get("webhook_config") {
        None | Some(Value::Null) => None,
        Some(config) => Some(serde_json::from_value(config.clone()).map_err(|e| {
            Error::invalid(format!(
                "webhook_config must be {{\"uris\": [\"https://…\"], \"user_metadata\": {{…}}}} ({e})"
            ))
        })?),
    };
    let request = CreateImport {
        source_url: string(&fields, "source_url")?,
        model: string(&fields, "model")?,
        expires_in,
        display_name: string(&fields, "display_name")?,
        sha256: string(&fields, "sha256")?,
        idempotency_key: None,
        webhook_config: None,
    };
    Ok((request, webhooks))
}

/// `POST /v1/files`
pub async fn create(app: &Handles, project: ProjectId, parts: &Parts, body: Body) -> Result<Response> {
    let bytes = crate::http::body::read_to_limit(body, MAX_BODY_BYTES, || {
        Error::invalid_field(FieldCode::BodyTooLarge, format!("the body is larger than {MAX_BODY_BYTES} bytes"))
    })
    .await?;
    let (mut request, webhooks) = parse_create(&bytes)?;
    request.idempotency_key = match parts.headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    Error::invalid_field(FieldCode::InvalidIdempotencyKey, "Idempotency-Key must be printable ASCII")
                })?
                .to_owned(),
        ),
    };
    if let Some(config) = webhooks {
        request.webhook_config = Some(app.webhooks.check_request(&project, config).await?);
    }
    let file = app.imports.create(project, request).await?;
    Ok(Json(openai_view::import_file(app, &file)).into_response())
}

/// `GET /v1/files/qfile-…[?wait=N]`
pub async fn get(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    let wait =
        match parts.uri.query().and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "wait")) {
            None => None,
            Some((_, value)) => {
                let seconds: u64 = value.parse().map_err(|_| {
                    Error::invalid_field(FieldCode::InvalidWait, "wait must be a whole number of seconds")
                })?;
                if Duration::from_secs(seconds) > MAX_WAIT {
                    return Err(Error::invalid_field(
                        FieldCode::InvalidWait,
                        format!("wait must be at most {} seconds", MAX_WAIT.as_secs()),
                    )
                    .into());
                }
                Some(Duration::from_secs(seconds))
            }
        };
    let file = app.imports.get(&project, id, wait).await?;
    Ok(Json(openai_view::import_file(app, &file)).into_response())
}

/// `DELETE /v1/files/qfile-…`
pub async fn delete(app: &Handles, parts: &Parts, id: &str) -> Result<Response> {
    let project = crate::http::auth::import_project(app, parts).await?;
    let file = app.imports.delete(&project, id).await?;
    Ok(Json(openai_view::deleted_import(&file)).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_wrong_field_is_named() {
        let err = |body: &str| parse_create(body.as_bytes()).unwrap_err().to_string();
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("JSON object"));
        assert_eq!(err(r#"{"source_url": 5}"#), "source_url must be a string");
        assert_eq!(err(r#"{"model": []}"#), "model must be a string");
        assert!(err(r#"{"expires_in": "60"}"#).contains("expires_in must be a number"));
        assert!(err(r#"{"expires_in": 1.5}"#).contains("whole number"));
        assert!(err(r#"{"webhook_config": {"uris": "https://x"}}"#).starts_with("webhook_config must be"));
        let (ok, webhooks) =
            parse_create(br#"{"source_url": "https://x/y", "model": "m", "expires_in": 60, "extra": 1}"#).unwrap();
        assert_eq!((ok.expires_in, webhooks), (Some(60), None));
        let (_, webhooks) =
            parse_create(br#"{"webhook_config": {"uris": ["https://r/"], "user_metadata": {"a": 1}}}"#).unwrap();
        let webhooks = webhooks.unwrap();
        assert_eq!((webhooks.uris, webhooks.user_metadata), (vec!["https://r/".to_owned()], Some(json!({"a": 1}))));
    }
}
