//! [`Homer`] (the server handle) and [`HomerBuilder`].

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admission::{Admission, Refusal, Slot};
use crate::connection::{CloseReason, ConnId, Connection, NewConn, Transport};
use crate::context::{CallState, Context};
use crate::error::{ApiError, BuildError, Error};
use crate::hub::Hub;
use crate::limits::{Limits, RateLimit};
use crate::message::{Call, Push, Reply};
use crate::observer::{CallEvent, Observer, Observers};
use crate::outbox::Receiver;
use crate::protocol::MakeProtocol;
use crate::registry::{BoxFuture, Handler, Registry, Typed};
use crate::tls::Tls;
use crate::transport_http::{HttpRequest, HttpState, Statics};

type OpenHook = Arc<dyn Fn(Context) -> BoxFuture<()> + Send + Sync>;
type CloseHook = Arc<dyn Fn(Context, CloseReason) -> BoxFuture<()> + Send + Sync>;
type Resolver = Arc<dyn Fn(Context, String) -> BoxFuture<Result<(), ApiError>> + Send + Sync>;

#[derive(Default)]
struct Hooks {
    open: RwLock<Option<OpenHook>>,
    close: RwLock<Option<CloseHook>>,
    resolver: RwLock<Option<Resolver>>,
}

pub(crate) struct Shared {
    admission: Arc<Admission>,
    pub(crate) limits: Limits,
    pub(crate) statics: Option<Statics>,
    pub(crate) session_cookie: String,
    registry: Registry,
    hub: Hub,
    hooks: Hooks,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) hard_stop: CancellationToken,
    tracker: TaskTracker,
    pub(crate) http: HttpState,
    observers: Observers,
}

/// Builds a [`Homer`]; every limit has a safe default (see [`Limits`]).
///
/// The setters only record what they are given; [`build`](Self::build)
/// checks every setting and refuses one that cannot work (a zero limit, a
/// timeout under 10 ms, ...) with a [`BuildError`] naming it and its
/// allowed range. Nothing is raised or ignored silently.
///
/// ```
/// use std::time::Duration;
/// let homer = homer::Homer::builder()
///     .max_frame_size(16 * 1024)
///     .max_connections(1_000)
///     .idle_timeout(Duration::from_secs(60))
///     .rate_limit(20, 50)
///     .build()?;
/// assert_eq!(homer.limits().max_frame_size(), 16 * 1024);
///
/// let err = homer::Homer::builder().rate_limit(0, 50).build().unwrap_err();
/// assert_eq!(err.to_string(), "invalid rate_limit per_second: expected at least 1, got 0");
/// # Ok::<(), homer::BuildError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HomerBuilder {
    limits: Limits,
    statics: Option<Statics>,
    session_cookie: String,
    observers: Observers,
    trusted_proxies: Vec<IpAddr>,
    proxy_protocol: bool,
}

impl Default for HomerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HomerBuilder {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            limits: Limits::default(),
            statics: None,
            session_cookie: "session".to_owned(),
            observers: Observers::default(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    }

    /// Largest request frame or HTTP body, bytes (at least 256).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Most sockets open at once over all listeners (1 to
    /// [`Semaphore::MAX_PERMITS`]).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.limits.max_connections = n;
        self
    }

    /// Most HTTP sessions at once (at least 1).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.limits.max_sessions = n;
        self
    }

    /// Close connections (and expire HTTP sessions) idle this long (at
    /// least 10 ms).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.limits.idle_timeout = d;
        self
    }

    /// Close a TCP or WebSocket connection that sends no frame this long
    /// after it opened (at least 10 ms; pings do not count).
    pub fn first_message_timeout(mut self, d: Duration) -> Self {
        self.limits.first_message_timeout = d;
        self
    }

    /// Time allowed for HTTP request headers and body, and a WebSocket
    /// upgrade; an HTTP keep-alive connection idle this long is closed (at
    /// least 10 ms).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.limits.handshake_timeout = d;
        self
    }

    /// Messages queued per connection before it is disconnected as a slow
    /// reader (at least 1).
    pub fn outbound_queue(mut self, messages: usize) -> Self {
        self.limits.outbound_queue = messages;
        self
    }

    /// Limit each connection to `per_second` calls on average with bursts of
    /// `burst` (both at least 1); more get 429.
    pub fn rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.limits.rate_limit = Some(RateLimit { per_second, burst });
        self
    }

    /// Most sockets one source address may hold at once (at least 1);
    /// more are closed before any handshake.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.limits.max_connections_per_ip = n;
        self
    }

    /// Let one source address open `per_second` sockets on average, with
    /// bursts of `burst` (both at least 1); more are closed before any
    /// handshake.
    pub fn connection_rate_per_ip(mut self, per_second: u32, burst: u32) -> Self {
        self.limits.connection_rate_per_ip = Some(RateLimit { per_second, burst });
        self
    }

    /// No limit on how fast one address opens sockets (benchmarks).
    pub fn no_connection_rate_per_ip(mut self) -> Self {
        self.limits.connection_rate_per_ip = None;
        self
    }

    /// The proxies (a load balancer such as nginx) whose connections are
    /// not limited by their own address: with
    /// [`proxy_protocol`](Self::proxy_protocol) on, a TCP connection from
    /// one of them starts with a PROXY protocol header (v1 or v2) naming the
    /// client, and the client's address is the connection's peer and is
    /// limited. A header from any other peer is not believed.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Whether TCP listeners expect a PROXY protocol header on connections
    /// from [`trusted_proxies`](Self::trusted_proxies) (default off). A
    /// trusted proxy's connection without a valid header within the
    /// handshake timeout is closed. On with no trusted proxy it would have
    /// no effect, so [`build`](Self::build) refuses it.
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.proxy_protocol = on;
        self
    }

    /// No call rate limit (benchmarks, trusted networks).
    pub fn no_rate_limit(mut self) -> Self {
        self.limits.rate_limit = None;
        self
    }

    /// Calls of one connection running at once (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.limits.max_in_flight = n;
        self
    }

    /// Longest wait of a long-poll request.
    pub fn long_poll_wait(mut self, d: Duration) -> Self {
        self.limits.long_poll_wait = d;
        self
    }

    /// Interval of SSE keep-alive comments and WebSocket pings (at least
    /// 10 ms).
    pub fn sse_keepalive(mut self, d: Duration) -> Self {
        self.limits.sse_keepalive = d;
        self
    }

    /// Largest static file served, bytes.
    pub fn max_static_file(mut self, bytes: u64) -> Self {
        self.limits.max_static_file = bytes;
        self
    }

    /// Serve the files under `dir` for `GET` paths no route takes (`/` is
    /// `index.html`), read at each request. Replaces
    /// [`static_files`](Self::static_files).
    pub fn static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.statics = Some(Statics::Dir(dir.into()));
        self
    }

    /// Serve `files` — relative paths such as `index.html` or `css/app.css`,
    /// and their contents — from memory for `GET` paths no route takes, with
    /// the same rules as [`static_dir`](Self::static_dir): `/` and a path
    /// ending in `/` are that directory's `index.html`, the content type
    /// follows the extension. For files built into the binary
    /// (`include_bytes!`, `include_dir`). Replaces `static_dir`.
    ///
    /// ```
    /// let homer = homer::Homer::builder()
    ///     .static_files([("index.html", &b"<h1>hi</h1>"[..]), ("app.js", b"let x;")])
    ///     .build()?;
    /// # Ok::<(), homer::BuildError>(())
    /// ```
    pub fn static_files<I, P, B>(mut self, files: I) -> Self
    where
        I: IntoIterator<Item = (P, B)>,
        P: Into<String>,
        B: Into<bytes::Bytes>,
    {
        self.statics = Some(Statics::memory(files));
        self
    }

    /// Name of the cookie carrying the HTTP session key (default
    /// `session`; an RFC 6265 token: printable ASCII without spaces or
    /// separators); an `Authorization: Bearer` token is used first.
    pub fn session_cookie(mut self, name: impl Into<String>) -> Self {
        self.session_cookie = name.into();
        self
    }

    /// Reports connections and calls to `observer` (see [`Observer`]), for
    /// metrics; replaces any previous observer.
    ///
    /// ```
    /// struct Quiet;
    /// impl homer::Observer for Quiet {}
    /// let homer = homer::Homer::builder().observer(Quiet).build()?;
    /// # Ok::<(), homer::BuildError>(())
    /// ```
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers = Observers::new(Arc::new(observer));
        self
    }

    /// The server, with no API and no listener yet; a [`BuildError`]
    /// naming the first setting out of its range (see each setter).
    pub fn build(self) -> Result<Homer, BuildError> {
        self.check()?;
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let admission = Arc::new(Admission::new(
            self.limits.max_connections_per_ip,
            self.limits.connection_rate_per_ip,
            self.trusted_proxies,
            self.proxy_protocol,
        ));
        Ok(Homer {
            inner: Arc::new(Shared {
                admission,
                http: HttpState::new(self.limits.rate_limit),
                limits: self.limits,
                statics: self.statics,
                session_cookie: self.session_cookie,
                registry: Registry::default(),
                hub: Hub::default(),
                hooks: Hooks::default(),
                next_id: AtomicU64::new(1),
                permits,
                shutdown: CancellationToken::new(),
                hard_stop: CancellationToken::new(),
                tracker: TaskTracker::new(),
                observers: self.observers,
            }),
        })
    }

    /// Every setting within its range, or the first that is not.
    fn check(&self) -> Result<(), BuildError> {
        const MIN_FRAME: usize = 256;
        const MIN_TIME: Duration = Duration::from_millis(10);
        let l = &self.limits;
        if l.max_frame_size < MIN_FRAME {
            return Err(BuildError::setting(
                "max_frame_size",
                format!("at least {MIN_FRAME} bytes"),
                l.max_frame_size,
            ));
        }
        if !(1..=Semaphore::MAX_PERMITS).contains(&l.max_connections) {
            return Err(BuildError::setting(
                "max_connections",
                format!("1 to {}", Semaphore::MAX_PERMITS),
                l.max_connections,
            ));
        }
        for (setting, n) in [
            ("max_connections_per_ip", l.max_connections_per_ip),
            ("max_sessions", l.max_sessions),
            ("outbound_queue", l.outbound_queue),
            ("max_in_flight", l.max_in_flight),
        ] {
            if n == 0 {
                return Err(BuildError::setting(setting, "at least 1", n));
            }
        }
        for (setting, d) in [
            ("idle_timeout", l.idle_timeout),
            ("first_message_timeout", l.first_message_timeout),
            ("handshake_timeout", l.handshake_timeout),
            ("sse_keepalive", l.sse_keepalive),
        ] {
            if d < MIN_TIME {
                return Err(BuildError::setting(
                    setting,
                    format!("at least {MIN_TIME:?}"),
                    format!("{d:?}"),
                ));
            }
        }
        for (names, rate) in [
            (["rate_limit per_second", "rate_limit burst"], l.rate_limit),
            (
                [
                    "connection_rate_per_ip per_second",
                    "connection_rate_per_ip burst",
                ],
                l.connection_rate_per_ip,
            ),
        ] {
            let Some(rate) = rate else { continue };
            for (setting, n) in names.into_iter().zip([rate.per_second, rate.burst]) {
                if n == 0 {
                    return Err(BuildError::setting(setting, "at least 1", n));
                }
            }
        }
        if !is_cookie_name(&self.session_cookie) {
            return Err(BuildError::setting(
                "session_cookie",
                "a cookie name of 1 or more printable ASCII characters without spaces or separators",
                format!("{:?}", self.session_cookie),
            ));
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(BuildError::setting(
                "proxy_protocol",
                "at least one trusted_proxies address when on",
                "on with no trusted proxy",
            ));
        }
        Ok(())
    }
}

/// Whether `name` is an RFC 6265 cookie name (an RFC 7230 token).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// The server: an API registry, a [`Hub`], and listeners sharing both.
///
/// A cheap-to-clone handle. Register APIs with [`api`](Self::api) at any
/// time, start listeners with [`listen_http`](Self::listen_http) and
/// [`listen_tcp`](Self::listen_tcp), push with [`publish`](Self::publish),
/// stop with [`shutdown`](Self::shutdown).
///
/// Handlers and hooks get the server through [`Context::homer`]; a handler
/// that captures a `Homer` clone keeps the server alive until the handler
/// is removed.
#[derive(Clone)]
pub struct Homer {
    pub(crate) inner: Arc<Shared>,
}

impl std::fmt::Debug for Homer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Homer")
            .field("apis", &self.api_names().len())
            .field("hub", &self.inner.hub)
            .finish_non_exhaustive()
    }
}

/// A server with the default settings, the same as
/// `Homer::builder().build()`; the defaults are within every range, so
/// this cannot fail.
impl Default for Homer {
    fn default() -> Self {
        HomerBuilder::new()
            .build()
            .expect("the default settings are valid")
    }
}

fn read<T: Clone>(l: &RwLock<Option<T>>) -> Option<T> {
    l.read().unwrap_or_else(PoisonError::into_inner).clone()
}

fn set<T>(l: &RwLock<Option<T>>, v: T) {
    *l.write().unwrap_or_else(PoisonError::into_inner) = Some(v);
}

fn clear<T>(l: &RwLock<Option<T>>) {
    let old = l.write().unwrap_or_else(PoisonError::into_inner).take();
    drop(old);
}

impl Homer {
    /// A builder with the default limits.
    pub fn builder() -> HomerBuilder {
        HomerBuilder::new()
    }

    /// Registers `handler` under `name`, replacing any handler of that name;
    /// returns whether one was replaced. Works while the server runs: calls
    /// already running finish on the old handler.
    pub fn api<P, R, H>(&self, name: impl Into<String>, handler: H) -> bool
    where
        H: Handler<P, R>,
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.inner
            .registry
            .insert(name.into(), Arc::new(Typed::new(handler)))
    }

    /// Removes the API `name`; returns whether it existed. Later calls get
    /// 404.
    pub fn remove_api(&self, name: &str) -> bool {
        self.inner.registry.remove(name)
    }

    /// Serves `GET` and `HEAD` of the exact path `path` (such as
    /// `/healthz`) on every HTTP listener with `route`, replacing any route
    /// of that path; returns whether one was replaced. Works while the server
    /// runs. Routes come after the built-in ones (`/api/<name>`, `/events`,
    /// `/poll`, `/ws`), which they cannot shadow, and before static files;
    /// other methods get 405. Responses are sent with `Cache-Control:
    /// no-store`; a route that panics is answered 500.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use homer::HttpResponse;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let homer = homer::Homer::builder().build()?;
    /// homer.http_get("/healthz", |_req| async { HttpResponse::text(200, "ok\n") });
    /// let addr = homer.listen_http("127.0.0.1:0").await?;
    ///
    /// let mut s = tokio::net::TcpStream::connect(addr).await?;
    /// s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
    /// let mut response = String::new();
    /// s.read_to_string(&mut response).await?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(response.ends_with("\r\n\r\nok\n"));
    /// # homer.shutdown(std::time::Duration::from_secs(1)).await;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }
    /// ```
    pub fn http_get<F, Fut>(&self, path: impl Into<String>, route: F) -> bool
    where
        F: Fn(Arc<HttpRequest>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = crate::HttpResponse> + Send + 'static,
    {
        self.inner.http.routes.insert(path.into(), route)
    }

    /// Removes the `GET` route of `path`; returns whether it existed. Later
    /// requests go to the static files.
    pub fn remove_http_get(&self, path: &str) -> bool {
        self.inner.http.routes.remove(path)
    }

    /// The registered API names, sorted.
    pub fn api_names(&self) -> Vec<String> {
        self.inner.registry.names()
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Publishes `push` to every subscriber of `topic` (see [`Hub::publish`]).
    pub fn publish(&self, topic: &str, push: Push) -> usize {
        self.inner.hub.publish(topic, push)
    }

    /// How many HTTP sessions are live.
    pub fn session_count(&self) -> usize {
        self.inner.http.sessions.count()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Runs `hook` when a connection opens: a WebSocket or TCP connection
    /// once accepted (before its first call is read), an HTTP session once
    /// it gets a key. Replaces any previous open hook.
    pub fn on_open<F, Fut>(&self, hook: F)
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        set(
            &self.inner.hooks.open,
            Arc::new(move |ctx| Box::pin(hook(ctx)) as BoxFuture<()>),
        );
    }

    /// Runs `hook` once for every opened connection when it ends, however it
    /// ends (peer gone, idle, slow reader, closed by the application,
    /// shutdown). The context still holds the session state, so this is the
    /// place to clean up presence. Replaces any previous close hook.
    pub fn on_close<F, Fut>(&self, hook: F)
    where
        F: Fn(Context, CloseReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        set(
            &self.inner.hooks.close,
            Arc::new(move |ctx, reason| Box::pin(hook(ctx, reason)) as BoxFuture<()>),
        );
    }

    /// Restores a session from a key the server has no live session for: an
    /// HTTP request, `GET /events` or long-poll carrying a bearer token or
    /// the session cookie (see [`HomerBuilder::session_cookie`]), or a
    /// WebSocket upgrade carrying one.
    ///
    /// The resolver verifies the key and sets up the context's connection as
    /// login would: session state and topic subscriptions. `Ok` keeps the
    /// HTTP session under that key; `Err` rejects it (the HTTP call then
    /// runs without a session and `/events` answers 401; a WebSocket simply
    /// stays anonymous). Without a resolver only keys bound with
    /// [`Context::set_session_key`] are known.
    pub fn session_resolver<F, Fut>(&self, resolver: F)
    where
        F: Fn(Context, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        set(
            &self.inner.hooks.resolver,
            Arc::new(move |ctx, key| {
                Box::pin(resolver(ctx, key)) as BoxFuture<Result<(), ApiError>>
            }),
        );
    }

    /// Starts the HTTP/1.1 listener (`POST /api/<name>`, `GET /events`,
    /// `GET /poll`, `GET /ws`, static files); returns the bound address
    /// (bind port 0 for an ephemeral one).
    pub async fn listen_http(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
    ) -> Result<SocketAddr, Error> {
        self.listen_http_with(addr, None).await
    }

    /// [`listen_http`](Self::listen_http) over TLS: `https://` and `wss://`.
    /// A client that does not finish its TLS handshake within the handshake
    /// timeout is closed.
    pub async fn listen_https(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
        tls: Tls,
    ) -> Result<SocketAddr, Error> {
        self.listen_http_with(addr, Some(tls)).await
    }

    async fn listen_http_with(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
        tls: Option<Tls>,
    ) -> Result<SocketAddr, Error> {
        let (listener, local) = self.bind(addr).await?;
        let homer = self.clone();
        let kind = if tls.is_some() { "https" } else { "http" };
        self.spawn(
            async move {
                homer
                    .accept_loop(listener, move |homer, stream, peer, permit| {
                        let tls = tls.clone();
                        async move {
                            let Some(tls) = tls else {
                                return crate::transport_http::serve_connection(
                                    homer, stream, peer, permit,
                                )
                                .await;
                            };
                            let within = homer.limits().handshake_timeout;
                            match tokio::time::timeout(within, tls.acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    crate::transport_http::serve_connection(
                                        homer, stream, peer, permit,
                                    )
                                    .await;
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        }
                    })
                    .await;
            }
            .instrument(tracing::info_span!("listener", %local, kind)),
        );
        Ok(local)
    }

    /// Starts a TCP listener speaking the protocol `make` makes for each
    /// connection; returns the bound address.
    ///
    /// ```no_run
    /// # async fn f(homer: homer::Homer) -> Result<(), homer::Error> {
    /// homer.listen_tcp("127.0.0.1:7000", homer::json_lines()).await?;
    /// homer.listen_tcp("127.0.0.1:7001", homer::length_prefixed()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn listen_tcp<M: MakeProtocol>(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
        make: M,
    ) -> Result<SocketAddr, Error> {
        self.listen_tcp_with(addr, make, None).await
    }

    /// [`listen_tcp`](Self::listen_tcp) over TLS (after the PROXY header,
    /// if one is expected).
    pub async fn listen_tcp_tls<M: MakeProtocol>(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
        make: M,
        tls: Tls,
    ) -> Result<SocketAddr, Error> {
        self.listen_tcp_with(addr, make, Some(tls)).await
    }

    async fn listen_tcp_with<M: MakeProtocol>(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
        make: M,
        tls: Option<Tls>,
    ) -> Result<SocketAddr, Error> {
        let (listener, local) = self.bind(addr).await?;
        let homer = self.clone();
        let make = Arc::new(make);
        let kind = if tls.is_some() { "tcp+tls" } else { "tcp" };
        self.spawn(
            async move {
                homer
                    .accept_loop(listener, move |homer, stream, peer, permit| {
                        let protocol = make.make(homer.limits());
                        crate::tcp::serve_connection(
                            homer,
                            stream,
                            peer,
                            permit,
                            protocol,
                            crate::Transport::Tcp,
                            tls.as_ref().map(|t| t.acceptor.clone()),
                        )
                    })
                    .await;
            }
            .instrument(tracing::info_span!("listener", %local, kind)),
        );
        Ok(local)
    }

    /// Stops the server: stops accepting, stops reading new calls, lets calls
    /// in flight finish and queued pushes drain for up to `grace`, then
    /// closes every connection with [`CloseReason::Shutdown`] (WebSocket:
    /// close frame 1001; built-in TCP protocols: a `close` push). Returns
    /// when every connection task has ended.
    ///
    /// Then it drops every registered API, hook, `GET` route and HTTP
    /// session: a handler that holds a `Homer` clone, or app state that holds
    /// one, no longer keeps the server (or the state) alive. A server that
    /// has shut down serves nothing again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), homer::BuildError> {
    /// use std::sync::Arc;
    ///
    /// let homer = homer::Homer::builder().build()?;
    /// let state = Arc::new("app state");
    /// let (s, h) = (state.clone(), homer.clone());
    /// homer.api("who", move |_ctx, _: ()| {
    ///     let (s, _server) = (s.clone(), h.clone());
    ///     async move { Ok::<_, homer::ApiError>(*s) }
    /// });
    /// assert_eq!(Arc::strong_count(&state), 2);
    /// homer.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert_eq!(Arc::strong_count(&state), 1, "the handler is gone");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!("shutdown grace period over; dropping remaining connections");
            self.inner.hard_stop.cancel();
            for conn in self.inner.hub.connections() {
                conn.disconnect(CloseReason::Shutdown);
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.tracker.wait()).await;
        }
        self.inner.registry.clear();
        self.inner.http.routes.clear();
        self.inner.http.sessions.clear();
        let hooks = &self.inner.hooks;
        clear(&hooks.open);
        clear(&hooks.close);
        clear(&hooks.resolver);
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    async fn bind(
        &self,
        addr: impl ToSocketAddrs + fmt::Debug,
    ) -> Result<(TcpListener, SocketAddr), Error> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let shown = format!("{addr:?}");
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr: shown,
                source,
            })?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    }

    async fn accept_loop<F, Fut>(&self, listener: TcpListener, serve: F)
    where
        F: Fn(Homer, tokio::net::TcpStream, SocketAddr, Slot) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            let accepted = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let permit = match self.admit(peer) {
                        Ok(permit) => permit,
                        Err(refusal) => {
                            drop(stream);
                            self.refused(peer, refusal);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    self.spawn(serve(self.clone(), stream, peer, permit));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// A slot for a new connection from `peer`: one of `max_connections`,
    /// and one of its address's (unless `peer` is a trusted proxy, whose
    /// clients are admitted by the address its PROXY header names, if any).
    pub(crate) fn admit(&self, peer: SocketAddr) -> Result<Slot, Refusal> {
        let global = self
            .inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        let admission = &self.inner.admission;
        let address = if admission.is_trusted(peer.ip()) {
            None
        } else {
            Some(admission.admit(peer.ip())?)
        };
        Ok(Slot::new(global, address))
    }

    pub(crate) fn admission(&self) -> &Arc<Admission> {
        &self.inner.admission
    }

    /// Log and report a connection closed before it was served.
    pub(crate) fn refused(&self, peer: SocketAddr, refusal: Refusal) {
        tracing::debug!(%peer, %refusal, "connection refused");
        self.inner.observers.refused(peer, refusal);
    }

    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.tracker.spawn(fut);
    }

    pub(crate) fn new_connection(
        &self,
        peer: SocketAddr,
        transport: Transport,
        protocol: &'static str,
        http: Option<Arc<HttpRequest>>,
    ) -> (Connection, Receiver) {
        Connection::new(NewConn {
            id: ConnId(self.inner.next_id.fetch_add(1, Ordering::Relaxed)),
            peer,
            transport,
            protocol,
            capacity: self.inner.limits.outbound_queue,
            rate: self.inner.limits.rate_limit,
            hub: Arc::downgrade(&self.inner.hub.inner),
            http,
        })
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn resolver(&self) -> Option<Resolver> {
        read(&self.inner.hooks.resolver)
    }

    pub(crate) fn hook_context(&self, conn: &Connection) -> Context {
        Context::new(conn.clone(), self.clone(), None)
    }

    /// Marks `conn` opened (so its close runs the close hook) and returns the
    /// open hook's future.
    pub(crate) fn mark_opened(
        &self,
        conn: &Connection,
    ) -> impl Future<Output = ()> + Send + 'static {
        conn.inner.opened.store(true, Ordering::Release);
        self.inner.observers.opened(conn);
        let hook = read(&self.inner.hooks.open);
        let ctx = self.hook_context(conn);
        async move {
            if let Some(hook) = hook
                && AssertUnwindSafe(hook(ctx)).catch_unwind().await.is_err()
            {
                tracing::error!("open hook panicked");
            }
        }
    }

    /// Unregisters `conn` and runs the close hook if it was opened.
    pub(crate) async fn finish(&self, conn: &Connection, reason: CloseReason) {
        conn.set_reason(reason);
        let reason = conn.reason().unwrap_or(CloseReason::PeerClosed);
        conn.inner.closing.cancel();
        if !self.inner.hub.unregister(conn) || !conn.inner.opened.load(Ordering::Acquire) {
            return;
        }
        tracing::debug!(%reason, "connection closed");
        self.inner.observers.closed(conn, &reason);
        if let Some(hook) = read(&self.inner.hooks.close) {
            let fut = hook(self.hook_context(conn), reason);
            if AssertUnwindSafe(fut).catch_unwind().await.is_err() {
                tracing::error!("close hook panicked");
            }
        }
    }

    /// Runs one call to its reply. Never panics: a panicking handler gives
    /// 500.
    pub(crate) fn dispatch(
        &self,
        ctx: Context,
        call: Call,
    ) -> impl Future<Output = Reply> + Send + 'static {
        let handler = self.inner.registry.get(&call.api);
        let span = tracing::debug_span!("call", api = %crate::error::truncate(&call.api, 128), id = %call.id);
        let observers = self.inner.observers.clone();
        let (transport, protocol) = (ctx.transport(), ctx.connection().protocol());
        let known = handler.is_some();
        let started = std::time::Instant::now();
        async move {
            let Call { id, api, params } = call;
            let result = match handler {
                None => Err(ApiError::unknown_api(&api)),
                Some(h) => match AssertUnwindSafe(async move { h.call(ctx, params).await })
                    .catch_unwind()
                    .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::error!("handler panicked");
                        Err(ApiError::internal(format!(
                            "api \"{}\" failed",
                            crate::error::truncate(&api, 128)
                        )))
                    }
                },
            };
            if let Err(e) = &result {
                tracing::debug!(status = e.status(), code = e.code(), "call failed");
            }
            if observers.is_some() {
                let err = result.as_ref().err();
                observers.call(&CallEvent {
                    api: &api,
                    known,
                    handled: known,
                    transport,
                    protocol,
                    status: err.map_or(200, ApiError::status),
                    code: err.map(ApiError::code),
                    elapsed: started.elapsed(),
                });
            }
            Reply {
                id,
                api: Some(api),
                result,
            }
        }
        .instrument(span)
    }

    /// Reports a call of `api` over `transport` and `protocol` refused with
    /// `error` before any handler ran (rate limit, unreadable HTTP body).
    pub(crate) fn observe_refused(
        &self,
        (transport, protocol): (Transport, &'static str),
        api: &str,
        error: &ApiError,
    ) {
        if self.inner.observers.is_some() {
            self.inner.observers.call(&CallEvent {
                api,
                known: self.inner.registry.get(api).is_some(),
                handled: false,
                transport,
                protocol,
                status: error.status(),
                code: Some(error.code()),
                elapsed: Duration::ZERO,
            });
        }
    }

    /// A context for a call of `api` on a stream connection.
    pub(crate) fn call_context(&self, conn: &Connection, api: &str) -> (Context, Arc<CallState>) {
        let state = CallState::new(Some(api.to_owned()), None);
        (
            Context::new(conn.clone(), self.clone(), Some(state.clone())),
            state,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a user sees when `builder` is built.
    fn refused(builder: HomerBuilder) -> String {
        builder.build().map(drop).unwrap_err().to_string()
    }

    #[test]
    fn the_defaults_build() {
        let homer = Homer::builder().build().unwrap();
        assert_eq!(homer.limits().max_connections(), 10_000);
        let _ = Homer::default();
    }

    #[test]
    fn the_smallest_allowed_settings_build() {
        let ms = Duration::from_millis(10);
        Homer::builder()
            .max_frame_size(256)
            .max_connections(1)
            .max_connections_per_ip(1)
            .max_sessions(1)
            .outbound_queue(1)
            .max_in_flight(1)
            .idle_timeout(ms)
            .first_message_timeout(ms)
            .handshake_timeout(ms)
            .sse_keepalive(ms)
            .rate_limit(1, 1)
            .connection_rate_per_ip(1, 1)
            .session_cookie("s")
            .trusted_proxies(["127.0.0.1".parse().unwrap()])
            .proxy_protocol(true)
            .build()
            .unwrap();
    }

    #[test]
    fn a_frame_size_under_256_bytes_is_refused() {
        assert_eq!(
            refused(Homer::builder().max_frame_size(255)),
            "invalid max_frame_size: expected at least 256 bytes, got 255"
        );
    }

    #[test]
    fn zero_or_too_many_connections_are_refused() {
        assert_eq!(
            refused(Homer::builder().max_connections(0)),
            "invalid max_connections: expected 1 to 2305843009213693951, got 0"
        );
        assert_eq!(
            refused(Homer::builder().max_connections(usize::MAX)),
            format!(
                "invalid max_connections: expected 1 to 2305843009213693951, got {}",
                usize::MAX
            )
        );
    }

    #[test]
    fn zero_counts_are_refused() {
        assert_eq!(
            refused(Homer::builder().max_connections_per_ip(0)),
            "invalid max_connections_per_ip: expected at least 1, got 0"
        );
        assert_eq!(
            refused(Homer::builder().max_sessions(0)),
            "invalid max_sessions: expected at least 1, got 0"
        );
        assert_eq!(
            refused(Homer::builder().outbound_queue(0)),
            "invalid outbound_queue: expected at least 1, got 0"
        );
        assert_eq!(
            refused(Homer::builder().max_in_flight(0)),
            "invalid max_in_flight: expected at least 1, got 0"
        );
    }

    #[test]
    fn times_under_10_ms_are_refused() {
        let short = Duration::from_millis(9);
        assert_eq!(
            refused(Homer::builder().idle_timeout(Duration::ZERO)),
            "invalid idle_timeout: expected at least 10ms, got 0ns"
        );
        assert_eq!(
            refused(Homer::builder().first_message_timeout(short)),
            "invalid first_message_timeout: expected at least 10ms, got 9ms"
        );
        assert_eq!(
            refused(Homer::builder().handshake_timeout(short)),
            "invalid handshake_timeout: expected at least 10ms, got 9ms"
        );
        assert_eq!(
            refused(Homer::builder().sse_keepalive(short)),
            "invalid sse_keepalive: expected at least 10ms, got 9ms"
        );
    }

    #[test]
    fn zero_rates_are_refused() {
        assert_eq!(
            refused(Homer::builder().rate_limit(0, 50)),
            "invalid rate_limit per_second: expected at least 1, got 0"
        );
        assert_eq!(
            refused(Homer::builder().rate_limit(20, 0)),
            "invalid rate_limit burst: expected at least 1, got 0"
        );
        assert_eq!(
            refused(Homer::builder().connection_rate_per_ip(0, 500)),
            "invalid connection_rate_per_ip per_second: expected at least 1, got 0"
        );
        assert_eq!(
            refused(Homer::builder().connection_rate_per_ip(100, 0)),
            "invalid connection_rate_per_ip burst: expected at least 1, got 0"
        );
        // No limit at all is a setting of its own.
        Homer::builder()
            .no_rate_limit()
            .no_connection_rate_per_ip()
            .build()
            .unwrap();
    }

    #[test]
    fn a_session_cookie_that_is_no_cookie_name_is_refused() {
        let expected =
            "a cookie name of 1 or more printable ASCII characters without spaces or separators";
        for name in ["", "my session", "a=b", "sess;ion", "\u{e9}t\u{e9}"] {
            assert_eq!(
                refused(Homer::builder().session_cookie(name)),
                format!("invalid session_cookie: expected {expected}, got {name:?}")
            );
        }
        Homer::builder()
            .session_cookie("__Host-sid")
            .build()
            .unwrap();
    }

    #[test]
    fn the_proxy_protocol_without_a_trusted_proxy_is_refused() {
        assert_eq!(
            refused(Homer::builder().proxy_protocol(true)),
            "invalid proxy_protocol: expected at least one trusted_proxies address when on, \
             got on with no trusted proxy"
        );
        let err = Homer::builder().proxy_protocol(true).build().unwrap_err();
        assert!(matches!(
            err,
            BuildError::InvalidSetting {
                setting: "proxy_protocol",
                ..
            }
        ));
    }
}
