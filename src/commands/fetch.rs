//! `bsfg fetch` and `bsfg confirm`: a local consumer's reads and confirmations.

use std::io::Write;

use crate::cli::ConnArgs;

use super::{connect, CommandError};

/// Prints one JSON line `{"offset", "envelope", "fact"}` per fact.
pub async fn fetch(
    conn: ConnArgs,
    consumer: String,
    limit: u32,
    max_wait_ms: u32,
    after: Option<u64>,
) -> anyhow::Result<()> {
    let client = connect(&conn).await?;
    let page = client
        .fetch(&consumer, limit, max_wait_ms, after)
        .await
        .map_err(CommandError::from)?;
    let mut out = std::io::stdout().lock();
    for fact in &page.facts {
        serde_json::to_writer(&mut out, fact)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    client.close().await;
    Ok(())
}

/// Prints `{"consumer", "cursor"}` with the cursor after the call.
pub async fn confirm(conn: ConnArgs, consumer: String, offset: u64) -> anyhow::Result<()> {
    let client = connect(&conn).await?;
    let cursor = client.confirm(&consumer, offset).await.map_err(CommandError::from)?;
    println!("{}", serde_json::json!({"consumer": consumer, "cursor": cursor}));
    client.close().await;
    Ok(())
}
