//! pgshadow: a PostgreSQL wire-protocol proxy that checks a schema
//! migration online.
//!
//! Applications connect to pgshadow instead of the database. It relays
//! every message unchanged to the upstream server (the primary path,
//! [`proxy`]); the shadow comparison of sampled reads against the old and
//! new schema builds on that.
//!
//! The path of one query through these modules, file by file, and the
//! rules `tests/architecture.rs` checks: ARCHITECTURE.md.
//!
//! Module map, following DESIGN.md:
//! - [`protocol`]: framing and the few decoded messages;
//! - [`proxy`]: listener, session, relay, cancel routing;
//! - [`capture`]: statement tracking, fingerprints, skip reasons;
//! - [`diff`]: comparing two result sets;
//! - [`outcome`]: what one comparison found, and the incident signature;
//! - [`shadow`]: sampler, queue, shadow connections and executor;
//! - [`rewrite`]: full parse, read classification, tiebreaker and table map;
//! - [`store`]: the mismatch store (incidents, examples, coverage) and its writer;
//! - [`admin`]: the admin HTTP server (metrics, health, JSON API, web page);
//! - [`alerts`]: the webhook on new incidents;
//! - [`config`]: the typed configuration;
//! - [`observability`]: logs and metric definitions;
//! - [`privacy`]: which production values logs and the store may keep;
//! - [`localpg`]: throw-away PostgreSQL clusters for tests and the demo;
//! - [`tls`]: TLS on the client leg, the upstream leg and the admin port;
//! - [`utc`]: epoch milliseconds as UTC times for people;
//! - [`reload`]: SIGHUP re-reads the config file and applies its hot keys;
//! - [`server`]: the application assembled (store, writer, shadow, plan
//!   caches, admin, webhook) and handed to the proxy;
//! - [`cli`]: the `pgshadow` command line: `run` (a [`server::Server`]),
//!   `demo` (a throw-away database, migration and traffic, [`cli::demo`])
//!   and `mismatches`.

pub mod admin;
pub mod alerts;
pub mod capture;
pub mod cli;
pub mod config;
pub mod diff;
pub mod localpg;
pub mod observability;
pub mod outcome;
pub mod privacy;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod rewrite;
pub mod server;
pub mod shadow;
pub mod store;
pub mod tls;
pub mod utc;
