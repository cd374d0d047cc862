//! `--ha`: which instance of the HA zone is active, from each instance's `/v1/status`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::{
    lab::{Lab, HA_INSTANCES},
    scenario::status,
};

/// How often an instance's status is asked while waiting for it to become active.
const POLL: Duration = Duration::from_millis(100);

/// The instance of the HA zone that answers as active, if one does.
pub async fn active(lab: &Lab) -> anyhow::Result<Option<&'static str>> {
    for instance in HA_INSTANCES {
        let admin = lab.net.node(instance)?.admin;
        if is_active(admin).await {
            return Ok(Some(instance));
        }
    }
    Ok(None)
}

/// Asks the instance at `admin` until it answers as active (returns when it did) or `limit` passed.
pub async fn until_active(admin: SocketAddr, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if is_active(admin).await {
            return Some(Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

/// Whether the instance at `admin` answers, as active; an instance that does not answer is not.
async fn is_active(admin: SocketAddr) -> bool {
    let answer = tokio::task::spawn_blocking(move || status(admin)).await;
    matches!(answer, Ok(Ok(status)) if status.ha.as_ref().is_some_and(|ha| ha.role == "active"))
}
