//! Usage of the filesystems under the paths that matter — the data directory, the WAL
//! directory, each tablespace, the agent's own store — by `statvfs`, labelled with the
//! mount found in `/proc/self/mountinfo`.
//!
//! Series are per role, not per filesystem: when the data and WAL directories share a
//! disk, both roles report it, so "WAL disk nearly full" needs no join.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use rustix::fs::StatVfsMountFlags;

use super::{BadLines, Metric, ParseError, SharedPaths, Source, parse_lines, unescape_octal};
use crate::collect::{CollectError, Emitter};

const SIZE: Metric = Metric::gauge(
    "node_filesystem_size_bytes",
    "Total size of the filesystem holding this path.",
    "bytes",
);
const AVAIL: Metric = Metric::gauge(
    "node_filesystem_avail_bytes",
    "Free space on the filesystem holding this path that unprivileged users (such as postgres) may use.",
    "bytes",
);
const FREE: Metric = Metric::gauge(
    "node_filesystem_free_bytes",
    "Free space on the filesystem holding this path, including blocks reserved for root.",
    "bytes",
);
const FILES: Metric = Metric::gauge(
    "node_filesystem_files",
    "Total inodes (file slots) on the filesystem holding this path.",
    "",
);
const FILES_FREE: Metric = Metric::gauge(
    "node_filesystem_files_free",
    "Free inodes on the filesystem holding this path.",
    "",
);
const READONLY: Metric = Metric::gauge(
    "node_filesystem_readonly",
    "1 if the filesystem holding this path is mounted read-only, else 0.",
    "",
);

/// One line of `/proc/self/mountinfo`, paths unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount<'a> {
    pub mount_point: Cow<'a, str>,
    pub fstype: &'a str,
    /// The mount source: a device such as `/dev/nvme0n1p2`, or `tmpfs`, `server:/export`.
    pub source: Cow<'a, str>,
}

/// Parses `/proc/self/mountinfo`:
/// `36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
pub fn parse_mountinfo(text: &str) -> impl Iterator<Item = Result<Mount<'_>, ParseError>> {
    parse_lines(text, 0, parse_mountinfo_line)
}

fn parse_mountinfo_line(line: &str) -> Result<Option<Mount<'_>>, String> {
    let mut tokens = line.split_ascii_whitespace();
    let Some(first) = tokens.next() else {
        return Ok(None);
    };
    // id, parent id, major:minor, root, mount point.
    let mount_point = tokens
        .nth(3)
        .ok_or_else(|| format!("too few fields in {:?}", super::clip(line)))?;
    if !first.bytes().all(|b| b.is_ascii_digit()) || !mount_point.starts_with('/') {
        return Err(format!("not a mountinfo line: {:?}", super::clip(line)));
    }
    // Mount options, then optional fields up to the "-" separator.
    if !tokens.any(|t| t == "-") {
        return Err(format!("no \"-\" separator in {:?}", super::clip(line)));
    }
    let (Some(fstype), Some(source)) = (tokens.next(), tokens.next()) else {
        return Err(format!(
            "no filesystem type and source in {:?}",
            super::clip(line)
        ));
    };
    Ok(Some(Mount {
        mount_point: unescape_octal(mount_point),
        fstype,
        source: unescape_octal(source),
    }))
}

/// The mount holding `path` (absolute, symlinks resolved): the longest mount point that
/// is a prefix of it component by component; of equal ones, the last listed, which is
/// the one mounted on top.
pub fn mount_of<'m, 'a>(mounts: &'m [Mount<'a>], path: &Path) -> Option<&'m Mount<'a>> {
    let mut best: Option<&Mount<'a>> = None;
    for mount in mounts {
        if path.starts_with(Path::new(mount.mount_point.as_ref()))
            && best.is_none_or(|b| mount.mount_point.len() >= b.mount_point.len())
        {
            best = Some(mount);
        }
    }
    best
}

#[derive(Debug)]
pub(super) struct Filesystems {
    mountinfo: Source,
    paths: SharedPaths,
}

impl Filesystems {
    pub(super) fn new(proc_root: &Path, paths: SharedPaths) -> Self {
        Self {
            mountinfo: Source::new(proc_root.join("self/mountinfo")),
            paths,
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        // A copy, so that a statvfs hanging on a dead network mount never holds up the
        // PostgreSQL collector updating the list. A poisoned lock still holds a valid list.
        let paths: Vec<(String, PathBuf)> = match self.paths.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if paths.is_empty() {
            return;
        }
        // Without mountinfo the sizes are still worth having; the mount labels stay empty.
        let mountinfo = self
            .mountinfo
            .read_or_report(buf, "Filesystem mount", errors);
        let mut mounts = Vec::new();
        if let Some(text) = &mountinfo {
            let mut bad = BadLines::default();
            mounts.extend(parse_mountinfo(text).filter_map(|m| m.map_err(|e| bad.push(e)).ok()));
            bad.report(&self.mountinfo.path, errors);
        }
        for (role, path) in &paths {
            let stat = std::fs::canonicalize(path).and_then(|real| {
                let stat = rustix::fs::statvfs(&real)?;
                Ok((real, stat))
            });
            let (real, stat) = match stat {
                Ok(v) => v,
                Err(e) => {
                    errors.push(CollectError::io(path, e));
                    continue;
                }
            };
            let (mount_point, device, fstype) = match mount_of(&mounts, &real) {
                Some(m) => (m.mount_point.as_ref(), m.source.as_ref(), m.fstype),
                None => ("", "", ""),
            };
            let path_label = path.to_string_lossy();
            let labels = [
                ("role", role.as_str()),
                ("path", path_label.as_ref()),
                ("mountpoint", mount_point),
                ("device", device),
                ("fstype", fstype),
            ];
            // f_blocks and friends count fragments; f_frsize is 0 only on ancient kernels.
            let block = if stat.f_frsize > 0 {
                stat.f_frsize
            } else {
                stat.f_bsize
            } as f64;
            SIZE.emit(out, &labels, stat.f_blocks as f64 * block);
            AVAIL.emit(out, &labels, stat.f_bavail as f64 * block);
            FREE.emit(out, &labels, stat.f_bfree as f64 * block);
            FILES.emit(out, &labels, stat.f_files as f64);
            FILES_FREE.emit(out, &labels, stat.f_ffree as f64);
            let readonly = stat.f_flag.contains(StatVfsMountFlags::RDONLY);
            READONLY.emit(out, &labels, if readonly { 1.0 } else { 0.0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
36 27 259:2 / /var/lib/postgresql rw,noatime shared:12 master:3 - xfs /dev/nvme0n1p2 rw,attr2
37 36 259:3 / /var/lib/postgresql/16/main/pg_wal rw,noatime - xfs /dev/nvme1n1 rw
38 27 0:40 /export /mnt/my\\040backups rw - nfs4 nas:/export\\040x rw,vers=4.2
39 27 0:41 / /var/lib/postgresql rw - ext4 /dev/sdb1 rw
";

    fn mounts(text: &str) -> Vec<Mount<'_>> {
        parse_mountinfo(text).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let m = mounts(MOUNTINFO);
        assert_eq!(m.len(), 6);
        assert_eq!(
            m[2],
            Mount {
                mount_point: "/var/lib/postgresql".into(),
                fstype: "xfs",
                source: "/dev/nvme0n1p2".into(),
            }
        );
        assert_eq!(
            (m[4].mount_point.as_ref(), m[4].source.as_ref()),
            ("/mnt/my backups", "nas:/export x")
        );
        assert_eq!(m[4].fstype, "nfs4");
    }

    #[test]
    fn longest_mount_point_wins_by_component_and_top_mount_wins_ties() {
        let m = mounts(MOUNTINFO);
        let dev = |p: &str| mount_of(&m, Path::new(p)).map(|m| m.source.as_ref().to_owned());
        assert_eq!(
            dev("/var/lib/postgresql/16/main/base").as_deref(),
            Some("/dev/sdb1"),
            "overmounted"
        );
        assert_eq!(
            dev("/var/lib/postgresql/16/main/pg_wal").as_deref(),
            Some("/dev/nvme1n1")
        );
        assert_eq!(
            dev("/var/lib/postgresql/16/main/pg_wal/000000010000000000000001").as_deref(),
            Some("/dev/nvme1n1")
        );
        assert_eq!(
            dev("/var/lib/postgresqlx").as_deref(),
            Some("/dev/vda"),
            "prefix by component only"
        );
        assert_eq!(
            dev("/mnt/my backups/base").as_deref(),
            Some("nas:/export x")
        );
        assert_eq!(mount_of(&m[..1], Path::new("/var")), None);
    }

    #[test]
    fn bad_mountinfo_lines_name_the_line() {
        let text = "27 1 254:0 / / rw - ext4 /dev/vda rw\n27 1 254:0 /\n28 1 0:1 / /x rw ext4\n\
                    29 1 0:1 / /y rw -\nabc 1 0:1 / /z rw - ext4 d rw\n";
        let errs: Vec<_> = parse_mountinfo(text).filter_map(Result::err).collect();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert!(errs[1].detail.contains("separator"), "{}", errs[1]);
    }

    fn collect(fs: &mut Filesystems) -> (Emitter, Vec<CollectError>) {
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        fs.collect(&mut buf, &mut out, &mut errors);
        (out, errors)
    }

    fn label<'s>(s: &'s crate::collect::Emitted, key: &str) -> &'s str {
        &s.labels.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[test]
    fn one_series_set_per_role_following_symlinks() {
        let proc_root = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let real_data = std::fs::canonicalize(data.path()).unwrap();
        std::fs::create_dir(real_data.join("wal")).unwrap();
        std::os::unix::fs::symlink(real_data.join("wal"), real_data.join("pg_wal")).unwrap();
        std::fs::create_dir(proc_root.path().join("self")).unwrap();
        let mountinfo = format!(
            "1 0 8:1 / / rw - ext4 /dev/root rw\n2 1 8:2 / {} rw - xfs /dev/walz rw\n",
            real_data.join("wal").display()
        );
        std::fs::write(proc_root.path().join("self/mountinfo"), mountinfo).unwrap();

        let paths: SharedPaths = Arc::new(RwLock::new(vec![
            ("data_directory".to_owned(), real_data.clone()),
            ("wal_directory".to_owned(), real_data.join("pg_wal")),
            ("tablespace:gone".to_owned(), real_data.join("nope")),
        ]));
        let mut fs = Filesystems::new(proc_root.path(), paths.clone());
        let (out, errors) = collect(&mut fs);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("nope"), "{}", errors[0]);
        assert_eq!(out.len(), 12);
        let size = out
            .samples()
            .iter()
            .find(|s| s.name == "node_filesystem_size_bytes" && label(s, "role") == "wal_directory")
            .unwrap();
        assert_eq!(
            label(size, "path"),
            real_data.join("pg_wal").to_str().unwrap()
        );
        assert_eq!(
            label(size, "mountpoint"),
            real_data.join("wal").to_str().unwrap()
        );
        assert_eq!(
            (label(size, "device"), label(size, "fstype")),
            ("/dev/walz", "xfs")
        );
        assert!(size.value > 0.0);
        let data_ro = out
            .samples()
            .iter()
            .find(|s| s.name == "node_filesystem_readonly" && label(s, "role") == "data_directory")
            .unwrap();
        assert_eq!(
            (label(data_ro, "device"), data_ro.value),
            ("/dev/root", 0.0)
        );

        // The list is read at every pass.
        paths.write().unwrap().truncate(1);
        let (out, errors) = collect(&mut fs);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn without_mountinfo_sizes_still_come() {
        let proc_root = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let paths: SharedPaths = Arc::new(RwLock::new(vec![(
            "agent_data_dir".to_owned(),
            data.path().to_owned(),
        )]));
        let mut fs = Filesystems::new(proc_root.path(), paths);
        let (out, errors) = collect(&mut fs);
        assert_eq!(errors.len(), 1, "missing mountinfo is reported");
        assert_eq!(out.len(), 6);
        assert!(
            out.samples()
                .iter()
                .all(|s| label(s, "mountpoint").is_empty())
        );
        let (out, errors) = collect(&mut fs);
        assert!(errors.is_empty(), "and only once");
        assert_eq!(out.len(), 6);
    }
}
