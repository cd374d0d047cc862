//! Whether this instance serves (SPEC §15): a single node always does; an instance of an HA zone
//! does only while it is the zone's active instance. The RPC server refuses every call of a
//! standby with `UNAVAILABLE` naming the active instance (and closes the connections it had when
//! it stops being active), peer links dial and pull only while active, and `/readyz` answers 200
//! only then. The HA controller is the only writer of the value.

use tokio::sync::watch;

use crate::events::{ROLE_ACTIVE, ROLE_STANDBY};

/// This instance's standing in its zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Serves: a single node, or the HA zone's active instance.
    Active,
    /// An HA zone's standby, following the zone's log; `active` names the lease holder, when known.
    Standby { instance: String, active: Option<String> },
    /// A replica that refused a record of the log as another history: it serves nothing until an
    /// operator rebuilds it.
    Diverged { instance: String },
}

impl Standing {
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active)
    }

    /// The role `/v1/status` and `bsfg_ha_role` report (SPEC §15: `active` or `standby`): a
    /// diverged replica is a standby that serves nothing, and says so apart.
    pub fn role(&self) -> &'static str {
        match self {
            Self::Active => ROLE_ACTIVE,
            Self::Standby { .. } | Self::Diverged { .. } => ROLE_STANDBY,
        }
    }

    /// Why a call is refused here, or `None` when it is served.
    pub fn refusal(&self, zone: &str) -> Option<String> {
        match self {
            Self::Active => None,
            Self::Standby { instance, active } => Some(format!(
                "instance {instance} of zone {zone} is a standby; the active instance is {}",
                active.as_deref().unwrap_or("not known yet")
            )),
            Self::Diverged { instance } => Some(format!(
                "instance {instance} of zone {zone} stopped: its replica diverged from the zone's log and must be rebuilt"
            )),
        }
    }
}

/// The receiving side, as every component holds it.
pub type StandingRx = watch::Receiver<Standing>;

/// Waits until the standing is active (forever if the sender is gone and it is not: a diverged
/// instance's controller stops, and nothing makes it active again).
pub async fn until_active(standing: &mut StandingRx) {
    if standing.wait_for(Standing::is_active).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits until the standing is no longer active (forever if the sender is gone).
pub async fn until_inactive(standing: &mut StandingRx) {
    if standing.wait_for(|s| !s.is_active()).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_diverged_replica_reports_the_role_of_a_standby() {
        let instance = "enterprise-a".to_owned();
        let roles = [
            Standing::Active,
            Standing::Standby {
                instance: instance.clone(),
                active: None,
            },
            Standing::Diverged { instance },
        ]
        .map(|s| s.role());
        assert_eq!(roles, ["active", "standby", "standby"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_nothing_will_make_active_again_waits_for_good() {
        let (writer, mut standing) = watch::channel(Standing::Diverged {
            instance: "enterprise-a".into(),
        });
        drop(writer);
        let waited = tokio::time::timeout(Duration::from_secs(3600), until_active(&mut standing)).await;
        assert!(
            waited.is_err(),
            "a diverged instance whose controller stopped never turns active"
        );
        let waited = tokio::time::timeout(Duration::from_secs(3600), until_inactive(&mut standing)).await;
        assert!(waited.is_ok(), "it is not active");
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_node_is_active_for_good() {
        let (writer, mut standing) = watch::channel(Standing::Active);
        drop(writer);
        let waited = tokio::time::timeout(Duration::from_secs(1), until_active(&mut standing)).await;
        assert!(waited.is_ok());
        let waited = tokio::time::timeout(Duration::from_secs(3600), until_inactive(&mut standing)).await;
        assert!(waited.is_err());
    }
}
