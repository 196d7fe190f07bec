//! End to end with real processes: `pga-federator run` (a child process) pulls
//! agents (the agent's ring store and mTLS endpoint, with a synthetic collector and
//! one-second blocks) over mutual TLS into a throwaway central PostgreSQL. After
//! each scenario the central database holds, for each agent, exactly the samples
//! of the agent's store over the covered range: same count, same values, none
//! twice.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use support::pull::*;

#[test]
fn two_agents_arrive_exactly_and_the_federator_reports_itself() {
    let (dir, tls, pg) = pull_setup();
    let a1 = StoreAgent::start(&dir.path().join("a1"), &tls, SimOptions::default());
    let a2 = StoreAgent::start(
        &dir.path().join("a2"),
        &tls,
        SimOptions {
            series: 25,
            interval_ms: 150,
            ..SimOptions::default()
        },
    );
    let mport = free_port();
    let cfg = federator_config(
        dir.path(),
        &pg,
        &tls,
        &[("a1", a1.url()), ("a2", a2.url())],
        mport,
        "",
    );
    let mut fed = Federator::start(&cfg);
    wait_until("both agents have sealed blocks pulled", 60, || {
        cursor(&pg, "a1").is_some_and(|c| c >= 4) && cursor(&pg, "a2").is_some_and(|c| c >= 4)
    });
    a1.set_writing(false);
    a2.set_writing(false);
    wait_caught_up(&pg, "a1", &a1, 30);
    wait_caught_up(&pg, "a2", &a2, 30);
    let m = metrics(mport);
    assert!(m.contains("pga_federator_agent_up{agent=\"a1\"} 1"), "{m}");
    assert!(
        m.contains("pga_federator_samples_ingested_total{agent=\"a2\"}"),
        "{m}"
    );
    assert!(
        m.contains("pga_federator_agent_lag_blocks{agent=\"a1\"} 0"),
        "{m}"
    );
    fed.stop();
    let n1 = assert_same(&pg, "a1", &a1, i64::MIN);
    let n2 = assert_same(&pg, "a2", &a2, i64::MIN);
    assert!(n1 > 400 && n2 > 200, "compared {n1} and {n2} samples");
    // The agents got distinct identities and their labels.
    let ids = sql(&pg, "SELECT count(DISTINCT agent_uid) FROM agent_status");
    assert_eq!(ids.trim(), "2");
}

#[test]
fn a_federator_outage_loses_and_doubles_nothing() {
    let (dir, tls, pg) = pull_setup();
    let a1 = StoreAgent::start(&dir.path().join("a1"), &tls, SimOptions::default());
    let cfg = federator_config(dir.path(), &pg, &tls, &[("a1", a1.url())], free_port(), "");
    let mut fed = Federator::start(&cfg);
    wait_until("first blocks pulled", 60, || {
        cursor(&pg, "a1").is_some_and(|c| c >= 2)
    });
    // Killed outright: whatever transaction was open rolls back.
    fed.kill();
    let before = cursor(&pg, "a1").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let (_, newest) = a1.sequences().unwrap();
    assert!(
        newest >= before + 4,
        "the agent went on sealing: {before} → {newest}"
    );
    fed.start_again();
    wait_until("backfill past the outage", 60, || {
        cursor(&pg, "a1").is_some_and(|c| c >= newest)
    });
    a1.set_writing(false);
    wait_caught_up(&pg, "a1", &a1, 30);
    fed.stop();
    assert_same(&pg, "a1", &a1, i64::MIN);
    let gaps = sql(&pg, "SELECT count(*) FROM agent_gaps");
    assert_eq!(gaps.trim(), "0", "nothing expired, so no gap");
}

#[test]
fn an_agent_restart_and_a_database_outage_converge() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let mut pg = central_alone();
    let mut a1 = StoreAgent::start(&dir.path().join("a1"), &tls, SimOptions::default());
    let mport = free_port();
    let cfg = federator_config(dir.path(), &pg, &tls, &[("a1", a1.url())], mport, "");
    let mut fed = Federator::start(&cfg);
    wait_until("first blocks pulled", 60, || {
        cursor(&pg, "a1").is_some_and(|c| c >= 2)
    });
    // The agent goes away and comes back with the same store.
    a1.stop();
    wait_until("the federator sees the agent down", 20, || {
        metrics(mport).contains("pga_federator_agent_up{agent=\"a1\"} 0")
    });
    std::thread::sleep(Duration::from_secs(1));
    a1.start_again();
    wait_until("the agent pulled again", 30, || {
        metrics(mport).contains("pga_federator_agent_up{agent=\"a1\"} 1")
    });
    // The database goes away while the agent collects; scrapes pause.
    pg.stop().unwrap();
    wait_until("scrapes paused for the database", 20, || {
        metrics(mport).contains("pga_federator_database_up 0")
    });
    // While paused, the agent's backlog shows, and the pause is counted for it.
    wait_until("the backlog shows while paused", 20, || {
        let m = metrics(mport);
        lag_blocks(&m, "a1").is_some_and(|l| l >= 2)
            && m.contains(
                "pga_federator_scrape_failures_total{agent=\"a1\",reason=\"database_unavailable\"}",
            )
    });
    pg.start_again().unwrap();
    let (_, newest) = a1.sequences().unwrap();
    wait_until("resumed after the database returned", 60, || {
        cursor(&pg, "a1").is_some_and(|c| c >= newest)
    });
    a1.set_writing(false);
    wait_caught_up(&pg, "a1", &a1, 30);
    fed.stop();
    let log = fed.log_text();
    assert!(
        log.contains("database unavailable: every pull paused"),
        "{log}"
    );
    assert!(log.contains("database available again"), "{log}");
    assert_same(&pg, "a1", &a1, i64::MIN);
}

#[test]
fn connections_cut_mid_response_converge_to_the_same_contents() {
    use pga_lab::{Fault, FaultKind, FaultProxy};
    let (dir, tls, pg) = pull_setup();
    let a1 = StoreAgent::start(
        &dir.path().join("a1"),
        &tls,
        SimOptions {
            series: 200,
            ..SimOptions::default()
        },
    );
    // Collect a backlog first, so responses are large and get cut inside frames.
    std::thread::sleep(Duration::from_secs(4));
    let proxy = FaultProxy::start(("127.0.0.1", a1.port)).unwrap();
    let cfg = federator_config(
        dir.path(),
        &pg,
        &tls,
        &[("a1", format!("https://127.0.0.1:{}", proxy.addr().port()))],
        free_port(),
        "",
    );
    let mut fed = Federator::start(&cfg);
    let mut progress = Vec::new();
    for kind in [FaultKind::Reset, FaultKind::Truncate, FaultKind::Stall] {
        proxy.set_fault(Some(Fault {
            kind,
            // TLS records hold up to 16 KiB: cut points from 8 KiB to 72 KiB fall
            // before the first record, inside frames, and between them.
            after_bytes: 8_000,
            spread_bytes: 64_000,
        }));
        let struck = proxy.faults_struck();
        let before = cursor(&pg, "a1").unwrap_or(0);
        wait_until(
            &format!("{kind:?} strikes and pulls still advance"),
            60,
            || proxy.faults_struck() >= struck + 2 && cursor(&pg, "a1").unwrap_or(0) > before,
        );
        progress.push((kind, before, cursor(&pg, "a1")));
    }
    proxy.set_fault(None);
    a1.set_writing(false);
    wait_caught_up(&pg, "a1", &a1, 60);
    fed.stop();
    assert_same(&pg, "a1", &a1, i64::MIN);
    assert!(proxy.faults_struck() >= 6, "{progress:?}");
}

#[test]
fn blocks_evicted_before_the_pull_are_a_gap_covering_exactly_them() {
    let (dir, tls, pg) = pull_setup();
    let a1 = StoreAgent::start(
        &dir.path().join("a1"),
        &tls,
        SimOptions {
            retention_ms: 3000,
            ..SimOptions::default()
        },
    );
    let cfg = federator_config(dir.path(), &pg, &tls, &[("a1", a1.url())], free_port(), "");
    let mut fed = Federator::start(&cfg);
    wait_until("first blocks pulled", 60, || {
        cursor(&pg, "a1").is_some_and(|c| c >= 2)
    });
    fed.stop();
    let before = cursor(&pg, "a1").unwrap();
    let before_ts = cursor_ts(&pg, "a1");
    wait_until(
        "the agent evicted blocks the federator never had",
        30,
        || {
            a1.sequences()
                .is_some_and(|(oldest, _)| oldest > before + 3)
        },
    );
    a1.set_writing(false);
    let (oldest, newest) = a1.sequences().unwrap();
    fed.start_again();
    wait_caught_up(&pg, "a1", &a1, 30);
    fed.stop();
    let gap = sql(
        &pg,
        "SELECT first_sequence, last_sequence, (extract(epoch FROM after_ts) * 1000)::bigint, \
         (extract(epoch FROM before_ts) * 1000)::bigint FROM agent_gaps WHERE agent = 'a1'",
    );
    let f: Vec<i64> = gap.trim().split('|').map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        (f[0] as u64, f[1] as u64),
        (before + 1, oldest - 1),
        "the gap is exactly the evicted blocks; held {oldest}..={newest}"
    );
    // Exact bounds: after the newest sample stored from the agent (the head written
    // by the last pull before the outage included), before the oldest sample of
    // the first block held after the gap; nothing stored inside.
    assert!(
        f[2] >= before_ts,
        "the gap starts after the cursor's newest sample"
    );
    let newest_before = sql(
        &pg,
        &format!(
            "SELECT (extract(epoch FROM max(ts)) * 1000)::bigint FROM metric_samples \
             WHERE agent = 'a1' AND ts < to_timestamp({} / 1000.0)",
            f[3]
        ),
    );
    assert_eq!(newest_before.trim(), f[2].to_string());
    let store = a1.samples(i64::MAX);
    let first_after: i64 = store
        .values()
        .flat_map(|v| v.iter().map(|s| s.0))
        .filter(|&ts| ts > before_ts)
        .min()
        .unwrap();
    assert_eq!(f[3], first_after);
    let inside = sql(
        &pg,
        &format!(
            "SELECT count(*) FROM metric_samples WHERE agent = 'a1' AND \
             ts > to_timestamp({} / 1000.0) AND ts < to_timestamp({} / 1000.0)",
            f[2], f[3]
        ),
    );
    assert_eq!(inside.trim(), "0", "samples stored inside the recorded gap");
    // Every series' first bucket after the gap says so; no increase crosses it.
    let marked = sql(
        &pg,
        &format!(
            "SELECT count(DISTINCT series_id) FROM metric_rollups_1m \
             WHERE agent = 'a1' AND after_gap AND bucket > to_timestamp({} / 1000.0 - 60)",
            f[2]
        ),
    );
    assert_eq!(marked.trim(), "40");
    assert_same(&pg, "a1", &a1, first_after);
    let m = sql(
        &pg,
        "SELECT gaps, blocks_lost FROM agent_status WHERE agent = 'a1'",
    );
    assert_eq!(m.trim(), format!("1|{}", oldest - 1 - before));
}

/// An "agent" that answers every request with the pull headers and a body of
/// garbage, on loopback plain HTTP.
fn garbage_agent() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _read = s.read(&mut buf);
                let body = b"PGAF\x01\x00garbage that is not a frame at all".repeat(10);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\npga-agent-id: 87edd2b1-bff9-4639-996e-144fff6def85\r\n\
                     pga-format-version: 1\r\npga-oldest-sequence: 1\r\npga-newest-sequence: 3\r\n\
                     pga-head-sequence: 4\r\npga-head: absent\r\npga-more: false\r\npga-last-sequence: 3\r\n\
                     connection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).ok();
                s.write_all(&body).ok();
            });
        }
    });
    port
}

#[test]
fn a_malformed_agent_is_rejected_alone() {
    let (dir, tls, pg) = pull_setup();
    let good = StoreAgent::start(&dir.path().join("good"), &tls, SimOptions::default());
    let bad = garbage_agent();
    let mport = free_port();
    let cfg = federator_config(
        dir.path(),
        &pg,
        &tls,
        &[
            ("good", good.url()),
            ("bad", format!("http://127.0.0.1:{bad}")),
        ],
        mport,
        "",
    );
    let mut fed = Federator::start(&cfg);
    wait_until(
        "the bad agent is rejected and the good one pulled",
        60,
        || {
            let m = metrics(mport);
            m.contains("pga_federator_scrape_failures_total{agent=\"bad\",reason=\"malformed\"}")
                && cursor(&pg, "good").is_some_and(|c| c >= 3)
        },
    );
    good.set_writing(false);
    wait_caught_up(&pg, "good", &good, 30);
    fed.stop();
    assert_same(&pg, "good", &good, i64::MIN);
    let bad_rows = sql(
        &pg,
        "SELECT count(*) FROM metric_samples WHERE agent = 'bad'",
    );
    assert_eq!(bad_rows.trim(), "0");
    let log = fed.log_text();
    assert!(log.contains("malformed answer from the agent"), "{log}");
    // Its /v1/status is garbage too: said once, and never what stops its pulls.
    let said = log
        .lines()
        .filter(|l| l.contains("agent=bad") && l.contains("/v1/status was not recorded"))
        .count();
    assert_eq!(said, 1, "{log}");
}
