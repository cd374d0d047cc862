//! The proxy against plain UDP sockets: each fault, the counters, and the tasks stopping with it.

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
    s.proxy.jitter(Duration::from_secs(5));
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

#[tokio::test]
async fn jitter_reorders_datagrams_and_delivers_them_all() {
    let s = Setup::new().await;
    s.proxy.delay(Duration::from_millis(30));
    s.proxy.jitter(Duration::from_millis(25));
    let sent = Instant::now();
    for i in 0..50u8 {
        s.client.send_to(&[i], s.proxy.addr()).await.expect("send");
    }
    let (first, _) = recv(&s.target).await.expect("the first datagram");
    assert!(
        sent.elapsed() >= Duration::from_millis(5),
        "none leaves before delay - jitter"
    );
    let mut received = vec![first[0]];
    while let Some((data, _)) = recv(&s.target).await {
        received.push(data[0]);
    }
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<u8>>(), "every datagram arrives once");
    assert_ne!(received, sorted, "some overtook others (seed {})", s.proxy.seed());
}

#[tokio::test]
async fn forwarded_bytes_count_what_passed_each_way() {
    let s = Setup::new().await;
    assert!(s.reaches_target(&[7; 100]).await);
    assert!(s.reaches_client(&[8; 40]).await);
    s.proxy.cut(Direction::FromTarget);
    assert!(!s.reaches_client(&[9; 1000]).await);
    assert_eq!(
        s.proxy.forwarded_bytes(Direction::ToTarget),
        5 + 100,
        "hello, then 100 bytes"
    );
    assert_eq!(
        s.proxy.forwarded_bytes(Direction::FromTarget),
        40,
        "dropped bytes are not counted"
    );
}

/// A target socket, and a delay line towards it: the sender, and its delivery to be spawned.
async fn line_to_a_target() -> (UdpSocket, mpsc::Sender<Delayed>, impl Future<Output = ()>) {
    let target = socket().await;
    let out = socket().await;
    out.connect(target.local_addr().expect("addr")).await.expect("connect");
    let (line, queued) = mpsc::channel(4);
    (target, line, deliver(queued, Exit::Target(Arc::new(out))))
}

/// A datagram due now leaves at once: it does not wait for the timer's next millisecond tick,
/// which would add up to a millisecond to every round trip through an undelayed proxy. Virtual
/// time (paused) moves only to fire a timer, so none may pass while it crosses.
#[tokio::test(start_paused = true)]
async fn a_datagram_due_now_leaves_without_waiting_for_a_timer_tick() {
    let (target, line, delivery) = line_to_a_target().await;
    let delivering = tokio::spawn(delivery);
    // Between two ticks, so that a timer set for now would round up to the next one.
    tokio::time::advance(Duration::from_micros(500)).await;
    let sent = Instant::now();
    let data = b"now".to_vec();
    line.send(Delayed { due: sent, data }).await.expect("queued");
    let mut buf = [0; 16];
    let len = target.recv(&mut buf).await.expect("relayed");
    assert_eq!(&buf[..len], b"now");
    assert_eq!(Instant::now(), sent, "no timer was waited on");
    delivering.abort();
}

/// Datagrams that are all due when the line looks leave in the order of their due times, not in
/// the order they were queued (a jittered line that fell behind).
#[tokio::test(start_paused = true)]
async fn datagrams_already_due_leave_in_due_order() {
    let (target, line, delivery) = line_to_a_target().await;
    tokio::time::advance(Duration::from_millis(5)).await;
    let now = Instant::now();
    for (data, ago_ms) in [(b"c", 1), (b"a", 3), (b"b", 2)] {
        let due = now - Duration::from_millis(ago_ms);
        line.send(Delayed {
            due,
            data: data.to_vec(),
        })
        .await
        .expect("queued");
    }
    let delivering = tokio::spawn(delivery);
    let mut order = Vec::new();
    let mut buf = [0; 16];
    for _ in 0..3 {
        let len = target.recv(&mut buf).await.expect("relayed");
        order.extend_from_slice(&buf[..len]);
    }
    assert_eq!(order, b"abc");
    delivering.abort();
}
