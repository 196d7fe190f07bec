//! The fleet inventory: two agents watching one PostgreSQL cluster and one agent
//! watching another. Each agent's PostgreSQL collector learns its instance from the
//! real server (pga-agent's code, on a throwaway cluster) and reports it on
//! `/v1/status`; the federator records it on its pulls. The inventory tables then
//! say what the agents say, and the two agents on one cluster show as one cluster.
//! A cluster whose identity changes is recorded as it is and said once, and a
//! status with missing fields is recorded as far as it goes; pulls never stop.

mod support;

use std::sync::{Arc, RwLock};

use pga_agent::collect::Collector as _;
use pga_agent::collect::postgres::PostgresProbe;
use pga_agent::collect::server_facts::SharedInstanceReport;
use pga_agent::config::PostgresInstance;
use pga_agent::endpoint::api::Inventory;
use pga_lab::Cluster;
use support::pull::*;

/// One pass of the agent's PostgreSQL collector on `instance` of `cluster`; its
/// report for `/v1/status`.
fn learn(rt: &tokio::runtime::Runtime, name: &str, cluster: &Cluster) -> SharedInstanceReport {
    let instance = PostgresInstance {
        name: name.into(),
        conninfo: Some(cluster.conninfo("postgres")),
        ..Default::default()
    };
    let mut probe = PostgresProbe::new(instance, Arc::new(RwLock::new(Vec::new())));
    let report = probe.instance_report();
    let errors = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let mut out = pga_agent::collect::Emitter::new();
            probe.collect(&mut out)
        })
        .await
        .unwrap()
    });
    assert!(errors.is_empty(), "{errors:?}");
    report
}

fn one(pg: &Cluster, db: &str, query: &str) -> String {
    pg.psql(db, query).unwrap().trim().to_owned()
}

#[test]
fn the_inventory_shows_what_the_agents_report_and_one_cluster_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    // Cluster A holds the central database and is watched by two agents; cluster B
    // by a third.
    // A watched cluster lists its databases: it is this test's alone.
    let a = central_alone();
    let b = Cluster::builder().start().unwrap();
    b.create_database("app").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r1 = learn(&rt, "main", a.cluster());
    let r2 = learn(&rt, "replica-watch", a.cluster());
    let r3 = learn(&rt, "main", &b);
    let opts = SimOptions {
        series: 6,
        ..SimOptions::default()
    };
    let agents: Vec<(&str, StoreAgent)> = [("a1", &r1), ("a2", &r2), ("b1", &r3)]
        .into_iter()
        .map(|(n, r)| {
            let inv = Inventory::new(vec![r.clone()]);
            (
                n,
                StoreAgent::start_with(&dir.path().join(n), &tls, opts, inv),
            )
        })
        .collect();
    let mut list: Vec<(&str, String)> = agents.iter().map(|(n, s)| (*n, s.url())).collect();
    list.sort();
    let cfg = federator_config(dir.path(), &a, &tls, &list, free_port(), "");
    // Labels of a1, as configured.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replacen(
        "name = \"a1\"\n",
        "name = \"a1\"\nlabels = { env = \"prod\" }\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    let mut fed = Federator::start(&cfg);
    wait_until("three instances recorded", 60, || {
        a.psql("SELECT count(*) FROM postgresql_instances")
            .is_ok_and(|n| n.trim() == "3")
    });

    let sysid = |pg: &Cluster| {
        one(
            pg,
            "postgres",
            "SELECT system_identifier FROM pg_control_system()",
        )
    };
    let (id_a, id_b) = (sysid(a.cluster()), sysid(&b));
    assert_ne!(id_a, id_b);
    let host = pga_agent::config::host_name();
    // servers: the one host every agent runs on.
    assert_eq!(
        sql(
            &a,
            "SELECT hostname, first_seen_at <= last_seen_at FROM servers"
        ),
        format!("{host}|t")
    );
    // agents: URL, version, server, labels, as configured and reported.
    let rows = sql(
        &a,
        "SELECT a.name, a.url, a.version, s.hostname, a.labels::text, \
                a.first_seen_at IS NOT NULL \
         FROM agents a JOIN servers s ON s.id = a.server_id ORDER BY a.name",
    );
    let want: Vec<String> = list
        .iter()
        .map(|(n, url)| {
            let labels = if *n == "a1" {
                r#"{"env": "prod"}"#
            } else {
                "{}"
            };
            format!("{n}|{url}|{}|{host}|{labels}|t", env!("CARGO_PKG_VERSION"))
        })
        .collect();
    assert_eq!(rows, want.join("\n"));
    // postgresql_instances: what each agent's collector learned from its server.
    let version = |pg: &Cluster| {
        one(
            pg,
            "postgres",
            "SELECT current_setting('server_version') || '|' || current_setting('server_version_num')",
        )
    };
    let rows = sql(
        &a,
        "SELECT agent, instance, host, port, system_identifier, role, server_version, \
                server_version_num \
         FROM fleet_instances ORDER BY agent",
    );
    let want = [
        ("a1", "main", a.cluster(), &id_a),
        ("a2", "replica-watch", a.cluster(), &id_a),
        ("b1", "main", &b, &id_b),
    ]
    .map(|(agent, instance, pg, id)| {
        format!(
            "{agent}|{instance}|{}|{}|{id}|primary|{}",
            pg.socket_dir().display(),
            pg.port(),
            version(pg)
        )
    });
    assert_eq!(rows, want.join("\n"));
    // One cluster seen by two agents, the other by one.
    let clusters = sql(
        &a,
        "SELECT system_identifier, instances, agents, array_to_string(agent_names, ','), \
                primaries, standbys \
         FROM postgresql_clusters ORDER BY agents DESC",
    );
    assert_eq!(clusters, format!("{id_a}|2|2|a1,a2|2|0\n{id_b}|1|1|b1|1|0"));
    // databases: each instance's, as its server lists them.
    for (agent, pg) in [("a1", a.cluster()), ("a2", a.cluster()), ("b1", &b)] {
        let recorded = sql(
            &a,
            &format!(
                "SELECT string_agg(d.name, ',' ORDER BY d.name) FROM databases d \
                 JOIN fleet_instances i ON i.instance_id = d.instance_id \
                 WHERE i.agent = '{agent}' AND d.first_seen_at <= d.last_seen_at"
            ),
        );
        let listed = one(
            pg,
            "postgres",
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database \
             WHERE NOT datistemplate",
        );
        assert_eq!(recorded, listed, "{agent}");
    }

    // Bad input: a2's cluster reports another identity (restored from another
    // cluster). Recorded as it is, said once; pulls go on.
    r2.write().unwrap().system_identifier = Some(id_b.clone());
    wait_until("the new identity recorded", 30, || {
        sql(
            &a,
            "SELECT system_identifier FROM fleet_instances WHERE agent = 'a2'",
        )
        .trim()
            == id_b
    });
    let cursor_then = cursor(&a, "a2").unwrap_or(0);
    wait_until("a2 still pulled", 30, || {
        cursor(&a, "a2").is_some_and(|c| c > cursor_then + 2)
    });
    fed.stop();
    let log = fed.log_text();
    let said = log
        .lines()
        .filter(|l| l.contains(&format!("now reports system identifier {id_b}")))
        .count();
    assert_eq!(said, 1, "{log}");
    assert_eq!(
        sql(
            &a,
            "SELECT instances, array_to_string(agent_names, ',') FROM postgresql_clusters \
             ORDER BY agents DESC, system_identifier LIMIT 1"
        ),
        "2|a2,b1"
    );
    for (name, agent) in &agents {
        agent.set_writing(false);
        assert!(assert_same(&a, name, agent, i64::MIN) > 0);
    }
}

/// What an agent before protocol 1.1 answers (no host, no instances), and one
/// whose instance lacks fields or has them of the wrong type: recorded as far as
/// they go, without error; what was known stays.
#[tokio::test]
async fn a_status_with_missing_fields_is_recorded_as_far_as_it_goes() {
    use pga_federator::db::sink::{Sink, SinkOptions};
    use pga_federator::pull::status::parse_status;
    let pg = central();
    let sink = Sink::connect(&pg.url(), SinkOptions::default())
        .await
        .unwrap();
    sink.migrate().await.unwrap();
    let labels = Default::default();
    let old = parse_status(
        br#"{"agent_id": "87edd2b1-bff9-4639-996e-144fff6def85", "version": "3.0.0"}"#,
    )
    .unwrap();
    assert_eq!(old.missing, ["host", "instances"]);
    sink.record_status("old", "https://old:9187", &labels, &old)
        .await
        .unwrap();
    assert_eq!(
        sql(
            &pg,
            "SELECT url, version, server_id IS NULL FROM agents WHERE name = 'old'"
        ),
        "https://old:9187|3.0.0|t"
    );
    let full = parse_status(
        br#"{"agent_id": "x", "version": "3.0.1", "host": "db9", "instances": [
            {"name": "main", "host": "/run/postgresql", "port": 5432, "server_version": "16.2",
             "server_version_num": 160002, "system_identifier": "7301234567890123456",
             "in_recovery": true, "databases": ["app"]}]}"#,
    )
    .unwrap();
    sink.record_status("old", "https://old:9187", &labels, &full)
        .await
        .unwrap();
    // The server went away: the agent knows nothing of it now, and one field is
    // garbled. The rest is recorded; what was known stays.
    let partial = parse_status(
        br#"{"agent_id": "x", "version": "3.0.1", "host": "db9", "instances": [
            {"name": "main", "host": "/run/postgresql", "port": 5432, "server_version": null,
             "server_version_num": null, "system_identifier": null,
             "in_recovery": "maybe", "databases": null}]}"#,
    )
    .unwrap();
    assert_eq!(partial.missing, ["instances[0].in_recovery"]);
    sink.record_status("old", "https://old:9187", &labels, &partial)
        .await
        .unwrap();
    assert_eq!(
        sql(
            &pg,
            "SELECT agent_host, instance, system_identifier, role, server_version, databases \
             FROM fleet_instances"
        ),
        "db9|main|7301234567890123456|standby|16.2|1"
    );
}
