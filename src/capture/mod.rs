//! Statement capture: which statements the application ran, whether each
//! succeeded, and which ones are handed to the shadow.
//!
//! The relay hands copies of a few client and server messages to a
//! per-session [`tracker::Tracker`]. It pairs requests with replies through
//! an explicit queue of expected replies and, when a sampled read has
//! completed successfully on the primary, emits a
//! [`tracker::Sample`]. Only cheap
//! work happens here ([`lexer`]); parsing and rewriting happen off the
//! relay, in the shadow workers. What every statement costs the relay is
//! counted per thread shard ([`counts`]). The relay reaches capture through
//! one trait ([`handoff::SessionCapture`]); the tricks that keep it cheap
//! are in `hot_path/`, each beside the figure that justifies it.

pub mod counts;
pub mod fingerprint;
pub mod handoff;
mod hot_path;
pub mod lexer;
pub mod sample;
pub mod skip;
mod statement;
pub mod tracker;
