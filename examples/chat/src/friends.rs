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

/// Most friends one user may have.
const MAX_FRIENDS: usize = 1000;
/// Most watchers one presence change is pushed to.
const MAX_WATCHERS: usize = 10_000;
/// Most users one user may block.
pub(crate) const MAX_BLOCKED: usize = 1000;
/// Most blockers of one user read to hide presence from them.
const MAX_BLOCKERS: usize = 10_000;

fn key(tag: &[u8], a: &str, b: &str) -> Vec<u8> {
    [tag, a.as_bytes(), b"\0", b.as_bytes()].concat()
}

fn names_after(prefix: &[u8], entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<String> {
    entries
        .into_iter()
        .filter_map(|(k, _)| String::from_utf8(k[prefix.len()..].to_vec()).ok())
        .collect()
}

impl Chat {
    /// `me` befriends `friend` (again: nothing changes).
    pub(crate) async fn add_friend(&self, me: &str, friend: &str) -> Result<()> {
        if friend == me {
            return Err(ChatError::invalid("self", "you cannot befriend yourself"));
        }
        self.user_exists(friend).await?;
        let mine = self.friend_names(me, MAX_FRIENDS + 1).await?;
        if mine.iter().any(|f| f == friend) {
            return Ok(());
        }
        if mine.len() >= MAX_FRIENDS {
            return Err(ChatError::too_large(
                "too_many_friends",
                format!("at most {MAX_FRIENDS} friends"),
            ));
        }
        let batch = Batch::new()
            .put(key(b"f/", me, friend), b"")
            .put(key(b"w/", friend, me), b"");
        self.inner.friends.apply(batch).await?;
        Ok(())
    }

    /// `friend` is no longer among `me`'s friends.
    pub(crate) async fn remove_friend(&self, me: &str, friend: &str) -> Result<()> {
        let batch = Batch::new()
            .remove(key(b"f/", me, friend))
            .remove(key(b"w/", friend, me));
        self.inner.friends.apply(batch).await?;
        Ok(())
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

    async fn friend_names(&self, user: &str, limit: usize) -> nopi::Result<Vec<String>> {
        let prefix = key(b"f/", user, "");
        let entries = self
            .inner
            .friends
            .scan(Scan::prefix(&prefix).limit(limit))
            .await?;
        Ok(names_after(&prefix, entries))
    }

    /// `user`'s friends, and whether each is online (as far as `user` may
    /// see: one who blocked `user` looks offline).
    pub(crate) async fn friend_list(&self, user: &str) -> Result<Vec<Friend>> {
        let names = self.friend_names(user, MAX_FRIENDS).await?;
        let hidden = self.blockers_of(user).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let online = !hidden.contains(&name) && self.is_online(&name).await?;
            out.push(Friend { name, online });
        }
        Ok(out)
    }
}

impl Chat {
    /// `me` blocks `other` (again: nothing changes).
    pub(crate) async fn block(&self, me: &str, other: &str) -> Result<()> {
        if other == me {
            return Err(ChatError::invalid("self", "you cannot block yourself"));
        }
        self.user_exists(other).await?;
        let mine = self.blocked_by_me(me, MAX_BLOCKED + 1).await?;
        if mine.iter().any(|b| b == other) {
            return Ok(());
        }
        if mine.len() >= MAX_BLOCKED {
            return Err(ChatError::too_large(
                "too_many_blocked",
                format!("at most {MAX_BLOCKED} blocked users"),
            ));
        }
        let batch = Batch::new()
            .put(key(b"b/", me, other), b"")
            .put(key(b"r/", other, me), b"");
        self.inner.friends.apply(batch).await?;
        Ok(())
    }

    /// `me` no longer blocks `other`.
    pub(crate) async fn unblock(&self, me: &str, other: &str) -> Result<()> {
        let batch = Batch::new()
            .remove(key(b"b/", me, other))
            .remove(key(b"r/", other, me));
        self.inner.friends.apply(batch).await?;
        Ok(())
    }

    /// The users `user` blocked, sorted (at most `limit`).
    pub(crate) async fn blocked_by_me(
        &self,
        user: &str,
        limit: usize,
    ) -> nopi::Result<Vec<String>> {
        let prefix = key(b"b/", user, "");
        let entries = self
            .inner
            .friends
            .scan(Scan::prefix(&prefix).limit(limit))
            .await?;
        Ok(names_after(&prefix, entries))
    }

    /// Whether `user` blocked `other`.
    pub(crate) async fn has_blocked(&self, user: &str, other: &str) -> Result<bool> {
        Ok(self
            .inner
            .friends
            .get(key(b"b/", user, other))
            .await?
            .is_some())
    }

    /// The users who blocked `user`: they look offline to `user`.
    pub(crate) async fn blockers_of(&self, user: &str) -> nopi::Result<BTreeSet<String>> {
        let prefix = key(b"r/", user, "");
        let entries = self
            .inner
            .friends
            .scan(Scan::prefix(&prefix).limit(MAX_BLOCKERS))
            .await?;
        Ok(names_after(&prefix, entries).into_iter().collect())
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

/// Everyone who has `user` in their friend list.
pub(crate) async fn watchers(chat: &Chat, user: &str) -> nopi::Result<Vec<String>> {
    let prefix = key(b"w/", user, "");
    let entries = chat
        .inner
        .friends
        .scan(Scan::prefix(&prefix).limit(MAX_WATCHERS))
        .await?;
    Ok(names_after(&prefix, entries))
}
