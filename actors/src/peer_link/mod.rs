//! Actor `PeerLink`, one per configured peer: keeps a QUIC connection to the peer (dialled when
//! `dial = true`, or offered by the RPC server when the peer dialled us), pulls the facts the peer
//! holds for this zone (addressed here, or to be relayed beyond), stores them with `putIfAbsent`
//! (the forward buffer, or the store buffer for their next hop: `relay`), and confirms the
//! contiguous frontier back so the peer's frontier advances. Artifacts referenced by pulled facts
//! are pulled into the local object store before their page is inserted. Reports what it sees of
//! the link to the `ZoneGate`. Reconnects with exponential backoff and jitter. While an operator
//! keeps the peer's gate closed it has no connection: it closes the one it had, and neither dials
//! nor takes offered ones. Dials use the client config the `CertWatcher` last published. An HA
//! zone's standby has no link at all: the loop runs only while the instance is active.
//!
//! The actor is a thin shell: it owns the offer channel and the pull task; the loop itself is
//! plain async code in `pull`, and its connection policy (which connection the pair keeps, how
//! long to wait before reconnecting) a plain value in `link_state`.

mod backoff;
mod link_state;
mod page_size;
mod pull;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use actix::prelude::*;
use quinn::{Connection, Endpoint};
use tokio::sync::watch;

use crate::{
    backpressure::{Admission, StoreRoom},
    events::Telemetry,
    forward_buffer::ForwardBuffer,
    objects::ObjectStore,
    relay::Routing,
    standing::{self, StandingRx},
    transport::addresses::Addresses,
    zone_gate::{self, GateSwitches, ZoneGate},
};

/// Plain configuration of one peer link.
#[derive(Debug, Clone)]
pub struct PeerLinkConfig {
    /// This node's zone.
    pub zone: String,
    /// The peer's zone (the CN its certificate must carry).
    pub peer: String,
    /// Where to dial: one address, or the instances of an HA zone in order; a host name is
    /// resolved again at each dial.
    pub addresses: Option<Addresses>,
    pub dial: bool,
    pub batch_limit: u32,
    pub max_wait: Duration,
    pub max_frame_bytes: usize,
    /// `[[peers]] max_bytes_per_second`: pages and artifacts pulled from the peer are paced to it
    /// (what this node sends the peer is paced by the RPC server).
    pub max_bytes_per_second: Option<u64>,
    /// Routes and relay rules: how each pulled fact is judged.
    pub routing: Arc<Routing>,
    /// Write an audit line for every page whose facts this node relays (`log.audit`).
    pub audit: bool,
}

/// Runtime handles a peer link needs.
#[derive(Clone)]
pub struct PeerLinkDeps {
    pub endpoint: Endpoint,
    /// Follows certificate reloads; read at each dial.
    pub client_config: watch::Receiver<quinn::ClientConfig>,
    pub switches: GateSwitches,
    pub forward: Addr<ForwardBuffer>,
    pub gate: Addr<ZoneGate>,
    /// Where artifacts referenced by pulled facts are stored.
    pub objects: ObjectStore,
    /// The disk guard, asked before an artifact is pulled (as for a producer's `PutObject`).
    pub admission: Admission,
    /// `true` while the forward buffer is full: no pulls until it is `false` again.
    pub pulls_paused: watch::Receiver<bool>,
    /// The store buffer's room for relayed facts (SPEC §4a): a relaying node takes no fact for a
    /// next hop whose link is down while it is full, and pulls nothing at its capacity.
    pub store_room: watch::Receiver<StoreRoom>,
    /// The peers whose link is up (their gate is not `autonomous`).
    pub linked: watch::Receiver<BTreeSet<String>>,
    /// Where dialled connections go so the RPC server also serves the peer's calls on them.
    pub dialed: tokio::sync::mpsc::UnboundedSender<(Connection, String)>,
    /// The loop runs only while this instance is active (always, for a single node).
    pub standing: StandingRx,
    pub telemetry: Telemetry,
}

pub struct PeerLink {
    config: Arc<PeerLinkConfig>,
    deps: PeerLinkDeps,
    offers: watch::Sender<Option<Connection>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PeerLink {
    pub fn new(config: PeerLinkConfig, deps: PeerLinkDeps) -> Self {
        Self {
            config: Arc::new(config),
            deps,
            offers: watch::Sender::new(None),
            task: None,
        }
    }
}

impl Actor for PeerLink {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        let (config, deps, offers) = (self.config.clone(), self.deps.clone(), self.offers.clone());
        self.task = Some(tokio::spawn(while_active(config, deps, offers)));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Supervised for PeerLink {
    fn restarting(&mut self, _: &mut Self::Context) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs the pull loop whenever the instance is active, and stops it (dropping its connection)
/// when it is not: the gate then goes `autonomous` (no live link), as for any lost link, so a
/// demoted instance does not go on reporting the state of a link it no longer has.
async fn while_active(config: Arc<PeerLinkConfig>, deps: PeerLinkDeps, offers: watch::Sender<Option<Connection>>) {
    let mut standing = deps.standing.clone();
    loop {
        standing::until_active(&mut standing).await;
        offers.send_replace(None);
        let looper = pull::Looper::new(config.clone(), deps.clone(), offers.subscribe());
        tokio::select! {
            _ = looper.run() => return,
            _ = standing::until_inactive(&mut standing) => {
                deps.gate.do_send(zone_gate::LinkDown {
                    peer: config.peer.clone(),
                    reason: "this instance is no longer the zone's active instance".into(),
                });
            }
        }
    }
}

/// A connection the peer opened to us, usable for our pulls too.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Offer(pub Connection);

impl Handler<Offer> for PeerLink {
    type Result = ();

    fn handle(&mut self, Offer(conn): Offer, _: &mut Self::Context) {
        self.offers.send_replace(Some(conn));
    }
}

/// Stops the link (node shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for PeerLink {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
