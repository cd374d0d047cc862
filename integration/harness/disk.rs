//! File systems for storage fault tests (they need root, as CI has): a small tmpfs as a node's
//! data directory, a file that fills it, a bind mount of a live data directory that can be
//! made read-only under the running node, and an ext4 image that can be frozen under it (every
//! write then hangs until it is thawed, as on a disk that stopped completing writes). Every mount
//! is thawed and lazily unmounted when dropped, so a failing test leaves nothing mounted or
//! frozen behind, and a `Cluster` unmounts whatever is mounted in its scratch directory once its
//! nodes are killed, before it removes the directory. A test declares its `Mount` after its
//! `Cluster`, so that a panic drops (thaws) the mount before the cluster kills its nodes: a
//! process blocked on a frozen file system cannot die.

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

/// A mount point this test created.
#[derive(Debug)]
pub struct Mount {
    path: PathBuf,
    frozen: AtomicBool,
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}); storage fault tests need root (as in CI): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Mount {
    /// A tmpfs of `size_bytes` at `path` (created if missing).
    pub fn tmpfs(path: &Path, size_bytes: u64) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let size = format!("size={size_bytes}");
        run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &path.to_string_lossy()]);
        Self::at(path)
    }

    /// An ext4 file system of `size_bytes` at `path`, in an image file beside it.
    pub fn ext4(path: &Path, size_bytes: u64) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let image = path.with_extension("ext4");
        File::create(&image)
            .and_then(|file| file.set_len(size_bytes))
            .expect("image file");
        let image = image.to_string_lossy();
        run("mkfs.ext4", &["-q", "-F", &image]);
        run("mount", &["-o", "loop", &image, &path.to_string_lossy()]);
        Self::at(path)
    }

    /// Freezes the file system (every write to it hangs) or thaws it.
    pub fn freeze(&self, frozen: bool) {
        let flag = if frozen { "-f" } else { "-u" };
        run("fsfreeze", &[flag, &self.path.to_string_lossy()]);
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            frozen: AtomicBool::new(false),
        }
    }

    /// Grows (or shrinks) a tmpfs made by [`Mount::tmpfs`], keeping its files.
    pub fn resize(&self, size_bytes: u64) {
        let options = format!("remount,size={size_bytes}");
        run("mount", &["-o", &options, &self.path.to_string_lossy()]);
    }

    /// `path` bind-mounted onto itself, so it can be made read-only: files opened before (through
    /// the mount below) stay writable, new ones cannot be created through the path.
    pub fn bind(path: &Path) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let p = path.to_string_lossy();
        run("mount", &["--bind", &p, &p]);
        Self::at(path)
    }

    /// Read-only (new files cannot be created; files already open still write) or writable.
    pub fn read_only(&self, read_only: bool) {
        let options = if read_only {
            "remount,ro,bind"
        } else {
            "remount,rw,bind"
        };
        run("mount", &["-o", options, &self.path.to_string_lossy()]);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.frozen.load(Ordering::SeqCst) {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.path).status();
        }
        // Quietly: a `Cluster` dropped first has unmounted it already.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status();
    }
}

/// Lazily unmounts every mount point at or below `dir`, deepest first (a no-op without any).
pub fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        // /proc/self/mounts writes a space in a path as \040; scratch paths have none.
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(&point).status();
    }
}

/// Bytes an unprivileged writer may still use on `path`'s file system.
pub fn free_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("df {}: {text}", path.display()))
}

/// A file that takes a file system's space; removed when dropped.
#[derive(Debug)]
pub struct Filler {
    path: PathBuf,
}

impl Filler {
    /// Writes `dir/filler` until at most `leave` bytes are free on `dir`'s file system (it may
    /// leave less: writes go in 64 KiB pieces at the end).
    pub fn leaving(dir: &Path, leave: u64) -> Self {
        let path = dir.join("filler");
        let mut file = File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        loop {
            let free = free_bytes(dir);
            if free <= leave {
                break;
            }
            let want = (free - leave).min(16 << 20) as usize;
            let mut written = 0;
            while written < want {
                let piece = &chunk[..chunk.len().min(want - written).max(1)];
                if file.write_all(piece).is_err() {
                    return Self { path };
                }
                written += piece.len();
            }
            file.flush().expect("flush");
        }
        file.sync_all().expect("sync");
        Self { path }
    }

    /// Frees the space.
    pub fn remove(self) {}
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
