//! filegate: a self-hosted, Gemini-compatible Files API server with URL import.
//!
//! Layers, top to bottom (see `docs/architecture.md`):
//! - [`http`]: routes, extractors and the mapping of [`error::Error`] to each surface's error body;
//! - [`services`]: uploads, files, auth and the janitor, free of HTTP types;
//! - [`meta`] and [`blob`]: the storage ports (traits) and their backends;
//! - [`domain`], [`wire`], [`hash`], [`error`]: values, JSON shapes and the error every layer shares.

pub mod app;
pub mod blob;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod hash;
pub mod http;
pub mod meta;
pub mod outage;
pub mod services;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod wire;
