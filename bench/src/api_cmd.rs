//! `pga-bench api`: the federator's HTTP API under load while ingest runs.
//!
//! Starts a throwaway PostgreSQL, simulated agents ([`crate::simagent`]) and the real
//! `pga-federator run` (release build, next to this binary or `--federator`) with
//! the API on loopback and those agents in its configuration, so the API and
//! ingest share one process, one machine and one database. Seeds one series with
//! 24 h of 1-minute rollups and `--list-agents` API agents, then measures with
//! `--clients` concurrent keep-alive clients, each phase `--secs` long:
//!
//! - the list route (`GET /api/v1/agents`, every agent with its pull status) with an
//!   API token;
//! - the query route (`GET /api/v1/query`, the seeded series, 24 h, step 1 m, `avg`)
//!   with an API token;
//! - sign-ins (`POST /api/v1/auth/login`, Argon2id at the defaults) under the hashing
//!   bound (`api.hash_concurrency`).
//!
//! Goals: p99 under 50 ms on the query route, over 2,000 authenticated requests/s on
//! the list route.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use pga_format::AgentId;
use pga_lab::Cluster;

use crate::simagent::{Layout, SimAgent, Templates, serve};

/// Measure the federator's HTTP API while it ingests.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds each phase is measured.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Simulated agents ingested meanwhile (every 15 s).
    #[arg(long, default_value_t = 20)]
    pub agents: u64,
    /// Series per simulated agent.
    #[arg(long, default_value_t = 2000)]
    pub series: u64,
    /// Agents the list route returns (added through the API, not pulled).
    #[arg(long, default_value_t = 50)]
    pub list_agents: u64,
    /// Passwords hashed at once (api.hash_concurrency).
    #[arg(long, default_value_t = 1)]
    pub hash_concurrency: u32,
    /// The pga-federator binary (default: next to pga-bench).
    #[arg(long)]
    pub federator: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One phase's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What `pga-bench api` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiReport {
    pub clients: usize,
    pub agents_ingested: u64,
    pub series_per_agent: u64,
    pub samples_ingested_during_run: i64,
    pub phases: Vec<Phase>,
    pub query_p99_goal_met: bool,
    pub list_rps_goal_met: bool,
}

const PASSWORD: &str = "bench password, long enough";

/// A keep-alive HTTP/1.1 client on one connection.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Client {
    async fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Client {
            sender,
            authority: addr.to_owned(),
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// One request to send: method, path, bearer token, JSON body.
type Request = (String, String, Option<String>, Option<String>);
/// Makes each client's next request.
type MakeRequest = Arc<dyn Fn() -> Request + Send + Sync>;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// `clients` connections sending `(method, path, body)` for `secs`; each request
/// must answer `ok`.
async fn phase(
    name: &str,
    addr: &str,
    clients: usize,
    secs: u64,
    ok: u16,
    request: MakeRequest,
) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (addr, request) = (addr.to_owned(), request.clone());
        tasks.spawn(async move {
            let mut c = Client::connect(&addr).await?;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let (method, path, token, body) = request();
                let t = Instant::now();
                match c
                    .send(&method, &path, token.as_deref(), body.as_deref())
                    .await
                {
                    Ok((status, _)) if status == ok => lat.push(t.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        c = Client::connect(&addr).await?;
                    }
                }
            }
            anyhow::Ok((lat, errors))
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (lat, e) = r??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Ok(Phase {
        name: name.to_owned(),
        requests: all.len() as u64,
        errors,
        per_sec: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// `pga-bench api`.
pub fn run(args: &ApiArgs) -> anyhow::Result<()> {
    let federator = match &args.federator {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("locating pga-federator next to pga-bench")?
            .join("pga-federator"),
    };
    if !federator.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p pga-federator -p pga-bench) or pass --federator PATH",
            federator.display()
        );
    }
    let report = measure(args, &federator)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn measure(args: &ApiArgs, federator: &std::path::Path) -> anyhow::Result<ApiReport> {
    let pg = Cluster::builder()
        .setting("synchronous_commit", "off")
        .start()
        .context("starting PostgreSQL")?;
    pg.create_database("central")?;
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let interval_ms = 10_000;
    let collections = 60;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let head_start = now - now.rem_euclid(collections as i64 * interval_ms);
    eprintln!(
        "building {} simulated agents of {} series…",
        args.agents, args.series
    );
    let templates = Arc::new(Templates::build(
        args.series,
        Layout {
            blocks: 0,
            collections,
            head_collections: collections,
            interval_ms,
            head_start_ms: head_start,
        },
    )?);
    let ports = rt.block_on(async {
        let started = Instant::now();
        let mut ports = Vec::new();
        for i in 0..args.agents {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i + 1).to_le_bytes());
            ports.push(
                serve(SimAgent {
                    agent_id: AgentId(id),
                    templates: templates.clone(),
                    started,
                })
                .await?,
            );
        }
        anyhow::Ok(ports)
    })?;

    let key = dir.path().join("jwt.key");
    let status = Command::new(federator)
        .args(["keygen", "--out"])
        .arg(&key)
        .status()?;
    ensure!(status.success(), "pga-federator keygen failed");
    let (api_port, metrics_port) = (pga_lab::free_port()?, pga_lab::free_port()?);
    let mut toml = format!(
        "[database]\nurl = \"{}\"\nmax_connections = 8\n[scrape]\nschedule = \"*/15 * * * * *\"\njitter_ms = 14000\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [api]\nlisten = \"127.0.0.1:{api_port}\"\ninsecure_plaintext = true\njwt_key_file = \"{}\"\n\
         hash_concurrency = {}\nmax_db_connections = 8\n",
        pg.url("central"),
        key.display(),
        args.hash_concurrency
    );
    for (i, p) in ports.iter().enumerate() {
        toml.push_str(&format!(
            "[[agents]]\nname = \"sim-{i}\"\nurl = \"http://127.0.0.1:{p}\"\n"
        ));
    }
    let config = dir.path().join("federator.toml");
    std::fs::write(&config, toml)?;
    let status = Command::new(federator)
        .args(["migrate", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "pga-federator migrate failed");
    let mut add = Command::new(federator)
        .args([
            "users",
            "add",
            "bench",
            "--role",
            "admin",
            "--password-stdin",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    add.stdin
        .take()
        .context("stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    ensure!(add.wait()?.success(), "pga-federator users add failed");

    // One series with 24 h of 1-minute rollups.
    pg.psql(
        "central",
        "SELECT pga_ensure_partitions(ARRAY(SELECT now() - d * interval '1 day' FROM generate_series(0, 2) d)); \
         INSERT INTO agents (name) VALUES ('bench-data'); \
         INSERT INTO series (agent_id, metric, labels, kind) \
           SELECT id, 'bench_level', '{\"db\": \"app\"}', 'gauge' FROM agents WHERE name = 'bench-data'; \
         INSERT INTO samples_1m (series_id, bucket, count, sum, min, max, last) \
           SELECT s.id, b, 6, 6 * random(), 0, 1, random() FROM series s, \
             generate_series(date_trunc('minute', now()) - interval '24 hours', date_trunc('minute', now()), interval '1 minute') b \
           WHERE s.metric = 'bench_level';",
    )?;

    let log = std::fs::File::create(dir.path().join("federator.log"))?;
    let _fed = Killed(
        Command::new(federator)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    let addr = format!("127.0.0.1:{api_port}");
    let samples = |pg: &Cluster| -> i64 {
        pg.psql("central", "SELECT count(*) FROM pga_samples")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let report = rt.block_on(async {
        let t = Instant::now();
        let mut c = loop {
            if let Ok(c) = Client::connect(&addr).await {
                break c;
            }
            ensure!(t.elapsed() < Duration::from_secs(60), "the API did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let login = format!("{{\"username\": \"bench\", \"password\": \"{PASSWORD}\"}}");
        let access = loop {
            let (status, body) = c.send("POST", "/api/v1/auth/login", None, Some(&login)).await?;
            if status == 200 {
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                break v["access_token"].as_str().unwrap_or_default().to_owned();
            }
            ensure!(t.elapsed() < Duration::from_secs(60), "sign-in failed: {status}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let (status, body) = c
            .send("POST", "/api/v1/me/tokens", Some(&access), Some("{\"name\": \"bench\", \"scopes\": [\"read\"]}"))
            .await?;
        ensure!(status == 201, "token creation: {status}");
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let token = v["secret"].as_str().unwrap_or_default().to_owned();
        for i in 0..args.list_agents {
            let b = format!("{{\"name\": \"listed-{i}\", \"url\": \"http://127.0.0.1:9\", \"enabled\": false}}");
            let (status, _) = c.send("POST", "/api/v1/agents", Some(&access), Some(&b)).await?;
            ensure!(status == 201, "adding agents: {status}");
        }
        eprintln!("warming up: ingest of {} agents for 20 s…", args.agents);
        tokio::time::sleep(Duration::from_secs(20)).await;
        let before = samples(&pg);
        let mut phases = Vec::new();
        let tk = token.clone();
        eprintln!("list route, {} clients, {} s…", args.clients, args.secs);
        phases.push(
            phase("GET /api/v1/agents?limit=100 (API token)", &addr, args.clients, args.secs, 200, Arc::new(move || {
                ("GET".into(), "/api/v1/agents?limit=100".into(), Some(tk.clone()), None)
            }))
            .await?,
        );
        let tk = token.clone();
        eprintln!("query route, {} clients, {} s…", args.clients, args.secs);
        phases.push(
            phase("GET /api/v1/query 24 h of 1-min rollups (API token)", &addr, args.clients, args.secs, 200, Arc::new(move || {
                let end = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                (
                    "GET".into(),
                    format!("/api/v1/query?selector=bench_level%7Bdb%3D%22app%22%7D&start={}&end={end}&step=1m&fn=avg", end - 86_400),
                    Some(tk.clone()),
                    None,
                )
            }))
            .await?,
        );
        let ac = access.clone();
        phases.push(
            phase("GET /api/v1/agents?limit=100 (JWT)", &addr, args.clients, args.secs, 200, Arc::new(move || {
                ("GET".into(), "/api/v1/agents?limit=100".into(), Some(ac.clone()), None)
            }))
            .await?,
        );
        eprintln!("sign-ins, {} clients, {} s…", args.clients, args.secs);
        let body = login.clone();
        phases.push(
            phase("POST /api/v1/auth/login (Argon2id)", &addr, args.clients, args.secs, 200, Arc::new(move || {
                ("POST".into(), "/api/v1/auth/login".into(), None, Some(body.clone()))
            }))
            .await?,
        );
        let ingested = samples(&pg) - before;
        anyhow::Ok(ApiReport {
            clients: args.clients,
            agents_ingested: args.agents,
            series_per_agent: args.series,
            samples_ingested_during_run: ingested,
            query_p99_goal_met: phases[1].p99_ms < 50.0,
            list_rps_goal_met: phases[0].per_sec > 2000.0,
            phases,
        })
    })?;
    ensure!(
        report.samples_ingested_during_run > 0,
        "ingest did not run during the measurement"
    );
    Ok(report)
}

fn render(r: &ApiReport) -> String {
    let mut out = format!(
        "{} clients; ingest of {} agents × {} series every 15 s meanwhile ({} samples stored during the phases)\n\n",
        r.clients, r.agents_ingested, r.series_per_agent, r.samples_ingested_during_run
    );
    out.push_str(&format!(
        "{:<54}{:>10}{:>8}{:>10}{:>9}{:>9}{:>9}\n",
        "phase", "requests", "errors", "per s", "p50 ms", "p99 ms", "max ms"
    ));
    for p in &r.phases {
        out.push_str(&format!(
            "{:<54}{:>10}{:>8}{:>10.0}{:>9.1}{:>9.1}{:>9.1}\n",
            p.name, p.requests, p.errors, p.per_sec, p.p50_ms, p.p99_ms, p.max_ms
        ));
    }
    out.push_str(&format!(
        "\ngoal: query p99 < 50 ms: {}; list > 2000 requests/s: {}\n",
        if r.query_p99_goal_met {
            "met"
        } else {
            "NOT met"
        },
        if r.list_rps_goal_met {
            "met"
        } else {
            "NOT met"
        }
    ));
    out
}
