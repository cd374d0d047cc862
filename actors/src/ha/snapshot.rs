//! Snapshots and the bounded log (design §4.7): a standby that applied `snapshot_every` bytes of
//! the log since its last snapshot takes a RocksDB checkpoint of its replica (under the writer's
//! lock, so the checkpoint holds exactly the position recorded beside it), stores its files in
//! the zone's snapshot bucket as `<seq>.<instance>/<file>`, and writes `<seq>.<instance>/manifest`
//! last: a snapshot without its manifest does not exist. The instance in the name keeps two
//! standbys that checkpoint the same position apart: their files share names (`CURRENT`,
//! `MANIFEST-…`, table numbers) but not contents. (Snapshots written before the instance was
//! part of the name, `<seq>/<file>`, are still restored and pruned.) Two snapshots are kept; the log is purged below the
//! older one's position, so one whole interval of log always follows a restorable snapshot.
//!
//! An empty replica (a new host, or a wiped `data_dir`) whose log no longer starts at record 1
//! is restored from the newest snapshot before RocksDB opens, then follows the log's tail.

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use bsfg_engine::{jetstream::JetStreamObjects, ReplicatedLog};
use slog::warn;

use crate::{
    events::{SnapshotWritten, Telemetry, WalPurged},
    node::StartProgress,
    storage::{replicated::ReplicatedStorage, Storage},
};

/// How often a standby asks itself whether a snapshot is due.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Snapshots kept in the bucket.
const KEEP: usize = 2;
const MANIFEST: &str = "manifest";

/// A standby's snapshot duty.
pub struct Snapshots<L: ReplicatedLog> {
    /// This instance's name: part of its snapshots' names.
    pub instance: String,
    pub storage: Arc<ReplicatedStorage<L>>,
    pub objects: JetStreamObjects,
    /// Where checkpoints are made before they are uploaded (inside `data_dir`).
    pub scratch: PathBuf,
    /// Log bytes applied between two snapshots.
    pub every_bytes: u64,
    pub telemetry: Telemetry,
}

impl<L: ReplicatedLog> Snapshots<L> {
    /// Takes a snapshot whenever enough of the log was applied here since the last one.
    pub async fn run(self) {
        let mut last = 0;
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let followed = self.storage.followed_bytes();
            if self.storage.writer_epoch() != 0 {
                // Active: it writes the log rather than follows it, and takes no snapshot. The
                // count starts again from here should it be a standby again.
                last = followed;
                continue;
            }
            if followed.saturating_sub(last) < self.every_bytes {
                continue;
            }
            match self.take().await {
                Ok(()) => last = followed,
                Err(reason) => warn!(self.telemetry.log, "snapshot_failed"; "reason" => reason),
            }
        }
    }

    async fn take(&self) -> Result<(), String> {
        let started = Instant::now();
        let dir = self.scratch.clone();
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let storage = self.storage.clone();
        let checkpoint = dir.clone();
        let position = tokio::task::spawn_blocking(move || storage.checkpoint(&checkpoint))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let prefix = snapshot_dir(position.seq, &self.instance);
        let mut names = Vec::new();
        let mut bytes = 0;
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(|e| e.to_string())?;
        while let Some(entry) = entries.next_entry().await.map_err(|e| e.to_string())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            bytes += self.put(&format!("{prefix}/{name}"), &entry.path()).await?;
            names.push(name);
        }
        let manifest = dir.join(MANIFEST);
        tokio::fs::write(&manifest, format!("seq {}\n{}\n", position.seq, names.join("\n")))
            .await
            .map_err(|e| e.to_string())?;
        self.put(&format!("{prefix}/{MANIFEST}"), &manifest).await?;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        self.telemetry.emit(SnapshotWritten {
            seq: position.seq,
            files: names.len(),
            bytes,
            took_ms: started.elapsed().as_millis() as u64,
        });
        self.prune().await
    }

    async fn put(&self, name: &str, path: &Path) -> Result<u64, String> {
        self.objects.put_file(name, path).await.map_err(|e| e.to_string())
    }

    /// Keeps the newest snapshots, and the log from the older kept one's position on.
    async fn prune(&self) -> Result<(), String> {
        let names = self.objects.names().await.map_err(|e| e.to_string())?;
        let Some(oldest_kept) = oldest_kept(&names) else {
            return Ok(());
        };
        for name in names
            .iter()
            .filter(|n| snapshot_seq(n).is_some_and(|seq| seq < oldest_kept))
        {
            self.objects.delete(name).await.map_err(|e| e.to_string())?;
        }
        let removed = self
            .storage
            .log()
            .purge_before(oldest_kept + 1)
            .await
            .map_err(|e| e.to_string())?;
        self.telemetry.emit(WalPurged {
            before: oldest_kept + 1,
            removed,
        });
        Ok(())
    }
}

/// The position of the oldest snapshot kept, once there are [`KEEP`] positions: positions, not
/// copies, since two standbys' snapshots of one position are one interval of log.
fn oldest_kept(names: &[String]) -> Option<u64> {
    let mut positions: Vec<u64> = complete_snapshots(names).iter().map(|(seq, _)| *seq).collect();
    positions.dedup();
    positions.len().checked_sub(KEEP).map(|i| positions[i])
}

/// The directory of this instance's snapshot at `seq` in the bucket.
fn snapshot_dir(seq: u64, instance: &str) -> String {
    format!("{seq:020}.{instance}")
}

/// The snapshot an object belongs to: its directory (`<seq>.<instance>`, or `<seq>` as written
/// before) and its sequence.
fn snapshot_of(name: &str) -> Option<(u64, &str)> {
    let (dir, _) = name.split_once('/')?;
    let seq = dir.split_once('.').map_or(dir, |(seq, _)| seq).parse().ok()?;
    Some((seq, dir))
}

fn snapshot_seq(name: &str) -> Option<u64> {
    snapshot_of(name).map(|(seq, _)| seq)
}

/// The snapshots whose manifest was written, oldest first: sequence and directory.
fn complete_snapshots(names: &[String]) -> Vec<(u64, &str)> {
    let mut snapshots: Vec<(u64, &str)> = names
        .iter()
        .filter(|n| n.ends_with(&format!("/{MANIFEST}")))
        .filter_map(|n| snapshot_of(n))
        .collect();
    snapshots.sort_unstable();
    snapshots
}

/// Restores the newest snapshot into the empty `data_dir`; returns its sequence, file count and
/// bytes. `None` when there is no snapshot.
///
/// Whether a replica is there to open is whether `data_dir` holds `CURRENT`, so the files are
/// fetched into [`RESTORING`] first and moved into place only once all of them are synced,
/// `CURRENT` last: a restore cut short (a full disk, the engine lost, a stop during start-up)
/// leaves nothing that looks like a database, and the next start restores again.
pub async fn restore(
    objects: &JetStreamObjects,
    data_dir: &Path,
    progress: &StartProgress,
) -> Result<Option<(u64, usize, u64)>, String> {
    let names = objects.names().await.map_err(|e| e.to_string())?;
    let Some((seq, dir)) = complete_snapshots(&names).pop() else {
        return Ok(None);
    };
    let prefix = format!("{dir}/");
    let manifest = format!("{prefix}{MANIFEST}");
    let mut files = names
        .iter()
        .filter(|n| n.starts_with(&prefix) && **n != manifest)
        .map(|name| Ok((name.as_str(), file_name(&name[prefix.len()..])?)))
        .collect::<Result<Vec<_>, String>>()?;
    // `CURRENT` names the manifest RocksDB reads: it goes into place after every other file.
    files.sort_by_key(|(_, file)| *file == "CURRENT");
    let staging = data_dir.join(RESTORING);
    progress.begin(format!(
        "restoring the replica from snapshot {seq} ({} files)",
        files.len()
    ));
    let fetched = fetch_all(objects, &staging, &files, progress.counter()).await;
    let placed = match fetched {
        Ok(bytes) => place(&staging, data_dir, &files).await.map(|()| bytes),
        Err(e) => Err(e),
    };
    if placed.is_err() {
        // Room back for the next attempt, which starts from an empty staging directory anyway.
        let _ = tokio::fs::remove_dir_all(&staging).await;
    }
    Ok(Some((seq, files.len(), placed?)))
}

/// Where a restore fetches the snapshot's files before they move into the data directory.
const RESTORING: &str = "restoring";

/// Fetches every file into `staging`, emptied first of what an interrupted restore left; the
/// bytes fetched.
async fn fetch_all(
    objects: &JetStreamObjects,
    staging: &Path,
    files: &[(&str, &str)],
    copied: &AtomicU64,
) -> Result<u64, String> {
    let failed = |e: std::io::Error| format!("{}: {e}", staging.display());
    match tokio::fs::remove_dir_all(staging).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    tokio::fs::create_dir_all(staging).await.map_err(failed)?;
    let mut bytes = 0;
    for (name, file) in files {
        bytes += objects
            .get_file(name, &staging.join(file), copied)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

/// Moves the fetched files into `data_dir` in their order (each file is synced by its fetch),
/// `CURRENT` only once the other moves are durable, then makes the last move durable.
async fn place(staging: &Path, data_dir: &Path, files: &[(&str, &str)]) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: {e}", data_dir.display());
    let sync = || async {
        let dir = tokio::fs::File::open(data_dir).await.map_err(failed)?;
        dir.sync_all().await.map_err(failed)
    };
    for (_, file) in files {
        if *file == "CURRENT" {
            // Only once every other move is durable.
            sync().await?;
        }
        tokio::fs::rename(staging.join(file), data_dir.join(file))
            .await
            .map_err(failed)?;
    }
    sync().await?;
    tokio::fs::remove_dir(staging).await.map_err(failed)
}

/// A snapshot's file as named in the engine: one plain file name (a checkpoint is one flat
/// directory), never a path that would write outside the data directory.
fn file_name(name: &str) -> Result<&str, String> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(std::path::Component::Normal(_)), None) => Ok(name),
        _ => Err(format!("snapshot file {name:?} is not a plain file name: not restored")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_file_is_a_plain_name_inside_the_data_directory() {
        assert_eq!(file_name("000012.sst"), Ok("000012.sst"));
        for hostile in ["../escape", "/etc/passwd", "a/b", "..", ""] {
            assert!(file_name(hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn only_snapshots_with_a_manifest_count() {
        let names: Vec<String> = [
            "00000000000000000007.enterprise-a/CURRENT",
            "00000000000000000007.enterprise-a/manifest",
            "00000000000000000003/manifest",
            "00000000000000000009.enterprise-b/CURRENT",
            "stray",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            complete_snapshots(&names),
            vec![(3, "00000000000000000003"), (7, "00000000000000000007.enterprise-a")],
            "written before the instance was in the name, and since"
        );
        assert_eq!(snapshot_seq("00000000000000000009.enterprise-b/000012.sst"), Some(9));
        assert_eq!(snapshot_seq("00000000000000000009/000012.sst"), Some(9));
        assert_eq!(snapshot_seq("stray"), None);
    }

    #[test]
    fn two_standbys_snapshotting_the_same_position_are_kept_apart() {
        let (b, c) = (snapshot_dir(42, "enterprise-b"), snapshot_dir(42, "enterprise-c"));
        assert_ne!(b, c, "their files share names, not contents");
        assert_eq!(snapshot_of(&format!("{b}/CURRENT")), Some((42, b.as_str())));
        let names: Vec<String> = [
            "00000000000000000042.enterprise-b/CURRENT",
            "00000000000000000042.enterprise-b/000011.sst",
            "00000000000000000042.enterprise-b/manifest",
            "00000000000000000042.enterprise-c/CURRENT",
            "00000000000000000042.enterprise-c/000011.sst",
            "00000000000000000042.enterprise-c/manifest",
        ]
        .map(str::to_owned)
        .to_vec();
        let snapshots = complete_snapshots(&names);
        assert_eq!(snapshots.len(), 2, "two whole snapshots, not one mixed");
        assert_eq!(oldest_kept(&names), None, "one position: the log before it is kept");
        let older = ["00000000000000000030.enterprise-b/manifest".to_owned()];
        let names: Vec<String> = names.iter().cloned().chain(older).collect();
        assert_eq!(oldest_kept(&names), Some(30), "the older position stays restorable");
        assert_eq!(snapshots.last(), Some(&(42, "00000000000000000042.enterprise-c")));
    }
}
