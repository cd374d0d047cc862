//! The ordered reader of the log: an ordered pull consumer (ephemeral, no acks, recreated by the
//! client from the last sequence it delivered after a lost heartbeat or a leader change) from a
//! start sequence, checked to be gap-free: a follower must apply every record, in order, or
//! stop (design §4.5).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use async_nats::{
    header::NATS_MESSAGE_ID,
    jetstream::{
        consumer::{pull, DeliverPolicy},
        stream::Stream,
    },
};
use futures::StreamExt;

use crate::log::{LogError, Record};

/// Records from a start sequence on, in order; ends after the first error.
pub struct JetStreamTail {
    messages: pull::Ordered,
    next: u64,
    failed: bool,
}

impl std::fmt::Debug for JetStreamTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamTail").field("next", &self.next).finish()
    }
}

impl JetStreamTail {
    pub(super) async fn start(stream: &Stream, subject: &str, from: u64) -> Result<Self, LogError> {
        let from = from.max(1);
        let unavailable = |e: &dyn std::fmt::Display| LogError::Unavailable {
            reason: format!("cannot tail the log from {from}: {e}"),
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        Ok(Self {
            messages,
            next: from,
            failed: false,
        })
    }

    fn record(&mut self, message: async_nats::jetstream::Message) -> Result<Record, LogError> {
        let seq = message
            .info()
            .map_err(|e| LogError::Unavailable {
                reason: format!("a delivered record has no sequence: {e}"),
            })?
            .stream_sequence;
        if seq != self.next {
            return Err(LogError::Gap {
                expected: self.next,
                found: seq,
            });
        }
        self.next += 1;
        let message = message.message;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(NATS_MESSAGE_ID))
            .map_or_else(String::new, |v| v.as_str().to_owned());
        Ok(Record {
            seq,
            id,
            payload: message.payload,
        })
    }
}

impl futures::Stream for JetStreamTail {
    type Item = Result<Record, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let item = match futures::ready!(self.messages.poll_next_unpin(cx)) {
            None => return Poll::Ready(None),
            Some(Ok(message)) => self.record(message),
            Some(Err(e)) => Err(LogError::Unavailable {
                reason: format!("the log's reader failed at {}: {e}", self.next),
            }),
        };
        self.failed = item.is_err();
        Poll::Ready(Some(item))
    }
}
