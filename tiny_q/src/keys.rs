//! The key layout of the queue tree (drawn in the crate docs, "Storage layout").
//!
//! Every integer is big-endian so that byte order is numeric order: a prefix
//! scan over one queue's items visits them oldest first.

use std::ops::Bound;

/// The layout version this crate writes under [`LAYOUT`].
pub(crate) const LAYOUT_VERSION: u8 = 1;
/// `"v"`: the layout version, one byte.
pub(crate) const LAYOUT: &[u8] = b"v";
/// `"n"`: the next queue id, u64 big-endian.
pub(crate) const NEXT_ID: &[u8] = b"n";
/// `'c' name`: a queue's catalog entry (JSON metadata).
pub(crate) const CATALOG: u8 = b'c';
/// `'d' id`: a destroyed queue whose items are still being removed.
pub(crate) const TOMBSTONE: u8 = b'd';
/// `'i' id seq`: one item.
pub(crate) const ITEM: u8 = b'i';

/// Length of an item key: tag, queue id, sequence number.
pub(crate) const ITEM_KEY_LEN: usize = 1 + 8 + 8;

pub(crate) fn catalog(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(CATALOG);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn tombstone(id: u64) -> [u8; 9] {
    tagged(TOMBSTONE, id)
}

pub(crate) fn parse_tombstone(key: &[u8]) -> Option<u64> {
    match key {
        [TOMBSTONE, id @ ..] => Some(u64::from_be_bytes(id.try_into().ok()?)),
        _ => None,
    }
}

/// The prefix shared by every item of queue `id`.
pub(crate) fn item_prefix(id: u64) -> [u8; 9] {
    tagged(ITEM, id)
}

pub(crate) fn item(id: u64, seq: u64) -> [u8; ITEM_KEY_LEN] {
    let mut k = [0; ITEM_KEY_LEN];
    k[..9].copy_from_slice(&item_prefix(id));
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of an item key of queue `id`; `None` if the key is
/// not one.
pub(crate) fn parse_item(id: u64, key: &[u8]) -> Option<u64> {
    if key.len() != ITEM_KEY_LEN || key[..9] != item_prefix(id) {
        return None;
    }
    Some(u64::from_be_bytes(key[9..].try_into().ok()?))
}

/// Bounds covering the items of queue `id` with sequence numbers in
/// `from..to` (`to == None`: to the end of the queue).
pub(crate) fn item_range(
    id: u64,
    from: Bound<u64>,
    to: Option<u64>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = match from {
        Bound::Included(s) => Bound::Included(item(id, s).to_vec()),
        Bound::Excluded(s) => Bound::Excluded(item(id, s).to_vec()),
        Bound::Unbounded => Bound::Included(item_prefix(id).to_vec()),
    };
    let upper = match to {
        Some(s) => Bound::Excluded(item(id, s).to_vec()),
        // The prefix of the next id, or past every item of the last id.
        None => match id.checked_add(1) {
            Some(next) => Bound::Excluded(item_prefix(next).to_vec()),
            None => Bound::Excluded(vec![ITEM + 1]),
        },
    };
    (lower, upper)
}

fn tagged(tag: u8, id: u64) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_sort_by_queue_then_sequence() {
        let mut keys = vec![
            item(2, 0),
            item(1, 256),
            item(1, 1),
            item(1, u64::MAX),
            item(0, 9),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                item(0, 9),
                item(1, 1),
                item(1, 256),
                item(1, u64::MAX),
                item(2, 0)
            ]
        );
    }

    #[test]
    fn item_keys_round_trip_and_reject_foreign_keys() {
        assert_eq!(parse_item(5, &item(5, 42)), Some(42));
        assert_eq!(parse_item(5, &item(6, 42)), None);
        assert_eq!(parse_item(5, &item(5, 42)[..16]), None);
        assert_eq!(parse_item(5, b"c-not-an-item-key"), None);
        assert_eq!(parse_tombstone(&tombstone(9)), Some(9));
        assert_eq!(parse_tombstone(b"d123"), None);
    }

    #[test]
    fn item_range_covers_exactly_one_queue() {
        use std::ops::RangeBounds;
        let range = item_range(1, Bound::Unbounded, None);
        assert!(range.contains(&item(1, 0).to_vec()));
        assert!(range.contains(&item(1, u64::MAX).to_vec()));
        assert!(!range.contains(&item(0, u64::MAX).to_vec()));
        assert!(!range.contains(&item(2, 0).to_vec()));
        let last = item_range(u64::MAX, Bound::Unbounded, None);
        assert!(last.contains(&item(u64::MAX, u64::MAX).to_vec()));
        assert!(!last.contains(&b"v".to_vec()));
        let window = item_range(1, Bound::Included(3), Some(5));
        assert!(window.contains(&item(1, 3).to_vec()));
        assert!(window.contains(&item(1, 4).to_vec()));
        assert!(!window.contains(&item(1, 5).to_vec()));
    }
}
