//! [`Admin`]: every change to groups, users and roles, each recorded in the
//! audit log with its actor.
//!
//! **Invariant:** every change is one atomic batch (or, for changes touching
//! an unbounded number of users, a sequence of atomic pages) that expects the
//! version key to be unchanged since the change read its data. Changes from
//! any number of managers sharing a store are therefore serialized, and a
//! change never writes over data it did not see.

use std::fmt;

use nopi::Scan;
use tiny_storage::NewUser;
use uuid::Uuid;

use crate::audit::{AuditAction, AuditEntry};
use crate::error::{Error, Result, shorten};
use crate::layout::{
    GroupRecord, MemberRecord, group_key, member_index_key, member_index_prefix, personal_id,
    personal_name, role_key, roles_prefix, scope_key, scope_prefix, suffix,
};
use crate::manager::{Core, Tx, transact};
use crate::names::{self, MAX_ROLES_PER_USER};
use crate::{ALL_PERMISSIONS, Member};

/// What happens to a shared group's users when it is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteRule {
    /// Move them to this (existing) shared group.
    MoveTo(String),
    /// Give each a personal group with the deleted group's permissions, so
    /// nobody gains or loses anything.
    Personal,
}

impl DeleteRule {
    /// [`DeleteRule::MoveTo`] the group `name`.
    pub fn move_to(name: impl Into<String>) -> Self {
        DeleteRule::MoveTo(name.into())
    }
}

impl fmt::Display for DeleteRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteRule::MoveTo(g) => write!(f, "move to {g:?}"),
            DeleteRule::Personal => f.write_str("personal groups"),
        }
    }
}

/// Changes made on behalf of an actor, who is recorded in the audit log.
/// Get one with [`AuthManager::by`](crate::AuthManager::by).
///
/// aucheck does not decide who may change permissions: check the actor's
/// permission (for example with [`AuthManager::check`](crate::AuthManager::check)
/// or a [`Guard`](crate::Guard)) before calling these.
pub struct Admin<'a> {
    core: &'a Core,
    actor: String,
}

impl fmt::Debug for Admin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin").field("actor", &self.actor).finish()
    }
}

enum Step<T> {
    More(u64),
    Done(T),
}

impl<'a> Admin<'a> {
    pub(crate) fn new(core: &'a Core, actor: &str) -> Self {
        Admin {
            core,
            actor: actor.to_owned(),
        }
    }

    fn actor(&self) -> Result<&str> {
        names::actor(&self.actor)?;
        Ok(&self.actor)
    }

    fn entry(&self, subject: &str, action: AuditAction) -> AuditEntry {
        AuditEntry::new(&self.actor, subject, action)
    }

    // ----- groups -----

    /// Create the shared group `name` holding `permissions` (`*` for all,
    /// present and future). Names are `[A-Za-z0-9_.-]`, at most 64 bytes, and
    /// not a uuid. Refused if the group exists or a permission is undeclared.
    pub async fn create_group<I, S>(&self, name: &str, permissions: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        if self.put_new_group(name, permissions).await? {
            Ok(())
        } else {
            Err(Error::GroupExists(name.to_owned()))
        }
    }

    /// Create the group unless it exists; `true` if it was created.
    pub(crate) async fn ensure_group(&self, name: &str, permissions: Vec<String>) -> Result<bool> {
        self.put_new_group(name, permissions).await
    }

    async fn put_new_group<I, S>(&self, name: &str, permissions: I) -> Result<bool>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.actor()?;
        names::group(name)?;
        let (all, permissions) = self.core.parse_permissions(permissions)?;
        let listed = listed(all, &permissions);
        let created = transact!(self.core, |tx| {
            if self.core.read_group(name).await?.is_some() {
                false
            } else {
                let group = GroupRecord {
                    all,
                    permissions: permissions.clone(),
                    ..GroupRecord::default()
                };
                tx.put_group(name, &group)?;
                tx.touch_group(name);
                tx.audit(self.entry(
                    name,
                    AuditAction::GroupCreated {
                        permissions: listed.clone(),
                    },
                ));
                true
            }
        });
        Ok(created)
    }

    /// Replace the permissions of the shared group `name`. Every member is
    /// affected, except users who already have a personal copy.
    pub async fn set_group_permissions<I, S>(&self, name: &str, permissions: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.actor()?;
        names::group(name)?;
        let (all, permissions) = self.core.parse_permissions(permissions)?;
        let listed = listed(all, &permissions);
        transact!(self.core, |tx| {
            let Some(mut group) = self.core.read_group(name).await? else {
                return Err(Error::UnknownGroup(name.to_owned()));
            };
            group.all = all;
            group.permissions = permissions.clone();
            tx.put_group(name, &group)?;
            tx.touch_group(name);
            tx.audit(self.entry(
                name,
                AuditAction::GroupChanged {
                    permissions: listed.clone(),
                },
            ));
        });
        Ok(())
    }

    /// Delete the shared group `name`, moving its users by `rule`; returns
    /// how many users were moved.
    ///
    /// Users move in atomic pages (up to 256 per batch). The group is first
    /// marked as deleting, which refuses new members; if the deletion stops
    /// half-way (a crash, an unreachable store), the group stays marked, its
    /// remaining users keep its permissions, and calling this again finishes
    /// the job.
    pub async fn delete_group(&self, name: &str, rule: DeleteRule) -> Result<u64> {
        self.actor()?;
        names::group(name)?;
        let target = match &rule {
            DeleteRule::MoveTo(t) => {
                names::group(t)?;
                if t == name {
                    return Err(Error::MoveToSelf(name.to_owned()));
                }
                Some(t.as_str())
            }
            DeleteRule::Personal => None,
        };
        transact!(self.core, |tx| {
            let Some(mut group) = self.core.read_group(name).await? else {
                return Err(Error::UnknownGroup(name.to_owned()));
            };
            if let Some(t) = target {
                self.usable_target(t).await?;
            }
            if !group.deleting {
                group.deleting = true;
                tx.put_group(name, &group)?;
                tx.touch_group(name);
            }
        });
        let mut moved = 0u64;
        loop {
            let step = transact!(self.core, |tx| {
                match self.core.read_group(name).await? {
                    // Another manager finished the deletion.
                    None => Step::Done(()),
                    Some(group) => {
                        if let Some(t) = target {
                            self.usable_target(t).await?;
                        }
                        let prefix = member_index_prefix(name);
                        let page = self
                            .core
                            .tree
                            .scan(Scan::prefix(&prefix).limit(self.core.page))
                            .await?;
                        if page.is_empty() {
                            tx.remove(group_key(name));
                            tx.touch_group(name);
                            tx.audit(self.entry(
                                name,
                                AuditAction::GroupDeleted {
                                    rule: rule.to_string(),
                                    moved,
                                },
                            ));
                            Step::Done(())
                        } else {
                            for (key, _) in &page {
                                tx.remove(key);
                                let user = suffix(key, prefix.len())?;
                                let Some(mut member) = self.core.read_member(&user).await? else {
                                    continue;
                                };
                                if member.group != name {
                                    continue; // a stale index entry
                                }
                                let to = match target {
                                    Some(t) => {
                                        tx.put(member_index_key(t, &user), b"");
                                        t.to_owned()
                                    }
                                    None => {
                                        let own = personal_name(member.id);
                                        let copy = GroupRecord {
                                            all: group.all,
                                            permissions: group.permissions.clone(),
                                            personal: Some(user.clone()),
                                            deleting: false,
                                        };
                                        tx.put_group(&own, &copy)?;
                                        own
                                    }
                                };
                                member.group = to.clone();
                                tx.put_member(&user, &member)?;
                                tx.touch_user(&user);
                                tx.audit(self.entry(
                                    &user,
                                    AuditAction::Assigned {
                                        from: name.to_owned(),
                                        to,
                                    },
                                ));
                            }
                            Step::More(page.len() as u64)
                        }
                    }
                }
            });
            match step {
                Step::More(n) => moved += n,
                Step::Done(()) => return Ok(moved),
            }
        }
    }

    /// The shared group `name` exists and accepts members.
    async fn usable_target(&self, name: &str) -> Result<()> {
        match self.core.read_group(name).await? {
            None => Err(Error::UnknownGroup(name.to_owned())),
            Some(g) if g.deleting => Err(Error::GroupDeleting(name.to_owned())),
            Some(_) => Ok(()),
        }
    }

    // ----- users -----

    /// Create a user (through tiny_storage: validated, password hashed) in
    /// the shared group `group`, or, with `None`, in a new empty personal
    /// group named by the user's uuid.
    ///
    /// If the permission record cannot be written, the user is deleted again.
    pub async fn create_user(&self, user: NewUser, group: Option<&str>) -> Result<Member> {
        self.actor()?;
        if let Some(g) = group {
            names::group(g)?;
            self.usable_target(g).await?;
        }
        let created = self.core.users.create(user).await?;
        let name = created.name().to_owned();
        let result = self.attach(&name, group, true).await;
        if result.is_err() {
            // Best effort: the error that matters is the one returned.
            let _ = self.core.users.delete(&name).await;
        }
        result
    }

    /// Give `user` an aucheck record in `group` (or a personal group).
    /// `replace`: overwrite a record left by a user deleted outside aucheck;
    /// otherwise keep an existing record.
    async fn attach(&self, user: &str, group: Option<&str>, replace: bool) -> Result<Member> {
        let id = Uuid::new_v4();
        loop {
            let step = transact!(self.core, |tx| {
                let old = self.core.read_member(user).await?;
                match old {
                    Some(old) if !replace => Step::Done(member(user, old)),
                    old => {
                        let (removed, more) = self.remove_roles_page(&mut tx, user).await?;
                        if more {
                            Step::More(removed)
                        } else {
                            if let Some(old) = &old {
                                leave_group(&mut tx, user, old);
                            }
                            let group_name = match group {
                                Some(g) => {
                                    self.usable_target(g).await?;
                                    tx.put(member_index_key(g, user), b"");
                                    g.to_owned()
                                }
                                None => {
                                    let own = personal_name(id);
                                    let empty = GroupRecord {
                                        personal: Some(user.to_owned()),
                                        ..GroupRecord::default()
                                    };
                                    tx.put_group(&own, &empty)?;
                                    own
                                }
                            };
                            let record = MemberRecord {
                                id,
                                group: group_name.clone(),
                            };
                            tx.put_member(user, &record)?;
                            tx.touch_user(user);
                            tx.audit(
                                self.entry(user, AuditAction::UserCreated { group: group_name }),
                            );
                            Step::Done(member(user, record))
                        }
                    }
                }
            });
            if let Step::Done(m) = step {
                return Ok(m);
            }
        }
    }

    /// Make sure `user` has an aucheck record: a user created in tiny_storage
    /// directly gets one with an empty personal group.
    async fn adopt(&self, user: &str) -> Result<()> {
        if self.core.read_member(user).await?.is_some() {
            return Ok(());
        }
        if self.core.users.get(user).await?.is_none() {
            return Err(Error::UnknownUser(user.to_owned()));
        }
        self.attach(user, None, false).await.map(drop)
    }

    /// Delete `user`: their roles, their permissions and the user itself.
    /// `false` if there was no such user.
    pub async fn delete_user(&self, user: &str) -> Result<bool> {
        self.actor()?;
        names::user(user)?;
        let had_record = loop {
            let step = transact!(self.core, |tx| {
                let (removed, more) = self.remove_roles_page(&mut tx, user).await?;
                if more {
                    Step::More(removed)
                } else {
                    match self.core.read_member(user).await? {
                        Some(old) => {
                            leave_group(&mut tx, user, &old);
                            tx.remove(crate::layout::user_key(user));
                            tx.touch_user(user);
                            tx.audit(self.entry(user, AuditAction::UserDeleted));
                            Step::Done(true)
                        }
                        None => Step::Done(false),
                    }
                }
            });
            if let Step::Done(had) = step {
                break had;
            }
        };
        let existed = self.core.users.delete(user).await?;
        if existed && !had_record {
            let entry = self.entry(user, AuditAction::UserDeleted);
            self.core
                .audit
                .write(std::slice::from_ref(&entry))
                .await
                .map_err(audit_error)?;
        }
        Ok(had_record || existed)
    }

    /// Move `user` to the shared group `group`; `false` if they are in it
    /// already. A personal group they had is deleted: its extra grants are gone.
    pub async fn assign(&self, user: &str, group: &str) -> Result<bool> {
        self.actor()?;
        names::user(user)?;
        names::group(group)?;
        self.adopt(user).await?;
        let moved = transact!(self.core, |tx| {
            let Some(mut record) = self.core.read_member(user).await? else {
                return Err(Error::UnknownUser(user.to_owned()));
            };
            if record.group == group {
                false
            } else {
                self.usable_target(group).await?;
                leave_group(&mut tx, user, &record);
                tx.put(member_index_key(group, user), b"");
                let from = std::mem::replace(&mut record.group, group.to_owned());
                tx.put_member(user, &record)?;
                tx.touch_user(user);
                tx.audit(self.entry(
                    user,
                    AuditAction::Assigned {
                        from,
                        to: group.to_owned(),
                    },
                ));
                true
            }
        });
        Ok(moved)
    }

    /// Grant `permission` to `user` alone; `false` if they hold it already.
    ///
    /// Copy on write: a user in a shared group first gets a personal group
    /// (named by their uuid) with a copy of the shared group's permissions,
    /// so the other members are not affected. Later changes to the shared
    /// group no longer reach this user.
    pub async fn grant(&self, user: &str, permission: &str) -> Result<bool> {
        self.set_permission(user, permission, true).await
    }

    /// Revoke `permission` from `user` alone (copy on write, as for
    /// [`grant`](Self::grant)); `false` if they do not hold it.
    pub async fn revoke(&self, user: &str, permission: &str) -> Result<bool> {
        self.set_permission(user, permission, false).await
    }

    async fn set_permission(&self, user: &str, permission: &str, grant: bool) -> Result<bool> {
        self.actor()?;
        names::user(user)?;
        if !self.core.catalog.is_declared(permission) {
            return Err(Error::UnknownPermission(shorten(permission)));
        }
        self.adopt(user).await?;
        let changed = transact!(self.core, |tx| {
            let Some(mut record) = self.core.read_member(user).await? else {
                return Err(Error::UnknownUser(user.to_owned()));
            };
            let group = self
                .core
                .read_group(&record.group)
                .await?
                .unwrap_or_default();
            if self
                .core
                .catalog
                .holds(group.all, &group.permissions, permission)
                == grant
            {
                false
            } else {
                let own = personal_name(record.id);
                let mut personal = if record.group == own {
                    group
                } else {
                    leave_group(&mut tx, user, &record);
                    GroupRecord {
                        all: group.all,
                        permissions: group.permissions,
                        ..GroupRecord::default()
                    }
                };
                if grant {
                    personal.permissions.insert(permission.to_owned());
                } else {
                    if personal.all {
                        personal.all = false;
                        personal.permissions =
                            self.core.catalog.names().map(str::to_owned).collect();
                    }
                    personal.permissions.remove(permission);
                }
                personal.personal = Some(user.to_owned());
                personal.deleting = false;
                tx.put_group(&own, &personal)?;
                if record.group != own {
                    record.group = own.clone();
                    tx.put_member(user, &record)?;
                }
                tx.touch_user(user);
                let permission = permission.to_owned();
                let action = if grant {
                    AuditAction::Granted {
                        permission,
                        group: own,
                    }
                } else {
                    AuditAction::Revoked {
                        permission,
                        group: own,
                    }
                };
                tx.audit(self.entry(user, action));
                true
            }
        });
        Ok(changed)
    }

    // ----- scoped roles -----

    /// Give `user` the declared `role` on `scope` (any text without control
    /// characters, at most 256 bytes, such as `group/rust`), replacing the
    /// role they had there; returns that previous role. A user holds roles on
    /// at most [`MAX_ROLES_PER_USER`] scopes.
    pub async fn set_role(&self, user: &str, scope: &str, role: &str) -> Result<Option<String>> {
        self.actor()?;
        names::user(user)?;
        names::scope(scope)?;
        if self.core.catalog.role(role).is_none() {
            return Err(Error::UnknownRole(shorten(role)));
        }
        self.adopt(user).await?;
        let previous = transact!(self.core, |tx| {
            if self.core.read_member(user).await?.is_none() {
                return Err(Error::UnknownUser(user.to_owned()));
            }
            let key = role_key(user, scope);
            let current = match self.core.tree.get(&key).await? {
                Some(v) => Some(
                    String::from_utf8(v).map_err(|_| Error::corrupt(&key, "role is not UTF-8"))?,
                ),
                None => None,
            };
            if current.as_deref() == Some(role) {
                return Ok(current);
            }
            if current.is_none() {
                let held = self
                    .core
                    .tree
                    .scan(Scan::prefix(roles_prefix(user)).limit(MAX_ROLES_PER_USER))
                    .await?
                    .len();
                if held >= MAX_ROLES_PER_USER {
                    return Err(Error::TooMany {
                        what: "scopes one user holds roles on",
                        count: held + 1,
                        limit: MAX_ROLES_PER_USER,
                    });
                }
            }
            tx.put(&key, role);
            tx.put(scope_key(scope, user), role);
            tx.touch_user(user);
            tx.audit(self.entry(
                user,
                AuditAction::RoleSet {
                    scope: scope.to_owned(),
                    role: role.to_owned(),
                },
            ));
            current
        });
        Ok(previous)
    }

    /// Remove `user`'s role on `scope`; returns the role, `None` if they had none.
    pub async fn remove_role(&self, user: &str, scope: &str) -> Result<Option<String>> {
        self.actor()?;
        names::user(user)?;
        names::scope(scope)?;
        let removed = transact!(self.core, |tx| {
            let key = role_key(user, scope);
            match self.core.tree.get(&key).await? {
                None => None,
                Some(v) => {
                    let role = String::from_utf8(v)
                        .map_err(|_| Error::corrupt(&key, "role is not UTF-8"))?;
                    tx.remove(&key);
                    tx.remove(scope_key(scope, user));
                    tx.touch_user(user);
                    tx.audit(self.entry(
                        user,
                        AuditAction::RoleRemoved {
                            scope: scope.to_owned(),
                            role: role.clone(),
                        },
                    ));
                    Some(role)
                }
            }
        });
        Ok(removed)
    }

    /// Remove every role on `scope` (the chat group was deleted); returns how
    /// many users lost a role. Works in atomic pages like
    /// [`delete_group`](Self::delete_group).
    pub async fn remove_scope(&self, scope: &str) -> Result<u64> {
        self.actor()?;
        names::scope(scope)?;
        let prefix = scope_prefix(scope);
        let mut removed = 0u64;
        loop {
            let n = transact!(self.core, |tx| {
                let page = self
                    .core
                    .tree
                    .scan(Scan::prefix(&prefix).limit(self.core.page))
                    .await?;
                for (key, _) in &page {
                    let user = suffix(key, prefix.len())?;
                    tx.remove(key);
                    tx.remove(role_key(&user, scope));
                    tx.touch_user(&user);
                }
                page.len() as u64
            });
            if n == 0 {
                break;
            }
            removed += n;
        }
        if removed > 0 {
            let entry = self.entry(scope, AuditAction::ScopeRemoved { users: removed });
            self.core
                .audit
                .write(std::slice::from_ref(&entry))
                .await
                .map_err(audit_error)?;
        }
        Ok(removed)
    }

    /// Remove up to a page of `user`'s roles in `tx`; returns how many, and
    /// whether more may remain.
    async fn remove_roles_page(&self, tx: &mut Tx, user: &str) -> Result<(u64, bool)> {
        let prefix = roles_prefix(user);
        let page = self
            .core
            .tree
            .scan(Scan::prefix(&prefix).limit(self.core.page))
            .await?;
        for (key, value) in &page {
            let scope = suffix(key, prefix.len())?;
            tx.remove(key);
            tx.remove(scope_key(&scope, user));
            tx.audit(self.entry(
                user,
                AuditAction::RoleRemoved {
                    scope,
                    role: String::from_utf8_lossy(value).into_owned(),
                },
            ));
        }
        if !page.is_empty() {
            tx.touch_user(user);
        }
        Ok((page.len() as u64, page.len() >= self.core.page))
    }
}

/// Remove `user` from their current group: delete their personal group, or
/// their entry in the shared group's member index.
fn leave_group(tx: &mut Tx, user: &str, record: &MemberRecord) {
    match personal_id(&record.group) {
        Some(id) if id == record.id => tx.remove(group_key(&record.group)),
        // Another user's personal group: never delete it (corrupt record).
        Some(_) => {}
        None => tx.remove(member_index_key(&record.group, user)),
    }
}

fn member(name: &str, record: MemberRecord) -> Member {
    Member {
        name: name.to_owned(),
        personal: personal_id(&record.group) == Some(record.id),
        id: record.id,
        group: record.group,
    }
}

fn listed(all: bool, permissions: &std::collections::BTreeSet<String>) -> Vec<String> {
    if all {
        vec![ALL_PERMISSIONS.to_owned()]
    } else {
        permissions.iter().cloned().collect()
    }
}

fn audit_error(e: Error) -> Error {
    match e {
        Error::Store(e) => Error::AuditWrite(e),
        other => other,
    }
}
