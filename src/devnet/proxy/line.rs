//! A delay line: datagrams of one session and direction wait here until they are due, then
//! leave through their exit. Datagrams leave in the order of their due times, so a constant
//! delay keeps their order and a jittered one lets a later datagram overtake an earlier one (the
//! reordering of a real WAN path); equal due times leave in arrival order.

use std::{cmp::Reverse, collections::BinaryHeap, net::SocketAddr, sync::Arc};

use tokio::{net::UdpSocket, sync::mpsc, time::Instant};

/// A datagram waiting in a delay line.
#[derive(Debug)]
pub(super) struct Delayed {
    pub(super) due: Instant,
    pub(super) data: Vec<u8>,
}

/// Where a delay line delivers: the target (through the session's connected socket) or a client
/// (through the public socket, so replies come from the address it dialled).
pub(super) enum Exit {
    Target(Arc<UdpSocket>),
    Client(Arc<UdpSocket>, SocketAddr),
}

impl Exit {
    async fn send(&self, data: &[u8]) {
        // A send fails when the far side is gone (ICMP unreachable): a lost datagram, as on a
        // real network, which QUIC retransmits.
        let _ = match self {
            Exit::Target(socket) => socket.send(data).await,
            Exit::Client(socket, client) => socket.send_to(data, *client).await,
        };
    }
}

/// A datagram in the line, ordered so that the heap's top is the earliest due, then the
/// earliest arrived.
struct Entry {
    due: Instant,
    arrival: u64,
    data: Vec<u8>,
}

impl Entry {
    fn key(&self) -> Reverse<(Instant, u64)> {
        Reverse((self.due, self.arrival))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Datagrams by due time, then by arrival.
#[derive(Default)]
struct Waiting {
    heap: BinaryHeap<Entry>,
    arrivals: u64,
}

impl Waiting {
    fn push(&mut self, packet: Delayed) {
        self.arrivals += 1;
        self.heap.push(Entry {
            due: packet.due,
            arrival: self.arrivals,
            data: packet.data,
        });
    }

    fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.due)
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        self.heap.pop().map(|entry| entry.data)
    }
}

/// Runs a delay line until its sender is dropped and nothing waits any more.
pub(super) async fn deliver(mut line: mpsc::Receiver<Delayed>, exit: Exit) {
    let mut waiting = Waiting::default();
    let mut open = true;
    loop {
        // What is due leaves now, without a timer: tokio's timers round up to the next
        // millisecond, which would hold every datagram of an undelayed line for up to 1 ms (up
        // to 2 ms on each QUIC round trip through the proxy). Whatever already waits in the
        // channel joins the line first, so that due times decide the order.
        while let Ok(packet) = line.try_recv() {
            waiting.push(packet);
        }
        let now = Instant::now();
        while waiting.next_due().is_some_and(|due| due <= now) {
            if let Some(data) = waiting.pop() {
                exit.send(&data).await;
            }
        }
        let due = waiting.next_due();
        tokio::select! {
            received = line.recv(), if open => match received {
                Some(packet) => waiting.push(packet),
                None => open = false,
            },
            // Sent at the top of the loop.
            () = sleep_until(due) => {}
        }
        if !open && waiting.next_due().is_none() {
            return;
        }
    }
}

/// Sleeps until `due`; never returns without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
