//! Business rules, free of HTTP: who a key belongs to, what a file is, how an upload advances, what
//! expires. Services take and return domain types and report [`crate::error::Error`].

pub mod auth;
pub mod batches;
mod egress;
pub mod files;
pub mod fsck;
mod garbage;
pub mod health;
pub mod imports;
mod ingest;
pub mod janitor;
mod lease;
pub(crate) mod lifecycle;
mod locks;
mod meter;
pub mod migrate;
pub mod model;
pub mod outbox;
pub mod register;
pub mod uploads;
pub mod webhooks;

pub use auth::Auth;
pub use batches::Batches;
pub use files::Files;
pub use health::Health;
pub use imports::Imports;
pub use janitor::Janitor;
pub use model::Models;
pub use uploads::Uploads;
pub use webhooks::Webhooks;
