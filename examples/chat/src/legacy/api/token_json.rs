//! The token-json side of the legacy APIs: the token check every token-json
//! call passes first, the `legacy.token.*` handlers where the shared ones do
//! not fit (their answers carry numbers and names the others do not need),
//! the login answer's `data` and the shapes of deliveries.
//!
//! Tokens are our `easy_cookie` sessions: a password login (1000) answers
//! with the session's token, a registration (1100) starts a session for the
//! new account, and a token login (1004) takes over the session the token
//! names. Every other request must carry the token of the user logged in on
//! the connection, and the session must still be live.

use std::sync::Arc;

use homer::{Context, Homer, Push};
use serde_json::{Map, Value, json};

use super::{CreateGroupParams, Dest, Flavour, Legacy, NumberParams, SendParams, api};
use crate::app::{Chat, SessionData};
use crate::error::{ChatError, Result};
use crate::legacy::token_json::{self as tj, RegisterParams, TokenParams, codes};
use crate::legacy::{apis, pushes};
use crate::session::Acks;
use crate::wire::{self, LOBBY, Message};

/// The params of token-json call `name` without their `token`, once the
/// token was found to be the live session of the connection's user (and,
/// for a private message, the recipient one of the user's friends). Login
/// and registration carry no token.
pub(super) async fn authorize(
    l: &Legacy,
    ctx: &Context,
    name: &str,
    mut params: Value,
) -> Result<Value> {
    if matches!(name, apis::LOGIN | apis::TOKEN_LOGIN | apis::TOKEN_REGISTER) {
        return Ok(params);
    }
    let token = params.as_object_mut().and_then(|p| p.remove("token"));
    let token = match token {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => {
            return Err(ChatError::unauthenticated(
                codes::NO_TOKEN,
                "没有token消息: the request carries no token",
            ));
        }
    };
    let session = live_session(l, &token).await?;
    let login = Chat::login(ctx)?;
    if session.user != login.name() {
        return Err(ChatError::unauthenticated(
            codes::WRONG_TOKEN,
            "the token is another user's than the one logged in on this connection",
        ));
    }
    if name == apis::SEND
        && let Ok(SendParams {
            to: Dest::User(number),
            ..
        }) = serde_json::from_value::<SendParams>(params.clone())
    {
        // The original server lets users message their friends only.
        let to = l.name_of(number).await?;
        if !l.chat.is_friend(login.name(), &to).await? {
            return Err(ChatError::forbidden(
                codes::NOT_FRIEND,
                "对方还不是你的好友: the recipient is not your friend",
            ));
        }
    }
    Ok(params)
}

/// The live session `token` names, or 1005.
async fn live_session(l: &Legacy, token: &str) -> Result<easy_cookie::Session<SessionData>> {
    match l.chat.inner.sessions.get(token).await {
        Ok(s) => Ok(s),
        Err(
            easy_cookie::SessionError::Unknown { .. } | easy_cookie::SessionError::Expired { .. },
        ) => Err(ChatError::unauthenticated(
            codes::TOKEN_EXPIRED,
            "token过期: the token is unknown or has expired; log in again",
        )),
        Err(e) => Err(ChatError::failed("reading the session", e)),
    }
}

/// Register the `legacy.token.*` APIs.
pub(super) fn register(homer: &Homer, legacy: &Arc<Legacy>) {
    api::<TokenParams>(homer, legacy, apis::TOKEN_LOGIN, |l, ctx, f, p| {
        Box::pin(async move {
            let resume = async {
                let session = live_session(&l, &p.token).await?;
                let id = crate::users::user_id(&session.user)?;
                l.chat
                    .establish(
                        &ctx,
                        id,
                        session.data.number,
                        p.token.clone(),
                        crate::session::device_id(Some(f.device()))?,
                        Acks::OnWrite,
                    )
                    .await
            };
            l.log_in(&ctx, f, resume).await
        })
    });
    api::<RegisterParams>(homer, legacy, apis::TOKEN_REGISTER, |l, ctx, _, p| {
        Box::pin(async move {
            let reg = wire::Register {
                name: p.name,
                password: p.password,
                number: None,
            };
            let made = l.chat.register(&ctx, reg).await?;
            l.remember(&made.name, made.number);
            // The original answers a registration with a token: a session
            // for a later token login.
            let session = l
                .chat
                .inner
                .sessions
                .start(
                    &made.name,
                    SessionData {
                        number: made.number,
                        device: None,
                    },
                )
                .await
                .map_err(|e| ChatError::failed("starting a session", e))?;
            Ok(json!({"userid": made.number, "username": made.name, "token": session.token}))
        })
    });
    api::<NumberParams>(homer, legacy, apis::TOKEN_ADD_FRIEND, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let me = login.name();
            let friend = l.name_of(p.number).await?;
            if friend == me || l.chat.is_friend(me, &friend).await? {
                return Err(ChatError::conflict(
                    "friend_exists",
                    "添加好友失败，对方已经是你的好友",
                ));
            }
            // Both ways, as the original: each is told the other is a friend.
            l.chat.add_friend(me, &friend).await?;
            l.chat.add_friend(&friend, me).await?;
            let told = json!({
                "friendid": login.0.number,
                "friendname": me,
                "msg": format!("被添加好友成功，对方是{me}"),
            });
            l.tell_local(
                &friend,
                tj::response(tj::MSG_ADD_FRIEND_ACK, tj::now_ms(), &told),
            );
            Ok(json!({"msg": "添加好友成功", "friendid": p.number, "friendname": friend}))
        })
    });
    api::<CreateGroupParams>(homer, legacy, apis::TOKEN_CREATE_GROUP, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let number = l.chat.create_group(login.name(), &p.name, &p.desc).await?;
            Ok(
                json!({"msg": "创建群组成功", "groupid": number, "groupname": p.name, "groupdesc": p.desc}),
            )
        })
    });
    api::<NumberParams>(homer, legacy, apis::TOKEN_JOIN_GROUP, |l, ctx, _, p| {
        Box::pin(async move {
            let login = Chat::login(&ctx)?;
            let group = l.group_name(p.number).await?;
            l.chat.join_group(login.name(), &group).await?;
            let desc = match l.chat.inner.groups.get(&group).await? {
                Some(doc) => doc.desc,
                None => String::new(), // the lobby
            };
            Ok(
                json!({"msg": "加入群组成功", "groupid": p.number, "groupname": group, "groupdesc": desc}),
            )
        })
    });
    api::<Value>(homer, legacy, apis::HEARTBEAT, |_, _, _, _| {
        Box::pin(async move { Ok(json!({})) })
    });
}

impl Legacy {
    /// The login answer's `data` but `offlinemsg`: `userinfo`, `friends`
    /// (`{"userid","username","state"}`), `groups` (`{"groupid","groupname",
    /// "groupdesc"}`, not the lobby) and the session's `token`.
    pub(super) async fn token_login_data(
        &self,
        login: &crate::session::Login,
    ) -> Result<Map<String, Value>> {
        let me = login.name();
        let mut friends = Vec::new();
        for f in self.chat.friend_list(me).await? {
            friends.push(json!({
                "userid": self.number_of(&f.name).await,
                "username": f.name,
                "state": if f.online { "online" } else { "offline" },
            }));
        }
        let mut groups = Vec::new();
        for g in self.chat.my_groups(me).await? {
            if g.name == LOBBY {
                continue;
            }
            let Ok(number) = self.group_number(&g.name).await else {
                return Err(ChatError::Unavailable {
                    service: "storage",
                    what: "reading a group's number",
                    source: "the store did not answer".into(),
                });
            };
            if let Some(number) = number {
                groups.push(json!({"groupid": number, "groupname": g.name, "groupdesc": g.desc}));
            }
        }
        let mut data = Map::new();
        data.insert(
            "userinfo".into(),
            json!({"userid": login.0.number, "username": me}),
        );
        data.insert("friends".into(), Value::Array(friends));
        data.insert("groups".into(), Value::Array(groups));
        data.insert("token".into(), Value::String(login.0.token.clone()));
        Ok(data)
    }

    /// The live token-json object for message `m` from user number `from`.
    pub(super) async fn token_json_object(
        &self,
        m: &Message,
        from: u64,
    ) -> std::result::Result<Option<Vec<String>>, crate::session::Later> {
        Ok(match (&m.to.user, &m.to.group) {
            (Some(_), _) => Some(tj::private_chat(&m.text, from, m.ts)),
            (None, Some(group)) => self
                .group_number(group)
                .await?
                .map(|number| tj::group_chat(&m.text, number, from, m.ts)),
            (None, None) => None,
        })
    }

    /// Write `object` to `user`'s connection if it is a token-json one on
    /// this node (the original tells a new friend only when connected to the
    /// same server).
    fn tell_local(&self, user: &str, object: String) {
        for conn in self.chat.local_connections(user) {
            if Flavour::of_protocol(conn.protocol()) == Some(Flavour::TokenJson) {
                let _ = conn.push(Push::new(pushes::OBJECT, Value::String(object.clone())));
            }
        }
    }
}
