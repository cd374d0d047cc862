//! Property: an artifact reference survives JSON rendering and parsing unchanged, a digest has
//! exactly one spelling, and arbitrary text given as `object_json` is an error or a value, never
//! a panic.

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

    /// Near-valid spellings (any case, one hex digit short or long) as well as arbitrary text:
    /// whatever parses is the one canonical spelling of its digest.
    #[test]
    fn only_the_canonical_digest_spelling_parses(text in "sha256:[0-9a-fA-F]{63,65}|.{0,80}") {
        if let Ok(digest) = text.parse::<ObjectDigest>() {
            prop_assert_eq!(digest.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_object_json_never_panics(json in r#"\{("[a-z_]{1,10}":("[^"\\]{0,20}"|[0-9]{1,20}|null),?){0,7}\}|.{0,64}"#) {
        let _ = ArtifactRef::parse(&json);
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
