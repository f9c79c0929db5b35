//! TCP listeners: any [`Protocol`] over a socket, framed by tokio-util.

use std::net::SocketAddr;

use crate::admission::{Slot, read_proxy_header};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Decoder, Encoder, Framed};
use tracing::Instrument;

use crate::connection::Transport;
use crate::driver::{Inbound, Outgoing, drive};
use crate::error::ProtocolError;
use crate::protocol::Protocol;
use crate::server::Homer;

/// Adapts a [`Protocol`] to tokio-util's codec traits so [`Framed`] does the
/// buffering.
pub(crate) struct ProtocolCodec<P>(pub(crate) P);

impl<P: Protocol> Decoder for ProtocolCodec<P> {
    type Item = Inbound;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        Ok(self.0.decode(src)?.map(Inbound::Frame))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        Ok(self.0.decode_eof(src)?.map(Inbound::Frame))
    }
}

impl<P: Protocol> Encoder<Outgoing> for ProtocolCodec<P> {
    type Error = ProtocolError;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match item {
            Outgoing::Reply(r) => self.0.encode_reply(&r, dst),
            Outgoing::Push(p) => self.0.encode_push(&p, dst),
            Outgoing::Close(reason) => self.0.encode_close(&reason.to_string(), dst),
            Outgoing::Ping => Ok(()),
        }
    }
}

/// Serve one connection with `protocol` over any byte stream: a TCP socket,
/// or an in-memory pipe (`transport` says which). From a trusted proxy with
/// the PROXY protocol on, the stream starts with a header naming the client:
/// that address is the connection's peer and is admitted by its limits.
/// With `tls`, a TLS handshake follows (within the handshake timeout).
pub(crate) async fn serve_connection<S, P>(
    homer: Homer,
    mut stream: S,
    peer: SocketAddr,
    mut permit: Slot,
    protocol: P,
    transport: Transport,
    tls: Option<TlsAcceptor>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Protocol,
{
    let mut peer = peer;
    let within = homer.limits().handshake_timeout;
    if transport == Transport::Tcp && homer.admission().expects_proxy_header(peer) {
        let client = match read_proxy_header(&mut stream, peer, within).await {
            Ok(found) => found,
            Err(refusal) => return homer.refused(peer, refusal),
        };
        match homer.admission().admit(client.ip()) {
            Ok(slot) => permit.hold_address(slot),
            // The client's own limit: reported with the client's address.
            Err(refusal) => return homer.refused(client, refusal),
        }
        tracing::debug!(proxy = %peer, %client, "PROXY header read");
        peer = client;
    }
    match tls {
        None => serve_stream(homer, stream, peer, permit, protocol, transport).await,
        Some(tls) => match tokio::time::timeout(within, tls.accept(stream)).await {
            Ok(Ok(stream)) => serve_stream(homer, stream, peer, permit, protocol, transport).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn serve_stream<S, P>(
    homer: Homer,
    stream: S,
    peer: SocketAddr,
    permit: Slot,
    protocol: P,
    transport: Transport,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Protocol,
{
    let name = protocol.name();
    let (conn, rx) = homer.new_connection(peer, transport, name, None);
    let span = tracing::info_span!("conn", id = %conn.id(), %peer, protocol = name);
    async move {
        tracing::debug!("accepted");
        homer.hub().register(&conn);
        homer.mark_opened(&conn).await;
        let each = protocol.write_each_message();
        let idle = protocol
            .idle_timeout()
            .unwrap_or(homer.limits().idle_timeout);
        let mut wire = Framed::new(stream, ProtocolCodec(protocol));
        if each {
            // A non-empty write buffer is flushed before the next item is
            // encoded: one write per encoded reply or push.
            wire.set_backpressure_boundary(1);
        }
        drive(homer, conn, rx, wire, None, idle).await;
        drop(permit);
    }
    .instrument(span)
    .await;
}
