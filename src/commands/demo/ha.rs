//! `--ha`: which instance of the HA zone is active, from each instance's `/v1/status`.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use super::lab::{Lab, HA_INSTANCES};
use crate::devnet::ha::{role, until_role};

/// The instance of the HA zone that answers as active, if one does.
pub async fn active(lab: &Lab) -> anyhow::Result<Option<&'static str>> {
    for instance in HA_INSTANCES {
        let admin = lab.net.node(instance)?.admin;
        let role = tokio::task::spawn_blocking(move || role(admin)).await?;
        if role.as_deref() == Some("active") {
            return Ok(Some(instance));
        }
    }
    Ok(None)
}

/// Asks the instance at `admin` until it answers as active (returns when it did) or `limit` passed.
pub async fn until_active(admin: SocketAddr, limit: Duration) -> Option<Instant> {
    until_role(admin, "active", limit).await
}
