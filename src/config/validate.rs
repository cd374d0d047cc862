//! Cross-field rules: contradictions that no single value can express. They run after every
//! value has been parsed, and the first broken rule becomes a `ConfigError::Invalid` naming the
//! key to change, the value found and the reason.

use bsfg_actors::MAX_PAGE;

use super::ByteSize;
use super::{routes, settings, Config, ConfigError, LimitsSection, ReplicationSection};

/// A frame is `u32`-length-prefixed; 1 GiB keeps a single decode far below what a node can hold.
const MAX_FRAME_CEILING: ByteSize = ByteSize::gib(1);
/// The longest long-poll a node grants (`FetchFacts` waits beyond it are cut to it).
const MAX_WAIT_MS: u64 = bsfg_actors::MAX_WAIT_MS as u64;

pub(super) fn check(config: &Config) -> Result<(), ConfigError> {
    for index in 0..config.peers.len() {
        check_peer(config, index)?;
    }
    for index in 0..config.clients.len() {
        check_client(config, index)?;
    }
    routes::check(config)?;
    settings::policy(&config.store)?;
    check_replication(&config.replication)?;
    check_limits(&config.limits)?;
    super::storage::check(&config.storage).map_err(|(key, reason)| invalid(key, reason))?;
    check_write_stall(config)?;
    check_ha_limits(config)?;
    check_admin(config)
}

/// An HA zone's log takes a commit as records of at most `MAX_RECORD_BYTES`: a group of facts is
/// split to fit, one fact is not, and a fact that cannot fit could never be appended.
fn check_ha_limits(config: &Config) -> Result<(), ConfigError> {
    use bsfg_actors::storage::{FACT_RECORD_ROOM, RECORD_ROOM};
    let ceiling = (bsfg_engine::jetstream::MAX_RECORD_BYTES - RECORD_ROOM - FACT_RECORD_ROOM) as u64;
    let fact = config.limits.max_fact_bytes;
    match &config.storage.jetstream {
        Some(_) if fact.bytes() > ceiling => Err(invalid(
            "limits.max_fact_bytes",
            format!(
                "{fact} does not fit in one record of the HA zone's log (storage.engine = \"jetstream\"): at most {}",
                bytesize::ByteSize(ceiling).display().iec()
            ),
        )),
        _ => Ok(()),
    }
}

/// An HA instance's commit may rightly wait for the engine up to `commit_timeout`: only a write
/// that outlasts it is stalled.
fn check_write_stall(config: &Config) -> Result<(), ConfigError> {
    let stall = config.node.write_stall_timeout;
    match &config.storage.jetstream {
        Some(js) if stall <= js.commit_timeout => Err(invalid(
            "node.write_stall_timeout",
            format!(
                "{stall:?} is not longer than storage.jetstream.commit_timeout ({:?}), which a commit may rightly take",
                js.commit_timeout
            ),
        )),
        _ => Ok(()),
    }
}

fn check_peer(config: &Config, index: usize) -> Result<(), ConfigError> {
    let peer = &config.peers[index];
    let zone = peer.zone.as_str();
    if peer.zone == config.node.zone {
        let reason = "is this node's own zone (node.zone); a node cannot be its own peer";
        return Err(invalid(format!("peers[{index}].zone"), format!("{zone:?} {reason}")));
    }
    if let Some(first) = config.peers[..index].iter().position(|p| p.zone == peer.zone) {
        let reason = format!("duplicate peer zone {zone:?} (already peers[{first}].zone)");
        return Err(invalid(format!("peers[{index}].zone"), reason));
    }
    if peer.address.is_some() && !peer.addresses.is_empty() {
        let reason = "address and addresses both set: list every address in addresses";
        return Err(invalid(format!("peers[{index}].addresses"), reason));
    }
    if peer.dial && peer.dial_addresses().is_empty() {
        let reason = format!("required for peer {zone:?} because dial = true (or set dial = false)");
        return Err(invalid(format!("peers[{index}].address"), reason));
    }
    if peer.max_bytes_per_second.is_some_and(|cap| cap.bytes() == 0) {
        let reason = "must be greater than zero (leave it out for no cap)";
        return Err(invalid(format!("peers[{index}].max_bytes_per_second"), reason));
    }
    Ok(())
}

fn check_client(config: &Config, index: usize) -> Result<(), ConfigError> {
    let identity = config.clients[index].identity.as_str();
    let path = format!("clients[{index}].identity");
    if let Some(peer) = config.peers.iter().position(|p| p.zone.as_str() == identity) {
        let reason = format!(
            "{identity:?} is also a peer zone (peers[{peer}].zone); \
             a certificate identity is either a peer or a client, never both"
        );
        return Err(invalid(path, reason));
    }
    let earlier = &config.clients[..index];
    if let Some(first) = earlier.iter().position(|c| c.identity == identity) {
        let reason = format!("duplicate client identity {identity:?} (already clients[{first}].identity)");
        return Err(invalid(path, reason));
    }
    Ok(())
}

fn check_replication(replication: &ReplicationSection) -> Result<(), ConfigError> {
    // A page holds at most MAX_PAGE facts: a larger limit would never fill one, and the gate
    // would never see a backlog (`reconciliation`).
    let limit = replication.batch_limit;
    if !(1..=MAX_PAGE).contains(&limit) {
        let reason = format!("must be between 1 and {MAX_PAGE} (facts per page), got {limit}");
        return Err(invalid("replication.batch_limit", reason));
    }
    // 0 would have a caught-up link fetch in a tight loop; a node waits at most a minute.
    let wait = replication.max_wait_ms;
    if !(1..=MAX_WAIT_MS).contains(&wait) {
        let reason = format!("must be between 1 and {MAX_WAIT_MS} (milliseconds), got {wait}");
        return Err(invalid("replication.max_wait_ms", reason));
    }
    Ok(())
}

fn check_limits(limits: &LimitsSection) -> Result<(), ConfigError> {
    let (fact, frame) = (limits.max_fact_bytes, limits.max_frame_bytes);
    if frame > MAX_FRAME_CEILING {
        let reason = format!("{frame} exceeds the maximum of {MAX_FRAME_CEILING}");
        return Err(invalid("limits.max_frame_bytes", reason));
    }
    if fact > frame {
        let reason = format!("{fact} exceeds limits.max_frame_bytes ({frame}); a message must fit in one frame");
        return Err(invalid("limits.max_fact_bytes", reason));
    }
    Ok(())
}

/// SPEC §6: the admin API may leave loopback only behind a bearer token.
fn check_admin(config: &Config) -> Result<(), ConfigError> {
    let admin = config.listen.admin;
    if admin.ip().is_loopback() || config.admin.token_file.is_some() {
        return Ok(());
    }
    let reason = format!(
        "{admin} is not a loopback address and admin.token_file is not set; \
         set admin.token_file or bind the admin listener to loopback"
    );
    Err(invalid("listen.admin", reason))
}

pub(super) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}
