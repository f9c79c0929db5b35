//! Abuse limits kept in memory: per-user send rates, per-address
//! registrations and failed logins, registrations hashing at once, and a
//! per-account login backoff.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use homer::KeyedLimiter;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::sync::lock;

/// The most accounts the backoff table keeps; past it the stalest are forgotten.
const MAX_KEYS: usize = 100_000;

/// The per-address and per-user limits of one node, on homer's
/// [`KeyedLimiter`]: messages per user, registrations and failed logins per
/// client address, and registrations hashing at once.
#[derive(Debug)]
pub(crate) struct Abuse {
    /// Messages per user (`--send-rate`, `--send-burst`).
    pub(crate) send: KeyedLimiter<String>,
    /// Typing notices per user: one a second, bursts of 5 (clients send one
    /// every few seconds while the user types).
    pub(crate) typing: KeyedLimiter<String>,
    /// Accounts created per client address (`--registrations-per-ip-per-hour`).
    pub(crate) registrations: KeyedLimiter<IpAddr>,
    /// Failed logins per client address, over all accounts
    /// (`--failed-logins-per-ip-per-minute`): password spraying.
    pub(crate) failed_logins: KeyedLimiter<IpAddr>,
    /// Registrations hashing a password at once (`--registrations-in-flight`):
    /// with fewer of these than cores, logins keep a share of the CPU while
    /// a flood of registrations waits.
    pub(crate) hashing: Arc<Semaphore>,
}

impl Abuse {
    pub(crate) fn new(config: &Config) -> Self {
        Abuse {
            send: KeyedLimiter::per_second(config.send_rate, config.send_burst),
            typing: KeyedLimiter::per_second(1, 5),
            registrations: KeyedLimiter::new(
                config.registrations_per_ip_per_hour,
                Duration::from_secs(3600),
            ),
            failed_logins: KeyedLimiter::new(
                config.failed_logins_per_ip_per_minute,
                Duration::from_secs(60),
            ),
            hashing: Arc::new(Semaphore::new(config.registrations_in_flight.max(1))),
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
    fn per_address_limits_follow_the_configuration() {
        let config = Config::load_from([
            "chat-server",
            "--send-rate",
            "1",
            "--send-burst",
            "3",
            "--registrations-per-ip-per-hour",
            "2",
            "--failed-logins-per-ip-per-minute",
            "3",
        ])
        .unwrap();
        let a = Abuse::new(&config);
        assert!((0..3).all(|_| a.send.allow("a").is_ok()));
        assert!(a.send.allow("a").is_err());
        assert!(a.send.allow("b").is_ok(), "users have their own buckets");
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(a.registrations.allow(&ip).is_ok() && a.registrations.allow(&ip).is_ok());
        let wait = a.registrations.allow(&ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(1000),
            "{wait:?}: one more in half an hour"
        );
        for _ in 0..3 {
            assert!(a.failed_logins.check(&ip).is_ok());
            a.failed_logins.charge(&ip);
        }
        assert!(a.failed_logins.check(&ip).is_err());
        assert_eq!(a.hashing.available_permits(), 1);
        let e = homer::ApiError::from(crate::error::ChatError::too_many(
            "too_many_registrations",
            "slow down",
            Duration::from_millis(1500),
        ));
        assert_eq!(e.status(), 429);
        assert!(e.message().contains("retry_after=2"), "{}", e.message());
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
