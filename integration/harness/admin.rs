//! The admin API of the nodes under test, through the same HTTP client the CLI uses, and the
//! admin commands of the CLI itself.

use std::{net::SocketAddr, process::Output};

use bsfg::admin::client::AdminClient;

use super::{bin, Cluster};

/// `method path` on an admin listener, with an optional bearer token: status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let client = AdminClient::at(addr, token.map(str::to_owned));
    let answer = match method {
        "GET" => client.get(path),
        "POST" => client.post(path),
        other => panic!("no {other} requests in the admin API"),
    };
    let answer = answer.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (answer.status, answer.body)
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON: {body:?}: {e}"))
}

/// The value of the sample whose name-and-labels part is exactly `series`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

impl Cluster {
    /// Where `zone`'s admin API listens.
    pub fn admin(&self, zone: &str) -> SocketAddr {
        self.net.node(zone).expect("zone").admin
    }

    /// `/readyz`'s status on `zone`'s node, 0 while its admin listener is not up (yet).
    pub fn readyz(&self, zone: &str) -> u16 {
        let client = AdminClient::at(self.admin(zone), None);
        client.get("/readyz").map_or(0, |answer| answer.status)
    }

    /// `GET /v1/status` of `zone`'s node, as JSON.
    pub fn status(&self, zone: &str) -> serde_json::Value {
        let (code, body) = http(self.admin(zone), "GET", "/v1/status", None);
        assert_eq!(code, 200, "{body}");
        json(&body)
    }

    /// Runs `bsfg ARGS --admin http://<zone's admin listener>`.
    pub fn admin_cli(&self, zone: &str, args: &[&str]) -> Output {
        std::process::Command::new(bin())
            .args(args)
            .arg("--admin")
            .arg(format!("http://{}", self.admin(zone)))
            .env_remove("BSFG_ADMIN")
            .env_remove("BSFG_ADMIN_TOKEN_FILE")
            .output()
            .expect("run bsfg")
    }
}
