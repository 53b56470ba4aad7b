//! Who may send what: the authorization table.
//!
//! Every request kind has the set of roles allowed to send it, and a host
//! checks it once, before dispatch ([`authorize`]). Host-only messages are
//! the ones that speak for a host: its reports and every step of a
//! migration, which move ownership. An operator changes what runs; a viewer
//! only looks.

use crate::identity::{Identity, Role};
use crate::protocol::Request;

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
            Status | Fleet | Events => ANYONE,
            Has | Upload | Invoke | Migrate | Attach | Revocations => HOST_OR_OPERATOR,
            Deploy | Release | Place | SetPolicy => OPERATOR,
            Heartbeat | Prepare | Precopy | Transfer | Commit | Abort | Outcome => HOST,
        }
    }
}

/// Whether `identity` may send `request`: `Err` carries the one-line reason
/// for the `Forbidden` answer. Besides the table, a call that names a
/// calling agent (`Invoke.caller`) comes only from the host that runs it: an
/// operator may not pose as an agent to that agent's dependencies.
pub fn authorize(identity: &Identity, request: &Request) -> Result<(), String> {
    let kind = request.kind();
    if !kind.allowed().contains(&identity.role) {
        return Err(format!("{identity} may not send {}", kind.as_str()));
    }
    if let Request::Invoke {
        caller: Some(_), ..
    } = request
        && identity.role != Role::Host
    {
        return Err(format!(
            "{identity} may not call on behalf of an agent; only hosts set the caller"
        ));
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
                RequestKind::Status | RequestKind::Fleet | RequestKind::Events
            );
            assert_eq!(viewer_may, read_only, "{kind:?}");
        }
    }

    #[test]
    fn only_hosts_name_a_calling_agent() {
        let call = |caller: Option<&str>| Request::Invoke {
            name: "memory".into(),
            body: vec![],
            caller: caller.map(str::to_owned),
            hops: 0,
        };
        let operator = Identity {
            role: Role::Operator,
            name: "ops".into(),
        };
        let host = Identity {
            role: Role::Host,
            name: "beijing".into(),
        };
        assert!(authorize(&operator, &call(None)).is_ok());
        assert!(authorize(&operator, &call(Some("planner"))).is_err());
        assert!(authorize(&host, &call(Some("planner"))).is_ok());
    }
}
