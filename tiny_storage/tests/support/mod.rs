//! Shared helpers for the integration tests: stores on every backend, a
//! chat-like user model, and fast (insecure) hashing.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]
#![expect(
    unreachable_pub,
    reason = "a private test module; `pub` reads as \"shared with the test files\""
)]

use nopi::Store;
use nopi::testing::TempStore;
use tempfile::TempDir;
use tiny_storage::{Attribute, PasswordParams, UserModel, UserModelBuilder, Users, Validator};

/// A store and whatever must live as long as it (the sled directory).
pub struct TestStore {
    pub store: Store,
    _guard: Option<Box<dyn Send>>,
}

/// The backends every account test runs on; PostgreSQL with the `postgres`
/// feature (the server at `DATABASE_URL`, each test in a fresh schema).
pub enum Backend {
    Memory,
    Sled,
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Backend {
    pub async fn open(self) -> TestStore {
        let temp = match self {
            Backend::Memory => TempStore::memory(),
            Backend::Sled => TempStore::sled().expect("temporary directory"),
            #[cfg(feature = "postgres")]
            Backend::Postgres => TempStore::postgres(),
        };
        let store = temp.open().await.unwrap_or_else(|e| {
            panic!(
                "store {}: {e}; is PostgreSQL at DATABASE_URL running? (scripts/test starts it)",
                temp.url()
            )
        });
        TestStore {
            store,
            _guard: Some(Box::new(temp)),
        }
    }
}

/// Open the sled store in `dir` (nopi waits for a just-dropped handle of
/// the same directory to release sled's lock).
pub async fn open_sled(dir: &TempDir) -> Store {
    let url = format!("sled:{}", dir.path().display());
    nopi::open(&url)
        .await
        .unwrap_or_else(|e| panic!("sled store in {url}: {e}"))
}

/// Generate one `#[tokio::test]` per backend for each listed
/// `async fn name(store: &Store)` of the test file.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::support::Backend::Memory.open().await;
                    super::$name(&s.store).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::support::Backend::Postgres.open().await;
                    super::$name(&s.store).await;
                }
            )*
        }
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = super::support::Backend::Sled.open().await;
                    super::$name(&s.store).await;
                }
            )*
        }
    };
}

/// The chat application's model: name, password, number (legacy log-in),
/// creation time, a nickname defaulting to the name, an optional e-mail.
pub fn chat_model_builder() -> UserModelBuilder {
    UserModel::builder()
        .attribute(
            Attribute::user_name("name")
                .validate(Validator::name())
                .validate(Validator::length(3..)),
        )
        .attribute(Attribute::password("password").validate(Validator::length(6..)))
        .attribute(Attribute::number("number").first_number(10_000))
        .created("created")
        .attribute(
            Attribute::text("nickname")
                .default_with(|u| u.get("name").cloned())
                .validate(Validator::non_empty())
                .validate(Validator::length(..=32)),
        )
        .attribute(Attribute::text("email").validate(Validator::email()))
        .attribute(
            Attribute::int("level")
                .default(1)
                .validate(Validator::range(0..=99)),
        )
}

pub fn chat_model() -> UserModel {
    chat_model_builder().build().expect("valid model")
}

/// Users of `model` in `store` with cheap hashing, so tests stay fast.
pub async fn fast_users(store: &Store, model: UserModel) -> Users {
    Users::builder(store, model)
        .password_params(PasswordParams::insecure_for_tests())
        .open()
        .await
        .expect("open users")
}

/// The stored PHC string of `name`'s password, read straight from the
/// collection (the crate never returns it).
pub async fn stored_hash(store: &Store, name: &str) -> Option<String> {
    let raw = store
        .collection::<serde_json::Value>("users")
        .unique("number")
        .open()
        .await
        .expect("raw collection");
    let doc = raw.get(name).await.expect("read raw")?;
    doc.get("password")?.as_str().map(str::to_owned)
}
