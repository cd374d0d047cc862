//! The binary encoding of an [`Envelope`]: the wire format and the stored format of every fact.
//!
//! Fields are encoded in declaration order, as bincode's derive would, up to `object_schema`.
//! That last optional field and `hops` (SPEC §4a, added after facts were first stored) share one
//! *tail* tag byte instead of bincode's `Option` tag:
//!
//! | tag | followed by |
//! |---|---|
//! | 0 | nothing: no `object_schema`, no hops |
//! | 1 | `object_schema` |
//! | 2 | `hops` (a non-empty sequence of zone names) |
//! | 3 | `object_schema`, then `hops` |
//!
//! Tags 0 and 1 are exactly the bytes of bincode's `None` and `Some(schema)`, so:
//! - every message stored or sent before `hops` existed decodes unchanged, with no hops (no
//!   storage upgrade is needed);
//! - a fact that was never relayed (empty `hops`) encodes byte for byte as before, so nodes of
//!   both versions exchange direct traffic during a rolling upgrade. Only relayed facts use tags
//!   2 and 3, which an older node refuses: upgrade every node on a route before relaying.
//!
//! Empty hops under tag 2 or 3 are refused, so every envelope has exactly one encoding.

use bincode::{
    de::Decoder,
    enc::Encoder,
    error::{DecodeError, EncodeError},
    Decode, Encode,
};

use crate::model::Envelope;

const SCHEMA: u8 = 1;
const HOPS: u8 = 2;

impl Encode for Envelope {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.message_id.encode(encoder)?;
        self.from_zone.encode(encoder)?;
        self.to_zone.encode(encoder)?;
        self.produced_at_unix_ms.encode(encoder)?;
        self.correlation_id.encode(encoder)?;
        self.causation_id.encode(encoder)?;
        self.labels.encode(encoder)?;
        self.object_media_type.encode(encoder)?;
        let schema = if self.object_schema.is_some() { SCHEMA } else { 0 };
        let hops = if self.hops.is_empty() { 0 } else { HOPS };
        (schema | hops).encode(encoder)?;
        if let Some(schema) = &self.object_schema {
            schema.encode(encoder)?;
        }
        if !self.hops.is_empty() {
            self.hops.encode(encoder)?;
        }
        Ok(())
    }
}

impl<Context> Decode<Context> for Envelope {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let mut envelope = Envelope {
            message_id: Decode::decode(decoder)?,
            from_zone: Decode::decode(decoder)?,
            to_zone: Decode::decode(decoder)?,
            produced_at_unix_ms: Decode::decode(decoder)?,
            correlation_id: Decode::decode(decoder)?,
            causation_id: Decode::decode(decoder)?,
            labels: Decode::decode(decoder)?,
            object_media_type: Decode::decode(decoder)?,
            object_schema: None,
            hops: Vec::new(),
        };
        let tag = u8::decode(decoder)?;
        if tag > (SCHEMA | HOPS) {
            return Err(DecodeError::UnexpectedVariant {
                type_name: "envelope tail",
                allowed: &bincode::error::AllowedEnumVariants::Range { min: 0, max: 3 },
                found: u32::from(tag),
            });
        }
        if tag & SCHEMA != 0 {
            envelope.object_schema = Some(Decode::decode(decoder)?);
        }
        if tag & HOPS != 0 {
            envelope.hops = Decode::decode(decoder)?;
            if envelope.hops.is_empty() {
                return Err(DecodeError::Other("envelope tail announces hops but lists none"));
            }
        }
        Ok(envelope)
    }
}

bincode::impl_borrow_decode!(Envelope);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bincode::{Decode, Encode};

    use crate::{codec, model::Envelope};

    /// The envelope as bincode's derive encoded it before `hops` existed.
    #[derive(Encode, Decode)]
    struct Before {
        message_id: String,
        from_zone: String,
        to_zone: String,
        produced_at_unix_ms: u64,
        correlation_id: Option<String>,
        causation_id: Option<String>,
        labels: BTreeMap<String, String>,
        object_media_type: Option<String>,
        object_schema: Option<String>,
    }

    fn before(object_schema: Option<&str>) -> Before {
        Before {
            message_id: "wo-7".into(),
            from_zone: "enterprise".into(),
            to_zone: "plant-a".into(),
            produced_at_unix_ms: 1_700_000_000_000,
            correlation_id: Some("c".into()),
            causation_id: None,
            labels: BTreeMap::from([("line".into(), "3".into())]),
            object_media_type: None,
            object_schema: object_schema.map(str::to_owned),
        }
    }

    fn envelope(object_schema: Option<&str>, hops: &[&str]) -> Envelope {
        let old = before(object_schema);
        Envelope {
            message_id: old.message_id,
            from_zone: old.from_zone,
            to_zone: old.to_zone,
            produced_at_unix_ms: old.produced_at_unix_ms,
            correlation_id: old.correlation_id,
            causation_id: old.causation_id,
            labels: old.labels,
            object_media_type: old.object_media_type,
            object_schema: old.object_schema,
            hops: hops.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn envelopes_stored_before_hops_decode_without_hops() {
        for schema in [None, Some("s/1")] {
            let stored = codec::encode_value(&before(schema)).expect("encode");
            let decoded: Envelope = codec::decode_body(&stored).expect("old bytes decode");
            assert_eq!(decoded, envelope(schema, &[]));
        }
    }

    #[test]
    fn an_envelope_without_hops_encodes_as_before() {
        for schema in [None, Some("s/1")] {
            let old = codec::encode_value(&before(schema)).expect("old");
            assert_eq!(codec::encode_value(&envelope(schema, &[])).expect("new"), old);
        }
    }

    #[test]
    fn hops_round_trip_with_and_without_a_schema() {
        for schema in [None, Some("s/1")] {
            let relayed = envelope(schema, &["idmz", "dmz-2"]);
            let bytes = codec::encode_value(&relayed).expect("encode");
            assert_eq!(codec::decode_body::<Envelope>(&bytes), Ok(relayed));
        }
    }

    #[test]
    fn an_unknown_tail_or_empty_hops_are_refused() {
        let mut bytes = codec::encode_value(&envelope(None, &[])).expect("encode");
        let tail = bytes.len() - 1;
        bytes[tail] = 4;
        assert!(codec::decode_body::<Envelope>(&bytes).is_err(), "tag 4");
        bytes[tail] = 2;
        bytes.push(0); // an empty sequence of hops
        assert!(codec::decode_body::<Envelope>(&bytes).is_err(), "tag 2 with no hops");
    }
}
