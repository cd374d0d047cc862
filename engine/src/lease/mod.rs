//! The lease port: who may write. One holder at a time, taken and renewed by compare-and-set on
//! the lease's revision, observed by everyone.
//!
//! Expiry is measured by each observer on its own monotonic clock, from the moment it first saw
//! the current revision; no clocks are compared across hosts. A holder counts its own validity
//! from the moment it *sent* its last successful renewal, which is never later than any observer
//! saw it, so the holder's view expires first (given clocks that run at the same rate). The lease
//! is for liveness only: safety comes from the log's compare-and-append, which fences a holder
//! that believes too long that it still holds.
//!
//! The epoch of a holder is the revision of the write that took the lease: it only grows, even
//! across releases and deletions, so `<instance>.<epoch>.<n>` record ids are never reused.

mod view;

pub use view::{Claim, LeaseValue, LeaseView};

use std::{
    future::Future,
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// Who holds the lease, and since which takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub instance: String,
    pub epoch: u64,
}

/// What a holder has: the lease at `revision` until `valid_until` on its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub holder: Holder,
    pub revision: u64,
    pub valid_until: Instant,
}

/// The lease as an observer sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// `None`: vacant (never taken, or released).
    pub holder: Option<Holder>,
    pub revision: u64,
    /// The holder has not renewed for a whole TTL as this observer measured it.
    pub expired: bool,
}

impl LeaseState {
    /// Whether an acquire may succeed now: vacant or expired.
    pub fn is_free(&self) -> bool {
        self.holder.is_none() || self.expired
    }
}

/// Why a lease operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Another holder's lease is live as this observer measures it.
    #[error("the lease is held by {holder} (epoch {epoch}), live for another {expires_in:?} as seen here")]
    Held {
        holder: String,
        epoch: u64,
        expires_in: Duration,
    },
    /// The lease moved on: another instance took it, or it was released.
    #[error("the lease is lost: {0}")]
    Lost(String),
    /// The engine did not answer in time; a renewal's outcome is unknown, and the grant stays
    /// valid only until its `valid_until`.
    #[error("lease engine unavailable: {0}")]
    Unavailable(String),
    /// The lease key holds something this version cannot read.
    #[error("the lease key holds an unreadable value: {0}")]
    Corrupt(String),
}

/// The lease. Futures are `Send` so any task or a thread with a runtime handle can drive them.
pub trait Lease: Send + Sync + 'static {
    /// Takes the lease if it is vacant or expired (by compare-and-set on the revision observed).
    fn acquire(&self) -> impl Future<Output = Result<Grant, LeaseError>> + Send;
    /// Extends `grant` (compare-and-set on its revision); [`LeaseError::Lost`] if it moved on.
    fn renew(&self, grant: &Grant) -> impl Future<Output = Result<Grant, LeaseError>> + Send;
    /// Gives the lease up at once (for a step-down), if still held by `grant`.
    fn release(&self, grant: &Grant) -> impl Future<Output = Result<(), LeaseError>> + Send;
    /// The lease as seen now, updated on every change and when the holder's TTL runs out.
    fn observe(&self) -> watch::Receiver<LeaseState>;
    /// The lease's time to live.
    fn ttl(&self) -> Duration;
}
