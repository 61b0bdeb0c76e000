//! The primary path: what the application talks to.
//!
//! Session mode: every client connection gets its own upstream connection,
//! and bytes flow between the two as they arrive ([`relay`]). The proxy
//! is transparent: the client authenticates against the real server, sees
//! the real backend pid, and can cancel its queries through the proxy.
//!
//! The proxy is handed what it needs: [`Proxy::bind`] binds the listener,
//! and [`Proxy::run`] gets a [`Handoff`] from the server, where sessions
//! hand their statements (to capture, and the primary's tiebreaker). The
//! proxy knows neither the shadow, the store nor the rewriter.
//!
//! Files: `listener.rs` (accept and shut down), `context.rs` (what every
//! session shares), `session.rs` (one connection, accept to close),
//! `handshake.rs`, `upstream.rs`, `relay/` (the byte pumps), `cancel.rs`,
//! `slots.rs` (connection limit), `handoff.rs` (the trait the server
//! implements).

mod cancel;
mod context;
mod handoff;
mod handshake;
mod listener;
mod relay;
mod session;
mod slots;
mod upstream;

pub use handoff::Handoff;
pub use listener::{ListenError, Proxy};
pub use session::SessionEnd;
pub use upstream::UpstreamError;
