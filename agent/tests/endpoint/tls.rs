//! The endpoint's TLS layer against a running `pga-agent run`: who gets in and who
//! does not (and gets no HTTP byte), certificate and CRL rotation without a
//! restart, slow and hostile clients cut off while collection and other clients go
//! on, and the configurations the agent refuses.
//!
//! Certificates are made here with rcgen; the clients are raw tokio-rustls clients
//! that send one `GET /metrics` and return everything they read.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::endpoint::*;
use crate::support::{Agent, free_port};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_matrix_and_rotation_without_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = Ca::new("pga test CA");
    let other_ca = Ca::new("some other CA");
    let agent_cert = ca.server(1, "agent-1");
    write(&d.join("agent.crt"), &agent_cert.pem);
    write_key(&d.join("agent.key"), &agent_cert.key_pem);
    write(&d.join("ca.crt"), &ca.pem);
    write(&d.join("ca.crl"), &ca.crl(1, &[5]));
    let port = free_port().unwrap();
    let cfg = config(
        d,
        port,
        &tls_lines(
            d,
            &format!(
                "crl_files = [{:?}]\nallowed_clients = [\"pga-federator\", \
                 \"spiffe://pga.test/prometheus\", \"cn-only-client\"]\n",
                d.join("ca.crl").display().to_string()
            ),
        ),
    );
    let agent = Agent::start(&cfg);

    // Who gets in: the allow-list matches a DNS SAN, a URI SAN, or the CN of a
    // certificate without SANs.
    let good = federator(&ca, 10);
    let uri = ca.client(
        11,
        "ignored",
        vec![SanType::URI(
            "spiffe://pga.test/prometheus".try_into().unwrap(),
        )],
    );
    let cn_only = ca.client(12, "cn-only-client", vec![]);
    let late = federator(&ca, 13);
    for (name, cert) in [
        ("good", &good),
        ("uri", &uri),
        ("cn-only", &cn_only),
        ("late", &late),
    ] {
        let o = fetch(port, &ca, Some(cert), Version::Tls13).await;
        assert!(o.ok(), "{name}: {o:?} {}", o.text());
    }

    // Who does not, and none of them reads a single HTTP byte.
    let revoked = federator(&ca, 5);
    let mut expired_params = params(
        14,
        "pga-federator",
        vec![dns("pga-federator")],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    expired_params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired_params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = ca.sign(expired_params);
    let intruder = ca.client(15, "intruder", vec![dns("intruder")]);
    let self_key = KeyPair::generate().unwrap();
    let self_signed = Cert {
        pem: params(
            16,
            "pga-federator",
            vec![dns("pga-federator")],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
        .self_signed(&self_key)
        .unwrap()
        .pem(),
        key_pem: self_key.serialize_pem(),
    };
    let foreign = federator(&other_ca, 10);
    let refusals = [
        ("no client certificate", None, Version::Tls13),
        ("self-signed client", Some(&self_signed), Version::Tls13),
        ("client of another CA", Some(&foreign), Version::Tls13),
        ("expired client", Some(&expired), Version::Tls13),
        ("revoked client", Some(&revoked), Version::Tls13),
        (
            "client outside the allow-list",
            Some(&intruder),
            Version::Tls13,
        ),
        ("TLS 1.2-only client", Some(&good), Version::Tls12Only),
    ];
    for (name, cert, version) in refusals {
        let o = fetch(port, &ca, cert, version).await;
        assert!(o.bytes.is_empty(), "{name} read {:?}", o.text());
        eprintln!(
            "{name}: refused ({})",
            o.error.as_deref().unwrap_or("closed")
        );
    }
    agent.wait_log("the allow-list refusal in the log", 10, |l| {
        l.contains("not in endpoint.allowed_clients") && l.contains("intruder")
    });
    agent.wait_log("the revoked certificate in the log", 10, |l| {
        l.contains("client refused in the TLS handshake") && l.contains("Revoked")
    });

    // A keep-alive connection opened before the rotation stays usable through it.
    let mut kept = connect_tls(port, client_config(&ca, Some(&good), Version::Tls13))
        .await
        .unwrap();
    assert_eq!(
        keep_alive_request(&mut kept).await.unwrap(),
        "http/1.1 200 ok"
    );

    // Rotate the agent's certificate in place: key first, then certificate.
    let rotated = ca.server(2, "agent-2");
    write_key(&d.join("agent.key"), &rotated.key_pem);
    write(&d.join("agent.crt"), &rotated.pem);
    let started = Instant::now();
    loop {
        let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
        assert!(o.ok(), "a request failed during the rotation: {o:?}");
        assert_eq!(
            keep_alive_request(&mut kept).await.as_deref(),
            Ok("http/1.1 200 ok"),
            "the connection opened before the rotation"
        );
        if o.server_cert.as_ref() == Some(&rotated.der()) {
            break;
        }
        assert_eq!(o.server_cert.as_ref(), Some(&agent_cert.der()));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the rotated certificate was not served; log:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("rotated certificate served after {:?}", started.elapsed());
    drop(kept);

    // Revoke a client that was in: it is refused within seconds; others go on.
    write(&d.join("ca.crl"), &ca.crl(2, &[5, 13]));
    let started = Instant::now();
    poll_until("the new CRL to refuse the late client", 20, || async {
        let o = fetch(port, &ca, Some(&late), Version::Tls13).await;
        if o.bytes.is_empty() {
            Some(())
        } else {
            assert!(o.ok(), "{o:?}");
            None
        }
    })
    .await;
    eprintln!("CRL update effective after {:?}", started.elapsed());
    assert!(fetch(port, &ca, Some(&good), Version::Tls13).await.ok());

    // A broken file does not take effect: the previous set stays in use.
    write(
        &d.join("agent.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n",
    );
    agent.wait_log("the failed reload in the log", 20, |l| {
        l.contains("reload failed") && l.contains("endpoint.cert_file")
    });
    let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
    assert!(o.ok(), "{o:?}");
    assert_eq!(o.server_cert, Some(rotated.der()));

    // SIGHUP reloads at once, and does not stop the agent.
    write(&d.join("agent.crt"), &rotated.pem);
    let pid = nix::unistd::Pid::from_raw(agent.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    agent.wait_log("a reload on SIGHUP", 10, |l| {
        l.contains("certificates reloaded") && l.contains("SIGHUP")
    });
    let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
    assert!(o.ok(), "{o:?}");
    let mut agent = agent;
    assert!(
        agent.child_mut().try_wait().unwrap().is_none(),
        "the agent stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hostile_clients_are_cut_off_while_collection_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = agent_files(d);
    let port = free_port().unwrap();
    let agent = Agent::start(&config(
        d,
        port,
        &tls_lines(
            d,
            "max_connections = 2\nmax_handshakes = 4\nmax_handshakes_per_address = 4\n\
             handshake_timeout_secs = 2\n",
        ),
    ));
    let good = federator(&ca, 10);
    agent.wait_log("a first stored pass", 20, |l| l.contains("stored"));
    let passes_before = agent.system_passes();
    let attack_started = Instant::now();

    // Handshake bounds. Four silent connections take every handshake place; a
    // newcomer takes the place of the oldest, which is closed at once.
    let mut buf = [0u8; 64];
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
    assert!(o.ok(), "a good client among silent sockets: {o:?}");
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), idle[0].read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(
        t.elapsed() < HEADER_TIMEOUT,
        "evicted only after {:?}",
        t.elapsed()
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Four clients that sent a whole ClientHello and then stall: while they are
    // fresh nobody may take their place, so a fifth is closed at once; their
    // handshakes end at handshake_timeout_secs.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(stalled_after_hello(port, &ca).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "closed only after {:?}",
        t.elapsed()
    );
    for mut s in stalled {
        let t = Instant::now();
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "a stalled handshake was never cut off");
        assert!(t.elapsed() < HEADER_TIMEOUT + Duration::from_secs(1));
    }
    // Authenticated connections have their own bound: with two kept open, a third
    // authenticated client is answered 503.
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut c = connect_tls(port, client_config(&ca, Some(&good), Version::Tls13))
            .await
            .unwrap();
        assert_eq!(keep_alive_request(&mut c).await.unwrap(), "http/1.1 200 ok");
        kept.push(c);
    }
    let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
    assert!(o.bytes.starts_with(b"HTTP/1.1 503"), "{o:?} {}", o.text());
    assert!(
        o.text().contains("endpoint.max_connections"),
        "{}",
        o.text()
    );
    drop(kept);
    agent.wait_log("the rolled-up refusal warning", 5, |l| {
        l.contains("WARN") && l.contains("endpoint refused") && l.contains("by_reason=")
    });

    // Slowloris over raw TCP: a ClientHello record header, one byte a second.
    let hello = [
        0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let raw_slow = tokio::spawn(async move {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        trickle(s, &hello, Duration::from_secs(1)).await
    });
    // Slowloris after a good handshake: request headers, one byte a second.
    let tls = connect_tls(port, client_config(&ca, Some(&good), Version::Tls13))
        .await
        .unwrap();
    let tls_slow = tokio::spawn(async move { trickle(tls, REQUEST, Duration::from_secs(1)).await });
    // Garbage instead of a ClientHello.
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    garbage
        .write_all(b"\x00\xffthis is not TLS at all\r\n\r\n\x17\x03\x03\xff\xff")
        .await
        .unwrap();
    let mut got = Vec::new();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the garbage client was not cut off");
    assert!(find(&got, b"HTTP/").is_none(), "{got:?}");
    assert!(
        t.elapsed() < HEADER_TIMEOUT,
        "garbage closed only after {:?}",
        t.elapsed()
    );

    // Meanwhile a good client is served at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
    assert!(o.ok(), "{o:?}");
    assert!(
        t.elapsed() < HEADER_TIMEOUT,
        "the good client waited {:?}",
        t.elapsed()
    );

    let (raw_for, raw_read) = raw_slow.await.unwrap();
    let (tls_for, tls_read) = tls_slow.await.unwrap();
    assert!(raw_read.is_empty(), "{raw_read:?}");
    assert!(
        find(&tls_read, b"HTTP/1.1 200").is_none(),
        "{:?}",
        String::from_utf8_lossy(&tls_read)
    );
    eprintln!("slowloris cut off after {raw_for:?} (raw TCP) and {tls_for:?} (after TLS)");
    for t in [raw_for, tls_for] {
        assert!(
            t < HEADER_TIMEOUT + Duration::from_secs(3),
            "cut off only after {t:?}"
        );
    }

    // Collection went on through all of it: about one system pass a second.
    let secs = attack_started.elapsed().as_secs() as usize;
    let passes = agent.system_passes() - passes_before;
    assert!(
        passes + 2 >= secs,
        "{passes} system passes stored in {secs} s of hostile clients; log:\n{}",
        agent.log_text()
    );
    assert!(fetch(port, &ca, Some(&good), Version::Tls13).await.ok());
}

/// Sends, as `client` over TLS 1.3, the request `head` whose last header is padded
/// with `size` bytes.
async fn padded_request(port: u16, ca: &Ca, client: &Cert, head: &[u8], size: usize) -> Outcome {
    let mut request = head.to_vec();
    request.resize(request.len() + size, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    fetch_with(
        port,
        client_config(ca, Some(client), Version::Tls13),
        &request,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_and_oversized_heads_get_an_answer_over_tls() {
    let (_tmp, ca, port, _agent) = tls_agent();
    let good = federator(&ca, 10);

    // `curl --http1.0`: ALPN offers only http/1.0.
    let mut http10 = (*client_config(&ca, Some(&good), Version::Tls13)).clone();
    http10.alpn_protocols = vec![b"http/1.0".to_vec()];
    let o = fetch_with(port, Arc::new(http10), b"GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(
        o.bytes.starts_with(b"HTTP/1.0 200") || o.bytes.starts_with(b"HTTP/1.1 200"),
        "{:?} {}",
        o.error,
        o.text()
    );

    // A request head over 64 KiB: 431, delivered before the connection closes.
    for size in [70_000usize, 300_000, 12_000_000] {
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ";
        let o = padded_request(port, &ca, &good, head, size).await;
        assert!(
            o.bytes.starts_with(b"HTTP/1.1 431"),
            "{size}-byte header: {:?} {}",
            o.error,
            o.text()
        );
    }
    // Just under the bound: served.
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ";
    let o = padded_request(port, &ca, &good, head, 60_000).await;
    assert!(o.ok(), "{:?} {}", o.error, o.text());
}

/// Runs `pga-agent check-config` on `cfg`, which must find errors (exit code 2); its
/// standard output.
fn check_config_refused(cfg: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["check-config", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    stdout
}

/// Runs `pga-agent run` with `cfg`, which must refuse to start; its standard error.
fn run_refused(cfg: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config"])
        .arg(cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stderr}");
    stderr
}

#[test]
fn plaintext_on_a_public_address_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.toml");
    write(
        &cfg,
        &format!(
            "[agent]\ndata_dir = {:?}\n[collectors]\npostgres = false\nlogs = false\n\
             [endpoint]\nlisten = \"0.0.0.0:{}\"\ninsecure_plaintext = true\n",
            tmp.path().join("data").display().to_string(),
            free_port().unwrap()
        ),
    );
    let stderr = run_refused(&cfg);
    assert!(
        stderr.contains("plaintext only on 127.0.0.1/::1/localhost"),
        "{stderr}"
    );
    assert!(stderr.contains("endpoint.insecure_plaintext"), "{stderr}");
    assert!(
        !tmp.path().join("data").exists(),
        "the agent started collecting"
    );
}

#[test]
fn partial_tls_settings_are_refused_by_check_config() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("pga test CA");
    let crt = tmp.path().join("agent.crt");
    write(&crt, &ca.server(1, "agent").pem);
    let cfg = tmp.path().join("agent.toml");
    write(
        &cfg,
        &format!("[endpoint]\ncert_file = {:?}\n", crt.display().to_string()),
    );
    let stdout = check_config_refused(&cfg);
    assert!(
        stdout.contains("error: endpoint.key_file: is missing"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error: endpoint.client_ca_file: is missing"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: set endpoint.key_file"), "{stdout}");
}

#[test]
fn a_bad_tls_file_stops_run_and_check_config_with_the_file_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = Ca::new("pga test CA");
    let server = ca.server(1, "agent");
    write(&d.join("agent.crt"), &server.pem);
    // The key of another certificate.
    write_key(&d.join("agent.key"), &ca.server(2, "other").key_pem);
    write(&d.join("ca.crt"), &ca.pem);
    let cfg = config(d, free_port().unwrap(), &tls_lines(d, ""));
    let key_path = d.join("agent.key").display().to_string();

    let stdout = check_config_refused(&cfg);
    assert!(
        stdout.contains(&format!("error: endpoint.key_file: {key_path}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: give the private key that belongs"),
        "{stdout}"
    );

    let stderr = run_refused(&cfg);
    assert!(
        stderr.contains("endpoint.key_file") && stderr.contains(&key_path),
        "{stderr}"
    );
    assert!(
        stderr.contains("give the private key that belongs"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_off_is_announced_and_plaintext_works_on_loopback() {
    // No [endpoint] TLS keys: the agent collects and says how to turn it on.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.toml");
    write(
        &cfg,
        &format!(
            "[agent]\ndata_dir = {:?}\n[intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [store]\nblock_secs = 60\n[collectors]\npostgres = false\nlogs = false\n",
            tmp.path().join("data").display().to_string()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,pga_agent::store=debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let off = lines
        .by_ref()
        .find(|l| l.contains("endpoint off"))
        .expect("an 'endpoint off' line");
    assert!(
        off.contains("endpoint.cert_file") && off.contains("certs dev"),
        "{off}"
    );
    // It still collects and stores, and SIGHUP does not stop it.
    lines
        .by_ref()
        .find(|l| l.contains("stored"))
        .expect("a stored pass");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    lines
        .by_ref()
        .find(|l| l.contains("nothing to reload"))
        .expect("SIGHUP logged");
    assert!(child.try_wait().unwrap().is_none());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());

    // insecure_plaintext on 127.0.0.1: plain HTTP.
    let port = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), port, "insecure_plaintext = true\n");
    let _agent = Agent::start(&cfg);
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(REQUEST).await.unwrap();
    let mut out = Outcome::default();
    read_all(&mut s, &mut out).await;
    assert!(out.ok(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_logged_rolled_up_and_counted_by_reason() {
    let (_tmp, ca, port, agent) = tls_agent();
    let no_cert = client_config(&ca, None, Version::Tls13);
    let good = client_config(&ca, Some(&federator(&ca, 10)), Version::Tls13);
    // 1,000 full handshakes without a client certificate, eight at a time.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let no_cert = no_cert.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..125 {
                let o = get(port, no_cert.clone(), "/metrics").await;
                assert!(o.bytes.is_empty(), "{o:?}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!("1000 refused handshakes in {:?}", started.elapsed());
    // All counted by reason (the self collector stores the counter every second).
    let mut counted = 0.0;
    for _ in 0..20 {
        counted = agent_metric(
            port,
            &good,
            "pga_agent_endpoint_refused_total{reason=\"no_certificate\"}",
        )
        .await;
        if counted >= 1000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(counted, 1000.0);
    // One line for all of them, naming the reason.
    let lines: Vec<String> = agent
        .log_lines()
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("endpoint refused"))
        .cloned()
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("no_certificate"), "{}", lines[0]);
}
