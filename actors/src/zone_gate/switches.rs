//! The operator's open/closed switch of every configured peer's gate
//! (`POST /v1/admin/gates/{peer}/close|open`). Only `ZoneGate` flips them, so a gate's state
//! and its switch change together; the RPC server reads them on every peer call, the peer's
//! link waits on its own. Each flip is stored first (`Journal::switch_gate`), so a restarted
//! node starts with the gates an operator closed still closed (`RestoreSwitches`).

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::watch;

/// The switch of every configured peer; cheap to clone.
#[derive(Clone)]
pub struct GateSwitches(Arc<BTreeMap<String, watch::Sender<bool>>>);

/// A gate was addressed by a zone that is not a configured peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a configured peer")]
pub struct UnknownPeer(pub String);

impl GateSwitches {
    /// Every gate open.
    pub fn new(peers: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(
            peers.into_iter().map(|p| (p, watch::Sender::new(false))).collect(),
        ))
    }

    /// Whether an operator closed `peer`'s gate (never true for an unknown peer).
    pub fn is_closed(&self, peer: &str) -> bool {
        self.0.get(peer).is_some_and(|switch| *switch.borrow())
    }

    /// Follows `peer`'s switch (`true` while closed); `None` for an unknown peer.
    pub fn subscribe(&self, peer: &str) -> Option<watch::Receiver<bool>> {
        self.0.get(peer).map(watch::Sender::subscribe)
    }

    /// Only `ZoneGate` flips switches, so state and switch change together.
    pub(super) fn set(&self, peer: &str, closed: bool) -> Result<(), UnknownPeer> {
        let switch = self.0.get(peer).ok_or_else(|| UnknownPeer(peer.to_owned()))?;
        switch.send_replace(closed);
        Ok(())
    }
}
