//! `bsfg status [--json]`: `GET /v1/status` of the node's admin API, printed as a table for
//! people or as the node's JSON for scripts.

use super::{admin::call, CommandError};
use crate::{admin::status::Status, cli::AdminArgs};

pub fn run(args: &AdminArgs, json: bool) -> anyhow::Result<()> {
    let body = call(args, |client| client.get("/v1/status"))?;
    if json {
        println!("{}", body.trim_end());
        return Ok(());
    }
    let status: Status = serde_json::from_str(&body).map_err(|e| {
        CommandError::new(
            bsfg_proto::ErrorCode::Internal,
            format!("unexpected /v1/status answer: {e}"),
        )
    })?;
    print!("{}", status.table());
    Ok(())
}
