//! The primary path: pgshadow is a transparent relay (issue "Transparent
//! Postgres relay"). Every test talks to a real PostgreSQL server, through
//! the real `pgshadow` binary.

#[path = "../harness/mod.rs"]
mod harness;

mod psql;
