//! Nothing outlives a test: not after a panic, not after the test process is
//! killed.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use pga_lab::Cluster;

/// Whether `pid` is a live process (a zombie nobody reaped counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ..." — the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn refuses_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

/// Waits up to `secs` for the server to be gone and its directory removed.
fn wait_gone(pid: i32, root: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline && (alive(pid) || root.exists()) {
        sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "postmaster {pid} still running");
    assert!(!root.exists(), "{} still exists", root.display());
}

#[test]
fn a_panicking_test_leaves_nothing_behind() {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let pg = Cluster::builder().start().unwrap();
        tx.send((
            pg.socket_dir().to_path_buf(),
            pg.data_dir().to_path_buf(),
            pg.port(),
            pg.postmaster_pid().unwrap(),
        ))
        .unwrap();
        panic!("the test fails while the cluster is up");
    });
    assert!(thread.join().is_err(), "the thread should have panicked");
    let (root, data_dir, port, pid) = rx.recv().unwrap();
    // Drop ran during unwinding, synchronously: no waiting needed.
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    assert!(!root.exists(), "{} still exists", root.display());
    assert!(!alive(pid), "postmaster {pid} still running");
    assert!(
        refuses_connections(port),
        "port {port} still accepts connections"
    );
}

const HELPER_ENV: &str = "PGA_LAB_ORPHAN_HELPER";

/// Run only by `a_killed_test_process_leaves_nothing_behind`, in a child
/// process that it then kills.
#[test]
#[ignore = "helper: started and killed by a_killed_test_process_leaves_nothing_behind"]
fn orphan_helper() {
    assert!(
        std::env::var_os(HELPER_ENV).is_some(),
        "run by another test only"
    );
    let pg = Cluster::builder().start().unwrap();
    println!(
        "ORPHAN {} {} {}",
        pg.postmaster_pid().unwrap(),
        pg.port(),
        pg.socket_dir().display()
    );
    sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_test_process_leaves_nothing_behind() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "orphan_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("ORPHAN "));
    let Some(line) = line else {
        drop(child.kill());
        panic!("the helper did not start a cluster: {:?}", child.wait());
    };
    let mut fields = line.split(' ').skip(1);
    let pid: i32 = fields.next().unwrap().parse().unwrap();
    let port: u16 = fields.next().unwrap().parse().unwrap();
    let root = PathBuf::from(fields.next().unwrap());
    assert!(alive(pid));
    assert!(root.exists());

    // SIGKILL: no unwinding, no Drop. The watchdog must clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    wait_gone(pid, &root, 15);
    assert!(
        refuses_connections(port),
        "port {port} still accepts connections"
    );
}
