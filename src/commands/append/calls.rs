//! The lines of `bsfg append --jsonl`, read and grouped into AppendFacts calls.
//!
//! A reader thread parses the input (filling blank envelope fields) into a bounded queue, so
//! parsing overlaps the calls in flight. A call takes the lines that are ready — at least one,
//! at most [`MAX_APPEND_BATCH`] and [`CALL_BYTES`] of messages — so a file goes in full calls
//! and a slow stdin in small ones, without waiting for lines that have not come yet.

use std::io::{BufRead, BufReader, Read};

use bsfg_proto::{rpc::MAX_APPEND_BATCH, Message};
use tokio::sync::mpsc;

use super::fill_defaults;
use crate::commands::CommandError;

/// Messages one call carries at most, in their encoding, unless one message alone is larger.
/// Well below the node's default `limits.max_frame_bytes` (16 MiB).
pub const CALL_BYTES: usize = 1 << 20;
/// Parsed lines waiting for a call: two full calls.
const QUEUED_LINES: usize = 2 * MAX_APPEND_BATCH;

/// A line's number (from 1) and its message, or why it is not one.
type Line = (usize, Result<Message, CommandError>);

/// One AppendFacts call: consecutive lines of the input.
#[derive(Debug, Default)]
pub struct Call {
    pub lines: Vec<usize>,
    pub messages: Vec<Message>,
}

/// The input as a sequence of calls; see the module documentation.
pub struct Calls {
    queue: mpsc::Receiver<Line>,
    /// A line taken from the queue that did not fit the previous call.
    held: Option<(usize, Message)>,
    /// The first line that could not be read or parsed; no call holds it or anything after it.
    pub bad_line: Option<(usize, CommandError)>,
}

impl Calls {
    /// Starts reading `input` on a thread of its own.
    pub fn read(input: Box<dyn Read + Send>, zone: String) -> Self {
        let (tx, queue) = mpsc::channel(QUEUED_LINES);
        std::thread::spawn(move || feed(BufReader::new(input), &zone, &tx));
        Self::new(queue)
    }

    fn new(queue: mpsc::Receiver<Line>) -> Self {
        Self {
            queue,
            held: None,
            bad_line: None,
        }
    }

    /// The next call, or `None` at the end of the input or at its first bad line. Waits only for
    /// the call's first line, so a caller may drop this future (in a `select!`) without losing one.
    pub async fn next(&mut self) -> Option<Call> {
        let (line, message) = match self.held.take() {
            Some(held) => held,
            None => {
                let line = self.queue.recv().await;
                self.accept(line)?
            }
        };
        let mut bytes = message.encoded_len();
        let mut call = Call {
            lines: vec![line],
            messages: vec![message],
        };
        while call.messages.len() < MAX_APPEND_BATCH {
            let ready = self.queue.try_recv().ok();
            let Some((line, message)) = self.accept(ready) else {
                break;
            };
            let size = message.encoded_len();
            if bytes + size > CALL_BYTES {
                self.held = Some((line, message));
                break;
            }
            bytes += size;
            call.lines.push(line);
            call.messages.push(message);
        }
        Some(call)
    }

    fn accept(&mut self, line: Option<Line>) -> Option<(usize, Message)> {
        match line? {
            (line, Ok(message)) => Some((line, message)),
            (line, Err(error)) => {
                self.bad_line = Some((line, error));
                None
            }
        }
    }
}

/// Parses `input` into `queue` until its end or its first bad line; blank lines are skipped. Blocks
/// while the queue is full (the calls set the pace).
fn feed(input: impl BufRead, zone: &str, queue: &mpsc::Sender<Line>) {
    for (index, line) in input.lines().enumerate() {
        let parsed = match line {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse(&text, zone),
            Err(e) => Err(CommandError::invalid(format!("cannot read input: {e}"))),
        };
        let bad = parsed.is_err();
        if queue.blocking_send((index + 1, parsed)).is_err() || bad {
            return;
        }
    }
}

fn parse(text: &str, zone: &str) -> Result<Message, CommandError> {
    let mut message: Message =
        serde_json::from_str(text).map_err(|e| CommandError::invalid(format!("not a message: {e}")))?;
    if message.envelope.message_id.is_empty() && names_an_empty_id(text) {
        // Not a random id: running the file again would store the line a second time.
        return Err(CommandError::invalid(
            "message_id is empty: a message id is 1 to 256 bytes; leave the key out for a random one",
        ));
    }
    fill_defaults(&mut message, zone);
    Ok(message)
}

/// Whether the line's envelope has `"message_id": ""` (rather than no `message_id`), read again
/// only for a line whose id came out empty.
fn names_an_empty_id(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        envelope: Option<Envelope<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        message_id: Option<std::borrow::Cow<'a, str>>,
    }
    text.contains("\"message_id\"")
        && serde_json::from_str::<Line>(text).is_ok_and(|line| line.envelope.and_then(|e| e.message_id).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, pad: usize) -> String {
        let object = serde_json::json!({ "pad": "x".repeat(pad) });
        let envelope = serde_json::json!({ "message_id": id, "to_zone": "plant-a" });
        serde_json::json!({ "envelope": envelope, "fact": { "subject": "s", "predicate": "p", "object_json": object } })
            .to_string()
    }

    /// An empty id in a line is refused; a line without one gets a random id.
    #[test]
    fn an_empty_message_id_is_refused_and_a_missing_one_chosen() {
        let refused = parse(&line("", 0), "enterprise").expect_err("an empty id");
        assert!(refused.message.contains("message_id is empty"), "{}", refused.message);
        let without = r#"{"envelope": {"to_zone": "plant-a"}, "fact": {"subject": "s", "predicate": "p", "object_json": {"message_id": ""}}}"#;
        let chosen = parse(without, "enterprise").expect("no id: a random one");
        assert_eq!(chosen.envelope.message_id.len(), 32, "{}", chosen.envelope.message_id);
    }

    /// Every call of `input`, read completely before the first call is made, so calls are as
    /// full as the limits allow.
    async fn all(input: String) -> (Vec<Vec<usize>>, Calls) {
        let (tx, queue) = mpsc::channel(100_000);
        std::thread::spawn(move || feed(std::io::Cursor::new(input), "enterprise", &tx))
            .join()
            .expect("reader");
        let mut calls = Calls::new(queue);
        let mut lines = Vec::new();
        while let Some(call) = calls.next().await {
            lines.push(call.lines);
        }
        (lines, calls)
    }

    #[tokio::test]
    async fn lines_go_in_order_in_calls_bounded_by_count_and_bytes() {
        let input: String = (0..1500).map(|i| line(&format!("m{i}"), 0) + "\n\n").collect();
        let (calls, _) = all(input).await;
        let lines: Vec<usize> = calls.concat();
        assert_eq!(
            lines,
            (0..1500).map(|i| 2 * i + 1).collect::<Vec<_>>(),
            "in order, blanks skipped"
        );
        let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_APPEND_BATCH, 1500 - MAX_APPEND_BATCH]);

        let big = CALL_BYTES / 3;
        let input: String = (0..4).map(|i| line(&format!("b{i}"), big) + "\n").collect();
        let (calls, _) = all(input).await;
        assert_eq!(
            calls,
            [vec![1, 2], vec![3, 4]],
            "two messages of a third of the budget each"
        );
    }

    #[tokio::test]
    async fn the_first_bad_line_ends_the_calls_after_the_lines_before_it() {
        let input = format!("{}\n{}\nnot json\n{}\n", line("a", 0), line("b", 0), line("c", 0));
        let (calls, rest) = all(input).await;
        assert_eq!(calls, [vec![1, 2]]);
        let (line, error) = rest.bad_line.expect("bad line");
        assert_eq!(line, 3);
        assert!(error.message.starts_with("not a message"), "{}", error.message);
    }
}
