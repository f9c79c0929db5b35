//! The replies to the client's requests: each [`Pending`] request gets its
//! outcome, a `200` or an error (or a timeout, see [`Client::on_tick`]).

use std::time::Instant;

use chat::Message;
use chat::wire::{self, NoParams, Target, api};
use serde::de::DeserializeOwned;
use serde_json::Value;

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
            Pending::Login => self.on_login(content, false).await,
            Pending::Resume => self.on_login(content, true).await,
            Pending::Online { report } => {
                if let Some(online) = self.reply_of(api::ONLINE, content) {
                    self.on_online(online, report);
                }
            }
            Pending::Friends { report } => {
                if let Some(friends) = self.reply_of(api::FRIEND_LIST, content) {
                    self.on_friends(friends, report);
                }
            }
            Pending::Sync {
                channel,
                mark,
                page,
            } => {
                if let Some(page_of) = self.reply_of(api::HISTORY, content) {
                    self.on_sync(channel, mark, page, page_of).await;
                }
            }
            Pending::Backfill { channel, report } => {
                if let Some(page_of) = self.reply_of(api::HISTORY, content) {
                    self.on_backfill(channel, report, page_of).await;
                }
            }
            Pending::Send { client_id } => {
                if let Some(sent) = self.reply_of(api::SEND, content) {
                    self.on_sent(client_id, sent).await;
                }
            }
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

    /// The reply to `api` as its wire type; a reply that is not what
    /// PROTOCOL.md §1 says is reported, and `None`.
    fn reply_of<R: DeserializeOwned>(&mut self, api: &str, content: Value) -> Option<R> {
        match serde_json::from_value(content) {
            Ok(r) => Some(r),
            Err(e) => {
                let message = format!("the reply to {api} is not what PROTOCOL.md §1 says: {e}");
                self.error(None, None, "bad_reply", message);
                None
            }
        }
    }

    /// `user.online`: who is online (then the friends, for `/who`).
    fn on_online(&mut self, online: wire::OnlineUsers, report: bool) {
        self.online = online.users.into_iter().collect();
        if report {
            self.request(
                api::FRIEND_LIST,
                &NoParams {},
                Pending::Friends { report: true },
            );
        }
    }

    /// `friend.list`.
    fn on_friends(&mut self, friends: wire::Friends, report: bool) {
        let friends: Vec<Friend> = friends
            .friends
            .into_iter()
            .map(|f| Friend {
                name: f.name,
                online: f.online,
            })
            .collect();
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
        wire::Messages { messages }: wire::Messages,
    ) {
        let full = messages.len() >= PAGE;
        let oldest = messages.first().map(|m| m.seq).filter(|seq| *seq > 0);
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
            let history = wire::History {
                to: Target::group(group),
                before: oldest,
                after: None,
                limit: Some(PAGE),
            };
            self.request(
                api::HISTORY,
                &history,
                Pending::Sync {
                    channel,
                    mark,
                    page: page + 1,
                },
            );
        }
    }

    /// Older history of a group (`/history`, or a channel opened empty).
    async fn on_backfill(&mut self, channel: String, report: bool, page: wire::Messages) {
        let mut added = Vec::new();
        for m in page.messages {
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
    async fn on_sent(&mut self, client_id: String, sent: wire::Sent) {
        let Some(lease) = self.in_flight.remove(&client_id) else {
            return;
        };
        let item = lease.item().clone();
        if let Err(e) = lease.ack().await {
            self.store_error(e.into());
        }
        self.outbox.retain(|o| o.client_id != client_id);
        let wire::Sent { id, ts, seq } = sent;
        if !id.is_empty() {
            let m = Message {
                id: id.clone(),
                from: self.me.clone(),
                ip: String::new(),
                to: item.to,
                text: item.text,
                ts,
                seq,
                ..Message::default()
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
            After::RefreshFriends => self.request(
                api::FRIEND_LIST,
                &NoParams {},
                Pending::Friends { report: false },
            ),
        }
        let detail = if content.as_object().is_some_and(|o| o.is_empty()) {
            Value::Null
        } else {
            content
        };
        self.ok(&name, detail);
    }
}
