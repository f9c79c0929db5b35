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
//!   is up. The body says which failed:
//!   `{"ready": false, "store": "unavailable", "broker": "ok"}`.

use std::sync::Arc;
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
type LastProbe = Mutex<Option<(Instant, bool)>>;

pub(crate) fn register(chat: &Chat) {
    let homer = chat.homer();
    homer.http_get("/healthz", |_| async {
        HttpResponse::json(200, &json!({"status": "ok"}))
    });
    let chat = chat.clone();
    let last: Arc<LastProbe> = Arc::default();
    homer.http_get("/readyz", move |_| {
        let (chat, last) = (chat.clone(), last.clone());
        async move { ready(&chat, &last).await }
    });
}

async fn ready(chat: &Chat, last: &LastProbe) -> HttpResponse {
    let store = store_answers(chat, last).await;
    let broker = chat
        .inner
        .amqp
        .as_ref()
        .is_none_or(rmq_core::AmqpBroker::is_connected);
    let word = |up: bool| if up { "ok" } else { "unavailable" };
    let body = json!({"ready": store && broker, "store": word(store), "broker": word(broker)});
    HttpResponse::json(if store && broker { 200 } else { 503 }, &body)
}

/// Whether the store answers a read, probing at most once per
/// [`PROBE_REUSE`]: concurrent requests wait for one probe and share it.
async fn store_answers(chat: &Chat, last: &LastProbe) -> bool {
    let mut last = last.lock().await;
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
