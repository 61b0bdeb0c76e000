//! pgshadow: a PostgreSQL wire-protocol proxy that checks a schema
//! migration online.
//!
//! Applications connect to pgshadow instead of the database. It relays
//! every message unchanged to the upstream server (the primary path,
//! [`proxy`]); the shadow comparison of sampled reads against the old and
//! new schema builds on that.
//!
//! Module map, following DESIGN.md:
//! - [`protocol`]: framing and the few decoded messages;
//! - [`proxy`]: listener, session, relay, cancel routing;
//! - [`capture`]: statement tracking, fingerprints, skip reasons;
//! - [`diff`]: comparing two result sets;
//! - [`shadow`]: sampler, queue, shadow connections and executor;
//! - [`rewrite`]: full parse, read classification, tiebreaker and table map;
//! - [`admin`]: the admin HTTP server (metrics, health);
//! - [`config`]: the typed configuration;
//! - [`observability`]: logs and metric definitions;
//! - [`localpg`]: throw-away PostgreSQL clusters for tests and the demo;
//! - [`cli`]: the `pgshadow` command line.

pub mod admin;
pub mod capture;
pub mod cli;
pub mod config;
pub mod diff;
pub mod localpg;
pub mod observability;
pub mod protocol;
pub mod proxy;
pub mod rewrite;
pub mod shadow;
