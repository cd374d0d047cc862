//! `bsfg append`: one message from flags, or many from JSON lines (`lines`, read by `calls`).
//!
//! Blank envelope fields are filled in: `from_zone` = the node's zone (`--server-name`),
//! `message_id` = a random id, `produced_at_unix_ms` = now. The send time is not part of a
//! message's content for idempotency, so running the same command again with the same
//! `--message-id` is a duplicate that answers the original offset, even though it stamps a new
//! `produced_at_unix_ms`.

mod calls;
mod lines;

use bsfg_proto::{Envelope, Fact, Message};

use crate::{cli::AppendArgs, client::Client};

use super::{connect, CommandError};

/// What to append, checked before the node is dialled: a mistake in it is the caller's (exit 1)
/// whether or not the node answers.
enum Input {
    Lines(Box<dyn std::io::Read + Send>),
    One(Box<Message>),
}

pub async fn run(args: AppendArgs) -> anyhow::Result<()> {
    let input = match &args.jsonl {
        Some(path) => Input::Lines(lines::open(path)?),
        None => Input::One(Box::new(message_of(&args)?)),
    };
    let client = connect(&args.conn).await?;
    let result = match input {
        Input::Lines(lines) => lines::append(&client, lines, &args.conn.server_name, args.calls_in_flight()).await,
        Input::One(message) => append_one(&client, *message, args.message_id.is_none()).await,
    };
    client.close().await;
    result
}

/// The message the flags describe, its blank envelope fields filled in.
fn message_of(args: &AppendArgs) -> Result<Message, CommandError> {
    let mut message = Message {
        envelope: Envelope {
            message_id: args.message_id.clone().unwrap_or_default(),
            to_zone: args.to.clone().unwrap_or_default(),
            labels: args.labels.iter().cloned().collect(),
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
    Ok(message)
}

/// Appends `message`; `chosen` when its id was made up here (a retry must name it).
async fn append_one(client: &Client, message: Message, chosen: bool) -> anyhow::Result<()> {
    let chosen = chosen.then(|| message.envelope.message_id.clone());
    let response = client.append(message).await.map_err(|e| {
        let mut error = CommandError::from(e);
        if let (Some(id), true) = (chosen, error.retryable) {
            // Whether the fact was stored may be unknown: retried with its id, it is stored once.
            error.message = format!(
                "{} (the fact's message id was {id}: retry with --message-id {id})",
                error.message
            );
        }
        error
    })?;
    println!("{}", serde_json::to_string(&response)?);
    Ok(())
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

/// `--object-json` as written, less the whitespace between its tokens: numbers keep every digit
/// and keys their order (the payload is opaque).
fn compact_json(text: &str) -> Result<String, CommandError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| CommandError::invalid(format!("--object-json is not valid JSON: {e}")))?;
    Ok(bsfg_proto::model::compact_json(text))
}
