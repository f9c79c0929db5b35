//! `chat-server`: run one chat node. `chat-server --help` lists the options.

use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match chat::Config::load() {
        Ok(c) => c,
        Err(chat::ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            #[expect(clippy::print_stderr, reason = "logging is not set up yet")]
            {
                eprintln!("chat-server: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let shape = match &config.amqp {
        Some(_) => "cluster node (RabbitMQ)",
        None => "embedded",
    };
    // Never the password of a URL in a log line.
    tracing::info!(store = %nopi::redact_url(&config.store), node = %config.node_id(), "starting the chat server, {shape}");
    let running = match chat::Chat::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("native TCP (JSON lines) on {}", running.tcp);
    if let Some(a) = running.msgid_json {
        tracing::info!("legacy msgid-json clients on {a}");
    }
    if let Some(a) = running.type_data {
        tracing::info!("legacy type-data clients on {a}");
    }
    if let Some(a) = running.token_json {
        tracing::info!("legacy token-json clients on {a}");
    }
    if let Some(a) = running.thrift {
        tracing::info!("legacy Thrift clients on {a}");
    }
    tracing::info!(
        "chat server ready: point a browser at http://{}/",
        running.http
    );
    announce_ready(&running);

    stop_signal().await;
    tracing::info!("shutting down");
    running.shutdown(Duration::from_secs(5)).await;
    ExitCode::SUCCESS
}

/// Print the one machine-readable readiness line on standard output, now
/// that every listener is bound: `READY ` and a JSON object from listener
/// name to bound address (`http`, `tcp`, and `msgid_json` / `type_data` /
/// `token_json` / `thrift` when enabled). Documented in docs/chat.md
/// ("Readiness"); tests and scripts wait for it instead of reading the log, so keep it stable.
fn announce_ready(running: &chat::Running) {
    use std::io::Write;
    let mut listeners = serde_json::Map::new();
    let bound = [
        ("http", Some(running.http)),
        ("tcp", Some(running.tcp)),
        ("msgid_json", running.msgid_json),
        ("type_data", running.type_data),
        ("token_json", running.token_json),
        ("thrift", running.thrift),
    ];
    for (name, addr) in bound {
        if let Some(addr) = addr {
            listeners.insert(name.to_owned(), addr.to_string().into());
        }
    }
    let mut out = std::io::stdout().lock();
    // A closed standard output is no reason to stop serving.
    let _ = writeln!(out, "READY {}", serde_json::Value::Object(listeners));
    let _ = out.flush();
}

/// Ctrl-C (SIGINT), or SIGTERM on Unix (what orchestrators and systemd send).
async fn stop_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot wait for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot wait for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
