//! What request handlers reach: the service handles, and how filegate spells its own URLs. `app.rs` builds
//! it (opening the stores, starting the background work); nothing here opens or owns a store, so a test
//! can build one over in-memory stores and drive [`super::router`] in-process.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::body::BodyLimits;
use crate::config::Limits;
use crate::services::register::Registrar;
use crate::services::{Auth, Batches, Files, Health, Imports, Models, Uploads, Webhooks};

pub struct Handles {
    pub auth: Auth,
    pub files: Files,
    pub uploads: Arc<Uploads>,
    pub imports: Imports,
    pub models: Arc<Models>,
    pub batches: Arc<Batches>,
    pub registrar: Registrar,
    pub webhooks: Webhooks,
    pub health: Health,
    pub metrics: PrometheusHandle,
    /// Base of every URL handed out (upload URLs, `uri`), without a trailing slash.
    pub public_url: String,
    pub body_limits: BodyLimits,
    /// The web console's settings; `None` when it is off.
    pub console: Option<ConsoleSettings>,
    /// Whether `/metrics` is served on the public address (it is not when it has one of its own).
    pub metrics_on_public: bool,
    /// Ids of the operators' keys (`FILEGATE_ADMIN_KEYS`): the console's operator view, the public
    /// `/metrics` in full.
    pub operator_key_ids: Vec<String>,
}

pub type HttpState = Arc<Handles>;

/// What the console needs of the configuration.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// The limits its meters show.
    pub limits: Limits,
}
