//! The workspace's shared test kit: what the integration tests and
//! benchmarks of several crates need and no library should carry.
//!
//! This crate is internal (`publish = false`) and only ever a
//! `[dev-dependencies]` entry. It depends on no crate of the workspace, so
//! any of them can use it, nopi included.
//!
//! | item | what it is for |
//! |---|---|
//! | [`FaultProxy`] | a TCP proxy in front of PostgreSQL or RabbitMQ that a test cuts and restores: real outages without touching the shared server |
//! | [`amqp_url`], [`database_url`] | the RabbitMQ and PostgreSQL under test (`AMQP_URL`, `DATABASE_URL`, or the local defaults) |
//! | [`ready`] | the one machine-readable `READY {json}` line a server prints once every listener is bound, and starting a process until it prints it |
//! | [`cases`] | checks that a conformance suite's case list names every case in its file |
//! | [`lock`] | a poisoned mutex is still usable: a test that panicked holding it already failed |
//!
//! The storage-level fault injection lives with the storage crate:
//! `nopi::testing::FaultyBackend` (feature `testing`).
//!
//! # Example
//!
//! ```
//! use testkit::{FaultProxy, ready::Ready};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = FaultProxy::start(&server.local_addr()?.to_string()).await?;
//! proxy.cut(); // every connection through it dies, new ones are refused
//! assert!(!proxy.is_up());
//! proxy.restore();
//!
//! let ready = Ready::parse(r#"READY {"http":"127.0.0.1:8080"}"#).expect("a READY line")?;
//! assert_eq!(ready.addr("http").port(), 8080);
//! assert!(testkit::amqp_url().starts_with("amqp://"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! # Crate features
//!
//! None.

pub mod cases;
mod net;
mod proxy;
pub mod ready;
mod services;
mod sync;

pub use net::connect_from;
pub use proxy::FaultProxy;
pub use services::{DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL, amqp_url, database_url, free_port};
pub use sync::lock;

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_database_is_the_one_nopi_testing_uses() {
        assert_eq!(
            crate::DEFAULT_DATABASE_URL,
            nopi::testing::DEFAULT_DATABASE_URL
        );
    }
}
