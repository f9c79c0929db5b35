//! The write path every change goes through: a [`Tx`] gathers one change's
//! writes, [`Core::commit`] applies them in one atomic batch on the version
//! key (with the change log, cache invalidation and audit entries), and
//! [`transact!`] retries a change that lost a race with another.

use std::sync::atomic::Ordering;

use nopi::Batch;

use super::Core;
use crate::audit::AuditEntry;
use crate::error::{Error, Result};
use crate::layout::{
    self, CHANGE_LOG_LEN, Change, GroupRecord, MemberRecord, VERSION_KEY, change_key,
    decode_version, encode, group_key,
};

/// How often a change retries after another manager changed the data first.
pub(crate) const MAX_TX_ATTEMPTS: u32 = 64;

/// The writes of one change, applied atomically by [`Core::commit`].
pub(crate) struct Tx {
    version: u64,
    version_bytes: Option<Vec<u8>>,
    batch: Batch,
    change: Change,
    audit: Vec<AuditEntry>,
}

impl Tx {
    pub(crate) fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.push_put(key, value);
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.batch.push_remove(key);
    }

    pub(crate) fn touch_user(&mut self, user: &str) {
        self.change.user(user);
    }

    pub(crate) fn touch_group(&mut self, group: &str) {
        self.change.group(group);
    }

    pub(crate) fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    pub(crate) fn put_group(&mut self, name: &str, group: &GroupRecord) -> Result<()> {
        let key = group_key(name);
        let bytes = encode(&key, group)?;
        self.put(key, bytes);
        Ok(())
    }

    pub(crate) fn put_member(&mut self, user: &str, member: &MemberRecord) -> Result<()> {
        let key = layout::user_key(user);
        let bytes = encode(&key, member)?;
        self.put(key, bytes);
        Ok(())
    }
}

/// Run `$body` as one change: begin a [`Tx`] (bound to `$tx`), evaluate the
/// body (which reads through the core and writes through the tx; `?` and
/// `return` leave without writing), commit, and start over if another change
/// committed in between. Evaluates to the body's value.
macro_rules! transact {
    ($core:expr, |$tx:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            #[allow(
                unused_mut,
                reason = "some bodies change the transaction, others only read it; not `expect`, since it fires only for the latter"
            )]
            let mut $tx = $core.begin().await?;
            let out = $body;
            if $core.commit($tx).await? {
                break out;
            }
            if attempt >= $crate::manager::MAX_TX_ATTEMPTS {
                return Err($crate::error::Error::Contended { attempts: attempt });
            }
            tokio::task::yield_now().await;
        }
    }};
}
pub(crate) use transact;

impl Core {
    pub(crate) async fn begin(&self) -> Result<Tx> {
        let version_bytes = self.tree.get(VERSION_KEY).await?;
        Ok(Tx {
            version: decode_version(version_bytes.as_deref())?,
            version_bytes,
            batch: Batch::new(),
            change: Change::default(),
            audit: Vec::new(),
        })
    }

    /// Apply `tx` if no other change committed since it began: `Ok(false)`
    /// means start over.
    pub(crate) async fn commit(&self, tx: Tx) -> Result<bool> {
        let Tx {
            version,
            version_bytes,
            mut batch,
            change,
            audit,
        } = tx;
        if batch.ops().is_empty() {
            return Ok(true);
        }
        let next = version
            .checked_add(1)
            .ok_or_else(|| Error::corrupt(VERSION_KEY, "the version counter is exhausted"))?;
        batch.push_expect(VERSION_KEY, version_bytes.as_deref());
        batch.push_put(VERSION_KEY, next.to_be_bytes());
        let key = change_key(next);
        batch.push_put(&key, encode(&key, &change)?);
        if next > CHANGE_LOG_LEN {
            batch.push_remove(change_key(next - CHANGE_LOG_LEN));
        }
        match self.tree.apply(batch).await {
            Ok(()) => {}
            Err(nopi::Error::Conflict { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        self.cache.invalidate(&change);
        // Mark our own change as applied when nothing else is pending, so the
        // next refresh does not invalidate the same entries again.
        let _ =
            self.sync
                .applied
                .compare_exchange(version, next, Ordering::AcqRel, Ordering::Acquire);
        self.audit.write(&audit).await.map_err(|e| match e {
            Error::Store(e) => Error::AuditWrite(e),
            other => other,
        })?;
        Ok(true)
    }
}
