//! The chat application: a chat server (HTTP, Server-Sent Events, WebSocket,
//! TCP), its web client, and the legacy protocols — composed from the IM
//! framework's crates:
//!
//! | concern | crate |
//! |---|---|
//! | accounts, passwords | `tiny_storage` (through `aucheck`) |
//! | login tokens, the HTTP session cookie | `easy_cookie` sessions |
//! | group roles (owner, admin, member), global admins | `aucheck` scoped roles |
//! | routing, offline inboxes, history, presence fan-out | `rmq_core` (embedded broker or RabbitMQ) |
//! | groups, friends, online state, idempotency | `nopi` (sled or PostgreSQL) |
//! | transports, push, limits | `homer` |
//!
//! The wire contract is PROTOCOL.md §1; `docs/chat.md` is the guide.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = chat::Config::load()?; // flags, CHAT_* variables, --config file
//! let running = chat::Chat::start(config).await?;
//! println!("open http://{}", running.http);
//! running.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

mod api;
mod app;
mod cluster;
mod config;
mod conversations;
mod error;
mod events;
mod friends;
mod groups;
mod health;
mod legacy;
mod limits;
mod messages;
mod metrics;
mod presence;
mod session;
mod sync;
mod users;
mod web;
pub mod wire;

pub use app::{Chat, Running, StartError};
pub use error::ChatError;

/// The legacy wire protocols as homer protocols, to mount on a listener of
/// your own server, or to fuzz (see `scripts/fuzz`). The chat server itself
/// mounts them with `--msgid-json`, `--type-data`, `--token-json` and
/// `--thrift`.
pub mod protocols {
    use homer::MakeProtocol;

    /// The muduo course's msgid-json protocol (see `docs/legacy-protocols.md`).
    pub fn msgid_json() -> impl MakeProtocol {
        crate::legacy::msgid_json::make()
    }

    /// The Go course's type-data protocol (see `docs/legacy-protocols.md`).
    pub fn type_data() -> impl MakeProtocol {
        crate::legacy::type_data::make()
    }

    /// The C++ cluster-chat-server's token-json protocol (see
    /// `docs/legacy-protocols.md`).
    pub fn token_json() -> impl MakeProtocol {
        crate::legacy::token_json::make()
    }

    /// The Python Thrift chat room's protocol (see `docs/legacy-protocols.md`).
    pub fn thrift() -> impl MakeProtocol {
        crate::legacy::thrift::make()
    }
}
pub use config::{Config, ConfigError, Listen};
pub use wire::{GroupEvent, LOBBY, Message, Target};
