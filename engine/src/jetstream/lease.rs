//! [`Lease`] on a JetStream KV bucket (`bsfg-lease-<zone>`, key `leader`, history 1).
//!
//! Writes are compare-and-set on the key's revision (`Nats-Expected-Last-Subject-Sequence`,
//! serialized by the stream leader). A background task watches the key and feeds every revision
//! to a [`LeaseView`] with the local instant it arrived; another publishes the state again when
//! the holder's TTL runs out. A write whose answer was lost is resolved by reading the key back:
//! every value written is unique ([`LeaseValue::after`]), so finding ours means it landed.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    kv::{self, Entry, Operation, UpdateErrorKind},
    stream::LastRawMessageErrorKind,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::{sync::watch, task::JoinHandle};

use super::{provision, Engine, EngineError, LeaseSpec};
use crate::{
    lease::{Claim, Grant, Holder, Lease, LeaseError, LeaseState, LeaseValue, LeaseView},
    names::LEASE_KEY,
};

/// The header a KV write carries unless it is a plain put (`DEL`, `PURGE`).
const KV_OPERATION: &str = "KV-Operation";
/// Wait before watching again after the watch failed.
const REWATCH: Duration = Duration::from_millis(500);

/// The view shared by the lease handle and its background tasks.
struct Shared {
    view: Mutex<LeaseView>,
    state: watch::Sender<LeaseState>,
}

impl Shared {
    /// Feeds an entry (or its absence) seen at `now`; publishes the state if it changed.
    fn observe(&self, now: Instant, revision: u64, holder: Option<Holder>) {
        let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        if view.observe(now, revision, holder) {
            self.state.send_replace(view.state(now));
        }
    }

    fn observe_entry(&self, now: Instant, entry: &Entry) {
        let put = entry.operation == Operation::Put;
        self.observe(now, entry.revision, holder_in(put, &entry.value, entry.revision));
    }

    fn view(&self) -> LeaseView {
        self.view.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Publishes the state as of `now` (the holder's TTL may have run out). Under the view's
    /// lock, as [`Shared::observe`] publishes: a state computed from a copy and published after
    /// an `observe` could overwrite what that `observe` published (a vacancy seen as "held, live"
    /// for good, with nothing left to wake the expiry).
    fn refresh(&self, now: Instant) {
        let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let state = view.state(now);
        self.state.send_if_modified(|old| {
            let changed = *old != state;
            *old = state;
            changed
        });
    }
}

/// The zone's lease on a KV bucket, as seen and used by one instance.
pub struct KvLease {
    store: kv::Store,
    instance: String,
    shared: Arc<Shared>,
    watcher: JoinHandle<()>,
}

impl std::fmt::Debug for KvLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvLease").field("instance", &self.instance).finish()
    }
}

impl Drop for KvLease {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Engine {
    /// The zone's lease bucket (created if missing, checked if not), as `spec.instance` sees it.
    pub async fn open_lease(&self, spec: &LeaseSpec) -> Result<KvLease, EngineError> {
        let store = provision::lease_bucket(self.context(), spec).await?;
        let view = LeaseView::new(spec.ttl, Instant::now());
        let shared = Arc::new(Shared {
            state: watch::Sender::new(view.state(Instant::now())),
            view: Mutex::new(view),
        });
        let watcher = tokio::spawn(follow_lease(store.clone(), shared.clone()));
        let lease = KvLease {
            store,
            instance: spec.instance.clone(),
            shared,
            watcher,
        };
        // A bucket just created may not answer a read for a moment ("no responders" while its
        // stream's replicas start): the first read waits through it, as provisioning waits
        // through an election, so the first `acquire` is answered.
        let object = format!("lease bucket of zone {}", spec.zone);
        provision::create(&object, || lease.read(), unanswered).await?;
        Ok(lease)
    }
}

/// A read the engine did not answer (no responders, a timeout) may be answered the next time.
fn unanswered(error: &LeaseError) -> provision::Failure {
    match error {
        LeaseError::Unavailable(_) => provision::Failure::Transient,
        _ => provision::Failure::Fatal,
    }
}

impl KvLease {
    /// Reads the key from the bucket's leader (a direct get could come from a lagging replica)
    /// into the view; `(revision, put, value)` of its last write, `None` if it never existed.
    async fn read(&self) -> Result<Option<(u64, bool, Bytes)>, LeaseError> {
        let subject = format!("{}{LEASE_KEY}", self.store.prefix);
        match self.store.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let put = message.headers.get(KV_OPERATION).is_none_or(|op| op.as_str() == "PUT");
                let holder = holder_in(put, &message.payload, message.sequence);
                self.shared.observe(Instant::now(), message.sequence, holder);
                Ok(Some((message.sequence, put, message.payload)))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                self.shared.observe(Instant::now(), 0, None);
                Ok(None)
            }
            Err(e) => Err(LeaseError::Unavailable(e.to_string())),
        }
    }

    /// Compare-and-set of `value` over `revision` (0: the key must not exist); the new revision.
    async fn write(&self, revision: u64, value: &LeaseValue) -> Result<u64, (bool, String)> {
        let bytes = Bytes::from(serde_json::to_vec(value).map_err(|e| (false, e.to_string()))?);
        let written = if revision == 0 {
            self.store.create(LEASE_KEY, bytes).await.map_err(|e| {
                let conflict = e.kind() == kv::CreateErrorKind::AlreadyExists;
                (conflict, e.to_string())
            })
        } else {
            self.store.update(LEASE_KEY, bytes, revision).await.map_err(|e| {
                let conflict = e.kind() == UpdateErrorKind::WrongLastRevision;
                (conflict, e.to_string())
            })
        };
        if let Ok(new_revision) = written {
            self.shared
                .observe(Instant::now(), new_revision, value.holder_at(new_revision));
        }
        written
    }

    /// After a write without a clear answer: the revision it got if the key now holds it.
    async fn landed(&self, value: &LeaseValue) -> Option<u64> {
        let (revision, put, bytes) = self.read().await.ok()??;
        let found: LeaseValue = serde_json::from_slice(&bytes).ok()?;
        (put && found == *value).then_some(revision)
    }

    /// Writes `value` over `revision`; on an unclear answer, looks whether it landed.
    async fn cas(&self, revision: u64, value: &LeaseValue) -> Result<u64, LeaseError> {
        match self.write(revision, value).await {
            Ok(new_revision) => Ok(new_revision),
            Err((conflict, reason)) => match self.landed(value).await {
                Some(new_revision) => Ok(new_revision),
                None if conflict => Err(LeaseError::Lost(self.describe())),
                None => Err(LeaseError::Unavailable(reason)),
            },
        }
    }

    fn describe(&self) -> String {
        match self.shared.view().state(Instant::now()).holder {
            Some(h) => format!("held by {} (epoch {})", h.instance, h.epoch),
            None => "released".to_owned(),
        }
    }

    fn grant(&self, epoch: Option<u64>, revision: u64, sent: Instant) -> Grant {
        Grant {
            holder: Holder {
                instance: self.instance.clone(),
                epoch: epoch.unwrap_or(revision),
            },
            revision,
            valid_until: sent + self.shared.view().ttl(),
        }
    }
}

impl Lease for KvLease {
    async fn acquire(&self) -> Result<Grant, LeaseError> {
        self.read().await?;
        let revision = match self.shared.view().claim(Instant::now()) {
            Claim::Wait { holder, until } => return Err(held(holder, until)),
            Claim::TakeOver { revision } => revision,
        };
        let value = LeaseValue {
            holder: Some(self.instance.clone()),
            epoch: None,
            after: revision,
        };
        let sent = Instant::now();
        match self.cas(revision, &value).await {
            Ok(taken) => Ok(self.grant(None, taken, sent)),
            // Another instance took it first: report it as held, like a claim that had to wait.
            Err(LeaseError::Lost(lost)) => match self.shared.view().claim(Instant::now()) {
                Claim::Wait { holder, until } => Err(held(holder, until)),
                Claim::TakeOver { .. } => Err(LeaseError::Lost(lost)),
            },
            Err(e) => Err(e),
        }
    }

    async fn renew(&self, grant: &Grant) -> Result<Grant, LeaseError> {
        let value = LeaseValue {
            holder: Some(self.instance.clone()),
            epoch: Some(grant.holder.epoch),
            after: grant.revision,
        };
        let sent = Instant::now();
        let renewed = self.cas(grant.revision, &value).await?;
        Ok(self.grant(Some(grant.holder.epoch), renewed, sent))
    }

    async fn release(&self, grant: &Grant) -> Result<(), LeaseError> {
        let value = LeaseValue {
            holder: None,
            epoch: Some(grant.holder.epoch),
            after: grant.revision,
        };
        self.cas(grant.revision, &value).await.map(|_| ())
    }

    fn observe(&self) -> watch::Receiver<LeaseState> {
        self.shared.state.subscribe()
    }

    fn ttl(&self) -> Duration {
        self.shared.view().ttl()
    }
}

fn held(holder: Holder, until: Instant) -> LeaseError {
    LeaseError::Held {
        holder: holder.instance,
        epoch: holder.epoch,
        expires_in: until.saturating_duration_since(Instant::now()),
    }
}

/// The holder a write at `revision` names; a deletion or purge marker (`put` false) is vacancy,
/// an unreadable value a holder nobody knows (waited out like any other).
fn holder_in(put: bool, value: &[u8], revision: u64) -> Option<Holder> {
    if !put {
        return None;
    }
    match serde_json::from_slice::<LeaseValue>(value) {
        Ok(value) => value.holder_at(revision),
        Err(_) => Some(Holder {
            instance: "<unreadable>".to_owned(),
            epoch: revision,
        }),
    }
}

/// For as long as the lease handle lives: watches the key, and marks the holder expired when its
/// TTL runs out without a new revision.
async fn follow_lease(store: kv::Store, shared: Arc<Shared>) {
    tokio::join!(watch_key(store, shared.clone()), announce_expiry(&shared));
}

/// Feeds every revision of the key to the view. A watch that starts (or starts again after it
/// failed) delivers the key's last revision first, so a write made meanwhile is not missed.
async fn watch_key(store: kv::Store, shared: Arc<Shared>) {
    loop {
        if let Ok(mut entries) = store.watch_with_history(LEASE_KEY).await {
            while let Some(Ok(entry)) = entries.next().await {
                shared.observe_entry(Instant::now(), &entry);
            }
        }
        tokio::time::sleep(REWATCH).await;
    }
}

/// Publishes the holder as expired once its TTL has run out since the revision seen last, on
/// its own so that it happens whether or not the watch is working (an observer that waited for
/// the watch to expire the lease kept naming a dead holder live for good). An expiry already
/// past when looked at is published at once.
async fn announce_expiry(shared: &Shared) {
    let mut state = shared.state.subscribe();
    loop {
        let expiry = shared.view().expires_at();
        let expired = state.borrow_and_update().expired;
        match expiry {
            Some(at) if !expired => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => shared.refresh(Instant::now().max(at)),
                    _ = state.changed() => {}
                }
            }
            _ => {
                if state.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(200);

    fn shared(now: Instant) -> Arc<Shared> {
        let view = LeaseView::new(TTL, now);
        Arc::new(Shared {
            state: watch::Sender::new(view.state(now)),
            view: Mutex::new(view),
        })
    }

    fn holder() -> Option<Holder> {
        Some(Holder {
            instance: "a".into(),
            epoch: 7,
        })
    }

    async fn expired_within(shared: &Shared, timeout: Duration) -> bool {
        let mut state = shared.state.subscribe();
        let expired = tokio::time::timeout(timeout, state.wait_for(|s| s.expired)).await;
        expired.is_ok()
    }

    #[tokio::test]
    async fn a_holder_not_renewed_is_published_expired_after_its_ttl() {
        let shared = shared(Instant::now());
        shared.observe(Instant::now(), 7, holder());
        let announcer = tokio::spawn({
            let shared = shared.clone();
            async move { announce_expiry(&shared).await }
        });
        assert!(!shared.state.borrow().expired);
        assert!(expired_within(&shared, TTL * 10).await, "expired after the TTL");
        // A renewal makes it live again, and its own TTL runs out in turn.
        shared.observe(Instant::now(), 9, holder());
        assert!(!shared.state.borrow().expired, "renewed");
        assert!(expired_within(&shared, TTL * 10).await, "the renewal expired too");
        announcer.abort();
    }

    #[tokio::test]
    async fn an_expiry_already_past_when_first_looked_at_is_published() {
        // The last revision was seen two TTLs ago (the watch was down meanwhile): the state still
        // says live until someone announces the expiry.
        let long_ago = Instant::now() - TTL * 2;
        let shared = shared(long_ago);
        shared.observe(long_ago, 7, holder());
        assert!(!shared.state.borrow().expired);
        let announcer = tokio::spawn({
            let shared = shared.clone();
            async move { announce_expiry(&shared).await }
        });
        assert!(expired_within(&shared, TTL).await, "published at once");
        announcer.abort();
    }
}
