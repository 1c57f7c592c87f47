//! Webhooks: telling clients when a file is ready (or failed, or went) instead of making them poll.
//!
//! - **What** (`event.rs`): `file.active`, `file.failed`, `file.deleted`, `file.expired` and
//!   `batch.succeeded`, `batch.failed`, `batch.cancelled`, `batch.expired`, each queued in the transaction
//!   of the change it reports (an outbox in the metadata store), so a crash loses none and invents none.
//! - **To whom**: a project's registered webhooks (`/v1beta/webhooks`, the Gemini API's resource, managed
//!   here), each with its own signing secret; and an import's own `webhook_config.uris`, signed with the
//!   project's signing secret (`POST /v1beta/webhooks:rotateProjectSigningSecret` makes it, shown once).
//!   Events are per project: a webhook hears only its project's.
//! - **How** (`deliver.rs`, `sign.rs`): signed per Standard Webhooks, at least once with the same
//!   `webhook-id` on every retry, by whichever node leases the delivery.
//!
//! Receivers are reached only at addresses imports may reach (the same SSRF guard, checked when a URI is
//! given and again at every connection) and only over `https`, unless `FILEGATE_WEBHOOK_ALLOW_HTTP`.

mod deliver;
mod sign;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::services::outbox::{EventType, RequestWebhooks};
pub use deliver::{Deliverer, RenderFile};

use crate::domain::{FieldCode, Limit, ProjectId, Timestamp};
use crate::error::{Error, Result};
use crate::meta::{MetaStore, SigningSecrets, Webhook, WebhookState};
use crate::services::egress::{AddressPolicy, UrlProblem, check_parsed};
use crate::services::outbox;

/// Webhooks one project may register.
pub const MAX_WEBHOOKS: usize = 20;
/// Receivers one import may name.
pub const MAX_REQUEST_URIS: usize = 5;
/// Longest URI, in bytes.
const MAX_URI_BYTES: usize = 2048;
/// Largest `user_metadata`, as JSON.
const MAX_USER_METADATA_BYTES: usize = 4096;
/// How long a replaced secret keeps signing beside its successor.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Replaced secrets that may sign at once: a rotation beyond them, within a day, is refused rather than
/// cutting a secret off before its day is over (each one is a signature on every delivery).
pub const MAX_LIVE_REPLACED_SECRETS: usize = 10;

#[derive(Clone)]
pub struct WebhookSettings {
    /// Plain `http://` receivers allowed (tests, private networks).
    pub allow_http: bool,
    /// The addresses receivers may have: the import guard's.
    pub policy: Arc<AddressPolicy>,
    /// How long after its event a delivery is retried before it is dropped.
    pub retry_for: Duration,
    /// The wait before the first retry; it doubles each time.
    pub first_retry: Duration,
    /// The time limit of one attempt.
    pub attempt_timeout: Duration,
    /// Attempts in flight on one node.
    pub concurrency: usize,
}

/// A change asked by `PATCH`: `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct WebhookChange {
    pub uri: Option<String>,
    pub events: Option<Vec<String>>,
    pub state: Option<String>,
}

pub struct Webhooks {
    meta: Arc<dyn MetaStore>,
    settings: WebhookSettings,
}

impl Webhooks {
    pub fn new(meta: Arc<dyn MetaStore>, settings: WebhookSettings) -> Self {
        Self { meta, settings }
    }

    /// The worker that delivers what this node's (and every node's) transactions queue.
    pub fn deliverer(&self, render: RenderFile) -> Deliverer {
        Deliverer::new(self.meta.clone(), self.settings.clone(), render)
    }

    /// Registers a webhook; returns it with its signing secret, which is shown only now.
    pub async fn create(&self, project: &ProjectId, uri: Option<String>, events: Vec<String>) -> Result<Webhook> {
        let uri = uri.ok_or_else(|| Error::invalid("uri is required."))?;
        let uri = self.check_uri(&uri).await?;
        let events = check_events(events)?;
        let now = Timestamp::now();
        let webhook = Webhook {
            id: crate::domain::random_alphanumeric(16).to_lowercase(),
            project: project.clone(),
            uri,
            events,
            state: WebhookState::Enabled,
            secrets: SigningSecrets::new(sign::new_secret()),
            created_at: now,
            updated_at: now,
        };
        if !self.meta.insert_webhook(&webhook, MAX_WEBHOOKS as u64).await? {
            return Err(Error::FailedPrecondition(format!(
                "A project may have at most {MAX_WEBHOOKS} webhooks: delete one first."
            )));
        }
        Ok(webhook)
    }

    pub async fn get(&self, project: &ProjectId, id: &str) -> Result<Webhook> {
        self.meta.webhook(project, id).await?.ok_or_else(|| Error::WebhookNotFound(format!("webhooks/{id}")))
    }

    /// One page in id order; the token is the last webhook's id.
    pub async fn list(
        &self,
        project: &ProjectId,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<(Vec<Webhook>, Option<String>)> {
        let size = page_size.filter(|s| *s > 0).unwrap_or(MAX_WEBHOOKS as u32).min(MAX_WEBHOOKS as u32);
        let mut page = self.meta.webhooks(project, page_token.filter(|t| !t.is_empty()), size + 1).await?;
        let next = (page.len() > size as usize).then(|| {
            page.truncate(size as usize);
            page.last().map(|w| w.id.clone()).unwrap_or_default()
        });
        Ok((page, next))
    }

    pub async fn update(&self, project: &ProjectId, id: &str, change: WebhookChange) -> Result<Webhook> {
        let mut webhook = self.get(project, id).await?;
        if let Some(uri) = change.uri {
            webhook.uri = self.check_uri(&uri).await?;
        }
        if let Some(events) = change.events {
            webhook.events = check_events(events)?;
        }
        if let Some(state) = change.state {
            webhook.state = match WebhookState::parse(&state) {
                Some(state @ (WebhookState::Enabled | WebhookState::Disabled)) => state,
                _ => return Err(Error::invalid(format!("state must be enabled or disabled, not \"{state}\"."))),
            };
        }
        webhook.updated_at = Timestamp::now();
        if !self.meta.update_webhook(&webhook).await? {
            return Err(Error::WebhookNotFound(format!("webhooks/{id}")));
        }
        Ok(webhook)
    }

    pub async fn delete(&self, project: &ProjectId, id: &str) -> Result<()> {
        if !self.meta.delete_webhook(project, id).await? {
            return Err(Error::WebhookNotFound(format!("webhooks/{id}")));
        }
        Ok(())
    }

    /// A new signing secret, shown only now; the old one signs beside it for [`ROTATION_OVERLAP`].
    pub async fn rotate(&self, project: &ProjectId, id: &str) -> Result<Webhook> {
        let mut webhook = self.get(project, id).await?;
        let now = Timestamp::now();
        webhook.secrets = rotated(&webhook.secrets, now)?;
        webhook.updated_at = now;
        if !self.meta.update_webhook(&webhook).await? {
            return Err(Error::WebhookNotFound(format!("webhooks/{id}")));
        }
        Ok(webhook)
    }

    /// Queues a `webhook.ping` for this webhook, whatever it subscribed to; returns its `webhook-id`.
    pub async fn ping(&self, project: &ProjectId, id: &str) -> Result<String> {
        let webhook = self.get(project, id).await?;
        if webhook.state != WebhookState::Enabled {
            return Err(Error::FailedPrecondition(format!(
                "webhooks/{id} is {}: enable it first.",
                webhook.state.as_str()
            )));
        }
        let now = Timestamp::now();
        let event = outbox::Recorded::new(EventType::Ping, project, now).to_json()?;
        let delivery = outbox::delivery(project, EventType::Ping, outbox::Receiver::Webhook(webhook.id), event, now);
        let mut tx = self.meta.write().await?;
        tx.queue_deliveries(std::slice::from_ref(&delivery)).await?;
        tx.commit().await?;
        Ok(delivery.id)
    }

    /// A new signing secret for the project's per-request webhooks, shown only now; the one it replaces
    /// signs beside it for [`ROTATION_OVERLAP`].
    pub async fn rotate_project_secret(&self, project: &ProjectId) -> Result<String> {
        let now = Timestamp::now();
        let secrets = match self.meta.project_signing_secrets(project).await? {
            Some(old) => rotated(&old, now)?,
            None => SigningSecrets::new(sign::new_secret()),
        };
        self.meta.put_project_signing_secrets(project, &secrets, now).await?;
        Ok(secrets.current)
    }

    /// Checks an import's `webhook_config` (its URIs as a registered webhook's, its metadata's size) and
    /// that the project has a secret to sign its deliveries with; returns it as stored.
    pub async fn check_request(&self, project: &ProjectId, config: RequestWebhooks) -> Result<String> {
        if config.uris.is_empty() || config.uris.len() > MAX_REQUEST_URIS {
            return Err(Error::invalid(format!("webhook_config.uris must name 1 to {MAX_REQUEST_URIS} URIs.")));
        }
        let mut uris = Vec::with_capacity(config.uris.len());
        for uri in &config.uris {
            uris.push(self.check_uri(uri).await?);
        }
        let config = RequestWebhooks { uris, user_metadata: config.user_metadata };
        let stored = serde_json::to_string(&config).map_err(Error::internal)?;
        let metadata = config.user_metadata.as_ref().map_or(0, |m| m.to_string().len());
        if metadata > MAX_USER_METADATA_BYTES {
            return Err(Error::invalid(format!(
                "webhook_config.user_metadata is {metadata} bytes as JSON; at most {MAX_USER_METADATA_BYTES} are kept."
            )));
        }
        if self.meta.project_signing_secrets(project).await?.is_none() {
            return Err(Error::FailedPrecondition(
                "Per-request webhooks are signed with the project's signing secret, and this project has none \
                 yet: create it with POST /v1beta/webhooks:rotateProjectSigningSecret (it is shown once)."
                    .into(),
            ));
        }
        Ok(stored)
    }

    /// A receiver's URI: absolute, `https` (or `http` where allowed), without credentials, and at an
    /// address imports may reach. A host name is resolved now, for a clear answer at once; the address
    /// is checked again at every connection.
    async fn check_uri(&self, raw: &str) -> Result<String> {
        let invalid = |why: String| Error::invalid_field(FieldCode::InvalidWebhookUri, why);
        if raw.len() > MAX_URI_BYTES {
            return Err(invalid(format!("A webhook URI may be at most {MAX_URI_BYTES} bytes.")));
        }
        let url =
            url::Url::parse(raw.trim()).map_err(|e| invalid(format!("\"{raw}\" is not an absolute URI ({e}).")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.settings.allow_http => {}
            "http" => {
                return Err(invalid(format!(
                    "\"{raw}\": webhooks are delivered over https only (operators may allow http with \
                     FILEGATE_WEBHOOK_ALLOW_HTTP)."
                )));
            }
            other => return Err(invalid(format!("\"{raw}\": the scheme must be https, not {other}."))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(format!("\"{raw}\" must not carry credentials (user:pass@).")));
        }
        let forbidden = |ip: IpAddr| {
            Error::invalid_field(
                FieldCode::ForbiddenAddress,
                format!("\"{raw}\" points at {ip}, an address webhooks may not reach."),
            )
        };
        let url = check_parsed(url, &self.settings.policy).map_err(|problem| match problem {
            UrlProblem::Forbidden(ip) => forbidden(ip),
            UrlProblem::Invalid(why) => invalid(why.replace("source_url", "the webhook URI")),
        })?;
        if let Some(url::Host::Domain(host)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            // A name that does not resolve now may later: only a name that resolves to forbidden addresses
            // alone is refused.
            if let Ok(Ok(addresses)) =
                tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host, port))).await
            {
                let addresses: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
                if let Some(ip) =
                    addresses.first().filter(|_| addresses.iter().all(|a| !self.settings.policy.permits(*a)))
                {
                    return Err(forbidden(*ip));
                }
            }
        }
        Ok(url.to_string())
    }
}

/// Secrets after a rotation: a new current one; the old one live for [`ROTATION_OVERLAP`], and every
/// secret replaced before it until its own overlap ends.
fn rotated(old: &SigningSecrets, now: Timestamp) -> Result<SigningSecrets> {
    let replaced = (old.current.clone(), now.plus_seconds(ROTATION_OVERLAP.as_secs()));
    let previous: Vec<_> =
        std::iter::once(replaced).chain(old.previous.iter().filter(|(_, until)| *until > now).cloned()).collect();
    if previous.len() > MAX_LIVE_REPLACED_SECRETS {
        return Err(Error::LimitReached(Limit::SecretRotations { live: MAX_LIVE_REPLACED_SECRETS as u64 }));
    }
    Ok(SigningSecrets { current: sign::new_secret(), previous })
}

/// Event types to subscribe to: at least one, each known, each once.
fn check_events(events: Vec<String>) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(Error::invalid(format!(
            "subscribedEvents must name at least one of: {}.",
            EventType::SUBSCRIBABLE.map(EventType::as_str).join(", ")
        )));
    }
    let mut checked: Vec<String> = Vec::with_capacity(events.len());
    for name in events {
        if EventType::parse_subscribable(&name).is_none() {
            return Err(Error::invalid(format!(
                "\"{name}\" is not an event filegate sends; it sends {}.",
                EventType::SUBSCRIBABLE.map(EventType::as_str).join(", ")
            )));
        }
        if !checked.contains(&name) {
            checked.push(name);
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replaced_secret_signs_until_its_own_day_is_over() {
        let start = Timestamp::now();
        let first = SigningSecrets::new(sign::new_secret());
        let second = rotated(&first, start).unwrap();
        let an_hour_later = start.plus_seconds(3600);
        let third = rotated(&second, an_hour_later).unwrap();
        assert_eq!(third.live(an_hour_later), [&third.current, &second.current, &first.current]);
        let after_the_first_day = start.plus_seconds(ROTATION_OVERLAP.as_secs() + 1);
        assert_eq!(third.live(after_the_first_day), [&third.current, &second.current], "the first went at its end");
        // A rotation forgets what has ended: the secret of a day ago does not count against the limit.
        let fourth = rotated(&third, after_the_first_day).unwrap();
        assert_eq!(fourth.previous.len(), 2);

        let mut secrets = SigningSecrets::new(sign::new_secret());
        for _ in 0..MAX_LIVE_REPLACED_SECRETS {
            secrets = rotated(&secrets, start).unwrap();
        }
        let refused = rotated(&secrets, start).unwrap_err();
        assert!(matches!(refused, Error::LimitReached(Limit::SecretRotations { live: 10 })), "{refused:?}");
        assert!(rotated(&secrets, after_the_first_day).is_ok(), "once the day is over, rotations go on");
    }
}
