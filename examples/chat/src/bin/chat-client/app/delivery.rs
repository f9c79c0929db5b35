//! What the client owes the server, kept on disk until it is through: the
//! outbox of typed text (queued, sent, retried until confirmed) and the
//! batched acks of stored messages.

use std::time::Instant;

use chat::wire::{self, api};

use super::channels::target_of;
use super::{Client, ConnState, Event, Pending};
use crate::store::Outgoing;

/// Most ids per `chat.ack` (the server's limit).
const MAX_ACK_IDS: usize = 1000;

impl Client {
    /// Text typed in the current channel that the server has not confirmed.
    pub(crate) fn current_outgoing(&self) -> impl Iterator<Item = &Outgoing> {
        self.outbox.iter().filter(|o| o.channel == self.current)
    }

    pub(super) async fn queue_ack(&mut self, id: String) {
        self.to_ack.push(id);
        if self.closing || self.to_ack.len() >= MAX_ACK_IDS {
            self.flush_acks().await;
        } else if self.ack_due.is_none() {
            self.ack_due = Some(Instant::now() + self.settings.ack_delay);
        }
    }

    /// Make the history durable, then ack what it holds.
    pub(super) async fn flush_acks(&mut self) {
        self.ack_due = None;
        if self.to_ack.is_empty() || self.conn != ConnState::Online {
            return;
        }
        if let Err(e) = self.store.flush().await {
            // Not on disk: do not ack; the server delivers them again.
            self.to_ack.clear();
            return self.store_error(e);
        }
        let ids = std::mem::take(&mut self.to_ack);
        for chunk in ids.chunks(MAX_ACK_IDS) {
            self.request(
                api::ACK,
                &wire::Ack {
                    ids: chunk.to_vec(),
                },
                Pending::Ack {
                    ids: chunk.to_vec(),
                },
            );
        }
    }

    pub(super) async fn say(&mut self, text: String) {
        let Some(to) = target_of(&self.current) else {
            return self.error(
                Some("send"),
                None,
                "bad_channel",
                format!("cannot send to {}", self.current),
            );
        };
        let item = Outgoing {
            client_id: uuid::Uuid::new_v4().to_string(),
            channel: self.current.clone(),
            to,
            text,
        };
        if let Err(e) = self.store.queue_outgoing(&item).await {
            return self.store_error(e);
        }
        self.events.push(Event::Queued {
            channel: item.channel.clone(),
            client_id: item.client_id.clone(),
            text: item.text.clone(),
        });
        self.outbox.push(item);
        self.pump_outbox().await;
    }

    /// Send everything in the outbox that is not in flight yet.
    pub(super) async fn pump_outbox(&mut self) {
        if self.conn != ConnState::Online {
            return;
        }
        loop {
            match self.store.lease_outgoing().await {
                Ok(Some(lease)) => {
                    let item = lease.item().clone();
                    if let Some(slot) = self.in_flight.get_mut(&item.client_id) {
                        // Its lease ran out while we waited: keep the new one.
                        *slot = lease;
                        continue;
                    }
                    if !self.outbox.iter().any(|o| o.client_id == item.client_id) {
                        self.outbox.push(item.clone());
                    }
                    let send = wire::SendMessage::new(item.to.clone(), item.text.clone())
                        .client_id(item.client_id.clone());
                    self.request(
                        api::SEND,
                        &send,
                        Pending::Send {
                            client_id: item.client_id.clone(),
                        },
                    );
                    self.in_flight.insert(item.client_id, lease);
                }
                Ok(None) => break,
                Err(e) => {
                    self.store_error(e);
                    break;
                }
            }
        }
    }
}
