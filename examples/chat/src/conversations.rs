//! Conversations: every message is stored once, in its conversation's log
//! (`rmq_core::conversation`): the lobby, each group and each pair of users.
//! Each user has a read position per conversation and each device a
//! delivered cursor, so unread counts come from the server, a device that
//! was away catches up exactly from its cursor, and offline users cost
//! nothing when a message is sent.
//!
//! The mapping:
//!
//! | target | conversation |
//! |---|---|
//! | `{"group": g}` (the lobby too) | room `g` |
//! | `{"user": u}` | the direct conversation of the caller and `u` |
//! | `{"user": u, "group": g}` (a private word inside a group) | the same direct conversation |
//!
//! Memberships of rooms follow the groups' (`groups.rs`); the lobby's are
//! made at registration. A store from before the logs gets its memberships
//! copied in once, at start ([`Chat::migrate_to_logs`]).

use rmq_core::conversation::{ConversationId, ListQuery, LogQuery, Summary};
use rmq_core::{RoomId, UserId};

use crate::app::{Chat, perm};
use crate::error::{ChatError, Result};
use crate::events::UserEvent;
use crate::session::Login;
use crate::wire::{
    Changed, ConversationInfo, ConversationList, EditMessage, History, LOBBY, ListConversations,
    MarkRead, Message, MessageRef, React, Reacted, ReadEvent, Receipt, Target, Typing, push,
};

/// Most messages one `chat.history` returns.
const MAX_HISTORY: usize = 200;
/// Most conversations one `chat.conversations` returns.
const MAX_LIST: usize = 500;

/// The conversation `me` means by `to`.
pub(crate) fn conversation_of(me: &UserId, to: &Target) -> Result<ConversationId> {
    let bad = || {
        ChatError::invalid(
            "bad_target",
            "`to` is {\"group\"}, {\"user\"} or {\"user\",\"group\"} with valid names",
        )
    };
    match (&to.user, &to.group) {
        (Some(user), _) => {
            let peer = UserId::new(user.as_str()).map_err(|_| bad())?;
            Ok(ConversationId::direct(me, &peer))
        }
        (None, Some(group)) => {
            let room = RoomId::new(group.as_str()).map_err(|_| bad())?;
            Ok(ConversationId::room(room))
        }
        (None, None) => Err(bad()),
    }
}

/// How `me` addresses conversation `c`.
pub(crate) fn target_of(me: &UserId, c: &ConversationId) -> Target {
    match (c.as_room(), c.peer_of(me)) {
        (Some(room), _) => Target::group(room.as_str()),
        (None, Some(peer)) => Target::user(peer.as_str()),
        (None, None) => Target::user(me.as_str()),
    }
}

/// A conversation failure as the caller of `to` sees it.
pub(crate) fn log_error(e: rmq_core::Error, to: &Target) -> ChatError {
    use rmq_core::Error as E;
    let name = || {
        to.group
            .clone()
            .or_else(|| to.user.clone())
            .unwrap_or_default()
    };
    match e {
        E::NotMember { .. } | E::UnknownConversation(_) => ChatError::not_member(&name()),
        E::NoSuchMessage { seq, .. } => {
            ChatError::not_found("no_such_message", format!("no message {seq} in {}", name()))
        }
        E::NotSender { seq, .. } => not_yours(seq),
        E::MessageDeleted { seq, .. } => {
            ChatError::conflict("deleted", format!("message {seq} is deleted"))
        }
        E::TooManyEdits { .. } => ChatError::conflict("too_many_edits", e.to_string()),
        E::InvalidReaction { reason } => ChatError::invalid("bad_reaction", reason),
        E::BodyTooLarge { size, limit } => ChatError::too_large(
            "too_large",
            homer::ApiError::too_large(size, limit).message(),
        ),
        E::BeyondHead { seq, head, .. } => ChatError::invalid(
            "beyond_head",
            format!("seq {seq} is past the newest message ({head})"),
        ),
        other => other.into(),
    }
}

impl Chat {
    /// Tell `user`'s logins to follow conversation `c` (`follow`) or to
    /// stop: a login follows the conversations the user has when it starts,
    /// and those it is told of (a direct conversation's first message, a
    /// group created or joined; a group left or kicked from).
    pub(crate) async fn tell_follow(&self, user: &UserId, c: &ConversationId, follow: bool) {
        let event = UserEvent::Follow {
            conversation: c.key(),
            on: follow,
        };
        if let Err(e) = self.inner.events.publish(user, event).await {
            tracing::warn!(%user, conversation = %c, error = %e, "telling logins to follow a conversation");
        }
    }

    /// Put every account in the lobby's log and every group member in
    /// their group's, once: for a store from before the logs (a fresh
    /// store has nothing to do). Marked done in the meta tree.
    pub(crate) async fn migrate_to_logs(&self) -> Result<()> {
        const DONE: &str = "memberships-in-logs";
        let meta = &self.inner.meta;
        if meta.get(DONE).await?.is_some() {
            return Ok(());
        }
        let log = &self.inner.log;
        let lobby = RoomId::new(LOBBY).map_err(|e| ChatError::internal("lobby id", e))?;
        let users = self.inner.auth.users();
        let mut after: Option<String> = None;
        let mut joined = 0usize;
        loop {
            let page = users
                .list(after.as_deref(), 1000)
                .await
                .map_err(|e| ChatError::failed("listing users", e))?;
            let Some(last) = page.last() else { break };
            after = Some(last.name().to_owned());
            for u in &page {
                if let Ok(id) = UserId::new(u.name()) {
                    log.join(&lobby, &id).await?;
                    joined += 1;
                }
            }
        }
        let mut after: Option<String> = None;
        loop {
            let page = self.inner.groups.list(after.as_deref(), 500).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, g) in page {
                let Ok(room) = RoomId::new(g.name.as_str()) else {
                    continue;
                };
                log.create_room(&room, Default::default()).await?;
                let scope = crate::groups::scope(&g.name);
                for (member, _) in self
                    .inner
                    .auth
                    .scope_members(&scope, None, crate::groups::MAX_MEMBERS)
                    .await?
                {
                    if let Ok(id) = UserId::new(member.as_str()) {
                        log.join(&room, &id).await?;
                    }
                }
            }
        }
        meta.insert(DONE, b"1".to_vec()).await?;
        if joined > 0 {
            tracing::info!(
                users = joined,
                "memberships copied into the conversation logs"
            );
        }
        Ok(())
    }

    /// `chat.conversations`: a page of the caller's conversations with
    /// their heads, read positions, unread counts and last messages.
    pub(crate) async fn conversation_list(
        &self,
        login: &Login,
        p: ListConversations,
    ) -> Result<ConversationList> {
        let me = &login.0.user;
        let limit = p.limit.unwrap_or(100);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(ChatError::invalid(
                "bad_limit",
                format!("`limit` is 1 to {MAX_LIST}"),
            ));
        }
        let query = match &p.after {
            Some(after) => ListQuery::after(conversation_of(me, after)?, limit + 1),
            None => ListQuery::first(limit + 1),
        };
        let mut page = self.inner.log.list(me, query).await?;
        let more = page.len() > limit;
        page.truncate(limit);
        let conversations = page.iter().map(|s| info(me, s)).collect();
        Ok(ConversationList {
            conversations,
            more,
        })
    }

    /// `chat.read`: the caller read `to` up to `seq` on this device. Their
    /// other logins are told (`read`), and so are the other members who are
    /// online (`receipt`): the peer of a direct conversation, the members of
    /// a group of at most `--receipts-max-group` members (never the lobby).
    pub(crate) async fn mark_read(&self, login: &Login, p: MarkRead) -> Result<ReadEvent> {
        let me = &login.0.user;
        let c = conversation_of(me, &p.to)?;
        let state = self
            .inner
            .log
            .mark_read(me, &login.0.device, &c, p.seq)
            .await
            .map_err(|e| log_error(e, &p.to))?;
        let event = ReadEvent {
            to: target_of(me, &c),
            read: state.read,
            unread: state.unread,
        };
        self.tell_online(me, push::READ, &event).await;
        for member in self.small_audience(me, &c).await {
            let receipt = Receipt {
                to: target_of(&member, &c),
                user: me.as_str().to_owned(),
                seq: state.read,
            };
            self.tell_online(&member, push::RECEIPT, &receipt).await;
        }
        Ok(event)
    }

    /// Who is told when `me` reads or types in `c`: the peer of a direct
    /// conversation, the other members of a group of at most
    /// `--receipts-max-group` members; nobody for the lobby and larger groups.
    async fn small_audience(&self, me: &UserId, c: &ConversationId) -> Vec<UserId> {
        if let Some(peer) = c.peer_of(me) {
            return if peer == me {
                Vec::new()
            } else {
                vec![peer.clone()]
            };
        }
        let max = self.inner.config.receipts_max_group;
        let Some(room) = c.as_room() else {
            return Vec::new();
        };
        if room.as_str() == LOBBY || max == 0 {
            return Vec::new();
        }
        match self.inner.log.members(c, None, max + 1).await {
            Ok(members) if members.len() <= max => {
                members.into_iter().filter(|m| m != me).collect()
            }
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(conversation = %c, error = %e, "listing members for receipts");
                Vec::new()
            }
        }
    }

    /// Push `what` as `push` to every native login of `user`, if `user` is
    /// online (these events are not worth keeping for later).
    pub(crate) async fn tell_online<T: serde::Serialize>(
        &self,
        user: &UserId,
        push: &str,
        what: &T,
    ) {
        if self.online_state(user).await != Some(true) {
            return;
        }
        let body = match serde_json::to_value(what) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(%user, error = %e, "encoding an event");
                return;
            }
        };
        let event = UserEvent::Push {
            push: push.to_owned(),
            body,
        };
        if let Err(e) = self.inner.events.publish(user, event).await {
            tracing::warn!(%user, error = %e, "sending an event to a user's logins");
        }
    }

    /// `chat.typing`: tell the conversation's members who are online that
    /// the caller is typing (the audience of receipts). Rate limited, never
    /// stored; the caller must be one who may send there.
    pub(crate) async fn typing(&self, login: &Login, p: Typing) -> Result<()> {
        let me = &login.0.user;
        let c = conversation_of(me, &p.to)?;
        if let Err(wait) = self.inner.abuse.typing.allow(me.as_str()) {
            return Err(ChatError::too_many(
                "rate_limited",
                "typing notices are limited to one a second",
                wait,
            ));
        }
        self.may_send(me.as_str(), &p.to).await?;
        for member in self.small_audience(me, &c).await {
            let notice = Typing {
                to: target_of(&member, &c),
                user: Some(me.as_str().to_owned()),
            };
            self.tell_online(&member, push::TYPING, &notice).await;
        }
        Ok(())
    }

    /// `chat.history`: a page of a conversation's messages, oldest first,
    /// with edits, deletions and reactions folded in.
    pub(crate) async fn history(&self, me: &UserId, p: History) -> Result<Vec<Message>> {
        let c = conversation_of(me, &p.to)?;
        let limit = p.limit.unwrap_or(50).clamp(1, MAX_HISTORY);
        let query = match (p.before, p.after) {
            (Some(_), Some(_)) => {
                return Err(ChatError::invalid(
                    "bad_params",
                    "give `before` or `after`, not both",
                ));
            }
            (Some(seq), None) => LogQuery::before(seq, limit),
            (None, Some(seq)) => LogQuery::after(seq, limit),
            (None, None) => LogQuery::last(limit),
        };
        let messages =
            match self.inner.log.messages(&c, me, query).await {
                Ok(m) => m,
                // A direct conversation nobody wrote in yet.
                Err(
                    rmq_core::Error::UnknownConversation(_) | rmq_core::Error::NotMember { .. },
                ) if c.is_direct() => Vec::new(),
                Err(e) => return Err(log_error(e, &p.to)),
            };
        Ok(messages.iter().filter_map(Message::from_log).collect())
    }

    /// `chat.edit`: the sender replaces a message's text.
    pub(crate) async fn edit_message(&self, login: &Login, p: EditMessage) -> Result<Changed> {
        let me = &login.0.user;
        let c = conversation_of(me, &p.to)?;
        self.check_text(&p.text)?;
        let edited = self
            .inner
            .log
            .edit(&c, me, p.seq, p.text.into_bytes())
            .await
            .map_err(|e| log_error(e, &p.to))?;
        Ok(Changed { seq: edited.seq })
    }

    /// `chat.delete`: the sender deletes a message; in a group its owner and
    /// admins may delete anyone's (`group.delete`), in the lobby the
    /// server's admins.
    pub(crate) async fn delete_message(&self, login: &Login, p: MessageRef) -> Result<Changed> {
        let me = &login.0.user;
        let c = conversation_of(me, &p.to)?;
        let message = self
            .inner
            .log
            .message(&c, me, p.seq)
            .await
            .map_err(|e| log_error(e, &p.to))?;
        if message.deleted.is_some() {
            return Err(ChatError::conflict(
                "deleted",
                format!("message {} is already deleted", p.seq),
            ));
        }
        if &message.envelope.from != me {
            let Some(room) = c.as_room() else {
                return Err(not_yours(p.seq));
            };
            self.inner
                .auth
                .check_in(
                    me.as_str(),
                    perm::GROUP_DELETE,
                    &crate::groups::scope(room.as_str()),
                )
                .await
                .map_err(|e| ChatError::denied(e, || not_yours(p.seq)))?;
        }
        let deleted = self
            .inner
            .log
            .delete_message(&c, me, p.seq)
            .await
            .map_err(|e| log_error(e, &p.to))?;
        Ok(Changed { seq: deleted.seq })
    }

    /// `chat.react`: toggle the caller's reaction (one emoji) to a message.
    pub(crate) async fn react(&self, login: &Login, p: React) -> Result<Reacted> {
        let me = &login.0.user;
        let c = conversation_of(me, &p.to)?;
        if !one_emoji(&p.reaction) {
            return Err(ChatError::invalid(
                "bad_reaction",
                format!("a reaction is one emoji of at most {MAX_REACTION} bytes"),
            ));
        }
        let (_, reaction) = self
            .inner
            .log
            .react(&c, me, p.seq, &p.reaction)
            .await
            .map_err(|e| log_error(e, &p.to))?;
        Ok(Reacted { reaction })
    }
}

/// Someone else's message, which the caller may not change.
fn not_yours(seq: u64) -> ChatError {
    ChatError::forbidden(
        "not_sender",
        format!("message {seq} is not yours to change"),
    )
}

/// Longest reaction, in bytes (a family of four with skin tones fits).
const MAX_REACTION: usize = 64;

/// Whether `s` is exactly one emoji: one pictograph with its presentation
/// selector and skin tone, several joined by zero-width joiners (a family),
/// a flag (two regional indicators or a tag sequence) or a keycap.
pub(crate) fn one_emoji(s: &str) -> bool {
    use unicode_properties::UnicodeEmoji;
    use unicode_properties::emoji::{
        is_emoji_presentation_selector, is_regional_indicator, is_tag_character, is_zwj,
    };
    const KEYCAP: char = '\u{20E3}';
    let modifier = |c: char| ('\u{1F3FB}'..='\u{1F3FF}').contains(&c);
    if s.is_empty() || s.len() > MAX_REACTION {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    if chars.len() == 2 && chars.iter().all(|c| is_regional_indicator(*c)) {
        return true;
    }
    let mut i = 0;
    loop {
        // One pictograph: not plain ASCII (digits, `#` and `*` are emoji
        // only as keycaps), then its modifiers.
        let Some(&base) = chars.get(i) else {
            return false;
        };
        if !base.is_emoji_char() || is_regional_indicator(base) {
            return false;
        }
        i += 1;
        let mut keycap = false;
        while let Some(&c) = chars.get(i) {
            if is_emoji_presentation_selector(c) || modifier(c) || is_tag_character(c) {
                i += 1;
            } else if c == KEYCAP {
                keycap = true;
                i += 1;
            } else {
                break;
            }
        }
        if base.is_ascii() && !keycap {
            return false;
        }
        match chars.get(i) {
            None => return true,
            Some(&c) if is_zwj(c) => i += 1,
            Some(_) => return false,
        }
    }
}

fn info(me: &UserId, s: &Summary) -> ConversationInfo {
    ConversationInfo {
        to: target_of(me, &s.conversation),
        head: s.head,
        read: s.read,
        unread: s.unread,
        last: s.last.as_ref().and_then(Message::from_log),
    }
}

#[cfg(test)]
mod tests {
    use super::one_emoji;

    #[test]
    fn a_reaction_is_exactly_one_emoji() {
        for ok in [
            "👍",
            "👍🏽",
            "❤️",
            "🇫🇷",
            "👩‍👩‍👧‍👦",
            "🏳️‍🌈",
            "1️⃣",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
        ] {
            assert!(one_emoji(ok), "{ok:?} is one emoji");
        }
        for bad in [
            "",
            "👍👍",
            "👍 ",
            "ok",
            "1",
            "a👍",
            "🇫🇷🇫",
            "\u{200D}",
            "👍\u{200D}",
            &"👍".repeat(20),
        ] {
            assert!(!one_emoji(bad), "{bad:?} is not one emoji");
        }
    }
}
