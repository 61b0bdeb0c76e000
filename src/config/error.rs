//! Why a configuration could not be loaded, and the shape of one rejected
//! value that every section's `validate()` returns.

use thiserror::Error;

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin}: {source}")]
    Syntax {
        origin: String,
        source: Box<toml::de::Error>,
    },
    /// A key has the wrong type or is unknown.
    #[error("{origin}: key `{key}`: {source}")]
    Key {
        origin: String,
        key: String,
        source: Box<toml::de::Error>,
    },
    /// A value is well-typed but not acceptable.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

/// A value its type accepts but validation does not: the key (as written
/// in the file, `section.key`) and the reason.
pub(crate) type Rejection = (&'static str, String);

/// `Ok` when `ok`, else the key and the message `msg` builds.
pub(crate) fn check(
    ok: bool,
    key: &'static str,
    msg: impl FnOnce() -> String,
) -> Result<(), Rejection> {
    if ok {
        Ok(())
    } else {
        Err((key, msg()))
    }
}
