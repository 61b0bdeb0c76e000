//! The primary path: what the application talks to.
//!
//! Session mode: every client connection gets its own upstream connection,
//! and bytes flow between the two as they arrive ([`relay`]). The proxy
//! is transparent: the client authenticates against the real server, sees
//! the real backend pid, and can cancel its queries through the proxy.

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
pub use listener::{Proxy, ProxyError};
pub use session::SessionEnd;
pub use upstream::UpstreamError;
