//! A small fault-injecting TCP proxy for outage tests.
//!
//! [`FaultProxy::start`] listens on a free port of 127.0.0.1 and forwards every
//! connection to a target address, byte for byte in both directions (TLS passes
//! through untouched). [`FaultProxy::set_fault`] makes the connections accepted
//! from then on break the **downstream** direction (target → client, where
//! responses flow) after a number of bytes:
//!
//! - [`FaultKind::Reset`]: the client's socket is closed with a TCP reset;
//! - [`FaultKind::Stall`]: nothing more is forwarded, the connection stays open
//!   until the client gives up (its timeout) or the fault is cleared and the proxy
//!   dropped;
//! - [`FaultKind::Truncate`]: the client's socket is shut down cleanly (FIN), as if
//!   the response had ended early.
//!
//! The cut point varies from connection to connection between `after_bytes` and
//! `after_bytes + spread_bytes`, so repeated requests are cut at different places
//! (inside a frame, at a frame boundary, in the headers). Dropping the proxy stops
//! accepting and closes the stalled connections; the others end when their
//! endpoints close them.
//!
//! ```no_run
//! use pga_lab::{Fault, FaultKind, FaultProxy};
//!
//! let proxy = FaultProxy::start("127.0.0.1:9187")?;
//! proxy.set_fault(Some(Fault { kind: FaultKind::Reset, after_bytes: 4096, spread_bytes: 20_000 }));
//! // … point the client at proxy.addr() …
//! proxy.set_fault(None);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a connection is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Close the client's socket with a TCP reset.
    Reset,
    /// Stop forwarding and keep the connection open.
    Stall,
    /// Close the client's socket cleanly, as if the response ended.
    Truncate,
}

/// A fault applied to the connections accepted while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Bytes forwarded downstream before the fault strikes, at least.
    pub after_bytes: u64,
    /// Each connection strikes up to this many bytes later than `after_bytes`.
    pub spread_bytes: u64,
}

#[derive(Debug, Default)]
struct ProxyState {
    fault: Mutex<Option<Fault>>,
    stop: AtomicBool,
    connections: AtomicU64,
    faults_struck: AtomicU64,
}

/// A running proxy; see the module documentation.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub fn start(target: impl ToSocketAddrs) -> std::io::Result<FaultProxy> {
        let target = target
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "no target address"))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(ProxyState::default());
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, target, s))?;
        Ok(FaultProxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets (or with `None` clears) the fault for connections accepted from now on.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.shared.fault.lock().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Connections broken by a fault so far.
    pub fn faults_struck(&self) -> u64 {
        self.shared.faults_struck.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            h.join().ok();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<ProxyState>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                let n = shared.connections.fetch_add(1, Ordering::Relaxed);
                let fault = *shared.fault.lock().unwrap_or_else(|p| p.into_inner());
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                else {
                    // The target is down: the client sees its connection closed.
                    continue;
                };
                client.set_nonblocking(false).ok();
                // Cut points spread by a multiplicative hash of the connection number.
                let cut = fault.map(|f| {
                    let spread = f.spread_bytes.max(1);
                    (
                        f,
                        f.after_bytes + n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % spread,
                    )
                });
                spawn_pipes(client, upstream, cut, shared.clone());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn spawn_pipes(
    client: TcpStream,
    upstream: TcpStream,
    cut: Option<(Fault, u64)>,
    shared: Arc<ProxyState>,
) {
    let (Ok(client_r), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    // Upstream: client → target, untouched, until the client closes or the
    // downstream side breaks the connection (`done`).
    let done = Arc::new(AtomicBool::new(false));
    let up_done = done.clone();
    let upstream_thread = std::thread::spawn(move || {
        let (mut from, mut to) = (client_r, upstream_w);
        from.set_read_timeout(Some(Duration::from_millis(50))).ok();
        let mut buf = [0u8; 16 * 1024];
        while !up_done.load(Ordering::Relaxed) {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        to.shutdown(Shutdown::Write).ok();
    });
    // Downstream: target → client, broken after the cut point.
    std::thread::spawn(move || {
        let (mut from, mut to) = (upstream, client);
        let mut buf = [0u8; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    to.shutdown(Shutdown::Write).ok();
                    return;
                }
                Ok(n) => n,
            };
            let Some((fault, at)) = cut else {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                continue;
            };
            let room = at.saturating_sub(sent).min(n as u64) as usize;
            if to.write_all(&buf[..room]).is_err() {
                return;
            }
            sent += room as u64;
            if room == n {
                continue;
            }
            shared.faults_struck.fetch_add(1, Ordering::Relaxed);
            match fault.kind {
                FaultKind::Reset => {
                    // A zero linger turns the close into a TCP reset; the upstream
                    // thread lets go of its handle first, so the close is the last.
                    done.store(true, Ordering::Relaxed);
                    upstream_thread.join().ok();
                    set_linger_zero(&to);
                    from.shutdown(Shutdown::Both).ok();
                    drop(to);
                }
                FaultKind::Truncate => {
                    to.shutdown(Shutdown::Both).ok();
                    from.shutdown(Shutdown::Both).ok();
                }
                FaultKind::Stall => {
                    // Forward nothing more and hold the connection until the client
                    // closes it (the upstream thread ends) or the proxy stops;
                    // drain the target meanwhile so it does not block.
                    from.set_read_timeout(Some(Duration::from_millis(50))).ok();
                    let mut target_open = true;
                    while !shared.stop.load(Ordering::Relaxed) && !upstream_thread.is_finished() {
                        if !target_open {
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                        match from.read(&mut buf) {
                            Ok(0) => target_open = false,
                            Ok(_) => {}
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::WouldBlock | ErrorKind::TimedOut
                                ) => {}
                            Err(_) => target_open = false,
                        }
                    }
                    done.store(true, Ordering::Relaxed);
                    to.shutdown(Shutdown::Both).ok();
                }
            }
            return;
        }
    });
}

fn set_linger_zero(s: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(s, sockopt::Linger, &linger).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that sends `len` bytes to every connection and closes.
    fn server(len: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut req = [0u8; 1];
                    s.read_exact(&mut req).ok();
                    s.write_all(&vec![7u8; len]).ok();
                });
            }
        });
        addr
    }

    fn fetch(addr: SocketAddr) -> (usize, Option<ErrorKind>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        s.write_all(b"x").unwrap();
        let mut got = 0;
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (got, None),
                Ok(n) => got += n,
                Err(e) => return (got, Some(e.kind())),
            }
        }
    }

    #[test]
    fn passes_through_then_breaks_as_told() {
        let proxy = FaultProxy::start(server(100_000)).unwrap();
        assert_eq!(fetch(proxy.addr()), (100_000, None));
        let fault = |kind| Fault {
            kind,
            after_bytes: 10_000,
            spread_bytes: 1,
        };
        proxy.set_fault(Some(fault(FaultKind::Truncate)));
        assert_eq!(fetch(proxy.addr()), (10_000, None));
        proxy.set_fault(Some(fault(FaultKind::Reset)));
        let (n, err) = fetch(proxy.addr());
        assert!(n <= 10_000, "{n}");
        assert_eq!(err, Some(ErrorKind::ConnectionReset));
        proxy.set_fault(Some(fault(FaultKind::Stall)));
        let (n, err) = fetch(proxy.addr());
        assert_eq!(n, 10_000);
        assert!(
            matches!(err, Some(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "{err:?}"
        );
        assert_eq!(proxy.faults_struck(), 3);
        proxy.set_fault(None);
        assert_eq!(fetch(proxy.addr()), (100_000, None));
    }
}
