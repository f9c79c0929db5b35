//! The audit log: every grant, revoke, group change, role change and denial,
//! with time, actor and subject, readable newest first.
//!
//! Layout of the audit tree (`<prefix>.audit`):
//!
//! ```text
//! <entry id: UUID v7, 16 bytes>  -> { "at_ms": u64, "actor": str, "subject": str, "action": {...} } (JSON)
//! ```
//!
//! A UUID v7 starts with its 48-bit big-endian millisecond timestamp, so keys
//! sort by time and a reverse scan reads newest first.
//!
//! Changes write their entries right after the change commits (a crash in
//! between can lose an entry, never invent one). Denials happen on the hot
//! path, so a check only queues its entry in memory: the manager's background
//! task writes the queue about 10 ms after the first denial in it, and
//! reading the log through this manager writes it first. Identical denials
//! (same user, permission, scope and reason) queued meanwhile are counted in
//! one entry ([`AuditAction::Denied`]'s `count`), so a client hammering a
//! forbidden call costs one entry per interval, not one per attempt. The queue
//! holds at most [`MAX_PENDING_DENIALS`] distinct denials; beyond that they
//! are counted and the count is logged as [`AuditAction::DenialsDropped`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nopi::{Batch, Scan, Tree};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::{Error, NotAuthorized, Result};
use crate::names::MAX_PAGE;

/// Most denials queued in memory before further ones are only counted.
pub const MAX_PENDING_DENIALS: usize = 10_000;

/// Most entries written in one batch.
const ENTRIES_PER_BATCH: usize = 1000;

/// What happened, in one audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A user was created in `group`.
    UserCreated {
        /// Their group (a shared name, or their personal group's uuid).
        group: String,
    },
    /// A user was deleted.
    UserDeleted,
    /// A user moved from one group to another.
    Assigned {
        /// The previous group.
        from: String,
        /// The new group.
        to: String,
    },
    /// A user was granted a permission (in their personal group).
    Granted {
        /// The permission.
        permission: String,
        /// The personal group now holding it.
        group: String,
    },
    /// A permission was revoked from a user (in their personal group).
    Revoked {
        /// The permission.
        permission: String,
        /// The personal group no longer holding it.
        group: String,
    },
    /// A shared group was created.
    GroupCreated {
        /// Its permissions (`*` for all).
        permissions: Vec<String>,
    },
    /// A shared group's permissions were replaced.
    GroupChanged {
        /// The new permissions (`*` for all).
        permissions: Vec<String>,
    },
    /// A shared group was deleted.
    GroupDeleted {
        /// What happened to its users: `move to <group>` or `personal groups`.
        rule: String,
        /// How many users were moved.
        moved: u64,
    },
    /// A user got a role on a scope.
    RoleSet {
        /// The scope.
        scope: String,
        /// The role.
        role: String,
    },
    /// A user's role on a scope was removed.
    RoleRemoved {
        /// The scope.
        scope: String,
        /// The role it was.
        role: String,
    },
    /// Every role on a scope was removed (the resource went away).
    ScopeRemoved {
        /// How many users lost a role.
        users: u64,
    },
    /// A check refused. The actor and the subject are the user.
    Denied {
        /// The permission asked for.
        permission: String,
        /// The scope, for scoped checks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// Why it was refused.
        reason: String,
        /// How many identical denials (same user, permission, scope and
        /// reason) this entry stands for: repeats within one write interval
        /// of the manager (about 10 ms) are counted, not stored one by one.
        /// The entry's time is the first one's.
        #[serde(default = "one")]
        count: u64,
    },
    /// The denial queue was full: this many denials were not logged.
    DenialsDropped {
        /// How many.
        count: u64,
    },
}

fn one() -> u64 {
    1
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEntry {
    /// The entry's id, a UUID v7: ordered by time, usable as a paging cursor.
    pub id: Uuid,
    /// When it happened (millisecond precision).
    pub at: SystemTime,
    /// Who did it: the actor given to [`AuthManager::by`](crate::AuthManager::by),
    /// or the refused user for a denial.
    pub actor: String,
    /// Whom or what it was done to: a user, a group or a scope.
    pub subject: String,
    /// What happened.
    pub action: AuditAction,
}

#[derive(Serialize)]
struct StoredRef<'a> {
    at_ms: u64,
    actor: &'a str,
    subject: &'a str,
    action: &'a AuditAction,
}

#[derive(Deserialize)]
struct Stored {
    at_ms: u64,
    actor: String,
    subject: String,
    action: AuditAction,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A UUID v7 for an entry made at `millis`: the millisecond timestamp, then
/// a process-wide counter (so ids made by one process sort in the order they
/// were made), then 24 random bits fixed per process (so two processes
/// logging in the same millisecond do not collide).
///
/// `Uuid::now_v7` would do, but it asks the OS for randomness on every call,
/// and denials are logged on the check path.
fn new_id(millis: u64) -> Uuid {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SALT: OnceLock<u128> = OnceLock::new();
    let salt = *SALT.get_or_init(|| {
        let random = Uuid::new_v4().as_u128();
        random & 0xff_ffff
    });
    let count = u128::from(COUNTER.fetch_add(1, Ordering::Relaxed) & ((1 << 50) - 1));
    // 74 free bits: 12 in `rand_a`, 62 in `rand_b` (version and variant bits
    // sit between them and are the same in every id).
    let n = (count << 24) | salt;
    let rand_a = (n >> 62) as u16;
    let rand_b = (n & ((1 << 62) - 1)) as u64;
    let mut bytes = [0u8; 10];
    bytes[..2].copy_from_slice(&(rand_a & 0x0fff).to_be_bytes());
    bytes[2..].copy_from_slice(&rand_b.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

impl AuditEntry {
    pub(crate) fn new(actor: &str, subject: &str, action: AuditAction) -> Self {
        let at = millis(SystemTime::now());
        AuditEntry {
            id: new_id(at),
            at: UNIX_EPOCH + Duration::from_millis(at),
            actor: actor.to_owned(),
            subject: subject.to_owned(),
            action,
        }
    }

    fn denied(id: Uuid, at: u64, refused: NotAuthorized, count: u64) -> Self {
        AuditEntry {
            id,
            at: UNIX_EPOCH + Duration::from_millis(at),
            actor: refused.user.clone(),
            subject: refused.user,
            action: AuditAction::Denied {
                permission: refused.permission,
                scope: refused.scope,
                reason: refused.reason.to_string(),
                count,
            },
        }
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let stored = StoredRef {
            at_ms: millis(self.at),
            actor: &self.actor,
            subject: &self.subject,
            action: &self.action,
        };
        serde_json::to_vec(&stored).map_err(|e| Error::corrupt(self.id.as_bytes(), e))
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Self> {
        let id = Uuid::from_slice(key).map_err(|e| Error::corrupt(key, e))?;
        let stored: Stored = serde_json::from_slice(value).map_err(|e| Error::corrupt(key, e))?;
        Ok(AuditEntry {
            id,
            at: UNIX_EPOCH + Duration::from_millis(stored.at_ms),
            actor: stored.actor,
            subject: stored.subject,
            action: stored.action,
        })
    }
}

/// A denial as queued on the check path: only what is cheap to take there.
#[derive(Debug)]
struct Denial {
    id: Uuid,
    at: u64,
    refused: NotAuthorized,
    count: u64,
}

/// Denials waiting to be written, identical ones coalesced.
#[derive(Debug, Default)]
struct Queue {
    denials: Vec<Denial>,
    /// Index into `denials` by the hash of (user, permission, scope).
    by_hash: HashMap<u64, usize>,
}

/// Denials waiting to be written.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    queue: Mutex<Queue>,
    hasher: RandomState,
    dropped: AtomicU64,
    pub(crate) notify: Notify,
}

impl Pending {
    /// Queue a denial. A repeat of a queued one only bumps its count; a new
    /// one is counted as dropped when the queue is full.
    pub(crate) fn push(&self, refused: &NotAuthorized) {
        let hash = self
            .hasher
            .hash_one((&refused.user, &refused.permission, &refused.scope));
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&i) = queue.by_hash.get(&hash)
            && let Some(same) = queue.denials.get_mut(i)
            && same.refused == *refused
        {
            same.count = same.count.saturating_add(1);
            return;
        }
        if queue.denials.len() >= MAX_PENDING_DENIALS {
            drop(queue);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let at = millis(SystemTime::now());
        let was_empty = queue.denials.is_empty();
        let index = queue.denials.len();
        queue.denials.push(Denial {
            id: new_id(at),
            at,
            refused: refused.clone(),
            count: 1,
        });
        queue.by_hash.insert(hash, index);
        drop(queue);
        if was_empty {
            self.notify.notify_one();
        }
    }

    fn take(&self) -> Vec<AuditEntry> {
        let queued =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        let mut out: Vec<AuditEntry> = queued
            .denials
            .into_iter()
            .map(|d| AuditEntry::denied(d.id, d.at, d.refused, d.count))
            .collect();
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            out.push(AuditEntry::new(
                "aucheck",
                "denials",
                AuditAction::DenialsDropped { count: dropped },
            ));
        }
        out
    }

    fn lost(&self, n: usize) {
        self.dropped
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// The audit log of one [`AuthManager`](crate::AuthManager)'s store: read it
/// newest first, page back, prune old entries. Get it with
/// [`AuthManager::audit`](crate::AuthManager::audit). Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tree: Tree,
    pending: std::sync::Arc<Pending>,
    batch_limit: usize,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("tree", &self.tree.name())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    pub(crate) fn new(tree: Tree, pending: std::sync::Arc<Pending>, batch_limit: usize) -> Self {
        AuditLog {
            tree,
            pending,
            batch_limit: batch_limit.clamp(1, ENTRIES_PER_BATCH),
        }
    }

    /// The newest `limit` entries (at most [`MAX_PAGE`]), newest first.
    /// Denials queued by this manager are written first.
    pub async fn newest(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.flush().await?;
        self.read(Scan::all(), limit).await
    }

    /// Up to `limit` entries older than the entry `id`, newest first: pass
    /// the last id of one page to get the next.
    pub async fn before(&self, id: Uuid, limit: usize) -> Result<Vec<AuditEntry>> {
        self.flush().await?;
        let end = id.as_bytes().to_vec();
        self.read(Scan::range(..end), limit).await
    }

    /// Delete every entry older than `time`; returns how many were deleted.
    pub async fn prune_before(&self, time: SystemTime) -> Result<usize> {
        // The smallest UUID v7 of that millisecond.
        let mut bound = [0u8; 16];
        bound[..6].copy_from_slice(&millis(time).to_be_bytes()[2..]);
        let mut removed = 0;
        loop {
            let page = self
                .tree
                .scan(Scan::range(..bound.to_vec()).limit(self.batch_limit))
                .await?;
            if page.is_empty() {
                return Ok(removed);
            }
            let mut batch = Batch::new();
            for (key, _) in &page {
                batch.push_remove(key);
            }
            self.tree.apply(batch).await?;
            removed += page.len();
        }
    }

    /// Write the denials this manager has queued now.
    pub async fn flush(&self) -> Result<()> {
        let entries = self.pending.take();
        if let Err(e) = self.write(&entries).await {
            self.pending.lost(entries.len());
            return Err(e);
        }
        Ok(())
    }

    pub(crate) async fn write(&self, entries: &[AuditEntry]) -> Result<()> {
        for chunk in entries.chunks(self.batch_limit) {
            let mut batch = Batch::new();
            for entry in chunk {
                batch.push_put(entry.id.as_bytes(), entry.encode()?);
            }
            self.tree.apply(batch).await?;
        }
        Ok(())
    }

    async fn read(&self, scan: Scan, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = limit.min(MAX_PAGE);
        let entries = self.tree.scan(scan.rev().limit(limit)).await?;
        entries
            .iter()
            .map(|(k, v)| AuditEntry::decode(k, v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let e = AuditEntry::new(
            "root",
            "bob",
            AuditAction::Denied {
                permission: "group.kick".into(),
                scope: Some("rust".into()),
                reason: "not granted".into(),
                count: 2,
            },
        );
        let bytes = e.encode().unwrap();
        let back = AuditEntry::decode(e.id.as_bytes(), &bytes).unwrap();
        assert_eq!(back, e);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["action"]["kind"], "denied");
        assert!(AuditEntry::decode(b"short", &bytes).is_err());
        assert!(AuditEntry::decode(e.id.as_bytes(), b"{}").is_err());
    }

    #[test]
    fn ids_sort_by_time_then_by_creation() {
        let ids: Vec<Uuid> = (0..1000).map(|_| new_id(1_000)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(new_id(999) < ids[0] && new_id(1_001) > ids[999]);
        let id = new_id(123_456);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos), (123, 456_000_000));
    }

    #[test]
    fn repeats_are_counted_in_one_entry() {
        let p = Pending::default();
        let not_granted = NotAuthorized::new("u", "p", None, crate::DenyReason::NotGranted);
        let unknown = NotAuthorized::new("u", "p", None, crate::DenyReason::UnknownPermission);
        let scoped = NotAuthorized::new("u", "p", Some("s"), crate::DenyReason::NotGranted);
        for _ in 0..3 {
            p.push(&not_granted);
            p.push(&scoped);
        }
        p.push(&unknown); // same hash, other reason: its own entry
        p.push(&not_granted); // no longer indexed: its own entry too
        let counts: Vec<u64> = p
            .take()
            .iter()
            .map(|e| match e.action {
                AuditAction::Denied { count, .. } => count,
                _ => 0,
            })
            .collect();
        assert_eq!(counts, [3, 3, 1, 1]);
        assert!(p.take().is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_counts_drops() {
        let p = Pending::default();
        for i in 0..MAX_PENDING_DENIALS + 5 {
            let refused =
                NotAuthorized::new(&format!("u{i}"), "p", None, crate::DenyReason::NotGranted);
            p.push(&refused);
        }
        let taken = p.take();
        assert_eq!(taken.len(), MAX_PENDING_DENIALS + 1);
        assert!(matches!(taken[0].action, AuditAction::Denied { .. }));
        assert_eq!(
            taken.last().map(|e| &e.action),
            Some(&AuditAction::DenialsDropped { count: 5 })
        );
        assert!(p.take().is_empty());
    }
}
