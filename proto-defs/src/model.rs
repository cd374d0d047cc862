//! The message model of SPEC §2: `message = { envelope, fact }`.
//!
//! `object_json` travels on the wire (and is stored) as JSON text; in every JSON rendering (CLI
//! input and output, HTTP) it is embedded as a JSON value. Read from a rendering it is taken as
//! written, only the whitespace between its tokens removed ([`compact_json`]): a payload is
//! opaque, so its numbers keep every digit and its keys their order (a round trip through a JSON
//! value would make big integers floats and sort the keys).

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// Largest accepted `message_id`, in bytes.
pub const MAX_MESSAGE_ID_BYTES: usize = 256;

/// Most relaying zones a fact may pass through (SPEC §4a): a relay that would make it more
/// refuses it.
pub const MAX_HOPS: usize = 8;

/// Routing and provenance of a fact. `message_id` is the idempotency key. Its binary encoding is
/// written by hand (`crate::envelope`) so that `hops` costs nothing, and changes nothing, while it
/// is empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub from_zone: String,
    pub to_zone: String,
    #[serde(default)]
    pub produced_at_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_schema: Option<String>,
    /// The zones that relayed the fact, in order (SPEC §4a): empty when a producer appends, and
    /// each relaying zone appends its own name. Rendered in JSON even when empty (SPEC §2 lists it
    /// among the envelope's fields, not the optional ones); a producer may leave it out.
    #[serde(default)]
    pub hops: Vec<String>,
}

/// The business content: a subject–predicate–object triple whose object is JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    pub subject: String,
    pub predicate: String,
    /// Compact JSON text; rendered as an embedded JSON value.
    #[serde(with = "embedded_json")]
    pub object_json: String,
}

/// One fact with its envelope: the unit that is appended, replicated and consumed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub envelope: Envelope,
    pub fact: Fact,
}

/// Why a message is not acceptable; maps onto `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("message_id must be 1..={MAX_MESSAGE_ID_BYTES} bytes, got {0}")]
    MessageIdLength(usize),
    #[error("{field} {value:?} is not a valid zone name ([a-z0-9][a-z0-9-]{{0,62}})")]
    ZoneName { field: &'static str, value: String },
    #[error("object_json is not valid JSON: {0}")]
    ObjectJson(String),
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{0}")]
    Artifact(#[from] crate::object::ArtifactError),
    #[error("hops lists {0} zones, more than the {MAX_HOPS} a fact may pass through")]
    TooManyHops(usize),
}

/// Milliseconds since the Unix epoch now: the clock of `produced_at_unix_ms` and of storage
/// timestamps (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Zone names (and node identities): `[a-z0-9][a-z0-9-]{0,62}`.
pub fn is_valid_zone_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let body_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    match bytes.split_first() {
        Some((first, rest)) => first != &b'-' && body_ok(first) && rest.len() <= 62 && rest.iter().all(body_ok),
        None => false,
    }
}

impl Message {
    /// Checks everything that can be checked without knowing the node: id length, zone syntax
    /// (hops included, at most [`MAX_HOPS`]), JSON validity, the encoded size against `max_fact_bytes`, and the artifact reference's
    /// syntax when `object_media_type` is set.
    pub fn validate(&self, max_fact_bytes: usize) -> Result<(), ValidationError> {
        let id_len = self.envelope.message_id.len();
        if id_len == 0 || id_len > MAX_MESSAGE_ID_BYTES {
            return Err(ValidationError::MessageIdLength(id_len));
        }
        check_zone("from_zone", &self.envelope.from_zone)?;
        check_zone("to_zone", &self.envelope.to_zone)?;
        if self.envelope.hops.len() > MAX_HOPS {
            return Err(ValidationError::TooManyHops(self.envelope.hops.len()));
        }
        for hop in &self.envelope.hops {
            check_zone("hops", hop)?;
        }
        let size = self.encoded_len();
        if size > max_fact_bytes {
            return Err(ValidationError::TooLarge {
                size,
                limit: max_fact_bytes,
            });
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&self.fact.object_json)
            .map_err(|e| ValidationError::ObjectJson(e.to_string()))?;
        self.artifact()?;
        Ok(())
    }

    /// The artifact this fact references: `Some` when the envelope sets `object_media_type`
    /// (SPEC §2). Its value is not compared with the reference's `media_type`: the envelope field
    /// marks the reference, the reference describes the artifact.
    pub fn artifact(&self) -> Result<Option<crate::object::ArtifactRef>, crate::object::ArtifactError> {
        match self.envelope.object_media_type {
            Some(_) => crate::object::ArtifactRef::parse(&self.fact.object_json).map(Some),
            None => Ok(None),
        }
    }

    /// Size of the message in the wire and storage encoding.
    pub fn encoded_len(&self) -> usize {
        crate::codec::encoded_len(self)
    }
}

fn check_zone(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if is_valid_zone_name(value) {
        Ok(())
    } else {
        Err(ValidationError::ZoneName {
            field,
            value: value.to_owned(),
        })
    }
}

/// Valid JSON `text` without the whitespace between its tokens; strings, numbers and the order
/// and repetition of keys stay exactly as written. Not a validator: check `text` first.
pub fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Serde adapter: a `String` of JSON text rendered as the JSON value it holds, and read back
/// from any JSON value as written, compacted ([`compact_json`]).
mod embedded_json {
    use serde::{ser::Error as _, Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(text).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(super::compact_json(raw.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(object_json: &str) -> Message {
        Message {
            envelope: Envelope {
                message_id: "m-1".into(),
                from_zone: "plant-a".into(),
                to_zone: "enterprise".into(),
                produced_at_unix_ms: 1,
                ..Envelope::default()
            },
            fact: Fact {
                subject: "batch/42".into(),
                predicate: "completed".into(),
                object_json: object_json.into(),
            },
        }
    }

    #[test]
    fn zone_names_follow_the_spec_syntax() {
        for ok in ["a", "plant-a", "0", "z9-", &"a".repeat(63)] {
            assert!(is_valid_zone_name(ok), "{ok}");
        }
        for bad in ["", "-a", "Plant", "a_b", "a.b", &"a".repeat(64), "é"] {
            assert!(!is_valid_zone_name(bad), "{bad}");
        }
    }

    #[test]
    fn validation_rejects_each_bad_field() {
        assert!(message("{\"x\":1}").validate(1 << 20).is_ok());
        assert!(matches!(
            message("{x").validate(1 << 20),
            Err(ValidationError::ObjectJson(_))
        ));
        let mut long_id = message("1");
        long_id.envelope.message_id = "x".repeat(257);
        assert_eq!(long_id.validate(1 << 20), Err(ValidationError::MessageIdLength(257)));
        let mut bad_zone = message("1");
        bad_zone.envelope.to_zone = "Bad Zone".into();
        assert!(matches!(
            bad_zone.validate(1 << 20),
            Err(ValidationError::ZoneName { field: "to_zone", .. })
        ));
        assert!(matches!(
            message("\"big\"").validate(10),
            Err(ValidationError::TooLarge { limit: 10, .. })
        ));
        let mut relayed = message("1");
        relayed.envelope.hops = vec!["idmz".into(); MAX_HOPS];
        assert!(relayed.validate(1 << 20).is_ok());
        relayed.envelope.hops.push("idmz".into());
        assert_eq!(
            relayed.validate(1 << 20),
            Err(ValidationError::TooManyHops(MAX_HOPS + 1))
        );
        relayed.envelope.hops = vec!["DMZ".into()];
        assert!(matches!(
            relayed.validate(1 << 20),
            Err(ValidationError::ZoneName { field: "hops", .. })
        ));
        let mut not_a_reference = message("{\"x\":1}");
        not_a_reference.envelope.object_media_type = Some("application/pdf".into());
        assert!(matches!(
            not_a_reference.validate(1 << 20),
            Err(ValidationError::Artifact(crate::ArtifactError::NotAReference(_)))
        ));
    }

    #[test]
    fn json_rendering_embeds_object_json_and_reads_it_back_compact() {
        let rendered = serde_json::to_value(message("{\"temp\":21.5}")).expect("serialize");
        assert_eq!(rendered["fact"]["object_json"]["temp"], 21.5);
        let input = r#"{"envelope":{"to_zone":"enterprise"},"fact":{"subject":"s","predicate":"p","object_json":{ "a" : [1, 2] }}}"#;
        let parsed: Message = serde_json::from_str(input).expect("parse");
        assert_eq!(parsed.fact.object_json, r#"{"a":[1,2]}"#);
        assert_eq!(parsed.envelope.message_id, "");
        assert!(parsed.envelope.hops.is_empty(), "a producer may leave hops out");
    }

    #[test]
    fn object_json_is_read_as_written_less_its_whitespace() {
        let written = r#"{ "b" : 1, "a" : 99999999999999999999, "f": 1.50, "s" : " x \" y\\", "a": [ 1 ,2 ] }"#;
        let input = format!(
            r#"{{"envelope":{{"to_zone":"enterprise"}},"fact":{{"subject":"s","predicate":"p","object_json":{written}}}}}"#
        );
        let parsed: Message = serde_json::from_str(&input).expect("parse");
        assert_eq!(
            parsed.fact.object_json, r#"{"b":1,"a":99999999999999999999,"f":1.50,"s":" x \" y\\","a":[1,2]}"#,
            "digits, key order, repeated keys and the string's spaces kept"
        );
        assert_eq!(
            compact_json(&parsed.fact.object_json),
            parsed.fact.object_json,
            "compact once"
        );
    }

    #[test]
    fn json_rendering_lists_hops_even_when_empty() {
        let rendered = serde_json::to_value(message("{}")).expect("serialize");
        assert_eq!(rendered["envelope"]["hops"], serde_json::json!([]), "{rendered}");
    }
}
