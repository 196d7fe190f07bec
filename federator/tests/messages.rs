//! What a newcomer meets: one clear message with the fix, never a `Debug` dump or
//! a backtrace (whatever `RUST_BACKTRACE` says), and no colour codes in a log file.

mod support;

use std::process::{Command, Output};

use support::central_on;
use support::pull::*;

fn federator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pga-federator"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run pga-federator")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One `error:` line, no Debug rendering, no backtrace, no colour.
fn assert_one_clear_message(text: &str) {
    assert_eq!(text.matches("error:").count(), 1, "{text}");
    for noise in ["backtrace", "Caused by", "{ ", "\u{1b}["] {
        assert!(!text.contains(noise), "{noise:?} in:\n{text}");
    }
}

#[test]
fn check_config_without_a_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("federator.toml");
    let out = federator(&["check-config", "--config", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stderr(&out);
    assert_one_clear_message(&text);
    assert!(text.contains("does not exist"), "{text}");
    assert!(
        text.contains("fix: check the path given to --config"),
        "{text}"
    );
    if !std::path::Path::new("/etc/pganalytics/federator.toml").exists() {
        let out = federator(&["check-config"]);
        let text = stderr(&out);
        assert_one_clear_message(&text);
        assert!(
            text.contains("fix: install the pganalytics-federator package"),
            "{text}"
        );
    }
}

#[test]
fn a_wrong_password_is_one_message_with_the_fix_and_logs_have_no_colours() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let pg = central_on(
        pga_lab::Cluster::builder()
            .superuser_password("right")
            .start()
            .unwrap(),
    );
    let cfg = federator_config(dir.path(), &pg, &tls, &[], free_port(), "");
    // The URL without its password, and a password file with the wrong one.
    let password = dir.path().join("password");
    std::fs::write(&password, "wrong\n").unwrap();
    std::fs::set_permissions(
        &password,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(":right@", "@")
        .replace(
            "max_connections = 4\n",
            &format!("max_connections = 4\npassword_file = {:?}\n", password),
        );
    std::fs::write(&cfg, text).unwrap();
    for command in ["migrate", "run"] {
        let out = federator(&[command, "--config", cfg.to_str().unwrap()]);
        assert!(!out.status.success(), "{command}");
        let text = stderr(&out);
        let last = text
            .lines()
            .rev()
            .take_while(|l| !l.contains("error:"))
            .count();
        let message: Vec<&str> = text.lines().rev().take(last + 1).collect();
        let message: String = message.into_iter().rev().collect::<Vec<_>>().join("\n");
        assert_one_clear_message(&message);
        assert_eq!(
            message.matches("password authentication failed").count(),
            1,
            "{command}: {message}"
        );
        assert!(message.contains("fix: check the password"), "{message}");
        assert!(message.contains("database.password_file"), "{message}");
    }

    // With the right password the federator runs; its log (standard error into a
    // file) has no colour codes.
    std::fs::write(&password, "right\n").unwrap();
    let mut fed = Federator::start(&cfg);
    wait_until("the federator scheduling", 30, || {
        fed.log_text().contains("scheduling pulls")
    });
    fed.stop();
    let log = fed.log_text();
    assert!(!log.contains('\u{1b}'), "colour codes in the log:\n{log}");
}
