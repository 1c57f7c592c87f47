//! Wiring: open the stores, build the services and the handlers' state, start the background work,
//! serve, and shut down in order. No request is handled here (`http`), no rule decided (`services`).

use std::sync::Arc;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blob::{Blobs, BucketUrl, PartBudget, Provider};
use crate::config::Upstream;
use crate::config::{BlobStore, Config, Database, Problems, Storage};
use crate::domain::ApiKey;
use crate::http::body::BodyLimits;
use crate::http::state::Handles;
use crate::meta::MetaStore;
use crate::meta::sql::SqlMeta;
use crate::services::imports::{AddressPolicy, ImportQueue, ImportSettings, Workers};
use crate::services::model::ReferenceRules;
use crate::services::register::Registrar;
use crate::services::webhooks::{Deliverer, WebhookSettings};
use crate::services::{Auth, Batches, Files, Health, Imports, Janitor, Models, Uploads, Webhooks};
use crate::{http, telemetry};

/// Opens the metadata store of `storage` (for the serve command and the admin commands alike), applying
/// pending migrations unless `migrate` is false (PostgreSQL only: there, migrating may be left to
/// `filegate migrate` run once per deployment; SQLite always migrates, it has one user).
pub async fn open_meta(storage: &Storage, migrate: bool) -> anyhow::Result<Arc<dyn MetaStore>> {
    let pool = storage.database_max_connections;
    let meta = match &storage.database {
        Database::Sqlite(path) => SqlMeta::open_sqlite(path, pool, migrate)
            .await
            .with_context(|| format!("opening the database {}", path.display()))?,
        Database::Postgres(url) => {
            SqlMeta::open_postgres(url.expose_secret(), pool, migrate).await.context("connecting to PostgreSQL")?
        }
    };
    Ok(Arc::new(meta))
}

/// Opens the blob store `FILEGATE_BLOB_STORE` names (which also reads files registered from callers'
/// buckets).
pub async fn open_blobs(store: &BlobStore, budget: PartBudget) -> anyhow::Result<Arc<Blobs>> {
    let blobs = match store {
        BlobStore::Local(root) => Blobs::local(root.clone()).await?,
        BlobStore::Bucket(url) => Blobs::from_env(url)?,
    };
    Ok(Arc::new(blobs.with_part_budget(budget)))
}

/// Builds, and drops, the clients `serve` makes from the settings before it sends anything: the blob
/// store's, the Vertex staging bucket's and the model upstream's (its key as a header, Google's
/// application-default credentials). `filegate config check` runs this, so that what it passes does not
/// fail at start.
pub fn check_clients(config: &Config) -> Result<(), Problems> {
    let mut problems = Problems::default();
    if let BlobStore::Bucket(url) = &config.storage.blobs {
        if let Err(e) = crate::blob::BucketClients::from_env(url) {
            problems.push(format!("FILEGATE_BLOB_STORE {url}: {e}"));
        }
    }
    if let Upstream::Vertex { staging: Some(url), .. } = &config.model.upstream {
        if let Err(e) = crate::blob::BucketClients::from_env(url) {
            problems.push(format!("FILEGATE_VERTEX_STAGING_BUCKET {url}: {e}"));
        }
    }
    if let Err(e) = crate::services::model::upstream::UpstreamClient::new(&config.model) {
        problems.push(format!("FILEGATE_UPSTREAM: {e:#}"));
    }
    problems.into_result()
}

/// The Cloud Storage locations that hold filegate's own bytes (its blob store, the Vertex staging bucket):
/// callers may never register them as their files, nor name them to a model but as their own files.
fn own_gcs_locations(config: &Config) -> Vec<BucketUrl> {
    let staging = match &config.model.upstream {
        Upstream::Vertex { staging, .. } => staging.as_ref(),
        _ => None,
    };
    let store = match &config.storage.blobs {
        BlobStore::Bucket(url) => Some(url),
        BlobStore::Local(_) => None,
    };
    store.into_iter().chain(staging).filter(|url| url.provider == Provider::Gcs).cloned().collect()
}

/// A node's parts, opened and connected but not yet running: the handlers' state, and the background
/// work [`serve`] starts. Built apart from the listener and the process-wide metrics recorder so that a
/// test can assemble a node over a temporary directory and drive [`http::router`] in-process.
pub struct Node {
    pub meta: Arc<dyn MetaStore>,
    pub state: Arc<Handles>,
    pub janitor: Janitor,
    pub workers: Workers,
    pub deliverer: Deliverer,
    /// The key `Auth::bootstrap` created because none was configured, shown once.
    pub created_key: Option<ApiKey>,
}

/// Opens the stores of `config` and builds the services over them. `public_url` is the base of the URLs
/// handed out; `metrics` renders `/metrics`; background work started here (Vertex staging copies) stops
/// with `shutdown`.
pub async fn assemble(
    config: &Config,
    public_url: String,
    metrics: PrometheusHandle,
    shutdown: &CancellationToken,
) -> anyhow::Result<Node> {
    let meta = open_meta(&config.storage, true).await?;
    let blobs = open_blobs(&config.storage.blobs, config.storage.part_budget()).await?;
    if blobs.is_shared() {
        tokio::spawn(blobs.clone().watch_reachability(shutdown.child_token()));
    }
    tracing::info!("metadata store: {}", meta.describe());
    tracing::info!("blob store: {}", blobs.describe());
    let (auth, created_key) = Auth::bootstrap(meta.clone(), &config.static_keys).await?;

    let janitor = Janitor::new(meta.clone(), blobs.clone(), config.sweep_interval);
    let import_queue = Arc::new(ImportQueue::new(shutdown.child_token()));
    let import_settings = ImportSettings::new(config.imports.clone(), config.limits.clone());
    let rules = ReferenceRules {
        public_url: public_url.clone(),
        own: own_gcs_locations(config),
        allowed_gcs: config.register_buckets.clone(),
        gemini_files_base: match &config.model.upstream {
            Upstream::Gemini { endpoint, .. } => Some(endpoint.clone()),
            _ => None,
        },
        max_references: config.model.max_file_references,
    };
    let registrar = Registrar::new(
        meta.clone(),
        blobs.clone(),
        config.limits.clone(),
        config.register_buckets.clone(),
        rules.own.clone(),
    );
    let models = Models::new(&config.model, meta.clone(), blobs.clone(), rules)?;
    let imports = Imports::new(meta.clone(), blobs.clone(), import_settings, import_queue.clone());
    let mut workers = imports.workers();
    let models = Arc::new(models);
    if let Some(copies) = models.copies() {
        tokio::spawn(copies.run(config.sweep_interval, shutdown.child_token()));
        // An imported file that a model will read through a copy is copied as soon as it is ready.
        let models = models.clone();
        workers = workers.on_ready(Arc::new(move |file| {
            let models = models.clone();
            tokio::spawn(async move { models.prepare(&file).await });
        }));
    }
    let webhooks = Webhooks::new(
        meta.clone(),
        WebhookSettings {
            allow_http: config.webhooks.allow_http,
            policy: Arc::new(AddressPolicy::new(config.imports.allow_cidrs.clone())),
            retry_for: config.webhooks.retry_for,
            first_retry: config.webhooks.first_retry,
            attempt_timeout: config.webhooks.attempt_timeout,
            concurrency: config.webhooks.concurrency,
        },
    );
    let uploads = Arc::new(Uploads::new(meta.clone(), blobs.clone(), config.limits.clone()));
    let batches = Arc::new(Batches::new(
        meta.clone(),
        blobs.clone(),
        models.clone(),
        uploads.clone(),
        config.model.idle_timeout,
        config.limits.project_max_running_batches,
    ));
    let state = Arc::new(Handles {
        public_url,
        models,
        batches,
        registrar,
        files: Files::new(meta.clone(), blobs.clone(), import_queue.clone()),
        imports,
        uploads,
        webhooks,
        auth,
        health: Health::new(meta.clone(), blobs.clone()),
        metrics,
        body_limits: BodyLimits {
            idle: config.request_idle_timeout,
            min_bytes_per_second: config.request_min_bytes_per_second,
        },
        metrics_on_public: config.metrics_listen.is_none(),
        operator_key_ids: config.admin_key_ids.clone(),
        console: config.console.then(|| http::ConsoleSettings { limits: config.limits.clone() }),
    });
    // Events carry their files' views as the API shows them, rendered by the HTTP layer.
    let deliverer = state.webhooks.deliverer(http::webhooks::file_views(state.clone()));
    Ok(Node { meta, state, janitor, workers, deliverer, created_key })
}

/// Connections the metrics listener holds at once: a scraper or two, never a crowd (the descriptors for
/// them come out of the 256 [`crate::config`] keeps beside the client connections).
const METRICS_MAX_CONNECTIONS: usize = 64;

/// Runs `filegate serve` until SIGTERM or Ctrl-C.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let shutdown = CancellationToken::new();
    let Node { meta, state, janitor, workers, deliverer, created_key } =
        assemble(&config, public_url, telemetry::init_metrics()?, &shutdown).await?;
    if let Some(key) = created_key {
        println!(
            "No API key was configured, so one was created for project \"{}\". It is shown only now \
             (the database keeps its hash):\n\n    {}\n",
            crate::services::auth::DEFAULT_PROJECT,
            key.expose()
        );
    }
    let orphans = janitor.reconcile().await.context("reconciling storage with the database")?;
    tracing::info!(orphans_removed = orphans, "storage reconciled");

    let janitor_task = tokio::spawn(janitor.run(shutdown.child_token()));
    let import_workers = tokio::spawn(workers.run(shutdown.child_token()));
    tracing::info!(workers = config.imports.workers, "import workers started");
    let webhook_deliveries = tokio::spawn(deliverer.run(shutdown.child_token()));
    // Batch jobs are followed without anyone polling: their results collected, their webhooks told.
    tokio::spawn(state.batches.clone().watch(config.sweep_interval, shutdown.child_token()));
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    tracing::info!(public_url = %state.public_url, "listening on http://{addr}");
    // A stable line on stdout for scripts and tests that start filegate on port 0.
    println!("listening on http://{addr}");

    let limits = http::ConnectionLimits {
        idle: config.request_idle_timeout,
        max_connections: config.max_connections,
        grace: config.shutdown_grace,
    };
    tracing::info!(max_connections = limits.max_connections, "accepting connections");
    if let Some(address) = config.metrics_listen {
        let metrics = TcpListener::bind(address).await.with_context(|| format!("binding {address} for /metrics"))?;
        tracing::info!("metrics on http://{}/metrics", metrics.local_addr()?);
        // The public listener's limits, with a slot count of its own: silent connections to one listener
        // cannot take the descriptors or the slots of the other.
        let limits = http::ConnectionLimits { max_connections: METRICS_MAX_CONNECTIONS, ..limits };
        tokio::spawn(http::serve(metrics, http::metrics_router(state.clone()), limits, shutdown.clone()));
    }
    http::serve(listener, http::router(state.clone()), limits, shutdown.clone()).await;
    // Workers stop fetching and hand their tasks back to the queue; the janitor finishes its sweep.
    let _ = import_workers.await;
    let _ = janitor_task.await;
    let _ = webhook_deliveries.await;
    drop(state);
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested: draining requests");
    shutdown.cancel();
}
