//! Every API of PROTOCOL.md §1, registered on homer: each handler reads its
//! typed params ([`crate::wire`]), calls one domain operation and maps its
//! [`ChatError`] to a status, a code and a message ([`reply`]).

use std::future::Future;

use homer::{ApiError, Homer};

use crate::app::Chat;
use crate::error::ChatError;
use crate::wire::{
    Ack, BlockedUsers, CreateGroup, Created, Done, FoundGroups, FriendName, Friends, GroupName,
    Groups, History, Kick, Login, Members, Messages, NoParams, OnlineUsers, Register, Resume,
    SearchGroups, SendMessage, SetRole, UserName, api,
};

/// Most names `user.online` returns.
const MAX_ONLINE: usize = 10_000;

/// Register every native API, the close hook and the token resolver.
pub(crate) fn register(homer: &Homer, c: &Chat) {
    users(homer, c);
    friends(homer, c);
    groups(homer, c);
    messages(homer, c);
    let hooks = c.clone();
    homer.on_close(move |ctx, reason| {
        let chat = hooks.clone();
        async move {
            if let Some(login) = ctx.session().remove::<crate::session::Login>() {
                tracing::debug!(user = login.name(), ?reason, "connection closed");
                chat.logged_out(ctx.connection(), &login).await;
            }
        }
    });
    let resolver = c.clone();
    homer.session_resolver(move |ctx, token| {
        let chat = resolver.clone();
        async move { reply(chat.resume(&ctx, &token).await.map(drop)) }
    });
}

fn users(homer: &Homer, c: &Chat) {
    on(
        homer,
        c,
        api::REGISTER,
        |chat, ctx, p: Register| async move { chat.register(&ctx, p).await },
    );
    on(homer, c, api::LOGIN, |chat, ctx, p: Login| async move {
        chat.login_with_password(&ctx, p, crate::session::Acks::Client)
            .await
    });
    on(homer, c, api::RESUME, |chat, ctx, p: Resume| async move {
        chat.resume(&ctx, &p.token).await
    });
    on(homer, c, api::LOGOUT, |chat, ctx, _: NoParams| async move {
        chat.logout(&ctx).await.map(|()| Done {})
    });
    on(
        homer,
        c,
        api::LOGOUT_ALL,
        |chat, ctx, _: NoParams| async move { chat.logout_all(&ctx).await.map(|()| Done {}) },
    );
    on(homer, c, api::ONLINE, |chat, ctx, _: NoParams| async move {
        let me = Chat::login(&ctx)?;
        let users = chat.online_for(me.name(), MAX_ONLINE).await?;
        Ok(OnlineUsers { users })
    });
    on(homer, c, api::BLOCK, |chat, ctx, p: UserName| async move {
        let me = Chat::login(&ctx)?;
        chat.block(me.name(), &p.name).await.map(|()| Done {})
    });
    on(
        homer,
        c,
        api::UNBLOCK,
        |chat, ctx, p: UserName| async move {
            let me = Chat::login(&ctx)?;
            chat.unblock(me.name(), &p.name).await.map(|()| Done {})
        },
    );
    on(
        homer,
        c,
        api::BLOCKED,
        |chat, ctx, _: NoParams| async move {
            let me = Chat::login(&ctx)?;
            let users = chat.blocked_by(me.name()).await?;
            Ok(BlockedUsers { users })
        },
    );
}

fn friends(homer: &Homer, c: &Chat) {
    on(
        homer,
        c,
        api::FRIEND_ADD,
        |chat, ctx, p: FriendName| async move {
            let me = Chat::login(&ctx)?;
            chat.add_friend(me.name(), &p.name).await.map(|()| Done {})
        },
    );
    on(
        homer,
        c,
        api::FRIEND_REMOVE,
        |chat, ctx, p: FriendName| async move {
            let me = Chat::login(&ctx)?;
            chat.remove_friend(me.name(), &p.name)
                .await
                .map(|()| Done {})
        },
    );
    on(
        homer,
        c,
        api::FRIEND_LIST,
        |chat, ctx, _: NoParams| async move {
            let me = Chat::login(&ctx)?;
            let friends = chat.friend_list(me.name()).await?;
            Ok(Friends { friends })
        },
    );
}

fn groups(homer: &Homer, c: &Chat) {
    on(
        homer,
        c,
        api::GROUP_CREATE,
        |chat, ctx, p: CreateGroup| async move {
            let me = Chat::login(&ctx)?;
            let desc = p.desc.as_deref().unwrap_or("");
            chat.create_group(me.name(), &p.name, desc).await?;
            Ok(Created { name: p.name })
        },
    );
    on(
        homer,
        c,
        api::GROUP_SEARCH,
        |chat, ctx, p: SearchGroups| async move {
            Chat::login(&ctx)?;
            let groups = chat.search_groups(&p.query).await?;
            Ok(FoundGroups { groups })
        },
    );
    on(
        homer,
        c,
        api::GROUP_JOIN,
        |chat, ctx, p: GroupName| async move {
            let me = Chat::login(&ctx)?;
            chat.join_group(me.name(), &p.name).await.map(|()| Done {})
        },
    );
    on(
        homer,
        c,
        api::GROUP_LEAVE,
        |chat, ctx, p: GroupName| async move {
            let me = Chat::login(&ctx)?;
            chat.leave_group(me.name(), &p.name).await.map(|()| Done {})
        },
    );
    on(
        homer,
        c,
        api::GROUP_MEMBERS,
        |chat, ctx, p: GroupName| async move {
            let me = Chat::login(&ctx)?;
            let members = chat.members(me.name(), &p.name).await?;
            Ok(Members { members })
        },
    );
    on(
        homer,
        c,
        api::GROUP_LIST,
        |chat, ctx, _: NoParams| async move {
            let me = Chat::login(&ctx)?;
            let groups = chat.my_groups(me.name()).await?;
            Ok(Groups { groups })
        },
    );
    on(homer, c, api::GROUP_KICK, |chat, ctx, p: Kick| async move {
        let me = Chat::login(&ctx)?;
        chat.kick(me.name(), &p.name, &p.user)
            .await
            .map(|()| Done {})
    });
    on(
        homer,
        c,
        api::GROUP_ROLE,
        |chat, ctx, p: SetRole| async move {
            let me = Chat::login(&ctx)?;
            chat.set_member_role(me.name(), &p.name, &p.user, &p.role)
                .await
                .map(|()| Done {})
        },
    );
}

fn messages(homer: &Homer, c: &Chat) {
    on(
        homer,
        c,
        api::SEND,
        |chat, ctx, p: SendMessage| async move {
            let login = Chat::login(&ctx)?;
            chat.send(&login, ctx.peer_ip(), p).await
        },
    );
    on(homer, c, api::HISTORY, |chat, ctx, p: History| async move {
        let me = Chat::login(&ctx)?;
        let messages = chat.history(&me.0.user, p).await?;
        Ok(Messages { messages })
    });
    on_login(homer, c, api::ACK, |chat, login, p: Ack| async move {
        chat.ack(&login, &p.ids).await.map(|()| Done {})
    });
    on_login(homer, c, api::CONVERSATIONS, |chat, login, p| async move {
        chat.conversation_list(&login, p).await
    });
    on_login(homer, c, api::READ, |chat, login, p| async move {
        chat.mark_read(&login, p).await
    });
    on_login(homer, c, api::EDIT, |chat, login, p| async move {
        chat.edit_message(&login, p).await
    });
    on_login(homer, c, api::DELETE, |chat, login, p| async move {
        chat.delete_message(&login, p).await
    });
    on_login(homer, c, api::REACT, |chat, login, p| async move {
        chat.react(&login, p).await
    });
    on_login(homer, c, api::TYPING, |chat, login, p| async move {
        chat.typing(&login, p).await.map(|()| Done {})
    });
}

/// Register the API `name` for logged-in callers (others get 401
/// `not_logged_in`): `f` gets the service, the caller's login and the
/// typed params.
fn on_login<P, R, F, Fut>(homer: &Homer, c: &Chat, name: &str, f: F)
where
    F: Fn(Chat, crate::session::Login, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ChatError>> + Send + 'static,
    P: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
{
    let f = std::sync::Arc::new(f);
    on(homer, c, name, move |chat, ctx, p: P| {
        let f = f.clone();
        async move { f(chat, Chat::login(&ctx)?, p).await }
    });
}

/// Register the API `name` on `homer`: `f` gets the service, the call's
/// context and its typed params, and returns a typed reply.
pub(crate) fn on<P, R, F, Fut>(homer: &Homer, c: &Chat, name: &str, f: F)
where
    F: Fn(Chat, homer::Context, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, ChatError>> + Send + 'static,
    P: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
{
    let chat = c.clone();
    homer.api(name, move |ctx: homer::Context, p: P| {
        let call = f(chat.clone(), ctx, p);
        async move { reply(call.await) }
    });
}

/// A domain result as homer's reply.
pub(crate) fn reply<R>(result: Result<R, ChatError>) -> Result<R, ApiError> {
    result.map_err(ApiError::from)
}

/// The one place a [`ChatError`] becomes what a client sees. A failure that
/// is not the caller's is logged here with its source, and answered without
/// details.
impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Invalid { code, message } => ApiError::bad_request(code, message),
            ChatError::Unauthenticated { code, message } => ApiError::unauthorized(code, message),
            ChatError::Forbidden { code, message } => ApiError::forbidden(code, message),
            ChatError::NotFound { code, message } => ApiError::not_found(code, message),
            ChatError::Conflict { code, message } => ApiError::conflict(code, message),
            ChatError::TooLarge { code, message } => ApiError::new(413, code, message),
            ChatError::TooMany { code, message, .. } => ApiError::new(429, code, message),
            ChatError::Unavailable {
                service,
                what,
                source,
            } => {
                tracing::warn!(error = %source, "{what}: {service} unavailable");
                down(service)
            }
            ChatError::Internal { what, source } => {
                tracing::error!(error = %source, "{what}");
                ApiError::internal(format!("{what} failed"))
            }
        }
    }
}

/// 503: `service` (`"storage"`, `"messaging"`) cannot be reached now.
pub(crate) fn down(service: &str) -> ApiError {
    crate::metrics::unavailable(service);
    ApiError::new(
        503,
        "unavailable",
        format!("{service} is unavailable; try again shortly"),
    )
}
