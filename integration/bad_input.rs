//! Property: bad input never crashes the node and never leaves a partial write (SPEC §3, §6) —
//! random bytes, truncated frames, oversized headers and invalid messages each get a clear
//! `INVALID_ARGUMENT` naming what was wrong, after each one a fresh client still appends and
//! fetches, and the peer finally receives exactly the good facts (issue #2, test 5).

use crate::harness;

use std::time::Duration;

use bsfg_actors::transport::framed;
use bsfg_proto::{codec, ErrorCode, Message, Request, Response, RpcError};
use harness::{message, raw::RawConnection, receive, Cluster};
use rand::{rngs::StdRng, Rng, SeedableRng};

const MAX_FRAME: usize = 1 << 20;
const MAX_FACT: usize = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_node_keeps_serving() {
    let mut cluster = Cluster::pair();
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.extra = "[limits]\nmax_frame_bytes = \"1MiB\"\nmax_fact_bytes = \"64KiB\"\n".into();
    cluster.start_all();
    let mut good = Vec::new();
    let raw = RawConnection::open(&cluster.options("enterprise")).await;

    random_bytes_get_an_error(&raw).await;
    still_serving(&cluster, &mut good).await;

    let truncated = raw
        .exchange(&frame_header(100, &[7; 10]))
        .await
        .expect("a response to a truncated frame");
    assert_invalid(&truncated, &["10 of 100 bytes"]);
    still_serving(&cluster, &mut good).await;

    for announced in [MAX_FRAME as u32 + 1, 2 * MAX_FRAME as u32, u32::MAX] {
        let oversized = raw
            .exchange(&frame_header(announced, &[0; 64]))
            .await
            .expect("a response to an oversized header");
        assert_invalid(&oversized, &[&announced.to_string(), &MAX_FRAME.to_string()]);
        still_serving(&cluster, &mut good).await;
    }

    invalid_messages_are_refused(&cluster, &mut good).await;

    // Nothing refused was written: the peer receives exactly the good facts.
    let plant = cluster.client("plant-a").await;
    let facts = receive(&plant, "audit", good.len(), Duration::from_secs(30)).await;
    let mut ids: Vec<String> = facts.iter().map(|f| f.message.envelope.message_id.clone()).collect();
    ids.sort();
    good.sort();
    assert_eq!(ids, good);
    assert!(
        plant
            .fetch("audit", 10, 500, None)
            .await
            .expect("fetch")
            .facts
            .is_empty(),
        "nothing else arrives"
    );
    let log = std::fs::read_to_string(cluster.dir().join("enterprise.log")).expect("log");
    assert!(!log.contains("panicked"), "the node panicked:\n{log}");
}

/// A message too big for one frame: the node refuses the header and stops reading, and the
/// client must still report the node's `INVALID_ARGUMENT`, not a retryable transport failure
/// (a CLI would otherwise exit 75 and be retried forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_frame_bytes_is_invalid_not_retryable() {
    let mut cluster = Cluster::pair();
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.extra = "[limits]\nmax_frame_bytes = \"1MiB\"\nmax_fact_bytes = \"64KiB\"\n".into();
    cluster.start("enterprise");
    let client = cluster.client("enterprise").await;
    let mut oversized = message("enterprise", "plant-a", "frame-1");
    oversized.fact.object_json = format!("\"{}\"", "x".repeat(2 * MAX_FRAME));
    let error = client
        .append(oversized)
        .await
        .expect_err("a message over max_frame_bytes");
    let rpc = RpcError {
        code: error.code(),
        retryable: error.retryable(),
        message: error.to_string(),
    };
    assert_invalid(&Response::Error(rpc), &[&MAX_FRAME.to_string()]);
    client.close().await;
    still_serving(&cluster, &mut Vec::new()).await;
}

/// Streams of random bytes: mostly headers announcing too much, sometimes a header that fits
/// followed by a random body. A stream reset is acceptable; silence or a crash is not.
async fn random_bytes_get_an_error(raw: &RawConnection) {
    let seed: u64 = std::env::var("BSFG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("bad_input seed: BSFG_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for round in 0..64 {
        let mut bytes = vec![0u8; rng.random_range(0..2048)];
        rng.fill(&mut bytes[..]);
        if round % 2 == 1 && bytes.len() > codec::HEADER_LEN {
            let len = (bytes.len() - codec::HEADER_LEN) as u32;
            bytes[..codec::HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        }
        let answer = raw.exchange(&bytes).await;
        if decodes(&bytes) {
            // Random bytes that happen to form a request get whatever that request deserves.
            assert!(
                answer.is_ok(),
                "seed {seed} round {round}: no answer to a decodable request"
            );
            continue;
        }
        match answer {
            Ok(response) => assert_invalid(&response, &[]),
            Err(framed::StreamError::Stream(reason)) => {
                assert!(reason.contains("reset"), "seed {seed} round {round}: {reason}")
            }
            Err(other) => panic!("seed {seed} round {round}: {} random bytes: {other}", bytes.len()),
        }
    }
}

/// Whether the node would read `bytes` as a valid request (what it reads: one header and the
/// announced body, ignoring anything after it).
fn decodes(bytes: &[u8]) -> bool {
    let Some(header) = bytes.get(..codec::HEADER_LEN).and_then(|h| <[u8; 4]>::try_from(h).ok()) else {
        return false;
    };
    let Ok(len) = codec::body_len(header, MAX_FRAME) else {
        return false;
    };
    bytes[codec::HEADER_LEN..]
        .get(..len)
        .is_some_and(|body| codec::decode_body::<Request>(body).is_ok())
}

async fn invalid_messages_are_refused(cluster: &Cluster, good: &mut Vec<String>) {
    let client = cluster.client("enterprise").await;
    let mut big = message("enterprise", "plant-a", "big-1");
    big.fact.object_json = format!("\"{}\"", "x".repeat(MAX_FACT));
    let mut bad_json = message("enterprise", "plant-a", "json-1");
    bad_json.fact.object_json = "{x".into();
    let unknown_zone = message("enterprise", "plant-z", "zone-1");
    let mut long_id = message("enterprise", "plant-a", "");
    long_id.envelope.message_id = "i".repeat(257);
    let cases: [(Message, &[&str]); 4] = [
        (big, &["65536"]),
        (bad_json, &["object_json"]),
        (unknown_zone, &["plant-z"]),
        (long_id, &["message_id", "257"]),
    ];
    for (bad, names) in cases {
        let id = bad.envelope.message_id.chars().take(16).collect::<String>();
        let error = client.append(bad).await.expect_err("invalid message");
        let rpc = RpcError {
            code: error.code(),
            retryable: error.retryable(),
            message: error.to_string(),
        };
        assert_invalid(&Response::Error(rpc), names);
        println!("refused {id}…: {error}");
        still_serving(cluster, good).await;
    }
    client.close().await;
}

/// A fresh client appends a new fact and fetches; the id joins `good`.
async fn still_serving(cluster: &Cluster, good: &mut Vec<String>) {
    let id = format!("ok-{}", good.len());
    let client = cluster.client("enterprise").await;
    let appended = client
        .append(message("enterprise", "plant-a", &id))
        .await
        .expect("append after bad input");
    assert!(!appended.duplicate, "{id}");
    client
        .fetch(harness::CLIENT, 10, 0, None)
        .await
        .expect("fetch after bad input");
    client.close().await;
    good.push(id);
}

fn assert_invalid(response: &Response, names: &[&str]) {
    let Response::Error(RpcError {
        code,
        retryable,
        message,
    }) = response
    else {
        panic!("expected INVALID_ARGUMENT, got {response:?}");
    };
    assert_eq!((*code, *retryable), (ErrorCode::InvalidArgument, false), "{message}");
    for name in names {
        assert!(message.contains(name), "the error names {name:?}: {message}");
    }
}

/// `len` as a frame header followed by `body` (which need not be `len` bytes long).
fn frame_header(len: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// `bsfg append` of a fact to plant-a, less its object and connection flags.
const APPEND: [&str; 7] = ["append", "--to", "plant-a", "--subject", "s", "--predicate", "p"];

/// The CLI checks what it is to append before it dials: with the node down, a bad
/// `--object-json` or an unreadable `--jsonl` file is the caller's mistake (exit 1, naming it),
/// not a node to retry later (exit 75); an empty `--message-id` is a usage error (exit 2).
#[test]
fn the_cli_refuses_bad_input_before_it_dials() {
    let cluster = Cluster::pair();
    cluster.net.write_configs().expect("configs");
    let bad_json = cluster.cli("enterprise", &[&APPEND[..], &["--object-json", "{temp: 21}"]].concat());
    assert_eq!(bad_json.status.code(), Some(1), "{}", harness::stderr(&bad_json));
    assert!(harness::stderr(&bad_json).contains("--object-json is not valid JSON"));
    let missing = cluster.cli("enterprise", &["append", "--jsonl", "/nonexistent/facts.jsonl"]);
    assert_eq!(missing.status.code(), Some(1), "{}", harness::stderr(&missing));
    assert!(harness::stderr(&missing).contains("cannot read /nonexistent/facts.jsonl"));
    // An empty id (an empty shell variable) is not a random one: a retry would store it twice.
    let empty_id = cluster.cli("enterprise", &[&APPEND[..], &["--message-id", ""]].concat());
    assert_eq!(empty_id.status.code(), Some(2), "{}", harness::stderr(&empty_id));
    assert!(
        harness::stderr(&empty_id).contains("1 to 256 bytes"),
        "{}",
        harness::stderr(&empty_id)
    );
}

/// A payload is opaque (SPEC §2): the CLI stores `object_json` as written, less its whitespace,
/// so a number keeps every digit and keys their order. A retry of the same id with the number
/// written otherwise is other content, not a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_stores_a_payload_as_written() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    let append = |object: &str| {
        let id = ["--message-id", "big-1", "--object-json", object];
        cluster.cli("enterprise", &[&APPEND[..], &id].concat())
    };
    let stored = append(r#"{ "z": 1, "id": 99999999999999999999 }"#);
    assert!(stored.status.success(), "{}", harness::stderr(&stored));
    let other = append(r#"{"z":1,"id":1e20}"#);
    assert_eq!(other.status.code(), Some(1), "{}", harness::stderr(&other));
    assert!(
        harness::stderr(&other).contains("ALREADY_EXISTS"),
        "{}",
        harness::stderr(&other)
    );
    let consumer = cluster.client("plant-a").await;
    let received = receive(&consumer, "mes", 1, Duration::from_secs(30)).await;
    assert_eq!(
        received[0].message.fact.object_json,
        r#"{"z":1,"id":99999999999999999999}"#
    );
}

/// What is wrong with a node address is said, with the right exit code: an address written wrong,
/// one that can never be dialled, or a server name that is not one are the caller's mistakes
/// (exit 1, saying why); a name that does not resolve now may later (exit 75), and a list moves
/// on past it to the node that answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_what_is_wrong_with_a_node_address() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let real = cluster.net.node("enterprise").expect("enterprise").rpc.to_string();
    let status = |node: &str, extra: &[&str]| {
        let args = [&APPEND[..], extra].concat();
        let mut command = cluster.cli_command("enterprise", harness::CLIENT, node, &args);
        command.output().expect("run bsfg")
    };
    let json = ["--object-json", "{}"];
    for (node, code, says) in [
        ("gw.example", 1, "no port"),
        ("0.0.0.0:9443", 1, "cannot dial 0.0.0.0:9443"),
        (
            "no-such-host.invalid:9443",
            75,
            "cannot resolve node address \"no-such-host.invalid:9443\"",
        ),
    ] {
        let out = status(node, &json);
        assert_eq!(out.status.code(), Some(code), "{node}: {}", harness::stderr(&out));
        assert!(
            harness::stderr(&out).contains(says),
            "{node}: {}",
            harness::stderr(&out)
        );
    }
    let listed = status(&format!("no-such-host.invalid:9443,{real}"), &json);
    assert!(
        listed.status.success(),
        "moves on to the next address: {}",
        harness::stderr(&listed)
    );
    let o = cluster
        .net
        .client("enterprise", harness::CLIENT)
        .expect("client options");
    let name = std::process::Command::new(harness::bin())
        .args(APPEND)
        .args([
            "--object-json",
            "{}",
            "--node",
            &real,
            "--server-name",
            "plant a",
            "--ca",
        ])
        .arg(&o.ca)
        .arg("--cert")
        .arg(&o.cert)
        .env("BSFG_KEY", &o.key)
        .output()
        .expect("run bsfg");
    assert_eq!(name.status.code(), Some(1), "{}", harness::stderr(&name));
    assert!(
        harness::stderr(&name).contains("invalid server name"),
        "{}",
        harness::stderr(&name)
    );
}
