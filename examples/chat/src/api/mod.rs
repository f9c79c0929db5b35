//! Every API of PROTOCOL.md §1, registered on homer.

pub(crate) mod chat;
pub(crate) mod friend;
pub(crate) mod group;
pub(crate) mod user;

use std::fmt::Display;

use homer::ApiError;

use crate::app::Chat;

/// Params of APIs that take none: absent, `null` or `{}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

pub(crate) fn register(c: &Chat) {
    user::register(c);
    friend::register(c);
    group::register(c);
    chat::register(c);
    let hooks = c.clone();
    c.inner.homer.on_close(move |ctx, reason| {
        let chat = hooks.clone();
        async move {
            if let Some(login) = ctx.session().remove::<crate::session::Login>() {
                tracing::debug!(user = login.name(), ?reason, "connection closed");
                chat.logged_out(ctx.connection(), &login).await;
            }
        }
    });
    let resolver = c.clone();
    c.inner.homer.session_resolver(move |ctx, token| {
        let chat = resolver.clone();
        async move { user::resume_token(&chat, &ctx, &token).await.map(drop) }
    });
}

/// Register the API `name`: `f` gets the service, the call's context and its
/// typed params.
pub(crate) fn api<P, R, F, Fut>(c: &Chat, name: &str, f: F)
where
    F: Fn(Chat, homer::Context, P) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<R, ApiError>> + Send + 'static,
    P: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
{
    let chat = c.clone();
    c.inner.homer.api(name, move |ctx: homer::Context, p: P| {
        f(chat.clone(), ctx, p)
    });
}

/// An error from a crate this app composes, which can tell whether the
/// service behind it (the store or RabbitMQ) was unreachable.
pub(crate) trait Failure: Display {
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
impl Failure for &str {}
impl Failure for &String {}

/// 503: `service` (`"storage"`, `"messaging"`) cannot be reached now (the
/// cause is logged where it was seen).
pub(crate) fn down(service: &str) -> ApiError {
    crate::metrics::unavailable(service);
    ApiError::new(
        503,
        "unavailable",
        format!("{service} is unavailable; try again shortly"),
    )
}

/// A failure that is not the caller's: 503 when a service the call needs is
/// unreachable (try again shortly), otherwise logged and a 500 without details.
pub(crate) fn fail(what: &str, e: impl Failure) -> ApiError {
    match e.unreachable() {
        Some(service) => {
            tracing::warn!(error = %e, "{what}: {service} unavailable");
            down(service)
        }
        None => {
            tracing::error!(error = %e, "{what}");
            ApiError::internal(format!("{what} failed"))
        }
    }
}

/// A storage failure.
pub(crate) fn unavailable(e: nopi::Error) -> ApiError {
    fail("storage", e)
}

/// A broker failure.
pub(crate) fn broker(e: rmq_core::Error) -> ApiError {
    fail("messaging", e)
}

/// A refused permission check: 503 when the permissions could not be read
/// (the store is away: the check failed closed, but the caller should retry,
/// not be told "no"), `refusal()` otherwise.
pub(crate) fn denied(e: aucheck::NotAuthorized, refusal: impl FnOnce() -> ApiError) -> ApiError {
    match e.reason {
        aucheck::DenyReason::Unavailable(why) => {
            tracing::warn!(error = %why, "permissions unavailable");
            down("storage")
        }
        _ => refusal(),
    }
}

/// An aucheck failure.
pub(crate) fn auth(e: aucheck::Error) -> ApiError {
    fail("permissions", e)
}
