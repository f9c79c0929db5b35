//! `user.*`: register, login, resume, logout, who is online.

use std::time::Duration;

use homer::{ApiError, Context, Transport};
use serde::Deserialize;
use serde_json::{Value, json};
use tiny_storage::NewUser;

use super::{api, auth, broker, fail, unavailable};
use crate::app::{Chat, SessionData, USERS};
use crate::limits::too_many;
use crate::metrics::Limit;
use crate::session::{Acks, Login};
use crate::wire::LOBBY;

/// Longest password accepted, in bytes (argon2 input is bounded).
const MAX_PASSWORD: usize = 1024;
/// Most names `user.online` returns.
const MAX_ONLINE: usize = 10_000;

pub(super) fn register(c: &Chat) {
    api(c, "user.register", |chat, ctx, p: Register| async move {
        chat.register(&ctx, p).await
    });
    api(c, "user.login", |chat, ctx, p: LoginParams| async move {
        chat.login_with_password(&ctx, p, Acks::Client).await
    });
    api(c, "user.resume", |chat, ctx, p: Resume| async move {
        resume_token(&chat, &ctx, &p.token).await
    });
    api(
        c,
        "user.logout",
        |chat, ctx, _: super::NoParams| async move { chat.logout(&ctx).await },
    );
    api(
        c,
        "user.online",
        |chat, ctx, _: super::NoParams| async move {
            Chat::login(&ctx)?;
            let users = chat.online_users(MAX_ONLINE).await.map_err(unavailable)?;
            Ok::<_, ApiError>(json!({ "users": users }))
        },
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    pub(crate) name: String,
    pub(crate) password: String,
    #[serde(default)]
    pub(crate) number: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginParams {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) number: Option<u64>,
    pub(crate) password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resume {
    token: String,
}

/// How long a registration waits for a hashing slot before it is refused.
const HASHING_WAIT: Duration = Duration::from_secs(2);

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("bad_credentials", "wrong name or password")
}

impl Chat {
    pub(crate) async fn register(&self, ctx: &Context, p: Register) -> Result<Value, ApiError> {
        let Some(id) = Chat::user_id(&p.name) else {
            return Err(ApiError::bad_request(
                "bad_name",
                "a name is 1 to 64 of A-Z, a-z, 0-9, `_`, `-` and `.`",
            ));
        };
        if p.name.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::bad_request(
                "bad_name",
                "a name cannot be all digits (numbers log in legacy clients)",
            ));
        }
        if p.password.is_empty() || p.password.len() > MAX_PASSWORD {
            return Err(ApiError::bad_request(
                "bad_password",
                "a password is 1 to 1024 bytes",
            ));
        }
        if p.number == Some(0) {
            return Err(ApiError::bad_request("bad_number", "numbers start at 1"));
        }
        // Checked after the cheap checks (a typo costs nothing), before the
        // hash: a flood of accounts from one address, or from many, cannot
        // take every core.
        let abuse = &self.inner.abuse;
        if let Err(wait) = abuse.registrations.allow(&ctx.peer_ip()) {
            self.inner.metrics.rate_limited(Limit::Register);
            return Err(too_many(
                "too_many_registrations",
                "too many accounts created from this address",
                wait,
            ));
        }
        // Registrations queue for the hashing slots a little, then give up.
        let slot = tokio::time::timeout(HASHING_WAIT, abuse.hashing.clone().acquire_owned()).await;
        let Ok(Ok(_hashing)) = slot else {
            self.inner.metrics.rate_limited(Limit::Hashing);
            return Err(too_many(
                "busy",
                "the server is busy creating other accounts",
                Duration::from_secs(1),
            ));
        };
        let mut new = NewUser::new(p.name.clone()).password(p.password);
        if let Some(n) = p.number {
            new = new.number(n);
        }
        let member = match self
            .inner
            .auth
            .by("register")
            .create_user(new, Some(USERS))
            .await
        {
            Ok(m) => m,
            Err(aucheck::Error::Users(e)) => return Err(account_error(e)),
            Err(e) => return Err(auth(e)),
        };
        let user = self
            .inner
            .auth
            .users()
            .get(&member.name)
            .await
            .map_err(|e| fail("reading the new user", e))?;
        let number = user.and_then(|u| u.number()).unwrap_or_default();
        let lobby = rmq_core::RoomId::new(LOBBY).map_err(|e| fail("lobby id", e))?;
        self.inner.broker.ensure_inbox(&id).await.map_err(broker)?;
        self.inner.broker.join(&lobby, &id).await.map_err(broker)?;
        Ok(json!({ "name": member.name, "number": number }))
    }

    pub(crate) async fn login_with_password(
        &self,
        ctx: &Context,
        p: LoginParams,
        acks: Acks,
    ) -> Result<Value, ApiError> {
        let account = match (&p.name, p.number) {
            (Some(name), None) => name.clone(),
            (None, Some(n)) => n.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "bad_params",
                    "give either `name` or `number`, and `password`",
                ));
            }
        };
        let ip = ctx.peer_ip();
        if let Err(wait) = self.inner.abuse.failed_logins.check(&ip) {
            self.inner.metrics.rate_limited(Limit::LoginAddress);
            return Err(too_many(
                "too_many_attempts",
                "too many failed logins from this address",
                wait,
            ));
        }
        if let Err(wait) = self.inner.logins.check(&account) {
            self.inner.metrics.rate_limited(Limit::Login);
            return Err(too_many(
                "too_many_attempts",
                "too many failed logins for this account",
                wait,
            ));
        }
        let password = p.password;
        if password.len() > MAX_PASSWORD {
            self.inner.abuse.failed_logins.charge(&ip);
            self.inner.metrics.failed_login();
            return Err(bad_credentials());
        }
        let users = self.inner.auth.users();
        let verified = match p.number {
            Some(n) => users.verify(n, "password", password).await,
            None => users.verify(account.as_str(), "password", password).await,
        };
        let user = match verified {
            Ok(u) => u,
            Err(tiny_storage::Error::BadCredentials) => {
                self.inner.abuse.failed_logins.charge(&ip);
                self.inner.logins.failed(&account);
                self.inner.metrics.failed_login();
                return Err(bad_credentials());
            }
            Err(e) => return Err(account_error(e)),
        };
        self.inner.logins.succeeded(&account);
        let number = user.number().unwrap_or_default();
        let name = user.name().to_owned();
        let id = Chat::user_id(&name).ok_or_else(|| fail("user id", &name))?;
        // One session per user: a new login ends every older session.
        self.inner
            .sessions
            .revoke_all(&name)
            .await
            .map_err(|e| fail("revoking old sessions", e))?;
        let session = self
            .inner
            .sessions
            .start(&name, SessionData { number })
            .await
            .map_err(|e| fail("starting a session", e))?;
        if ctx.transport() == Transport::Http {
            ctx.set_session_key(session.token.clone());
            ctx.set_cookie(self.inner.sessions.set_cookie(&session));
        }
        let login = self
            .establish(ctx, id, number, session.token.clone(), acks)
            .await?;
        self.login_reply(&login).await
    }

    async fn logout(&self, ctx: &Context) -> Result<Value, ApiError> {
        let login = Chat::login(ctx)?;
        self.inner
            .sessions
            .revoke(&login.0.token)
            .await
            .map_err(|e| fail("revoking the session", e))?;
        if let Some(login) = ctx.session().remove::<Login>() {
            self.logged_out(ctx.connection(), &login).await;
        }
        if ctx.transport() == Transport::Http {
            ctx.set_cookie(self.inner.sessions.removal_cookie());
        }
        Ok(json!({}))
    }

    /// The reply to a login: `{token, name, number, friends, groups}`.
    pub(crate) async fn login_reply(&self, login: &Login) -> Result<Value, ApiError> {
        let friends = self.friend_list(login.name()).await?;
        let groups = self.my_groups(login.name()).await?;
        Ok(json!({
            "token": login.0.token,
            "name": login.name(),
            "number": login.0.number,
            "friends": friends,
            "groups": groups,
        }))
    }
}

/// `user.resume`, and the session resolver for HTTP and WebSocket requests
/// that carry a token: the session the token names becomes this connection's.
pub(crate) async fn resume_token(
    chat: &Chat,
    ctx: &Context,
    token: &str,
) -> Result<Value, ApiError> {
    let session = match chat.inner.sessions.get(token).await {
        Ok(s) => s,
        Err(
            easy_cookie::SessionError::Unknown { .. } | easy_cookie::SessionError::Expired { .. },
        ) => {
            return Err(ApiError::unauthorized(
                "bad_token",
                "the session is unknown or has expired; log in again",
            ));
        }
        Err(e) => return Err(fail("reading the session", e)),
    };
    let id = Chat::user_id(&session.user).ok_or_else(|| fail("user id", &session.user))?;
    if ctx.transport() == Transport::Http {
        ctx.set_session_key(token.to_owned());
    }
    let login = chat
        .establish(ctx, id, session.data.number, token.to_owned(), Acks::Client)
        .await?;
    chat.login_reply(&login).await
}

fn account_error(e: tiny_storage::Error) -> ApiError {
    use tiny_storage::Error as E;
    match e {
        E::NameTaken { .. } => ApiError::conflict("name_taken", "this name is taken"),
        E::NumberTaken { .. } => ApiError::conflict("number_taken", "this number is taken"),
        E::Invalid { attr, reason, .. } => {
            ApiError::bad_request("invalid", format!("{attr}: {reason}"))
        }
        E::BadCredentials => bad_credentials(),
        E::Storage(s) => unavailable(s),
        other => fail("accounts", other),
    }
}
