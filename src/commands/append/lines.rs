//! `bsfg append --jsonl`: many messages from JSON lines, as in-order AppendFacts calls (`calls`).
//!
//! By default one call is in flight: the next is sent once the previous one is answered, so the
//! lines are stored in file order. With `--unordered`, several calls are in flight and their lines
//! may be stored in any order (each call's own lines stay in order).
//!
//! The failure rule: the first failing line stops the run; it is reported once, as the command's
//! error, with its line number and code, after the summary line. Every call stops at its first
//! failed message, so in file order nothing after the failing line is stored. With
//! `--unordered`, the calls already in flight when a line fails complete (no new call is sent):
//! their lines, before or after the failing one, may be stored. Either way every line before the
//! reported one is stored, and the summary counts every line that was.
//!
//! SIGTERM or SIGINT (a service stopped, Ctrl-C) stops the sending: the calls in flight are
//! answered, the summary printed, and the command exits 75 naming the last line sent, so the
//! caller knows that every line up to it had its answer and none after it was sent. A second
//! signal ends the wait at once; the lines of the calls still unanswered are then named as of
//! unknown fate. A first signal after the whole input was sent cuts nothing off: the run ends
//! as it would have without it (exit 0 when every line was stored).

use bsfg_proto::{AppendResponse, ErrorCode, RpcError};
use futures::{stream::FuturesUnordered, StreamExt};
use serde::Serialize;

use super::calls::{Call, Calls};
use crate::{
    client::{Client, ClientError},
    commands::{CommandError, StopSignals},
};

/// The summary line.
#[derive(Debug, Default, Serialize)]
struct Summary {
    appended: u64,
    duplicates: u64,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
}

/// What the calls came to: the summary and the first failing line in file order.
#[derive(Default)]
struct Report {
    summary: Summary,
    failure: Option<(usize, CommandError)>,
    /// The signal that stopped the sending, and the last line sent before it (0: none).
    interrupted: Option<(&'static str, usize)>,
}

/// The lines to append: `path`, or stdin for `-`. Opened before the node is dialled, so a file
/// that cannot be read is the caller's mistake (exit 1) whether or not the node answers.
pub fn open(path: &str) -> Result<Box<dyn std::io::Read + Send>, CommandError> {
    Ok(match path {
        "-" => Box::new(std::io::stdin()),
        file => {
            Box::new(std::fs::File::open(file).map_err(|e| CommandError::invalid(format!("cannot read {file}: {e}")))?)
        }
    })
}

/// Appends the lines of `input` with up to `in_flight` calls at once.
pub async fn append(
    client: &Client,
    input: Box<dyn std::io::Read + Send>,
    zone: &str,
    in_flight: usize,
) -> anyhow::Result<()> {
    let mut interrupts = StopSignals::new()?;
    let mut calls = Calls::read(input, zone.to_owned());
    let mut report = send_all(client, &mut calls, in_flight.max(1), &mut interrupts).await;
    // Reached by the reader, interrupted or not: the line a run again would stop at.
    if let Some((line, error)) = calls.bad_line.take() {
        report.fail(line, error);
    }
    println!("{}", serde_json::to_string(&report.summary)?);
    match (report.failure, report.interrupted) {
        (Some((line, error)), _) => Err(CommandError {
            message: format!("line {line}: {}", error.message),
            ..error
        }
        .into()),
        (None, Some((signal, last))) => Err(CommandError::new(
            ErrorCode::Unavailable,
            format!(
                "interrupted by {signal} after line {last}: every line up to it was sent and stored (the summary \
                 counts them), none after it was sent; run the input again from the line after it (lines with \
                 a message_id are stored once)"
            ),
        )
        .into()),
        (None, None) => Ok(()),
    }
}

/// Sends calls while the input lasts, nothing failed and no signal came, with at most
/// `in_flight` unanswered; returns once every call sent is answered (or at a second signal).
async fn send_all(client: &Client, calls: &mut Calls, in_flight: usize, interrupts: &mut StopSignals) -> Report {
    let mut report = Report::default();
    let mut pending = FuturesUnordered::new();
    let mut input_left = true;
    let mut last_sent = 0;
    // The first line of each call in flight: what a second signal leaves of unknown fate.
    let mut unanswered = std::collections::BTreeSet::new();
    let mut signalled = false;
    loop {
        let sending = input_left && report.failure.is_none() && !signalled;
        if !sending && pending.is_empty() {
            return report;
        }
        tokio::select! {
            call = calls.next(), if sending && pending.len() < in_flight => match call {
                Some(call) => {
                    last_sent = call.lines.last().copied().unwrap_or(last_sent);
                    unanswered.extend(call.lines.first());
                    pending.push(send(client, call));
                }
                None => input_left = false,
            },
            Some((lines, answer)) = pending.next(), if !pending.is_empty() => {
                if let Some(first) = lines.first() {
                    unanswered.remove(first);
                }
                report.add(&lines, answer);
            }
            signal = interrupts.next() => match std::mem::replace(&mut signalled, true) {
                // The whole input was sent: the answers in flight finish the run, as without it.
                false if !input_left => {}
                false => report.interrupted = Some((signal, last_sent)),
                true => {
                    let first = unanswered.first().copied().unwrap_or(last_sent);
                    report.abandon(signal, first..=last_sent);
                    return report;
                }
            },
        }
    }
}

type Answer = Result<Vec<Result<AppendResponse, RpcError>>, ClientError>;

async fn send(client: &Client, call: Call) -> (Vec<usize>, Answer) {
    let answer = client.append_in_order(call.messages).await;
    (call.lines, answer)
}

impl Report {
    fn add(&mut self, lines: &[usize], answer: Answer) {
        let results = match answer {
            Ok(results) => results,
            Err(error) => return self.fail_call(lines, error),
        };
        for (line, result) in lines.iter().zip(&results) {
            match result {
                Ok(ack) => self.summary.add(*ack),
                Err(error) => return self.fail(*line, error.clone().into()),
            }
        }
        if let Some(line) = lines.get(results.len()) {
            let error = CommandError::new(bsfg_proto::ErrorCode::Internal, "the node did not answer this line");
            self.fail(*line, error);
        }
    }

    /// A call that failed whole: refused by the node (nothing of it stored), or lost on the way
    /// (its lines may or may not be stored).
    fn fail_call(&mut self, lines: &[usize], error: ClientError) {
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return;
        };
        if let ClientError::Rpc(refused) = error {
            return self.fail(*first, refused.into());
        }
        let mut error = CommandError::from(error);
        error.message = format!(
            "{} (whether lines {first} to {last}, sent in one call, were stored is unknown; run the \
             input again: a line with a message_id is stored once)",
            error.message
        );
        self.fail(*first, error);
    }

    /// A second signal while calls were unanswered: the fate of the lines they hold (from the
    /// first line of the earliest to the last line sent) is unknown.
    fn abandon(&mut self, signal: &str, unanswered: std::ops::RangeInclusive<usize>) {
        let (first, last) = unanswered.into_inner();
        let error = CommandError::new(
            ErrorCode::Unavailable,
            format!(
                "interrupted twice ({signal}) with calls unanswered: whether lines {first} to {last}, sent \
                 in them, were stored is unknown; run the input again (lines with a message_id are stored once)"
            ),
        );
        self.interrupted = None;
        self.fail(first, error);
    }

    /// Keeps the failure of the earliest line.
    fn fail(&mut self, line: usize, error: CommandError) {
        if self.failure.as_ref().is_none_or(|(first, _)| line < *first) {
            self.failure = Some((line, error));
        }
    }
}

impl Summary {
    fn add(&mut self, response: AppendResponse) {
        if response.duplicate {
            self.duplicates += 1;
        } else {
            self.appended += 1;
        }
        // Duplicates answer the offsets their first copies got: report the range of all.
        self.first_offset = Some(self.first_offset.map_or(response.offset, |o| o.min(response.offset)));
        self.last_offset = Some(self.last_offset.map_or(response.offset, |o| o.max(response.offset)));
    }
}
