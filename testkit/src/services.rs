//! Where the real services under test are.

use std::net::SocketAddr;

/// The RabbitMQ the tests use when `AMQP_URL` is unset.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The PostgreSQL the tests use when `DATABASE_URL` is unset (the same as
/// `nopi::testing::DEFAULT_DATABASE_URL`, which a test of this crate checks).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/test";

/// The RabbitMQ under test: `AMQP_URL`, by default [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// The PostgreSQL under test: `DATABASE_URL`, by default
/// [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A loopback address with a free port: free when asked, so bind it soon.
///
/// # Panics
///
/// If no loopback port can be bound.
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address")
}
