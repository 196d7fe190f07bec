//! Serving the API: HTTPS by default (rustls with the ring provider, TLS 1.2 and
//! 1.3, HTTP/1.1), the server certificate from `api.cert_file`/`api.key_file`,
//! reloaded without a restart when the files change (polled every
//! [`POLL_INTERVAL`], loaded once they stood still for a poll) or on SIGHUP; a
//! reload that fails keeps the certificate in use and logs why. Plain HTTP only
//! with `api.insecure_plaintext = true` on a loopback address.
//!
//! Each connection: the TLS handshake within [`HANDSHAKE_TIMEOUT`], request heads
//! within [`HEADER_TIMEOUT`] (which also closes idle keep-alive connections), at
//! most `api.max_connections` at once, every request answered within
//! `api.request_timeout_secs` (else 503).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::error::ApiError;
use super::extract::Peer;
use crate::tls::{TlsError, unusable};

pub use pga_config::reload::POLL_INTERVAL;
use pga_config::reload::stopped;
/// Bound on the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on receiving a request head, and on an idle keep-alive connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head and read buffer.
const MAX_BUF_BYTES: usize = 64 << 10;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: String,
    /// Certificate chain and key (PEM); `None` for plain HTTP on loopback.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_connections: usize,
    pub request_timeout: Duration,
}

/// Loads the server certificate and key into a rustls configuration.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = pga_config::pem::read_certs("api.cert_file", cert)?;
    let key = pga_config::pem::read_private_key("api.key_file", key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(unusable("TLS protocol versions"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(unusable(
            "api.cert_file and api.key_file do not make a usable pair",
        ))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Why the API cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("api.listen = \"{listen}\": cannot listen: {source}")]
    Listen {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "api.listen = \"{listen}\": plain HTTP is allowed on a loopback address only; set \
         api.cert_file and api.key_file for HTTPS"
    )]
    PlainNotLoopback { listen: String },
}

/// The certificate in use and its files.
#[derive(Debug)]
struct TlsState {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsState {
    fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn reload(&self, trigger: &'static str) {
        match load_tls(&self.cert, &self.key) {
            Ok(c) => {
                match self.current.write() {
                    Ok(mut g) => *g = c,
                    Err(p) => *p.into_inner() = c,
                }
                tracing::info!(trigger, "API certificate reloaded; new connections use it");
            }
            Err(e) => tracing::error!(
                trigger,
                error = format!("{e:#}"),
                "API certificate reload failed; the previous certificate stays in use"
            ),
        }
    }

    async fn watch(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let paths = vec![self.cert.clone(), self.key.clone()];
        pga_config::reload::watch_files(paths, stop, |trigger| {
            self.reload(trigger);
            std::future::ready(())
        })
        .await;
    }
}

/// A bound API listener.
#[derive(Debug)]
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<Arc<TlsState>>,
    settings: ServerSettings,
}

impl ApiServer {
    /// Loads the certificate and binds: what can fail at start-up fails here.
    pub async fn bind(settings: ServerSettings) -> Result<ApiServer, BindError> {
        let tls = match &settings.tls {
            Some((cert, key)) => Some(Arc::new(TlsState {
                current: RwLock::new(load_tls(cert, key)?),
                cert: cert.clone(),
                key: key.clone(),
            })),
            None => None,
        };
        let cannot_listen = |source| BindError::Listen {
            listen: settings.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(cannot_listen)?;
        let local_addr = listener.local_addr().map_err(cannot_listen)?;
        if tls.is_none() && !local_addr.ip().is_loopback() {
            return Err(BindError::PlainNotLoopback {
                listen: settings.listen.clone(),
            });
        }
        Ok(ApiServer {
            listener,
            local_addr,
            tls,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `router` until `stop` turns true.
    pub async fn serve(self, router: Router, mut stop: watch::Receiver<bool>) {
        let ApiServer {
            listener,
            local_addr,
            tls,
            settings,
        } = self;
        if let Some(t) = &tls {
            tokio::spawn(t.clone().watch(stop.clone()));
            tracing::info!(listen = %local_addr, "API listening: HTTPS on /api/v1 (OpenAPI at /api/v1/openapi.json)");
        } else {
            tracing::warn!(listen = %local_addr, "API listening: plain HTTP on loopback (api.insecure_plaintext)");
        }
        let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            tracing::debug!(peer = %peer, "API connection limit reached; connection closed");
                            continue;
                        };
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::debug!(peer = %peer, error = %e, "cannot set TCP_NODELAY");
                        }
                        let (router, tls, stop, timeout) =
                            (router.clone(), tls.clone(), stop.clone(), settings.request_timeout);
                        tasks.spawn(async move {
                            match tls {
                                None => serve_http(tcp, peer, router, timeout, stop).await,
                                Some(t) => {
                                    let acceptor = TlsAcceptor::from(t.current());
                                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                        Ok(Ok(s)) => serve_http(s, peer, router, timeout, stop).await,
                                        Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "API TLS handshake failed"),
                                        Err(_) => tracing::debug!(peer = %peer, "API TLS handshake timed out"),
                                    }
                                }
                            }
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "API cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        let drained = tokio::time::timeout(settings.request_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
        }
        tracing::info!(listen = %local_addr, "API stopped");
    }
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let router = router.clone();
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(Peer(peer));
            let resp: Response<Body> =
                match tokio::time::timeout(timeout, router.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        let mut r = ApiError::Unavailable {
                            message: "the request took too long; try again".to_owned(),
                            retry_after_secs: 5,
                        }
                        .into_response();
                        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                        r
                    }
                };
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(timeout, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "API connection ended with an error");
    }
}
