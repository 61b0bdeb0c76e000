//! The primary path: pgshadow is a transparent relay (issue "Transparent
//! Postgres relay"). Every test talks to a real PostgreSQL server, through
//! the real `pgshadow` binary.

#[path = "../harness/mod.rs"]
mod harness;

mod auth;
mod budgets;
mod cancel;
mod differential;
mod failures;
mod lifecycle;
mod notify;
mod pgbench;
mod psql;
mod psycopg;
mod streaming;
mod tokio_postgres_client;
