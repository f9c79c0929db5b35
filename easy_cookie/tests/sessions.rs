//! Sessions on every backend a chat server runs: memory, sled and the real
//! PostgreSQL at `DATABASE_URL` (by default
//! postgres://postgres:postgres@127.0.0.1:5432/test). Each case runs on a
//! fresh fixture; on PostgreSQL that is a schema of its own (nopi's
//! `?schema=` URL parameter), dropped afterwards. An unreachable PostgreSQL
//! fails the PostgreSQL cases; it never skips them.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::any::Any;
use std::time::Duration;

use easy_cookie::{
    CookieSettings, Key, KeyRing, ManualClock, SessionError, SessionId, Sessions, Timeout,
    UnknownReason,
};
use serde::{Deserialize, Serialize};
use support::*;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Data {
    room: String,
    visits: u32,
}

const IDLE: u64 = 600;
const ABSOLUTE: u64 = 3600;

/// A fresh, isolated store location on one backend, valid while the
/// fixture lives (as in `nopi`'s own tests).
struct Fixture {
    backend: &'static str,
    url: String,
    _guard: Box<dyn Any + Send>,
}

/// What most cases start from: a store, sessions on it and their clock.
struct Case {
    backend: &'static str,
    store: nopi::Store,
    sessions: Sessions<Data>,
    clock: ManualClock,
}

impl Fixture {
    async fn memory() -> Self {
        Self {
            backend: "memory",
            url: "memory:".to_owned(),
            _guard: Box::new(()),
        }
    }

    async fn sled() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            backend: "sled",
            url: format!("sled:{}", dir.path().join("db").display()),
            _guard: Box::new(dir),
        }
    }

    /// A fresh schema in the real PostgreSQL (`nopi::testing`), dropped when
    /// the fixture is. No server means a failed test, not a skipped one:
    /// opening the store panics.
    async fn postgres() -> Self {
        let temp = nopi::testing::TempStore::postgres();
        Self {
            backend: "postgres",
            url: temp.url().to_owned(),
            _guard: Box::new(temp),
        }
    }

    /// A new handle on this fixture's store (each `memory:` open is a new,
    /// empty store).
    async fn open(&self) -> nopi::Store {
        match nopi::open(&self.url).await {
            Ok(store) => store,
            Err(e) if self.backend == "postgres" => panic!(
                "PostgreSQL at DATABASE_URL (default {}) is required \
                 by these tests and could not be opened: {e}",
                nopi::testing::DEFAULT_DATABASE_URL
            ),
            Err(e) => panic!("open the {} store: {e}", self.backend),
        }
    }

    /// A store with sessions on it, on a manual clock at [`START`].
    async fn case(&self) -> Case {
        let store = self.open().await;
        let clock = clock();
        let sessions = sessions_on(&store, &clock).await;
        Case {
            backend: self.backend,
            store,
            sessions,
            clock,
        }
    }
}

async fn sessions_on(store: &nopi::Store, clock: &ManualClock) -> Sessions<Data> {
    Sessions::builder(ring(1))
        .idle_timeout(Duration::from_secs(IDLE))
        .absolute_timeout(Duration::from_secs(ABSOLUTE))
        .max_sessions_per_user(3)
        .clock(clock.clone())
        .build(store.tree("sessions").await.unwrap())
        .unwrap()
}

fn unknown<T: std::fmt::Debug>(result: Result<T, SessionError>) -> UnknownReason {
    match result {
        Err(SessionError::Unknown { reason }) => reason,
        other => panic!("expected Unknown, got {other:?}"),
    }
}

fn expired<T: std::fmt::Debug>(
    result: Result<T, SessionError>,
) -> (std::time::SystemTime, Timeout) {
    match result {
        Err(SessionError::Expired { at, timeout }) => (at, timeout),
        other => panic!("expected Expired, got {other:?}"),
    }
}

/// One module per backend holding one `#[tokio::test]` per case, each on a
/// fresh fixture: `cargo test -p easy_cookie --test sessions postgres::`
/// runs the PostgreSQL cases only.
macro_rules! backend_tests {
    ($backend:ident; $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = super::Fixture::$backend().await;
                    super::$case(&fixture).await;
                }
            )*
        }
    };
}

/// Every case below on `$backend`, plus the `$extra` cases.
macro_rules! session_tests {
    ($backend:ident $(, $extra:ident)* $(,)?) => {
        backend_tests!(
            $backend;
            start_get_update,
            rotate_kills_the_old_token,
            revoke_is_logout_and_replay_fails,
            revoke_all_logs_a_user_out_everywhere,
            idle_timeout,
            absolute_timeout,
            get_writes_only_after_the_refresh_interval,
            oldest_session_is_evicted_past_the_cap,
            purge_removes_only_expired_sessions,
            store_holds_no_live_token,
            tokens_from_other_keys_and_garbage_are_unknown,
            token_works_as_cookie_and_bearer,
            concurrent_updates_are_not_lost,
            revoke_all_races_with_rotation,
            $($extra,)*
        );
    };
}

session_tests!(memory);
// A memory store lives and dies with its handle, so reopening applies to
// the persistent backends only.
session_tests!(sled, sessions_survive_reopening);
session_tests!(postgres, sessions_survive_reopening);

async fn start_get_update(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        ..
    } = fx.case().await;
    let data = Data {
        room: "lobby".into(),
        visits: 0,
    };
    let new = sessions.start("ann", data.clone()).await.unwrap();
    assert!(header_and_url_safe(&new.token), "{backend}");
    assert_eq!(new.expires_at, at(ABSOLUTE), "{backend}");

    let s = sessions.get(&new.token).await.unwrap();
    assert_eq!(
        (s.user.as_str(), &s.data, s.id),
        ("ann", &data, new.id),
        "{backend}"
    );
    assert_eq!(s.created, at(0));
    assert_eq!(s.expires_at, at(IDLE));

    clock.advance(Duration::from_secs(5));
    let s = sessions
        .update(&new.token, |d| {
            d.visits += 1;
            d.room = "rust".into();
        })
        .await
        .unwrap();
    assert_eq!(s.data.visits, 1);
    assert_eq!(s.last_seen, at(5));
    let s = sessions.get(&new.token).await.unwrap();
    assert_eq!(
        s.data,
        Data {
            room: "rust".into(),
            visits: 1
        },
        "{backend}: update persisted"
    );

    // Another session of another user is independent.
    let bob = sessions.start("bob", Data::default()).await.unwrap();
    assert_ne!(bob.id, new.id);
    assert_eq!(sessions.get(&bob.token).await.unwrap().user, "bob");
}

async fn rotate_kills_the_old_token(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        ..
    } = fx.case().await;
    let old = sessions
        .start(
            "ann",
            Data {
                room: "r".into(),
                visits: 3,
            },
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let new = sessions.rotate(&old.token).await.unwrap();
    assert_ne!(new.token, old.token);
    assert_ne!(new.id, old.id);
    assert_eq!(
        new.expires_at, old.expires_at,
        "{backend}: absolute timeout kept"
    );
    assert_eq!(
        unknown(sessions.get(&old.token).await),
        UnknownReason::NoSuchSession,
        "{backend}: old token dead"
    );
    assert_eq!(
        unknown(sessions.rotate(&old.token).await),
        UnknownReason::NoSuchSession
    );
    let s = sessions.get(&new.token).await.unwrap();
    assert_eq!((s.user.as_str(), s.data.visits), ("ann", 3));
    assert_eq!(s.created, at(0));
    // The user index follows the rotation.
    let listed: Vec<SessionId> = sessions
        .sessions_of("ann")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, [new.id], "{backend}");
    assert_eq!(sessions.revoke_all("ann").await.unwrap(), 1);
    assert!(sessions.get(&new.token).await.is_err());
}

async fn revoke_is_logout_and_replay_fails(fx: &Fixture) {
    let Case {
        backend, sessions, ..
    } = fx.case().await;
    let a = sessions.start("ann", Data::default()).await.unwrap();
    let b = sessions.start("ann", Data::default()).await.unwrap();
    assert!(sessions.revoke(&a.token).await.unwrap(), "{backend}");
    assert!(
        !sessions.revoke(&a.token).await.unwrap(),
        "{backend}: already gone"
    );
    assert_eq!(
        unknown(sessions.get(&a.token).await),
        UnknownReason::NoSuchSession
    );
    assert_eq!(
        unknown(sessions.update(&a.token, |_| {}).await),
        UnknownReason::NoSuchSession
    );
    assert!(
        sessions.get(&b.token).await.is_ok(),
        "{backend}: other device stays"
    );
    // Revoking by public id ("log out that device").
    assert!(sessions.revoke_id(&b.id).await.unwrap());
    assert!(sessions.get(&b.token).await.is_err());
    // A forged token is refused outright.
    assert!(matches!(
        sessions.revoke("forged").await,
        Err(SessionError::Unknown { .. })
    ));
}

async fn revoke_all_logs_a_user_out_everywhere(fx: &Fixture) {
    let Case {
        backend, sessions, ..
    } = fx.case().await;
    let ann: Vec<_> = [
        sessions.start("ann", Data::default()).await.unwrap(),
        sessions.start("ann", Data::default()).await.unwrap(),
    ]
    .into();
    let anna = sessions.start("anna", Data::default()).await.unwrap();
    let bob = sessions.start("bob", Data::default()).await.unwrap();
    assert_eq!(sessions.revoke_all("ann").await.unwrap(), 2, "{backend}");
    for s in &ann {
        assert_eq!(
            unknown(sessions.get(&s.token).await),
            UnknownReason::NoSuchSession
        );
    }
    assert!(
        sessions.get(&anna.token).await.is_ok(),
        "{backend}: prefix user untouched"
    );
    assert!(sessions.get(&bob.token).await.is_ok());
    assert_eq!(sessions.revoke_all("ann").await.unwrap(), 0);
    assert!(matches!(
        sessions.revoke_all("").await,
        Err(SessionError::User { len: 0, .. })
    ));
}

async fn idle_timeout(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        ..
    } = fx.case().await;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    // Activity keeps the session alive past the idle timeout...
    for _ in 0..4 {
        clock.advance(Duration::from_secs(IDLE - 1));
        sessions.get(&s.token).await.unwrap();
    }
    // ...inactivity ends it.
    let seen = sessions.get(&s.token).await.unwrap().last_seen;
    clock.advance(Duration::from_secs(IDLE));
    let (when, timeout) = expired(sessions.get(&s.token).await);
    assert_eq!(timeout, Timeout::Idle, "{backend}");
    assert_eq!(when, seen + Duration::from_secs(IDLE));
    // Expired sessions are removed: the next call finds nothing.
    assert_eq!(
        unknown(sessions.get(&s.token).await),
        UnknownReason::NoSuchSession
    );
    assert!(sessions.sessions_of("ann").await.unwrap().is_empty());
}

async fn absolute_timeout(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        ..
    } = fx.case().await;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    let rotated = {
        clock.advance(Duration::from_secs(IDLE / 2));
        sessions.rotate(&s.token).await.unwrap()
    };
    while clock.now_for_test() < at(ABSOLUTE - IDLE / 2) {
        clock.advance(Duration::from_secs(IDLE / 2));
        sessions.get(&rotated.token).await.unwrap();
    }
    clock.set(at(ABSOLUTE));
    let (when, timeout) = expired(sessions.get(&rotated.token).await);
    assert_eq!(
        (when, timeout),
        (at(ABSOLUTE), Timeout::Absolute),
        "{backend}"
    );
}

async fn get_writes_only_after_the_refresh_interval(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        ..
    } = fx.case().await;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    // Default refresh_after is a quarter of the idle timeout (150 s here).
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        sessions.get(&s.token).await.unwrap().last_seen,
        at(0),
        "{backend}"
    );
    clock.advance(Duration::from_secs(50));
    assert_eq!(sessions.get(&s.token).await.unwrap().last_seen, at(150));
    clock.advance(Duration::from_secs(10));
    assert_eq!(sessions.get(&s.token).await.unwrap().last_seen, at(150));
}

async fn oldest_session_is_evicted_past_the_cap(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        ..
    } = fx.case().await;
    let mut started = Vec::new();
    for _ in 0..4 {
        started.push(sessions.start("ann", Data::default()).await.unwrap());
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(
        unknown(sessions.get(&started[0].token).await),
        UnknownReason::NoSuchSession,
        "{backend}"
    );
    for s in &started[1..] {
        sessions.get(&s.token).await.unwrap();
    }
    let ids: Vec<_> = sessions
        .sessions_of("ann")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, started[1..].iter().map(|s| s.id).collect::<Vec<_>>());
}

async fn purge_removes_only_expired_sessions(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        store,
        ..
    } = fx.case().await;
    let old = sessions.start("ann", Data::default()).await.unwrap();
    clock.advance(Duration::from_secs(IDLE - 10));
    let young = sessions.start("bob", Data::default()).await.unwrap();
    clock.advance(Duration::from_secs(20));
    assert_eq!(sessions.purge_expired().await.unwrap(), 1, "{backend}");
    assert_eq!(sessions.purge_expired().await.unwrap(), 0);
    assert!(sessions.get(&young.token).await.is_ok());
    assert_eq!(
        unknown(sessions.get(&old.token).await),
        UnknownReason::NoSuchSession
    );
    // Only bob's record and index entry remain.
    let tree = store.tree("sessions").await.unwrap();
    assert_eq!(tree.len().await.unwrap(), 2);
}

async fn store_holds_no_live_token(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        store,
        ..
    } = fx.case().await;
    use base64::Engine as _;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&s.token)
        .unwrap();
    let tree = store.tree("sessions").await.unwrap();
    let dump = tree.scan(nopi::Scan::all()).await.unwrap();
    assert_eq!(dump.len(), 2, "{backend}: one record, one index entry");
    let text: Vec<u8> = dump
        .into_iter()
        .flat_map(|(k, v)| [k, v])
        .flatten()
        .collect();
    // The secret (a 43-character base64url string inside the token's JSON
    // payload) appears nowhere in the store.
    let secret = raw
        .split(|&b| b == b'"')
        .find(|part| part.len() == 43)
        .expect("token carries the secret")
        .to_vec();
    assert!(!text.windows(secret.len()).any(|w| w == secret.as_slice()));
    assert!(!text.windows(10).any(|w| s.token.as_bytes().starts_with(w)));
}

async fn tokens_from_other_keys_and_garbage_are_unknown(fx: &Fixture) {
    let Case {
        backend,
        sessions,
        clock,
        store,
        ..
    } = fx.case().await;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    let other: Sessions<Data> = Sessions::builder(ring(2))
        .clock(clock.clone())
        .build(store.tree("sessions").await.unwrap())
        .unwrap();
    assert_eq!(
        unknown(other.get(&s.token).await),
        UnknownReason::UnknownKey(key(1).id()),
        "{backend}"
    );
    for junk in ["", "x", "a=b", &"A".repeat(10_000)] {
        assert!(matches!(
            sessions.get(junk).await,
            Err(SessionError::Unknown { .. })
        ));
    }
    // Every single-character change of a real token is refused.
    for i in 0..s.token.len() {
        let mut bytes = s.token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(matches!(
            sessions.get(&tampered).await,
            Err(SessionError::Unknown { .. })
        ));
    }
}

async fn token_works_as_cookie_and_bearer(fx: &Fixture) {
    let Case {
        backend, sessions, ..
    } = fx.case().await;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    let set = sessions.set_cookie(&s);
    assert_eq!(set.value(), s.token);
    assert_eq!(
        set.max_age(),
        Some(cookie::time::Duration::seconds(ABSOLUTE as i64))
    );
    assert_eq!(set.http_only(), Some(true));
    let header = format!("lang=en; session={}", set.value());
    assert_eq!(
        sessions.get_from_header(&header).await.unwrap().id,
        s.id,
        "{backend}"
    );
    assert_eq!(
        unknown(sessions.get_from_header("lang=en").await),
        UnknownReason::Missing
    );
    let bearer = format!("Bearer {}", s.token);
    let token = easy_cookie::bearer_token(&bearer).unwrap();
    assert_eq!(sessions.get(token).await.unwrap().id, s.id);
    assert!(sessions.removal_cookie().to_string().contains("Max-Age=0"));
}

#[tokio::test]
async fn limits_on_users_and_data() {
    let store = nopi::open("memory:").await.unwrap();
    let sessions: Sessions<String> = Sessions::builder(KeyRing::new(Key::generate().unwrap()))
        .max_record_len(1024)
        .cookie(CookieSettings::new("sid").host_prefix())
        .build(store.tree("s").await.unwrap())
        .unwrap();
    assert!(matches!(
        sessions.start("", String::new()).await,
        Err(SessionError::User { len: 0, max: 256 })
    ));
    assert!(matches!(
        sessions.start(&"u".repeat(257), String::new()).await,
        Err(SessionError::User { len: 257, .. })
    ));
    assert!(matches!(
        sessions.start("ann", "x".repeat(2000)).await,
        Err(SessionError::TooLarge { max: 1024, .. })
    ));
    let s = sessions.start("ann", String::new()).await.unwrap();
    assert!(matches!(
        sessions.update(&s.token, |d| *d = "x".repeat(2000)).await,
        Err(SessionError::TooLarge { .. })
    ));
    assert_eq!(sessions.get(&s.token).await.unwrap().data, "");
    assert!(format!("{s:?}").contains("REDACTED"));
    assert!(!format!("{s:?}").contains(&s.token));
    assert!(
        sessions
            .set_cookie(&s)
            .to_string()
            .starts_with("__Host-sid=")
    );
}

#[tokio::test]
async fn builder_rejects_bad_timeouts() {
    let store = nopi::open("memory:").await.unwrap();
    let tree = store.tree("s").await.unwrap();
    let zero = Sessions::<()>::builder(ring(1))
        .idle_timeout(Duration::ZERO)
        .build(tree.clone());
    assert!(zero.is_err());
    let refresh = Sessions::<()>::builder(ring(1))
        .idle_timeout(Duration::from_secs(10))
        .refresh_after(Duration::from_secs(11))
        .build(tree.clone());
    assert!(refresh.unwrap_err().to_string().contains("refresh_after"));
    let cap = Sessions::<()>::builder(ring(1))
        .max_sessions_per_user(0)
        .build(tree);
    assert!(cap.is_err());
}

async fn sessions_survive_reopening(fx: &Fixture) {
    let clock = clock();
    let token = {
        let store = fx.open().await;
        let sessions = sessions_on(&store, &clock).await;
        let s = sessions.start("ann", Data::default()).await.unwrap();
        store.flush().await.unwrap();
        s.token
    };
    let store = fx.open().await;
    let sessions = sessions_on(&store, &clock).await;
    assert_eq!(
        sessions.get(&token).await.unwrap().user,
        "ann",
        "{}",
        fx.backend
    );
}

/// Reads a manual clock in a loop condition.
trait NowForTest {
    fn now_for_test(&self) -> std::time::SystemTime;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> std::time::SystemTime {
        easy_cookie::Clock::now(self)
    }
}

async fn concurrent_updates_are_not_lost(fx: &Fixture) {
    let Case {
        backend, sessions, ..
    } = fx.case().await;
    let s = sessions.start("ann", Data::default()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let sessions = sessions.clone();
        let token = s.token.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                sessions.update(&token, |d| d.visits += 1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        sessions.get(&s.token).await.unwrap().data.visits,
        100,
        "{backend}"
    );
}

async fn revoke_all_races_with_rotation(fx: &Fixture) {
    let Case {
        backend, sessions, ..
    } = fx.case().await;
    // Whatever the interleaving, after both finish no session of ann lives.
    for _ in 0..50 {
        let s = sessions.start("ann", Data::default()).await.unwrap();
        let (a, b) = (sessions.clone(), sessions.clone());
        let token = s.token.clone();
        let rotate = tokio::spawn(async move { a.rotate(&token).await });
        let revoke = tokio::spawn(async move { b.revoke_all("ann").await });
        let rotated = rotate.await.unwrap();
        revoke.await.unwrap().unwrap();
        // Rotating before the revocation's batch moves the session under a
        // new id, which the revocation's next round finds; rotating after it
        // finds no session. Either way the new token is dead too.
        if let Ok(new) = rotated {
            assert!(sessions.get(&new.token).await.is_err(), "{backend}");
        }
        assert!(sessions.get(&s.token).await.is_err(), "{backend}");
        assert!(sessions.sessions_of("ann").await.unwrap().is_empty());
    }
}
