//! The accept loop and the limits of each connection.
//!
//! - TLS handshakes (unauthenticated clients) have their own bounds, apart from the
//!   authenticated connections': `max_handshakes` at once, `max_handshakes_per_address`
//!   from one address, each within `handshake_timeout`; at a bound the handshake
//!   silent the longest makes room ([`admission`](super::admission)).
//! - After the handshake the client's certificate identities are matched against
//!   the allow-list, and a client not on it is disconnected without a single HTTP
//!   byte. At most `max_connections` authenticated connections are served at once;
//!   one more is answered 503 and closed. (Plain HTTP, loopback only, has no
//!   handshake: `max_connections` counts its connections from the accept.)
//! - Refused connections are counted by reason and logged rolled up: at most one
//!   line a minute.
//! - HTTP/1.1 by hyper: each request's headers must arrive within `header_timeout`
//!   (which also closes idle keep-alive connections), headers and buffers are
//!   capped at [`MAX_BUF_BYTES`], request bodies at [`MAX_REQUEST_BODY_BYTES`].
//! - Answering a request may take `request_timeout`; past it the client gets 503
//!   and the connection closes. A response write that stalls for `request_timeout`
//!   because the client stopped reading ends the connection.
//! - On shutdown the listener closes, connections finish the request in hand
//!   (for at most `request_timeout`) and close.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::admission::{Admission, Refusal, RefusalLog, Ticket};
use super::reload::{TlsState, log_warnings, stopped};
use super::tls::{self, AllowList, client_identities};
use super::{EndpointError, EndpointSettings, Limits};
use crate::config::{is_loopback_host, parse_listen};
use crate::telemetry::Telemetry;

/// Largest request head (request line and headers) and per-connection read
/// buffer. The API takes a path and a query string; nothing needs more.
pub const MAX_BUF_BYTES: usize = 64 << 10;
/// Largest request body read. The API's routes are all `GET`.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 << 10;
/// How often due refusal lines are written when no new refusal comes.
const REFUSAL_FLUSH_EVERY: Duration = Duration::from_secs(5);

/// A bound endpoint, ready to serve.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsContext>,
    limits: Limits,
    telemetry: Option<Arc<Telemetry>>,
}

#[derive(Debug, Clone)]
struct TlsContext {
    state: Arc<TlsState>,
    allow: AllowList,
}

/// What every connection task shares.
#[derive(Debug)]
struct ServerContext {
    tls: Option<TlsContext>,
    limits: Limits,
    router: Router,
    /// Authenticated connections (every connection, in plain HTTP).
    permits: Arc<Semaphore>,
    refusals: std::sync::Mutex<RefusalLog>,
    telemetry: Option<Arc<Telemetry>>,
}

impl ServerContext {
    fn refuse(&self, peer: SocketAddr, reason: Refusal, detail: &str) {
        if let Some(t) = &self.telemetry {
            t.endpoint_refused(reason.as_str());
        }
        if let Ok(mut log) = self.refusals.lock() {
            log.note(peer, reason, detail);
        }
    }
}

impl Endpoint {
    /// Loads the TLS files and binds the listen address: everything that can fail
    /// at start-up fails here, with the file or address and the fix.
    pub async fn bind(settings: EndpointSettings) -> Result<Endpoint, EndpointError> {
        let tls = match &settings.tls {
            None => {
                let loopback = parse_listen(&settings.listen)
                    .map(|(host, _)| is_loopback_host(&host))
                    .unwrap_or(false);
                if !loopback {
                    return Err(EndpointError::PlaintextNotLoopback {
                        listen: settings.listen.clone(),
                    });
                }
                None
            }
            Some(files) => {
                let loaded = tls::load(files)?;
                log_warnings(&loaded.warnings);
                tracing::info!(
                    certificate = %loaded.server_subject,
                    not_after = %loaded.server_not_after,
                    client_ca = %files.client_ca_file.display(),
                    crls = loaded.crls,
                    allowed_clients = %if files.allowed_clients.is_empty() {
                        "any certificate the client CA signed".to_owned()
                    } else {
                        files.allowed_clients.join(", ")
                    },
                    "endpoint certificates loaded"
                );
                Some(TlsContext {
                    state: Arc::new(TlsState::new(files.clone(), &loaded)),
                    allow: AllowList::new(&files.allowed_clients),
                })
            }
        };
        let bind_error = |source: io::Error| {
            let fix = match source.kind() {
                io::ErrorKind::AddrInUse => {
                    "another process listens there: stop it, or choose another port"
                }
                io::ErrorKind::PermissionDenied => {
                    "ports below 1024 need privileges: choose a port of 1024 or more"
                }
                _ => "listen on an address of this host, e.g. 0.0.0.0:9187",
            };
            EndpointError::Bind {
                listen: settings.listen.clone(),
                source,
                fix: fix.to_owned(),
            }
        };
        let listener = listen(&settings.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        if tls.is_none() && !local_addr.ip().is_loopback() {
            return Err(EndpointError::PlaintextNotLoopback {
                listen: settings.listen.clone(),
            });
        }
        Ok(Endpoint {
            listener,
            local_addr,
            tls,
            limits: settings.limits,
            telemetry: None,
        })
    }

    /// Counts refused connections and open connections in `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `router` until `shutdown` resolves, then lets the connections finish
    /// the request in hand (for at most the request timeout) and returns.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), EndpointError> {
        let Endpoint {
            listener,
            local_addr,
            tls,
            limits,
            telemetry,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let watcher = match &tls {
            Some(t) => tokio::spawn(t.state.clone().watch(stop_rx.clone())),
            None => tokio::spawn(plaintext_hangup(stop_rx.clone())),
        };
        if tls.is_some() {
            tracing::info!(
                listen = %local_addr,
                max_connections = limits.max_connections,
                max_handshakes = limits.max_handshakes,
                max_handshakes_per_address = limits.max_handshakes_per_address,
                handshake_timeout_secs = limits.handshake_timeout.as_secs(),
                "endpoint listening: HTTPS, TLS 1.3, client certificate required"
            );
        } else {
            tracing::warn!(
                listen = %local_addr,
                max_connections = limits.max_connections,
                "endpoint listening: plain HTTP without client authentication \
                 (insecure_plaintext), loopback only"
            );
        }
        let shared = Arc::new(ServerContext {
            tls,
            limits,
            router,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            refusals: Default::default(),
            telemetry,
        });
        let admission = Admission::new(limits.max_handshakes, limits.max_handshakes_per_address);
        let mut connections = JoinSet::new();
        let mut flush = tokio::time::interval(REFUSAL_FLUSH_EVERY);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        if let Err(e) = tcp.set_nodelay(true) {
                            tracing::debug!(peer = %peer, error = %e, "cannot set TCP_NODELAY");
                        }
                        if shared.tls.is_none() {
                            // Plain HTTP: no handshake, a connection slot from the start.
                            match shared.permits.clone().try_acquire_owned() {
                                Ok(permit) => {
                                    connections.spawn(plaintext(tcp, peer, permit, shared.clone(), stop_rx.clone()));
                                }
                                Err(_) => shared.refuse(peer, Refusal::ConnectionLimit, "endpoint.max_connections reached; closed at once"),
                            }
                            continue;
                        }
                        match admission.admit(peer.ip(), Some(std::os::fd::AsFd::as_fd(&tcp))) {
                            Ok((ticket, _)) => {
                                connections.spawn(connection(tcp, peer, ticket, shared.clone(), stop_rx.clone()));
                            }
                            Err(reason) => shared.refuse(peer, reason, "no room for another TLS handshake; closed at once"),
                        }
                        if let Some(t) = &shared.telemetry {
                            t.endpoint_open(
                                admission.in_progress(),
                                limits.max_connections - shared.permits.available_permits(),
                            );
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment rather
                        // than spin; the connections in hand go on.
                        tracing::warn!(error = %e, "endpoint cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(error = %e, "an endpoint connection task panicked; the others go on");
                    }
                }
                _ = flush.tick() => {
                    if let Ok(mut log) = shared.refusals.lock()
                        && log.due()
                    {
                        log.flush();
                    }
                    if let Some(t) = &shared.telemetry {
                        t.endpoint_open(
                            admission.in_progress(),
                            limits.max_connections - shared.permits.available_permits(),
                        );
                    }
                }
            }
        }
        if let Ok(mut log) = shared.refusals.lock() {
            log.flush();
        }
        drop(listener);
        if stop_tx.send(true).is_err() {
            tracing::debug!("no connection or watcher was listening for the stop");
        }
        let open_at_stop = connections.len();
        let drained = tokio::time::timeout(limits.request_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "endpoint connections still busy at shutdown were cut"
            );
            connections.abort_all();
        }
        watcher.abort();
        tracing::info!(
            listen = %local_addr,
            connections_at_stop = open_at_stop,
            "endpoint stopped"
        );
        Ok(())
    }
}

/// Pending connections the kernel queues for the accept loop (capped by
/// `net.core.somaxconn`): room for a burst, so that a flood of connections does not
/// make the kernel drop a good client's SYN, which would cost it a second or more.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `listen` (`IP:PORT` or `HOST:PORT`: the first address that binds).
async fn listen(listen: &str) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind");
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Binds the endpoint of `cfg` and serves `router` on it until `shutdown`
/// resolves ([`Endpoint::bind`], then [`Endpoint::serve`]).
pub async fn serve(
    cfg: EndpointSettings,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EndpointError> {
    Endpoint::bind(cfg).await?.serve(router, shutdown).await
}

/// Without TLS there is nothing to reload, but SIGHUP must not stop the agent.
async fn plaintext_hangup(mut stop: watch::Receiver<bool>) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => tracing::info!("SIGHUP: the endpoint is plain HTTP, no certificates to reload"),
            () = stopped(&mut stop) => return,
        }
    }
}

/// One plain-HTTP connection (loopback only), holding its connection permit.
async fn plaintext(
    tcp: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<ServerContext>,
    stop: watch::Receiver<bool>,
) {
    serve_http(tcp, peer, None, &shared, stop).await;
}

/// One TLS connection, from TCP accept to close: the handshake under its ticket,
/// then, authenticated and allowed, a connection permit and HTTP.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    mut ticket: Ticket,
    shared: Arc<ServerContext>,
    stop: watch::Receiver<bool>,
) {
    let Some(tls) = &shared.tls else {
        return;
    };
    let acceptor = TlsAcceptor::from(tls.state.current());
    let handshake = tokio::time::timeout(
        shared.limits.handshake_timeout,
        acceptor.accept(ticket.watch(tcp)),
    );
    let outcome = tokio::select! {
        r = handshake => r,
        Ok(()) = &mut ticket.evicted => {
            shared.refuse(peer, Refusal::Evicted, "silent in the TLS handshake while others waited; closed to make room");
            return;
        }
    };
    // The handshake is over, one way or the other: its place goes to another.
    drop(ticket);
    let mut stream = match outcome {
        Err(_) => {
            shared.refuse(
                peer,
                Refusal::Timeout,
                "TLS handshake not finished within endpoint.handshake_timeout_secs",
            );
            return;
        }
        Ok(Err(e)) => {
            let reason = Refusal::of_handshake_error(&e);
            tracing::debug!(peer = %peer, error = %e, reason = reason.as_str(), "client refused in the TLS handshake");
            shared.refuse(peer, reason, &e.to_string());
            return;
        }
        Ok(Ok(s)) => s,
    };
    let identities = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(client_identities)
        .unwrap_or_default();
    if !tls.allow.allows(&identities) {
        tracing::debug!(
            peer = %peer,
            client = ?identities,
            "client certificate not in endpoint.allowed_clients; connection closed"
        );
        shared.refuse(
            peer,
            Refusal::NotAllowed,
            &format!("client {identities:?} not in endpoint.allowed_clients"),
        );
        // close_notify, then close: no HTTP byte reaches this client.
        if tokio::time::timeout(Duration::from_secs(1), stream.shutdown())
            .await
            .is_err()
        {
            tracing::debug!(peer = %peer, "close_notify not sent in time");
        }
        return;
    }
    let Ok(_permit) = shared.permits.clone().try_acquire_owned() else {
        shared.refuse(
            peer,
            Refusal::ConnectionLimit,
            "endpoint.max_connections authenticated connections open; answered 503",
        );
        let body = format!(
            "the agent serves {} connections at once (endpoint.max_connections); retry shortly\n",
            shared.limits.max_connections
        );
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(peer = %peer, "the 503 answer was not delivered");
        }
        return;
    };
    let client = identities.first().cloned();
    tracing::debug!(peer = %peer, client = ?identities, "client connected");
    serve_http(stream, peer, client, &shared, stop).await;
}

/// HTTP/1.1 over `io` until the client or the server closes.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    client: Option<String>,
    shared: &Arc<ServerContext>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.limits;
    let router = shared.router.clone();
    let client: Arc<str> = client.unwrap_or_else(|| "-".to_owned()).into();
    // Boxed: poll_without_shutdown wants a future it can move.
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        Box::pin(answer(req, router.clone(), limits, peer, client.clone()))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_BUF_BYTES)
        .max_header_size(MAX_BUF_BYTES)
        .keep_alive(true);
    let mut conn = builder.serve_connection(
        TokioIo::new(StallGuard::new(io, limits.request_timeout)),
        service,
    );
    // Without hyper's own shutdown, so that the connection can be closed the way
    // its end calls for (below).
    let result = tokio::select! {
        r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
        () = stopped(&mut stop) => {
            Pin::new(&mut conn).graceful_shutdown();
            let rest = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx));
            match tokio::time::timeout(limits.request_timeout, rest).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    let io = conn.into_parts().io.into_inner();
    match result {
        Ok(()) => close(io).await,
        Err(e) if e.is_parse() => {
            // hyper answered the bad request (431 for a head over MAX_BUF_BYTES, 400);
            // closing while the client still sends would reset the connection and
            // lose that answer on the way, so read what it sends a moment first.
            tracing::debug!(peer = %peer, error = %e, "bad request answered; closing");
            linger(io).await;
        }
        Err(e) => {
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    }
}

/// How long a connection whose request was refused is drained before it closes.
const LINGER: Duration = Duration::from_secs(2);
/// The most a refused client's further bytes are read.
const LINGER_BYTES: usize = 16 << 20;

/// Ends a connection cleanly: close_notify for TLS, then FIN.
async fn close(mut io: impl AsyncWrite + Unpin) {
    if tokio::time::timeout(Duration::from_secs(1), io.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("connection not shut down in time");
    }
}

/// Closes the sending side, then reads and drops what the client still sends, for
/// at most [`LINGER`] and [`LINGER_BYTES`], so that the answer already sent reaches it.
async fn linger(mut io: impl AsyncRead + AsyncWrite + Unpin) {
    use tokio::io::AsyncReadExt;
    close(&mut io).await;
    let mut buf = vec![0u8; 16 << 10];
    let drained = tokio::time::timeout(LINGER, async {
        let mut read = 0;
        while read < LINGER_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!("a refused client kept sending; closed");
    }
}

/// Answers one request within the request timeout.
async fn answer(
    req: Request<Incoming>,
    router: Router,
    limits: Limits,
    peer: SocketAddr,
    client: Arc<str>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let req = req.map(|body| Body::new(Limited::new(body, MAX_REQUEST_BODY_BYTES)));
    let response = match tokio::time::timeout(limits.request_timeout, router.oneshot(req)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::warn!(
                peer = %peer,
                client = %client,
                method = %method,
                path = %path,
                timeout_secs = limits.request_timeout.as_secs(),
                "request not answered within endpoint.request_timeout_secs: 503"
            );
            let mut r = Response::new(Body::from(
                "the agent could not answer within endpoint.request_timeout_secs\n",
            ));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    };
    tracing::debug!(
        peer = %peer,
        client = %client,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(response)
}

/// An I/O stream whose writes fail once one has been pending for `limit`: a
/// client that stops reading cannot hold its connection, and its permit, forever.
#[derive(Debug)]
struct StallGuard<I> {
    io: I,
    limit: Duration,
    /// Armed while a write is pending; reset by any write that completes.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> StallGuard<I> {
    fn new(io: I, limit: Duration) -> Self {
        StallGuard {
            io,
            limit,
            timer: None,
        }
    }

    /// Called when a write is pending: arms the timer, or fails once it fired.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading: write stalled for endpoint.request_timeout_secs",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.timer = None;
        Poll::Ready(r)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for StallGuard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for StallGuard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.stalled(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_write_stalled_past_the_limit_fails() {
        // A duplex pipe with a tiny buffer nobody reads stalls the second write.
        let (a, _b) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(a, Duration::from_millis(200));
        let started = Instant::now();
        guarded.write_all(&[0u8; 16]).await.unwrap();
        let err = guarded.write_all(&[0u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_is_not_cut() {
        let (a, mut b) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match b.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut guarded = StallGuard::new(a, Duration::from_millis(200));
        guarded.write_all(&[7u8; 400]).await.unwrap();
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap().len(), 400);
    }
}
