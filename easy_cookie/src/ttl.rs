//! How long a cookie lives: [`Ttl`].

use std::time::Duration;

use crate::clock::millis_of;

/// How long an issued cookie stays valid.
///
/// A factory has a default policy ([`Ttl::DEFAULT`], 30 minutes, unless
/// the builder sets another); `issue_with_ttl` overrides it for one cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttl {
    /// The cookie never expires; only rotating its key away ends it.
    Never,
    /// The cookie expires this long after it is issued.
    After(Duration),
}

impl Ttl {
    /// The default policy: 30 minutes.
    pub const DEFAULT: Self = Self::After(Duration::from_secs(30 * 60));

    /// Expires after `n` seconds.
    #[must_use]
    pub const fn seconds(n: u64) -> Self {
        Self::After(Duration::from_secs(n))
    }

    /// Expires after `n` minutes.
    #[must_use]
    pub const fn minutes(n: u64) -> Self {
        Self::After(Duration::from_secs(n.saturating_mul(60)))
    }

    /// Expires after `n` hours.
    #[must_use]
    pub const fn hours(n: u64) -> Self {
        Self::After(Duration::from_secs(n.saturating_mul(3600)))
    }

    /// Expires after `n` days.
    #[must_use]
    pub const fn days(n: u64) -> Self {
        Self::After(Duration::from_secs(n.saturating_mul(86_400)))
    }

    /// The expiry, in Unix milliseconds, of a cookie issued at `now_ms`;
    /// [`NEVER`] for a never-expiring one. Finite expiries saturate just below
    /// [`NEVER`] so they stay finite.
    pub(crate) fn expiry_ms(self, now_ms: u64) -> u64 {
        match self {
            Self::Never => NEVER,
            Self::After(d) => now_ms.saturating_add(millis_of(d)).min(NEVER - 1),
        }
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The expiry field value that means "never expires".
pub(crate) const NEVER: u64 = u64::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_thirty_minutes() {
        assert_eq!(Ttl::default(), Ttl::minutes(30));
        assert_eq!(Ttl::DEFAULT, Ttl::seconds(1800));
    }

    #[test]
    fn expiry_arithmetic_saturates() {
        assert_eq!(Ttl::Never.expiry_ms(5), NEVER);
        assert_eq!(Ttl::seconds(2).expiry_ms(1000), 3000);
        assert_eq!(Ttl::After(Duration::MAX).expiry_ms(1), NEVER - 1);
        assert_eq!(Ttl::days(u64::MAX).expiry_ms(u64::MAX), NEVER - 1);
        assert_eq!(Ttl::hours(1), Ttl::minutes(60));
    }
}
