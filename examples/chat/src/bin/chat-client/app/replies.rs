//! The replies to the client's requests: each [`Pending`] request gets its
//! outcome, a `200` or an error (or a timeout, see [`Client::on_tick`]).

use std::time::Instant;

use chat::Message;
use serde_json::{Value, json};

use super::channels::group_key;
use super::{After, Client, Event, Friend, PAGE, Pending, Source};
use crate::store::RETRY_SEND;

/// Pages a reconnection sync reads back at most, per group.
const SYNC_PAGES: usize = 4;

impl Client {
    /// A frame that is not a push: the reply to one of our requests.
    pub(super) async fn on_reply(&mut self, frame: Value) {
        let id = frame.get("id").and_then(Value::as_u64);
        let status = frame
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        let pending = id.and_then(|id| self.pending.remove(&id)).map(|(_, p)| p);
        if status == 200 {
            let content = frame.get("content").cloned().unwrap_or(Value::Null);
            if let Some(p) = pending {
                self.on_ok(p, content).await;
            }
            return;
        }
        let err = frame.get("error");
        let text = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (code, message) = (text("code"), text("message"));
        let message = if message.is_empty() {
            format!("the server answered {status}")
        } else {
            message
        };
        match pending {
            Some(p) => self.on_err(p, status, code, message).await,
            None => self.error(None, Some(status), &code, message),
        }
    }

    async fn on_ok(&mut self, pending: Pending, content: Value) {
        match pending {
            Pending::Register => self.on_registered(),
            Pending::Login => self.on_login(&content, false).await,
            Pending::Resume => self.on_login(&content, true).await,
            Pending::Online { report } => self.on_online(&content, report),
            Pending::Friends { report } => self.on_friends(&content, report),
            Pending::Sync {
                channel,
                mark,
                page,
            } => self.on_sync(channel, mark, page, &content).await,
            Pending::Backfill { channel, report } => {
                self.on_backfill(channel, report, &content).await
            }
            Pending::Send { client_id } => self.on_sent(client_id, &content).await,
            Pending::Ack { ids } => self.events.push(Event::Acked { ids }),
            Pending::Command { name, then } => self.on_command_ok(name, then, content).await,
        }
    }

    /// A request failed: `status` is the server's, or 504 for a timeout.
    pub(super) async fn on_err(
        &mut self,
        pending: Pending,
        status: u16,
        code: String,
        message: String,
    ) {
        match pending {
            Pending::Register if status == 409 => self.on_name_taken(status, code, message),
            Pending::Register | Pending::Login => self.on_login_refused(status, code, message),
            Pending::Resume => self.on_resume_refused(status, code, message).await,
            Pending::Send { client_id } => {
                self.on_send_failed(client_id, status, code, message).await
            }
            Pending::Online { report: true } | Pending::Friends { report: true } => {
                self.error(Some("who"), Some(status), &code, message)
            }
            Pending::Backfill { report: true, .. } => {
                self.error(Some("history"), Some(status), &code, message)
            }
            Pending::Command { name, .. } => self.error(Some(&name), Some(status), &code, message),
            // Background requests: acks come back as redeliveries, syncs
            // happen again at the next login.
            Pending::Online { .. }
            | Pending::Friends { .. }
            | Pending::Sync { .. }
            | Pending::Backfill { .. }
            | Pending::Ack { .. } => {}
        }
    }

    /// `user.online`: who is online (then the friends, for `/who`).
    fn on_online(&mut self, content: &Value, report: bool) {
        let users: Vec<String> =
            serde_json::from_value(content.get("users").cloned().unwrap_or_default())
                .unwrap_or_default();
        self.online = users.into_iter().collect();
        if report {
            self.request("friend.list", json!({}), Pending::Friends { report: true });
        }
    }

    /// `friend.list`.
    fn on_friends(&mut self, content: &Value, report: bool) {
        let friends: Vec<Friend> =
            serde_json::from_value(content.get("friends").cloned().unwrap_or_default())
                .unwrap_or_default();
        self.friends = friends.iter().map(|f| (f.name.clone(), f.online)).collect();
        if report {
            self.events.push(Event::Who {
                online: self.online.iter().cloned().collect(),
                friends,
            });
        }
    }

    /// A page of a group's reconnection sync: keep what is newer than `mark`
    /// as synced, and page back while a whole page is new.
    async fn on_sync(
        &mut self,
        channel: String,
        mark: Option<String>,
        page: usize,
        content: &Value,
    ) {
        let messages = messages_of(content);
        let full = messages.len() >= PAGE;
        let oldest = messages.first().map(|m| m.id.clone());
        let mut reached = mark.is_none();
        for m in messages {
            let newer = mark.as_ref().is_some_and(|mark| m.id > *mark);
            reached |= !newer;
            let source = if newer { Source::Sync } else { Source::Server };
            self.take_message(m, source).await;
        }
        if !reached && full && page + 1 < SYNC_PAGES {
            let Some(group) = channel.strip_prefix('#').map(str::to_owned) else {
                return;
            };
            self.request(
                "chat.history",
                json!({ "to": { "group": group }, "limit": PAGE, "before": oldest }),
                Pending::Sync {
                    channel,
                    mark,
                    page: page + 1,
                },
            );
        }
    }

    /// Older history of a group (`/history`, or a channel opened empty).
    async fn on_backfill(&mut self, channel: String, report: bool, content: &Value) {
        let mut added = Vec::new();
        for m in messages_of(content) {
            if let Some(view) = self.take_message(m, Source::Server).await {
                added.push(view);
            }
        }
        if report {
            self.events.push(Event::History {
                channel,
                source: Source::Server,
                messages: added,
            });
        }
    }

    /// `chat.send` succeeded: the text leaves the outbox for its channel.
    async fn on_sent(&mut self, client_id: String, content: &Value) {
        let Some(lease) = self.in_flight.remove(&client_id) else {
            return;
        };
        let item = lease.item().clone();
        if let Err(e) = lease.ack().await {
            self.store_error(e.into());
        }
        self.outbox.retain(|o| o.client_id != client_id);
        let id = content
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ts = content
            .get("ts")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        if !id.is_empty() {
            let m = Message {
                id: id.clone(),
                from: self.me.clone(),
                ip: String::new(),
                to: item.to,
                text: item.text,
                ts,
            };
            self.take_message(m, Source::Sent).await;
        }
        self.events.push(Event::Sent {
            channel: item.channel,
            client_id,
            id,
            ts,
        });
    }

    /// `chat.send` failed: retried later if the server was busy, dropped
    /// (and reported) if it refused the text.
    async fn on_send_failed(
        &mut self,
        client_id: String,
        status: u16,
        code: String,
        message: String,
    ) {
        let Some(lease) = self.in_flight.remove(&client_id) else {
            return;
        };
        if status == 429 || status >= 500 {
            // Not now: keep it and try again shortly.
            let _ = lease.release().await;
            self.retry_due = Some(Instant::now() + RETRY_SEND);
        } else {
            let channel = lease.item().channel.clone();
            if let Err(e) = lease.ack().await {
                self.store_error(e.into());
            }
            self.outbox.retain(|o| o.client_id != client_id);
            self.events.push(Event::Error {
                command: Some("send".into()),
                status: Some(status),
                code,
                message: format!("{message} (in {channel}; not sent)"),
            });
        }
    }

    /// A user command succeeded: do what follows it, then report.
    async fn on_command_ok(&mut self, name: String, then: After, content: Value) {
        match then {
            After::Nothing => {}
            After::OpenGroup(group) => {
                let key = group_key(&group);
                self.select(&key).await;
            }
            After::LeaveGroup(group) => self.remove_channel(&group_key(&group)).await,
            After::RefreshFriends => {
                self.request("friend.list", json!({}), Pending::Friends { report: false })
            }
        }
        let detail = if content.as_object().is_some_and(|o| o.is_empty()) {
            Value::Null
        } else {
            content
        };
        self.ok(&name, detail);
    }
}

fn messages_of(content: &Value) -> Vec<Message> {
    content
        .get("messages")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| serde_json::from_value(m.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}
