//! `bsfg serve` as a systemd `Type=notify` service: the node tells the service manager that it
//! can serve (`READY=1`, sent once storage is open and both listeners are bound, so units
//! ordered `After=bsfg.service` start against a working node), that it is alive (`WATCHDOG=1`)
//! and that it is stopping (`STOPPING=1`), with a `STATUS=` line `systemctl status` shows.
//! Started by anything else (no `NOTIFY_SOCKET`), every call here does nothing.
//!
//! The watchdog pings come from a task on the node's own runtime, and only once the zone gate
//! actor answered a question: a runtime or actor system that stopped making progress stops the
//! pings, and systemd restarts the node after `WatchdogSec=`. A thread of its own would keep
//! pinging for a wedged node. The pings run every half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
//! advises.

use std::time::Duration;

use actix::Addr;
use bsfg_actors::zone_gate::{Snapshot, ZoneGate};
use sd_notify::NotifyState;
use slog::{warn, Logger};
use tokio::task::JoinHandle;

/// The service manager of this process, if any.
pub struct ServiceManager {
    log: Logger,
}

impl ServiceManager {
    pub fn new(log: Logger) -> Self {
        Self { log }
    }

    /// The node serves: storage is open and the RPC and admin listeners are bound.
    pub fn ready(&self, status: &str) {
        notify(&self.log, &[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A shutdown started (SIGTERM or Ctrl-C): systemd stops expecting watchdog pings.
    pub fn stopping(&self, status: &str) {
        notify(&self.log, &[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        notify(&self.log, &[NotifyState::Status(status)]);
    }

    /// Starts the watchdog pings when systemd asked for them (`WatchdogSec=` sets
    /// `WATCHDOG_USEC` and `WATCHDOG_PID`); must run on the node's runtime. The pings stop when
    /// the task is aborted or the runtime goes.
    pub fn watchdog(&self, gate: Addr<ZoneGate>) -> Option<JoinHandle<()>> {
        let mut usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return None;
        }
        let period = Duration::from_micros(usec / 2);
        let log = self.log.clone();
        Some(tokio::spawn(ping(period, gate, log)))
    }
}

/// `WATCHDOG=1` every `period`, each time the zone gate answered within it.
async fn ping(period: Duration, gate: Addr<ZoneGate>, log: Logger) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match tokio::time::timeout(period, gate.send(Snapshot)).await {
            Ok(Ok(_)) => notify(&log, &[NotifyState::Watchdog]),
            Ok(Err(e)) => warn!(log, "watchdog_ping_skipped"; "reason" => format!("zone gate: {e}")),
            Err(_) => warn!(log, "watchdog_ping_skipped"; "reason" => format!("zone gate silent for {period:?}")),
        }
    }
}

/// A message systemd could not be sent is logged, never fatal: the node serves either way.
fn notify(log: &Logger, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(log, "service_notify_failed"; "reason" => e.to_string());
    }
}
