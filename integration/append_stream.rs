//! Property: `AppendFact` frames pipelined on one stream (issue 18) are each a call of their own.
//! They are answered in the order sent, each with the outcome a lone `AppendFact` gets (a retry
//! its original offset as a duplicate, a conflicting retry `ALREADY_EXISTS`, a fact to an unknown
//! zone `INVALID_ARGUMENT`, every other fact a new offset, in frame order), each has its own audit
//! line, and the peer's consumer receives the good facts in frame order, exactly once. A frame that
//! is not an `AppendFact`, or is over `limits.max_frame_bytes`, is refused on its own and the
//! frames after it are served; a frame cut short by the end of the stream is refused and ends it.
//! Concurrent `Client::append` calls share such a stream and each gets its own answer.

use crate::harness;

use std::time::Duration;

use bsfg_actors::transport::framed;
use bsfg_proto::{codec, AppendRequest, AppendResponse, ConfirmRequest, ErrorCode, Message, Request, Response};
use futures::future::join_all;
use harness::{ids, message, observe::wait_until, raw::RawConnection, receive, Cluster, CLIENT};
use quinn::RecvStream;

const MAX_FRAME: usize = 16 << 20;
/// The node's `limits.max_frame_bytes` in the first test.
const NODE_MAX_FRAME: usize = 1 << 20;
const GOOD: usize = 300;
/// Where the test puts its odd frames among the good ones.
const RETRY_AT: usize = 150;
const CONFLICT_AT: usize = 200;
const UNROUTABLE_AT: usize = 250;

fn frame(request: &Request) -> Vec<u8> {
    codec::encode_frame(request, MAX_FRAME).expect("encode")
}

fn append_frame(message: Message) -> Vec<u8> {
    frame(&Request::Append(AppendRequest { message }))
}

async fn answer(recv: &mut RecvStream) -> Result<Response, framed::StreamError> {
    tokio::time::timeout(Duration::from_secs(30), framed::read_frame(recv, MAX_FRAME))
        .await
        .expect("the node answers within 30 s")
}

fn ack(response: &Response, what: &str) -> AppendResponse {
    match response {
        Response::Append(ack) => *ack,
        other => panic!("{what}: expected an ack, got {other:?}"),
    }
}

fn refusal(response: &Response, code: ErrorCode, names: &str) {
    match response {
        Response::Error(e) => {
            assert_eq!(e.code, code, "{e:?}");
            assert!(e.message.contains(names), "the error names {names:?}: {e:?}");
        }
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_on_one_stream_are_calls_answered_in_order() {
    let mut cluster = Cluster::pair();
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.extra = "[limits]\nmax_frame_bytes = \"1MiB\"\nmax_fact_bytes = \"64KiB\"\n".into();
    cluster.start_all();
    let raw = RawConnection::open(&cluster.options("enterprise")).await;
    let consumer = cluster.client("plant-a").await;

    let good: Vec<String> = (0..GOOD).map(|i| format!("s-{i}")).collect();
    let mut sent: Vec<Message> = good.iter().map(|id| message("enterprise", "plant-a", id)).collect();
    sent.insert(RETRY_AT, message("enterprise", "plant-a", "s-10"));
    let mut conflict = message("enterprise", "plant-a", "s-11");
    conflict.fact.object_json = r#"{"id":"s-11","changed":true}"#.into();
    sent.insert(CONFLICT_AT, conflict);
    sent.insert(UNROUTABLE_AT, message("enterprise", "nowhere", "lost"));
    let bytes: Vec<u8> = sent.iter().cloned().flat_map(append_frame).collect();

    // Every frame written at once, before any answer is read.
    let (mut send, mut recv) = raw.conn.open_bi().await.expect("open stream");
    send.write_all(&bytes).await.expect("write the frames");
    let mut answers = Vec::with_capacity(sent.len());
    for i in 0..sent.len() {
        answers.push(answer(&mut recv).await.unwrap_or_else(|e| panic!("answer {i}: {e}")));
    }

    let first = ack(&answers[10], "s-10");
    assert_eq!(
        ack(&answers[RETRY_AT], "the retry of s-10"),
        AppendResponse {
            offset: first.offset,
            duplicate: true
        },
        "a retry on the same stream answers the original offset"
    );
    refusal(&answers[CONFLICT_AT], ErrorCode::AlreadyExists, "s-11");
    refusal(&answers[UNROUTABLE_AT], ErrorCode::InvalidArgument, "nowhere");
    let offsets: Vec<u64> = answers
        .iter()
        .enumerate()
        .filter(|(i, _)| ![RETRY_AT, CONFLICT_AT, UNROUTABLE_AT].contains(i))
        .map(|(i, a)| {
            let ack = ack(a, &sent[i].envelope.message_id);
            assert!(!ack.duplicate, "frame {i} is new");
            ack.offset
        })
        .collect();
    assert_eq!(offsets.len(), GOOD);
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets follow frame order: {offsets:?}"
    );

    // A frame of another kind and an oversized one are refused on their own; the stream goes on.
    let confirm = Request::Confirm(ConfirmRequest {
        consumer: "mes".into(),
        offset: 1,
    });
    let oversized = [
        &((NODE_MAX_FRAME + 1) as u32).to_be_bytes()[..],
        &vec![0u8; NODE_MAX_FRAME + 1],
    ]
    .concat();
    let odd: Vec<u8> = [
        frame(&confirm),
        oversized,
        append_frame(message("enterprise", "plant-a", "after-odd")),
    ]
    .concat();
    send.write_all(&odd).await.expect("write the odd frames");
    let other_kind = answer(&mut recv).await.expect("the other kind is answered");
    refusal(&other_kind, ErrorCode::InvalidArgument, "only AppendFact");
    let too_large = answer(&mut recv).await.expect("the oversized frame is answered");
    refusal(
        &too_large,
        ErrorCode::InvalidArgument,
        &(NODE_MAX_FRAME + 1).to_string(),
    );
    let after_odd = ack(
        &answer(&mut recv).await.expect("the next fact is answered"),
        "after-odd",
    );
    assert!(
        !after_odd.duplicate && after_odd.offset > *offsets.last().expect("offsets"),
        "the fact after the refused frames is stored next: {after_odd:?}"
    );

    // Half a frame, then the end of the stream: refused, and nothing more is answered.
    let half = append_frame(message("enterprise", "plant-a", "cut-short"));
    send.write_all(&half[..half.len() / 2])
        .await
        .expect("write half a frame");
    send.finish().expect("finish");
    let cut = answer(&mut recv).await.expect("the cut frame is answered");
    refusal(&cut, ErrorCode::InvalidArgument, "truncated");
    assert!(
        answer(&mut recv).await.is_err(),
        "the node answers nothing after ending the stream"
    );
    let mut good = good;
    good.push("after-odd".into());
    sent.push(message("enterprise", "plant-a", "after-odd"));

    let received = receive(&consumer, "mes", good.len(), Duration::from_secs(60)).await;
    assert_eq!(ids(&received), good, "the peer's consumer receives frame order");
    let extra = consumer.fetch("mes", 100, 1_000, None).await.expect("fetch");
    assert!(
        extra.facts.is_empty(),
        "nothing twice, nothing cut short: {:?}",
        ids(&extra.facts)
    );

    // One audit line per frame, as for lone calls.
    let appends = || -> Vec<serde_json::Value> {
        cluster
            .log_lines("enterprise")
            .into_iter()
            .filter(|l| l["caller"] == CLIENT && l["operation"] == "append_fact")
            .collect()
    };
    wait_until(Duration::from_secs(10), "every frame logged", || {
        appends().len() >= sent.len()
    })
    .await;
    let logged: Vec<String> = appends()
        .iter()
        .map(|l| l["message_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let mut expected: Vec<String> = sent.iter().map(|m| m.envelope.message_id.clone()).collect();
    let mut got = logged.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "one audit line per frame, each naming its message");
    let conflict_line = appends()
        .into_iter()
        .find(|l| l["code"] == "ALREADY_EXISTS")
        .expect("the conflict is logged");
    assert_eq!(conflict_line["message_id"], "s-11", "{conflict_line}");
    assert_eq!(conflict_line["msg"], "rpc_call", "a failed call: {conflict_line}");
    assert!(
        appends()
            .iter()
            .filter(|l| l["code"].is_null())
            .all(|l| l["msg"] == "fact_appended"),
        "the frames that appended are fact_appended lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_client_appends_share_a_stream_and_each_gets_its_answer() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let producer = cluster.client("enterprise").await;
    let consumer = cluster.client("plant-a").await;

    let good: Vec<String> = (0..2_000).map(|i| format!("c-{i}")).collect();
    let mut calls: Vec<_> = good
        .iter()
        .map(|id| producer.append(message("enterprise", "plant-a", id)))
        .collect();
    // Retries and a bad fact among them: each caller gets its own outcome.
    calls.push(producer.append(message("enterprise", "plant-a", "c-7")));
    calls.push(producer.append(message("enterprise", "nowhere", "lost")));
    let mut outcomes = join_all(calls).await;
    let unroutable = outcomes.pop().expect("outcome").expect_err("no route to nowhere");
    assert_eq!(unroutable.code(), ErrorCode::InvalidArgument, "{unroutable}");
    let retry = outcomes.pop().expect("outcome").expect("the retry is acknowledged");
    let acks: Vec<AppendResponse> = outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or_else(|e| panic!("c-{i}: {e}")))
        .collect();
    let mut offsets: Vec<u64> = acks.iter().map(|a| a.offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), good.len(), "every fact has its own offset");
    // The two calls for c-7 race: whichever the node took first is the original.
    assert_eq!(retry.offset, acks[7].offset, "both calls for c-7 answer one offset");
    assert_ne!(retry.duplicate, acks[7].duplicate, "one of them is the duplicate");
    assert_eq!(
        acks.iter().filter(|a| a.duplicate).count(),
        usize::from(acks[7].duplicate)
    );

    let received = receive(&consumer, "mes", good.len(), Duration::from_secs(60)).await;
    let mut got: Vec<&str> = ids(&received);
    got.sort_unstable();
    let mut expected: Vec<&str> = good.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(got, expected, "exactly once");
}
