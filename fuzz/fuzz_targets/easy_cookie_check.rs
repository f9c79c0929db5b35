#![no_main]

use std::sync::OnceLock;

use easy_cookie::{CookieFactory, Key, KeyRing, Protection};

fn factories() -> &'static [CookieFactory<serde_json::Value>; 2] {
    static F: OnceLock<[CookieFactory<serde_json::Value>; 2]> = OnceLock::new();
    F.get_or_init(|| {
        [Protection::Signed, Protection::Encrypted].map(|p| {
            CookieFactory::builder(KeyRing::new(Key::generate().expect("key")))
                .protection(p)
                .build()
                .expect("factory")
        })
    })
}

// A cookie value or a whole Cookie header from a client: never a panic, and
// nothing forged is accepted (the keys are random, so nothing verifies).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for f in factories() {
        assert!(f.check(text).is_err());
        assert!(f.check_header(text).is_err());
    }
});
