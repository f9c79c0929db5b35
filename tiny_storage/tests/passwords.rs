//! Password storage with the real OWASP parameters: PHC argon2id strings,
//! upgrade of weaker hashes on login, and the same time for an unknown user
//! as for a wrong password.
//!
//! One test function on purpose: cargo runs test binaries one after another,
//! so the timings here are not disturbed by other tests hashing in parallel.

mod support;

use std::time::{Duration, Instant};

use support::{chat_model, fast_users, stored_hash};
use tiny_storage::{Error, NewUser, PasswordParams, Users};

/// The m, t and p of a PHC argon2id string.
fn phc_params(phc: &str) -> (String, String) {
    let mut parts = phc.split('$').skip(1);
    let algorithm = parts.next().unwrap_or_default().to_owned();
    let _version = parts.next();
    let params = parts.next().unwrap_or_default().to_owned();
    (algorithm, params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owasp_hashes_upgrade_on_login_and_constant_failure_time() {
    let store = nopi::open("memory:").await.expect("store");

    // An account stored by a deployment with weaker parameters.
    let weak = fast_users(&store, chat_model()).await;
    weak.create(NewUser::new("alice").password("correct horse"))
        .await
        .expect("create");
    let old = stored_hash(&store, "alice").await.expect("hash stored");
    assert_eq!(phc_params(&old), ("argon2id".into(), "m=8,t=1,p=1".into()));
    assert!(!old.contains("correct horse"));

    // The same store opened with the defaults: OWASP parameters.
    let users = Users::open(&store, chat_model()).await.expect("open");
    assert!(matches!(
        users.verify("alice", "password", "wrong horse").await,
        Err(Error::BadCredentials)
    ));
    assert_eq!(
        stored_hash(&store, "alice").await.as_deref(),
        Some(old.as_str()),
        "a failed login upgrades nothing"
    );
    users
        .verify("alice", "password", "correct horse")
        .await
        .expect("right password");
    let upgraded = stored_hash(&store, "alice").await.expect("hash stored");
    assert_ne!(upgraded, old);
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "PHC argon2id with OWASP parameters: {upgraded}"
    );
    // The upgraded hash verifies and is not upgraded again.
    let start = Instant::now();
    users
        .verify("alice", "password", "correct horse")
        .await
        .expect("right password after upgrade");
    let right = start.elapsed();
    assert_eq!(stored_hash(&store, "alice").await, Some(upgraded.clone()));

    // New accounts get OWASP hashes directly.
    users
        .create(NewUser::new("bob").password("battery staple"))
        .await
        .expect("create");
    let bob = stored_hash(&store, "bob").await.expect("hash stored");
    assert!(bob.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{bob}");
    let salt = |phc: &str| phc.split('$').nth(4).map(str::to_owned);
    assert_ne!(salt(&bob), salt(&upgraded), "every hash has its own salt");

    // An unknown user costs what a wrong password costs: both hash once with
    // the same parameters. Take the faster of two runs of each to damp noise.
    let mut wrong = Duration::MAX;
    let mut unknown = Duration::MAX;
    for _ in 0..2 {
        let start = Instant::now();
        let e = users
            .verify("alice", "password", "wrong horse")
            .await
            .expect_err("wrong");
        wrong = wrong.min(start.elapsed());
        let wrong_msg = e.to_string();
        let start = Instant::now();
        let e = users
            .verify("mallory", "password", "wrong horse")
            .await
            .expect_err("unknown");
        unknown = unknown.min(start.elapsed());
        assert_eq!(e.to_string(), wrong_msg, "same error");
    }
    // Without the dummy hash an unknown user would answer a thousand times
    // faster; the bounds leave room for a busy machine.
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown user took {unknown:?}, wrong password {wrong:?}, right password {right:?}"
    );
}

#[test]
fn owasp_is_the_default() {
    assert_eq!(PasswordParams::default(), PasswordParams::OWASP);
    let p = PasswordParams::OWASP;
    assert_eq!(
        (p.memory_kib(), p.iterations(), p.parallelism()),
        (19_456, 2, 1)
    );
}
