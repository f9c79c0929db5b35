//! The composition: every crate of the family wired into one chat service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aucheck::AuthManager;
use easy_cookie::{Key, KeyRing, Sessions};
use homer::{ConnId, Homer, Hub};
use nopi::{Collection, Store, Tree};
use rmq_core::conversation::{Conversations, Fanout, InProcessFanout, Retention};
use rmq_core::{AmqpBroker, Broker, LocalBroker, RoomId};
use serde::{Deserialize, Serialize};
use tiny_storage::{Attribute, UserModel, Validator};

use crate::config::Config;
use crate::events::UserEvents;
use crate::limits::{Abuse, LoginBackoff};
use crate::metrics::{HomerObserver, Metrics};
use crate::wire::{LOBBY, Role};

/// Permissions, as declared to aucheck.
pub(crate) mod perm {
    pub(crate) const GROUP_CREATE: &str = "group.create";
    pub(crate) const GROUP_POST: &str = "group.post";
    pub(crate) const GROUP_KICK: &str = "group.kick";
    pub(crate) const GROUP_PROMOTE: &str = "group.promote";
    /// Delete other members' messages.
    pub(crate) const GROUP_DELETE: &str = "group.delete";
    pub(crate) const ALL: [&str; 5] = [
        GROUP_CREATE,
        GROUP_POST,
        GROUP_KICK,
        GROUP_PROMOTE,
        GROUP_DELETE,
    ];
}

/// The shared permission groups every user is in one of.
pub(crate) const USERS: &str = "users";
pub(crate) const ADMINS: &str = "admins";

/// A group's document in the `chat.inner.groups` collection (id = the group's name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupDoc {
    pub(crate) name: String,
    /// `tiny_storage::name::fold` of the name, under a unique index (absent
    /// in groups created before names were folded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) folded: Option<String>,
    #[serde(default)]
    pub(crate) desc: String,
    /// Legacy clients address groups by number.
    pub(crate) number: u64,
    pub(crate) owner: String,
    pub(crate) created: u64,
}

/// What a session keeps server-side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionData {
    pub(crate) number: u64,
    /// The device the session belongs to (sessions from before devices
    /// resume the default device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<String>,
}

/// The chat service: state shared by every API handler. Cheap to clone.
///
/// It holds homer's [`Hub`] (connections and topics), not the server: the
/// handlers registered on the server hold a `Chat`, so the server owning
/// the handlers and the handlers owning the server would keep each other
/// alive. [`Running`] owns the server.
#[derive(Clone)]
pub struct Chat {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("node", &self.inner.node)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) node: String,
    pub(crate) store: Store,
    pub(crate) auth: AuthManager,
    pub(crate) sessions: Sessions<SessionData>,
    pub(crate) broker: Arc<dyn Broker>,
    /// The same broker when it is RabbitMQ, for its connection state.
    pub(crate) amqp: Option<AmqpBroker>,
    /// Every conversation's log (lobby, groups, direct), with the read
    /// positions and per-device cursors; fanned out live through RabbitMQ
    /// when the broker is, in process otherwise.
    pub(crate) log: Conversations,
    /// What reaches every login of a user and belongs to no log (see
    /// `events`), on the same fan-out as the logs.
    pub(crate) events: UserEvents,
    pub(crate) groups: Collection<GroupDoc>,
    pub(crate) friends: Tree,
    pub(crate) sent: Tree,
    pub(crate) online: Tree,
    /// Every node's last heartbeat (see `cluster`).
    pub(crate) nodes: Tree,
    /// Since when (ms) this node has been writing its heartbeat without a
    /// failure (`u64::MAX` while it fails); it judges other nodes only after
    /// [`crate::cluster::STALE`] of it.
    pub(crate) healthy_since: std::sync::atomic::AtomicU64,
    pub(crate) meta: Tree,
    /// Every connection of this node, and the topics they subscribe to.
    pub(crate) hub: Hub,
    pub(crate) abuse: Abuse,
    pub(crate) logins: LoginBackoff,
    /// The connections of each user's logins on this node (a user may be
    /// logged in on several devices).
    pub(crate) local: Mutex<HashMap<String, Vec<ConnId>>>,
    /// What `/metrics` reports.
    pub(crate) metrics: Arc<Metrics>,
    /// The last readiness probe of the store (`health`).
    pub(crate) last_probe: crate::health::LastProbe,
    /// Set when graceful shutdown begins: `/readyz` answers 503 from then on.
    pub(crate) draining: AtomicBool,
    /// The inbox pumps of the logins on this node (`session`), waited for
    /// at shutdown.
    pub(crate) pumps: tokio_util::task::TaskTracker,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open store {url}: {source}")]
    Store {
        /// The store URL, its password replaced by `***`
        /// ([`nopi::redact_url`]).
        url: String,
        /// What went wrong.
        source: nopi::Error,
    },
    /// The broker could not be reached.
    #[error("cannot start the message broker: {0}")]
    Broker(#[from] rmq_core::Error),
    /// Accounts or permissions could not be set up.
    #[error("cannot set up accounts and permissions: {0}")]
    Auth(String),
    /// A listener could not bind.
    #[error("cannot listen: {0}")]
    Listen(#[from] homer::Error),
    /// The TLS certificate or key could not be used.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] homer::TlsError),
    /// A server setting (a connection limit, a timeout) is out of range.
    #[error("invalid server settings: {0}")]
    Homer(#[from] homer::BuildError),
    /// Anything else at start.
    #[error("{0}")]
    Other(String),
}

/// A running server: where it listens, and how to stop it.
#[derive(Debug)]
pub struct Running {
    /// The service.
    pub chat: Chat,
    homer: Homer,
    /// HTTP, SSE, WebSocket and the web client.
    pub http: SocketAddr,
    /// Native JSON lines over TCP.
    pub tcp: SocketAddr,
    /// Legacy msgid-json clients, if enabled.
    pub msgid_json: Option<SocketAddr>,
    /// Legacy type-data clients, if enabled.
    pub type_data: Option<SocketAddr>,
    /// Legacy token-json clients, if enabled.
    pub token_json: Option<SocketAddr>,
    /// Legacy Thrift chat room clients, if enabled.
    pub thrift: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The homer server all transports share: mount more APIs or listeners
    /// on it, or connect in process with `homer::testing`.
    pub fn homer(&self) -> &Homer {
        &self.homer
    }

    /// Shut down gracefully. First `/readyz` answers 503 while the node
    /// goes on serving everything for `--shutdown-drain-ms` (so a load
    /// balancer that probes it sends new clients elsewhere); then stop
    /// accepting, let calls in flight finish for up to `grace`, close every
    /// connection (their users go offline) and stop background work.
    pub async fn shutdown(self, grace: Duration) {
        self.chat.inner.draining.store(true, Ordering::Release);
        let drain = Duration::from_millis(self.chat.inner.config.shutdown_drain_ms);
        if !drain.is_zero() {
            tracing::info!("not ready; draining for {drain:?} before closing connections");
            tokio::time::sleep(drain).await;
        }
        self.homer.shutdown(grace).await;
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await; // each has dropped its `Chat` once this returns
        }
        // Every login ended with its connection, which stopped its pump.
        let inner = &self.chat.inner;
        inner.pumps.close();
        if tokio::time::timeout(grace, inner.pumps.wait())
            .await
            .is_err()
        {
            tracing::warn!("inbox pumps still running after shutdown");
        }
        inner.broker.close().await;
        if let Err(e) = inner.store.flush().await {
            tracing::warn!(error = %e, "flushing the store at shutdown");
        }
        // Dropping the last `Chat` and the server closes the store and the
        // broker, and stops the permission refresh.
    }
}

impl Chat {
    /// Open the store and the broker, set up accounts, sessions and
    /// permissions, register every API and start listening.
    pub async fn start(config: Config) -> Result<Running, StartError> {
        let store = nopi::open(&config.store)
            .await
            .map_err(|source| StartError::Store {
                url: nopi::redact_url(&config.store),
                source,
            })?;
        // At least 100 ms, also when it comes from a config file.
        let broker_timeout = Duration::from_millis(config.broker_timeout_ms.max(100));
        let amqp = match &config.amqp {
            Some(url) => Some(
                AmqpBroker::builder(url.clone())
                    .connection_name(format!("chat-server {}", config.node_id()))
                    .namespace(config.amqp_namespace.clone())
                    .operation_timeout(broker_timeout)
                    // Retry often enough that a returning RabbitMQ is found
                    // well within the time a waiting call allows.
                    .reconnect_backoff(
                        Duration::from_millis(100),
                        (broker_timeout / 3).max(Duration::from_millis(100)),
                    )
                    .connect()
                    .await?,
            ),
            None => None,
        };
        let broker: Arc<dyn Broker> = match &amqp {
            Some(b) => Arc::new(b.clone()),
            None => Arc::new(LocalBroker::builder(store.clone()).build().await?),
        };
        let (chat, homer) = Chat::compose(config, store, broker, amqp).await?;
        chat.ensure_lobby().await?;
        chat.migrate_to_logs()
            .await
            .map_err(|e| StartError::Other(format!("copying memberships into the logs: {e}")))?;
        crate::cluster::beat(&chat)
            .await
            .map_err(|e| StartError::Other(format!("writing the node heartbeat: {e}")))?;
        crate::cluster::forget_previous_run(&chat)
            .await
            .map_err(|e| StartError::Other(format!("clearing stale online entries: {e}")))?;
        crate::api::register(&homer, &chat);
        crate::health::register(&homer, &chat);
        crate::metrics::register(&homer, &chat);
        let c = &chat.inner.config;
        let (http, tcp) = match (&c.tls_cert, &c.tls_key) {
            (None, None) => (
                homer.listen_http(c.http).await?,
                homer.listen_tcp(c.tcp, homer::json_lines()).await?,
            ),
            (Some(cert), Some(key)) => {
                let tls = homer::Tls::from_pem_files(cert, key)?;
                (
                    homer.listen_https(c.http, tls.clone()).await?,
                    homer
                        .listen_tcp_tls(c.tcp, homer::json_lines(), tls)
                        .await?,
                )
            }
            _ => {
                return Err(StartError::Other(
                    "--tls-cert and --tls-key go together: give both or neither".into(),
                ));
            }
        };
        let legacy = crate::legacy::start(&homer, &chat).await?;
        let (msgid_json, type_data) = (legacy.msgid_json, legacy.type_data);
        let token_json = legacy.token_json;
        let thrift = legacy.thrift;
        let mut tasks = vec![
            tokio::spawn(crate::presence::run(chat.clone())),
            tokio::spawn(crate::session::housekeeping(chat.clone())),
            tokio::spawn(crate::cluster::run(chat.clone())),
        ];
        tasks.extend(legacy.tasks);
        Ok(Running {
            chat,
            homer,
            http,
            tcp,
            msgid_json,
            type_data,
            token_json,
            thrift,
            tasks,
        })
    }

    async fn compose(
        config: Config,
        store: Store,
        broker: Arc<dyn Broker>,
        amqp: Option<AmqpBroker>,
    ) -> Result<(Chat, Homer), StartError> {
        let other =
            |what: &str, e: &dyn std::fmt::Display| StartError::Other(format!("{what}: {e}"));
        let nopi_err = |e: nopi::Error| StartError::Store {
            url: nopi::redact_url(&config.store),
            source: e,
        };
        let meta = store.tree("chat.inner.meta").await.map_err(nopi_err)?;
        let model = UserModel::builder()
            .attribute(
                Attribute::user_name("name").validate(Validator::custom("chat-name", |v| match v
                    .as_text()
                {
                    Some(name) => crate::users::check_name(name),
                    None => Err("a name is text".to_owned()),
                })),
            )
            .password("password")
            .number("number")
            .created("created")
            .attribute(
                Attribute::text("nickname")
                    .default_with(|u| u.get("name").cloned())
                    .validate(Validator::length(1..=64)),
            )
            .build()
            .map_err(|e| other("user model", &e))?;
        let auth = AuthManager::builder(&store)
            .permissions(perm::ALL)
            .role(Role::Owner.as_str(), perm::ALL)
            .role(
                Role::Admin.as_str(),
                [perm::GROUP_POST, perm::GROUP_KICK, perm::GROUP_DELETE],
            )
            .role(Role::Member.as_str(), [perm::GROUP_POST])
            .group(USERS, [perm::GROUP_CREATE])
            .group(ADMINS, ["*"])
            .user_model(model)
            .build()
            .await
            .map_err(|e| StartError::Auth(e.to_string()))?;
        let key = cookie_key(&meta).await.map_err(nopi_err)?;
        let ring = KeyRing::from_keys([key]).map_err(|e| other("key ring", &e))?;
        let sessions = Sessions::<SessionData>::builder(ring)
            .idle_timeout(Duration::from_secs(config.session_idle_secs))
            .absolute_timeout(Duration::from_secs(
                config.session_idle_secs.max(30 * 24 * 3600),
            ))
            // A session is a device; `login_with_password` signs the oldest
            // out before a new one would pass the limit.
            .max_sessions_per_user(usize::from(config.max_devices))
            .build(store.tree("chat.inner.sessions").await.map_err(nopi_err)?)
            .map_err(|e| other("sessions", &e))?;
        let groups = store
            .collection::<GroupDoc>("chat.inner.groups")
            .unique("number")
            .unique("folded")
            .open()
            .await
            .map_err(nopi_err)?;
        // One fan-out for the logs' live entries and the users' events.
        let fanout: Arc<dyn Fanout> = match &amqp {
            Some(amqp) => Arc::new(amqp.clone()),
            None => Arc::new(InProcessFanout::new()),
        };
        let log = Conversations::builder(&store)
            .max_body_size(config.max_text)
            .fanout(fanout.clone())
            .build()
            .await?;
        let events = UserEvents::start(fanout).await?;
        let metrics = Arc::new(Metrics::new());
        let builder = Homer::builder().observer(HomerObserver(metrics.clone()));
        let builder = match &config.web_dir {
            Some(dir) => builder.static_dir(dir.clone()),
            None => builder.static_files(crate::web::files()),
        };
        let builder = match config.connection_rate_per_ip {
            0 => builder.no_connection_rate_per_ip(),
            rate => builder.connection_rate_per_ip(rate, config.connection_burst_per_ip),
        };
        let homer = builder
            .max_connections(config.max_connections)
            .max_connections_per_ip(config.max_connections_per_ip)
            .trusted_proxies(config.trusted_proxy.iter().copied())
            .proxy_protocol(config.proxy_protocol)
            .max_sessions(config.max_connections)
            // Native connections; the legacy protocols set their own
            // (`legacy::IDLE`).
            .idle_timeout(Duration::from_secs(config.idle_timeout_secs))
            .first_message_timeout(Duration::from_secs(config.first_message_timeout_secs))
            .rate_limit(100, 200)
            // One call at a time per connection: a client's messages are
            // routed in the order it sent them, and a login sent right after
            // its register sees the account.
            .max_in_flight(1)
            .build()?;
        let inner = Inner {
            node: config.node_id(),
            abuse: Abuse::new(&config),
            logins: LoginBackoff::default(),
            friends: store.tree("chat.inner.friends").await.map_err(nopi_err)?,
            sent: store.tree("chat.inner.sent").await.map_err(nopi_err)?,
            online: store.tree("chat.inner.online").await.map_err(nopi_err)?,
            nodes: store.tree("chat.inner.nodes").await.map_err(nopi_err)?,
            meta,
            config,
            store,
            auth,
            sessions,
            broker,
            amqp,
            log,
            events,
            groups,
            hub: homer.hub().clone(),
            local: Mutex::new(HashMap::new()),
            metrics,
            last_probe: crate::health::LastProbe::default(),
            draining: AtomicBool::new(false),
            pumps: tokio_util::task::TaskTracker::new(),
            healthy_since: std::sync::atomic::AtomicU64::new(crate::cluster::now_ms()),
        };
        let chat = Chat {
            inner: Arc::new(inner),
        };
        Ok((chat, homer))
    }

    async fn ensure_lobby(&self) -> Result<(), StartError> {
        let lobby = RoomId::new(LOBBY).map_err(|e| StartError::Other(e.to_string()))?;
        self.inner.broker.create_room(&lobby).await?;
        self.inner.log.create_room(&lobby, Retention::All).await?;
        Ok(())
    }
}

/// The key that signs session tokens: made once, kept in the store, so
/// tokens survive restarts and every node of a cluster accepts them.
async fn cookie_key(meta: &Tree) -> nopi::Result<Key> {
    const K: &str = "cookie-key";
    loop {
        if let Some(stored) = meta.get(K).await? {
            if let Some(key) = std::str::from_utf8(&stored)
                .ok()
                .and_then(|s| Key::from_base64(s).ok())
            {
                return Ok(key);
            }
            tracing::warn!(
                "stored cookie key is unreadable; making a new one (sessions are logged out)"
            );
            meta.remove(K).await?;
            continue;
        }
        let fresh = Key::generate().map_err(|e| nopi::Error::Unavailable {
            backend: "os random",
            source: e.to_string().into(),
        })?;
        let encoded = fresh.expose_base64();
        if meta
            .compare_and_swap(K, None, Some(encoded.as_bytes()))
            .await?
            .is_ok()
        {
            return Ok(fresh);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_that_cannot_be_opened_is_named_without_its_password() {
        // Nothing listens on port 1: opening the store fails at once.
        let config = Config::load_from([
            "chat-server",
            "--store",
            "postgres://chat:hunter2@127.0.0.1:1/chat",
        ])
        .unwrap();
        let Err(err) = Chat::start(config).await else {
            panic!("a store on port 1 opened");
        };
        assert!(matches!(err, StartError::Store { .. }), "{err:?}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(
                shown.contains("postgres://chat:***@127.0.0.1:1/chat"),
                "{shown}"
            );
        }
    }
}
