//! `bsfg trace --message-id ID [--from-zone Z]`: `GET /v1/trace/{from_zone}/{message_id}` of the
//! node's admin API. Without `--from-zone` the node's own zone is asked first (a fact produced
//! here), then each peer's (a fact received from it), then each zone its `[[routes]]` reach (a
//! fact relayed to it through the DMZ); the first answer that found the fact is printed, else the
//! node's own "unknown".

use super::{admin::call, CommandError};
use crate::{
    admin::{client::path_segment, status::Status, trace::Trace},
    cli::AdminArgs,
};

pub fn run(args: &AdminArgs, message_id: &str, from_zone: Option<&str>) -> anyhow::Result<()> {
    let zones = match from_zone {
        Some(zone) => vec![zone.to_owned()],
        None => {
            let status: Status = parse(&call(args, |client| client.get("/v1/status"))?)?;
            let routed = status.routes.into_iter().flat_map(|route| route.zones);
            let mut zones: Vec<String> = Vec::new();
            for zone in std::iter::once(status.zone)
                .chain(status.peers.into_keys())
                .chain(routed)
            {
                if !zones.contains(&zone) {
                    zones.push(zone);
                }
            }
            zones
        }
    };
    let mut first = None;
    for zone in zones {
        let path = format!("/v1/trace/{}/{}", path_segment(&zone), path_segment(message_id));
        let body = call(args, |client| client.get(&path))?;
        let trace: Trace = parse(&body)?;
        if trace.found != "unknown" {
            println!("{}", body.trim_end());
            return Ok(());
        }
        first.get_or_insert(body);
    }
    println!("{}", first.unwrap_or_default().trim_end());
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, CommandError> {
    serde_json::from_str(body).map_err(|e| {
        CommandError::new(
            bsfg_proto::ErrorCode::Internal,
            format!("unexpected admin API answer: {e}"),
        )
    })
}
