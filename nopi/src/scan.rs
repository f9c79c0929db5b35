//! Ordered scans: a key range, a direction and a limit.

use std::ops::{Bound, RangeBounds};

/// Which keys of a [`Tree`](crate::Tree) to read, in which order, and how many.
///
/// Keys compare as byte strings (lexicographically, shorter first on a tie).
///
/// ```
/// use nopi::Scan;
/// let newest_ten = Scan::prefix(b"msg/").rev().limit(10);
/// let between = Scan::range(b"a".to_vec()..b"m".to_vec());
/// # let _ = (newest_ten, between);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a scan does nothing until passed to Tree::scan"]
pub struct Scan {
    pub(crate) lower: Bound<Vec<u8>>,
    pub(crate) upper: Bound<Vec<u8>>,
    pub(crate) reverse: bool,
    pub(crate) limit: Option<usize>,
}

impl Scan {
    /// Every key of the tree, in ascending order.
    pub fn all() -> Self {
        Scan {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
            reverse: false,
            limit: None,
        }
    }

    /// The keys within `range`, in ascending order.
    pub fn range<K: AsRef<[u8]>>(range: impl RangeBounds<K>) -> Self {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Scan {
            lower: own(range.start_bound()),
            upper: own(range.end_bound()),
            reverse: false,
            limit: None,
        }
    }

    /// The keys that start with `prefix`, in ascending order.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Self {
        let prefix = prefix.as_ref();
        let upper = match prefix_successor(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        Scan {
            lower: Bound::Included(prefix.to_vec()),
            upper,
            reverse: false,
            limit: None,
        }
    }

    /// Visit keys in descending order instead.
    pub fn rev(mut self) -> Self {
        self.reverse = !self.reverse;
        self
    }

    /// Return at most `n` entries (the first `n` in scan order).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The lower bound of the range.
    pub fn lower(&self) -> Bound<&[u8]> {
        as_slice(&self.lower)
    }

    /// The upper bound of the range.
    pub fn upper(&self) -> Bound<&[u8]> {
        as_slice(&self.upper)
    }

    /// True when keys are visited in descending order.
    pub fn is_reverse(&self) -> bool {
        self.reverse
    }

    /// The maximum number of entries to return, if any.
    pub fn max_entries(&self) -> Option<usize> {
        self.limit
    }

    /// True when no key can be in the range (for example `b"b".."a"`); backends
    /// answer such scans with nothing instead of handing the engine a reversed range.
    pub fn is_empty_range(&self) -> bool {
        match (&self.lower, &self.upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l), Bound::Excluded(u))
            | (Bound::Excluded(l), Bound::Included(u))
            | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
            _ => false,
        }
    }

    /// True when `key` lies within the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.lower {
            Bound::Included(l) => key >= l.as_slice(),
            Bound::Excluded(l) => key > l.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.upper {
            Bound::Included(u) => key <= u.as_slice(),
            Bound::Excluded(u) => key < u.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None`
/// when there is none (the prefix is empty or all `0xff`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_of_prefixes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn prefix_scan_bounds() {
        let s = Scan::prefix(b"ab");
        assert!(s.contains(b"ab"));
        assert!(s.contains(b"ab\xff\xff"));
        assert!(!s.contains(b"ac"));
        assert!(!s.contains(b"aa\xff"));
    }

    #[test]
    fn empty_ranges() {
        assert!(Scan::range(b"b".to_vec()..b"a".to_vec()).is_empty_range());
        assert!(Scan::range(b"a".to_vec()..b"a".to_vec()).is_empty_range());
        assert!(!Scan::range(b"a".to_vec()..=b"a".to_vec()).is_empty_range());
        assert!(!Scan::all().is_empty_range());
    }
}
