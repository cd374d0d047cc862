//! Property: an artifact reference survives JSON rendering and parsing unchanged, a digest has
//! exactly one spelling, and arbitrary text given as `object_json` or as a digest is an error or
//! a valid value, never a panic.

use bsfg_proto::{ArtifactRef, Envelope, Fact, Message, ObjectDigest};
use proptest::prelude::*;

fn reference() -> impl Strategy<Value = ArtifactRef> {
    (
        "[a-z0-9][a-z0-9.-]{0,20}",
        "[a-zA-Z0-9/ ._-]{1,40}",
        any::<[u8; 32]>(),
        any::<u64>(),
        "(application|text|image)/[a-z0-9.+-]{1,20}",
        prop::option::of("[a-zA-Z0-9 ._-]{0,20}[a-zA-Z0-9_-]"),
    )
        .prop_map(|(bucket, key, digest, size, media_type, file_name)| ArtifactRef {
            bucket,
            key,
            digest: ObjectDigest(digest),
            size,
            media_type,
            file_name,
        })
}

proptest! {
    #[test]
    fn references_round_trip_through_json(reference in reference()) {
        let json = serde_json::to_string(&reference).expect("render");
        prop_assert_eq!(ArtifactRef::parse(&json), Ok(reference));
    }

    #[test]
    fn digests_round_trip_through_text(bytes in any::<[u8; 32]>()) {
        let digest = ObjectDigest(bytes);
        prop_assert_eq!(digest.to_string().parse::<ObjectDigest>(), Ok(digest));
    }

    #[test]
    fn arbitrary_digest_text_never_panics(text in ".{0,80}") {
        if let Ok(digest) = text.parse::<ObjectDigest>() {
            prop_assert_eq!(digest.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_object_json_never_panics_and_parses_only_to_valid_references(json in r#"\{("[a-z_]{1,10}":("[^"\\]{0,20}"|[0-9]{1,20}|null),?){0,7}\}|.{0,64}"#) {
        if let Ok(reference) = ArtifactRef::parse(&json) {
            prop_assert!(reference.validate().is_ok());
        }
        let message = Message {
            envelope: Envelope {
                message_id: "m".into(),
                from_zone: "a".into(),
                to_zone: "b".into(),
                object_media_type: Some("application/pdf".into()),
                ..Envelope::default()
            },
            fact: Fact { subject: "s".into(), predicate: "p".into(), object_json: json },
        };
        let _ = message.validate(1 << 20);
    }
}
