//! The service manager's side of `sd_notify(3)`: a test binds the datagram socket a node's
//! `NOTIFY_SOCKET` names and reads what the node tells systemd.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The service manager's end of `NOTIFY_SOCKET`.
pub struct Notifications {
    socket: UnixDatagram,
    pub path: PathBuf,
}

impl Notifications {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Self { socket, path }
    }

    /// The next message, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).expect("timeout");
        let mut buf = [0u8; 4096];
        let len = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// Messages until one with the line `state`, that one last; fails the test after `timeout`.
    pub fn until(&self, state: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(message) = self.next(left) else { break };
            let found = has(&message, state);
            seen.push(message);
            if found {
                return seen;
            }
        }
        panic!("no {state} within {timeout:?}; received {seen:?}")
    }

    /// Every message that arrives within `window`.
    pub fn during(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(message) => seen.push(message),
                None => break,
            }
        }
        seen
    }
}

/// Whether a notification message carries the line `state` (`READY=1`, ...).
pub fn has(message: &str, state: &str) -> bool {
    message.lines().any(|line| line == state)
}
