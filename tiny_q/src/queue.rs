//! One queue: push, pop, peek, lease, ack.

use std::fmt;
use std::ops::{Bound, Range};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use nopi::{Batch, Scan};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Notify};
use tokio::time::Instant;

use crate::queues::Inner;
use crate::state::State;
use crate::{Durability, Error, Lease, Overflow, QueueOptions, Result, TypedQueue, frame, keys};

/// How many times an operation reloads the queue's state from the store when
/// an item it expected is gone before giving up. Only a writer outside this
/// `Queues` (or a cancelled call on a backend whose writes can be
/// interrupted) makes items vanish.
const RESYNCS: usize = 3;

/// Bytes one scan should return while loading a queue's state or purging
/// it: nopi scans return values too, so the entry count per scan adapts to
/// the size of the items seen so far.
pub(crate) const SCAN_BYTES: usize = 4 << 20;

/// Entries read by the first scan of a load or purge, and at most per scan.
pub(crate) const SCAN_ENTRIES: std::ops::RangeInclusive<usize> = 16..=4096;

/// The entry count for the next scan, after one that returned `entries`
/// entries holding `bytes` bytes.
pub(crate) fn next_scan_limit(entries: usize, bytes: usize) -> usize {
    let average = (bytes / entries.max(1)).max(1);
    (SCAN_BYTES / average).clamp(*SCAN_ENTRIES.start(), *SCAN_ENTRIES.end())
}

/// Where an item sits in its queue: positions grow with every push, so they
/// order items oldest first.
///
/// Positions are unique within a queue while the process runs; after a
/// restart, the positions of an emptied queue may be handed out again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(u64);

impl Position {
    /// The position numbered `n`.
    pub const fn new(n: u64) -> Self {
        Position(n)
    }

    /// The number of this position.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The state of one queue, shared by every handle to it.
pub(crate) struct Shared {
    pub(crate) inner: Arc<Inner>,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) options: QueueOptions,
    slot: Mutex<Slot>,
    /// Woken on every push, release and destroy.
    notify: Notify,
}

/// The queue's index, loaded from the store on first use.
pub(crate) struct Slot {
    destroyed: bool,
    state: Option<State>,
}

impl Slot {
    pub(crate) fn destroy(&mut self) {
        self.destroyed = true;
        self.state = None;
    }
}

impl Shared {
    pub(crate) fn new(inner: Arc<Inner>, name: String, id: u64, options: QueueOptions) -> Self {
        Shared {
            inner,
            name,
            id,
            options,
            slot: Mutex::new(Slot {
                destroyed: false,
                state: None,
            }),
            notify: Notify::new(),
        }
    }

    pub(crate) async fn lock_slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().await
    }

    pub(crate) fn notify_all(&self) {
        self.notify.notify_waiters();
    }
}

/// The result of one try at taking an item.
pub(crate) enum Attempt<T> {
    Got(T),
    /// Nothing ready; a lease in flight expires at this instant, if any.
    Empty(Option<Instant>),
}

/// A handle to one named queue. Cheap to clone, `Send` and `Sync`; every
/// handle to the same queue shares its state.
///
/// Items are byte strings (see [`Queue::typed`] for serde values), handed
/// out oldest first. Two ways to consume:
///
/// - [`pop`](Queue::pop) removes the item and returns it;
/// - [`lease`](Queue::lease) hands it out and keeps it until
///   [`Lease::ack`]; if the lease times out, is
///   [released](Lease::release), or the process restarts first, the item is
///   handed out again, in its original place.
///
/// A popped or acked item becomes durable at the next flush (see
/// [`Durability`]); until then a crash can bring it back, so consumption is
/// at least once.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.shared.name)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Queue {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Queue { shared }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The options the queue was created with.
    pub fn options(&self) -> &QueueOptions {
        &self.shared.options
    }

    /// This queue with items serialized as JSON values of type `T`.
    pub fn typed<T: Serialize + DeserializeOwned>(&self) -> TypedQueue<T> {
        TypedQueue::new(self.clone())
    }

    /// Append `item`; its position.
    ///
    /// With [`Durability::Durable`] (the default) this returns once the item
    /// is durable. When the queue is full, [`Overflow::Reject`] refuses with
    /// [`Error::Full`] and [`Overflow::DropOldest`] removes the oldest item
    /// in the same atomic write.
    pub async fn push(&self, item: impl AsRef<[u8]>) -> Result<Position> {
        let item = item.as_ref();
        self.check_size(item.len())?;
        let range = self.push_frames(vec![frame::encode(item)]).await?;
        Ok(Position(range.start))
    }

    /// Append every item of `items` in one atomic write: all or none; their
    /// positions. At most [`max_batch_items`](crate::QueuesBuilder::max_batch_items).
    pub async fn push_batch<I>(&self, items: I) -> Result<Vec<Position>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let frames = items
            .into_iter()
            .map(|item| {
                let item = item.as_ref();
                self.check_size(item.len())?;
                Ok(frame::encode(item))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.push_frames(frames).await?.map(Position).collect())
    }

    /// Remove and return the oldest ready item, if any.
    ///
    /// A corrupt item is not removed: the call fails with [`Error::Corrupt`]
    /// until it is skipped with [`discard`](Queue::discard).
    ///
    /// On sled and memory stores the removal cannot be interrupted. On a
    /// store whose writes are network round trips (PostgreSQL), dropping a
    /// `pop` future mid-flight (say, under `tokio::time::timeout` or
    /// `select!`) can remove the item without returning it; use
    /// [`pop_wait`](Queue::pop_wait), whose own timeout never interrupts a
    /// removal, or [`lease`](Queue::lease) and ack.
    pub async fn pop(&self) -> Result<Option<Vec<u8>>> {
        self.pop_now(false, |_, bytes| Ok(bytes.to_vec()))
            .await
            .map(Attempt::into_option)
    }

    /// Like [`pop`](Queue::pop), but wait up to `timeout` for an item to
    /// arrive (woken at once by a push; no polling). `None` on timeout.
    pub async fn pop_wait(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        self.wait(timeout, || {
            self.pop_now(false, |_, bytes| Ok(bytes.to_vec()))
        })
        .await
    }

    /// The next `n` items [`pop`](Queue::pop) would return, oldest first,
    /// without removing them. Items in flight are not included.
    pub async fn peek(&self, n: usize) -> Result<Vec<Vec<u8>>> {
        self.peek_with(n, |_, bytes| Ok(bytes.to_vec())).await
    }

    /// Hand out the oldest ready item until it is acked, released, or its
    /// lease times out (see [`QueueOptions::lease_timeout`]).
    pub async fn lease(&self) -> Result<Option<Lease>> {
        self.lease_now(|_, bytes| Ok(bytes.to_vec()))
            .await
            .map(Attempt::into_option)
    }

    /// Like [`lease`](Queue::lease), but wait up to `timeout` for an item
    /// (pushed, released, or whose lease expired). `None` on timeout.
    pub async fn lease_wait(&self, timeout: Duration) -> Result<Option<Lease>> {
        self.wait(timeout, || self.lease_now(|_, bytes| Ok(bytes.to_vec())))
            .await
    }

    /// Remove the item at `position` if it is still stored (leased or not);
    /// `false` if it is already gone, e.g. acked before. The same as
    /// [`Lease::ack`] for code that kept only the position.
    pub async fn ack(&self, position: Position) -> Result<bool> {
        self.remove_at(position).await
    }

    /// Skip the item at `position`, whatever it holds: the way past an item
    /// reported [`Error::Corrupt`] or [`Error::Decode`]. `false` if there was
    /// no item there.
    pub async fn discard(&self, position: Position) -> Result<bool> {
        self.remove_at(position).await
    }

    /// Items stored, in flight included: what the capacity bounds.
    pub async fn len(&self) -> Result<u64> {
        Ok(self.state().await?.len())
    }

    /// True when no item is stored, in flight or not.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Items leased and neither acked, released nor expired.
    pub async fn in_flight(&self) -> Result<usize> {
        let mut state = self.state().await?;
        state.expire_with(Instant::now);
        Ok(state.in_flight())
    }

    // ---- internals shared with `TypedQueue` and `Lease` ----

    pub(crate) fn check_size(&self, size: usize) -> Result<()> {
        let limit = self.shared.inner.max_item_size;
        if size > limit {
            return Err(Error::ItemTooLarge {
                queue: self.shared.name.clone(),
                size,
                limit,
            });
        }
        Ok(())
    }

    pub(crate) fn destroyed(&self) -> Error {
        Error::Destroyed {
            queue: self.shared.name.clone(),
        }
    }

    fn storage(&self) -> impl FnOnce(nopi::Error) -> Error + '_ {
        Error::storage(&self.shared.name)
    }

    /// The queue's state, loaded if needed; [`Error::Destroyed`] after a destroy.
    async fn state(&self) -> Result<MappedMutexGuard<'_, State>> {
        let mut slot = self.shared.slot.lock().await;
        if slot.destroyed {
            return Err(self.destroyed());
        }
        if slot.state.is_none() {
            slot.state = Some(State::new(self.load().await?));
        }
        MutexGuard::try_map(slot, |slot| slot.state.as_mut()).map_err(|_| self.destroyed())
    }

    /// The positions of every stored item, ascending.
    async fn load(&self) -> Result<Vec<u64>> {
        let (tree, id) = (&self.shared.inner.tree, self.shared.id);
        let mut positions = Vec::new();
        let mut lower = Bound::Unbounded;
        let mut limit = *SCAN_ENTRIES.start();
        loop {
            let range = keys::item_range(id, lower, None);
            let chunk = tree
                .scan(Scan::range(range).limit(limit))
                .await
                .map_err(self.storage())?;
            let bytes = chunk.iter().map(|(k, v)| k.len() + v.len()).sum();
            for (key, _) in &chunk {
                match keys::parse_item(id, key) {
                    Some(p) if p < u64::MAX => positions.push(p),
                    _ => {
                        return Err(Error::CorruptQueue {
                            queue: self.shared.name.clone(),
                            reason: format!("key \"{}\" is not an item key", key.escape_ascii()),
                        });
                    }
                }
            }
            match positions.last() {
                Some(&last) if chunk.len() == limit => lower = Bound::Included(last + 1),
                _ => return Ok(positions),
            }
            limit = next_scan_limit(chunk.len(), bytes);
        }
    }

    /// Rebuild `state` from the store after an expected item was missing.
    async fn resync(&self, state: &mut State) -> Result<()> {
        let positions = self.load().await?;
        state.resync(positions);
        Ok(())
    }

    fn vanished(&self) -> Error {
        Error::CorruptQueue {
            queue: self.shared.name.clone(),
            reason:
                "items keep vanishing from the store: is something else writing the queue tree?"
                    .into(),
        }
    }

    fn corrupt(&self, position: u64) -> impl FnOnce(String) -> Error + '_ {
        move |reason| Error::Corrupt {
            queue: self.shared.name.clone(),
            position: Position(position),
            reason,
        }
    }

    async fn push_frames(&self, frames: Vec<Vec<u8>>) -> Result<Range<u64>> {
        let shared = &self.shared;
        let (inner, options) = (&shared.inner, &shared.options);
        let n = frames.len();
        if n > inner.max_batch_items {
            return Err(Error::BatchTooLarge {
                queue: shared.name.clone(),
                items: n,
                limit: inner.max_batch_items,
            });
        }
        let range = {
            let mut state = self.state().await?;
            if n == 0 {
                return Ok(0..0);
            }
            let len = state.len();
            let room = options.capacity().saturating_sub(len);
            let full = || Error::Full {
                queue: shared.name.clone(),
                len,
                capacity: options.capacity(),
                adding: n,
            };
            let mut drop_n = 0;
            if n as u64 > room {
                if options.overflow() == Overflow::Reject || n as u64 > options.capacity() {
                    return Err(full());
                }
                drop_n = n - room as usize;
            }
            let dropped = state.oldest(drop_n);
            let range = state
                .peek_append(n as u64)
                .ok_or_else(|| Error::CorruptQueue {
                    queue: shared.name.clone(),
                    reason: "positions are exhausted".into(),
                })?;
            if n == 1 && dropped.is_empty() {
                let key = keys::item(shared.id, range.start);
                inner.tree.insert(key, &frames[0]).await
            } else {
                let mut batch = Batch::new();
                for &p in &dropped {
                    batch.push_remove(keys::item(shared.id, p));
                }
                for (p, f) in range.clone().zip(&frames) {
                    batch.push_put(keys::item(shared.id, p), f);
                }
                inner.tree.apply(batch).await
            }
            .map_err(self.storage())?;
            for p in dropped {
                state.remove(p);
            }
            state.append(n as u64);
            range
        };
        shared.notify_all();
        if options.durability() == Durability::Durable {
            inner.sync().await?;
        }
        Ok(range)
    }

    /// Pop the next ready item, decoded by `decode`.
    ///
    /// `check_first`: read and decode the item before removing it (typed
    /// items, whose decoding may fail on an intact item). Otherwise remove it
    /// in one write and check its frame afterwards (raw items, the hot path);
    /// a damaged frame is written back at once.
    pub(crate) async fn pop_now<T>(
        &self,
        check_first: bool,
        decode: impl Fn(Position, &[u8]) -> Result<T>,
    ) -> Result<Attempt<T>> {
        let tree = &self.shared.inner.tree;
        let mut state = self.state().await?;
        for _ in 0..RESYNCS {
            state.expire_with(Instant::now);
            let Some(p) = state.next_ready() else {
                return Ok(Attempt::Empty(state.next_expiry()));
            };
            let key = keys::item(self.shared.id, p);
            if check_first {
                let Some(stored) = tree.get(key).await.map_err(self.storage())? else {
                    self.resync(&mut state).await?;
                    continue;
                };
                let item = decode(
                    Position(p),
                    frame::decode(&stored).map_err(self.corrupt(p))?,
                )?;
                tree.remove(key).await.map_err(self.storage())?;
                state.take(p);
                return Ok(Attempt::Got(item));
            }
            let Some(stored) = tree.remove(key).await.map_err(self.storage())? else {
                self.resync(&mut state).await?;
                continue;
            };
            return match frame::decode(&stored)
                .map_err(self.corrupt(p))
                .and_then(|bytes| decode(Position(p), bytes))
            {
                Ok(item) => {
                    state.take(p);
                    Ok(Attempt::Got(item))
                }
                Err(e) => {
                    // Put it back: only the caller may decide to skip it.
                    tree.insert(key, &stored).await.map_err(self.storage())?;
                    Err(e)
                }
            };
        }
        Err(self.vanished())
    }

    pub(crate) async fn lease_now<T>(
        &self,
        decode: impl Fn(Position, &[u8]) -> Result<T>,
    ) -> Result<Attempt<Lease<T>>> {
        let tree = &self.shared.inner.tree;
        let mut state = self.state().await?;
        for _ in 0..RESYNCS {
            let now = Instant::now();
            state.expire(now);
            let Some(p) = state.next_ready() else {
                return Ok(Attempt::Empty(state.next_expiry()));
            };
            let key = keys::item(self.shared.id, p);
            let Some(stored) = tree.get(key).await.map_err(self.storage())? else {
                self.resync(&mut state).await?;
                continue;
            };
            let bytes = frame::decode(&stored).map_err(self.corrupt(p))?;
            let item = decode(Position(p), bytes)?;
            let deadline = now
                .checked_add(self.shared.options.lease_timeout())
                .unwrap_or(now);
            let token = state.lease(p, deadline).ok_or_else(|| self.vanished())?;
            return Ok(Attempt::Got(Lease::new(
                self.clone(),
                Position(p),
                token,
                item,
            )));
        }
        Err(self.vanished())
    }

    pub(crate) async fn peek_with<T>(
        &self,
        n: usize,
        decode: impl Fn(Position, &[u8]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let (tree, id) = (&self.shared.inner.tree, self.shared.id);
        let mut state = self.state().await?;
        'retry: for _ in 0..RESYNCS {
            state.expire_with(Instant::now);
            let mut out = Vec::new();
            for run in state.first_ready(n) {
                let range = keys::item_range(id, Bound::Included(run.start), Some(run.end));
                let entries = tree
                    .scan(Scan::range(range))
                    .await
                    .map_err(self.storage())?;
                if entries.len() as u64 != run.end - run.start {
                    self.resync(&mut state).await?;
                    continue 'retry;
                }
                for (p, (key, stored)) in run.zip(&entries) {
                    if keys::parse_item(id, key) != Some(p) {
                        self.resync(&mut state).await?;
                        continue 'retry;
                    }
                    let bytes = frame::decode(stored).map_err(self.corrupt(p))?;
                    out.push(decode(Position(p), bytes)?);
                }
            }
            return Ok(out);
        }
        Err(self.vanished())
    }

    async fn remove_at(&self, position: Position) -> Result<bool> {
        let mut state = self.state().await?;
        if !state.contains(position.0) {
            return Ok(false);
        }
        let key = keys::item(self.shared.id, position.0);
        let existed = self
            .shared
            .inner
            .tree
            .remove(key)
            .await
            .map_err(self.storage())?
            .is_some();
        state.remove(position.0);
        Ok(existed)
    }

    pub(crate) async fn release(&self, position: Position, token: u64) -> Result<bool> {
        let released = self.state().await?.release(position.0, token);
        if released {
            self.shared.notify_all();
        }
        Ok(released)
    }

    /// Try `attempt` until it yields an item or `timeout` passes, sleeping
    /// until a push (or release, or destroy) notifies the queue or the next
    /// lease in flight expires.
    pub(crate) async fn wait<T, F, Fut>(
        &self,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Attempt<T>>>,
    {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Registered before looking, so a push after the look still wakes us.
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            let expiry = match attempt().await? {
                Attempt::Got(item) => return Ok(Some(item)),
                Attempt::Empty(expiry) => expiry,
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let wake = match (deadline, expiry) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            match wake {
                Some(at) => drop(tokio::time::timeout_at(at, notified).await),
                None => notified.await,
            }
        }
    }
}

impl<T> Attempt<T> {
    pub(crate) fn into_option(self) -> Option<T> {
        match self {
            Attempt::Got(item) => Some(item),
            Attempt::Empty(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Overflow, Queues};

    async fn setup() -> (nopi::Tree, Queue) {
        let store = nopi::open("memory:").await.unwrap();
        let queues = Queues::new(&store).await.unwrap();
        let options = QueueOptions::builder()
            .capacity(10_000)
            .overflow(Overflow::Reject)
            .durability(Durability::Buffered)
            .build()
            .unwrap();
        let q = queues.create("q", options).await.unwrap();
        q.push_batch(["a", "b", "c"]).await.unwrap();
        (store.tree(crate::DEFAULT_TREE).await.unwrap(), q)
    }

    fn item_key(q: &Queue, position: u64) -> [u8; keys::ITEM_KEY_LEN] {
        keys::item(q.shared.id, position)
    }

    #[tokio::test]
    async fn a_corrupt_item_is_reported_with_its_position_and_kept_until_discarded() {
        let (tree, q) = setup().await;
        let mut damaged = tree.get(item_key(&q, 1)).await.unwrap().unwrap();
        *damaged.last_mut().unwrap() ^= 0xFF;
        tree.insert(item_key(&q, 1), &damaged).await.unwrap();

        assert_eq!(q.pop().await.unwrap().unwrap(), b"a");
        for attempt in 0..2 {
            let err = q.pop().await.unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(r#"corrupt item at position 1 of queue "q": checksum mismatch"#),
                "attempt {attempt}: {err}"
            );
        }
        assert!(matches!(q.lease().await, Err(Error::Corrupt { .. })));
        assert!(matches!(q.peek(5).await, Err(Error::Corrupt { .. })));
        assert_eq!(
            q.len().await.unwrap(),
            2,
            "the corrupt item was not dropped"
        );
        assert_eq!(
            tree.get(item_key(&q, 1)).await.unwrap(),
            Some(damaged),
            "nor changed"
        );

        let err = q.pop().await.unwrap_err();
        assert!(q.discard(err.position().unwrap()).await.unwrap());
        assert_eq!(q.pop().await.unwrap().unwrap(), b"c");
    }

    #[test]
    fn scans_adapt_to_item_size() {
        assert_eq!(
            next_scan_limit(16, 16 * 100),
            4096,
            "small items: big scans"
        );
        assert_eq!(
            next_scan_limit(16, 16 << 20),
            16,
            "1 MiB items: 16 per scan"
        );
        assert_eq!(next_scan_limit(16, 16 * (64 << 10)), 64);
        assert_eq!(next_scan_limit(0, 0), 4096);
    }

    #[tokio::test]
    async fn large_queues_load_across_scans_with_holes() {
        let (tree, q) = setup().await;
        q.push_batch((0..5000u32).map(|i| i.to_be_bytes()))
            .await
            .unwrap();
        for p in [3u64, 100, 4000] {
            tree.remove(item_key(&q, p)).await.unwrap();
        }
        let fresh = Queue::new(Arc::new(Shared::new(
            q.shared.inner.clone(),
            "q".into(),
            q.shared.id,
            q.shared.options,
        )));
        assert_eq!(fresh.len().await.unwrap(), 5003 - 3);
        let first = fresh.peek(4).await.unwrap();
        assert_eq!(
            first,
            [
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
                1u32.to_be_bytes().to_vec()
            ]
        );
        assert_eq!(fresh.push("last").await.unwrap(), Position::new(5003));
    }

    #[tokio::test]
    async fn a_truncated_item_is_corrupt_too() {
        let (tree, q) = setup().await;
        tree.insert(item_key(&q, 0), [1u8, 0]).await.unwrap();
        let err = q.lease().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"corrupt item at position 0 of queue "q": entry of 2 bytes is shorter than the 5-byte header"#
        );
    }

    #[tokio::test]
    async fn items_removed_behind_its_back_are_noticed_and_skipped() {
        let (tree, q) = setup().await;
        assert_eq!(q.len().await.unwrap(), 3);
        tree.remove(item_key(&q, 0)).await.unwrap();
        assert_eq!(
            q.pop().await.unwrap().unwrap(),
            b"b",
            "resynced from the store"
        );
        tree.remove(item_key(&q, 2)).await.unwrap();
        assert!(q.peek(5).await.unwrap().is_empty());
        assert_eq!(q.len().await.unwrap(), 0);
        assert_eq!(
            q.push("d").await.unwrap(),
            Position::new(3),
            "positions keep growing"
        );
    }

    #[tokio::test]
    async fn a_foreign_key_among_the_items_is_reported() {
        let (tree, q) = setup().await;
        let mut odd = keys::item_prefix(q.shared.id).to_vec();
        odd.push(7);
        tree.insert(&odd, "x").await.unwrap();
        // `q` has its state loaded already; a fresh state loads from the store.
        let shared = Shared::new(
            q.shared.inner.clone(),
            "q".into(),
            q.shared.id,
            q.shared.options,
        );
        let fresh = Queue::new(Arc::new(shared));
        let err = fresh.len().await.unwrap_err();
        assert!(matches!(err, Error::CorruptQueue { .. }), "{err}");
        assert!(err.to_string().contains("is not an item key"), "{err}");
    }
}
