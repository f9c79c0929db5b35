//! [`ChatError`]: why a chat operation failed, as the domain sees it.
//!
//! Domain operations (`users`, `friends`, `groups`, `messages`, `session`)
//! return it; only `api/` and `legacy/` turn it into a status, a code and a
//! message on the wire (`api::reply`). A failure that is not the caller's
//! keeps its source, which is logged where it is mapped and never shown.

use std::fmt::Display;
use std::time::Duration;

/// A boxed error: the source of a failure that is not the caller's.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a chat operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The request is malformed or breaks a rule (400).
    #[error("{message}")]
    Invalid {
        /// The machine-readable code (`bad_name`, `empty`, ...).
        code: &'static str,
        /// What to fix.
        message: String,
    },
    /// Not logged in, or the credentials or token are wrong (401).
    #[error("{message}")]
    Unauthenticated {
        /// `not_logged_in`, `bad_credentials`, `bad_token`.
        code: &'static str,
        /// What to do.
        message: String,
    },
    /// The caller may not do this (403).
    #[error("{message}")]
    Forbidden {
        /// `forbidden`, `not_member`.
        code: &'static str,
        /// Why not.
        message: String,
    },
    /// What the request names does not exist (404).
    #[error("{message}")]
    NotFound {
        /// `no_such_user`, `no_such_group`, `not_member`.
        code: &'static str,
        /// What is missing.
        message: String,
    },
    /// The request conflicts with what exists (409).
    #[error("{message}")]
    Conflict {
        /// `name_taken`, `group_exists`, `in_progress`, ...
        code: &'static str,
        /// With what.
        message: String,
    },
    /// Past a size or count limit (413).
    #[error("{message}")]
    TooLarge {
        /// `too_large`, `too_many_ids`, `too_many_friends`.
        code: &'static str,
        /// Which limit.
        message: String,
    },
    /// Past a rate limit: try again after `retry_after` (429).
    #[error("{message}")]
    TooMany {
        /// `rate_limited`, `too_many_attempts`, `too_many_registrations`, `busy`.
        code: &'static str,
        /// Which limit, and when to come back.
        message: String,
        /// How long to wait.
        retry_after: Duration,
    },
    /// A service the operation needs cannot be reached now; try again
    /// shortly (503).
    #[error("{service} is unavailable; try again shortly")]
    Unavailable {
        /// `storage`, `messaging`.
        service: &'static str,
        /// What was being done.
        what: &'static str,
        /// What the service's client reported.
        #[source]
        source: BoxError,
    },
    /// A failure that is not the caller's (500).
    #[error("{what} failed")]
    Internal {
        /// What was being done.
        what: &'static str,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

/// The result of a domain operation.
pub(crate) type Result<T, E = ChatError> = std::result::Result<T, E>;

impl ChatError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ChatError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        ChatError::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ChatError::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ChatError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ChatError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        ChatError::TooLarge {
            code,
            message: message.into(),
        }
    }

    /// A 429 that says when to come back: `retry_after` seconds in the
    /// message (at least 1).
    pub(crate) fn too_many(code: &'static str, what: &str, wait: Duration) -> Self {
        let secs = wait.as_secs_f64().ceil().max(1.0);
        ChatError::TooMany {
            code,
            message: format!("{what}; retry in {secs} s (retry_after={secs})"),
            retry_after: wait,
        }
    }

    /// `e` happened while doing `what`: unavailable when the service behind
    /// it was unreachable, internal otherwise.
    pub(crate) fn failed(what: &'static str, e: impl Failure) -> Self {
        match e.unreachable() {
            Some(service) => ChatError::Unavailable {
                service,
                what,
                source: e.into(),
            },
            None => ChatError::Internal {
                what,
                source: e.into(),
            },
        }
    }

    /// A broken invariant while doing `what` (a stored name that is not a
    /// valid id, say).
    pub(crate) fn internal(what: &'static str, why: impl Display) -> Self {
        ChatError::Internal {
            what,
            source: why.to_string().into(),
        }
    }

    /// The caller is not logged in.
    pub(crate) fn not_logged_in() -> Self {
        ChatError::unauthenticated("not_logged_in", "log in first (user.login or user.resume)")
    }

    pub(crate) fn bad_credentials() -> Self {
        ChatError::unauthenticated("bad_credentials", "wrong name or password")
    }

    pub(crate) fn no_such_user(name: &str) -> Self {
        ChatError::not_found("no_such_user", format!("no user named {name}"))
    }

    pub(crate) fn no_such_group(name: &str) -> Self {
        ChatError::not_found("no_such_group", format!("no group named {name}"))
    }

    /// The caller is not a member of `group`.
    pub(crate) fn not_member(group: &str) -> Self {
        ChatError::forbidden(
            "not_member",
            format!("you are not a member of group {group}"),
        )
    }

    /// `user` (not the caller) is not a member of `group`.
    pub(crate) fn not_a_member(user: &str, group: &str) -> Self {
        ChatError::not_found("not_member", format!("{user} is not a member of {group}"))
    }

    /// A refused permission check: unavailable when the permissions could
    /// not be read (the check failed closed, but the caller should retry,
    /// not be told "no"), `refusal()` otherwise.
    pub(crate) fn denied(e: aucheck::NotAuthorized, refusal: impl FnOnce() -> Self) -> Self {
        match e.reason {
            aucheck::DenyReason::Unavailable(why) => ChatError::Unavailable {
                service: "storage",
                what: "reading permissions",
                source: why.to_string().into(),
            },
            _ => refusal(),
        }
    }

    /// The machine-readable code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::Invalid { code, .. }
            | ChatError::Unauthenticated { code, .. }
            | ChatError::Forbidden { code, .. }
            | ChatError::NotFound { code, .. }
            | ChatError::Conflict { code, .. }
            | ChatError::TooLarge { code, .. }
            | ChatError::TooMany { code, .. } => code,
            ChatError::Unavailable { .. } => "unavailable",
            ChatError::Internal { .. } => "internal",
        }
    }
}

/// An error from a crate this app composes, which can tell whether the
/// service behind it (the store or RabbitMQ) was unreachable.
pub(crate) trait Failure: Into<BoxError> {
    /// The unreachable service (`"storage"`, `"messaging"`), if that is the cause.
    fn unreachable(&self) -> Option<&'static str> {
        None
    }
}

/// Errors of the crates whose only service is the store.
macro_rules! store_failure {
    ($($t:ty),*) => {$(
        impl Failure for $t {
            fn unreachable(&self) -> Option<&'static str> {
                self.is_unavailable().then_some("storage")
            }
        }
    )*};
}

store_failure!(
    nopi::Error,
    tiny_storage::Error,
    aucheck::Error,
    easy_cookie::SessionError
);

impl Failure for rmq_core::Error {
    fn unreachable(&self) -> Option<&'static str> {
        match self {
            rmq_core::Error::Timeout { .. }
            | rmq_core::Error::Connect { .. }
            | rmq_core::Error::Amqp { .. }
            | rmq_core::Error::Closed => Some("messaging"),
            rmq_core::Error::Storage(s) if s.is_unavailable() => Some("storage"),
            _ => None,
        }
    }
}

impl Failure for serde_json::Error {}
impl Failure for rmq_core::NameError {}

impl From<nopi::Error> for ChatError {
    fn from(e: nopi::Error) -> Self {
        ChatError::failed("storage", e)
    }
}

impl From<rmq_core::Error> for ChatError {
    fn from(e: rmq_core::Error) -> Self {
        ChatError::failed("messaging", e)
    }
}

impl From<aucheck::Error> for ChatError {
    fn from(e: aucheck::Error) -> Self {
        ChatError::failed("permissions", e)
    }
}
