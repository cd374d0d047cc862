//! A fault-injecting UDP proxy for the dev network: placed in front of one node, it lets a test or
//! the demo cut, blackhole, thin out or slow down the path to that node while QUIC runs over it
//! unchanged. The other node dials [`FaultProxy::addr`] instead of the node's own address.
//!
//! Each distinct client source address gets a session: a fresh socket connected to the target,
//! so the target's replies can be told apart and sent back to the right client. Sessions live as
//! long as the proxy (its users are short tests and demos). The datagrams of one session and
//! direction pass through one delay line (`line`): a constant delay never reorders them, a
//! jittered one does, as a WAN path with several routes would. The proxy's tasks run on the tokio
//! runtime that started it and are aborted when the [`FaultProxy`] drops.

mod line;

use std::{
    collections::{hash_map::Entry, HashMap},
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Deref,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::{net::UdpSocket, sync::mpsc, task::AbortHandle, time::Instant};

use line::{deliver, Delayed, Exit};

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
    jitter_micros: AtomicU64,
    sessions: AtomicU64,
    initial_packets: AtomicU64,
    forwarded: [AtomicU64; 2],
    forwarded_bytes: [AtomicU64; 2],
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
            jitter_micros: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            initial_packets: AtomicU64::new(0),
            forwarded: Default::default(),
            forwarded_bytes: Default::default(),
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

    /// Spreads each datagram's delay uniformly over `delay ± jitter` (never below zero), both
    /// ways: datagrams then overtake each other, as on a WAN path with jitter.
    pub fn jitter(&self, jitter: Duration) {
        let micros = u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX);
        self.0.jitter_micros.store(micros, Ordering::SeqCst);
    }

    /// Turns every fault off: no blackhole, no cut, no loss, no delay or jitter. Counters are kept.
    pub fn heal(&self) {
        self.0.blackhole.store(false, Ordering::SeqCst);
        for cut in &self.0.cut {
            cut.store(false, Ordering::SeqCst);
        }
        self.0.drop_percent.store(0, Ordering::SeqCst);
        self.0.delay_micros.store(0, Ordering::SeqCst);
        self.0.jitter_micros.store(0, Ordering::SeqCst);
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

    /// Bytes of the datagrams let through in `direction` (UDP payloads: QUIC packets with their
    /// headers, acknowledgements and retransmissions, as a link's bandwidth sees them).
    pub fn forwarded_bytes(&self, direction: Direction) -> u64 {
        self.0.forwarded_bytes[direction.index()].load(Ordering::SeqCst)
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
        let passed = self.passes(direction)
            && line
                .try_send(Delayed {
                    due: self.due(),
                    data: data.to_vec(),
                })
                .is_ok();
        let counters = if passed { &self.0.forwarded } else { &self.0.dropped };
        counters[direction.index()].fetch_add(1, Ordering::SeqCst);
        if passed {
            self.0.forwarded_bytes[direction.index()].fetch_add(data.len() as u64, Ordering::SeqCst);
        }
    }

    /// When a datagram offered now leaves: after the delay, moved by up to the jitter either way.
    fn due(&self) -> Instant {
        let delay = self.0.delay_micros.load(Ordering::SeqCst);
        let jitter = self.0.jitter_micros.load(Ordering::SeqCst);
        let micros = match jitter {
            0 => delay,
            _ => {
                let drawn = lock(&self.0.rng).random_range(0..=2 * jitter);
                (delay + drawn).saturating_sub(jitter)
            }
        };
        Instant::now() + Duration::from_micros(micros)
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
        let socket = super::ports::udp_socket(Ipv4Addr::LOCALHOST.into())?;
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
    let unspecified: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = super::ports::udp_socket(unspecified)?;
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
mod tests;
