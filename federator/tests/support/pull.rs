//! Pull tests: agents (the agent's real ring store and mTLS endpoint, fed by a
//! synthetic collector with short block windows), the federator as a process, and
//! the comparison of what the central database holds with what an agent's store
//! holds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::{Central, central, central_alone, free_port, now_ms, sql, wait_until};
use pga_agent::collect::Emitted;
use pga_agent::endpoint::api::{ApiState, Inventory, router};
use pga_agent::endpoint::certs::{DevCertsOptions, make_dev_certs};
use pga_agent::endpoint::{Endpoint, EndpointSettings, Limits, TlsFiles};
use pga_agent::store::{Store, StoreHandle, StoreOptions, StoreReader};
use pga_format::MetricKind;

/// A pull test's start: a temporary directory with development certificates in
/// its `tls/` ([`certs`]), and a fresh central database.
pub fn pull_setup() -> (tempfile::TempDir, PathBuf, Central) {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    (dir, tls, central())
}

/// A development CA with agent and federator certificates.
pub fn certs(dir: &Path) -> PathBuf {
    let out = dir.join("tls");
    make_dev_certs(&DevCertsOptions {
        out: out.clone(),
        agent_name: "sim-agent".into(),
        agent_sans: vec![],
        days: 2,
        force: false,
    })
    .expect("dev certificates");
    out
}

/// What a simulated agent collects and keeps.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    pub series: usize,
    pub interval_ms: u64,
    pub block_ms: i64,
    pub retention_ms: i64,
    pub max_bytes: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            series: 40,
            interval_ms: 100,
            block_ms: 1000,
            retention_ms: 0,
            max_bytes: 64 << 20,
        }
    }
}

/// The value series `i` has at `ts`: counters grow, gauges wander over floats
/// that need every bit of a double.
pub fn value(i: usize, ts: i64) -> f64 {
    if i.is_multiple_of(3) {
        (ts / 100) as f64 * (i + 1) as f64
    } else {
        ((ts as f64) * 0.001 + i as f64).sin() * 1000.0 + i as f64 / 7.0
    }
}

fn collection(series: usize, ts: i64) -> Vec<Emitted> {
    (0..series)
        .map(|i| Emitted {
            name: if i.is_multiple_of(3) {
                "sim_ops_total".into()
            } else {
                "sim_level".into()
            },
            labels: vec![("i".into(), i.to_string())],
            kind: if i.is_multiple_of(3) {
                MetricKind::Counter
            } else {
                MetricKind::Gauge
            },
            unit: "",
            help: "A simulated series.",
            value: value(i, ts),
        })
        .collect()
}

/// An agent: the real ring store and mTLS endpoint of pga-agent, with a synthetic
/// collector. Stop and start it again on the same directory and port, as a
/// restarted agent.
pub struct StoreAgent {
    pub dir: PathBuf,
    pub port: u16,
    tls: PathBuf,
    opts: SimOptions,
    writing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    server: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
    handle: Option<StoreHandle>,
    inventory: Inventory,
}

impl StoreAgent {
    pub fn start(dir: &Path, tls: &Path, opts: SimOptions) -> StoreAgent {
        Self::start_with(dir, tls, opts, Inventory::default())
    }

    /// An agent whose `/v1/status` reports `inventory` (the agent's own reports of
    /// the PostgreSQL instances it watches).
    pub fn start_with(
        dir: &Path,
        tls: &Path,
        opts: SimOptions,
        inventory: Inventory,
    ) -> StoreAgent {
        let mut a = StoreAgent {
            dir: dir.to_owned(),
            port: 0,
            tls: tls.to_owned(),
            opts,
            writing: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            writer: None,
            server: None,
            handle: None,
            inventory,
        };
        a.start_again();
        a
    }

    /// Opens the store, starts collecting and serving (on the same port as before).
    pub fn start_again(&mut self) {
        assert!(self.writer.is_none(), "already running");
        let (mut store, _) = Store::open(
            &self.dir,
            StoreOptions {
                max_bytes: self.opts.max_bytes,
                retention_ms: self.opts.retention_ms,
                block_ms: self.opts.block_ms,
            },
        )
        .expect("open the store");
        let handle = store.handle();
        self.handle = Some(handle.clone());
        self.stop.store(false, Ordering::SeqCst);
        let (stop, writing, opts) = (self.stop.clone(), self.writing.clone(), self.opts);
        self.writer = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if writing.load(Ordering::SeqCst) {
                    let ts = now_ms();
                    store
                        .append(ts, &collection(opts.series, ts), None)
                        .expect("append");
                }
                std::thread::sleep(Duration::from_millis(opts.interval_ms));
            }
        }));
        let settings = EndpointSettings {
            listen: format!("127.0.0.1:{}", self.port),
            tls: Some(TlsFiles {
                cert_file: self.tls.join("agent.crt"),
                key_file: self.tls.join("agent.key"),
                client_ca_file: self.tls.join("ca.crt"),
                crl_files: vec![],
                allowed_clients: vec![],
            }),
            limits: Limits {
                max_connections: 64,
                header_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(10),
                max_response_bytes: 32 << 20,
                ..Limits::default()
            },
        };
        let app = router(ApiState {
            store: handle,
            agent_name: "sim".into(),
            max_response_bytes: 32 << 20,
            inventory: self.inventory.clone(),
        });
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let ep = Endpoint::bind(settings).await.expect("bind the endpoint");
                port_tx.send(ep.local_addr().port()).unwrap();
                ep.serve(app, async {
                    stop_rx.await.ok();
                })
                .await
                .expect("serve");
            });
        });
        self.port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("endpoint bound");
        self.server = Some((stop_tx, server));
    }

    /// Stops serving and collecting and closes the store.
    pub fn stop(&mut self) {
        if let Some((tx, t)) = self.server.take() {
            tx.send(()).ok();
            t.join().unwrap();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.writer.take() {
            w.join().unwrap();
        }
        self.handle = None;
    }

    /// Stops or resumes collecting (the endpoint keeps serving).
    pub fn set_writing(&self, on: bool) {
        self.writing.store(on, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `(oldest, newest)` sealed sequence held, while running.
    pub fn sequences(&self) -> Option<(u64, u64)> {
        let s = self.handle.as_ref()?.status().ok()?;
        Some((s.oldest_sequence?, s.newest_sequence?))
    }

    /// Every sample in the store, `(metric, i label) → [(ts, value bits)]`, with
    /// timestamps at most `until_ms`. Open it while stopped or running.
    pub fn samples(&self, until_ms: i64) -> BTreeMap<(String, String), Vec<(i64, u64)>> {
        let reader = StoreReader::open(&self.dir).expect("open the store read-only");
        let view = reader.view();
        let series = view.series().unwrap();
        let ids: Vec<_> = series.iter().map(|m| m.id).collect();
        let samples = view.samples(&ids, i64::MIN, until_ms).unwrap();
        let mut out = BTreeMap::new();
        for m in &series {
            let key = (m.name.clone(), m.label("i").unwrap_or("").to_owned());
            let v: Vec<(i64, u64)> = samples[&m.id]
                .iter()
                .map(|s| (s.timestamp_ms, s.value.to_bits()))
                .collect();
            out.insert(key, v);
        }
        out
    }
}

impl Drop for StoreAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The federator's configuration for tests: every agent pulled every second.
pub fn federator_config(
    dir: &Path,
    pg: &Central,
    tls: &Path,
    agents: &[(&str, String)],
    metrics_port: u16,
    extra: &str,
) -> PathBuf {
    let mut text = format!(
        "[database]\nurl = \"{}\"\nmax_connections = 4\nconnect_timeout_secs = 2\n\
         [tls]\ncert_file = \"{t}/federator.crt\"\nkey_file = \"{t}/federator.key\"\nca_file = \"{t}/ca.crt\"\n\
         [scrape]\nschedule = \"* * * * * *\"\njitter_ms = 0\nconnect_timeout_secs = 2\n\
         request_timeout_secs = 3\nbackoff_initial_secs = 1\nbackoff_max_secs = 2\n\
         [backfill]\nrequest_bytes = 65536\npause_ms = 0\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{extra}\n",
        pg.url(),
        t = tls.display()
    );
    for (name, url) in agents {
        text.push_str(&format!("[[agents]]\nname = \"{name}\"\nurl = \"{url}\"\n"));
    }
    let path = dir.join("federator.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `pga-federator run` as a child process, killed when dropped.
pub struct Federator {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
}

impl Federator {
    pub fn start(config: &Path) -> Federator {
        let log = config.with_extension("log");
        let mut f = Federator {
            child: None,
            config: config.to_owned(),
            log,
        };
        f.start_again();
        f
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pga-federator"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "pga_federator=debug,info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pga-federator");
        self.child = Some(child);
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "pga-federator exited with {status}:\n{}",
                        self.log_text()
                    );
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "pga-federator did not stop on SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: nothing is let finish.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Federator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- pga-federator log (last lines) ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// `agent_status.last_sequence` of `agent`, if it has a cursor (and the schema
/// and the database are there).
pub fn cursor(pg: &Central, agent: &str) -> Option<u64> {
    pg.psql(&format!(
        "SELECT last_sequence FROM agent_status WHERE agent = '{agent}'"
    ))
    .ok()?
    .trim()
    .parse()
    .ok()
}

/// `last_ts_ms` of `agent`'s cursor.
pub fn cursor_ts(pg: &Central, agent: &str) -> i64 {
    sql(
        pg,
        &format!(
            "SELECT c.last_ts_ms FROM agent_cursors c JOIN agents a ON a.id = c.agent_id \
             WHERE a.name = '{agent}'"
        ),
    )
    .trim()
    .parse()
    .expect("a cursor")
}

/// Every sample of `agent` in the central database, as [`StoreAgent::samples`].
pub fn central_samples(pg: &Central, agent: &str) -> BTreeMap<(String, String), Vec<(i64, u64)>> {
    let out = sql(
        pg,
        &format!(
            "SELECT metric, labels->>'i', (extract(epoch FROM ts) * 1000)::bigint, value \
             FROM metric_samples WHERE agent = '{agent}' ORDER BY metric, labels->>'i', ts"
        ),
    );
    let mut map: BTreeMap<(String, String), Vec<(i64, u64)>> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let v: f64 = f[3].parse().unwrap();
        map.entry((f[0].to_owned(), f[1].to_owned()))
            .or_default()
            .push((f[2].parse().unwrap(), v.to_bits()));
    }
    map
}

/// Checks what the central database holds of `agent` against the agent's store,
/// from `from_ms` on: every sample up to the cursor's `last_ts_ms` equal (same
/// count, same values), nothing that the store does not hold, and no sample twice
/// at all. Returns the number of samples compared.
pub fn assert_same(pg: &Central, agent_name: &str, agent: &StoreAgent, from_ms: i64) -> usize {
    let until = cursor_ts(pg, agent_name);
    let all_central = central_samples(pg, agent_name);
    let store_all = agent.samples(i64::MAX);
    let mut compared = 0;
    let mut store_index: HashMap<(&(String, String), i64), u64> = HashMap::new();
    for (k, v) in &store_all {
        for &(ts, bits) in v {
            store_index.insert((k, ts), bits);
        }
    }
    for (k, v) in &all_central {
        for w in v.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "{agent_name} {k:?}: a sample stored twice at {}",
                w[0].0
            );
        }
        for &(ts, bits) in v.iter().filter(|s| s.0 >= from_ms) {
            assert_eq!(
                store_index.get(&(k, ts)),
                Some(&bits),
                "{agent_name} {k:?} at {ts}: the central sample is not the agent's"
            );
        }
    }
    for (k, v) in &store_all {
        let want: Vec<(i64, u64)> = v
            .iter()
            .copied()
            .filter(|&(ts, _)| ts >= from_ms && ts <= until)
            .collect();
        let got: Vec<(i64, u64)> = all_central
            .get(k)
            .map(|c| {
                c.iter()
                    .copied()
                    .filter(|&(ts, _)| ts >= from_ms && ts <= until)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            got.len(),
            want.len(),
            "{agent_name} {k:?}: {} samples central, {} in the agent's store up to {until}",
            got.len(),
            want.len()
        );
        assert_eq!(got, want, "{agent_name} {k:?}: values differ");
        compared += want.len();
    }
    compared
}

/// Waits until the federator's cursor for `agent_name` reaches the agent's newest
/// sealed block (with collection paused, so it stays put).
pub fn wait_caught_up(pg: &Central, agent_name: &str, agent: &StoreAgent, secs: u64) {
    let newest = agent.sequences().expect("sealed blocks").1;
    wait_until(&format!("{agent_name} caught up to {newest}"), secs, || {
        cursor(pg, agent_name).is_some_and(|c| c >= newest)
    });
}

/// GET of the federator's self-metrics.
pub fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok();
    let mut out = String::new();
    s.read_to_string(&mut out).ok();
    out
}

/// `pga_federator_agent_lag_blocks` of `agent` in a `/metrics` text.
pub fn lag_blocks(metrics: &str, agent: &str) -> Option<i64> {
    let prefix = format!("pga_federator_agent_lag_blocks{{agent=\"{agent}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// `pga-federator migrate --config config`, which must succeed; its output.
pub fn migrate(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-federator"))
        .args(["migrate", "--config"])
        .arg(config)
        .output()
        .expect("run pga-federator migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pga-federator migrate failed:\n{text}"
    );
    text
}
