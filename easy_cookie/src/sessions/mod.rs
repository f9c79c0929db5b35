//! [`Sessions`]: server-side sessions in a nopi tree, reached through
//! signed tokens that work as cookies and as bearer tokens.

mod builder;
mod record;

use std::fmt;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Cookie;
use nopi::{Batch, Scan};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

pub use builder::{
    DEFAULT_ABSOLUTE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RECORD_LEN,
    DEFAULT_MAX_SESSIONS_PER_USER, SESSION_PURPOSE, SessionsBuilder,
};
pub use record::{MAX_USER_LEN, SessionId};
use record::{Meta, RECORD_PREFIX, Record, SECRET_LEN, Timeouts, index_key, user_prefix};

use crate::clock::{Clock, from_unix_millis, millis_of, unix_millis};
use crate::error::{CookieError, SessionError, UnknownReason};
use crate::factory::CookieFactory;
use crate::ttl::Ttl;

/// Attempts at an optimistic update before giving up with
/// [`SessionError::Contention`]. Every lost attempt means another writer
/// won, so the cap only bounds starvation; on PostgreSQL four tasks updating
/// one session in a loop were seen to need up to 35 attempts, so it is as
/// high as `nopi`'s own `Collection::update_with` (100).
const MAX_ATTEMPTS: u32 = 100;
/// Entries read per scan page.
const PAGE: usize = 500;
/// Rounds of `revoke_all` (each removes up to a page) before giving up.
const MAX_ROUNDS: u32 = 64;
/// Current record format version.
const RECORD_VERSION: u8 = 1;

/// Server-side sessions: start on login, `get` on every request, `rotate`
/// on privilege changes, `revoke` on logout, `revoke_all` to log a user out
/// everywhere.
///
/// A session is reached through a *token*: a signed string (unpadded
/// base64url, about 120 characters) holding a 256-bit secret from the
/// operating system's generator. The same string works as a browser cookie
/// and as a bearer token on TCP or WebSocket connections. The store keeps
/// only the SHA-256 of the secret (the [`SessionId`]), so a dump of the
/// store yields no usable token.
///
/// Idle and absolute timeouts are enforced on the server at every call;
/// the token's own signed expiry is the absolute timeout, so stale tokens
/// are refused without a store read. `get` writes the last-use time only
/// after [`refresh_after`](SessionsBuilder::refresh_after) has passed.
///
/// `D` is the server-side data of a session (any serde type); it never
/// leaves the server. Cheap to clone; share one between tasks.
///
/// # Store layout
///
/// Give the sessions a tree of their own. Record and index entries are
/// always written and removed in one atomic batch:
///
/// ```text
/// record  "s/" ++ id                                             -> JSON record
/// index   "u/" ++ len: u16 BE ++ user ++ created: u64 BE ++ id   -> empty
///
/// id      = SHA-256 of the 32-byte secret in the token
/// created = Unix milliseconds, so a user's sessions scan oldest first
/// record  = {"v":1,"user":..,"created_ms":..,"seen_ms":..,"data":..}
/// ```
pub struct Sessions<D = serde_json::Value> {
    inner: Arc<Inner>,
    data: PhantomData<fn(&D) -> D>,
}

struct Inner {
    tree: nopi::Tree,
    tokens: CookieFactory<String>,
    clock: Arc<dyn Clock>,
    timeouts: Timeouts,
    refresh_after: Duration,
    max_per_user: usize,
    max_record_len: usize,
}

impl<D> Clone for Sessions<D> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            data: PhantomData,
        }
    }
}

impl<D> fmt::Debug for Sessions<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Sessions")
            .field("tree", &inner.tree)
            .field("tokens", &inner.tokens)
            .field("idle", &inner.timeouts.idle)
            .field("absolute", &inner.timeouts.absolute)
            .field("refresh_after", &inner.refresh_after)
            .field("max_per_user", &inner.max_per_user)
            .field("max_record_len", &inner.max_record_len)
            .finish()
    }
}

/// A session just started or rotated.
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The token to hand the client (cookie value or bearer token). A
    /// credential: `Debug` prints it as `REDACTED`.
    pub token: String,
    /// The session's public id.
    pub id: SessionId,
    /// When the absolute timeout ends it.
    pub expires_at: SystemTime,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("token", &"REDACTED")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A live session.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<D> {
    /// The session's public id.
    pub id: SessionId,
    /// Whose session it is.
    pub user: String,
    /// The server-side data.
    pub data: D,
    /// When it started (rotation keeps this).
    pub created: SystemTime,
    /// When it was last used, as stored (may lag by up to `refresh_after`).
    pub last_seen: SystemTime,
    /// When it ends unless used again (the earlier of the idle and absolute
    /// timeouts).
    pub expires_at: SystemTime,
}

impl<D> Sessions<D>
where
    D: Serialize + DeserializeOwned,
{
    /// A builder using `keys` to sign tokens (see [`SessionsBuilder`]).
    pub fn builder(keys: crate::KeyRing) -> SessionsBuilder<D> {
        SessionsBuilder::new(keys)
    }

    /// Starts a session for `user` (on login). If the user already has the
    /// maximum number of sessions, the oldest is revoked in the same atomic
    /// batch.
    ///
    /// # Errors
    /// [`SessionError::User`] for an empty or over-long name,
    /// [`SessionError::TooLarge`] if the record exceeds the limit,
    /// [`SessionError::Random`] or [`SessionError::Store`].
    pub async fn start(&self, user: &str, data: D) -> Result<NewSession, SessionError> {
        check_user(user)?;
        let inner = &*self.inner;
        let now = self.now_ms();
        let record = Record {
            v: RECORD_VERSION,
            user: user.to_owned(),
            created_ms: now,
            seen_ms: now,
            data,
        };
        let bytes = self.encode(&record)?;
        let (secret, id) = new_secret()?;
        let token = self.token(&secret, now)?;
        let key = id.record_key();
        let mut batch = Batch::new()
            .expect_absent(&key)
            .put(&key, &bytes)
            .put(index_key(user, now, &id), []);
        let existing = inner
            .tree
            .scan(Scan::prefix(user_prefix(user)).limit(inner.max_per_user))
            .await?;
        let excess = (existing.len() + 1).saturating_sub(inner.max_per_user);
        for (index, _) in existing.iter().take(excess) {
            batch.push_remove(index);
            if let Some(old) = SessionId::from_index_key(index) {
                batch.push_remove(old.record_key());
            }
        }
        inner.tree.apply(batch).await?;
        Ok(NewSession {
            token,
            id,
            expires_at: inner.timeouts.absolute_expiry(now),
        })
    }

    /// The live session of `token` (on every request). Refreshes the
    /// last-use time when `refresh_after` has passed since the stored one.
    ///
    /// # Errors
    /// [`SessionError::Unknown`] for a forged, malformed, revoked or rotated
    /// token; [`SessionError::Expired`] past a timeout (the session is then
    /// removed); [`SessionError::Corrupt`] or [`SessionError::Store`].
    pub async fn get(&self, token: &str) -> Result<Session<D>, SessionError> {
        let inner = &*self.inner;
        let id = self.open_token(token, true)?;
        let key = id.record_key();
        let Some(bytes) = inner.tree.get(&key).await? else {
            return Err(no_such_session());
        };
        let mut record: Record<D> = decode(&bytes)?;
        let now = self.now_ms();
        self.ensure_live(
            &id,
            &bytes,
            &record.user,
            record.created_ms,
            record.seen_ms,
            now,
        )
        .await?;
        if now.saturating_sub(record.seen_ms) >= millis_of(inner.refresh_after) {
            record.seen_ms = now;
            let new = self.encode(&record)?;
            // A conflict means another request refreshed (or changed) the
            // session meanwhile; either way this read is still valid.
            let _ = inner
                .tree
                .compare_and_swap(&key, Some(&bytes), Some(&new))
                .await?;
        }
        Ok(self.session(id, record))
    }

    /// The live session named by a `Cookie` request header. When several
    /// cookies share the name, the first live one wins; when none does, an
    /// expiry is reported in preference to an unknown token.
    ///
    /// # Errors
    /// As [`Sessions::get`]; [`UnknownReason::Missing`] if the header holds
    /// no cookie of the session name.
    pub async fn get_from_header(&self, cookie_header: &str) -> Result<Session<D>, SessionError> {
        let mut error = SessionError::Unknown {
            reason: UnknownReason::Missing,
        };
        for value in self.inner.tokens.settings().values_in(cookie_header) {
            match self.get(value).await {
                Ok(session) => return Ok(session),
                Err(err @ (SessionError::Unknown { .. } | SessionError::Expired { .. })) => {
                    if !matches!(error, SessionError::Expired { .. }) {
                        error = err;
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Err(error)
    }

    /// Changes the server-side data of the session of `token`. `change` may
    /// run more than once if the session changes concurrently.
    ///
    /// # Errors
    /// As [`Sessions::get`], plus [`SessionError::TooLarge`] and
    /// [`SessionError::Contention`].
    pub async fn update<F>(&self, token: &str, mut change: F) -> Result<Session<D>, SessionError>
    where
        F: FnMut(&mut D),
    {
        let inner = &*self.inner;
        let id = self.open_token(token, true)?;
        let key = id.record_key();
        let mut current = inner.tree.get(&key).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(bytes) = current else {
                return Err(no_such_session());
            };
            let mut record: Record<D> = decode(&bytes)?;
            let now = self.now_ms();
            self.ensure_live(
                &id,
                &bytes,
                &record.user,
                record.created_ms,
                record.seen_ms,
                now,
            )
            .await?;
            change(&mut record.data);
            record.seen_ms = record.seen_ms.max(now);
            let new = self.encode(&record)?;
            match inner
                .tree
                .compare_and_swap(&key, Some(&bytes), Some(&new))
                .await?
            {
                Ok(()) => return Ok(self.session(id, record)),
                Err(conflict) => current = conflict.current,
            }
        }
        Err(SessionError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Replaces the session of `token` with a new id and token, keeping its
    /// user, data and start time (so the absolute timeout is unchanged). The
    /// old token stops working at once. Call it on login and on every
    /// privilege change.
    ///
    /// # Errors
    /// As [`Sessions::update`].
    pub async fn rotate(&self, token: &str) -> Result<NewSession, SessionError> {
        let inner = &*self.inner;
        let old_id = self.open_token(token, true)?;
        let old_key = old_id.record_key();
        let (secret, new_id) = new_secret()?;
        let new_key = new_id.record_key();
        for _ in 0..MAX_ATTEMPTS {
            let Some(bytes) = inner.tree.get(&old_key).await? else {
                return Err(no_such_session());
            };
            let mut record: Record<D> = decode(&bytes)?;
            let now = self.now_ms();
            self.ensure_live(
                &old_id,
                &bytes,
                &record.user,
                record.created_ms,
                record.seen_ms,
                now,
            )
            .await?;
            record.seen_ms = record.seen_ms.max(now);
            let new = self.encode(&record)?;
            let token = self.token(&secret, record.created_ms)?;
            let batch = Batch::new()
                .expect(&old_key, Some(&bytes))
                .expect_absent(&new_key)
                .remove(&old_key)
                .remove(index_key(&record.user, record.created_ms, &old_id))
                .put(&new_key, &new)
                .put(index_key(&record.user, record.created_ms, &new_id), []);
            match inner.tree.apply(batch).await {
                Ok(()) => {
                    return Ok(NewSession {
                        token,
                        id: new_id,
                        expires_at: inner.timeouts.absolute_expiry(record.created_ms),
                    });
                }
                Err(nopi::Error::Conflict { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(SessionError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Ends the session of `token` (logout). Returns whether a session was
    /// removed. Works with expired tokens too, removing what is left.
    ///
    /// # Errors
    /// [`SessionError::Unknown`] for a token this server never signed;
    /// [`SessionError::Store`], [`SessionError::Contention`].
    pub async fn revoke(&self, token: &str) -> Result<bool, SessionError> {
        let id = self.open_token(token, false)?;
        self.revoke_id(&id).await
    }

    /// Ends the session with this public id ("log out that device").
    /// Returns whether a session was removed.
    ///
    /// # Errors
    /// [`SessionError::Store`], [`SessionError::Contention`].
    pub async fn revoke_id(&self, id: &SessionId) -> Result<bool, SessionError> {
        let tree = &self.inner.tree;
        let key = id.record_key();
        for _ in 0..MAX_ATTEMPTS {
            let Some(bytes) = tree.get(&key).await? else {
                return Ok(false);
            };
            let mut batch = Batch::new().expect(&key, Some(&bytes)).remove(&key);
            // A corrupt record loses its index entry, which `revoke_all`
            // clears later; the session itself still ends.
            if let Ok(meta) = serde_json::from_slice::<Meta>(&bytes) {
                batch.push_remove(index_key(&meta.user, meta.created_ms, id));
            }
            match tree.apply(batch).await {
                Ok(()) => return Ok(true),
                Err(nopi::Error::Conflict { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Err(SessionError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Ends every session of `user` ("log out everywhere", password change).
    /// Returns how many were removed.
    ///
    /// # Errors
    /// [`SessionError::User`], [`SessionError::Store`], or
    /// [`SessionError::Contention`] if sessions keep being started for the
    /// user while this runs.
    pub async fn revoke_all(&self, user: &str) -> Result<usize, SessionError> {
        check_user(user)?;
        let tree = &self.inner.tree;
        let prefix = user_prefix(user);
        let mut removed = 0;
        // Loop until the index is empty: a session rotated between the scan
        // and the batch shows up under its new id in the next round.
        for _ in 0..MAX_ROUNDS {
            let page = tree.scan(Scan::prefix(&prefix).limit(PAGE)).await?;
            if page.is_empty() {
                return Ok(removed);
            }
            let mut batch = Batch::new();
            for (index, _) in &page {
                batch.push_remove(index);
                if let Some(id) = SessionId::from_index_key(index) {
                    batch.push_remove(id.record_key());
                }
            }
            tree.apply(batch).await?;
            removed += page.len();
        }
        Err(SessionError::Contention {
            attempts: MAX_ROUNDS,
        })
    }

    /// The live sessions of `user`, oldest first (at most the per-user cap).
    ///
    /// # Errors
    /// [`SessionError::User`], [`SessionError::Corrupt`],
    /// [`SessionError::Store`].
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<Session<D>>, SessionError> {
        check_user(user)?;
        let inner = &*self.inner;
        let page = inner
            .tree
            .scan(Scan::prefix(user_prefix(user)).limit(inner.max_per_user.saturating_mul(2)))
            .await?;
        let now = self.now_ms();
        let mut live = Vec::new();
        for (index, _) in page {
            let Some(id) = SessionId::from_index_key(&index) else {
                continue;
            };
            let Some(bytes) = inner.tree.get(id.record_key()).await? else {
                continue;
            };
            let record: Record<D> = decode(&bytes)?;
            if now < inner.timeouts.expiry(record.created_ms, record.seen_ms).0 {
                live.push(self.session(id, record));
            }
        }
        Ok(live)
    }

    /// Removes every session past a timeout. Expired sessions are already
    /// refused; this reclaims their space. Run it now and then (say hourly).
    /// Returns how many were removed.
    ///
    /// # Errors
    /// [`SessionError::Store`].
    pub async fn purge_expired(&self) -> Result<usize, SessionError> {
        let inner = &*self.inner;
        let end = Bound::Excluded(b"s0".to_vec()); // "s/" + 1
        let mut from = Bound::Included(RECORD_PREFIX.to_vec());
        let mut removed = 0;
        loop {
            let page = inner
                .tree
                .scan(Scan::range((from.clone(), end.clone())).limit(PAGE))
                .await?;
            let now = self.now_ms();
            let mut expired = Vec::new();
            for (key, bytes) in &page {
                let Ok(meta) = serde_json::from_slice::<Meta>(bytes) else {
                    continue;
                };
                let Some(id) = SessionId::from_record_key(key) else {
                    continue;
                };
                if now >= inner.timeouts.expiry(meta.created_ms, meta.seen_ms).0 {
                    expired.push(
                        Batch::new()
                            .expect(key, Some(bytes))
                            .remove(key)
                            .remove(index_key(&meta.user, meta.created_ms, &id)),
                    );
                }
            }
            let all = expired.iter().fold(Batch::new(), |mut all, one| {
                for (k, v) in one.expectations() {
                    all.push_expect(k, v.as_ref());
                }
                for op in one.ops() {
                    all.push_remove(op.key());
                }
                all
            });
            match inner.tree.apply(all).await {
                Ok(()) => removed += expired.len(),
                // One of them was used meanwhile: go one by one.
                Err(nopi::Error::Conflict { .. }) => {
                    for one in expired {
                        match inner.tree.apply(one).await {
                            Ok(()) => removed += 1,
                            Err(nopi::Error::Conflict { .. }) => {}
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
                Err(err) => return Err(err.into()),
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => from = Bound::Excluded(last.clone()),
                _ => return Ok(removed),
            }
        }
    }

    /// The `Set-Cookie` cookie carrying a new session's token, with
    /// `Max-Age` up to its absolute timeout.
    #[must_use]
    pub fn set_cookie(&self, session: &NewSession) -> Cookie<'static> {
        let max_age = session
            .expires_at
            .duration_since(self.inner.clock.now())
            .unwrap_or(Duration::ZERO);
        self.inner
            .tokens
            .settings()
            .render(session.token.clone(), max_age)
    }

    /// The `Set-Cookie` cookie that deletes the session cookie (logout).
    #[must_use]
    pub fn removal_cookie(&self) -> Cookie<'static> {
        self.inner.tokens.removal_cookie()
    }

    fn now_ms(&self) -> u64 {
        unix_millis(self.inner.clock.now())
    }

    /// The session id a token names.
    fn open_token(&self, token: &str, enforce_expiry: bool) -> Result<SessionId, SessionError> {
        let secret = self
            .inner
            .tokens
            .verify_with(token, enforce_expiry)
            .map_err(SessionError::from)?
            .info;
        let secret = Zeroizing::new(secret);
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(secret.as_bytes())
                .map_err(|_| CookieError::unknown(UnknownReason::Payload))?,
        );
        if bytes.len() != SECRET_LEN {
            return Err(CookieError::unknown(UnknownReason::Payload).into());
        }
        Ok(SessionId::of_secret(&bytes))
    }

    /// A token for `secret`, valid until the absolute timeout of a session
    /// created at `created_ms`.
    fn token(&self, secret: &str, created_ms: u64) -> Result<String, SessionError> {
        let inner = &*self.inner;
        let end = created_ms.saturating_add(millis_of(inner.timeouts.absolute));
        let ttl = Duration::from_millis(end.saturating_sub(self.now_ms()));
        Ok(inner
            .tokens
            .issue_with_ttl(&secret.to_owned(), Ttl::After(ttl))?)
    }

    fn encode(&self, record: &Record<D>) -> Result<Vec<u8>, SessionError> {
        let bytes = serde_json::to_vec(record).map_err(SessionError::Serialize)?;
        if bytes.len() > self.inner.max_record_len {
            return Err(SessionError::TooLarge {
                len: bytes.len(),
                max: self.inner.max_record_len,
            });
        }
        Ok(bytes)
    }

    /// Refuses (and removes) a session past a timeout.
    async fn ensure_live(
        &self,
        id: &SessionId,
        bytes: &[u8],
        user: &str,
        created_ms: u64,
        seen_ms: u64,
        now: u64,
    ) -> Result<(), SessionError> {
        let (at, timeout) = self.inner.timeouts.expiry(created_ms, seen_ms);
        if now < at {
            return Ok(());
        }
        let key = id.record_key();
        let batch = Batch::new()
            .expect(&key, Some(bytes))
            .remove(&key)
            .remove(index_key(user, created_ms, id));
        // Best effort: if this fails, `purge_expired` removes it later.
        let _ = self.inner.tree.apply(batch).await;
        Err(SessionError::Expired {
            at: from_unix_millis(at),
            timeout,
        })
    }

    fn session(&self, id: SessionId, record: Record<D>) -> Session<D> {
        let (expires, _) = self
            .inner
            .timeouts
            .expiry(record.created_ms, record.seen_ms);
        Session {
            id,
            user: record.user,
            data: record.data,
            created: from_unix_millis(record.created_ms),
            last_seen: from_unix_millis(record.seen_ms),
            expires_at: from_unix_millis(expires),
        }
    }
}

fn no_such_session() -> SessionError {
    SessionError::Unknown {
        reason: UnknownReason::NoSuchSession,
    }
}

fn check_user(user: &str) -> Result<(), SessionError> {
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return Err(SessionError::User {
            len: user.len(),
            max: MAX_USER_LEN,
        });
    }
    Ok(())
}

fn decode<D: DeserializeOwned>(bytes: &[u8]) -> Result<Record<D>, SessionError> {
    serde_json::from_slice(bytes).map_err(SessionError::Corrupt)
}

/// A fresh 256-bit secret (base64url, as carried in the token) and its id.
fn new_secret() -> Result<(Zeroizing<String>, SessionId), SessionError> {
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    getrandom::getrandom(&mut secret[..]).map_err(SessionError::Random)?;
    Ok((
        Zeroizing::new(URL_SAFE_NO_PAD.encode(&secret[..])),
        SessionId::of_secret(&secret[..]),
    ))
}
