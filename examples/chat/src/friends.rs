//! Friends: a friend list per user, and its reverse (who watches whom),
//! kept in one tree and changed in one batch.
//!
//! ```text
//! chat.inner.friends
//!   f/ <user> \0 <friend>   -> (empty)   user's friends
//!   w/ <friend> \0 <user>   -> (empty)   who has friend in their list
//! ```

use nopi::{Batch, Scan};

use crate::app::Chat;
use crate::error::{ChatError, Result};
use crate::wire::Friend;

/// Most friends one user may have.
const MAX_FRIENDS: usize = 1000;
/// Most watchers one presence change is pushed to.
const MAX_WATCHERS: usize = 10_000;

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

    /// `user`'s friends, and whether each is online.
    pub(crate) async fn friend_list(&self, user: &str) -> Result<Vec<Friend>> {
        let names = self.friend_names(user, MAX_FRIENDS).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let online = self.is_online(&name).await?;
            out.push(Friend { name, online });
        }
        Ok(out)
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
