//! The secrets canary through the real binary (`pga-agent logs --parse`), and
//! property tests of redaction on arbitrary text.

use std::path::Path;
use std::process::{Command, Output};

use pga_agent::collect::logs::redact::{contains_password, redact, redact_message};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::Value;

const CANARY: &str = "canary-7f3a9";

/// A stderr log with the default prefix `%m [%p] ` where the canary appears as a
/// password and as a literal in every place PostgreSQL writes statements.
const LOG: &str = "\
2026-11-24 08:00:00.123 UTC [100] LOG:  statement: ALTER ROLE x PASSWORD 'canary-7f3a9'
2026-11-24 08:00:01.000 UTC [100] LOG:  statement: CREATE USER y WITH ENCRYPTED PASSWORD 'canary-7f3a9'
2026-11-24 08:00:02.000 UTC [101] LOG:  duration: 1500.250 ms  statement: SELECT * FROM accounts WHERE token = 'canary-7f3a9'
2026-11-24 08:00:03.000 UTC [101] ERROR:  invalid input syntax for type integer: \"canary-7f3a9\" at character 8
2026-11-24 08:00:03.000 UTC [101] STATEMENT:  SELECT 'canary-7f3a9'::int
2026-11-24 08:00:04.000 UTC [102] ERROR:  role \"x\" does not exist
2026-11-24 08:00:04.000 UTC [102] STATEMENT:  alter role x
\t  with password 'canary-7f3a9'
2026-11-24 08:00:05.000 UTC [90] LOG:  checkpoint starting: time
2026-11-24 08:00:09.500 UTC [90] LOG:  checkpoint complete: wrote 47 buffers (0.3%); 0 WAL file(s) added, 0 removed, 1 recycled; write=4.312 s, sync=0.021 s, total=4.401 s; sync files=12, longest=0.004 s, average=0.002 s; distance=512 kB, estimate=1024 kB
2026-11-24 08:00:10.000 UTC [103] LOG:  connection received: host=10.0.0.9 port=50432
2026-11-24 08:00:10.010 UTC [103] FATAL:  password authentication failed for user \"y\"
2026-11-24 08:00:10.010 UTC [103] DETAIL:  Connection matched file \"/etc/postgresql/pg_hba.conf\" line 99: \"host all all 0.0.0.0/0 scram-sha-256\"
2026-11-24 08:00:11.000 UTC [104] ERROR:  deadlock detected
2026-11-24 08:00:11.000 UTC [104] DETAIL:  Process 104 waits for ShareLock on transaction 900; blocked by process 105.
\tProcess 105 waits for ShareLock on transaction 899; blocked by process 104.
\tProcess 104: UPDATE t SET v = 'canary-7f3a9' WHERE id = 1
\tProcess 105: UPDATE t SET v = 'canary-7f3a9' WHERE id = 2
2026-11-24 08:00:11.000 UTC [104] STATEMENT:  UPDATE t SET v = 'canary-7f3a9' WHERE id = 1
2026-11-24 08:00:12.000 UTC [101] LOG:  duration: 250.000 ms  execute <unnamed>: SELECT * FROM t WHERE v = $1 AND w = 'canary-7f3a9'
2026-11-24 08:00:12.000 UTC [101] DETAIL:  parameters: $1 = 'canary-7f3a9'
2026-11-24 08:00:13.000 UTC [101] LOG:  disconnection: session time: 0:00:13.500 user=app database=app host=10.0.0.9 port=50431
2026-11-24 08:00:14.000 UTC [100] LOG:  statement: ALTER
\tROLE x
\tPASSWORD
\t'canary-7f3a9'
";

/// Kinds the file holds, as the output names them.
const KINDS: &[(&str, u64)] = &[
    ("error", 2),
    ("slow_statement", 2),
    ("checkpoint", 2),
    ("autovacuum", 0),
    ("deadlock", 1),
    ("connection", 1),
    ("disconnection", 1),
    ("auth_failure", 1),
    ("other", 3),
];

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("COLUMNS", "300")
        .output()
        .expect("run pga-agent")
}

fn write_log(dir: &Path) -> String {
    let path = dir.join("postgresql.log");
    std::fs::write(&path, LOG).unwrap();
    path.to_str().unwrap().to_owned()
}

fn assert_no_canary(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "{what}: the canary leaked\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Not even a piece of it.
    assert!(
        !stdout.contains("7f3a9") && !stdout.contains("canary"),
        "{what}: {stdout}"
    );
}

#[test]
fn the_canary_appears_nowhere_in_the_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let out = agent(&["logs", "--parse", &log, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_canary(&out, "--json");

    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for (kind, n) in KINDS {
        assert_eq!(v["counts_by_kind"][kind], *n, "count of {kind}: {v:#}");
    }
    assert_eq!(v["counts_by_severity"]["LOG"], 9);
    assert_eq!(v["counts_by_severity"]["ERROR"], 3);
    assert_eq!(v["counts_by_severity"]["FATAL"], 1);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 13);
    // In the order read, with what classification found.
    assert_eq!(events[0]["message"], "ALTER ROLE … PASSWORD <redacted>");
    assert_eq!(events[1]["message"], "CREATE USER … PASSWORD <redacted>");
    assert_eq!(events[2]["kind"], "slow_statement");
    assert_eq!(events[2]["duration_ms"], 1500.25);
    assert_eq!(
        events[2]["message"],
        "duration: 1500.250 ms  statement: SELECT * FROM accounts WHERE token = '?'"
    );
    assert_eq!(
        events[3]["message"],
        "invalid input syntax for type integer: \"?\" at character 8\nstatement: SELECT '?'::int"
    );
    assert_eq!(events[6]["details"]["buffers_written"], 47);
    assert_eq!(events[6]["duration_ms"], 4401.0);
    assert_eq!(events[11]["kind"], "disconnection");
    assert_eq!(events[11]["duration_ms"], 13500.0);
    assert_eq!(events[12]["message"], "ALTER ROLE … PASSWORD <redacted>");
}

#[test]
fn the_canary_appears_nowhere_in_the_table_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    let out = agent(&["logs", "--parse", &log]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_canary(&out, "table");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("13 events\n"), "{text}");
    for (kind, n) in KINDS.iter().filter(|(_, n)| *n > 0) {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no count line for {kind}:\n{text}"));
        assert_eq!(line.split_whitespace().nth(1), Some(n.to_string().as_str()));
    }
    assert!(text.contains("slow_statement"));
    assert!(text.contains("1500.250 ms"));
}

#[test]
fn passwords_stay_hidden_without_literal_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path());
    for json in [false, true] {
        let mut args = vec!["logs", "--parse", &log, "--no-redact"];
        if json {
            args.push("--json");
        }
        let out = agent(&args);
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        // The SELECT literals are shown as logged …
        assert!(stdout.contains("token = 'canary-7f3a9'"), "{stdout}");
        // … but no password, in any field.
        for line in stdout
            .lines()
            .filter(|l| l.to_lowercase().contains("password"))
        {
            assert!(!line.contains(CANARY), "password leaked: {line}");
        }
        assert!(!stdout.contains("PASSWORD 'canary"), "{stdout}");
    }
}

#[test]
fn errors_name_the_file_or_the_escape() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let out = agent(&["logs", "--parse", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.log"), "{err}");

    let log = write_log(dir.path());
    let out = agent(&["logs", "--parse", &log, "--prefix", "%m %Z "]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("%Z"), "{err}");

    // Without --parse: the store, which is not there.
    let data = dir.path().join("no-store");
    let out = agent(&["logs", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no store at") && err.contains("--data-dir"),
        "{err}"
    );
    let out = agent(&[
        "logs",
        "--kind",
        "eror",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"eror\"") && err.contains("slow_statement"),
        "{err}"
    );
}

/// Text around literals: no quote characters, so it cannot change which characters
/// are inside a literal, but everything else that steers the lexer (`E`, `$`, digits,
/// backslashes, newlines, non-ASCII).
fn filler() -> impl Strategy<Value = String> {
    // `$` only as a parameter (`$1`): a `$tag$` here would be a dollar quote that
    // rightly turns a later literal's body into plain text.
    proptest::string::string_regex("([a-zA-Z0-9_\\\\ \n.:;,()=<>+*/eE€é-]|\\$[0-9]){0,12}").unwrap()
}

/// A literal whose content holds a marker, in every quoting PostgreSQL has.
fn literal() -> impl Strategy<Value = (String, String)> {
    let secret = proptest::string::string_regex("[a-z]{3}[0-9]{3}").unwrap();
    (secret, 0..5usize).prop_map(|(s, style)| {
        let secret = format!("SECRET{s}");
        let lit = match style {
            0 => format!("'{secret}'"),
            1 => format!("'it''s {secret}'"),
            2 => format!("E'\\'{secret}\\\\'"),
            3 => format!("$${secret}$$"),
            _ => format!("$q1$ '{secret}' $q1$"),
        };
        (secret, lit)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/log_redaction.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn redaction_never_panics(text in any::<String>()) {
        drop(redact(&text));
        drop(redact_message(&text));
        contains_password(&text);
    }

    #[test]
    fn redaction_never_panics_on_sql_like_text(
        text in proptest::string::string_regex("[ -~\n\té€]{0,64}").unwrap()
    ) {
        drop(redact(&text));
        drop(redact_message(&text));
    }

    #[test]
    fn quoted_literals_never_survive(
        parts in proptest::collection::vec((filler(), literal()), 1..6),
        tail in filler(),
    ) {
        let mut text = String::new();
        let mut secrets = Vec::new();
        for (f, (secret, lit)) in parts {
            text.push_str(&f);
            // A separator, as SQL needs between an identifier and a literal.
            text.push(' ');
            text.push_str(&lit);
            secrets.push(secret);
        }
        text.push_str(&tail);
        for out in [redact(&text), redact_message(&text)] {
            for s in &secrets {
                prop_assert!(!out.contains(s.as_str()), "{s} survived in {out:?} (from {text:?})");
            }
        }
    }

    #[test]
    fn password_statements_are_always_recognized(
        // ASCII case only: PostgreSQL folds keywords in ASCII, so `UſER` is no keyword.
        verb in "[cC][rR][eE][aA][tT][eE]|[aA][lL][tT][eE][rR]",
        object in "[rR][oO][lL][eE]|[uU][sS][eE][rR]",
        space in "[ \t\n]{1,3}",
        name in "[a-z]{1,8}",
        encrypted in proptest::bool::ANY,
    ) {
        let enc = if encrypted { "ENCRYPTED " } else { "" };
        let stmt = format!("{verb}{space}{object}{space}{name}{space}WITH {enc}PASSWORD{space}'pw'");
        prop_assert!(contains_password(&stmt), "{stmt:?}");
    }
}
