//! "Same content" for idempotency (SPEC §3): what a retry of a message must repeat to be a
//! duplicate rather than an `ALREADY_EXISTS` conflict.
//!
//! A message's content is its fact (`subject`, `predicate`, `object_json`) and the business fields
//! of its envelope: `message_id`, `from_zone`, `to_zone`, `correlation_id`, `causation_id`,
//! `labels`, `object_media_type` and `object_schema`. Not content:
//! - `produced_at_unix_ms`, the send time: a producer that rebuilds its message for a retry (a
//!   PLC bridge re-reading the event, `bsfg append` run again) stamps it anew. The stored fact
//!   keeps the first one; a duplicate never rewrites what is stored.
//! - `hops`, the routing metadata each relay adds on the way (SPEC §4a): the copy a relay holds
//!   and the copy that reaches the destination are the same fact.
//!
//! `object_json` is compared as its text (the CLI always sends it compact, with sorted keys);
//! labels are a sorted map, so their order never matters. The digest is the sha256 of the wire
//! encoding of [`Content`], a borrowed view of exactly these fields.

use std::collections::BTreeMap;

use bincode::Encode;

use crate::{
    codec::{self, FrameError},
    model::{Envelope, Fact, Message},
};

/// sha256 of a message's content (see the module documentation).
pub type ContentDigest = [u8; 32];

/// The fields of a message that idempotency compares, borrowed.
#[derive(Encode)]
struct Content<'a> {
    message_id: &'a str,
    from_zone: &'a str,
    to_zone: &'a str,
    correlation_id: &'a Option<String>,
    causation_id: &'a Option<String>,
    labels: &'a BTreeMap<String, String>,
    object_media_type: &'a Option<String>,
    object_schema: &'a Option<String>,
    fact: &'a Fact,
}

impl Message {
    /// The digest that decides "same content" for idempotency: equal for a retry that differs
    /// only in its send time, different when any business field or the fact differs.
    pub fn content_digest(&self) -> Result<ContentDigest, FrameError> {
        // No `..`: a new envelope field does not compile here until it is decided whether it is
        // content (listed in `Content`) or not (bound to `_` with the reason).
        let Envelope {
            message_id,
            from_zone,
            to_zone,
            produced_at_unix_ms: _, // the send time, stamped again by a retry
            correlation_id,
            causation_id,
            labels,
            object_media_type,
            object_schema,
            hops: _, // routing metadata: each relay appends its zone, the content stays the same
        } = &self.envelope;
        codec::digest_of(&Content {
            message_id,
            from_zone,
            to_zone,
            correlation_id,
            causation_id,
            labels,
            object_media_type,
            object_schema,
            fact: &self.fact,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            envelope: Envelope {
                message_id: "wo-7".into(),
                from_zone: "plant-a".into(),
                to_zone: "enterprise".into(),
                produced_at_unix_ms: 1_700_000_000_000,
                correlation_id: Some("c".into()),
                causation_id: Some("k".into()),
                labels: BTreeMap::from([("line".into(), "3".into())]),
                object_media_type: None,
                object_schema: Some("s/1".into()),
                hops: Vec::new(),
            },
            fact: Fact {
                subject: "order/7".into(),
                predicate: "released".into(),
                object_json: "{\"qty\":5}".into(),
            },
        }
    }

    /// A field's name and how to change it.
    type Change = (&'static str, fn(&mut Message));

    fn digest(message: &Message) -> ContentDigest {
        message.content_digest().expect("digest")
    }

    #[test]
    fn a_new_send_time_is_the_same_content() {
        let mut retried = message();
        retried.envelope.produced_at_unix_ms += 60_000;
        assert_eq!(digest(&retried), digest(&message()));
    }

    #[test]
    fn every_business_field_and_the_fact_are_content() {
        let changes: [Change; 12] = [
            ("message_id", |m| m.envelope.message_id.push('x')),
            ("from_zone", |m| m.envelope.from_zone = "plant-b".into()),
            ("to_zone", |m| m.envelope.to_zone = "idmz".into()),
            ("correlation_id", |m| m.envelope.correlation_id = None),
            ("causation_id", |m| m.envelope.causation_id = Some("other".into())),
            ("labels", |m| {
                m.envelope.labels.insert("shift".into(), "night".into());
            }),
            ("object_media_type", |m| {
                m.envelope.object_media_type = Some("a/b".into())
            }),
            ("object_schema", |m| m.envelope.object_schema = None),
            ("subject", |m| m.fact.subject = "order/8".into()),
            ("predicate", |m| m.fact.predicate = "held".into()),
            ("object_json", |m| m.fact.object_json = "{\"qty\":6}".into()),
            // Moving text between fields changes the content too (the encoding is length-prefixed).
            ("field boundaries", |m| {
                m.fact.subject = "order/7r".into();
                m.fact.predicate = "eleased".into();
            }),
        ];
        let original = digest(&message());
        for (field, change) in changes {
            let mut changed = message();
            change(&mut changed);
            assert_ne!(digest(&changed), original, "{field} must be content");
        }
    }
}
