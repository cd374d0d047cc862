//! Who is calling, decided from the certificate's CN and the configuration (SPEC §6), and what
//! each caller may do: peers pull and confirm, clients act within their roles, anyone else is
//! refused with `PERMISSION_DENIED`. The table in force ([`Authorisations`]) is replaced whole
//! when the configuration is reloaded, and every call of a client is judged by the table of the
//! moment: a client removed from `[[clients]]` is refused at its next call, on a connection it
//! opened before.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bsfg_proto::RpcError;
use serde::Deserialize;
use tokio::sync::watch;

/// What a client may do on this node (`[[clients]] roles`, SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// AppendFact, AppendFacts and PutObject.
    Produce,
    /// FetchFacts, ConfirmReceipt and GetObject on the forward buffer.
    Consume,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Consume => "consume",
        }
    }
}

/// The roles of one client identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    produce: bool,
    consume: bool,
}

impl Roles {
    pub fn allows(self, role: Role) -> bool {
        match role {
            Role::Produce => self.produce,
            Role::Consume => self.consume,
        }
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        roles.into_iter().fold(Self::default(), |mut set, role| {
            match role {
                Role::Produce => set.produce = true,
                Role::Consume => set.consume = true,
            }
            set
        })
    }
}

/// Who is calling, as decided from the certificate's CN and the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Peer(String),
    Client { identity: String, roles: Roles },
    Unknown(String),
}

impl Caller {
    pub fn identity(&self) -> &str {
        match self {
            Self::Peer(zone) => zone,
            Self::Client { identity, .. } => identity,
            Self::Unknown(cn) => cn,
        }
    }
}

/// The configured peers and clients: the authorisation table.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub peers: HashSet<String>,
    pub clients: HashMap<String, Roles>,
}

impl Directory {
    pub fn identify(&self, cn: &str) -> Caller {
        if self.peers.contains(cn) {
            return Caller::Peer(cn.to_owned());
        }
        match self.clients.get(cn) {
            Some(roles) => Caller::Client {
                identity: cn.to_owned(),
                roles: *roles,
            },
            None => Caller::Unknown(cn.to_owned()),
        }
    }
}

/// The authorisation table in force, shared by the RPC server and whoever reloads the
/// configuration; cheap to clone.
#[derive(Clone)]
pub struct Authorisations(Arc<watch::Sender<Arc<Directory>>>);

impl Authorisations {
    pub fn new(directory: Directory) -> Self {
        Self(Arc::new(watch::Sender::new(Arc::new(directory))))
    }

    pub fn current(&self) -> Arc<Directory> {
        self.0.borrow().clone()
    }

    /// From the next call on, callers are judged by `directory`. Peers are not reloaded (their
    /// links are wired at start), so only the clients of `directory` take effect.
    pub fn replace(&self, directory: Directory) {
        let peers = self.current().peers.clone();
        self.0.send_replace(Arc::new(Directory { peers, ..directory }));
    }

    /// `caller` as the table of the moment sees it: a peer stays the peer its connection was
    /// accepted or dialled as; anyone else is looked up again by identity.
    pub(super) fn refresh(&self, caller: &Arc<Caller>) -> Arc<Caller> {
        match &**caller {
            Caller::Peer(_) => caller.clone(),
            other => Arc::new(self.current().identify(other.identity())),
        }
    }
}

/// `Ok` when `caller` is a client with `role`; `zone` (this node's) names the refusal.
pub(super) fn authorise(caller: &Caller, role: Role, zone: &str) -> Result<(), RpcError> {
    let name = role.as_str();
    match caller {
        Caller::Client { roles, .. } if roles.allows(role) => Ok(()),
        Caller::Client { identity, .. } => Err(RpcError::denied(format!("client {identity:?} lacks the role {name}"))),
        Caller::Peer(zone) => Err(RpcError::denied(format!(
            "peer node {zone:?} cannot {name} as a client"
        ))),
        Caller::Unknown(cn) => Err(stranger(cn, zone)),
    }
}

/// The refusal of a caller that is neither a configured client nor a peer, whatever it asks.
pub(super) fn refuse_unknown(caller: &Caller, zone: &str) -> Option<RpcError> {
    match caller {
        Caller::Unknown(cn) => Some(stranger(cn, zone)),
        _ => None,
    }
}

fn stranger(cn: &str, zone: &str) -> RpcError {
    RpcError::denied(format!(
        "identity {cn:?} is not a configured client or peer of zone {zone:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> Directory {
        Directory {
            peers: ["enterprise".to_owned()].into(),
            clients: [
                ("erp".to_owned(), [Role::Produce].into_iter().collect()),
                ("mes".to_owned(), [Role::Consume, Role::Produce].into_iter().collect()),
            ]
            .into(),
        }
    }

    #[test]
    fn callers_are_peers_clients_with_their_roles_or_unknown() {
        let directory = directory();
        assert_eq!(directory.identify("enterprise"), Caller::Peer("enterprise".into()));
        let erp = directory.identify("erp");
        assert!(
            matches!(&erp, Caller::Client { roles, .. } if roles.allows(Role::Produce) && !roles.allows(Role::Consume))
        );
        assert_eq!(directory.identify("stranger"), Caller::Unknown("stranger".into()));
        assert_eq!(erp.identity(), "erp");
    }

    #[test]
    fn a_replaced_table_judges_the_next_call_of_a_client_connected_before() {
        let table = Authorisations::new(directory());
        let erp = Arc::new(table.current().identify("erp"));
        let stranger = Arc::new(table.current().identify("stranger"));
        let peer = Arc::new(table.current().identify("enterprise"));
        table.replace(Directory {
            peers: HashSet::new(),
            clients: [("stranger".to_owned(), [Role::Consume].into_iter().collect())].into(),
        });
        assert_eq!(*table.refresh(&erp), Caller::Unknown("erp".into()), "removed");
        let admitted = table.refresh(&stranger);
        assert!(matches!(&*admitted, Caller::Client { roles, .. } if roles.allows(Role::Consume)));
        assert_eq!(*table.refresh(&peer), Caller::Peer("enterprise".into()));
        assert!(table.current().peers.contains("enterprise"), "peers are not reloaded");
    }

    #[test]
    fn only_a_client_with_the_role_is_authorised() {
        let directory = directory();
        let allowed = [("erp", Role::Produce), ("mes", Role::Consume), ("mes", Role::Produce)];
        for (cn, role) in allowed {
            assert_eq!(
                authorise(&directory.identify(cn), role, "plant-a"),
                Ok(()),
                "{cn} {role:?}"
            );
        }
        let refusals = [
            ("erp", Role::Consume, "client \"erp\" lacks the role consume"),
            (
                "enterprise",
                Role::Produce,
                "peer node \"enterprise\" cannot produce as a client",
            ),
            (
                "stranger",
                Role::Consume,
                "identity \"stranger\" is not a configured client or peer of zone \"plant-a\"",
            ),
        ];
        for (cn, role, message) in refusals {
            let refused = authorise(&directory.identify(cn), role, "plant-a").expect_err("refused");
            assert_eq!(refused.code, bsfg_proto::ErrorCode::PermissionDenied);
            assert_eq!(refused.message, message);
        }
    }
}
