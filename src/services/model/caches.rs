//! Context caches (`cachedContents`) made through filegate: created at the upstream from contents whose file
//! references are resolved and rewritten as for `generateContent`, owned by the project that made them.
//!
//! **Names.** Callers see `cachedContents/{id}` with filegate's own random id; the upstream's name (which
//! at Vertex AI carries filegate's Google project) stays in the database. A name that is not the caller's
//! project's, or that expired, answers like a missing cache, before any upstream call — in
//! `generateContent`'s `cachedContent` too.
//!
//! **A copy never dies before a cache made from it.** The upstream copies of files a cache was made from
//! (a staging-bucket object, a Files API file) are held until the cache expires, its later extensions
//! included: deleting or expiring the filegate file leaves them for the sweeper to take after that. (A Files
//! API file still goes at Google's own 48 hours; Google's caches keep what they read when they were made,
//! as do caches made from a file's own `gs://` object, so neither breaks a live cache.) Deleting a cache
//! does not shorten a hold: another cache may share the copy, and the sweeper takes it at the latest
//! expiry it was held for.

use std::collections::HashMap;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{Destination, Forwarded, Models};
use crate::domain::{ProjectId, Timestamp, random_alphanumeric};
use crate::error::{Error, Result};
use crate::meta::CachedContent;

/// A cache's reply from the upstream is a small JSON view; more is refused.
const MAX_VIEW_BYTES: usize = 1 << 20;
/// At most this many caches per page of a list.
const MAX_PAGE_SIZE: u32 = 1000;
const DEFAULT_PAGE_SIZE: u32 = 100;

/// The id in a cache name as callers spell it: `cachedContents/{id}`, or the Vertex AI SDKs'
/// `projects/{p}/locations/{l}/cachedContents/{id}` (whose project and location are not filegate's).
pub fn cache_id(name: &str) -> Option<&str> {
    let id = name.rsplit_once("cachedContents/").map_or(name, |(_, id)| id);
    let plain = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    plain.then_some(id)
}

fn not_found(name: &str) -> Error {
    Error::CacheNotFound(name.to_owned())
}

/// The spellings of the key that names a cache.
const CACHE_KEYS: [&str; 2] = ["cachedContent", "cached_content"];
/// Requests a body may carry whose `cachedContent` names a cache too (`countTokens`).
const NESTED_REQUESTS: [&str; 2] = ["generateContentRequest", "generate_content_request"];

/// Every cache name `body` gives (`cachedContent` of the request, or of the `generateContentRequest` a
/// `countTokens` carries), in either spelling of the key.
pub(super) fn cache_names(body: &Value) -> Result<Vec<String>> {
    let nested = NESTED_REQUESTS.iter().filter_map(|key| body.get(key));
    let mut names = Vec::new();
    for request in std::iter::once(body).chain(nested) {
        for key in CACHE_KEYS {
            match request.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(name)) => names.push(name.clone()),
                Some(_) => {
                    return Err(Error::invalid("cachedContent must be the name of a cache (cachedContents/…)."));
                }
            }
        }
    }
    Ok(names)
}

/// Replaces each cache name in `body` (where [`cache_names`] found them) with the upstream's, from `upstream`.
pub(super) fn rename_caches(body: &mut Value, upstream: &HashMap<String, String>) -> Result<()> {
    let rename = |request: &mut Value| -> Result<()> {
        for key in CACHE_KEYS {
            if let Some(Value::String(name)) = request.get(key) {
                let renamed = upstream
                    .get(name)
                    .ok_or_else(|| Error::internal(format!("the cache {name} was not resolved")))?
                    .clone();
                request[key] = Value::String(renamed);
            }
        }
        Ok(())
    };
    for key in NESTED_REQUESTS {
        if let Some(request) = body.get_mut(key) {
            rename(request)?;
        }
    }
    rename(body)
}

impl Models {
    /// Replaces every cache name in `body` that names one of the caller's caches with the upstream's name for
    /// it; a name that is not one answers like a missing cache, before anything is sent.
    pub(super) async fn resolve_cache_names(&self, project: &ProjectId, body: &mut Value) -> Result<()> {
        let mut upstream = HashMap::new();
        self.learn_caches(project, body, &mut upstream).await?;
        rename_caches(body, &upstream)
    }

    /// Looks up the caller's caches `body` names that `upstream` (named → the upstream's name) does not
    /// know yet, and adds them to it.
    pub(super) async fn learn_caches(
        &self,
        project: &ProjectId,
        body: &Value,
        upstream: &mut HashMap<String, String>,
    ) -> Result<()> {
        for named in cache_names(body)? {
            if let std::collections::hash_map::Entry::Vacant(unknown) = upstream.entry(named) {
                let cache = self.live_cache(project, unknown.key()).await?;
                unknown.insert(cache.upstream_name);
            }
        }
        Ok(())
    }

    async fn live_cache(&self, project: &ProjectId, name: &str) -> Result<CachedContent> {
        let id = cache_id(name).ok_or_else(|| not_found(name))?;
        match self.meta.cached_content(project, id).await? {
            Some(cache) if cache.expires_at > Timestamp::now() => Ok(cache),
            _ => Err(not_found(name)),
        }
    }

    /// `caches.create`: the upstream makes the cache from the rewritten contents; the copies it was given
    /// are held until it expires.
    pub async fn create_cache(&self, project: ProjectId, mut body: Value) -> Result<Value> {
        let upstream = self.upstream()?;
        let Some(named_model) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
            return Err(Error::invalid("A cache needs a model (models/gemini-2.5-flash, say)."));
        };
        let model = self.upstream_model(&named_model)?;
        body["model"] = Value::String(upstream.cache_model(&model));
        let Forwarded { reply, copies } = self.forward(upstream, Destination::NewCache, &project, &body).await?;
        let view = read_view(reply.body).await?;
        let upstream_name = view
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::internal(format!("{} answered a cache without a name", upstream.name())))?;
        let expires_at = expiry_of(&view)?;
        let id = random_alphanumeric(24);
        let shown = rename(view, &id, &named_model);
        if !copies.is_empty() {
            self.meta.hold_upstream_copies(&copies, expires_at).await?;
        }
        let cache = CachedContent {
            id,
            project,
            upstream_name,
            model: named_model,
            view: shown.to_string(),
            copies,
            created_at: Timestamp::now(),
            expires_at,
        };
        self.meta.put_cached_content(&cache).await?;
        Ok(shown)
    }

    /// `caches.get`: asked of the upstream, so that the view is current.
    pub async fn get_cache(&self, project: &ProjectId, name: &str) -> Result<Value> {
        let cache = self.live_cache(project, name).await?;
        let view = self.upstream()?.resource_request(reqwest::Method::GET, &cache.upstream_name, None).await?;
        Ok(rename(view, &cache.id, &cache.model))
    }

    /// `caches.list`: the project's live caches as last seen, `pageSize` at a time, in id order.
    pub async fn list_caches(
        &self,
        project: &ProjectId,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Value> {
        self.upstream()?;
        let limit = page_size.filter(|n| *n > 0).unwrap_or(DEFAULT_PAGE_SIZE).min(MAX_PAGE_SIZE);
        let after = page_token.filter(|t| !t.is_empty());
        if after.is_some_and(|t| cache_id(t) != Some(t)) {
            return Err(Error::invalid("Invalid page token."));
        }
        let caches = self.meta.cached_contents(project, Timestamp::now(), after, limit + 1).await?;
        let more = caches.len() > limit as usize;
        let page = &caches[..caches.len().min(limit as usize)];
        let views: Vec<Value> = page.iter().filter_map(|c| serde_json::from_str(&c.view).ok()).collect();
        let mut list = json!({ "cachedContents": views });
        if let (true, Some(last)) = (more, page.last()) {
            list["nextPageToken"] = Value::String(last.id.clone());
        }
        Ok(list)
    }

    /// `caches.update`: only the expiry may change (`ttl` or `expireTime`); the held copies follow it.
    pub async fn update_cache(&self, project: &ProjectId, name: &str, body: Value) -> Result<Value> {
        let fields = body.as_object().map(|o| o.keys().map(String::as_str).collect::<Vec<_>>()).unwrap_or_default();
        let allowed = ["ttl", "expireTime", "expire_time"];
        if fields.is_empty() || fields.iter().any(|f| !allowed.contains(f)) || fields.len() > 1 {
            return Err(Error::invalid(
                "Only the expiry of a cache can be updated: send exactly one of ttl or expireTime.",
            ));
        }
        let cache = self.live_cache(project, name).await?;
        let upstream = self.upstream()?;
        let view = upstream.resource_request(reqwest::Method::PATCH, &cache.upstream_name, Some(&body)).await?;
        let expires_at = expiry_of(&view)?;
        if !cache.copies.is_empty() {
            self.meta.hold_upstream_copies(&cache.copies, expires_at).await?;
        }
        let shown = rename(view, &cache.id, &cache.model);
        if !self.meta.update_cached_content(project, &cache.id, &shown.to_string(), expires_at).await? {
            return Err(not_found(name));
        }
        Ok(shown)
    }

    /// `caches.delete`: at the upstream (one already gone there counts as deleted), then here.
    pub async fn delete_cache(&self, project: &ProjectId, name: &str) -> Result<()> {
        let cache = self.live_cache(project, name).await?;
        match self.upstream()?.resource_request(reqwest::Method::DELETE, &cache.upstream_name, None).await {
            Ok(_) => {}
            Err(crate::error::UpstreamError::Status { status: 403 | 404, .. }) => {}
            Err(err) => return Err(err.into()),
        }
        self.meta.delete_cached_content(project, &cache.id).await?;
        Ok(())
    }
}

/// The upstream's JSON reply about a cache, read whole (it is small: a view, bounded).
async fn read_view(
    mut body: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, crate::error::UpstreamError>>,
) -> Result<Value> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk?);
        if bytes.len() > MAX_VIEW_BYTES {
            return Err(Error::internal("the upstream's view of a cache is over 1 MiB"));
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("the upstream's view of a cache: {e}")))
}

fn expiry_of(view: &Value) -> Result<Timestamp> {
    view.get("expireTime")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
        .ok_or_else(|| Error::internal("the upstream answered a cache without an expireTime"))
}

/// The upstream's view with filegate's name for the cache and the model as the caller named it.
fn rename(mut view: Value, id: &str, model: &str) -> Value {
    if let Some(object) = view.as_object_mut() {
        object.insert("name".into(), Value::String(format!("cachedContents/{id}")));
        object.insert("model".into(), Value::String(model.to_owned()));
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_read_in_every_spelling_the_sdks_send() {
        assert_eq!(cache_id("cachedContents/abc123"), Some("abc123"));
        assert_eq!(cache_id("projects/p/locations/us-central1/cachedContents/abc123"), Some("abc123"));
        assert_eq!(cache_id("abc123"), Some("abc123"));
        assert_eq!(cache_id("cachedContents/../x"), None);
        assert_eq!(cache_id("cachedContents/"), None);
    }
}
