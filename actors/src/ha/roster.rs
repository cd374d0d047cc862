//! The zone's instances as this one sees them (`/v1/status` `ha.instances`): once a second this
//! instance announces its role, epoch and applied position in the zone's members bucket; when
//! asked, every instance's last word is shown with how long ago it reached this one. An instance
//! not heard from for [`SILENT_AFTER`] is shown as not live (stopped, cut off from the engine, or
//! gone).
//!
//! For operators only: nothing here decides who leads (the lease does), and a failed
//! announcement is only retried at the next tick (the engine's unavailability is reported by
//! the lag reporter).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use bsfg_engine::jetstream::{KvMembers, Member, Seen};
use serde::{Deserialize, Serialize};
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
    /// Milliseconds since its last announcement reached this instance (it speaks once a second).
    pub last_seen_ms: u64,
    /// Heard from within the last [`SILENT_AFTER`] (5 s).
    pub live: bool,
}

/// Announces what `status` says of this instance, once a second, until the controller stops.
pub(super) async fn announce(members: Arc<KvMembers>, status: watch::Receiver<HaStatus>) {
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let me = {
            let status = status.borrow();
            Member {
                role: status.role.to_owned(),
                epoch: status.epoch,
                wal_applied: status.wal_applied,
            }
        };
        // Unavailability is the lag reporter's to log; the next tick tries again.
        let _ = members.announce(&me).await;
    }
}

/// Every instance's last word, by name, as of `now`.
pub(super) fn view(seen: BTreeMap<String, Seen>, now: Instant) -> Vec<InstanceSeen> {
    seen.into_iter()
        .map(|(instance, seen)| {
            let silent = now.saturating_duration_since(seen.at);
            let (role, epoch, wal_applied) = match seen.member {
                Some(member) => (member.role, member.epoch, member.wal_applied),
                None => ("unreadable".to_owned(), 0, 0),
            };
            InstanceSeen {
                instance,
                role,
                epoch,
                wal_applied,
                last_seen_ms: u64::try_from(silent.as_millis()).unwrap_or(u64::MAX),
                live: silent < SILENT_AFTER,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(role: &str, wal_applied: u64, at: Instant) -> Seen {
        let member = Member {
            role: role.to_owned(),
            epoch: 7,
            wal_applied,
        };
        Seen {
            member: Some(member),
            at,
        }
    }

    #[test]
    fn instances_are_listed_by_name_and_the_silent_ones_are_not_live() {
        let now = Instant::now();
        let seen = BTreeMap::from([
            ("b".to_owned(), said("standby", 90, now - Duration::from_secs(6))),
            ("a".to_owned(), said("active", 100, now - Duration::from_millis(300))),
            ("c".to_owned(), Seen { member: None, at: now }),
        ]);
        let brief: Vec<_> = view(seen, now)
            .into_iter()
            .map(|i| (i.instance, i.role, i.wal_applied, i.last_seen_ms, i.live))
            .collect();
        let expected = [
            ("a", "active", 100, 300, true),
            ("b", "standby", 90, 6000, false),
            ("c", "unreadable", 0, 0, true),
        ]
        .map(|(i, r, w, l, live)| (i.to_owned(), r.to_owned(), w, l, live));
        assert_eq!(brief, expected);
    }
}
