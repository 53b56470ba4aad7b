//! Talking to hosts: connecting, one request per stream, uploads.

use std::net::SocketAddr;
use std::time::Duration;

use edgehost_runtime::Digest;
use quinn::{Connection, Endpoint};

use crate::identity::{Credentials, HOST_SERVER_NAME, Identity, Role};
use crate::protocol::{
    CHUNK_BYTES, MAX_MESSAGE_BYTES, Request, Response, decode, encode, read_frame, write_frame,
};
use crate::tls::{endpoint, peer_identity};
use crate::{Error, Result};

/// How long a connection attempt may take before the host counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Dials `addr`, completes the mutual-TLS handshake and checks that the
/// other end is a host of this fleet. Returns the connection and the host's
/// identity.
pub async fn connect(endpoint: &Endpoint, addr: SocketAddr) -> Result<(Connection, Identity)> {
    let connecting = endpoint
        .connect(addr, HOST_SERVER_NAME)
        .map_err(|e| Error::Connect(format!("{addr}: {e}")))?;
    finish_connect(connecting, addr).await
}

/// [`connect`] with `config` instead of the endpoint's default: a host
/// dials with the configuration of the certificate it holds now.
pub async fn connect_with(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<(Connection, Identity)> {
    let connecting = endpoint
        .connect_with(config, addr, HOST_SERVER_NAME)
        .map_err(|e| Error::Connect(format!("{addr}: {e}")))?;
    finish_connect(connecting, addr).await
}

async fn finish_connect(
    connecting: quinn::Connecting,
    addr: SocketAddr,
) -> Result<(Connection, Identity)> {
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| Error::Connect(format!("{addr}: no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| Error::Connect(format!("{addr}: {e}")))?;
    let identity = peer_identity(&connection)?;
    if identity.role != Role::Host {
        connection.close(1u32.into(), b"not a host");
        return Err(Error::Identity(format!(
            "{addr} presented a {} certificate, not a host's",
            identity.role
        )));
    }
    Ok((connection, identity))
}

/// Sends one request on a new stream and reads the answer. A refusal from
/// the host comes back as [`Error::Remote`].
pub async fn call(connection: &Connection, request: &Request) -> Result<Response> {
    call_encoded(connection, &encode(request)?).await
}

/// [`call`] with a request already encoded (by [`encode`]), for a caller
/// that also needs its size on the wire.
pub async fn call_encoded(connection: &Connection, message: &[u8]) -> Result<Response> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| Error::Connect(format!("opening a stream: {e}")))?;
    write_frame(&mut send, message).await?;
    let _ = send.finish();
    read_answer(&mut recv).await
}

async fn read_answer(recv: &mut quinn::RecvStream) -> Result<Response> {
    let frame = read_frame(recv, MAX_MESSAGE_BYTES)
        .await?
        .ok_or_else(|| Error::Protocol("the host closed the stream without an answer".into()))?;
    match decode::<Response>(&frame)? {
        Response::Error { kind, message } => Err(Error::Remote { kind, message }),
        other => Ok(other),
    }
}

/// Uploads a component: the request, then the bytes in chunks. `progress`
/// is called with the bytes sent so far.
pub async fn upload(
    connection: &Connection,
    digest: Digest,
    bytes: &[u8],
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| Error::Connect(format!("opening a stream: {e}")))?;
    let request = Request::Upload {
        digest,
        size: bytes.len() as u64,
    };
    let request = encode(&request)?;
    let sending = async {
        write_frame(&mut send, &request).await?;
        let mut sent = 0u64;
        for chunk in bytes.chunks(CHUNK_BYTES) {
            write_frame(&mut send, chunk).await?;
            sent += chunk.len() as u64;
            progress(sent);
        }
        Ok::<_, Error>(())
    };
    let sent = sending.await;
    let _ = send.finish();
    // A host that refuses an upload (its store is full, too many arrive at
    // once) answers and stops reading: its reason, not the failed write,
    // is what the caller needs. So does a host that already stores the
    // component: it answers that it took nothing, and that is a success
    // however far the bytes had got.
    match (sent, read_answer(&mut recv).await) {
        (_, Err(refusal @ Error::Remote { .. })) => Err(refusal),
        (_, Ok(Response::Uploaded { received: 0 })) => Ok(0),
        (Err(e), _) => Err(e),
        (Ok(()), answer) => match answer? {
            Response::Uploaded { received } => Ok(received),
            other => Err(unexpected(&other)),
        },
    }
}

/// The error for an answer of the wrong kind.
pub fn unexpected(response: &Response) -> Error {
    Error::Protocol(format!("unexpected answer: {response:?}"))
}

/// A client of the fleet: an endpoint with the caller's certificate.
pub struct Client {
    endpoint: Endpoint,
}

impl Client {
    /// A client endpoint on an ephemeral port.
    pub fn new(creds: &Credentials) -> Result<Self> {
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        Ok(Client {
            endpoint: endpoint(creds, bind, false)?,
        })
    }

    /// Connects to the host at `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<(Connection, Identity)> {
        connect(&self.endpoint, addr).await
    }

    /// Closes every connection and waits for the peers to be told.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_millis(200), self.endpoint.wait_idle()).await;
    }
}
