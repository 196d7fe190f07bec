//! `bash bench/run-tests`, the test command, runs every test binary even when one
//! fails or crashes, the doc-tests included, then prints one total line:
//! `N passed, M failed[, K skipped]`, and exits non-zero when anything failed.
//!
//! It runs the real script on a small crate made here (`--manifest-path`, its own
//! target directory): a binary with a failing test, one that crashes, one after them
//! with an ignored test and one that skips itself as the root-only tests do, and a
//! doc-test. The script also checks the format's golden vectors (one test more).

use std::path::Path;
use std::process::{Command, Output};

const CARGO_TOML: &str = r#"[package]
name = "summary-probe"
version = "0.1.0"
edition = "2021"

[workspace]
"#;

const CARGO_LOCK: &str = r#"version = 4

[[package]]
name = "summary-probe"
version = "0.1.0"
"#;

const LIB: &str = r#"/// One.
///
/// ```
/// assert_eq!(summary_probe::one(), 1);
/// ```
pub fn one() -> u32 {
    1
}
"#;

const A_FAILS: &str = r#"
#[test]
fn a_passes() {}

#[test]
fn a_fails() {
    assert_eq!(summary_probe::one(), 2);
}
"#;

const B_CRASHES: &str = r#"
#[test]
fn b_crashes() {
    std::process::abort();
}
"#;

const C_AFTER: &str = r#"
use std::io::Write as _;

#[test]
fn c_passes_after_the_failures() {}

#[test]
#[ignore = "shows as skipped"]
fn c_is_ignored() {}

#[test]
fn c_needs_root() {
    let _shown = writeln!(std::io::stderr(), "SKIPPED c_needs_root: needs root");
}
"#;

fn probe_crate(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    for (path, text) in [
        ("Cargo.toml", CARGO_TOML),
        ("Cargo.lock", CARGO_LOCK),
        ("src/lib.rs", LIB),
        ("tests/a_fails.rs", A_FAILS),
        ("tests/b_crashes.rs", B_CRASHES),
        ("tests/c_after.rs", C_AFTER),
    ] {
        std::fs::write(dir.join(path), text).unwrap();
    }
}

fn run_tests(dir: &Path, args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/run-tests");
    Command::new("bash")
        .arg(script)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(args)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        // The API tests' Schemathesis is not needed here.
        .env("PGA_SCHEMATHESIS", "true")
        .output()
        .unwrap()
}

fn last_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().last().unwrap_or_default().to_owned()
}

#[test]
fn every_binary_runs_and_one_total_line_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    probe_crate(dir.path());

    let out = run_tests(dir.path(), &[]);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    // After the failing and the crashing binary, the next one and the doc-tests ran.
    assert!(
        text.contains("test c_passes_after_the_failures ... ok"),
        "{text}"
    );
    assert!(text.contains("Doc-tests summary_probe"), "{text}");
    assert!(text.contains("tests/b_crashes.rs"), "{text}");
    // Passed: a_passes, c_passes_after_the_failures, the doc-test, the golden vectors.
    // Failed: a_fails, the crashed binary. Skipped: c_is_ignored, c_needs_root.
    assert_eq!(last_line(&out), "4 passed, 2 failed, 2 skipped", "{text}");

    // Only the binary that passes: exit 0, the total still last.
    let out = run_tests(dir.path(), &["--test", "c_after"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_line(&out), "2 passed, 0 failed, 2 skipped");
}
