//! API keys → projects. Keys are compared by their SHA-256 only: the database and the memory of this
//! process hold hashes, never a key in clear (except the one printed at a first start).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::{ApiKey, ProjectId, Timestamp};
use crate::error::{Error, Result};
use crate::meta::MetaStore;

pub struct Auth {
    meta: Arc<dyn MetaStore>,
    /// Keys from `FILEGATE_API_KEYS`, by hash.
    static_keys: HashMap<String, ProjectId>,
    /// When this node last wrote each database key's `last_used_at`: at most once per [`LAST_USE_EVERY`],
    /// so that authenticating stays a read.
    last_use_written: Mutex<HashMap<String, Instant>>,
}

/// How stale `filegate keys list`'s "last used" may be.
const LAST_USE_EVERY: Duration = Duration::from_secs(60);

/// The project that receives the key created at a first start.
pub const DEFAULT_PROJECT: &str = "default";

impl Auth {
    /// Registers the projects of the configured keys. When no key exists anywhere (none configured, none
    /// in the database), creates one for project `default` and returns it so that it can be shown once.
    pub async fn bootstrap(
        meta: Arc<dyn MetaStore>,
        static_keys: &[(ProjectId, ApiKey)],
    ) -> Result<(Self, Option<ApiKey>)> {
        for (project, _) in static_keys {
            meta.ensure_project(project).await?;
        }
        let mut created = None;
        if static_keys.is_empty() && meta.count_api_keys().await? == 0 {
            let project = ProjectId::parse(DEFAULT_PROJECT)?;
            created = Some(create_key(meta.as_ref(), &project, "created at first start").await?);
        }
        let static_keys = static_keys.iter().map(|(project, key)| (key.hash(), project.clone())).collect();
        Ok((Self { meta, static_keys, last_use_written: Mutex::default() }, created))
    }

    /// The project a presented key belongs to.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<ProjectId> {
        Ok(self.identify(presented).await?.0)
    }

    /// The project and the id of the key presented, if it is a valid one (as `filegate keys list` shows it).
    pub async fn key_id_of(&self, presented: Option<&str>) -> Result<(ProjectId, String)> {
        let (project, hash) = self.identify(presented).await?;
        Ok((project, crate::meta::key_id(&hash)))
    }

    /// The project of a presented key, and the key's hash.
    async fn identify(&self, presented: Option<&str>) -> Result<(ProjectId, String)> {
        let key = presented.map(str::trim).filter(|k| !k.is_empty()).ok_or(Error::MissingApiKey)?;
        let hash = ApiKey::new(key).hash();
        if let Some(project) = self.static_keys.get(&hash) {
            return Ok((project.clone(), hash));
        }
        let project = self.meta.project_for_key(&hash).await?.ok_or(Error::InvalidApiKey)?;
        self.note_use(&hash);
        Ok((project, hash))
    }

    /// Every project's counters (the operator view).
    pub async fn projects(&self) -> Result<Vec<crate::meta::ProjectReport>> {
        Ok(self.meta.usage().await?)
    }

    /// Keys in the database, revoked ones included (the operator view; keys of `FILEGATE_API_KEYS` are
    /// configuration, not listed).
    pub async fn keys(&self) -> Result<Vec<crate::meta::ApiKeyInfo>> {
        Ok(self.meta.list_api_keys(None).await?)
    }

    /// A new key for `project`, returned in clear this once, with its id.
    pub async fn create(&self, project: &ProjectId, label: &str) -> Result<(ApiKey, String)> {
        let key = create_key(self.meta.as_ref(), project, label).await?;
        let id = crate::meta::key_id(&key.hash());
        Ok((key, id))
    }

    /// Revokes the key of id `id`; `InvalidArgument` when no key has that id.
    pub async fn revoke(&self, id: &str) -> Result<crate::meta::ApiKeyInfo> {
        self.meta
            .revoke_api_key(id, Timestamp::now())
            .await?
            .ok_or_else(|| Error::invalid(format!("No key has the id {id}.")))
    }

    /// Records the key's use in the background: a request never waits for it, nor fails with it.
    fn note_use(&self, hash: &str) {
        let now = Instant::now();
        {
            let mut written = self.last_use_written.lock().expect("not poisoned");
            if written.get(hash).is_some_and(|at| now.duration_since(*at) < LAST_USE_EVERY) {
                return;
            }
            written.insert(hash.to_owned(), now);
        }
        let (meta, hash) = (self.meta.clone(), hash.to_owned());
        tokio::spawn(async move {
            if let Err(err) = meta.key_used(&hash, Timestamp::now()).await {
                tracing::debug!(%err, "could not record a key's last use");
            }
        });
    }
}

/// Creates a key for `project` (creating the project too) and returns it in clear, once.
pub async fn create_key(meta: &dyn MetaStore, project: &ProjectId, label: &str) -> Result<ApiKey> {
    meta.ensure_project(project).await?;
    let key = ApiKey::generate();
    meta.insert_api_key(project, &key.hash(), label).await?;
    Ok(key)
}
