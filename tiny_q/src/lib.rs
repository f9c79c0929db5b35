//! Disk-persisted named FIFO queues over a [`nopi`] store: capacity with a
//! reject or drop-oldest policy, waiting pops that wake on push, acked
//! consumption with lease timeouts and redelivery after a restart, typed
//! (serde) and raw items, and group commit, so that many concurrent durable
//! pushes share one flush. The chat client keeps history and unread messages
//! in tiny_q; the embedded broker keeps every user's inbox in it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tiny_q::{Overflow, QueueOptions, Queues};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = nopi::open("memory:").await?; // or "sled:./data"
//! let queues = Queues::new(&store).await?;
//!
//! let options = QueueOptions::builder()
//!     .capacity(1000)
//!     .overflow(Overflow::DropOldest)
//!     .lease_timeout(Duration::from_secs(30))
//!     .build()?;
//! let inbox = queues.create("inbox:alice", options).await?;
//!
//! inbox.push("hello").await?; // durable once it returns
//! inbox.push_batch(["how are you", "bye"]).await?;
//! assert_eq!(inbox.len().await?, 3);
//! assert_eq!(inbox.peek(2).await?, [b"hello".to_vec(), b"how are you".to_vec()]);
//!
//! // Plain consumption.
//! assert_eq!(inbox.pop().await?.as_deref(), Some(&b"hello"[..]));
//!
//! // Acked consumption: unacked items come back after the lease timeout
//! // or a restart, in their original place.
//! let lease = inbox.lease().await?.expect("an item");
//! assert_eq!(lease.item(), b"how are you");
//! lease.ack().await?;
//!
//! // Wait up to 5 s for the next item: here it is already there; otherwise
//! // a push from any task or handle wakes the waiter at once.
//! let next = inbox.pop_wait(Duration::from_secs(5)).await?;
//! assert_eq!(next.as_deref(), Some(&b"bye"[..]));
//!
//! assert_eq!(queues.list().await?, ["inbox:alice"]);
//! queues.destroy("inbox:alice").await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! # Concepts
//!
//! - [`Queues`] is the set of queues in one tree of a store: `create`,
//!   `open`, `open_or_create`, `list`, `destroy`. Cheap to clone and share.
//! - [`Queue`] is a handle to one queue; every handle to a queue shares its
//!   state, and thousands of queues cost no task and no timer each: a queue
//!   costs a small index in memory while a handle to it is alive.
//! - [`QueueOptions`]: capacity, [`Overflow`] policy, [`Durability`], lease
//!   timeout; stored with the queue.
//! - [`Lease`]: an item handed out until acked. [`TypedQueue`]: items as
//!   serde values (JSON).
//!
//! Delivery is FIFO per queue and at least once: an item is never lost once
//! a durable push returned `Ok`, but a pop or ack not yet flushed when the
//! process dies is undone, and the item is handed out again.
//!
//! # Durability and group commit
//!
//! A push to a [`Durability::Durable`] queue returns after a flush of the
//! store that began after its write. One flush runs at a time; every durable
//! push arriving meanwhile waits for the next one, which covers them all: a
//! lone writer pays one flush, 64 concurrent writers pay a few. No timer and
//! no background task is involved (see `docs/benchmarks.md` for the gain).
//!
//! # Storage layout
//!
//! All queues of a [`Queues`] live in one tree (default [`DEFAULT_TREE`]).
//! Integers are big-endian, so byte order is numeric order and a scan of one
//! queue's items is oldest first:
//!
//! ```text
//! key                                         value
//! +-----+                                     +----------------------------+
//! | 'v' |                                     | layout version: 0x01       |
//! +-----+                                     +----------------------------+
//! | 'n' |                                     | next queue id: u64 BE      |
//! +-----+------------------------+            +----------------------------+
//! | 'c' | queue name (UTF-8)     |            | catalog entry, JSON:       |
//! +-----+------------------------+            | {"id","capacity","overflow"|
//!                                             |  "durability",             |
//!                                             |  "lease_timeout_ms"}       |
//! +-----+-----------+                         +----------------------------+
//! | 'd' | id: u64 BE|                         | queue name (being purged)  |
//! +-----+-----------+-----------------+       +------+-----------+---------+
//! | 'i' | id: u64 BE| position: u64 BE|       | 0x01 | crc32 BE  | payload |
//! +-----+-----------+-----------------+       +------+-----------+---------+
//!  1 B     8 B         8 B                      1 B     4 B
//! ```
//!
//! - A push writes one item key (a batch adds the removals of
//!   [`Overflow::DropOldest`]); no head or tail counter is written, so push
//!   and pop each cost one write. The head, the tail and the count are
//!   rebuilt from the item keys when a queue is first used after a start.
//!   Positions only grow while the process runs.
//! - Leases live in memory only: after a restart every stored item is ready
//!   again, oldest first.
//! - A queue id is allocated with its catalog entry in one atomic batch and
//!   never reused, so a queue re-created under a destroyed name never sees
//!   the old items. `destroy` swaps the catalog entry for a tombstone
//!   atomically, then removes the items in chunks; the next start finishes
//!   an interrupted purge.
//! - Each item carries a CRC-32: a damaged entry is reported as
//!   [`Error::Corrupt`] with its queue and position and stays put until the
//!   caller [discards](Queue::discard) it.
//!
//! # Limits
//!
//! Queue names are 1 to [`MAX_QUEUE_NAME`] bytes of UTF-8 without control
//! characters; items at most [`QueuesBuilder::max_item_size`] (1 MiB by
//! default); capacity 1 to [`MAX_CAPACITY`]; a batch at most
//! [`QueuesBuilder::max_batch_items`]. Each violation is a typed [`Error`].
//!
//! # Crate features
//!
//! tiny_q has no features of its own. The storage engines are nopi's
//! features, enabled in the application's `nopi` dependency:
//!
//! | nopi feature | default | enables |
//! |---|---|---|
//! | `sled` | yes | `sled:<dir>` stores (the embedded, crash-safe one) |
//! | `postgres` | no | `postgres://` stores |

mod error;
mod frame;
mod keys;
mod lease;
mod options;
mod queue;
mod queues;
mod state;
mod typed;

pub use error::{Error, Result};
pub use lease::Lease;
pub use options::{
    Durability, MAX_CAPACITY, MAX_LEASE_TIMEOUT, MIN_LEASE_TIMEOUT, Overflow, QueueOptions,
    QueueOptionsBuilder,
};
pub use queue::{Position, Queue};
pub use queues::{DEFAULT_MAX_ITEM_SIZE, DEFAULT_TREE, MAX_QUEUE_NAME, Queues, QueuesBuilder};
pub use typed::TypedQueue;
