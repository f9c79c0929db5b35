//! The in-memory index of one queue: which positions hold ready items and
//! which are leased. Pure bookkeeping, no I/O.
//!
//! Ready items are kept as runs of consecutive positions, so the index of a
//! queue that is only pushed and popped is one run whatever its length;
//! leases, releases and out-of-order acks split and merge runs. Memory is
//! proportional to the number of items in flight and of holes, never to the
//! queue's length.

use std::collections::BTreeMap;
use std::ops::Range;

use tokio::time::Instant;

/// Sets of positions as disjoint, non-adjacent runs `start..end`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Runs {
    runs: BTreeMap<u64, u64>,
    count: u64,
}

impl Runs {
    fn first(&self) -> Option<u64> {
        self.runs.first_key_value().map(|(&start, _)| start)
    }

    /// The run holding `p`, if any.
    fn run_of(&self, p: u64) -> Option<(u64, u64)> {
        let (&start, &end) = self.runs.range(..=p).next_back()?;
        (p < end).then_some((start, end))
    }

    fn contains(&self, p: u64) -> bool {
        self.run_of(p).is_some()
    }

    fn insert(&mut self, p: u64) -> bool {
        if self.contains(p) {
            return false;
        }
        let Some(after) = p.checked_add(1) else {
            return false;
        };
        let mut start = p;
        let mut end = after;
        if let Some((&s, &e)) = self.runs.range(..p).next_back()
            && e == p
        {
            start = s;
        }
        if let Some(e) = self.runs.remove(&after) {
            end = e;
        }
        self.runs.insert(start, end);
        self.count += 1;
        true
    }

    fn remove(&mut self, p: u64) -> bool {
        let Some((start, end)) = self.run_of(p) else {
            return false;
        };
        self.runs.remove(&start);
        if start < p {
            self.runs.insert(start, p);
        }
        if p + 1 < end {
            self.runs.insert(p + 1, end);
        }
        self.count -= 1;
        true
    }

    /// Add `range`, which lies after every position held.
    fn append(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        self.count += range.end - range.start;
        if let Some(mut last) = self.runs.last_entry()
            && *last.get() == range.start
        {
            *last.get_mut() = range.end;
            return;
        }
        self.runs.insert(range.start, range.end);
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs.iter().flat_map(|(&s, &e)| s..e)
    }
}

/// One item in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leased {
    deadline: Instant,
    token: u64,
}

/// What tiny_q knows about one queue's items between calls.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// The position the next push gets.
    tail: u64,
    ready: Runs,
    leased: BTreeMap<u64, Leased>,
    next_token: u64,
    /// No lease expires before this instant (a lower bound, kept cheaply).
    earliest: Option<Instant>,
}

impl State {
    /// The index of a queue whose stored positions are `positions` (in key
    /// order, i.e. ascending). Nothing is in flight: every stored item is
    /// ready, oldest first.
    pub(crate) fn new(positions: impl IntoIterator<Item = u64>) -> State {
        let mut ready = Runs::default();
        let mut tail = 0;
        for p in positions {
            let Some(next) = p.checked_add(1) else {
                continue;
            };
            if p >= tail {
                ready.append(p..next);
                tail = next;
            } else {
                ready.insert(p);
            }
        }
        State {
            tail,
            ready,
            leased: BTreeMap::new(),
            next_token: 0,
            earliest: None,
        }
    }

    /// Rebuild from the positions actually stored, keeping the leases on
    /// items that are still there and never moving the tail back.
    pub(crate) fn resync(&mut self, positions: Vec<u64>) {
        let mut fresh = State::new(positions);
        for (&p, &l) in &self.leased {
            if fresh.ready.remove(p) {
                fresh.leased.insert(p, l);
            }
        }
        fresh.tail = fresh.tail.max(self.tail);
        fresh.next_token = self.next_token;
        fresh.earliest = fresh.next_expiry();
        *self = fresh;
    }

    /// Items stored, in flight included.
    pub(crate) fn len(&self) -> u64 {
        self.ready.count + self.leased.len() as u64
    }

    /// Items leased and not yet acked, released or expired.
    pub(crate) fn in_flight(&self) -> usize {
        self.leased.len()
    }

    /// Return every lease whose deadline is at or before `now()` to the
    /// ready items. `now` is only called while leases are in flight.
    pub(crate) fn expire_with(&mut self, now: impl FnOnce() -> Instant) {
        if self.earliest.is_some() {
            self.expire(now());
        }
    }

    /// Return every lease whose deadline is at or before `now` to the ready items.
    pub(crate) fn expire(&mut self, now: Instant) {
        match self.earliest {
            Some(earliest) if earliest <= now => {}
            _ => return,
        }
        let expired: Vec<u64> = self
            .leased
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(&p, _)| p)
            .collect();
        for p in expired {
            self.leased.remove(&p);
            self.ready.insert(p);
        }
        self.earliest = self.leased.values().map(|l| l.deadline).min();
    }

    /// When the next lease expires, if any is in flight.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.leased.values().map(|l| l.deadline).min()
    }

    /// The position the next pop or lease hands out.
    pub(crate) fn next_ready(&self) -> Option<u64> {
        self.ready.first()
    }

    /// The first `n` ready positions, oldest first, as runs of consecutive positions.
    pub(crate) fn first_ready(&self, n: usize) -> Vec<Range<u64>> {
        let mut left = n as u64;
        let mut out = Vec::new();
        for (&start, &end) in &self.ready.runs {
            if left == 0 {
                break;
            }
            let take = (end - start).min(left);
            out.push(start..start + take);
            left -= take;
        }
        out
    }

    /// The `n` oldest stored positions (ready or in flight), oldest first.
    pub(crate) fn oldest(&self, n: usize) -> Vec<u64> {
        let mut ready = self.ready.iter().peekable();
        let mut leased = self.leased.keys().copied().peekable();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let next = match (ready.peek(), leased.peek()) {
                (Some(&r), Some(&l)) if l < r => leased.next(),
                (Some(_), _) => ready.next(),
                (None, Some(_)) => leased.next(),
                (None, None) => None,
            };
            let Some(p) = next else { break };
            out.push(p);
        }
        out
    }

    /// Reserve `n` positions after every stored one for new items, now ready.
    /// `None` only if the 64-bit positions ran out.
    pub(crate) fn append(&mut self, n: u64) -> Option<Range<u64>> {
        let range = self.tail..self.tail.checked_add(n)?;
        self.ready.append(range.clone());
        self.tail = range.end;
        Some(range)
    }

    /// The positions the next `n` pushes would get.
    pub(crate) fn peek_append(&self, n: u64) -> Option<Range<u64>> {
        Some(self.tail..self.tail.checked_add(n)?)
    }

    /// Remove a ready item (a pop).
    pub(crate) fn take(&mut self, p: u64) -> bool {
        self.ready.remove(p)
    }

    /// Hand out the ready item at `p` until `deadline`; the lease's token.
    pub(crate) fn lease(&mut self, p: u64, deadline: Instant) -> Option<u64> {
        if !self.ready.remove(p) {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.leased.insert(p, Leased { deadline, token });
        self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
        Some(token)
    }

    /// Give the item at `p` back before its lease expires, if lease `token`
    /// still holds it.
    pub(crate) fn release(&mut self, p: u64, token: u64) -> bool {
        match self.leased.get(&p) {
            Some(l) if l.token == token => {
                self.leased.remove(&p);
                self.ready.insert(p)
            }
            _ => false,
        }
    }

    /// Forget the item at `p`, ready or in flight; false if there was none.
    pub(crate) fn remove(&mut self, p: u64) -> bool {
        self.leased.remove(&p).is_some() || self.ready.remove(p)
    }

    /// True when an item is stored at `p`.
    pub(crate) fn contains(&self, p: u64) -> bool {
        self.leased.contains_key(&p) || self.ready.contains(p)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runs(state: &State) -> Vec<(u64, u64)> {
        state.ready.runs.iter().map(|(&s, &e)| (s, e)).collect()
    }

    #[test]
    fn loading_groups_consecutive_positions_into_runs() {
        let s = State::new([3, 4, 5, 9, 11, 12]);
        assert_eq!(runs(&s), vec![(3, 6), (9, 10), (11, 13)]);
        assert_eq!(s.len(), 6);
        assert_eq!(s.next_ready(), Some(3));
        assert_eq!(s.tail, 13);
        let empty = State::new([]);
        assert_eq!((empty.len(), empty.next_ready(), empty.tail), (0, None, 0));
    }

    #[test]
    fn push_and_pop_keep_one_run() {
        let mut s = State::new([]);
        assert_eq!(s.append(3), Some(0..3));
        assert!(s.take(0));
        assert_eq!(s.append(2), Some(3..5));
        assert_eq!(runs(&s), vec![(1, 5)]);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn leases_split_runs_and_releases_merge_them_back() {
        let now = Instant::now();
        let mut s = State::new([]);
        s.append(4);
        let t0 = s.lease(0, now).unwrap();
        let t1 = s.lease(1, now).unwrap();
        assert_eq!(runs(&s), vec![(2, 4)]);
        assert_eq!((s.len(), s.in_flight()), (4, 2));
        assert!(!s.release(1, t0), "another lease's token");
        assert!(s.release(1, t1));
        assert!(!s.release(1, t1), "released twice");
        assert_eq!(runs(&s), vec![(1, 4)]);
        assert!(s.release(0, t0));
        assert_eq!(runs(&s), vec![(0, 4)]);
        assert_eq!(s.next_ready(), Some(0), "released items come back in order");
    }

    #[test]
    fn expired_leases_come_back_first() {
        let now = Instant::now();
        let mut s = State::new([]);
        s.append(3);
        s.lease(0, now + Duration::from_secs(1));
        s.lease(1, now + Duration::from_secs(5));
        assert_eq!(s.next_expiry(), Some(now + Duration::from_secs(1)));
        s.expire(now);
        assert_eq!(s.next_ready(), Some(2));
        s.expire(now + Duration::from_secs(1));
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.in_flight(), 1);
        s.expire(now + Duration::from_secs(9));
        assert_eq!(runs(&s), vec![(0, 3)]);
        assert_eq!(s.next_expiry(), None);
    }

    #[test]
    fn removing_anywhere_splits_the_run() {
        let mut s = State::new(0..10);
        assert!(s.remove(4));
        assert!(!s.remove(4));
        assert!(!s.remove(10));
        assert_eq!(runs(&s), vec![(0, 4), (5, 10)]);
        assert!(s.remove(0));
        assert!(s.remove(9));
        assert_eq!(runs(&s), vec![(1, 4), (5, 9)]);
        assert_eq!(s.len(), 7);
        assert!(!s.contains(4) && s.contains(5));
    }

    #[test]
    fn oldest_merges_leased_and_ready_positions() {
        let now = Instant::now();
        let mut s = State::new(0..6);
        s.lease(0, now);
        s.lease(1, now);
        s.take(2);
        s.lease(3, now);
        assert_eq!(s.oldest(3), vec![0, 1, 3]);
        assert_eq!(s.oldest(10), vec![0, 1, 3, 4, 5]);
        assert_eq!(s.first_ready(10), vec![4..6]);
        assert_eq!(s.first_ready(1), vec![4..5]);
    }

    #[test]
    fn first_ready_spans_runs() {
        let s = State::new([1, 2, 5, 6, 7, 9]);
        assert_eq!(s.first_ready(4), vec![1..3, 5..7]);
        assert_eq!(s.first_ready(0), Vec::<Range<u64>>::new());
    }

    #[test]
    fn resync_keeps_surviving_leases_and_the_tail() {
        let now = Instant::now();
        let mut s = State::new(0..5);
        let t = s.lease(1, now).unwrap();
        s.lease(2, now);
        s.take(4);
        s.resync(vec![0, 1, 3]);
        assert_eq!(runs(&s), vec![(0, 1), (3, 4)]);
        assert_eq!(s.in_flight(), 1);
        assert!(s.release(1, t));
        assert_eq!(s.append(1), Some(5..6), "positions are not reused");
    }

    #[test]
    fn positions_never_overflow() {
        let mut s = State::new([u64::MAX - 1]);
        assert_eq!(s.tail, u64::MAX);
        assert_eq!(s.append(1), None);
        assert_eq!(s.peek_append(0), Some(u64::MAX..u64::MAX));
    }
}
