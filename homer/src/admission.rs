//! Admission of new connections by source address: how many one address
//! may hold at once and open per second, and which peers are trusted
//! proxies whose PROXY protocol header names the real client.
//!
//! ```text
//!  accept ─▶ global slot (max_connections) ─▶ peer a trusted proxy?
//!              │                                 │ no: admit(peer ip)
//!              │                                 │ yes, TCP with PROXY on: read the
//!              │                                 │   header, admit(client ip)
//!              │                                 │ yes, otherwise: admitted as is
//!              ▼                                 ▼
//!        refused: closed at once, before any handshake, and reported to
//!        the observer (`Observer::connection_refused`)
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::limits::RateLimit;
use crate::rate::TokenBucket;

/// Why a connection was refused before it was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The server holds `max_connections` already.
    Full,
    /// The address holds its limit of connections at once.
    TooManyFromAddress {
        /// [`Limits::max_connections_per_ip`](crate::Limits::max_connections_per_ip).
        limit: usize,
    },
    /// The address opens connections faster than allowed.
    TooFastFromAddress {
        /// [`Limits::connection_rate_per_ip`](crate::Limits::connection_rate_per_ip).
        limit: RateLimit,
    },
    /// A trusted proxy's PROXY protocol header was missing, malformed or
    /// too slow.
    BadProxyHeader,
}

impl Refusal {
    /// A short name for logs and metric labels: `full`, `per_ip_limit`,
    /// `per_ip_rate` or `proxy_header`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::TooManyFromAddress { .. } => "per_ip_limit",
            Refusal::TooFastFromAddress { .. } => "per_ip_rate",
            Refusal::BadProxyHeader => "proxy_header",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full => f.write_str("the server holds its limit of connections"),
            Refusal::TooManyFromAddress { limit } => {
                write!(f, "the address holds its limit of {limit} connections")
            }
            Refusal::TooFastFromAddress { limit } => write!(
                f,
                "the address opens more than {} connections per second (bursts of {})",
                limit.per_second, limit.burst
            ),
            Refusal::BadProxyHeader => f.write_str("no valid PROXY protocol header"),
        }
    }
}

/// Per-address state kept while an address holds connections or has used
/// part of its burst.
#[derive(Debug)]
struct Entry {
    active: usize,
    bucket: Option<TokenBucket>,
}

/// Past this many addresses, those that hold nothing are forgotten (their
/// rate state with them) before a new one is added: the table stays bounded
/// under a flood from many addresses.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug)]
pub(crate) struct Admission {
    max_per_ip: usize,
    rate: Option<RateLimit>,
    trusted: Vec<IpAddr>,
    proxy_protocol: bool,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// What a served connection holds: its global slot and, unless it came
/// through a trusted proxy without a PROXY header, its address's slot.
#[derive(Debug)]
pub(crate) struct Slot {
    _global: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

#[derive(Debug)]
pub(crate) struct AddressSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.admission.lock();
        if let Some(entry) = table.get_mut(&self.ip) {
            entry.active = entry.active.saturating_sub(1);
            let idle = match (&entry.bucket, self.admission.rate) {
                (Some(b), Some(limit)) => b.is_full(limit, Instant::now()),
                _ => true,
            };
            if entry.active == 0 && idle {
                table.remove(&self.ip);
            }
        }
    }
}

impl Slot {
    pub(crate) fn new(global: OwnedSemaphorePermit, address: Option<AddressSlot>) -> Self {
        Slot {
            _global: global,
            _address: address,
        }
    }

    /// Hold the slot of the address a PROXY header named.
    pub(crate) fn hold_address(&mut self, address: AddressSlot) {
        self._address = Some(address);
    }
}

/// The longest PROXY protocol header (v2 with its TLVs, capped; v1 is at
/// most 107 bytes).
const MAX_PROXY_HEADER: usize = 536;

impl Admission {
    pub(crate) fn new(
        max_per_ip: usize,
        rate: Option<RateLimit>,
        trusted: Vec<IpAddr>,
        proxy_protocol: bool,
    ) -> Self {
        Admission {
            max_per_ip,
            rate,
            trusted,
            proxy_protocol,
            table: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `ip` is a configured proxy.
    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(&canonical(ip))
    }

    /// Whether TCP connections from trusted proxies start with a PROXY
    /// protocol header.
    pub(crate) fn expects_proxy_header(&self, peer: SocketAddr) -> bool {
        self.proxy_protocol && self.is_trusted(peer.ip())
    }

    /// Take a slot for one more connection from `ip`, or say why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<AddressSlot, Refusal> {
        let ip = canonical(ip);
        let now = Instant::now();
        let mut table = self.lock();
        if table.len() >= MAX_TRACKED && !table.contains_key(&ip) {
            table.retain(|_, e| e.active > 0);
        }
        let entry = table.entry(ip).or_insert(Entry {
            active: 0,
            bucket: None,
        });
        if entry.active >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress {
                limit: self.max_per_ip,
            });
        }
        if let Some(limit) = self.rate {
            let bucket = entry.bucket.get_or_insert_with(|| TokenBucket::new(limit));
            if !bucket.try_take(limit, now) {
                return Err(Refusal::TooFastFromAddress { limit });
            }
        }
        entry.active += 1;
        Ok(AddressSlot {
            admission: self.clone(),
            ip,
        })
    }
}

/// An IPv4 address mapped into IPv6 counts as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Read a PROXY protocol header (v1 or v2) from `stream` within `within`,
/// and not a byte more (what follows may be a TLS handshake); the client's
/// address it names (the proxy's own `peer` for a `LOCAL` or `UNKNOWN`
/// header).
pub(crate) async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    within: Duration,
) -> Result<SocketAddr, Refusal> {
    use ppp::HeaderResult;
    const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let read = async {
        let bad = |_| Refusal::BadProxyHeader;
        let mut buf = vec![0u8; 6];
        stream.read_exact(&mut buf).await.map_err(bad)?;
        if buf == b"PROXY " {
            // v1: text up to CRLF, at most 107 bytes.
            while !buf.ends_with(b"\r\n") {
                if buf.len() >= 107 {
                    return Err(Refusal::BadProxyHeader);
                }
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.map_err(bad)?;
                buf.push(byte[0]);
            }
        } else if V2_SIGNATURE.starts_with(&buf) {
            // v2: the signature, version, family, a length, then that much.
            buf.resize(16, 0);
            stream.read_exact(&mut buf[6..]).await.map_err(bad)?;
            let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if 16 + len > MAX_PROXY_HEADER {
                return Err(Refusal::BadProxyHeader);
            }
            buf.resize(16 + len, 0);
            stream.read_exact(&mut buf[16..]).await.map_err(bad)?;
        } else {
            return Err(Refusal::BadProxyHeader);
        }
        let client = match HeaderResult::parse(&buf) {
            HeaderResult::V1(Ok(h)) => match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    SocketAddr::new(a.source_address.into(), a.source_port)
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    SocketAddr::new(a.source_address.into(), a.source_port)
                }
                ppp::v1::Addresses::Unknown => peer,
            },
            HeaderResult::V2(Ok(h)) => match h.addresses {
                ppp::v2::Addresses::IPv4(a) => {
                    SocketAddr::new(a.source_address.into(), a.source_port)
                }
                ppp::v2::Addresses::IPv6(a) => {
                    SocketAddr::new(a.source_address.into(), a.source_port)
                }
                _ => peer,
            },
            _ => return Err(Refusal::BadProxyHeader),
        };
        Ok(client)
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(Refusal::BadProxyHeader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_slots_back() {
        let a = Arc::new(Admission::new(2, None, vec![], false));
        let one = a.admit(ip("10.0.0.1")).unwrap();
        let _two = a.admit(ip("::ffff:10.0.0.1")).unwrap(); // the same address
        assert_eq!(
            a.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::TooManyFromAddress { limit: 2 }
        );
        assert!(
            a.admit(ip("10.0.0.2")).is_ok(),
            "other addresses are not affected"
        );
        drop(one);
        assert!(a.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_address_opens_at_most_its_rate() {
        let limit = RateLimit {
            per_second: 1,
            burst: 3,
        };
        let a = Arc::new(Admission::new(100, Some(limit), vec![], false));
        for _ in 0..3 {
            drop(a.admit(ip("10.0.0.1")).unwrap());
        }
        assert_eq!(
            a.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::TooFastFromAddress { limit },
            "the burst is spent even though the connections closed"
        );
        assert!(a.admit(ip("10.0.0.9")).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let a = Arc::new(Admission::new(10, None, vec![], false));
        let held = a.admit(ip("10.9.9.9")).unwrap();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let _ = a.admit(IpAddr::from(i.to_be_bytes())).map(drop);
        }
        assert!(a.lock().len() <= MAX_TRACKED);
        assert!(
            a.lock().contains_key(&ip("10.9.9.9")),
            "a holding address is kept"
        );
        drop(held);
    }

    #[tokio::test]
    async fn proxy_headers_name_the_client() {
        let proxy: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let within = Duration::from_secs(1);
        let mut v1: &[u8] = b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 7000\r\n{\"id\":1}\n";
        let client = read_proxy_header(&mut v1, proxy, within).await.unwrap();
        assert_eq!(client, "203.0.113.7:51000".parse().unwrap());
        assert_eq!(v1, b"{\"id\":1}\n", "not a byte past the header is read");

        let mut unknown: &[u8] = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            read_proxy_header(&mut unknown, proxy, within)
                .await
                .unwrap(),
            proxy
        );

        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::1]:4000".parse::<SocketAddr>().unwrap(),
                "[::1]:7000".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut v2 = [header, b"x".to_vec()].concat();
        let mut rest = v2.as_slice();
        let client = read_proxy_header(&mut rest, proxy, within).await.unwrap();
        assert_eq!(client, "[2001:db8::1]:4000".parse().unwrap());
        assert_eq!(rest, b"x", "not a byte past the header is read");
        v2.truncate(10);
        assert_eq!(
            read_proxy_header(&mut v2.as_slice(), proxy, within).await,
            Err(Refusal::BadProxyHeader),
            "a cut header"
        );

        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            &[0u8; 600],
        ] {
            let mut s = bad;
            assert_eq!(
                read_proxy_header(&mut s, proxy, within).await,
                Err(Refusal::BadProxyHeader),
                "{bad:?}"
            );
        }
    }
}
