//! [`ReplicatedLog`] on a JetStream stream with one subject (`bsfg.<zone>.wal`).
//!
//! An append is a publish with `Nats-Expected-Last-Sequence` (checked by the stream leader
//! against the sequences proposed so far, so concurrent writers serialize) and `Nats-Msg-Id` (the
//! record id); its acknowledgement comes only once a quorum of servers stored it, fsync'd when
//! they run with `sync_interval: always` (checked at start, [`crate::checks`]). The shell below
//! only talks to the server; what to do with each answer is [`AppendRule`]'s decision.
//!
//! Reads by sequence go to the stream leader (`STREAM.MSG.GET`, never a direct get that a
//! lagging replica could answer), so "is the record after my expectation mine?" is answered
//! from the committed log.

use std::time::Instant;

use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{
        self,
        context::{PublishError, PublishErrorKind},
        message::PublishMessage,
        stream::{LastRawMessageErrorKind, Stream},
    },
};
use bytes::Bytes;

use super::{provision, tail::JetStreamTail, Engine, EngineError, LogSpec, REQUEST_TIMEOUT};
use crate::{
    append_rule::{Answer, AppendRule, Step},
    log::{Bounds, LogError, Record, ReplicatedLog},
    names,
};

/// The zone's write-ahead log on JetStream; cheap to clone.
#[derive(Clone)]
pub struct JetStreamLog {
    js: jetstream::Context,
    stream: Stream,
    subject: String,
}

impl std::fmt::Debug for JetStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamLog").field("subject", &self.subject).finish()
    }
}

impl Engine {
    /// The zone's WAL stream, created if missing and checked against `spec` if not.
    pub async fn open_log(&self, spec: &LogSpec) -> Result<JetStreamLog, EngineError> {
        let stream = provision::wal_stream(self.context(), spec).await?;
        Ok(JetStreamLog {
            js: self.context().clone(),
            stream,
            subject: names::wal_subject(&spec.zone),
        })
    }
}

impl JetStreamLog {
    /// The first record the log held when it was opened, from the stream's state in the answer
    /// to its creation or lookup (which provisioning retries through an election): a starting
    /// instance learns it without another request.
    pub fn first_when_opened(&self) -> u64 {
        self.stream.cached_info().state.first_sequence.max(1)
    }

    /// One publish of the record with its expectation, and what came of it.
    async fn publish_once(&self, rule: &AppendRule, id: &str, payload: &Bytes) -> Answer {
        let limit = rule.time_left(Instant::now()).min(REQUEST_TIMEOUT);
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(id)
            .expected_last_sequence(rule.next_seq() - 1);
        let attempt = async {
            let ack = self
                .js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| Answer::Refused(format!("not sent: {e}")))?;
            ack.await.map_err(|e| self.classify(e))
        };
        match tokio::time::timeout(limit, attempt).await {
            Err(_) => Answer::Lost(format!("no acknowledgement within {limit:?}")),
            Ok(Ok(ack)) => Answer::Acked {
                seq: ack.sequence,
                duplicate: ack.duplicate,
            },
            Ok(Err(answer)) => answer,
        }
    }

    /// What a failed acknowledgement means for the record.
    fn classify(&self, error: PublishError) -> Answer {
        match error.kind() {
            PublishErrorKind::WrongLastSequence => match last_sequence_in(&error.to_string()) {
                Some(last) => Answer::WrongLast { last },
                None => Answer::ReadBackFailed(format!("unreadable refusal: {error}")),
            },
            // No server had interest in the subject: nobody received the record.
            PublishErrorKind::StreamNotFound => Answer::Refused(format!("no stream leader: {error}")),
            PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::MaxAckPending => {
                Answer::Refused(error.to_string())
            }
            // The server answered with an error: the leader did not store the record.
            PublishErrorKind::Other if server_refused(&error) => Answer::Refused(error.to_string()),
            _ => Answer::Lost(error.to_string()),
        }
    }

    /// The record at `seq` compared with ours.
    async fn read_back(&self, seq: u64, payload: &Bytes) -> Answer {
        match self.get(seq).await {
            Ok(found) => Answer::ReadBack(found.map(|record| (record.id, record.payload == *payload))),
            Err(e) => Answer::ReadBackFailed(e.to_string()),
        }
    }
}

impl ReplicatedLog for JetStreamLog {
    type Tail = JetStreamTail;

    async fn append(&self, expected_last: u64, id: &str, payload: Bytes, deadline: Instant) -> Result<u64, LogError> {
        check_record(id, &payload)?;
        let (mut rule, mut step) = AppendRule::new(expected_last, id, deadline);
        loop {
            step = match step {
                Step::Publish => {
                    let answer = self.publish_once(&rule, id, &payload).await;
                    rule.on(Instant::now(), answer)
                }
                Step::ReadBack(seq) => {
                    let answer = self.read_back(seq, &payload).await;
                    rule.on(Instant::now(), answer)
                }
                Step::Wait(wait) => {
                    tokio::time::sleep(wait).await;
                    rule.retry()
                }
                Step::Done(result) => return result,
            }
        }
    }

    async fn get(&self, seq: u64) -> Result<Option<Record>, LogError> {
        match self.stream.get_raw_message(seq).await {
            Ok(message) => Ok(Some(Record {
                seq: message.sequence,
                id: message
                    .headers
                    .get(NATS_MESSAGE_ID)
                    .map_or_else(String::new, |v| v.as_str().to_owned()),
                payload: message.payload,
            })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn tail(&self, from: u64) -> Result<JetStreamTail, LogError> {
        JetStreamTail::start(&self.stream, &self.subject, from).await
    }

    async fn bounds(&self) -> Result<Bounds, LogError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        Ok(Bounds {
            first: info.state.first_sequence.max(1),
            last: info.state.last_sequence,
        })
    }

    async fn purge_before(&self, seq: u64) -> Result<u64, LogError> {
        let purged = self.stream.purge().sequence(seq).await.map_err(unavailable)?;
        Ok(purged.purged)
    }

    fn max_record_bytes(&self) -> usize {
        provision::MAX_RECORD_BYTES
    }
}

fn check_record(id: &str, payload: &Bytes) -> Result<(), LogError> {
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(LogError::Invalid(format!(
            "record id {id:?} must be non-empty, without spaces or control characters"
        )));
    }
    if payload.len() > provision::MAX_RECORD_BYTES {
        return Err(LogError::TooLarge {
            size: payload.len(),
            limit: provision::MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

fn unavailable(error: impl std::fmt::Display) -> LogError {
    LogError::Unavailable {
        reason: error.to_string(),
    }
}

/// The sequence in nats-server's refusal "wrong last sequence: N".
fn last_sequence_in(refusal: &str) -> Option<u64> {
    let (_, rest) = refusal.rsplit_once("wrong last sequence: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether the publish failed with an error answer from the server (as opposed to no answer).
fn server_refused(error: &PublishError) -> bool {
    std::error::Error::source(error).is_some_and(|source| source.is::<jetstream::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_sequence_is_read_from_the_servers_refusal() {
        let refusal = "wrong last sequence: wrong last sequence: 1234 (code 400, error code 10071)";
        assert_eq!(last_sequence_in(refusal), Some(1234));
        assert_eq!(last_sequence_in("wrong last sequence: 0 (code 400)"), Some(0));
        assert_eq!(last_sequence_in("wrong last sequence"), None);
    }

    #[test]
    fn record_ids_are_plain_tokens_and_records_bounded() {
        assert!(check_record("a.3.17", &Bytes::from_static(b"x")).is_ok());
        for bad in ["", "a b", "a\r\nNats-Expected-Last-Sequence: 9"] {
            assert!(
                matches!(check_record(bad, &Bytes::new()), Err(LogError::Invalid(_))),
                "{bad:?}"
            );
        }
        let big = Bytes::from(vec![0; provision::MAX_RECORD_BYTES + 1]);
        assert!(matches!(check_record("a", &big), Err(LogError::TooLarge { .. })));
    }
}
