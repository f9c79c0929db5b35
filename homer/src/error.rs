//! Errors: [`ApiError`] (what a handler answers), [`ProtocolError`] (what a
//! wire protocol fails with), [`PushError`] (a push that could not be queued),
//! [`BuildError`] (a [`HomerBuilder`](crate::HomerBuilder) setting that cannot
//! work) and [`Error`] (what starting a listener fails with).

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde::Serialize;

use crate::connection::ConnId;

/// The error half of a reply: an HTTP-like status, a machine-readable code
/// and a human-readable message.
///
/// Rendered on the native protocol as
/// `{"id":7,"status":403,"error":{"code":"not_member","message":"..."}}`.
///
/// ```
/// let err = homer::ApiError::new(403, "not_member", "you are not a member of group rust");
/// assert_eq!(err.status(), 403);
/// assert_eq!(err.code(), "not_member");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: u16,
    code: Cow<'static, str>,
    message: String,
}

#[derive(Serialize)]
struct ApiErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

impl Serialize for ApiError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ApiErrorBody {
            code: &self.code,
            message: &self.message,
        }
        .serialize(serializer)
    }
}

impl ApiError {
    /// An error with the given status, code and message.
    ///
    /// A status outside 400..=599 is replaced by 500: an error reply is never
    /// a success.
    pub fn new(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        let status = if (400..=599).contains(&status) {
            status
        } else {
            500
        };
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 401 with the given code.
    pub fn unauthorized(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(401, code, message)
    }

    /// 403 with the given code.
    pub fn forbidden(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(403, code, message)
    }

    /// 404 with the given code.
    pub fn not_found(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// 409 with the given code.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// 500 `internal` with the given message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// 404 `unknown_api`: no API is registered under `name`.
    pub fn unknown_api(name: &str) -> Self {
        Self::not_found(
            "unknown_api",
            format!("unknown api \"{}\"", truncate(name, 128)),
        )
    }

    /// 413 `too_large`: a request of `len` bytes (or more, when it was refused
    /// unread) exceeds `limit`.
    pub fn too_large(len: usize, limit: usize) -> Self {
        Self::new(
            413,
            "too_large",
            format!("request of {len} bytes exceeds the {limit}-byte limit"),
        )
    }

    /// 429 `rate_limited`.
    pub fn rate_limited(per_second: u32, burst: u32) -> Self {
        Self::new(
            429,
            "rate_limited",
            format!("more than {per_second} calls per second (bursts of {burst}); slow down"),
        )
    }

    /// 400 `malformed_json`.
    pub fn malformed_json(detail: impl fmt::Display) -> Self {
        Self::bad_request("malformed_json", format!("malformed json: {detail}"))
    }

    /// 400 `bad_params`: the params of `api` do not match what its handler
    /// expects.
    pub fn bad_params(api: &str, detail: impl fmt::Display) -> Self {
        Self::bad_request(
            "bad_params",
            format!(
                "params for api \"{}\" are invalid: {detail}",
                truncate(api, 128)
            ),
        )
    }

    /// The status, 400..=599.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The machine-readable code, such as `not_member`.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Shortens `s` to at most `max` bytes on a character boundary, for echoing
/// client input in messages without reflecting megabytes back.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why a [`Protocol`](crate::Protocol) could not decode or encode.
///
/// A decoding error closes the connection (the framing is lost); input the
/// protocol can answer, such as malformed JSON inside an intact frame, is
/// returned as [`Decoded::Reply`](crate::Decoded::Reply) instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame is larger than the protocol accepts and cannot be skipped.
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Size of the frame, as announced or as read so far.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed inside a frame: {len} bytes of an unfinished frame left")]
    Truncated {
        /// Bytes of the unfinished frame.
        len: usize,
    },
    /// The input cannot be understood and the protocol cannot recover.
    #[error("invalid frame: {0}")]
    Invalid(String),
    /// A reply or push could not be serialised.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// A push that could not be queued for a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The connection is closed or closing, or no connection has this id.
    #[error("connection {0} is closed or unknown")]
    Closed(ConnId),
    /// The connection's outbound queue is full; the connection is being
    /// disconnected as a slow reader.
    #[error(
        "outbound queue of connection {conn} is full ({capacity} messages); disconnecting it as a slow reader"
    )]
    QueueFull {
        /// The connection.
        conn: ConnId,
        /// The queue's capacity.
        capacity: usize,
    },
}

/// A [`HomerBuilder`](crate::HomerBuilder) setting that cannot work,
/// refused by [`build`](crate::HomerBuilder::build) instead of being
/// silently raised or ignored.
///
/// ```
/// let err = homer::Homer::builder().max_connections(0).build().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid max_connections: expected 1 to 2305843009213693951, got 0"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of its range, such as a zero connection limit or a
    /// timeout under 10 ms.
    #[error("invalid {setting}: expected {expected}, got {actual}")]
    InvalidSetting {
        /// The setting, named as the builder method that sets it
        /// (`max_connections`, `rate_limit per_second`).
        setting: &'static str,
        /// What is accepted.
        expected: String,
        /// What was given.
        actual: String,
    },
}

impl BuildError {
    pub(crate) fn setting(
        setting: &'static str,
        expected: impl Into<String>,
        actual: impl fmt::Display,
    ) -> Self {
        BuildError::InvalidSetting {
            setting,
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }
}

/// Starting or running a listener failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The server is shutting down and accepts no new listener.
    #[error("server is shutting down; no new listener accepted")]
    ShuttingDown,
    /// Another I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_outside_error_range_becomes_500() {
        assert_eq!(ApiError::new(200, "x", "y").status(), 500);
        assert_eq!(ApiError::new(404, "x", "y").status(), 404);
    }

    #[test]
    fn serialises_code_and_message_only() {
        let v = serde_json::to_value(ApiError::forbidden("not_member", "no")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "not_member", "message": "no"})
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn messages_name_the_input() {
        assert_eq!(
            ApiError::too_large(70000, 65536).message(),
            "request of 70000 bytes exceeds the 65536-byte limit"
        );
        assert_eq!(
            ProtocolError::FrameTooLarge {
                len: 70000,
                limit: 65536
            }
            .to_string(),
            "frame of 70000 bytes exceeds the 65536-byte limit"
        );
    }
}
