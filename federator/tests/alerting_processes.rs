//! Alerting end to end with real processes: a monitored PostgreSQL, the real
//! `pga-agent` collecting it over its mTLS endpoint, `pga-federator run` pulling it
//! into a central PostgreSQL and evaluating the built-in pack's rule files, a real
//! Alertmanager (Debian's `prometheus-alertmanager`, started here) and a webhook
//! receiver.
//!
//! Durations are scaled so that each scenario runs in seconds: the agent collects
//! every second, the federator pulls and evaluates every second on a 1-second grid,
//! and the rule files are the pack's with shorter `for` and thresholds (set in the
//! files, as a user would): PgServerDown's `for` 1 minute → 5 s (10 s in the restart
//! test); PgaAgentUnreachable 60 s + 1 min → 3 s + 2 s; in the partition test, 10
//! minutes of partition → 30 s, a transaction open 6 minutes → 18 s, and
//! PgLongTransaction's threshold (an `[[overrides]]` for the agent) 6 s.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pga_lab::{Cluster, Fault, FaultKind, FaultProxy};
use support::Central;
use support::alerting::{Mode, Receiver};
use support::pull::{Federator, certs, free_port, now_ms, sql, wait_until};

/// The `pga-agent` binary of this workspace, built when missing.
fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let bin = dir.join("pga-agent");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "pga-agent"])
            .status()
            .expect("cargo build -p pga-agent");
        assert!(status.success(), "building pga-agent failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// A child process (and its log), stopped when dropped; the log is shown when the
/// test failed.
struct Proc(Child, PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- {} (last lines) ---\n{}",
                self.1.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .ok();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The real agent, collecting `pg` every second, serving on `port`.
fn agent(dir: &Path, tls: &Path, pg: &Cluster, port: u16) -> Proc {
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nname = \"db1\"\ndata_dir = \"{data}\"\n\
             [intervals]\nfast_secs = 1\nslow_secs = 5\nsizes_secs = 30\n\
             [store]\nmax_bytes = 67108864\nblock_secs = 60\n\
             [collectors]\nsystem = false\npostgres = true\nlogs = false\n\
             [endpoint]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{t}/agent.crt\"\n\
             key_file = \"{t}/agent.key\"\nclient_ca_file = \"{t}/ca.crt\"\n\
             [[postgres]]\nname = \"main\"\nconninfo = \"{conninfo}\"\n",
            data = dir.join("agent-data").display(),
            t = tls.display(),
            conninfo = pg
                .conninfo("postgres")
                .replace('\\', "\\\\")
                .replace('"', "\\\""),
        ),
    )
    .unwrap();
    let log = dir.join("agent.log");
    let child = Command::new(agent_bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start pga-agent");
    Proc(child, log)
}

/// A real Alertmanager on a free port, no clustering.
fn alertmanager(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: sink\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: sink\n",
    )
    .unwrap();
    let log = dir.join("alertmanager.log");
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start prometheus-alertmanager (apt-get install prometheus-alertmanager; bash bench/run-tests installs it)");
    let am = Proc(child, log);
    wait_until("Alertmanager ready", 30, || {
        amtool(port, &["config", "show"]).is_some()
    });
    (am, port)
}

/// `amtool --alertmanager.url=… ARGS -o json`, when it succeeds.
fn amtool(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url=http://127.0.0.1:{port}"))
        .args(args)
        .args(["-o", "json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The alerts Alertmanager holds now (its API, through amtool).
fn am_alerts(port: u16) -> Vec<serde_json::Value> {
    amtool(port, &["alert", "query"])
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// The configuration of a federator pulling the agent on `port`, evaluating the
/// built-in availability rules with PgServerDown's `for_secs` set (written into
/// `dir`), notifying the receiver tables `receivers`; its path.
fn server_down_federator(
    dir: &Path,
    central: &Central,
    tls: &Path,
    port: u16,
    for_secs: u32,
    receivers: &str,
) -> PathBuf {
    let rules = dir.join("availability.toml");
    let for_secs = for_secs.to_string();
    std::fs::write(
        &rules,
        scaled(
            "availability.toml",
            &[("PgServerDown", "for_secs", &for_secs)],
        ),
    )
    .unwrap();
    federator(
        dir,
        central,
        tls,
        &format!("https://127.0.0.1:{port}"),
        &format!("rule_files = [\"{}\"]\n{receivers}", rules.display()),
    )
}

/// The pack's rule file `file` with, in the rule named `rule`, `key = …` set to
/// `value`.
fn scaled(file: &str, edits: &[(&str, &str, &str)]) -> String {
    let text = std::fs::read_to_string(support::alerting::pack().join(file)).unwrap();
    let mut out = String::new();
    for (i, block) in text.split("[[rules]]").enumerate() {
        if i > 0 {
            out.push_str("[[rules]]");
        }
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .map(|r| r.trim_end_matches('"'))
            .unwrap_or("");
        let mut b = block.to_owned();
        for (rule, key, value) in edits {
            if *rule == name {
                let (before, after) = b
                    .split_once(&format!("\n{key} = "))
                    .unwrap_or_else(|| panic!("{rule} has no {key}"));
                let rest = after.split_once('\n').map_or("", |(_, r)| r);
                b = format!("{before}\n{key} = {value}\n{rest}");
            }
        }
        out.push_str(&b);
    }
    out
}

/// The federator's configuration: the agent at `agent_url`, alerting every second.
fn federator(
    dir: &Path,
    central: &Central,
    tls: &Path,
    agent_url: &str,
    alerting: &str,
) -> PathBuf {
    support::pull::federator_config(
        dir,
        central,
        tls,
        &[("db1", agent_url.to_owned())],
        free_port(),
        &format!(
            "[alerting]\nschedule = \"* * * * * *\"\nstep_secs = 1\nlate_after_secs = 5\n\
             resend_secs = 1\nretry_initial_ms = 200\nretry_max_secs = 2\n\
             external_url = \"https://federator.test\"\n{alerting}\n"
        ),
    )
}

/// `SELECT {cols} FROM alerts` of the rule `rule`.
fn of_rule(central: &Central, cols: &str, rule: &str) -> String {
    sql(
        central,
        &format!(
            "SELECT {cols} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id \
             WHERE r.name = '{rule}' ORDER BY a.id"
        ),
    )
    .trim()
    .to_owned()
}

/// Waits until the federator evaluates the agent's data.
fn wait_evaluating(central: &Central) {
    wait_until("the agent's data evaluated", 90, || {
        central
            .psql("SELECT count(*) FROM alert_positions WHERE evaluated_through_ms > 0")
            .is_ok_and(|s| s.trim() == "1")
    });
}

/// What every test here starts with: a directory with certificates, the central
/// database, a monitored cluster, and an agent watching it on the returned port.
fn site() -> (tempfile::TempDir, PathBuf, Central, Cluster, u16, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let central = support::central();
    let monitored = Cluster::builder().start().expect("monitored cluster");
    let port = free_port();
    let agent = agent(dir.path(), &tls, &monitored, port);
    (dir, tls, central, monitored, port, agent)
}

#[test]
fn alertmanager_receives_server_down_with_the_labels_the_rule_promises_and_its_resolution() {
    let (dir, tls, central, mut monitored, port, _agent) = site();
    let (_am, am_port) = alertmanager(dir.path());
    let cfg = server_down_federator(
        dir.path(),
        &central,
        &tls,
        port,
        5,
        &format!(
            "[[alerting.alertmanagers]]\nname = \"am\"\nurl = \"http://127.0.0.1:{am_port}\"\n"
        ),
    );
    let _fed = Federator::start(&cfg);
    wait_evaluating(&central);

    let stopped = now_ms();
    monitored.stop().unwrap();
    let down = Instant::now();
    let mut alert = serde_json::Value::Null;
    wait_until("PgServerDown firing in Alertmanager", 60, || {
        if let Some(a) = am_alerts(am_port)
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "PgServerDown")
        {
            alert = a;
            true
        } else {
            false
        }
    });
    let latency = down.elapsed();
    eprintln!(
        "PgServerDown reached Alertmanager {:.1} s after the server stopped (for = 5 s)",
        latency.as_secs_f64()
    );
    // The labels the rule promises: the series' own (with agent), alertname, severity.
    let series_labels: serde_json::Value = serde_json::from_str(
        sql(&central, "SELECT labels FROM series WHERE metric = 'pg_up'").trim(),
    )
    .unwrap();
    let labels = alert["labels"].as_object().unwrap();
    assert_eq!(labels["alertname"], "PgServerDown");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["agent"], "db1");
    for (k, v) in series_labels.as_object().unwrap() {
        assert_eq!(&labels[k], v, "label {k}");
    }
    assert_eq!(
        labels.len(),
        series_labels.as_object().unwrap().len() + 3,
        "{labels:?}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("PostgreSQL ") && summary.ends_with(" on db1 is down"),
        "{summary}"
    );
    assert!(alert["annotations"]["description"].is_string());
    assert_eq!(alert["status"]["state"], "active");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .starts_with("https://federator.test/api/v1/alerts/"),
        "{alert}"
    );
    // In data time: fired `for` after the first sample that said pg_up = 0, on the
    // 1-second grid; Alertmanager got that start.
    let first_down: i64 = sql(
        &central,
        &format!(
            "SELECT (extract(epoch FROM min(ts)) * 1000)::bigint FROM metric_samples \
             WHERE metric = 'pg_up' AND value = 0 AND ts >= timestamptz 'epoch' + {stopped} * interval '1 ms'"
        ),
    )
    .trim()
    .parse()
    .unwrap();
    let fired: i64 = of_rule(
        &central,
        "(extract(epoch FROM a.fired_at) * 1000)::bigint",
        "PgServerDown",
    )
    .parse()
    .unwrap();
    assert!(
        (5_000..=6_000).contains(&(fired - first_down)),
        "fired {} ms after the first pg_up = 0",
        fired - first_down
    );
    assert_eq!(
        alert["startsAt"],
        pga_federator::notify::payload::rfc3339(fired)
    );
    // Within for + one collection + one pull + one evaluation (+ delivery), with room
    // for a shared machine.
    assert!(latency < Duration::from_secs(5 + 3 + 15), "{latency:?}");

    monitored.start_again().unwrap();
    let delivered = || {
        sql(
            &central,
            "SELECT string_agg(o.status || ':' || d.outcome, ',' ORDER BY o.id) \
             FROM alert_outbox o JOIN alert_deliveries d ON d.outbox_id = o.id AND d.receiver = 'am' \
             WHERE o.payload->'labels'->>'alertname' = 'PgServerDown'",
        )
        .trim()
        .to_owned()
    };
    wait_until("the resolution delivered to Alertmanager", 60, || {
        delivered() == "firing:delivered,resolved:delivered"
    });
    assert_eq!(of_rule(&central, "a.state", "PgServerDown"), "resolved");
    assert!(
        !am_alerts(am_port)
            .iter()
            .any(|a| a["labels"]["alertname"] == "PgServerDown"),
        "Alertmanager shows it resolved (no longer active)"
    );
}

#[test]
fn a_partition_gives_one_late_alert_with_its_true_times_and_nothing_false() {
    let (dir, tls, central, monitored, port, _agent) = site();
    let proxy = FaultProxy::start(("127.0.0.1", port)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hook = rt.block_on(Receiver::start(Mode::Ok));
    std::fs::write(
        dir.path().join("availability.toml"),
        scaled(
            "availability.toml",
            &[
                ("PgaAgentUnreachable", "threshold", "3"),
                ("PgaAgentUnreachable", "for_secs", "2"),
                ("PgServerDown", "for_secs", "5"),
            ],
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sessions.toml"),
        scaled("sessions.toml", &[]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("overrides.toml"),
        "[[overrides]]\nrule = \"PgLongTransaction\"\nmatch = { agent = \"db1\" }\nthreshold = 6\n",
    )
    .unwrap();
    let cfg = federator(
        dir.path(),
        &central,
        &tls,
        &format!("https://127.0.0.1:{}", proxy.addr().port()),
        &format!(
            "rule_files = [\"{d}/availability.toml\", \"{d}/sessions.toml\", \"{d}/overrides.toml\"]\n\
             [[alerting.webhooks]]\nname = \"ops\"\nurl = \"{}\"\n",
            hook.url(),
            d = dir.path().display()
        ),
    );
    let _fed = Federator::start(&cfg);
    wait_evaluating(&central);
    std::thread::sleep(Duration::from_secs(2));

    // What is raised before (the lab's server just started: PgServerRestarted).
    let snapshot = || {
        sql(
            &central,
            "SELECT a.id || ':' || r.name || ':' || a.state FROM alerts a \
             JOIN alert_rules r ON r.id = a.rule_id ORDER BY a.id",
        )
        .lines()
        .map(str::to_owned)
        .collect::<Vec<String>>()
    };
    let before = snapshot();
    // The federator is cut off from the agent for 30 s; 5 s into it, a transaction
    // opens on the monitored server and stays open for 18 s.
    let cut = now_ms();
    proxy.set_fault(Some(Fault {
        kind: FaultKind::Reset,
        after_bytes: 0,
        spread_bytes: 0,
    }));
    std::thread::sleep(Duration::from_secs(5));
    // The transaction's own start and end, read on the server.
    let out = monitored
        .psql(
            "postgres",
            "BEGIN;\nSELECT txid_current();\n\
             SELECT (extract(epoch FROM now()) * 1000)::bigint;\n\
             SELECT pg_sleep(18);\n\
             SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;\nCOMMIT;",
        )
        .unwrap();
    let times: Vec<i64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let (tx_start, tx_end) = (times[times.len() - 2], times[times.len() - 1]);
    std::thread::sleep(Duration::from_millis(
        (cut + 30_000 - now_ms()).max(0) as u64
    ));
    // During the partition nothing changed but the unreachable agent, raised.
    let during = snapshot();
    for row in &before {
        assert!(
            during.contains(row),
            "{row} changed during the partition: {during:?}"
        );
    }
    let new: Vec<&String> = during.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        !new.is_empty()
            && new
                .iter()
                .all(|r| r.ends_with(":PgaAgentUnreachable:firing")),
        "only the unreachable agent is raised during the partition: {new:?}"
    );
    proxy.set_fault(None);
    let healed = now_ms();

    wait_until("the late alert recorded and notified", 90, || {
        hook.delivered()
            .iter()
            .any(|r| r.json["alerts"][0]["labels"]["alertname"] == "PgLongTransaction")
    });
    std::thread::sleep(Duration::from_secs(3));
    let rows = sql(
        &central,
        "SELECT r.name, a.state, a.late, (extract(epoch FROM a.fired_at) * 1000)::bigint, \
                (extract(epoch FROM a.resolved_at) * 1000)::bigint \
         FROM alerts a JOIN alert_rules r ON r.id = a.rule_id ORDER BY a.id",
    );
    let long: Vec<&str> = rows
        .lines()
        .filter(|l| l.starts_with("PgLongTransaction|"))
        .collect();
    assert_eq!(long.len(), 1, "one late alert: {rows}");
    let f: Vec<&str> = long[0].split('|').collect();
    assert_eq!((f[1], f[2]), ("resolved", "t"), "{rows}");
    let (fired, resolved): (i64, i64) = (f[3].parse().unwrap(), f[4].parse().unwrap());
    // True times, within one collection (1 s) and one evaluation step (1 s).
    let want_start = tx_start + 6_000;
    eprintln!(
        "late alert: fired {} ms from the transaction's 6th second, resolved {} ms from its end",
        fired - want_start,
        resolved - tx_end
    );
    assert!(
        (0..=2_000).contains(&(fired - want_start)),
        "fired {fired}, the transaction was 6 s old at {want_start}"
    );
    assert!(
        (0..=2_000).contains(&(resolved - tx_end)),
        "resolved {resolved}, the transaction ended at {tx_end}"
    );
    assert!(
        fired > cut && resolved < healed,
        "it happened inside the partition"
    );
    // Nothing fired or resolved falsely: what was raised before is as it was; new are
    // only the unreachable agent (raised during the partition, resolved after it) and
    // the late alert.
    let after = snapshot();
    for row in &before {
        assert!(after.contains(row), "{row} changed: {after:?}");
    }
    for row in after.iter().filter(|r| !before.contains(r)) {
        assert!(
            row.contains(":PgLongTransaction:") || row.contains(":PgaAgentUnreachable:"),
            "a false alert: {row}\n{rows}"
        );
    }
    let un: Vec<&str> = rows
        .lines()
        .filter(|l| l.starts_with("PgaAgentUnreachable|"))
        .collect();
    assert!(!un.is_empty());
    for l in &un {
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(f[1], "resolved", "{l}");
        assert!(f[3].parse::<i64>().unwrap() > cut, "{l}");
    }
    // Notified once, as Alertmanager's webhook payload with the true start and end.
    let notes: Vec<_> = hook
        .delivered()
        .into_iter()
        .filter(|r| r.json["alerts"][0]["labels"]["alertname"] == "PgLongTransaction")
        .collect();
    assert_eq!(notes.len(), 1, "notified once");
    let a = &notes[0].json["alerts"][0];
    assert_eq!(notes[0].json["status"], "resolved");
    assert_eq!(
        a["startsAt"],
        pga_federator::notify::payload::rfc3339(fired)
    );
    assert_eq!(
        a["endsAt"],
        pga_federator::notify::payload::rfc3339(resolved)
    );
    assert_eq!(a["annotations"]["late"], "true", "a late alert says so");
    assert_eq!(
        sql(&central, "SELECT count(*) FROM alerts_history WHERE late").trim(),
        "1",
        "Grafana's history shows the late alert"
    );
    drop(rt);
}

#[test]
fn a_federator_killed_mid_for_fires_on_time_and_notifies_once() {
    let (dir, tls, central, mut monitored, port, _agent) = site();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let hook = rt.block_on(Receiver::start(Mode::Ok));
    let cfg = server_down_federator(
        dir.path(),
        &central,
        &tls,
        port,
        10,
        &format!(
            "[[alerting.webhooks]]\nname = \"ops\"\nurl = \"{}\"\n",
            hook.url()
        ),
    );
    let mut fed = Federator::start(&cfg);
    wait_evaluating(&central);
    monitored.stop().unwrap();
    wait_until("PgServerDown pending", 30, || {
        of_rule(&central, "a.state", "PgServerDown") == "pending"
    });
    std::thread::sleep(Duration::from_secs(4));
    // Killed outright mid-for; back 3 s later.
    fed.kill();
    assert_eq!(of_rule(&central, "a.state", "PgServerDown"), "pending");
    std::thread::sleep(Duration::from_secs(3));
    fed.start_again();
    let down = |r: &support::alerting::Received| {
        r.json["alerts"][0]["labels"]["alertname"] == "PgServerDown"
    };
    wait_until("the firing notification", 60, || {
        hook.delivered().iter().any(down)
    });
    let held: i64 = of_rule(
        &central,
        "(extract(epoch FROM a.fired_at - a.started_at) * 1000)::bigint",
        "PgServerDown",
    )
    .parse()
    .unwrap();
    assert!(
        (10_000..=11_000).contains(&held),
        "fired {held} ms after it became pending: for is 10 s"
    );
    // Killed again while firing, restarted: not re-notified as new.
    fed.kill();
    std::thread::sleep(Duration::from_secs(2));
    fed.start_again();
    std::thread::sleep(Duration::from_secs(6));
    let firing: Vec<_> = hook
        .delivered()
        .into_iter()
        .filter(|r| down(r) && r.json["status"] == "firing")
        .collect();
    assert_eq!(firing.len(), 1, "notified once");
    monitored.start_again().unwrap();
    wait_until("the resolution", 60, || {
        hook.delivered()
            .iter()
            .any(|r| down(r) && r.json["status"] == "resolved")
    });
    std::thread::sleep(Duration::from_secs(2));
    let statuses: Vec<String> = hook
        .delivered()
        .iter()
        .filter(|r| down(r))
        .map(|r| r.json["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"], "one firing, one resolved");
    fed.stop();
    drop(rt);
}
