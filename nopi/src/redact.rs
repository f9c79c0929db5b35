//! Passwords out of URLs, so a URL can go into an error, a log line or a
//! `Debug` output.

/// What a redacted password reads as.
const REDACTED: &str = "***";

/// `url` with its password replaced by `***`, for errors, logs and `Debug`.
///
/// Both places a URL can carry a password are redacted: the user info
/// (`scheme://user:password@host`) and a `password=` query parameter
/// (`postgres://host/db?user=u&password=p`, which libpq accepts). The user
/// name, host, path and other parameters are kept, so the output still says
/// where a connection went. Text that is not a URL is returned unchanged.
/// It is the same `***` the AMQP URLs of `rmq_core` print.
///
/// When an unencoded `/`, `?` or `#` in the password hides where the user
/// info ends, everything up to the last `@` is taken as the user info: more
/// is redacted rather than a password leaked.
///
/// # Example
///
/// ```
/// assert_eq!(
///     nopi::redact_url("postgres://chat:s3cret@db.internal:5432/chat"),
///     "postgres://chat:***@db.internal:5432/chat",
/// );
/// assert_eq!(
///     nopi::redact_url("postgres://db/chat?user=chat&password=s3cret&schema=a"),
///     "postgres://db/chat?user=chat&password=***&schema=a",
/// );
/// assert_eq!(nopi::redact_url("sled:./data"), "sled:./data");
/// ```
#[must_use = "the redacted URL is returned, the argument is unchanged"]
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The user info ends at the authority's last `@`; without one there, an
    // `@` further on means the password held a `/`, `?` or `#`.
    let at = rest[..authority_end].rfind('@').or_else(|| rest.rfind('@'));
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    let after_userinfo = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon + 1]);
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            &rest[at..]
        }
        None => rest,
    };
    match after_userinfo.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        out.push_str(key);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(pair),
                }
            }
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
        None => out.push_str(after_userinfo),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    fn check(url: &str, expected: &str) {
        assert_eq!(redact_url(url), expected, "{url}");
    }

    #[test]
    fn user_info_passwords_are_redacted() {
        check(
            "postgres://postgres:postgres@127.0.0.1:5432/test",
            "postgres://postgres:***@127.0.0.1:5432/test",
        );
        check(
            "postgresql://u:p@host?schema=a",
            "postgresql://u:***@host?schema=a",
        );
        check(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqp://guest:***@127.0.0.1:5672/%2f",
        );
        check("amqps://u:p@w@host", "amqps://u:***@host");
        check("postgres://u:@host/db", "postgres://u:***@host/db");
    }

    #[test]
    fn unencoded_separators_in_a_password_do_not_leak_it() {
        check("postgres://u:pa/ss@host/db", "postgres://u:***@host/db");
        check("postgres://u:pa?ss@host/db", "postgres://u:***@host/db");
        check("postgres://u:pa#ss@host/db", "postgres://u:***@host/db");
    }

    #[test]
    fn query_passwords_are_redacted() {
        check(
            "postgres://host/db?user=u&password=p&schema=a",
            "postgres://host/db?user=u&password=***&schema=a",
        );
        check(
            "postgres://host/db?PASSWORD=p#frag",
            "postgres://host/db?PASSWORD=***#frag",
        );
        check(
            "postgres://u:p@host/db?password=p",
            "postgres://u:***@host/db?password=***",
        );
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "postgres://127.0.0.1/db",
            "postgres://user@host/db",
            "postgres://host/db?schema=a&application_name=x",
            "sled:./data",
            "memory:",
            "not a url",
            "",
        ] {
            check(url, url);
        }
    }
}
