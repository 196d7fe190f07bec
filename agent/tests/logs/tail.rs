//! The log collector over files this test writes itself, into a real store: rotation by
//! rename, by truncation (copytruncate), several rotations while the agent is stopped,
//! a crash between reading and storing, a small read budget, and bad input. Every
//! entry carries a number; every number must be stored exactly once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pga_agent::collect::logs::LogFormat;
use pga_agent::collect::logs::collector::{LogCollector, LogOptions, cursor_name};
use pga_agent::collect::logs::discover::Explicit;
use pga_agent::collect::{Collector as _, Emitter};
use pga_agent::store::{Store, StoreOptions};

const INSTANCE: &str = "t";

struct Rig {
    _dir: tempfile::TempDir,
    log: PathBuf,
    store: Store,
    collector: LogCollector,
    budget: u64,
    ts: i64,
    next_id: u64,
}

fn options(log: &Path, budget: u64) -> LogOptions {
    LogOptions {
        explicit: Explicit {
            path: Some(log.display().to_string()),
            format: Some(LogFormat::Stderr),
            prefix: Some("%m [%p] ".into()),
        },
        redact: false,
        drop_unclassified: false,
        read_bytes_per_pass: budget,
        max_files: 64,
    }
}

impl Rig {
    fn new(budget: u64) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs").join("postgresql.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "").unwrap();
        let (store, _) = Store::open(
            &dir.path().join("data"),
            StoreOptions {
                max_bytes: 256 << 20,
                retention_ms: 0,
                block_ms: 60_000,
            },
        )
        .unwrap();
        let collector = LogCollector::new(INSTANCE, None, options(&log, budget), None);
        Rig {
            _dir: dir,
            log,
            store,
            collector,
            budget,
            ts: 1_700_000_000_000,
            next_id: 0,
        }
    }

    /// `n` numbered entries (an ERROR with a two-line STATEMENT each) appended to `path`.
    fn write(&mut self, path: &Path, n: u64) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let mut text = String::new();
        for _ in 0..n {
            let id = self.next_id;
            self.next_id += 1;
            text.push_str(&format!(
                "2024-03-01 12:00:00.{:03} UTC [{}] ERROR:  relation \"t_{id}\" does not exist\n\
                 2024-03-01 12:00:00.000 UTC [7] STATEMENT:  SELECT *\n\tFROM t_{id}\n",
                id % 1000,
                1000 + id
            ));
        }
        f.write_all(text.as_bytes()).unwrap();
        // Files written next get a later modification time.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    /// One collector pass stored like the agent stores it; returns the events stored.
    fn pass(&mut self) -> usize {
        let mut out = Emitter::new();
        let errors = self.collector.collect(&mut out);
        assert!(errors.is_empty(), "{errors:?}");
        let logs = out.take_logs();
        let samples = out.take();
        self.ts += 1000;
        self.store
            .append_with_logs(self.ts, &samples, &logs, None)
            .unwrap();
        logs.events.len()
    }

    /// Passes until one stores nothing.
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for _ in 0..10_000 {
            match self.pass() {
                0 => return total,
                n => total += n,
            }
        }
        panic!("the collector never caught up");
    }

    /// A pass whose output never reaches the store: the agent died before storing it.
    fn crash_after_reading(&mut self) -> usize {
        let mut out = Emitter::new();
        self.collector.collect(&mut out);
        let n = out.log_events().len();
        self.restart();
        n
    }

    /// A new collector from what the store holds, as after an agent restart.
    fn restart(&mut self) {
        let saved = self.store.cursor(&cursor_name(INSTANCE)).unwrap();
        self.collector = LogCollector::new(
            INSTANCE,
            None,
            options(&self.log, self.budget),
            saved.as_deref(),
        );
    }

    /// How often each entry number is stored.
    fn stored_ids(&self) -> BTreeMap<u64, u32> {
        let events = self
            .store
            .reader()
            .log_events(i64::MIN, i64::MAX, &|_| true)
            .unwrap();
        let mut ids = BTreeMap::new();
        for e in events {
            let id = e
                .message
                .split("\"t_")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no id in {:?}", e.message));
            assert!(
                e.message.contains(&format!("FROM t_{id}")),
                "{:?}",
                e.message
            );
            *ids.entry(id).or_insert(0) += 1;
        }
        ids
    }

    /// Every entry written so far is stored exactly once.
    fn assert_exactly_once(&self) {
        let ids = self.stored_ids();
        let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "stored more than once: {twice:?}");
        let missing: Vec<u64> = (0..self.next_id).filter(|i| !ids.contains_key(i)).collect();
        assert!(
            missing.is_empty(),
            "lost: {} entries, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(ids.len() as u64, self.next_id);
        // The counters say the same, and continue across restarts.
        assert_eq!(
            self.collector
                .totals()
                .kinds
                .get("error")
                .copied()
                .unwrap_or(0),
            self.next_id
        );
    }
}

fn rotate_by_rename(log: &Path, keep: usize) {
    for i in (1..keep).rev() {
        let from = log.with_extension(format!("log.{i}"));
        if from.exists() {
            std::fs::rename(&from, log.with_extension(format!("log.{}", i + 1))).unwrap();
        }
    }
    std::fs::rename(log, log.with_extension("log.1")).unwrap();
}

#[test]
fn rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
    let mut r = Rig::new(16 << 20);
    let log = r.log.clone();
    r.write(&log, 100);
    assert_eq!(r.pass(), 100);
    r.write(&log, 50);
    rotate_by_rename(&log, 5);
    // The server still writes to the renamed file until it reopens its log.
    r.write(&log.with_extension("log.1"), 10);
    r.write(&log, 30);
    assert_eq!(r.drain(), 90);
    r.assert_exactly_once();
}

#[test]
fn truncation_and_copytruncate_read_the_new_content_once() {
    let mut r = Rig::new(16 << 20);
    let log = r.log.clone();
    r.write(&log, 40);
    assert_eq!(r.pass(), 40);
    r.write(&log, 5);
    // copytruncate: a copy appears, the original is cut to 0 and written on.
    std::fs::copy(&log, log.with_extension("log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    r.write(&log, 7);
    assert_eq!(r.drain(), 12);
    r.assert_exactly_once();
    // Plain truncation (log_truncate_on_rotation), written on past the old offset.
    std::fs::remove_file(log.with_extension("log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    r.write(&log, 60);
    assert_eq!(r.drain(), 60);
    r.assert_exactly_once();
    assert!(
        r.collector.totals().truncations >= 2,
        "{:?}",
        r.collector.totals()
    );
}

#[test]
fn several_rotations_while_stopped_and_a_crash_lose_and_repeat_nothing() {
    let mut r = Rig::new(16 << 20);
    let log = r.log.clone();
    r.write(&log, 20);
    assert_eq!(r.pass(), 20);
    r.write(&log, 3);
    // Stopped: three rotations happen, the oldest rotation is deleted.
    for n in [11, 12, 13] {
        rotate_by_rename(&log, 3);
        r.write(&log, n);
    }
    std::fs::remove_file(log.with_extension("log.3")).ok();
    let lost_with_deleted = 3;
    r.restart();
    r.drain();
    // Entries of the deleted file are gone with it; everything else once.
    let ids = r.stored_ids();
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
    assert_eq!(ids.len() as u64, r.next_id - lost_with_deleted);

    // Crash: a pass read entries but died before storing; the restart reads them again.
    let mut r = Rig::new(16 << 20);
    let log = r.log.clone();
    r.write(&log, 25);
    assert_eq!(r.pass(), 25);
    r.write(&log, 17);
    assert_eq!(r.crash_after_reading(), 17);
    rotate_by_rename(&log, 3);
    r.write(&log, 9);
    r.restart();
    assert_eq!(r.drain(), 26);
    r.assert_exactly_once();
}

#[test]
fn a_small_budget_reads_a_large_log_over_several_passes() {
    let mut r = Rig::new(64 << 10);
    let log = r.log.clone();
    r.write(&log, 20_000);
    let size = std::fs::metadata(&log).unwrap().len();
    let mut passes = 0;
    let mut stored = 0;
    loop {
        let n = r.pass();
        passes += 1;
        if n == 0 {
            break;
        }
        stored += n;
        // Crash and restart now and then, mid-file.
        if passes % 7 == 0 {
            r.write(&log, 1);
            r.crash_after_reading();
        }
    }
    assert!(
        passes as u64 >= size / (64 << 10),
        "{passes} passes for {size} bytes"
    );
    assert!(stored >= 20_000);
    r.assert_exactly_once();
}

#[test]
fn garbage_binary_junk_and_huge_lines_are_counted_and_skipped() {
    let mut r = Rig::new(16 << 20);
    let log = r.log.clone();
    r.write(&log, 10);
    let mut junk = Vec::new();
    junk.extend_from_slice(b"this is not a log line\n\x00\x01\xff\xfe binary \x80\n");
    junk.extend_from_slice(b"2024-03-01 12:00:00.000 UTC [1] ERROR:  relation \"t_huge\" ");
    junk.extend(std::iter::repeat_n(b'x', 3 << 20));
    junk.push(b'\n');
    junk.extend(std::iter::repeat_n(b'y', 5 << 20));
    junk.push(b'\n');
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&junk)
        .unwrap();
    r.write(&log, 10);
    let mut out = Emitter::new();
    let errors = r.collector.collect(&mut out);
    assert!(errors.is_empty(), "{errors:?}");
    let events = out.log_events();
    // The 20 numbered entries and the one with a huge message (cut, not kept whole).
    assert_eq!(events.len(), 21);
    assert!(
        events
            .iter()
            .all(|e| e.message.len() <= pga_format::MAX_STRING_LEN)
    );
    let t = r.collector.totals();
    assert!(t.lines_skipped >= 3, "{t:?}");
    assert!(t.lines_oversized >= 1, "{t:?}");
    let skipped = out
        .samples()
        .iter()
        .find(|s| s.name == "pga_agent_log_lines_skipped_total")
        .unwrap();
    assert_eq!(skipped.value, t.lines_skipped as f64);
}
