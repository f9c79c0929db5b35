//! The client's local data, in tiny_q queues over one nopi store (sled in
//! the user's data directory):
//!
//! ```text
//! queue                  items (JSON)                       policy
//! history:<channel>      chat::Message, arrival order       drop oldest past HISTORY_CAP
//! unread:<channel>       message ids not yet seen           drop oldest past HISTORY_CAP
//! outbox                 Outgoing (text typed, not yet      reject when full; leased while
//!                        confirmed by the server)           in flight, acked on the reply
//! tree client.meta       "token" -> the session token
//! ```
//!
//! `<channel>` is `#group` or `@user`. History and unread queues are
//! buffered (no flush per message); [`LocalStore::flush`] makes them durable
//! and runs before the client acks anything to the server, so a message is
//! acked only once it is on disk here. The outbox is durable: text typed
//! while offline survives a restart and is sent with its `client_id`, which
//! makes the server drop a repeat.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chat::{Message, Target};
use serde::{Deserialize, Serialize};
use tiny_q::{Durability, Lease, Overflow, QueueOptions, Queues, TypedQueue};

/// Messages kept per channel.
pub(crate) const HISTORY_CAP: u64 = 2000;
/// Messages waiting to be sent, at most.
const OUTBOX_CAP: u64 = 1000;
const HISTORY: &str = "history:";
const UNREAD: &str = "unread:";
const OUTBOX: &str = "outbox";
const META: &str = "client.meta";
const TOKEN: &str = "token";

/// A local storage failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot create the data directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("cannot open the local store in {dir} (is another chat-client using it?): {source}")]
    Open { dir: String, source: nopi::Error },
    #[error("local store: {0}")]
    Queue(#[from] tiny_q::Error),
    #[error("local store: {0}")]
    Meta(#[from] nopi::Error),
}

/// Text typed by the user, kept until the server confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outgoing {
    /// Chosen here; the server sends a repeated `client_id` only once.
    pub(crate) client_id: String,
    /// The channel it was typed in.
    pub(crate) channel: String,
    pub(crate) to: Target,
    pub(crate) text: String,
}

/// The local store of one user on one server.
pub(crate) struct LocalStore {
    store: nopi::Store,
    queues: Queues,
    meta: nopi::Tree,
    history: HashMap<String, TypedQueue<Message>>,
    unread: HashMap<String, TypedQueue<String>>,
    outbox: TypedQueue<Outgoing>,
}

impl LocalStore {
    /// Open (creating) the store in `dir`.
    pub(crate) async fn open(dir: &Path) -> Result<LocalStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            dir: dir.display().to_string(),
            source,
        })?;
        let store = nopi::open(&format!("sled:{}", dir.join("store").display()))
            .await
            .map_err(|source| StoreError::Open {
                dir: dir.display().to_string(),
                source,
            })?;
        Self::on(store).await
    }

    /// The store on an already open nopi store (tests use `memory:`).
    pub(crate) async fn on(store: nopi::Store) -> Result<LocalStore, StoreError> {
        let queues = Queues::new(&store).await?;
        let meta = store.tree(META).await?;
        let outbox_options = QueueOptions::builder()
            .capacity(OUTBOX_CAP)
            .overflow(Overflow::Reject)
            .durability(Durability::Durable)
            .lease_timeout(tiny_q::MAX_LEASE_TIMEOUT)
            .build()?;
        let outbox = queues.open_or_create(OUTBOX, outbox_options).await?.typed();
        Ok(LocalStore {
            store,
            queues,
            meta,
            history: HashMap::new(),
            unread: HashMap::new(),
            outbox,
        })
    }

    /// Every channel with local history, sorted.
    pub(crate) async fn channels(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .queues
            .list()
            .await?
            .into_iter()
            .filter_map(|name| name.strip_prefix(HISTORY).map(str::to_owned))
            .collect())
    }

    fn channel_options() -> Result<QueueOptions, tiny_q::Error> {
        QueueOptions::builder()
            .capacity(HISTORY_CAP)
            .overflow(Overflow::DropOldest)
            .durability(Durability::Buffered)
            .build()
    }

    async fn history_queue(&mut self, channel: &str) -> Result<TypedQueue<Message>, StoreError> {
        if let Some(q) = self.history.get(channel) {
            return Ok(q.clone());
        }
        let q = self
            .queues
            .open_or_create(&format!("{HISTORY}{channel}"), Self::channel_options()?)
            .await?
            .typed();
        self.history.insert(channel.to_owned(), q.clone());
        Ok(q)
    }

    async fn unread_queue(&mut self, channel: &str) -> Result<TypedQueue<String>, StoreError> {
        if let Some(q) = self.unread.get(channel) {
            return Ok(q.clone());
        }
        let q = self
            .queues
            .open_or_create(&format!("{UNREAD}{channel}"), Self::channel_options()?)
            .await?
            .typed();
        self.unread.insert(channel.to_owned(), q.clone());
        Ok(q)
    }

    /// Make `channel` known locally (it is listed from now on).
    pub(crate) async fn ensure_channel(&mut self, channel: &str) -> Result<(), StoreError> {
        self.history_queue(channel).await.map(drop)
    }

    /// The channel's history in arrival order (at most [`HISTORY_CAP`]).
    pub(crate) async fn history(&mut self, channel: &str) -> Result<Vec<Message>, StoreError> {
        let q = self.history_queue(channel).await?;
        Ok(q.peek(usize::try_from(HISTORY_CAP).unwrap_or(usize::MAX))
            .await?)
    }

    /// Append a message to the channel's history.
    pub(crate) async fn append(
        &mut self,
        channel: &str,
        message: &Message,
    ) -> Result<(), StoreError> {
        self.history_queue(channel).await?.push(message).await?;
        Ok(())
    }

    /// Count message `id` as unread in `channel`.
    pub(crate) async fn mark_unread(&mut self, channel: &str, id: &str) -> Result<(), StoreError> {
        self.unread_queue(channel)
            .await?
            .push(&id.to_owned())
            .await?;
        Ok(())
    }

    /// How many messages of `channel` are unread.
    pub(crate) async fn unread_count(&mut self, channel: &str) -> Result<u64, StoreError> {
        Ok(self.unread_queue(channel).await?.len().await?)
    }

    /// Everything in `channel` has been seen.
    pub(crate) async fn mark_read(&mut self, channel: &str) -> Result<(), StoreError> {
        let q = self.unread_queue(channel).await?;
        while q.raw().pop().await?.is_some() {}
        Ok(())
    }

    /// Forget a channel and its history (after leaving a group).
    pub(crate) async fn drop_channel(&mut self, channel: &str) -> Result<(), StoreError> {
        self.history.remove(channel);
        self.unread.remove(channel);
        self.queues.destroy(&format!("{HISTORY}{channel}")).await?;
        self.queues.destroy(&format!("{UNREAD}{channel}")).await?;
        Ok(())
    }

    /// Keep `item` until the server confirms it (durable when this returns).
    pub(crate) async fn queue_outgoing(&self, item: &Outgoing) -> Result<(), StoreError> {
        self.outbox.push(item).await?;
        Ok(())
    }

    /// Everything waiting to be sent, oldest first (not in flight).
    pub(crate) async fn outbox(&self) -> Result<Vec<Outgoing>, StoreError> {
        Ok(self
            .outbox
            .peek(usize::try_from(OUTBOX_CAP).unwrap_or(usize::MAX))
            .await?)
    }

    /// Take the next outgoing item to send; ack the lease when the server
    /// confirmed it, release it if the connection is lost first.
    pub(crate) async fn lease_outgoing(&self) -> Result<Option<Lease<Outgoing>>, StoreError> {
        Ok(self.outbox.lease().await?)
    }

    /// The saved session token.
    pub(crate) async fn token(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .get(TOKEN)
            .await?
            .and_then(|t| String::from_utf8(t).ok()))
    }

    /// Save (or, with `None`, forget) the session token.
    pub(crate) async fn set_token(&self, token: Option<&str>) -> Result<(), StoreError> {
        match token {
            Some(t) => self.meta.insert(TOKEN, t).await?,
            None => drop(self.meta.remove(TOKEN).await?),
        }
        self.store.flush().await?;
        Ok(())
    }

    /// Make every write so far durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.queues.flush().await?;
        Ok(())
    }
}

/// How long to wait before retrying a send the server could not take now
/// (rate limited, or briefly unavailable).
pub(crate) const RETRY_SEND: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, text: &str) -> Message {
        Message {
            id: id.into(),
            from: "alice".into(),
            ip: String::new(),
            to: Target::group("lobby"),
            text: text.into(),
            ts: 1,
            ..Message::default()
        }
    }

    #[tokio::test]
    async fn history_unread_and_token_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LocalStore::open(dir.path()).await.unwrap();
            s.append("#lobby", &message("1", "one")).await.unwrap();
            s.append("#lobby", &message("2", "two")).await.unwrap();
            s.mark_unread("#lobby", "2").await.unwrap();
            s.ensure_channel("@bob").await.unwrap();
            s.set_token(Some("tok")).await.unwrap();
            s.flush().await.unwrap();
        }
        let mut s = LocalStore::open(dir.path()).await.unwrap();
        assert_eq!(s.channels().await.unwrap(), ["#lobby", "@bob"]);
        let texts: Vec<String> = s
            .history("#lobby")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(s.unread_count("#lobby").await.unwrap(), 1);
        s.mark_read("#lobby").await.unwrap();
        assert_eq!(s.unread_count("#lobby").await.unwrap(), 0);
        assert_eq!(s.token().await.unwrap().as_deref(), Some("tok"));
        s.set_token(None).await.unwrap();
        assert_eq!(s.token().await.unwrap(), None);
        s.drop_channel("@bob").await.unwrap();
        assert_eq!(s.channels().await.unwrap(), ["#lobby"]);
    }

    #[tokio::test]
    async fn outbox_items_come_back_until_acked() {
        let s = LocalStore::on(nopi::open("memory:").await.unwrap())
            .await
            .unwrap();
        let item = Outgoing {
            client_id: "c1".into(),
            channel: "#lobby".into(),
            to: Target::group("lobby"),
            text: "hi".into(),
        };
        s.queue_outgoing(&item).await.unwrap();
        let lease = s.lease_outgoing().await.unwrap().unwrap();
        assert_eq!(lease.item(), &item);
        assert!(s.lease_outgoing().await.unwrap().is_none(), "in flight");
        lease.release().await.unwrap();
        let again = s.lease_outgoing().await.unwrap().unwrap();
        assert!(again.ack().await.unwrap());
        assert!(s.outbox().await.unwrap().is_empty());
    }
}
