//! The host as the node will find it: its data directory (looked at, never written: RocksDB is
//! not opened; a database without its `CURRENT` file fails), the free space of that file system against the configured capacities, and the
//! listen ports (bound for a moment and released).

use std::{
    fs,
    io::ErrorKind,
    net::{SocketAddr, TcpListener, UdpSocket},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use rustix::fs::Access;

use super::{Check, Status};
use crate::config::Config;

pub(super) fn checks(config: &Config) -> Vec<Check> {
    let data_dir = &config.node.data_dir;
    vec![
        directory(data_dir, config.node.zone.as_str()),
        space(config, data_dir),
        port("listen.rpc", config.listen.rpc, "udp", |a| UdpSocket::bind(a).map(drop)),
        port("listen.admin", config.listen.admin, "tcp", |a| {
            TcpListener::bind(a).map(drop)
        }),
    ]
}

/// An existing directory owned by and writable for this user, holding no database or this zone's
/// (of a format this version opens), or one the node can create.
fn directory(path: &Path, zone: &str) -> Check {
    let uid = rustix::process::geteuid().as_raw();
    let fail = |reason: String| Check::fail("data_dir", format!("{}: {reason}", path.display()));
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return creatable(path, uid),
        Err(e) => return fail(e.to_string()),
    };
    if !metadata.is_dir() {
        return fail("is not a directory".to_owned());
    }
    if metadata.uid() != uid {
        return fail(format!(
            "is owned by uid {}, not by uid {uid} running this check; run the check (and the node) as its owner",
            metadata.uid()
        ));
    }
    if let Err(e) = rustix::fs::access(path, Access::READ_OK | Access::WRITE_OK | Access::EXEC_OK) {
        return fail(format!("is not writable by uid {uid}: {e}"));
    }
    match bsfg_actors::storage::RocksStorage::unlisted_files(path) {
        Ok(files) if !files.is_empty() => {
            return fail(format!(
                "holds a database's files ({} of them, such as {}) but not its CURRENT file: damaged or restored \
                 in part; the node refuses to open it. Restore the whole directory from a backup",
                files.len(),
                files[0]
            ))
        }
        Ok(_) => {}
        Err(e) => return fail(format!("cannot be read: {e}")),
    }
    if let Err(e) = bsfg_actors::storage::RocksStorage::check_owner(path, zone) {
        return fail(e.to_string());
    }
    match foreign_entry(path, uid) {
        Ok(None) => Check::ok("data_dir", format!("{}: owned by uid {uid}, writable", path.display())),
        Ok(Some((entry, owner))) => fail(format!(
            "holds {} owned by uid {owner}, not by uid {uid} (a node run once as another user?); \
             the node cannot open its storage: chown -R the directory to its owner",
            entry.display()
        )),
        Err(e) => fail(format!("cannot be read: {e}")),
    }
}

/// The first entry under `dir` (RocksDB's files, the artifact store) that `uid` does not own.
/// Symbolic links (the node creates none) and `lost+found` (a data directory that is the root of
/// its own file system) are not judged; an entry removed while it is read is skipped.
fn foreign_entry(dir: &Path, uid: u32) -> std::io::Result<Option<(PathBuf, u32)>> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if metadata.is_symlink() || entry.file_name() == "lost+found" {
            continue;
        }
        if metadata.uid() != uid {
            return Ok(Some((entry.path(), metadata.uid())));
        }
        if metadata.is_dir() {
            if let Some(found) = foreign_entry(&entry.path(), uid)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// A data directory that does not exist yet: its nearest existing ancestor must let this user
/// create it.
fn creatable(path: &Path, uid: u32) -> Check {
    let ancestor = existing_ancestor(path);
    let fail = |reason: String| {
        let detail = format!("{} does not exist and cannot be created: {reason}", path.display());
        Check::fail("data_dir", detail)
    };
    if !ancestor.is_dir() {
        return fail(format!("{} is not a directory", ancestor.display()));
    }
    match rustix::fs::access(&ancestor, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => Check::ok(
            "data_dir",
            format!(
                "{} does not exist yet; the node creates it in {}",
                path.display(),
                ancestor.display()
            ),
        ),
        Err(e) => fail(format!("{} is not writable by uid {uid}: {e}", ancestor.display())),
    }
}

fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| fs::symlink_metadata(p).is_ok())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// Free space of the data directory's file system: below `node.disk_reserve_bytes` the node
/// refuses appends at once (FAIL); below the buffers' and objects' capacities plus the reserve,
/// the disk fills before they do (warn).
fn space(config: &Config, data_dir: &Path) -> Check {
    let on = existing_ancestor(data_dir);
    let stat = match rustix::fs::statvfs(&on) {
        Ok(stat) => stat,
        Err(e) => {
            return Check::fail(
                "disk space",
                format!("cannot read the free space of {}: {e}", on.display()),
            )
        }
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let reserve = config.node.disk_reserve_bytes;
    let capacities = [
        config.store.capacity_bytes,
        config.forward.capacity_bytes,
        config.objects.capacity_bytes,
    ];
    let needed = capacities
        .iter()
        .fold(reserve.bytes(), |sum, c| sum.saturating_add(c.bytes()));
    let detail = format!(
        "{} free on the file system of {}; store {} + forward {} + objects {} + reserve {} = {}",
        iec(free),
        on.display(),
        config.store.capacity_bytes,
        config.forward.capacity_bytes,
        config.objects.capacity_bytes,
        reserve,
        iec(needed)
    );
    let status = match free {
        f if f < reserve.bytes() => Status::Fail,
        f if f < needed => Status::Warn,
        _ => Status::Ok,
    };
    Check::new("disk space", status, detail)
}

fn iec(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// Binds `addr` for a moment, as the node will.
fn port(key: &str, addr: SocketAddr, protocol: &str, bind: impl Fn(SocketAddr) -> std::io::Result<()>) -> Check {
    match bind(addr) {
        Ok(()) => Check::ok(key, format!("{protocol} {addr} is free")),
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            Check::fail(key, format!("{protocol} {addr} is in use (is a node already running?)"))
        }
        Err(e) => Check::fail(key, format!("cannot bind {protocol} {addr}: {e}")),
    }
}
