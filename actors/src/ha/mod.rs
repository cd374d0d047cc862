//! The HA controller of one instance of an HA zone (SPEC §15, `design/ha-jetstream.md` §4.5–4.6):
//! who writes the zone's log, and what this instance does about it.
//!
//! - **Standby** (`follower`): applies the zone's log to the local replica in order, checking the
//!   hash chain; watches the lease; refuses every call (`Standing::Standby`, naming the lease's
//!   holder). A record of another history stops it for good (`Standing::Diverged`,
//!   `wal_divergence`): it never applies or serves it.
//! - **Promotion**, once the lease is vacant or expired and taken: catch up to the log's end,
//!   append the `Epoch` record (fencing every older writer), restore the operator's gate switches
//!   from the replica, then become `Active`: the journal recovers its state from the replica at
//!   its next group (it follows the storage's writer epoch), links dial, calls are served,
//!   `/readyz` answers 200. Logged as `ha_promoted`.
//! - **Active** (`leader`): renews the lease every `lease_ttl / 5`; demotes when fenced, when an
//!   append's outcome stayed unknown, when the lease is lost or cannot be renewed within its TTL,
//!   or on `bsfg admin step-down` (which also releases the lease so a standby takes over at once).
//!   Demotion stops writes at the storage first, then closes every connection with
//!   `CloseCode::Standby`, stops the links and resumes following. Logged as `ha_demoted`.
//!
//! - **Roster** (`roster`): every instance announces itself in the zone's members bucket and
//!   shows what the others last said (`/v1/status`), whatever its role.
//!
//! Safety never rests on the lease: the log's compare-and-append fences any writer that believes
//! too long that it leads.

mod follower;
mod leader;
mod roster;
mod snapshot;

pub use roster::InstanceSeen;
pub use snapshot::{restore, Snapshots};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use actix::Addr;
use bsfg_engine::{jetstream::KvMembers, Lease, ReplicatedLog};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    events::Telemetry, journal::Journal, standing::Standing, storage::replicated::ReplicatedStorage,
    zone_gate::ZoneGate,
};

/// Plain configuration of the controller.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub instance: String,
}

/// Runtime handles the controller needs.
pub struct HaDeps<L: ReplicatedLog, E: Lease> {
    pub storage: Arc<ReplicatedStorage<L>>,
    pub lease: Arc<E>,
    pub members: Arc<KvMembers>,
    pub standing: watch::Sender<Standing>,
    pub gate: Addr<ZoneGate>,
    /// Told to take up the promoted replica's state before this instance serves.
    pub journal: Journal,
    pub telemetry: Telemetry,
}

/// What `/v1/status` shows of this instance (`ha`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaStatus {
    pub instance: String,
    /// `active` or `standby` (SPEC §15); a diverged replica is a standby that serves nothing.
    pub role: &'static str,
    /// This replica does not continue the zone's log: it refuses everything until rebuilt.
    pub diverged: bool,
    /// The lease's holder as last seen (this instance when active).
    pub active_instance: Option<String>,
    /// The epoch of this instance's lease while active, else of the last record applied.
    pub epoch: u64,
    /// Last record of the log applied to this replica.
    pub wal_applied: u64,
    /// Last record of the log, as last asked (0 before the first answer).
    pub wal_last: u64,
}

/// Why a step-down was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepDownError {
    #[error("instance {0} is not the active instance")]
    NotActive(String),
    #[error("the HA controller has stopped")]
    Stopped,
}

/// The admin API's handle on the controller; cheap to clone.
#[derive(Clone)]
pub struct HaHandle {
    status: watch::Receiver<HaStatus>,
    members: Arc<KvMembers>,
    step_down: mpsc::Sender<oneshot::Sender<Result<(), StepDownError>>>,
}

impl HaHandle {
    pub fn status(&self) -> HaStatus {
        self.status.borrow().clone()
    }

    /// Every instance of the zone as last heard from (this one included), by name, as of now.
    pub fn instances(&self) -> Vec<InstanceSeen> {
        roster::view(self.members.seen(), Instant::now())
    }

    /// Hands leadership over (rolling upgrades): stops writing, releases the lease, and keeps
    /// away from it for one TTL so that a standby takes it.
    pub async fn step_down(&self) -> Result<(), StepDownError> {
        let (reply, answer) = oneshot::channel();
        self.step_down.send(reply).await.map_err(|_| StepDownError::Stopped)?;
        answer.await.map_err(|_| StepDownError::Stopped)?
    }
}

/// Starts the controller on the current runtime, as a standby.
pub fn start<L: ReplicatedLog, E: Lease>(config: HaConfig, deps: HaDeps<L, E>) -> HaHandle {
    let position = deps.storage.position();
    let (status, status_rx) = watch::channel(HaStatus {
        instance: config.instance.clone(),
        role: crate::events::ROLE_STANDBY,
        epoch: position.epoch,
        wal_applied: position.seq,
        ..HaStatus::default()
    });
    let (step_down, requests) = mpsc::channel(4);
    let members = deps.members.clone();
    tokio::spawn(roster::announce(
        members.clone(),
        status_rx.clone(),
        deps.telemetry.log.clone(),
    ));
    let controller = Controller {
        config,
        deps,
        status,
        requests,
        hold_off_until: None,
    };
    tokio::spawn(controller.run());
    HaHandle {
        status: status_rx,
        members,
        step_down,
    }
}

struct Controller<L: ReplicatedLog, E: Lease> {
    config: HaConfig,
    deps: HaDeps<L, E>,
    status: watch::Sender<HaStatus>,
    requests: mpsc::Receiver<oneshot::Sender<Result<(), StepDownError>>>,
    /// After a step-down: leave the lease to the others until then.
    hold_off_until: Option<Instant>,
}

impl<L: ReplicatedLog, E: Lease> Controller<L, E> {
    async fn run(mut self) {
        let lag = tokio::spawn(follower::report_lag(
            self.deps.storage.clone(),
            self.status.clone(),
            self.deps.telemetry.clone(),
        ));
        loop {
            let Some(grant) = self.stand_by().await else { break };
            let Some(grant) = self.promote(grant).await else {
                continue;
            };
            self.lead(grant).await;
        }
        lag.abort();
    }

    fn set_standing(&self, standing: Standing) {
        let role = standing.role();
        let diverged = matches!(standing, Standing::Diverged { .. });
        let active = match &standing {
            Standing::Active => Some(self.config.instance.clone()),
            Standing::Standby { active, .. } => active.clone(),
            Standing::Diverged { .. } => None,
        };
        if let Some(active) = &active {
            self.deps.storage.set_active_instance(active);
        }
        self.status.send_modify(|status| {
            status.role = role;
            status.diverged = diverged;
            status.active_instance = active;
        });
        self.deps.standing.send_replace(standing);
    }

    /// Standing by for at least `ttl`: the lease's TTL, the unit of every wait here.
    fn ttl(&self) -> Duration {
        self.deps.lease.ttl()
    }
}
