//! Remote-write to real receivers, with real processes: `pga-federator run` pulls
//! agents (the agent's ring store and mTLS endpoint, one-second blocks) into a
//! throwaway PostgreSQL and sends their raw samples to VictoriaMetrics and to
//! Prometheus 2.42 (`--web.enable-remote-write-receiver`), both from Debian. What
//! each receiver holds is read back through its own API and compared with the
//! agents' stores: same count, same values. VictoriaMetrics is stopped for a while
//! and caught up from the agents while the database's ingest goes on; a receiver
//! that refuses some requests (400) has them counted and recorded, never retried.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::pull::*;
use support::url_encode;

type Samples = BTreeMap<(String, String), Vec<(i64, u64)>>;
/// Request bodies received, each with the status answered.
type Seen = Arc<Mutex<Vec<(Vec<u8>, u16)>>>;

/// A receiver process (VictoriaMetrics or Prometheus) on a port of its own, with
/// its data in a directory that outlives a restart; killed when dropped.
struct Receiver {
    program: &'static str,
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Receiver {
    fn victoria(dir: &Path) -> Receiver {
        let port = free_port();
        let data = dir.join("vm-data");
        Receiver::start(
            "victoria-metrics",
            vec![
                format!("-storageDataPath={}", data.display()),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                "-retentionPeriod=1".into(),
                "-loggerLevel=WARN".into(),
            ],
            port,
            dir.join("vm.log"),
        )
    }

    fn prometheus(dir: &Path) -> Receiver {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
        Receiver::start(
            "prometheus",
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-remote-write-receiver".into(),
                "--log.level=warn".into(),
            ],
            port,
            dir.join("prometheus.log"),
        )
    }

    fn start(program: &'static str, args: Vec<String>, port: u16, log: PathBuf) -> Receiver {
        let mut r = Receiver {
            program,
            args,
            port,
            log,
            child: None,
        };
        r.start_again();
        r
    }

    fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {}: {e} (Debian: apt-get install victoria-metrics prometheus; \
                     bench/run-tests installs them)",
                    self.program
                )
            });
        self.child = Some(child);
        let ready = if self.program == "prometheus" {
            "/-/ready"
        } else {
            "/health"
        };
        let port = self.port;
        wait_until(&format!("{} answers", self.program), 60, || {
            get(port, ready).is_some_and(|(s, _)| s == 200)
        });
    }

    /// SIGTERM, and waits for the exit (a clean shutdown keeps what was written).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .ok();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            c.kill().ok();
            c.wait().ok();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// An HTTP/1.0 GET (no chunked answer): status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// What VictoriaMetrics holds of `agent`, through `/api/v1/export`.
fn victoria_samples(port: u16, agent: &str) -> Samples {
    get(port, "/internal/force_flush");
    let (status, body) = get(
        port,
        &format!(
            "/api/v1/export?match[]={}&start=0",
            url_encode(&format!("{{agent=\"{agent}\"}}"))
        ),
    )
    .expect("VictoriaMetrics export");
    assert_eq!(status, 200, "{body}");
    let mut out = Samples::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let m = &v["metric"];
        let key = (
            m["__name__"].as_str().unwrap().to_owned(),
            m["i"].as_str().unwrap_or("").to_owned(),
        );
        let ts = v["timestamps"].as_array().unwrap();
        let vals = v["values"].as_array().unwrap();
        let e = out.entry(key).or_default();
        for (t, x) in ts.iter().zip(vals) {
            e.push((t.as_i64().unwrap(), x.as_f64().unwrap().to_bits()));
        }
        e.sort();
    }
    out
}

/// What Prometheus holds of `agent`: raw samples through a range selector.
fn prometheus_samples(port: u16, agent: &str) -> Samples {
    let now = now_ms() as f64 / 1000.0;
    let (status, body) = get(
        port,
        &format!(
            "/api/v1/query?query={}&time={now:.3}",
            url_encode(&format!("{{agent=\"{agent}\"}}[30m]"))
        ),
    )
    .expect("Prometheus query");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = Samples::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let m = &s["metric"];
        let key = (
            m["__name__"].as_str().unwrap().to_owned(),
            m["i"].as_str().unwrap_or("").to_owned(),
        );
        let e = out.entry(key).or_default();
        for p in s["values"].as_array().unwrap() {
            let ts = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let x: f64 = p[1].as_str().unwrap().parse().unwrap();
            e.push((ts, x.to_bits()));
        }
    }
    out
}

/// `remote_write_cursors.last_sequence` of `destination` for `agent`.
fn remote_cursor(pg: &Central, destination: &str, agent: &str) -> Option<u64> {
    pg.psql(&format!(
        "SELECT c.last_sequence FROM remote_write_cursors c JOIN agents a ON a.id = c.agent_id \
         WHERE c.destination = '{destination}' AND a.name = '{agent}'"
    ))
    .ok()?
    .trim()
    .parse()
    .ok()
}

fn remote_cursor_ts(pg: &Central, destination: &str, agent: &str) -> i64 {
    sql(
        pg,
        &format!(
            "SELECT c.last_ts_ms FROM remote_write_cursors c JOIN agents a ON a.id = c.agent_id \
             WHERE c.destination = '{destination}' AND a.name = '{agent}'"
        ),
    )
    .trim()
    .parse()
    .expect("a remote-write cursor")
}

/// The agent's samples up to `until_ms`, for comparison.
fn store_until(agent: &StoreAgent, until_ms: i64) -> Samples {
    agent
        .samples(until_ms)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn count(s: &Samples) -> usize {
    s.values().map(Vec::len).sum()
}

fn destination(name: &str, url: &str) -> String {
    format!(
        "[[remote_write]]\nname = \"{name}\"\nurl = \"{url}\"\nmax_samples_per_request = 500\n\
         max_shards = 2\nretry_initial_ms = 100\nretry_max_secs = 1\ntimeout_secs = 5\n"
    )
}

/// The `[[remote_write]]` table of [`destination`] with the bearer token [`picky`]
/// wants, written to a file in `dir`.
fn with_token(dir: &Path, name: &str, url: &str) -> String {
    let token = dir.join("token");
    std::fs::write(&token, "secret-token\n").unwrap();
    format!(
        "{}bearer_token_file = \"{}\"\n",
        destination(name, url),
        token.display()
    )
}

#[test]
fn every_sample_reaches_victoriametrics_and_prometheus_and_an_outage_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let pg = central();
    let opts = SimOptions {
        series: 30,
        ..SimOptions::default()
    };
    let agents: Vec<(String, StoreAgent)> = (1..=3)
        .map(|i| {
            let name = format!("a{i}");
            let a = StoreAgent::start(&dir.path().join(&name), &tls, opts);
            (name, a)
        })
        .collect();
    let mut vm = Receiver::victoria(dir.path());
    let prom = Receiver::prometheus(dir.path());
    let mport = free_port();
    let extra = format!(
        "{}raw_home = true\n{}",
        destination("vm", &vm.url()),
        destination("prom", &prom.url())
    );
    let list: Vec<(&str, String)> = agents.iter().map(|(n, a)| (n.as_str(), a.url())).collect();
    let cfg = federator_config(dir.path(), &pg, &tls, &list, mport, &extra);
    let mut fed = Federator::start(&cfg);
    wait_until(
        "both destinations have taken sealed blocks of every agent",
        60,
        || {
            agents.iter().all(|(n, _)| {
                remote_cursor(&pg, "vm", n).is_some_and(|c| c >= 3)
                    && remote_cursor(&pg, "prom", n).is_some_and(|c| c >= 3)
            })
        },
    );

    // The query layer says where raw samples live: VictoriaMetrics, the raw home.
    assert_eq!(
        sql(
            &pg,
            "SELECT raw_home, url, postgresql_keeps_raw, older_raw_samples, copies_in \
             FROM pga_raw_home"
        )
        .trim(),
        format!(
            "vm|{0}|7 days|in remote-write destination vm ({0}), for as long as it keeps \
             them|prom",
            vm.url()
        )
    );

    // VictoriaMetrics goes away for 20 s (PGA_TEST_OUTAGE_SECS to try a longer
    // outage, such as the 10 minutes of docs/scaling.md): the database's ingest goes on.
    let outage: u64 = std::env::var("PGA_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    vm.stop();
    let pg_before = cursor(&pg, "a1").unwrap();
    let vm_before = remote_cursor(&pg, "vm", "a1").unwrap();
    std::thread::sleep(Duration::from_secs(outage));
    let pg_during = cursor(&pg, "a1").unwrap();
    let vm_during = remote_cursor(&pg, "vm", "a1").unwrap();
    assert!(
        pg_during >= pg_before + 12,
        "the database's ingest kept going while VictoriaMetrics was down: cursor {pg_before} \
         → {pg_during}"
    );
    assert!(
        vm_during <= vm_before + 3,
        "VictoriaMetrics' cursor stayed while it was down: {vm_before} → {vm_during}"
    );
    let m = metrics(mport);
    assert!(
        m.contains("pga_federator_remote_write_up{destination=\"vm\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("pga_federator_remote_write_up{destination=\"prom\"} 1"),
        "{m}"
    );
    vm.start_again();

    // Caught up from the agents' stores.
    std::thread::sleep(Duration::from_secs(2));
    for (_, a) in &agents {
        a.set_writing(false);
    }
    for (n, a) in &agents {
        let newest = a.sequences().expect("sealed blocks").1;
        wait_until(
            &format!("both destinations caught up with {n} ({newest})"),
            60 + outage / 2,
            || {
                remote_cursor(&pg, "vm", n).is_some_and(|c| c >= newest)
                    && remote_cursor(&pg, "prom", n).is_some_and(|c| c >= newest)
            },
        );
    }
    let m = metrics(mport);
    assert!(
        m.contains("pga_federator_remote_write_up{destination=\"vm\"} 1"),
        "{m}"
    );
    fed.stop();

    let mut compared = 0;
    for (n, a) in &agents {
        for (dest, read) in [
            (
                "vm",
                &(|a: &str| victoria_samples(vm.port, a)) as &dyn Fn(&str) -> Samples,
            ),
            ("prom", &|a: &str| prometheus_samples(prom.port, a)),
        ] {
            let until = remote_cursor_ts(&pg, dest, n);
            let want = store_until(a, until);
            let mut got = read(n);
            // VictoriaMetrics makes freshly written samples searchable within a second
            // or two: read until the count settles.
            let deadline = Instant::now() + Duration::from_secs(20);
            while count(&got) < count(&want) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
                got = read(n);
            }
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{dest} {n}: series"
            );
            for (k, w) in &want {
                let g = &got[k];
                assert_eq!(
                    g.len(),
                    w.len(),
                    "{dest} {n} {k:?}: {} samples at the receiver, {} in the agent's store",
                    g.len(),
                    w.len()
                );
                if dest == "prom" {
                    assert_eq!(g, w, "{dest} {n} {k:?}: values differ");
                    continue;
                }
                // VictoriaMetrics stores a value as a decimal of about 12 significant
                // digits: its values equal the agent's to that precision, its
                // timestamps exactly.
                for (&(gt, gv), &(wt, wv)) in g.iter().zip(w) {
                    let (gv, wv) = (f64::from_bits(gv), f64::from_bits(wv));
                    assert!(
                        gt == wt && (gv - wv).abs() <= wv.abs() * 1e-11,
                        "{dest} {n} {k:?}: ({gt}, {gv}) at the receiver, ({wt}, {wv}) in the store"
                    );
                }
            }
            compared += count(&want);
        }
    }
    assert!(compared > 20_000, "compared {compared} samples");
    assert_eq!(
        sql(
            &pg,
            "SELECT count(*), bool_or(behind_database), sum(gaps) FROM remote_write_status"
        )
        .trim(),
        "6|f|0",
        "each destination's position per agent, none behind the database"
    );
    assert_eq!(
        sql(&pg, "SELECT count(*) FROM remote_write_gaps").trim(),
        "0"
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT coalesce(sum(samples_rejected), 0) FROM remote_write_cursors"
        )
        .trim(),
        "0"
    );
}

/// A receiver that wants the bearer token `secret-token` and refuses every third
/// request with 400 (as Mimir refuses samples out of its window), or answers 503 to
/// everything while `down`; `/loop` redirects to itself; any other path is a web
/// page's 404.
struct Picky {
    port: u16,
    /// Every request body received, with the status answered.
    seen: Seen,
    down: Arc<std::sync::atomic::AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

fn picky() -> Picky {
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::post;

    let seen: Seen = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s = seen.clone();
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = down.clone();
    let app = Router::new()
        .route(
            "/api/v1/write",
            post(move |headers: HeaderMap, body: Bytes| {
                let (s, d) = (s.clone(), d.clone());
                async move {
                    if headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        != Some("Bearer secret-token")
                    {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    if d.load(std::sync::atomic::Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    assert_eq!(headers["content-encoding"], "snappy");
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    assert_eq!(headers["x-prometheus-remote-write-version"], "0.1.0");
                    assert!(
                        headers[header::USER_AGENT]
                            .to_str()
                            .unwrap()
                            .starts_with("pga-federator/")
                    );
                    let mut seen = s.lock().unwrap();
                    let status = if seen.len() % 3 == 2 { 400 } else { 204 };
                    seen.push((body.to_vec(), status));
                    if status == 400 {
                        (StatusCode::BAD_REQUEST, "out of order sample\n").into_response()
                    } else {
                        StatusCode::NO_CONTENT.into_response()
                    }
                }
            }),
        )
        .route(
            "/loop",
            post(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/html")],
                "<!DOCTYPE html><html><body>Not Found</body></html>",
            )
        });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(listener, app).await.ok() });
    Picky {
        port,
        seen,
        down,
        _rt: rt,
    }
}

/// Samples in a request body (snappy, then protobuf).
fn samples_in(body: &[u8]) -> (u64, Vec<(String, i64)>) {
    use prost::Message;
    let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    let req = pga_federator::remote_write::encode::WriteRequest::decode(&raw[..]).unwrap();
    let mut n = 0;
    let mut keys = Vec::new();
    for ts in &req.timeseries {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "labels sorted by name");
        assert!(names.contains(&"__name__") && names.contains(&"agent"));
        assert!(
            ts.samples
                .windows(2)
                .all(|w| w[0].timestamp < w[1].timestamp)
        );
        n += ts.samples.len() as u64;
        let id = format!("{:?}", ts.labels);
        keys.extend(ts.samples.iter().map(|s| (id.clone(), s.timestamp)));
    }
    (n, keys)
}

#[test]
fn refused_samples_are_counted_and_recorded_and_a_web_page_is_no_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let pg = central();
    let a1 = StoreAgent::start(&dir.path().join("a1"), &tls, SimOptions::default());
    let server = picky();
    let mport = free_port();
    let extra = format!(
        "{}{}{}",
        with_token(
            dir.path(),
            "picky",
            &format!("http://127.0.0.1:{}/api/v1/write", server.port)
        ),
        destination(
            "typo",
            &format!("http://127.0.0.1:{}/api/v1/wirte", server.port)
        ),
        destination("loop", &format!("http://127.0.0.1:{}/loop", server.port))
    );
    let cfg = federator_config(dir.path(), &pg, &tls, &[("a1", a1.url())], mport, &extra);
    let mut fed = Federator::start(&cfg);
    wait_until("the picky receiver has refused a few requests", 60, || {
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.1 == 400)
            .count()
            >= 3
    });
    a1.set_writing(false);
    let newest = a1.sequences().unwrap().1;
    wait_until(
        "the picky destination has gone past every block",
        30,
        || remote_cursor(&pg, "picky", "a1").is_some_and(|c| c >= newest),
    );
    // A few rounds more: nothing is sent again.
    std::thread::sleep(Duration::from_secs(3));
    let m = metrics(mport);
    fed.stop();

    let seen = server.seen.lock().unwrap().clone();
    let mut sample_keys: HashMap<(String, i64), usize> = HashMap::new();
    let (mut refused, mut refused_requests) = (0u64, 0u64);
    for (body, status) in &seen {
        let (n, keys) = samples_in(body);
        for k in keys {
            *sample_keys.entry(k).or_default() += 1;
        }
        if *status == 400 {
            refused += n;
            refused_requests += 1;
        }
    }
    assert!(
        sample_keys.values().all(|&n| n == 1),
        "no sample was sent twice: a refused request is never retried"
    );
    let recorded = sql(
        &pg,
        "SELECT count(*), sum(samples), min(status), max(status), min(detail) \
         FROM remote_write_rejections WHERE destination = 'picky'",
    );
    assert_eq!(
        recorded.trim(),
        format!("{refused_requests}|{refused}|400|400|answered 400: out of order sample"),
    );
    assert_eq!(
        sql(
            &pg,
            "SELECT samples_rejected FROM remote_write_cursors WHERE destination = 'picky'"
        )
        .trim(),
        refused.to_string()
    );
    assert!(
        m.contains(&format!(
            "pga_federator_remote_write_samples_rejected_total{{destination=\"picky\"}} {refused}"
        )),
        "{m}"
    );
    // Every sealed sample was offered exactly once: acknowledged or refused.
    let until = remote_cursor_ts(&pg, "picky", "a1");
    assert_eq!(sample_keys.len(), count(&store_until(&a1, until)));

    // The typo: a clear error for that destination only; nothing advanced for it.
    let log = fed.log_text();
    assert!(
        log.contains("remote-write destination typo")
            && log.contains(
                "ERROR pga_federator::remote_write: remote-write destination misconfigured"
            )
            && log.contains("is not usable as a remote-write receiver")
            && log.contains("answered 404"),
        "{log}"
    );
    assert_eq!(remote_cursor(&pg, "typo", "a1"), None);
    assert!(
        m.contains("pga_federator_remote_write_up{destination=\"typo\"} 0"),
        "{m}"
    );
    // A redirect loop: said as such, for that destination alone.
    assert!(
        log.contains("remote-write destination loop")
            && log.contains("answered 302 (a redirect to /loop)"),
        "{log}"
    );
    assert_eq!(remote_cursor(&pg, "loop", "a1"), None);
    assert!(cursor(&pg, "a1").is_some_and(|c| c >= newest));
    // No destination is the raw home: raw samples live in PostgreSQL alone.
    assert_eq!(
        sql(
            &pg,
            "SELECT raw_home, url IS NULL, postgresql_raw_secs, older_raw_samples, copies_in \
             FROM pga_raw_home"
        )
        .trim(),
        "PostgreSQL|t|604800|nowhere: dropped by the retention; the 1-minute and 1-hour \
         rollups remain|loop, picky, typo"
    );
}

#[test]
fn blocks_evicted_before_a_destination_got_them_are_its_gap_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let pg = central();
    // The agent keeps 6 s of blocks: a destination down longer loses some (the
    // database, pulled every second, none).
    let a1 = StoreAgent::start(
        &dir.path().join("a1"),
        &tls,
        SimOptions {
            retention_ms: 6_000,
            ..SimOptions::default()
        },
    );
    let server = picky();
    let mport = free_port();
    let extra = with_token(
        dir.path(),
        "late",
        &format!("http://127.0.0.1:{}/api/v1/write", server.port),
    );
    let cfg = federator_config(dir.path(), &pg, &tls, &[("a1", a1.url())], mport, &extra);
    let mut fed = Federator::start(&cfg);
    wait_until("the destination has taken blocks", 60, || {
        remote_cursor(&pg, "late", "a1").is_some_and(|c| c >= 2)
    });
    server.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let before = remote_cursor(&pg, "late", "a1").unwrap();
    std::thread::sleep(Duration::from_secs(14));
    server
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let newest = a1.sequences().unwrap().1;
    wait_until("the destination is past the gap", 30, || {
        remote_cursor(&pg, "late", "a1").is_some_and(|c| c >= newest)
    });
    let m = metrics(mport);
    fed.stop();
    let gap = sql(
        &pg,
        "SELECT first_sequence, last_sequence, after_ts IS NOT NULL, before_ts IS NOT NULL          FROM remote_write_gaps WHERE destination = 'late'",
    );
    let f: Vec<&str> = gap.trim().split('|').collect();
    assert_eq!(f.len(), 4, "one gap recorded: {gap}");
    let (first, last): (u64, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
    assert!(
        first > before && last >= first + 3,
        "blocks {first}..={last} lost there, after the cursor {before}"
    );
    assert_eq!(&f[2..], ["t", "t"], "the lost time range is bounded");
    assert!(
        m.contains("pga_federator_remote_write_gap_blocks_total{destination=\"late\"}"),
        "{m}"
    );
    // The database kept up: the gap is the destination's alone.
    assert_eq!(sql(&pg, "SELECT count(*) FROM gaps").trim(), "0");
    // Nothing of the lost blocks was sent; everything after them was, once.
    let mut keys: HashMap<(String, i64), usize> = HashMap::new();
    for (body, status) in server.seen.lock().unwrap().iter() {
        if *status != 503 {
            for k in samples_in(body).1 {
                *keys.entry(k).or_default() += 1;
            }
        }
    }
    assert!(keys.values().all(|&n| n == 1), "no sample sent twice");
}
