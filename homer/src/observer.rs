//! [`Observer`]: a callback set for what the server does — connections
//! opening and closing, calls answered — to feed metrics or logs.
//!
//! homer itself counts nothing and depends on no metrics library: an
//! application implements the events it cares about (every method has an
//! empty default) and installs the observer with
//! [`HomerBuilder::observer`](crate::HomerBuilder::observer).

use std::fmt;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Refusal;
use crate::connection::{CloseReason, Connection, Transport};

/// Receives the server's events, synchronously, on the task where they
/// happen.
///
/// Methods must be quick and must not block (update a counter, not a
/// database). A method that panics is caught, logged and otherwise ignored.
///
/// - [`connection_opened`](Self::connection_opened) and
///   [`connection_closed`](Self::connection_closed) come in pairs, once per
///   connection, at the moments the [`on_open`](crate::Homer::on_open) and
///   [`on_close`](crate::Homer::on_close) hooks run: a WebSocket or TCP
///   connection once accepted, an HTTP session once it gets a key. So a
///   gauge raised on the first and lowered on the second counts the open
///   connections exactly. One-request HTTP connections (calls without a
///   session) are not connections in this sense; their calls are still
///   reported.
/// - [`call_answered`](Self::call_answered) comes once for every call the
///   server read and answered: calls that ran a handler (whatever it
///   returned, a panic included, which is a 500) or found no API (404), and
///   calls refused before that: the rate limit (429) and, over HTTP, a
///   wrong method (405), a body too large (413), unreadable (400, 408) or
///   not JSON (400).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use homer::{ApiError, CallEvent, Homer, Observer};
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
///
/// #[derive(Default)]
/// struct Counts {
///     ok: AtomicU64,
///     failed: AtomicU64,
/// }
///
/// impl Observer for Counts {
///     fn call_answered(&self, call: &CallEvent<'_>) {
///         let n = if call.status == 200 { &self.ok } else { &self.failed };
///         n.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let counts = Arc::new(Counts::default());
/// let homer = Homer::builder().observer(counts.clone()).build()?;
/// homer.api("echo", |_ctx, p: serde_json::Value| async move { Ok::<_, ApiError>(p) });
/// let addr = homer.listen_tcp("127.0.0.1:0", homer::json_lines()).await?;
///
/// let (r, mut w) = tokio::net::TcpStream::connect(addr).await?.into_split();
/// let mut lines = BufReader::new(r).lines();
/// w.write_all(b"{\"id\":1,\"api\":\"echo\",\"params\":1}\n").await?;
/// w.write_all(b"{\"id\":2,\"api\":\"nope\"}\n").await?;
/// lines.next_line().await?;
/// lines.next_line().await?;
/// assert_eq!(counts.ok.load(Ordering::Relaxed), 1);
/// assert_eq!(counts.failed.load(Ordering::Relaxed), 1);
/// # homer.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }
/// ```
pub trait Observer: Send + Sync + 'static {
    /// `conn` opened (see the trait docs for when).
    #[expect(
        unused_variables,
        reason = "the default ignores the event; the parameters keep their names in the docs"
    )]
    fn connection_opened(&self, conn: &Connection) {}

    /// `conn`, reported opened before, ended for `reason`.
    #[expect(
        unused_variables,
        reason = "the default ignores the event; the parameters keep their names in the docs"
    )]
    fn connection_closed(&self, conn: &Connection, reason: &CloseReason) {}

    /// A call was answered.
    #[expect(
        unused_variables,
        reason = "the default ignores the event; the parameters keep their names in the docs"
    )]
    fn call_answered(&self, call: &CallEvent<'_>) {}

    /// A socket from `peer` was closed before it was served, for `why`
    /// (never reported as opened).
    #[expect(
        unused_variables,
        reason = "the default ignores the event; the parameters keep their names in the docs"
    )]
    fn connection_refused(&self, peer: SocketAddr, why: Refusal) {}
}

impl<T: Observer> Observer for Arc<T> {
    fn connection_opened(&self, conn: &Connection) {
        (**self).connection_opened(conn);
    }

    fn connection_closed(&self, conn: &Connection, reason: &CloseReason) {
        (**self).connection_closed(conn, reason);
    }

    fn call_answered(&self, call: &CallEvent<'_>) {
        (**self).call_answered(call);
    }

    fn connection_refused(&self, peer: SocketAddr, why: Refusal) {
        (**self).connection_refused(peer, why);
    }
}

/// One answered call, as [`Observer::call_answered`] sees it.
///
/// `api` is the name the client sent: over the network that is any string
/// (up to the frame size), so an observer that uses it as a metric label
/// should keep it only when [`known`](Self::known) is true, or its label
/// set grows without bound.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CallEvent<'a> {
    /// The API name as called.
    pub api: &'a str,
    /// Whether an API of that name was registered when the call came.
    pub known: bool,
    /// Whether the call reached its handler; false for calls refused before
    /// (rate limit, unreadable HTTP body) and for unknown APIs. A 429 with
    /// `handled` false is homer's own rate limit; one with `handled` true
    /// came from the application.
    pub handled: bool,
    /// The transport of the calling connection.
    pub transport: Transport,
    /// The calling connection's protocol (see
    /// [`Connection::protocol`](crate::Connection::protocol)).
    pub protocol: &'static str,
    /// The reply's status: 200, or the error's status.
    pub status: u16,
    /// The error's code (`rate_limited`, `unknown_api`, ...), `None` on 200.
    pub code: Option<&'a str>,
    /// From reading the call to its reply (zero for calls refused before a
    /// handler ran).
    pub elapsed: Duration,
}

/// The installed observer, if any (a field of the builder and the server).
#[derive(Clone, Default)]
pub(crate) struct Observers(Option<Arc<dyn Observer>>);

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl Observers {
    pub(crate) fn new(o: Arc<dyn Observer>) -> Self {
        Self(Some(o))
    }

    /// Runs `f` on the observer, catching a panic.
    fn each(&self, what: &str, f: impl FnOnce(&dyn Observer)) {
        if let Some(o) = &self.0
            && catch_unwind(AssertUnwindSafe(|| f(o.as_ref()))).is_err()
        {
            tracing::error!("observer panicked in {what}");
        }
    }

    pub(crate) fn opened(&self, conn: &Connection) {
        self.each("connection_opened", |o| o.connection_opened(conn));
    }

    pub(crate) fn closed(&self, conn: &Connection, reason: &CloseReason) {
        self.each("connection_closed", |o| o.connection_closed(conn, reason));
    }

    pub(crate) fn call(&self, call: &CallEvent<'_>) {
        self.each("call_answered", |o| o.call_answered(call));
    }

    pub(crate) fn refused(&self, peer: SocketAddr, why: Refusal) {
        self.each("connection_refused", |o| o.connection_refused(peer, why));
    }

    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }
}
