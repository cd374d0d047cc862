//! The zone's instances as this one sees them (`/v1/status` `ha.instances`): once a second this
//! instance announces its role, epoch and applied position in the zone's members bucket; when
//! asked, every instance's last word is shown with how long ago it reached this one. An instance
//! not heard from for [`SILENT_AFTER`] is shown as not live (stopped, cut off from the engine, or
//! gone).
//!
//! An instance's own row comes back through the engine like the others: it lags its own `role`
//! by up to a second or two, and when every row, its own included, is not live, it is this
//! instance that is cut off from the engine.
//!
//! For operators only: nothing here decides who leads (the lease does). A failed announcement is
//! logged once per run of failures (`engine_unavailable`) and tried again at the next tick.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bsfg_engine::jetstream::{KvMembers, Member, Seen};
use serde::{Deserialize, Serialize};
use slog::{info, Logger};
use tokio::sync::watch;

use super::HaStatus;

/// How often this instance announces itself and refreshes its view of the others.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Silence after which an instance is shown as not live: several missed announcements.
const SILENT_AFTER: Duration = Duration::from_secs(5);

/// An instance of the zone as last heard from (`/v1/status` `ha.instances`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSeen {
    pub instance: String,
    /// What it said it was (`active`, `standby`, `diverged`); `unreadable` for a value of another
    /// version's format.
    pub role: String,
    pub epoch: u64,
    pub wal_applied: u64,
    /// Milliseconds since its last announcement reached this instance (it speaks once a second);
    /// `None` when nothing new came from it since this instance started (the word shown was
    /// already there, of unknown age).
    pub last_seen_ms: Option<u64>,
    /// Heard from within the last [`SILENT_AFTER`] (5 s).
    pub live: bool,
}

/// Announces what `status` says of this instance once a second, for as long as the node runs:
/// also after the controller stopped on a divergence, whose `diverged` the others must see.
pub(super) async fn announce(members: Arc<KvMembers>, status: watch::Receiver<HaStatus>, log: Logger) {
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let me = {
            let status = status.borrow();
            // The others must see a divergence: the instances' rows say `diverged`, where this
            // instance's own `role` (SPEC §15: active or standby) says `standby`.
            let role = if status.diverged { "diverged" } else { status.role };
            Member {
                role: role.to_owned(),
                epoch: status.epoch,
                wal_applied: status.wal_applied,
            }
        };
        match members.announce(&me).await {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                info!(log, "engine_unavailable"; "reason" => error.to_string());
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Every instance's last word, by name, as of `now`.
pub(super) fn view(seen: BTreeMap<String, Seen>, now: Instant) -> Vec<InstanceSeen> {
    seen.into_iter()
        .map(|(instance, seen)| {
            let silent = seen.at.map(|at| now.saturating_duration_since(at));
            let (role, epoch, wal_applied) = match seen.member {
                Some(member) => (member.role, member.epoch, member.wal_applied),
                None => ("unreadable".to_owned(), 0, 0),
            };
            InstanceSeen {
                instance,
                role,
                epoch,
                wal_applied,
                last_seen_ms: silent.map(|silent| u64::try_from(silent.as_millis()).unwrap_or(u64::MAX)),
                live: silent.is_some_and(|silent| silent < SILENT_AFTER),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(role: &str, wal_applied: u64, at: Option<Instant>) -> Seen {
        let member = Member {
            role: role.to_owned(),
            epoch: 7,
            wal_applied,
        };
        Seen {
            member: Some(member),
            revision: wal_applied,
            at,
        }
    }

    #[test]
    fn instances_are_listed_by_name_and_the_silent_or_unheard_ones_are_not_live() {
        let now = Instant::now();
        let seen = BTreeMap::from([
            ("b".to_owned(), said("standby", 90, Some(now - Duration::from_secs(6)))),
            (
                "a".to_owned(),
                said("active", 100, Some(now - Duration::from_millis(300))),
            ),
            (
                "c".to_owned(),
                Seen {
                    member: None,
                    revision: 1,
                    at: Some(now),
                },
            ),
            ("d".to_owned(), said("active", 50, None)),
        ]);
        let brief: Vec<_> = view(seen, now)
            .into_iter()
            .map(|i| (i.instance, i.role, i.wal_applied, i.last_seen_ms, i.live))
            .collect();
        let expected = [
            ("a", "active", 100, Some(300), true),
            ("b", "standby", 90, Some(6000), false),
            ("c", "unreadable", 0, Some(0), true),
            ("d", "active", 50, None, false),
        ]
        .map(|(i, r, w, l, live)| (i.to_owned(), r.to_owned(), w, l, live));
        assert_eq!(brief, expected);
    }
}
