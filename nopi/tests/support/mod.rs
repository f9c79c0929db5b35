//! Fixtures: a fresh, isolated store of each backend, from `nopi::testing`.
#![allow(dead_code)]

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
