//! Loopback ports for the dev network. A node's ports are chosen before it runs (bound to port 0,
//! then released), so nothing stops the kernel from handing the same port out again: to a second
//! node, or to a fault proxy's socket while the node is stopped. Every port chosen for a node is
//! remembered for the life of the process, and every socket the dev network binds skips them.

use std::{
    collections::BTreeSet,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    sync::{Mutex, PoisonError},
};

/// Ports chosen for nodes and servers of this process (UDP and TCP alike).
static CHOSEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

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

/// A loopback UDP address that is free now and will be handed to nobody else in this process.
pub fn choose_udp() -> io::Result<SocketAddr> {
    let addr = udp_socket(Ipv4Addr::LOCALHOST.into())?.local_addr()?;
    CHOSEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(addr.port());
    Ok(addr)
}

/// The same for TCP.
pub fn choose_tcp() -> io::Result<SocketAddr> {
    let listener = unchosen(
        || TcpListener::bind((Ipv4Addr::LOCALHOST, 0)),
        |s| Ok(s.local_addr()?.port()),
    )?;
    let addr = listener.local_addr()?;
    CHOSEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(addr.port());
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

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
