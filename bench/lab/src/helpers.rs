//! What tests and benchmarks of every crate need beside a cluster: a free port, the
//! wall clock in milliseconds, waiting for a condition, one plain HTTP GET, a child
//! process (an agent, a federator, a Prometheus) whose standard error is kept and
//! which is killed when dropped, and a deterministic random source for test data.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// xorshift64: a small deterministic random source, good enough for test data; the
/// same seed (not 0) gives the same numbers on every machine.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Below `n` (not 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Polls `f` every 200 ms until it holds; panics naming `what` after `secs`.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One answer to [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status: String,
    /// The body as sent (a chunked body keeps its chunk sizes).
    pub body: String,
}

/// `GET path` over plain HTTP/1.1 on 127.0.0.1:`port`, the connection closed after
/// it; reads for at most `timeout`.
pub fn http_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok(HttpResponse {
        status: head.lines().next().unwrap_or("").to_owned(),
        body: body.to_owned(),
    })
}

/// A running child process, killed and reaped when dropped (also when a test
/// panics); each line of its standard error is kept, for waiting on and for the
/// message of a failed assertion.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts `command` with standard error captured (and standard input closed).
    pub fn start(command: &mut Command) -> std::io::Result<Spawned> {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            });
        }
        Ok(Spawned { child, log })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Its standard error so far.
    pub fn log_text(&self) -> String {
        self.lines().join("\n")
    }

    /// Every line of its standard error so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines().clone()
    }

    /// How many lines of its standard error match `pred`.
    pub fn count_log(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.lines().iter().filter(|l| pred(l)).count()
    }

    /// Waits for a line of standard error matching `pred`; panics after `secs` with
    /// the whole log.
    pub fn wait_log(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.count_log(&pred) == 0 {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Already gone is fine: either way the process is reaped.
        if self.child.kill().is_ok() {
            drop(self.child.wait());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_process_is_heard_and_killed_on_drop() {
        let p = Spawned::start(Command::new("sh").args(["-c", "echo one >&2; sleep 60"])).unwrap();
        p.wait_log("the first line", 10, |l| l == "one");
        let pid = p.id();
        drop(p);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_port_is_free_and_the_clock_is_in_milliseconds() {
        // Another process (the suite runs PostgreSQL clusters, proxies and servers
        // beside this test) may take a port between free_port and the bind: that
        // race is the helper's documented limit, so one of three tries must bind.
        let bound = (0..3).any(|_| {
            let port = free_port().unwrap();
            port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        assert!(bound, "no port free_port gave could be bound");
        assert!(now_ms() > 1_600_000_000_000);
    }
}
