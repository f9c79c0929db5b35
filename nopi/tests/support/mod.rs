//! Fixtures: a fresh, isolated store of each backend, from `nopi::testing`.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]

pub(crate) use nopi::testing::TempStore as Fixture;

pub(crate) async fn memory() -> Fixture {
    Fixture::memory()
}

pub(crate) async fn sled() -> Fixture {
    Fixture::sled().expect("temp dir")
}

#[cfg(feature = "postgres")]
pub(crate) async fn postgres() -> Fixture {
    Fixture::postgres()
}
