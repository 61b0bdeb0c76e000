//! One stream type for plain and TLS connections.
//!
//! A session's client leg and upstream leg are each either plain TCP or
//! TLS over TCP, decided during startup. An enum (not a boxed trait
//! object) keeps the plain path what it was: one predictable branch per
//! read or write, then the socket call, and [`Stream::split`] hands out
//! TCP's own borrowed halves without any lock. TLS halves share the
//! session state through `tokio::io::split`, which both pumps of a session
//! poll from the same task, so its lock is never contended.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp;
use tokio::net::TcpStream;

type Tls = tokio_rustls::TlsStream<TcpStream>;

/// A connection, plain or encrypted.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, either side of the handshake (boxed: the TLS state is
    /// large, and most of a session's life is spent in the relay anyway).
    Tls(Box<Tls>),
}

impl Stream {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Read and write halves that can be driven concurrently.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Plain(s) => {
                let (r, w) = s.split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(s) => {
                let (r, w) = tokio::io::split(&mut **s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Plain(s)
    }
}

/// The reading half of a [`Stream`].
pub enum ReadHalf<'a> {
    /// Plain TCP.
    Plain(tcp::ReadHalf<'a>),
    /// TLS.
    Tls(tokio::io::ReadHalf<&'a mut Tls>),
}

/// The writing half of a [`Stream`].
pub enum WriteHalf<'a> {
    /// Plain TCP.
    Plain(tcp::WriteHalf<'a>),
    /// TLS.
    Tls(tokio::io::WriteHalf<&'a mut Tls>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Self::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            Self::Tls($s) => {
                let $s = Pin::new($s);
                $call
            }
        }
    };
}

/// `AsyncRead` for a type whose variants all implement it.
macro_rules! read_by_variant {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                dispatch!(self, s => s.poll_read(cx, buf))
            }
        }
    };
}

/// `AsyncWrite` for a type whose variants all implement it.
macro_rules! write_by_variant {
    ($ty:ty) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                dispatch!(self, s => s.poll_write(cx, buf))
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                dispatch!(self, s => s.poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                dispatch!(self, s => s.poll_shutdown(cx))
            }
        }
    };
}

read_by_variant!(Stream);
write_by_variant!(Stream);
read_by_variant!(ReadHalf<'_>);
write_by_variant!(WriteHalf<'_>);
