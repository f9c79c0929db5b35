//! The channels (`#group` and `@user` conversations) as the client keeps
//! them: their messages, unread counts, the current channel, and taking a
//! message into its channel.

use chat::wire::{self, api};
use chat::{LOBBY, Message, Target};

use super::events::ChannelInfo;
use super::{Client, ConnState, Event, PAGE, Pending, Source, View};
use crate::store::{HISTORY_CAP, StoreError};
/// A channel: `#group` or `@user`.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Oldest first, by (ts, id).
    pub(crate) messages: Vec<Message>,
    pub(crate) unread: u64,
}

/// The channel key of a group.
pub(crate) fn group_key(name: &str) -> String {
    format!("#{name}")
}

/// The channel a message belongs to, for user `me`.
pub(crate) fn channel_of(m: &Message, me: &str) -> String {
    match (&m.to.group, &m.to.user) {
        (Some(g), _) => group_key(g),
        (None, Some(u)) if m.from == me => format!("@{u}"),
        _ => format!("@{}", m.from),
    }
}

/// Where a channel's messages go.
pub(crate) fn target_of(channel: &str) -> Option<Target> {
    if let Some(g) = channel.strip_prefix('#') {
        Some(Target::group(g))
    } else {
        channel.strip_prefix('@').map(Target::user)
    }
}

/// Display order: the lobby, other groups, then private chats.
fn order(key: &str) -> (u8, &str) {
    if key == "#lobby" {
        (0, key)
    } else if key.starts_with('#') {
        (1, key)
    } else {
        (2, key)
    }
}

pub(super) fn sort_key(m: &Message) -> (u64, &str) {
    (m.ts, m.id.as_str())
}

impl Client {
    /// Channels in display order with their unread counts.
    pub(crate) fn channel_list(&self) -> Vec<(&str, u64)> {
        let mut list: Vec<(&str, u64)> = self
            .channels
            .iter()
            .map(|(k, c)| (k.as_str(), c.unread))
            .collect();
        list.sort_by(|a, b| order(a.0).cmp(&order(b.0)));
        list
    }

    /// The current channel's messages, oldest first.
    pub(crate) fn current_messages(&self) -> &[Message] {
        self.channels
            .get(&self.current)
            .map_or(&[], |c| c.messages.as_slice())
    }

    /// Switch to channel `key` (creating it locally if new).
    pub(crate) async fn select(&mut self, key: &str) {
        if let Err(e) = self.ensure_channel(key).await {
            return self.store_error(e);
        }
        self.current = key.to_owned();
        if let Some(ch) = self.channels.get_mut(key) {
            ch.unread = 0;
        }
        if let Err(e) = self.store.mark_read(key).await {
            self.store_error(e);
        }
        self.events.push(Event::Channel {
            channel: key.to_owned(),
        });
        let empty = self.channels.get(key).is_none_or(|c| c.messages.is_empty());
        if empty && key.starts_with('#') && self.conn == ConnState::Online {
            self.backfill(key, None, PAGE, false);
        }
    }

    /// Store and show `m` unless it is already here; the view if it was new.
    pub(super) async fn take_message(&mut self, m: Message, source: Source) -> Option<View> {
        let key = channel_of(&m, &self.me);
        if self.seen.contains(&m.id) {
            if source == Source::Live {
                self.events.push(Event::Duplicate {
                    channel: key,
                    id: m.id,
                });
            }
            return None;
        }
        if let Err(e) = self.ensure_channel(&key).await {
            self.store_error(e);
            return None;
        }
        if let Err(e) = self.store.append(&key, &m).await {
            self.store_error(e);
            return None;
        }
        self.seen.insert(m.id.clone());
        let unread = matches!(source, Source::Live | Source::Sync)
            && m.from != self.me
            && key != self.current;
        if unread && let Err(e) = self.store.mark_unread(&key, &m.id).await {
            self.store_error(e);
        }
        let view = self.view(&key, &m);
        let ch = self.channels.entry(key).or_default();
        if unread {
            ch.unread += 1;
        }
        let at = ch.messages.partition_point(|x| sort_key(x) < sort_key(&m));
        ch.messages.insert(at, m);
        let cap = usize::try_from(HISTORY_CAP).unwrap_or(usize::MAX);
        if ch.messages.len() > cap {
            let extra = ch.messages.len() - cap;
            ch.messages.drain(..extra);
        }
        self.events.push(Event::Message {
            message: view.clone(),
            source,
            unread,
        });
        Some(view)
    }

    pub(super) fn view(&self, channel: &str, m: &Message) -> View {
        View {
            channel: channel.to_owned(),
            id: m.id.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            text: m.text.clone(),
            display: self.display(&m.text),
            ts: m.ts,
            private: m.to.group.is_some() && m.to.user.is_some(),
            mine: m.from == self.me,
        }
    }

    pub(super) fn backfill(
        &mut self,
        channel: &str,
        before: Option<u64>,
        limit: usize,
        report: bool,
    ) {
        let Some(group) = channel.strip_prefix('#') else {
            return;
        };
        let history = wire::History {
            to: Target::group(group),
            before,
            after: None,
            limit: Some(limit.clamp(1, 200)),
        };
        self.request(
            api::HISTORY,
            &history,
            Pending::Backfill {
                channel: channel.to_owned(),
                report,
            },
        );
    }

    pub(super) async fn report_channels(&mut self) {
        let keys: Vec<String> = self
            .channel_list()
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect();
        let mut channels = Vec::with_capacity(keys.len());
        for key in keys {
            // From the store, which is what a restart would show.
            let unread = match self.store.unread_count(&key).await {
                Ok(n) => n,
                Err(e) => {
                    self.store_error(e);
                    self.channels.get(&key).map_or(0, |c| c.unread)
                }
            };
            let messages = self.channels.get(&key).map_or(0, |c| c.messages.len());
            channels.push(ChannelInfo {
                channel: key,
                unread,
                messages,
            });
        }
        self.events.push(Event::Channels {
            current: self.current.clone(),
            channels,
        });
    }

    pub(super) async fn ensure_channel(&mut self, key: &str) -> Result<(), StoreError> {
        if !self.channels.contains_key(key) {
            self.store.ensure_channel(key).await?;
            self.channels.insert(key.to_owned(), Channel::default());
        }
        Ok(())
    }

    pub(super) async fn remove_channel(&mut self, key: &str) {
        if key == group_key(LOBBY) {
            return;
        }
        if self.channels.remove(key).is_some()
            && let Err(e) = self.store.drop_channel(key).await
        {
            self.store_error(e);
        }
        if self.current == key {
            self.select(&group_key(LOBBY)).await;
        }
    }
}
