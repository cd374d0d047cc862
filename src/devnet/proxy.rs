//! A fault-injecting UDP proxy for the dev network: placed in front of one node, it lets a test or
//! the demo cut, blackhole, thin out or slow down the path to that node while QUIC runs over it
//! unchanged. The other node dials [`FaultProxy::addr`] instead of the node's own address.
//!
//! Each distinct client source address gets a session: a fresh socket connected to the target,
//! so the target's replies can be told apart and sent back to the right client. Sessions live as
//! long as the proxy (its users are short tests and demos). The datagrams of one session and
//! direction pass through one delay line, so an added delay never reorders them. The proxy's
//! tasks run on the tokio runtime that started it and are aborted when the [`FaultProxy`] drops.

use std::{
    collections::{hash_map::Entry, HashMap},
    future::Future,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Deref,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::{net::UdpSocket, sync::mpsc, task::AbortHandle, time::Instant};

/// Largest datagram relayed (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams waiting in one delay line; beyond that they are dropped, as by a full router queue.
const LINE_CAPACITY: usize = 4096;

/// Which way a datagram travels through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client (the dialling node) to the target node.
    ToTarget,
    /// From the target node back to a client.
    FromTarget,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ToTarget => 0,
            Direction::FromTarget => 1,
        }
    }
}

/// The fault switches and counters of one proxy. Clones share state, so a test can hand one to
/// another task; every method takes `&self` and applies from the next datagram on.
#[derive(Debug, Clone)]
pub struct Faults(Arc<FaultState>);

#[derive(Debug)]
struct FaultState {
    blackhole: AtomicBool,
    cut: [AtomicBool; 2],
    drop_percent: AtomicU8,
    delay_micros: AtomicU64,
    sessions: AtomicU64,
    initial_packets: AtomicU64,
    forwarded: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
    seed: u64,
    rng: Mutex<StdRng>,
}

impl Faults {
    fn new(seed: u64) -> Self {
        Self(Arc::new(FaultState {
            blackhole: AtomicBool::new(false),
            cut: Default::default(),
            drop_percent: AtomicU8::new(0),
            delay_micros: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            initial_packets: AtomicU64::new(0),
            forwarded: Default::default(),
            dropped: Default::default(),
            seed,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }))
    }

    /// Drops every datagram both ways: a partition. Sessions and counters keep counting.
    pub fn blackhole(&self) {
        self.0.blackhole.store(true, Ordering::SeqCst);
    }

    /// Drops every datagram travelling in `direction` only: an asymmetric cut.
    pub fn cut(&self, direction: Direction) {
        self.0.cut[direction.index()].store(true, Ordering::SeqCst);
    }

    /// Drops each datagram, both ways, with probability `percent`/100 (values above 100 mean 100).
    pub fn drop_percent(&self, percent: u8) {
        self.0.drop_percent.store(percent.min(100), Ordering::SeqCst);
    }

    /// Holds every datagram back by `delay` both ways, keeping each session's order.
    pub fn delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.0.delay_micros.store(micros, Ordering::SeqCst);
    }

    /// Turns every fault off: no blackhole, no cut, no loss, no delay. Counters are kept.
    pub fn heal(&self) {
        self.0.blackhole.store(false, Ordering::SeqCst);
        for cut in &self.0.cut {
            cut.store(false, Ordering::SeqCst);
        }
        self.0.drop_percent.store(0, Ordering::SeqCst);
        self.0.delay_micros.store(0, Ordering::SeqCst);
    }

    /// Distinct client source addresses ever seen, dropped datagrams included. A QUIC endpoint
    /// sends from one socket, so this counts the dialling endpoints, not their connections.
    pub fn sessions(&self) -> u64 {
        self.0.sessions.load(Ordering::SeqCst)
    }

    /// QUIC v1 Initial packets seen from clients, dropped ones included: roughly the connection
    /// attempts of the dialling side (a lost Initial is retransmitted, and counted again).
    pub fn initial_packets(&self) -> u64 {
        self.0.initial_packets.load(Ordering::SeqCst)
    }

    /// Datagrams let through in `direction` (queued for delivery; a send to a stopped target is
    /// lost like on a real network but counted here).
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.0.forwarded[direction.index()].load(Ordering::SeqCst)
    }

    /// Datagrams dropped in `direction` by a fault or a full delay line.
    pub fn dropped(&self, direction: Direction) -> u64 {
        self.0.dropped[direction.index()].load(Ordering::SeqCst)
    }

    /// The seed of the random loss, to print with a failing test.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// Counts a datagram from a client before any fault applies to it.
    fn observe_from_client(&self, data: &[u8]) {
        // Long header (0x80), fixed bit (0x40), packet type 0 = Initial in QUIC v1 (RFC 9000 §17.2).
        if data.first().is_some_and(|b| b & 0xf0 == 0xc0) {
            self.0.initial_packets.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Queues `data` on `line` unless a fault drops it, counting either way.
    fn offer(&self, direction: Direction, line: &mpsc::Sender<Delayed>, data: &[u8]) {
        let due = Instant::now() + Duration::from_micros(self.0.delay_micros.load(Ordering::SeqCst));
        let passed = self.passes(direction)
            && line
                .try_send(Delayed {
                    due,
                    data: data.to_vec(),
                })
                .is_ok();
        let counters = if passed { &self.0.forwarded } else { &self.0.dropped };
        counters[direction.index()].fetch_add(1, Ordering::SeqCst);
    }

    fn passes(&self, direction: Direction) -> bool {
        if self.0.blackhole.load(Ordering::SeqCst) || self.0.cut[direction.index()].load(Ordering::SeqCst) {
            return false;
        }
        match self.0.drop_percent.load(Ordering::SeqCst) {
            0 => true,
            100.. => false,
            percent => lock(&self.0.rng).random_range(0..100u8) >= percent,
        }
    }
}

/// A UDP proxy in front of one target address, with [`Faults`] on its path (it derefs to them,
/// so `proxy.blackhole()` works). Dropping it stops all its tasks and closes its sockets.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    faults: Faults,
    tasks: TaskList,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and relays to `target`, with a random loss seed. Must be called
    /// within a tokio runtime with I/O enabled (the tasks are spawned on it); outside one it
    /// returns an error.
    pub fn start(target: SocketAddr) -> io::Result<Self> {
        Self::start_seeded(target, rand::random())
    }

    /// [`FaultProxy::start`] with a chosen seed for [`Faults::drop_percent`].
    pub fn start_seeded(target: SocketAddr, seed: u64) -> io::Result<Self> {
        tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_nonblocking(true)?;
        let public = Arc::new(UdpSocket::from_std(socket)?);
        let addr = public.local_addr()?;
        let faults = Faults::new(seed);
        let tasks = TaskList::default();
        spawn(&tasks, listen(public, target, faults.clone(), tasks.clone()));
        Ok(Self {
            addr,
            target,
            faults,
            tasks,
        })
    }

    /// The address to dial instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address datagrams are relayed to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// A handle on this proxy's faults and counters that may outlive a borrow of the proxy.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }
}

impl Deref for FaultProxy {
    type Target = Faults;

    fn deref(&self) -> &Faults {
        &self.faults
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let mut tasks = lock(&self.tasks);
        tasks.closed = true;
        for task in tasks.handles.drain(..) {
            task.abort();
        }
    }
}

/// The proxy's tasks, aborted together. `closed` stops a session spawned during the drop from
/// outliving it.
#[derive(Debug, Default)]
struct Tasks {
    closed: bool,
    handles: Vec<AbortHandle>,
}

type TaskList = Arc<Mutex<Tasks>>;

fn spawn(tasks: &TaskList, future: impl Future<Output = ()> + Send + 'static) {
    let handle = tokio::spawn(future).abort_handle();
    let mut tasks = lock(tasks);
    if tasks.closed {
        handle.abort();
    } else {
        tasks.handles.push(handle);
    }
}

/// A lock that survives a panicking holder: the guarded values stay consistent at every step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A datagram waiting in a delay line.
struct Delayed {
    due: Instant,
    data: Vec<u8>,
}

/// Receives from clients on the public socket and feeds each client's session.
async fn listen(public: Arc<UdpSocket>, target: SocketAddr, faults: Faults, tasks: TaskList) {
    let mut sessions = HashMap::new();
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        let (len, client) = match public.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                pause_after(error).await;
                continue;
            }
        };
        let data = &buf[..len];
        faults.observe_from_client(data);
        let line = match sessions.entry(client) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                faults.0.sessions.fetch_add(1, Ordering::SeqCst);
                match open_session(target, client, &public, &faults, &tasks) {
                    Ok(line) => entry.insert(line),
                    // No socket for this client now: its datagram is lost, a retransmission retries.
                    Err(_) => continue,
                }
            }
        };
        faults.offer(Direction::ToTarget, line, data);
    }
}

/// A socket connected to `target` for one client, with its two delay lines and reply reader.
/// Returns the line towards the target.
fn open_session(
    target: SocketAddr,
    client: SocketAddr,
    public: &Arc<UdpSocket>,
    faults: &Faults,
    tasks: &TaskList,
) -> io::Result<mpsc::Sender<Delayed>> {
    let unspecified: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(unspecified)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    let upstream = Arc::new(UdpSocket::from_std(socket)?);
    let (to_target, to_target_rx) = mpsc::channel(LINE_CAPACITY);
    let (to_client, to_client_rx) = mpsc::channel(LINE_CAPACITY);
    spawn(tasks, deliver(to_target_rx, Exit::Target(upstream.clone())));
    spawn(tasks, deliver(to_client_rx, Exit::Client(public.clone(), client)));
    spawn(tasks, read_replies(upstream, faults.clone(), to_client));
    Ok(to_target)
}

/// Relays the target's replies for one session.
async fn read_replies(upstream: Arc<UdpSocket>, faults: Faults, line: mpsc::Sender<Delayed>) {
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(len) => faults.offer(Direction::FromTarget, &line, &buf[..len]),
            Err(error) => pause_after(error).await,
        }
    }
}

/// Where a delay line delivers: the target (through the session's connected socket) or a client
/// (through the public socket, so replies come from the address it dialled).
enum Exit {
    Target(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

/// A delay line: sends each datagram when it is due, in the order queued.
async fn deliver(mut line: mpsc::Receiver<Delayed>, exit: Exit) {
    while let Some(packet) = line.recv().await {
        if packet.due > Instant::now() {
            tokio::time::sleep_until(packet.due).await;
        }
        // A send fails when the far side is gone (ICMP unreachable): a lost datagram, as on a
        // real network, which QUIC retransmits.
        let _ = match &exit {
            Exit::Target(socket) => socket.send(&packet.data).await,
            Exit::Client(socket, client) => socket.send_to(&packet.data, *client).await,
        };
    }
}

/// After a failed receive. ICMP errors (the target or a client went away) are reported once per
/// datagram and need no pause; anything else might repeat, so wait rather than spin.
async fn pause_after(error: io::Error) {
    if !matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    ) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long to wait for a datagram; a dropped one costs the whole wait.
    const WAIT: Duration = Duration::from_millis(300);

    async fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.expect("bind")
    }

    async fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0; MAX_DATAGRAM];
        match tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await {
            Ok(Ok((len, from))) => Some((buf[..len].to_vec(), from)),
            _ => None,
        }
    }

    /// A target, a proxy in front of it, and a client whose session is open.
    struct Setup {
        target: UdpSocket,
        proxy: FaultProxy,
        client: UdpSocket,
        /// The client's session as the target sees it.
        session: SocketAddr,
    }

    impl Setup {
        async fn new() -> Self {
            let target = socket().await;
            let proxy = FaultProxy::start(target.local_addr().expect("addr")).expect("proxy");
            let client = socket().await;
            client.send_to(b"hello", proxy.addr()).await.expect("send");
            let (data, session) = recv(&target).await.expect("first datagram relayed");
            assert_eq!(data, b"hello");
            Self {
                target,
                proxy,
                client,
                session,
            }
        }

        /// Whether `data` sent by the client reached the target from the session's address.
        async fn reaches_target(&self, data: &[u8]) -> bool {
            self.client.send_to(data, self.proxy.addr()).await.expect("send");
            recv(&self.target).await == Some((data.to_vec(), self.session))
        }

        /// Whether `data` sent by the target reached the client from the proxy's address.
        async fn reaches_client(&self, data: &[u8]) -> bool {
            self.target.send_to(data, self.session).await.expect("send");
            recv(&self.client).await == Some((data.to_vec(), self.proxy.addr()))
        }
    }

    #[tokio::test]
    async fn relays_both_ways() {
        let s = Setup::new().await;
        assert!(s.reaches_target(b"ping").await);
        assert!(s.reaches_client(b"pong").await);
        assert_eq!(s.proxy.forwarded(Direction::ToTarget), 2);
        assert_eq!(s.proxy.forwarded(Direction::FromTarget), 1);
        assert_eq!(
            s.proxy.dropped(Direction::ToTarget) + s.proxy.dropped(Direction::FromTarget),
            0
        );
    }

    #[tokio::test]
    async fn blackhole_drops_both_ways() {
        let s = Setup::new().await;
        s.proxy.blackhole();
        assert!(!s.reaches_target(b"ping").await);
        assert!(!s.reaches_client(b"pong").await);
        assert_eq!(s.proxy.dropped(Direction::ToTarget), 1);
        assert_eq!(s.proxy.dropped(Direction::FromTarget), 1);
    }

    #[tokio::test]
    async fn cut_to_target_drops_only_that_direction() {
        let s = Setup::new().await;
        s.proxy.cut(Direction::ToTarget);
        assert!(!s.reaches_target(b"ping").await);
        assert!(s.reaches_client(b"pong").await);
    }

    #[tokio::test]
    async fn cut_from_target_drops_only_that_direction() {
        let s = Setup::new().await;
        s.proxy.cut(Direction::FromTarget);
        assert!(s.reaches_target(b"ping").await);
        assert!(!s.reaches_client(b"pong").await);
    }

    #[tokio::test]
    async fn heal_turns_every_fault_off() {
        let s = Setup::new().await;
        s.proxy.blackhole();
        s.proxy.cut(Direction::ToTarget);
        s.proxy.cut(Direction::FromTarget);
        s.proxy.drop_percent(100);
        s.proxy.delay(Duration::from_secs(10));
        assert!(!s.reaches_target(b"lost").await);
        s.proxy.heal();
        assert!(s.reaches_target(b"ping").await);
        assert!(s.reaches_client(b"pong").await);
    }

    #[tokio::test]
    async fn sessions_count_distinct_sources() {
        let s = Setup::new().await;
        let other = socket().await;
        for _ in 0..2 {
            other.send_to(b"again", s.proxy.addr()).await.expect("send");
            let (_, from) = recv(&s.target).await.expect("relayed");
            assert_ne!(from, s.session, "each source gets its own session");
        }
        assert!(s.reaches_target(b"first again").await);
        assert_eq!(s.proxy.sessions(), 2);
    }

    #[tokio::test]
    async fn drop_percent_100_drops_all_and_0_none() {
        let s = Setup::new().await;
        s.proxy.drop_percent(100);
        for i in 0..20u8 {
            s.client.send_to(&[i], s.proxy.addr()).await.expect("send");
        }
        assert_eq!(recv(&s.target).await, None);
        assert_eq!(s.proxy.dropped(Direction::ToTarget), 20);

        s.proxy.drop_percent(0);
        for i in 0..20u8 {
            s.client.send_to(&[i], s.proxy.addr()).await.expect("send");
        }
        for i in 0..20u8 {
            assert_eq!(recv(&s.target).await, Some((vec![i], s.session)));
        }
        assert_eq!(s.proxy.forwarded(Direction::ToTarget), 21);
    }

    #[tokio::test]
    async fn counts_quic_v1_initial_packets_from_clients() {
        let s = Setup::new().await;
        s.proxy.blackhole();
        // Initial (0xc3), Handshake (0xe0), 0-RTT (0xd0), a short header (0x43).
        for first in [0xc3u8, 0xe0, 0xd0, 0x43, 0xc0] {
            s.client
                .send_to(&[first, 0, 0, 0, 1], s.proxy.addr())
                .await
                .expect("send");
        }
        s.target.send_to(&[0xc3], s.session).await.expect("send");
        tokio::time::sleep(WAIT).await;
        assert_eq!(s.proxy.initial_packets(), 2, "dropped ones count, replies do not");
    }

    #[tokio::test]
    async fn delay_holds_datagrams_back_in_order() {
        let s = Setup::new().await;
        s.proxy.delay(Duration::from_millis(100));
        let sent = Instant::now();
        for i in 0..3u8 {
            s.client.send_to(&[i], s.proxy.addr()).await.expect("send");
        }
        for i in 0..3u8 {
            assert_eq!(recv(&s.target).await, Some((vec![i], s.session)));
        }
        assert!(sent.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn dropping_the_proxy_stops_relaying() {
        let s = Setup::new().await;
        let (addr, client, target) = (s.proxy.addr(), s.client, s.target);
        drop(s.proxy);
        tokio::task::yield_now().await;
        let _ = client.send_to(b"after", addr).await;
        assert_eq!(recv(&target).await, None);
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        let target = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(FaultProxy::start(target.local_addr().expect("addr")).is_err());
    }
}
