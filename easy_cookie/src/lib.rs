//! Signed or encrypted cookies with expiry policies and key rotation, and
//! server-side sessions stored through `nopi`.
//!
//! A [`CookieFactory`] issues cookies carrying a chosen subset of your serde
//! info value and checks them again. Each cookie holds its expiry inside the
//! authenticated bytes and the id of the key that protected it; checking
//! says [`CookieError::Unknown`] for anything not issued by this factory
//! (malformed, tampered, unknown key, other purpose, other type) and
//! [`CookieError::Expired`], with the expiry time, for an authentic cookie
//! whose time is up. Cookies are unpadded base64url, so the same string is
//! safe in a `Cookie` header, a URL and an `Authorization: Bearer` header.
//! With the `sessions` feature, [`Sessions`](crate#sessions) keeps server-side sessions in a
//! `nopi` tree, with revocation, rotation and idle and absolute timeouts.
//!
//! # Example
//!
//! Issue, check, expiry and key rotation (time is driven by a
//! [`ManualClock`] here; production uses the system clock):
//!
//! ```
//! use std::time::Duration;
//! use easy_cookie::{CookieError, CookieFactory, Key, KeyRing, ManualClock, Protection, Ttl};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Login {
//!     user: String,
//!     id: u64,
//! }
//!
//! let clock = ManualClock::starting_now();
//! let old_key = Key::generate()?; // in production: Key::from_base64(&config)?
//! let factory = CookieFactory::<Login>::builder(KeyRing::new(old_key.clone()))
//!     .ttl(Ttl::minutes(30))
//!     .protection(Protection::Signed) // or Protection::Encrypted to hide the info
//!     .clock(clock.clone())
//!     .build()?;
//!
//! let ann = Login { user: "ann".into(), id: 7 };
//! let cookie = factory.issue(&ann)?;
//! assert_eq!(factory.check(&cookie)?, ann);
//!
//! // Anything else is unknown; a guest fallback is one call.
//! assert!(factory.check("forged").unwrap_err().is_unknown());
//! let guest = factory.check_or("forged", Login { user: "guest".into(), id: 0 });
//! assert_eq!(guest.user, "guest");
//!
//! // Rotation: the new key signs, the old one still verifies.
//! let rotated = CookieFactory::<Login>::builder(
//!     KeyRing::new(Key::generate()?).with_older(old_key)?,
//! )
//! .clock(clock.clone())
//! .build()?;
//! assert_eq!(rotated.check(&cookie)?.id, 7);
//! let new_cookie = rotated.issue(&ann)?;
//! assert!(factory.check(&new_cookie).unwrap_err().is_unknown());
//!
//! // Expiry is inside the signed bytes; one cookie may live longer.
//! let long = factory.issue_with_ttl(&ann, Ttl::hours(8))?;
//! clock.advance(Duration::from_secs(31 * 60));
//! assert!(matches!(factory.check(&cookie), Err(CookieError::Expired { .. })));
//! assert_eq!(factory.check(&long)?, ann);
//!
//! // Set-Cookie with HttpOnly, Secure, SameSite=Lax and Max-Age.
//! let header = factory.set_cookie(&ann)?.to_string();
//! assert!(header.contains("HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=1800"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sessions
//!
//! Stateless cookies cannot be revoked before they expire. For logins that
//! must really end on logout, keep the session on the server:
//!
//! ```
//! # #[cfg(feature = "sessions")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use easy_cookie::{Key, KeyRing, SessionError, Sessions};
//!
//! let store = nopi::open("memory:").await?; // "sled:./data" in production
//! let sessions: Sessions<Vec<String>> = Sessions::builder(KeyRing::new(Key::generate()?))
//!     .build(store.tree("sessions").await?)?;
//!
//! // Login: the token goes into a cookie or is sent as a bearer token.
//! let login = sessions.start("ann", vec!["lobby".to_owned()]).await?;
//! let set_cookie = sessions.set_cookie(&login).to_string();
//! assert!(set_cookie.starts_with("session="));
//!
//! // Every request.
//! let session = sessions.get(&login.token).await?;
//! assert_eq!(session.user, "ann");
//! sessions.update(&login.token, |rooms| rooms.push("rust".into())).await?;
//!
//! // Privilege change: new token, the old one is dead at once.
//! let promoted = sessions.rotate(&login.token).await?;
//! assert!(matches!(sessions.get(&login.token).await, Err(SessionError::Unknown { .. })));
//!
//! // Logout, and "log out everywhere".
//! assert!(sessions.revoke(&promoted.token).await?);
//! assert_eq!(sessions.revoke_all("ann").await?, 0);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "sessions"))]
//! # fn main() {}
//! ```
//!
//! # Security notes
//!
//! - Keys are at least 256 bits. Each factory derives its MAC or AEAD key
//!   from the ring key, the mode and its *purpose* label, so cookies of one
//!   purpose never check under another. The master key bytes are zeroised
//!   on drop and every `Debug` prints `REDACTED`. One exception: the signed
//!   mode's keyed HMAC state (the `hmac` crate's precomputed pads of the
//!   derived subkey) cannot be zeroised with `hmac` 0.12 and stays in freed
//!   memory after the factory is dropped; the AEAD key is zeroised.
//! - Signed mode is HMAC-SHA256 over the whole cookie (format tag, key id,
//!   expiry, info), verified in constant time. Encrypted mode is
//!   XChaCha20-Poly1305 with a random 192-bit nonce; the format tag and key
//!   id are associated data. The byte layouts are drawn in the docs of
//!   [`Protection`].
//! - `check` refuses input longer than the factory's limit (4096 bytes by
//!   default) before decoding it, and never panics.
//! - Session ids carry 256 bits from the operating system's generator; the
//!   store keeps only their SHA-256.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sessions` | yes | [`Sessions`](crate#sessions), server-side sessions on a `nopi` store (pulls in `nopi`) |
//!
//! Without default features the crate is the cookie core only and depends on
//! no sibling crate.

mod clock;
mod codec;
mod error;
mod factory;
mod fields;
mod key;
mod mac;
#[cfg(feature = "sessions")]
mod sessions;
mod set_cookie;
mod ttl;

pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{Codec, Protection};
pub use cookie;
pub use cookie::{Cookie, SameSite};
#[cfg(feature = "sessions")]
pub use error::SessionError;
pub use error::{
    BuildError, CodecError, CookieError, Error, IssueError, KeyError, Timeout, UnknownReason,
};
pub use factory::{
    CookieFactory, CookieFactoryBuilder, DEFAULT_MAX_LEN, Issued, MAX_MAX_LEN, MAX_PURPOSE_LEN,
    MIN_MAX_LEN, Verified,
};
pub use key::{Key, KeyId, KeyRing, MAX_KEY_LEN, MAX_KEYS, MIN_KEY_LEN, Secret};
#[cfg(feature = "sessions")]
pub use sessions::{
    DEFAULT_ABSOLUTE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_RECORD_LEN,
    DEFAULT_MAX_SESSIONS_PER_USER, MAX_USER_LEN, NewSession, SESSION_PURPOSE, Session, SessionId,
    Sessions, SessionsBuilder,
};
pub use set_cookie::{
    CookieSettings, MAX_AGE_CAP, MAX_ATTRIBUTE_LEN, MAX_CANDIDATES, MAX_NAME_LEN, bearer_token,
};
pub use ttl::Ttl;
