//! Trust at run time: revocation lists taken and spread, and credentials
//! reloaded when their files change.

use super::*;

impl Shared {
    /// Offers a revocation list to this host; a newer one closes the
    /// connections this host dialled to identities it revokes (those it
    /// accepted close themselves, in `serve_connection`).
    pub(crate) async fn take_revocations(&self, list: Vec<u8>) -> Result<Response> {
        let revocations = self.revocations.clone();
        let offered = tokio::task::spawn_blocking(move || revocations.offer(&list))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let number = match offered {
            Offered::Applied(number) => {
                lock(&self.connections).retain(|addr, (connection, identity)| {
                    let revoked = self.revokes_peer(connection);
                    if revoked {
                        tracing::warn!(%identity, %addr, "closing a connection: its certificate is revoked");
                        connection.close(4u32.into(), b"certificate revoked");
                    }
                    !revoked
                });
                number
            }
            Offered::Kept(number) => number,
        };
        Ok(Response::Revocations { number })
    }

    /// Whether the list held revokes the certificate `connection`'s peer
    /// presented.
    pub(crate) fn revokes_peer(&self, connection: &Connection) -> bool {
        peer_certificate(connection).is_ok_and(|cert| self.revocations.is_revoked(&cert))
    }

    /// Passes this host's revocation list to the peer at `addr` if the peer
    /// may not have it yet: the gossip that reaches a host that missed the
    /// operator's `fleet revoke`.
    pub(crate) async fn gossip_revocations(&self, addr: SocketAddr, peer: &Identity) {
        let Some(list) = self.revocations.current() else {
            return;
        };
        let known = lock(&self.peer_revocations)
            .get(&peer.name)
            .copied()
            .unwrap_or(0);
        if known >= list.number() {
            return;
        }
        let request = Request::Revocations {
            list: list.der().to_vec(),
        };
        match self.call_peer(addr, Some(&peer.name), &request).await {
            Ok((Response::Revocations { number }, _)) => {
                lock(&self.peer_revocations).insert(peer.name.clone(), number);
            }
            Ok((other, _)) => tracing::debug!(%peer, "odd answer to a revocation list: {other:?}"),
            Err(e) => tracing::debug!(%peer, "passing on the revocation list failed: {e}"),
        }
    }

    /// Swaps in the certificate and key when their files changed since they
    /// were loaded (`edgehost fleet rotate`): new connections, both ways,
    /// use the new certificate; open ones and the agents are untouched. A
    /// pair that does not load yet (a rotation half written) is tried again
    /// at the next heartbeat.
    pub(crate) fn reload_credentials(&self) {
        let stamp = credential_stamp(&self.config);
        if stamp.is_none() || *lock(&self.credential_stamp) == stamp {
            return;
        }
        match self.rebuild_tls() {
            Ok(()) => {
                *lock(&self.credential_stamp) = stamp;
                tracing::info!(cert = %self.config.cert.display(), "certificate reloaded");
            }
            Err(e) => tracing::warn!("the certificate files changed but cannot be used: {e}"),
        }
    }

    pub(crate) fn rebuild_tls(&self) -> Result<()> {
        let creds = Credentials::load(&self.config.ca, &self.config.cert, &self.config.key)?;
        if creds.identity.role != Role::Host || creds.identity.name != self.name {
            return Err(Error::Identity(format!(
                "{} now holds the certificate of {}, not of host {:?}",
                self.config.cert.display(),
                creds.identity,
                self.name
            )));
        }
        let server = host_server_config(
            &creds,
            &self.revocations,
            self.config.limits.streams_per_connection,
        )?;
        let client = host_client_config(&creds, &self.revocations)?;
        self.endpoint.set_server_config(Some(server));
        *lock(&self.dial) = client;
        Ok(())
    }
}
