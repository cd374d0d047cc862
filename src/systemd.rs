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
//!
//! A start can take minutes (an HA instance restoring its replica from a snapshot): while it
//! moves, the node says what it does (`STATUS=`) and pushes systemd's start timeout out
//! (`EXTEND_TIMEOUT_USEC=`), each time by [`START_PATIENCE`]. A start that stops moving gets no
//! more time: systemd's timeout ends it and `Restart=` tries again.

use std::{sync::Arc, time::Duration};

use actix::Addr;
use bsfg_actors::{
    node::StartProgress,
    zone_gate::{Snapshot, ZoneGate},
};
use sd_notify::NotifyState;
use slog::{warn, Logger};
use tokio::task::JoinHandle;

/// How often a long start is looked at for progress.
const START_LOOK: Duration = Duration::from_secs(5);
/// How long past each sign of progress systemd lets the start run: long enough for an engine
/// link that pauses, short enough that a start that hangs is restarted within minutes.
const START_PATIENCE: Duration = Duration::from_secs(120);

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

    /// Reports a long start's progress until the task is aborted (once the node serves or the
    /// start failed); must run on the node's runtime.
    pub fn starting(&self, progress: Arc<StartProgress>) -> JoinHandle<()> {
        let log = self.log.clone();
        tokio::spawn(report_start(progress, move |states| notify(&log, states)))
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

/// `STATUS=` and `EXTEND_TIMEOUT_USEC=` to `send` when a long phase of the start begins, then at
/// each look that finds its bytes moved.
async fn report_start(progress: Arc<StartProgress>, mut send: impl FnMut(&[NotifyState])) {
    let mut phase = progress.phase();
    let mut looks = tokio::time::interval(START_LOOK);
    looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = 0;
    loop {
        tokio::select! {
            changed = phase.changed() => if changed.is_err() {
                return;
            },
            _ = looks.tick() => if progress.bytes() == seen {
                continue;
            },
        }
        let Some(doing) = phase.borrow_and_update().clone() else {
            continue;
        };
        seen = progress.bytes();
        let status = format!("{doing}: {:.1} MB so far", seen as f64 / 1e6);
        let patience = u32::try_from(START_PATIENCE.as_micros()).unwrap_or(u32::MAX);
        send(&[NotifyState::ExtendTimeoutUsec(patience), NotifyState::Status(&status)]);
    }
}

/// A message systemd could not be sent is logged, never fatal: the node serves either way.
fn notify(log: &Logger, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(log, "service_notify_failed"; "reason" => e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{atomic::Ordering, Mutex, PoisonError};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_long_start_gets_more_time_while_it_moves_and_none_once_it_stops() {
        let progress = Arc::new(StartProgress::default());
        let sent = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
        let taken = || std::mem::take(&mut *sent.lock().unwrap_or_else(PoisonError::into_inner));
        let task = tokio::spawn(report_start(progress.clone(), {
            let sent = sent.clone();
            move |states: &[NotifyState]| {
                let message = states.iter().map(ToString::to_string).collect();
                sent.lock().unwrap_or_else(PoisonError::into_inner).push(message);
            }
        }));
        tokio::time::sleep(START_LOOK * 3).await;
        assert_eq!(taken(), Vec::<Vec<String>>::new(), "nothing long yet: nothing said");

        progress.begin("restoring the replica from snapshot 7 (3 files)".into());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let extend = "EXTEND_TIMEOUT_USEC=120000000".to_owned();
        assert_eq!(
            taken(),
            [[
                extend.clone(),
                "STATUS=restoring the replica from snapshot 7 (3 files): 0.0 MB so far".into()
            ]],
            "at once when the phase begins"
        );

        // Moving: more time at each look.
        for mb in 1..=3 {
            progress.counter().fetch_add(1_000_000, Ordering::Relaxed);
            tokio::time::sleep(START_LOOK).await;
            let status = format!("STATUS=restoring the replica from snapshot 7 (3 files): {mb}.0 MB so far");
            assert_eq!(taken(), [[extend.clone(), status]]);
        }
        // Stuck: no more time, so systemd's timeout can end the start.
        tokio::time::sleep(START_PATIENCE * 2).await;
        assert_eq!(
            taken(),
            Vec::<Vec<String>>::new(),
            "a start that does not move gets no more time"
        );
        task.abort();
    }
}
