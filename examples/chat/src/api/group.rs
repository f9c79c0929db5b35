//! `group.*`: groups with owner, admin and member roles.
//!
//! A group is a document in `chat.inner.groups` (for its description and number),
//! a room in the broker (for routing and history) and an aucheck scope
//! `group/<name>` holding each member's role — the roles are the member list,
//! and what a role may do is declared once in [`crate::app`].

use homer::ApiError;
use rmq_core::{Envelope, RoomId, To, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{api, auth, broker, denied, fail, unavailable};
use crate::app::{Chat, GroupDoc, perm, role};
use crate::wire::{GROUP_EVENT, GroupEvent, LOBBY};

/// Longest group description, in bytes.
const MAX_DESC: usize = 256;
/// Most groups `group.search` returns, and scans.
const MAX_RESULTS: usize = 50;
const MAX_SCANNED: usize = 10_000;
/// Most members listed, or told about a change.
const MAX_MEMBERS: usize = 1000;

pub(super) fn register(c: &Chat) {
    api(c, "group.create", |chat, ctx, p: Create| async move {
        chat.create_group(
            Chat::login(&ctx)?.name(),
            &p.name,
            p.desc.as_deref().unwrap_or(""),
        )
        .await
    });
    api(c, "group.search", |chat, ctx, p: Search| async move {
        Chat::login(&ctx)?;
        chat.search_groups(&p.query).await
    });
    api(c, "group.join", |chat, ctx, p: Named| async move {
        chat.join_group(Chat::login(&ctx)?.name(), &p.name).await
    });
    api(c, "group.leave", |chat, ctx, p: Named| async move {
        chat.leave_group(Chat::login(&ctx)?.name(), &p.name).await
    });
    api(c, "group.members", |chat, ctx, p: Named| async move {
        Chat::login(&ctx)?;
        chat.members(&p.name).await
    });
    api(
        c,
        "group.list",
        |chat, ctx, _: super::NoParams| async move {
            let me = Chat::login(&ctx)?;
            Ok::<_, ApiError>(json!({ "groups": chat.my_groups(me.name()).await? }))
        },
    );
    api(c, "group.kick", |chat, ctx, p: Kick| async move {
        chat.kick(Chat::login(&ctx)?.name(), &p.name, &p.user).await
    });
    api(c, "group.role", |chat, ctx, p: SetRole| async move {
        chat.set_member_role(Chat::login(&ctx)?.name(), &p.name, &p.user, &p.role)
            .await
    });
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    #[serde(default)]
    desc: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Search {
    #[serde(default)]
    query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kick {
    name: String,
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    name: String,
    user: String,
    role: String,
}

pub(crate) fn scope(group: &str) -> String {
    format!("group/{group}")
}

fn room(group: &str) -> Result<RoomId, ApiError> {
    RoomId::new(group).map_err(|_| {
        ApiError::bad_request(
            "bad_group",
            "a group name is 1 to 64 of A-Z, a-z, 0-9, `_`, `-` and `.`",
        )
    })
}

fn no_group(name: &str) -> ApiError {
    ApiError::not_found("no_such_group", format!("no group named {name}"))
}

pub(crate) fn not_member(name: &str) -> ApiError {
    ApiError::forbidden(
        "not_member",
        format!("you are not a member of group {name}"),
    )
}

fn bump(old: Option<&[u8]>) -> Option<Vec<u8>> {
    let n = old
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    Some((n + 1).to_be_bytes().to_vec())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Chat {
    async fn group_doc(&self, name: &str) -> Result<GroupDoc, ApiError> {
        room(name)?;
        self.inner
            .groups
            .get(name)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| no_group(name))
    }

    /// The caller's role in `group` (everyone is a member of the lobby).
    pub(crate) async fn role_in(
        &self,
        user: &str,
        group: &str,
    ) -> Result<Option<String>, ApiError> {
        if group == LOBBY {
            return Ok(Some(role::MEMBER.to_owned()));
        }
        self.inner
            .auth
            .role_of(user, &scope(group))
            .await
            .map_err(auth)
    }

    pub(crate) async fn create_group(
        &self,
        me: &str,
        name: &str,
        desc: &str,
    ) -> Result<Value, ApiError> {
        let room = room(name)?;
        if name == LOBBY {
            return Err(ApiError::conflict(
                "group_exists",
                "the lobby already exists",
            ));
        }
        if desc.len() > MAX_DESC {
            return Err(ApiError::bad_request(
                "bad_desc",
                format!("a description is at most {MAX_DESC} bytes"),
            ));
        }
        self.inner
            .auth
            .check(me, perm::GROUP_CREATE)
            .await
            .map_err(|e| {
                denied(e, || {
                    ApiError::forbidden("forbidden", "you may not create groups")
                })
            })?;
        let number = self
            .inner
            .meta
            .fetch_update("group-number", bump)
            .await
            .map_err(unavailable)?;
        let number = number
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        let doc = GroupDoc {
            name: name.to_owned(),
            desc: desc.to_owned(),
            number,
            owner: me.to_owned(),
            created: now_ms(),
        };
        match self.inner.groups.insert_with_id(name, &doc).await {
            Ok(()) => {}
            Err(nopi::Error::AlreadyExists { .. }) => {
                return Err(ApiError::conflict(
                    "group_exists",
                    format!("a group named {name} exists"),
                ));
            }
            Err(e) => return Err(unavailable(e)),
        }
        let user = Chat::user_id(me).ok_or_else(|| fail("user id", me))?;
        self.inner.broker.create_room(&room).await.map_err(broker)?;
        self.inner
            .auth
            .by(me)
            .set_role(me, &scope(name), role::OWNER)
            .await
            .map_err(auth)?;
        self.inner.broker.join(&room, &user).await.map_err(broker)?;
        Ok(json!({ "name": name }))
    }

    async fn search_groups(&self, query: &str) -> Result<Value, ApiError> {
        let query = query.to_lowercase();
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        let mut scanned = 0;
        while found.len() < MAX_RESULTS && scanned < MAX_SCANNED {
            let page = self
                .inner
                .groups
                .list(after.as_deref(), 500)
                .await
                .map_err(unavailable)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            scanned += page.len();
            for (_, g) in page {
                if g.name.to_lowercase().contains(&query) && found.len() < MAX_RESULTS {
                    found.push(g);
                }
            }
        }
        let mut groups = Vec::with_capacity(found.len());
        for g in found {
            let members = self
                .inner
                .auth
                .scope_members(&scope(&g.name), None, MAX_MEMBERS)
                .await
                .map_err(auth)?
                .len();
            groups.push(json!({ "name": g.name, "desc": g.desc, "members": members }));
        }
        Ok(json!({ "groups": groups }))
    }

    pub(crate) async fn join_group(&self, me: &str, name: &str) -> Result<Value, ApiError> {
        if name == LOBBY {
            return Ok(json!({}));
        }
        let room = room(name)?;
        self.group_doc(name).await?;
        if self.role_in(me, name).await?.is_some() {
            return Ok(json!({}));
        }
        let user = Chat::user_id(me).ok_or_else(|| fail("user id", me))?;
        self.inner
            .auth
            .by(me)
            .set_role(me, &scope(name), role::MEMBER)
            .await
            .map_err(auth)?;
        self.inner.broker.join(&room, &user).await.map_err(broker)?;
        self.group_event(me, name, me, "joined").await;
        Ok(json!({}))
    }

    async fn leave_group(&self, me: &str, name: &str) -> Result<Value, ApiError> {
        if name == LOBBY {
            return Err(ApiError::bad_request(
                "lobby",
                "everyone stays in the lobby",
            ));
        }
        let room = room(name)?;
        let Some(my_role) = self.role_in(me, name).await? else {
            return Err(not_member(name));
        };
        self.remove_member(me, name, &room, me, "left").await?;
        if my_role == role::OWNER {
            self.hand_over(name).await?;
        }
        Ok(json!({}))
    }

    /// The owner left: the first admin (else the first member) owns the
    /// group now; a group nobody is in is deleted.
    async fn hand_over(&self, name: &str) -> Result<(), ApiError> {
        let members = self
            .inner
            .auth
            .scope_members(&scope(name), None, MAX_MEMBERS)
            .await
            .map_err(auth)?;
        let heir = members
            .iter()
            .find(|(_, r)| r == role::ADMIN)
            .or_else(|| members.first())
            .map(|(u, _)| u.clone());
        match heir {
            Some(heir) => {
                self.inner
                    .auth
                    .by("system")
                    .set_role(&heir, &scope(name), role::OWNER)
                    .await
                    .map_err(auth)?;
                self.inner
                    .groups
                    .update_with(name, |g| g.owner.clone_from(&heir))
                    .await
                    .map_err(unavailable)?;
            }
            None => {
                self.inner
                    .auth
                    .by("system")
                    .remove_scope(&scope(name))
                    .await
                    .map_err(auth)?;
                self.inner
                    .broker
                    .delete_room(&room(name)?)
                    .await
                    .map_err(broker)?;
                self.inner.groups.delete(name).await.map_err(unavailable)?;
            }
        }
        Ok(())
    }

    async fn members(&self, name: &str) -> Result<Value, ApiError> {
        let list: Vec<(String, String)> = if name == LOBBY {
            let users = self
                .inner
                .auth
                .users()
                .list(None, MAX_MEMBERS)
                .await
                .map_err(|e| fail("listing users", e))?;
            users
                .into_iter()
                .map(|u| (u.name().to_owned(), role::MEMBER.to_owned()))
                .collect()
        } else {
            self.group_doc(name).await?;
            self.inner
                .auth
                .scope_members(&scope(name), None, MAX_MEMBERS)
                .await
                .map_err(auth)?
        };
        let mut members = Vec::with_capacity(list.len());
        for (user, role) in list {
            let online = self.is_online(&user).await.map_err(unavailable)?;
            members.push(json!({ "name": user, "role": role, "online": online }));
        }
        Ok(json!({ "members": members }))
    }

    /// `[{name, desc, role}]`: the lobby, then every group `user` is in.
    pub(crate) async fn my_groups(&self, user: &str) -> Result<Vec<Value>, ApiError> {
        let mut out = vec![json!({ "name": LOBBY, "desc": "everyone", "role": role::MEMBER })];
        for (scope, role) in self.inner.auth.roles_of(user).await.map_err(auth)? {
            let Some(name) = scope.strip_prefix("group/") else {
                continue;
            };
            let desc = match self.inner.groups.get(name).await.map_err(unavailable)? {
                Some(g) => g.desc,
                None => continue,
            };
            out.push(json!({ "name": name, "desc": desc, "role": role }));
        }
        Ok(out)
    }

    async fn kick(&self, me: &str, name: &str, target: &str) -> Result<Value, ApiError> {
        if name == LOBBY {
            return Err(ApiError::bad_request(
                "lobby",
                "no one can be kicked from the lobby",
            ));
        }
        let room = room(name)?;
        self.group_doc(name).await?;
        self.inner
            .auth
            .check_in(me, perm::GROUP_KICK, &scope(name))
            .await
            .map_err(|e| {
                denied(e, || {
                    ApiError::forbidden(
                        "forbidden",
                        format!("only the owner and admins of {name} may kick"),
                    )
                })
            })?;
        let Some(their_role) = self.role_in(target, name).await? else {
            return Err(ApiError::not_found(
                "not_member",
                format!("{target} is not a member of {name}"),
            ));
        };
        let my_role = self.role_in(me, name).await?;
        let outranked = their_role == role::OWNER
            || (their_role == role::ADMIN && my_role.as_deref() != Some(role::OWNER));
        if target == me || outranked {
            return Err(ApiError::forbidden(
                "forbidden",
                format!("you may not kick {target}"),
            ));
        }
        self.remove_member(me, name, &room, target, "kicked")
            .await?;
        Ok(json!({}))
    }

    /// `target` leaves `group` (`event`: `left` or `kicked`, done by `actor`):
    /// the members are told first, so the one leaving hears it too; then
    /// their role and their inbox's binding to the room go.
    async fn remove_member(
        &self,
        actor: &str,
        group: &str,
        room: &RoomId,
        target: &str,
        event: &str,
    ) -> Result<(), ApiError> {
        let user = Chat::user_id(target).ok_or_else(|| fail("user id", target))?;
        self.group_event(actor, group, target, event).await;
        self.inner
            .auth
            .by(actor)
            .remove_role(target, &scope(group))
            .await
            .map_err(auth)?;
        self.inner.broker.leave(room, &user).await.map_err(broker)
    }

    async fn set_member_role(
        &self,
        me: &str,
        name: &str,
        target: &str,
        new_role: &str,
    ) -> Result<Value, ApiError> {
        if new_role != role::ADMIN && new_role != role::MEMBER {
            return Err(ApiError::bad_request(
                "bad_role",
                "a role is `admin` or `member`",
            ));
        }
        self.group_doc(name).await?;
        self.inner
            .auth
            .check_in(me, perm::GROUP_PROMOTE, &scope(name))
            .await
            .map_err(|e| {
                denied(e, || {
                    ApiError::forbidden(
                        "forbidden",
                        format!("only the owner of {name} may change roles"),
                    )
                })
            })?;
        match self.role_in(target, name).await?.as_deref() {
            None => Err(ApiError::not_found(
                "not_member",
                format!("{target} is not a member of {name}"),
            )),
            Some(role::OWNER) => Err(ApiError::forbidden(
                "forbidden",
                "the owner's role cannot change",
            )),
            Some(_) => {
                self.inner
                    .auth
                    .by(me)
                    .set_role(target, &scope(name), new_role)
                    .await
                    .map_err(auth)?;
                Ok(json!({}))
            }
        }
    }

    /// Tell every member of `group` (and `subject`) that `subject` `event`.
    /// Best effort: the change itself has happened whatever this reports.
    async fn group_event(&self, actor: &str, group: &str, subject: &str, event: &str) {
        let Ok(room) = RoomId::new(group) else { return };
        let Some(from) = Chat::user_id(actor) else {
            return;
        };
        let body = match serde_json::to_vec(&GroupEvent {
            group: group.to_owned(),
            user: subject.to_owned(),
            event: event.to_owned(),
        }) {
            Ok(b) => b,
            Err(_) => return,
        };
        let members = match self
            .inner
            .auth
            .scope_members(&scope(group), None, MAX_MEMBERS)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group, error = %e, "listing members for a group event");
                return;
            }
        };
        let mut to: Vec<String> = members.into_iter().map(|(u, _)| u).collect();
        if !to.iter().any(|u| u == subject) {
            to.push(subject.to_owned());
        }
        for member in to {
            let Ok(user) = UserId::new(member.as_str()) else {
                continue;
            };
            let env = Envelope::builder(
                from.clone(),
                To::UserInRoom {
                    user,
                    room: room.clone(),
                },
            )
            .content_type(GROUP_EVENT)
            .body(body.clone())
            .build();
            if let Err(e) = self.inner.broker.publish(&env).await {
                tracing::warn!(group, member, error = %e, "sending a group event");
            }
        }
    }
}
