//! `issue` + `check` against the `cookie` crate's `SignedJar` doing the same
//! job in the same run: carry a small JSON info value in an HMAC-SHA256
//! signed cookie and read it back.
//!
//! Run: `cargo bench -p easy_cookie --bench issue_check`
use std::hint::black_box;

use cookie::{CookieJar, Key as JarKey};
use criterion::{Criterion, criterion_group, criterion_main};
use easy_cookie::{CookieFactory, Key, KeyRing, Protection};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Info {
    user: String,
    id: u64,
    admin: bool,
}

fn info() -> Info {
    Info {
        user: "alice".into(),
        id: 42,
        admin: false,
    }
}

fn factory(protection: Protection) -> CookieFactory<Info> {
    let key = Key::from_bytes(&[7; 32]).expect("valid key");
    CookieFactory::builder(KeyRing::new(key))
        .protection(protection)
        .build()
        .expect("valid factory")
}

fn bench(c: &mut Criterion) {
    let info = info();
    let mut group = c.benchmark_group("issue+check");

    let signed = factory(Protection::Signed);
    group.bench_function("easy_cookie signed", |b| {
        b.iter(|| {
            let cookie = signed.issue(black_box(&info)).expect("issue");
            let back = signed.check(black_box(&cookie)).expect("check");
            black_box(back)
        });
    });

    // The same job with the cookie crate: serialise the info, sign it into a
    // jar, read it back through the signed view and parse it.
    let key = JarKey::from(&[7; 64]);
    let mut jar = CookieJar::new();
    group.bench_function("cookie SignedJar", |b| {
        b.iter(|| {
            let value = serde_json::to_string(black_box(&info)).expect("serialise");
            jar.signed_mut(&key).add(("session", value));
            let cookie = jar.signed(&key).get("session").expect("verifies");
            let back: Info = serde_json::from_str(cookie.value()).expect("parse");
            black_box(back)
        });
    });

    let encrypted = factory(Protection::Encrypted);
    group.bench_function("easy_cookie encrypted", |b| {
        b.iter(|| {
            let cookie = encrypted.issue(black_box(&info)).expect("issue");
            let back = encrypted.check(black_box(&cookie)).expect("check");
            black_box(back)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
