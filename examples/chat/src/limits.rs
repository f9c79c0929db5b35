//! Abuse limits kept in memory: a per-user send rate and a per-account login
//! backoff.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// The most keys either table keeps; past it the stalest are forgotten.
const MAX_KEYS: usize = 100_000;

/// A token bucket per user: `rate` messages per second, bursts of `burst`.
#[derive(Debug)]
pub(crate) struct SendRate {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl SendRate {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        SendRate {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `user`; false when the user is over the limit.
    pub(crate) fn allow(&self, user: &str) -> bool {
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(user) {
            // Buckets that have refilled completely carry no information.
            let full = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets.entry(user.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed logins per account (by the name or number given, whether or not
/// such an account exists, so the reply says nothing about existence).
#[derive(Debug, Default)]
pub(crate) struct LoginBackoff {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Failures allowed before waiting is required.
const FREE_ATTEMPTS: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(300);

impl LoginBackoff {
    /// `Err(wait)` when the account must wait that long before trying again.
    pub(crate) fn check(&self, account: &str) -> Result<(), Duration> {
        let failures = lock(&self.failures);
        let Some(&(n, last)) = failures.get(account) else {
            return Ok(());
        };
        if n < FREE_ATTEMPTS {
            return Ok(());
        }
        let wait = Duration::from_secs(1 << (n - FREE_ATTEMPTS).min(9)).min(MAX_WAIT);
        match wait.checked_sub(last.elapsed()) {
            Some(left) if !left.is_zero() => Err(left),
            _ => Ok(()),
        }
    }

    pub(crate) fn failed(&self, account: &str) {
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_KEYS && !failures.contains_key(account) {
            failures.retain(|_, (_, at)| at.elapsed() < MAX_WAIT);
        }
        let entry = failures
            .entry(account.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    pub(crate) fn succeeded(&self, account: &str) {
        lock(&self.failures).remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses() {
        let r = SendRate::new(1, 3);
        assert!((0..3).all(|_| r.allow("a")));
        assert!(!r.allow("a"));
        assert!(r.allow("b"), "users have their own buckets");
    }

    #[test]
    fn backoff_after_free_attempts_and_reset_on_success() {
        let b = LoginBackoff::default();
        for _ in 0..FREE_ATTEMPTS {
            assert!(b.check("alice").is_ok());
            b.failed("alice");
        }
        let wait = b.check("alice").unwrap_err();
        assert!(wait <= Duration::from_secs(1) && !wait.is_zero());
        b.succeeded("alice");
        assert!(b.check("alice").is_ok());
    }
}
