//! The wire protocol on QUIC streams: the messages and their encoding are
//! `edgehost-proto`'s (re-exported here); this module moves their frames
//! over quinn's streams.
//!
//! One QUIC bidirectional stream per request. Each frame is a 4-byte
//! big-endian length followed by that many bytes; the first frame of a stream
//! and the answer start with a 2-byte protocol version, then a postcard
//! message. An upload's bytes follow its request as further frames of at
//! most [`CHUNK_BYTES`] each. Every length is checked against a limit before
//! anything is allocated, and a frame's memory grows only as its bytes
//! arrive; a frame over its limit, a message that does not decode or a peer
//! of another version gets an error answer (when one can still be sent) and
//! its stream is closed. Nothing it sent takes effect.
//!
//! See `docs/protocol.md` for the message reference.

use edgehost_placement::Site;
use quinn::{RecvStream, SendStream};

pub use edgehost_proto::*;

/// Writes one frame.
pub async fn write_frame(send: &mut SendStream, payload: &[u8]) -> crate::Result<()> {
    let header = frame_header(payload.len())?;
    send.write_all(&header).await.map_err(stream_err)?;
    send.write_all(payload).await.map_err(stream_err)?;
    Ok(())
}

/// How long one frame may take to arrive once its length header has: a
/// peer that announces a frame and then trickles (or stops) is cut off
/// instead of holding a stream and its buffer for ever. 16 MiB in 30 s is
/// 4.5 Mbit/s, below the thinnest uplink the fleet plans for. Hosts take
/// theirs from `[limits] frame_deadline_ms`, this being its default.
pub const FRAME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads one frame of at most `max` bytes; `None` when the stream ended
/// cleanly before a frame started. The header may take as long as the
/// peer's work does (an answer comes when it is ready); the body must
/// arrive within [`FRAME_DEADLINE`] of it.
pub async fn read_frame(recv: &mut RecvStream, max: usize) -> crate::Result<Option<Vec<u8>>> {
    let Some(len) = read_header(recv, max).await? else {
        return Ok(None);
    };
    match tokio::time::timeout(FRAME_DEADLINE, read_body(recv, len)).await {
        Ok(result) => result.map(Some),
        Err(_) => Err(crate::Error::Protocol(format!(
            "a frame of {len} bytes did not arrive within {FRAME_DEADLINE:?}"
        ))),
    }
}

/// Reads one frame of at most `max` bytes that must arrive whole, header
/// included, within `deadline`: what a host expects of a peer that opened
/// a stream or started an upload. `None` when the stream ended cleanly
/// before a frame started.
pub async fn read_frame_within(
    recv: &mut RecvStream,
    max: usize,
    deadline: std::time::Duration,
) -> crate::Result<Option<Vec<u8>>> {
    let frame = async {
        let Some(len) = read_header(recv, max).await? else {
            return Ok(None);
        };
        read_body(recv, len).await.map(Some)
    };
    match tokio::time::timeout(deadline, frame).await {
        Ok(result) => result,
        Err(_) => Err(crate::Error::Protocol(format!(
            "a frame did not arrive within {deadline:?}"
        ))),
    }
}

/// A frame's length, checked against `max` before anything is allocated.
async fn read_header(recv: &mut RecvStream, max: usize) -> crate::Result<Option<usize>> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match recv.read_exact(&mut header).await {
        Ok(()) => Ok(Some(frame_len(header, max)?)),
        Err(quinn::ReadExactError::FinishedEarly(0)) => Ok(None),
        Err(e) => Err(read_error(e)),
    }
}

/// A frame's `len` bytes. The buffer grows with what arrived (at most
/// doubling, never past `len`), so memory follows what the peer actually
/// sent, never what its length header claims.
async fn read_body(recv: &mut RecvStream, len: usize) -> crate::Result<Vec<u8>> {
    let mut buf = Vec::new();
    while buf.len() < len {
        let chunk = recv
            .read_chunk(len - buf.len(), true)
            .await
            .map_err(chunk_error)?
            .ok_or_else(|| {
                crate::Error::Protocol(format!(
                    "the stream ended after {} of a frame's {len} bytes",
                    buf.len()
                ))
            })?;
        let n = chunk.bytes.len();
        if buf.capacity() - buf.len() < n {
            let target = buf.capacity().saturating_mul(2).max(buf.len() + n).min(len);
            buf.reserve_exact(target - buf.len());
        }
        buf.extend_from_slice(&chunk.bytes);
    }
    Ok(buf)
}

/// A peer that answers a connection with a stateless reset restarted and
/// never saw the request: that is worth telling apart (it is safe to retry
/// on a new connection) from a connection lost mid-request.
fn read_error(e: quinn::ReadExactError) -> crate::Error {
    match e {
        quinn::ReadExactError::ReadError(e) => chunk_error(e),
        e => crate::Error::Protocol(format!("reading a frame: {e}")),
    }
}

fn chunk_error(e: quinn::ReadError) -> crate::Error {
    match e {
        quinn::ReadError::ConnectionLost(quinn::ConnectionError::Reset) => crate::Error::Reset,
        e => crate::Error::Protocol(format!("reading a frame: {e}")),
    }
}

fn stream_err(e: quinn::WriteError) -> crate::Error {
    crate::Error::Protocol(format!("writing: {e}"))
}

/// The site of a host for the cost model, from its coordinates.
pub fn site_of(location: Location) -> Site {
    // Distances are measured on a flat projection around the equator; what
    // matters to the model is that they grow with real distance.
    Site::from_degrees(location.lat, location.lon, 0.0)
}
