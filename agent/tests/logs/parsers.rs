//! The three log parsers on the files of a real server: a throwaway cluster writes
//! stderr, csvlog and jsonlog at once (`logging_collector = on`); the same errors, with
//! the same SQLSTATEs, must come out of each file.

use std::path::Path;
use std::time::{Duration, Instant};

use pga_agent::collect::logs::{LogEntry, LogFormat, LogParser, ParseStats};
use pga_format::Severity;

const PREFIX: &str = "%m [%p] %q%u@%d/%a ";

fn parse_file(path: &Path, format: LogFormat) -> (Vec<LogEntry>, ParseStats) {
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut parser = LogParser::new(format, PREFIX).expect("prefix compiles");
    let mut out = Vec::new();
    // Feed in odd-sized chunks, as a tailer would.
    for chunk in bytes.chunks(777) {
        parser.feed(chunk, &mut out);
    }
    parser.finish(&mut out);
    (out, parser.stats())
}

fn errors(entries: &[LogEntry]) -> Vec<&LogEntry> {
    entries
        .iter()
        .filter(|e| e.severity == Some(Severity::Error))
        .collect()
}

#[test]
fn stderr_csvlog_and_jsonlog_agree_on_a_real_server() {
    let pg = pga_lab::Cluster::builder()
        .setting("logging_collector", "on")
        .setting("log_destination", "stderr,csvlog,jsonlog")
        .setting("log_directory", "log")
        .setting("log_filename", "pg")
        .setting("log_line_prefix", PREFIX)
        .setting("log_connections", "on")
        .setting("log_disconnections", "on")
        .start()
        .expect("start a throwaway cluster (apt-get install -y postgresql)");

    assert!(pg.psql("postgres", "SELECT 1/0").is_err());
    assert!(
        pg.psql("postgres", "SELECT *\nFORM pg_class\nWHERE true")
            .is_err()
    );
    pg.psql(
        "postgres",
        "SET log_min_duration_statement = 0;\nSELECT pg_sleep(0.02);",
    )
    .expect("slow statement");
    pg.psql("postgres", "CHECKPOINT").expect("checkpoint");

    let dir = pg.data_dir().join("log");
    let files = [
        (dir.join("pg"), LogFormat::Stderr),
        (dir.join("pg.csv"), LogFormat::Csvlog),
        (dir.join("pg.json"), LogFormat::Jsonlog),
    ];
    // The collector writes asynchronously: wait until every file has both errors and
    // the last disconnection.
    let deadline = Instant::now() + Duration::from_secs(20);
    let parsed = loop {
        let parsed: Vec<_> = files.iter().map(|(p, f)| parse_file(p, *f)).collect();
        let done = parsed.iter().all(|(entries, _)| {
            errors(entries).len() == 2
                && entries
                    .iter()
                    .filter(|e| e.message.starts_with("disconnection:"))
                    .count()
                    >= 4
        });
        if done {
            break parsed;
        }
        assert!(
            Instant::now() < deadline,
            "log files incomplete after 20 s: {:#?}",
            parsed.iter().map(|(_, s)| s).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    for ((path, format), (entries, stats)) in files.iter().zip(&parsed) {
        assert_eq!(
            stats.skipped_lines,
            0,
            "{format} {}: {stats:?}",
            path.display()
        );
        assert_eq!(stats.oversized_lines, 0, "{format}");
        assert!(
            entries
                .iter()
                .all(|e| e.timestamp_ms.is_some() && e.pid.is_some())
        );

        let errs = errors(entries);
        let states: Vec<_> = errs.iter().map(|e| e.sqlstate).collect();
        if *format == LogFormat::Stderr {
            // The prefix has no %e: PostgreSQL does not print the SQLSTATE.
            assert_eq!(states, [None, None], "{format}");
        } else {
            assert_eq!(states, [Some(*b"22012"), Some(*b"42601")], "{format}");
        }
        assert_eq!(errs[0].message, "division by zero", "{format}");
        assert!(
            errs[1]
                .message
                .starts_with("syntax error at or near \"FORM\"")
        );
        assert_eq!(
            errs[1].statement.as_deref(),
            Some("SELECT *\nFORM pg_class\nWHERE true"),
            "{format}: multi-line statement"
        );
        assert!(errs[0].user.is_some(), "{format}");
        assert_eq!(errs[0].database.as_deref(), Some("postgres"), "{format}");
        assert_eq!(errs[0].application.as_deref(), Some("psql"), "{format}");

        let slow: Vec<_> = entries
            .iter()
            .filter(|e| e.message.starts_with("duration: "))
            .collect();
        assert!(
            slow.iter().any(|e| e.message.contains("pg_sleep(0.02)")),
            "{format}: {slow:?}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e.message.starts_with("connection authorized: user=")),
            "{format}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e.message.starts_with("checkpoint complete")
                    || e.message.starts_with("checkpoint starting")),
            "{format}"
        );
    }

    // Each backend writes every destination on its own, so two backends' entries of
    // the same millisecond can reach the files in different orders: compare in the
    // order of time and backend (the order within one backend is kept).
    let mut parsed = parsed;
    for (entries, _) in &mut parsed {
        entries.sort_by_key(|e| (e.timestamp_ms, e.pid));
    }
    // Entry for entry, the three files say the same thing, except that stderr appends
    // the error position to the message (csvlog and jsonlog have a column for it).
    let key = |e: &LogEntry| {
        let message = match e.message.rsplit_once(" at character ") {
            Some((m, n)) if n.bytes().all(|b| b.is_ascii_digit()) => m,
            _ => &e.message,
        };
        (
            e.timestamp_ms,
            e.pid,
            e.severity,
            message.to_owned(),
            e.user.clone(),
            e.database.clone(),
            e.statement.clone(),
        )
    };
    let stderr: Vec<_> = parsed[0].0.iter().map(key).collect();
    for (i, (entries, _)) in parsed.iter().enumerate().skip(1) {
        let other: Vec<_> = entries.iter().map(key).collect();
        assert_eq!(stderr, other, "stderr vs {}", files[i].1);
    }
    // csvlog and jsonlog carry the same SQLSTATE on every entry (none on LOG entries).
    let states = |i: usize| parsed[i].0.iter().map(|e| e.sqlstate).collect::<Vec<_>>();
    assert_eq!(states(1), states(2));
    assert_eq!(states(1).iter().flatten().count(), 2);
}
