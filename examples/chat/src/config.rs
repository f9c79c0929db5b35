//! The server's configuration: flags, environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;

/// Configuration of one chat-server node.
///
/// Every option can be given as a flag, as the environment variable shown in
/// `--help`, or as the same name (with `_` for `-`) in the TOML file named by
/// `--config`.
///
/// Its `Debug` shows the store and RabbitMQ URLs with their passwords
/// replaced by `***` ([`nopi::redact_url`]).
#[derive(Clone, Parser, Deserialize)]
#[command(
    name = "chat-server",
    version,
    about = "The chat server: HTTP, WebSocket, SSE and TCP, embedded or clustered"
)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Config {
    /// A TOML file with any of these options; flags and environment win over it.
    #[arg(long, env = "CHAT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address for HTTP, Server-Sent Events, WebSocket and the web client.
    #[arg(long, env = "CHAT_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,

    /// Address for the native protocol over TCP (JSON lines).
    #[arg(long, env = "CHAT_TCP", default_value = "127.0.0.1:7000")]
    pub tcp: SocketAddr,

    /// Address for legacy "msgid-json" clients (PROTOCOL.md §2); `off` disables it.
    #[arg(long, env = "CHAT_MSGID_JSON", default_value = "127.0.0.1:6000")]
    pub msgid_json: Listen,

    /// Address for legacy "type-data" clients (PROTOCOL.md §3); `off` disables it.
    #[arg(long, env = "CHAT_TYPE_DATA", default_value = "127.0.0.1:8889")]
    pub type_data: Listen,

    /// Address for legacy "token-json" clients (PROTOCOL.md §5); `off` disables it.
    #[arg(long, env = "CHAT_TOKEN_JSON", default_value = "127.0.0.1:9998")]
    pub token_json: Listen,
    /// Address for legacy Thrift chat room clients (PROTOCOL.md §4); `off` disables it.
    #[arg(long, env = "CHAT_THRIFT", default_value = "127.0.0.1:9999")]
    pub thrift: Listen,

    /// Where everything is stored: `sled:<dir>` (embedded) or `postgres://...` (cluster).
    #[arg(long, env = "CHAT_STORE", default_value = "sled:./data")]
    pub store: String,

    /// RabbitMQ for routing (`amqp://user:pass@host:port/vhost`); without it the
    /// embedded in-process broker is used.
    #[arg(long, env = "CHAT_AMQP")]
    pub amqp: Option<String>,

    /// Prefix of every RabbitMQ exchange and queue of this chat (with `--amqp`);
    /// every node of one cluster uses the same.
    #[arg(long, env = "CHAT_AMQP_NAMESPACE", default_value = "chat")]
    pub amqp_namespace: String,

    /// How long one RabbitMQ operation of a call (a publish and its
    /// confirmation, a subscription) may take, waiting for a lost RabbitMQ to
    /// come back, before the call is answered 503 `unavailable`
    /// (milliseconds, at least 100; with `--amqp`).
    #[arg(long, env = "CHAT_BROKER_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub broker_timeout_ms: u64,

    /// This node's name in a cluster (defaults to the HTTP address).
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,

    /// Serve the web client from this directory instead of the copy built
    /// into the binary (for editing the UI without rebuilding).
    #[arg(long, env = "CHAT_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Largest message text, in bytes.
    #[arg(long, env = "CHAT_MAX_TEXT", default_value_t = 4096)]
    pub max_text: usize,

    /// Messages a user may send per second (sustained).
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = 20)]
    pub send_rate: u32,

    /// Messages a user may send in a burst.
    #[arg(long, env = "CHAT_SEND_BURST", default_value_t = 50)]
    pub send_burst: u32,

    /// Read receipts go to the other members of groups of at most this many
    /// members (direct conversations always; the lobby never); 0 turns them
    /// off for groups.
    #[arg(long, env = "CHAT_RECEIPTS_MAX_GROUP", default_value_t = 20)]
    pub receipts_max_group: usize,

    /// Most simultaneous connections over all transports.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// A PEM certificate chain (the server's certificate first): with
    /// `--tls-key`, the HTTP listener serves https and wss and the native TCP
    /// listener speaks TLS. The legacy listeners stay plain text (their
    /// clients do not speak TLS).
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// A TCP or WebSocket connection that sends nothing this long after it
    /// opened is closed (seconds): one that never logs in does not hold a
    /// slot for the whole idle timeout. Long enough for a person at a login
    /// screen (both clients connect before the user logs in).
    #[arg(long, env = "CHAT_FIRST_MESSAGE_TIMEOUT_SECS", default_value_t = 300)]
    pub first_message_timeout_secs: u64,

    /// A native TCP or WebSocket connection that sends nothing for this long
    /// is closed (seconds; WebSocket pongs count). The legacy protocols keep
    /// 30 minutes whatever this says: their clients never send a heartbeat.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT_SECS", default_value_t = 1800)]
    pub idle_timeout_secs: u64,

    /// Accounts one client address may create per hour (all of them at once
    /// if need be); more get 429 with the time to wait.
    #[arg(long, env = "CHAT_REGISTRATIONS_PER_IP_PER_HOUR", default_value_t = 20)]
    pub registrations_per_ip_per_hour: u32,

    /// Failed logins one client address may make per minute over all
    /// accounts (password spraying); then its logins get 429.
    #[arg(
        long,
        env = "CHAT_FAILED_LOGINS_PER_IP_PER_MINUTE",
        default_value_t = 30
    )]
    pub failed_logins_per_ip_per_minute: u32,

    /// Registrations hashing a password at once (an argon2id hash takes
    /// 19 MiB and most of a core); more wait up to 2 s, then get 429. Keep
    /// it below the core count so logins keep a share of the CPU during a
    /// flood.
    #[arg(long, env = "CHAT_REGISTRATIONS_IN_FLIGHT", default_value_t = 1)]
    pub registrations_in_flight: usize,

    /// Most simultaneous connections from one client address; more are
    /// closed before any handshake.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    pub max_connections_per_ip: usize,

    /// New connections one client address may open per second, on average
    /// (0: no limit); faster ones are closed before any handshake.
    #[arg(long, env = "CHAT_CONNECTION_RATE_PER_IP", default_value_t = 100)]
    pub connection_rate_per_ip: u32,

    /// New connections one client address may open at once after a quiet
    /// period.
    #[arg(long, env = "CHAT_CONNECTION_BURST_PER_IP", default_value_t = 500)]
    pub connection_burst_per_ip: u32,

    /// Addresses of the load balancers in front of this node (repeat the
    /// flag, or separate with commas). Their connections are not limited by
    /// their own address; with `--proxy-protocol` their TCP connections name
    /// the client in a PROXY protocol header.
    #[arg(
        long = "trusted-proxy",
        env = "CHAT_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub trusted_proxy: Vec<IpAddr>,

    /// TCP listeners (native and legacy) expect a PROXY protocol v1 or v2
    /// header on connections from a `--trusted-proxy`: the client it names
    /// is the peer, stamped on messages and limited per address.
    #[arg(long, env = "CHAT_PROXY_PROTOCOL")]
    #[serde(default)]
    pub proxy_protocol: bool,

    /// At shutdown (Ctrl-C, SIGTERM), how long `/readyz` answers 503 while
    /// the node still serves everything, before it stops listening and
    /// closes connections (milliseconds): set it to what the load balancer
    /// needs to see a failed probe, so no new client is sent to a node that
    /// is going away.
    #[arg(long, env = "CHAT_SHUTDOWN_DRAIN_MS", default_value_t = 0)]
    pub shutdown_drain_ms: u64,

    /// A session (its token) not used for this long ends (seconds, at least
    /// 1): the client logs in again. Sessions end 30 days after their login
    /// however active (or after this, if longer).
    #[arg(long, env = "CHAT_SESSION_IDLE_SECS", default_value_t = 7 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_idle_secs: u64,

    /// Most devices a user may be logged in on at once (1 to 1000); a login
    /// on one more signs the least recently logged-in device out.
    #[arg(long, env = "CHAT_MAX_DEVICES", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_devices: u16,

    /// One login per user: a new login signs out every other device (the
    /// behaviour before devices), instead of only the same device's.
    #[arg(long, env = "CHAT_SINGLE_SESSION")]
    #[serde(default)]
    pub single_session: bool,

    /// Log filter, as in `RUST_LOG` (e.g. `info`, `chat=debug,homer=info`).
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    pub log: String,
}

/// A listen address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" | "none" | "" => Ok(Listen(None)),
            addr => addr.parse().map(|a| Listen(Some(a))),
        }
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these options.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: Box<toml::de::Error>,
    },
    /// Flags or environment variables are invalid.
    #[error(transparent)]
    Args(#[from] clap::Error),
}

impl Config {
    /// The configuration from the process's arguments, environment and config file.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// The configuration from `args` (the first is the program name), the
    /// environment and the config file.
    pub fn load_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Config::command().try_get_matches_from(args)?;
        let cli = Config::from_arg_matches(&matches)?;
        match cli.config.clone() {
            Some(path) => cli.merge_file(&matches, &path),
            None => Ok(cli),
        }
    }

    /// Fill every option left at its default from the TOML file at `path`.
    fn merge_file(self, matches: &ArgMatches, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: toml::Table = text.parse().map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        // Start from the file over the defaults, then put back what flags and
        // the environment set explicitly.
        let mut merged = toml::Table::try_from(&self).unwrap_or_default();
        let ids: Vec<String> = Config::command()
            .get_arguments()
            .map(|a| a.get_id().as_str().to_owned())
            .collect();
        for (k, v) in file {
            // Unknown keys are left for `deny_unknown_fields` to name.
            let explicit = ids.contains(&k)
                && matches!(
                    matches.value_source(&k),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                );
            if !explicit {
                merged.insert(k, v);
            }
        }
        let mut config: Config = merged.try_into().map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        config.config = Some(path.to_owned());
        Ok(config)
    }

    /// This node's name.
    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| self.http.to_string())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field, the URLs without their passwords. Destructured so a
        // new field cannot be left out unnoticed.
        let Config {
            config,
            http,
            tcp,
            msgid_json,
            type_data,
            token_json,
            thrift,
            store,
            amqp,
            amqp_namespace,
            broker_timeout_ms,
            node_id,
            web_dir,
            max_text,
            send_rate,
            send_burst,
            receipts_max_group,
            max_connections,
            tls_cert,
            tls_key,
            first_message_timeout_secs,
            idle_timeout_secs,
            registrations_per_ip_per_hour,
            failed_logins_per_ip_per_minute,
            registrations_in_flight,
            max_connections_per_ip,
            connection_rate_per_ip,
            connection_burst_per_ip,
            trusted_proxy,
            proxy_protocol,
            shutdown_drain_ms,
            session_idle_secs,
            max_devices,
            single_session,
            log,
        } = self;
        f.debug_struct("Config")
            .field("config", config)
            .field("http", http)
            .field("tcp", tcp)
            .field("msgid_json", msgid_json)
            .field("type_data", type_data)
            .field("token_json", token_json)
            .field("thrift", thrift)
            .field("store", &nopi::redact_url(store))
            .field("amqp", &amqp.as_deref().map(nopi::redact_url))
            .field("amqp_namespace", amqp_namespace)
            .field("broker_timeout_ms", broker_timeout_ms)
            .field("node_id", node_id)
            .field("web_dir", web_dir)
            .field("max_text", max_text)
            .field("send_rate", send_rate)
            .field("send_burst", send_burst)
            .field("receipts_max_group", receipts_max_group)
            .field("max_connections", max_connections)
            .field("tls_cert", tls_cert)
            .field("tls_key", tls_key)
            .field("first_message_timeout_secs", first_message_timeout_secs)
            .field("idle_timeout_secs", idle_timeout_secs)
            .field(
                "registrations_per_ip_per_hour",
                registrations_per_ip_per_hour,
            )
            .field(
                "failed_logins_per_ip_per_minute",
                failed_logins_per_ip_per_minute,
            )
            .field("registrations_in_flight", registrations_in_flight)
            .field("max_connections_per_ip", max_connections_per_ip)
            .field("connection_rate_per_ip", connection_rate_per_ip)
            .field("connection_burst_per_ip", connection_burst_per_ip)
            .field("trusted_proxy", trusted_proxy)
            .field("proxy_protocol", proxy_protocol)
            .field("shutdown_drain_ms", shutdown_drain_ms)
            .field("session_idle_secs", session_idle_secs)
            .field("max_devices", max_devices)
            .field("single_session", single_session)
            .field("log", log)
            .finish()
    }
}

impl serde::Serialize for Config {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let listen = |l: &Listen| l.0.map_or("off".to_owned(), |a| a.to_string());
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("http", &self.http.to_string())?;
        m.serialize_entry("tcp", &self.tcp.to_string())?;
        m.serialize_entry("msgid_json", &listen(&self.msgid_json))?;
        m.serialize_entry("type_data", &listen(&self.type_data))?;
        m.serialize_entry("token_json", &listen(&self.token_json))?;
        m.serialize_entry("thrift", &listen(&self.thrift))?;
        m.serialize_entry("store", &self.store)?;
        if let Some(a) = &self.amqp {
            m.serialize_entry("amqp", a)?;
        }
        m.serialize_entry("amqp_namespace", &self.amqp_namespace)?;
        m.serialize_entry("broker_timeout_ms", &self.broker_timeout_ms)?;
        if let Some(n) = &self.node_id {
            m.serialize_entry("node_id", n)?;
        }
        if let Some(d) = &self.web_dir {
            m.serialize_entry("web_dir", d)?;
        }
        m.serialize_entry("max_text", &self.max_text)?;
        m.serialize_entry("send_rate", &self.send_rate)?;
        m.serialize_entry("send_burst", &self.send_burst)?;
        m.serialize_entry("receipts_max_group", &self.receipts_max_group)?;
        m.serialize_entry("max_connections", &self.max_connections)?;
        if let Some(p) = &self.tls_cert {
            m.serialize_entry("tls_cert", p)?;
        }
        if let Some(p) = &self.tls_key {
            m.serialize_entry("tls_key", p)?;
        }
        m.serialize_entry(
            "first_message_timeout_secs",
            &self.first_message_timeout_secs,
        )?;
        m.serialize_entry("idle_timeout_secs", &self.idle_timeout_secs)?;
        m.serialize_entry(
            "registrations_per_ip_per_hour",
            &self.registrations_per_ip_per_hour,
        )?;
        m.serialize_entry(
            "failed_logins_per_ip_per_minute",
            &self.failed_logins_per_ip_per_minute,
        )?;
        m.serialize_entry("registrations_in_flight", &self.registrations_in_flight)?;
        m.serialize_entry("max_connections_per_ip", &self.max_connections_per_ip)?;
        m.serialize_entry("connection_rate_per_ip", &self.connection_rate_per_ip)?;
        m.serialize_entry("connection_burst_per_ip", &self.connection_burst_per_ip)?;
        let proxies: Vec<String> = self.trusted_proxy.iter().map(IpAddr::to_string).collect();
        m.serialize_entry("trusted_proxy", &proxies)?;
        m.serialize_entry("proxy_protocol", &self.proxy_protocol)?;
        m.serialize_entry("shutdown_drain_ms", &self.shutdown_drain_ms)?;
        m.serialize_entry("session_idle_secs", &self.session_idle_secs)?;
        m.serialize_entry("max_devices", &self.max_devices)?;
        m.serialize_entry("single_session", &self.single_session)?;
        m.serialize_entry("log", &self.log)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_shape() {
        let c = Config::load_from(["chat-server"]).unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.tcp.to_string(), "127.0.0.1:7000");
        assert_eq!(c.store, "sled:./data");
        assert!(c.amqp.is_none());
        assert_eq!(c.msgid_json.0.map(|a| a.port()), Some(6000));
        assert_eq!(c.token_json.0.map(|a| a.port()), Some(9998));
        assert_eq!(c.session_idle_secs, 7 * 24 * 3600);
        let off = Config::load_from(["chat-server", "--token-json", "off"]).unwrap();
        assert_eq!(off.token_json, Listen(None));
        assert_eq!(c.thrift.0.map(|a| a.port()), Some(9999));
        let off = Config::load_from(["chat-server", "--thrift", "off"]).unwrap();
        assert_eq!(off.thrift, Listen(None));
    }

    #[test]
    fn file_fills_defaults_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(
            &path,
            "store = \"postgres://x@127.0.0.1/db\"\nhttp = \"127.0.0.1:9000\"\ntype_data = \"off\"\nmax_text = 10\n",
        )
        .unwrap();
        let c = Config::load_from([
            "chat-server",
            "--config",
            path.to_str().unwrap(),
            "--http",
            "127.0.0.1:9100",
        ])
        .unwrap();
        assert_eq!(c.store, "postgres://x@127.0.0.1/db");
        assert_eq!(c.http.port(), 9100, "the flag wins over the file");
        assert_eq!(c.type_data, Listen(None));
        assert_eq!(c.max_text, 10, "multi-word keys are read from the file");
    }

    #[test]
    fn debug_shows_no_url_password() {
        let c = Config::load_from([
            "chat-server",
            "--store",
            "postgres://chat:hunter2@db.internal:5432/chat",
            "--amqp",
            "amqp://chat:rabbit-pw@mq.internal:5672/%2f",
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("rabbit-pw"), "{shown}");
        assert!(
            shown.contains("postgres://chat:***@db.internal:5432/chat"),
            "{shown}"
        );
        assert!(
            shown.contains("amqp://chat:***@mq.internal:5672/%2f"),
            "{shown}"
        );
        assert!(
            shown.contains("max_text: 4096"),
            "the rest is shown: {shown}"
        );
    }

    #[test]
    fn address_limits_and_trusted_proxies_from_flags_and_file() {
        let c = Config::load_from(["chat-server"]).unwrap();
        assert_eq!(
            (
                c.max_connections_per_ip,
                c.connection_rate_per_ip,
                c.connection_burst_per_ip
            ),
            (1_000, 100, 500)
        );
        assert!(c.trusted_proxy.is_empty() && !c.proxy_protocol);

        let c = Config::load_from([
            "chat-server",
            "--trusted-proxy",
            "127.0.0.2,::1",
            "--proxy-protocol",
            "--max-connections-per-ip",
            "3",
        ])
        .unwrap();
        let want: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(c.trusted_proxy, want);
        assert!(c.proxy_protocol);
        assert_eq!(c.max_connections_per_ip, 3);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(
            &path,
            "trusted_proxy = [\"10.0.0.5\"]\nproxy_protocol = true\nconnection_rate_per_ip = 0\n",
        )
        .unwrap();
        let c = Config::load_from(["chat-server", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.trusted_proxy, vec!["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert!(c.proxy_protocol);
        assert_eq!(c.connection_rate_per_ip, 0, "0 turns the rate limit off");
        assert!(Config::load_from(["chat-server", "--trusted-proxy", "nginx"]).is_err());
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, "stor = \"typo\"\n").unwrap();
        let err =
            Config::load_from(["chat-server", "--config", path.to_str().unwrap()]).unwrap_err();
        assert!(err.to_string().contains("stor"), "{err}");
    }
}
