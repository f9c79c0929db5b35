//! The cookie core as a user sees it: issue, check, tampering, keys,
//! expiry, Set-Cookie.

mod support;

use std::time::Duration;

use easy_cookie::{
    Codec, CodecError, CookieError, CookieFactory, CookieSettings, Key, KeyRing, Protection,
    SameSite, Ttl, UnknownReason,
};
use support::*;

fn unknown(result: Result<Info, CookieError>) -> UnknownReason {
    match result {
        Err(CookieError::Unknown { reason }) => reason,
        other => panic!("expected Unknown, got {other:?}"),
    }
}

#[test]
fn round_trip_in_both_modes() {
    let clock = clock();
    for (mode, protection) in modes() {
        let f = factory(ring(1), protection, &clock);
        let cookie = f.issue(&ann()).unwrap();
        assert_eq!(f.check(&cookie).unwrap(), ann(), "{mode}");
        let verified = f.verify(&cookie).unwrap();
        assert_eq!(
            verified.expires_at,
            Some(at(30 * 60)),
            "{mode}: default TTL"
        );
    }
}

#[test]
fn encrypted_cookies_hide_the_info_and_signed_ones_do_not() {
    use base64::Engine as _;
    let clock = clock();
    let decode = |c: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .unwrap()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let signed = factory(ring(1), Protection::Signed, &clock)
        .issue(&ann())
        .unwrap();
    assert!(contains(&decode(&signed), b"\"user\":\"ann\""));
    let f = factory(ring(1), Protection::Encrypted, &clock);
    let (a, b) = (f.issue(&ann()).unwrap(), f.issue(&ann()).unwrap());
    assert!(!contains(&decode(&a), b"ann"));
    assert_ne!(a, b, "random nonces make every encrypted cookie different");
}

#[test]
fn every_single_byte_change_truncation_and_extension_is_unknown() {
    let clock = clock();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (mode, protection) in modes() {
        let f = factory(ring(1), protection, &clock);
        let cookie = f.issue(&ann()).unwrap();
        for i in 0..cookie.len() {
            for &c in ALPHABET {
                let mut bytes = cookie.clone().into_bytes();
                if bytes[i] == c {
                    continue;
                }
                bytes[i] = c;
                let tampered = String::from_utf8(bytes).unwrap();
                unknown(f.check(&tampered));
            }
            // Non-base64 characters too.
            let mut bytes = cookie.clone().into_bytes();
            bytes[i] = b'=';
            assert_eq!(
                unknown(f.check(std::str::from_utf8(&bytes).unwrap())),
                UnknownReason::Encoding,
                "{mode} at {i}"
            );
        }
        for len in 0..cookie.len() {
            unknown(f.check(&cookie[..len]));
        }
        for extra in ["A", "AA", "AAA", "AAAA", "-", "=", " "] {
            unknown(f.check(&format!("{cookie}{extra}")));
        }
        unknown(f.check(""));
    }
}

#[test]
fn cookie_from_another_key_ring_or_purpose_or_mode_is_unknown() {
    let clock = clock();
    for (mode, protection) in modes() {
        let mine = factory(ring(1), protection.clone(), &clock);
        let theirs = factory(ring(2), protection.clone(), &clock);
        let cookie = theirs.issue(&ann()).unwrap();
        assert_eq!(
            unknown(mine.check(&cookie)),
            UnknownReason::UnknownKey(key(2).id()),
            "{mode}"
        );
        let other_purpose = builder(ring(1), protection, &clock)
            .purpose("csrf")
            .build()
            .unwrap();
        let cookie = other_purpose.issue(&ann()).unwrap();
        assert_eq!(
            unknown(mine.check(&cookie)),
            UnknownReason::BadSignature,
            "{mode}"
        );
    }
    let signed = factory(ring(1), Protection::Signed, &clock);
    let encrypted = factory(ring(1), Protection::Encrypted, &clock);
    assert_eq!(
        unknown(encrypted.check(&signed.issue(&ann()).unwrap())),
        UnknownReason::Format
    );
    assert_eq!(
        unknown(signed.check(&encrypted.issue(&ann()).unwrap())),
        UnknownReason::Format
    );
}

#[test]
fn cookie_of_another_info_type_is_unknown() {
    let clock = clock();
    let numbers: CookieFactory<Vec<u32>> = CookieFactory::builder(ring(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    let cookie = numbers.issue(&vec![1, 2, 3]).unwrap();
    let infos = factory(ring(1), Protection::Signed, &clock);
    assert_eq!(unknown(infos.check(&cookie)), UnknownReason::Payload);
}

#[test]
fn rotation_old_key_still_verifies_new_key_signs() {
    let clock = clock();
    for (mode, protection) in modes() {
        let before = factory(ring(1), protection.clone(), &clock);
        let old_cookie = before.issue(&ann()).unwrap();

        let rotated_ring = KeyRing::new(key(2)).with_older(key(1)).unwrap();
        let after = factory(rotated_ring, protection.clone(), &clock);
        assert_eq!(
            after.check(&old_cookie).unwrap(),
            ann(),
            "{mode}: old key verifies"
        );
        let new_cookie = after.issue(&ann()).unwrap();
        assert_eq!(
            unknown(before.check(&new_cookie)),
            UnknownReason::UnknownKey(key(2).id()),
            "{mode}: new key signs"
        );

        // Once the old key is dropped, its cookies stop working.
        let retired = factory(ring(2), protection, &clock);
        assert_eq!(retired.check(&new_cookie).unwrap(), ann());
        assert_eq!(
            unknown(retired.check(&old_cookie)),
            UnknownReason::UnknownKey(key(1).id()),
            "{mode}"
        );
    }
}

#[test]
fn expired_carries_the_expiry_time() {
    let clock = clock();
    for (mode, protection) in modes() {
        clock.set(at(0));
        let f = factory(ring(1), protection, &clock);
        let cookie = f.issue(&ann()).unwrap();
        clock.advance(Duration::from_secs(30 * 60 - 1));
        assert_eq!(f.check(&cookie).unwrap(), ann(), "{mode}: one second left");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            f.check(&cookie),
            Err(CookieError::Expired { at: at(30 * 60) }),
            "{mode}"
        );
        let message = f.check(&cookie).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "cookie expired at {} ms after the unix epoch",
                (START + 1800) * 1000
            )
        );
    }
}

#[test]
fn never_expiring_policy() {
    let clock = clock();
    let f = builder(ring(1), Protection::Signed, &clock)
        .ttl(Ttl::Never)
        .build()
        .unwrap();
    let cookie = f.issue(&ann()).unwrap();
    clock.advance(Duration::from_secs(100 * 365 * 86_400));
    let verified = f.verify(&cookie).unwrap();
    assert_eq!(verified.info, ann());
    assert_eq!(verified.expires_at, None);
    // A never-expiring cookie still gets a Max-Age (the browser cap).
    let set = f.set_cookie(&ann()).unwrap();
    assert_eq!(set.max_age(), Some(cookie::time::Duration::days(400)));
}

#[test]
fn per_issue_ttl_override() {
    let clock = clock();
    let f = builder(ring(1), Protection::Encrypted, &clock)
        .ttl(Ttl::hours(1))
        .build()
        .unwrap();
    let short = f.issue_with_ttl(&ann(), Ttl::seconds(10)).unwrap();
    let never = f.issue_with_ttl(&ann(), Ttl::Never).unwrap();
    let default = f.issue(&ann()).unwrap();
    clock.advance(Duration::from_secs(10));
    assert_eq!(f.check(&short), Err(CookieError::Expired { at: at(10) }));
    assert_eq!(f.check(&default).unwrap(), ann());
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        f.check(&default),
        Err(CookieError::Expired { at: at(3600) })
    );
    assert_eq!(f.check(&never).unwrap(), ann());
    assert_eq!(f.ttl(), Ttl::hours(1));
}

#[test]
fn check_or_falls_back_to_the_guest() {
    let clock = clock();
    let f = factory(ring(1), Protection::Signed, &clock);
    let guest = Info {
        user: "guest".into(),
        id: 0,
        admin: false,
    };
    let cookie = f.issue(&ann()).unwrap();
    assert_eq!(f.check_or(&cookie, guest.clone()), ann());
    assert_eq!(f.check_or("garbage", guest.clone()), guest);
    assert_eq!(f.check_or("", guest.clone()), guest);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(f.check_or(&cookie, guest.clone()), guest);
    let seen = f.check_or_else(&cookie, |err| Info {
        user: err.to_string(),
        ..guest.clone()
    });
    assert!(seen.user.starts_with("cookie expired"), "{}", seen.user);
}

#[test]
fn cookies_are_safe_in_headers_and_urls() {
    let clock = clock();
    let odd = Info {
        user: "a b;c,d=\"e\"\\ é 😀 /?&#%+".into(),
        id: u64::MAX,
        admin: false,
    };
    for (mode, protection) in modes() {
        let f = factory(ring(1), protection, &clock);
        for _ in 0..50 {
            let cookie = f.issue(&odd).unwrap();
            assert!(header_and_url_safe(&cookie), "{mode}: {cookie}");
            assert_eq!(f.check(&cookie).unwrap(), odd);
        }
    }
}

#[test]
fn set_cookie_has_safe_attributes() {
    let clock = clock();
    let f = builder(ring(1), Protection::Signed, &clock)
        .ttl(Ttl::minutes(10))
        .build()
        .unwrap();
    let set = f.set_cookie(&ann()).unwrap();
    assert_eq!(set.name(), "session");
    assert_eq!(set.http_only(), Some(true));
    assert_eq!(set.secure(), Some(true));
    assert_eq!(set.same_site(), Some(SameSite::Lax));
    assert_eq!(set.max_age(), Some(cookie::time::Duration::seconds(600)));
    assert_eq!(set.path(), Some("/"));
    let header = set.to_string();
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("Secure"), "{header}");
    assert!(header.contains("SameSite=Lax"), "{header}");
    assert!(header.contains("Max-Age=600"), "{header}");
    // The value in the header checks.
    assert_eq!(f.check(set.value()).unwrap(), ann());

    let per_issue = f.set_cookie_with_ttl(&ann(), Ttl::seconds(5)).unwrap();
    assert_eq!(
        per_issue.max_age(),
        Some(cookie::time::Duration::seconds(5))
    );

    let removal = f.removal_cookie().to_string();
    assert!(removal.starts_with("session=;"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");
}

#[test]
fn host_prefix_and_cookie_header_lookup() {
    let clock = clock();
    let f = builder(ring(1), Protection::Signed, &clock)
        .cookie(
            CookieSettings::new("sid")
                .host_prefix()
                .same_site(SameSite::Strict),
        )
        .build()
        .unwrap();
    let set = f.set_cookie(&ann()).unwrap();
    let header = set.to_string();
    assert!(header.starts_with("__Host-sid="), "{header}");
    assert!(header.contains("; Secure"), "{header}");
    assert!(header.contains("; Path=/"), "{header}");
    assert!(!header.contains("Domain"), "{header}");
    assert!(header.contains("SameSite=Strict"), "{header}");

    let good = set.value().to_owned();
    let request = format!("theme=dark; __Host-sid=forged; __Host-sid={good}");
    assert_eq!(f.check_header(&request).unwrap(), ann());
    assert_eq!(
        f.check_header("theme=dark"),
        Err(CookieError::Unknown {
            reason: UnknownReason::Missing
        })
    );
    // An expired cookie is reported as expired even next to a garbage one.
    clock.advance(Duration::from_secs(3600));
    let request = format!("__Host-sid={good}; __Host-sid=forged");
    assert!(f.check_header(&request).unwrap_err().is_expired());
}

#[test]
fn field_selection_keeps_other_fields_out() {
    let clock = clock();
    let f = builder(ring(1), Protection::Signed, &clock)
        .fields(["user", "id"])
        .build()
        .unwrap();
    let cookie = f.issue(&ann()).unwrap();
    let back = f.check(&cookie).unwrap();
    assert_eq!(back.user, "ann");
    assert_eq!(back.id, 7);
    assert!(
        !back.admin,
        "admin was not carried, so it takes its default"
    );

    // Maps work too.
    let maps: CookieFactory<std::collections::BTreeMap<String, String>> =
        CookieFactory::builder(ring(1))
            .fields(["role"])
            .build()
            .unwrap();
    let info = std::collections::BTreeMap::from([
        ("role".to_owned(), "mod".to_owned()),
        ("email".to_owned(), "a@b.c".to_owned()),
    ]);
    let back = maps.check(&maps.issue(&info).unwrap()).unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back["role"], "mod");

    // Selecting fields of something that is not a struct or map fails to issue.
    let strings: CookieFactory<String> = CookieFactory::builder(ring(1))
        .fields(["x"])
        .build()
        .unwrap();
    let err = strings.issue(&"text".to_owned()).unwrap_err();
    assert!(err.to_string().contains("struct or map"), "{err}");
}

#[test]
fn over_long_input_is_refused_before_decoding() {
    let clock = clock();
    let f = builder(ring(1), Protection::Signed, &clock)
        .max_len(200)
        .build()
        .unwrap();
    let long = "A".repeat(201);
    assert_eq!(
        unknown(f.check(&long)),
        UnknownReason::TooLong { len: 201, max: 200 }
    );
    let big = Info {
        user: "x".repeat(500),
        ..ann()
    };
    let err = f.issue(&big).unwrap_err();
    assert!(
        err.to_string().contains("exceeds the 200-byte limit"),
        "{err}"
    );
}

#[test]
fn debug_of_keys_factories_and_rings_prints_redacted() {
    let k = Key::from_bytes(&[0x5a; 40]).unwrap();
    let ring = KeyRing::new(k.clone());
    let clock = clock();
    let f = factory(ring.clone(), Protection::Encrypted, &clock);
    for text in [format!("{k:?}"), format!("{ring:?}"), format!("{f:?}")] {
        assert!(
            text.contains("REDACTED") || text.contains("KeyId("),
            "{text}"
        );
        assert!(!text.contains("90, 90"), "{text}");
        assert!(!text.to_lowercase().contains("5a5a"), "{text}");
        assert!(!text.contains("WlpaWlpa"), "{text}"); // base64 of the bytes
    }
    assert!(format!("{k:?}").contains("REDACTED"));
}

/// A toy codec for the test: HMAC tag in front, plaintext after.
#[derive(Debug)]
struct TagFirst;

impl Codec for TagFirst {
    fn seal(&self, keys: &KeyRing, plaintext: &[u8]) -> Result<Vec<u8>, CodecError> {
        use hmac::Mac;
        let key = keys.signing();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.derive(b"toy").expose())
            .map_err(|_| CodecError::new("bad key"))?;
        mac.update(plaintext);
        let mut out = key.id().to_bytes().to_vec();
        out.extend_from_slice(&mac.finalize().into_bytes());
        out.extend_from_slice(plaintext);
        Ok(out)
    }

    fn open(&self, keys: &KeyRing, sealed: &[u8]) -> Option<Vec<u8>> {
        use hmac::Mac;
        let (id, rest) = sealed.split_first_chunk::<4>()?;
        let (tag, plaintext) = rest.split_first_chunk::<32>()?;
        let key = keys.get(easy_cookie::KeyId::from_bytes(*id))?;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(key.derive(b"toy").expose()).ok()?;
        mac.update(plaintext);
        mac.verify_slice(tag).ok()?;
        Some(plaintext.to_vec())
    }
}

#[test]
fn custom_codec_round_trip_tamper_and_expiry() {
    let clock = clock();
    let f = factory(ring(1), Protection::custom(TagFirst), &clock);
    let cookie = f.issue(&ann()).unwrap();
    assert!(header_and_url_safe(&cookie));
    assert_eq!(f.check(&cookie).unwrap(), ann());
    let mut bytes = cookie.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        unknown(f.check(std::str::from_utf8(&bytes).unwrap())),
        UnknownReason::BadSignature
    );
    // The codec sees purpose-bound keys: another purpose cannot open it.
    let other = builder(ring(1), Protection::custom(TagFirst), &clock)
        .purpose("other")
        .build()
        .unwrap();
    assert_eq!(unknown(other.check(&cookie)), UnknownReason::BadSignature);
    clock.advance(Duration::from_secs(1800));
    assert!(f.check(&cookie).unwrap_err().is_expired());
}

#[test]
fn swapping_the_key_id_to_another_ring_key_is_unknown() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let clock = clock();
    let ring = KeyRing::new(key(1)).with_older(key(2)).unwrap();
    for (mode, protection) in modes() {
        let f = factory(ring.clone(), protection, &clock);
        let mut raw = URL_SAFE_NO_PAD.decode(f.issue(&ann()).unwrap()).unwrap();
        assert_eq!(
            raw[1..5],
            key(1).id().to_bytes(),
            "{mode}: key id follows the tag"
        );
        raw[1..5].copy_from_slice(&key(2).id().to_bytes());
        let swapped = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            unknown(f.check(&swapped)),
            UnknownReason::BadSignature,
            "{mode}"
        );
    }
}
