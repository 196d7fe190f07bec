//! Who gets a turn at the TLS handshake, and the record of who was refused.
//!
//! Until its handshake ends a client is unauthenticated: anyone who reaches the
//! port. Handshakes therefore have bounds of their own, apart from
//! `max_connections` (which counts authenticated connections only): at most
//! `max_handshakes` in progress, at most `max_handshakes_per_address` from one
//! source address, each within `handshake_timeout` (the connection task enforces
//! that). When a new connection meets a bound, a handshake in that bound is closed
//! to make room: one whose client has not delivered a whole first TLS record (its
//! ClientHello) yet, or one silent (no byte either way) for [`EVICT_AFTER_SILENCE`];
//! of those, first the ones without a whole ClientHello, then the one whose client
//! sent the fewest bytes, then the one silent the longest. When there is none, the
//! newcomer is closed. A ClientHello that has arrived but that the connection's task
//! has not read yet counts (the kernel is asked). Sockets that open and say nothing,
//! or a few bytes, can thus not keep anyone out, not even from their own address;
//! a client that sends its ClientHello at once is closed only when every other is a
//! whole ClientHello that went silent.
//!
//! Refusals are counted by [`Refusal`] reason in the self-metrics and logged rolled
//! up by [`RefusalLog`]: the first at once, then at most one line a minute with the
//! counts by reason. Each refusal's detail is logged at debug level.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// A handshake whose client has spoken, silent for less than this, is never closed
/// to make room.
pub const EVICT_AFTER_SILENCE: Duration = Duration::from_millis(250);
/// At most one refusal summary this often.
pub const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(60);
/// Where the admission's millisecond clock starts, so that "this long ago" never
/// goes below zero.
const CLOCK_START_MS: u64 = 3_600_000;

/// Milliseconds since `epoch`, from [`CLOCK_START_MS`].
fn clock_ms(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64 + CLOCK_START_MS
}

/// Why a connection was refused (the `reason` label of
/// `pga_agent_endpoint_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The client presented no certificate.
    NoCertificate,
    /// Its certificate does not chain to `client_ca_file`, or is otherwise invalid.
    UntrustedCertificate,
    /// Its certificate is expired or not yet valid.
    ExpiredCertificate,
    /// Its certificate is revoked, or no CRL covers it.
    RevokedCertificate,
    /// Its certificate is valid but not in `allowed_clients`.
    NotAllowed,
    /// It offers no TLS version, cipher or protocol the agent speaks (TLS 1.2 only).
    Incompatible,
    /// It did not speak TLS.
    Malformed,
    /// It did not finish the handshake within `handshake_timeout_secs`.
    Timeout,
    /// Closed silent to make room for another handshake.
    Evicted,
    /// Closed on arrival: `max_handshakes` in progress, none silent long enough.
    HandshakeLimit,
    /// Closed on arrival: `max_handshakes_per_address` from its address.
    AddressLimit,
    /// Authenticated, but `max_connections` were open: answered 503.
    ConnectionLimit,
    /// The client closed or reset the connection during the handshake (port probes,
    /// health checks): counted, never logged above debug.
    Closed,
}

impl Refusal {
    pub const ALL: [Refusal; 13] = [
        Refusal::NoCertificate,
        Refusal::UntrustedCertificate,
        Refusal::ExpiredCertificate,
        Refusal::RevokedCertificate,
        Refusal::NotAllowed,
        Refusal::Incompatible,
        Refusal::Malformed,
        Refusal::Timeout,
        Refusal::Evicted,
        Refusal::HandshakeLimit,
        Refusal::AddressLimit,
        Refusal::ConnectionLimit,
        Refusal::Closed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no_certificate",
            Refusal::UntrustedCertificate => "untrusted_certificate",
            Refusal::ExpiredCertificate => "expired_certificate",
            Refusal::RevokedCertificate => "revoked_certificate",
            Refusal::NotAllowed => "not_allowed",
            Refusal::Incompatible => "incompatible",
            Refusal::Malformed => "malformed",
            Refusal::Timeout => "timeout",
            Refusal::Evicted => "evicted",
            Refusal::HandshakeLimit => "handshake_limit",
            Refusal::AddressLimit => "address_limit",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::Closed => "closed",
        }
    }

    /// The reason of a failed handshake.
    pub fn of_handshake_error(e: &io::Error) -> Refusal {
        use rustls::{CertRevocationListError, CertificateError, Error as Tls};
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Tls>()) else {
            return match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Refusal::Closed,
                _ => Refusal::Malformed,
            };
        };
        match tls {
            Tls::NoCertificatesPresented => Refusal::NoCertificate,
            Tls::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => Refusal::ExpiredCertificate,
            Tls::InvalidCertificate(
                CertificateError::Revoked | CertificateError::UnknownRevocationStatus,
            )
            | Tls::InvalidCertRevocationList(CertRevocationListError::BadSignature) => {
                Refusal::RevokedCertificate
            }
            Tls::InvalidCertificate(_) | Tls::InvalidCertRevocationList(_) => {
                Refusal::UntrustedCertificate
            }
            Tls::PeerIncompatible(_) | Tls::NoApplicationProtocol => Refusal::Incompatible,
            _ => Refusal::Malformed,
        }
    }
}

/// The handshakes in progress.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_address: usize,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    pending: HashMap<u64, Pending>,
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Pending {
    ip: IpAddr,
    activity: Arc<Activity>,
    evict: Option<oneshot::Sender<()>>,
    /// A duplicate of the socket, to see whether the client's ClientHello waits in
    /// the kernel before its task has read it (closed with the entry).
    socket: Option<OwnedFd>,
}

/// What a handshake's client has done so far.
#[derive(Debug, Default)]
struct Activity {
    /// [`clock_ms`] of the last byte either way.
    last_ms: AtomicU64,
    /// Bytes received from the client.
    received: AtomicU64,
    /// A whole first TLS record (the ClientHello) arrived.
    hello: AtomicBool,
}

/// Size of a TLS record header: type, version, length (RFC 8446, 5.1).
const RECORD_HEADER: usize = 5;

/// The length of the first TLS record, header included, from its header.
fn record_len(header: &[u8; RECORD_HEADER]) -> u64 {
    RECORD_HEADER as u64 + u64::from(u16::from_be_bytes([header[3], header[4]]))
}

/// Whether a whole first TLS record waits on `socket`, unread.
fn hello_waiting(socket: BorrowedFd<'_>) -> bool {
    let mut header = [0u8; RECORD_HEADER];
    let peeked = rustix::net::recv(
        socket,
        &mut header[..],
        rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
    );
    matches!(peeked, Ok((_, RECORD_HEADER)))
        && rustix::io::ioctl_fionread(socket).is_ok_and(|n| n >= record_len(&header))
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&p.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&p.ip);
            }
        }
        Some(p)
    }

    /// Closes a handshake (among those from `ip`, if given) to make room, as the
    /// module says; `Err(refusal)` when none may be closed.
    fn make_room(&mut self, ip: Option<IpAddr>, now: u64, refusal: Refusal) -> Result<(), Refusal> {
        let silent_enough = EVICT_AFTER_SILENCE.as_millis() as u64;
        let mut candidates: Vec<(bool, u64, u64, u64)> = self
            .pending
            .iter()
            .filter(|(_, p)| ip.is_none_or(|ip| p.ip == ip))
            .map(|(&id, p)| {
                let a = &p.activity;
                let hello = a.hello.load(Ordering::Relaxed);
                let received = a.received.load(Ordering::Relaxed);
                let last = a.last_ms.load(Ordering::Relaxed);
                (hello, received, last, id)
            })
            .filter(|&(hello, _, last, _)| !hello || now.saturating_sub(last) >= silent_enough)
            .collect();
        candidates.sort_unstable();
        // A ClientHello that arrived but is not read yet protects its client.
        let victim = candidates.into_iter().find(|&(hello, _, _, id)| {
            let Some(p) = self.pending.get(&id) else {
                return false;
            };
            let arrived = !hello && p.socket.as_ref().is_some_and(|s| hello_waiting(s.as_fd()));
            if arrived {
                p.activity.hello.store(true, Ordering::Relaxed);
            }
            !arrived
        });
        let Some((_, _, _, id)) = victim else {
            return Err(refusal);
        };
        if let Some(mut victim) = self.remove(id)
            && let Some(tx) = victim.evict.take()
        {
            // The victim may have just ended; then there is nothing to close.
            let _gone = tx.send(());
        }
        Ok(())
    }
}

/// A handshake's place among those in progress; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    admission: Arc<Admission>,
    activity: Arc<Activity>,
    /// Resolves when the handshake is closed to make room for another.
    pub evicted: oneshot::Receiver<()>,
}

impl Ticket {
    /// `io` with every byte read or written counted as activity of this handshake.
    pub fn watch<I>(&self, io: I) -> Active<I> {
        Active {
            io,
            epoch: self.admission.epoch,
            activity: self.activity.clone(),
            header: [0; RECORD_HEADER],
            received: 0,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut t) = self.admission.table.lock() {
            t.remove(self.id);
        }
    }
}

impl Admission {
    pub fn new(max: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Admission {
            max: max.max(1),
            per_address: per_address.max(1),
            epoch: Instant::now(),
            table: Mutex::default(),
        })
    }

    fn now_ms(&self) -> u64 {
        clock_ms(self.epoch)
    }

    /// Handshakes in progress.
    pub fn in_progress(&self) -> usize {
        self.table.lock().map_or(0, |t| t.pending.len())
    }

    /// A place for a handshake from `ip` on `socket`, making room as the module says
    /// when a bound is met; `Err` when there is no room to make. The second value
    /// says whether a handshake was closed to make room.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        socket: Option<BorrowedFd<'_>>,
    ) -> Result<(Ticket, bool), Refusal> {
        let hello = socket.is_some_and(hello_waiting);
        let now = self.now_ms();
        let Ok(mut t) = self.table.lock() else {
            return Err(Refusal::HandshakeLimit);
        };
        // The per-address bound first: room made there is room in the total too.
        let mut evicted = false;
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_address {
            t.make_room(Some(ip), now, Refusal::AddressLimit)?;
            evicted = true;
        }
        if t.pending.len() >= self.max {
            t.make_room(None, now, Refusal::HandshakeLimit)?;
            evicted = true;
        }
        let id = t.next_id;
        t.next_id += 1;
        let (tx, rx) = oneshot::channel();
        let activity = Arc::new(Activity {
            last_ms: AtomicU64::new(now),
            received: AtomicU64::new(0),
            hello: AtomicBool::new(hello),
        });
        t.pending.insert(
            id,
            Pending {
                ip,
                activity: activity.clone(),
                evict: Some(tx),
                socket: socket.and_then(|s| s.try_clone_to_owned().ok()),
            },
        );
        *t.per_ip.entry(ip).or_default() += 1;
        drop(t);
        Ok((
            Ticket {
                id,
                admission: self.clone(),
                activity,
                evicted: rx,
            },
            evicted,
        ))
    }
}

/// An I/O stream that records when a byte last went either way.
#[derive(Debug)]
pub struct Active<I> {
    io: I,
    epoch: Instant,
    activity: Arc<Activity>,
    /// The first record's header, as it arrives.
    header: [u8; RECORD_HEADER],
    received: u64,
}

impl<I> Active<I> {
    fn touch(&self) {
        self.activity
            .last_ms
            .store(clock_ms(self.epoch), Ordering::Relaxed);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Active<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            for (i, b) in new.iter().enumerate() {
                let at = this.received as usize + i;
                if at >= RECORD_HEADER {
                    break;
                }
                this.header[at] = *b;
            }
            this.received += new.len() as u64;
            this.activity
                .received
                .store(this.received, Ordering::Relaxed);
            if this.received >= RECORD_HEADER as u64 && this.received >= record_len(&this.header) {
                this.activity.hello.store(true, Ordering::Relaxed);
            }
            this.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Active<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Refusals rolled up: the first logged at once, then at most one line every
/// [`REFUSALS_LOGGED_EVERY`] with the counts by reason since the previous line.
#[derive(Debug, Default)]
pub struct RefusalLog {
    counts: BTreeMap<Refusal, u64>,
    last_line: Option<Instant>,
    /// The latest refusal: peer, reason, detail.
    latest: Option<(SocketAddr, Refusal, String)>,
}

impl RefusalLog {
    /// Records one refusal; logs when a line is due.
    pub fn note(&mut self, peer: SocketAddr, reason: Refusal, detail: &str) {
        tracing::debug!(peer = %peer, reason = reason.as_str(), error = %detail, "connection refused");
        if reason == Refusal::Closed {
            return;
        }
        *self.counts.entry(reason).or_default() += 1;
        self.latest = Some((peer, reason, detail.to_owned()));
        if self
            .last_line
            .is_none_or(|t| t.elapsed() >= REFUSALS_LOGGED_EVERY)
        {
            self.flush();
        }
    }

    /// Whether refusals wait for their line and it is time for it.
    pub fn due(&self) -> bool {
        !self.counts.is_empty()
            && self
                .last_line
                .is_none_or(|t| t.elapsed() >= REFUSALS_LOGGED_EVERY)
    }

    /// Logs the refusals counted since the last line, if any.
    pub fn flush(&mut self) {
        if self.counts.is_empty() {
            return;
        }
        let total: u64 = self.counts.values().sum();
        let by_reason = self
            .counts
            .iter()
            .map(|(r, n)| format!("{} {n}", r.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let (peer, reason, detail) = self
            .latest
            .take()
            .map(|(p, r, d)| (p.to_string(), r.as_str(), d))
            .unwrap_or_default();
        let since = self.last_line.map_or_else(
            || "now".to_owned(),
            |t| format!("in the last {} s", t.elapsed().as_secs()),
        );
        tracing::warn!(
            refused = total,
            by_reason = %by_reason,
            last_peer = %peer,
            last_reason = reason,
            last_error = %detail,
            "endpoint refused {total} connection(s) {since} (at most one such line a minute; \
             pga_agent_endpoint_refused_total counts them by reason)"
        );
        self.counts.clear();
        self.last_line = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    impl Admission {
        fn admit_quiet(self: &Arc<Self>, ip: IpAddr) -> Result<(Ticket, bool), Refusal> {
            self.admit(ip, None)
        }
    }

    #[test]
    fn a_client_whose_hello_waits_unread_counts_as_having_sent_it() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut speaker = std::net::TcpStream::connect(addr).unwrap();
        let (spoken, _) = listener.accept().unwrap();
        let mut stammerer = std::net::TcpStream::connect(addr).unwrap();
        let (partial, _) = listener.accept().unwrap();
        let a = Admission::new(2, 2);
        // Admitted before their clients spoke; the bytes arrive, nobody reads them.
        let (mut first, _) = a.admit(ip(2), Some(spoken.as_fd())).unwrap();
        let (mut second, _) = a.admit(ip(2), Some(partial.as_fd())).unwrap();
        // A whole record of 4 bytes, and the start of one of 512.
        speaker
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 1, 2, 3, 4])
            .unwrap();
        stammerer
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1])
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // The older one would go first, but its ClientHello is here: the other goes.
        let (_third, _) = a.admit_quiet(ip(2)).unwrap();
        assert!(first.evicted.try_recv().is_err());
        assert_eq!(second.evicted.try_recv(), Ok(()));
    }

    #[tokio::test]
    async fn reading_a_whole_first_record_marks_the_hello() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let a = Admission::new(4, 4);
        let (t, _) = a.admit_quiet(ip(2)).unwrap();
        let (client, server) = tokio::io::duplex(64);
        let mut io = t.watch(server);
        let mut client = client;
        client
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x03, 7])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let n = io.read(&mut buf).await.unwrap();
        assert_eq!(n, 6);
        assert!(!t.activity.hello.load(Ordering::Relaxed));
        client.write_all(&[8, 9]).await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        assert!(t.activity.hello.load(Ordering::Relaxed));
        assert_eq!(t.activity.received.load(Ordering::Relaxed), 8);
    }

    /// `t`'s client sent `bytes` (a whole ClientHello when more than 0), the last
    /// byte `ago_ms` ago.
    fn spoke(a: &Admission, t: &Ticket, bytes: u64, ago_ms: u64) {
        t.activity.received.store(bytes, Ordering::Relaxed);
        t.activity.hello.store(bytes > 0, Ordering::Relaxed);
        t.activity
            .last_ms
            .store(a.now_ms().saturating_sub(ago_ms), Ordering::Relaxed);
    }

    #[test]
    fn those_who_said_least_make_room_and_the_active_keep_theirs() {
        let a = Admission::new(3, 3);
        let (mut idle, _) = a.admit_quiet(ip(2)).unwrap();
        let (mut talker, _) = a.admit_quiet(ip(3)).unwrap();
        let (busy, _) = a.admit_quiet(ip(4)).unwrap();
        spoke(&a, &talker, 300, 0);
        spoke(&a, &busy, 900, 0);
        // The one without a ClientHello goes first, however fresh.
        let (mut newcomer, made_room) = a.admit_quiet(ip(5)).unwrap();
        assert!(made_room);
        assert_eq!(idle.evicted.try_recv(), Ok(()));
        drop(idle);
        assert_eq!(
            a.in_progress(),
            3,
            "an evicted ticket gives back nothing twice"
        );
        // The newcomer has not sent one either: it goes next.
        let (mut next, _) = a.admit_quiet(ip(6)).unwrap();
        assert_eq!(newcomer.evicted.try_recv(), Ok(()));
        // Only clients with a ClientHello are left, none silent long: refused.
        spoke(&a, &next, 10, 0);
        assert_eq!(a.admit_quiet(ip(7)).unwrap_err(), Refusal::HandshakeLimit);
        // Silent long enough: the one that sent the least makes room.
        spoke(&a, &talker, 300, 1000);
        spoke(&a, &busy, 900, 1000);
        spoke(&a, &next, 10, 1000);
        assert!(a.admit_quiet(ip(7)).is_ok());
        assert_eq!(next.evicted.try_recv(), Ok(()));
        assert!(talker.evicted.try_recv().is_err());
        drop(busy);
    }

    #[test]
    fn one_address_cannot_take_every_place() {
        let a = Admission::new(10, 2);
        let (mut a1, _) = a.admit_quiet(ip(2)).unwrap();
        let (a2, _) = a.admit_quiet(ip(2)).unwrap();
        spoke(&a, &a1, 100, 0);
        spoke(&a, &a2, 100, 0);
        assert_eq!(a.admit_quiet(ip(2)).unwrap_err(), Refusal::AddressLimit);
        // Another address still gets in.
        assert!(a.admit_quiet(ip(3)).is_ok());
        // Silent long enough: the same address may replace its own silent one.
        spoke(&a, &a1, 100, 1000);
        let (_a3, made_room) = a.admit_quiet(ip(2)).unwrap();
        assert!(made_room);
        assert_eq!(a1.evicted.try_recv(), Ok(()));
    }

    #[test]
    fn refusal_reasons_are_distinct_names() {
        let names: std::collections::BTreeSet<_> =
            Refusal::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Refusal::ALL.len());
    }
}
