//! The offline commands on a damaged store: scattered byte damage, a truncated file
//! and a damaged header. `status`, `series`, `query` and `logs` each exit non-zero
//! with one clear message naming the file and the fix, never a panic; `run` moves
//! the file aside (never deleting it), starts afresh, and prints no panic either.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pga_agent::collect::Emitted;
use pga_agent::collect::LogBatch;
use pga_agent::store::{Store, StoreOptions};
use pga_format::{LogEvent, LogEventKind, MetricKind, Severity};
use pga_lab::now_ms;

/// A sound store of an hour of data: sealed blocks, a head, log events.
fn sound_store(dir: &Path) -> PathBuf {
    let opts = StoreOptions {
        max_bytes: 256 << 20,
        retention_ms: 0,
        block_ms: 60_000,
    };
    let (mut store, _) = Store::open(dir, opts).unwrap();
    let start = now_ms() - 3_600_000;
    for tick in 0..360i64 {
        let ts = start + tick * 10_000;
        let batch: Vec<Emitted> = (0..200)
            .map(|i| Emitted {
                name: "damage_gauge".into(),
                labels: vec![("i".into(), i.to_string())],
                kind: MetricKind::Gauge,
                unit: "",
                help: "Damage test series.",
                value: ((tick * 7919 + i * 104_729) % 10_007) as f64 / 3.0,
            })
            .collect();
        let logs = LogBatch {
            events: vec![LogEvent::new(
                ts,
                Severity::Error,
                LogEventKind::Error,
                format!("relation \"t_{tick}\" does not exist"),
            )],
            cursor: None,
        };
        store.append_with_logs(ts, &batch, &logs, None).unwrap();
    }
    assert!(store.block_count() > 50);
    dir.join("store.redb")
}

/// A copy of the sound store in a directory of its own, damaged by `damage`.
fn damaged(sound: &Path, name: &str, damage: impl FnOnce(&mut Vec<u8>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(sound).unwrap();
    damage(&mut bytes);
    std::fs::write(dir.path().join("store.redb"), bytes).unwrap();
    eprintln!("{name}: {}", dir.path().display());
    dir
}

/// Runs `pga-agent ARGS --data-dir DIR`; (exit code, stderr).
fn agent(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_every_command(dir: &Path, what: &str) {
    let file = dir.join("store.redb").display().to_string();
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["series"],
        &["query", "damage_gauge", "--since", "2h"],
        &["logs", "--since", "2h"],
    ] {
        let (code, stderr) = agent(dir, args);
        let shown = format!(
            "{what}: pga-agent {}: exit {code:?}\n{stderr}",
            args.join(" ")
        );
        if args == ["status"] {
            eprintln!("{shown}");
        }
        assert!(code.is_some_and(|c| c != 0 && c != 101), "{shown}");
        assert!(!stderr.contains("panicked"), "{shown}");
        assert!(!stderr.contains("RUST_BACKTRACE"), "{shown}");
        assert!(stderr.starts_with("error: "), "{shown}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "one message: {shown}"
        );
        assert!(stderr.contains(&file), "names the file: {shown}");
        assert!(stderr.contains("is damaged"), "{shown}");
        assert!(
            stderr.contains("pga-agent run") && stderr.contains("moves a damaged one aside"),
            "says the fix: {shown}"
        );
    }
}

/// `pga-agent run` on the damaged store: it moves the file aside, starts a fresh
/// store and collects, without printing a panic.
fn check_run(dir: &Path, what: &str) {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [store]\nblock_secs = 60\n[collectors]\npostgres = false\nlogs = false\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,pga_agent::store=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let stored = line.contains("stored");
        lines.push(line);
        if stored || Instant::now() > deadline {
            break;
        }
    }
    drop(child.kill());
    drop(child.wait());
    let log = lines.join("\n");
    assert!(
        !log.contains("panicked"),
        "{what}: run printed a panic:\n{log}"
    );
    assert!(log.contains("moved aside"), "{what}:\n{log}");
    assert!(
        lines.last().is_some_and(|l| l.contains("stored")),
        "{what}:\n{log}"
    );
    let aside = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("store.redb.damaged-")
        });
    assert!(aside, "{what}: the damaged file was not kept");
}

#[test]
fn every_command_on_a_damaged_store_says_so_without_panicking() {
    let sound_dir = tempfile::tempdir().unwrap();
    let sound = sound_store(sound_dir.path());
    // The sound store passes, for contrast.
    let (code, stderr) = agent(sound_dir.path(), &["status"]);
    assert_eq!(code, Some(0), "{stderr}");

    let len = std::fs::metadata(&sound).unwrap().len() as usize;
    // Bytes flipped in every 4 KiB page past the first two (redb's header and
    // commit slots are the damaged-header case).
    let scattered = damaged(&sound, "scattered", |b| {
        for page in (8192..b.len()).step_by(4096) {
            for k in [17, 700, 2301, 4000] {
                if let Some(x) = b.get_mut(page + k) {
                    *x ^= 0x5a;
                }
            }
        }
    });
    let truncated = damaged(&sound, "truncated", |b| b.truncate(len / 2));
    let header = damaged(&sound, "header", |b| {
        for x in &mut b[..64] {
            *x = 0xee;
        }
    });
    for (dir, what) in [
        (&scattered, "scattered damage"),
        (&truncated, "truncated file"),
        (&header, "damaged header"),
    ] {
        check_every_command(dir.path(), what);
    }
    for (dir, what) in [
        (&scattered, "scattered damage"),
        (&truncated, "truncated file"),
        (&header, "damaged header"),
    ] {
        check_run(dir.path(), what);
    }

    // One byte of one block's compressed payload: redb's pages still read, only the
    // frame's checksum tells. `status` reads every block, so it says so; `query` and
    // `logs` read that block and say so too; `series` reads only the intact
    // dictionary and answers.
    let block = damaged(&sound, "one block", |b| {
        let magic = b"PGAF\x01\x00\x01";
        let at = b
            .windows(magic.len())
            .position(|w| w == magic)
            .expect("a block frame in the file");
        b[at + 100] ^= 0x01;
    });
    for args in [
        &["status"][..],
        &["query", "damage_gauge", "--since", "2h"],
        &["logs", "--since", "2h"],
    ] {
        let (code, stderr) = agent(block.path(), args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("is damaged") && stderr.contains("checksum"),
            "{args:?}: {stderr}"
        );
    }
    let (code, stderr) = agent(block.path(), &["series"]);
    assert_eq!(code, Some(0), "{stderr}");
}
