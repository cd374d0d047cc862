//! Where is my fact? `bsfg trace` against each end of a link answers "did batch 42's record
//! reach the plant, and has MES consumed it?": a delivered and consumed fact is stored and
//! confirmed at the origin, received and confirmed by the consumer at the destination; an
//! undelivered one is stored and unconfirmed at the origin and unknown at the destination; an
//! unknown one is unknown at both. Ids travel percent-encoded (`/` and spaces included).

use crate::harness;

use std::time::Duration;

use harness::{admin::http, message, observe::wait_until, Cluster};

/// `bsfg trace --message-id ID` (and `--from-zone` when given) against `zone`'s node.
fn trace(cluster: &Cluster, zone: &str, id: &str, from: Option<&str>) -> serde_json::Value {
    let mut args = vec!["trace", "--message-id", id];
    if let Some(from) = from {
        args.extend(["--from-zone", from]);
    }
    let out = cluster.admin_cli(zone, &args);
    assert!(out.status.success(), "{}", harness::stderr(&out));
    let lines = harness::json_lines(&out);
    assert_eq!(lines.len(), 1, "one JSON answer");
    lines[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_follows_a_fact_from_its_producer_to_its_consumers() {
    let cluster = Cluster::linked_pair().await;
    let producer = cluster.client("enterprise").await;
    let delivered = "batch/42 record";
    producer
        .append(message("enterprise", "plant-a", delivered))
        .await
        .expect("append");
    let consumer = cluster.client("plant-a").await;
    let got = harness::receive(&consumer, "mes", 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "delivered and confirmed by mes");

    wait_until(Duration::from_secs(20), "the origin sees the confirmation", || {
        trace(&cluster, "enterprise", delivered, None)["stored"]["confirmed_by_peer"] == true
    })
    .await;
    let origin = trace(&cluster, "enterprise", delivered, None);
    assert_eq!(
        (origin["found"].as_str(), origin["stored"]["to_zone"].as_str()),
        (Some("stored"), Some("plant-a"))
    );
    let plant = trace(&cluster, "plant-a", delivered, None);
    assert_eq!(plant["found"], "received", "{plant}");
    assert_eq!(
        plant["from_zone"], "enterprise",
        "found among the peers' facts: {plant}"
    );
    assert_eq!(
        plant["received"]["source_offset"], origin["stored"]["offset"],
        "{plant}"
    );
    let mes = &plant["received"]["consumers"][0];
    assert_eq!(
        (mes["name"].as_str(), mes["confirmed"].as_bool()),
        (Some("mes"), Some(true)),
        "{plant}"
    );

    // Not delivered: the gate toward plant-a is closed.
    let (code, body) = http(
        cluster.admin("enterprise"),
        "POST",
        "/v1/admin/gates/plant-a/close",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let waiting = "batch-43";
    producer
        .append(message("enterprise", "plant-a", waiting))
        .await
        .expect("append");
    let origin = trace(&cluster, "enterprise", waiting, Some("enterprise"));
    assert_eq!(
        (
            origin["found"].as_str(),
            origin["stored"]["confirmed_by_peer"].as_bool()
        ),
        (Some("stored"), Some(false))
    );
    assert!(
        origin["stored"]["age_seconds"].as_f64().is_some_and(|a| a >= 0.0),
        "{origin}"
    );
    let plant = trace(&cluster, "plant-a", waiting, Some("enterprise"));
    assert_eq!(plant["found"], "unknown", "{plant}");
    assert!(
        plant["note"].as_str().is_some_and(|n| n.contains("fact_expired")),
        "{plant}"
    );

    for zone in ["enterprise", "plant-a"] {
        let nowhere = trace(&cluster, zone, "never-appended", None);
        assert_eq!(
            (nowhere["found"].as_str(), nowhere["zone"].as_str()),
            (Some("unknown"), Some(zone))
        );
    }
    producer.close().await;
    consumer.close().await;
}
