//! How a cookie is protected: [`Protection`], the built-in signed and
//! encrypted formats, and the [`Codec`] trait for bringing your own.
//!
//! The byte formats are drawn in the docs of [`Protection`].

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::error::{CodecError, IssueError, UnknownReason};
use crate::key::{KeyId, KeyRing};
use crate::mac::HmacKey;

/// A user-supplied way to protect cookies.
///
/// The factory hands `seal` the plaintext (an 8-byte big-endian expiry in
/// Unix milliseconds followed by the JSON info) and base64url-encodes what it
/// returns; `open` gets those bytes back and must return the plaintext only
/// if they are authentic. The expiry is inside the plaintext, so a codec that
/// authenticates all of it protects the expiry too.
///
/// The ring passed in holds subkeys already bound to the factory's purpose
/// (same ids as the configured keys); derive what you need from them with
/// [`Key::derive`](crate::Key::derive). Use [`KeyRing::signing`] to seal and
/// look keys up by id to open, so rotation works as it does for the
/// built-in modes. `open` must not panic on any input.
pub trait Codec: Send + Sync + fmt::Debug {
    /// Protects `plaintext`.
    ///
    /// # Errors
    /// Any [`CodecError`]; it reaches the caller as
    /// [`IssueError::Codec`].
    fn seal(&self, keys: &KeyRing, plaintext: &[u8]) -> Result<Vec<u8>, CodecError>;

    /// The plaintext, if `sealed` came from `seal` under a key in `keys`;
    /// `None` otherwise.
    fn open(&self, keys: &KeyRing, sealed: &[u8]) -> Option<Vec<u8>>;
}

/// How a factory protects its cookies.
///
/// # Wire formats
///
/// Every cookie is unpadded base64url (`A-Z a-z 0-9 - _`) of one of these
/// byte strings. Integers are big-endian. The *plaintext* is the same in all
/// modes:
///
/// ```text
/// plaintext:
/// +------------------------+---------------------------------------+
/// | expiry: u64 BE         | info: JSON of the selected fields     |
/// | Unix ms; u64::MAX never|                                       |
/// +------------------------+---------------------------------------+
///   8 bytes                  n bytes
///
/// signed (tag 0x01):
/// +------+--------+-----------+----------------------------------+
/// | 0x01 | key id | plaintext | HMAC-SHA256 of all bytes before  |
/// +------+--------+-----------+----------------------------------+
///   1      4        8 + n       32
///
/// encrypted (tag 0x02), XChaCha20-Poly1305, random nonce:
/// +------+--------+--------+---------------------------+---------+
/// | 0x02 | key id | nonce  | ciphertext of plaintext   | tag     |
/// +------+--------+--------+---------------------------+---------+
///   1      4        24       8 + n                       16
///   associated data: the first 5 bytes (tag byte and key id)
///
/// custom: whatever Codec::seal returns for the plaintext
/// ```
///
/// The key id names the ring key ([`KeyId`]). The MAC or AEAD key is not
/// the ring key itself but a subkey derived from it for the mode and the
/// factory's *purpose*, so a cookie issued by one factory never checks on a
/// factory with another purpose, even under the same key ring.
#[non_exhaustive]
#[derive(Debug, Clone, Default)]
pub enum Protection {
    /// HMAC-SHA256 over the whole cookie, expiry included. The info is
    /// readable by anyone holding the cookie (base64url of JSON) but cannot be
    /// changed. The default.
    #[default]
    Signed,
    /// XChaCha20-Poly1305 with a random 192-bit nonce: the info is hidden and
    /// cannot be changed.
    Encrypted,
    /// A user-supplied [`Codec`].
    Custom(Arc<dyn Codec>),
}

impl Protection {
    /// Protection by a user-supplied codec.
    #[must_use]
    pub fn custom(codec: impl Codec + 'static) -> Self {
        Self::Custom(Arc::new(codec))
    }
}

pub(crate) const SIGNED_TAG: u8 = 0x01;
pub(crate) const ENCRYPTED_TAG: u8 = 0x02;
const KEY_ID_LEN: usize = 4;
const HEADER_LEN: usize = 1 + KEY_ID_LEN;
const MAC_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const AEAD_TAG_LEN: usize = 16;
/// Length of the expiry at the start of the plaintext.
pub(crate) const EXPIRY_LEN: usize = 8;

/// A ring key prepared for signing.
pub(crate) struct SignKey {
    id: KeyId,
    mac: HmacKey,
}

/// A ring key prepared for encryption. `XChaCha20Poly1305` zeroises its key
/// on drop.
pub(crate) struct EncryptKey {
    id: KeyId,
    aead: XChaCha20Poly1305,
}

/// The protection engine a factory runs, with its derived keys.
pub(crate) enum Engine {
    Signed(Vec<SignKey>),
    Encrypted(Vec<EncryptKey>),
    Custom {
        codec: Arc<dyn Codec>,
        keys: KeyRing,
    },
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signed(keys) => f
                .debug_tuple("Signed")
                .field(&keys.iter().map(|k| k.id).collect::<Vec<_>>())
                .finish(),
            Self::Encrypted(keys) => f
                .debug_tuple("Encrypted")
                .field(&keys.iter().map(|k| k.id).collect::<Vec<_>>())
                .finish(),
            Self::Custom { codec, keys } => f
                .debug_struct("Custom")
                .field("codec", codec)
                .field("keys", keys)
                .finish(),
        }
    }
}

impl Engine {
    /// Derives the keys `protection` needs for `purpose`.
    pub(crate) fn new(protection: &Protection, keys: &KeyRing, purpose: &str) -> Self {
        let label = |mode: &str| {
            let mut label = Vec::with_capacity(mode.len() + 1 + purpose.len());
            label.extend_from_slice(mode.as_bytes());
            label.push(b'/');
            label.extend_from_slice(purpose.as_bytes());
            label
        };
        match protection {
            Protection::Signed => {
                let label = label("sign");
                Self::Signed(
                    keys.iter()
                        .map(|k| SignKey {
                            id: k.id(),
                            mac: HmacKey::new(k.derive(&label).expose()),
                        })
                        .collect(),
                )
            }
            Protection::Encrypted => {
                let label = label("encrypt");
                Self::Encrypted(
                    keys.iter()
                        .map(|k| EncryptKey {
                            id: k.id(),
                            aead: XChaCha20Poly1305::new(k.derive(&label).expose().into()),
                        })
                        .collect(),
                )
            }
            Protection::Custom(codec) => Self::Custom {
                codec: Arc::clone(codec),
                keys: keys.derived(label("custom").as_slice()),
            },
        }
    }

    /// Bytes `seal` appends after the plaintext (custom codecs: unknown,
    /// so 0; their output length is checked afterwards).
    pub(crate) fn trailer_len(&self) -> usize {
        match self {
            Self::Signed(_) => MAC_LEN,
            Self::Encrypted(_) => AEAD_TAG_LEN,
            Self::Custom { .. } => 0,
        }
    }

    /// Writes the header into the empty `buf`; the caller appends the
    /// plaintext, then calls [`Engine::seal`].
    pub(crate) fn begin(&self, buf: &mut Vec<u8>) -> Result<(), IssueError> {
        match self {
            Self::Signed(keys) => {
                buf.push(SIGNED_TAG);
                buf.extend_from_slice(&signing(keys, |k| k.id).to_bytes());
            }
            Self::Encrypted(keys) => {
                buf.push(ENCRYPTED_TAG);
                buf.extend_from_slice(&signing(keys, |k| k.id).to_bytes());
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::getrandom(&mut nonce).map_err(IssueError::Random)?;
                buf.extend_from_slice(&nonce);
            }
            Self::Custom { .. } => {}
        }
        Ok(())
    }

    /// Protects the header and plaintext in `buf` in place.
    pub(crate) fn seal(&self, buf: &mut Vec<u8>) -> Result<(), IssueError> {
        match self {
            Self::Signed(keys) => {
                let Some(key) = keys.first() else {
                    return Err(IssueError::Crypto { len: buf.len() });
                };
                let tag = key.mac.mac(buf);
                buf.extend_from_slice(&tag);
            }
            Self::Encrypted(keys) => {
                let Some(key) = keys.first() else {
                    return Err(IssueError::Crypto { len: buf.len() });
                };
                let start = HEADER_LEN + NONCE_LEN;
                let (head, plaintext) = buf.split_at_mut(start);
                let (aad, nonce) = head.split_at(HEADER_LEN);
                let tag = key
                    .aead
                    .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, plaintext)
                    .map_err(|_| IssueError::Crypto {
                        len: plaintext.len(),
                    })?;
                buf.extend_from_slice(&tag);
            }
            Self::Custom { codec, keys } => {
                *buf = codec.seal(keys, buf)?;
            }
        }
        Ok(())
    }

    /// Verifies (and decrypts) `buf` in place; returns where the plaintext
    /// lies in it.
    pub(crate) fn open(&self, buf: &mut Vec<u8>) -> Result<Range<usize>, UnknownReason> {
        match self {
            Self::Signed(keys) => {
                if buf.len() < HEADER_LEN + EXPIRY_LEN + MAC_LEN || buf[0] != SIGNED_TAG {
                    return Err(UnknownReason::Format);
                }
                let key = find(keys, &buf[1..HEADER_LEN], |k| k.id)?;
                let (body, tag) = buf.split_at(buf.len() - MAC_LEN);
                // Compared in constant time.
                if !key.mac.verify(body, tag) {
                    return Err(UnknownReason::BadSignature);
                }
                Ok(HEADER_LEN..body.len())
            }
            Self::Encrypted(keys) => {
                let start = HEADER_LEN + NONCE_LEN;
                if buf.len() < start + EXPIRY_LEN + AEAD_TAG_LEN || buf[0] != ENCRYPTED_TAG {
                    return Err(UnknownReason::Format);
                }
                let key = find(keys, &buf[1..HEADER_LEN], |k| k.id)?;
                let end = buf.len() - AEAD_TAG_LEN;
                let (rest, tag) = buf.split_at_mut(end);
                let (head, ciphertext) = rest.split_at_mut(start);
                let (aad, nonce) = head.split_at(HEADER_LEN);
                key.aead
                    .decrypt_in_place_detached(
                        XNonce::from_slice(nonce),
                        aad,
                        ciphertext,
                        Tag::from_slice(tag),
                    )
                    .map_err(|_| UnknownReason::BadSignature)?;
                Ok(start..end)
            }
            Self::Custom { codec, keys } => {
                let plaintext = codec.open(keys, buf).ok_or(UnknownReason::BadSignature)?;
                if plaintext.len() < EXPIRY_LEN {
                    return Err(UnknownReason::Format);
                }
                *buf = plaintext;
                Ok(0..buf.len())
            }
        }
    }
}

/// The id of the signing (first) key.
fn signing<K>(keys: &[K], id: impl Fn(&K) -> KeyId) -> KeyId {
    keys.first().map_or(KeyId::from_bytes([0; 4]), id)
}

/// The key named by the 4-byte `raw` id.
fn find<'k, K>(
    keys: &'k [K],
    raw: &[u8],
    id: impl Fn(&K) -> KeyId,
) -> Result<&'k K, UnknownReason> {
    let mut bytes = [0u8; KEY_ID_LEN];
    bytes.copy_from_slice(raw);
    let wanted = KeyId::from_bytes(bytes);
    keys.iter()
        .find(|k| id(k) == wanted)
        .ok_or(UnknownReason::UnknownKey(wanted))
}
