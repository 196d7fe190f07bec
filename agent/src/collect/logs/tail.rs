//! Following log files by identity (device + inode) and offset.
//!
//! Each pass the [`Tailer`] is given the files of the log (see
//! [`super::discover::LogLocation::list`]), orders them oldest first (modification
//! time, then inode) and reads what each holds past its offset, within a byte budget
//! per pass so that one huge log never stalls the collector. What that means for the
//! usual ways logs turn over:
//!
//! - **rename rotation** (`log` → `log.1`, a new `log`): the renamed file keeps its
//!   inode, so it is finished from its offset; the new file is new and read from 0;
//! - **truncation** (`copytruncate`, `log_truncate_on_rotation`): a file shorter than
//!   its offset, or whose first bytes changed (a fingerprint of up to 256 bytes), is
//!   read again from 0; a new file that starts with the bytes of a known one is its
//!   copy and is read from where the original was;
//! - **new files** (PostgreSQL's own rotation to a new `log_filename`): read from 0;
//! - **the agent stopped across several rotations**: every file still there is known
//!   by identity from the saved cursors or is new, so the rotated-away files are
//!   finished, oldest first, before the current one; deleted ones are gone.
//!
//! The offset saved for a file ([`FileCursor::offset`]) is where the parser's last
//! handed-out entry ended ([`LogParser::consumed`]): a tailer restarted from saved
//! cursors neither loses nor repeats an entry. On its very first pass (no saved
//! cursors) the tailer reads the newest file from its start and takes the older files
//! as read.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{LogEntry, LogFormat, LogParser, ParseStats, PrefixError};
use crate::collect::CollectError;

/// Bytes read from a file at a time.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Bytes at the start of a file whose hash tells a truncated-and-rewritten file apart.
const FINGERPRINT_BYTES: u64 = 256;

/// Where the reading of one file stands, as saved in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    pub dev: u64,
    pub ino: u64,
    /// Bytes done with: every entry before this offset was handed out.
    pub offset: u64,
    /// How many leading bytes `fingerprint` hashes (0: none yet).
    pub fingerprint_len: u32,
    pub fingerprint: u64,
    /// The path it had when last seen (for messages only; identity is dev + inode).
    pub path: String,
}

/// One pass's figures.
#[derive(Debug, Default)]
pub struct TailReport {
    pub bytes_read: u64,
    pub new_files: u64,
    /// Files found shorter than their offset, or rewritten from the start.
    pub truncations: u64,
    /// Parser figures of this pass.
    pub stats: ParseStats,
    /// The budget ran out before every file was read to its end.
    pub behind: bool,
    pub files: usize,
    pub errors: Vec<CollectError>,
}

#[derive(Debug)]
struct Tracked {
    cursor: FileCursor,
    /// The parser reading from `base`; `None` until the file is read this run.
    parser: Option<LogParser>,
    base: u64,
    /// Bytes fed to the parser end here (`cursor.offset` when there is no parser).
    read_pos: u64,
    /// The size seen on the previous pass.
    last_size: Option<u64>,
    stats_seen: ParseStats,
}

impl Tracked {
    fn new(cursor: FileCursor) -> Self {
        Tracked {
            read_pos: cursor.offset,
            base: cursor.offset,
            cursor,
            parser: None,
            last_size: None,
            stats_seen: ParseStats::default(),
        }
    }

    fn restart(&mut self) {
        self.cursor.offset = 0;
        self.cursor.fingerprint_len = 0;
        self.cursor.fingerprint = 0;
        self.parser = None;
        self.base = 0;
        self.read_pos = 0;
        self.stats_seen = ParseStats::default();
    }
}

/// A file of the log as this pass found it.
struct Found {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

/// Follows the files of one log.
#[derive(Debug)]
pub struct Tailer {
    format: LogFormat,
    prefix: String,
    files: Vec<Tracked>,
    /// A pass has run (or cursors were restored): unknown files are new.
    started: bool,
    max_files: usize,
}

impl Tailer {
    /// A tailer for files of `format`; `prefix` is the `log_line_prefix` of stderr
    /// files. `max_files` bounds how many of the newest files are followed.
    pub fn new(format: LogFormat, prefix: &str, max_files: usize) -> Result<Self, PrefixError> {
        // Compile once to report a bad prefix now rather than on the first file.
        LogParser::new(format, prefix)?;
        Ok(Tailer {
            format,
            prefix: prefix.to_owned(),
            files: Vec::new(),
            started: false,
            max_files: max_files.max(1),
        })
    }

    /// Continues from saved cursors (of a previous run).
    pub fn restore(&mut self, cursors: Vec<FileCursor>) {
        self.files = cursors.into_iter().map(Tracked::new).collect();
        self.started = true;
    }

    /// The cursors to save: where each file's handed-out entries end.
    pub fn cursors(&self) -> Vec<FileCursor> {
        self.files.iter().map(|t| t.cursor.clone()).collect()
    }

    /// Reads up to `budget` bytes of the files in `paths` past their offsets and
    /// appends the entries completed to `out`.
    pub fn pass(&mut self, paths: &[PathBuf], budget: u64, out: &mut Vec<LogEntry>) -> TailReport {
        let mut report = TailReport::default();
        let mut found = Vec::new();
        for path in paths {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => found.push(Found {
                    path: path.clone(),
                    dev: m.dev(),
                    ino: m.ino(),
                    size: m.len(),
                    mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                }),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => report.errors.push(CollectError::io(path, e)),
            }
        }
        found.sort_by_key(|f| (f.mtime_ns, f.ino));
        if found.len() > self.max_files {
            found.drain(..found.len() - self.max_files);
        }
        // Files deleted (or rotated out of the pattern) are forgotten.
        self.files.retain(|t| {
            found
                .iter()
                .any(|f| (f.dev, f.ino) == (t.cursor.dev, t.cursor.ino))
        });
        report.files = found.len();
        let newest = found.last().map(|f| (f.dev, f.ino));
        // Files not seen before: new, or (first pass ever) taken as read unless newest,
        // or a copy of a known file (`copytruncate`): read from where the original was.
        for f in &found {
            if self
                .files
                .iter()
                .any(|t| (t.cursor.dev, t.cursor.ino) == (f.dev, f.ino))
            {
                continue;
            }
            let mut cursor = FileCursor {
                dev: f.dev,
                ino: f.ino,
                offset: 0,
                fingerprint_len: 0,
                fingerprint: 0,
                path: f.path.display().to_string(),
            };
            if !self.started && newest != Some((f.dev, f.ino)) {
                cursor.offset = f.size;
            } else if self.started {
                report.new_files += 1;
                if let Some(original) = self.copy_of(f) {
                    cursor.offset = original.offset.min(f.size);
                    cursor.fingerprint = original.fingerprint;
                    cursor.fingerprint_len = original.fingerprint_len;
                }
            }
            self.files.push(Tracked::new(cursor));
        }
        let mut left = budget;
        for f in &found {
            let Some(idx) = self
                .files
                .iter()
                .position(|t| (t.cursor.dev, t.cursor.ino) == (f.dev, f.ino))
            else {
                continue;
            };
            let is_newest = newest == Some((f.dev, f.ino));
            self.files[idx].cursor.path = f.path.display().to_string();
            if let Err(e) = self.read_file(idx, f, is_newest, &mut left, &mut report, out) {
                report.errors.push(e);
            }
        }
        self.started = true;
        report
    }

    /// A known file whose first bytes `f` starts with: `f` is its copy.
    fn copy_of(&self, f: &Found) -> Option<FileCursor> {
        let file = File::open(&f.path).ok()?;
        self.files
            .iter()
            .filter(|t| {
                t.cursor.fingerprint_len > 0 && u64::from(t.cursor.fingerprint_len) <= f.size
            })
            .find(|t| {
                fingerprint(&file, u64::from(t.cursor.fingerprint_len))
                    .ok()
                    .flatten()
                    == Some(t.cursor.fingerprint)
            })
            .map(|t| t.cursor.clone())
    }

    fn read_file(
        &mut self,
        idx: usize,
        f: &Found,
        is_newest: bool,
        left: &mut u64,
        report: &mut TailReport,
        out: &mut Vec<LogEntry>,
    ) -> Result<(), CollectError> {
        let (format, prefix) = (self.format, self.prefix.clone());
        let t = &mut self.files[idx];
        let file = match File::open(&f.path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(CollectError::LogUnreadable {
                    path: f.path.clone(),
                });
            }
            Err(e) => return Err(CollectError::io(&f.path, e)),
        };
        let meta = file.metadata().map_err(|e| CollectError::io(&f.path, e))?;
        if (meta.dev(), meta.ino()) != (f.dev, f.ino) {
            // Renamed between listing and opening: next pass sorts it out.
            return Ok(());
        }
        let size = meta.len();
        let rewritten = t.cursor.fingerprint_len > 0
            && fingerprint(&file, u64::from(t.cursor.fingerprint_len))
                .map_err(|e| CollectError::io(&f.path, e))?
                != Some(t.cursor.fingerprint);
        if size < t.read_pos.max(t.cursor.offset) || rewritten {
            t.restart();
            report.truncations += 1;
        }
        let unchanged = t.last_size == Some(size);
        t.last_size = Some(size);
        if t.parser.is_none() && t.read_pos < size {
            let parser = LogParser::new(format, &prefix)
                .map_err(|e| CollectError::parse(&f.path, e.to_string()))?;
            t.parser = Some(parser);
            t.base = t.cursor.offset;
            t.read_pos = t.cursor.offset;
            t.stats_seen = ParseStats::default();
        }
        if let Some(parser) = t.parser.as_mut() {
            let mut buf = vec![
                0u8;
                CHUNK_BYTES
                    .min(usize::try_from(*left).unwrap_or(CHUNK_BYTES))
                    .max(1)
            ];
            while t.read_pos < size && *left > 0 {
                let want = (size - t.read_pos).min(*left).min(buf.len() as u64) as usize;
                let n = match file.read_at(&mut buf[..want], t.read_pos) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CollectError::io(&f.path, e)),
                };
                parser.feed(&buf[..n], out);
                t.read_pos += n as u64;
                *left -= n as u64;
                report.bytes_read += n as u64;
            }
            if t.read_pos >= size {
                if !is_newest && unchanged {
                    // A rotated-away file that stopped growing: what it ends with is
                    // all there will be, a last line without newline included.
                    parser.finish(out);
                } else {
                    parser.flush_held(out);
                }
            } else {
                report.behind = true;
            }
            t.cursor.offset = t.base + parser.consumed();
            let now = parser.stats();
            add_stats(&mut report.stats, &now, &t.stats_seen);
            t.stats_seen = now;
        }
        if u64::from(t.cursor.fingerprint_len) < FINGERPRINT_BYTES.min(size) {
            let len = FINGERPRINT_BYTES.min(size);
            if let Some(fp) = fingerprint(&file, len).map_err(|e| CollectError::io(&f.path, e))? {
                t.cursor.fingerprint = fp;
                t.cursor.fingerprint_len = len as u32;
            }
        }
        Ok(())
    }
}

/// Hash of the first `len` bytes, `None` when the file is shorter.
fn fingerprint(file: &File, len: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &buf {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(Some(h))
}

fn add_stats(sum: &mut ParseStats, now: &ParseStats, before: &ParseStats) {
    sum.lines += now.lines - before.lines;
    sum.entries += now.entries - before.entries;
    sum.skipped_lines += now.skipped_lines - before.skipped_lines;
    sum.oversized_lines += now.oversized_lines - before.oversized_lines;
    sum.unknown_timezones += now.unknown_timezones - before.unknown_timezones;
}
