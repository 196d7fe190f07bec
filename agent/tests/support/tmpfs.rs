//! A small tmpfs for the tests of a full disk, mounted by the test itself (root only)
//! and unmounted when dropped. Without root, [`Tmpfs::mount`] says so on the terminal
//! (not captured by the test harness) and returns `None`: the test is skipped, visibly.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted on drop.
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB for `test`, or, when not root, prints why the
    /// test is skipped and returns `None`.
    pub fn mount(test: &str, size_mib: u64) -> Option<Tmpfs> {
        if !nix::unistd::Uid::effective().is_root() {
            // io::stderr() directly: the harness captures only the print macros.
            let _shown = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: mounting a small tmpfs needs root (CI runs the tests as root)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Tmpfs { _dir: dir, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the filesystem with `name` until it is full; returns the bytes written.
    pub fn fill(&self, name: &str) -> u64 {
        let mut f = std::fs::File::create(self.path.join(name)).unwrap();
        let chunk = vec![0xa5u8; 64 << 10];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Smaller writes take the last partial chunk.
        let small = [0xa5u8; 512];
        while let Ok(n @ 1..) = f.write(&small) {
            written += n as u64;
        }
        written
    }

    /// Free bytes.
    pub fn free(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.path).unwrap();
        s.blocks_available() * s.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _shown = writeln!(
                std::io::stderr(),
                "could not unmount the test tmpfs at {}",
                self.path.display()
            );
        }
    }
}
