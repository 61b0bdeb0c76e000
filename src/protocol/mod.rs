//! The PostgreSQL v3 wire protocol, as far as a transparent proxy needs it.
//!
//! The relay never decodes rows: it finds message boundaries from headers
//! ([`framing`]) and decodes *copies* of a few small messages
//! ([`startup`], [`backend`], [`frontend`], [`error_response`]). All
//! decoding goes through [`reader::BodyReader`], so malformed bytes become
//! errors, never panics.

pub mod backend;
pub mod error_response;
pub mod framing;
pub mod frontend;
pub mod reader;
pub mod startup;
