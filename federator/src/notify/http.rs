//! A small HTTP/1.1 client for receivers (hyper's connection-level client over
//! tokio-rustls with the ring provider): one connection per request, every request
//! bounded by one timeout (connect, TLS, sending, the answer), an answer body read
//! up to 64 KiB. A receiver that hangs or answers garbage costs one timeout and a
//! retry, and never blocks another receiver (each has its own worker).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{TlsError, unusable};

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// A parsed receiver URL: `http(s)://HOST[:PORT][/PATH][?QUERY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path and query, `/` at least, without a trailing `/` unless it is the root.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?}: the scheme must be http:// or https://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: credentials go in username/password_file or bearer_token_file, not the URL"
            ));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{url:?}: {p:?} is not a port"))?,
            None if tls => 443,
            None => 80,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Target {
            tls,
            host,
            port,
            path,
        })
    }

    /// `path` with `suffix` appended (`/api/v2/alerts` under a base path).
    pub fn join(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.path.trim_end_matches('/'))
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.authority(),
            self.path
        )
    }
}

/// How the client authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "none",
            Auth::Basic { .. } => "basic",
            Auth::Bearer(_) => "bearer",
        })
    }
}

/// Why a receiver cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A secret file cannot be read.
    #[error("{}: {source}", path.display())]
    Secret {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The receiver's URL cannot be used.
    #[error("{0}")]
    Url(String),
    #[error("an https:// URL needs a TLS configuration")]
    NoTls,
}

/// The first line of a secret file.
pub fn read_secret(path: &Path) -> Result<String, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::Secret {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// A TLS client configuration: roots from `ca_file` or the system's, an optional
/// client certificate; TLS 1.2 and 1.3.
pub fn tls_config(
    ca_file: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            for c in pga_config::pem::read_certs("ca_file", ca)? {
                roots
                    .add(c)
                    .map_err(unusable("a CA certificate is unusable"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                roots.add(c).ok();
            }
            if roots.is_empty() {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(unusable("TLS with the ring provider"))?
            .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let certs = pga_config::pem::read_certs("cert_file", cert)?;
            let key = pga_config::pem::read_private_key("key_file", key)?;
            builder.with_client_auth_cert(certs, key).map_err(unusable(
                "cert_file and key_file do not form a usable client identity",
            ))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: {detail}")]
    Request { url: String, detail: String },
}

/// An answer: status, the start of the body, and the headers a sender acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// `Retry-After`, as sent.
    pub retry_after: Option<String>,
    /// `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// `Location` (of a redirect), as sent.
    pub location: Option<String>,
}

/// What a delivery attempt came to. Decided here, in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later (no answer, a timeout, 5xx, 408, 429, a redirect).
    Retry(String),
    /// The receiver refuses this notification for good (another 4xx): it is
    /// recorded as rejected and the queue moves on.
    Rejected(String),
}

/// Sorts an attempt's result into [`Outcome`].
pub fn classify(result: Result<Answer, SendError>) -> Outcome {
    match result {
        Err(e) => Outcome::Retry(e.to_string()),
        Ok(a) if (200..300).contains(&a.status) => Outcome::Delivered,
        Ok(a) => {
            let detail = format!(
                "answered {}: {}",
                a.status,
                a.body
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
            if a.status == 408 || a.status == 429 || a.status >= 500 || a.status < 200 {
                Outcome::Retry(detail)
            } else if (300..400).contains(&a.status) {
                Outcome::Retry(format!("{detail} (a redirect: set the URL it points to)"))
            } else {
                Outcome::Rejected(detail)
            }
        }
    }
}

/// A client for one receiver.
#[derive(Clone)]
pub struct Client {
    target: Target,
    tls: Option<TlsConnector>,
    auth: Auth,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target.to_string())
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client for `url`; `tls` is needed for an https:// URL.
    pub fn new(
        url: &str,
        tls: Option<Arc<ClientConfig>>,
        auth: Auth,
        timeout: Duration,
    ) -> Result<Client, SetupError> {
        let target = Target::parse(url).map_err(SetupError::Url)?;
        let tls = if target.tls {
            Some(TlsConnector::from(tls.ok_or(SetupError::NoTls)?))
        } else {
            None
        };
        Ok(Client {
            target,
            tls,
            auth,
            timeout,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// POSTs a JSON body to `path` (a path on the target's host) with extra headers.
    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> Result<Answer, SendError> {
        self.post(path, "application/json", body, headers).await
    }

    /// POSTs a body of `content_type` to `path` with extra headers.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&'static str, String)],
    ) -> Result<Answer, SendError> {
        let url = self.target.to_string();
        let mut req = Request::post(path)
            .header(header::HOST, self.target.authority())
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::USER_AGENT,
                concat!("pga-federator/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::CONNECTION, "close");
        match &self.auth {
            Auth::None => {}
            Auth::Basic { user, password } => {
                use base64::Engine;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                req = req.header(header::AUTHORIZATION, format!("Basic {token}"));
            }
            Auth::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Request {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        match tokio::time::timeout(self.timeout, self.send(req)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout {
                url,
                secs: self.timeout.as_secs(),
            }),
        }
    }

    /// Connects, sends `req` and reads the answer.
    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, SendError> {
        let url = self.target.to_string();
        let connect = |detail: String| SendError::Connect {
            url: url.clone(),
            detail,
        };
        let request_err = |detail: String| SendError::Request {
            url: url.clone(),
            detail,
        };
        let tcp = TcpStream::connect(self.target.authority())
            .await
            .map_err(|e| connect(e.to_string()))?;
        tcp.set_nodelay(true).ok();
        let resp = if let Some(tls) = &self.tls {
            let name = ServerName::try_from(self.target.host.clone())
                .map_err(|e| connect(format!("server name: {e}")))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| connect(format!("TLS handshake: {e}")))?;
            exchange(stream, req).await
        } else {
            exchange(tcp, req).await
        }
        .map_err(|(stage, e)| match stage {
            Stage::Handshake => connect(e.to_string()),
            Stage::Request => request_err(e.to_string()),
        })?;
        let status = resp.status().as_u16();
        let head = |name: header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (retry_after, content_type, location) = (
            head(header::RETRY_AFTER),
            head(header::CONTENT_TYPE),
            head(header::LOCATION),
        );
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Ok(Answer {
            status,
            body,
            retry_after,
            content_type,
            location,
        })
    }
}

/// Where an HTTP/1.1 exchange failed.
enum Stage {
    Handshake,
    Request,
}

/// Sends `req` over `io` (plain TCP or TLS) and reads the response head.
async fn exchange<S>(
    io: S,
    req: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, (Stage, hyper::Error)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| (Stage::Handshake, e))?;
    tokio::spawn(async move { conn.await.ok() });
    sender
        .send_request(req)
        .await
        .map_err(|e| (Stage::Request, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_paths_and_default_ports() {
        let t = Target::parse("https://am.example:9093").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (true, "am.example", 9093, "/")
        );
        assert_eq!(t.join("/api/v2/alerts"), "/api/v2/alerts");
        let t = Target::parse("http://10.0.0.1/prefix/").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/prefix/"));
        assert_eq!(t.join("/api/v2/alerts"), "/prefix/api/v2/alerts");
        let t = Target::parse("https://[::1]:8443/hook?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8443, "/hook?x=1")
        );
        assert!(Target::parse("ftp://x").is_err());
        assert!(
            Target::parse("http://u:p@x")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(Target::parse("http://x:0").is_err());
    }

    #[test]
    fn outcomes_are_decided_in_one_place() {
        let a = |status| {
            Ok(Answer {
                status,
                body: "boom\nmore".into(),
                ..Answer::default()
            })
        };
        assert_eq!(classify(a(200)), Outcome::Delivered);
        assert!(matches!(classify(a(500)), Outcome::Retry(_)));
        assert!(matches!(classify(a(429)), Outcome::Retry(_)));
        assert!(matches!(classify(a(302)), Outcome::Retry(_)));
        assert_eq!(
            classify(a(400)),
            Outcome::Rejected("answered 400: boom".into())
        );
        assert!(matches!(
            classify(Err(SendError::Timeout {
                url: "x".into(),
                secs: 1
            })),
            Outcome::Retry(_)
        ));
    }
}
