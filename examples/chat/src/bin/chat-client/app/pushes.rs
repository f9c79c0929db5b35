//! What the server pushes unasked: messages (stored, then acked), presence,
//! group membership events and the end of the session.

use chat::Message;
use chat::wire::Change;
use serde::Deserialize;
use serde_json::Value;

use super::channels::group_key;
use super::{Client, ConnState, Event, Source};
use crate::net::NetCmd;

impl Client {
    /// A push of kind `kind`.
    pub(super) async fn on_push(&mut self, kind: &str, content: Value) {
        match kind {
            "message" => self.on_message_push(content).await,
            "presence" => self.on_presence_push(content),
            "group" => self.on_group_push(content).await,
            "session" => self.on_session_push(&content),
            _ => {} // a push this client does not know: newer server
        }
    }

    /// A message: stored, then acked (a redelivery is acked again).
    async fn on_message_push(&mut self, content: Value) {
        match serde_json::from_value::<Message>(content) {
            Ok(m) => {
                let id = m.id.clone();
                let stored =
                    self.take_message(m, Source::Live).await.is_some() || self.seen.contains(&id);
                if stored {
                    self.queue_ack(id).await;
                }
            }
            Err(e) => self.error(
                None,
                None,
                "bad_frame",
                format!("a message push that is not a message: {e}"),
            ),
        }
    }

    /// A user came online or went offline.
    fn on_presence_push(&mut self, content: Value) {
        #[derive(Deserialize)]
        struct P {
            user: String,
            online: bool,
        }
        if let Ok(p) = serde_json::from_value::<P>(content) {
            if p.online {
                self.online.insert(p.user.clone());
            } else {
                self.online.remove(&p.user);
            }
            if let Some(f) = self.friends.get_mut(&p.user) {
                *f = p.online;
            }
            self.events.push(Event::Presence {
                user: p.user,
                online: p.online,
            });
        }
    }

    /// Someone joined, left or was kicked from a group (we, perhaps).
    async fn on_group_push(&mut self, content: Value) {
        if let Ok(g) = serde_json::from_value::<chat::GroupEvent>(content) {
            let key = group_key(&g.group);
            if g.user == self.me && matches!(g.event, Change::Left | Change::Kicked) {
                self.remove_channel(&key).await;
            } else if g.user == self.me
                && g.event == Change::Joined
                && let Err(e) = self.ensure_channel(&key).await
            {
                self.store_error(e);
            }
            self.events.push(Event::Group {
                group: g.group,
                user: g.user,
                action: g.event.to_string(),
            });
        }
    }

    /// The server signed this login out (`replaced`, `too_many_devices`,
    /// `logged_out_everywhere`): stop reconnecting until `/login`.
    fn on_session_push(&mut self, content: &Value) {
        let state = content
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("ended")
            .to_owned();
        self.events.push(Event::Session {
            state: state.clone(),
        });
        let why = match state.as_str() {
            "replaced" => "logged in again as this device; /login to take over",
            "too_many_devices" => "signed out: logged in on too many devices; /login",
            "logged_out_everywhere" => "logged out everywhere; /login to log in again",
            _ => "signed out by the server; /login to log in again",
        };
        let _ = self.net.send(NetCmd::Stop);
        self.set_conn(ConnState::Replaced, Some(why.into()), None);
    }
}
