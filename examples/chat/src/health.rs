//! `GET /healthz` and `GET /readyz` on the HTTP listener, for load balancers
//! and orchestrators.
//!
//! - `/healthz` is 200 while the process serves HTTP: it says nothing of the
//!   store or RabbitMQ, so a supervisor restarts only a process that hangs.
//! - `/readyz` is 200 when this node can serve calls, and 503 while the
//!   store or RabbitMQ is unreachable: a load balancer sends new clients to
//!   the other nodes meanwhile. The store is probed with one read (bounded
//!   by [`PROBE_TIMEOUT`]; a result is reused for [`PROBE_REUSE`], so probes
//!   cannot load the store); RabbitMQ is ready while the broker's connection
//!   is up. It is also 503 once graceful shutdown has begun
//!   ([`Running::shutdown`](crate::Running::shutdown): for
//!   `--shutdown-drain-ms` the node keeps serving everything but says it is
//!   not ready, so a load balancer stops sending it new clients before it
//!   stops listening). The body says why:
//!   `{"ready": false, "store": "unavailable", "broker": "ok", "shutting_down": false}`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use homer::HttpResponse;
use serde_json::json;
use tokio::sync::Mutex;

use crate::app::Chat;

/// Longest a readiness probe waits for the store.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one store probe's result answers `/readyz`.
pub(crate) const PROBE_REUSE: Duration = Duration::from_millis(500);

/// The last store probe: when it ended and whether the store answered.
/// Shared by `/readyz` and `/metrics` (`chat_service_up`).
pub(crate) type LastProbe = Mutex<Option<(Instant, bool)>>;

pub(crate) fn register(homer: &homer::Homer, chat: &Chat) {
    homer.http_get("/healthz", |_| async {
        HttpResponse::json(200, &json!({"status": "ok"}))
    });
    let chat = chat.clone();
    homer.http_get("/readyz", move |_| {
        let chat = chat.clone();
        async move { ready(&chat).await }
    });
}

async fn ready(chat: &Chat) -> HttpResponse {
    let (store, broker) = services_up(chat).await;
    let stopping = shutting_down(chat);
    let word = |up: bool| if up { "ok" } else { "unavailable" };
    let ready = store && broker && !stopping;
    let body = json!({
        "ready": ready,
        "store": word(store),
        "broker": word(broker),
        "shutting_down": stopping,
    });
    HttpResponse::json(if ready { 200 } else { 503 }, &body)
}

/// Whether graceful shutdown has begun (`Running::shutdown` starts with the drain).
pub(crate) fn shutting_down(chat: &Chat) -> bool {
    chat.inner.draining.load(Ordering::Acquire)
}

/// Whether the store answers a read, and whether RabbitMQ is connected
/// (always true for the embedded broker).
pub(crate) async fn services_up(chat: &Chat) -> (bool, bool) {
    let store = store_answers(chat).await;
    let broker = chat
        .inner
        .amqp
        .as_ref()
        .is_none_or(rmq_core::AmqpBroker::is_connected);
    (store, broker)
}

/// Whether the store answers a read, probing at most once per
/// [`PROBE_REUSE`]: concurrent requests wait for one probe and share it.
async fn store_answers(chat: &Chat) -> bool {
    let mut last = chat.inner.last_probe.lock().await;
    if let Some((at, up)) = *last
        && at.elapsed() < PROBE_REUSE
    {
        return up;
    }
    let probe = chat.inner.nodes.get(&chat.inner.node);
    let up = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "readiness: the store failed");
            false
        }
        Err(_) => {
            tracing::debug!("readiness: the store did not answer within {PROBE_TIMEOUT:?}");
            false
        }
    };
    *last = Some((Instant::now(), up));
    up
}
