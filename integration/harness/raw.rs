//! A QUIC connection with a client's real certificate on which a test writes arbitrary bytes,
//! frames of its choosing, or many frames on one stream.

use std::time::Duration;

use bsfg::client::ClientOptions;
use bsfg_actors::transport::{
    framed,
    tls::{self, TlsMaterial},
};
use bsfg_proto::Response;

/// A QUIC connection with the client's real certificate, for writing arbitrary bytes on streams.
pub struct RawConnection {
    _endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
}

impl RawConnection {
    pub async fn open(options: &ClientOptions) -> Self {
        let tls = TlsMaterial::load(&options.ca, &options.cert, &options.key).expect("tls material");
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(
            tls.quic_client_config(tls::DEFAULT_IDLE_TIMEOUT)
                .expect("client config"),
        );
        let addr = options.node.parse().expect("node address");
        let conn = endpoint
            .connect(addr, &options.server_name)
            .expect("connect")
            .await
            .expect("handshake");
        Self {
            _endpoint: endpoint,
            conn,
        }
    }

    /// Writes `bytes` on a new stream, finishes it and reads one response frame. The node may
    /// stop reading early (it answers as soon as a header is refused), so write errors are ignored.
    pub async fn exchange(&self, bytes: &[u8]) -> Result<Response, framed::StreamError> {
        let (mut send, mut recv) = self.conn.open_bi().await.expect("open stream");
        if send.write_all(bytes).await.is_ok() {
            let _ = send.finish();
        }
        let read = framed::read_frame::<Response>(&mut recv, 16 << 20);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the node answers within 10 s")
    }
}
