//! Connections from a chosen loopback address, for per-address behaviour:
//! on Linux every 127.x.y.z is the loopback interface, so one process can
//! play many clients.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `to` from the address `from` (such as `127.0.0.2`),
/// on a port the system picks.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let to = listener.local_addr()?;
/// let _client = testkit::connect_from("127.0.0.2", to).await?;
/// let (_, peer) = listener.accept().await?;
/// assert_eq!(peer.ip().to_string(), "127.0.0.2");
/// # Ok(())
/// # }
/// ```
pub async fn connect_from(from: &str, to: SocketAddr) -> io::Result<TcpStream> {
    let ip: IpAddr = from
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}
