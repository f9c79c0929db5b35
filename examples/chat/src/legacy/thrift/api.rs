//! The `legacy.*` APIs only the Thrift protocol calls (its users name
//! accounts and groups by name), and the [`Translate`] hook that turns its
//! users' deliveries into the lines `recv` hands out.
//!
//! They compose the same `Chat` methods as the native APIs; the calls the
//! Thrift protocol shares with the others (`legacy.register`,
//! `legacy.group.create`) are registered in [`crate::legacy::api`].

use std::sync::Arc;

use homer::{Context, Homer, Push};
use serde_json::{Value, json};

use super::{
    AllGroups, GroupByName, GroupMembers, LoginByName, Owner, RecvParams, SendByName, Users,
};
use crate::app::Chat;
use crate::error::{ChatError, Result};
use crate::legacy::api::{Legacy, api, content};
use crate::legacy::{apis, format_time, pushes};
use crate::session::{Acks, Login, PushFuture, Translate};
use crate::wire::{self, Created, Done, LOBBY, Message};

/// Most users `show_default_group_mem` lists.
const MAX_USERS: usize = 1000;
/// Most members listed per group by `show_groups` (which lists at most the
/// 50 groups `group.search` finds).
const MAX_MEMBERS: usize = 100;

pub(crate) fn register(homer: &Homer, legacy: &Arc<Legacy>) {
    api::<LoginByName>(homer, legacy, apis::LOGIN_BY_NAME, |l, ctx, _, p| {
        Box::pin(async move { login(&l, &ctx, p).await })
    });
    api::<SendByName>(homer, legacy, apis::SEND_BY_NAME, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let mut to = p.to;
            if let Some(user) = to.user.take() {
                to.user = Some(account_name(&l, user).await?);
            }
            let sent = l
                .chat
                .send(&login, ctx.peer_ip(), wire::SendMessage::new(to, p.text))
                .await?;
            Ok(json!({ "id": sent.id }))
        })
    });
    api::<Value>(homer, legacy, apis::LOBBY_MEMBERS, |l, ctx, _, _| {
        Box::pin(async move {
            Chat::login(&ctx)?;
            let users = l
                .chat
                .inner
                .auth
                .users()
                .list(None, MAX_USERS)
                .await
                .map_err(|e| ChatError::failed("listing users", e))?;
            content(&Users {
                users: users.iter().map(|u| u.name().to_owned()).collect(),
            })
        })
    });
    api::<Value>(homer, legacy, apis::ALL_GROUPS, |l, ctx, _, _| {
        Box::pin(async move {
            Chat::login(&ctx)?;
            let mut groups = Vec::new();
            for g in l.chat.search_groups("").await? {
                let scope = crate::groups::scope(&g.name);
                let members = l
                    .chat
                    .inner
                    .auth
                    .scope_members(&scope, None, MAX_MEMBERS)
                    .await?;
                groups.push(GroupMembers {
                    name: g.name,
                    members: members.into_iter().map(|(m, _)| m).collect(),
                });
            }
            content(&AllGroups { groups })
        })
    });
    api::<GroupByName>(homer, legacy, apis::FIND_GROUP, |l, ctx, _, p| {
        Box::pin(async move {
            Chat::login(&ctx)?;
            // The exact name, as the original server looked groups up.
            match l.chat.inner.groups.get(&p.name).await? {
                Some(g) => content(&Created { name: g.name }),
                None => Err(ChatError::no_such_group(&p.name)),
            }
        })
    });
    api::<GroupByName>(homer, legacy, apis::JOIN_GROUP_BY_NAME, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            // The original refuses to add a member twice.
            if p.name == LOBBY || l.chat.role_in(login.name(), &p.name).await?.is_some() {
                return Err(ChatError::conflict(
                    "already_member",
                    format!("you are in {} already", p.name),
                ));
            }
            l.chat.join_group(login.name(), &p.name).await?;
            content(&Done {})
        })
    });
    api::<RecvParams>(homer, legacy, apis::RECV, |l, ctx, _, p| {
        Box::pin(async move {
            if let (Ok(login), Some(id)) = (Chat::login(&ctx), p.ack) {
                l.chat.ack(&login, &[id]).await?;
            }
            content(&Done {})
        })
    });
}

/// A user named in a request: an account's number when all digits, else
/// its name.
async fn account_name(l: &Legacy, account: String) -> Result<String> {
    match number(&account) {
        Some(n) => l.name_of(n).await,
        None => Ok(account),
    }
}

fn number(account: &str) -> Option<u64> {
    account
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| account.parse().ok())
        .flatten()
}

/// `login`: by name (or by number when the `uid` is all digits); messages
/// are acked when `recv` hands them out.
async fn login(l: &Legacy, ctx: &Context, p: LoginByName) -> Result<Value> {
    ctx.session().insert(translator());
    let by = match number(&p.account) {
        Some(n) => wire::Login::by_number(n, p.password),
        None => wire::Login::by_name(p.account, p.password),
    };
    let by = by.device(crate::legacy::thrift::NAME);
    l.chat.login_with_password(ctx, by, Acks::Client).await?;
    let login = Chat::login(ctx)?;
    content(&Owner {
        user: login.name().to_owned(),
        since: login.0.since,
    })
}

/// The line `recv` returns for a message, in the client's own format with
/// the server's data: `"{ip}:{sender} == {time}  ->  {text}"` (`time` as
/// Python prints `str(datetime.now())[:-4]`, but UTC).
pub(crate) fn line(m: &Message) -> String {
    format!(
        "{}:{} == {}.{:02}  ->  {}",
        m.ip,
        m.from,
        format_time(m.ts),
        m.ts % 1000 / 10,
        m.text
    )
}

/// The hook the inbox pump calls for each delivery to a thrift connection:
/// every message (the user's own group messages included, as the original
/// server queued them) becomes a [`QUEUED`](pushes::QUEUED) push; group
/// events have no shape here.
fn translator() -> Translate {
    Translate(Arc::new(|env, me: &Login| -> PushFuture {
        let push = Message::from_envelope(env).map(|m| {
            Push::new(
                pushes::QUEUED,
                json!({
                    "user": me.name(),
                    "since": me.0.since,
                    "id": m.id,
                    "line": line(&m),
                }),
            )
        });
        Box::pin(std::future::ready(Ok(push)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Target;

    #[test]
    fn lines_look_like_the_clients_own() {
        let m = Message {
            id: "x".into(),
            from: "张三".into(),
            ip: "127.0.0.7".into(),
            to: Target::group(LOBBY),
            text: "hi  ->  there".into(),
            ts: 1_732_350_000_123,
            ..Message::default()
        };
        assert_eq!(
            line(&m),
            "127.0.0.7:张三 == 2024-11-23 08:20:00.12  ->  hi  ->  there"
        );
        assert_eq!(super::super::typed_text(&line(&m)), m.text);
    }

    #[test]
    fn accounts_of_digits_are_numbers() {
        assert_eq!(number("1001"), Some(1001));
        assert_eq!(number("gus"), None);
        assert_eq!(number("１２"), None, "only ASCII digits");
        assert_eq!(number("99999999999999999999999"), None);
        assert_eq!(number(""), None);
    }
}
