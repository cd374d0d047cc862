//! `bsfg append`: one message from flags, or many from JSON lines, pipelined over one connection.
//! Pipelined lines can be stored out of line order (`--concurrency 1` keeps it); the summary's
//! `first_offset`/`last_offset` are the lowest and highest offsets they got.
//!
//! Blank envelope fields are filled in: `from_zone` = the node's zone (`--server-name`),
//! `message_id` = a random id, `produced_at_unix_ms` = now.

use std::io::BufRead;

use bsfg_proto::{AppendResponse, Envelope, Fact, Message};
use futures::{stream, StreamExt};
use serde::Serialize;

use crate::{cli::AppendArgs, client::Client};

use super::{connect, CommandError};

/// The `--jsonl` summary line.
#[derive(Debug, Default, Serialize)]
struct Summary {
    appended: u64,
    duplicates: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

pub async fn run(args: AppendArgs) -> anyhow::Result<()> {
    let client = connect(&args.conn).await?;
    let result = match &args.jsonl {
        Some(path) => append_lines(&client, &args, path).await,
        None => append_one(&client, &args).await,
    };
    client.close().await;
    result
}

async fn append_one(client: &Client, args: &AppendArgs) -> anyhow::Result<()> {
    let mut message = Message {
        envelope: Envelope {
            message_id: args.message_id.clone().unwrap_or_default(),
            to_zone: args.to.clone().unwrap_or_default(),
            labels: parse_labels(&args.labels)?,
            object_media_type: args.object_media_type.clone(),
            object_schema: args.object_schema.clone(),
            ..Envelope::default()
        },
        fact: Fact {
            subject: args.subject.clone().unwrap_or_default(),
            predicate: args.predicate.clone().unwrap_or_default(),
            object_json: compact_json(args.object_json.as_deref().unwrap_or_default())?,
        },
    };
    fill_defaults(&mut message, &args.conn.server_name);
    let response = client.append(message).await.map_err(CommandError::from)?;
    println!("{}", serde_json::to_string(&response)?);
    Ok(())
}

async fn append_lines(client: &Client, args: &AppendArgs, path: &str) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match path {
        "-" => Box::new(std::io::stdin().lock()),
        file => Box::new(std::io::BufReader::new(
            std::fs::File::open(file).map_err(|e| CommandError::invalid(format!("cannot read {file}: {e}")))?,
        )),
    };
    let zone = args.conn.server_name.clone();
    let lines = reader
        .lines()
        .enumerate()
        .filter(|(_, l)| !matches!(l, Ok(t) if t.trim().is_empty()));
    let calls = stream::iter(lines).map(|(index, line)| {
        let zone = zone.clone();
        async move { (index + 1, append_line(client, line, &zone).await) }
    });
    let mut results = calls.buffered(args.concurrency.max(1));
    let mut summary = Summary::default();
    while let Some((line_no, result)) = results.next().await {
        match result {
            Ok(response) => summary.add(response),
            Err(e) => {
                eprintln!("line {line_no}: {}: {}", e.code, e.message);
                println!("{}", serde_json::to_string(&summary)?);
                return Err(CommandError {
                    message: format!("line {line_no}: {}", e.message),
                    ..e
                }
                .into());
            }
        }
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

async fn append_line(
    client: &Client,
    line: std::io::Result<String>,
    zone: &str,
) -> Result<AppendResponse, CommandError> {
    let line = line.map_err(|e| CommandError::invalid(format!("cannot read input: {e}")))?;
    let mut message: Message =
        serde_json::from_str(&line).map_err(|e| CommandError::invalid(format!("not a message: {e}")))?;
    fill_defaults(&mut message, zone);
    Ok(client.append(message).await?)
}

impl Summary {
    fn add(&mut self, response: AppendResponse) {
        if response.duplicate {
            self.duplicates += 1;
        } else {
            self.appended += 1;
        }
        // Pipelined lines may be stored out of line order: report the range they occupy.
        self.first_offset = Some(self.first_offset.map_or(response.offset, |o| o.min(response.offset)));
        self.last_offset = Some(self.last_offset.map_or(response.offset, |o| o.max(response.offset)));
    }
}

fn fill_defaults(message: &mut Message, zone: &str) {
    let envelope = &mut message.envelope;
    if envelope.from_zone.is_empty() {
        envelope.from_zone = zone.to_owned();
    }
    if envelope.message_id.is_empty() {
        envelope.message_id = random_id();
    }
    if envelope.produced_at_unix_ms == 0 {
        envelope.produced_at_unix_ms = bsfg_proto::model::now_unix_ms();
    }
}

fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn compact_json(text: &str) -> Result<String, CommandError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CommandError::invalid(format!("--object-json is not valid JSON: {e}")))?;
    Ok(value.to_string())
}

fn parse_labels(labels: &[String]) -> Result<std::collections::BTreeMap<String, String>, CommandError> {
    labels
        .iter()
        .map(|label| match label.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(CommandError::invalid(format!("--label {label:?} is not KEY=VALUE"))),
        })
        .collect()
}
