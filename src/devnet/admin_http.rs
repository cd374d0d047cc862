//! The smallest HTTP client that can ask a node's admin listener a question: one `GET` over a
//! fresh loopback TCP connection, `HTTP/1.0` so the server closes when it has answered. Enough
//! for readiness probes and `/v1/status`; not a general HTTP client.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// `GET path` on `admin`; returns the status code and the body.
pub fn get(admin: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&admin, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    parse(&response).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))
}

fn parse(response: &str) -> Option<(u16, String)> {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn status_and_body_are_split_at_the_blank_line() {
        let answer = parse("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(answer, Some((503, "{}".to_owned())));
        assert_eq!(parse("garbage"), None);
    }
}
