//! Serving a connection: its streams, each request's one authorization
//! check, and the dispatch to what answers it.

use super::*;

pub(crate) async fn serve_connection(shared: Arc<Shared>, connection: Connection) {
    let identity = match peer_identity(&connection) {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(remote = %connection.remote_address(), "refusing connection: {e}");
            connection.close(2u32.into(), b"no edgehost identity");
            return;
        }
    };
    {
        let mut incoming = lock(&shared.incoming);
        let open = incoming.entry(identity.clone()).or_default();
        if *open >= MAX_CONNECTIONS_PER_PEER {
            drop(incoming);
            tracing::warn!(%identity, "refusing connection: {MAX_CONNECTIONS_PER_PEER} already open");
            connection.close(3u32.into(), b"too many connections from this identity");
            return;
        }
        *open += 1;
    }
    tracing::debug!(%identity, remote = %connection.remote_address(), "connected");
    // A new revocation list closes this connection if it revokes the peer;
    // so does one that arrived while the handshake was finishing.
    let mut lists = shared.revocations.subscribe();
    let mut watching = true;
    let mut revoked = shared.revokes_peer(&connection);
    while !revoked {
        tokio::select! {
            accepted = connection.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                let shared = shared.clone();
                let identity = identity.clone();
                tokio::spawn(async move { serve_stream(shared, identity, send, recv).await });
            }
            changed = lists.changed(), if watching => match changed {
                Ok(()) => revoked = shared.revokes_peer(&connection),
                Err(_) => watching = false,
            },
        }
    }
    if revoked {
        tracing::warn!(%identity, "closing a connection: its certificate is revoked");
        connection.close(4u32.into(), b"certificate revoked");
    }
    let mut incoming = lock(&shared.incoming);
    if let Some(open) = incoming.get_mut(&identity) {
        *open = open.saturating_sub(1);
        if *open == 0 {
            incoming.remove(&identity);
        }
    }
}

pub(crate) async fn serve_stream(
    shared: Arc<Shared>,
    identity: Identity,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let deadline = shared.frame_deadline();
    let answer = match read_frame_within(&mut recv, MAX_MESSAGE_BYTES, deadline).await {
        Ok(Some(frame)) => match decode::<Request>(&frame) {
            Ok(request) => shared.handle(&identity, request, &mut recv).await,
            Err(e) => {
                let message = crate::one_line(&e);
                refusal(Error::from(e).kind(), message)
            }
        },
        Ok(None) => return,
        Err(e) => refusal(ErrorKind::BadRequest, e),
    };
    if let Response::Error { message, .. } = &answer {
        tracing::debug!(%identity, "request refused: {message}");
        // Whatever else the peer meant to send on this stream is discarded.
        let _ = recv.stop(1u32.into());
    }
    match encode(&answer) {
        Ok(frame) => {
            let _ = write_frame(&mut send, &frame).await;
            let _ = send.finish();
        }
        Err(e) => tracing::error!("encoding an answer: {e}"),
    }
}

pub(crate) fn refusal(kind: ErrorKind, e: impl std::fmt::Display) -> Response {
    Response::Error {
        kind,
        message: e.to_string(),
    }
}

impl Shared {
    pub(crate) async fn handle(
        self: &Arc<Self>,
        identity: &Identity,
        request: Request,
        recv: &mut RecvStream,
    ) -> Response {
        // The one authorization check: the table in protocol::authz.
        if let Err(reason) = authorize(identity.role, &request) {
            let reason = format!("{identity} {reason}");
            return refusal(ErrorKind::Forbidden, reason);
        }
        let result = match request {
            Request::Status => Ok(Response::Status(self.report())),
            Request::Fleet => Ok(Response::Fleet(self.fleet_views())),
            Request::Has { digest } => Ok(Response::Has(self.store.has(&digest))),
            Request::Upload { digest, size } => self.receive_upload(digest, size, recv).await,
            Request::Deploy {
                name,
                digest,
                config,
            } => self.deploy(name, digest, config).await,
            Request::Invoke {
                name,
                body,
                caller,
                hops,
            } => self
                .invoke(name, body, caller, hops)
                .await
                .map(|(body, host, processing_us)| Response::Invoked {
                    body,
                    host,
                    processing_us,
                }),
            Request::Release { name } => self.release(&name),
            Request::Place {
                descriptor,
                component_bytes,
                user,
                requires_arch,
                algorithm,
            } => {
                self.place(descriptor, component_bytes, user, requires_arch, algorithm)
                    .await
            }
            Request::SetPolicy {
                heuristic,
                cost_model,
            } => {
                self.set_policy(PolicyPlugins {
                    heuristic,
                    cost_model,
                })
                .await
            }
            Request::Migrate { name, to } => self.migrate(name, to).await,
            Request::Prepare {
                name,
                digest,
                config,
                epoch,
                source,
            } => {
                self.prepare(identity, name, digest, config, epoch, source)
                    .await
            }
            Request::Precopy {
                name,
                epoch,
                state_digest,
                state,
            } => {
                self.receive_precopy(identity, &name, epoch, state_digest, state)
                    .await
            }
            Request::Transfer {
                name,
                epoch,
                state_digest,
                len,
                blocks,
            } => {
                self.receive_state(identity, name, epoch, state_digest, len, blocks)
                    .await
            }
            Request::Commit { name, epoch } => self.commit(identity, &name, epoch),
            Request::Abort { name, epoch } => self.abort_prepared(identity, &name, epoch),
            Request::Outcome { name, epoch } => self.outcome(identity, &name, epoch),
            Request::Attach { agent, host } => self.attach(agent, host).await,
            Request::Events => Ok(Response::Events(
                lock(&self.events).iter().cloned().collect(),
            )),
            Request::Migrations => Ok(Response::Migrations(
                lock(&self.migrations).iter().cloned().collect(),
            )),
            Request::Revocations { list } => self.take_revocations(list).await,
            Request::Probe { padding } => Ok(Response::Probed {
                bytes: padding.len() as u64,
            }),
            Request::Heartbeat(report) => {
                if report.name != identity.name {
                    Err(Error::Forbidden(format!(
                        "{identity} sent a report for {:?}",
                        report.name
                    )))
                } else {
                    self.heard_from(*report).await;
                    Ok(Response::Fleet(self.fleet_views()))
                }
            }
        };
        result.unwrap_or_else(|e| refusal(e.kind(), e))
    }
}
