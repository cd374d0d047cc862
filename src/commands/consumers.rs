//! `bsfg consumers list | delete NAME | rewind NAME --to-offset N`: the consumer endpoints of the
//! admin API; the node's JSON answer on stdout.

use super::admin::call;
use crate::{
    admin::client::path_segment,
    cli::{AdminArgs, ConsumersAction},
};

pub fn run(args: &AdminArgs, action: &ConsumersAction) -> anyhow::Result<()> {
    let body = match action {
        ConsumersAction::List => call(args, |client| client.get("/v1/consumers"))?,
        ConsumersAction::Delete { name } => call(args, |client| {
            client.delete(&format!("/v1/consumers/{}", path_segment(name)))
        })?,
        ConsumersAction::Rewind { name, to_offset } => {
            let path = format!("/v1/consumers/{}/rewind?to_offset={to_offset}", path_segment(name));
            call(args, |client| client.post(&path))?
        }
    };
    println!("{}", body.trim_end());
    Ok(())
}
