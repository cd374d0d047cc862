//! Property: two zones exchange facts exactly once and in order in both directions, and a local
//! consumer's confirmed cursor survives a restart of its node (issue #2, test 1); peers whose
//! frame limits differ still exchange a backlog whose pages are over the smaller limit.

use crate::harness;

use std::{
    collections::{BTreeMap, HashSet},
    io::Write,
    time::Duration,
};

use futures::StreamExt;

use harness::{json_lines, message, observe::wait_until, receive, traffic::Traffic, Cluster};

const COUNT: usize = 10_000;

fn jsonl(from: &str, to: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    for i in 0..COUNT {
        let line = serde_json::json!({
            "envelope": {"message_id": format!("{from}-{i}"), "to_zone": to, "produced_at_unix_ms": 1_700_000_000_000u64},
            "fact": {"subject": format!("item/{i}"), "predicate": "recorded", "object_json": {"seq": i, "from": from}}
        });
        writeln!(file, "{line}").expect("write");
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_facts_each_way_arrive_once_in_order_and_cursors_survive_restart() {
    let mut cluster = Cluster::pair();
    cluster.start_all();
    // enterprise → plant-a through the CLI (JSON lines, in line order), plant-a → enterprise through
    // the client library; the source order is the order of the store offsets each append got.
    let input = jsonl("enterprise", "plant-a");
    let out = cluster.cli(
        "enterprise",
        &["append", "--jsonl", input.path().to_str().expect("path")],
    );
    assert!(out.status.success(), "append --jsonl failed: {}", harness::stderr(&out));
    let summary = &json_lines(&out)[0];
    assert_eq!(summary["appended"], COUNT as u64, "{summary}");
    assert_eq!(summary["duplicates"], 0);
    assert_eq!(
        summary["last_offset"].as_u64().expect("last") - summary["first_offset"].as_u64().expect("first"),
        COUNT as u64 - 1
    );
    let producer = cluster.client("plant-a").await;
    let appends = (0..COUNT).map(|i| {
        let producer = &producer;
        async move {
            (
                producer
                    .append(message("plant-a", "enterprise", &format!("plant-a-{i}")))
                    .await
                    .expect("append")
                    .offset,
                i,
            )
        }
    });
    let mut acked: Vec<(u64, usize)> = futures::stream::iter(appends).buffered(64).collect().await;
    acked.sort();
    let mut source_order = BTreeMap::new();
    source_order.insert(
        "plant-a",
        acked.iter().map(|(_, i)| format!("plant-a-{i}")).collect::<Vec<_>>(),
    );
    source_order.insert("enterprise", enterprise_order(&cluster).await);

    for (from, to) in [("enterprise", "plant-a"), ("plant-a", "enterprise")] {
        let client = cluster.client(to).await;
        let facts = receive(&client, "audit", COUNT, Duration::from_secs(120)).await;
        assert_eq!(facts.len(), COUNT, "facts from {from} that reached {to}");
        let ids: Vec<String> = facts.iter().map(|f| f.message.envelope.message_id.clone()).collect();
        assert_eq!(ids, source_order[from], "exactly once and in source order");
        assert_eq!(
            facts
                .iter()
                .map(|f| &f.message.envelope.from_zone)
                .collect::<HashSet<_>>()
                .len(),
            1
        );
        // Nothing more arrives: no duplicates trail behind.
        let extra = client.fetch("audit", 1000, 500, None).await.expect("fetch");
        assert!(extra.facts.is_empty(), "{} unexpected extra facts", extra.facts.len());
        client.close().await;
    }

    // The cursor of "audit" on plant-a is durable: after a restart it resumes after the last fact.
    cluster.kill("plant-a");
    cluster.start("plant-a");
    let client = cluster.client("plant-a").await;
    let fresh = client
        .append(message("plant-a", "enterprise", "after-restart"))
        .await
        .expect("append");
    assert!(!fresh.duplicate);
    let page = client.fetch("audit", 10, 0, None).await.expect("fetch");
    assert!(
        page.facts.is_empty(),
        "consumer resumed at offset {:?} instead of after its cursor",
        page.facts.first().map(|f| f.offset)
    );
    // A different consumer name starts from the beginning.
    let other = client.fetch("newcomer", 1, 0, None).await.expect("fetch");
    assert_eq!(other.facts[0].offset, 1);
    // And through the CLI: fetch prints JSON lines with offset, envelope and fact.
    let out = cluster.cli("plant-a", &["fetch", "--consumer", "cli-reader", "--limit", "2"]);
    assert!(out.status.success(), "{}", harness::stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["offset"], 1);
    assert_eq!(lines[0]["envelope"]["from_zone"], "enterprise");
    assert!(
        lines[0]["fact"]["object_json"]["seq"].is_u64(),
        "object_json is embedded JSON: {}",
        lines[0]
    );
    let out = cluster.cli("plant-a", &["confirm", "--consumer", "cli-reader", "--offset", "2"]);
    assert!(out.status.success(), "{}", harness::stderr(&out));
    assert_eq!(json_lines(&out)[0]["cursor"], 2);
}

/// The store offsets enterprise gave its JSON lines, read back by re-appending them: a duplicate
/// answers with the original offset.
async fn enterprise_order(cluster: &Cluster) -> Vec<String> {
    let client = cluster.client("enterprise").await;
    let mut offsets = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        let id = format!("enterprise-{i}");
        let mut again = message("enterprise", "plant-a", &id);
        again.fact.subject = format!("item/{i}");
        again.fact.object_json = format!("{{\"from\":\"enterprise\",\"seq\":{i}}}");
        offsets.push(again);
    }
    let replies = futures::stream::iter(offsets.into_iter().map(|m| {
        let client = &client;
        async move {
            let id = m.envelope.message_id.clone();
            (client.append(m).await.expect("re-append"), id)
        }
    }))
    .buffered(64)
    .collect::<Vec<_>>()
    .await;
    let mut order: Vec<(u64, String)> = replies
        .into_iter()
        .map(|(r, id)| {
            assert!(r.duplicate, "{id} was not recognised as a duplicate");
            (r.offset, id)
        })
        .collect();
    order.sort();
    client.close().await;
    order.into_iter().map(|(_, id)| id).collect()
}

/// `enterprise` serves pages of up to half its 8 MiB frame limit; `plant-a` reads frames of at most
/// 1 MiB. A page over that is refused by the reader, which asks for fewer facts instead of asking
/// for the same page again for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_different_frame_limits_exchange_a_backlog() {
    let mut cluster = Cluster::pair();
    for (zone, limit) in [("enterprise", "8MiB"), ("plant-a", "1MiB")] {
        let node = cluster.net.nodes.get_mut(zone).expect("zone");
        node.extra = format!("[limits]\nmax_frame_bytes = \"{limit}\"\nmax_fact_bytes = \"64KiB\"\n");
    }
    cluster.start("enterprise");
    // A backlog of facts of about 4 KiB: a page of 1000 of them is some 4 MB.
    let mut traffic = Traffic::default();
    traffic.flood(cluster.options("enterprise"), "enterprise", "plant-a", 64, 4000);
    let history = traffic.history.clone();
    wait_until(Duration::from_secs(60), "a backlog of 5 000 facts", || {
        history.acked_count("enterprise") >= 5_000
    })
    .await;
    traffic.stop_producing().await;

    cluster.start("plant-a");
    traffic.consume(cluster.options("plant-a"), "plant-a", "mes");
    traffic.assert_delivered_exactly_once(Duration::from_secs(60)).await;
}
