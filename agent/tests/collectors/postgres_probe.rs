//! The agent against a real throwaway PostgreSQL cluster: `pg_up` is 1 while the
//! server answers, 0 while it is down, 1 again after it comes back; the cluster's
//! data directory gets its filesystem metrics.

use std::time::{Duration, Instant};

use pga_agent::collect::Collector as _;
use pga_agent::store::StoreReader;
use pga_lab::Cluster;

use crate::support::Agent;

/// The newest `pg_up` sample, if any.
fn last_pg_up(data: &std::path::Path) -> Option<(i64, f64)> {
    let reader = StoreReader::open(data).ok()?;
    let view = reader.view();
    let meta = view
        .series()
        .ok()?
        .into_iter()
        .find(|m| m.name == "pg_up")?;
    let samples = view.samples(&[meta.id], i64::MIN, i64::MAX).ok()?;
    samples[&meta.id].last().map(|s| (s.timestamp_ms, s.value))
}

fn wait_for(data: &std::path::Path, want: f64, after: i64) -> (i64, f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((ts, v)) = last_pg_up(data)
            && ts > after
            && v == want
        {
            return (ts, v);
        }
        assert!(Instant::now() < deadline, "pg_up never became {want}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pg_up_follows_the_server_down_and_back() {
    let mut cluster = Cluster::builder()
        .start()
        .expect("start a throwaway cluster");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [collectors]\nlogs = false\n\
             [[postgres]]\nname = \"lab\"\nconninfo = {:?}\nstatement_timeout_ms = 1000\nlock_timeout_ms = 500\n",
            data.display().to_string(),
            cluster.conninfo("postgres"),
        ),
    )
    .unwrap();
    let agent = Agent::spawn(&cfg, &data, "info");

    let (up_at, _) = wait_for(&data, 1.0, 0);
    // The server sees the agent's session with its name and settings.
    let apps = cluster
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pga-agent'",
        )
        .unwrap();
    assert_eq!(apps.trim(), "1", "one connection, reused");

    cluster.stop().unwrap();
    let (down_at, _) = wait_for(&data, 0.0, up_at);
    cluster.start_again().unwrap();
    wait_for(&data, 1.0, down_at);

    drop(agent);
    // The data directory's filesystem is reported, from the path the server gave.
    let reader = StoreReader::open(&data).unwrap();
    let metas = reader.view().series().unwrap();
    let fs = metas
        .iter()
        .find(|m| {
            m.name == "node_filesystem_size_bytes" && m.label("role") == Some("data_directory")
        })
        .expect("filesystem metrics of the cluster's data directory");
    let canonical = std::fs::canonicalize(cluster.data_dir()).unwrap();
    let path = fs.label("path").unwrap();
    assert!(
        std::path::Path::new(path) == cluster.data_dir() || std::path::Path::new(path) == canonical,
        "{path} vs {}",
        cluster.data_dir().display()
    );
    let version = metas
        .iter()
        .find(|m| m.name == "pg_server_version_num")
        .expect("version series");
    assert_eq!(version.label("pg_instance"), Some("lab"));
}

/// One pass of `probe` on a blocking thread of `rt`: its errors.
fn collect_once(
    rt: &tokio::runtime::Runtime,
    mut probe: pga_agent::collect::postgres::PostgresProbe,
) -> Vec<pga_agent::collect::CollectError> {
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let mut out = pga_agent::collect::Emitter::new();
            probe.collect(&mut out)
        })
        .await
        .unwrap()
    })
}

/// The probe learns where the server writes its log from the one session it holds,
/// for the log collector, and what `/v1/status` reports of the instance.
#[test]
fn the_probe_learns_the_log_settings() {
    let cluster = Cluster::builder()
        .start()
        .expect("start a throwaway cluster");
    let instance = pga_agent::config::PostgresInstance {
        name: "lab".into(),
        conninfo: Some(cluster.conninfo("postgres")),
        ..Default::default()
    };
    let paths = std::sync::Arc::new(std::sync::RwLock::new(Vec::new()));
    let probe = pga_agent::collect::postgres::PostgresProbe::new(instance, paths);
    let facts = probe.server_facts();
    assert!(facts.read().unwrap().is_none());
    let report = probe.instance_report();
    assert_eq!(report.read().unwrap().system_identifier, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let errors = collect_once(&rt, probe);
    assert!(errors.is_empty(), "{errors:?}");
    // What /v1/status reports for the federator's inventory, from the same session.
    let report = report.read().unwrap().clone();
    let one = |q: &str| cluster.psql("postgres", q).unwrap();
    assert_eq!(
        report.system_identifier.as_deref(),
        Some(one("SELECT system_identifier FROM pg_control_system()").as_str())
    );
    assert_eq!(report.in_recovery, Some(false));
    assert_eq!(
        report.server_version.as_deref(),
        Some(one("SHOW server_version").as_str())
    );
    assert_eq!(
        report.databases.unwrap().join(","),
        one(
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE NOT datistemplate"
        )
    );
    assert_eq!(report.port, Some(cluster.port()));
    assert!(report.updated_ms.is_some());
    let facts = facts.read().unwrap().clone().expect("facts learned");
    // Bracketed: the lab's psql trims its output, and prefixes end in spaces.
    let want_prefix = cluster
        .psql(
            "postgres",
            "SELECT '[' || current_setting('log_line_prefix') || ']'",
        )
        .unwrap();
    assert_eq!(format!("[{}]", facts.log_line_prefix), want_prefix);
    assert!(facts.server_version_num >= 140000, "{facts:?}");
    assert!(
        std::path::Path::new(&facts.data_directory).is_dir(),
        "{facts:?}"
    );
    assert!(!facts.log_destination.is_empty() && !facts.log_filename.is_empty());

    // A role the server does not have (a first try as root): the error says how to
    // make the monitoring role, or to run as the postgres user, with the commands.
    let instance = pga_agent::config::PostgresInstance {
        name: "lab".into(),
        conninfo: Some(format!("{} user=nosuchrole", cluster.conninfo("postgres"))),
        ..Default::default()
    };
    let paths = std::sync::Arc::new(std::sync::RwLock::new(Vec::new()));
    let probe = pga_agent::collect::postgres::PostgresProbe::new(instance, paths);
    let errors = collect_once(&rt, probe);
    let text = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("role \"nosuchrole\" does not exist"),
        "{text}"
    );
    assert!(
        text.contains("CREATE ROLE \"nosuchrole\" LOGIN; GRANT pg_monitor TO \"nosuchrole\""),
        "{text}"
    );
    assert!(text.contains("sudo -u postgres pga-agent run"), "{text}");
}
