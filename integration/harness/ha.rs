//! An HA zone under test (SPEC §15): `enterprise` runs as two instances, `enterprise-a` and
//! `enterprise-b`, over a real three-server nats-server cluster ([`EngineFixture`]); `plant-a` is
//! a single node peered with it. Clients and `plant-a` know both instances (address lists).

use std::time::{Duration, Instant};

use bsfg::{client::ClientOptions, devnet::nats::NatsOptions};

use super::{
    admin::{http, json},
    engine::EngineFixture,
    traffic::Traffic,
    Cluster, CLIENT,
};

pub const ZONE: &str = "enterprise";
pub const PLANT: &str = "plant-a";
pub const INSTANCES: [&str; 2] = ["enterprise-a", "enterprise-b"];

pub struct HaZone {
    pub cluster: Cluster,
    pub engine: EngineFixture,
}

/// `[storage]` of one instance against `engine`, with `extra` lines in `[storage.jetstream]`.
pub fn storage_toml(engine: &EngineFixture, instance: &str, extra: &str) -> String {
    bsfg::devnet::ha::jetstream_storage(&engine.nats, instance, extra)
}

impl HaZone {
    /// The engine, the zone's two instances and `plant-a`, configured (`jetstream` lines go into
    /// every instance's `[storage.jetstream]`, e.g. `lease_ttl = "3s"`), nothing started.
    pub async fn new(options: NatsOptions, jetstream: &str) -> Self {
        let engine = EngineFixture::start_with(options).await;
        let mut cluster = Cluster::new(&[ZONE, PLANT], &[(ZONE, PLANT)]);
        cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
        cluster
            .net
            .make_ha(ZONE, &INSTANCES, |instance| storage_toml(&engine, instance, jetstream))
            .expect("HA zone");
        Self { cluster, engine }
    }

    /// Everything started; returns once one instance is active and the link to `plant-a` is up.
    pub async fn started(jetstream: &str) -> Self {
        let mut ha = Self::new(NatsOptions::default(), jetstream).await;
        ha.cluster.start(PLANT);
        for instance in INSTANCES {
            ha.cluster.start(instance);
        }
        let active = ha.wait_active(None, Duration::from_secs(30)).await;
        ha.wait_linked(&active, Duration::from_secs(30)).await;
        ha
    }

    /// Whether `instance` answers `/readyz` with 200 (`false` if it is not running).
    pub fn is_ready(&self, instance: &str) -> bool {
        if !self.cluster.nodes.contains_key(instance) {
            return false;
        }
        let admin = self.cluster.admin(instance);
        let client = bsfg::admin::client::AdminClient::at(admin, None).timeout(Duration::from_secs(1));
        client.get("/readyz").is_ok_and(|a| a.status == 200)
    }

    /// The instances answering `/readyz` with 200 now.
    pub fn ready(&self) -> Vec<&'static str> {
        INSTANCES.into_iter().filter(|i| self.is_ready(i)).collect()
    }

    /// Waits until an instance other than `not` (which is not asked: it may be paused) is the
    /// only one ready; returns it.
    pub async fn wait_active(&self, not: Option<&str>, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let ready: Vec<&str> = INSTANCES
                .into_iter()
                .filter(|i| Some(*i) != not && self.is_ready(i))
                .collect();
            let others = INSTANCES.len() - usize::from(not.is_some());
            if let [one] = ready.as_slice() {
                if others == 1 || self.ready().len() == 1 {
                    return (*one).to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no single active instance (other than {not:?}) within {timeout:?}: ready {ready:?}\n{}",
                self.cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `instance`'s gate toward `plant-a`, and `plant-a`'s toward the zone, are `normal`.
    pub async fn wait_linked(&self, instance: &str, timeout: Duration) {
        for (node, peer) in [(instance, PLANT), (PLANT, ZONE)] {
            let up = self.cluster.wait_gate(node, peer, "normal", timeout).await;
            assert!(
                up.is_some(),
                "{node} did not reach normal toward {peer} within {timeout:?}"
            );
        }
    }

    /// `ha` of `/v1/status` of `instance`.
    pub fn ha_status(&self, instance: &str) -> serde_json::Value {
        let (code, body) = http(self.cluster.admin(instance), "GET", "/v1/status", None);
        assert_eq!(code, 200, "{body}");
        json(&body)["ha"].clone()
    }

    /// A client of the zone that knows both instances.
    pub fn zone_client(&self) -> ClientOptions {
        self.cluster.net.client_of_zone(ZONE, CLIENT).expect("client options")
    }

    /// Producers both ways (one fact every `pace` each) and a consumer `mes` in each zone.
    pub fn traffic(&self, pace: Duration) -> Traffic {
        let mut traffic = Traffic::default();
        traffic.produce(self.zone_client(), ZONE, PLANT, pace);
        traffic.consume(self.zone_client(), ZONE, "mes");
        traffic.produce(self.cluster.options(PLANT), PLANT, ZONE, pace);
        traffic.consume(self.cluster.options(PLANT), PLANT, "mes");
        traffic
    }

    /// The other instance.
    pub fn other(instance: &str) -> &'static str {
        if instance == INSTANCES[0] {
            INSTANCES[1]
        } else {
            INSTANCES[0]
        }
    }
}

impl Drop for HaZone {
    /// On failure, what each node said besides its calls (the cluster prints only its last lines).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for node in self.cluster.net.nodes.keys() {
            let text = std::fs::read_to_string(self.cluster.dir().join(format!("{node}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("\"rpc_call\"")).collect();
            eprintln!(
                "---- {node}: lines other than rpc_call (last 60) ----\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}
