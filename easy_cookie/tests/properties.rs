//! Property tests: `check` never panics on junk, and `check(issue(x)) == x`.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use support::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Anything {
    name: String,
    number: i64,
    maybe: Option<u32>,
    list: Vec<String>,
    flag: bool,
}

fn anything() -> impl Strategy<Value = Anything> {
    (
        any::<String>(),
        any::<i64>(),
        any::<Option<u32>>(),
        prop::collection::vec(any::<String>(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(name, number, maybe, list, flag)| Anything {
            name,
            number,
            maybe,
            list,
            flag,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_strings_are_unknown(input in any::<String>()) {
        let clock = clock();
        for (_, protection) in modes() {
            let f = factory(ring(1), protection, &clock);
            prop_assert!(f.check(&input).is_err_and(|e| e.is_unknown()));
        }
    }

    #[test]
    fn random_bytes_are_unknown(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        // Well-formed base64 of random bytes reaches the format and MAC checks.
        let clock = clock();
        let encoded = URL_SAFE_NO_PAD.encode(&bytes);
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        for (_, protection) in modes() {
            let f = factory(ring(1), protection, &clock);
            prop_assert!(f.check(&encoded).is_err_and(|e| e.is_unknown()));
            prop_assert!(f.check(&raw).is_err_and(|e| e.is_unknown()));
        }
    }

    #[test]
    fn random_byte_flips_of_a_real_cookie_are_unknown(
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let clock = clock();
        for (_, protection) in modes() {
            let f = factory(ring(1), protection, &clock);
            let mut raw = URL_SAFE_NO_PAD.decode(f.issue(&ann()).unwrap()).unwrap();
            let i = index.index(raw.len());
            raw[i] ^= flip;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(f.check(&tampered).is_err_and(|e| e.is_unknown()));
        }
    }

    #[test]
    fn check_of_issue_is_identity(info in anything()) {
        let clock = clock();
        for (_, protection) in modes() {
            let f = easy_cookie::CookieFactory::<Anything>::builder(ring(1))
                .protection(protection)
                .clock(clock.clone())
                .build()
                .unwrap();
            let cookie = f.issue(&info).unwrap();
            prop_assert!(header_and_url_safe(&cookie));
            prop_assert_eq!(f.check(&cookie).unwrap(), info.clone());
        }
    }
}
