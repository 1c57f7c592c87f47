//! API keys → projects. Keys are compared by their SHA-256 only: the database and the memory of this
//! process hold hashes, never a key in clear (except the one printed at a first start).

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{ApiKey, ProjectId};
use crate::error::{Error, Result};
use crate::meta::MetaStore;

pub struct Auth {
    meta: Arc<dyn MetaStore>,
    /// Keys from `FILEGATE_API_KEYS`, by hash.
    static_keys: HashMap<String, ProjectId>,
}

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
        Ok((Self { meta, static_keys }, created))
    }

    /// The project a presented key belongs to.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<ProjectId> {
        let key = presented.map(str::trim).filter(|k| !k.is_empty()).ok_or(Error::MissingApiKey)?;
        let hash = ApiKey::new(key).hash();
        if let Some(project) = self.static_keys.get(&hash) {
            return Ok(project.clone());
        }
        self.meta.project_for_key(&hash).await?.ok_or(Error::InvalidApiKey)
    }
}

/// Creates a key for `project` (creating the project too) and returns it in clear, once.
pub async fn create_key(meta: &dyn MetaStore, project: &ProjectId, label: &str) -> Result<ApiKey> {
    meta.ensure_project(project).await?;
    let key = ApiKey::generate();
    meta.insert_api_key(project, &key.hash(), label).await?;
    Ok(key)
}
