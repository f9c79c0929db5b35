//! Key material: [`Key`], its public [`KeyId`], and the [`KeyRing`] that
//! makes rotation possible.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::KeyError;

/// The shortest key accepted, in bytes (256 bits).
pub const MIN_KEY_LEN: usize = 32;
/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The most keys a [`KeyRing`] holds.
pub const MAX_KEYS: usize = 16;

const KEY_ID_LABEL: &[u8] = b"easy_cookie/v1/key-id";
const DERIVE_PREFIX: &[u8] = b"easy_cookie/v1/derive/";

/// The public name of a [`Key`]: four bytes derived from it one-way.
///
/// Every cookie carries the id of the key that protected it, so checking
/// needs one key lookup instead of trying every key. The id reveals nothing
/// useful about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 4]);

impl KeyId {
    /// The id as bytes, as written into cookies.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 4] {
        self.0
    }

    /// An id from the four bytes a cookie carries.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 4]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 32-byte secret derived from a [`Key`]; zeroised on drop and printed as
/// `REDACTED`.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; 32]>);

impl Secret {
    /// The secret bytes. Keep the borrow short and never log it.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// A secret key (at least 256 bits). Zeroised on drop; `Debug` prints
/// `REDACTED` and the public [`KeyId`].
///
/// Factories never use a key directly: they derive one subkey per mode and
/// purpose with [`Key::derive`], so the same key can safely protect signed
/// login cookies and encrypted CSRF cookies at once.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    secret: Zeroizing<Vec<u8>>,
}

impl Key {
    /// A fresh random 256-bit key from the operating system's generator.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the generator fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; MIN_KEY_LEN]);
        getrandom::getrandom(&mut bytes[..]).map_err(KeyError::Random)?;
        Self::from_bytes(&bytes[..])
    }

    /// A key from raw bytes (32 to 1024 of them). The bytes are copied; zeroise
    /// your copy when done with it.
    ///
    /// # Errors
    /// [`KeyError::TooShort`] or [`KeyError::TooLong`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                len: bytes.len(),
                min: MIN_KEY_LEN,
            });
        }
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                len: bytes.len(),
                max: MAX_KEY_LEN,
            });
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&hmac_sha256(bytes, &[KEY_ID_LABEL])[..4]);
        Ok(Self {
            id: KeyId(id),
            secret: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// A key from base64 text (standard or url-safe alphabet, padded or not),
    /// as kept in configuration files and environment variables.
    ///
    /// # Errors
    /// [`KeyError::NotBase64`], [`KeyError::TooShort`] or [`KeyError::TooLong`].
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        // Four base64 characters per three bytes; refuse absurd input before
        // decoding it.
        if text.len() > MAX_KEY_LEN.div_ceil(3) * 4 {
            return Err(KeyError::TooLong {
                len: text.len() / 4 * 3,
                max: MAX_KEY_LEN,
            });
        }
        let decoded = [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD_NO_PAD, &STANDARD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new)
            .ok_or(KeyError::NotBase64 { len: text.len() })?;
        Self::from_bytes(&decoded)
    }

    /// The key as unpadded url-safe base64, for storing it in configuration.
    /// This exposes the secret: handle the string with care.
    #[must_use = "the exported key should be stored somewhere"]
    pub fn expose_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(&self.secret[..]))
    }

    /// The key's public id.
    #[must_use]
    pub const fn id(&self) -> KeyId {
        self.id
    }

    /// A 32-byte subkey for `label` (HMAC-SHA256 of the label under this
    /// key). Different labels give independent subkeys; custom codecs should
    /// derive what they need this way rather than use the key itself.
    #[must_use]
    pub fn derive(&self, label: &[u8]) -> Secret {
        Secret(Zeroizing::new(hmac_sha256(
            &self.secret,
            &[DERIVE_PREFIX, label],
        )))
    }

    /// A key with the same id whose secret is the subkey for `label`. Used to
    /// hand custom codecs keys already bound to a factory's purpose.
    pub(crate) fn derived_key(&self, label: &[u8]) -> Self {
        let sub = self.derive(label);
        Self {
            id: self.id,
            secret: Zeroizing::new(sub.expose().to_vec()),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"REDACTED")
            .finish()
    }
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback
    // keeps the code free of panics all the same.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The keys a factory may use: the newest signs (or encrypts), every one
/// verifies (or decrypts).
///
/// Rotation without logging anyone out: put the new key first and keep the
/// old one until every cookie it protected has expired, then drop it.
///
/// ```
/// use easy_cookie::{Key, KeyRing};
///
/// let old = Key::generate()?;
/// let new = Key::generate()?;
/// let ring = KeyRing::new(new.clone()).with_older(old.clone())?;
/// assert_eq!(ring.signing().id(), new.id());
/// assert!(ring.get(old.id()).is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring with one key, which both signs and verifies.
    #[must_use]
    pub fn new(signing: Key) -> Self {
        Self {
            keys: vec![signing],
        }
    }

    /// A ring from keys listed newest first.
    ///
    /// # Errors
    /// [`KeyError::Empty`], [`KeyError::Duplicate`] or [`KeyError::TooMany`].
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Result<Self, KeyError> {
        let mut keys = keys.into_iter();
        let first = keys.next().ok_or(KeyError::Empty)?;
        keys.try_fold(Self::new(first), Self::with_older)
    }

    /// Adds an older key that still verifies but never signs.
    ///
    /// # Errors
    /// [`KeyError::Duplicate`] if the key is already in the ring, or
    /// [`KeyError::TooMany`] past [`MAX_KEYS`].
    pub fn with_older(mut self, key: Key) -> Result<Self, KeyError> {
        if self.get(key.id).is_some() {
            return Err(KeyError::Duplicate { id: key.id });
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(KeyError::TooMany {
                len: self.keys.len() + 1,
                max: MAX_KEYS,
            });
        }
        self.keys.push(key);
        Ok(self)
    }

    /// The key that signs new cookies (the newest).
    #[must_use]
    pub fn signing(&self) -> &Key {
        // `keys` is never empty: every constructor starts from one key.
        &self.keys[0]
    }

    /// The key with this id, if it is in the ring.
    #[must_use]
    pub fn get(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// All keys, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// Number of keys (at least one).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a ring holds at least one key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The same ring with every key replaced by its subkey for `label`, ids
    /// unchanged.
    pub(crate) fn derived(&self, label: &[u8]) -> Self {
        Self {
            keys: self.keys.iter().map(|k| k.derived_key(label)).collect(),
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing", &self.signing().id)
            .field(
                "verify_only",
                &self.keys[1..].iter().map(|k| k.id).collect::<Vec<_>>(),
            )
            .field("secrets", &"REDACTED")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn debug_never_shows_secrets() {
        let k = Key::from_bytes(&[0xAB; 32]).unwrap();
        let ring = KeyRing::new(k.clone()).with_older(key(1)).unwrap();
        for text in [
            format!("{k:?}"),
            format!("{ring:?}"),
            format!("{:?}", k.derive(b"x")),
        ] {
            assert!(text.contains("REDACTED"), "{text}");
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("171, 171"), "{text}");
        }
    }

    #[test]
    fn length_limits() {
        assert_eq!(
            Key::from_bytes(&[1; 31]).unwrap_err(),
            KeyError::TooShort { len: 31, min: 32 }
        );
        assert_eq!(
            Key::from_bytes(&[1; 1025]).unwrap_err(),
            KeyError::TooLong {
                len: 1025,
                max: 1024
            }
        );
        assert!(Key::from_bytes(&[1; 1024]).is_ok());
    }

    #[test]
    fn base64_round_trip_in_every_alphabet() {
        let k = Key::generate().unwrap();
        let text = k.expose_base64();
        let bytes = URL_SAFE_NO_PAD.decode(text.as_bytes()).unwrap();
        for encoded in [
            URL_SAFE_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            format!("  {}\n", STANDARD.encode(&bytes)),
        ] {
            assert_eq!(Key::from_base64(&encoded).unwrap().id(), k.id());
        }
        assert_eq!(
            Key::from_base64("not base64!").unwrap_err(),
            KeyError::NotBase64 { len: 11 }
        );
        assert!(matches!(
            Key::from_base64(&"A".repeat(100_000)).unwrap_err(),
            KeyError::TooLong { .. }
        ));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().to_string().len(), 8);
    }

    #[test]
    fn derive_separates_labels() {
        let k = key(7);
        assert_ne!(k.derive(b"a").expose(), k.derive(b"b").expose());
        assert_eq!(k.derive(b"a").expose(), k.derive(b"a").expose());
        let sub = k.derived_key(b"a");
        assert_eq!(sub.id(), k.id());
        assert_ne!(sub.derive(b"x").expose(), k.derive(b"x").expose());
    }

    #[test]
    fn ring_rules() {
        let ring = KeyRing::from_keys([key(1), key(2)]).unwrap();
        assert_eq!(ring.signing().id(), key(1).id());
        assert_eq!(ring.len(), 2);
        assert!(!ring.is_empty());
        assert_eq!(KeyRing::from_keys(Vec::new()).unwrap_err(), KeyError::Empty);
        assert_eq!(
            KeyRing::from_keys([key(1), key(1)]).unwrap_err(),
            KeyError::Duplicate { id: key(1).id() }
        );
        let many = (0..=MAX_KEYS as u8).map(key);
        assert_eq!(
            KeyRing::from_keys(many).unwrap_err(),
            KeyError::TooMany {
                len: MAX_KEYS + 1,
                max: MAX_KEYS
            }
        );
    }
}
