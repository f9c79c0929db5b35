//! HMAC-SHA256 through the `hmac` crate, keyed once per key.
//!
//! [`Mac::new_from_slice`] hashes the key's inner and outer pad blocks
//! once; cloning the keyed value copies those two precomputed SHA-256
//! states, so a MAC costs the message's compressions and the outer hash's,
//! never a re-keying.
//!
//! # Zeroisation
//!
//! The derived subkey bytes live in a zeroised [`Secret`](crate::Secret)
//! and are only borrowed here. The keyed state is **not** zeroised:
//! `hmac` 0.12 (its only features are `reset` and `std`), `digest` 0.10
//! and `sha2` 0.10 implement neither `Zeroize` nor a wiping `Drop`, so the
//! two pad states (which are key-equivalent: whoever reads them can compute
//! MACs under this subkey) stay in freed memory after the factory is
//! dropped, as do the per-MAC clones and the pad block `new_from_slice`
//! builds on the stack. Wiping them by hand would need `unsafe` code
//! (forbidden in this workspace) over the crates' private layout, so it is
//! not done. The exposure is the subkey of one factory's mode and purpose,
//! never the ring key itself.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// An HMAC-SHA256 key with its inner and outer states computed once.
#[derive(Clone)]
pub(crate) struct HmacKey {
    keyed: Hmac<Sha256>,
}

impl HmacKey {
    /// Prepares a 32-byte key.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        // HMAC takes keys of any length (`hmac` 0.12 hashes long ones and
        // pads short ones), so this `Err` cannot happen.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .expect("HMAC-SHA256 accepts a key of any length");
        Self { keyed }
    }

    /// The MAC of `message`.
    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `message`, compared in constant time
    /// ([`Mac::verify_slice`]; a tag of the wrong length is refused).
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let text = std::str::from_utf8(pair).unwrap();
            *byte = u8::from_str_radix(text, 16).unwrap();
        }
        out
    }

    /// Expected values computed with Python's `hmac` module (OpenSSL), an
    /// implementation independent of the `hmac` crate. The lengths sit on
    /// SHA-256's padding edges (55/56 bytes fit one or two final blocks).
    #[test]
    fn known_answers_across_block_edges() {
        let key = HmacKey::new(&[7; 32]);
        for (len, expected) in [
            (
                0,
                "9dac6a74401b46ed9b489d0e19d68d1b13cc6b5090352fdcfa5bd74df4e69d87",
            ),
            (
                55,
                "0b71774bc724b7ddcebce081205be1271767b85bec45c8bd176dff13537536e6",
            ),
            (
                56,
                "c4510782f40ccf58ea770804bd5070dc4840bbd43aeb94509ddde4931dfc429b",
            ),
            (
                64,
                "c1828a06a5177d9b538bf8b08976c860493def885b6b19e7deb0fdf6743ebea8",
            ),
            (
                119,
                "dc34474d1d0a3dc1f47047ea0b838c85c2059388d517557da16e178ef70d2896",
            ),
            (
                120,
                "b593ccbb419c1805f1ae1f478ad31db68b175fd7a3fbe9e2d2508f257ddb1ec8",
            ),
            (
                200,
                "b7b80257d29099fea4230fee7de2aea504947c4f1b04277cb7dffab293c48dc7",
            ),
        ] {
            let message: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
            // Twice: using the key must not change its state.
            for _ in 0..2 {
                assert_eq!(key.mac(&message), hex(expected), "len {len}");
                assert!(key.verify(&message, &hex(expected)), "len {len}");
            }
        }
        assert_eq!(
            HmacKey::new(b"0123456789abcdef0123456789abcdef").mac(b"what do ya want for nothing?"),
            hex("137e6557c3c13a1ca5dc7e52a389a0f86be8cb4db4ae61c62396058b00acacd0")
        );
    }

    #[test]
    fn verify_rejects_wrong_tags() {
        let k = HmacKey::new(&[7; 32]);
        let mut tag = k.mac(b"m");
        assert!(k.verify(b"m", &tag));
        assert!(!k.verify(b"n", &tag));
        assert!(!k.verify(b"m", &tag[..31]));
        assert!(!k.verify(b"m", &[]));
        let mut long = tag.to_vec();
        long.push(0);
        assert!(!k.verify(b"m", &long));
        tag[31] ^= 1;
        assert!(!k.verify(b"m", &tag));
        assert!(!HmacKey::new(&[8; 32]).verify(b"m", &k.mac(b"m")));
    }
}
