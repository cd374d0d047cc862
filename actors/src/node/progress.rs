//! How far a start that can take minutes has come. An HA instance whose replica is gone fetches
//! the newest snapshot (gigabytes, over the engine's link) before it can open its storage; `bsfg
//! serve` reports the phase and the bytes moved to the service manager, and extends its start
//! timeout while they move (`crate::systemd` in the binary). A start with nothing long to do
//! never leaves the first, unnamed phase.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// The current phase of a start, and the bytes it has moved.
pub struct StartProgress {
    phase: watch::Sender<Option<String>>,
    bytes: AtomicU64,
}

impl Default for StartProgress {
    fn default() -> Self {
        Self {
            phase: watch::channel(None).0,
            bytes: AtomicU64::new(0),
        }
    }
}

impl StartProgress {
    /// The phase, one line (`None` until a long one begins); each change is seen at once.
    pub fn phase(&self) -> watch::Receiver<Option<String>> {
        self.phase.subscribe()
    }

    /// The bytes the current phase has moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A long phase begins: `phase` says what it does, and its bytes count from zero.
    pub fn begin(&self, phase: String) {
        self.bytes.store(0, Ordering::Relaxed);
        self.phase.send_replace(Some(phase));
    }

    /// What the phase's transfers add their bytes to.
    pub fn counter(&self) -> &AtomicU64 {
        &self.bytes
    }
}
