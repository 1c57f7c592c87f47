//! Integration tests: each one starts the real `filegate` binary on loopback and speaks HTTP to it.

mod auth;
mod batches;
mod caches;
mod chaos;
mod cli;
mod fake_google;
mod faultproxy;
mod faults;
mod files;
mod fsck;
mod gcs;
mod hostile;
mod imports;
mod lifecycle;
mod migrate;
mod model;
mod nodes;
mod openai_files;
mod ops;
mod references;
mod register;
mod sources;
mod support;
mod traces;
mod upgrade;
mod uploads;
