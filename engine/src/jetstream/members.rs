//! The zone's members bucket (`bsfg-members-<zone>`, design §4.2): every instance puts what it
//! is (role, epoch, how far its replica applied the log) under its own name, again and again, and
//! watches what the others last said. It is for operators only (`/v1/status`): leadership is the
//! lease's, never decided from here.
//!
//! How recently an instance spoke is measured like the lease's expiry: on the observer's own
//! clock, from the moment it saw a new write of that instance. A write that was already there
//! when this process first looked has no such moment (it may be hours old: the instance may be
//! long dead), and a watch started again after a failure replays writes already seen without
//! making them new. No clocks are compared across hosts.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use async_nats::jetstream::kv::{self, Operation};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinHandle};

use super::{check_name, provision, Engine, EngineError};

/// Wait before watching again after the watch failed.
const REWATCH: Duration = Duration::from_millis(500);

/// What an instance says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `active`, `standby` or `diverged`.
    pub role: String,
    /// The epoch it writes in while active, else of the last record it applied.
    pub epoch: u64,
    /// The last record of the zone's log applied to its replica.
    pub wal_applied: u64,
}

/// An instance's last word, and when this observer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `None` when the value could not be read (another version's format).
    pub member: Option<Member>,
    /// The bucket's revision of that write.
    pub revision: u64,
    /// When the write arrived as a new one; `None` for a write already there when this process
    /// first looked.
    pub at: Option<Instant>,
}

/// The members bucket as one instance uses it.
pub struct KvMembers {
    store: kv::Store,
    instance: String,
    seen: watch::Receiver<BTreeMap<String, Seen>>,
    watcher: JoinHandle<()>,
}

impl std::fmt::Debug for KvMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvMembers").field("instance", &self.instance).finish()
    }
}

impl Drop for KvMembers {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Engine {
    /// The zone's members bucket (created if missing, checked if not), as `instance` uses it.
    pub async fn open_members(&self, zone: &str, instance: &str, replicas: usize) -> Result<KvMembers, EngineError> {
        check_name("instance", instance)?;
        let store = provision::members_bucket(self.context(), zone, replicas).await?;
        let (seen_tx, seen) = watch::channel(BTreeMap::new());
        let watcher = tokio::spawn(watch_members(store.clone(), seen_tx));
        Ok(KvMembers {
            store,
            instance: instance.to_owned(),
            seen,
            watcher,
        })
    }
}

impl KvMembers {
    /// Puts what this instance is under its name (a failure is the caller's to report).
    pub async fn announce(&self, member: &Member) -> Result<(), EngineError> {
        let value = serde_json::to_vec(member).map_err(|e| EngineError::Announce(e.to_string()))?;
        self.store
            .put(&self.instance, value.into())
            .await
            .map(|_| ())
            .map_err(|e| EngineError::Announce(e.to_string()))
    }

    /// Every instance's last word as seen so far, by name (this instance's own included once its
    /// first announcement came back through the watch).
    pub fn seen(&self) -> BTreeMap<String, Seen> {
        self.seen.borrow().clone()
    }
}

/// Feeds every write to the bucket to `seen`. A watch that starts (or starts again after it
/// failed) delivers each key's last write first: new only if its revision is.
async fn watch_members(store: kv::Store, seen: watch::Sender<BTreeMap<String, Seen>>) {
    // Until the first watch has delivered the bucket as it was (the entry that brings it up to
    // date included), every write is one that was already there. (Into an empty bucket, the
    // very first write is taken for one too: its writer's next one, a second later, is new.)
    let mut caught_up = false;
    loop {
        if let Ok(mut entries) = store.watch_with_history(">").await {
            while let Some(Ok(entry)) = entries.next().await {
                let write = Write {
                    key: &entry.key,
                    revision: entry.revision,
                    put: entry.operation == Operation::Put,
                    value: &entry.value,
                };
                let arrived = caught_up.then(Instant::now);
                seen.send_modify(|seen| record(seen, &write, arrived));
                caught_up |= entry.seen_current;
            }
        }
        tokio::time::sleep(REWATCH).await;
    }
}

/// One write to the bucket, as the watch delivered it.
struct Write<'a> {
    key: &'a str,
    revision: u64,
    /// A put (`false`: a deletion or purge).
    put: bool,
    value: &'a [u8],
}

/// `write` delivered by the watch; `arrived` is when, if it came as a new write. A put replaces
/// the instance's word unless it is the one already known (replayed by a new watch), a deletion
/// or purge removes it.
fn record(seen: &mut BTreeMap<String, Seen>, write: &Write<'_>, arrived: Option<Instant>) {
    if !write.put {
        seen.remove(write.key);
        return;
    }
    if seen
        .get(write.key)
        .is_some_and(|known| known.revision >= write.revision)
    {
        return;
    }
    let member = serde_json::from_slice(write.value).ok();
    let word = Seen {
        member,
        revision: write.revision,
        at: arrived,
    };
    seen.insert(write.key.to_owned(), word);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<'a>(key: &'a str, revision: u64, value: &'a [u8]) -> Write<'a> {
        Write {
            key,
            revision,
            put: true,
            value,
        }
    }

    #[test]
    fn a_replayed_write_is_not_new_and_a_newer_one_is() {
        let standby = br#"{"role":"standby","epoch":3,"wal_applied":40}"#;
        let (first_look, later) = (Instant::now(), Instant::now() + Duration::from_secs(9));
        let mut seen = BTreeMap::new();
        record(&mut seen, &put("b", 7, standby), None);
        assert_eq!(seen["b"].at, None, "already there when first looked at: age unknown");
        record(&mut seen, &put("b", 8, standby), Some(first_look));
        assert_eq!(seen["b"].at, Some(first_look));
        assert_eq!(seen["b"].member.as_ref().map(|m| m.wal_applied), Some(40));
        record(&mut seen, &put("b", 8, standby), Some(later));
        assert_eq!(
            seen["b"].at,
            Some(first_look),
            "a watch started again replays revision 8"
        );
        record(&mut seen, &put("c", 9, b"not json"), Some(later));
        assert_eq!(seen["c"].member, None, "unreadable, still listed");
        let deleted = Write {
            key: "b",
            revision: 10,
            put: false,
            value: b"",
        };
        record(&mut seen, &deleted, Some(later));
        assert!(!seen.contains_key("b"));
    }
}
