//! QUIC endpoints with mutual TLS that trust only the fleet CA.
//!
//! Servers require a client certificate chaining to the fleet CA; clients
//! verify that the server holds a host certificate of the same fleet. TLS 1.3
//! only. Early data (0-RTT) is never accepted: the server's rustls
//! configuration leaves `max_early_data_size` at 0, so every message is sent
//! after the full handshake, and a replayed flight cannot deploy or invoke
//! anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ClientConfig, Endpoint, EndpointConfig, MtuDiscoveryConfig, ServerConfig, TransportConfig,
    VarInt,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;

use crate::identity::{Credentials, Identity, identity_of};
use crate::{Error, Result};

/// The ALPN protocol name of edgehost's QUIC protocol.
pub const ALPN: &[u8] = b"edgehost/1";

/// UDP socket buffers: large enough that a burst of a large upload does not
/// drop packets on a busy loopback or LAN.
const SOCKET_BUFFER: usize = 4 << 20;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(creds: &Credentials) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(creds.ca.clone())
        .map_err(|e| Error::Identity(format!("fleet CA: {e}")))?;
    Ok(Arc::new(roots))
}

/// Largest UDP payload path-MTU discovery probes for. Discovery starts at
/// QUIC's safe 1200 bytes and climbs only as far as the path carries probes,
/// so a 1500-byte Internet path settles near 1452 while a jumbo-frame LAN or
/// loopback moves a state blob in a sixth of the packets.
const MTU_UPPER_BOUND: u16 = 8952;

/// Concurrent requests (bidirectional streams) a connection may carry
/// when nothing else is configured; a host takes its own from `[limits]
/// streams_per_connection`, of which this is the default.
pub const STREAMS_PER_CONNECTION: u32 = 128;

fn transport(streams: u32) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    t.max_idle_timeout(Some(VarInt::from_u32(10_000).into()))
        .keep_alive_interval(Some(Duration::from_secs(3)))
        .max_concurrent_bidi_streams(VarInt::from_u32(streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(t)
}

/// The rustls server configuration of a host.
pub fn server_crypto(creds: &Credentials) -> Result<rustls::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(creds)?, provider())
        .build()
        .map_err(|e| Error::Identity(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Identity(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| Error::Identity(format!("host certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_early_data_size = 0;
    Ok(config)
}

/// The QUIC client configuration for dialling hosts.
pub fn client_config(creds: &Credentials) -> Result<ClientConfig> {
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Identity(e.to_string()))?
        .with_root_certificates(roots(creds)?)
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| Error::Identity(format!("certificate: {e}")))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| Error::Identity(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(quic));
    config.transport_config(transport(STREAMS_PER_CONNECTION));
    Ok(config)
}

/// Binds a QUIC endpoint on `addr`: a server too when `serve` is true.
pub fn endpoint(creds: &Credentials, addr: SocketAddr, serve: bool) -> Result<Endpoint> {
    endpoint_with(creds, addr, serve, STREAMS_PER_CONNECTION)
}

/// [`endpoint`], serving at most `streams` concurrent requests per
/// incoming connection.
pub fn endpoint_with(
    creds: &Credentials,
    addr: SocketAddr,
    serve: bool,
    streams: u32,
) -> Result<Endpoint> {
    let socket = udp_socket(addr)?;
    let server = if serve {
        let quic = QuicServerConfig::try_from(server_crypto(creds)?)
            .map_err(|e| Error::Identity(e.to_string()))?;
        let mut server = ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(transport(streams));
        Some(server)
    } else {
        None
    };
    let mut endpoint = Endpoint::new(
        EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| Error::io(addr.to_string(), e))?;
    endpoint.set_default_client_config(client_config(creds)?);
    Ok(endpoint)
}

fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| Error::io(addr.to_string(), e))?;
    // Best effort: the kernel may cap these; a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket
        .bind(&addr.into())
        .map_err(|e| Error::io(addr.to_string(), e))?;
    Ok(socket.into())
}

/// The identity in the certificate the peer of `connection` presented.
pub fn peer_identity(connection: &quinn::Connection) -> Result<Identity> {
    let certs = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| Error::Identity("peer presented no certificate".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Error::Identity("peer presented no certificate".into()))?;
    identity_of(leaf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, init_fleet, issue};

    #[test]
    fn servers_never_accept_early_data() {
        let dir = tempfile::tempdir().unwrap();
        init_fleet(dir.path(), "t").unwrap();
        let (cert, key) = issue(dir.path(), dir.path(), "h", Role::Host).unwrap();
        let creds = Credentials::load(&dir.path().join("ca.pem"), &cert, &key).unwrap();
        assert_eq!(server_crypto(&creds).unwrap().max_early_data_size, 0);
    }
}
