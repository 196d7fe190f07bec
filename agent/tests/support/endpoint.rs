//! For the endpoint tests: certificates made with rcgen, the configuration of an
//! agent serving them, and raw tokio-rustls clients that send one request and return
//! everything they read.

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

pub const REQUEST: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
/// The agent's `header_timeout_secs` in these tests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- certificates

pub struct Ca {
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

pub struct Cert {
    pub pem: String,
    pub key_pem: String,
}

impl Cert {
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

pub fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

pub fn params(
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
    pub fn new(name: &str) -> Ca {
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

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    pub fn sign(&self, p: CertificateParams) -> Cert {
        let key = KeyPair::generate().unwrap();
        Cert {
            pem: p.signed_by(&key, &self.issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn server(&self, serial: u64, cn: &str) -> Cert {
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

    pub fn client(&self, serial: u64, cn: &str, sans: Vec<SanType>) -> Cert {
        self.sign(params(
            serial,
            cn,
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
        ))
    }

    pub fn crl(&self, number: u64, revoked: &[u64]) -> String {
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

/// A test CA, and the agent's certificate (`agent-1`), key and client CA written
/// in `dir` as `tls_lines` names them.
pub fn agent_files(dir: &Path) -> Ca {
    let ca = Ca::new("pga test CA");
    let server = ca.server(1, "agent-1");
    write(&dir.join("agent.crt"), &server.pem);
    write_key(&dir.join("agent.key"), &server.key_pem);
    write(&dir.join("ca.crt"), &ca.pem);
    ca
}

pub fn federator(ca: &Ca, serial: u64) -> Cert {
    ca.client(serial, "pga-federator", vec![dns("pga-federator")])
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

pub fn write_key(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------- the agent

/// A running agent on a free port with the TLS files of [`agent_files`]: its
/// directory, its CA, the port and the agent.
pub fn tls_agent() -> (tempfile::TempDir, Ca, u16, super::Agent) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ca = agent_files(d);
    let port = super::free_port().unwrap();
    let agent = super::Agent::start(&config(d, port, &tls_lines(d, "")));
    (tmp, ca, port, agent)
}

/// An `agent.toml` in `dir` collecting every second, endpoint on `port` with the
/// test timeouts and `endpoint` (more `[endpoint]` lines).
pub fn config(dir: &Path, port: u16, endpoint: &str) -> PathBuf {
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
pub fn tls_lines(dir: &Path, extra: &str) -> String {
    let p = |n: &str| format!("{:?}", dir.join(n).display().to_string());
    format!(
        "cert_file = {}\nkey_file = {}\nclient_ca_file = {}\n{extra}",
        p("agent.crt"),
        p("agent.key"),
        p("ca.crt")
    )
}

// ---------------------------------------------------------------- clients

/// What one client saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every byte read after the handshake.
    pub bytes: Vec<u8>,
    /// Where it stopped, if not at a clean end of stream.
    pub error: Option<String>,
    /// The agent's certificate, when the handshake finished.
    pub server_cert: Option<CertificateDer<'static>>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.bytes.starts_with(b"HTTP/1.1 200")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(200)]).into_owned()
    }
}

#[derive(Clone, Copy)]
pub enum Version {
    Tls13,
    Tls12Only,
}

pub fn client_config(ca: &Ca, cert: Option<&Cert>, version: Version) -> Arc<ClientConfig> {
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

pub async fn connect_tls(
    port: u16,
    config: Arc<ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
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
pub async fn read_all(io: &mut (impl AsyncRead + Unpin), out: &mut Outcome) {
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
pub async fn fetch(port: u16, ca: &Ca, cert: Option<&Cert>, version: Version) -> Outcome {
    fetch_with(port, client_config(ca, cert, version), REQUEST).await
}

/// One `GET path` over TLS with `config`, the connection closed after it.
pub async fn get(port: u16, config: Arc<ClientConfig>, path: &str) -> Outcome {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    fetch_with(port, config, request.as_bytes()).await
}

/// Sends `request` over TLS with `config` and reads everything until the close.
pub async fn fetch_with(port: u16, config: Arc<ClientConfig>, request: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let mut tls = match connect_tls(port, config).await {
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
    if let Err(e) = tls.write_all(request).await {
        out.error = Some(format!("write: {e}"));
        return out;
    }
    read_all(&mut tls, &mut out).await;
    out
}

/// One response on a keep-alive connection: the status line (bodies have a
/// Content-Length or are chunked).
pub async fn keep_alive_request(
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

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `bytes` one per `every` until the server closes; how long that took.
pub async fn trickle(
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
pub async fn poll_until<T, F: std::future::Future<Output = Option<T>>>(
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

/// A TCP connection that sent a whole ClientHello (of a client without a
/// certificate) and will say nothing more: a handshake that stalls.
pub async fn stalled_after_hello(port: u16, ca: &Ca) -> TcpStream {
    let config = client_config(ca, None, Version::Tls13);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    tcp
}

/// The value of one sample line of the agent's `/metrics`.
pub async fn agent_metric(port: u16, client: &Arc<ClientConfig>, series: &str) -> f64 {
    let o = get(port, client.clone(), "/metrics").await;
    assert!(o.ok(), "{o:?}");
    let text = String::from_utf8_lossy(&o.bytes).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}
