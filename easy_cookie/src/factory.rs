//! [`CookieFactory`]: issue and check cookies of one kind.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Cookie;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock, from_unix_millis, unix_millis};
use crate::codec::{EXPIRY_LEN, Engine, Protection};
use crate::error::{BuildError, CookieError, IssueError, UnknownReason};
use crate::fields::{Fields, MAX_FIELDS};
use crate::key::KeyRing;
use crate::set_cookie::{CookieSettings, MAX_AGE_CAP};
use crate::ttl::{NEVER, Ttl};

/// The default limit on a cookie's length, in bytes: what every browser
/// stores for one cookie.
pub const DEFAULT_MAX_LEN: usize = 4096;
/// The smallest `max_len` a builder accepts.
pub const MIN_MAX_LEN: usize = 128;
/// The largest `max_len` a builder accepts (for bearer tokens, which are
/// not bound by browser limits).
pub const MAX_MAX_LEN: usize = 64 * 1024;
/// The longest purpose label, in bytes.
pub const MAX_PURPOSE_LEN: usize = 128;

/// Issues and checks cookies carrying an info value of type `I`.
///
/// Cheap to clone (an [`Arc`] inside) and safe to share between tasks.
/// Build one with [`CookieFactory::builder`]; see the [crate
/// docs](crate#example) for a full example.
pub struct CookieFactory<I> {
    inner: Arc<Inner>,
    info: PhantomData<fn(&I) -> I>,
}

struct Inner {
    engine: Engine,
    fields: Option<Fields>,
    ttl: Ttl,
    clock: Arc<dyn Clock>,
    max_len: usize,
    settings: CookieSettings,
    purpose: String,
}

impl<I> Clone for CookieFactory<I> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            info: PhantomData,
        }
    }
}

impl<I> fmt::Debug for CookieFactory<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("CookieFactory")
            .field("engine", &inner.engine)
            .field("fields", &inner.fields)
            .field("ttl", &inner.ttl)
            .field("clock", &inner.clock)
            .field("max_len", &inner.max_len)
            .field("settings", &inner.settings)
            .field("purpose", &inner.purpose)
            .finish()
    }
}

/// A checked cookie: its info and when it expires.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<I> {
    /// The info the cookie carries.
    pub info: I,
    /// When it expires; `None` for a never-expiring cookie.
    pub expires_at: Option<SystemTime>,
}

/// A freshly issued cookie: the string and when it expires.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The cookie value, also usable as a bearer token.
    pub value: String,
    /// When it expires; `None` for a never-expiring cookie.
    pub expires_at: Option<SystemTime>,
}

impl<I> CookieFactory<I>
where
    I: Serialize + DeserializeOwned,
{
    /// A builder using `keys`, with the defaults: all fields, 30-minute TTL,
    /// signed, system clock, 4096-byte limit, cookie named `session`.
    pub fn builder(keys: KeyRing) -> CookieFactoryBuilder<I> {
        CookieFactoryBuilder::new(keys)
    }

    /// Issues a cookie for `info` under the factory's TTL policy.
    ///
    /// # Errors
    /// [`IssueError::Serialize`] if `info` does not serialise (or is not a
    /// struct or map while fields are selected), [`IssueError::TooLong`] past
    /// the length limit, [`IssueError::Random`] if the OS generator fails.
    pub fn issue(&self, info: &I) -> Result<String, IssueError> {
        self.issue_with_ttl(info, self.inner.ttl)
    }

    /// Issues a cookie for `info` that lives for `ttl` instead of the
    /// factory's policy.
    ///
    /// # Errors
    /// As [`CookieFactory::issue`].
    pub fn issue_with_ttl(&self, info: &I, ttl: Ttl) -> Result<String, IssueError> {
        self.issue_full(info, ttl).map(|issued| issued.value)
    }

    /// Issues a cookie and tells when it expires.
    ///
    /// # Errors
    /// As [`CookieFactory::issue`].
    pub fn issue_full(&self, info: &I, ttl: Ttl) -> Result<Issued, IssueError> {
        let inner = &*self.inner;
        let now = unix_millis(inner.clock.now());
        let expiry = ttl.expiry_ms(now);
        // The longest byte string whose unpadded base64 fits the limit.
        let max_raw = inner.max_len / 4 * 3 + (inner.max_len % 4).saturating_sub(1);

        let mut buf = Vec::with_capacity(128);
        inner.engine.begin(&mut buf)?;
        buf.extend_from_slice(&expiry.to_be_bytes());
        let trailer = inner.engine.trailer_len();
        let limit = max_raw.saturating_sub(trailer).max(buf.len());
        let mut out = Limited {
            buf: &mut buf,
            limit,
            exceeded: false,
        };
        let written = match &inner.fields {
            None => serde_json::to_writer(&mut out, info),
            Some(fields) => fields.serialize(info, &mut serde_json::Serializer::new(&mut out)),
        };
        let exceeded = out.exceeded;
        if let Err(err) = written {
            return Err(if exceeded {
                IssueError::TooLong {
                    len: encoded_len(limit + 1 + trailer),
                    max: inner.max_len,
                }
            } else {
                IssueError::Serialize(err)
            });
        }
        inner.engine.seal(&mut buf)?;
        let len = encoded_len(buf.len());
        if len > inner.max_len {
            return Err(IssueError::TooLong {
                len,
                max: inner.max_len,
            });
        }
        Ok(Issued {
            value: URL_SAFE_NO_PAD.encode(&buf),
            expires_at: (expiry != NEVER).then(|| from_unix_millis(expiry)),
        })
    }

    /// Checks a cookie and returns its info.
    ///
    /// # Errors
    /// [`CookieError::Unknown`] for anything this factory did not issue
    /// (malformed, tampered, unknown key, other purpose, other type);
    /// [`CookieError::Expired`] for an authentic cookie past its expiry.
    pub fn check(&self, cookie: &str) -> Result<I, CookieError> {
        self.verify(cookie).map(|v| v.info)
    }

    /// Checks a cookie, falling back to `guest` if it is missing, unknown or
    /// expired.
    #[must_use]
    pub fn check_or(&self, cookie: &str, guest: I) -> I {
        self.check(cookie).unwrap_or(guest)
    }

    /// Checks a cookie, falling back to `guest(error)` if it is missing,
    /// unknown or expired.
    #[must_use]
    pub fn check_or_else(&self, cookie: &str, guest: impl FnOnce(CookieError) -> I) -> I {
        self.check(cookie).unwrap_or_else(guest)
    }

    /// Checks a cookie and returns its info and expiry.
    ///
    /// # Errors
    /// As [`CookieFactory::check`].
    pub fn verify(&self, cookie: &str) -> Result<Verified<I>, CookieError> {
        self.verify_with(cookie, true)
    }

    /// As [`CookieFactory::verify`]; with `enforce_expiry` off, an expired
    /// but authentic cookie is returned instead of refused (used to revoke
    /// sessions whose token has already expired).
    pub(crate) fn verify_with(
        &self,
        cookie: &str,
        enforce_expiry: bool,
    ) -> Result<Verified<I>, CookieError> {
        let inner = &*self.inner;
        if cookie.len() > inner.max_len {
            return Err(CookieError::unknown(UnknownReason::TooLong {
                len: cookie.len(),
                max: inner.max_len,
            }));
        }
        let mut buf = Vec::with_capacity(cookie.len() / 4 * 3 + 3);
        URL_SAFE_NO_PAD
            .decode_vec(cookie, &mut buf)
            .map_err(|_| CookieError::unknown(UnknownReason::Encoding))?;
        let range = inner.engine.open(&mut buf).map_err(CookieError::unknown)?;
        let (expiry, json) = buf
            .get(range)
            .and_then(<[u8]>::split_first_chunk::<EXPIRY_LEN>)
            .ok_or(CookieError::unknown(UnknownReason::Format))?;
        let expiry = u64::from_be_bytes(*expiry);
        if enforce_expiry && expiry != NEVER && unix_millis(inner.clock.now()) >= expiry {
            return Err(CookieError::Expired {
                at: from_unix_millis(expiry),
            });
        }
        let info = serde_json::from_slice(json)
            .map_err(|_| CookieError::unknown(UnknownReason::Payload))?;
        Ok(Verified {
            info,
            expires_at: (expiry != NEVER).then(|| from_unix_millis(expiry)),
        })
    }

    /// Checks the cookie of this factory's name in a `Cookie` request header.
    /// When several cookies share the name (set by other paths or
    /// subdomains), the first valid one wins.
    ///
    /// # Errors
    /// As [`CookieFactory::check`]; [`UnknownReason::Missing`] if the header
    /// has no cookie of this name. When none is valid, an
    /// [`Expired`](CookieError::Expired) error is preferred over an unknown
    /// one, so the caller can tell the user to log in again.
    pub fn check_header(&self, cookie_header: &str) -> Result<I, CookieError> {
        let mut error = CookieError::unknown(UnknownReason::Missing);
        for value in self.inner.settings.values_in(cookie_header) {
            match self.check(value) {
                Ok(info) => return Ok(info),
                Err(err) if !error.is_expired() => error = err,
                Err(_) => {}
            }
        }
        Err(error)
    }

    /// Issues a cookie for `info` and renders it for a `Set-Cookie` header
    /// (with `Max-Age` matching the expiry; a never-expiring cookie gets the
    /// 400-day cap).
    ///
    /// # Errors
    /// As [`CookieFactory::issue`].
    pub fn set_cookie(&self, info: &I) -> Result<Cookie<'static>, IssueError> {
        self.set_cookie_with_ttl(info, self.inner.ttl)
    }

    /// As [`CookieFactory::set_cookie`] with a TTL for this cookie only.
    ///
    /// # Errors
    /// As [`CookieFactory::issue`].
    pub fn set_cookie_with_ttl(&self, info: &I, ttl: Ttl) -> Result<Cookie<'static>, IssueError> {
        let issued = self.issue_full(info, ttl)?;
        Ok(self.render(issued))
    }

    /// Renders an issued cookie for a `Set-Cookie` header.
    #[must_use]
    pub fn render(&self, issued: Issued) -> Cookie<'static> {
        let max_age = issued.expires_at.map_or(MAX_AGE_CAP, |at| {
            at.duration_since(self.inner.clock.now())
                .unwrap_or(Duration::ZERO)
        });
        self.inner.settings.render(issued.value, max_age)
    }

    /// The `Set-Cookie` cookie that deletes this factory's cookie (logout).
    #[must_use]
    pub fn removal_cookie(&self) -> Cookie<'static> {
        self.inner.settings.removal()
    }

    /// The cookie name and attributes.
    #[must_use]
    pub fn settings(&self) -> &CookieSettings {
        &self.inner.settings
    }

    /// The default TTL policy.
    #[must_use]
    pub fn ttl(&self) -> Ttl {
        self.inner.ttl
    }

    /// The longest cookie issued or accepted, in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.inner.max_len
    }
}

/// Length of the unpadded base64 encoding of `n` bytes.
const fn encoded_len(n: usize) -> usize {
    n / 3 * 4 + [0, 2, 3][n % 3]
}

/// A writer into a vector that refuses to grow it past `limit`.
struct Limited<'a> {
    buf: &'a mut Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for Limited<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("cookie length limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Builds a [`CookieFactory`].
///
/// ```
/// use easy_cookie::{CookieFactory, CookieSettings, Key, KeyRing, Protection, Ttl};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct User {
///     name: String,
///     #[serde(default)]
///     email: String,
/// }
///
/// let factory = CookieFactory::<User>::builder(KeyRing::new(Key::generate()?))
///     .fields(["name"]) // the e-mail address stays out of the cookie
///     .ttl(Ttl::hours(8))
///     .protection(Protection::Encrypted)
///     .purpose("login")
///     .cookie(CookieSettings::new("login").host_prefix())
///     .build()?;
/// let cookie = factory.issue(&User { name: "ann".into(), email: "ann@example.com".into() })?;
/// let user = factory.check(&cookie)?;
/// assert_eq!((user.name.as_str(), user.email.as_str()), ("ann", ""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CookieFactoryBuilder<I> {
    keys: KeyRing,
    fields: Option<Vec<String>>,
    ttl: Ttl,
    protection: Protection,
    clock: Arc<dyn Clock>,
    max_len: usize,
    settings: CookieSettings,
    purpose: String,
    info: PhantomData<fn(&I) -> I>,
}

impl<I> fmt::Debug for CookieFactoryBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieFactoryBuilder")
            .field("keys", &self.keys)
            .field("fields", &self.fields)
            .field("ttl", &self.ttl)
            .field("protection", &self.protection)
            .field("clock", &self.clock)
            .field("max_len", &self.max_len)
            .field("settings", &self.settings)
            .field("purpose", &self.purpose)
            .finish()
    }
}

impl<I> CookieFactoryBuilder<I>
where
    I: Serialize + DeserializeOwned,
{
    /// A builder with the defaults (see [`CookieFactory::builder`]).
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            fields: None,
            ttl: Ttl::DEFAULT,
            protection: Protection::Signed,
            clock: Arc::new(SystemClock),
            max_len: DEFAULT_MAX_LEN,
            settings: CookieSettings::default(),
            purpose: String::new(),
            info: PhantomData,
        }
    }

    /// Carries only these top-level fields of the info (which must then
    /// serialise as a struct or map). Fields left out must be optional or
    /// `#[serde(default)]` in `I`, or `check` reports the cookie as unknown.
    /// By default the whole info is carried.
    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// The default TTL policy (30 minutes unless set).
    pub fn ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = ttl;
        self
    }

    /// Signed (default), encrypted, or a custom codec.
    pub fn protection(mut self, protection: Protection) -> Self {
        self.protection = protection;
        self
    }

    /// A label bound into every cookie's key: factories with different
    /// purposes never accept each other's cookies, even under one key ring.
    /// Default: empty.
    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = purpose.into();
        self
    }

    /// Where the time comes from (default: the system clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The longest cookie issued or accepted, in bytes (default 4096;
    /// 128 to 65536).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The cookie name and `Set-Cookie` attributes (default: `session` with
    /// the safe attributes).
    pub fn cookie(mut self, settings: CookieSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Builds the factory, deriving its keys.
    ///
    /// # Errors
    /// [`BuildError`] for an invalid field selection, length limit, purpose
    /// or cookie setting.
    pub fn build(self) -> Result<CookieFactory<I>, BuildError> {
        if !(MIN_MAX_LEN..=MAX_MAX_LEN).contains(&self.max_len) {
            return Err(BuildError::OutOfRange {
                setting: "max_len",
                value: self.max_len as u128,
                min: MIN_MAX_LEN as u128,
                max: MAX_MAX_LEN as u128,
            });
        }
        if self.purpose.len() > MAX_PURPOSE_LEN {
            return Err(BuildError::Purpose {
                len: self.purpose.len(),
                max: MAX_PURPOSE_LEN,
            });
        }
        let fields = match self.fields {
            None => None,
            Some(fields) => {
                let reason = if fields.is_empty() {
                    Some("expected at least one field")
                } else if fields.len() > MAX_FIELDS {
                    Some("expected at most 64 fields")
                } else if fields.iter().any(String::is_empty) {
                    Some("expected non-empty names")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(BuildError::Fields { fields, reason });
                }
                Some(Fields::new(fields))
            }
        };
        self.settings.validate()?;
        Ok(CookieFactory {
            inner: Arc::new(Inner {
                engine: Engine::new(&self.protection, &self.keys, &self.purpose),
                fields,
                ttl: self.ttl,
                clock: self.clock,
                max_len: self.max_len,
                settings: self.settings,
                purpose: self.purpose,
            }),
            info: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, ManualClock};

    fn factory(protection: Protection) -> CookieFactory<String> {
        CookieFactory::builder(KeyRing::new(Key::from_bytes(&[9; 32]).unwrap()))
            .protection(protection)
            .clock(ManualClock::at_unix(1_000))
            .build()
            .unwrap()
    }

    #[test]
    fn encoded_len_matches_base64() {
        for n in 0..20 {
            assert_eq!(encoded_len(n), URL_SAFE_NO_PAD.encode(vec![0; n]).len());
        }
    }

    #[test]
    fn issue_stops_at_the_length_limit_without_building_huge_buffers() {
        for protection in [Protection::Signed, Protection::Encrypted] {
            let f = factory(protection);
            let err = f.issue(&"x".repeat(1_000_000)).unwrap_err();
            assert!(
                matches!(err, IssueError::TooLong { max: 4096, len } if len > 4096),
                "{err}"
            );
            // The largest info that fits is accepted and is at most 4096 long.
            let mut n = 0;
            while f.issue(&"x".repeat(n + 1)).is_ok() {
                n += 1;
            }
            let longest = f.issue(&"x".repeat(n)).unwrap();
            assert!(
                longest.len() <= 4096 && longest.len() > 4090,
                "{}",
                longest.len()
            );
        }
    }

    #[test]
    fn builder_rejects_bad_settings() {
        let keys = || KeyRing::new(Key::from_bytes(&[9; 32]).unwrap());
        let build = |b: CookieFactoryBuilder<String>| b.build().unwrap_err();
        assert!(matches!(
            build(CookieFactory::builder(keys()).max_len(10)),
            BuildError::OutOfRange {
                setting: "max_len",
                ..
            }
        ));
        assert!(matches!(
            build(CookieFactory::builder(keys()).fields(Vec::<String>::new())),
            BuildError::Fields { .. }
        ));
        assert!(matches!(
            build(CookieFactory::builder(keys()).fields([""])),
            BuildError::Fields { .. }
        ));
        assert!(matches!(
            build(CookieFactory::builder(keys()).purpose("p".repeat(129))),
            BuildError::Purpose { .. }
        ));
        assert!(matches!(
            build(CookieFactory::builder(keys()).cookie(CookieSettings::new("a b"))),
            BuildError::CookieName { .. }
        ));
    }

    #[test]
    fn debug_hides_keys() {
        let text = format!("{:?}", factory(Protection::Encrypted));
        assert!(!text.contains("[9, 9"), "{text}");
        assert!(text.contains("KeyId("), "{text}");
    }
}
