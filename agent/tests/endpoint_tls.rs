//! The endpoint's TLS layer against a running `pga-agent run`: who gets in and who
//! does not (and gets no HTTP byte), certificate and CRL rotation without a
//! restart, slow and hostile clients cut off while collection and other clients go
//! on, and the configurations the agent refuses.
//!
//! Certificates are made here with rcgen; the clients are raw tokio-rustls clients
//! that send one `GET /metrics` and return everything they read.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const REQUEST: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
/// The agent's `header_timeout_secs` in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- certificates

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

struct Cert {
    pem: String,
    key_pem: String,
}

impl Cert {
    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

fn params(
    serial: u64,
    cn: &str,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from(serial));
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2090, 1, 1);
    p
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            pem,
            issuer: Issuer::new(p, key),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    fn sign(&self, p: CertificateParams) -> Cert {
        let key = KeyPair::generate().unwrap();
        Cert {
            pem: p.signed_by(&key, &self.issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server(&self, serial: u64, cn: &str) -> Cert {
        self.sign(params(
            serial,
            cn,
            vec![
                dns("localhost"),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        ))
    }

    fn client(&self, serial: u64, cn: &str, sans: Vec<SanType>) -> Cert {
        self.sign(params(
            serial,
            cn,
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
        ))
    }

    fn crl(&self, number: u64, revoked: &[u64]) -> String {
        CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&s| RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: rcgen::date_time_ymd(2024, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

fn federator(ca: &Ca, serial: u64) -> Cert {
    ca.client(serial, "pga-federator", vec![dns("pga-federator")])
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn write_key(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------- the agent

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `pga-agent run`, killed on drop, its log collected.
struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Already gone is fine: either way the process is reaped.
        if self.child.kill().is_ok() {
            drop(self.child.wait());
        }
    }
}

/// An `agent.toml` in `dir` collecting every second, endpoint on `port` with the
/// test timeouts and `endpoint` (more `[endpoint]` lines).
fn config(dir: &Path, port: u16, endpoint: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    write(
        &path,
        &format!(
            "[agent]\nname = \"tls-test\"\ndata_dir = {:?}\n\
             [intervals]\nfast_secs = 1\nslow_secs = 1\nsizes_secs = 1\n\
             [store]\nblock_secs = 60\n\
             [collectors]\npostgres = false\nlogs = false\n\
             [endpoint]\nlisten = \"127.0.0.1:{port}\"\nheader_timeout_secs = {}\n\
             request_timeout_secs = 5\n{endpoint}",
            dir.join("data").display().to_string(),
            HEADER_TIMEOUT.as_secs()
        ),
    );
    path
}

/// The `[endpoint]` lines of a TLS endpoint on the files of `dir`.
fn tls_lines(dir: &Path, extra: &str) -> String {
    let p = |n: &str| format!("{:?}", dir.join(n).display().to_string());
    format!(
        "cert_file = {}\nkey_file = {}\nclient_ca_file = {}\n{extra}",
        p("agent.crt"),
        p("agent.key"),
        p("ca.crt")
    )
}

impl Agent {
    fn start(config: &Path) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
            .args(["run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                "info,pga_agent::scheduler=debug,pga_agent::endpoint=debug",
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pga-agent");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let agent = Agent { child, log };
        agent.wait_log("the endpoint to listen", 30, |l| {
            l.contains("endpoint listening")
        });
        agent
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn count_log(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.log.lock().unwrap().iter().filter(|l| pred(l)).count()
    }

    /// Waits for a log line matching `pred`; fails the test after `secs`.
    fn wait_log(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.log.lock().unwrap().iter().any(|l| pred(l)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Passes stored for the system collector so far.
    fn system_passes(&self) -> usize {
        self.count_log(|l| l.contains("stored") && l.contains("collector=\"system\""))
    }
}

// ---------------------------------------------------------------- clients

/// What one client saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Every byte read after the handshake.
    bytes: Vec<u8>,
    /// Where it stopped, if not at a clean end of stream.
    error: Option<String>,
    /// The agent's certificate, when the handshake finished.
    server_cert: Option<CertificateDer<'static>>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.bytes.starts_with(b"HTTP/1.1 200")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(200)]).into_owned()
    }
}

#[derive(Clone, Copy)]
enum Version {
    Tls13,
    Tls12Only,
}

fn client_config(ca: &Ca, cert: Option<&Cert>, version: Version) -> Arc<ClientConfig> {
    let versions: &[&'static SupportedProtocolVersion] = match version {
        Version::Tls13 => &[&rustls::version::TLS13],
        Version::Tls12Only => &[&rustls::version::TLS12],
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        Some(c) => b.with_client_auth_cert(vec![c.der()], c.key()).unwrap(),
        None => b.with_no_client_auth(),
    })
}

async fn connect_tls(
    port: u16,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").unwrap();
    match tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    {
        Err(_) => Err("handshake timed out".into()),
        Ok(Err(e)) => Err(format!("handshake: {e}")),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Reads until end of stream, an error or 10 s, keeping every byte.
async fn read_all(io: &mut (impl AsyncRead + Unpin), out: &mut Outcome) {
    let mut buf = [0u8; 16 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf)).await {
            Err(_) => {
                out.error = Some("read timed out".into());
                return;
            }
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => out.bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                out.error = Some(format!("read: {e}"));
                return;
            }
        }
    }
}

/// One `GET /metrics` over TLS with `cert` (or none).
async fn fetch(port: u16, ca: &Ca, cert: Option<&Cert>, version: Version) -> Outcome {
    let mut out = Outcome::default();
    let mut tls = match connect_tls(port, client_config(ca, cert, version)).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.server_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    if let Err(e) = tls.write_all(REQUEST).await {
        out.error = Some(format!("write: {e}"));
        return out;
    }
    read_all(&mut tls, &mut out).await;
    out
}

/// One response on a keep-alive connection: the status line (bodies have a
/// Content-Length or are chunked).
async fn keep_alive_request(
    io: &mut (impl AsyncRead + AsyncWrite + Unpin),
) -> Result<String, String> {
    io.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = find(&got, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let done = match head.lines().find_map(|l| l.strip_prefix("content-length:")) {
                Some(n) => got.len() >= end + 4 + n.trim().parse::<usize>().unwrap(),
                None => got.ends_with(b"\r\n0\r\n\r\n"),
            };
            if done {
                return Ok(head.lines().next().unwrap_or("").to_owned());
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, io.read(&mut buf)).await {
            Err(_) => return Err("timed out".into()),
            Ok(Ok(0)) => return Err("closed".into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return Err(format!("read: {e}")),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `bytes` one per `every` until the server closes; how long that took.
async fn trickle(
    mut io: impl AsyncRead + AsyncWrite + Unpin,
    bytes: &[u8],
    every: Duration,
) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    for b in bytes.iter().cycle() {
        if io.write_all(&[*b]).await.is_err() || io.flush().await.is_err() {
            break;
        }
        match tokio::time::timeout(every, io.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => read.extend_from_slice(&buf[..n]),
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a trickling client was never cut off"
        );
    }
    (started.elapsed(), read)
}

/// Polls `f` until it returns `Some`, at most `secs`.
async fn poll_until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

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
    let port = free_port();
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
    let pid = nix::unistd::Pid::from_raw(agent.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    agent.wait_log("a reload on SIGHUP", 10, |l| {
        l.contains("certificates reloaded") && l.contains("SIGHUP")
    });
    let o = fetch(port, &ca, Some(&good), Version::Tls13).await;
    assert!(o.ok(), "{o:?}");
    let mut agent = agent;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hostile_clients_are_cut_off_while_collection_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = Ca::new("pga test CA");
    let server = ca.server(1, "agent-1");
    write(&d.join("agent.crt"), &server.pem);
    write_key(&d.join("agent.key"), &server.key_pem);
    write(&d.join("ca.crt"), &ca.pem);
    let port = free_port();
    let agent = Agent::start(&config(d, port, &tls_lines(d, "max_connections = 6\n")));
    let good = federator(&ca, 10);
    agent.wait_log("a first stored pass", 20, |l| l.contains("stored"));
    let passes_before = agent.system_passes();
    let attack_started = Instant::now();

    // The connection cap: six idle connections take every slot; a seventh is
    // closed at once, long before any timeout.
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    assert!(
        t.elapsed() < HEADER_TIMEOUT,
        "closed only after {:?}",
        t.elapsed()
    );
    // The idle ones never start a handshake: cut off by the handshake timeout.
    for mut s in idle {
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
    agent.wait_log("the connection-limit warning", 5, |l| {
        l.contains("connection limit reached")
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
            free_port()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
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
    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
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
    let cfg = config(d, free_port(), &tls_lines(d, ""));
    let key_path = d.join("agent.key").display().to_string();

    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("error: endpoint.key_file: {key_path}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: give the private key that belongs"),
        "{stdout}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_pga-agent"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
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
        .env("RUST_LOG", "info,pga_agent::scheduler=debug")
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
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), port, "insecure_plaintext = true\n");
    let _agent = Agent::start(&cfg);
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(REQUEST).await.unwrap();
    let mut out = Outcome::default();
    read_all(&mut s, &mut out).await;
    assert!(out.ok(), "{out:?}");
}
