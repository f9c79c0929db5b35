//! What the client reports to its drivers: the [`Event`]s, and the values
//! they carry (connection state, message views, channel summaries).

use chat::Target;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The connection as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConnState {
    /// Trying to reach the server.
    Connecting,
    /// Connected, logging in.
    LoggingIn,
    /// Logged in.
    Online,
    /// Lost; a reconnection is scheduled.
    Offline,
    /// Another login of this user took over; no reconnection.
    Replaced,
    /// Given up (bad credentials, expired session): `/login` starts again.
    Stopped,
}

impl ConnState {
    pub(crate) fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::LoggingIn => "logging in",
            ConnState::Online => "online",
            ConnState::Offline => "offline",
            ConnState::Replaced => "replaced",
            ConnState::Stopped => "stopped",
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// Pushed by the server (live, or redelivered from the inbox).
    Live,
    /// Found by the reconnection sync, newer than what was stored.
    Sync,
    /// Older history from the server (`/history`, a newly joined group).
    Server,
    /// Our own message, confirmed by the server.
    Sent,
    /// The local store.
    Local,
}

/// A message as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct View {
    pub(crate) channel: String,
    pub(crate) id: String,
    pub(crate) from: String,
    pub(crate) to: Target,
    pub(crate) text: String,
    /// The text with emoticons expanded when that is on.
    pub(crate) display: String,
    pub(crate) ts: u64,
    /// A private message inside a group.
    pub(crate) private: bool,
    /// Sent by us.
    pub(crate) mine: bool,
}

/// A channel in the `channels` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ChannelInfo {
    pub(crate) channel: String,
    pub(crate) unread: u64,
    pub(crate) messages: usize,
}

/// A friend and whether they are online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Friend {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) online: bool,
}

/// Everything the client reports; `--script` prints each as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The connection changed.
    Connection {
        state: ConnState,
        server: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// Logged in (with a password, or by resuming the saved session).
    Login {
        name: String,
        number: u64,
        resumed: bool,
    },
    /// A message was added to a channel.
    Message {
        #[serde(flatten)]
        message: View,
        source: Source,
        unread: bool,
    },
    /// A message that was already here arrived again and was dropped.
    Duplicate { channel: String, id: String },
    /// Text was queued to be sent (it is kept on disk until confirmed).
    Queued {
        channel: String,
        client_id: String,
        text: String,
    },
    /// The server confirmed a message we sent.
    Sent {
        channel: String,
        client_id: String,
        id: String,
        ts: u64,
    },
    /// The server took our acks for these messages.
    Acked { ids: Vec<String> },
    /// A user came online or went offline.
    Presence { user: String, online: bool },
    /// Someone joined, left or was kicked from a group.
    Group {
        group: String,
        user: String,
        action: String,
    },
    /// The session ended on the server's side (`replaced`).
    Session { state: String },
    /// The current channel changed.
    Channel { channel: String },
    /// The channels and their unread counts (`/channels`).
    Channels {
        current: String,
        channels: Vec<ChannelInfo>,
    },
    /// A channel's history (`/history`): first `local`, then `server`.
    History {
        channel: String,
        source: Source,
        messages: Vec<View>,
    },
    /// Who is online, and the friends (`/who`).
    Who {
        online: Vec<String>,
        friends: Vec<Friend>,
    },
    /// A command succeeded; `detail` is the server's reply, if any.
    Ok {
        command: String,
        #[serde(skip_serializing_if = "Value::is_null")]
        detail: Value,
    },
    /// Something failed.
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        code: String,
        message: String,
    },
    /// Emoticon expansion was switched.
    Emoticons { on: bool },
    /// The command list (`/help`).
    Help { lines: Vec<String> },
}
