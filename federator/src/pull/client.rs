//! HTTP/1.1 over mutual TLS 1.3 to one agent (hyper's connection-level client on
//! tokio-rustls with the ring provider), with the bounds a puller needs against a
//! slow, broken or hostile peer: a connect-and-handshake timeout, a per-request
//! deadline, and a response size limit checked before and while the body arrives.
//!
//! A body cut short (the connection reset or the deadline passed while the body was
//! arriving) is not an error here: the bytes that did arrive are returned with
//! [`Response::cut`] set, because the pull protocol keeps the whole frames of a cut
//! body.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{HeaderMap, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use pga_config::pem;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;

use crate::config::TlsConfig;
use crate::pull::url::AgentUrl;
use crate::tls::{TlsError, unusable};

/// Why a request to an agent failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// TCP connect or TLS handshake failed or timed out: the agent is unreachable
    /// or refuses the federator's certificate.
    #[error("cannot connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The request failed before a response head arrived (reset, timeout).
    #[error("request {path} to {url} failed: {detail}")]
    Request {
        url: String,
        path: String,
        detail: String,
    },
    /// The response announces or delivers more than the size limit.
    #[error(
        "response to {path} from {url} is larger than {limit} bytes (scrape.max_response_bytes)"
    )]
    Oversized {
        url: String,
        path: String,
        limit: u64,
    },
}

/// How the client is bounded.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// One request, from sending it to the last body byte.
    pub request_timeout: Duration,
    /// Largest body accepted.
    pub max_response_bytes: u64,
}

/// One response, its body possibly cut short.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Why the body ended before its announced length, if it did.
    pub cut: Option<String>,
}

/// Loads `[tls]` into a rustls client configuration: TLS 1.3 only, the agents'
/// certificates verified against `ca_file`, `cert_file`/`key_file` presented.
pub fn tls_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    let need = |f: &Option<std::path::PathBuf>, key: &'static str| {
        f.clone().ok_or(TlsError::NotSet { key })
    };
    let (cert, key, ca) = (
        need(&tls.cert_file, "tls.cert_file")?,
        need(&tls.key_file, "tls.key_file")?,
        need(&tls.ca_file, "tls.ca_file")?,
    );
    let certs = pem::read_certs("tls.cert_file", &cert)?;
    let key = pem::read_private_key("tls.key_file", &key)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in pem::read_certs("tls.ca_file", &ca)? {
        roots.add(c).map_err(unusable(format!(
            "tls.ca_file {}: a certificate is unusable",
            ca.display()
        )))?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(unusable("TLS 1.3 with the ring provider"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(unusable(
                "tls.cert_file and tls.key_file do not form a usable client identity",
            ))?;
    Ok(Arc::new(config))
}

/// A client for one agent. Each [`AgentClient::session`] opens one connection and
/// sends the requests of one scrape over it.
#[derive(Clone)]
pub struct AgentClient {
    url: AgentUrl,
    tls: Option<TlsConnector>,
    limits: ClientLimits,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

/// An open connection to an agent.
#[derive(Debug)]
pub struct Session<'a> {
    client: &'a AgentClient,
    sender: SendRequest<Empty<Bytes>>,
}

impl AgentClient {
    /// A client for `url`; `tls` must be given for an `https://` URL.
    pub fn new(url: AgentUrl, tls: Option<Arc<ClientConfig>>, limits: ClientLimits) -> Self {
        let tls = if url.tls {
            tls.map(TlsConnector::from)
        } else {
            None
        };
        Self { url, tls, limits }
    }

    /// The agent's URL.
    pub fn url(&self) -> &AgentUrl {
        &self.url
    }

    fn connect_error(&self, detail: impl ToString) -> ClientError {
        ClientError::Connect {
            url: self.url.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Connects (TCP, then TLS when the URL is https) within the connect timeout.
    pub async fn session(&self) -> Result<Session<'_>, ClientError> {
        let connect = async {
            let tcp = TcpStream::connect(self.url.authority())
                .await
                .map_err(|e| self.connect_error(e))?;
            tcp.set_nodelay(true).ok();
            if self.url.tls {
                let connector = self
                    .tls
                    .as_ref()
                    .ok_or_else(|| self.connect_error("https:// needs [tls] configured"))?;
                let name = ServerName::try_from(self.url.host.clone())
                    .map_err(|e| self.connect_error(format!("server name: {e}")))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| self.connect_error(format!("TLS handshake: {e}")))?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| self.connect_error(e))?;
                tokio::spawn(async move { conn.await.ok() });
                Ok(sender)
            } else {
                let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| self.connect_error(e))?;
                tokio::spawn(async move { conn.await.ok() });
                Ok(sender)
            }
        };
        let sender = timeout(self.limits.connect_timeout, connect)
            .await
            .map_err(|_| {
                self.connect_error(format!(
                    "no connection within {:?} (scrape.connect_timeout_secs)",
                    self.limits.connect_timeout
                ))
            })??;
        Ok(Session {
            client: self,
            sender,
        })
    }
}

impl Session<'_> {
    /// `GET path_and_query`: the status, headers and body (possibly cut short).
    pub async fn get(&mut self, path_and_query: &str) -> Result<Response, ClientError> {
        let c = self.client;
        let fail = |detail: String| ClientError::Request {
            url: c.url.to_string(),
            path: path_and_query.to_owned(),
            detail,
        };
        let deadline = Instant::now() + c.limits.request_timeout;
        let req = Request::get(path_and_query)
            .header(header::HOST, c.url.authority())
            .header(
                header::USER_AGENT,
                concat!("pga-federator/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        timeout_at(deadline, self.sender.ready())
            .await
            .map_err(|_| fail("connection not ready before the request deadline".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let resp = timeout_at(deadline, self.sender.send_request(req))
            .await
            .map_err(|_| {
                fail(format!(
                    "no response within {:?} (scrape.request_timeout_secs)",
                    c.limits.request_timeout
                ))
            })?
            .map_err(|e| fail(e.to_string()))?;
        let (parts, mut body) = resp.into_parts();
        let limit = c.limits.max_response_bytes;
        let oversized = || ClientError::Oversized {
            url: c.url.to_string(),
            path: path_and_query.to_owned(),
            limit,
        };
        let announced = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit) {
            return Err(oversized());
        }
        let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(limit) as usize);
        let mut cut = None;
        loop {
            match timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    cut = Some(format!(
                        "the body stalled: the request deadline of {:?} passed",
                        c.limits.request_timeout
                    ));
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    cut = Some(format!("the body was cut: {e}"));
                    break;
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if bytes.len() as u64 + data.len() as u64 > limit {
                            return Err(oversized());
                        }
                        bytes.extend_from_slice(&data);
                    }
                }
            }
        }
        if cut.is_none() && announced.is_some_and(|n| n != bytes.len() as u64) {
            cut = Some(format!(
                "the body ended after {} of {} bytes",
                bytes.len(),
                announced.unwrap_or(0)
            ));
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: bytes,
            cut,
        })
    }
}
