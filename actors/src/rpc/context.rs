//! What every call of one RPC server can use: its plain configuration ([`RpcConfig`]) and the
//! actors and handles a call can reach ([`RpcDeps`]), shared by all its tasks as one [`Context`].

use std::{collections::HashMap, net::SocketAddr};

use actix::Addr;
use tokio::sync::watch;

use super::{
    caller::{Authorisations, Directory},
    drain::DrainHandle,
};
use crate::standing::StandingRx;
use crate::{
    backpressure::Admission,
    events::Telemetry,
    forward_buffer::ForwardBuffer,
    objects::ObjectStore,
    peer_link::PeerLink,
    store_buffer::StoreBuffer,
    transport::{pacing::Pacer, tls::Trust},
    zone_gate::{GateSwitches, ZoneGate},
};

/// Plain configuration of the RPC server.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// This node's zone.
    pub zone: String,
    /// Where the node's QUIC endpoint listens (UDP).
    pub listen: SocketAddr,
    /// The configured peers and clients at start; calls are judged by [`RpcDeps::authorisations`].
    pub directory: Directory,
    /// Log every call (`log.audit`), not only failures.
    pub audit: bool,
    pub max_frame_bytes: usize,
}

/// The actors and handles a call can reach.
#[derive(Clone)]
pub struct RpcDeps {
    pub store: Addr<StoreBuffer>,
    pub forward: Addr<ForwardBuffer>,
    pub gate: Addr<ZoneGate>,
    pub objects: ObjectStore,
    /// The disk's verdict on producers' artifacts (the store buffer's admission).
    pub admission: Admission,
    pub links: HashMap<String, Addr<PeerLink>>,
    /// Refuses client calls while the node drains; peer calls are never held back.
    pub drain: DrainHandle,
    /// A peer whose gate is closed is refused every call.
    pub switches: GateSwitches,
    /// A standby of an HA zone refuses every call and closes its connections.
    pub standing: StandingRx,
    /// The peers and clients in force (the clients are reloadable).
    pub authorisations: Authorisations,
    /// What the certificates of live connections must still pass (the CA and revocation lists
    /// of the TLS material in force).
    pub trust: watch::Receiver<Trust>,
    pub telemetry: Telemetry,
    /// What this node sends each peer (pages, artifact bodies), paced to the peer's
    /// `max_bytes_per_second`; peers without a cap are absent.
    pub egress: HashMap<String, Pacer>,
}

/// Both, shared by every task of one server (an `Arc` clone per stream).
pub(super) struct Context {
    pub(super) config: RpcConfig,
    pub(super) deps: RpcDeps,
}
