//! Where "now" comes from: the system clock, or a hand-driven one for tests.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
///
/// Factories and sessions read the time only through this trait, so tests
/// can move time forward with a [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use easy_cookie::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(60));
/// assert_eq!(clock.now(), handle.now());
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `unix_secs` seconds after the Unix epoch.
    #[must_use]
    pub fn at_unix(unix_secs: u64) -> Self {
        Self {
            millis: Arc::new(AtomicU64::new(unix_secs.saturating_mul(1000))),
        }
    }

    /// A clock reading the current system time (to millisecond precision).
    #[must_use]
    pub fn starting_now() -> Self {
        Self {
            millis: Arc::new(AtomicU64::new(unix_millis(SystemTime::now()))),
        }
    }

    /// Moves time forward by `by` (millisecond precision).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the time (millisecond precision; times before the epoch read as
    /// the epoch).
    pub fn set(&self, to: SystemTime) {
        self.millis.store(unix_millis(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        from_unix_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// Milliseconds since the Unix epoch, saturating (times before the epoch
/// give 0).
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch, saturating at the
/// largest representable time.
pub(crate) fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        // The end of year 9999, which every platform can represent.
        .or_else(|| UNIX_EPOCH.checked_add(Duration::from_secs(253_402_300_799)))
        .unwrap_or(UNIX_EPOCH)
}

/// Milliseconds in `d`, saturating.
pub(crate) fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_unix(10);
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(10));
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(11_500));
        clock.set(UNIX_EPOCH + Duration::from_secs(3));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(3));
    }

    #[test]
    fn millis_round_trip_and_saturate() {
        assert_eq!(unix_millis(from_unix_millis(123_456)), 123_456);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(millis_of(Duration::MAX), u64::MAX);
        // The far future does not panic.
        let _ = from_unix_millis(u64::MAX);
    }
}
