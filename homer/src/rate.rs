//! Token buckets: per connection (call rates), per address (new
//! connections), and [`KeyedLimiter`] for applications (per user, per
//! address, per anything).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::limits::RateLimit;

/// How a bucket refills: `per_sec` tokens a second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Refill {
    per_sec: f64,
    burst: f64,
}

impl From<RateLimit> for Refill {
    fn from(l: RateLimit) -> Self {
        Refill {
            per_sec: f64::from(l.per_second),
            burst: f64::from(l.burst),
        }
    }
}

#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(limit: impl Into<Refill>) -> Self {
        Self {
            tokens: limit.into().burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self, r: Refill, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * r.per_sec).min(r.burst);
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, limit: impl Into<Refill>, now: Instant) -> bool {
        self.refill(limit.into(), now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero if one is).
    fn wait(&mut self, r: Refill, now: Instant) -> Duration {
        self.refill(r, now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / r.per_sec)
        }
    }

    /// When the bucket has been idle so long that it is full again.
    pub(crate) fn is_full(&self, limit: impl Into<Refill>, now: Instant) -> bool {
        let r = limit.into();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * r.per_sec >= r.burst
    }
}

/// A token bucket per key, for an application's own limits: messages per
/// user, registrations per address, failed logins per address.
///
/// Bounded: past `max_keys` keys (default 100,000), the keys whose buckets
/// are full again are forgotten (they carry no information), and if none
/// is, all are.
///
/// ```
/// use std::time::Duration;
/// use homer::KeyedLimiter;
///
/// // Ten registrations an hour per address, all ten at once if need be.
/// let registrations = KeyedLimiter::<String>::new(10, Duration::from_secs(3600));
/// for _ in 0..10 {
///     assert!(registrations.allow("203.0.113.7").is_ok());
/// }
/// let retry = registrations.allow("203.0.113.7").unwrap_err();
/// assert!(retry > Duration::from_secs(300), "one more in about 6 minutes");
/// assert!(registrations.allow("198.51.100.1").is_ok(), "other keys are not affected");
/// ```
pub struct KeyedLimiter<K> {
    refill: Refill,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K> fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("per_sec", &self.refill.per_sec)
            .field("burst", &self.refill.burst)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq> KeyedLimiter<K> {
    /// `count` events per `per` for each key, all of them at once after a
    /// quiet period (the burst is `count`). Zeros count as one.
    pub fn new(count: u32, per: Duration) -> Self {
        let count = f64::from(count.max(1));
        let per = per.max(Duration::from_millis(1)).as_secs_f64();
        Self::with(Refill {
            per_sec: count / per,
            burst: count,
        })
    }

    /// `per_second` events a second on average for each key, in bursts of
    /// up to `burst`. Zeros count as one.
    pub fn per_second(per_second: u32, burst: u32) -> Self {
        Self::with(
            RateLimit {
                per_second: per_second.max(1),
                burst: burst.max(1),
            }
            .into(),
        )
    }

    fn with(refill: Refill) -> Self {
        KeyedLimiter {
            refill,
            max_keys: 100_000,
            buckets: Mutex::default(),
        }
    }

    /// Keep at most `keys` keys (at least 1).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys.max(1);
        self
    }

    /// Take one event for `key`; `Err(wait)` with the time until the next
    /// would be allowed.
    pub fn allow<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.with_bucket(key, |b, r, now| match b.wait(r, now) {
            Duration::ZERO => {
                b.tokens -= 1.0;
                Ok(())
            }
            wait => Err(wait),
        })
    }

    /// Whether one more event would be allowed for `key`, without taking it
    /// (`Err(wait)` if not): for limits counted after the fact, such as
    /// failed logins ([`charge`](Self::charge) counts them).
    pub fn check<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.with_bucket(key, |b, r, now| match b.wait(r, now) {
            Duration::ZERO => Ok(()),
            wait => Err(wait),
        })
    }

    /// Count one event for `key` that already happened (a token if there
    /// is one left).
    pub fn charge<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.with_bucket(key, |b, r, now| {
            b.refill(r, now);
            b.tokens = (b.tokens - 1.0).max(0.0);
        });
    }

    fn with_bucket<Q, T>(
        &self,
        key: &Q,
        f: impl FnOnce(&mut TokenBucket, Refill, Instant) -> T,
    ) -> T
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        let r = self.refill;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full(r, now));
            if buckets.len() >= self.max_keys {
                buckets.clear();
            }
        }
        if let Some(b) = buckets.get_mut(key) {
            return f(b, r, now);
        }
        let b = buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::new(r));
        f(b, r, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let limit = RateLimit {
            per_second: 10,
            burst: 3,
        };
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit);
        assert!(b.try_take(limit, t0));
        assert!(b.try_take(limit, t0));
        assert!(b.try_take(limit, t0));
        assert!(!b.try_take(limit, t0));
        assert!(b.try_take(limit, t0 + Duration::from_millis(100)));
        assert!(!b.try_take(limit, t0 + Duration::from_millis(100)));
        assert!(b.is_full(limit, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn keyed_limits_count_per_key_and_stay_bounded() {
        let l = KeyedLimiter::<String>::per_second(1, 2).max_keys(3);
        assert!(l.allow("a").is_ok() && l.allow("a").is_ok());
        assert!(l.allow("a").unwrap_err() <= Duration::from_secs(1));
        l.charge("b");
        l.charge("b");
        assert!(l.check("b").is_err(), "charged events count");
        assert!(
            l.check("c").is_ok() && l.check("c").is_ok(),
            "check takes nothing"
        );
        for k in ["d", "e", "f", "g"] {
            let _ = l.allow(k);
        }
        let kept = l.buckets.lock().unwrap().len();
        assert!(kept <= 3, "{kept} keys kept");
    }
}
