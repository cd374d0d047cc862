//! The zone's members bucket (`bsfg-members-<zone>`, design §4.2): every instance puts what it
//! is (role, epoch, how far its replica applied the log) under its own name, again and again, and
//! watches what the others last said. It is for operators only (`/v1/status`): leadership is the
//! lease's, never decided from here.
//!
//! How recently an instance spoke is measured like the lease's expiry: on the observer's own
//! clock, from the moment it saw that instance's latest write (a write already there when the
//! watch started counts as seen then). No clocks are compared across hosts.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::kv::{self, Entry, Operation};
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
    pub at: Instant,
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
        let watcher = tokio::spawn(watch_members(store.clone(), Arc::new(seen_tx)));
        Ok(KvMembers {
            store,
            instance: instance.to_owned(),
            seen,
            watcher,
        })
    }
}

impl KvMembers {
    /// Puts what this instance is under its name.
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

/// Feeds every write to the bucket to `seen` with the moment it arrived. A watch that starts (or
/// starts again after it failed) delivers each key's last write first.
async fn watch_members(store: kv::Store, seen: Arc<watch::Sender<BTreeMap<String, Seen>>>) {
    loop {
        if let Ok(mut entries) = store.watch_with_history(">").await {
            while let Some(Ok(entry)) = entries.next().await {
                seen.send_modify(|seen| record(seen, &entry, Instant::now()));
            }
        }
        tokio::time::sleep(REWATCH).await;
    }
}

/// One write seen at `now`: a put replaces the instance's word, a deletion or purge removes it.
fn record(seen: &mut BTreeMap<String, Seen>, entry: &Entry, now: Instant) {
    if entry.operation == Operation::Put {
        let member = serde_json::from_slice(&entry.value).ok();
        seen.insert(entry.key.clone(), Seen { member, at: now });
    } else {
        seen.remove(&entry.key);
    }
}
