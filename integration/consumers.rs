//! Consumers managed (SPEC §10): a consumer is listed from its first fetch; a rewind delivers the
//! facts after the new cursor again; a delete removes the consumer and its metric series; a
//! peer's derived consumer cannot be touched; every change is audited with the operator.

use crate::harness;

use std::time::Duration;

use harness::{append_many, ids, observe::scrape, observe::wait_until, Cluster};

fn cli(cluster: &Cluster, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = cluster.admin_cli("plant-a", args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, harness::stderr(&out))
}

/// A POST with a JSON body to plant-a's admin API, as curl or a script sends it: its status and
/// its JSON answer.
fn post(cluster: &Cluster, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(cluster.admin("plant-a")).expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: bsfg\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = answer.split_once("\r\n\r\n").map_or("", |(_, json)| json);
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_redelivers_and_delete_forgets_the_consumer() {
    let cluster = Cluster::linked_pair().await;
    let producer = cluster.client("enterprise").await;
    let sent = append_many(&producer, "enterprise", "plant-a", "lot", 6, 0).await;
    let consumer = cluster.client("plant-a").await;
    let first = harness::receive(&consumer, "mes", 6, Duration::from_secs(20)).await;
    assert_eq!(ids(&first), sent.iter().map(String::as_str).collect::<Vec<_>>());
    // A second consumer fetches but never confirms: listed all the same.
    consumer.fetch("reporting", 10, 0, None).await.expect("fetch");

    let (code, list, err) = cli(&cluster, &["consumers", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let names: Vec<(&str, u64)> = list["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["cursor"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(names, [("mes", first[5].offset), ("reporting", 0)]);

    let to = first[2].offset.to_string();
    let (code, rewound, err) = cli(&cluster, &["consumers", "rewind", "mes", "--to-offset", &to]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(rewound["cursor"].as_u64(), Some(first[2].offset), "{rewound}");
    assert_eq!(rewound["next_offset"].as_u64(), Some(first[3].offset), "{rewound}");
    let again = harness::receive(&consumer, "mes", 3, Duration::from_secs(10)).await;
    assert_eq!(ids(&again), ids(&first[3..]), "the facts after the new cursor, again");
    // The same rewind as a script sends it: a JSON body instead of the query.
    let body = format!("{{\"to_offset\": {}}}", first[2].offset);
    let (status, rewound) = post(&cluster, "/v1/consumers/mes/rewind", &body);
    assert_eq!(status, 200, "{rewound}");
    assert_eq!(rewound["cursor"].as_u64(), Some(first[2].offset), "{rewound}");
    for body in ["", "{\"offset\": 3}", "{\"to_offset\": \"three\"}"] {
        let (status, refused) = post(&cluster, "/v1/consumers/mes/rewind", body);
        assert_eq!(
            (status, refused["error"].as_str()),
            (422, Some("INVALID_ARGUMENT")),
            "{body}: {refused}"
        );
        assert!(
            refused["message"].as_str().is_some_and(|m| m.contains("to_offset")),
            "{refused}"
        );
    }
    let forward = cli(&cluster, &["consumers", "rewind", "mes", "--to-offset", "999"]);
    assert_eq!(forward.0, Some(1), "a rewind only moves back: {}", forward.2);
    assert!(forward.2.contains("INVALID_ARGUMENT"), "{}", forward.2);

    let series = "consumer=\"reporting\"";
    wait_until(Duration::from_secs(10), "reporting's series exist", || {
        scrape(&cluster, "plant-a").contains(series)
    })
    .await;
    let (code, deleted, err) = cli(&cluster, &["consumers", "delete", "reporting"]);
    assert_eq!((code, deleted["deleted"].as_bool()), (Some(0), Some(true)), "{err}");
    wait_until(Duration::from_secs(10), "reporting's series are gone", || {
        !scrape(&cluster, "plant-a").contains(series)
    })
    .await;
    let (_, list, _) = cli(&cluster, &["consumers", "list"]);
    assert_eq!(list["consumers"].as_array().map(Vec::len), Some(1), "{list}");
    let missing = cli(&cluster, &["consumers", "delete", "reporting"]);
    assert!(missing.0 == Some(1) && missing.2.contains("NOT_FOUND"), "{}", missing.2);
    let peer = cli(&cluster, &["consumers", "delete", "peer:enterprise"]);
    assert!(peer.0 == Some(1) && peer.2.contains("PERMISSION_DENIED"), "{}", peer.2);
    let peer = cli(
        &cluster,
        &["consumers", "rewind", "peer:enterprise", "--to-offset", "0"],
    );
    assert!(peer.0 == Some(1) && peer.2.contains("PERMISSION_DENIED"), "{}", peer.2);

    let audited = || -> Vec<(String, String, String)> {
        cluster
            .log_lines("plant-a")
            .iter()
            .filter(|l| l["msg"] == "admin_action")
            .map(|l| {
                let field = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (field("operation"), field("consumer"), field("result"))
            })
            .collect()
    };
    let expected = [
        ("consumer_rewind", "mes", "success"),
        ("consumer_rewind", "mes", "success"),
        ("consumer_rewind", "mes", "permanent_error"),
        ("consumer_rewind", "mes", "permanent_error"),
        ("consumer_rewind", "mes", "permanent_error"),
        ("consumer_rewind", "mes", "permanent_error"),
        ("consumer_delete", "reporting", "success"),
        ("consumer_delete", "reporting", "permanent_error"),
        ("consumer_delete", "peer:enterprise", "permanent_error"),
        ("consumer_rewind", "peer:enterprise", "permanent_error"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    // The log is written asynchronously: the last answer can come before its audit line.
    wait_until(Duration::from_secs(10), "every admin action is audited", || {
        audited().len() >= expected.len()
    })
    .await;
    assert_eq!(audited(), expected);
    producer.close().await;
    consumer.close().await;
}

/// Consumer names are the clients' to choose: a node keeps at most `MAX_CONSUMERS`, refuses a
/// new name beyond them with a retryable error saying what to do, and serves the known ones as
/// before; a deleted consumer makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_beyond_the_most_a_node_keeps_is_refused_until_one_is_deleted() {
    use bsfg::client::ClientError;
    use bsfg_actors::MAX_CONSUMERS;
    use bsfg_proto::ErrorCode;

    let mut cluster = Cluster::pair();
    cluster.start_all();
    let consumer = cluster.client("plant-a").await;
    for i in 0..MAX_CONSUMERS {
        consumer
            .fetch(&format!("report-{i}"), 1, 0, None)
            .await
            .unwrap_or_else(|e| panic!("fetch as consumer {i}: {e}"));
    }
    let refused = |result: Result<_, ClientError>| match result {
        Err(ClientError::Rpc(e)) if e.code == ErrorCode::ResourceExhausted => e.message,
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    };
    let message = refused(consumer.fetch("one-too-many", 1, 0, None).await.map(|_| ()));
    assert!(
        message.contains("\"one-too-many\"") && message.contains("bsfg consumers delete"),
        "{message}"
    );
    refused(consumer.confirm("one-too-many", 0).await.map(|_| ()));
    consumer
        .fetch("report-7", 1, 0, None)
        .await
        .expect("a known consumer is served");
    let (_, list, _) = cli(&cluster, &["consumers", "list"]);
    assert_eq!(
        list["consumers"].as_array().map(Vec::len),
        Some(MAX_CONSUMERS),
        "the refused name is not listed"
    );

    let (code, _, err) = cli(&cluster, &["consumers", "delete", "report-0"]);
    assert_eq!(code, Some(0), "{err}");
    consumer
        .fetch("one-too-many", 1, 0, None)
        .await
        .expect("admitted once a consumer was deleted");
    refused(consumer.fetch("two-too-many", 1, 0, None).await.map(|_| ()));

    // A confirm that fails takes no room and is not listed.
    let (code, _, err) = cli(&cluster, &["consumers", "delete", "report-1"]);
    assert_eq!(code, Some(0), "{err}");
    let ghost = consumer.confirm("ghost", 999).await;
    assert!(
        matches!(&ghost, Err(ClientError::Rpc(e)) if e.code == ErrorCode::InvalidArgument),
        "{ghost:?}"
    );
    consumer
        .fetch("after-ghost", 1, 0, None)
        .await
        .expect("the failed confirm took no room");
    consumer.close().await;
}
