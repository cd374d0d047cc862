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

/// Marks the copy in `new` complete, naming the directory the damaged files go to (`damaged-…`):
/// written and synced, with its directory entry, before any file moves, since the swap that
/// follows is finished from it after a crash.
pub(super) fn mark_complete(new: &Path, aside: &str) -> std::io::Result<()> {
    let mut stamp = fs::File::create(new.join(COMPLETE))?;
    std::io::Write::write_all(&mut stamp, aside.as_bytes())?;
    stamp.sync_all()?;
    sync_dir(new)
}

/// Moves the old RocksDB files of `path` into the directory named in `salvage.new/COMPLETE`,
/// then the copy's files into `path`; each half is skipped when a marker says it is done.
pub(super) fn swap(path: &Path) -> std::io::Result<PathBuf> {
    let new = path.join(SALVAGE_DIR);
    let stamp = fs::read_to_string(new.join(COMPLETE))?;
    let aside = stamp.trim();
    // Anything else (an empty stamp a crash left) would move the files onto themselves, and the
    // copy's over the damaged ones, mixing both.
    let named = aside.starts_with("damaged-") && !aside.contains('/') && aside != "damaged-";
    if !named {
        return Err(std::io::Error::other(format!(
            "{} holds {stamp:?}, not the name of a directory for the damaged files; nothing was moved: \
             delete {} and run accept-loss again",
            new.join(COMPLETE).display(),
            new.display()
        )));
    }
    let aside = path.join(aside);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stamp that does not name a `damaged-…` directory (an empty file a crash left) moves
    /// nothing: with it, the damaged files would have moved onto themselves and the copy's over
    /// them.
    #[test]
    fn a_stamp_that_names_no_directory_moves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join(SALVAGE_DIR);
        fs::create_dir(&new).expect("salvage dir");
        fs::write(dir.path().join("000007.log"), b"damaged").expect("old log");
        fs::write(new.join("000009.sst"), b"copied").expect("copied table");
        for stamp in ["", "  ", "damaged-", "../elsewhere", "damaged-1/../.."] {
            fs::write(new.join(COMPLETE), stamp).expect("stamp");
            let refused = swap(dir.path()).expect_err(stamp);
            assert!(refused.to_string().contains("nothing was moved"), "{refused}");
            assert!(dir.path().join("000007.log").exists() && new.join("000009.sst").exists());
        }
        mark_complete(&new, "damaged-42").expect("stamp");
        let aside = swap(dir.path()).expect("swapped");
        assert_eq!(aside, dir.path().join("damaged-42"));
        assert_eq!(fs::read(aside.join("000007.log")).expect("aside"), b"damaged");
        assert_eq!(fs::read(dir.path().join("000009.sst")).expect("in place"), b"copied");
    }
}
