//! System collector: Linux host metrics from `/proc` and `statvfs`.
//!
//! One file per subsystem — `cpu` (`/proc/stat`), `memory` (`/proc/meminfo`),
//! `load` (`/proc/loadavg`), `pressure` (`/proc/pressure/*`), `disk`
//! (`/proc/diskstats`), `network` (`/proc/net/dev`) and `filesystem` (`statvfs` on the
//! paths PostgreSQL and the agent live on). Metric names follow node_exporter wherever it
//! has one, so existing dashboards and alert rules carry over.
//!
//! Each pass reads every file once into one reused buffer and parses it with a pure
//! function over `&str`; the only allocations per series are the ones [`Emitter`] makes
//! for the name and labels it keeps. Subsystems are independent: one that fails reports
//! its error and the others still emit. A subsystem whose file this kernel simply lacks
//! (no PSI before Linux 4.20, a container without `/proc/diskstats`, …) is reported once
//! and then skipped silently until the agent restarts.

mod cpu;
mod disk;
mod filesystem;
mod load;
mod memory;
mod network;
mod pressure;

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use pga_format::MetricKind;

use super::{CollectError, Collector, Emitter, Group};

/// Paths whose filesystems are watched, as `(role, path)` pairs.
///
/// Roles: [`ROLE_DATA_DIRECTORY`], [`ROLE_WAL_DIRECTORY`], `tablespace:<name>` (see
/// [`tablespace_role`]) and [`ROLE_AGENT_DATA_DIR`]. The PostgreSQL collector rewrites the
/// list as it learns where the cluster keeps its files; the system collector reads it at
/// every pass.
pub type SharedPaths = Arc<RwLock<Vec<(String, PathBuf)>>>;

/// Role of the cluster's `data_directory`.
pub const ROLE_DATA_DIRECTORY: &str = "data_directory";
/// Role of the directory `pg_wal` resolves to (often a symlink to another disk).
pub const ROLE_WAL_DIRECTORY: &str = "wal_directory";
/// Role of the agent's own state directory (the ring store).
pub const ROLE_AGENT_DATA_DIR: &str = "agent_data_dir";
/// Where the agent keeps its state unless configured otherwise.
pub const DEFAULT_AGENT_DATA_DIR: &str = "/var/lib/pganalytics";

/// The role of tablespace `name`: `tablespace:<name>`.
pub fn tablespace_role(name: &str) -> String {
    format!("tablespace:{name}")
}

/// Where the system collector looks.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// Mount point of procfs, `/proc` on a real host; tests point it at a fixture tree.
    pub proc_root: PathBuf,
    /// Mount point of sysfs, `/sys` on a real host. No metric reads it yet; it is here so
    /// that ones which need it (link speeds, device queues) stay injectable.
    pub sys_root: PathBuf,
    /// Paths whose filesystems are reported, by role.
    pub filesystems: SharedPaths,
}

impl SystemOptions {
    /// Real `/proc` and `/sys`, watching the filesystem of `agent_data_dir`.
    pub fn new(agent_data_dir: impl Into<PathBuf>) -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            filesystems: Arc::new(RwLock::new(vec![(
                ROLE_AGENT_DATA_DIR.to_owned(),
                agent_data_dir.into(),
            )])),
        }
    }
}

impl Default for SystemOptions {
    /// Real `/proc` and `/sys`, watching [`DEFAULT_AGENT_DATA_DIR`].
    fn default() -> Self {
        Self::new(DEFAULT_AGENT_DATA_DIR)
    }
}

/// Collects CPU, memory, load, pressure, disk, network and filesystem metrics.
#[derive(Debug)]
pub struct SystemCollector {
    /// Reused for every file of every pass.
    buf: Vec<u8>,
    cpu: cpu::Cpu,
    memory: memory::Memory,
    load: load::Load,
    pressure: pressure::Pressure,
    disk: disk::Disk,
    network: network::Network,
    filesystem: filesystem::Filesystems,
}

impl SystemCollector {
    pub fn new(opts: SystemOptions) -> Self {
        let proc_root = &opts.proc_root;
        Self {
            buf: Vec::with_capacity(16 * 1024),
            cpu: cpu::Cpu::new(proc_root),
            memory: memory::Memory::new(proc_root),
            load: load::Load::new(proc_root),
            pressure: pressure::Pressure::new(proc_root),
            disk: disk::Disk::new(proc_root),
            network: network::Network::new(proc_root),
            filesystem: filesystem::Filesystems::new(proc_root, opts.filesystems),
        }
    }
}

impl Collector for SystemCollector {
    fn name(&self) -> &'static str {
        "system"
    }

    fn group(&self) -> Group {
        Group::Fast
    }

    /// Runs one pass. Every subsystem that can emits; the errors of the others come back
    /// (a subsystem this host lacks reports once, on the first pass that finds it missing).
    fn collect(&mut self, out: &mut Emitter) -> Vec<CollectError> {
        let mut errors = Vec::new();
        let buf = &mut self.buf;
        self.cpu.collect(buf, out, &mut errors);
        self.memory.collect(buf, out, &mut errors);
        self.load.collect(buf, out, &mut errors);
        self.pressure.collect(buf, out, &mut errors);
        self.disk.collect(buf, out, &mut errors);
        self.network.collect(buf, out, &mut errors);
        self.filesystem.collect(buf, out, &mut errors);
        errors
    }
}

/// A metric's fixed description: everything but labels and value.
#[derive(Debug, Clone, Copy)]
struct Metric {
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    kind: MetricKind,
}

impl Metric {
    const fn counter(name: &'static str, help: &'static str, unit: &'static str) -> Self {
        Self {
            name,
            help,
            unit,
            kind: MetricKind::Counter,
        }
    }

    const fn gauge(name: &'static str, help: &'static str, unit: &'static str) -> Self {
        Self {
            name,
            help,
            unit,
            kind: MetricKind::Gauge,
        }
    }

    fn emit(&self, out: &mut Emitter, labels: &[(&str, &str)], value: f64) {
        match self.kind {
            MetricKind::Counter => out.counter(self.name, self.help, self.unit, labels, value),
            MetricKind::Gauge => out.gauge(self.name, self.help, self.unit, labels, value),
        }
    }
}

/// How a raw kernel number becomes a value in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    /// Already in base units (a count, or bytes).
    Raw,
    /// 512-byte sectors (the kernel's fixed unit in `/proc/diskstats`) to bytes.
    Sectors,
    /// Milliseconds to seconds.
    Millis,
}

impl Conv {
    fn apply(self, v: u64) -> f64 {
        match self {
            Conv::Raw => v as f64,
            Conv::Sectors => v as f64 * 512.0,
            Conv::Millis => v as f64 / 1000.0,
        }
    }
}

/// A malformed line in a kernel file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub detail: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.detail)
    }
}

/// Gathers the bad lines of one file so that one error names the first and counts the
/// rest; the good lines still emit.
#[derive(Debug, Default)]
struct BadLines {
    first: Option<ParseError>,
    more: usize,
}

impl BadLines {
    fn push(&mut self, err: ParseError) {
        if self.first.is_none() {
            self.first = Some(err);
        } else {
            self.more += 1;
        }
    }

    fn report(self, path: &Path, errors: &mut Vec<CollectError>) {
        if let Some(first) = self.first {
            let detail = match self.more {
                0 => first.to_string(),
                n => format!("{first} (and {n} more bad lines)"),
            };
            errors.push(CollectError::parse(path, detail));
        }
    }
}

/// Applies `parse_line` to every line of `text` after the first `skip`, yielding what it
/// recognises (`Ok(Some)`), dropping what it ignores (`Ok(None)`) and turning its
/// complaints into [`ParseError`]s that carry the line number.
fn parse_lines<'a, T: 'a>(
    text: &'a str,
    skip: usize,
    parse_line: impl Fn(&'a str) -> Result<Option<T>, String> + 'a,
) -> impl Iterator<Item = Result<T, ParseError>> + 'a {
    text.lines()
        .enumerate()
        .skip(skip)
        .filter_map(move |(i, line)| match parse_line(line) {
            Ok(v) => v.map(Ok),
            Err(detail) => Some(Err(ParseError {
                line: i + 1,
                detail,
            })),
        })
}

/// Parses `token` as an unsigned integer; `what` names it in the complaint.
fn parse_u64(token: &str, what: impl fmt::Display) -> Result<u64, String> {
    token
        .parse()
        .map_err(|_| format!("{what}: {:?} is not an unsigned integer", clip(token)))
}

/// Parses unsigned integers from `tokens` into `out` (as many as fit) and returns how many
/// tokens there were in all; tokens beyond `out.len()` are counted, not parsed.
fn fill_u64<'a>(tokens: impl Iterator<Item = &'a str>, out: &mut [u64]) -> Result<usize, String> {
    let mut n = 0;
    for token in tokens {
        if let Some(slot) = out.get_mut(n) {
            *slot = parse_u64(token, format_args!("field {}", n + 1))?;
        }
        n += 1;
    }
    Ok(n)
}

/// At most 64 bytes of `s` (on a char boundary), to quote in error messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// One kernel file a subsystem reads, and whether this host lacks it.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    absent: bool,
}

/// Why a [`Source`] gave nothing.
#[derive(Debug)]
enum ReadError {
    /// The file is not there (or the kernel says the feature is off): this host does not
    /// have it. Reported once; the source is skipped from now on.
    NewlyAbsent(io::Error),
    /// Anything else (permissions, I/O): reported at every pass.
    Failed(CollectError),
}

impl Source {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            absent: false,
        }
    }

    /// Reads the whole file into `buf` and returns it as text. Bytes that are not UTF-8
    /// (a mount point named in a legacy encoding) become U+FFFD rather than failing the
    /// file; valid text is borrowed, not copied. `Ok(None)`: the host lacks the file, as
    /// known since an earlier pass; skip silently.
    fn read<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Option<Cow<'b, str>>, ReadError> {
        if self.absent {
            return Ok(None);
        }
        buf.clear();
        match File::open(&self.path).and_then(|mut f| f.read_to_end(buf)) {
            Ok(_) => Ok(Some(String::from_utf8_lossy(buf))),
            Err(e) if means_absent(&e) => {
                self.absent = true;
                Err(ReadError::NewlyAbsent(e))
            }
            Err(e) => Err(ReadError::Failed(CollectError::io(&self.path, e))),
        }
    }

    /// [`read`](Self::read) for a subsystem made of this one file: errors go to `errors`
    /// (absence described with `what`); `Some` holds the file's text.
    fn read_or_report<'b>(
        &mut self,
        buf: &'b mut Vec<u8>,
        what: &str,
        errors: &mut Vec<CollectError>,
    ) -> Option<Cow<'b, str>> {
        match self.read(buf) {
            Ok(text) => text,
            Err(ReadError::NewlyAbsent(e)) => {
                errors.push(absent_error(what, &self.path, e, ""));
                None
            }
            Err(ReadError::Failed(e)) => {
                errors.push(e);
                None
            }
        }
    }
}

/// Whether a failed read means the host lacks the file rather than that reading it
/// failed: it is not there, or the kernel says the feature is off (`EOPNOTSUPP`, as
/// PSI answers when built in but booted with `psi=0`).
fn means_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
}

/// The one-time report that a subsystem is missing on this host.
fn absent_error(what: &str, path: &Path, error: io::Error, hint: &'static str) -> CollectError {
    CollectError::Unavailable {
        what: what.to_owned(),
        path: path.to_owned(),
        error,
        hint,
    }
}

/// Undoes the octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash)
/// the kernel writes into paths in `/proc/self/mountinfo` and similar files.
fn unescape_octal(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\'
            && let Some(&[a, b1, c]) = bytes.get(i + 1..i + 4)
            && [a, b1, c].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = u32::from(a - b'0') * 64 + u32::from(b1 - b'0') * 8 + u32::from(c - b'0');
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lines_numbers_bad_lines_and_keeps_going() {
        let text = "header\n1\nx\n\n3\n";
        let got: Vec<_> = parse_lines(text, 1, |l| {
            if l.is_empty() {
                Ok(None)
            } else {
                parse_u64(l, "value").map(Some)
            }
        })
        .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Ok(1));
        let err = got[1].clone().unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.detail.contains("\"x\""), "{err}");
        assert_eq!(got[2], Ok(3));
    }

    #[test]
    fn bad_lines_report_names_file_first_line_and_count() {
        let mut bad = BadLines::default();
        bad.push(ParseError {
            line: 7,
            detail: "short".into(),
        });
        bad.push(ParseError {
            line: 9,
            detail: "short".into(),
        });
        let mut errors = Vec::new();
        bad.report(Path::new("/proc/diskstats"), &mut errors);
        let msg = errors[0].to_string();
        assert!(
            msg.contains("/proc/diskstats") && msg.contains("line 7") && msg.contains("1 more"),
            "{msg}"
        );
        let mut none = Vec::new();
        BadLines::default().report(Path::new("/x"), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn fill_u64_counts_extra_tokens_and_rejects_garbage() {
        let mut out = [0u64; 2];
        assert_eq!(fill_u64("1 2 3".split(' '), &mut out), Ok(3));
        assert_eq!(out, [1, 2]);
        assert_eq!(fill_u64("18446744073709551615".split(' '), &mut out), Ok(1));
        assert_eq!(out[0], u64::MAX);
        assert!(
            fill_u64("1 -2".split(' '), &mut out)
                .unwrap_err()
                .contains("field 2")
        );
        assert!(fill_u64("18446744073709551616".split(' '), &mut out).is_err());
    }

    #[test]
    fn clip_is_char_safe() {
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), 64);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn conv_to_base_units() {
        assert_eq!(Conv::Raw.apply(7), 7.0);
        assert_eq!(Conv::Sectors.apply(3), 1536.0);
        assert_eq!(Conv::Millis.apply(298_494), 298.494);
    }

    #[test]
    fn unescapes_mountinfo_paths() {
        assert!(matches!(unescape_octal("/plain"), Cow::Borrowed("/plain")));
        assert_eq!(unescape_octal(r"/mnt/my\040disk"), "/mnt/my disk");
        assert_eq!(unescape_octal(r"/a\134b\011c\012"), "/a\\b\tc\n");
        // Not an escape: left alone.
        assert_eq!(unescape_octal(r"/a\9x\04"), r"/a\9x\04");
    }

    #[test]
    fn source_reports_absence_once_and_reads_lossily() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = Source::new(dir.path().join("missing"));
        let mut buf = Vec::new();
        let mut errors = Vec::new();
        assert_eq!(src.read_or_report(&mut buf, "Test", &mut errors), None);
        assert_eq!(errors.len(), 1);
        let msg = errors[0].to_string();
        assert!(
            msg.contains("Test metrics are not available") && msg.contains("missing"),
            "{msg}"
        );
        assert_eq!(src.read_or_report(&mut buf, "Test", &mut errors), None);
        assert_eq!(errors.len(), 1, "absence is reported once");

        std::fs::write(dir.path().join("there"), b"x y\n/mnt/caf\xe9\n").unwrap();
        let mut src = Source::new(dir.path().join("there"));
        buf.extend_from_slice(b"stale");
        let text = src.read_or_report(&mut buf, "Test", &mut errors).unwrap();
        assert_eq!(text, "x y\n/mnt/caf\u{fffd}\n");
        assert!(errors.len() == 1);

        // A directory where a file should be: a failure, reported at every pass.
        let mut src = Source::new(dir.path().to_owned());
        assert_eq!(src.read_or_report(&mut buf, "Test", &mut errors), None);
        assert_eq!(src.read_or_report(&mut buf, "Test", &mut errors), None);
        assert_eq!(errors.len(), 3);
        assert!(
            matches!(errors[2], CollectError::Io { .. }),
            "{:?}",
            errors[2]
        );
    }
}
