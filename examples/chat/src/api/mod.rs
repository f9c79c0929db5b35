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

/// A failure that is ours, not the caller's: logged, and a 500 without details.
pub(crate) fn fail(what: &str, e: impl Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::internal(format!("{what} failed"))
}

/// A storage failure: 503 when the store is unreachable (try again later),
/// 500 otherwise.
pub(crate) fn unavailable(e: nopi::Error) -> ApiError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "store unavailable");
        ApiError::new(
            503,
            "unavailable",
            "storage is unavailable; try again shortly",
        )
    } else {
        fail("storage", e)
    }
}

/// A broker failure: 503 when RabbitMQ is unreachable, 500 otherwise.
pub(crate) fn broker(e: rmq_core::Error) -> ApiError {
    let down = matches!(
        &e,
        rmq_core::Error::Timeout { .. }
            | rmq_core::Error::Connect { .. }
            | rmq_core::Error::Amqp { .. }
            | rmq_core::Error::Closed
    ) || matches!(&e, rmq_core::Error::Storage(s) if s.is_unavailable());
    if down {
        tracing::warn!(error = %e, "broker unavailable");
        ApiError::new(
            503,
            "unavailable",
            "messaging is unavailable; try again shortly",
        )
    } else {
        fail("messaging", e)
    }
}

/// An aucheck failure.
pub(crate) fn auth(e: aucheck::Error) -> ApiError {
    match e {
        aucheck::Error::Store(e) => unavailable(e),
        other => fail("permissions", other),
    }
}
