//! Accounts: register, log in with a password or a token, log out, who is
//! online. The name and password rules live in the user model
//! ([`crate::app`]'s `user_model`); this module adds the per-address limits
//! around the costly hash.

use std::time::Duration;

use homer::{Context, Transport};
use tiny_storage::NewUser;

use crate::app::{Chat, SessionData, USERS};
use crate::error::{ChatError, Result};
use crate::metrics::Limit;
use crate::session::{Acks, Login};
use crate::wire::{LOBBY, LoggedIn, Login as LoginParams, Register, Registered, SessionEvent};

/// How long a registration waits for a hashing slot before it is refused.
const HASHING_WAIT: Duration = Duration::from_secs(2);

/// The rule of user names, checked by the user model: what rmq_core takes as
/// a user id, and not all digits (digits log in legacy clients by number).
pub(crate) fn check_name(name: &str) -> std::result::Result<(), String> {
    // Every name `tiny_storage::name` allows is a valid `rmq_core::UserId`.
    tiny_storage::name::check(name)?;
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a name cannot be all digits (numbers log in legacy clients)".into());
    }
    Ok(())
}

/// The user id of a stored user name (valid by the model's rule).
pub(crate) fn user_id(name: &str) -> Result<rmq_core::UserId> {
    rmq_core::UserId::new(name).map_err(|e| ChatError::failed("user id", e))
}

impl Chat {
    /// Create an account (in the lobby, with an inbox) for `p`, asked from
    /// `ctx`'s address.
    pub(crate) async fn register(&self, ctx: &Context, p: Register) -> Result<Registered> {
        if p.number == Some(0) {
            return Err(ChatError::invalid("bad_number", "numbers start at 1"));
        }
        let mut new = NewUser::new(p.name).password(p.password);
        if let Some(n) = p.number {
            new = new.number(n);
        }
        // The model's checks first (a typo costs nothing), then the limits,
        // before the hash: a flood of accounts from one address, or from
        // many, cannot take every core.
        self.inner.auth.users().check(&new).map_err(account_error)?;
        let abuse = &self.inner.abuse;
        if let Err(wait) = abuse.registrations.allow(&ctx.peer_ip()) {
            self.inner.metrics.rate_limited(Limit::Register);
            return Err(ChatError::too_many(
                "too_many_registrations",
                "too many accounts created from this address",
                wait,
            ));
        }
        // Registrations queue for the hashing slots a little, then give up.
        let slot = tokio::time::timeout(HASHING_WAIT, abuse.hashing.clone().acquire_owned()).await;
        let Ok(Ok(_hashing)) = slot else {
            self.inner.metrics.rate_limited(Limit::Hashing);
            return Err(ChatError::too_many(
                "busy",
                "the server is busy creating other accounts",
                Duration::from_secs(1),
            ));
        };
        let user = match self
            .inner
            .auth
            .by("register")
            .create_user(new, Some(USERS))
            .await
        {
            Ok(m) => m,
            Err(aucheck::Error::Users(e)) => return Err(account_error(e)),
            Err(e) => return Err(e.into()),
        };
        let stored = self
            .inner
            .auth
            .users()
            .get(&user.name)
            .await
            .map_err(|e| ChatError::failed("reading the new user", e))?;
        let number = stored.and_then(|u| u.number()).unwrap_or_default();
        let id = user_id(&user.name)?;
        let lobby = rmq_core::RoomId::new(LOBBY).map_err(|e| ChatError::failed("lobby id", e))?;
        self.inner.broker.ensure_inbox(&id).await?;
        self.inner.broker.join(&lobby, &id).await?;
        self.inner.log.join(&lobby, &id).await?;
        Ok(Registered {
            name: user.name,
            number,
        })
    }

    /// Log `ctx`'s connection in with a password, as device `p.device`: the
    /// device's older session ends (every older session with
    /// `--single-session`), and so does the least recently logged-in
    /// device's past `--max-devices`.
    pub(crate) async fn login_with_password(
        &self,
        ctx: &Context,
        p: LoginParams,
        acks: Acks,
    ) -> Result<LoggedIn> {
        let account = match (&p.name, p.number) {
            (Some(name), None) => name.clone(),
            (None, Some(n)) => n.to_string(),
            _ => {
                return Err(ChatError::invalid(
                    "bad_params",
                    "give either `name` or `number`, and `password`",
                ));
            }
        };
        let device = crate::session::device_id(p.device.as_deref())?;
        let ip = ctx.peer_ip();
        if let Err(wait) = self.inner.abuse.failed_logins.check(&ip) {
            self.inner.metrics.rate_limited(Limit::LoginAddress);
            return Err(ChatError::too_many(
                "too_many_attempts",
                "too many failed logins from this address",
                wait,
            ));
        }
        if let Err(wait) = self.inner.logins.check(&account) {
            self.inner.metrics.rate_limited(Limit::Login);
            return Err(ChatError::too_many(
                "too_many_attempts",
                "too many failed logins for this account",
                wait,
            ));
        }
        let users = self.inner.auth.users();
        let verified = match p.number {
            Some(n) => users.verify(n, "password", p.password).await,
            None => users.verify(account.as_str(), "password", p.password).await,
        };
        let user = match verified {
            Ok(u) => u,
            // Also a password past the model's limit, which is never hashed.
            Err(tiny_storage::Error::BadCredentials) => {
                self.inner.abuse.failed_logins.charge(&ip);
                self.inner.logins.failed(&account);
                self.inner.metrics.failed_login();
                return Err(ChatError::bad_credentials());
            }
            Err(e) => return Err(account_error(e)),
        };
        self.inner.logins.succeeded(&account);
        let number = user.number().unwrap_or_default();
        let name = user.name().to_owned();
        let id = user_id(&name)?;
        self.make_room_for(&id, &device).await?;
        let session = self
            .inner
            .sessions
            .start(
                &name,
                SessionData {
                    number,
                    device: Some(device.as_str().to_owned()),
                },
            )
            .await
            .map_err(|e| ChatError::failed("starting a session", e))?;
        if ctx.transport() == Transport::Http {
            ctx.set_session_key(session.token.clone());
            ctx.set_cookie(self.inner.sessions.set_cookie(&session));
        }
        let login = self
            .establish(ctx, id, number, session.token.clone(), device, acks)
            .await?;
        self.logged_in(&login).await
    }

    /// The session `token` names becomes `ctx`'s connection's: `user.resume`,
    /// and HTTP and WebSocket requests that carry a token.
    pub(crate) async fn resume(&self, ctx: &Context, token: &str) -> Result<LoggedIn> {
        let session = match self.inner.sessions.get(token).await {
            Ok(s) => s,
            Err(
                easy_cookie::SessionError::Unknown { .. }
                | easy_cookie::SessionError::Expired { .. },
            ) => {
                return Err(ChatError::unauthenticated(
                    "bad_token",
                    "the session is unknown or has expired; log in again",
                ));
            }
            Err(e) => return Err(ChatError::failed("reading the session", e)),
        };
        let id = user_id(&session.user)?;
        let device = crate::session::device_id(session.data.device.as_deref())?;
        if ctx.transport() == Transport::Http {
            ctx.set_session_key(token.to_owned());
        }
        let login = self
            .establish(
                ctx,
                id,
                session.data.number,
                token.to_owned(),
                device,
                Acks::Client,
            )
            .await?;
        self.logged_in(&login).await
    }

    /// End `ctx`'s login and its session.
    pub(crate) async fn logout(&self, ctx: &Context) -> Result<()> {
        let login = Chat::login(ctx)?;
        self.inner
            .sessions
            .revoke(&login.0.token)
            .await
            .map_err(|e| ChatError::failed("revoking the session", e))?;
        if let Some(login) = ctx.session().remove::<Login>() {
            self.logged_out(ctx.connection(), &login).await;
        }
        if ctx.transport() == Transport::Http {
            ctx.set_cookie(self.inner.sessions.removal_cookie());
        }
        Ok(())
    }

    /// `user.logout_all`: end every session of the caller's user, and every
    /// login on every node. The caller's connection stays open, logged out,
    /// as after `user.logout`.
    pub(crate) async fn logout_all(&self, ctx: &Context) -> Result<()> {
        let login = Chat::login(ctx)?;
        let user = login.0.user.clone();
        self.inner
            .sessions
            .revoke_all(user.as_str())
            .await
            .map_err(|e| ChatError::failed("revoking the sessions", e))?;
        if let Some(login) = ctx.session().remove::<Login>() {
            self.logged_out(ctx.connection(), &login).await;
        }
        // The last handle: its pump stops before the sign-out goes out.
        drop(login);
        let now = crate::cluster::now_ms();
        self.sign_out(&user, None, now + 1, SessionEvent::LOGGED_OUT_EVERYWHERE)
            .await;
        if ctx.transport() == Transport::Http {
            ctx.set_cookie(self.inner.sessions.removal_cookie());
        }
        Ok(())
    }

    /// Before a session of `user` on `device` starts: end the device's older
    /// sessions (all of the user's with `--single-session`), and past
    /// `--max-devices` the least recently started other devices', signing
    /// their logins out everywhere. The logins of the same device are
    /// signed out when the new one is established.
    async fn make_room_for(
        &self,
        user: &rmq_core::UserId,
        device: &rmq_core::DeviceId,
    ) -> Result<()> {
        let failed = |e| ChatError::failed("revoking old sessions", e);
        let sessions = &self.inner.sessions;
        if self.inner.config.single_session {
            sessions.revoke_all(user.as_str()).await.map_err(failed)?;
            return Ok(());
        }
        // Oldest first.
        let mut others = Vec::new();
        for s in sessions.sessions_of(user.as_str()).await.map_err(failed)? {
            let of = s
                .data
                .device
                .clone()
                .unwrap_or_else(|| crate::session::DEFAULT_DEVICE.to_owned());
            if of == device.as_str() {
                sessions.revoke_id(&s.id).await.map_err(failed)?;
            } else {
                others.push((s, of));
            }
        }
        let max = usize::from(self.inner.config.max_devices);
        let excess = (others.len() + 1).saturating_sub(max);
        let now = crate::cluster::now_ms();
        for (s, of) in others.into_iter().take(excess) {
            sessions.revoke_id(&s.id).await.map_err(failed)?;
            tracing::info!(%user, device = %of, "signing out the oldest device: too many devices");
            self.sign_out(user, Some(of), now, SessionEvent::TOO_MANY_DEVICES)
                .await;
        }
        Ok(())
    }

    /// The reply to a login: its token, the user, friends and groups.
    pub(crate) async fn logged_in(&self, login: &Login) -> Result<LoggedIn> {
        Ok(LoggedIn {
            token: login.0.token.clone(),
            name: login.name().to_owned(),
            number: login.0.number,
            device: login.0.device.as_str().to_owned(),
            friends: self.friend_list(login.name()).await?,
            groups: self.my_groups(login.name()).await?,
        })
    }
}

/// An account failure as the caller sees it.
fn account_error(e: tiny_storage::Error) -> ChatError {
    use tiny_storage::Error as E;
    match e {
        E::NameTaken { .. } => ChatError::conflict("name_taken", "this name is taken"),
        E::NumberTaken { .. } => ChatError::conflict("number_taken", "this number is taken"),
        E::Invalid { attr, reason, .. } if attr == "name" => ChatError::invalid("bad_name", reason),
        E::Invalid { attr, .. } if attr == "password" => ChatError::invalid(
            "bad_password",
            format!(
                "a password is 1 to {} bytes",
                tiny_storage::MAX_PASSWORD_LEN
            ),
        ),
        E::Invalid { attr, reason, .. } => {
            ChatError::invalid("invalid", format!("{attr}: {reason}"))
        }
        E::BadCredentials => ChatError::bad_credentials(),
        other => ChatError::failed("accounts", other),
    }
}
