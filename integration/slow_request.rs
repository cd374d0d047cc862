//! Property: a request whose bytes keep coming is served however long the whole frame takes on a
//! slow link. The node's patience (30 s) is for the next byte, not for the whole frame: before, a
//! large call on a slow link was refused `INVALID_ARGUMENT` (not retryable) after 30 s although
//! its bytes were still arriving. Shown on a call (one `AppendFacts` frame) and on an append stream
//! (a frame after the first), both trickled over 35 s with pauses of 2.5 s.

use crate::harness;

use std::time::Duration;

use bsfg_actors::transport::framed;
use bsfg_proto::{codec, AppendBatchRequest, AppendRequest, Message, Request, Response};
use harness::{message, raw::RawConnection, Cluster};

const PIECES: usize = 14;
const PAUSE: Duration = Duration::from_millis(2_500);
const MAX_FRAME: usize = 16 << 20;

fn padded(id: &str) -> Message {
    let mut m = message("enterprise", "plant-a", id);
    m.fact.object_json = format!("\"{}\"", "x".repeat(8 << 10));
    m
}

fn frame(request: &Request) -> Vec<u8> {
    codec::encode_frame(request, MAX_FRAME).expect("frame")
}

/// Writes `frame` in `PIECES` pieces, pausing after each.
async fn trickle(send: &mut quinn::SendStream, frame: &[u8]) {
    for piece in frame.chunks(frame.len().div_ceil(PIECES)) {
        send.write_all(piece).await.expect("write");
        tokio::time::sleep(PAUSE).await;
    }
}

async fn answer(recv: &mut quinn::RecvStream) -> Response {
    framed::read_frame::<Response>(recv, MAX_FRAME)
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_bytes_keep_coming_is_served_however_long_it_takes() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let raw = RawConnection::open(&cluster.options("enterprise")).await;
    let call = async {
        let (mut send, mut recv) = raw.conn.open_bi().await.expect("open");
        let messages = (0..8).map(|i| padded(&format!("batch-{i}"))).collect();
        trickle(
            &mut send,
            &frame(&Request::AppendBatch(AppendBatchRequest { messages })),
        )
        .await;
        send.finish().expect("finish");
        answer(&mut recv).await
    };
    let stream = async {
        let (mut send, mut recv) = raw.conn.open_bi().await.expect("open");
        let first = Request::Append(AppendRequest {
            message: padded("stream-0"),
        });
        send.write_all(&frame(&first)).await.expect("write");
        let first = answer(&mut recv).await;
        let second = Request::Append(AppendRequest {
            message: padded("stream-1"),
        });
        trickle(&mut send, &frame(&second)).await;
        send.finish().expect("finish");
        (first, answer(&mut recv).await)
    };
    let (batch, (first, second)) = tokio::join!(call, stream);
    match batch {
        Response::AppendBatch(r) => assert!(r.results.iter().all(Result::is_ok), "{r:?}"),
        other => panic!("the slow call is served: {other:?}"),
    }
    assert!(matches!(first, Response::Append(_)), "{first:?}");
    assert!(
        matches!(second, Response::Append(_)),
        "the slow frame is served: {second:?}"
    );
    let status = cluster.status("enterprise");
    assert_eq!(status["store"]["facts"], 10, "{status}");
}
