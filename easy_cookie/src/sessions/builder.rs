//! [`SessionsBuilder`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::record::Timeouts;
use super::{Inner, Sessions};
use crate::clock::{Clock, SystemClock};
use crate::error::BuildError;
use crate::factory::CookieFactory;
use crate::key::KeyRing;
use crate::set_cookie::CookieSettings;

/// Default idle timeout: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default absolute timeout: 24 hours.
pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Default cap on live sessions per user; starting one more evicts the
/// oldest.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 64;
/// Default cap on a stored session record (user, times and data as JSON).
pub const DEFAULT_MAX_RECORD_LEN: usize = 64 * 1024;
/// Purpose label of session tokens (see
/// [`CookieFactoryBuilder::purpose`](crate::CookieFactoryBuilder::purpose)).
pub const SESSION_PURPOSE: &str = "easy_cookie/sessions";
/// Length limit of session tokens in bytes (they are about 120).
const TOKEN_MAX_LEN: usize = 256;

/// Builds [`Sessions`].
///
/// ```
/// use std::time::Duration;
/// use easy_cookie::{CookieSettings, Key, KeyRing, Sessions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = nopi::open("memory:").await?;
/// let sessions: Sessions<()> = Sessions::builder(KeyRing::new(Key::generate()?))
///     .idle_timeout(Duration::from_secs(7 * 86_400))
///     .absolute_timeout(Duration::from_secs(30 * 86_400))
///     .cookie(CookieSettings::new("sid").host_prefix())
///     .build(store.tree("sessions").await?)?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct SessionsBuilder<D> {
    keys: KeyRing,
    idle: Duration,
    absolute: Duration,
    refresh_after: Option<Duration>,
    max_per_user: usize,
    max_record_len: usize,
    clock: Arc<dyn Clock>,
    settings: CookieSettings,
    data: PhantomData<fn(&D) -> D>,
}

impl<D> fmt::Debug for SessionsBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsBuilder")
            .field("keys", &self.keys)
            .field("idle", &self.idle)
            .field("absolute", &self.absolute)
            .field("refresh_after", &self.refresh_after)
            .field("max_per_user", &self.max_per_user)
            .field("max_record_len", &self.max_record_len)
            .field("clock", &self.clock)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<D> SessionsBuilder<D>
where
    D: Serialize + DeserializeOwned,
{
    /// A builder with the defaults: 30-minute idle and 24-hour absolute
    /// timeouts, refresh after a quarter of the idle timeout, 64 sessions per
    /// user, 64 KiB records, system clock, cookie named `session`.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            idle: DEFAULT_IDLE_TIMEOUT,
            absolute: DEFAULT_ABSOLUTE_TIMEOUT,
            refresh_after: None,
            max_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            max_record_len: DEFAULT_MAX_RECORD_LEN,
            clock: Arc::new(SystemClock),
            settings: CookieSettings::default(),
            data: PhantomData,
        }
    }

    /// A session not used for this long ends (default 30 minutes).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// A session ends this long after it started, however active (default
    /// 24 hours). Rotation keeps the start time.
    pub fn absolute_timeout(mut self, absolute: Duration) -> Self {
        self.absolute = absolute;
        self
    }

    /// `get` writes the last-use time only once this much has passed since
    /// the stored one (default: a quarter of the idle timeout), so reads stay
    /// reads. A session may therefore end up to this much earlier than the
    /// idle timeout after its true last use.
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = Some(after);
        self
    }

    /// At most this many live sessions per user (default 64, up to 10 000);
    /// starting one more evicts the oldest.
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_per_user = max;
        self
    }

    /// The largest stored record (user, times and data as JSON) in bytes
    /// (default 64 KiB; 256 B to 16 MiB).
    pub fn max_record_len(mut self, max: usize) -> Self {
        self.max_record_len = max;
        self
    }

    /// Where the time comes from (default: the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The session cookie's name and attributes.
    pub fn cookie(mut self, settings: CookieSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Builds the sessions over `tree` (give them a tree of their own).
    ///
    /// # Errors
    /// [`BuildError::OutOfRange`] for a zero timeout, a refresh interval
    /// longer than the idle timeout, or a limit out of range; cookie setting
    /// errors as [`CookieSettings::validate`].
    pub fn build(self, tree: nopi::Tree) -> Result<Sessions<D>, BuildError> {
        let out_of_range = |setting, value: u128, min: u128, max: u128| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(BuildError::OutOfRange {
                    setting,
                    value,
                    min,
                    max,
                })
            }
        };
        let idle_ms = self.idle.as_millis();
        let refresh_after = self.refresh_after.unwrap_or(self.idle / 4);
        out_of_range("idle_timeout (ms)", idle_ms, 1, u128::from(u64::MAX))?;
        out_of_range(
            "absolute_timeout (ms)",
            self.absolute.as_millis(),
            1,
            u128::from(u64::MAX),
        )?;
        out_of_range("refresh_after (ms)", refresh_after.as_millis(), 0, idle_ms)?;
        out_of_range(
            "max_sessions_per_user",
            self.max_per_user as u128,
            1,
            10_000,
        )?;
        out_of_range("max_record_len", self.max_record_len as u128, 256, 16 << 20)?;
        let tokens = CookieFactory::builder(self.keys)
            .purpose(SESSION_PURPOSE)
            .max_len(TOKEN_MAX_LEN)
            .clock(Arc::clone(&self.clock))
            .cookie(self.settings)
            .build()?;
        Ok(Sessions {
            inner: Arc::new(Inner {
                tree,
                tokens,
                clock: self.clock,
                timeouts: Timeouts {
                    idle: self.idle,
                    absolute: self.absolute,
                },
                refresh_after,
                max_per_user: self.max_per_user,
                max_record_len: self.max_record_len,
            }),
            data: PhantomData,
        })
    }
}
