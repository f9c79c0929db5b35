//! Queues of serde values, stored as JSON.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::queue::Attempt;
use crate::{Error, Lease, Position, Queue, Result};

/// A [`Queue`] whose items are values of `T`, stored as JSON. Get one with
/// [`Queue::typed`]; it shares the queue (and can be mixed with raw access,
/// e.g. to inspect an item that does not decode).
///
/// An item that does not decode as `T` stays in the queue: the call fails
/// with [`Error::Decode`] naming its position, for
/// [`Queue::discard`] or a raw [`Queue::pop`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use serde::{Deserialize, Serialize};
/// use tiny_q::{QueueOptions, Queues};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Msg {
///     from: String,
///     body: String,
/// }
///
/// let store = nopi::open("memory:").await?;
/// let queues = Queues::new(&store).await?;
/// let inbox = queues.create("inbox:bob", QueueOptions::default()).await?.typed::<Msg>();
/// inbox.push(&Msg { from: "alice".into(), body: "hi".into() }).await?;
/// let lease = inbox.lease().await?.expect("one message");
/// assert_eq!(lease.item().body, "hi");
/// assert!(lease.ack().await?);
/// assert!(inbox.pop().await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }
/// ```
pub struct TypedQueue<T> {
    queue: Queue,
    item: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedQueue<T> {
    fn clone(&self) -> Self {
        TypedQueue {
            queue: self.queue.clone(),
            item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for TypedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedQueue")
            .field("queue", &self.queue)
            .field("item", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> TypedQueue<T> {
    pub(crate) fn new(queue: Queue) -> Self {
        TypedQueue {
            queue,
            item: PhantomData,
        }
    }

    /// The untyped queue underneath.
    pub fn raw(&self) -> &Queue {
        &self.queue
    }

    /// Append `item`; see [`Queue::push`].
    pub async fn push(&self, item: &T) -> Result<Position> {
        self.queue.push(self.encode(item)?).await
    }

    /// Append every item atomically; see [`Queue::push_batch`].
    pub async fn push_batch<'a, I>(&self, items: I) -> Result<Vec<Position>>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let encoded = items
            .into_iter()
            .map(|item| self.encode(item))
            .collect::<Result<Vec<_>>>()?;
        self.queue.push_batch(encoded).await
    }

    /// Remove and return the oldest ready item; see [`Queue::pop`].
    pub async fn pop(&self) -> Result<Option<T>> {
        let decode = |p, bytes: &[u8]| self.decode(p, bytes);
        self.queue
            .pop_now(true, decode)
            .await
            .map(Attempt::into_option)
    }

    /// Wait up to `timeout` for an item; see [`Queue::pop_wait`].
    pub async fn pop_wait(&self, timeout: Duration) -> Result<Option<T>> {
        let decode = |p, bytes: &[u8]| self.decode(p, bytes);
        self.queue
            .wait(timeout, || self.queue.pop_now(true, decode))
            .await
    }

    /// The next `n` ready items, oldest first; see [`Queue::peek`].
    pub async fn peek(&self, n: usize) -> Result<Vec<T>> {
        self.queue
            .peek_with(n, |p, bytes| self.decode(p, bytes))
            .await
    }

    /// Hand out the oldest ready item until acked; see [`Queue::lease`].
    pub async fn lease(&self) -> Result<Option<Lease<T>>> {
        let decode = |p, bytes: &[u8]| self.decode(p, bytes);
        self.queue.lease_now(decode).await.map(Attempt::into_option)
    }

    /// Wait up to `timeout` for an item to lease; see [`Queue::lease_wait`].
    pub async fn lease_wait(&self, timeout: Duration) -> Result<Option<Lease<T>>> {
        let decode = |p, bytes: &[u8]| self.decode(p, bytes);
        self.queue
            .wait(timeout, || self.queue.lease_now(decode))
            .await
    }

    /// Items stored, in flight included; see [`Queue::len`].
    pub async fn len(&self) -> Result<u64> {
        self.queue.len().await
    }

    /// True when no item is stored; see [`Queue::is_empty`].
    pub async fn is_empty(&self) -> Result<bool> {
        self.queue.is_empty().await
    }

    fn encode(&self, item: &T) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(item).map_err(|source| Error::Encode {
            queue: self.queue.name().to_owned(),
            source,
        })?;
        self.queue.check_size(bytes.len())?;
        Ok(bytes)
    }

    fn decode(&self, position: Position, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|source| Error::Decode {
            queue: self.queue.name().to_owned(),
            position,
            source,
        })
    }
}
