//! Property: only configured identities with verified certificates get anything from a node
//! (SPEC §6) — a certificate from a foreign CA fails the handshake; a CA-valid certificate whose
//! CN is not a configured client or peer gets `PERMISSION_DENIED`; a client may only do what its
//! roles allow; a node is only accepted under the name it was dialled by; a peer's certificate
//! can neither produce nor read facts addressed to another zone; and `from_zone` must be the
//! node's own zone (SPEC §2). After every refusal the legitimate client is still served
//! (issue #2, test 4). Both are reloadable without a restart: a client certificate revoked in the
//! CRL (`[tls] crl`) fails its handshake after a reload, counted and logged, and loses the live
//! connections it held (a client's and a peer's alike), and the
//! `[[clients]]` list is re-read by `bsfg admin reload` and SIGHUP (issue 14); meanwhile the other
//! clients and the peer link carry on.

use crate::harness;

use std::{path::Path, process::Output};

use bsfg::{
    client::{Client, ClientError, ClientOptions},
    pki,
};
use bsfg_proto::{ErrorCode, Response};
use harness::{
    admin::{http, json},
    message,
    observe::{events, metric, wait_until},
    raw::RawConnection,
    stderr, Cluster,
};

/// A client allowed to consume but not to produce on `enterprise`.
const READER: &str = "reader";
/// A client certificate signed by the cluster's CA but listed nowhere.
const STRANGER: &str = "stranger";
/// A node certificate signed by the cluster's CA for a zone nobody peers with.
const ROGUE: &str = "rogue";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_configured_identities_are_served() {
    // `plant-b` is configured on enterprise but never started: facts addressed to it stay in
    // enterprise's store buffer, where a peer impersonator must not be able to read them.
    let mut cluster = Cluster::new(
        &["enterprise", "plant-a", "plant-b"],
        &[("enterprise", "plant-a"), ("enterprise", "plant-b")],
    );
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    pki::init(&cluster.net.pki, &names(&[ROGUE]), &names(&[READER, STRANGER]), 30).expect("issue extra certificates");
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.clients.push((READER.into(), vec!["consume".into()]));
    cluster.start("enterprise");
    cluster.start("plant-a");

    unlisted_client_is_denied(&cluster);
    roles_limit_what_a_client_may_do(&cluster);
    server_must_present_the_dialled_zone(&cluster).await;
    unknown_node_identity_is_denied(&cluster).await;
    peer_certificate_reads_only_its_own_facts(&cluster).await;
    from_zone_must_be_the_nodes_zone(&cluster).await;
    assert_still_serving(&cluster, "final").await;
}

/// Options for `identity` with certificate files from `pki` (possibly another CA's directory).
fn options_with(cluster: &Cluster, zone: &str, pki: &Path, identity: &str) -> ClientOptions {
    ClientOptions {
        cert: pki.join(format!("{identity}.pem")),
        key: pki.join(format!("{identity}.key")),
        ..cluster.options(zone)
    }
}

/// Connects and makes one call; the error of whichever step failed.
async fn connect_and_append(options: &ClientOptions, id: &str) -> Result<(), ClientError> {
    let client = Client::connect(options).await?;
    let result = client.append(message("enterprise", "plant-a", id)).await;
    client.close().await;
    result.map(drop)
}

/// Connects and makes four appends at once; the error of every step that failed (a refused
/// certificate may fail the connect, or each call).
async fn refused_calls(options: &ClientOptions) -> Vec<ClientError> {
    let client = match Client::connect(options).await {
        Ok(client) => client,
        Err(e) => return vec![e],
    };
    let ids: Vec<String> = (0..4).map(|i| format!("refused-{i}")).collect();
    let calls = ids.iter().map(|id| append_as(&client, id));
    let errors = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|call| call.expect_err("a refused certificate's call succeeded"))
        .collect();
    client.close().await;
    errors
}

/// A certificate with the right CN from another CA: the node's verifier refuses the handshake,
/// logs why, and the caller learns it is not authenticated (not a retryable outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_ca_certificate_fails_the_handshake() {
    let mut cluster = Cluster::pair();
    cluster.start("enterprise");
    let cluster = &cluster;
    let foreign = cluster.dir().join("foreign-pki");
    pki::init(&foreign, &[], &[harness::CLIENT.to_owned()], 30).expect("foreign CA");
    // The client trusts both CAs, so it accepts the node and can load its own certificate: only
    // the node's verification of the client certificate can refuse the connection.
    let mut bundle = std::fs::read(cluster.net.pki.join("ca.pem")).expect("cluster CA");
    bundle.extend(std::fs::read(foreign.join("ca.pem")).expect("foreign CA"));
    std::fs::write(foreign.join("both-cas.pem"), bundle).expect("write CA bundle");
    let options = ClientOptions {
        ca: foreign.join("both-cas.pem"),
        ..options_with(cluster, "enterprise", &foreign, harness::CLIENT)
    };
    let error = connect_and_append(&options, "foreign-1")
        .await
        .expect_err("a foreign CA's certificate must be refused");
    let logged = wait_for_log(cluster, "enterprise", "tls_handshake_failed").await;
    assert!(logged, "the node logs the refused handshake (SPEC §6)");
    assert_eq!(error.code(), ErrorCode::Unauthenticated, "{error}");
    assert!(
        !error.retryable(),
        "a refused certificate is not worth retrying: {error}"
    );
    // The node's refusal races the client's first calls (the connection can close before, while
    // or after their append stream opens); whichever way it goes, every call reads as the refusal,
    // never as an outage worth sending again.
    for round in 0..50 {
        for error in refused_calls(&options).await {
            assert_eq!(error.code(), ErrorCode::Unauthenticated, "round {round}: {error}");
        }
    }

    let cli = std::process::Command::new(harness::bin())
        .args([
            "append",
            "--to",
            "plant-a",
            "--subject",
            "s",
            "--predicate",
            "p",
            "--object-json",
            "1",
        ])
        .args(["--node", &options.node, "--server-name", "enterprise"])
        .arg("--ca")
        .arg(&options.ca)
        .arg("--cert")
        .arg(&options.cert)
        .arg("--key")
        .arg(&options.key)
        .output()
        .expect("run bsfg");
    assert_eq!(cli.status.code(), Some(1), "{}", stderr(&cli));
    assert!(stderr(&cli).starts_with("error: UNAUTHENTICATED: "), "{}", stderr(&cli));

    assert_still_serving(cluster, "after-foreign-ca").await;
}

fn assert_denied(output: &Output, names: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.starts_with("error: PERMISSION_DENIED: "), "{text}");
    for name in names {
        assert!(text.contains(name), "the error names {name:?}: {text}");
    }
}

fn cli_append(cluster: &Cluster, identity: &str) -> Output {
    cluster.cli_append_as("enterprise", identity, "plant-a")
}

fn cli_fetch(cluster: &Cluster, identity: &str) -> Output {
    cluster.cli_as("enterprise", identity, &["fetch", "--consumer", identity])
}

fn unlisted_client_is_denied(cluster: &Cluster) {
    assert_denied(&cli_append(cluster, STRANGER), &[STRANGER]);
    assert_denied(&cli_fetch(cluster, STRANGER), &[STRANGER]);
    let confirm = cluster.cli_as(
        "enterprise",
        STRANGER,
        &["confirm", "--consumer", STRANGER, "--offset", "0"],
    );
    assert_denied(&confirm, &[STRANGER]);
}

fn roles_limit_what_a_client_may_do(cluster: &Cluster) {
    assert_denied(&cli_append(cluster, READER), &[READER, "produce"]);
    let fetch = cli_fetch(cluster, READER);
    assert!(fetch.status.success(), "a consumer may fetch: {}", stderr(&fetch));
}

async fn server_must_present_the_dialled_zone(cluster: &Cluster) {
    // enterprise's address, dialled as if it were plant-a: its certificate says "enterprise".
    let options = ClientOptions {
        server_name: "plant-a".into(),
        ..cluster.options("enterprise")
    };
    let error = Client::connect(&options)
        .await
        .err()
        .expect("a node presenting another zone's CN must be refused");
    assert_eq!(error.code(), ErrorCode::Unauthenticated, "{error}");
    assert!(
        error.to_string().contains("enterprise"),
        "the error names what was presented: {error}"
    );
}

async fn unknown_node_identity_is_denied(cluster: &Cluster) {
    let options = options_with(cluster, "enterprise", &cluster.net.pki, ROGUE);
    let client = Client::connect(&options)
        .await
        .expect("a CA-valid certificate passes the handshake");
    let fetch = client
        .fetch("peer:plant-a", 100, 0, Some(0))
        .await
        .expect_err("fetch by an unknown node");
    assert_eq!(fetch.code(), ErrorCode::PermissionDenied, "{fetch}");
    assert!(fetch.to_string().contains(ROGUE), "{fetch}");
    let append = client
        .append(message("enterprise", "plant-a", "rogue-1"))
        .await
        .expect_err("append by an unknown node");
    assert_eq!(append.code(), ErrorCode::PermissionDenied, "{append}");
    client.close().await;

    // Its requests are not even read: a header announcing a frame of the largest size, with
    // hardly any of it sent, is denied as such (not read to its end, nor taken for truncated).
    let raw = RawConnection::open(&options).await;
    let mut announced = (16u32 << 20).to_be_bytes().to_vec();
    announced.extend_from_slice(&[0; 64]);
    let answer = raw.exchange(&announced).await.expect("an answer");
    match answer {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::PermissionDenied, "{e:?}");
            assert!(e.message.contains(ROGUE), "{e:?}");
        }
        other => panic!("a stranger's request is denied: {other:?}"),
    }
}

async fn peer_certificate_reads_only_its_own_facts(cluster: &Cluster) {
    let producer = cluster.client("enterprise").await;
    for (id, to) in [
        ("for-a-1", "plant-a"),
        ("for-b-1", "plant-b"),
        ("for-a-2", "plant-a"),
        ("for-b-2", "plant-b"),
    ] {
        producer.append(message("enterprise", to, id)).await.expect("append");
    }
    producer.close().await;

    let options = options_with(cluster, "enterprise", &cluster.net.pki, "plant-a");
    let impostor = Client::connect(&options).await.expect("plant-a's certificate is valid");
    let append = impostor
        .append(message("enterprise", "plant-a", "impostor-1"))
        .await
        .expect_err("a peer cannot produce");
    assert_eq!(append.code(), ErrorCode::PermissionDenied, "{append}");
    // The consumer name is ignored for peers: even asking for plant-b's stream yields plant-a's.
    let page = impostor
        .fetch("peer:plant-b", 1000, 0, Some(0))
        .await
        .expect("a peer may fetch its own facts");
    let ids: Vec<&str> = page
        .facts
        .iter()
        .map(|f| f.message.envelope.message_id.as_str())
        .collect();
    assert!(ids.contains(&"for-a-1") && ids.contains(&"for-a-2"), "{ids:?}");
    for fact in &page.facts {
        assert_eq!(
            fact.message.envelope.to_zone, "plant-a",
            "a peer only receives facts addressed to it: {ids:?}"
        );
    }
    impostor.close().await;
}

async fn from_zone_must_be_the_nodes_zone(cluster: &Cluster) {
    let client = cluster.client("enterprise").await;
    let error = client
        .append(message("plant-b", "plant-a", "forged-1"))
        .await
        .expect_err("forged from_zone");
    assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
    assert!(!error.retryable());
    assert!(
        error.to_string().contains("plant-b") && error.to_string().contains("enterprise"),
        "{error}"
    );
    client.close().await;
}

/// The legitimate client still appends and fetches on enterprise.
async fn assert_still_serving(cluster: &Cluster, id: &str) {
    let client = cluster.client("enterprise").await;
    let appended = client
        .append(message("enterprise", "plant-a", id))
        .await
        .expect("legitimate append");
    assert!(!appended.duplicate, "{id} is new");
    client
        .fetch(harness::CLIENT, 10, 0, None)
        .await
        .expect("legitimate fetch");
    client.close().await;
}

/// Whether `needle` appears in the node's log within a few seconds (logging is asynchronous).
async fn wait_for_log(cluster: &Cluster, zone: &str, needle: &str) -> bool {
    let path = cluster.dir().join(format!("{zone}.log"));
    for _ in 0..100 {
        if std::fs::read_to_string(&path).unwrap_or_default().contains(needle) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Issues client certificates for `names` (and the existing ones again) in the cluster's PKI and
/// lets each produce and consume on enterprise.
fn add_clients(cluster: &mut Cluster, names: &[&str]) {
    let owned = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    pki::init(&cluster.net.pki, &[], &owned(names), 30).expect("client certificates");
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    for name in names {
        enterprise
            .clients
            .push((name.to_string(), vec!["produce".into(), "consume".into()]));
    }
}

fn logged(cluster: &Cluster, event: &str, field: &str, value: &str) -> bool {
    events(cluster, "enterprise", event).iter().any(|l| l[field] == value)
}

async fn append_as(client: &Client, id: &str) -> Result<(), ClientError> {
    client.append(message("enterprise", "plant-a", id)).await.map(drop)
}

fn reload(cluster: &Cluster) -> (u16, serde_json::Value) {
    let (code, body) = http(cluster.admin("enterprise"), "POST", "/v1/admin/reload", None);
    (code, json(&body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_revoked_in_the_crl_fails_its_handshake_after_a_reload() {
    let mut cluster = Cluster::pair();
    add_clients(&mut cluster, &["stolen"]);
    let pki_dir = cluster.net.pki.clone();
    let crl = pki::revoke(&pki_dir, &[], 30).expect("an empty revocation list").crl;
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").crl = Some(crl.clone());
    cluster.start("enterprise");
    // The list's nextUpdate (30 days out) is watched: past it the next start or reload refuses it.
    let left = metric(&cluster, "enterprise", "bsfg_crl_expiry_seconds");
    assert!((29.0 * 86_400.0..=30.0 * 86_400.0).contains(&left), "{left} s left");
    let status = cluster.status("enterprise");
    assert!(status["certificate"]["crl_next_update"].is_string(), "{status}");
    let stolen = options_with(&cluster, "enterprise", &pki_dir, "stolen");
    connect_and_append(&stolen, "stolen-before")
        .await
        .expect("not revoked yet");

    let revoke = std::process::Command::new(harness::bin())
        .args(["pki", "revoke", "--dir"])
        .arg(&pki_dir)
        .arg("--cert")
        .arg(pki_dir.join("stolen.pem"))
        .output()
        .expect("bsfg pki revoke");
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let (code, body) = reload(&cluster);
    assert_eq!(code, 200, "{body}");

    let refused = connect_and_append(&stolen, "stolen-after").await.expect_err("revoked");
    assert_eq!(refused.code(), ErrorCode::Unauthenticated, "{refused}");
    let series = "bsfg_tls_handshake_errors_total{reason=\"revoked\"}";
    wait_until(
        std::time::Duration::from_secs(10),
        "the refusal is counted and logged",
        || {
            metric(&cluster, "enterprise", series) >= 1.0
                && events(&cluster, "enterprise", "tls_handshake_failed")
                    .iter()
                    .any(|l| l["kind"] == "revoked")
        },
    )
    .await;
    assert_still_serving(&cluster, "after-revocation").await;

    // A list from another CA is refused with the file's name; the one in force stays.
    let foreign = cluster.dir().join("foreign-pki");
    pki::init(&foreign, &[], &[], 30).expect("foreign CA");
    let foreign_crl = pki::revoke(&foreign, &[], 30).expect("foreign list").crl;
    std::fs::copy(&foreign_crl, &crl).expect("install the wrong list");
    let (code, body) = reload(&cluster);
    assert_eq!(code, 422, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&crl.display().to_string()) && reason.contains("not signed"),
        "{body}"
    );
    let refused = connect_and_append(&stolen, "stolen-later")
        .await
        .expect_err("still revoked");
    assert_eq!(refused.code(), ErrorCode::Unauthenticated, "{refused}");
    assert_still_serving(&cluster, "after-a-refused-list").await;
}

/// Revoking a stolen key must also end the sessions it already holds: a reload that brings a
/// list naming a client's and a peer's certificate closes their live connections
/// (`tls_connection_closed`, counted by reason), the client's next call on its connection is
/// refused as unauthenticated, the link with the peer goes down and cannot come back, and the
/// other clients are served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_revokes_a_certificate_closes_the_connections_it_holds() {
    let mut cluster = Cluster::pair();
    add_clients(&mut cluster, &["stolen"]);
    let pki_dir = cluster.net.pki.clone();
    let crl = pki::revoke(&pki_dir, &[], 30).expect("an empty revocation list").crl;
    cluster.net.nodes.get_mut("enterprise").expect("enterprise").crl = Some(crl);
    // enterprise dials plant-a, so it checks a connection it dialled (plant-a as a server) and
    // one the client dialled (as a client): both kinds of check.
    cluster.net.set_dial("plant-a", "enterprise", false).expect("plant-a");
    cluster.start_all();
    cluster.wait_linked(std::time::Duration::from_secs(20)).await;
    let stolen = Client::connect(&options_with(&cluster, "enterprise", &pki_dir, "stolen"))
        .await
        .expect("not revoked yet");
    append_as(&stolen, "stolen-before").await.expect("not revoked yet");
    let closed = |reason: &str| format!("bsfg_tls_connections_closed_total{{reason=\"{reason}\"}}");
    assert_eq!(metric(&cluster, "enterprise", &closed("revoked")), 0.0);

    let revoked = [pki_dir.join("stolen.pem"), pki_dir.join("plant-a.pem")];
    pki::revoke(&pki_dir, &revoked, 30).expect("revoke the stolen keys");
    let (code, body) = reload(&cluster);
    assert_eq!(code, 200, "{body}");
    wait_until(
        std::time::Duration::from_secs(10),
        "both live connections are closed as revoked, counted and logged",
        || {
            let lines = events(&cluster, "enterprise", "tls_connection_closed");
            let revoked = |field: &str, who: &str, direction: &str| {
                lines
                    .iter()
                    .any(|l| l[field] == who && l["kind"] == "revoked" && l["direction"] == direction)
            };
            metric(&cluster, "enterprise", &closed("revoked")) >= 2.0
                && revoked("caller", "stolen", "inbound")
                && revoked("peer", "plant-a", "outbound")
        },
    )
    .await;
    let refused = append_as(&stolen, "stolen-after")
        .await
        .expect_err("the connection is closed");
    assert_eq!(refused.code(), ErrorCode::Unauthenticated, "{refused}");
    assert!(!refused.retryable(), "{refused}");
    let cut = cluster
        .wait_gate(
            "enterprise",
            "plant-a",
            "autonomous",
            std::time::Duration::from_secs(20),
        )
        .await;
    assert!(cut.is_some(), "the link with the revoked peer goes down");
    wait_until(
        std::time::Duration::from_secs(20),
        "the peer's next handshake is refused as revoked",
        || {
            metric(
                &cluster,
                "enterprise",
                "bsfg_tls_handshake_errors_total{reason=\"revoked\"}",
            ) >= 1.0
        },
    )
    .await;
    assert_eq!(
        cluster.status("enterprise")["peers"]["plant-a"]["state"],
        "autonomous",
        "the revoked peer stays out"
    );
    assert_still_serving(&cluster, "after-the-sessions-closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_list_is_reloaded_without_a_restart() {
    let mut cluster = Cluster::pair();
    add_clients(&mut cluster, &["leaver", "newcomer"]);
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.clients.retain(|(name, _)| name != "newcomer");
    cluster.start_all();
    cluster.wait_linked(std::time::Duration::from_secs(20)).await;
    let pki_dir = cluster.net.pki.clone();
    let options = |name: &str| options_with(&cluster, "enterprise", &pki_dir, name);
    let leaver = Client::connect(&options("leaver")).await.expect("leaver connects");
    let newcomer = Client::connect(&options("newcomer"))
        .await
        .expect("a CA-valid certificate connects");
    let tester = cluster.client("enterprise").await;
    append_as(&leaver, "leaver-1").await.expect("leaver is listed");
    let denied = append_as(&newcomer, "newcomer-1")
        .await
        .expect_err("newcomer is not listed yet");
    assert_eq!(denied.code(), ErrorCode::PermissionDenied, "{denied}");
    let transitions = cluster.gate_transitions("enterprise", "plant-a").len();

    // The file changes: leaver out, newcomer in, and a section a reload cannot apply.
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.clients.retain(|(name, _)| name != "leaver");
    enterprise.clients.push(("newcomer".into(), vec!["produce".into()]));
    enterprise.extra.push_str("\n[forward]\nretention = \"1d\"\n");
    cluster.net.write_configs().expect("configs");
    let (code, body) = reload(&cluster);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["clients"]["added"], serde_json::json!(["newcomer"]), "{body}");
    assert_eq!(body["clients"]["removed"], serde_json::json!(["leaver"]), "{body}");
    assert_eq!(body["restart_needed"], serde_json::json!(["forward"]), "{body}");
    assert_eq!(body["subject"], "CN=enterprise", "{body}");

    // On the connections opened before the reload.
    let denied = append_as(&leaver, "leaver-2").await.expect_err("leaver was removed");
    assert_eq!(denied.code(), ErrorCode::PermissionDenied, "{denied}");
    append_as(&newcomer, "newcomer-2").await.expect("newcomer was added");
    append_as(&tester, "tester-1")
        .await
        .expect("the other clients carry on");
    wait_until(std::time::Duration::from_secs(10), "the reload is logged", || {
        logged(&cluster, "config_reloaded", "clients_added", "newcomer")
            && logged(&cluster, "restart_needed", "sections", "forward")
    })
    .await;

    // SIGHUP takes the same path: leaver back in.
    let enterprise = cluster.net.nodes.get_mut("enterprise").expect("enterprise spec");
    enterprise.clients.push(("leaver".into(), vec!["produce".into()]));
    cluster.net.write_configs().expect("configs");
    cluster.signal("enterprise", "HUP");
    wait_until(
        std::time::Duration::from_secs(10),
        "SIGHUP reloads the client list",
        || logged(&cluster, "config_reloaded", "clients_added", "leaver"),
    )
    .await;
    append_as(&leaver, "leaver-3").await.expect("leaver is listed again");
    // A SIGHUP over a broken file changes nothing, and shows as a metric, not in the log alone
    // (systemd reports a reload as done whatever the node made of it).
    let failing = |c: &Cluster| metric(c, "enterprise", "bsfg_config_reload_failing");
    assert_eq!(failing(&cluster), 0.0);
    let config = cluster.net.node("enterprise").expect("enterprise spec").config.clone();
    let good = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{good}\n[bogus]\n")).expect("break the config");
    cluster.signal("enterprise", "HUP");
    wait_until(std::time::Duration::from_secs(10), "the refusal shows", || {
        failing(&cluster) == 1.0
    })
    .await;
    append_as(&leaver, "leaver-4").await.expect("nothing changed");
    std::fs::write(&config, good).expect("mend the config");
    cluster.signal("enterprise", "HUP");
    wait_until(std::time::Duration::from_secs(10), "a good reload clears it", || {
        failing(&cluster) == 0.0
    })
    .await;
    assert_eq!(
        cluster.gate_transitions("enterprise", "plant-a").len(),
        transitions,
        "the peer link never dropped"
    );
    for client in [leaver, newcomer, tester] {
        client.close().await;
    }
}
