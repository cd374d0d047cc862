//! Node-level drain (SPEC §10): while draining, the RPC server refuses new client calls with
//! `UNAVAILABLE` (peer calls keep replication going) and lets the client calls already admitted
//! finish. One shared value, cloned into the server, the admin API and the SIGTERM path; the
//! drain of a stopping node cannot be resumed.
//!
//! Invariant: a call is admitted by incrementing `in_flight` *before* reading the flag, and a
//! drain sets the flag *before* reading `in_flight` (both `SeqCst`), so every call that slipped
//! in ahead of the flag is counted by the drain that raised it.
//!
//! An append stream answers many calls and may stay open when none is in flight; its answers are
//! delivered only once the caller acknowledges the stream's end. So a drain also tells every open
//! stream to end ([`DrainHandle::raised`]) and waits until each has ([`OpenStream`]); a node that
//! stops right after its drain would otherwise discard answers written and not yet received.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use prometheus::IntGauge;
use tokio::sync::Notify;

/// How long a drain waits for in-flight client calls by default (SPEC §10).
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// The drain flag and the count of client calls in flight; cheap to clone.
#[derive(Clone)]
pub struct DrainHandle(Arc<Inner>);

struct Inner {
    draining: AtomicBool,
    /// The node is stopping: its drain is for good.
    stopping: AtomicBool,
    /// Held while the flags change, so a resume never undoes a stop that has begun.
    switch: Mutex<()>,
    in_flight: AtomicUsize,
    /// Append streams open: counted apart from calls (an idle stream is not a call in flight).
    streams: AtomicUsize,
    /// Woken when in-flight calls and open streams are both none.
    idle: Notify,
    /// Woken when a drain is raised.
    raised: Notify,
    gauge: IntGauge,
}

/// What a drain achieved within its grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// No client call was in flight, nor any append stream still ending, when the drain returned.
    pub drained: bool,
    /// Client calls in flight and append streams still ending.
    pub in_flight: usize,
}

/// One admitted client call; dropping it ends the call.
pub struct InFlight(DrainHandle);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.in_flight.fetch_sub(1, SeqCst);
        self.0.settle();
    }
}

/// One open append stream, held for its life; dropping it once its end is delivered lets a drain
/// finish.
pub struct OpenStream(DrainHandle);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0 .0.streams.fetch_sub(1, SeqCst);
        self.0.settle();
    }
}

impl DrainHandle {
    /// Not draining; `gauge` (`bsfg_draining`) follows the flag.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(0);
        Self(Arc::new(Inner {
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            switch: Mutex::new(()),
            in_flight: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            idle: Notify::new(),
            raised: Notify::new(),
            gauge,
        }))
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(SeqCst)
    }

    /// Admits one client call, or `None` while draining.
    pub fn admit(&self) -> Option<InFlight> {
        self.0.in_flight.fetch_add(1, SeqCst);
        let guard = InFlight(self.clone());
        (!self.is_draining()).then_some(guard)
    }

    /// Counts an append stream as open until the guard drops; open it before admitting the
    /// stream's first call, so a drain raised meanwhile counts one or the other.
    pub fn open_stream(&self) -> OpenStream {
        self.0.streams.fetch_add(1, SeqCst);
        OpenStream(self.clone())
    }

    /// Resolves once the node drains (at once if it does): an open append stream then ends.
    pub async fn raised(&self) {
        loop {
            let notified = self.0.raised.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_draining() {
                return;
            }
            notified.await;
        }
    }

    /// Stops admitting client calls and waits up to `grace` for those in flight to finish, and
    /// for the append streams open to end.
    pub async fn drain(&self, grace: Duration) -> DrainOutcome {
        self.raise(false);
        self.wait(grace).await
    }

    /// The node is stopping (SIGTERM): drains as [`DrainHandle::drain`], for good.
    pub async fn stop(&self, grace: Duration) -> DrainOutcome {
        self.raise(true);
        self.wait(grace).await
    }

    /// Admits client calls again; `false`, and nothing changed, once the node is stopping.
    #[must_use]
    pub fn resume(&self) -> bool {
        let _switch = self.0.switch.lock().unwrap_or_else(PoisonError::into_inner);
        if self.0.stopping.load(SeqCst) {
            return false;
        }
        self.0.draining.store(false, SeqCst);
        self.0.gauge.set(0);
        true
    }

    fn raise(&self, stopping: bool) {
        let _switch = self.0.switch.lock().unwrap_or_else(PoisonError::into_inner);
        if stopping {
            self.0.stopping.store(true, SeqCst);
        }
        self.0.draining.store(true, SeqCst);
        self.0.gauge.set(1);
        self.0.raised.notify_waiters();
    }

    /// Calls in flight and streams still open.
    fn busy(&self) -> usize {
        self.in_flight() + self.0.streams.load(SeqCst)
    }

    /// Wakes a waiting drain once nothing is busy. Each guard decrements before it reads both
    /// counts (`SeqCst`), so the last of two guards dropped at once sees none left.
    fn settle(&self) {
        if self.busy() == 0 {
            self.0.idle.notify_waiters();
        }
    }

    /// Drained once nothing was busy at some moment after the flag was raised: every call and
    /// stream admitted before it had finished by then. What is counted later is a call being
    /// refused (`admit` counts it for an instant, see the invariant) or a stream opened after
    /// the flag, whose first call is refused: reading the count again then reported a drain
    /// that had succeeded as failing, `in_flight: 1` (a CI run).
    async fn wait(&self, grace: Duration) -> DrainOutcome {
        match tokio::time::timeout(grace, self.idle()).await {
            Ok(()) => DrainOutcome {
                drained: true,
                in_flight: 0,
            },
            Err(_) => DrainOutcome {
                drained: false,
                in_flight: self.busy(),
            },
        }
    }

    async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.busy() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a drain returns with `in_flight` calls and streams left.
    fn left(in_flight: usize) -> DrainOutcome {
        DrainOutcome {
            drained: in_flight == 0,
            in_flight,
        }
    }

    fn handle() -> DrainHandle {
        DrainHandle::new(IntGauge::new("draining", "test").expect("gauge"))
    }

    #[tokio::test]
    async fn the_drain_of_a_stopping_node_cannot_be_resumed() {
        let drain = handle();
        let call = drain.admit().expect("admitted before the stop");
        let stopping = tokio::spawn({
            let drain = drain.clone();
            async move { drain.stop(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!drain.resume(), "refused while the node stops");
        assert!(drain.is_draining());
        assert!(drain.admit().is_none(), "still refusing new calls");
        assert_eq!(drain.0.gauge.get(), 1);
        drop(call);
        assert!(stopping.await.expect("stop task").drained);
        assert!(!drain.resume(), "nor once it has drained");
    }

    #[tokio::test]
    async fn drain_waits_for_admitted_calls_and_refuses_new_ones() {
        let drain = handle();
        let call = drain.admit().expect("admitted before the drain");
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.drain(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(drain.is_draining());
        assert!(drain.admit().is_none(), "new calls are refused");
        assert_eq!(drain.0.gauge.get(), 1);
        drop(call);
        let outcome = waiter.await.expect("drain task");
        assert_eq!(outcome, left(0));
        assert!(drain.resume());
        assert!(drain.admit().is_some());
        assert_eq!(drain.0.gauge.get(), 0);
    }

    #[tokio::test]
    async fn a_drain_tells_open_streams_to_end_and_waits_until_they_have() {
        let drain = handle();
        let stream = drain.open_stream();
        assert_eq!(drain.in_flight(), 0, "an open stream is not a call in flight");
        let ended = std::sync::Arc::new(AtomicBool::new(false));
        let ending = tokio::spawn({
            let (drain, ended) = (drain.clone(), ended.clone());
            async move {
                drain.raised().await;
                // Its last answers and its end on their way to the caller.
                tokio::time::sleep(Duration::from_millis(100)).await;
                ended.store(true, SeqCst);
                drop(stream);
            }
        });
        let outcome = drain.drain(Duration::from_secs(5)).await;
        assert!(ended.load(SeqCst), "the drain returned before the stream ended");
        assert_eq!(outcome, left(0));
        ending.await.expect("stream task");

        let _stuck = drain.open_stream();
        let outcome = drain.drain(Duration::from_millis(50)).await;
        assert_eq!(outcome, left(1), "a stream that does not end is reported");
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_grace_period() {
        let drain = handle();
        let _call = drain.admit().expect("admitted");
        let outcome = drain.drain(Duration::from_millis(50)).await;
        assert_eq!(outcome, left(1));
    }
}
