//! Replicas, leases and fencing with real processes: three `pga-federator run`
//! replicas share one central database and twenty agents (the agent's real ring
//! store and mTLS endpoint with a synthetic collector). Leases are short (TTL 3 s,
//! renewed every second) and agents are pulled every second, so the whole story
//! runs in well under a minute:
//!
//! - the agents are split among the three replicas;
//! - one replica is killed with `-9`: its agents are pulled by the others within
//!   one lease TTL plus one schedule period (measured, and bounded generously);
//! - another is frozen (SIGSTOP) past its lease, then resumed (SIGCONT): its agents
//!   were taken over with new epochs, and a write forced through the sink with the
//!   epoch it held is refused by the fencing check ([`SinkError::Fenced`]) and
//!   moves no cursor; a lease epoch set back by hand is refused by the database;
//! - the third reaches the database through the lab's fault proxy, and is cut off
//!   from it (its sessions terminated, new ones stalled) past its lease: its agents
//!   are taken over; once the cut ends it renews and gets its share back;
//! - a fourth replica starts with an agent missing from its configuration: the
//!   difference is said and the agents table wins (nothing is disabled);
//! - at the end every agent's samples in the central database equal its store:
//!   none lost, none twice.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pga_federator::db::sink::{Fence, Sink, SinkError, SinkOptions};
use pga_federator::pull::batch::{Batch, Cursor};
use pga_lab::{Fault, FaultKind, FaultProxy};
use support::federator_cli;
use support::pull::*;

const AGENTS: usize = 20;
const TTL_MS: u64 = 3000;
const PERIOD_MS: u64 = 1000;

fn cluster_config(name: &str) -> String {
    format!(
        "[cluster]\nreplica_name = \"{name}\"\nlease_ttl_ms = {TTL_MS}\nrenew_interval_ms = 1000\n\
         retry_interval_ms = 200\n"
    )
}

/// `name → (replica name, epoch)` of the agents' valid leases.
fn assignments(pg: &Central) -> BTreeMap<String, (String, i64)> {
    sql(
        pg,
        "SELECT name, replica, epoch FROM cluster_assignments WHERE kind = 'agent' AND valid",
    )
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        (f.len() == 3).then(|| (f[0].to_owned(), (f[1].to_owned(), f[2].parse().unwrap())))
    })
    .collect()
}

fn replica_id(pg: &Central, name: &str) -> String {
    sql(
        pg,
        &format!("SELECT replica_id FROM cluster_replicas WHERE name = '{name}' AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1"),
    )
    .trim()
    .to_owned()
}

fn signal(fed: &Federator, sig: nix::sys::signal::Signal) {
    let pid = fed.pid().expect("running") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

#[test]
fn replicas_share_agents_take_over_the_dead_and_fence_the_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let pg = central();
    let opts = SimOptions {
        series: 6,
        interval_ms: 250,
        block_ms: 1000,
        ..SimOptions::default()
    };
    let agents: Vec<StoreAgent> = (0..AGENTS)
        .map(|i| StoreAgent::start(&dir.path().join(format!("a{i}")), &tls, opts))
        .collect();
    let names: Vec<String> = (0..AGENTS).map(|i| format!("a{i}")).collect();
    let list: Vec<(&str, String)> = names
        .iter()
        .zip(&agents)
        .map(|(n, a)| (n.as_str(), a.url()))
        .collect();
    let configs: Vec<PathBuf> = ["r1", "r2", "r3"]
        .iter()
        .map(|r| {
            let d = dir.path().join(r);
            std::fs::create_dir_all(&d).unwrap();
            federator_config(&d, &pg, &tls, &list, free_port(), &cluster_config(r))
        })
        .collect();
    // r3 reaches the database through the fault proxy, as its own role, so that its
    // sessions can be told apart and cut.
    pg.psql("CREATE ROLE cutoff LOGIN SUPERUSER").ok();
    let proxy = FaultProxy::start(("127.0.0.1", pg.port())).unwrap();
    let text = std::fs::read_to_string(&configs[2]).unwrap().replace(
        &pg.url(),
        &format!("postgres://cutoff@{}/{}", proxy.addr(), pg.db),
    );
    std::fs::write(&configs[2], text).unwrap();
    migrate(&configs[0]);
    let mut feds: Vec<Federator> = configs.iter().map(|c| Federator::start(c)).collect();

    // 1. The agents are split among the three replicas, and all pulled.
    wait_until("20 agents held by 3 replicas", 30, || {
        let a = assignments(&pg);
        let owners: std::collections::BTreeSet<&String> = a.values().map(|(r, _)| r).collect();
        a.len() == AGENTS && owners.len() == 3
    });
    wait_until("every agent pulled", 30, || {
        names.iter().all(|n| cursor(&pg, n).is_some_and(|c| c >= 2))
    });
    let status = federator_cli(&[&"cluster", &"status", &"--json", &"--config", &configs[0]]);
    assert!(status.ok, "{}", status.stderr);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let live = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["live"] == true)
        .count();
    assert_eq!(live, 3, "{}", status.stdout);
    assert_eq!(
        v["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["leader"] == true)
            .count(),
        1,
        "one alerting leader: {}",
        status.stdout
    );
    let table = federator_cli(&[&"cluster", &"status", &"--config", &configs[0]]);
    assert!(
        table.stdout.contains("replicas: 3 live"),
        "{}",
        table.stdout
    );

    // 2. r1 is killed: its agents are pulled by the others within TTL + a period.
    let before = assignments(&pg);
    let r1_agents: Vec<String> = before
        .iter()
        .filter(|(_, (r, _))| r == "r1")
        .map(|(n, _)| n.clone())
        .collect();
    assert!(!r1_agents.is_empty(), "r1 held agents: {before:?}");
    feds[0].kill();
    let killed = Instant::now();
    let at_kill: BTreeMap<String, u64> = r1_agents
        .iter()
        .map(|n| (n.clone(), cursor(&pg, n).unwrap()))
        .collect();
    // Its cursors may still move by the block it was committing; wait for more.
    wait_until("r1's agents pulled by r2 and r3", 30, || {
        let a = assignments(&pg);
        r1_agents.iter().all(|n| {
            a.get(n).is_some_and(|(r, _)| r != "r1")
                && cursor(&pg, n).is_some_and(|c| c > at_kill[n] + 1)
        })
    });
    let takeover = killed.elapsed();
    eprintln!(
        "takeover after kill -9: {} agents pulled again by the others {} ms after the kill \
         (lease TTL {TTL_MS} ms, schedule period {PERIOD_MS} ms)",
        r1_agents.len(),
        takeover.as_millis()
    );
    assert!(
        takeover < Duration::from_millis(TTL_MS + PERIOD_MS + 4000),
        "takeover took {takeover:?}"
    );
    let took: i64 = sql(
        &pg,
        "SELECT coalesce(sum(takeovers), 0) FROM cluster_assignments WHERE kind = 'agent'",
    )
    .trim()
    .parse()
    .unwrap();
    assert!(took >= r1_agents.len() as i64, "takeovers recorded: {took}");

    // 3. r2 is frozen past its lease: r3 takes its agents with new epochs.
    let r2_id = replica_id(&pg, "r2");
    let held: BTreeMap<String, i64> = assignments(&pg)
        .into_iter()
        .filter(|(_, (r, _))| r == "r2")
        .map(|(n, (_, e))| (n, e))
        .collect();
    assert!(!held.is_empty(), "r2 held agents");
    signal(&feds[1], nix::sys::signal::Signal::SIGSTOP);
    wait_until("r2's agents taken over by r3", 20, || {
        let a = assignments(&pg);
        held.keys()
            .all(|n| a.get(n).is_some_and(|(r, _)| r == "r3"))
    });
    let after = assignments(&pg);
    for (n, e) in &held {
        assert!(
            after[n].1 > *e,
            "{n}: the new epoch {} grows from {e}",
            after[n].1
        );
    }
    signal(&feds[1], nix::sys::signal::Signal::SIGCONT);

    // The frozen replica's write, forced through with the epoch it held: refused,
    // nothing written, no cursor moved.
    let (victim, old_epoch) = held.iter().next().map(|(n, e)| (n.clone(), *e)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt
        .block_on(Sink::connect(&pg.url(), SinkOptions::default()))
        .unwrap();
    let (agent_id, cur) = rt.block_on(sink.cursor(&victim)).unwrap().unwrap();
    let stale = Batch {
        agent: victim.clone(),
        agent_id,
        series: vec![],
        blocks: vec![],
        head: None,
        gap: None,
        // Were it taken, the cursor would skip a thousand blocks: data lost.
        cursor: Cursor {
            last_sequence: cur.last_sequence.map(|s| s + 1000),
            ..cur
        },
        complete_through_ms: None,
    };
    let fence = Fence {
        replica: r2_id.clone(),
        epoch: old_epoch,
    };
    let refused = rt.block_on(sink.ingest_fenced(&stale, Some(&fence)));
    assert!(
        matches!(&refused, Err(SinkError::Fenced { agent, epoch }) if *agent == victim && *epoch == old_epoch),
        "a write with a lost epoch must be refused: {refused:?}"
    );
    let now_cursor = rt.block_on(sink.cursor(&victim)).unwrap().unwrap().1;
    assert!(
        now_cursor.last_sequence < cur.last_sequence.map(|s| s + 1000),
        "the refused write moved no cursor"
    );
    // The current holder's epoch with r2's identity is refused too: a lease is a
    // replica and an epoch together.
    let stolen = Fence {
        replica: r2_id.clone(),
        epoch: assignments(&pg)[&victim].1,
    };
    assert!(matches!(
        rt.block_on(sink.ingest_fenced(&stale, Some(&stolen))),
        Err(SinkError::Fenced { .. })
    ));

    // A hand edit setting an epoch back is refused by the database.
    let edit = pg.psql(&format!(
        "UPDATE cluster_leases SET epoch = epoch - 1 WHERE kind = 'agent' AND name = '{victim}'"
    ));
    let err = format!("{edit:?}");
    assert!(
        edit.is_err() && err.contains("would go backwards"),
        "epoch set back: {err}"
    );

    // r2 is back: it renews, and the agents are split between r2 and r3 again.
    wait_until("r2 holds agents again", 20, || {
        assignments(&pg).values().any(|(r, _)| r == "r2")
    });
    let r2_log = feds[1].log_text();
    assert!(
        r2_log.contains("lease had run out"),
        "r2 said its lease ran out"
    );

    // 4. r3 is cut off from the database past its lease: r2 takes its agents; when
    //    the cut ends, r3 renews and gets its share back.
    wait_until("r3 holds agents", 20, || {
        assignments(&pg).values().any(|(r, _)| r == "r3")
    });
    proxy.set_fault(Some(Fault {
        kind: FaultKind::Stall,
        after_bytes: 0,
        spread_bytes: 0,
    }));
    sql(
        &pg,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'cutoff'",
    );
    let cut = Instant::now();
    wait_until("r3's agents taken over by r2", 20, || {
        let a = assignments(&pg);
        a.len() == AGENTS && a.values().all(|(r, _)| r == "r2")
    });
    eprintln!(
        "r3 cut off from the database: all agents held by r2 {} ms after the cut",
        cut.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_millis(500));
    proxy.set_fault(None);
    wait_until("r3 holds agents again after the cut", 30, || {
        assignments(&pg).values().any(|(r, _)| r == "r3")
    });
    assert!(
        feds[2].log_text().contains("lease had run out"),
        "r3 said its lease ran out"
    );

    // 5. A fourth replica whose configuration lacks an agent: the difference is
    //    said, the agents table wins (nothing disabled), and it takes its share.
    let d4 = dir.path().join("r4");
    std::fs::create_dir_all(&d4).unwrap();
    let c4 = federator_config(
        &d4,
        &pg,
        &tls,
        &list[..AGENTS - 1],
        free_port(),
        &cluster_config("r4"),
    );
    feds.push(Federator::start(&c4));
    wait_until("r4 holds agents", 20, || {
        assignments(&pg).values().any(|(r, _)| r == "r4")
    });
    let log = feds[3].log_text();
    assert!(
        log.contains(&format!("agent a{} is in the agents table", AGENTS - 1))
            && log.contains("the table wins"),
        "r4 said the difference"
    );
    let enabled = sql(
        &pg,
        "SELECT count(*) FROM agents WHERE source = 'config' AND enabled",
    );
    assert_eq!(enabled.trim(), AGENTS.to_string(), "no agent disabled");

    // 6. Every agent caught up; the central database equals every store.
    for a in &agents {
        a.set_writing(false);
    }
    for (n, a) in names.iter().zip(&agents) {
        wait_caught_up(&pg, n, a, 30);
    }
    feds[1].stop();
    feds[2].stop();
    feds[3].stop();
    let mut compared = 0;
    for (n, a) in names.iter().zip(&agents) {
        compared += assert_same(&pg, n, a, i64::MIN);
    }
    eprintln!("{compared} samples of {AGENTS} agents compared: 0 lost, 0 duplicates");
    assert!(compared > AGENTS * 6 * 10, "compared {compared} samples");
    // A clean stop left no lease held.
    let held_after = sql(&pg, "SELECT count(*) FROM cluster_assignments WHERE valid");
    assert_eq!(held_after.trim(), "0");
}

/// Pull jobs for agents named `names` (never pulled here).
fn jobs(names: &[String]) -> Vec<pga_federator::pull::scheduler::FleetJob> {
    let b = pga_federator::pull::fleet::JobBuilder::new(
        pga_federator::pull::ClientLimits {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_response_bytes: 1 << 20,
        },
        "* * * * * *".into(),
        None,
    );
    names
        .iter()
        .map(|n| {
            b.job(n, "http://127.0.0.1:9", None, &BTreeMap::new())
                .unwrap()
        })
        .collect()
}

/// An empty batch of `agent` moving its cursor to `seq`.
fn batch(agent: &str, seq: u64) -> Batch {
    Batch {
        agent: agent.to_owned(),
        agent_id: {
            let mut id = [0u8; 16];
            id[..agent.len()].copy_from_slice(agent.as_bytes());
            pga_format::AgentId(id)
        },
        series: vec![],
        blocks: vec![],
        head: None,
        gap: None,
        cursor: Cursor {
            last_sequence: Some(seq),
            last_ts_ms: Some(1),
            series_count: 0,
        },
        complete_through_ms: None,
    }
}

/// Moves remote-write destination "vm"'s cursor of `agent` to `seq`, as `fence`.
async fn remote_write_advance(
    pool: &sqlx::PgPool,
    agent: &str,
    seq: u64,
    fence: Option<&Fence>,
) -> Result<(), SinkError> {
    let b = batch(agent, seq);
    pga_federator::db::remote_write::advance(
        pool,
        &pga_federator::db::remote_write::Advance {
            destination: "vm",
            agent,
            agent_uid: b.agent_id,
            cursor: b.cursor,
            sent: 10,
            rejected: &[],
            gap: None,
            fence,
        },
    )
    .await
}

/// The lease mechanics in one process, on the database: a lone replica holds
/// everything; a second one gets its share only once the first released it; a
/// replica whose own lease ran out cannot write even though nobody took its agents
/// (and can again once renewed, with the same epoch); one that stopped renewing
/// loses its agents to the other with new epochs (one frozen in the middle of a
/// write, its lease row locked, only once the database ended that transaction: the
/// renewal never waits for it), and its writes are refused, to the database and to
/// the remote-write cursors alike; a clean leave releases everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_move_between_replicas_and_every_write_checks_them() {
    use pga_federator::cluster::{ClusterMetrics, Membership};
    use pga_federator::config::ClusterConfig;
    use tokio::sync::watch;

    let pg = central();
    let sink = Sink::connect(&pg.url(), SinkOptions::default())
        .await
        .unwrap();
    sink.migrate().await.unwrap();
    let cfg = |name: &str| ClusterConfig {
        replica_name: name.into(),
        lease_ttl_ms: 1000,
        renew_interval_ms: 300,
        retry_interval_ms: 100,
    };
    let pool = sink.pool().clone();
    let names: Vec<String> = (0..12).map(|i| format!("db{i}")).collect();
    let fleet = jobs(&names);
    let mut a = Membership::join(pool.clone(), cfg("a"), ClusterMetrics::default())
        .await
        .unwrap();
    let (a_tx, a_rx) = watch::channel(Vec::new());
    a.tick(&fleet[..11], &a_tx).await.unwrap();
    assert_eq!(a_rx.borrow().len(), 11, "alone, a pulls every agent");
    // An agent added to the fleet is claimed at the next renewal.
    a.tick(&fleet, &a_tx).await.unwrap();
    assert_eq!(a_rx.borrow().len(), 12);
    let ca = a.cluster();
    assert!(ca.leader().is_some(), "alone, a leads");
    let f = ca.fence("db0").unwrap();
    sink.ingest_fenced(&batch("db0", 1), Some(&f))
        .await
        .unwrap();

    // b joins: it gets nothing a still holds, and its share once a released it.
    let mut b = Membership::join(pool.clone(), cfg("b"), ClusterMetrics::default())
        .await
        .unwrap();
    let (b_tx, b_rx) = watch::channel(Vec::new());
    b.tick(&fleet, &b_tx).await.unwrap();
    assert!(b_rx.borrow().is_empty(), "b waits for a to release");
    a.tick(&fleet, &a_tx).await.unwrap();
    b.tick(&fleet, &b_tx).await.unwrap();
    let (na, nb) = (a_rx.borrow().len(), b_rx.borrow().len());
    assert_eq!(na + nb, 12, "split {na} + {nb}");
    assert!(na > 0 && nb > 0, "split {na} + {nb}");
    let cb = b.cluster();
    assert!(ca.leader().is_some() != cb.leader().is_some(), "one leader");

    // a's own lease runs out while nobody takes its agents: its writes are refused
    // all the same; renewed, the same epoch writes again.
    let a_agent = ca.holdings().agents.keys().next().unwrap().clone();
    let fa = ca.fence(&a_agent).unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(matches!(
        sink.ingest_fenced(&batch(&a_agent, 5), Some(&fa)).await,
        Err(SinkError::Fenced { .. })
    ));
    a.tick(&fleet, &a_tx).await.unwrap();
    b.tick(&fleet, &b_tx).await.unwrap();
    assert_eq!(ca.fence(&a_agent), Some(fa.clone()), "the same epoch");
    sink.ingest_fenced(&batch(&a_agent, 5), Some(&fa))
        .await
        .unwrap();
    // A remote-write destination's cursor moves under the same lease.
    remote_write_advance(&pool, &a_agent, 5, Some(&fa))
        .await
        .unwrap();

    // a stops renewing: b takes everything over with new epochs; a's writes are
    // refused, unfenced writers aside.
    // a is frozen in the middle of a write of `a_agent` (its lease row locked):
    // b's renewal does not wait for it; it takes a's other agents at once, and
    // `a_agent` once the database ended the frozen transaction.
    let mut frozen = pool.acquire().await.unwrap().detach();
    sqlx::raw_sql(&format!(
        "SET idle_in_transaction_session_timeout = 1500; BEGIN; \
         SELECT epoch FROM cluster_leases WHERE kind = 'agent' AND name = '{a_agent}' FOR SHARE"
    ))
    .execute(&mut frozen)
    .await
    .unwrap();
    let before_b = cb.holdings().agents.len();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tokio::time::timeout(Duration::from_secs(3), b.tick(&fleet, &b_tx))
        .await
        .expect("a renewal never waits on a locked lease")
        .unwrap();
    assert_eq!(
        b_rx.borrow().len(),
        11,
        "b took a's agents but the locked one"
    );
    assert!(cb.fence(&a_agent).is_none());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.tick(&fleet, &b_tx).await.unwrap();
    assert_eq!(
        b_rx.borrow().len(),
        12,
        "b took a's {} agents",
        12 - before_b
    );
    drop(frozen);
    assert!(cb.fence(&a_agent).unwrap().epoch > fa.epoch, "a new epoch");
    assert!(cb.leader().is_some(), "b leads");
    let refused = sink.ingest_fenced(&batch(&a_agent, 9), Some(&fa)).await;
    assert!(
        matches!(&refused, Err(SinkError::Fenced { epoch, .. }) if *epoch == fa.epoch),
        "{refused:?}"
    );
    let (_, cursor) = sink.cursor(&a_agent).await.unwrap().unwrap();
    assert_eq!(
        cursor.last_sequence,
        Some(5),
        "the refused write moved nothing"
    );
    // So is its advance of a remote-write cursor (DESIGN.md invariant 7), which
    // b, holding the agent now, moves.
    let refused = remote_write_advance(&pool, &a_agent, 9, Some(&fa)).await;
    assert!(
        matches!(&refused, Err(SinkError::Fenced { epoch, .. }) if *epoch == fa.epoch),
        "{refused:?}"
    );
    let remote = |pool| pga_federator::db::remote_write::cursor(pool, "vm", &a_agent);
    let moved = remote(&pool).await.unwrap().unwrap().last_sequence;
    assert_eq!(moved, Some(5), "the refused advance moved nothing");
    // a's remote-write destination sends nothing more of the agent: refused by
    // fencing before any request (the receiver's URL takes none).
    let rw = pga_federator::remote_write::RemoteWrite::new(
        "vm".into(),
        pga_federator::notify::http::Client::new(
            "http://127.0.0.1:9/api/v1/write",
            None,
            pga_federator::notify::http::Auth::None,
            Duration::from_secs(1),
        )
        .unwrap(),
        pool.clone(),
        100,
        pga_federator::remote_write::send::Retry {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        pga_federator::remote_write::RemoteWriteMetrics::default(),
    )
    .fenced_by(ca.clone());
    let sent = pga_federator::pull::Destination::ingest(&rw, &batch(&a_agent, 9)).await;
    assert!(
        matches!(&sent, Err(pga_federator::pull::DestinationError::Fenced(_))),
        "{sent:?}"
    );
    let fb = cb.fence(&a_agent).unwrap();
    remote_write_advance(&pool, &a_agent, 9, Some(&fb))
        .await
        .unwrap();
    let moved = remote(&pool).await.unwrap().unwrap().last_sequence;
    assert_eq!(moved, Some(9));
    // a comes back: it renews, sees its agents gone, and pulls none of them until
    // b releases its share again.
    a.tick(&fleet, &a_tx).await.unwrap();
    assert!(a_rx.borrow().is_empty(), "a pulls nothing b holds");

    // A clean leave releases everything at once.
    b.leave().await;
    a.leave().await;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM cluster_assignments WHERE valid")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(held, 0);
}
