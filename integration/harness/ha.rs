//! An HA zone under test (SPEC §15): `enterprise` runs as two instances, `enterprise-a` and
//! `enterprise-b`, over a real three-server nats-server cluster ([`EngineFixture`]); `plant-a` is
//! a single node peered with it. Clients and `plant-a` know both instances (address lists).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use bsfg::{client::ClientOptions, devnet::nats::NatsOptions};

use super::{
    admin::{http, json},
    drill::Estate,
    engine::EngineFixture,
    history::History,
    observe::wait_until,
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

/// The HA zone's two instances against `engine` (with `jetstream` lines in each one's
/// `[storage.jetstream]`) and `plant-a`, configured.
fn ha_cluster(engine: &EngineFixture, jetstream: &str) -> Cluster {
    let mut cluster = Cluster::new(&[ZONE, PLANT], &[(ZONE, PLANT)]);
    cluster.configure_all("\n[replication]\nlink_timeout = \"2s\"\n");
    cluster
        .net
        .make_ha(ZONE, &INSTANCES, |instance| storage_toml(engine, instance, jetstream))
        .expect("HA zone");
    cluster
}

/// Waits until more than 50 facts arrived each way between the HA zone and `plant-a`.
pub async fn flowing(history: &History) {
    wait_until(Duration::from_secs(30), "facts flow both ways", || {
        history.delivered_count(ZONE) > 50 && history.delivered_count(PLANT) > 50
    })
    .await;
}

impl HaZone {
    /// The engine, the zone's two instances and `plant-a`, configured (`jetstream` lines go into
    /// every instance's `[storage.jetstream]`, e.g. `lease_ttl = "3s"`), nothing started.
    pub async fn new(options: NatsOptions, jetstream: &str) -> Self {
        let engine = EngineFixture::start_with(options).await;
        let cluster = ha_cluster(&engine, jetstream);
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

    /// The zone's instances as `instance` shows them (`ha.instances`): (role, live) by name.
    pub fn roster(&self, instance: &str) -> BTreeMap<String, (String, bool)> {
        let instances = self.ha_status(instance)["instances"].clone();
        instances
            .as_array()
            .into_iter()
            .flatten()
            .map(|seen| {
                let name = seen["instance"].as_str().unwrap_or_default().to_owned();
                let role = seen["role"].as_str().unwrap_or_default().to_owned();
                (name, (role, seen["live"] == true))
            })
            .collect()
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

/// The HA zone of [`HaZone`] with every node run as the `bsfg` unit of a drill host
/// ([`Estate`]), for the runbook's HA drills. An instance's `data_dir` is
/// `/var/lib/bsfg/replica` on its host, as the runbook's commissioning says.
pub struct HaEstate {
    pub estate: Estate,
    pub engine: EngineFixture,
}

impl HaEstate {
    /// Configured as [`HaZone::new`] (with `jetstream` lines in every instance's
    /// `[storage.jetstream]`), nothing started.
    pub async fn new(jetstream: &str) -> Self {
        let engine = EngineFixture::start_with(NatsOptions::default()).await;
        let mut estate = Estate::new(ha_cluster(&engine, jetstream));
        for instance in INSTANCES {
            let replica = estate.host(instance).join("var/lib/bsfg/replica");
            estate.cluster.net.nodes.get_mut(instance).expect("instance").data_dir = replica;
        }
        estate.cluster.net.write_configs().expect("configs");
        Self { estate, engine }
    }

    /// Starts `first` and waits until it is active, then the other instance and `plant-a`;
    /// returns once the other instance follows and the link to `plant-a` is `normal`.
    pub async fn start(&self, first: &str) {
        self.estate.shell(first, "systemctl start bsfg");
        self.wait_ready(first, Duration::from_secs(30)).await;
        for host in [PLANT, HaZone::other(first)] {
            self.estate.shell(host, "systemctl start bsfg");
        }
        self.estate.wait_ready(PLANT).await;
        let standby = HaZone::other(first);
        wait_until(Duration::from_secs(30), "the standby follows", || {
            let ha = self.ha_status(standby);
            ha["role"] == "standby" && ha["diverged"] == false
        })
        .await;
        for (node, peer) in [(first, PLANT), (PLANT, ZONE)] {
            let up = self
                .estate
                .cluster
                .wait_gate(node, peer, "normal", Duration::from_secs(30))
                .await;
            assert!(up.is_some(), "{node} did not reach normal toward {peer}");
        }
    }

    /// Whether `instance` answers `/readyz` with 200.
    pub fn is_ready(&self, instance: &str) -> bool {
        let admin = self.estate.cluster.admin(instance);
        let client = bsfg::admin::client::AdminClient::at(admin, None).timeout(Duration::from_secs(1));
        client.get("/readyz").is_ok_and(|a| a.status == 200)
    }

    pub async fn wait_ready(&self, instance: &str, timeout: Duration) {
        wait_until(timeout, &format!("{instance} is ready"), || self.is_ready(instance)).await;
    }

    /// `ha` of `/v1/status` of `instance` (`null` while its admin listener does not answer).
    pub fn ha_status(&self, instance: &str) -> serde_json::Value {
        let admin = self.estate.cluster.admin(instance);
        let client = bsfg::admin::client::AdminClient::at(admin, None).timeout(Duration::from_secs(1));
        match client.get("/v1/status") {
            Ok(answer) if answer.status == 200 => json(&answer.body)["ha"].clone(),
            _ => serde_json::Value::Null,
        }
    }

    /// Producers both ways (one fact every `pace` each, the zone's listing both instances) and a
    /// consumer `mes` in each zone.
    pub fn traffic(&self, pace: Duration) -> Traffic {
        let net = &self.estate.cluster.net;
        let zone = net.client_of_zone(ZONE, CLIENT).expect("client options");
        let plant = net.client(PLANT, CLIENT).expect("client options");
        let mut traffic = Traffic::default();
        traffic.produce(zone.clone(), ZONE, PLANT, pace);
        traffic.consume(zone, ZONE, "mes");
        traffic.produce(plant.clone(), PLANT, ZONE, pace);
        traffic.consume(plant, PLANT, "mes");
        traffic
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
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("\"rpc_call\"") && !l.contains("\"fact_appended\""))
                .collect();
            eprintln!(
                "---- {node}: lines other than audit lines (last 60) ----\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}
