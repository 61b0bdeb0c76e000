//! `pgshadow demo` and the Docker packaging (issue "pgshadow demo, Docker
//! packaging and documentation", acceptance 1 to 3).
//!
//! [`run`] runs the real binary's demo end to end — its own PostgreSQL,
//! schemas, proxy and traffic — as root and as an ordinary user, and
//! checks what it reports and that it leaves nothing behind. [`docker`]
//! checks that `docker/docker-compose.yml`, the config it mounts and the
//! files around it agree, and runs the compose stack's init scripts and
//! config against a throw-away cluster (Docker itself is not needed).

#[path = "../harness/mod.rs"]
mod harness;

mod docker;
mod kubernetes;
mod run;
