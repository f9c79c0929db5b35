//! `friend.*`: a friend list per user, and its reverse (who watches whom),
//! kept in one tree and changed in one batch.
//!
//! ```text
//! chat.inner.friends
//!   f/ <user> \0 <friend>   -> (empty)   user's friends
//!   w/ <friend> \0 <user>   -> (empty)   who has friend in their list
//! ```

use homer::ApiError;
use nopi::{Batch, Scan};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{api, fail, unavailable};
use crate::app::Chat;

/// Most friends one user may have.
const MAX_FRIENDS: usize = 1000;
/// Most watchers one presence change is pushed to.
const MAX_WATCHERS: usize = 10_000;

pub(super) fn register(c: &Chat) {
    api(c, "friend.add", |chat, ctx, p: Name| async move {
        chat.add_friend(Chat::login(&ctx)?.name(), &p.name).await
    });
    api(c, "friend.remove", |chat, ctx, p: Name| async move {
        let me = Chat::login(&ctx)?.name().to_owned();
        let batch = Batch::new()
            .remove(key(b"f/", &me, &p.name))
            .remove(key(b"w/", &p.name, &me));
        chat.inner.friends.apply(batch).await.map_err(unavailable)?;
        Ok::<_, ApiError>(json!({}))
    });
    api(
        c,
        "friend.list",
        |chat, ctx, _: super::NoParams| async move {
            let me = Chat::login(&ctx)?.name().to_owned();
            Ok::<_, ApiError>(json!({ "friends": chat.friend_list(&me).await? }))
        },
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Name {
    name: String,
}

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
    pub(crate) async fn add_friend(&self, me: &str, friend: &str) -> Result<Value, ApiError> {
        if friend == me {
            return Err(ApiError::bad_request(
                "self",
                "you cannot befriend yourself",
            ));
        }
        let exists = self
            .inner
            .auth
            .users()
            .get(friend)
            .await
            .map_err(|e| fail("reading a user", e))?;
        if exists.is_none() {
            return Err(ApiError::not_found(
                "no_such_user",
                format!("no user named {friend}"),
            ));
        }
        let mine = self
            .friend_names(me, MAX_FRIENDS + 1)
            .await
            .map_err(unavailable)?;
        if mine.iter().any(|f| f == friend) {
            return Ok(json!({}));
        }
        if mine.len() >= MAX_FRIENDS {
            return Err(ApiError::new(
                413,
                "too_many_friends",
                format!("at most {MAX_FRIENDS} friends"),
            ));
        }
        let batch = Batch::new()
            .put(key(b"f/", me, friend), b"")
            .put(key(b"w/", friend, me), b"");
        self.inner.friends.apply(batch).await.map_err(unavailable)?;
        Ok(json!({}))
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

    /// `[{name, online}]` for `user`'s friends.
    pub(crate) async fn friend_list(&self, user: &str) -> Result<Vec<Value>, ApiError> {
        let names = self
            .friend_names(user, MAX_FRIENDS)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let online = self.is_online(&name).await.map_err(unavailable)?;
            out.push(json!({ "name": name, "online": online }));
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
