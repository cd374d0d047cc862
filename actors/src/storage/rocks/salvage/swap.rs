//! The swap that ends `accept-loss`: the damaged RocksDB files aside, the copy's into place; each
//! half marked done in `salvage.new/`, so an interrupted swap is finished by the next run.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{COMPLETE, SALVAGE_DIR};

/// In `salvage.new/`: the old files have been moved away.
const OLD_MOVED: &str = "OLD_MOVED";

/// Whether `name` is one of RocksDB's files (the ones the swap moves).
fn rocksdb_file(name: &str) -> bool {
    ["CURRENT", "IDENTITY", "LOCK", "LOG"].contains(&name)
        || ["LOG.old.", "MANIFEST-", "OPTIONS-"]
            .iter()
            .any(|p| name.starts_with(p))
        || [".sst", ".log", ".blob"].iter().any(|s| name.ends_with(s))
}

/// Moves the old RocksDB files of `path` into the directory named in `salvage.new/COMPLETE`,
/// then the copy's files into `path`; each half is skipped when a marker says it is done.
pub(super) fn swap(path: &Path) -> std::io::Result<PathBuf> {
    let new = path.join(SALVAGE_DIR);
    let aside = path.join(fs::read_to_string(new.join(COMPLETE))?.trim());
    if !new.join(OLD_MOVED).exists() {
        fs::create_dir_all(&aside)?;
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if rocksdb_file(&entry.file_name().to_string_lossy()) {
                fs::rename(entry.path(), aside.join(entry.file_name()))?;
            }
        }
        sync_dir(path)?;
        fs::write(new.join(OLD_MOVED), b"")?;
    }
    for entry in fs::read_dir(&new)? {
        let entry = entry?;
        if rocksdb_file(&entry.file_name().to_string_lossy()) {
            fs::rename(entry.path(), path.join(entry.file_name()))?;
        }
    }
    sync_dir(path)?;
    fs::remove_dir_all(&new)?;
    Ok(aside)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}
