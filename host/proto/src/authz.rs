//! Who may send what: the authorization table.
//!
//! Every request kind has the set of roles allowed to send it, and a host
//! checks it once, before dispatch ([`authorize`]). Host-only messages are
//! the ones that speak for a host: its reports and every step of a
//! migration, which move ownership. An operator changes what runs; a viewer
//! only looks.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Request;

/// What a certificate holder is to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// An edge server running `edgehost serve`.
    Host,
    /// An operator's or user's tool (`edgehost push`, `ps`, `invoke`,
    /// `migrate`): may change what runs, never speak as a host.
    Operator,
    /// A read-only tool (`ps`, `events`, `status`, dashboards): may look,
    /// never change anything.
    Viewer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Host => "host",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        })
    }
}

/// Declares [`RequestKind`] with one variant per [`Request`] variant, its
/// list [`RequestKind::ALL`], its names, and [`Request::kind`], all from the
/// one list below, so a new request cannot be left out of any of them.
macro_rules! request_kinds {
    ($($kind:ident),* $(,)?) => {
        /// The kind of a [`Request`], without its fields.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RequestKind {
            $(
                #[doc = concat!("[`Request::", stringify!($kind), "`].")]
                $kind,
            )*
        }

        impl RequestKind {
            /// Every kind, for tables and tests.
            pub const ALL: [RequestKind; [$(stringify!($kind)),*].len()] =
                [$(RequestKind::$kind),*];

            /// The request's name, as in the protocol reference.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(RequestKind::$kind => stringify!($kind),)*
                }
            }
        }

        impl Request {
            /// What kind of request this is.
            pub fn kind(&self) -> RequestKind {
                match self {
                    $(Request::$kind { .. } => RequestKind::$kind,)*
                }
            }
        }
    };
}

request_kinds!(
    Status,
    Fleet,
    Has,
    Upload,
    Deploy,
    Invoke,
    Release,
    Place,
    Heartbeat,
    Migrate,
    Prepare,
    Precopy,
    Transfer,
    Commit,
    Abort,
    Outcome,
    Attach,
    Events,
    SetPolicy,
    Revocations,
    Migrations,
    Probe,
);

const ANYONE: &[Role] = &[Role::Host, Role::Operator, Role::Viewer];
const HOST_OR_OPERATOR: &[Role] = &[Role::Host, Role::Operator];
const OPERATOR: &[Role] = &[Role::Operator];
const HOST: &[Role] = &[Role::Host];

impl RequestKind {
    /// The roles that may send this kind of request (docs/security.md has
    /// the same table).
    ///
    /// Hosts send what they forward or drive themselves: invokes, migrate
    /// and attach requests for agents another host owns, the component a
    /// migration needs, and the host-only messages. Deploying, releasing,
    /// placing and swapping the policy are an operator's acts; a host never
    /// sends them, so a compromised host cannot use them on its peers. A
    /// revocation list is trusted for its CA signature, not its sender, so
    /// operators send it and hosts pass it on.
    pub fn allowed(self) -> &'static [Role] {
        use RequestKind::*;
        match self {
            Status | Fleet | Events | Migrations => ANYONE,
            Has | Upload | Invoke | Migrate | Attach | Revocations => HOST_OR_OPERATOR,
            Deploy | Release | Place | SetPolicy => OPERATOR,
            Heartbeat | Prepare | Precopy | Transfer | Commit | Abort | Outcome | Probe => HOST,
        }
    }
}

/// Whether a peer of `role` may send `request`: `Err` carries the reason
/// for the `Forbidden` answer, to follow the peer's identity ("operator
/// \"ops\" may not send Prepare"). Besides the table, a call that names a
/// calling agent (`Invoke.caller`) comes only from the host that runs it: an
/// operator may not pose as an agent to that agent's dependencies.
pub fn authorize(role: Role, request: &Request) -> Result<(), String> {
    let kind = request.kind();
    if !kind.allowed().contains(&role) {
        return Err(format!("may not send {}", kind.as_str()));
    }
    if let Request::Invoke {
        caller: Some(_), ..
    } = request
        && role != Role::Host
    {
        return Err("may not call on behalf of an agent; only hosts set the caller".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_allowed_to_someone_and_host_only_kinds_to_hosts_alone() {
        for kind in RequestKind::ALL {
            assert!(!kind.allowed().is_empty(), "{kind:?}");
        }
        for kind in [
            RequestKind::Heartbeat,
            RequestKind::Prepare,
            RequestKind::Precopy,
            RequestKind::Transfer,
            RequestKind::Commit,
            RequestKind::Abort,
            RequestKind::Outcome,
        ] {
            assert_eq!(kind.allowed(), &[Role::Host], "{kind:?}");
        }
        // A viewer changes nothing.
        for kind in RequestKind::ALL {
            let viewer_may = kind.allowed().contains(&Role::Viewer);
            let read_only = matches!(
                kind,
                RequestKind::Status
                    | RequestKind::Fleet
                    | RequestKind::Events
                    | RequestKind::Migrations
            );
            assert_eq!(viewer_may, read_only, "{kind:?}");
        }
    }

    #[test]
    fn only_hosts_name_a_calling_agent() {
        let call = |caller: Option<&str>| Request::Invoke {
            name: crate::AgentName::new("memory").unwrap(),
            body: vec![],
            caller: caller.map(|c| crate::AgentName::new(c).unwrap()),
            hops: 0,
        };
        assert!(authorize(Role::Operator, &call(None)).is_ok());
        assert!(authorize(Role::Operator, &call(Some("planner"))).is_err());
        assert!(authorize(Role::Host, &call(Some("planner"))).is_ok());
    }
}
