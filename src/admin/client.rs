//! A small blocking HTTP/1.1 client for the admin API: one request per connection
//! (`Connection: close`), plain `http://HOST:PORT` URLs, an optional bearer token. Used by
//! `bsfg status`, `bsfg admin`, the dev network's readiness probe, `bsfg bench` and the
//! end-to-end tests. The admin API's answers are small and
//! sized, so the body is everything after the headers until the node closes the connection.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    time::Duration,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A drain may wait its 30 s grace before answering.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// A GET (status, trace, metrics, the consumer list) is answered in milliseconds: a node that
/// says nothing for this long is paused or overloaded, and the operator hears so now rather
/// than after a drain's minute.
const GET_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no answer was obtained.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("admin URL {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("cannot reach the admin API at {authority}: {source}")]
    Unreachable { authority: String, source: io::Error },
    #[error("the admin API at {authority} took the request but did not answer within {waited:?}: the node is paused, overloaded or stuck (check `systemctl status bsfg` and its log)")]
    NoAnswer { authority: String, waited: Duration },
    #[error("the admin API at {authority} answered something that is not HTTP: {head:?}")]
    NotHttp { authority: String, head: String },
}

/// An HTTP answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Talks to one node's admin listener.
#[derive(Debug, Clone)]
pub struct AdminClient {
    authority: String,
    token: Option<String>,
    connect_timeout: Duration,
    answer_timeout: Duration,
}

impl AdminClient {
    /// `url` is `http://HOST:PORT` (a trailing `/` is fine; the port defaults to 80).
    pub fn new(url: &str, token: Option<String>) -> Result<Self, AdminClientError> {
        let bad = |reason| AdminClientError::Url {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http:// (the admin API speaks plain HTTP)"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("must be http://HOST:PORT, without a path"));
        }
        let authority = match authority.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => authority.to_owned(),
            _ => format!("{authority}:80"),
        };
        Ok(Self::with_authority(authority, token))
    }

    /// The client of the listener at `addr`.
    pub fn at(addr: SocketAddr, token: Option<String>) -> Self {
        Self::with_authority(addr.to_string(), token)
    }

    fn with_authority(authority: String, token: Option<String>) -> Self {
        Self {
            authority,
            token,
            connect_timeout: CONNECT_TIMEOUT,
            answer_timeout: ANSWER_TIMEOUT,
        }
    }

    /// Gives up after `timeout` to connect and again after `timeout` waiting for the answer
    /// (for probes that poll; the defaults leave a drain its grace).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self.answer_timeout = timeout;
        self
    }

    pub fn get(&self, path: &str) -> Result<Answer, AdminClientError> {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> Result<Answer, AdminClientError> {
        self.request("POST", path)
    }

    pub fn delete(&self, path: &str) -> Result<Answer, AdminClientError> {
        self.request("DELETE", path)
    }

    fn request(&self, method: &str, path: &str) -> Result<Answer, AdminClientError> {
        let unreachable = |source| AdminClientError::Unreachable {
            authority: self.authority.clone(),
            source,
        };
        let waited = match method {
            "GET" => self.answer_timeout.min(GET_ANSWER_TIMEOUT),
            _ => self.answer_timeout,
        };
        let mut stream = self.connect(waited).map_err(unreachable)?;
        let auth = self
            .token
            .as_ref()
            .map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.authority
        );
        stream.write_all(request.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => AdminClientError::NoAnswer {
                authority: self.authority.clone(),
                waited,
            },
            _ => unreachable(e),
        })?;
        self.parse(&String::from_utf8_lossy(&raw))
    }

    /// Connected, its reads giving up after `answer_timeout`.
    fn connect(&self, answer_timeout: Duration) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to no address");
        for addr in self.authority.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(answer_timeout))?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn parse(&self, raw: &str) -> Result<Answer, AdminClientError> {
        let not_http = || AdminClientError::NotHttp {
            authority: self.authority.clone(),
            head: raw.chars().take(60).collect(),
        };
        let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(not_http)?;
        let status = head
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(not_http)?;
        Ok(Answer {
            status,
            body: body.to_owned(),
        })
    }
}

/// `text` as one path segment: every byte but the unreserved ones (RFC 3986) percent-encoded, so
/// a message id or consumer name with `/`, `?`, `%` or spaces stays one segment.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_segment_keeps_unreserved_bytes_and_encodes_the_rest() {
        assert_eq!(super::path_segment("batch-42_a.b~"), "batch-42_a.b~");
        assert_eq!(super::path_segment("a/b c?%é"), "a%2Fb%20c%3F%25%C3%A9");
    }

    use std::net::TcpListener;

    use super::*;

    #[test]
    fn urls_are_plain_http_with_an_optional_port() {
        let authority = |url: &str| AdminClient::new(url, None).map(|c| c.authority);
        assert_eq!(
            authority("http://127.0.0.1:9180").ok().as_deref(),
            Some("127.0.0.1:9180")
        );
        assert_eq!(
            authority("http://127.0.0.1:9180/").ok().as_deref(),
            Some("127.0.0.1:9180")
        );
        assert_eq!(authority("http://[::1]:9180").ok().as_deref(), Some("[::1]:9180"));
        assert_eq!(authority("http://gw.example").ok().as_deref(), Some("gw.example:80"));
        for bad in ["https://127.0.0.1:9180", "127.0.0.1:9180", "http://", "http://h:1/v1"] {
            assert!(authority(bad).is_err(), "{bad} accepted");
        }
    }

    /// Serves one canned answer and returns the request it read.
    fn serve_once(answer: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let mut request = vec![0u8; 4096];
            let n = stream.read(&mut request).expect("read");
            stream.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (addr, server)
    }

    #[test]
    fn a_request_carries_the_token_and_the_answer_is_parsed() {
        let (addr, server) = serve_once("HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 2\r\n\r\n{}");
        let answer = AdminClient::at(addr, Some("s3cret".into()))
            .post("/v1/admin/reload")
            .expect("answer");
        assert_eq!(
            answer,
            Answer {
                status: 422,
                body: "{}".into()
            }
        );
        let request = server.join().expect("server");
        assert!(request.starts_with("POST /v1/admin/reload HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nAuthorization: Bearer s3cret\r\n"), "{request}");
    }

    /// A node that takes the connection and never answers (paused by SIGSTOP: the kernel still
    /// accepts) is said to be so, with the wait, not as "Resource temporarily unavailable".
    #[test]
    fn a_listener_that_never_answers_is_named_as_such() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = AdminClient::at(addr, None).timeout(Duration::from_millis(200));
        let err = client.get("/v1/status").expect_err("no answer");
        assert!(
            matches!(err, AdminClientError::NoAnswer { waited, .. } if waited == Duration::from_millis(200)),
            "{err}"
        );
        assert!(err.to_string().contains("did not answer within 200ms"), "{err}");
        drop(listener);
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let err = AdminClient::at(addr, None).get("/readyz").expect_err("nothing listens");
        assert!(matches!(err, AdminClientError::Unreachable { .. }), "{err}");
    }
}
