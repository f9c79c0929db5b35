//! Groups with owner, admin and member roles.
//!
//! A group is a document in `chat.inner.groups` (for its description and number),
//! a room in the broker (for routing and history) and an aucheck scope
//! `group/<name>` holding each member's role — the roles are the member list,
//! and what a role may do is declared once in [`crate::app`].

use rmq_core::conversation::ConversationId;
use rmq_core::{RoomId, UserId};

use crate::app::{Chat, GroupDoc, perm};
use crate::error::{ChatError, Result};
use crate::users::user_id;
use crate::wire::{Change, FoundGroup, GroupEvent, LOBBY, Member, MyGroup, Role, push};

/// Longest group description, in bytes.
const MAX_DESC: usize = 256;
/// Most groups `group.search` returns, and scans.
const MAX_RESULTS: usize = 50;
const MAX_SCANNED: usize = 10_000;
/// Most members listed, or told about a change.
pub(crate) const MAX_MEMBERS: usize = 1000;

pub(crate) fn scope(group: &str) -> String {
    format!("group/{group}")
}

/// The room of the group `group`; a name no group can have is refused
/// with the rule for group names.
fn room(group: &str) -> Result<RoomId> {
    RoomId::new(group).map_err(|_| bad_group_name(group))
}

fn bad_group_name(group: &str) -> ChatError {
    let why = tiny_storage::name::check(group).err();
    ChatError::invalid(
        "bad_group",
        why.map_or_else(
            || "not a group name".to_owned(),
            |why| why.replacen("a name", "a group name", 1),
        ),
    )
}

/// A role as aucheck stores it; one this app did not declare is a broken
/// invariant.
fn role(name: &str) -> Result<Role> {
    Role::from_name(name).ok_or_else(|| ChatError::internal("reading a role", name))
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
    async fn group_doc(&self, name: &str) -> Result<GroupDoc> {
        room(name)?;
        self.inner
            .groups
            .get(name)
            .await?
            .ok_or_else(|| ChatError::no_such_group(name))
    }

    /// `user`'s role in `group` (everyone is a member of the lobby).
    pub(crate) async fn role_in(&self, user: &str, group: &str) -> Result<Option<Role>> {
        if group == LOBBY {
            return Ok(Some(Role::Member));
        }
        match self.inner.auth.role_of(user, &scope(group)).await? {
            Some(r) => role(&r).map(Some),
            None => Ok(None),
        }
    }

    /// `me` creates group `name` and owns it; returns its number.
    pub(crate) async fn create_group(&self, me: &str, name: &str, desc: &str) -> Result<u64> {
        // The users' rule for names (tiny_storage::name), and unique without
        // regard to case: `Rust` cannot be created next to `rust`.
        if tiny_storage::name::check(name).is_err() {
            return Err(bad_group_name(name));
        }
        let room = room(name)?;
        if name == LOBBY {
            return Err(ChatError::conflict(
                "group_exists",
                "the lobby already exists",
            ));
        }
        if desc.len() > MAX_DESC {
            return Err(ChatError::invalid(
                "bad_desc",
                format!("a description is at most {MAX_DESC} bytes"),
            ));
        }
        self.inner
            .auth
            .check(me, perm::GROUP_CREATE)
            .await
            .map_err(|e| {
                ChatError::denied(e, || {
                    ChatError::forbidden("forbidden", "you may not create groups")
                })
            })?;
        let number = self.inner.meta.fetch_update("group-number", bump).await?;
        let number = number
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes);
        let doc = GroupDoc {
            name: name.to_owned(),
            folded: Some(tiny_storage::name::fold(name)),
            desc: desc.to_owned(),
            number,
            owner: me.to_owned(),
            created: now_ms(),
        };
        match self.inner.groups.insert_with_id(name, &doc).await {
            Ok(()) => {}
            // The same name, or the same name in another case.
            Err(nopi::Error::AlreadyExists { .. }) => {
                return Err(ChatError::conflict(
                    "group_exists",
                    format!("a group named {name} exists"),
                ));
            }
            Err(nopi::Error::Duplicate { field, .. }) if field == "folded" => {
                return Err(ChatError::conflict(
                    "group_exists",
                    format!("a group named {name} exists, in another case"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let user = user_id(me)?;
        self.inner.broker.create_room(&room).await?;
        self.inner
            .auth
            .by(me)
            .set_role(me, &scope(name), Role::Owner.as_str())
            .await?;
        self.inner.broker.join(&room, &user).await?;
        self.inner
            .log
            .create_room(&room, Default::default())
            .await?;
        self.inner.log.join(&room, &user).await?;
        self.tell_follow(&user, &ConversationId::room(room), true)
            .await;
        Ok(number)
    }

    /// Groups whose name contains `query` (any case), with their sizes.
    pub(crate) async fn search_groups(&self, query: &str) -> Result<Vec<FoundGroup>> {
        let query = query.to_lowercase();
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        let mut scanned = 0;
        while found.len() < MAX_RESULTS && scanned < MAX_SCANNED {
            let page = self.inner.groups.list(after.as_deref(), 500).await?;
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
                .await?
                .len();
            groups.push(FoundGroup {
                name: g.name,
                desc: g.desc,
                members,
            });
        }
        Ok(groups)
    }

    /// `me` joins group `name` (again: nothing changes).
    pub(crate) async fn join_group(&self, me: &str, name: &str) -> Result<()> {
        if name == LOBBY {
            return Ok(());
        }
        let room = room(name)?;
        self.group_doc(name).await?;
        if self.role_in(me, name).await?.is_some() {
            return Ok(());
        }
        let user = user_id(me)?;
        self.inner
            .auth
            .by(me)
            .set_role(me, &scope(name), Role::Member.as_str())
            .await?;
        self.inner.broker.join(&room, &user).await?;
        self.inner.log.join(&room, &user).await?;
        self.tell_follow(&user, &ConversationId::room(room), true)
            .await;
        self.group_event(name, me, Change::Joined).await;
        Ok(())
    }

    /// `me` leaves group `name`; an owner hands it over first.
    pub(crate) async fn leave_group(&self, me: &str, name: &str) -> Result<()> {
        if name == LOBBY {
            return Err(ChatError::invalid("lobby", "everyone stays in the lobby"));
        }
        let room = room(name)?;
        let Some(my_role) = self.role_in(me, name).await? else {
            return Err(ChatError::not_member(name));
        };
        self.remove_member(me, name, &room, me, Change::Left)
            .await?;
        if my_role == Role::Owner {
            self.hand_over(name).await?;
        }
        Ok(())
    }

    /// The owner left: the first admin (else the first member) owns the
    /// group now; a group nobody is in is deleted.
    async fn hand_over(&self, name: &str) -> Result<()> {
        let members = self
            .inner
            .auth
            .scope_members(&scope(name), None, MAX_MEMBERS)
            .await?;
        let heir = members
            .iter()
            .find(|(_, r)| r == Role::Admin.as_str())
            .or_else(|| members.first())
            .map(|(u, _)| u.clone());
        match heir {
            Some(heir) => {
                self.inner
                    .auth
                    .by("system")
                    .set_role(&heir, &scope(name), Role::Owner.as_str())
                    .await?;
                self.inner
                    .groups
                    .update_with(name, |g| g.owner.clone_from(&heir))
                    .await?;
            }
            None => {
                self.inner
                    .auth
                    .by("system")
                    .remove_scope(&scope(name))
                    .await?;
                self.inner.broker.delete_room(&room(name)?).await?;
                self.inner.groups.delete(name).await?;
            }
        }
        Ok(())
    }

    /// The members of group `name` (at most 1,000), and whether each is
    /// online as far as `viewer` may see (one who blocked `viewer` looks
    /// offline).
    pub(crate) async fn members(&self, viewer: &str, name: &str) -> Result<Vec<Member>> {
        let list: Vec<(String, Role)> = if name == LOBBY {
            let users = self
                .inner
                .auth
                .users()
                .list(None, MAX_MEMBERS)
                .await
                .map_err(|e| ChatError::failed("listing users", e))?;
            users
                .into_iter()
                .map(|u| (u.name().to_owned(), Role::Member))
                .collect()
        } else {
            self.group_doc(name).await?;
            let mut list = Vec::new();
            for (user, r) in self
                .inner
                .auth
                .scope_members(&scope(name), None, MAX_MEMBERS)
                .await?
            {
                list.push((user, role(&r)?));
            }
            list
        };
        let hidden = self.blockers_of(viewer).await?;
        let mut members = Vec::with_capacity(list.len());
        for (name, role) in list {
            let online = !hidden.contains(&name) && self.is_online(&name).await?;
            members.push(Member { name, role, online });
        }
        Ok(members)
    }

    /// The lobby, then every group `user` is in, with `user`'s role.
    pub(crate) async fn my_groups(&self, user: &str) -> Result<Vec<MyGroup>> {
        let mut out = vec![MyGroup {
            name: LOBBY.to_owned(),
            desc: "everyone".to_owned(),
            role: Role::Member,
        }];
        for (scope, r) in self.inner.auth.roles_of(user).await? {
            let Some(name) = scope.strip_prefix("group/") else {
                continue;
            };
            let desc = match self.inner.groups.get(name).await? {
                Some(g) => g.desc,
                None => continue,
            };
            out.push(MyGroup {
                name: name.to_owned(),
                desc,
                role: role(&r)?,
            });
        }
        Ok(out)
    }

    /// `me` (the owner or an admin) removes `target` from group `name`.
    pub(crate) async fn kick(&self, me: &str, name: &str, target: &str) -> Result<()> {
        if name == LOBBY {
            return Err(ChatError::invalid(
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
                ChatError::denied(e, || {
                    ChatError::forbidden(
                        "forbidden",
                        format!("only the owner and admins of {name} may kick"),
                    )
                })
            })?;
        let Some(their_role) = self.role_in(target, name).await? else {
            return Err(ChatError::not_a_member(target, name));
        };
        let my_role = self.role_in(me, name).await?;
        let outranked = their_role == Role::Owner
            || (their_role == Role::Admin && my_role != Some(Role::Owner));
        if target == me || outranked {
            return Err(ChatError::forbidden(
                "forbidden",
                format!("you may not kick {target}"),
            ));
        }
        self.remove_member(me, name, &room, target, Change::Kicked)
            .await
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
        event: Change,
    ) -> Result<()> {
        let user = user_id(target)?;
        self.group_event(group, target, event).await;
        self.inner
            .auth
            .by(actor)
            .remove_role(target, &scope(group))
            .await?;
        self.inner.broker.leave(room, &user).await?;
        self.inner.log.leave(room, &user).await?;
        self.tell_follow(&user, &ConversationId::room(room.clone()), false)
            .await;
        Ok(())
    }

    /// `me` (the owner) makes `target` an admin or a plain member of `name`.
    pub(crate) async fn set_member_role(
        &self,
        me: &str,
        name: &str,
        target: &str,
        new_role: &str,
    ) -> Result<()> {
        let new_role = match Role::from_name(new_role) {
            Some(r @ (Role::Admin | Role::Member)) => r,
            _ => {
                return Err(ChatError::invalid(
                    "bad_role",
                    "a role is `admin` or `member`",
                ));
            }
        };
        self.group_doc(name).await?;
        self.inner
            .auth
            .check_in(me, perm::GROUP_PROMOTE, &scope(name))
            .await
            .map_err(|e| {
                ChatError::denied(e, || {
                    ChatError::forbidden(
                        "forbidden",
                        format!("only the owner of {name} may change roles"),
                    )
                })
            })?;
        match self.role_in(target, name).await? {
            None => Err(ChatError::not_a_member(target, name)),
            Some(Role::Owner) => Err(ChatError::forbidden(
                "forbidden",
                "the owner's role cannot change",
            )),
            Some(_) => {
                self.inner
                    .auth
                    .by(me)
                    .set_role(target, &scope(name), new_role.as_str())
                    .await?;
                Ok(())
            }
        }
    }

    /// Tell every member of `group` (and `subject`) that `subject` `event`.
    /// Best effort: the change itself has happened whatever this reports.
    async fn group_event(&self, group: &str, subject: &str, event: Change) {
        let event = GroupEvent {
            group: group.to_owned(),
            user: subject.to_owned(),
            event,
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
            self.tell_online(&user, push::GROUP, &event).await;
        }
    }
}
