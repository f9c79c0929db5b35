//! `GET /metrics` on the HTTP listener: this node's metrics in the
//! Prometheus text format (version 0.0.4), encoded by `prometheus-client`.
//! PROTOCOL.md ("Metrics") lists every metric with its labels.
//!
//! The counters and the histogram are raised where their events happen:
//! connections and calls through homer's [`Observer`] (installed on the
//! builder in `app.rs`), messages sent in `Chat::send`, deliveries and their
//! latency in the inbox pump (`session.rs`), failed logins and the login
//! backoff in `user.login`, and calls answered 503 in `api::down`. The
//! gauges of state (store and broker up, queues) are read at each scrape.
//!
//! No label carries anything a client chose freely: the `api` label is the
//! API's name only when such an API is registered (`unknown` otherwise),
//! and no user name, token, address or message text appears anywhere.

use std::sync::LazyLock;
use std::time::Duration;

use homer::{CallEvent, Connection, HttpResponse, Observer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::app::Chat;

/// Labels of `chat_connections`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnLabels {
    transport: &'static str,
    protocol: &'static str,
}

/// Labels of `chat_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    api: String,
    status: u16,
}

/// Labels of `chat_rate_limited_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// Labels of `chat_connections_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// Labels of the per-service metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: &'static str,
}

/// Which limit refused a request (the `limit` label).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// homer's call rate per connection (per client IP for HTTP calls
    /// without a session).
    Connection,
    /// `--send-rate` / `--send-burst`, per user.
    Send,
    /// The login backoff after repeated failures, per account.
    Login,
    /// `--registrations-per-ip-per-hour`, per client address.
    Register,
    /// `--failed-logins-per-ip-per-minute`, per client address.
    LoginAddress,
    /// `--registrations-in-flight`: hashing capacity, over the node.
    Hashing,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::Connection => "connection",
            Limit::Send => "send",
            Limit::Login => "login",
            Limit::Register => "register",
            Limit::LoginAddress => "login_address",
            Limit::Hashing => "hashing",
        }
    }
}

/// Calls answered 503 because the store or the broker was unreachable, per
/// process: `api::down` makes every such answer and has no `Chat` at hand.
/// Every `Metrics` of the process registers this same family.
static UNAVAILABLE: LazyLock<Family<ServiceLabels, Counter>> = LazyLock::new(Family::default);

/// Count one call answered 503 because `service` (`"storage"` or
/// `"messaging"`, the words of the error message) was unreachable.
pub(crate) fn unavailable(service: &str) {
    let service = match service {
        "storage" => "store",
        "messaging" => "broker",
        _ => "other",
    };
    UNAVAILABLE.get_or_create(&ServiceLabels { service }).inc();
}

/// Upper bounds of the delivery-latency buckets, seconds: 1 ms to about
/// 16 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

/// Every metric of one chat node.
pub(crate) struct Metrics {
    registry: Registry,
    connections: Family<ConnLabels, Gauge>,
    calls: Family<CallLabels, Counter>,
    messages_sent: Counter,
    messages_delivered: Counter,
    delivery_latency: Histogram,
    rate_limited: Family<LimitLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    failed_logins: Counter,
    up: Family<ServiceLabels, Gauge>,
    users_online: Gauge,
    unacked: Gauge,
    outbound_queued: Gauge,
    shutting_down: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let connections = Family::<ConnLabels, Gauge>::default();
        registry.register(
            "chat_connections",
            "Open connections by transport and wire protocol",
            connections.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "chat_calls",
            "Calls answered, by api and reply status",
            calls.clone(),
        );
        let messages_sent = Counter::default();
        registry.register(
            "chat_messages_sent",
            "Messages accepted by chat.send (or a legacy send) and published",
            messages_sent.clone(),
        );
        let messages_delivered = Counter::default();
        registry.register(
            "chat_messages_delivered",
            "Messages pushed to a recipient's connection",
            messages_delivered.clone(),
        );
        let delivery_latency = Histogram::new(latency_buckets());
        registry.register_with_unit(
            "chat_delivery_latency",
            "From a message's send time to its push on a recipient's connection, for messages sent while the recipient was logged in",
            Unit::Seconds,
            delivery_latency.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "chat_rate_limited",
            "Requests refused with 429, by the limit that refused them",
            rate_limited.clone(),
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "chat_connections_refused",
            "Sockets closed before any handshake, by reason: full, per_ip_limit, per_ip_rate, proxy_header",
            refused.clone(),
        );
        for reason in ["full", "per_ip_limit", "per_ip_rate", "proxy_header"] {
            let _ = refused.get_or_create(&RefusalLabels { reason });
        }
        let failed_logins = Counter::default();
        registry.register(
            "chat_failed_logins",
            "Logins refused for a wrong name or password",
            failed_logins.clone(),
        );
        registry.register(
            "chat_unavailable",
            "Calls answered 503 because a service was unreachable, by service (store, broker)",
            UNAVAILABLE.clone(),
        );
        let up = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "chat_service_up",
            "Whether the service (store, broker) answered the readiness probe: 1 or 0",
            up.clone(),
        );
        let users_online = Gauge::default();
        registry.register(
            "chat_users_online",
            "Users logged in on this node",
            users_online.clone(),
        );
        let unacked = Gauge::default();
        registry.register(
            "chat_unacked_deliveries",
            "Messages pushed to this node's clients and not yet acknowledged with chat.ack",
            unacked.clone(),
        );
        let outbound_queued = Gauge::default();
        registry.register(
            "chat_outbound_queued",
            "Pushes waiting in this node's per-connection outbound queues",
            outbound_queued.clone(),
        );
        let shutting_down = Gauge::default();
        registry.register(
            "chat_shutting_down",
            "1 once graceful shutdown has begun (/readyz answers 503), else 0",
            shutting_down.clone(),
        );
        // Every series of a fixed label set from the start, at 0, so a
        // dashboard's rate() sees the first event.
        for limit in [
            Limit::Connection,
            Limit::Send,
            Limit::Login,
            Limit::Register,
            Limit::LoginAddress,
            Limit::Hashing,
        ] {
            let _ = rate_limited.get_or_create(&LimitLabels {
                limit: limit.label(),
            });
        }
        for service in ["store", "broker"] {
            let _ = UNAVAILABLE.get_or_create(&ServiceLabels { service });
        }
        Metrics {
            registry,
            connections,
            calls,
            messages_sent,
            messages_delivered,
            delivery_latency,
            rate_limited,
            refused,
            failed_logins,
            up,
            users_online,
            unacked,
            outbound_queued,
            shutting_down,
        }
    }

    /// A message was published.
    pub(crate) fn sent(&self) {
        self.messages_sent.inc();
    }

    /// A message was pushed to a recipient's connection; `latency` when it
    /// was sent while the recipient was logged in.
    pub(crate) fn delivered(&self, latency: Option<Duration>) {
        self.messages_delivered.inc();
        if let Some(l) = latency {
            self.delivery_latency.observe(l.as_secs_f64());
        }
    }

    /// `limit` refused a request.
    pub(crate) fn rate_limited(&self, limit: Limit) {
        self.rate_limited
            .get_or_create(&LimitLabels {
                limit: limit.label(),
            })
            .inc();
    }

    /// A login failed for a wrong name or password.
    pub(crate) fn failed_login(&self) {
        self.failed_logins.inc();
    }

    /// The text of a scrape, after reading the gauges of state.
    async fn scrape(&self, chat: &Chat) -> String {
        let (store, broker) = crate::health::services_up(chat).await;
        self.up
            .get_or_create(&ServiceLabels { service: "store" })
            .set(i64::from(store));
        self.up
            .get_or_create(&ServiceLabels { service: "broker" })
            .set(i64::from(broker));
        let (online, unacked) = crate::session::local_counts(chat);
        self.users_online.set(saturating(online));
        self.unacked.set(saturating(unacked));
        let queued: usize = chat
            .inner
            .hub
            .connections()
            .iter()
            .map(Connection::queued)
            .sum();
        self.outbound_queued.set(saturating(queued));
        self.shutting_down
            .set(i64::from(crate::health::shutting_down(chat)));
        let mut text = String::new();
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics");
        }
        text
    }
}

fn saturating(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Feeds the connection and call metrics from homer's events.
pub(crate) struct HomerObserver(pub(crate) std::sync::Arc<Metrics>);

impl Observer for HomerObserver {
    fn connection_opened(&self, conn: &Connection) {
        self.0.connections.get_or_create(&conn_labels(conn)).inc();
    }

    fn connection_closed(&self, conn: &Connection, _reason: &homer::CloseReason) {
        self.0.connections.get_or_create(&conn_labels(conn)).dec();
    }

    fn call_answered(&self, call: &CallEvent<'_>) {
        // Only registered names become labels: anything else a client sends
        // would grow the label set without bound.
        let api = if call.known { call.api } else { "unknown" };
        self.0
            .calls
            .get_or_create(&CallLabels {
                api: api.to_owned(),
                status: call.status,
            })
            .inc();
        if call.status == 429 && !call.handled {
            self.0.rate_limited(Limit::Connection);
        }
    }

    fn connection_refused(&self, _peer: std::net::SocketAddr, why: homer::Refusal) {
        self.0
            .refused
            .get_or_create(&RefusalLabels {
                reason: why.as_str(),
            })
            .inc();
    }
}

fn conn_labels(conn: &Connection) -> ConnLabels {
    ConnLabels {
        transport: conn.transport().as_str(),
        protocol: conn.protocol(),
    }
}

pub(crate) fn register(homer: &homer::Homer, chat: &Chat) {
    let c = chat.clone();
    homer.http_get("/metrics", move |_| {
        let chat = c.clone();
        async move {
            let text = chat.inner.metrics.scrape(&chat).await;
            HttpResponse::new(200, prometheus_text::CONTENT_TYPE, text)
        }
    });
}
