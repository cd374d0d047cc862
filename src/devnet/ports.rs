//! Loopback ports for the dev network. A node's ports are chosen before it runs (checked free,
//! then released), so something else could take one before the node binds it. Two guards:
//!
//! - Ports are chosen below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`),
//!   which it hands out for `bind(0)` and for the local end of every outgoing connection: an
//!   HTTP client's connection, another test process's sockets or a fault proxy's never lands
//!   on a port chosen for a node. Each process starts at a random place in that range, so two
//!   test processes rarely try the same ports. A host whose ephemeral range starts at or below
//!   10000 gets ports from the kernel instead.
//! - Every port chosen is remembered for the life of the process and never chosen again, and
//!   every socket the dev network binds for itself skips them.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    ops::Range,
    sync::{Mutex, PoisonError},
};

/// Ports chosen for nodes and servers of this process (UDP and TCP alike).
static CHOSEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
/// Where the next search for a port to choose starts (an offset into [`choosable`]).
static CURSOR: Mutex<Option<usize>> = Mutex::new(None);

/// The lowest port chosen for a node: above the well-known and common service ports.
const LOWEST: u16 = 10_000;
/// The kernel's default first ephemeral port, when its setting cannot be read.
const EPHEMERAL_DEFAULT: u16 = 32_768;

/// Binds attempts in a row before giving up on finding a port nobody was given.
const ATTEMPTS: usize = 64;

fn chosen(port: u16) -> bool {
    CHOSEN.lock().unwrap_or_else(PoisonError::into_inner).contains(&port)
}

/// Binds `bind(ip:0)` until the kernel gives a port not chosen for anything else; the refused
/// sockets stay open until then, so the kernel does not offer them again.
fn unchosen<S>(bind: impl Fn() -> io::Result<S>, port: impl Fn(&S) -> io::Result<u16>) -> io::Result<S> {
    let mut refused = Vec::new();
    for _ in 0..ATTEMPTS {
        let socket = bind()?;
        if !chosen(port(&socket)?) {
            return Ok(socket);
        }
        refused.push(socket);
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port in {ATTEMPTS} attempts that was not already given to a node"),
    ))
}

/// A UDP socket on `ip` and a port no node was given (for the dev network's own sockets).
pub fn udp_socket(ip: IpAddr) -> io::Result<UdpSocket> {
    unchosen(|| UdpSocket::bind((ip, 0)), |s| Ok(s.local_addr()?.port()))
}

/// The ports this process chooses from: from [`LOWEST`] up to the kernel's ephemeral range.
fn choosable() -> Range<u16> {
    let setting = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let first_ephemeral = setting
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_DEFAULT);
    LOWEST..first_ephemeral.max(LOWEST)
}

/// A loopback port below the ephemeral range, free now for both UDP and TCP, never chosen
/// before by this process; remembered as chosen.
fn choose() -> io::Result<u16> {
    choose_in(choosable())
}

/// [`choose`] from `range`.
fn choose_in(range: Range<u16>) -> io::Result<u16> {
    let size = usize::from(range.end - range.start);
    if size == 0 {
        // The ephemeral range starts at or below LOWEST (a tuned host): take what the kernel
        // hands out, as long as nothing listens there for TCP either.
        return chosen_from_kernel();
    }
    let mut cursor = CURSOR.lock().unwrap_or_else(PoisonError::into_inner);
    let start = *cursor.get_or_insert_with(|| rand::random_range(0..size));
    for step in 0..size {
        let offset = (start + step) % size;
        let Ok(port) = u16::try_from(usize::from(range.start) + offset) else {
            continue;
        };
        if chosen(port) || !free(port) {
            continue;
        }
        *cursor = Some((offset + 1) % size);
        CHOSEN.lock().unwrap_or_else(PoisonError::into_inner).insert(port);
        return Ok(port);
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("every loopback port in {range:?} is in use or already given to a node"),
    ))
}

/// A port the kernel gives for `bind(0)`, free for TCP too and never chosen before; remembered
/// as chosen.
fn chosen_from_kernel() -> io::Result<u16> {
    let mut held = Vec::new();
    for _ in 0..ATTEMPTS {
        let socket = udp_socket(Ipv4Addr::LOCALHOST.into())?;
        let port = socket.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            CHOSEN.lock().unwrap_or_else(PoisonError::into_inner).insert(port);
            return Ok(port);
        }
        // Kept open until the search ends, so the kernel does not offer it again.
        held.push(socket);
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no port free for both UDP and TCP in {ATTEMPTS} attempts"),
    ))
}

/// Whether nothing listens on loopback `port`, for UDP and for TCP.
fn free(port: u16) -> bool {
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
    udp.is_ok() && tcp.is_ok()
}

/// A loopback UDP address that is free now and will be handed to nobody else in this process.
pub fn choose_udp() -> io::Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, choose()?)))
}

/// The same for TCP (a chosen port was free for both).
pub fn choose_tcp() -> io::Result<SocketAddr> {
    choose_udp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_chosen_where_the_kernel_hands_out_none_by_itself() {
        let range = choosable();
        for _ in 0..50 {
            let port = choose_udp().expect("udp").port();
            assert!(range.contains(&port), "{port} outside {range:?}");
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("a chosen port is free for TCP");
            drop(listener);
        }
        let ephemeral = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = ephemeral.local_addr().expect("addr").port();
        assert!(!range.contains(&port), "the kernel gave {port}, inside {range:?}");
    }

    #[test]
    fn a_host_without_room_below_its_ephemeral_range_gets_ports_from_the_kernel() {
        let ports: BTreeSet<u16> = (0..20)
            .map(|_| choose_in(LOWEST..LOWEST).expect("a port from the kernel"))
            .collect();
        assert_eq!(ports.len(), 20, "every one new");
        for port in ports {
            drop(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("free for TCP"));
            assert!(chosen(port), "{port} is remembered");
        }
    }

    #[test]
    fn a_chosen_port_is_never_chosen_or_bound_again() {
        let chosen: Vec<SocketAddr> = (0..300).map(|_| choose_udp().expect("udp")).collect();
        let distinct: BTreeSet<u16> = chosen.iter().map(SocketAddr::port).collect();
        assert_eq!(distinct.len(), chosen.len(), "every chosen port is new");
        for _ in 0..300 {
            let socket = udp_socket(Ipv4Addr::LOCALHOST.into()).expect("socket");
            let port = socket.local_addr().expect("addr").port();
            assert!(!distinct.contains(&port), "port {port} was chosen for a node");
        }
    }
}
