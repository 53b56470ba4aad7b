//! QUIC endpoints with mutual TLS that trust only the fleet CA.
//!
//! Servers require a client certificate chaining to the fleet CA; clients
//! verify that the server holds a host certificate of the same fleet. TLS 1.3
//! only. Early data (0-RTT) is never accepted: the server's rustls
//! configuration leaves `max_early_data_size` at 0, so every message is sent
//! after the full handshake, and a replayed flight cannot deploy or invoke
//! anything.
//!
//! Sessions are never resumed, in either direction: a resumed TLS 1.3
//! session presents no certificate, so it would skip the checks below and
//! the certificate's expiry. Connections are long-lived and cached, so the
//! full handshake is rare.
//!
//! A host's verifiers also consult its revocation list
//! ([`crate::revocation`]) at every handshake, incoming and outgoing, so a
//! revoked certificate fails the handshake like an expired one. Its
//! configurations are built from files that can change while it runs
//! (`edgehost fleet rotate`), so they are made by functions the host calls
//! again, not once at bind.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{
    ClientConfig, Endpoint, EndpointConfig, MtuDiscoveryConfig, ServerConfig, TransportConfig,
    VarInt,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};

use crate::identity::{Credentials, Identity, identity_of};
use crate::revocation::Revocations;
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

/// Bytes a peer may have in flight over all the streams of one connection
/// before it must wait for the host to read them. Each stream's own window
/// (quinn's default, about 1.2 MiB) is smaller, so a single transfer runs
/// as fast as before; this caps what many streams that keep sending can
/// make the host buffer.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 8 << 20;

/// Congestion window of a new connection, bytes. QUIC's default is ten
/// packets (12 KB), and a connection that carries only heartbeats never
/// grows past it: the first state blob or image it carries then pays a
/// round trip for each doubling of the window. Edge links are thin but
/// their round trips are long, so a connection starts with about one
/// bandwidth-delay product of a 20 Mbit/s, 100 ms link; quinn paces it over
/// the round trip, and loss still shrinks it as it would any window.
pub const INITIAL_WINDOW: u64 = 256 << 10;

fn transport(streams: u32) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    t.congestion_controller_factory(Arc::new(cubic));
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    t.max_idle_timeout(Some(VarInt::from_u32(10_000).into()))
        .keep_alive_interval(Some(Duration::from_secs(3)))
        .max_concurrent_bidi_streams(VarInt::from_u32(streams))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(t)
}

/// The rustls server configuration of a host.
pub fn server_crypto(creds: &Credentials) -> Result<rustls::ServerConfig> {
    server_crypto_checking(creds, None)
}

fn server_crypto_checking(
    creds: &Credentials,
    revocations: Option<&Arc<Revocations>>,
) -> Result<rustls::ServerConfig> {
    let webpki = WebPkiClientVerifier::builder_with_provider(roots(creds)?, provider())
        .build()
        .map_err(|e| Error::Identity(format!("client verifier: {e}")))?;
    let verifier: Arc<dyn ClientCertVerifier> = match revocations {
        Some(revocations) => Arc::new(RevokingClientVerifier {
            inner: webpki,
            revocations: revocations.clone(),
        }),
        None => webpki,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Identity(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| Error::Identity(format!("host certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_early_data_size = 0;
    // No resumption: a resumed session skips the certificate, and with it
    // the check of its expiry and of the revocation list.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The QUIC client configuration for dialling hosts.
pub fn client_config(creds: &Credentials) -> Result<ClientConfig> {
    client_config_checking(creds, None)
}

fn client_config_checking(
    creds: &Credentials,
    revocations: Option<&Arc<Revocations>>,
) -> Result<ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Identity(e.to_string()))?;
    let builder = match revocations {
        Some(revocations) => {
            let inner = WebPkiServerVerifier::builder_with_provider(roots(creds)?, provider())
                .build()
                .map_err(|e| Error::Identity(format!("server verifier: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(RevokingServerVerifier {
                    inner,
                    revocations: revocations.clone(),
                }))
        }
        None => builder.with_root_certificates(roots(creds)?),
    };
    let mut crypto = builder
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(|e| Error::Identity(format!("certificate: {e}")))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    crypto.resumption = rustls::client::Resumption::disabled();
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| Error::Identity(e.to_string()))?;
    let mut config = ClientConfig::new(Arc::new(quic));
    config.transport_config(transport(STREAMS_PER_CONNECTION));
    Ok(config)
}

/// A QUIC server configuration serving at most `streams` concurrent
/// requests per incoming connection.
fn quic_server(crypto: rustls::ServerConfig, streams: u32) -> Result<ServerConfig> {
    let quic = QuicServerConfig::try_from(crypto).map_err(|e| Error::Identity(e.to_string()))?;
    let mut server = ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(transport(streams));
    Ok(server)
}

/// A host's QUIC server configuration: `creds`, client certificates
/// checked against `revocations` as well as the fleet CA, and at most
/// `streams` concurrent requests per connection.
pub fn host_server_config(
    creds: &Credentials,
    revocations: &Arc<Revocations>,
    streams: u32,
) -> Result<ServerConfig> {
    quic_server(server_crypto_checking(creds, Some(revocations))?, streams)
}

/// A host's QUIC client configuration for dialling peers: `creds`, and
/// server certificates checked against `revocations` as well as the CA.
pub fn host_client_config(
    creds: &Credentials,
    revocations: &Arc<Revocations>,
) -> Result<ClientConfig> {
    client_config_checking(creds, Some(revocations))
}

/// Binds a QUIC endpoint on `addr`: a server too when `serve` is true.
pub fn endpoint(creds: &Credentials, addr: SocketAddr, serve: bool) -> Result<Endpoint> {
    let server = if serve {
        Some(quic_server(server_crypto(creds)?, STREAMS_PER_CONNECTION)?)
    } else {
        None
    };
    bind(server, client_config(creds)?, addr)
}

/// Binds a host's endpoint on `addr`, serving with `server` and dialling
/// with `client` by default.
pub fn bind(
    server: Option<ServerConfig>,
    client: ClientConfig,
    addr: SocketAddr,
) -> Result<Endpoint> {
    let socket = udp_socket(addr)?;
    let mut endpoint = Endpoint::new(
        EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| Error::io(addr.to_string(), e))?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// The handshake-signature half of a verifier, handed to the WebPKI
/// verifier in `self.inner`: revocation changes only which certificates
/// are accepted, never how signatures are checked.
macro_rules! delegate_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// The fleet CA's verdict on a client certificate, then the revocation
/// list's.
#[derive(Debug)]
struct RevokingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Arc<Revocations>,
}

impl ClientCertVerifier for RevokingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.revocations.is_revoked(end_entity) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    delegate_signatures!();
}

/// The fleet CA's verdict on a host's certificate, then the revocation
/// list's.
#[derive(Debug)]
struct RevokingServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    revocations: Arc<Revocations>,
}

impl ServerCertVerifier for RevokingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if self.revocations.is_revoked(end_entity) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    delegate_signatures!();
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

/// The certificate the peer of `connection` presented.
pub fn peer_certificate(connection: &quinn::Connection) -> Result<CertificateDer<'static>> {
    connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().cloned())
        .ok_or_else(|| Error::Identity("peer presented no certificate".into()))
}

/// The identity in the certificate the peer of `connection` presented.
pub fn peer_identity(connection: &quinn::Connection) -> Result<Identity> {
    identity_of(&peer_certificate(connection)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Role, init_fleet, issue};

    #[test]
    fn servers_never_accept_early_data_nor_resume_sessions() {
        let dir = tempfile::tempdir().unwrap();
        init_fleet(dir.path(), "t").unwrap();
        let (cert, key) = issue(dir.path(), dir.path(), "h", Role::Host).unwrap();
        let creds = Credentials::load(&dir.path().join("ca.pem"), &cert, &key).unwrap();
        assert_eq!(server_crypto(&creds).unwrap().max_early_data_size, 0);
        assert_eq!(server_crypto(&creds).unwrap().send_tls13_tickets, 0);
    }
}
