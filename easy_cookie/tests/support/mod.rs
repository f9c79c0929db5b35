//! Shared helpers for the integration tests.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]
#![expect(
    unreachable_pub,
    reason = "a private test module; `pub` reads as \"shared with the test files\""
)]

use std::time::{Duration, UNIX_EPOCH};

use easy_cookie::{CookieFactory, CookieFactoryBuilder, Key, KeyRing, ManualClock, Protection};
use serde::{Deserialize, Serialize};

/// What a chat login cookie might carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub user: String,
    pub id: u64,
    #[serde(default)]
    pub admin: bool,
}

pub fn ann() -> Info {
    Info {
        user: "ann".into(),
        id: 7,
        admin: true,
    }
}

/// A fixed key, so failures reproduce.
pub fn key(seed: u8) -> Key {
    Key::from_bytes(&[seed; 32]).expect("32 bytes is a valid key")
}

pub fn ring(seed: u8) -> KeyRing {
    KeyRing::new(key(seed))
}

/// 2023-11-14T22:13:20Z.
pub const START: u64 = 1_700_000_000;

pub fn clock() -> ManualClock {
    ManualClock::at_unix(START)
}

pub fn at(secs_after_start: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(START + secs_after_start)
}

/// A builder with a manual clock.
pub fn builder(
    keys: KeyRing,
    protection: Protection,
    clock: &ManualClock,
) -> CookieFactoryBuilder<Info> {
    CookieFactory::builder(keys)
        .protection(protection)
        .clock(clock.clone())
}

pub fn factory(keys: KeyRing, protection: Protection, clock: &ManualClock) -> CookieFactory<Info> {
    builder(keys, protection, clock)
        .build()
        .expect("default settings are valid")
}

/// Both built-in modes, named for assertion messages.
pub fn modes() -> [(&'static str, Protection); 2] {
    [
        ("signed", Protection::Signed),
        ("encrypted", Protection::Encrypted),
    ]
}

/// Whether `s` only holds characters that need no escaping in a `Cookie`
/// header value (RFC 6265 cookie-octet) nor in a URL (RFC 3986 unreserved).
pub fn header_and_url_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
