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
