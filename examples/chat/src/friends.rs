//! Friends and blocks: a friend list per user and its reverse (who watches
//! whom), the users each user blocked and its reverse (who blocked whom),
//! kept in one tree; each change is one batch.
//!
//! ```text
//! chat.inner.friends
//!   f/ <user> \0 <friend>    -> (empty)   user's friends
//!   w/ <friend> \0 <user>    -> (empty)   who has friend in their list
//!   b/ <user> \0 <blocked>   -> (empty)   whom user blocked
//!   r/ <blocked> \0 <user>   -> (empty)   who blocked blocked
//! ```
//!
//! A blocked user's direct messages (also those inside a group) to the
//! user who blocked them are refused with 403 `blocked`, and they see no
//! presence of that user: no `presence` push, offline in their friend list,
//! members list and `user.online`.

use std::collections::BTreeSet;

use nopi::{Batch, Scan};

use crate::app::Chat;
use crate::error::{ChatError, Result};
use crate::wire::Friend;

/// Most watchers one presence change is pushed to.
const MAX_WATCHERS: usize = 10_000;
/// Most blockers of one user read to hide presence from them.
const MAX_BLOCKERS: usize = 10_000;

/// A relation a user keeps to other users, stored both ways so either side
/// is one prefix scan: friends (who watches whom) and blocks (who blocked
/// whom).
struct Relation {
    /// `<tag> <user> \0 <other>`: the user's side.
    mine: &'static [u8],
    /// `<tag> <other> \0 <user>`: the other's side.
    theirs: &'static [u8],
    /// Most others one user may relate to.
    max: usize,
    /// The 400 for relating to oneself.
    to_self: &'static str,
    /// The 413 past `max`: its code and what is counted.
    too_many: (&'static str, &'static str),
}

const FRIENDS: Relation = Relation {
    mine: b"f/",
    theirs: b"w/",
    max: 1000,
    to_self: "you cannot befriend yourself",
    too_many: ("too_many_friends", "friends"),
};

const BLOCKS: Relation = Relation {
    mine: b"b/",
    theirs: b"r/",
    max: 1000,
    to_self: "you cannot block yourself",
    too_many: ("too_many_blocked", "blocked users"),
};

fn key(tag: &[u8], a: &str, b: &str) -> Vec<u8> {
    [tag, a.as_bytes(), b"\0", b.as_bytes()].concat()
}

impl Chat {
    /// `me` relates to `other` (again: nothing changes).
    async fn relate(&self, rel: &Relation, me: &str, other: &str) -> Result<()> {
        if other == me {
            return Err(ChatError::invalid("self", rel.to_self));
        }
        self.user_exists(other).await?;
        let mine = self.related(rel.mine, me, rel.max + 1).await?;
        if mine.iter().any(|o| o == other) {
            return Ok(());
        }
        if mine.len() >= rel.max {
            let (code, what) = rel.too_many;
            return Err(ChatError::too_large(
                code,
                format!("at most {} {what}", rel.max),
            ));
        }
        let batch = Batch::new()
            .put(key(rel.mine, me, other), b"")
            .put(key(rel.theirs, other, me), b"");
        self.inner.friends.apply(batch).await?;
        Ok(())
    }

    /// `me` no longer relates to `other`.
    async fn unrelate(&self, rel: &Relation, me: &str, other: &str) -> Result<()> {
        let batch = Batch::new()
            .remove(key(rel.mine, me, other))
            .remove(key(rel.theirs, other, me));
        self.inner.friends.apply(batch).await?;
        Ok(())
    }

    /// The others under `tag` for `user`, sorted (at most `limit`).
    async fn related(&self, tag: &[u8], user: &str, limit: usize) -> nopi::Result<Vec<String>> {
        let prefix = key(tag, user, "");
        let entries = self
            .inner
            .friends
            .scan(Scan::prefix(&prefix).limit(limit))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(k, _)| String::from_utf8(k[prefix.len()..].to_vec()).ok())
            .collect())
    }

    /// `me` befriends `friend` (again: nothing changes).
    pub(crate) async fn add_friend(&self, me: &str, friend: &str) -> Result<()> {
        self.relate(&FRIENDS, me, friend).await
    }

    /// `friend` is no longer among `me`'s friends.
    pub(crate) async fn remove_friend(&self, me: &str, friend: &str) -> Result<()> {
        self.unrelate(&FRIENDS, me, friend).await
    }

    /// `me` blocks `other` (again: nothing changes).
    pub(crate) async fn block(&self, me: &str, other: &str) -> Result<()> {
        self.relate(&BLOCKS, me, other).await
    }

    /// `me` no longer blocks `other`.
    pub(crate) async fn unblock(&self, me: &str, other: &str) -> Result<()> {
        self.unrelate(&BLOCKS, me, other).await
    }

    /// Ok if a user named `name` exists, 404 otherwise.
    pub(crate) async fn user_exists(&self, name: &str) -> Result<()> {
        let exists = self
            .inner
            .auth
            .users()
            .get(name)
            .await
            .map_err(|e| ChatError::failed("reading a user", e))?;
        match exists {
            Some(_) => Ok(()),
            None => Err(ChatError::no_such_user(name)),
        }
    }

    /// `user`'s friends, and whether each is online (as far as `user` may
    /// see: one who blocked `user` looks offline).
    pub(crate) async fn friend_list(&self, user: &str) -> Result<Vec<Friend>> {
        let names = self.related(FRIENDS.mine, user, FRIENDS.max).await?;
        let hidden = self.blockers_of(user).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let online = !hidden.contains(&name) && self.is_online(&name).await?;
            out.push(Friend { name, online });
        }
        Ok(out)
    }

    /// Everyone who has `user` in their friend list.
    pub(crate) async fn watchers(&self, user: &str) -> nopi::Result<Vec<String>> {
        self.related(FRIENDS.theirs, user, MAX_WATCHERS).await
    }

    /// The users `user` blocked, sorted.
    pub(crate) async fn blocked_by(&self, user: &str) -> nopi::Result<Vec<String>> {
        self.related(BLOCKS.mine, user, BLOCKS.max).await
    }

    /// Whether `friend` is in `user`'s friend list.
    pub(crate) async fn is_friend(&self, user: &str, friend: &str) -> Result<bool> {
        let k = key(FRIENDS.mine, user, friend);
        Ok(self.inner.friends.get(k).await?.is_some())
    }

    /// Whether `user` blocked `other`.
    pub(crate) async fn has_blocked(&self, user: &str, other: &str) -> Result<bool> {
        let k = key(BLOCKS.mine, user, other);
        Ok(self.inner.friends.get(k).await?.is_some())
    }

    /// The users who blocked `user`: they look offline to `user`.
    pub(crate) async fn blockers_of(&self, user: &str) -> nopi::Result<BTreeSet<String>> {
        let blockers = self.related(BLOCKS.theirs, user, MAX_BLOCKERS).await?;
        Ok(blockers.into_iter().collect())
    }

    /// Everyone online that `viewer` may see online, sorted (at most
    /// `limit`): not those who blocked `viewer`.
    pub(crate) async fn online_for(&self, viewer: &str, limit: usize) -> Result<Vec<String>> {
        let hidden = self.blockers_of(viewer).await?;
        let mut online = self.online_users(limit).await?;
        online.retain(|u| !hidden.contains(u));
        Ok(online)
    }
}
