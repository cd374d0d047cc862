//! Drill: artifact retrieval failures (docs/operations.md), the sender lost an artifact file. A
//! fact from plant-a references a PDF whose blob is gone from plant-a's store when idmz pulls:
//! idmz cannot retrieve it (`artifact_retrieval_failed`, the fact is not delivered) and asks
//! again with the link kept up (no `peer_disconnected`, no link failure, gate `normal`), plant-a
//! refuses the `get_object`; the runbook's filters show both, the files are restored from backup,
//! and the fact arrives at idmz with an artifact whose digest matches. plant-a logs the missing
//! file itself (`artifact_damaged`).

use crate::harness;

use std::time::Duration;

use harness::{
    admin::http,
    drill::{Drill, Estate, TOKEN},
    observe::{events, scrape, total, wait_until},
    Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_artifact_restored_as_the_runbook_says_is_delivered() {
    let mut cluster = Cluster::new(&["idmz", "plant-a"], &[("idmz", "plant-a")]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    let estate = Estate::new(cluster);
    estate.start_all().await;
    let admin = estate.cluster.admin("plant-a");
    let gate = |action: &str| http(admin, "POST", &format!("/v1/admin/gates/idmz/{action}"), Some(TOKEN));
    assert_eq!(gate("close").0, 200, "idmz pulls nothing yet");

    let pdf = estate.host("plant-a").join("42.pdf");
    std::fs::write(&pdf, b"%PDF-1.7 certificate of analysis, batch 42").expect("pdf");
    let put = estate.shell(
        "plant-a",
        &format!(
            "bsfg put-object --bucket batch-records --key 42.pdf --media-type application/pdf {}",
            pdf.display()
        ),
    );
    let reference = put.trim().to_owned();
    let append = format!(
        "bsfg append --to idmz --message-id batch-42 --subject batch/42 --predicate certified \
         --object-media-type application/pdf --object-json '{reference}'"
    );
    estate.shell("plant-a", &append);
    // Last night's backup holds the file; then it is lost from the store.
    estate.shell(
        "plant-a",
        "cp -a var/lib/bsfg/objects backup/ && rm -rf var/lib/bsfg/objects/sha256/*",
    );
    assert_eq!(gate("open").0, 200);
    wait_until(Duration::from_secs(30), "idmz fails to retrieve the artifact", || {
        !events(&estate.cluster, "idmz", "artifact_retrieval_failed").is_empty()
    })
    .await;
    // The sender, which can repair it, says so in its own log (written by its logger thread).
    wait_until(Duration::from_secs(10), "plant-a logs the missing file", || {
        events(&estate.cluster, "plant-a", "artifact_damaged").iter().any(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("42.pdf") && r.contains("is missing"))
        })
    })
    .await;
    // The link itself is fine: idmz keeps it up and asks again, rather than flapping it (and
    // paging the operator for a link problem) at every try.
    let disconnected = events(&estate.cluster, "idmz", "peer_disconnected").len();
    let link_failures = || {
        let scraped = scrape(&estate.cluster, "idmz");
        total(&scraped, "bsfg_link_failures_total{peer=\"plant-a\"")
    };
    let failures_before = link_failures();
    wait_until(Duration::from_secs(20), "idmz tries the artifact again", || {
        events(&estate.cluster, "idmz", "artifact_retrieval_failed").len() >= 3
    })
    .await;
    assert_eq!(estate.cluster.gate_state("idmz", "plant-a"), "normal");
    assert_eq!(
        events(&estate.cluster, "idmz", "peer_disconnected").len(),
        disconnected,
        "no session ended for the artifact"
    );
    assert_eq!(link_failures(), failures_before, "no link failure counted");
    let drill = Drill::load("artifact-missing");

    let receiver = estate.run(&drill, "receiver");
    assert!(
        receiver.contains("\"message_id\":\"batch-42\"") && receiver.contains("42.pdf"),
        "{receiver}"
    );
    let sender = estate.run(&drill, "sender");
    assert!(
        sender.contains("\"operation\"") || sender.contains("\"code\""),
        "the refused pulls: {sender}"
    );
    assert!(sender.contains("the sender cannot serve it"), "{sender}");
    estate.run(&drill, "restore");
    let delivered = estate.run(&drill, "delivered");
    let digest = reference
        .split("\"digest\":\"sha256:")
        .nth(1)
        .and_then(|r| r.get(..64))
        .expect("digest");
    assert!(
        delivered.contains(digest),
        "the delivered artifact has the fact's digest: {delivered}"
    );
    estate.assert_ran_every_step(&drill);
}
