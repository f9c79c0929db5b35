//! Wire protocols: the [`Protocol`] trait, the native JSON helpers in
//! [`native`], and the built-in [`JsonLines`] and [`LengthPrefixed`].
//!
//! A protocol is a codec in the shape of tokio-util's
//! [`Decoder`](tokio_util::codec::Decoder)/[`Encoder`](tokio_util::codec::Encoder):
//! bytes in, [`Decoded`] calls out; [`Reply`]s and [`Push`]es in, bytes out.
//! One instance is made per connection, so a protocol may keep per-connection
//! state (a translating protocol remembers, say, which of its ids it gave to
//! which call, or the user number a login reply carried).

mod json_lines;
mod length_prefixed;
pub mod native;

pub use json_lines::JsonLines;
pub use length_prefixed::LengthPrefixed;

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::limits::Limits;
use crate::message::{Call, Push, Reply};

/// What a [`Protocol`] decoded from one frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decoded {
    /// Call an API and encode its reply with [`Protocol::encode_reply`].
    Call(Call),
    /// Answer at once without calling anything, for input the protocol can
    /// answer and recover from: malformed JSON (400), an oversized frame it
    /// skipped (413). The reply goes through [`Protocol::encode_reply`] too.
    Reply(Reply),
}

/// A wire protocol: frames bytes into calls, and replies and pushes into bytes.
///
/// Like tokio-util's `Decoder`, [`decode`](Protocol::decode) returns
/// `Ok(None)` while it needs more bytes, and must never buffer more than the
/// frame limit it was made with. An `Err` closes the connection (the framing
/// is lost); recoverable bad input is [`Decoded::Reply`].
///
/// A translating protocol (a legacy chat protocol) turns its own messages
/// into [`Call`]s of the application's APIs — allocating any `id` it likes
/// and remembering it — writes zero or more frames for each reply (nothing
/// for messages that get no answer), and rewrites or drops pushes.
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use homer::{Call, Decoded, Protocol, ProtocolError, Push, Reply};
///
/// /// `PING` lines become calls of the `ping` API; replies are `PONG`.
/// #[derive(Default)]
/// struct Ping { next_id: u64 }
///
/// impl Protocol for Ping {
///     fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
///         let Some(end) = src.iter().position(|b| *b == b'\n') else {
///             if src.len() > 64 { return Err(ProtocolError::FrameTooLarge { len: src.len(), limit: 64 }); }
///             return Ok(None);
///         };
///         let line = src.split_to(end + 1);
///         self.next_id += 1;
///         Ok(Some(Decoded::Call(Call::new(self.next_id, "ping", serde_json::Value::Null))))
///     }
///     fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
///         dst.put_slice(if reply.result.is_ok() { b"PONG\n" } else { b"ERR\n" });
///         Ok(())
///     }
///     fn encode_push(&mut self, _push: &Push, _dst: &mut BytesMut) -> Result<(), ProtocolError> {
///         Ok(()) // this protocol has no pushes: drop them
///     }
/// }
///
/// let mut p = Ping::default();
/// let mut buf = BytesMut::from(&b"PING\nPI"[..]);
/// assert!(matches!(p.decode(&mut buf)?, Some(Decoded::Call(c)) if c.api == "ping"));
/// assert_eq!(p.decode(&mut buf)?, None);
/// # Ok::<(), ProtocolError>(())
/// ```
pub trait Protocol: Send + 'static {
    /// A short name for logs and [`Connection::protocol`](crate::Connection::protocol).
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Decodes one frame from `src`, or returns `Ok(None)` when more bytes
    /// are needed.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError>;

    /// Called when the peer has closed its side. By default decodes what is
    /// left and fails with [`ProtocolError::Truncated`] if an unfinished
    /// frame remains.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(ProtocolError::Truncated { len: src.len() }),
        }
    }

    /// Writes the frames (zero or more) answering a call.
    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError>;

    /// Writes the frames (zero or more) for a push.
    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError>;

    /// Writes a last frame before the server closes the connection for
    /// `reason`. Writes nothing by default.
    fn encode_close(&mut self, reason: &str, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let _ = (reason, dst);
        Ok(())
    }

    /// Whether what each `encode_*` call writes goes to the socket on its
    /// own, in one write, instead of being batched with the replies and
    /// pushes encoded after it. For peers that read one message per `read`
    /// (legacy clients that parse each read as one message). False by
    /// default: batching saves system calls.
    fn write_each_message(&self) -> bool {
        false
    }

    /// How long a connection of this protocol may stay silent before it is
    /// closed ([`CloseReason::Idle`](crate::CloseReason::Idle)), instead of
    /// the server's [`idle_timeout`](crate::HomerBuilder::idle_timeout):
    /// for peers that heartbeat less often than native clients (or never),
    /// or more. `None` (the default) keeps the server's.
    fn idle_timeout(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Makes one [`Protocol`] per accepted connection, given the server's
/// [`Limits`]. Any `Fn(&Limits) -> P` is one.
pub trait MakeProtocol: Send + Sync + 'static {
    /// The protocol made.
    type Protocol: Protocol;
    /// Makes the protocol for a new connection.
    fn make(&self, limits: &Limits) -> Self::Protocol;
}

impl<F, P> MakeProtocol for F
where
    F: Fn(&Limits) -> P + Send + Sync + 'static,
    P: Protocol,
{
    type Protocol = P;
    fn make(&self, limits: &Limits) -> P {
        self(limits)
    }
}

/// Makes [`JsonLines`] with the server's frame limit: pass to
/// [`Homer::listen_tcp`](crate::Homer::listen_tcp).
pub fn json_lines() -> impl MakeProtocol<Protocol = JsonLines> {
    |limits: &Limits| JsonLines::new(limits.max_frame_size())
}

/// Makes [`LengthPrefixed`] with the server's frame limit: pass to
/// [`Homer::listen_tcp`](crate::Homer::listen_tcp).
pub fn length_prefixed() -> impl MakeProtocol<Protocol = LengthPrefixed> {
    |limits: &Limits| LengthPrefixed::new(limits.max_frame_size())
}
