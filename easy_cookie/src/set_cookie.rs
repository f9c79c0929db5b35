//! `Set-Cookie` rendering and `Cookie` header lookup: [`CookieSettings`].

use std::time::Duration;

use cookie::{Cookie, SameSite};

use crate::error::BuildError;

/// Browsers keep a cookie at most 400 days, so `Max-Age` is capped there.
pub const MAX_AGE_CAP: Duration = Duration::from_secs(400 * 86_400);
/// The longest cookie name accepted, in bytes (prefix excluded).
pub const MAX_NAME_LEN: usize = 128;
/// The longest `Path` or `Domain` accepted, in bytes.
pub const MAX_ATTRIBUTE_LEN: usize = 1024;
/// The most cookies of our name looked at in one `Cookie` header (a defence
/// against cookie tossing floods).
pub const MAX_CANDIDATES: usize = 8;

/// A cookie name prefix that browsers enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    None,
    /// `__Host-`: Secure, `Path=/`, no `Domain`; the cookie is bound to the
    /// exact host.
    Host,
    /// `__Secure-`: Secure.
    Secure,
}

impl Prefix {
    const fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Host => "__Host-",
            Self::Secure => "__Secure-",
        }
    }
}

/// The name and attributes of the cookies a factory (or [`Sessions`]) sets.
///
/// Defaults are the safe ones: `HttpOnly`, `Secure`, `SameSite=Lax`,
/// `Path=/`, no `Domain`, and every cookie gets a `Max-Age`.
///
/// ```
/// use std::time::Duration;
/// use easy_cookie::CookieSettings;
///
/// let settings = CookieSettings::new("sid").host_prefix();
/// settings.validate()?;
/// let header = settings.render("token", Duration::from_secs(60)).to_string();
/// assert_eq!(
///     header,
///     "__Host-sid=token; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=60"
/// );
/// let found: Vec<&str> = settings.values_in("a=1; __Host-sid=token").collect();
/// assert_eq!(found, ["token"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`Sessions`]: crate#sessions
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    name: String,
    path: String,
    domain: Option<String>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    prefix: Prefix,
}

impl Default for CookieSettings {
    /// A cookie named `session` with the safe defaults.
    fn default() -> Self {
        Self::new("session")
    }
}

impl CookieSettings {
    /// Settings for a cookie called `name`, with the safe defaults. The name
    /// is checked by [`CookieSettings::validate`], which builders call.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: "/".to_owned(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            prefix: Prefix::None,
        }
    }

    /// Sets `Path` (default `/`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets `Domain` (default none: the cookie goes back only to the host
    /// that set it).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Sets `Secure` (default on). Turn it off only for plain-HTTP
    /// development; a name prefix turns it back on.
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `HttpOnly` (default on), which hides the cookie from scripts.
    #[must_use]
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets `SameSite` (default `Lax`). `None` needs `Secure`.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Uses the `__Host-` name prefix: browsers then only accept the cookie
    /// with `Secure`, `Path=/` and no `Domain`, which stops sibling
    /// subdomains from planting or overwriting it.
    #[must_use]
    pub fn host_prefix(mut self) -> Self {
        self.prefix = Prefix::Host;
        self
    }

    /// Uses the `__Secure-` name prefix: browsers then only accept the cookie
    /// with `Secure`.
    #[must_use]
    pub fn secure_prefix(mut self) -> Self {
        self.prefix = Prefix::Secure;
        self
    }

    /// Checks the name and attributes.
    ///
    /// # Errors
    /// [`BuildError::CookieName`], [`BuildError::CookieAttribute`] or
    /// [`BuildError::HostPrefix`].
    pub fn validate(&self) -> Result<(), BuildError> {
        let name_error = |reason| BuildError::CookieName {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty() {
            return Err(name_error("expected at least one character"));
        }
        if self.name.len() > MAX_NAME_LEN {
            return Err(name_error("expected at most 128 bytes"));
        }
        if !self.name.bytes().all(is_token_byte) {
            return Err(name_error(
                "expected only visible ASCII other than ()<>@,;:\\\"/[]?={}",
            ));
        }
        let attribute_ok = |value: &str| {
            value.len() <= MAX_ATTRIBUTE_LEN
                && value.bytes().all(|b| b.is_ascii_graphic() && b != b';')
        };
        if !self.path.starts_with('/') || !attribute_ok(&self.path) {
            return Err(BuildError::CookieAttribute {
                attribute: "path",
                value: self.path.clone(),
            });
        }
        if let Some(domain) = &self.domain {
            let domain_ok = !domain.is_empty()
                && domain.len() <= 253
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !domain_ok {
                return Err(BuildError::CookieAttribute {
                    attribute: "domain",
                    value: domain.clone(),
                });
            }
        }
        if self.prefix == Prefix::Host && (self.path != "/" || self.domain.is_some()) {
            return Err(BuildError::HostPrefix {
                path: self.path.clone(),
                domain: self.domain.clone(),
            });
        }
        if self.same_site == SameSite::None && !self.effective_secure() {
            return Err(BuildError::CookieAttribute {
                attribute: "same_site",
                value: "None without Secure".to_owned(),
            });
        }
        Ok(())
    }

    /// The name as sent, prefix included (`__Host-sid`).
    #[must_use]
    pub fn full_name(&self) -> String {
        format!("{}{}", self.prefix.as_str(), self.name)
    }

    fn effective_secure(&self) -> bool {
        self.secure || self.prefix != Prefix::None
    }

    /// The cookie to send in a `Set-Cookie` header (its `Display` is the
    /// header value), carrying `value` for `max_age` (capped at
    /// [`MAX_AGE_CAP`], rounded up to whole seconds).
    #[must_use]
    pub fn render(&self, value: impl Into<String>, max_age: Duration) -> Cookie<'static> {
        let max_age = max_age.min(MAX_AGE_CAP);
        let secs = max_age.as_secs() + u64::from(max_age.subsec_nanos() > 0);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        let mut builder = Cookie::build((self.full_name(), value.into()))
            .path(self.path.clone())
            .secure(self.effective_secure())
            .http_only(self.http_only)
            .same_site(self.same_site)
            .max_age(cookie::time::Duration::seconds(secs));
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.clone());
        }
        builder.build()
    }

    /// The cookie that deletes ours from the browser (empty value,
    /// `Max-Age=0`, same name, path and domain): send it on logout.
    #[must_use]
    pub fn removal(&self) -> Cookie<'static> {
        self.render(String::new(), Duration::ZERO)
    }

    /// The values of every cookie with our name in a `Cookie` request header,
    /// in order, at most [`MAX_CANDIDATES`] of them. More than one appears
    /// when another path or subdomain set a cookie of the same name.
    pub fn values_in<'h>(&self, cookie_header: &'h str) -> impl Iterator<Item = &'h str> {
        let prefix = self.prefix.as_str();
        let name = self.name.as_str();
        cookie_header
            .split(';')
            .filter_map(move |pair| {
                let (n, v) = pair.split_once('=')?;
                let n = n.trim().strip_prefix(prefix)?;
                (n == name).then(|| {
                    let v = v.trim();
                    v.strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v)
                })
            })
            .take(MAX_CANDIDATES)
    }
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme
/// is case-insensitive), for clients that send the cookie string as a bearer
/// token.
///
/// ```
/// assert_eq!(easy_cookie::bearer_token("Bearer abc-_1"), Some("abc-_1"));
/// assert_eq!(easy_cookie::bearer_token("Basic abc"), None);
/// ```
#[must_use]
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `b` may appear in an RFC 6265 cookie name (an RFC 2616 token).
const fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
                | b'{'
                | b'}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(settings: &CookieSettings, max_age: u64, expected: &str) {
        settings.validate().unwrap();
        assert_eq!(
            settings
                .render("v", Duration::from_secs(max_age))
                .to_string(),
            expected
        );
    }

    #[test]
    fn renders_safe_defaults_and_options() {
        check(
            &CookieSettings::new("sid"),
            1800,
            "sid=v; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=1800",
        );
        check(
            &CookieSettings::new("sid")
                .same_site(SameSite::Strict)
                .path("/app")
                .domain("example.com"),
            5,
            "sid=v; HttpOnly; SameSite=Strict; Secure; Path=/app; Domain=example.com; Max-Age=5",
        );
        check(
            &CookieSettings::new("sid").secure(false).http_only(false),
            5,
            "sid=v; SameSite=Lax; Path=/; Max-Age=5",
        );
        check(
            &CookieSettings::new("sid").secure(false).secure_prefix(),
            5,
            "__Secure-sid=v; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=5",
        );
        check(
            &CookieSettings::new("sid").host_prefix(),
            u64::MAX,
            "__Host-sid=v; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=34560000",
        );
    }

    #[test]
    fn max_age_rounds_up_and_removal_is_zero() {
        let s = CookieSettings::new("sid");
        let c = s.render("v", Duration::from_millis(1001));
        assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(2)));
        let r = s.removal();
        assert_eq!(r.value(), "");
        assert_eq!(r.max_age(), Some(cookie::time::Duration::ZERO));
        assert_eq!(r.path(), Some("/"));
    }

    #[test]
    fn rejects_bad_names_and_attributes() {
        for bad in ["", "a b", "a;b", "a=b", "é", &"x".repeat(129)] {
            assert!(
                matches!(
                    CookieSettings::new(bad).validate(),
                    Err(BuildError::CookieName { .. })
                ),
                "{bad:?}"
            );
        }
        for bad in [
            CookieSettings::new("a").path("app"),
            CookieSettings::new("a").path("/a;b"),
            CookieSettings::new("a").domain("evil.com; x"),
            CookieSettings::new("a").domain(""),
            CookieSettings::new("a")
                .same_site(SameSite::None)
                .secure(false),
        ] {
            assert!(
                matches!(bad.validate(), Err(BuildError::CookieAttribute { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            CookieSettings::new("a").host_prefix().path("/x").validate(),
            Err(BuildError::HostPrefix { .. })
        ));
        assert!(matches!(
            CookieSettings::new("a")
                .host_prefix()
                .domain("a.com")
                .validate(),
            Err(BuildError::HostPrefix { .. })
        ));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token("bearer  x "), Some("x"));
        assert_eq!(bearer_token("BEARER x"), Some("x"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerx"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn finds_values_in_a_cookie_header() {
        let s = CookieSettings::new("sid");
        let all: Vec<_> = s
            .values_in("x=1; sid=a;sid = \"b\" ; __Host-sid=c; sidx=d; broken; sid=")
            .collect();
        assert_eq!(all, ["a", "b", ""]);
        let host = CookieSettings::new("sid").host_prefix();
        assert_eq!(
            host.values_in("sid=a; __Host-sid=c").collect::<Vec<_>>(),
            ["c"]
        );
        let flood = "sid=x; ".repeat(1000);
        assert_eq!(s.values_in(&flood).count(), MAX_CANDIDATES);
    }
}
