//! `pga-bench backfill --victoria-metrics`: the same agent's blocks sent by the
//! federator's remote-write (its destination loop, [`pga_federator::remote_write`])
//! to a VictoriaMetrics started for the run, while the database's backfill runs.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use pga_federator::config::parse_schedule;
use pga_federator::db::sink::Sink;
use pga_federator::notify::http::{Auth, Client};
use pga_federator::pull::scheduler::{AgentJob, FleetJob};
use pga_federator::pull::{AgentClient, Pacing};
use pga_federator::remote_write::send::Retry;
use pga_federator::remote_write::{self, RemoteWrite, RemoteWriteMetrics};
use tokio::sync::watch;

/// A running destination and its receiver.
pub struct Running {
    vm: Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// Resolves to the time until every block was acknowledged.
    done: tokio::task::JoinHandle<anyhow::Result<f64>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts VictoriaMetrics and the destination loop for agent `bench`.
pub async fn start(
    sink: &Sink,
    client: AgentClient,
    pacing: Pacing,
    blocks: u64,
) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let port = pga_lab::free_port()?;
    let vm = Command::new("victoria-metrics")
        .arg(format!(
            "-storageDataPath={}",
            dir.path().join("vm").display()
        ))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-loggerLevel=WARN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting victoria-metrics (Debian: apt-get install victoria-metrics)")?;
    let health = Client::new(
        &format!("http://127.0.0.1:{port}/health"),
        None,
        Auth::None,
        Duration::from_secs(2),
    )?;
    let t = Instant::now();
    while health
        .post("/health", "text/plain", Vec::new(), &[])
        .await
        .is_err()
    {
        ensure!(
            t.elapsed() < Duration::from_secs(30),
            "VictoriaMetrics did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The agent's row, which the database's first batch would make.
    sqlx::query("INSERT INTO agents (name) VALUES ('bench') ON CONFLICT DO NOTHING")
        .execute(sink.pool())
        .await?;
    let dest = Arc::new(RemoteWrite::new(
        "vm".into(),
        Client::new(
            &format!("http://127.0.0.1:{port}/api/v1/write"),
            None,
            Auth::None,
            Duration::from_secs(30),
        )?,
        sink.pool().clone(),
        5000,
        Retry {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        },
        RemoteWriteMetrics::default(),
    ));
    let job = FleetJob {
        spec: "bench".into(),
        job: AgentJob {
            name: "bench".into(),
            client,
            schedule: parse_schedule("* * * * * *")?,
            labels: BTreeMap::new(),
        },
    };
    let (_keep, fleet) = watch::channel(vec![job]);
    let (stop, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let _keep = _keep;
        remote_write::run(
            dest,
            fleet,
            parse_schedule("* * * * * *").expect("a schedule"),
            pacing,
            1,
            stop_rx,
        )
        .await;
    });
    let pool = sink.pool().clone();
    let done = tokio::spawn(async move {
        loop {
            let c: Option<(Option<i64>,)> = sqlx::query_as(
                "SELECT last_sequence FROM remote_write_cursors WHERE destination = 'vm'",
            )
            .fetch_optional(&pool)
            .await?;
            if c.and_then(|c| c.0).is_some_and(|s| s as u64 >= blocks) {
                return Ok(started.elapsed().as_secs_f64());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(600),
                "remote-write did not catch up within 600 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Ok(Running {
        vm,
        port,
        _dir: dir,
        done,
        stop,
        task,
    })
}

impl Running {
    /// Waits until every block is acknowledged, checks what VictoriaMetrics took in,
    /// and prints the figures beside the database's.
    pub async fn finish(mut self, sink: &Sink, samples: u64, db_secs: f64) -> anyhow::Result<()> {
        let secs = (&mut self.done).await??;
        self.stop.send_replace(true);
        (&mut self.task).await.ok();
        let (sent,): (i64,) = sqlx::query_as(
            "SELECT samples_sent FROM remote_write_cursors WHERE destination = 'vm'",
        )
        .fetch_one(sink.pool())
        .await?;
        let metrics = http_get(self.port, "/metrics").await?;
        let inserted: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("vm_rows_inserted_total{type=\"promremotewrite\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        ensure!(
            sent as u64 == samples && inserted as u64 == samples,
            "remote-write: {sent} samples acknowledged, VictoriaMetrics inserted {inserted}, \
             the agent holds {samples}"
        );
        println!(
            "  remote-write to VictoriaMetrics at the same time: {samples} samples in {secs:.2} s \
             ({:.0} samples/s; VictoriaMetrics inserted {inserted:.0}); the database's \
             backfill beside it took {db_secs:.2} s",
            samples as f64 / secs
        );
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.vm.kill().ok();
        self.vm.wait().ok();
    }
}

/// A GET over plain HTTP/1.0 (VictoriaMetrics' own metrics).
async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
