//! Atomic multi-key batches with optional expectations.

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Set a key to a value.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key (a no-op when absent).
    Remove(Vec<u8>),
}

impl Op {
    /// The key this operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put(k, _) | Op::Remove(k) => k,
        }
    }
}

/// Puts and removes applied to one [`Tree`](crate::Tree) all together or not at all.
///
/// A batch may also carry expectations: the value a key must hold (or that it must
/// be absent) when the batch is applied. If any expectation fails, nothing is
/// written and [`Tree::apply`](crate::Tree::apply) returns
/// [`Error::Conflict`](crate::Error::Conflict) naming the key. Expectations are
/// checked against the tree as it was before the batch; writes apply in order, so
/// a later write to the same key wins.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), nopi::Error> {
/// let store = nopi::open("memory:").await?;
/// let accounts = store.tree("accounts").await?;
/// accounts.insert("alice", "10").await?;
/// // Move the balance only if nobody changed it meanwhile.
/// let moved = nopi::Batch::new()
///     .expect("alice", Some("10"))
///     .put("alice", "0")
///     .put("bob", "10");
/// accounts.apply(moved).await?;
/// assert_eq!(accounts.get("bob").await?.as_deref(), Some(&b"10"[..]));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a batch does nothing until passed to Tree::apply"]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) expects: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` to `value`.
    pub fn put(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.push_put(key, value);
        self
    }

    /// Remove `key`.
    pub fn remove(mut self, key: impl AsRef<[u8]>) -> Self {
        self.push_remove(key);
        self
    }

    /// Require `key` to hold `value` (`None`: to be absent) for the batch to apply.
    pub fn expect(mut self, key: impl AsRef<[u8]>, value: Option<impl AsRef<[u8]>>) -> Self {
        self.push_expect(key, value);
        self
    }

    /// Require `key` to be absent for the batch to apply.
    pub fn expect_absent(self, key: impl AsRef<[u8]>) -> Self {
        self.expect(key, None::<&[u8]>)
    }

    /// Set `key` to `value` (by reference, for building batches in loops).
    pub fn push_put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .push(Op::Put(key.as_ref().to_vec(), value.as_ref().to_vec()));
    }

    /// Remove `key` (by reference).
    pub fn push_remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push(Op::Remove(key.as_ref().to_vec()));
    }

    /// Add an expectation (by reference).
    pub fn push_expect(&mut self, key: impl AsRef<[u8]>, value: Option<impl AsRef<[u8]>>) {
        self.expects
            .push((key.as_ref().to_vec(), value.map(|v| v.as_ref().to_vec())));
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The expectations: each key and the value it must hold (`None`: absent).
    pub fn expectations(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        &self.expects
    }

    /// Number of writes plus expectations.
    pub fn len(&self) -> usize {
        self.ops.len() + self.expects.len()
    }

    /// True when the batch has neither writes nor expectations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.expects.is_empty()
    }
}
