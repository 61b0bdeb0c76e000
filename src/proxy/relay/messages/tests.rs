//! The relay's message decisions, fed through a framer as a pump feeds them.

use super::*;
use crate::capture::sample::SessionSettings;
use crate::protocol::backend::TransactionStatus;
use crate::protocol::framing::{encode_message, Framer};
use bytes::BytesMut;
use proptest::prelude::*;
use std::sync::Arc;

/// Capture that is never on: these tests look at the relay's own
/// decisions.
struct NoCapture;

impl SessionCapture for NoCapture {
    fn on_query(&mut self, _: &[u8]) {}
    fn on_parse(&mut self, _: &[u8]) {}
    fn on_bind(&mut self, _: &[u8]) {}
    fn on_execute(&mut self, _: &[u8]) {}
    fn on_close(&mut self, _: &[u8]) {}
    fn on_untracked(&mut self, _: u8) {}
    fn on_server_message(&mut self, _: u8) {}
    fn on_ready_for_query(&mut self, _: TransactionStatus) {}
    fn on_parameter_status(&mut self, _: &str, _: &str) {}
}

/// A server that hands the relay neither capture nor rewrites.
struct NoHandoff;

impl Handoff for NoHandoff {
    type Capture = NoCapture;
    fn captures(&self) -> bool {
        false
    }
    fn capture(&self, _: &str, _: SessionSettings) -> Option<NoCapture> {
        None
    }
    fn capture_limit(&self) -> usize {
        0
    }
    fn rewrites_primary(&self) -> bool {
        false
    }
    fn primary_rewrite(&self, _: &str) -> Option<Arc<str>> {
        None
    }
}

/// Feeds `input` in pieces through a framer with `handler`, as a pump
/// does, and returns the forwarded bytes and whether it failed.
fn relay<H: FrameHandler>(input: &[u8], cuts: &[usize], handler: &mut H) -> (Vec<u8>, bool) {
    let mut framer = Framer::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    for end in ends {
        buf.extend_from_slice(&input[start..end.max(start)]);
        start = end.max(start);
        match framer.advance(&mut buf, handler) {
            Ok(a) => {
                out.extend_from_slice(&buf.split_to(a.forward));
                if a.stop {
                    return (out, false);
                }
            }
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

fn frontend_message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(b"BCdcfDEHFPpQS".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(tag, body)| {
            let body = if frontend::bodyless_name(tag).is_some() {
                &[][..]
            } else {
                &body[..]
            };
            encode_message(tag, body)
        })
}

fn backend_message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(b"RKZESCDTAN123dcGHsnItVv".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(tag, body)| encode_message(tag, &body))
}

proptest! {
    #[test]
    fn valid_client_streams_pass_through_unchanged_at_any_chunking(
        msgs in proptest::collection::vec(frontend_message(), 1..30),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let input = msgs.concat();
        let state = Mutex::new(SessionState::<NoCapture>::new(None));
        let mut handler = ClientMessages { state: &state, max_body_len: 1 << 20, capture_limit: 0, primary_rewrites: None::<&NoHandoff> };
        let (out, failed) = relay(&input, &cuts, &mut handler);
        prop_assert!(!failed);
        prop_assert_eq!(out, input);
        let expected_ready = msgs.iter().filter(|m| frontend::expects_ready_for_query(m[0])).count();
        prop_assert_eq!(lock(&state).awaiting_ready as usize, expected_ready);
    }

    #[test]
    fn random_client_bytes_never_panic(
        input in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let state = Mutex::new(SessionState::<NoCapture>::new(None));
        let mut handler = ClientMessages { state: &state, max_body_len: 4096, capture_limit: 0, primary_rewrites: None::<&NoHandoff> };
        let (out, _) = relay(&input, &cuts, &mut handler);
        prop_assert!(input.starts_with(&out));
    }

    #[test]
    fn mutated_client_streams_never_panic(
        msgs in proptest::collection::vec(frontend_message(), 1..20),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut input = msgs.concat();
        for (at, x) in flips {
            let i = at % input.len();
            input[i] ^= x;
        }
        let state = Mutex::new(SessionState::<NoCapture>::new(None));
        let mut handler = ClientMessages { state: &state, max_body_len: 4096, capture_limit: 0, primary_rewrites: None::<&NoHandoff> };
        let (out, _) = relay(&input, &cuts, &mut handler);
        prop_assert!(input.starts_with(&out));
    }

    #[test]
    fn random_and_mutated_server_streams_never_panic(
        msgs in proptest::collection::vec(backend_message(), 0..20),
        noise in proptest::collection::vec(any::<u8>(), 0..500),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut input = msgs.concat();
        input.extend(noise);
        if !input.is_empty() {
            for (at, x) in flips {
                let i = at % input.len();
                input[i] ^= x;
            }
        }
        let state = Mutex::new(SessionState::<NoCapture>::new(None));
        let registry = CancelRegistry::default();
        let mut handler = ServerMessages {
            state: &state,
            cancel_registry: &registry,
            upstream_addr: SocketAddr::from(([127, 0, 0, 1], 5432)),
            capturing: false,
        };
        let _ = relay(&input, &cuts, &mut handler);
    }
}

fn client(state: &Mutex<SessionState<NoCapture>>) -> ClientMessages<'_, NoHandoff> {
    ClientMessages {
        state,
        max_body_len: POSTGRES_MAX,
        capture_limit: 0,
        primary_rewrites: None::<&NoHandoff>,
    }
}

const POSTGRES_MAX: usize = crate::protocol::framing::POSTGRES_MAX_MESSAGE_BYTES;

/// A header announcing `body_len` bytes, followed by a little of them.
fn announced(tag: u8, body_len: usize) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body_len + 4) as i32).to_be_bytes());
    m.extend_from_slice(&[0; 64]);
    m
}

#[test]
fn terminate_sync_and_flush_with_a_body_are_refused_on_their_header() {
    for (tag, name) in [(b'X', "Terminate"), (b'S', "Sync"), (b'H', "Flush")] {
        for ready in [false, true] {
            let state = Mutex::new(SessionState::<NoCapture>::new(None));
            if ready {
                lock(&state).phase = Phase::Ready;
            }
            let mut framer = Framer::new();
            let mut buf = BytesMut::from(&announced(tag, (1 << 30) - 5)[..]);
            let Err(ClientViolation(message)) = framer.advance(&mut buf, &mut client(&state))
            else {
                panic!("{name} with a body was accepted");
            };
            assert!(
                message.contains(&format!("invalid {name} message"))
                    && message.contains("1073741819 bytes"),
                "{message}"
            );
            assert!(buf.capacity() < 1 << 20, "nothing reserved for the body");
        }
    }
}

#[test]
fn before_authentication_only_small_messages_are_accepted() {
    let state = Mutex::new(SessionState::<NoCapture>::new(None));
    let small = encode_message(b'p', &[b'x'; frontend::MAX_AUTH_MESSAGE_LEN]);
    let (out, failed) = relay(&small, &[], &mut client(&state));
    assert!(!failed);
    assert_eq!(out, small);
    let big = announced(b'p', frontend::MAX_AUTH_MESSAGE_LEN + 1);
    let mut framer = Framer::new();
    let mut buf = BytesMut::from(&big[..]);
    let Err(ClientViolation(message)) = framer.advance(&mut buf, &mut client(&state)) else {
        panic!("a large password message was accepted");
    };
    assert!(
        message.contains("before authentication completed exceeds the limit of 65535 bytes"),
        "{message}"
    );
    // Once the session is ready, large messages stream through.
    lock(&state).phase = Phase::Ready;
    let mut framer = Framer::new();
    let mut buf = BytesMut::from(&announced(b'B', 100 << 20)[..]);
    let adv = framer.advance(&mut buf, &mut client(&state)).unwrap();
    assert_eq!(
        adv.forward, 69,
        "the header and what arrived are forwarded at once"
    );
}

#[test]
fn ready_for_query_settles_the_busy_state() {
    let state = Mutex::new(SessionState::<NoCapture>::new(None));
    let registry = CancelRegistry::default();
    let mut server = ServerMessages {
        state: &state,
        cancel_registry: &registry,
        upstream_addr: SocketAddr::from(([127, 0, 0, 1], 5432)),
        capturing: false,
    };
    let mut client = ClientMessages {
        state: &state,
        max_body_len: 1 << 20,
        capture_limit: 0,
        primary_rewrites: None::<&NoHandoff>,
    };
    let ready = encode_message(b'Z', b"I");
    relay(&ready, &[], &mut server);
    assert_eq!(lock(&state).phase, Phase::Ready);
    assert!(lock(&state).idle());
    // Two pipelined queries: busy until both are answered.
    relay(
        &[
            encode_message(b'Q', b"SELECT 1\0"),
            encode_message(b'Q', b"SELECT 2\0"),
        ]
        .concat(),
        &[],
        &mut client,
    );
    assert_eq!(lock(&state).awaiting_ready, 2);
    relay(&ready, &[], &mut server);
    assert!(lock(&state).busy());
    relay(&ready, &[], &mut server);
    assert!(!lock(&state).busy());
    // An extended batch flushed without Sync keeps the session busy.
    relay(
        &[
            encode_message(b'E', b"\0\0\0\0\0"),
            encode_message(b'H', b""),
        ]
        .concat(),
        &[],
        &mut client,
    );
    assert!(lock(&state).busy());
    relay(&[encode_message(b'Z', b"T")].concat(), &[], &mut server);
    assert!(!lock(&state).idle(), "a transaction is open");
}
