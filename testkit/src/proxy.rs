//! A TCP proxy that a test cuts and restores.
//!
//! Moved here from `nopi::testing`: it knows nothing of storage, and the
//! outage tests of nopi, rmq_core and the chat cluster all use it.

/// A TCP proxy in front of a server (PostgreSQL, RabbitMQ, ...) that a test
/// can cut and restore: on [`cut`](Self::cut) every connection through it dies
/// and new ones are closed at once, which is what a client sees when the
/// server goes away — without touching the server other tests share.
///
/// ```no_run
/// use testkit::FaultProxy;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let proxy = FaultProxy::start("127.0.0.1:5432").await?;
/// let url = format!("postgres://postgres@{}/test", proxy.addr());
/// // ... open a store at `url`, then:
/// proxy.cut(); // the store is unreachable
/// proxy.restore(); // and back
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<ProxyState>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct ProxyState {
    up: std::sync::atomic::AtomicBool,
    conns: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ProxyState {
    fn kill_all(&self) {
        let conns = std::mem::take(&mut *crate::lock(&self.conns));
        for conn in conns {
            conn.abort();
        }
    }
}

impl FaultProxy {
    /// Listen on a free loopback port and forward every connection to `target`
    /// (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<FaultProxy> {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = std::sync::Arc::new(ProxyState::default());
        state.up.store(true, Ordering::SeqCst);
        let target = target.to_owned();
        let accept = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let mut client = match listener.accept().await {
                        Ok((client, _)) => client,
                        Err(_) => {
                            // Out of descriptors, say: try again shortly.
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let _ = client.set_nodelay(true);
                    // Checked under the lock that `cut` takes after clearing
                    // `up`: a connection accepted while cutting is either
                    // killed by the cut or refused here, never left alive.
                    let mut conns = crate::lock(&state.conns);
                    if !state.up.load(Ordering::SeqCst) {
                        continue; // dropped: closed at once
                    }
                    let target = target.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                            let _ = server.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    conns.retain(|c| !c.is_finished());
                    conns.push(conn);
                }
            })
        };
        Ok(FaultProxy {
            addr,
            state,
            accept,
        })
    }

    /// The address clients connect to instead of the target.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Kill every connection through the proxy and refuse new ones.
    pub fn cut(&self) {
        self.state
            .up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.state.kill_all();
    }

    /// Accept connections again.
    pub fn restore(&self) {
        self.state
            .up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// True while connections are forwarded.
    pub fn is_up(&self) -> bool {
        self.state.up.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// An echo server; its address.
    async fn echo() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = conn.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// True when `conn` echoes a byte back.
    async fn echoes(conn: &mut TcpStream) -> bool {
        if conn.write_all(b"x").await.is_err() {
            return false;
        }
        let mut byte = [0];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut byte)).await,
            Ok(Ok(1))
        )
    }

    #[tokio::test]
    async fn a_cut_kills_every_connection_and_refuses_new_ones_until_restored() {
        let proxy = FaultProxy::start(&echo().await.to_string()).await.unwrap();
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut before).await);

        proxy.cut();
        assert!(!proxy.is_up());
        assert!(!echoes(&mut before).await, "a connection survived the cut");
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            !echoes(&mut during).await,
            "a connection opened during the cut"
        );

        proxy.restore();
        assert!(proxy.is_up());
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(echoes(&mut after).await);
    }
}
