//! The shadow's own PostgreSQL connections.
//!
//! Built on `postgres-protocol` (message builders, MD5 and SCRAM-SHA-256)
//! rather than a full client, for two reasons: parameters must be replayed
//! byte for byte with the client's format codes and type OIDs, and results
//! must be requested in text format so that values compare across
//! compatible type changes (int4 → int8). Replies are decoded with the
//! project's bounds-checked readers.

use crate::capture::sample::SessionSettings;
use crate::protocol::backend::parameter_status;
use crate::protocol::error_response::{parse_error_fields, ErrorFields};
use crate::protocol::framing::{parse_header, HEADER_LEN};
use crate::protocol::reader::BodyReader;
use crate::tls::{Stream, UpstreamTls};
use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest reply accepted from the server (a DataRow can be up to 1 GB in
/// Postgres; rows beyond this are not compared).
const MAX_REPLY: usize = 256 * 1024 * 1024;

/// Why a shadow connection failed.
#[derive(Debug, Error)]
pub enum ConnError {
    /// TCP or I/O failure.
    #[error("shadow connection to {address} failed: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    /// Connecting took too long.
    #[error("shadow connection to {address} timed out after {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    /// The server refused the login.
    #[error("shadow login as {user:?} refused: {code} {message}")]
    Refused {
        user: String,
        code: String,
        message: String,
    },
    /// The server asked for something the shadow cannot do.
    #[error("shadow login as {user:?}: {what}")]
    Unsupported { user: String, what: String },
    /// The server sent something that is not valid protocol.
    #[error("shadow connection: invalid reply from the server: {0}")]
    Protocol(String),
    /// The role is a superuser: the shadow refuses to run as one.
    #[error(
        "shadow role {user:?} is a superuser; pgshadow refuses to replay statements as one \
         (a superuser's functions can write files, signal backends and bypass row security). \
         Create a read-only role and set shadow.user to it: \
         CREATE ROLE pgshadow_reader LOGIN PASSWORD '…'; GRANT pg_read_all_data TO pgshadow_reader; \
         (before PostgreSQL 14: GRANT USAGE ON SCHEMA <old>, <new> and GRANT SELECT ON ALL TABLES IN SCHEMA <old>, <new>), \
         and REVOKE from it anything beyond reading: \
         REVOKE pg_write_all_data, pg_signal_backend, pg_execute_server_program, pg_write_server_files FROM pgshadow_reader"
    )]
    Superuser { user: String },
    /// The sample was given up on purpose, never run or cancelled: the
    /// reason it is counted under.
    #[error("shadow sample given up: {0}")]
    GaveUp(crate::capture::skip::SkipReason),
}

impl ConnError {
    /// The same error again, for every sample of a batch it stopped.
    pub fn again(&self) -> ConnError {
        match self {
            ConnError::Io { address, source } => ConnError::Io {
                address: address.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ConnError::Timeout { address, timeout } => ConnError::Timeout {
                address: address.clone(),
                timeout: *timeout,
            },
            ConnError::Refused {
                user,
                code,
                message,
            } => ConnError::Refused {
                user: user.clone(),
                code: code.clone(),
                message: message.clone(),
            },
            ConnError::Unsupported { user, what } => ConnError::Unsupported {
                user: user.clone(),
                what: what.clone(),
            },
            ConnError::Protocol(what) => ConnError::Protocol(what.clone()),
            ConnError::Superuser { user } => ConnError::Superuser { user: user.clone() },
            ConnError::GaveUp(reason) => ConnError::GaveUp(*reason),
        }
    }
}

/// How to reach and log in to the database.
#[derive(Debug, Clone)]
pub struct ConnParams {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Role.
    pub user: String,
    /// Password, if the role needs one.
    pub password: Option<String>,
    /// Database.
    pub database: String,
    /// Connect and login timeout.
    pub connect_timeout: Duration,
    /// TLS as `shadow.tls` (else `upstream.tls`) says.
    pub tls: UpstreamTls,
}

impl ConnParams {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One backend message as received.
#[derive(Debug)]
pub struct Reply {
    /// The type byte.
    pub tag: u8,
    /// The body (shares the read buffer; no copy).
    pub body: Bytes,
}

/// What cancels the statement a connection is running: its backend's
/// key (BackendKeyData), sent on a connection of its own.
#[derive(Clone)]
pub struct CancelKey {
    /// The backend's process id.
    pub pid: i32,
    secret: i32,
    params: std::sync::Arc<ConnParams>,
}

impl CancelKey {
    /// Sends a CancelRequest (over TLS when the connections use it). The
    /// server answers nothing; errors are only logged.
    pub async fn cancel(&self) {
        let sent = async {
            let stream = TcpStream::connect((self.params.host.as_str(), self.params.port)).await?;
            let mut stream = self
                .params
                .tls
                .negotiate(stream)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut out = BytesMut::new();
            frontend::cancel_request(self.pid, self.secret, &mut out);
            stream.write_all(&out).await?;
            stream.flush().await?;
            // The server closes the connection once it has the request.
            let mut sink = [0u8; 1];
            let _ = stream.read(&mut sink).await;
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(self.params.connect_timeout, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(pid = self.pid, %error, "shadow cancel request failed")
            }
            Err(_) => tracing::warn!(pid = self.pid, "shadow cancel request timed out"),
        }
    }
}

/// A logged-in connection.
pub struct ShadowConn {
    stream: Stream,
    rx: BytesMut,
    address: String,
    /// Set when the connection is out of step or broken: it is then closed
    /// instead of returned to the pool.
    pub(crate) poisoned: bool,
    /// Samples run on this connection, for periodic resets.
    pub(crate) samples_run: u64,
    /// Writes sent so far (a batch of prepared samples is one).
    writes: u64,
    /// Statements prepared on this connection.
    pub(crate) statements: super::statements::StatementCache,
    /// The session settings in effect, as the server last reported them
    /// (ParameterStatus): a sample sets only those it needs changed.
    pub(crate) settings: SessionSettings,
    /// The backend's cancel key, once the server sent it.
    pub(crate) cancel: Option<CancelKey>,
    /// The server reported `is_superuser = on` at login.
    superuser: bool,
    /// This connection's share of `shadow.max_connections`.
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ShadowConn {
    /// Connects and logs in (trust, cleartext, MD5 or SCRAM-SHA-256).
    pub async fn connect(params: &ConnParams) -> Result<ShadowConn, ConnError> {
        let address = params.address();
        match tokio::time::timeout(params.connect_timeout, Self::login(params)).await {
            // Checked on every login (the server reports it unasked), so a
            // role made superuser later is refused too.
            Ok(Ok(conn)) if conn.superuser => Err(ConnError::Superuser {
                user: params.user.clone(),
            }),
            Ok(result) => result,
            Err(_) => Err(ConnError::Timeout {
                address,
                timeout: params.connect_timeout,
            }),
        }
    }

    async fn login(params: &ConnParams) -> Result<ShadowConn, ConnError> {
        let address = params.address();
        let io = |source| ConnError::Io {
            address: address.clone(),
            source,
        };
        let stream = TcpStream::connect((params.host.as_str(), params.port))
            .await
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let stream = params
            .tls
            .negotiate(stream)
            .await
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let mut conn = ShadowConn {
            stream,
            rx: BytesMut::with_capacity(16 * 1024),
            address: address.clone(),
            poisoned: false,
            samples_run: 0,
            writes: 0,
            statements: Default::default(),
            settings: SessionSettings::default(),
            cancel: None,
            superuser: false,
            permit: None,
        };
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", params.user.as_str()),
                ("database", params.database.as_str()),
                ("application_name", "pgshadow"),
                ("client_encoding", "UTF8"),
            ],
            &mut out,
        )
        .map_err(io)?;
        conn.send(&out).await?;
        let mut scram: Option<ScramSha256> = None;
        let password = || {
            params.password.clone().ok_or_else(|| ConnError::Unsupported {
                user: params.user.clone(),
                what: "the server asks for a password, but none is configured (shadow.password_env)".into(),
            })
        };
        loop {
            let reply = conn.read_reply().await?;
            let mut out = BytesMut::new();
            match reply.tag {
                b'R' => {
                    let mut r = BodyReader::new(&reply.body);
                    let code = r.i32("authentication code").map_err(protocol)?;
                    match code {
                        0 => {}
                        3 => {
                            let pw = password()?;
                            frontend::password_message(pw.as_bytes(), &mut out).map_err(io)?;
                        }
                        5 => {
                            let salt: [u8; 4] = r
                                .bytes(4, "md5 salt")
                                .map_err(protocol)?
                                .try_into()
                                .map_err(|_| ConnError::Protocol("md5 salt".into()))?;
                            let pw = password()?;
                            let hash = postgres_protocol::authentication::md5_hash(
                                params.user.as_bytes(),
                                pw.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hash.as_bytes(), &mut out).map_err(io)?;
                        }
                        10 => {
                            let mut offered = Vec::new();
                            while let Ok(m) = r.cstr("SASL mechanism") {
                                if m.is_empty() {
                                    break;
                                }
                                offered.push(String::from_utf8_lossy(m).into_owned());
                            }
                            if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                                return Err(ConnError::Unsupported {
                                    user: params.user.clone(),
                                    what: format!("no supported SASL mechanism in {offered:?}"),
                                });
                            }
                            let pw = password()?;
                            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                                .map_err(io)?;
                            scram = Some(s);
                        }
                        11 | 12 => {
                            let s = scram.as_mut().ok_or_else(|| {
                                ConnError::Protocol("SASL reply without SASL".into())
                            })?;
                            let data = r.remaining();
                            if code == 11 {
                                s.update(data)
                                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
                                frontend::sasl_response(s.message(), &mut out).map_err(io)?;
                            } else {
                                s.finish(data)
                                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
                            }
                        }
                        other => {
                            return Err(ConnError::Unsupported {
                                user: params.user.clone(),
                                what: format!("authentication method {other} is not supported"),
                            })
                        }
                    }
                    if !out.is_empty() {
                        conn.send(&out).await?;
                    }
                }
                b'E' => {
                    let f = parse_error_fields(&reply.body).unwrap_or_default();
                    return Err(ConnError::Refused {
                        user: params.user.clone(),
                        code: f.code,
                        message: f.message,
                    });
                }
                b'Z' => return Ok(conn),
                b'S' => conn.note_parameter(&reply.body),
                b'K' => {
                    let mut r = BodyReader::new(&reply.body);
                    let pid = r.i32("backend pid").map_err(protocol)?;
                    let secret = r.i32("backend secret").map_err(protocol)?;
                    conn.cancel = Some(CancelKey {
                        pid,
                        secret,
                        params: std::sync::Arc::new(params.clone()),
                    });
                }
                _ => {} // notices
            }
        }
    }

    /// Writes sent to the server so far, login included: a batch of
    /// samples whose statements are prepared takes one.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Whether the connection is out of step or broken (it is closed
    /// instead of returned to the pool).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The database the connection is logged in to.
    pub fn database(&self) -> &str {
        self.cancel
            .as_ref()
            .map_or("", |k| k.params.database.as_str())
    }

    /// The backend's process id (0 before the server sent its key).
    pub fn pid(&self) -> i32 {
        self.cancel.as_ref().map_or(0, |k| k.pid)
    }

    /// Writes bytes to the server.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.writes += 1;
        let result = match self.stream.write_all(bytes).await {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        result.map_err(|source| {
            self.poisoned = true;
            ConnError::Io {
                address: self.address.clone(),
                source,
            }
        })
    }

    /// Reads the next message. Notices and notifications are skipped,
    /// reported settings noted.
    pub async fn read_reply(&mut self) -> Result<Reply, ConnError> {
        loop {
            let reply = self.read_any().await?;
            match reply.tag {
                b'N' | b'A' => {}
                b'S' => self.note_parameter(&reply.body),
                _ => return Ok(reply),
            }
        }
    }

    /// A ParameterStatus: the setting's value from now on. (Within a
    /// sample's transaction the server reports its SET LOCAL values, and at
    /// ROLLBACK the session's again, so once a sample has been read to its
    /// ReadyForQuery this holds what the next transaction starts with.)
    fn note_parameter(&mut self, body: &[u8]) {
        if let Ok((name, value)) = parameter_status(body) {
            if name == "is_superuser" {
                self.superuser = value == "on";
            }
            self.settings.set(&name, &value);
        }
    }

    async fn read_any(&mut self) -> Result<Reply, ConnError> {
        loop {
            if let Some(raw) = self
                .rx
                .get(..HEADER_LEN)
                .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
            {
                let header = parse_header(raw, MAX_REPLY).map_err(|e| {
                    self.poisoned = true;
                    ConnError::Protocol(e.to_string())
                })?;
                if self.rx.len() >= header.frame_len() {
                    self.rx.advance(HEADER_LEN);
                    let body = self.rx.split_to(header.body_len).freeze();
                    return Ok(Reply {
                        tag: header.tag,
                        body,
                    });
                }
                self.rx.reserve(header.frame_len() - self.rx.len());
            } else {
                self.rx.reserve(16 * 1024);
            }
            let n = self.stream.read_buf(&mut self.rx).await.map_err(|source| {
                self.poisoned = true;
                ConnError::Io {
                    address: self.address.clone(),
                    source,
                }
            })?;
            if n == 0 {
                self.poisoned = true;
                return Err(ConnError::Io {
                    address: self.address.clone(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
        }
    }
}

fn protocol(e: crate::protocol::reader::DecodeError) -> ConnError {
    ConnError::Protocol(e.to_string())
}

/// The server's error, as the shadow records it.
pub fn server_error(body: &[u8]) -> ErrorFields {
    parse_error_fields(body).unwrap_or_else(|_| ErrorFields {
        severity: "ERROR".into(),
        code: "XX000".into(),
        message: "undecodable ErrorResponse".into(),
    })
}

/// An encoding error of `postgres_protocol`, as the connection's error.
pub(super) fn protocol_error(e: std::io::Error) -> ConnError {
    ConnError::Protocol(e.to_string())
}
