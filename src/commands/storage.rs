//! `bsfg storage accept-loss --config FILE`: the operator's way forward past damaged data, run
//! on the node's host while the node is stopped. Progress goes to stderr; the outcome is one JSON
//! line on stdout — the audit of the action, also recorded for good in the data directory.

use std::path::Path;

use bsfg_actors::storage::{ranges, RocksStorage};
use bsfg_proto::ErrorCode;
use serde_json::json;

use super::CommandError;
use crate::config::Config;

pub fn accept_loss(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path).map_err(|e| CommandError::invalid(e.to_string()))?;
    let (dir, zone) = (&config.node.data_dir, config.node.zone.as_str());
    if let Some(jetstream) = &config.storage.jetstream {
        // The replica's record of the zone's log (its position and chain) would survive the
        // copy while the facts it lost did not: a replica that claims what it lacks. Rebuilt
        // from the log instead, it loses nothing.
        return Err(CommandError::invalid(format!(
            "{} is the replica of HA instance {:?} (storage.engine = \"jetstream\"): accept-loss would leave it \
             claiming facts it lost. Nothing was changed. Stop the instance, move {} aside and start it: it \
             rebuilds its replica from the zone's engine (docs/operations.md, \"Replacing an HA host\")",
            dir.display(),
            jetstream.instance,
            dir.display()
        ))
        .into());
    }
    let by = operator();
    let mut progress = |step: &str| eprintln!("accept-loss: {step}");
    let salvaged = RocksStorage::accept_loss(dir, zone, &by, &mut progress)
        .map_err(|e| CommandError::new(ErrorCode::Internal, e.to_string()))?;
    let timestamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let line = match &salvaged.record {
        None if salvaged.moved_to.is_some() => json!({
            "msg": "storage_loss_accepted", "timestamp": timestamp, "zone": zone,
            "data_dir": dir, "accepted_by": by, "result": "success",
            "reason": "finished moving the files of an interrupted accept-loss; its loss was recorded then",
        }),
        None => json!({
            "msg": "storage_undamaged", "timestamp": timestamp, "zone": zone, "data_dir": dir,
            "accepted_by": by, "result": "success", "kept_facts": salvaged.kept.store.facts + salvaged.kept.forward.facts,
            "reason": "nothing damaged was found; nothing was changed",
        }),
        Some(record) => json!({
            "msg": "storage_loss_accepted", "timestamp": timestamp, "zone": zone, "data_dir": dir,
            "accepted_by": record.accepted_by, "result": "success", "cause": record.cause,
            "lost_facts": record.lost.len(), "store_offsets": ranges(&record.lost.store),
            "forward_offsets": ranges(&record.lost.forward),
            "kept_facts": salvaged.kept.store.facts + salvaged.kept.forward.facts,
            "moved_to": salvaged.moved_to, "accepted_at_unix_ms": record.accepted_at_unix_ms,
        }),
    };
    println!("{line}");
    Ok(())
}

/// Who runs the command: the user behind sudo, else the login user, as `local:<name>`.
fn operator() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    format!("local:{user}")
}

#[cfg(test)]
mod tests {
    use super::accept_loss;

    /// An HA instance's replica is rebuilt from its zone's log, losing nothing; accept-loss would
    /// keep the replica's record of that log beside the facts it dropped.
    #[test]
    fn accept_loss_refuses_an_ha_instances_replica_and_says_how_to_rebuild_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::write(data.join("000004.log"), b"the replica's log").expect("a file");
        let config = dir.path().join("bsfg.toml");
        let text = format!(
            "[node]\nzone = \"plant-a\"\ndata_dir = {data:?}\n\n[tls]\nca = \"/pki/ca.pem\"\n\
             cert = \"/pki/plant-a.pem\"\nkey = \"/pki/plant-a.key\"\n\n[storage]\nengine = \"jetstream\"\n\
             [storage.jetstream]\nurls = [\"nats://127.0.0.1:4222\"]\ninstance = \"plant-a-2\"\n"
        );
        std::fs::write(&config, text).expect("config");
        let refused = accept_loss(&config).expect_err("an HA replica");
        let text = format!("{refused:#}");
        assert!(
            text.contains("\"plant-a-2\"") && text.contains("move") && text.contains("rebuilds its replica"),
            "{text}"
        );
        let files: Vec<_> = std::fs::read_dir(&data)
            .expect("data")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(files, ["000004.log"], "nothing was changed");
    }
}
