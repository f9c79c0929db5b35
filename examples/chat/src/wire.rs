//! The native protocol's objects (PROTOCOL.md §1): every request, reply and
//! push of the chat API, shared by the server, the legacy layer, the
//! terminal client and the tests, and their mapping to rmq_core envelopes.
//!
//! Requests refuse unknown fields; replies and pushes are what the server
//! writes. Secrets (passwords, tokens) never show in `Debug`.
//!
//! ```
//! use chat::wire::{Login, LoggedIn};
//!
//! let call = serde_json::to_value(Login::by_name("ann", "pw"))?;
//! assert_eq!(call, serde_json::json!({"name": "ann", "password": "pw"}));
//! assert!(!format!("{:?}", Login::by_name("ann", "hunter2")).contains("hunter2"));
//!
//! let reply: LoggedIn = serde_json::from_value(serde_json::json!({
//!     "token": "t", "name": "ann", "number": 1, "friends": [], "groups": [],
//! }))?;
//! assert_eq!(reply.number, 1);
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use rmq_core::{Envelope, RoomId, To, UserId};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The group every user is a member of.
pub const LOBBY: &str = "lobby";

/// Content type of a chat message's envelope body (the text).
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// The API names (PROTOCOL.md §1).
pub mod api {
    /// [`Register`](super::Register) → [`Registered`](super::Registered).
    pub const REGISTER: &str = "user.register";
    /// [`Login`](super::Login) → [`LoggedIn`](super::LoggedIn).
    pub const LOGIN: &str = "user.login";
    /// [`Resume`](super::Resume) → [`LoggedIn`](super::LoggedIn).
    pub const RESUME: &str = "user.resume";
    /// No params → [`Done`](super::Done).
    pub const LOGOUT: &str = "user.logout";
    /// No params → [`Done`](super::Done): end every session and login of
    /// the user, on every device.
    pub const LOGOUT_ALL: &str = "user.logout_all";
    /// No params → [`OnlineUsers`](super::OnlineUsers).
    pub const ONLINE: &str = "user.online";
    /// [`UserName`](super::UserName) → [`Done`](super::Done).
    pub const BLOCK: &str = "user.block";
    /// [`UserName`](super::UserName) → [`Done`](super::Done).
    pub const UNBLOCK: &str = "user.unblock";
    /// No params → [`BlockedUsers`](super::BlockedUsers).
    pub const BLOCKED: &str = "user.blocked";
    /// [`FriendName`](super::FriendName) → [`Done`](super::Done).
    pub const FRIEND_ADD: &str = "friend.add";
    /// [`FriendName`](super::FriendName) → [`Done`](super::Done).
    pub const FRIEND_REMOVE: &str = "friend.remove";
    /// No params → [`Friends`](super::Friends).
    pub const FRIEND_LIST: &str = "friend.list";
    /// [`CreateGroup`](super::CreateGroup) → [`Created`](super::Created).
    pub const GROUP_CREATE: &str = "group.create";
    /// [`SearchGroups`](super::SearchGroups) → [`FoundGroups`](super::FoundGroups).
    pub const GROUP_SEARCH: &str = "group.search";
    /// [`GroupName`](super::GroupName) → [`Done`](super::Done).
    pub const GROUP_JOIN: &str = "group.join";
    /// [`GroupName`](super::GroupName) → [`Done`](super::Done).
    pub const GROUP_LEAVE: &str = "group.leave";
    /// [`GroupName`](super::GroupName) → [`Members`](super::Members).
    pub const GROUP_MEMBERS: &str = "group.members";
    /// No params → [`Groups`](super::Groups).
    pub const GROUP_LIST: &str = "group.list";
    /// [`Kick`](super::Kick) → [`Done`](super::Done).
    pub const GROUP_KICK: &str = "group.kick";
    /// [`SetRole`](super::SetRole) → [`Done`](super::Done).
    pub const GROUP_ROLE: &str = "group.role";
    /// [`SendMessage`](super::SendMessage) → [`Sent`](super::Sent).
    pub const SEND: &str = "chat.send";
    /// [`History`](super::History) → [`Messages`](super::Messages).
    pub const HISTORY: &str = "chat.history";
    /// [`Ack`](super::Ack) → [`Done`](super::Done).
    pub const ACK: &str = "chat.ack";
    /// [`ListConversations`](super::ListConversations) →
    /// [`ConversationList`](super::ConversationList).
    pub const CONVERSATIONS: &str = "chat.conversations";
    /// [`MarkRead`](super::MarkRead) → [`ReadEvent`](super::ReadEvent).
    pub const READ: &str = "chat.read";
    /// [`EditMessage`](super::EditMessage) → [`Changed`](super::Changed).
    pub const EDIT: &str = "chat.edit";
    /// [`MessageRef`](super::MessageRef) → [`Changed`](super::Changed).
    pub const DELETE: &str = "chat.delete";
    /// [`React`](super::React) → [`Reacted`](super::Reacted).
    pub const REACT: &str = "chat.react";
    /// [`Typing`](super::Typing) → [`Done`](super::Done).
    pub const TYPING: &str = "chat.typing";
}

/// The push kinds (PROTOCOL.md §1).
pub mod push {
    /// A [`Message`](super::Message).
    pub const MESSAGE: &str = "message";
    /// A [`GroupEvent`](super::GroupEvent).
    pub const GROUP: &str = "group";
    /// A [`PresenceChange`](super::PresenceChange).
    pub const PRESENCE: &str = "presence";
    /// A [`SessionEvent`](super::SessionEvent).
    pub const SESSION: &str = "session";
    /// A [`ReadEvent`](super::ReadEvent): another login of the user read a
    /// conversation.
    pub const READ: &str = "read";
    /// A [`Receipt`](super::Receipt): another member read up to a message.
    pub const RECEIPT: &str = "receipt";
    /// A [`MessageEdited`](super::MessageEdited).
    pub const EDIT: &str = "edit";
    /// A [`MessageDeleted`](super::MessageDeleted).
    pub const DELETE: &str = "delete";
    /// A [`Reaction`](super::Reaction).
    pub const REACT: &str = "react";
    /// A [`Typing`](super::Typing) notice, with `user` set.
    pub const TYPING: &str = "typing";
}

/// Shows a secret as `***` (in the `Debug` of what carries one).
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------
// Requests.

/// Params of APIs that take none: absent, `null` or `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `user.register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// A name by the rule of `tiny_storage::name` (Unicode letters, digits,
    /// `_ - .`; 1 to 32 characters, at most 64 bytes; stored in NFC; unique
    /// without regard to case), not all digits.
    pub name: String,
    /// 1 to [`tiny_storage::MAX_PASSWORD_LEN`] bytes.
    pub password: String,
    /// The number legacy clients log in with; the next free one if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
}

impl fmt::Debug for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Register")
            .field("name", &self.name)
            .field("password", &Redacted)
            .field("number", &self.number)
            .finish()
    }
}

/// `user.login`: by `name` or by `number`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Or the user's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The password.
    pub password: String,
    /// This device's id (1 to 64 bytes, no `/` or control characters): each
    /// device keeps its own place in every conversation. `default` if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Login {
    /// A login by name.
    pub fn by_name(name: impl Into<String>, password: impl Into<String>) -> Self {
        Login {
            name: Some(name.into()),
            number: None,
            password: password.into(),
            device: None,
        }
    }

    /// A login by number.
    pub fn by_number(number: u64, password: impl Into<String>) -> Self {
        Login {
            name: None,
            number: Some(number),
            password: password.into(),
            device: None,
        }
    }

    /// The same login, from `device`.
    #[must_use]
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("number", &self.number)
            .field("password", &Redacted)
            .field("device", &self.device)
            .finish()
    }
}

/// `user.resume`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// A token of an earlier login.
    pub token: String,
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume").field("token", &Redacted).finish()
    }
}

/// `user.block` and `user.unblock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserName {
    /// The other user.
    pub name: String,
}

/// `friend.add` and `friend.remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FriendName {
    /// The friend.
    pub name: String,
}

/// `group.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// A name by the rule of `tiny_storage::name`, as for users (unique
    /// without regard to case).
    pub name: String,
    /// At most 256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
}

/// `group.search`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchGroups {
    /// Part of a group's name, any case; empty finds every group.
    #[serde(default)]
    pub query: String,
}

/// `group.join`, `group.leave` and `group.members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupName {
    /// The group.
    pub name: String,
}

/// `group.kick`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kick {
    /// The group.
    pub name: String,
    /// Who to remove.
    pub user: String,
}

/// `group.role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// The group.
    pub name: String,
    /// Whose role.
    pub user: String,
    /// `admin` or `member` (a [`Role`] other than the owner's).
    pub role: String,
}

/// `chat.send`. `from`, `ip`, `seq`, `edited`, `deleted` and `reactions`
/// are accepted and dropped unread (the server sets them), so a client may
/// send a whole message object back; any other unknown field is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Where it goes.
    pub to: Target,
    /// The text.
    pub text: String,
    /// 1 to 64 bytes: a repeat of a send with the same `client_id` gets the
    /// first send's reply and sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Accepted and dropped: the server's value wins.
    #[serde(default, rename = "from", skip_serializing)]
    _from: Ignored,
    /// Accepted and dropped: the server's value wins.
    #[serde(default, rename = "ip", skip_serializing)]
    _ip: Ignored,
    /// Accepted and dropped, as the other fields of a [`Message`] sent back.
    #[serde(default, rename = "seq", skip_serializing)]
    _seq: Ignored,
    /// Accepted and dropped.
    #[serde(default, rename = "edited", skip_serializing)]
    _edited: Ignored,
    /// Accepted and dropped.
    #[serde(default, rename = "deleted", skip_serializing)]
    _deleted: Ignored,
    /// Accepted and dropped.
    #[serde(default, rename = "reactions", skip_serializing)]
    _reactions: Ignored,
}

impl SendMessage {
    /// A send of `text` to `to`, without a `client_id`.
    pub fn new(to: Target, text: impl Into<String>) -> Self {
        SendMessage {
            to,
            text: text.into(),
            client_id: None,
            _from: Ignored,
            _ip: Ignored,
            _seq: Ignored,
            _edited: Ignored,
            _deleted: Ignored,
            _reactions: Ignored,
        }
    }

    /// The same send, made idempotent by `client_id`.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
}

/// A field read and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Ignored)
    }
}

/// `chat.history`: a page of a conversation's messages (a group, the lobby
/// or a direct conversation), oldest first, each with its edits, deletion
/// and reactions folded in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The conversation: `{"group"}` or `{"user"}` (a direct conversation;
    /// `{"user","group"}` names the same one).
    pub to: Target,
    /// Only messages before this seq (paging backwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Only messages after this seq (paging forwards); not with `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// 1 to 200; 50 if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `chat.ack`: the message ids the client has. Each conversation counts as
/// delivered to this device up to the newest message named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// At most 1,000.
    pub ids: Vec<String>,
}

/// `chat.conversations`: a page of the caller's conversations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConversations {
    /// 1 to 500; 100 if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The page after this conversation (the `to` of the last one of the
    /// previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Target>,
}

/// `chat.edit`: the sender replaces the text of message `seq` of `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The conversation.
    pub to: Target,
    /// The message.
    pub seq: u64,
    /// The new text (the limits of `chat.send`).
    pub text: String,
}

/// `chat.delete`: message `seq` of `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRef {
    /// The conversation.
    pub to: Target,
    /// The message.
    pub seq: u64,
}

/// `chat.react`: toggle the caller's reaction to message `seq` of `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct React {
    /// The conversation.
    pub to: Target,
    /// The message.
    pub seq: u64,
    /// One emoji: the same again takes the reaction back, another replaces it.
    pub reaction: String,
}

/// `chat.typing` (`{"to"}`), and the `typing` push (`{"to", "user"}`): the
/// user is typing in `to`. Never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    /// The conversation, as the receiver of the push addresses it.
    pub to: Target,
    /// Who is typing (set by the server; ignored in the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `chat.read`: the caller read `to` up to message `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// The conversation.
    pub to: Target,
    /// A seq of it, at most its head.
    pub seq: u64,
}

// ---------------------------------------------------------------------------
// Replies.

/// The reply of calls that return nothing: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// The reply to `user.register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The account's name.
    pub name: String,
    /// Its number.
    pub number: u64,
}

/// The reply to `user.login` and `user.resume`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedIn {
    /// Resumes this login (`user.resume`, `Authorization: Bearer`).
    pub token: String,
    /// The user's name.
    pub name: String,
    /// The user's number.
    pub number: u64,
    /// The device this login is (`default` if the login named none).
    #[serde(default)]
    pub device: String,
    /// The user's friends.
    pub friends: Vec<Friend>,
    /// The lobby, then the user's groups.
    pub groups: Vec<MyGroup>,
}

impl fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedIn")
            .field("token", &Redacted)
            .field("name", &self.name)
            .field("number", &self.number)
            .field("device", &self.device)
            .field("friends", &self.friends)
            .field("groups", &self.groups)
            .finish()
    }
}

/// The reply to `user.online`: everyone online, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUsers {
    /// Their names.
    pub users: Vec<String>,
}

/// The reply to `user.blocked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedUsers {
    /// Whom the caller blocked, sorted.
    pub users: Vec<String>,
}

/// A friend and whether they are online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend's name.
    pub name: String,
    /// Whether they are online.
    pub online: bool,
}

/// The reply to `friend.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friends {
    /// The caller's friends.
    pub friends: Vec<Friend>,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Created the group (or was handed it): may do everything.
    Owner,
    /// May kick members.
    Admin,
    /// May post.
    Member,
}

impl Role {
    /// The role's name, as aucheck and the wire know it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Owner, Role::Admin, Role::Member]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group the caller is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyGroup {
    /// The group's name.
    pub name: String,
    /// Its description.
    pub desc: String,
    /// The caller's role in it.
    pub role: Role,
}

/// The reply to `group.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// The lobby, then the caller's groups.
    pub groups: Vec<MyGroup>,
}

/// The reply to `group.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The new group's name.
    pub name: String,
}

/// A group `group.search` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundGroup {
    /// The group's name.
    pub name: String,
    /// Its description.
    pub desc: String,
    /// How many members it has.
    pub members: usize,
}

/// The reply to `group.search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundGroups {
    /// At most 50.
    pub groups: Vec<FoundGroup>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Whether they are online.
    pub online: bool,
}

/// The reply to `group.members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// At most 1,000.
    pub members: Vec<Member>,
}

/// The reply to `chat.send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The message id (uuid v7).
    pub id: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// Its place in the conversation (0 for a repeat of a send made before
    /// conversations had logs).
    #[serde(default)]
    pub seq: u64,
}

/// The reply to `chat.edit` and `chat.delete`: the seq of the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// Where the edit or deletion is in the conversation's log.
    pub seq: u64,
}

/// The reply to `chat.react`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reacted {
    /// The caller's reaction now (`None`: taken back).
    pub reaction: Option<String>,
}

/// The reply to `chat.history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    /// Oldest first.
    pub messages: Vec<Message>,
}

/// One conversation of the caller, in [`ConversationList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// The conversation as the caller addresses it: `{"group"}`, or
    /// `{"user"}` for a direct one.
    pub to: Target,
    /// Its newest seq.
    pub head: u64,
    /// The caller's read position (shared by all their devices).
    pub read: u64,
    /// Messages after it.
    pub unread: u64,
    /// The newest message, if any is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Message>,
}

/// The reply to `chat.conversations`, ordered by conversation (direct ones,
/// then groups, each by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationList {
    /// The page.
    pub conversations: Vec<ConversationInfo>,
    /// Whether more follow (ask again with `after`).
    pub more: bool,
}

/// The reply to `chat.read`, and the `read` push other logins of the user
/// get: the user read `to` up to `read`, and `unread` messages remain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadEvent {
    /// The conversation.
    pub to: Target,
    /// The read position now.
    pub read: u64,
    /// Messages after it.
    pub unread: u64,
}

/// An `edit` push: message `seq` of `to` now reads `text`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    /// The conversation.
    pub to: Target,
    /// The message edited.
    pub seq: u64,
    /// Its text now.
    pub text: String,
    /// When (ms).
    pub ts: u64,
}

/// A `delete` push: message `seq` of `to` is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    /// The conversation.
    pub to: Target,
    /// The message deleted.
    pub seq: u64,
    /// Who deleted it (its sender, or an owner or admin of the group).
    pub by: String,
}

/// A `react` push: `user` reacted to message `seq` of `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The conversation.
    pub to: Target,
    /// The message.
    pub seq: u64,
    /// Who.
    pub user: String,
    /// Their reaction now (`None`: taken back).
    pub reaction: Option<String>,
}

/// A `receipt` push: `user` read `to` up to message `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The conversation, as the one receiving the push addresses it.
    pub to: Target,
    /// Who read.
    pub user: String,
    /// Up to which message.
    pub seq: u64,
}

// ---------------------------------------------------------------------------
// Pushes, and what they carry.

/// A `presence` push: a friend or co-member came online or went offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// Who.
    pub user: String,
    /// Online now?
    pub online: bool,
}

/// A `session` push: this login was signed out; the connection closes
/// after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// Why: [`SessionEvent::REPLACED`], [`SessionEvent::TOO_MANY_DEVICES`]
    /// or [`SessionEvent::LOGGED_OUT_EVERYWHERE`].
    pub event: String,
}

impl SessionEvent {
    /// A newer login of the same device (of any device, on a server run
    /// with `--single-session`) replaced this one.
    pub const REPLACED: &str = "replaced";
    /// The user logged in on more devices than the server allows
    /// (`--max-devices`): this one, the least recently logged in, was
    /// signed out.
    pub const TOO_MANY_DEVICES: &str = "too_many_devices";
    /// The user logged out everywhere (`user.logout_all`).
    pub const LOGGED_OUT_EVERYWHERE: &str = "logged_out_everywhere";

    /// A push saying `reason`.
    pub fn new(reason: &str) -> Self {
        SessionEvent {
            event: reason.to_owned(),
        }
    }
}

/// What happened to a member, in a [`GroupEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Joined the group.
    Joined,
    /// Left it.
    Left,
    /// Was removed by the owner or an admin.
    Kicked,
}

impl Change {
    /// `joined`, `left` or `kicked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Joined => "joined",
            Change::Left => "left",
            Change::Kicked => "kicked",
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message goes: `{"group"}`, `{"user"}` or `{"user","group"}` (a
/// private message to a member inside a group).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The recipient user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Target {
    /// A group.
    pub fn group(name: impl Into<String>) -> Self {
        Target {
            user: None,
            group: Some(name.into()),
        }
    }

    /// A user.
    pub fn user(name: impl Into<String>) -> Self {
        Target {
            user: Some(name.into()),
            group: None,
        }
    }
}

/// A chat message as clients see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message id (uuid v7).
    pub id: String,
    /// The sender, set by the server.
    pub from: String,
    /// The sender's IP address (no port), set by the server.
    pub ip: String,
    /// Where it went.
    pub to: Target,
    /// The text.
    pub text: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// Its place in its conversation's log, from 1.
    #[serde(default)]
    pub seq: u64,
    /// When it was last edited (ms), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<u64>,
    /// Set once it was deleted (`text` is then empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// How many users reacted with each reaction.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, u32>,
}

impl Message {
    /// A message of a conversation's log (`seq`), with its events folded in.
    pub(crate) fn from_log(m: &rmq_core::conversation::Message) -> Option<Message> {
        let mut out = Message::from_envelope(&m.envelope)?;
        out.seq = m.seq;
        out.text = String::from_utf8_lossy(m.body()).into_owned();
        out.edited = m.edited.as_ref().map(|e| e.ts);
        out.deleted = m.deleted.is_some();
        out.reactions = m.reactions.clone();
        Some(out)
    }

    /// The message an envelope carries, if it carries one.
    pub(crate) fn from_envelope(env: &Envelope) -> Option<Message> {
        if env.content_type != TEXT {
            return None;
        }
        let to = match &env.to {
            To::Room(room) => Target::group(room.as_str()),
            To::User(user) => Target::user(user.as_str()),
            To::UserInRoom { user, room } => Target {
                user: Some(user.as_str().to_owned()),
                group: Some(room.as_str().to_owned()),
            },
            _ => return None,
        };
        Some(Message {
            id: env.id.to_string(),
            from: env.from.as_str().to_owned(),
            ip: env.from_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            to,
            text: String::from_utf8_lossy(&env.body).into_owned(),
            ts: env.ts,
            seq: 0,
            edited: None,
            deleted: false,
            reactions: BTreeMap::new(),
        })
    }
}

/// A `group` push: someone joined, left or was kicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    /// The group.
    pub group: String,
    /// Who.
    pub user: String,
    /// What happened.
    pub event: Change,
}

/// The envelope that carries `text` from `from` (at `ip`) to `to`, as
/// message `id` of time `ts`.
pub(crate) fn text_envelope(
    from: &UserId,
    ip: IpAddr,
    to: To,
    text: &str,
    id: uuid::Uuid,
    ts: u64,
) -> Envelope {
    Envelope::builder(from.clone(), to)
        .id(id)
        .ts(ts)
        .from_ip(ip)
        .content_type(TEXT)
        .body(text.as_bytes().to_vec())
        .build()
}

/// The rmq_core destination of a target; `None` if the target is malformed.
pub(crate) fn route(to: &Target) -> Option<To> {
    Some(match (&to.user, &to.group) {
        (None, Some(g)) => To::Room(RoomId::new(g.as_str()).ok()?),
        (Some(u), None) => To::User(UserId::new(u.as_str()).ok()?),
        (Some(u), Some(g)) => To::UserInRoom {
            user: UserId::new(u.as_str()).ok()?,
            room: RoomId::new(g.as_str()).ok()?,
        },
        (None, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_have_the_protocol_shapes() {
        assert_eq!(
            serde_json::to_string(&Target::group("rust")).unwrap(),
            r#"{"group":"rust"}"#
        );
        let t: Target = serde_json::from_str(r#"{"user":"bob","group":"rust"}"#).unwrap();
        assert!(matches!(route(&t), Some(To::UserInRoom { .. })));
        let none: Target = serde_json::from_str("{}").unwrap();
        assert!(route(&none).is_none());
        assert!(serde_json::from_str::<Target>(r#"{"room":"x"}"#).is_err());
    }

    #[test]
    fn envelope_round_trips_to_a_message() {
        let env = text_envelope(
            &UserId::new("alice").unwrap(),
            "10.1.2.3".parse().unwrap(),
            To::Room(RoomId::new("rust").unwrap()),
            "hi",
            uuid::Uuid::now_v7(),
            1_732_350_000_123,
        );
        let m = Message::from_envelope(&env).unwrap();
        assert_eq!(m.ts, 1_732_350_000_123);
        assert_eq!(
            (m.from.as_str(), m.ip.as_str(), m.text.as_str()),
            ("alice", "10.1.2.3", "hi")
        );
        assert_eq!(m.to, Target::group("rust"));
        assert_eq!(m.id, env.id.to_string());
    }
}
